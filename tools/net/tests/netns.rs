//! `net` against the real kernel, in network namespaces of its own: the
//! host's interfaces are never seen or touched, and only documentation
//! addresses (192.0.2.0/24, 198.51.100.0/24) are used.
//!
//! Each test runs again as a child process inside `unshare --net --mount`
//! with a fresh sysfs mounted on /sys (in that private mount namespace
//! only: sysfs shows the network devices of the namespace that mounted
//! it). There it makes a veth pair with `ip`; the DHCP test moves the far
//! end into a second namespace, where a small DHCP server of this file
//! answers. Needs root, `unshare`, `mount` and `ip` (iproute2): a missing
//! tool fails the test.

use argh::FromArgs;
use net::cli::NetCommand;
use net::{dhcp, Method, Paths, UpRequest, UpTarget};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const INSIDE: &str = "RESCUE_NET_TEST_IN_NETNS";

/// Runs `test` inside fresh network and mount namespaces: the test binary
/// again, on this test only.
fn isolated(name: &str, test: fn()) {
    if std::env::var_os(INSIDE).is_some() {
        test();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t sysfs sysfs /sys && exec "$0" "$@""#)
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap_or_else(|e| panic!("unshare (util-linux) is needed: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "{name} in a network namespace failed");
    assert!(
        text.contains("1 passed"),
        "{name} did not run in the namespace"
    );
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    serde_json::from_str(&run("ip", &a)).unwrap()
}

fn paths(dir: &testkit::TempDir) -> Paths {
    Paths {
        class_net: "/sys/class/net".into(),
        resolv_conf: dir.join("etc/resolv.conf"),
        state: dir.join("run/rescue/net.json"),
    }
}

/// The IPv4 addresses of `dev` as `A/P`.
fn inet(dev: &str) -> Vec<String> {
    let v = ip_json(&["addr", "show", "dev", dev]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn default_route() -> Option<(String, String)> {
    let v = ip_json(&["-4", "route", "show", "default"]);
    let r = v.as_array().unwrap().first()?;
    Some((
        r["gateway"].as_str()?.to_string(),
        r["dev"].as_str()?.to_string(),
    ))
}

fn veth_pair() {
    // Only the namespace's own loopback is there before.
    let links = ip_json(&["link", "show"]);
    assert_eq!(
        links.as_array().unwrap().len(),
        1,
        "not a fresh namespace: {links}"
    );
    run(
        "ip",
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
    );
}

#[test]
fn static_address_route_and_dns() {
    isolated("static_address_route_and_dns", || {
        veth_pair();
        run("ip", &["link", "set", "veth1", "up"]);
        let dir = testkit::TempDir::new("net-static");
        let p = paths(&dir);
        let cmd = NetCommand::from_args(
            &["net"],
            &[
                "up",
                "veth0",
                "--addr",
                "192.0.2.10/24",
                "--gw",
                "192.0.2.1",
                "--dns",
                "198.51.100.53,198.51.100.54",
            ],
        )
        .unwrap();
        assert_eq!(net::cli::run_with(cmd, &p), cliconv::Exit::Done);
        assert_eq!(inet("veth0"), ["192.0.2.10/24"]);
        assert_eq!(default_route(), Some(("192.0.2.1".into(), "veth0".into())));
        assert_eq!(
            std::fs::read_to_string(&p.resolv_conf).unwrap(),
            "# written by rescue net up (veth0, static)\nnameserver 198.51.100.53\nnameserver 198.51.100.54\n"
        );
        let o = net::overview(&p).unwrap();
        let v0 = o.links.iter().find(|l| l.name == "veth0").unwrap();
        assert_eq!(v0.addresses, ["192.0.2.10/24"]);
        assert!(v0.admin_up && v0.carrier == Some(true), "{v0:?}");
        assert_eq!(v0.driver, None, "a veth has no device");
        let r = o.default_route.unwrap();
        assert_eq!(
            (r.gateway, r.iface.as_deref()),
            (Some(Ipv4Addr::new(192, 0, 2, 1)), Some("veth0"))
        );
        assert_eq!(o.dns.len(), 2);
        let s = net::status(&p).unwrap();
        assert_eq!(s.line(), "veth0 192.0.2.10/24 gw 192.0.2.1 (static)");
        // The list renders and prints as JSON.
        let text = net::cli::render(&net::overview(&p).unwrap());
        assert!(text.contains("inet 192.0.2.10/24"), "{text}");
        assert!(
            text.contains("default route: via 192.0.2.1 dev veth0"),
            "{text}"
        );

        // Again with another address: the old one is replaced, not kept.
        let cmd =
            NetCommand::from_args(&["net"], &["up", "veth0", "--addr", "198.51.100.7/25"]).unwrap();
        assert_eq!(net::cli::run_with(cmd, &p), cliconv::Exit::Done);
        assert_eq!(inet("veth0"), ["198.51.100.7/25"]);
        // The gateway went with the old subnet.
        assert_eq!(default_route(), None);

        let cmd = NetCommand::from_args(&["net"], &["down", "veth0"]).unwrap();
        assert_eq!(net::cli::run_with(cmd, &p), cliconv::Exit::Done);
        assert!(inet("veth0").is_empty());
        let flags = ip_json(&["link", "show", "veth0"])[0]["flags"].clone();
        assert!(
            !flags.as_array().unwrap().iter().any(|f| f == "UP"),
            "{flags}"
        );
        assert!(net::status(&p).is_none() && !p.state.exists());

        // A missing interface is an error naming the ones there are.
        let cmd =
            NetCommand::from_args(&["net"], &["up", "eth7", "--addr", "192.0.2.10/24"]).unwrap();
        assert_eq!(net::cli::run_with(cmd, &p), cliconv::Exit::Error);
        let e = net::down("eth7", &p).unwrap_err();
        assert!(
            e.contains("lo, veth0, veth1") || e.contains("lo, veth1, veth0"),
            "{e}"
        );
    });
}

/// What the test server saw.
#[derive(Default)]
struct Seen {
    discovers: Vec<dhcp::Packet>,
    requests: Vec<dhcp::Packet>,
}

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The reply of a small DHCP server (RFC 2131 4.3) to `req`.
fn reply(req: &dhcp::Packet, kind: dhcp::Kind) -> dhcp::Packet {
    let mut p = dhcp::Packet::client(kind, req.xid, req.chaddr);
    p.op = 2;
    p.flags = req.flags;
    p.yiaddr = OFFERED;
    p.options.extend([
        (dhcp::OPT_SERVER_ID, SERVER.octets().to_vec()),
        (dhcp::OPT_LEASE_TIME, 3600u32.to_be_bytes().to_vec()),
        (dhcp::OPT_SUBNET_MASK, vec![255, 255, 255, 0]),
        (dhcp::OPT_ROUTER, SERVER.octets().to_vec()),
        (dhcp::OPT_DNS, vec![198, 51, 100, 53]),
    ]);
    p
}

/// Serves DHCP on `dev` until `stop` (1) while not muted (2): every
/// DISCOVER gets an OFFER of 192.0.2.10/24, every REQUEST for it from us
/// an ACK, anything else a NAK.
fn serve(dev: &str, seen: Arc<Mutex<Seen>>, state: Arc<AtomicU8>) {
    let sock = {
        use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        sockopt::set_socket_reuseaddr(&fd, true).unwrap();
        sockopt::set_socket_broadcast(&fd, true).unwrap();
        dhcp::bind_to_device(&fd, dev).unwrap();
        rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)).unwrap();
        UdpSocket::from(fd)
    };
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    let mut buf = [0u8; 1500];
    while state.load(Ordering::SeqCst) != 1 {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if state.load(Ordering::SeqCst) == 2 {
            continue;
        }
        let req = dhcp::Packet::decode(&buf[..n]).unwrap();
        let answer = match req.kind() {
            Some(dhcp::Kind::Discover) => {
                seen.lock().unwrap().discovers.push(req.clone());
                reply(&req, dhcp::Kind::Offer)
            }
            Some(dhcp::Kind::Request) => {
                seen.lock().unwrap().requests.push(req.clone());
                let ok = req.option(dhcp::OPT_REQUESTED_IP) == Some(&OFFERED.octets()[..])
                    && req.option(dhcp::OPT_SERVER_ID) == Some(&SERVER.octets()[..]);
                reply(&req, if ok { dhcp::Kind::Ack } else { dhcp::Kind::Nak })
            }
            _ => continue,
        };
        sock.send_to(&answer.encode(), to).unwrap();
    }
}

/// A thread in a network namespace of its own with the far end of the
/// veth pair, serving DHCP there.
fn server_in_own_namespace(
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicU8>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        // SAFETY: unshares only this thread's network namespace; no
        // memory, file table or signal state is unshared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.unwrap();
        tx.send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        go_rx.recv().unwrap();
        // Commands started from this thread inherit its namespace.
        run("ip", &["link", "set", "lo", "up"]);
        run("ip", &["addr", "add", "192.0.2.1/24", "dev", "veth1"]);
        run("ip", &["link", "set", "veth1", "up"]);
        serve("veth1", seen, stop);
    });
    let tid = rx.recv().unwrap();
    run("ip", &["link", "set", "veth1", "netns", &tid.to_string()]);
    go_tx.send(()).unwrap();
    h
}

#[test]
fn dhcp_against_a_server_on_a_veth() {
    isolated("dhcp_against_a_server_on_a_veth", || {
        veth_pair();
        let seen = Arc::new(Mutex::new(Seen::default()));
        // 0 serving, 1 stop, 2 muted.
        let stop = Arc::new(AtomicU8::new(0));
        let server = server_in_own_namespace(seen.clone(), stop.clone());
        // veth1 is gone from here: only lo and veth0 are left.
        assert_eq!(ip_json(&["link", "show"]).as_array().unwrap().len(), 2);
        let dir = testkit::TempDir::new("net-dhcp");
        let p = paths(&dir);
        let lines = Mutex::new(Vec::<String>::new());
        let say = |l: &str| lines.lock().unwrap().push(l.to_string());

        // `net up` without an interface: the first link with carrier.
        let req = UpRequest {
            target: UpTarget::FirstWithCarrier,
            method: Method::Dhcp,
            dhcp: dhcp::Options {
                timeout: Duration::from_secs(20),
                hostname: Some("rescue".into()),
            },
            carrier_wait: Duration::from_secs(5),
        };
        let start = Instant::now();
        let s = net::up(&req, &p, &say).unwrap_or_else(|e| panic!("{e}; {:?}", lines.lock()));
        eprintln!("DHCP took {:?}: {:?}", start.elapsed(), lines.lock());
        assert_eq!(s.line(), "veth0 192.0.2.10/24 gw 192.0.2.1 (dhcp)");
        let lease = s.lease.clone().unwrap();
        assert_eq!((lease.server, lease.lease_secs), (SERVER, Some(3600)));
        assert_eq!(inet("veth0"), ["192.0.2.10/24"]);
        assert_eq!(default_route(), Some(("192.0.2.1".into(), "veth0".into())));
        assert_eq!(
            std::fs::read_to_string(&p.resolv_conf).unwrap(),
            "# written by rescue net up (veth0, dhcp)\nnameserver 198.51.100.53\n"
        );
        let rec: net::State =
            serde_json::from_str(&std::fs::read_to_string(&p.state).unwrap()).unwrap();
        assert_eq!(rec, s);
        {
            let seen = seen.lock().unwrap();
            let d = &seen.discovers[0];
            let mac = net::cmdline::parse_mac(
                std::fs::read_to_string("/sys/class/net/veth0/address")
                    .unwrap()
                    .trim(),
            )
            .unwrap();
            assert_eq!(d.chaddr, mac);
            assert_eq!(d.flags, dhcp::FLAG_BROADCAST);
            let mut id = vec![1];
            id.extend_from_slice(&mac);
            assert_eq!(d.option(dhcp::OPT_CLIENT_ID), Some(&id[..]));
            assert_eq!(d.option(dhcp::OPT_HOSTNAME), Some(&b"rescue"[..]));
            assert_eq!(seen.requests.len(), 1);
            assert_eq!(seen.requests[0].xid, d.xid);
        }

        // The kernel command line of a PXE boot: BOOTIF names veth0.
        run("ip", &["addr", "flush", "dev", "veth0"]);
        let mac = std::fs::read_to_string("/sys/class/net/veth0/address").unwrap();
        let cmdline = format!(
            "BOOT_IMAGE=vmlinuz quiet BOOTIF=01-{}",
            mac.trim().replace(':', "-")
        );
        let s = net::bring_up_from_cmdline(&cmdline, &p, &say)
            .unwrap_or_else(|| panic!("{:?}", lines.lock()));
        assert_eq!(s.iface, "veth0");
        assert_eq!(inet("veth0"), ["192.0.2.10/24"]);
        assert!(lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "network: veth0 192.0.2.10/24 gw 192.0.2.1 (dhcp)"));

        // No answer: a clear timeout.
        stop.store(2, Ordering::SeqCst);
        let mac = net::cmdline::parse_mac(mac.trim()).unwrap();
        let e = dhcp::acquire(
            "veth0",
            mac,
            &dhcp::Options {
                timeout: Duration::from_secs(3),
                hostname: None,
            },
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("DHCP on veth0: no OFFER after "), "{e}");
        assert!(e.contains("in 3 s"), "{e}");
        stop.store(1, Ordering::SeqCst);
        server.join().unwrap();
    });
}
