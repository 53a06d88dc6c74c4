//! `rescue export` on 127.0.0.1 against the lab host's tools: qemu-img,
//! qemu-io and qemu-nbd (qemu-utils), nbdinfo and nbdcopy (libnbd-bin),
//! and raw clients for what those tools do not show (the allow list, the
//! list option, the client limit). A missing tool fails the test.

use export::allow::AllowList;
use export::{Exporter, Options, Report, Say};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::TempDir;

fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A running export and what it said.
struct Running {
    addr: SocketAddrV4,
    token: String,
    stop: Arc<AtomicBool>,
    said: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<Report>>,
}

impl Running {
    fn url(&self) -> String {
        format!("nbd://{}/{}", self.addr, self.token)
    }

    fn stop(mut self) -> (Report, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let report = self.thread.take().unwrap().join().unwrap();
        let said = self.said.lock().unwrap().clone();
        (report, said)
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().join("\n")
    }
}

/// Exports the image file `path` (with `map`, its unrescued areas read as
/// EIO) on 127.0.0.1, a free port, the way the front does: the source as
/// attach opens an image, then attach's served device.
fn start(
    path: &std::path::Path,
    map: Option<&std::path::Path>,
    allow: &str,
    max: usize,
) -> Running {
    let dev = blockdev::Device::open(path.to_str().unwrap()).unwrap();
    let opts = attach::Options {
        map: map.map(|m| m.to_path_buf()),
        ..Default::default()
    };
    let (device, _) = attach::served_device(Arc::new(dev), &opts).unwrap();
    let mut o = Options::new("127.0.0.1:0", AllowList::parse(&[allow]).unwrap());
    o.max_clients = max;
    o.progress_every = Duration::from_millis(100);
    let token = export::new_token().unwrap();
    let exporter = Exporter::bind(device, token.clone(), o).unwrap();
    let addr = exporter.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let said = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&said);
    let say: Say = Arc::new(move |l: String| sink.lock().unwrap().push(l));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || exporter.serve(&flag, &say));
    Running {
        addr,
        token,
        stop,
        said,
        thread: Some(thread),
    }
}

fn image(t: &TempDir, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let bytes = data(len);
    let p = t.join("disk.img");
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn tool(name: &str, package: &str, args: &[&str]) -> Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} ({package}) is needed: {e}"))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Waits until the export has said something containing `what`.
fn wait_for(r: &Running, what: &str) {
    let began = Instant::now();
    while !r.said().contains(what) {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "never said {what:?}:\n{}",
            r.said()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn qemu_img_and_nbdcopy_copy_the_export_exactly() {
    let t = TempDir::new("export-copy");
    let (path, bytes) = image(&t, 16 << 20);
    let r = start(&path, None, "127.0.0.1", 4);
    let out = t.join("copy.raw");
    let o = tool(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &r.url(),
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "qemu-img's copy differs"
    );
    let out2 = t.join("copy2.raw");
    let o = tool("nbdcopy", "libnbd-bin", &[&r.url(), out2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(&out2).unwrap() == bytes,
        "nbdcopy's copy differs"
    );
    // nbdinfo: the size, and read-only.
    let o = tool("nbdinfo", "libnbd-bin", &["--json", &r.url()]);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &info["exports"][0];
    assert_eq!(e["export-size"], 16 << 20, "{info}");
    assert_eq!(e["is_read_only"], true, "{info}");
    let (report, said) = r.stop();
    // qemu-img one connection, nbdcopy two (multi-conn), nbdinfo one.
    assert!(report.clients >= 3, "{said:?}");
    assert!(report.bytes >= 2 * (16 << 20), "{report:?}");
    assert_eq!(report.read_errors, 0);
    let said = said.join("\n");
    assert!(
        said.contains("127.0.0.1:") && said.contains("connected"),
        "{said}"
    );
    assert!(said.contains("disconnected: 16.0 MiB in"), "{said}");
    assert!(said.contains("read from the source"), "progress: {said}");
}

#[test]
fn a_bad_area_of_the_map_reads_as_an_io_error_and_the_rest_reads() {
    let t = TempDir::new("export-map");
    let (path, bytes) = image(&t, 4 << 20);
    // GNU ddrescue mapfile: 4 KiB at 1 MiB not rescued ('-').
    let map = t.join("disk.map");
    std::fs::write(
        &map,
        "# Mapfile\n0x400000 +\n0x0 0x100000 +\n0x100000 0x1000 -\n0x101000 0x2FF000 +\n",
    )
    .unwrap();
    let r = start(&path, Some(&map), "127.0.0.1", 4);
    let url = r.url();
    let io = |cmd: &str| {
        tool(
            "qemu-io",
            "qemu-utils",
            &["-r", "-f", "raw", "-c", cmd, &url],
        )
    };
    for bad in ["read 1M 4k", "read 1020k 8k", "read 1027k 512"] {
        let o = io(bad);
        assert!(
            text(&o).contains("Input/output error"),
            "{bad}: {}",
            text(&o)
        );
    }
    for good in ["read 0 1M", "read 1028k 4k", "read 2M 2M"] {
        let o = io(good);
        let s = text(&o);
        assert!(o.status.success() && !s.contains("error"), "{good}: {s}");
        assert!(s.contains("read "), "{good}: {s}");
    }
    // The bytes around the bad area are the image's.
    let o = io("read -v 1028k 16");
    let dump = String::from_utf8_lossy(&o.stdout).into_owned();
    let want: String = bytes[1028 << 10..(1028 << 10) + 16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(dump.contains(&want), "{dump}\nwant {want}");
    // qemu-img convert stops at the bad area.
    let o = tool(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &url,
            t.join("c.raw").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let (report, said) = r.stop();
    assert!(report.read_errors >= 3, "{report:?} {said:?}");
}

#[test]
fn writes_fail() {
    let t = TempDir::new("export-write");
    let (path, bytes) = image(&t, 1 << 20);
    let r = start(&path, None, "127.0.0.1", 4);
    let o = tool(
        "qemu-io",
        "qemu-utils",
        &["-f", "raw", "-c", "write -P 0xaa 0 4k", &r.url()],
    );
    let s = text(&o);
    assert!(!s.contains("wrote "), "{s}");
    assert!(
        !o.status.success() || s.contains("Operation not permitted") || s.contains("read-only"),
        "{s}"
    );
    // A raw client that writes anyway is refused with EPERM.
    let mut c = TcpStream::connect(r.addr).unwrap();
    assert!(go(&mut c, &r.token).is_ok());
    let (err, _) = request(&mut c, 1, 0, 512, &[0xaa; 512]);
    assert_eq!(err, 1, "EPERM");
    let (err, body) = request(&mut c, 0, 0, 512, &[]);
    assert_eq!((err, body.as_slice()), (0, &bytes[..512]));
    drop(c);
    wait_for(&r, "write refused");
    let (report, _) = r.stop();
    assert_eq!(report.writes_refused, 1);
    assert!(std::fs::read(&path).unwrap() == bytes, "the image changed");
}

#[test]
fn a_wrong_token_is_refused_and_the_list_does_not_show_it() {
    let t = TempDir::new("export-token");
    let (path, _) = image(&t, 1 << 20);
    let r = start(&path, None, "127.0.0.1", 4);
    let wrong = format!("nbd://{}/{}x", r.addr, r.token);
    let o = tool("qemu-img", "qemu-utils", &["info", "-f", "raw", &wrong]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = tool(
        "qemu-img",
        "qemu-utils",
        &["info", "-f", "raw", &format!("nbd://{}", r.addr)],
    );
    assert!(!o.status.success(), "the default export: {}", text(&o));
    // Old-style NBD_OPT_EXPORT_NAME with a wrong name: closed.
    let mut c = TcpStream::connect(r.addr).unwrap();
    hello(&mut c);
    c.write_all(&option(1, b"guess")).unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    // The list: refused (NBD_REP_ERR_POLICY), the token nowhere.
    let mut c = TcpStream::connect(r.addr).unwrap();
    hello(&mut c);
    c.write_all(&option(3, &[])).unwrap();
    let (kind, data) = option_reply(&mut c);
    assert_eq!(kind, (1 << 31) + 2, "{data:?}");
    assert!(!String::from_utf8_lossy(&data).contains(&r.token));
    drop(c);
    let port = r.addr.port().to_string();
    let o = tool(
        "nbdinfo",
        "libnbd-bin",
        &["--list", &format!("nbd://{}", r.addr)],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("list"), "{}", text(&o));
    assert!(!text(&o).contains(&r.token), "{}", text(&o));
    let o = tool(
        "qemu-nbd",
        "qemu-utils",
        &["--list", "-b", "127.0.0.1", "-p", &port],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("exports are not listed"), "{}", text(&o));
    assert!(!text(&o).contains(&r.token), "{}", text(&o));
    // The right token still works.
    let o = tool("qemu-img", "qemu-utils", &["info", "-f", "raw", &r.url()]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(&r, "asked for export \"guess\"");
    let (report, said) = r.stop();
    assert!(report.wrong_name >= 3, "{report:?}\n{said:?}");
}

#[test]
fn clients_not_allowed_are_closed_at_accept() {
    let t = TempDir::new("export-allow");
    let (path, bytes) = image(&t, 1 << 20);
    let r = start(&path, None, "127.0.0.2", 4);
    // From 127.0.0.1: closed before the greeting.
    let mut c = TcpStream::connect(r.addr).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    let o = tool("qemu-img", "qemu-utils", &["info", "-f", "raw", &r.url()]);
    assert!(!o.status.success(), "{}", text(&o));
    // From 127.0.0.2: served.
    let mut c = connect_from("127.0.0.2", r.addr);
    go(&mut c, &r.token).unwrap();
    let (err, body) = request(&mut c, 0, 4096, 4096, &[]);
    assert_eq!((err, body.as_slice()), (0, &bytes[4096..8192]));
    disconnect(&mut c);
    wait_for(&r, "127.0.0.2:");
    wait_for(&r, "disconnected");
    let (report, said) = r.stop();
    assert_eq!(report.not_allowed, 2, "{said:?}");
    assert_eq!(report.clients, 1, "{said:?}");
    assert!(said.join("\n").contains("not in --allow"), "{said:?}");
}

#[test]
fn clients_past_the_limit_are_refused_and_stop_cuts_the_rest() {
    let t = TempDir::new("export-limit");
    let (path, bytes) = image(&t, 1 << 20);
    let r = start(&path, None, "127.0.0.0/8", 2);
    let mut a = TcpStream::connect(r.addr).unwrap();
    go(&mut a, &r.token).unwrap();
    let mut b = TcpStream::connect(r.addr).unwrap();
    go(&mut b, &r.token).unwrap();
    wait_for(&r, "(2 of at most 2 clients)");
    let mut c = TcpStream::connect(r.addr).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "a third client: {got:?}");
    // Both read the shared source at once.
    let (ea, da) = request(&mut a, 0, 0, 65536, &[]);
    let (eb, db) = request(&mut b, 0, 65536, 65536, &[]);
    assert_eq!((ea, eb), (0, 0));
    assert!(da == bytes[..65536] && db == bytes[65536..131072]);
    // Stop with both connected: served connections are cut, promptly.
    let began = Instant::now();
    let (report, said) = r.stop();
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let mut rest = Vec::new();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = a.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert_eq!(report.busy, 1, "{said:?}");
    assert_eq!(report.clients, 2, "{said:?}");
    assert!(said.join("\n").contains("--max-clients"), "{said:?}");
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let t = TempDir::new("export-silent");
    let (path, _) = image(&t, 1 << 20);
    let dev = blockdev::Device::open(path.to_str().unwrap()).unwrap();
    let mut o = Options::new("127.0.0.1:0", AllowList::parse(&["127.0.0.1"]).unwrap());
    o.handshake_timeout = Duration::from_millis(200);
    let exporter = Exporter::bind(Arc::new(dev), "tok".into(), o).unwrap();
    let addr = exporter.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let said = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&said);
    let say: Say = Arc::new(move |l: String| sink.lock().unwrap().push(l));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || exporter.serve(&flag, &say));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert_eq!(got.len(), 18, "the greeting, then closed");
    stop.store(true, Ordering::SeqCst);
    let report = thread.join().unwrap();
    assert_eq!(report.connection_errors, 1);
    assert!(said.lock().unwrap().join("\n").contains("timed out"));
}

#[test]
fn the_front_refuses_a_missing_allow_list_and_a_bad_address() {
    use argh::FromArgs;
    let t = TempDir::new("export-cli");
    let (path, _) = image(&t, 1 << 20);
    let opened = std::cell::Cell::new(0);
    let open = |s: &str, _: &[String]| -> Result<attach::Source, String> {
        opened.set(opened.get() + 1);
        Ok(attach::Source {
            device: Arc::new(blockdev::Device::open(s).map_err(|e| e.to_string())?),
            what: format!("image {s}"),
            source: s.to_string(),
            notes: Vec::new(),
        })
    };
    let stop = AtomicBool::new(true);
    let p = path.to_str().unwrap();
    for args in [
        vec![p, "--nbd", "0"],
        vec![p, "--nbd", "0", "--allow", ""],
        vec![p, "--nbd", "0", "--allow", "lab"],
        vec![p, "--nbd", "host:1", "--allow", "10.0.0.1"],
        vec![
            p,
            "--nbd",
            "127.0.0.1:0",
            "--allow",
            "10.0.0.1",
            "--max-clients",
            "0",
        ],
    ] {
        let c = export::cli::ExportCommand::from_args(&["export"], &args).unwrap();
        assert_eq!(export::cli::run(c, &open, &stop), 2, "{args:?}");
    }
    assert_eq!(
        opened.get(),
        0,
        "nothing opened before the arguments were checked"
    );
    // Stopped at once: exit 0, the source opened once.
    let c = export::cli::ExportCommand::from_args(
        &["export"],
        &[p, "--nbd", "127.0.0.1:0", "--allow", "127.0.0.1", "--json"],
    )
    .unwrap();
    assert_eq!(export::cli::run(c, &open, &stop), 0);
    assert_eq!(opened.get(), 1);
    assert!(
        export::cli::ExportCommand::from_args(&["export"], &[p, "--allow", "10.0.0.1"]).is_err()
    );
}

// ---- a raw NBD client ----

fn hello(c: &mut TcpStream) {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut h = [0u8; 18];
    c.read_exact(&mut h).unwrap();
    assert_eq!(&h[..16], b"NBDMAGICIHAVEOPT");
    c.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
}

fn option(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut o = b"IHAVEOPT".to_vec();
    o.extend(kind.to_be_bytes());
    o.extend((data.len() as u32).to_be_bytes());
    o.extend(data);
    o
}

fn option_reply(c: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    c.read_exact(&mut h).unwrap();
    assert_eq!(
        u64::from_be_bytes(h[..8].try_into().unwrap()),
        0x0003_e889_0455_65a9
    );
    let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut d = vec![0u8; len as usize];
    c.read_exact(&mut d).unwrap();
    (kind, d)
}

/// The handshake by NBD_OPT_GO; the transmission flags.
fn go(c: &mut TcpStream, name: &str) -> Result<u16, u32> {
    hello(c);
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend(name.as_bytes());
    d.extend(0u16.to_be_bytes());
    c.write_all(&option(7, &d)).unwrap();
    let mut flags = 0;
    loop {
        let (kind, data) = option_reply(c);
        match kind {
            1 => return Ok(flags),
            3 if data[..2] == [0, 0] => {
                flags = u16::from_be_bytes(data[10..12].try_into().unwrap());
                assert_eq!(flags & 0b11, 0b11, "has flags, read-only");
            }
            3 => {}
            e => return Err(e),
        }
    }
}

fn request(c: &mut TcpStream, kind: u16, offset: u64, len: u32, data: &[u8]) -> (u32, Vec<u8>) {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend(0u16.to_be_bytes());
    r.extend(kind.to_be_bytes());
    r.extend(9u64.to_be_bytes());
    r.extend(offset.to_be_bytes());
    r.extend(len.to_be_bytes());
    r.extend(data);
    c.write_all(&r).unwrap();
    let mut h = [0u8; 16];
    c.read_exact(&mut h).unwrap();
    assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x6744_6698);
    let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
    let mut body = vec![
        0u8;
        if err == 0 && kind == 0 {
            len as usize
        } else {
            0
        }
    ];
    c.read_exact(&mut body).unwrap();
    (err, body)
}

fn disconnect(c: &mut TcpStream) {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend(0u16.to_be_bytes());
    r.extend(2u16.to_be_bytes());
    r.extend([0u8; 20]);
    c.write_all(&r).unwrap();
}

/// A TCP connection from the local address `from` (another loopback
/// address, to test the allow list).
fn connect_from(from: &str, to: SocketAddrV4) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let local: SocketAddrV4 = format!("{from}:0").parse().unwrap();
    rustix::net::bind(&fd, &local).unwrap();
    rustix::net::connect(&fd, &to).unwrap();
    TcpStream::from(fd)
}
