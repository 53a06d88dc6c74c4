//! A small DHCPv4 client (RFC 2131, options from RFC 2132): DISCOVER,
//! OFFER, REQUEST, ACK, with retries and an overall deadline.
//!
//! Message layout (RFC 2131 section 2, figure 1; network byte order):
//!
//! ```text
//!   0 op u8 (1 request, 2 reply)   1 htype u8 (1 Ethernet)   2 hlen u8 (6)
//!   3 hops u8   4 xid u32   8 secs u16   10 flags u16 (0x8000 broadcast)
//!  12 ciaddr   16 yiaddr   20 siaddr   24 giaddr   (IPv4, 4 bytes each)
//!  28 chaddr [16]   44 sname [64]   108 file [128]
//! 236 magic cookie 99.130.83.99   240 options: code u8, len u8, data;
//!     0 is a pad without a length, 255 the end
//! ```
//!
//! The socket: a UDP socket bound to 0.0.0.0:68, tied to the interface
//! with SO_BINDTODEVICE and allowed to broadcast (SO_BROADCAST). Before
//! the interface has an address the kernel still sends a datagram to
//! 255.255.255.255 out of the bound device (source 0.0.0.0) and delivers
//! datagrams to the limited broadcast address to the bound socket. What it
//! would drop is a reply unicast to the offered address, which is not yet
//! ours; the client therefore sets the BROADCAST flag (RFC 2131 4.1), so
//! that servers broadcast their replies (QEMU's user-mode server always
//! does). This avoids an AF_PACKET socket with hand-made IP and UDP
//! headers and checksums, at the price of needing servers that honour the
//! flag, which RFC 2131 requires of them. Relay agents (giaddr) are the
//! server side's business and work the same.
//!
//! Not done: renewal (T1/T2) and release; the lease is recorded and the
//! address stays until `net up` is run again or the link is taken down.
//! Option overload (52) is ignored: the options we use are never moved
//! into sname/file by the servers we know.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub const FIXED_LEN: usize = 236;
pub const OPTIONS_AT: usize = 240;
pub const FLAG_BROADCAST: u16 = 0x8000;
/// What [`Packet::encode`] pads to (see there).
pub const MIN_LEN: usize = 548;

pub const OPT_PAD: u8 = 0;
pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_MESSAGE_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PARAMETER_LIST: u8 = 55;
pub const OPT_MAX_SIZE: u8 = 57;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_END: u8 = 255;

/// DHCP message types (option 53, RFC 2132 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// A DHCP message: the fixed fields we use and the options in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub op: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// Hardware address (htype 1, hlen 6).
    pub chaddr: [u8; 6],
    /// Options (code, data), pads and the end left out; several
    /// occurrences of one code are concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

/// What is wrong with a received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub field: &'static str,
    pub offset: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DHCP {} at offset {}: expected {}, found {}",
            self.field, self.offset, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    let mut o = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        o.copy_from_slice(s);
    }
    Ipv4Addr::from(o)
}

impl Packet {
    /// A client message (op 1, Ethernet) with the message type option.
    pub fn client(kind: Kind, xid: u32, mac: [u8; 6]) -> Packet {
        Packet {
            op: 1,
            xid,
            secs: 0,
            flags: FLAG_BROADCAST,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: mac,
            options: vec![(OPT_MESSAGE_TYPE, vec![kind as u8])],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_AT];
        b[0] = self.op;
        b[1] = 1; // htype Ethernet
        b[2] = 6; // hlen
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[20..24].copy_from_slice(&self.siaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&self.chaddr);
        b[236..240].copy_from_slice(&MAGIC);
        for (code, data) in &self.options {
            // Longer data is split over several occurrences (RFC 3396).
            let mut chunks = data.chunks(255).peekable();
            if chunks.peek().is_none() {
                b.extend_from_slice(&[*code, 0]);
            }
            for c in chunks {
                b.extend_from_slice(&[*code, c.len() as u8]);
                b.extend_from_slice(c);
            }
        }
        b.push(OPT_END);
        // Padded to 548 bytes, the fixed part and the 312-byte options
        // field of RFC 2131's figure 1 (a 576-byte IP datagram): QEMU's
        // user-mode server (libslirp since 4.6, mtod_check on its struct
        // bootp_t) drops anything shorter, and BOOTP relays want 300.
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, 0);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Packet, ParseError> {
        if b.len() < OPTIONS_AT {
            return Err(ParseError {
                field: "message",
                offset: 0,
                expected: format!("at least {OPTIONS_AT} bytes"),
                found: format!("{} bytes", b.len()),
            });
        }
        if b[1] != 1 || b[2] != 6 {
            return Err(ParseError {
                field: "htype/hlen",
                offset: 1,
                expected: "1/6 (Ethernet)".into(),
                found: format!("{}/{}", b[1], b[2]),
            });
        }
        if b[236..240] != MAGIC {
            return Err(ParseError {
                field: "magic cookie",
                offset: 236,
                expected: "99.130.83.99".into(),
                found: format!("{}.{}.{}.{}", b[236], b[237], b[238], b[239]),
            });
        }
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&b[28..34]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut at = OPTIONS_AT;
        // A missing end option is accepted, as many stacks do.
        while let Some(&code) = b.get(at) {
            match code {
                OPT_PAD => at += 1,
                OPT_END => break,
                _ => {
                    let Some(&len) = b.get(at + 1) else {
                        return Err(ParseError {
                            field: "option length",
                            offset: at + 1,
                            expected: format!("the length of option {code}"),
                            found: "the end of the message".into(),
                        });
                    };
                    let data = b.get(at + 2..at + 2 + len as usize).ok_or(ParseError {
                        field: "option",
                        offset: at,
                        expected: format!("{len} bytes of option {code}"),
                        found: format!("{} bytes", b.len().saturating_sub(at + 2)),
                    })?;
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, d)) => d.extend_from_slice(data),
                        None => options.push((code, data.to_vec())),
                    }
                    at += 2 + len as usize;
                }
            }
        }
        Ok(Packet {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip_at(b, 12),
            yiaddr: ip_at(b, 16),
            siaddr: ip_at(b, 20),
            giaddr: ip_at(b, 24),
            chaddr,
            options,
        })
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    pub fn kind(&self) -> Option<Kind> {
        self.option(OPT_MESSAGE_TYPE)
            .and_then(|d| d.first())
            .and_then(|&k| Kind::from_u8(k))
    }

    fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        let d = self.option(code)?;
        (d.len() >= 4).then(|| ip_at(d, 0))
    }

    fn ip_list(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code)
            .map(|d| d.chunks_exact(4).map(|c| ip_at(c, 0)).collect())
            .unwrap_or_default()
    }
}

/// What an OFFER or ACK gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (option 51); None: not given.
    pub lease_secs: Option<u32>,
    /// The server identifier (option 54).
    pub server: Ipv4Addr,
}

/// The prefix length of a netmask, if it is a contiguous one.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The default prefix when no mask is given: the address's historic class.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

impl Lease {
    /// The lease an OFFER or ACK describes; None without a server id or
    /// an address.
    pub fn from_reply(p: &Packet) -> Option<Lease> {
        let server = p
            .ip_option(OPT_SERVER_ID)
            .or_else(|| (!p.siaddr.is_unspecified()).then_some(p.siaddr))?;
        if p.yiaddr.is_unspecified() {
            return None;
        }
        let prefix = p
            .ip_option(OPT_SUBNET_MASK)
            .and_then(prefix_of)
            .unwrap_or_else(|| classful_prefix(p.yiaddr));
        let lease_secs = p
            .option(OPT_LEASE_TIME)
            .and_then(|d| d.get(..4))
            .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        Some(Lease {
            address: p.yiaddr,
            prefix,
            gateway: p.ip_list(OPT_ROUTER).into_iter().next(),
            dns: p.ip_list(OPT_DNS),
            lease_secs,
            server,
        })
    }
}

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The whole exchange must end within this.
    pub timeout: Duration,
    /// Sent as option 12 when set.
    pub hostname: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(30),
            hostname: None,
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Socket(std::io::Error),
    /// No OFFER, or no ACK, before the deadline.
    Timeout {
        iface: String,
        secs: u64,
        stage: &'static str,
        attempts: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Socket(e) => write!(f, "DHCP socket: {e}"),
            Error::Timeout {
                iface,
                secs,
                stage,
                attempts,
            } => write!(
                f,
                "DHCP on {iface}: {stage} after {attempts} attempt(s) in {secs} s; \
                 is a DHCP server on this network? (or use --addr A/P --gw G)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The parameter request list (option 55): mask, router, DNS, lease time
/// and server id come anyway from most servers, but ask for them.
const WANTED: [u8; 5] = [
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_LEASE_TIME,
    OPT_SERVER_ID,
];

/// DISCOVER (or, with `offer`, REQUEST for it) as this client sends it.
pub fn client_message(
    kind: Kind,
    xid: u32,
    mac: [u8; 6],
    secs: u16,
    offer: Option<&Lease>,
    hostname: Option<&str>,
) -> Packet {
    let mut p = Packet::client(kind, xid, mac);
    p.secs = secs;
    // Client id: type 1 (Ethernet) and the MAC (RFC 2132 9.14).
    let mut id = vec![1u8];
    id.extend_from_slice(&mac);
    p.options.push((OPT_CLIENT_ID, id));
    p.options
        .push((OPT_MAX_SIZE, 1500u16.to_be_bytes().to_vec()));
    if let Some(o) = offer {
        p.options
            .push((OPT_REQUESTED_IP, o.address.octets().to_vec()));
        p.options.push((OPT_SERVER_ID, o.server.octets().to_vec()));
    }
    if let Some(h) = hostname.filter(|h| !h.is_empty()) {
        p.options.push((OPT_HOSTNAME, h.as_bytes().to_vec()));
    }
    p.options.push((OPT_PARAMETER_LIST, WANTED.to_vec()));
    p
}

/// Whether `p` answers our message `xid` from `mac`.
fn ours(p: &Packet, xid: u32, mac: [u8; 6]) -> bool {
    p.op == 2 && p.xid == xid && p.chaddr == mac
}

/// A transaction id that differs between runs and clients.
fn new_xid(mac: [u8; 6]) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let m = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16) ^ m ^ std::process::id())
        .wrapping_mul(2_654_435_761)
}

/// The UDP socket bound to port 68 on `iface` (see the module's notes).
pub fn client_socket(iface: &str) -> std::io::Result<UdpSocket> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_broadcast(&fd, true)?;
    bind_to_device(&fd, iface)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))?;
    Ok(UdpSocket::from(fd))
}

/// SO_BINDTODEVICE: the socket sends out of and receives from `iface`
/// only. rustix has no wrapper for it.
pub fn bind_to_device(fd: &impl std::os::fd::AsRawFd, iface: &str) -> std::io::Result<()> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= 16 || name.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{iface:?} is not an interface name"),
        ));
    }
    // SAFETY: the pointer and length describe `name`, a live byte slice;
    // the kernel copies at most `len` bytes (the name need not end in NUL
    // when the length is given) and keeps no reference to it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs DISCOVER/OFFER/REQUEST/ACK on `iface` (already up) and returns
/// the acknowledged lease. Retransmits after 1, 2, 4, 4, ... s (RFC 2131
/// 4.1 suggests 4 s doubling; a rescue console wants an answer sooner).
/// A NAK starts over. `say` gets one line per step.
pub fn acquire(
    iface: &str,
    mac: [u8; 6],
    opts: &Options,
    say: &dyn Fn(&str),
) -> Result<Lease, Error> {
    let sock = client_socket(iface).map_err(Error::Socket)?;
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
    let mut attempts = 0u32;
    let mut stage = "no OFFER";
    let mut buf = [0u8; 1500];
    let timeout_error = |stage, attempts| Error::Timeout {
        iface: iface.to_string(),
        secs: opts.timeout.as_secs(),
        stage,
        attempts,
    };
    'restart: loop {
        let xid = new_xid(mac);
        let mut offer: Option<Lease> = None;
        let mut wait = Duration::from_secs(1);
        let mut requests = 0;
        'send: loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(timeout_error(stage, attempts));
            }
            let secs = now.duration_since(start).as_secs().min(u64::from(u16::MAX)) as u16;
            let kind = if offer.is_some() {
                Kind::Request
            } else {
                Kind::Discover
            };
            let msg = client_message(
                kind,
                xid,
                mac,
                secs,
                offer.as_ref(),
                opts.hostname.as_deref(),
            );
            attempts += 1;
            say(&match &offer {
                None => format!("DHCP on {iface}: DISCOVER (attempt {attempts})"),
                Some(o) => format!("DHCP on {iface}: REQUEST {} from {}", o.address, o.server),
            });
            sock.send_to(&msg.encode(), to).map_err(Error::Socket)?;
            let until = (Instant::now() + wait).min(deadline);
            wait = (wait * 2).min(Duration::from_secs(4));
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left)).map_err(Error::Socket)?;
                let n = match sock.recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::Socket(e)),
                };
                let Ok(p) = Packet::decode(&buf[..n]) else {
                    continue;
                };
                if !ours(&p, xid, mac) {
                    continue;
                }
                match (p.kind(), &offer) {
                    (Some(Kind::Offer), None) => {
                        if let Some(l) = Lease::from_reply(&p) {
                            say(&format!(
                                "DHCP on {iface}: OFFER {}/{} from {}",
                                l.address, l.prefix, l.server
                            ));
                            offer = Some(l);
                            stage = "no ACK";
                            wait = Duration::from_secs(1);
                            continue 'send;
                        }
                    }
                    (Some(Kind::Ack), Some(o)) => {
                        let server_matches =
                            p.ip_option(OPT_SERVER_ID).is_none_or(|s| s == o.server);
                        if server_matches {
                            if let Some(mut l) = Lease::from_reply(&p) {
                                // An ACK may leave out what the OFFER said.
                                if l.gateway.is_none() {
                                    l.gateway = o.gateway;
                                }
                                if l.dns.is_empty() {
                                    l.dns = o.dns.clone();
                                }
                                return Ok(l);
                            }
                        }
                    }
                    (Some(Kind::Nak), Some(o)) => {
                        say(&format!(
                            "DHCP on {iface}: NAK from {}; starting over",
                            o.server
                        ));
                        stage = "no OFFER";
                        continue 'restart;
                    }
                    _ => {}
                }
            }
            if offer.is_some() {
                requests += 1;
                if requests >= 4 {
                    say(&format!("DHCP on {iface}: no ACK; starting over"));
                    stage = "no OFFER";
                    continue 'restart;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn discover_bytes_follow_rfc_2131() {
        let p = client_message(Kind::Discover, 0x3903_f326, MAC, 0, None, Some("rescue"));
        let b = p.encode();
        assert_eq!(b.len(), 548);
        assert_eq!(&b[0..4], &[1, 1, 6, 0]);
        assert_eq!(&b[4..8], &[0x39, 0x03, 0xf3, 0x26]);
        assert_eq!(&b[8..12], &[0, 0, 0x80, 0]);
        assert_eq!(&b[12..28], &[0; 16]);
        assert_eq!(&b[28..34], &MAC);
        assert_eq!(&b[34..236], &[0; 202][..]);
        assert_eq!(&b[236..240], &[99, 130, 83, 99]);
        // 53 = 1 (DISCOVER), 61 = type 1 + MAC, 57 = 1500, 12, 55, end.
        let mut opts = vec![53, 1, 1, 61, 7, 1];
        opts.extend_from_slice(&MAC);
        opts.extend_from_slice(&[57, 2, 0x05, 0xdc, 12, 6]);
        opts.extend_from_slice(b"rescue");
        opts.extend_from_slice(&[55, 5, 1, 3, 6, 51, 54, 255]);
        assert_eq!(&b[240..240 + opts.len()], &opts[..]);
        assert!(b[240 + opts.len()..].iter().all(|&x| x == 0));
        assert_eq!(Packet::decode(&b).unwrap(), p);
    }

    #[test]
    fn request_carries_the_offer() {
        let o = Lease {
            address: Ipv4Addr::new(192, 0, 2, 10),
            prefix: 24,
            gateway: None,
            dns: vec![],
            lease_secs: None,
            server: Ipv4Addr::new(192, 0, 2, 1),
        };
        let p = client_message(Kind::Request, 1, MAC, 3, Some(&o), None);
        let d = Packet::decode(&p.encode()).unwrap();
        assert_eq!(d.kind(), Some(Kind::Request));
        assert_eq!(d.secs, 3);
        assert_eq!(d.option(OPT_REQUESTED_IP), Some(&[192, 0, 2, 10][..]));
        assert_eq!(d.option(OPT_SERVER_ID), Some(&[192, 0, 2, 1][..]));
        assert_eq!(d.option(OPT_HOSTNAME), None);
    }

    /// An ACK as QEMU's user-mode server sends it (slirp's bootp.c): yiaddr
    /// 10.0.2.15, options 53, 54, 51, 1, 3, 6, end.
    fn slirp_ack() -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 2, 15]);
        b[20..24].copy_from_slice(&[10, 0, 2, 2]);
        b[28..34].copy_from_slice(&MAC);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend_from_slice(&[53, 1, 5]);
        b.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        b.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]);
        b.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        b.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
        b.extend_from_slice(&[0, 0]); // pads
        b.extend_from_slice(&[6, 4, 10, 0, 2, 3]);
        b.push(255);
        b.resize(548, 0);
        b
    }

    #[test]
    fn lease_from_an_ack() {
        let p = Packet::decode(&slirp_ack()).unwrap();
        assert_eq!(p.kind(), Some(Kind::Ack));
        assert!(ours(&p, 0x1234_5678, MAC));
        assert!(!ours(&p, 0x1234_5679, MAC));
        let l = Lease::from_reply(&p).unwrap();
        assert_eq!(
            l,
            Lease {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                lease_secs: Some(86400),
                server: Ipv4Addr::new(10, 0, 2, 2),
            }
        );
    }

    #[test]
    fn split_options_are_concatenated_and_masks_checked() {
        let mut b = slirp_ack();
        b.truncate(240);
        b.extend_from_slice(&[6, 4, 10, 0, 2, 3, 6, 4, 10, 0, 2, 4, 255]);
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.option(OPT_DNS), Some(&[10, 0, 2, 3, 10, 0, 2, 4][..]));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
        // No mask: the class of 10.x is A; no server id: siaddr.
        let l = Lease::from_reply(&p).unwrap();
        assert_eq!((l.prefix, l.server), (8, Ipv4Addr::new(10, 0, 2, 2)));
        b[20..24].copy_from_slice(&[0; 4]);
        assert_eq!(Lease::from_reply(&Packet::decode(&b).unwrap()), None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Packet::decode(&[2; 100]).unwrap_err();
        assert_eq!((e.field, e.offset), ("message", 0));
        let mut b = slirp_ack();
        b[236] = 1;
        let e = Packet::decode(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("magic cookie", 236));
        assert!(e.to_string().contains("99.130.83.99"), "{e}");
        let mut b = slirp_ack();
        b.truncate(243);
        b[241] = 9; // option 53 claims 9 bytes
        let e = Packet::decode(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("option", 240));
        let mut b = slirp_ack();
        b.truncate(241);
        assert_eq!(Packet::decode(&b).unwrap_err().field, "option length");
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(p) = Packet::decode(&bytes) {
                let _ = p.kind();
                let _ = Lease::from_reply(&p);
            }
        }

        #[test]
        fn decoder_never_panics_on_options(opts in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = slirp_ack();
            b.truncate(240);
            b.extend_from_slice(&opts);
            if let Ok(p) = Packet::decode(&b) {
                let _ = Lease::from_reply(&p);
            }
        }

        #[test]
        fn messages_round_trip(xid in any::<u32>(), secs in any::<u16>(), name in "[a-z]{0,300}") {
            let p = client_message(Kind::Discover, xid, MAC, secs, None, Some(&name));
            prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
    }
}
