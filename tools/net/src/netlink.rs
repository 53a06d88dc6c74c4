//! rtnetlink (NETLINK_ROUTE) by hand: the few messages `net` needs, built
//! and parsed here, sent over a plain netlink socket from rustix.
//!
//! Layouts (`linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_addr.h`,
//! `linux/if_link.h`); every field is in the host's byte order, and every
//! header and attribute starts on a 4-byte boundary (NLMSG_ALIGN /
//! RTA_ALIGN):
//!
//! ```text
//! nlmsghdr   (16)  0 len u32 (header included)  4 type u16  6 flags u16
//!                  8 seq u32  12 pid u32 (port id; 0 = the kernel)
//! ifinfomsg  (16)  0 family u8  1 pad u8  2 type u16 (ARPHRD_*)
//!                  4 index i32  8 flags u32 (IFF_*)  12 change u32 (mask)
//! ifaddrmsg  (8)   0 family u8  1 prefixlen u8  2 flags u8  3 scope u8
//!                  4 index u32
//! rtmsg      (12)  0 family  1 dst_len  2 src_len  3 tos  4 table
//!                  5 protocol  6 scope  7 type (u8 each)  8 flags u32
//! rtattr     (4)   0 len u16 (header included, padding not)  2 type u16,
//!                  then the payload, padded to 4
//! nlmsgerr   (20)  0 error i32 (0 = ACK, else -errno)  4 the request's
//!                  nlmsghdr
//! ```
//!
//! A message is `nlmsghdr`, the family header (ifinfomsg, ifaddrmsg or
//! rtmsg), then attributes. The parsers take any bytes and return an error
//! naming the structure, offset and what was expected; they never panic.

use linux_raw_sys::netlink as nl;
use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use std::fmt;
use std::net::Ipv4Addr;

pub const NLMSG_HDRLEN: usize = 16;
pub const IFINFOMSG_LEN: usize = 16;
pub const IFADDRMSG_LEN: usize = 8;
pub const RTMSG_LEN: usize = 12;
pub const RTATTR_HDRLEN: usize = 4;

pub const AF_UNSPEC: u8 = 0;
pub const AF_INET: u8 = linux_raw_sys::net::AF_INET as u8;
pub const IFF_UP: u32 = 1;
/// `IFF_LOWER_UP` (1 << 16): the driver reports carrier.
pub const IFF_LOWER_UP: u32 = 1 << 16;

pub const RTM_NEWLINK: u16 = nl::RTM_NEWLINK as u16;
pub const RTM_GETLINK: u16 = nl::RTM_GETLINK as u16;
pub const RTM_NEWADDR: u16 = nl::RTM_NEWADDR as u16;
pub const RTM_DELADDR: u16 = nl::RTM_DELADDR as u16;
pub const RTM_GETADDR: u16 = nl::RTM_GETADDR as u16;
pub const RTM_NEWROUTE: u16 = nl::RTM_NEWROUTE as u16;
pub const RTM_GETROUTE: u16 = nl::RTM_GETROUTE as u16;
pub const NLMSG_ERROR: u16 = nl::NLMSG_ERROR as u16;
pub const NLMSG_DONE: u16 = nl::NLMSG_DONE as u16;

pub const NLM_F_REQUEST: u16 = nl::NLM_F_REQUEST as u16;
pub const NLM_F_ACK: u16 = nl::NLM_F_ACK as u16;
pub const NLM_F_DUMP: u16 = nl::NLM_F_DUMP as u16;
pub const NLM_F_CREATE: u16 = nl::NLM_F_CREATE as u16;
pub const NLM_F_REPLACE: u16 = nl::NLM_F_REPLACE as u16;

pub const IFLA_ADDRESS: u16 = nl::IFLA_ADDRESS as u16;
pub const IFLA_IFNAME: u16 = nl::IFLA_IFNAME as u16;
pub const IFLA_OPERSTATE: u16 = nl::IFLA_OPERSTATE as u16;
pub const IFLA_CARRIER: u16 = nl::IFLA_CARRIER as u16;
pub const IFA_ADDRESS: u16 = nl::IFA_ADDRESS as u16;
pub const IFA_LOCAL: u16 = nl::IFA_LOCAL as u16;
pub const IFA_BROADCAST: u16 = nl::IFA_BROADCAST as u16;
pub const RTA_DST: u16 = nl::rtattr_type_t::RTA_DST as u16;
pub const RTA_OIF: u16 = nl::rtattr_type_t::RTA_OIF as u16;
pub const RTA_GATEWAY: u16 = nl::rtattr_type_t::RTA_GATEWAY as u16;
pub const RTA_TABLE: u16 = nl::rtattr_type_t::RTA_TABLE as u16;

pub const RT_TABLE_MAIN: u8 = nl::rt_class_t::RT_TABLE_MAIN as u8;
pub const RT_SCOPE_UNIVERSE: u8 = nl::rt_scope_t::RT_SCOPE_UNIVERSE as u8;
pub const RTN_UNICAST: u8 = nl::RTN_UNICAST as u8;
pub const RTPROT_STATIC: u8 = nl::RTPROT_STATIC as u8;
pub const RTPROT_DHCP: u8 = nl::RTPROT_DHCP as u8;

/// Rounds up to the 4-byte alignment of netlink headers and attributes.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A request being built: the family header and attributes after the
/// `nlmsghdr`, whose length [`Request::encode`] fills in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    body: Vec<u8>,
}

impl Request {
    pub fn new(ty: u16, flags: u16) -> Request {
        Request {
            ty,
            flags,
            seq: 0,
            body: Vec::new(),
        }
    }

    /// `ifinfomsg` (see the module's layout).
    pub fn ifinfomsg(mut self, family: u8, index: i32, flags: u32, change: u32) -> Request {
        self.body.extend_from_slice(&[family, 0]);
        self.body.extend_from_slice(&0u16.to_ne_bytes());
        self.body.extend_from_slice(&index.to_ne_bytes());
        self.body.extend_from_slice(&flags.to_ne_bytes());
        self.body.extend_from_slice(&change.to_ne_bytes());
        self
    }

    /// `ifaddrmsg` (see the module's layout).
    pub fn ifaddrmsg(mut self, family: u8, prefixlen: u8, scope: u8, index: u32) -> Request {
        self.body.extend_from_slice(&[family, prefixlen, 0, scope]);
        self.body.extend_from_slice(&index.to_ne_bytes());
        self
    }

    /// `rtmsg` (see the module's layout); no flags.
    pub fn rtmsg(mut self, m: RtMsg) -> Request {
        self.body.extend_from_slice(&[
            m.family, m.dst_len, m.src_len, m.tos, m.table, m.protocol, m.scope, m.kind,
        ]);
        self.body.extend_from_slice(&0u32.to_ne_bytes());
        self
    }

    /// Appends an attribute: `rtattr`, payload, padding to 4.
    pub fn attr(mut self, ty: u16, payload: &[u8]) -> Request {
        let len = (RTATTR_HDRLEN + payload.len()) as u16;
        self.body.extend_from_slice(&len.to_ne_bytes());
        self.body.extend_from_slice(&ty.to_ne_bytes());
        self.body.extend_from_slice(payload);
        self.body.resize(align4(self.body.len()), 0);
        self
    }

    /// The message as sent: `nlmsghdr` (length, type, flags, seq, port 0)
    /// then the body.
    pub fn encode(&self) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + self.body.len()) as u32;
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.ty.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// The fields of an `rtmsg` (without its flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    pub tos: u8,
    pub table: u8,
    pub protocol: u8,
    pub scope: u8,
    /// `rtm_type` (RTN_*).
    pub kind: u8,
}

/// What is wrong with bytes that should be netlink messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The structure being read: `nlmsghdr`, `rtattr`, `ifaddrmsg`, ...
    pub what: &'static str,
    /// Byte offset in the buffer given to the parser.
    pub offset: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "netlink {} at offset {}: expected {}, found {}",
            self.what, self.offset, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

fn short(what: &'static str, offset: usize, need: usize, have: usize) -> ParseError {
    ParseError {
        what,
        offset,
        expected: format!("{need} bytes"),
        found: format!("{have}"),
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One message of a received buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    /// What follows the `nlmsghdr`, up to its length.
    pub payload: &'a [u8],
}

/// Splits a received buffer into its messages.
pub fn parse_messages(buf: &[u8]) -> Result<Vec<Message<'_>>, ParseError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < NLMSG_HDRLEN {
            return Err(short("nlmsghdr", at, NLMSG_HDRLEN, rest.len()));
        }
        let len = u32_at(rest, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(ParseError {
                what: "nlmsghdr",
                offset: at,
                expected: format!("a length from {NLMSG_HDRLEN} to {}", rest.len()),
                found: format!("{len}"),
            });
        }
        out.push(Message {
            ty: u16_at(rest, 4).unwrap_or(0),
            flags: u16_at(rest, 6).unwrap_or(0),
            seq: u32_at(rest, 8).unwrap_or(0),
            pid: u32_at(rest, 12).unwrap_or(0),
            payload: &rest[NLMSG_HDRLEN..len],
        });
        at = at.saturating_add(align4(len));
    }
    Ok(out)
}

/// The attributes in `buf` (type and payload); `base` is `buf`'s offset
/// in the message, for errors.
pub fn parse_attrs(buf: &[u8], base: usize) -> Result<Vec<(u16, &[u8])>, ParseError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < RTATTR_HDRLEN {
            return Err(short("rtattr", base + at, RTATTR_HDRLEN, rest.len()));
        }
        let len = u16_at(rest, 0).unwrap_or(0) as usize;
        if len < RTATTR_HDRLEN || len > rest.len() {
            return Err(ParseError {
                what: "rtattr",
                offset: base + at,
                expected: format!("a length from {RTATTR_HDRLEN} to {}", rest.len()),
                found: format!("{len}"),
            });
        }
        // The type's top two bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let ty = u16_at(rest, 2).unwrap_or(0) & 0x3fff;
        out.push((ty, &rest[RTATTR_HDRLEN..len]));
        at = at.saturating_add(align4(len));
    }
    Ok(out)
}

/// The error code of an `NLMSG_ERROR` payload: 0 for an ACK, else a
/// negative errno.
pub fn parse_error(payload: &[u8]) -> Result<i32, ParseError> {
    u32_at(payload, 0)
        .map(|e| e as i32)
        .ok_or_else(|| short("nlmsgerr", NLMSG_HDRLEN, 4, payload.len()))
}

fn ipv4(payload: &[u8], what: &'static str, offset: usize) -> Result<Ipv4Addr, ParseError> {
    let b: [u8; 4] = payload.try_into().map_err(|_| ParseError {
        what,
        offset,
        expected: "a 4-byte IPv4 address".into(),
        found: format!("{} bytes", payload.len()),
    })?;
    Ok(Ipv4Addr::from(b))
}

/// A link from an `RTM_NEWLINK` payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkMsg {
    pub index: i32,
    pub flags: u32,
    pub name: Option<String>,
    pub mac: Option<Vec<u8>>,
    /// `IFLA_OPERSTATE` (RFC 2863: 6 = up, 2 = down, ...).
    pub operstate: Option<u8>,
    pub carrier: Option<bool>,
}

pub fn parse_link(payload: &[u8]) -> Result<LinkMsg, ParseError> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(short(
            "ifinfomsg",
            NLMSG_HDRLEN,
            IFINFOMSG_LEN,
            payload.len(),
        ));
    }
    let mut l = LinkMsg {
        index: u32_at(payload, 4).unwrap_or(0) as i32,
        flags: u32_at(payload, 8).unwrap_or(0),
        ..LinkMsg::default()
    };
    for (ty, v) in parse_attrs(&payload[IFINFOMSG_LEN..], NLMSG_HDRLEN + IFINFOMSG_LEN)? {
        match ty {
            IFLA_IFNAME => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                l.name = Some(String::from_utf8_lossy(&v[..end]).into_owned());
            }
            IFLA_ADDRESS => l.mac = Some(v.to_vec()),
            IFLA_OPERSTATE => l.operstate = v.first().copied(),
            IFLA_CARRIER => l.carrier = v.first().map(|&c| c != 0),
            _ => {}
        }
    }
    Ok(l)
}

/// An IPv4 address from an `RTM_NEWADDR` payload (other families give
/// `address: None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrMsg {
    pub family: u8,
    pub prefix: u8,
    pub scope: u8,
    pub index: u32,
    /// `IFA_LOCAL`, else `IFA_ADDRESS` (they differ on point-to-point links
    /// only).
    pub address: Option<Ipv4Addr>,
}

pub fn parse_addr(payload: &[u8]) -> Result<AddrMsg, ParseError> {
    if payload.len() < IFADDRMSG_LEN {
        return Err(short(
            "ifaddrmsg",
            NLMSG_HDRLEN,
            IFADDRMSG_LEN,
            payload.len(),
        ));
    }
    let mut a = AddrMsg {
        family: payload[0],
        prefix: payload[1],
        scope: payload[3],
        index: u32_at(payload, 4).unwrap_or(0),
        address: None,
    };
    let base = NLMSG_HDRLEN + IFADDRMSG_LEN;
    let (mut local, mut address) = (None, None);
    if a.family == AF_INET {
        for (ty, v) in parse_attrs(&payload[IFADDRMSG_LEN..], base)? {
            match ty {
                IFA_LOCAL => local = Some(ipv4(v, "IFA_LOCAL", base)?),
                IFA_ADDRESS => address = Some(ipv4(v, "IFA_ADDRESS", base)?),
                _ => {}
            }
        }
    }
    a.address = local.or(address);
    Ok(a)
}

/// An IPv4 route from an `RTM_NEWROUTE` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMsg {
    pub header: RtMsg,
    /// `RTA_TABLE` when present (tables above 255), else the header's.
    pub table: u32,
    pub dst: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

pub fn parse_route(payload: &[u8]) -> Result<RouteMsg, ParseError> {
    if payload.len() < RTMSG_LEN {
        return Err(short("rtmsg", NLMSG_HDRLEN, RTMSG_LEN, payload.len()));
    }
    let header = RtMsg {
        family: payload[0],
        dst_len: payload[1],
        src_len: payload[2],
        tos: payload[3],
        table: payload[4],
        protocol: payload[5],
        scope: payload[6],
        kind: payload[7],
    };
    let mut r = RouteMsg {
        header,
        table: u32::from(header.table),
        dst: None,
        gateway: None,
        oif: None,
    };
    if header.family != AF_INET {
        return Ok(r);
    }
    let base = NLMSG_HDRLEN + RTMSG_LEN;
    for (ty, v) in parse_attrs(&payload[RTMSG_LEN..], base)? {
        match ty {
            RTA_DST => r.dst = Some(ipv4(v, "RTA_DST", base)?),
            RTA_GATEWAY => r.gateway = Some(ipv4(v, "RTA_GATEWAY", base)?),
            RTA_OIF => r.oif = u32_at(v, 0),
            RTA_TABLE => {
                if let Some(t) = u32_at(v, 0) {
                    r.table = t;
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// A NETLINK_ROUTE socket: requests answered by an ACK, and dumps.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

/// Netlink replies carry at most a page's worth of messages each, but a
/// dump of many addresses may be larger: 64 KiB is what iproute2 uses.
const RECV_BUF: usize = 65536;

impl Rtnl {
    pub fn open() -> std::io::Result<Rtnl> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            rustix::net::SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE is protocol 0
        )?;
        Ok(Rtnl { fd, seq: 1 })
    }

    fn send(&mut self, mut req: Request) -> std::io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        req.seq = self.seq;
        let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, &req.encode(), SendFlags::empty(), &kernel)?;
        Ok(self.seq)
    }

    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (n, _) = rustix::net::recv(&self.fd, &mut *buf, RecvFlags::empty())?;
        Ok(n)
    }

    /// Sends a request with `NLM_F_ACK` and waits for its answer: Ok, or
    /// the kernel's errno.
    pub fn request(&mut self, mut req: Request) -> std::io::Result<()> {
        req.flags |= NLM_F_REQUEST | NLM_F_ACK;
        let seq = self.send(req)?;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = self.recv(&mut buf)?;
            for m in parse_messages(&buf[..n]).map_err(invalid)? {
                if m.seq != seq || m.ty != NLMSG_ERROR {
                    continue;
                }
                let e = parse_error(m.payload).map_err(invalid)?;
                return if e == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::from_raw_os_error(-e))
                };
            }
        }
    }

    /// Sends a dump request (`NLM_F_DUMP`) and collects the payloads of
    /// every answer of type `answer` until `NLMSG_DONE`.
    pub fn dump(&mut self, mut req: Request, answer: u16) -> std::io::Result<Vec<Vec<u8>>> {
        req.flags |= NLM_F_REQUEST | NLM_F_DUMP;
        let seq = self.send(req)?;
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::new();
        loop {
            let n = self.recv(&mut buf)?;
            for m in parse_messages(&buf[..n]).map_err(invalid)? {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let e = parse_error(m.payload).map_err(invalid)?;
                        return Err(std::io::Error::from_raw_os_error(-e));
                    }
                    t if t == answer => out.push(m.payload.to_vec()),
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> std::io::Result<Vec<LinkMsg>> {
        let req = Request::new(RTM_GETLINK, 0).ifinfomsg(AF_UNSPEC, 0, 0, 0);
        self.dump(req, RTM_NEWLINK)?
            .iter()
            .map(|p| parse_link(p).map_err(invalid))
            .collect()
    }

    pub fn ipv4_addresses(&mut self) -> std::io::Result<Vec<AddrMsg>> {
        let req = Request::new(RTM_GETADDR, 0).ifaddrmsg(AF_INET, 0, 0, 0);
        let all: Vec<AddrMsg> = self
            .dump(req, RTM_NEWADDR)?
            .iter()
            .map(|p| parse_addr(p).map_err(invalid))
            .collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|a| a.family == AF_INET).collect())
    }

    pub fn ipv4_routes(&mut self) -> std::io::Result<Vec<RouteMsg>> {
        let req = Request::new(RTM_GETROUTE, 0).rtmsg(RtMsg {
            family: AF_INET,
            ..RtMsg::default()
        });
        self.dump(req, RTM_NEWROUTE)?
            .iter()
            .map(|p| parse_route(p).map_err(invalid))
            .collect()
    }

    /// Sets the link administratively up or down (`ip link set X up|down`).
    pub fn set_link_up(&mut self, index: u32, up: bool) -> std::io::Result<()> {
        self.request(set_link_request(index, up))
    }

    /// Adds an IPv4 address (`ip addr replace A/P brd + dev X`).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        self.request(add_address_request(index, addr, prefix))
    }

    /// Removes an IPv4 address from a link.
    pub fn del_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        let req = Request::new(RTM_DELADDR, 0)
            .ifaddrmsg(AF_INET, prefix, RT_SCOPE_UNIVERSE, index)
            .attr(IFA_LOCAL, &addr.octets());
        self.request(req)
    }

    /// Adds or replaces the default route of the main table.
    pub fn replace_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        protocol: u8,
    ) -> std::io::Result<()> {
        self.request(default_route_request(index, gateway, protocol))
    }
}

fn invalid(e: ParseError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// `RTM_NEWLINK` setting or clearing IFF_UP only (change mask IFF_UP).
pub fn set_link_request(index: u32, up: bool) -> Request {
    Request::new(RTM_NEWLINK, 0).ifinfomsg(
        AF_UNSPEC,
        index as i32,
        if up { IFF_UP } else { 0 },
        IFF_UP,
    )
}

/// `RTM_NEWADDR` (create or replace) with IFA_LOCAL, IFA_ADDRESS and, below
/// /31, IFA_BROADCAST (the host part all ones).
pub fn add_address_request(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    let mut req = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE)
        .ifaddrmsg(AF_INET, prefix, RT_SCOPE_UNIVERSE, index)
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    if prefix < 31 {
        let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let brd = Ipv4Addr::from(u32::from(addr) | host);
        req = req.attr(IFA_BROADCAST, &brd.octets());
    }
    req
}

/// `RTM_NEWROUTE` (create or replace): 0.0.0.0/0 via `gateway` out of
/// link `index`, main table, unicast, scope universe.
pub fn default_route_request(index: u32, gateway: Ipv4Addr, protocol: u8) -> Request {
    Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)
        .rtmsg(RtMsg {
            family: AF_INET,
            table: RT_TABLE_MAIN,
            protocol,
            scope: RT_SCOPE_UNIVERSE,
            kind: RTN_UNICAST,
            ..RtMsg::default()
        })
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_match_the_kernel_headers() {
        use std::mem::size_of;
        assert_eq!(size_of::<nl::nlmsghdr>(), NLMSG_HDRLEN);
        assert_eq!(size_of::<nl::ifinfomsg>(), IFINFOMSG_LEN);
        assert_eq!(size_of::<nl::ifaddrmsg>(), IFADDRMSG_LEN);
        assert_eq!(size_of::<nl::rtmsg>(), RTMSG_LEN);
        assert_eq!(size_of::<nl::rtattr>(), RTATTR_HDRLEN);
        assert_eq!(size_of::<nl::nlmsgerr>(), 20);
        assert_eq!(
            (RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_GETROUTE),
            (16, 20, 24, 26)
        );
        assert_eq!((IFA_LOCAL, RTA_GATEWAY, RTA_OIF), (2, 5, 4));
    }

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn link_up_request_bytes() {
        let mut r = set_link_request(3, true);
        r.flags |= NLM_F_REQUEST | NLM_F_ACK;
        r.seq = 7;
        let mut want = Vec::new();
        want.extend_from_slice(&ne32(32)); // 16 + ifinfomsg
        want.extend_from_slice(&16u16.to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes()); // REQUEST | ACK
        want.extend_from_slice(&ne32(7));
        want.extend_from_slice(&ne32(0));
        want.extend_from_slice(&[0, 0, 0, 0]); // AF_UNSPEC, pad, type
        want.extend_from_slice(&ne32(3));
        want.extend_from_slice(&ne32(1)); // IFF_UP
        want.extend_from_slice(&ne32(1)); // change: IFF_UP
        assert_eq!(r.encode(), want);
        let down = set_link_request(3, false).encode();
        assert_eq!(&down[24..28], &ne32(0));
        assert_eq!(&down[28..32], &ne32(1));
    }

    #[test]
    fn address_request_bytes() {
        let r = add_address_request(2, Ipv4Addr::new(192, 0, 2, 10), 24).encode();
        // 16 + 8 + three 8-byte attributes.
        assert_eq!(r.len(), 48);
        assert_eq!(&r[0..4], &ne32(48));
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 20);
        assert_eq!(
            u16::from_ne_bytes([r[6], r[7]]),
            NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(&r[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(&r[20..24], &ne32(2));
        // First attribute: rta_len 8, rta_type IFA_LOCAL, the address.
        assert_eq!(&r[24..26], &8u16.to_ne_bytes());
        assert_eq!(&r[26..28], &IFA_LOCAL.to_ne_bytes());
        assert_eq!(&r[28..32], &[192, 0, 2, 10]);
        let attrs = parse_attrs(&r[24..], 24).unwrap();
        assert_eq!(
            attrs,
            vec![
                (IFA_LOCAL, &[192, 0, 2, 10][..]),
                (IFA_ADDRESS, &[192, 0, 2, 10][..]),
                (IFA_BROADCAST, &[192, 0, 2, 255][..]),
            ]
        );
        // A /32 has no broadcast.
        assert_eq!(
            add_address_request(2, Ipv4Addr::new(192, 0, 2, 10), 32)
                .encode()
                .len(),
            40
        );
    }

    #[test]
    fn default_route_request_bytes() {
        let r = default_route_request(4, Ipv4Addr::new(192, 0, 2, 1), RTPROT_DHCP).encode();
        assert_eq!(r.len(), 16 + 12 + 8 + 8);
        assert_eq!(&r[16..24], &[AF_INET, 0, 0, 0, 254, 16, 0, RTN_UNICAST]);
        assert_eq!(&r[24..28], &ne32(0));
        assert_eq!(&r[28..30], &8u16.to_ne_bytes());
        assert_eq!(&r[30..32], &RTA_GATEWAY.to_ne_bytes());
        assert_eq!(&r[32..36], &[192, 0, 2, 1]);
        assert_eq!(&r[38..40], &RTA_OIF.to_ne_bytes());
        assert_eq!(&r[40..44], &ne32(4));
        let parsed = parse_route(&r[16..]).unwrap();
        assert_eq!(parsed.gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(parsed.oif, Some(4));
        assert_eq!(parsed.table, 254);
        assert_eq!(parsed.header.dst_len, 0);
    }

    /// An RTM_NEWLINK answer as the kernel sends it (an excerpt: ifinfomsg,
    /// IFLA_IFNAME, IFLA_ADDRESS, IFLA_OPERSTATE, IFLA_CARRIER, and one
    /// nested attribute to skip), followed by NLMSG_DONE.
    fn kernel_link_answer() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        body.extend_from_slice(&2i32.to_ne_bytes());
        body.extend_from_slice(&ne32(IFF_UP | IFF_LOWER_UP));
        body.extend_from_slice(&ne32(0));
        let mut put = |ty: u16, v: &[u8]| {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&ty.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(align4(body.len()), 0);
        };
        put(IFLA_IFNAME, b"eth0\0");
        put(IFLA_ADDRESS, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        put(IFLA_OPERSTATE, &[6]);
        put(IFLA_CARRIER, &[1]);
        put(0x8000 | 18, &[4, 0, 1, 0]); // nested IFLA_LINKINFO
        let mut msg = Vec::new();
        msg.extend_from_slice(&ne32((16 + body.len()) as u32));
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        msg.extend_from_slice(&ne32(9));
        msg.extend_from_slice(&ne32(0));
        msg.extend_from_slice(&body);
        msg.extend_from_slice(&ne32(20));
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes());
        msg.extend_from_slice(&ne32(9));
        msg.extend_from_slice(&ne32(0));
        msg.extend_from_slice(&ne32(0));
        msg
    }

    #[test]
    fn parses_a_link_dump() {
        let buf = kernel_link_answer();
        let msgs = parse_messages(&buf).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].ty, msgs[0].seq), (RTM_NEWLINK, 9));
        assert_eq!(msgs[1].ty, NLMSG_DONE);
        let l = parse_link(msgs[0].payload).unwrap();
        assert_eq!(l.index, 2);
        assert_eq!(l.name.as_deref(), Some("eth0"));
        assert_eq!(
            l.mac.as_deref(),
            Some(&[0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
        );
        assert_eq!(l.operstate, Some(6));
        assert_eq!(l.carrier, Some(true));
        assert_eq!(l.flags & IFF_LOWER_UP, IFF_LOWER_UP);
    }

    #[test]
    fn errors_name_the_structure_and_offset() {
        let mut buf = kernel_link_answer();
        buf.truncate(30);
        let e = parse_messages(&buf).unwrap_err();
        assert_eq!((e.what, e.offset), ("nlmsghdr", 0));
        assert!(e.to_string().contains("expected a length"), "{e}");
        let e = parse_attrs(&[8, 0, 1, 0, 1], 24).unwrap_err();
        assert_eq!((e.what, e.offset), ("rtattr", 24));
        let e = parse_attrs(&[2, 0, 1, 0], 24).unwrap_err();
        assert_eq!(e.found, "2");
        let e = parse_addr(&[2, 24, 0, 0, 1, 0, 0, 0, 9, 0, 2, 0, 1, 2, 3, 4]).unwrap_err();
        assert_eq!((e.what, e.offset), ("rtattr", 24));
        let mut a = vec![2, 24, 0, 0, 1, 0, 0, 0];
        a.extend_from_slice(&7u16.to_ne_bytes());
        a.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
        a.extend_from_slice(&[1, 2, 3, 0]);
        let e = parse_addr(&a).unwrap_err();
        assert_eq!(e.what, "IFA_LOCAL");
        assert_eq!(parse_error(&[1, 2]).unwrap_err().what, "nlmsgerr");
        assert_eq!(parse_error(&(-17i32).to_ne_bytes()).unwrap(), -17);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(msgs) = parse_messages(&bytes) {
                for m in msgs {
                    let _ = parse_link(m.payload);
                    let _ = parse_addr(m.payload);
                    let _ = parse_route(m.payload);
                    let _ = parse_error(m.payload);
                }
            }
            let _ = parse_attrs(&bytes, 0);
            let _ = parse_link(&bytes);
            let _ = parse_addr(&bytes);
            let _ = parse_route(&bytes);
        }

        #[test]
        fn corrupted_answers_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
            let mut buf = kernel_link_answer();
            let p = pos % buf.len();
            buf[p] = val;
            buf.truncate(cut.max(1).min(buf.len()));
            if let Ok(msgs) = parse_messages(&buf) {
                for m in msgs {
                    let _ = parse_link(m.payload);
                    let _ = parse_addr(m.payload);
                    let _ = parse_route(m.payload);
                }
            }
        }

        #[test]
        fn built_requests_parse_back(index in 1u32..1000, a in any::<u32>(), prefix in 0u8..=32) {
            let addr = Ipv4Addr::from(a);
            let r = add_address_request(index, addr, prefix).encode();
            let msgs = parse_messages(&r).unwrap();
            prop_assert_eq!(msgs.len(), 1);
            let parsed = parse_addr(msgs[0].payload).unwrap();
            prop_assert_eq!(parsed.index, index);
            prop_assert_eq!(parsed.prefix, prefix);
            prop_assert_eq!(parsed.address, Some(addr));
        }
    }
}
