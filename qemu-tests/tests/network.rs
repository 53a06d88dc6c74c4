//! The network (issue 21), over QEMU's user-mode network with
//! `restrict=on`: nothing leaves the host, the guest reaches host services
//! only through `guestfwd` to 127.0.0.1.
//!
//! - `rescue.net=dhcp` brings eth0 up at boot through QEMU's DHCP server;
//!   the menu header, `rescue net list`, `probe --json` show it; `net
//!   down`, `net up` by DHCP and with a static address work.
//! - `rescue image SRC rescue://...` streams a disk with unreadable
//!   sectors to `rescue receive` on the host: a wrong pairing code and a
//!   byte flipped in the stream are refused; QEMU killed mid-stream, booted
//!   again, and the same command resumes; the received image and mapfile
//!   are what a local run gives (the source's bytes, zeros and `-` exactly
//!   on the bad sectors); the source is unchanged.

use qemu_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(600);
const MIB: usize = 1 << 20;

#[test]
fn dhcp_at_boot_then_down_and_up_again() {
    let image = Image::built();
    let mut cfg = VmConfig::new(Vec::new()).append("rescue.net=dhcp");
    cfg.user_net(&[]);
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    // QEMU's DHCP server offers no router and no DNS server when the
    // network is restricted (measured): the address alone.
    assert!(
        boot.contains("rescue: network: eth0 10.0.2.15/24 (dhcp)"),
        "{boot}"
    );
    assert!(
        boot.contains("Network: eth0 10.0.2.15/24 (dhcp)"),
        "menu header: {boot}"
    );
    vm.enter_shell();
    let link = |out: &str| -> serde_json::Value {
        let list = json_of(out);
        list["links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == "eth0"))
            .cloned()
            .unwrap_or_else(|| panic!("no eth0: {list}"))
    };
    let (out, code) = vm.shell("rescue net list --json", T);
    assert_eq!(code, 0, "{out}");
    let eth0 = link(&out);
    assert_eq!(eth0["driver"], "virtio_net", "{out}");
    assert_eq!(
        eth0["addresses"],
        serde_json::json!(["10.0.2.15/24"]),
        "{out}"
    );
    let (out, code) = vm.shell("rescue probe --json", T);
    assert!(code == 0 || code == 1, "{out}");
    let probe = json_of(&out);
    assert_eq!(probe["network"]["address"], "10.0.2.15", "{probe}");

    let (out, code) = vm.shell("rescue net down eth0 && rescue net list --json", T);
    assert_eq!(code, 0, "{out}");
    assert_eq!(link(&out)["addresses"], serde_json::json!([]), "{out}");

    let (out, code) = vm.shell("rescue net up --json", T);
    assert_eq!(code, 0, "{out}");
    let up = json_of(&out);
    assert_eq!(up["iface"], "eth0", "{up}");
    assert_eq!(up["method"], "dhcp", "{up}");
    assert_eq!(up["address"], "10.0.2.15", "{up}");
    assert_eq!(up["prefix"], 24, "{up}");
    assert_eq!(up["lease"]["server"], "10.0.2.2", "{up}");

    // A static address with a gateway and DNS server.
    let (out, code) = vm.shell(
        "rescue net up eth0 --addr 10.0.2.16/24 --gw 10.0.2.2 --dns 10.0.2.3 && rescue net list --json",
        T,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        link(&out)["addresses"],
        serde_json::json!(["10.0.2.16/24"]),
        "{out}"
    );
    let list = json_of(&out);
    assert_eq!(list["default_route"]["gateway"], "10.0.2.2", "{list}");
    assert_eq!(list["dns"], serde_json::json!(["10.0.2.3"]), "{list}");
    let (out, _) = vm.shell("rescue probe", T);
    assert!(
        out.contains("eth0 10.0.2.16/24 gw 10.0.2.2 (static)"),
        "{out}"
    );
    vm.power_off_from_shell();
}

/// `rescue receive` on the host, its output collected.
struct Receiver {
    child: Child,
    port: u16,
    code: String,
    said: Arc<Mutex<String>>,
}

impl Receiver {
    fn start(
        rescue: &std::path::Path,
        dir: &std::path::Path,
        code_file: &std::path::Path,
    ) -> Receiver {
        let mut child = Command::new(rescue)
            .arg("receive")
            .args(["--listen", "127.0.0.1:0", "--code-out"])
            .arg(code_file)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rescue receive on the host");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        let said = Arc::new(Mutex::new(first));
        for pipe in [
            Box::new(out) as Box<dyn BufRead + Send>,
            Box::new(BufReader::new(child.stderr.take().unwrap())),
        ] {
            let said = Arc::clone(&said);
            std::thread::spawn(move || {
                for line in pipe.lines().map_while(Result::ok) {
                    let mut s = said.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let code = std::fs::read_to_string(code_file)
            .unwrap()
            .trim()
            .to_string();
        Receiver {
            child,
            port,
            code,
            said,
        }
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.said();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "receiver never said {what:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to `to` that flips one byte, at `flip_at` of the stream
/// from the client (the appliance) to the receiver.
fn tampering_proxy(to: u16, flip_at: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = 0usize;
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if (seen..seen + n).contains(&flip_at) {
                        buf[flip_at - seen] ^= 0x20;
                    }
                    seen += n;
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn image_streams_to_a_lab_host_resumes_and_refuses_bad_codes_and_tampering() {
    let image = Image::built();
    let rescue = workspace_root().join("target/x86_64-unknown-linux-musl/release/rescue");
    assert!(
        rescue.exists(),
        "{} missing (image-build builds it)",
        rescue.display()
    );
    let dir = temp_dir("net-receive");
    let d = dir.path();
    let recv_dir = d.join("received");
    std::fs::create_dir_all(&recv_dir).unwrap();
    let receiver = Receiver::start(&rescue, &recv_dir, &d.join("code"));
    let proxy = tampering_proxy(receiver.port, 300_000);

    // The source: 64 MiB of a pattern, two runs of unreadable sectors.
    let src = d.join("src.img");
    let mut data = vec![0u8; 64 * MIB];
    testkit::mdwriter::pattern(17, 0, &mut data);
    std::fs::write(&src, &data).unwrap();
    let bad: [(u64, u64); 2] = [(20_000, 8), (100_000, 1)];
    let conf: String = bad
        .iter()
        .flat_map(|&(s, n)| s..s + n)
        .map(|s| {
            format!("[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{s}\"\nonce = \"off\"\n\n")
        })
        .collect();
    std::fs::write(d.join("src.blkdebug"), conf).unwrap();
    let src_hash = sha256_file(&src);

    // The codes, on a small disk: the receiver's, and a wrong one.
    let codes = d.join("codes");
    std::fs::create_dir_all(&codes).unwrap();
    std::fs::write(codes.join("code"), format!("{}\n", receiver.code)).unwrap();
    let wrong: String = receiver
        .code
        .chars()
        .map(|c| {
            if c == 'A' {
                'B'
            } else if c.is_ascii_alphanumeric() {
                'A'
            } else {
                c
            }
        })
        .collect();
    std::fs::write(codes.join("wrong"), format!("{wrong}\n")).unwrap();
    let codes_disk = d.join("codes.img");
    qemu_tests::guest::ext4_of(&codes, &codes_disk, 8 * MIB as u64, None).unwrap();

    let cfg = |throttle: bool| {
        let mut src_disk = Disk::new(&src, Controller::VirtioBlk, "SOURCE-0001");
        src_disk.drive_override = Some(format!(
            "format=raw,file.driver=blkdebug,file.config={},file.image.filename={}{}",
            d.join("src.blkdebug").display(),
            src.display(),
            if throttle {
                ",throttling.bps-read=3145728"
            } else {
                ""
            }
        ));
        let mut cfg = VmConfig::new(vec![
            src_disk,
            Disk::new(&codes_disk, Controller::VirtioBlk, "CODES-0002"),
        ])
        .append("rescue.net=dhcp");
        cfg.user_net(&[(7000, receiver.port), (7001, proxy)]);
        cfg
    };
    // Port 7000 reaches the receiver, 7001 the tampering proxy.
    let send = |port: u16, name: &str, code: &str| {
        format!("rescue image /dev/vda rescue://10.0.2.100:{port}/{name} --code-file /mnt/c/{code}")
    };

    // Boot 1, the source throttled: refusals, then a stream killed midway.
    let mut vm = Vm::start(&image, &cfg(true));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell("mkdir -p /mnt/c && mount -o ro -t ext4 /dev/vdb /mnt/c", T);
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(&send(7000, "disk.img", "wrong"), T);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("wrong pairing code"), "{out}");
    receiver.wait_for("wrong pairing code", T);
    let (out, code) = vm.shell(&send(7001, "tampered.img", "code"), T);
    assert_eq!(code, 2, "a flipped byte went unnoticed: {out}");
    receiver.wait_for("authentication failed", T);
    vm.send(&format!("{}\n", send(7000, "disk.img", "code")));
    vm.wait_for_progress(30.0, T);
    drop(vm); // QEMU killed mid-stream

    // Boot 2, unthrottled: the same command resumes and finishes.
    let mut vm = Vm::start(&image, &cfg(false));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell(
        &format!(
            "mkdir -p /mnt/c && mount -o ro -t ext4 /dev/vdb /mnt/c && {}",
            send(7000, "disk.img", "code")
        ),
        T,
    );
    assert_eq!(code, 1, "bad areas remain, so exit 1: {out}");
    assert!(out.contains("verified"), "{out}");
    let said = receiver.wait_for("complete and verified", T);
    assert!(said.contains("disk.img"), "{said}");
    vm.power_off_from_shell();

    // What a local run gives: the source's bytes, zeros on the bad
    // sectors, and exactly those sectors unrescued in the mapfile.
    let got = std::fs::read(recv_dir.join("disk.img")).unwrap();
    let mut want = data.clone();
    for &(s, n) in &bad {
        want[(s * 512) as usize..((s + n) * 512) as usize].fill(0);
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the received image differs from the source");
    let unrescued = ddmap::read_unrescued(&recv_dir.join("disk.img.map")).unwrap();
    let want_bad: Vec<(u64, u64)> = bad.iter().map(|&(s, n)| (s * 512, n * 512)).collect();
    assert_eq!(unrescued, want_bad);
    assert_eq!(sha256_file(&src), src_hash, "the source was written");
}
