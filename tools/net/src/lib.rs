//! Network up for the appliance: the links (sysfs), their IPv4 addresses
//! and the default route (rtnetlink, [`netlink`]), a static address or a
//! DHCPv4 lease ([`dhcp`]) put on a link, /etc/resolv.conf, and the
//! kernel command line's `rescue.net=` and `BOOTIF=` ([`cmdline`]).
//!
//! What `net up` configured is recorded in /run/rescue/net.json
//! ([`State`]); the overview's system line and `probe --json` show it
//! ([`status`], [`summary`]).

pub mod cli;
pub mod cmdline;
pub mod dhcp;
pub mod dns;
pub mod netlink;

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where `net` reads and writes; tests point these into a temporary
/// folder and a fake sysfs.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `/sys/class/net`.
    pub class_net: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `/run/rescue/net.json`.
    pub state: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            class_net: "/sys/class/net".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            state: "/run/rescue/net.json".into(),
        }
    }
}

/// A static configuration (given, or from a DHCP lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticConfig {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// How a link gets its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Dhcp,
    Static(StaticConfig),
}

/// What `net up` did, recorded in [`Paths::state`] (the `network` object
/// of `probe --json` and of `net list --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub iface: String,
    /// `"dhcp"` or `"static"`.
    pub method: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// The DHCP lease (server, lease time); None for a static address.
    pub lease: Option<dhcp::Lease>,
    /// When it was configured (seconds since 1970, UTC).
    pub since_unix: u64,
}

impl State {
    /// `eth0 10.0.2.15/24 gw 10.0.2.2 (dhcp)`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}/{}", self.iface, self.address, self.prefix);
        if let Some(g) = self.gateway {
            s.push_str(&format!(" gw {g}"));
        }
        s.push_str(&format!(" ({})", self.method));
        s
    }
}

/// One link as `net list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: Option<String>,
    /// `/sys/class/net/X/operstate`: up, down, dormant, unknown, ...
    pub operstate: String,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    /// None while the link is administratively down (the kernel does not
    /// know then).
    pub carrier: Option<bool>,
    /// The driver of the device (`device/driver`); None for virtual links.
    pub driver: Option<String>,
    pub speed_mbps: Option<u32>,
    /// IPv4 addresses as `A/P`.
    pub addresses: Vec<String>,
    /// Firmware its driver may ask for that the image lacks
    /// (/lib/firmware/MISSING, see [`with_missing_firmware`]).
    pub firmware_missing: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefaultRoute {
    pub gateway: Option<Ipv4Addr>,
    pub iface: Option<String>,
}

/// `net list`: links, routes, DNS and what `net up` recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub links: Vec<Link>,
    pub default_route: Option<DefaultRoute>,
    /// `nameserver` lines of /etc/resolv.conf.
    pub dns: Vec<Ipv4Addr>,
    /// What `net up` configured (/run/rescue/net.json), if anything.
    pub configured: Option<State>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The link names under `class_net`, by interface index.
fn link_names(class_net: &Path) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(class_net)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let index = read_trim(&e.path().join("ifindex"))?.parse().ok()?;
                    Some((index, name))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `carrier` reads 1 or 0 while the link is up; reading it fails (EINVAL)
/// while it is down.
fn carrier(class_net: &Path, name: &str) -> Option<bool> {
    read_trim(&class_net.join(name).join("carrier")).and_then(|c| match c.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    })
}

fn mac_of(class_net: &Path, name: &str) -> Option<String> {
    read_trim(&class_net.join(name).join("address")).filter(|m| !m.is_empty())
}

/// Links from sysfs (name, MAC, state, driver, speed), without addresses.
pub fn sysfs_links(class_net: &Path) -> Vec<Link> {
    link_names(class_net)
        .into_iter()
        .map(|(index, name)| {
            let dir = class_net.join(&name);
            let flags = read_trim(&dir.join("flags"))
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                .unwrap_or(0);
            Link {
                mac: mac_of(class_net, &name),
                operstate: read_trim(&dir.join("operstate")).unwrap_or_else(|| "unknown".into()),
                admin_up: flags & netlink::IFF_UP != 0,
                carrier: carrier(class_net, &name),
                driver: std::fs::read_link(dir.join("device/driver"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
                speed_mbps: read_trim(&dir.join("speed"))
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|s| *s > 0)
                    .and_then(|s| u32::try_from(s).ok()),
                addresses: Vec::new(),
                firmware_missing: Vec::new(),
                index,
                name,
            }
        })
        .collect()
}

/// Fills [`Link::firmware_missing`] from the image's missing-firmware list
/// (the text of [`kmod::firmware::MISSING_PATH`]), matching each link's
/// driver name to the module name (`-`/`_` alike; the NIC drivers shipped
/// register under their module's name). A list that does not parse is
/// ignored: this is a hint, not the listing's point.
pub fn with_missing_firmware(links: &mut [Link], list_text: &str) {
    let Ok(list) = kmod::firmware::parse_missing(list_text) else {
        return;
    };
    for l in links {
        if let Some(d) = &l.driver {
            l.firmware_missing = kmod::firmware::missing_for(&list, d)
                .into_iter()
                .map(String::from)
                .collect();
        }
    }
}

/// The `nameserver` addresses of a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Links with their addresses, the default route, DNS and the record.
pub fn overview(paths: &Paths) -> Result<Overview, String> {
    let mut links = sysfs_links(&paths.class_net);
    with_missing_firmware(
        &mut links,
        &std::fs::read_to_string(kmod::firmware::MISSING_PATH).unwrap_or_default(),
    );
    let mut rtnl = netlink::Rtnl::open().map_err(|e| format!("netlink socket: {e}"))?;
    let addrs = rtnl
        .ipv4_addresses()
        .map_err(|e| format!("reading addresses: {e}"))?;
    for l in &mut links {
        l.addresses = addrs
            .iter()
            .filter(|a| a.index == l.index)
            .filter_map(|a| Some(format!("{}/{}", a.address?, a.prefix)))
            .collect();
    }
    let routes = rtnl
        .ipv4_routes()
        .map_err(|e| format!("reading routes: {e}"))?;
    let default_route = routes
        .iter()
        .find(|r| {
            r.header.dst_len == 0
                && r.table == u32::from(netlink::RT_TABLE_MAIN)
                && r.header.kind == netlink::RTN_UNICAST
        })
        .map(|r| DefaultRoute {
            gateway: r.gateway,
            iface: r
                .oif
                .and_then(|i| links.iter().find(|l| l.index == i))
                .map(|l| l.name.clone()),
        });
    Ok(Overview {
        links,
        default_route,
        dns: std::fs::read_to_string(&paths.resolv_conf)
            .map(|t| parse_resolv_conf(&t))
            .unwrap_or_default(),
        configured: read_state(&paths.state),
    })
}

fn read_state(path: &Path) -> Option<State> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What `net up` configured, if the link it names is still there.
pub fn status(paths: &Paths) -> Option<State> {
    let s = read_state(&paths.state)?;
    paths.class_net.join(&s.iface).exists().then_some(s)
}

/// The overview's and `probe`'s line: `eth0 10.0.2.15/24 gw 10.0.2.2
/// (dhcp)`, or None when `net up` has not configured a link.
pub fn summary() -> Option<String> {
    status(&Paths::default()).map(|s| s.line())
}

/// Writes `path` through a temporary file in the same folder, synced,
/// then renamed over it: readers see the old or the new file, never half.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rescue-tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The resolv.conf `net up` writes.
pub fn resolv_conf_text(iface: &str, method: &str, dns: &[Ipv4Addr]) -> String {
    let mut s = format!("# written by rescue net up ({iface}, {method})\n");
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

/// What `net up` is asked to do.
#[derive(Clone, Debug)]
pub struct UpRequest {
    /// The interface; None: the one [`cmdline::Target`] names.
    pub target: UpTarget,
    pub method: Method,
    pub dhcp: dhcp::Options,
    /// How long to wait for carrier after setting the link up.
    pub carrier_wait: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpTarget {
    Name(String),
    Mac([u8; 6]),
    FirstWithCarrier,
}

/// Default wait for carrier: autonegotiation takes 2 to 4 s on common
/// server NICs (igb, ixgbe, tg3).
pub const CARRIER_WAIT: Duration = Duration::from_secs(10);

fn wait_carrier(class_net: &Path, names: &[String], wait: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(n) = names.iter().find(|n| carrier(class_net, n) == Some(true)) {
            return Some(n.clone());
        }
        if start.elapsed() >= wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn index_of(class_net: &Path, name: &str) -> Result<u32, String> {
    read_trim(&class_net.join(name).join("ifindex"))
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| {
            let names: Vec<String> = link_names(class_net).into_iter().map(|(_, n)| n).collect();
            format!(
                "no interface {name:?} (there are: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
}

/// Sets the chosen link up and waits for carrier; returns its name.
fn choose_link(
    rtnl: &mut netlink::Rtnl,
    paths: &Paths,
    req: &UpRequest,
    say: &dyn Fn(&str),
) -> Result<String, String> {
    let cn = &paths.class_net;
    let candidates: Vec<(u32, String)> = link_names(cn)
        .into_iter()
        .filter(|(_, n)| n != "lo")
        .collect();
    let (named, all): (Vec<(u32, String)>, bool) = match &req.target {
        UpTarget::Name(n) => (vec![(index_of(cn, n)?, n.clone())], false),
        UpTarget::Mac(m) => {
            let want = mac_text(m);
            let found: Vec<(u32, String)> = candidates
                .iter()
                .filter(|(_, n)| mac_of(cn, n).as_deref() == Some(want.as_str()))
                .cloned()
                .collect();
            if found.is_empty() {
                let have: Vec<String> = candidates
                    .iter()
                    .map(|(_, n)| format!("{n} {}", mac_of(cn, n).unwrap_or_default()))
                    .collect();
                return Err(format!(
                    "no interface has MAC {want} (BOOTIF); there are: {}; is its driver loaded?",
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                ));
            }
            (found, false)
        }
        UpTarget::FirstWithCarrier => {
            if candidates.is_empty() {
                return Err(
                    "no network interface besides lo: is the NIC's driver loaded? \
                     (rescue.modules=DRIVER on the kernel command line)"
                        .into(),
                );
            }
            (candidates, true)
        }
    };
    let mut raised = Vec::new();
    for (i, n) in &named {
        if carrier(cn, n).is_none() {
            rtnl.set_link_up(*i, true)
                .map_err(|e| format!("setting {n} up: {e}"))?;
            raised.push((*i, n.clone()));
        }
    }
    let names: Vec<String> = named.iter().map(|(_, n)| n.clone()).collect();
    let mut chosen = wait_carrier(cn, &names, Duration::ZERO);
    if chosen.is_none() {
        say(&format!(
            "waiting up to {} s for a cable (carrier) on {}",
            req.carrier_wait.as_secs(),
            names.join(", ")
        ));
        chosen = wait_carrier(cn, &names, req.carrier_wait);
    }
    // Links raised only to look for carrier go down again.
    for (i, n) in &raised {
        if all && chosen.as_ref() != Some(n) {
            let _ = rtnl.set_link_up(*i, false);
        }
    }
    match chosen {
        Some(n) => Ok(n),
        None if !all && req.method != Method::Dhcp => {
            say(&format!(
                "no carrier on {} after {} s; configuring it anyway",
                names[0],
                req.carrier_wait.as_secs()
            ));
            Ok(names[0].clone())
        }
        None => Err(format!(
            "no carrier on {} after {} s: is a cable plugged in and the switch port up?",
            names.join(", "),
            req.carrier_wait.as_secs()
        )),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Brings a link up: loopback too, carrier, the address (DHCP or
/// static), the default route, resolv.conf (when DNS servers are known)
/// and the record. `say` gets progress lines.
pub fn up(req: &UpRequest, paths: &Paths, say: &dyn Fn(&str)) -> Result<State, String> {
    let mut rtnl = netlink::Rtnl::open().map_err(|e| format!("netlink socket: {e}"))?;
    if let Ok(lo) = index_of(&paths.class_net, "lo") {
        rtnl.set_link_up(lo, true)
            .map_err(|e| format!("setting lo up: {e}"))?;
    }
    let iface = choose_link(&mut rtnl, paths, req, say)?;
    let index = index_of(&paths.class_net, &iface)?;
    let (config, lease) = match &req.method {
        Method::Static(s) => (s.clone(), None),
        Method::Dhcp => {
            let mac = mac_of(&paths.class_net, &iface)
                .and_then(|m| cmdline::parse_mac(&m))
                .ok_or_else(|| format!("{iface} has no Ethernet MAC address for DHCP"))?;
            let l = dhcp::acquire(&iface, mac, &req.dhcp, say).map_err(|e| e.to_string())?;
            (
                StaticConfig {
                    address: l.address,
                    prefix: l.prefix,
                    gateway: l.gateway,
                    dns: l.dns.clone(),
                },
                Some(l),
            )
        }
    };
    let method = if lease.is_some() { "dhcp" } else { "static" };
    // Replace what was there: other IPv4 addresses of this link go.
    for a in rtnl
        .ipv4_addresses()
        .map_err(|e| format!("reading addresses: {e}"))?
    {
        if let Some(addr) = a.address.filter(|_| a.index == index) {
            if (addr, a.prefix) != (config.address, config.prefix) {
                rtnl.del_address(index, addr, a.prefix)
                    .map_err(|e| format!("removing {addr}/{} from {iface}: {e}", a.prefix))?;
            }
        }
    }
    rtnl.add_address(index, config.address, config.prefix)
        .map_err(|e| {
            format!(
                "adding {}/{} to {iface}: {e}",
                config.address, config.prefix
            )
        })?;
    if let Some(gw) = config.gateway {
        let proto = if lease.is_some() {
            netlink::RTPROT_DHCP
        } else {
            netlink::RTPROT_STATIC
        };
        rtnl.replace_default_route(index, gw, proto)
            .map_err(|e| format!("default route via {gw} on {iface}: {e}"))?;
    }
    if !config.dns.is_empty() {
        write_atomically(
            &paths.resolv_conf,
            &resolv_conf_text(&iface, method, &config.dns),
        )
        .map_err(|e| format!("writing {}: {e}", paths.resolv_conf.display()))?;
    }
    let state = State {
        iface,
        method: method.into(),
        address: config.address,
        prefix: config.prefix,
        gateway: config.gateway,
        dns: config.dns,
        lease,
        since_unix: now_unix(),
    };
    let json = serde_json::to_string_pretty(&state).map_err(|e| e.to_string())?;
    write_atomically(&paths.state, &(json + "\n"))
        .map_err(|e| format!("writing {}: {e}", paths.state.display()))?;
    Ok(state)
}

/// Takes a link down: its IPv4 addresses (and with them its routes) go,
/// the link is set down, and the record is removed if it named this link.
pub fn down(iface: &str, paths: &Paths) -> Result<(), String> {
    let index = index_of(&paths.class_net, iface)?;
    let mut rtnl = netlink::Rtnl::open().map_err(|e| format!("netlink socket: {e}"))?;
    for a in rtnl
        .ipv4_addresses()
        .map_err(|e| format!("reading addresses: {e}"))?
    {
        if let Some(addr) = a.address.filter(|_| a.index == index) {
            rtnl.del_address(index, addr, a.prefix)
                .map_err(|e| format!("removing {addr}/{} from {iface}: {e}", a.prefix))?;
        }
    }
    rtnl.set_link_up(index, false)
        .map_err(|e| format!("setting {iface} down: {e}"))?;
    if read_state(&paths.state).is_some_and(|s| s.iface == iface) {
        std::fs::remove_file(&paths.state)
            .map_err(|e| format!("removing {}: {e}", paths.state.display()))?;
    }
    Ok(())
}

/// At boot, after the NIC drivers are loaded: brings up what the kernel
/// command line asks for (`rescue.net=`, `BOOTIF=`; see [`cmdline`]).
/// Lines for the console go to `say`; nothing is done without those
/// options. Returns what was configured.
pub fn bring_up_from_cmdline(
    cmdline_text: &str,
    paths: &Paths,
    say: &dyn Fn(&str),
) -> Option<State> {
    let parsed = cmdline::parse(cmdline_text);
    for p in &parsed.problems {
        say(&format!("network: {p}"));
    }
    let plan = parsed.plan?;
    let req = UpRequest {
        target: match plan.target {
            cmdline::Target::Mac(m) => UpTarget::Mac(m),
            cmdline::Target::FirstWithCarrier => UpTarget::FirstWithCarrier,
        },
        method: plan.method,
        dhcp: dhcp::Options {
            timeout: Duration::from_secs(30),
            hostname: None,
        },
        carrier_wait: CARRIER_WAIT,
    };
    match up(&req, paths, &|l| say(&format!("network: {l}"))) {
        Ok(s) => {
            say(&format!("network: {}", s.line()));
            Some(s)
        }
        Err(e) => {
            say(&format!("network: not up: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_round_trip_and_state_line() {
        let dns = [
            Ipv4Addr::new(192, 0, 2, 53),
            Ipv4Addr::new(198, 51, 100, 53),
        ];
        let t = resolv_conf_text("eth0", "static", &dns);
        assert!(t.starts_with("# written by rescue net up (eth0, static)\n"));
        assert_eq!(parse_resolv_conf(&t), dns);
        assert_eq!(
            parse_resolv_conf("nameserver\nnameserver x\n nameserver 192.0.2.1 # c\nsearch a"),
            [Ipv4Addr::new(192, 0, 2, 1)]
        );
        let s = State {
            iface: "eth0".into(),
            method: "dhcp".into(),
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![],
            lease: None,
            since_unix: 0,
        };
        assert_eq!(s.line(), "eth0 10.0.2.15/24 gw 10.0.2.2 (dhcp)");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = testkit::TempDir::new("net-atomic");
        let p = dir.path().join("etc/resolv.conf");
        write_atomically(&p, "a\n").unwrap();
        write_atomically(&p, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["resolv.conf"]);
    }

    #[test]
    fn links_from_a_fake_sysfs() {
        let dir = testkit::TempDir::new("net-sysfs");
        let cn = dir.path().join("class/net");
        let put = |link: &str, file: &str, v: &str| {
            std::fs::create_dir_all(cn.join(link)).unwrap();
            std::fs::write(cn.join(link).join(file), v).unwrap();
        };
        put("lo", "ifindex", "1\n");
        put("lo", "flags", "0x9\n");
        put("eth0", "ifindex", "2\n");
        put("eth0", "flags", "0x1003\n");
        put("eth0", "address", "52:54:00:12:34:56\n");
        put("eth0", "operstate", "up\n");
        put("eth0", "carrier", "1\n");
        put("eth0", "speed", "1000\n");
        std::fs::create_dir_all(dir.path().join("drivers/virtio_net")).unwrap();
        std::fs::create_dir_all(cn.join("eth0/device")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("drivers/virtio_net"),
            cn.join("eth0/device/driver"),
        )
        .unwrap();
        put("eth1", "ifindex", "3\n");
        put("eth1", "flags", "0x1002\n");
        put("eth1", "speed", "-1\n");
        let links = sysfs_links(&cn);
        assert_eq!(
            links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["lo", "eth0", "eth1"]
        );
        let e = &links[1];
        assert_eq!(e.mac.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(e.driver.as_deref(), Some("virtio_net"));
        assert_eq!(
            (e.admin_up, e.carrier, e.speed_mbps),
            (true, Some(true), Some(1000))
        );
        let e1 = &links[2];
        assert_eq!(
            (e1.admin_up, e1.carrier, e1.speed_mbps),
            (false, None, None)
        );
        assert_eq!(e1.operstate, "unknown");
        let mut links = links;
        with_missing_firmware(
            &mut links,
            "virtio-net x/a.fw\nvirtio_net x/b.fw\nr8169 rtl_nic/c.fw\n",
        );
        assert_eq!(links[1].firmware_missing, ["x/a.fw", "x/b.fw"]);
        assert!(links[0].firmware_missing.is_empty() && links[2].firmware_missing.is_empty());
        let text = cli::render(&Overview {
            links: links.clone(),
            default_route: None,
            dns: vec![],
            configured: None,
        });
        assert!(
            text.contains("virtio_net 1000 Mb/s (firmware not in this image: x/a.fw, x/b.fw)\n"),
            "{text}"
        );
        let err = index_of(&cn, "eth9").unwrap_err();
        assert!(err.contains("lo, eth0, eth1"), "{err}");
    }
}
