//! `--allow`: the client addresses served, as IPv4 addresses and CIDR
//! blocks (`192.168.1.20`, `10.1.0.0/16`). Nothing is allowed by default;
//! `0.0.0.0/0` allows every client, and only when typed.

use std::net::Ipv4Addr;

/// One allowed block: an address and a prefix length (32 for one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The network address (host bits cleared).
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Block {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & Block::mask(self.prefix) == u32::from(self.net)
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix == 32 {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

/// The clients allowed: never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList(Vec<Block>);

impl AllowList {
    /// Parses `--allow` values, each a comma-separated list of entries.
    /// Errors name the entry and what was expected; an empty list is an
    /// error (there is no allow-all default).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<AllowList, String> {
        let mut blocks = Vec::new();
        for v in values {
            for entry in v.as_ref().split(',').map(str::trim) {
                if entry.is_empty() {
                    continue;
                }
                blocks.push(parse_entry(entry)?);
            }
        }
        if blocks.is_empty() {
            return Err(
                "--allow: give the lab host's address (A.B.C.D or A.B.C.D/N); nobody is allowed by default"
                    .into(),
            );
        }
        Ok(AllowList(blocks))
    }

    pub fn allows(&self, a: Ipv4Addr) -> bool {
        self.0.iter().any(|b| b.contains(a))
    }

    /// Whether every client is allowed (`0.0.0.0/0`).
    pub fn allows_everyone(&self) -> bool {
        self.0.iter().any(|b| b.prefix == 0)
    }

    pub fn blocks(&self) -> &[Block] {
        &self.0
    }

    /// As typed back: `10.0.0.5, 192.168.0.0/24`.
    pub fn text(&self) -> Vec<String> {
        self.0.iter().map(Block::to_string).collect()
    }
}

/// `A.B.C.D` or `A.B.C.D/N` (host bits are cleared: `10.0.0.5/24` is
/// `10.0.0.0/24`).
fn parse_entry(entry: &str) -> Result<Block, String> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => {
            let prefix: u8 = p.parse().ok().filter(|n| *n <= 32).ok_or_else(|| {
                format!("--allow {entry:?}: prefix length {p:?}, expected 0 to 32")
            })?;
            (a, prefix)
        }
        None => (entry, 32),
    };
    let a: Ipv4Addr = addr.parse().map_err(|_| {
        format!(
            "--allow {entry:?}: {addr:?} is not an IPv4 address (expected A.B.C.D or A.B.C.D/N)"
        )
    })?;
    Ok(Block {
        net: Ipv4Addr::from(u32::from(a) & Block::mask(prefix)),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosts_and_blocks() {
        let l = AllowList::parse(&["192.168.1.20, 10.1.2.3/16", "127.0.0.2"]).unwrap();
        assert_eq!(l.text(), ["192.168.1.20", "10.1.0.0/16", "127.0.0.2"]);
        assert!(l.allows("192.168.1.20".parse().unwrap()));
        assert!(!l.allows("192.168.1.21".parse().unwrap()));
        assert!(l.allows("10.1.255.7".parse().unwrap()));
        assert!(!l.allows("10.2.0.1".parse().unwrap()));
        assert!(!l.allows("127.0.0.1".parse().unwrap()));
        assert!(!l.allows_everyone());
        let all = AllowList::parse(&["0.0.0.0/0"]).unwrap();
        assert!(all.allows_everyone());
        assert!(all.allows("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert!(AllowList::parse::<&str>(&[])
            .unwrap_err()
            .contains("nobody"));
        assert!(AllowList::parse(&[" , "]).is_err());
        let e = AllowList::parse(&["10.0.0.1/33"]).unwrap_err();
        assert!(e.contains("\"33\"") && e.contains("0 to 32"), "{e}");
        let e = AllowList::parse(&["lab-host"]).unwrap_err();
        assert!(e.contains("not an IPv4 address"), "{e}");
        assert!(AllowList::parse(&["::1"]).is_err());
        assert!(AllowList::parse(&["10.0.0.1/"]).is_err());
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs(s in ".{0,40}") {
            let _ = AllowList::parse(&[s]);
        }

        #[test]
        fn a_block_holds_exactly_its_addresses(a in any::<u32>(), b in any::<u32>(), p in 0u8..=32) {
            let l = AllowList::parse(&[format!("{}/{p}", Ipv4Addr::from(a))]).unwrap();
            let same = p == 0 || (a ^ b) >> (32 - u32::from(p)) == 0;
            prop_assert_eq!(l.allows(Ipv4Addr::from(b)), same);
            prop_assert!(l.allows(Ipv4Addr::from(a)));
        }
    }
}
