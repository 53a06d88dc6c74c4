//! The network paths of issue 21 against their reference tools, through
//! the same QEMU user network (restricted; socat per forwarded connection),
//! in one guest:
//! - a disk streamed to `rescue receive` on the host (`rescue image SRC
//!   rescue://...`: Noise-encrypted, mapfile kept by the receiver) against
//!   `dd | nc` of the same disk into a host `socat` writing a file (guest
//!   seconds from /proc/uptime);
//! - the disk served by `rescue export` and copied by the host's
//!   `qemu-img convert nbd://...` (through a host forward) against
//!   `qemu-nbd --read-only` serving the same image file on the host (host
//!   seconds).
//!
//! Usage: bench-net [MIB] [ROUNDS] (default 256 3). Prints medians and
//! ratios (reference time / ours: above 1 is faster than the reference).

use qemu_tests::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(1800);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn guest_seconds(out: &str) -> f64 {
    let l = out
        .lines()
        .find(|l| l.starts_with("took "))
        .unwrap_or_else(|| panic!("no timing line in {out}"));
    let w: Vec<f64> = l
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    w[1] - w[0]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let image = Image::built();
    let rescue = workspace_root().join("target/x86_64-unknown-linux-musl/release/rescue");
    let dir = temp_dir("bench-net");
    let d = dir.path();
    let src = d.join("src.img");
    let mut data = vec![0u8; (mib * MIB) as usize];
    testkit::mdwriter::pattern(29, 0, &mut data);
    std::fs::write(&src, &data).unwrap();
    drop(data);

    // The receiver, and a plain socat sink for dd | nc.
    let recv_dir = d.join("recv");
    std::fs::create_dir_all(&recv_dir).unwrap();
    let mut receiver = Command::new(&rescue)
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--force",
            "--code-out",
        ])
        .arg(d.join("code"))
        .arg(&recv_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rescue receive");
    let mut first = String::new();
    let mut out = BufReader::new(receiver.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    std::thread::spawn(move || for _ in out.lines() {});
    let recv_port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("receiver port");
    let sink_port = free_port();
    let mut sink = Command::new("socat")
        .arg("-u")
        .arg(format!(
            "TCP-LISTEN:{sink_port},bind=127.0.0.1,reuseaddr,fork"
        ))
        .arg(format!("CREATE:{}", d.join("nc.img").display()))
        .spawn()
        .expect("socat (qemu-tests/setup.sh installs it)");
    let codes = d.join("codes");
    std::fs::create_dir_all(&codes).unwrap();
    std::fs::copy(d.join("code"), codes.join("code")).unwrap();
    let codes_disk = d.join("codes.img");
    qemu_tests::guest::ext4_of(&codes, &codes_disk, 8 * MIB, None).unwrap();

    let export_port = free_port();
    let mut cfg = VmConfig::new(vec![
        Disk::new(&src, Controller::VirtioBlk, "BENCH-SRC"),
        Disk::new(&codes_disk, Controller::VirtioBlk, "BENCH-CODE"),
    ])
    .append("rescue.net=dhcp");
    cfg.user_net_both(
        &[(7000, recv_port), (7001, sink_port)],
        &[(export_port, 10809)],
    );
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let sh = |vm: &mut Vm, c: &str| {
        let (out, code) = vm.shell(c, T);
        assert!(code == 0 || code == 1, "{c}:\n{out}");
        out
    };
    sh(
        &mut vm,
        "mkdir -p /mnt/c && mount -o ro -t ext4 /dev/vdb /mnt/c",
    );
    let (mut ours, mut nc) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let out = sh(
            &mut vm,
            &format!(
                "a=$(cut -d' ' -f1 /proc/uptime); rescue image /dev/vda rescue://10.0.2.100:7000/r{round}.img \
                 --code-file /mnt/c/code > /dev/null 2>&1; b=$(cut -d' ' -f1 /proc/uptime); echo \"took $a $b\""
            ),
        );
        ours.push(guest_seconds(&out));
        let out = sh(
            &mut vm,
            "a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/vda bs=1M 2>/dev/null | nc 10.0.2.100 7001; \
             b=$(cut -d' ' -f1 /proc/uptime); echo \"took $a $b\"",
        );
        nc.push(guest_seconds(&out));
    }

    // The export, read by the host.
    let out = sh(
        &mut vm,
        "rescue export /dev/vda --nbd 10809 --allow 10.0.2.2 --json > /tmp/ex.json 2>/dev/null & \
         while [ ! -s /tmp/ex.json ] && kill -0 $! 2>/dev/null; do sleep 0.1; done; cat /tmp/ex.json",
    );
    let token = out
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["token"].as_str().map(String::from))
        .expect("export token");
    let nbd_port = free_port();
    let mut qemu_nbd = Command::new("qemu-nbd")
        .args([
            "--read-only",
            "--persistent",
            "-f",
            "raw",
            "-b",
            "127.0.0.1",
        ])
        .arg(format!("--port={nbd_port}"))
        .arg(&src)
        .spawn()
        .expect("qemu-nbd (qemu-utils)");
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", nbd_port)).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "qemu-nbd did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let copy = |url: &str| -> f64 {
        let t = Instant::now();
        let st = Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw", url])
            .arg(d.join("copy.raw"))
            .status()
            .unwrap();
        assert!(st.success(), "qemu-img convert {url}");
        t.elapsed().as_secs_f64()
    };
    let (mut exp, mut qn) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        exp.push(copy(&format!("nbd://127.0.0.1:{export_port}/{token}")));
        qn.push(copy(&format!("nbd://127.0.0.1:{nbd_port}")));
    }
    for child in [&mut qemu_nbd, &mut sink, &mut receiver] {
        let _ = child.kill();
        let _ = child.wait();
    }
    vm.shell("kill $!; wait $!", T);
    vm.power_off_from_shell();

    let (o, n, e, q) = (
        median(ours.clone()),
        median(nc.clone()),
        median(exp.clone()),
        median(qn.clone()),
    );
    println!("disk: {mib} MiB, rounds: {rounds}, medians");
    println!(
        "  rescue image -> rescue receive : {o:.2} s  {:.1} MiB/s  {ours:.2?}",
        mib as f64 / o
    );
    println!(
        "  dd | nc -> socat file          : {n:.2} s  {:.1} MiB/s  {nc:.2?}",
        mib as f64 / n
    );
    println!(
        "ratio stream (dd|nc time / ours; at least 0.9 wanted): {:.2}",
        n / o
    );
    println!(
        "  qemu-img from rescue export     : {e:.2} s  {:.1} MiB/s  {exp:.2?}",
        mib as f64 / e
    );
    println!(
        "  qemu-img from qemu-nbd on host  : {q:.2} s  {:.1} MiB/s  {qn:.2?}",
        mib as f64 / q
    );
    println!(
        "ratio export (qemu-nbd time / ours; at least 1.0 wanted): {:.2}",
        q / e
    );
}
