//! The kernel command line's network options, as a plan:
//!
//! - `rescue.net=dhcp`: DHCP on the first link with carrier;
//! - `rescue.net=ADDR/P,GW[,DNS[,DNS...]]`: a static address (GW may be
//!   empty: `192.0.2.10/24,,192.0.2.53`);
//! - `rescue.net=off`: nothing, even after a PXE boot;
//! - `BOOTIF=01-aa-bb-cc-dd-ee-ff` (pxelinux's IPAPPEND 2, iPXE's
//!   `BOOTIF=01-${netX/mac:hexhyp}`): the link with that MAC is the one to
//!   bring up, by DHCP unless `rescue.net=` says how.
//!
//! Without either, nothing is planned. The last occurrence of an option
//! wins, as for the kernel's own.

use crate::{Method, StaticConfig};
use std::net::Ipv4Addr;

/// Which link to bring up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The link with this MAC (BOOTIF).
    Mac([u8; 6]),
    /// The first link (by index) with carrier that is not loopback.
    FirstWithCarrier,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    pub method: Method,
}

/// The plan, and what could not be understood (one line each, naming the
/// option and the value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub plan: Option<Plan>,
    pub problems: Vec<String>,
}

/// `aa-bb-cc-dd-ee-ff` or with `:`; case-insensitive.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(['-', ':']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `ADDR/P` with P from 0 to 32; a bare ADDR is refused (say the prefix).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected ADDR/PREFIX, e.g. 192.0.2.10/24"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?}: not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{p:?}: expected a prefix length from 0 to 32"))?;
    Ok((addr, prefix))
}

/// `ADDR/P,GW[,DNS...]` (the value of `rescue.net=`).
pub fn parse_static(v: &str) -> Result<StaticConfig, String> {
    let mut parts = v.split(',');
    let (address, prefix) = parse_cidr(parts.next().unwrap_or(""))?;
    let gateway = match parts.next() {
        None | Some("") => None,
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| format!("gateway {g:?}: not an IPv4 address"))?,
        ),
    };
    let dns = parts
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<Ipv4Addr>()
                .map_err(|_| format!("DNS server {d:?}: not an IPv4 address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StaticConfig {
        address,
        prefix,
        gateway,
        dns,
    })
}

enum NetOption {
    Off,
    Method(Method),
}

/// The plan of a whole /proc/cmdline.
pub fn parse(cmdline: &str) -> Parsed {
    let mut net: Option<NetOption> = None;
    let mut bootif: Option<[u8; 6]> = None;
    let mut problems = Vec::new();
    for word in cmdline.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let value = value.trim_matches('"');
        match key {
            "rescue.net" => match value {
                "dhcp" => net = Some(NetOption::Method(Method::Dhcp)),
                "off" | "none" => net = Some(NetOption::Off),
                v => match parse_static(v) {
                    Ok(s) => net = Some(NetOption::Method(Method::Static(s))),
                    Err(e) => problems.push(format!(
                        "rescue.net={v}: {e} (expected dhcp, off or ADDR/P,GW[,DNS])"
                    )),
                },
            },
            "BOOTIF" => {
                // "01-" is the ARP hardware type of Ethernet; pxelinux
                // always writes it, some setups pass the bare MAC.
                let mac = value
                    .strip_prefix("01-")
                    .filter(|m| m.len() == 17)
                    .unwrap_or(value);
                match parse_mac(mac) {
                    Some(m) => bootif = Some(m),
                    None => problems.push(format!("BOOTIF={value}: expected 01-aa-bb-cc-dd-ee-ff")),
                }
            }
            _ => {}
        }
    }
    let target = match bootif {
        Some(m) => Target::Mac(m),
        None => Target::FirstWithCarrier,
    };
    let plan = match net {
        Some(NetOption::Off) => None,
        Some(NetOption::Method(method)) => Some(Plan { target, method }),
        None if bootif.is_some() => Some(Plan {
            target,
            method: Method::Dhcp,
        }),
        None => None,
    };
    Parsed { plan, problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn nothing_without_options() {
        assert_eq!(
            parse("BOOT_IMAGE=/vmlinuz console=ttyS0 quiet"),
            Parsed::default()
        );
        assert_eq!(parse(""), Parsed::default());
    }

    #[test]
    fn dhcp_on_the_first_link() {
        let p = parse("quiet rescue.net=dhcp");
        assert_eq!(
            p.plan,
            Some(Plan {
                target: Target::FirstWithCarrier,
                method: Method::Dhcp
            })
        );
        assert!(p.problems.is_empty());
    }

    #[test]
    fn pxe_boot_brings_up_its_interface_by_dhcp() {
        let p = parse("initrd=initramfs.img BOOTIF=01-AA-bb-cc-dd-ee-ff ip=dhcp");
        assert_eq!(
            p.plan,
            Some(Plan {
                target: Target::Mac(MAC),
                method: Method::Dhcp
            })
        );
        // The bare MAC, with colons, is accepted too.
        assert_eq!(
            parse("BOOTIF=aa:bb:cc:dd:ee:ff").plan.unwrap().target,
            Target::Mac(MAC)
        );
    }

    #[test]
    fn static_address_with_bootif() {
        let p = parse("BOOTIF=01-aa-bb-cc-dd-ee-ff rescue.net=192.0.2.10/24,192.0.2.1,198.51.100.53,198.51.100.54");
        assert_eq!(
            p.plan,
            Some(Plan {
                target: Target::Mac(MAC),
                method: Method::Static(StaticConfig {
                    address: ip(192, 0, 2, 10),
                    prefix: 24,
                    gateway: Some(ip(192, 0, 2, 1)),
                    dns: vec![ip(198, 51, 100, 53), ip(198, 51, 100, 54)],
                })
            })
        );
        let p = parse("rescue.net=192.0.2.10/24,,192.0.2.53");
        let Method::Static(s) = p.plan.unwrap().method else {
            panic!()
        };
        assert_eq!((s.gateway, s.dns), (None, vec![ip(192, 0, 2, 53)]));
        let p = parse("rescue.net=192.0.2.10/24");
        assert!(p.plan.is_some());
    }

    #[test]
    fn off_wins_over_bootif_and_the_last_option_wins() {
        assert_eq!(
            parse("BOOTIF=01-aa-bb-cc-dd-ee-ff rescue.net=off").plan,
            None
        );
        assert_eq!(
            parse("rescue.net=off rescue.net=dhcp").plan.unwrap().method,
            Method::Dhcp
        );
    }

    #[test]
    fn bad_values_are_named() {
        let p = parse("rescue.net=192.0.2.10 BOOTIF=01-aa-bb");
        assert_eq!(p.plan, None);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(
            p.problems[0].starts_with("rescue.net=192.0.2.10: "),
            "{:?}",
            p.problems
        );
        assert!(p.problems[0].contains("ADDR/PREFIX"), "{:?}", p.problems);
        assert!(
            p.problems[1].starts_with("BOOTIF=01-aa-bb:"),
            "{:?}",
            p.problems
        );
        for bad in [
            "rescue.net=192.0.2.10/33,192.0.2.1",
            "rescue.net=192.0.2.300/24",
            "rescue.net=192.0.2.10/24,gw",
            "rescue.net=192.0.2.10/24,192.0.2.1,dns",
            "rescue.net=DHCP",
        ] {
            let p = parse(bad);
            assert_eq!((p.plan.is_none(), p.problems.len()), (true, 1), "{bad}");
        }
        // A bad rescue.net= with BOOTIF still does DHCP on the PXE link.
        let p = parse("BOOTIF=01-aa-bb-cc-dd-ee-ff rescue.net=x");
        assert_eq!(p.plan.unwrap().method, Method::Dhcp);
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_option_like_words(words in proptest::collection::vec(
            "(rescue\\.net|BOOTIF)=[0-9a-fA-F./,:x-]{0,40}", 0..5)) {
            let _ = parse(&words.join(" "));
        }
    }
}
