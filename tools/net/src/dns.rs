//! Host names to IPv4 addresses, for network destinations (`nfs://HOST/...`):
//! an address literal, then `/etc/hosts`, then one A-record query over UDP
//! to each DNS server of `/etc/resolv.conf` in turn. No search domains, no
//! IPv6, no TCP fallback: a name a lab types, answered by its DNS server.
//!
//! The message layout (RFC 1035 section 4.1), big-endian:
//!
//! ```text
//! header, 12 bytes:
//!   0  u16 id          echoed by the server
//!   2  u16 flags       query: RD (0x0100); answer: QR (0x8000), RCODE low 4 bits
//!   4  u16 qdcount     questions (1)
//!   6  u16 ancount     answers
//!   8  u16 nscount     authority records (skipped)
//!  10  u16 arcount     additional records (skipped)
//! question: name (labels, each a length byte then bytes, ending in 0),
//!   u16 type (A = 1), u16 class (IN = 1)
//! answer record: name (labels, or a 2-byte pointer 0xC000 | offset),
//!   u16 type, u16 class, u32 ttl, u16 rdlength, rdata (A: 4 bytes)
//! ```

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::Duration;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;

/// Whether `name` is a host name the query can carry: dot-separated labels
/// of 1 to 63 letters, digits and hyphens, at most 253 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A query for the A records of `name` (recursion desired).
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    if !valid_name(name) {
        return Err(format!("{name:?}: not a host name"));
    }
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q.extend_from_slice(&[0; 6]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn u16_at(b: &[u8], at: usize, what: &str) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| {
            format!(
                "DNS answer: {what} at offset {at} past the end ({} bytes)",
                b.len()
            )
        })
}

/// The offset just after the name starting at `at` (labels or a pointer).
fn skip_name(b: &[u8], mut at: usize) -> Result<usize, String> {
    // A name is at most 255 bytes: as many labels bound the walk.
    for _ in 0..128 {
        let len = *b
            .get(at)
            .ok_or_else(|| format!("DNS answer: name at offset {at} past the end"))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => {
                if at + 2 > b.len() {
                    return Err(format!("DNS answer: name pointer at offset {at} cut short"));
                }
                return Ok(at + 2);
            }
            l if l & 0xC0 != 0 => {
                return Err(format!(
                    "DNS answer: label length byte {l:#04x} at offset {at} (expected < 64 or a pointer)"
                ))
            }
            l => at += 1 + l as usize,
        }
    }
    Err(format!(
        "DNS answer: name at offset {at} has too many labels"
    ))
}

/// The IPv4 addresses in the answer to query `id`: an answer to another
/// query, a truncated or failed answer, or a malformed one is an error
/// naming what and where. Never panics.
pub fn parse_answer(id: u16, b: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    if b.len() < HEADER {
        return Err(format!(
            "DNS answer: {} bytes, shorter than the 12-byte header",
            b.len()
        ));
    }
    let got_id = u16_at(b, 0, "id")?;
    if got_id != id {
        return Err(format!("DNS answer: id {got_id:#06x}, expected {id:#06x}"));
    }
    let flags = u16_at(b, 2, "flags")?;
    if flags & 0x8000 == 0 {
        return Err("DNS answer: a query, not an answer (QR bit clear)".into());
    }
    if flags & 0x0200 != 0 {
        return Err("DNS answer: truncated (TC bit set)".into());
    }
    match flags & 0x000F {
        0 => {}
        3 => return Err("no such name (NXDOMAIN)".into()),
        rcode => return Err(format!("the DNS server answered with error code {rcode}")),
    }
    let qd = u16_at(b, 4, "qdcount")?;
    let an = u16_at(b, 6, "ancount")?;
    let mut at = HEADER;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(b, at)?;
        let rtype = u16_at(b, at, "record type")?;
        let class = u16_at(b, at + 2, "record class")?;
        let rdlen = u16_at(b, at + 8, "record data length")? as usize;
        let data = b.get(at + 10..at + 10 + rdlen).ok_or_else(|| {
            format!(
                "DNS answer: record data of {rdlen} bytes at offset {} past the end ({} bytes)",
                at + 10,
                b.len()
            )
        })?;
        // CNAME records come before the A records they lead to: skipped.
        if rtype == TYPE_A && class == CLASS_IN {
            let a: [u8; 4] = data.try_into().map_err(|_| {
                format!(
                    "DNS answer: A record of {rdlen} bytes at offset {} (expected 4)",
                    at + 10
                )
            })?;
            out.push(Ipv4Addr::from(a));
        }
        at += 10 + rdlen;
    }
    Ok(out)
}

/// The address of `name` in the text of `/etc/hosts`, if listed.
pub fn from_hosts(text: &str, name: &str) -> Option<Ipv4Addr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let addr: Ipv4Addr = w.next()?.parse().ok()?;
            w.any(|n| n.eq_ignore_ascii_case(name)).then_some(addr)
        })
}

/// One query to `server` (port 53) for `name`, waiting `timeout` for the
/// answer (twice).
pub fn query(server: Ipv4Addr, name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>, String> {
    query_at(SocketAddrV4::new(server, 53), name, timeout)
}

/// [`query`] to a server on any port.
pub fn query_at(
    server: SocketAddrV4,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(server)
        .map_err(|e| format!("DNS server {server}: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // An id that differs between runs is enough here: the socket is
    // connected, so only the server's datagrams arrive.
    let id = (std::process::id() as u16)
        ^ (std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.subsec_nanos())
            .unwrap_or(0) as u16);
    let q = encode_query(id, name)?;
    let mut buf = [0u8; 1500];
    for _ in 0..2 {
        sock.send(&q)
            .map_err(|e| format!("DNS server {server}: {e}"))?;
        match sock.recv(&mut buf) {
            Ok(n) => return parse_answer(id, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("DNS server {server}: {e}")),
        }
    }
    Err(format!(
        "DNS server {server}: no answer within {} s",
        timeout.as_secs() * 2
    ))
}

/// Where [`resolve`] looks: `/etc/hosts` and `/etc/resolv.conf` in the
/// appliance, files of a test's own elsewhere.
pub struct Files<'a> {
    pub hosts: &'a Path,
    pub resolv_conf: &'a Path,
}

impl Files<'static> {
    pub fn system() -> Files<'static> {
        Files {
            hosts: Path::new("/etc/hosts"),
            resolv_conf: Path::new("/etc/resolv.conf"),
        }
    }
}

/// `host` as an IPv4 address: a literal, a name in the hosts file, or the
/// first A record a DNS server of resolv.conf gives.
pub fn resolve(host: &str, files: &Files<'_>) -> Result<Ipv4Addr, String> {
    if let Ok(a) = host.parse::<Ipv4Addr>() {
        return Ok(a);
    }
    if !valid_name(host) {
        return Err(format!("{host:?}: neither an IPv4 address nor a host name"));
    }
    if let Some(a) = std::fs::read_to_string(files.hosts)
        .ok()
        .and_then(|t| from_hosts(&t, host))
    {
        return Ok(a);
    }
    let servers = std::fs::read_to_string(files.resolv_conf)
        .map(|t| crate::parse_resolv_conf(&t))
        .unwrap_or_default();
    if servers.is_empty() {
        return Err(format!(
            "{host}: not in {} and no DNS server known ({} lists none: bring the network up \
             with DHCP or --dns, or give the address)",
            files.hosts.display(),
            files.resolv_conf.display()
        ));
    }
    let mut why = Vec::new();
    for s in servers {
        match query(s, host, Duration::from_secs(2)) {
            Ok(a) if !a.is_empty() => return Ok(a[0]),
            Ok(_) => why.push(format!("{s}: no IPv4 address")),
            Err(e) => why.push(format!("{s}: {e}")),
        }
    }
    Err(format!("{host}: not resolved ({})", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An answer as a server writes it: the question echoed, a CNAME, then
    /// the A records, names compressed as pointers to the question.
    fn answer(id: u16, name: &str, addrs: &[[u8; 4]]) -> Vec<u8> {
        let mut b = encode_query(id, name).unwrap();
        b[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
        b[6..8].copy_from_slice(&(1 + addrs.len() as u16).to_be_bytes());
        // CNAME to "x" + the name (pointer 0xC00C), skipped by the parser.
        b.extend_from_slice(&[
            0xC0, 0x0C, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xC0, 0x0C,
        ]);
        for a in addrs {
            b.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4]);
            b.extend_from_slice(a);
        }
        b
    }

    #[test]
    fn a_query_is_laid_out_as_rfc_1035_says() {
        let q = encode_query(0xBEEF, "nas.lab").unwrap();
        assert_eq!(
            q,
            [
                0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'n', b'a', b's', 3, b'l', b'a', b'b',
                0, 0, 1, 0, 1
            ]
        );
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, "a b").is_err());
        assert!(encode_query(1, &"x".repeat(64)).is_err());
        assert!(encode_query(1, "").is_err());
    }

    #[test]
    fn answers_give_their_a_records_and_errors_say_what() {
        let a = answer(7, "nas.lab", &[[10, 0, 2, 100], [10, 0, 2, 101]]);
        assert_eq!(
            parse_answer(7, &a).unwrap(),
            [Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 101)]
        );
        assert!(parse_answer(8, &a).unwrap_err().contains("id 0x0007"));
        let mut nx = a.clone();
        nx[3] |= 3;
        assert!(parse_answer(7, &nx).unwrap_err().contains("NXDOMAIN"));
        let mut tc = a.clone();
        tc[2] |= 0x02;
        assert!(parse_answer(7, &tc).unwrap_err().contains("truncated"));
        let q = encode_query(7, "nas.lab").unwrap();
        assert!(parse_answer(7, &q).unwrap_err().contains("not an answer"));
        let cut = &a[..a.len() - 2];
        assert!(
            parse_answer(7, cut).unwrap_err().contains("past the end"),
            "{:?}",
            parse_answer(7, cut)
        );
        assert!(parse_answer(7, &a[..5]).unwrap_err().contains("header"));
    }

    #[test]
    fn hosts_file_lines_are_matched_by_any_name() {
        let t =
            "127.0.0.1 localhost\n# 10.9.9.9 nas\n10.0.2.100\tnas nas.lab # the lab NAS\n::1 ip6\n";
        assert_eq!(from_hosts(t, "NAS.lab"), Some(Ipv4Addr::new(10, 0, 2, 100)));
        assert_eq!(from_hosts(t, "nas"), Some(Ipv4Addr::new(10, 0, 2, 100)));
        assert_eq!(from_hosts(t, "ip6"), None);
        assert_eq!(from_hosts(t, "other"), None);
    }

    #[test]
    fn resolve_takes_literals_then_the_hosts_file() {
        let d = std::env::temp_dir().join(format!("net-dns-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts"), "10.1.2.3 nas\n").unwrap();
        std::fs::write(d.join("resolv.conf"), "").unwrap();
        let files = Files {
            hosts: &d.join("hosts"),
            resolv_conf: &d.join("resolv.conf"),
        };
        assert_eq!(
            resolve("10.0.2.100", &files).unwrap(),
            Ipv4Addr::new(10, 0, 2, 100)
        );
        assert_eq!(resolve("nas", &files).unwrap(), Ipv4Addr::new(10, 1, 2, 3));
        let e = resolve("other", &files).unwrap_err();
        assert!(e.contains("no DNS server known"), "{e}");
        assert!(resolve("a;b", &files).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_query_reaches_a_server_and_its_answer_comes_back() {
        // A one-answer DNS server on loopback, on a port of its own.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let name = "nas.lab";
            assert_eq!(&buf[..n], &encode_query(id, name).unwrap()[..]);
            server
                .send_to(&answer(id, name, &[[192, 0, 2, 7]]), from)
                .unwrap();
        });
        let got = query_at(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            "nas.lab",
            Duration::from_secs(5),
        );
        assert_eq!(got.unwrap(), [Ipv4Addr::new(192, 0, 2, 7)]);
    }

    proptest! {
        #[test]
        fn the_answer_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_answer(u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]), &bytes);
        }

        #[test]
        fn corrupted_answers_never_panic(pos in 0usize..80, val in any::<u8>(), cut in 0usize..80) {
            let mut a = answer(9, "nas.lab", &[[10, 0, 0, 1]]);
            let p = pos % a.len();
            a[p] = val;
            a.truncate(a.len() - cut.min(a.len()));
            let _ = parse_answer(9, &a);
        }
    }
}
