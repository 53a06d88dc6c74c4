//! `rescue net`: list links, bring one up (DHCP or static), take one down.

use crate::{cmdline, dhcp, Method, Overview, Paths, StaticConfig, UpRequest, UpTarget};
use argh::FromArgs;
use cliconv::Exit;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Version of the `--json` documents of `net list` and `net up`.
pub const JSON_SCHEMA: u32 = 1;

#[derive(FromArgs, Debug, PartialEq)]
/// The network: links (MAC, state, driver, speed), IPv4 addresses, the
/// default route and DNS servers; bring a link up by DHCP or with a static
/// address, or take it down. Nothing is configured at boot unless the
/// kernel command line says rescue.net=dhcp, rescue.net=ADDR/P,GW[,DNS] or
/// (PXE) BOOTIF=01-MAC. Without an action: list.
#[argh(
    subcommand,
    name = "net",
    error_code(0, "done: listed, or see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the action failed"
    )
)]
pub struct NetCommand {
    #[argh(subcommand)]
    pub action: Option<Action>,
    /// JSON output (for the list)
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Action {
    List(ListCommand),
    Up(UpCommand),
    Down(DownCommand),
}

#[derive(FromArgs, Debug, PartialEq)]
/// List the links (name, MAC, state, carrier, driver, speed) with their
/// IPv4 addresses, the default route, the DNS servers of /etc/resolv.conf
/// and what `net up` configured.
#[argh(
    subcommand,
    name = "list",
    error_code(0, "done: the list was printed"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), netlink could not be read, or the output could not be written"
    )
)]
pub struct ListCommand {
    /// JSON output
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
/// Bring a link up: set it up, wait for carrier (10 s), then DHCP
/// (the default) or the static --addr/--gw/--dns; the default route is
/// replaced and /etc/resolv.conf written when DNS servers are known.
/// Without IFACE: the first link with carrier other than lo. The DHCP
/// lease is recorded in /run/rescue/net.json but not renewed: run `net up`
/// again before it ends (QEMU's and most lab servers' leases last a day).
#[argh(
    subcommand,
    name = "up",
    error_code(0, "done: the link is up with its address"),
    error_code(2, "error: usage error (unknown option, --dhcp with --addr, --gw or --dns without --addr), no such interface, no carrier (DHCP), no DHCP answer before --timeout, or netlink refused")
)]
pub struct UpCommand {
    /// the interface, e.g. eth0 (default: the first with carrier)
    #[argh(positional)]
    pub iface: Option<String>,
    /// get the address by DHCP (the default without --addr)
    #[argh(switch)]
    pub dhcp: bool,
    /// static address with prefix length, e.g. 192.0.2.10/24
    #[argh(option)]
    pub addr: Option<String>,
    /// default gateway (with --addr)
    #[argh(option)]
    pub gw: Option<String>,
    /// DNS servers, comma-separated (with --addr)
    #[argh(option)]
    pub dns: Option<String>,
    /// DHCP: give up after this many seconds (default 30)
    #[argh(option, default = "30")]
    pub timeout: u64,
    /// DHCP: send this host name (option 12)
    #[argh(option)]
    pub hostname: Option<String>,
    /// print what was configured as JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
/// Take a link down: its IPv4 addresses (and routes through it) are removed
/// and it is set down.
#[argh(
    subcommand,
    name = "down",
    error_code(0, "done: the link is down"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), no such interface, or netlink refused"
    )
)]
pub struct DownCommand {
    /// the interface, e.g. eth0
    #[argh(positional)]
    pub iface: String,
}

/// The method `net up`'s options ask for.
pub fn method_of(cmd: &UpCommand) -> Result<Method, String> {
    let Some(addr) = &cmd.addr else {
        if cmd.gw.is_some() || cmd.dns.is_some() {
            return Err("--gw and --dns go with --addr (DHCP gives its own)".into());
        }
        return Ok(Method::Dhcp);
    };
    if cmd.dhcp {
        return Err("--dhcp and --addr exclude each other".into());
    }
    let (address, prefix) = cmdline::parse_cidr(addr).map_err(|e| format!("--addr {e}"))?;
    let gateway = match &cmd.gw {
        None => None,
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| format!("--gw {g:?}: not an IPv4 address"))?,
        ),
    };
    let dns = match &cmd.dns {
        None => Vec::new(),
        Some(d) => d
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.parse::<Ipv4Addr>()
                    .map_err(|_| format!("--dns {x:?}: not an IPv4 address"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Method::Static(StaticConfig {
        address,
        prefix,
        gateway,
        dns,
    }))
}

/// The `net up` request of the command line.
pub fn request_of(cmd: &UpCommand) -> Result<UpRequest, String> {
    Ok(UpRequest {
        target: match &cmd.iface {
            Some(n) => UpTarget::Name(n.clone()),
            None => UpTarget::FirstWithCarrier,
        },
        method: method_of(cmd)?,
        dhcp: dhcp::Options {
            timeout: Duration::from_secs(cmd.timeout.max(1)),
            hostname: cmd.hostname.clone(),
        },
        carrier_wait: crate::CARRIER_WAIT,
    })
}

/// The list as text.
pub fn render(o: &Overview) -> String {
    let mut s = String::new();
    for l in &o.links {
        let carrier = match l.carrier {
            Some(true) => "carrier",
            Some(false) => "no carrier",
            None => "admin down",
        };
        let mut line = format!("{:<10} {:<8} {:<11}", l.name, l.operstate, carrier);
        if let Some(m) = &l.mac {
            line.push_str(&format!(" {m}"));
        }
        if let Some(d) = &l.driver {
            line.push_str(&format!(" {d}"));
        }
        if let Some(sp) = l.speed_mbps {
            line.push_str(&format!(" {sp} Mb/s"));
        }
        if !l.firmware_missing.is_empty() {
            let files: Vec<&str> = l.firmware_missing.iter().map(String::as_str).collect();
            line.push_str(&format!(
                " (firmware not in this image: {})",
                kmod::firmware::short_list(&files)
            ));
        }
        s.push_str(line.trim_end());
        s.push('\n');
        for a in &l.addresses {
            s.push_str(&format!("           inet {a}\n"));
        }
    }
    match &o.default_route {
        Some(r) => s.push_str(&format!(
            "default route: {}{}\n",
            r.gateway
                .map(|g| format!("via {g}"))
                .unwrap_or_else(|| "on-link".into()),
            r.iface
                .as_ref()
                .map(|i| format!(" dev {i}"))
                .unwrap_or_default()
        )),
        None => s.push_str("default route: none\n"),
    }
    if o.dns.is_empty() {
        s.push_str("DNS: none\n");
    } else {
        let d: Vec<String> = o.dns.iter().map(|d| d.to_string()).collect();
        s.push_str(&format!("DNS: {}\n", d.join(", ")));
    }
    if let Some(c) = &o.configured {
        s.push_str(&format!("configured by net up: {}\n", c.line()));
    }
    s
}

fn list(json: bool, command: &str, paths: &Paths) -> Exit {
    match crate::overview(paths) {
        Ok(o) if json => cliconv::print_json(command, JSON_SCHEMA, &o),
        Ok(o) => {
            print!("{}", render(&o));
            Exit::Done
        }
        Err(e) => cliconv::fail(command, e),
    }
}

pub fn run(cmd: NetCommand) -> i32 {
    run_with(cmd, &Paths::default()).code()
}

/// [`run`] with other paths (tests).
pub fn run_with(cmd: NetCommand, paths: &Paths) -> Exit {
    match cmd.action {
        None => list(cmd.json, "net", paths),
        Some(Action::List(c)) => list(c.json || cmd.json, "net list", paths),
        Some(Action::Up(c)) => {
            let req = match request_of(&c) {
                Ok(r) => r,
                Err(e) => return cliconv::fail("net up", e),
            };
            match crate::up(&req, paths, &|l| cliconv::eprint("net up", l)) {
                Ok(s) if c.json => cliconv::print_json("net up", JSON_SCHEMA, &s),
                Ok(s) => {
                    println!("{}", s.line());
                    Exit::Done
                }
                Err(e) => cliconv::fail("net up", e),
            }
        }
        Some(Action::Down(c)) => match crate::down(&c.iface, paths) {
            Ok(()) => {
                println!("{} down", c.iface);
                Exit::Done
            }
            Err(e) => cliconv::fail("net down", e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(args: &[&str]) -> Result<UpCommand, String> {
        NetCommand::from_args(&["net"], &[&["up"], args].concat())
            .map_err(|e| e.output)
            .map(|c| match c.action {
                Some(Action::Up(u)) => u,
                other => panic!("{other:?}"),
            })
    }

    #[test]
    fn up_options() {
        let c = up(&[]).unwrap();
        assert_eq!(method_of(&c), Ok(Method::Dhcp));
        assert_eq!(request_of(&c).unwrap().target, UpTarget::FirstWithCarrier);
        let c = up(&[
            "eth1",
            "--addr",
            "192.0.2.10/24",
            "--gw",
            "192.0.2.1",
            "--dns",
            "198.51.100.53,198.51.100.54",
        ])
        .unwrap();
        assert_eq!(
            request_of(&c).unwrap().target,
            UpTarget::Name("eth1".into())
        );
        assert_eq!(
            method_of(&c),
            Ok(Method::Static(StaticConfig {
                address: Ipv4Addr::new(192, 0, 2, 10),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                dns: vec![
                    Ipv4Addr::new(198, 51, 100, 53),
                    Ipv4Addr::new(198, 51, 100, 54)
                ],
            }))
        );
        for bad in [
            &["--dhcp", "--addr", "192.0.2.10/24"][..],
            &["--gw", "192.0.2.1"],
            &["--addr", "192.0.2.10"],
            &["--addr", "192.0.2.10/24", "--gw", "x"],
            &["--addr", "192.0.2.10/24", "--dns", "1.2.3"],
        ] {
            assert!(method_of(&up(bad).unwrap()).is_err(), "{bad:?}");
        }
        let help = NetCommand::from_args(&["net"], &["up", "--help"])
            .unwrap_err()
            .output;
        assert!(help.contains("not renewed"), "{help}");
    }
}
