//! `rescue receive` and the streaming sender over 127.0.0.1: the result
//! equals a local `rescue image` run (image and mapfile), a cut link
//! resumes to the same result, a wrong code, a flipped byte, escaping
//! names, another source and too many senders are refused.

use blockdev::{BlockDevice, MemDevice};
use ddmap::{Map, Status};
use imaging::{FaultDevice, FileSink, MapStore, Options, Outcome};
use labstream::channel::{self, HandshakeError};
use labstream::receiver::{ReceiveOptions, Receiver, Say, ServeReport, SessionEnd};
use labstream::sender::{send, SendError, SendJob, SendReport, Target};
use labstream::PairingCode;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::TempDir;

const SIZE: usize = 4 << 20;

fn data(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[SIZE / 4..SIZE / 4 + (256 << 10)].fill(0);
    v
}

/// A source with bad sectors in a few places (a cluster, a run, the end).
fn source(seed: u64) -> FaultDevice<MemDevice> {
    let bad: Vec<u64> = [100, 101, 102, 3000, 5000, 5001, 8191]
        .into_iter()
        .chain(6000..6040)
        .collect();
    FaultDevice::new(MemDevice::new(data(seed), 512)).with_bad_sectors(bad)
}

fn options() -> Options {
    Options {
        // Saves after every read, so a cut link leaves a map to resume
        // from however fast the first megabytes go (a 20 ms interval left
        // none when the whole cut-off stream took less, seen in the suite).
        mapfile_interval: Duration::ZERO,
        progress_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

/// A local `rescue image` run: the image and the map it ends with.
fn local_run(src: &dyn BlockDevice, dir: &Path) -> (Vec<u8>, Map) {
    let img = dir.join("local.img");
    let mapf = dir.join("local.map");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&img)
        .unwrap();
    let mut sink = FileSink::new(f, false).unwrap();
    let mut map = Map::new(src.size());
    let store = MapStore {
        path: Some(mapf.clone()),
        header: Default::default(),
    };
    let r = imaging::rescue(
        src,
        &mut sink,
        &mut map,
        &store,
        &options(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(r.outcome, Outcome::Completed), "{:?}", r.outcome);
    let (m, _) = ddmap::load(&mapf).unwrap().unwrap();
    (std::fs::read(&img).unwrap(), m)
}

struct Rx {
    addr: SocketAddr,
    code: PairingCode,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ServeReport>>,
}

impl Rx {
    fn start(dir: &Path, max_senders: usize, force: bool) -> Rx {
        Rx::start_with(dir, max_senders, force, false)
    }

    fn start_with(dir: &Path, max_senders: usize, force: bool, once: bool) -> Rx {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = Arc::clone(&lines);
        let say: Say = Arc::new(move |s: String| l2.lock().unwrap().push(s));
        let opts = ReceiveOptions {
            dir: dir.to_path_buf(),
            max_senders,
            force,
            once,
        };
        let rx =
            Receiver::bind("127.0.0.1:0", opts, PairingCode::generate().unwrap(), say).unwrap();
        let addr = rx.local_addr().unwrap();
        let code = rx.code().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let handle = Some(std::thread::spawn(move || rx.serve(&s2)));
        Rx {
            addr,
            code,
            lines,
            stop,
            handle,
        }
    }

    fn lines(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a line contains `what` (sessions end on their own thread).
    fn wait_for(&self, what: &str) -> String {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            let l = self.lines();
            if l.contains(what) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no receiver line with {what:?}:\n{}", self.lines());
    }

    fn stop(mut self) -> ServeReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn job<'a>(src: &'a dyn BlockDevice, identity: &str) -> SendJob<'a> {
    SendJob {
        source: src,
        identity: identity.into(),
        sparse: false,
        options: options(),
        command_line: "rescue image test".into(),
    }
}

fn send_to(
    addr: SocketAddr,
    name: &str,
    src: &dyn BlockDevice,
    code: &PairingCode,
) -> Result<SendReport, SendError> {
    let target = Target {
        addr: addr.to_string(),
        name: name.into(),
    };
    send(
        &job(src, "test source"),
        &target,
        code,
        &AtomicBool::new(false),
        &mut |_| {},
        &mut |_| {},
    )
}

/// The receiver's image and map for `name`.
fn received(dir: &Path, name: &str) -> (Vec<u8>, Map) {
    let (m, _) = ddmap::load(&dir.join(format!("{name}.map")))
        .unwrap()
        .unwrap();
    (std::fs::read(dir.join(name)).unwrap(), m)
}

fn assert_same_map(a: &Map, b: &Map) {
    let ea: Vec<_> = a.extents().map(|e| (e.pos, e.size, e.status)).collect();
    let eb: Vec<_> = b.extents().map(|e| (e.pos, e.size, e.status)).collect();
    assert_eq!(ea, eb, "maps differ:\n{a:?}\n{b:?}");
    assert_eq!(a.current_status, b.current_status);
}

/// A TCP proxy in front of the receiver: it cuts the connection after
/// `cut_after` bytes from the sender, or flips the byte at `flip_at`.
struct Proxy {
    addr: SocketAddr,
}

impl Proxy {
    fn start(upstream: SocketAddr, cut_after: Option<u64>, flip_at: Option<u64>) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            // One connection: the test's only sender.
            let Ok((client, _)) = l.accept() else { return };
            let server = TcpStream::connect(upstream).unwrap();
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pump(s2, c2, None, None));
            pump(client, server, cut_after, flip_at);
        });
        Proxy { addr }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut_after: Option<u64>, flip_at: Option<u64>) {
    let mut buf = vec![0u8; 16384];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut n = n;
        if let Some(c) = cut_after {
            if total + n as u64 >= c {
                n = (c - total) as usize;
                let _ = to.write_all(&buf[..n]);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        if let Some(f) = flip_at {
            if (total..total + n as u64).contains(&f) {
                buf[(f - total) as usize] ^= 0x40;
            }
        }
        total += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn full_transfer_equals_a_local_run() {
    let t = TempDir::new("labstream-full");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let (img, map) = local_run(&source(1), t.path());
    let rx = Rx::start(&recv, 2, false);
    let r = send_to(rx.addr, "disk0.img", &source(1), &rx.code).unwrap();
    assert!(
        matches!(r.report.outcome, Outcome::Completed),
        "{:?}",
        r.report.outcome
    );
    assert!(r.verified(), "{r:?}");
    assert_eq!(r.exit_code(), 1, "bad areas remain: exit 1");
    assert_eq!(r.resumed_from, None);
    let lines = rx.wait_for("complete and verified");
    let (rimg, rmap) = received(&recv, "disk0.img");
    assert_eq!(rimg, img, "images differ");
    assert_same_map(&rmap, &map);
    assert!(map.bytes(Status::BadSector) > 0);
    // The digest file and the source record beside the image.
    let sum = std::fs::read_to_string(recv.join("disk0.img.sha256")).unwrap();
    assert!(
        sum.starts_with(&imaging::hash::hex(&r.sha256.unwrap())),
        "{sum}"
    );
    assert!(std::fs::read_to_string(recv.join("disk0.img.source"))
        .unwrap()
        .contains("identity test source"));
    assert!(lines.contains("new image"), "{lines}");
    assert!(lines.contains("% "), "a progress line: {lines}");
}

#[test]
fn cut_link_resumes_to_the_same_result() {
    let t = TempDir::new("labstream-resume");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let (img, map) = local_run(&source(2), t.path());
    let rx = Rx::start(&recv, 2, false);
    for cut in [1_500_000u64, 1_200_000] {
        let p = Proxy::start(rx.addr, Some(cut), None);
        let r = send_to(p.addr, "disk.img", &source(2), &rx.code).unwrap();
        assert!(
            matches!(r.report.outcome, Outcome::WriteFailed(_)),
            "{:?}",
            r.report.outcome
        );
        assert_eq!(r.exit_code(), 2);
        rx.wait_for("the link dropped");
    }
    let (_, partial) = received(&recv, "disk.img");
    let before = partial.bytes(Status::Finished);
    assert!(before > 1_000_000 && before < SIZE as u64, "{before}");
    // The receiver restarts too (a lab host reboot): a new code, the same DIR.
    drop(rx);
    let rx = Rx::start(&recv, 2, false);
    let r = send_to(rx.addr, "disk.img", &source(2), &rx.code).unwrap();
    assert!(r.verified(), "{r:?}");
    assert_eq!(r.resumed_from, Some(before));
    assert!(
        r.report.rescued_this_run < SIZE as u64 - before + 1,
        "finished areas were not sent again"
    );
    rx.wait_for("complete and verified");
    let (rimg, rmap) = received(&recv, "disk.img");
    assert_eq!(rimg, img, "images differ");
    assert_same_map(&rmap, &map);
}

#[test]
fn wrong_code_is_refused_at_once_and_retired_after_five() {
    let t = TempDir::new("labstream-code");
    let rx = Rx::start(t.path(), 2, false);
    let wrong = PairingCode::parse("0000-0000-0000-0000").unwrap();
    let t0 = Instant::now();
    let e = send_to(rx.addr, "x.img", &source(3), &wrong).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        matches!(e, SendError::Handshake(HandshakeError::WrongCode)),
        "{e:?}"
    );
    assert!(e.to_string().contains("wrong pairing code"), "{e}");
    rx.wait_for("wrong pairing code, refused (1 of 5");
    assert!(!t.join("x.img").exists());
    for _ in 1..5 {
        let _ = send_to(rx.addr, "x.img", &source(3), &wrong);
    }
    rx.wait_for("the code is retired");
    let rep = rx.handle_join();
    assert!(rep.retired);
    assert_eq!(rep.exit_code(), 2);
    assert_eq!(rep.wrong_codes, 5);
}

impl Rx {
    /// Waits for serve to return on its own.
    fn handle_join(mut self) -> ServeReport {
        self.handle.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_flipped_byte_ends_the_session_on_both_ends() {
    let t = TempDir::new("labstream-flip");
    let rx = Rx::start(t.path(), 2, false);
    let p = Proxy::start(rx.addr, None, Some(700_000));
    // The sender hears of it as the session's outcome, or, when the
    // receiver has closed before the next write, as that write failing.
    let msg = match send_to(p.addr, "f.img", &source(4), &rx.code) {
        Ok(r) => {
            assert!(!r.verified());
            assert_eq!(r.exit_code(), 2);
            format!("{:?}", r.report.outcome)
        }
        Err(e) => format!("{e:?}").replace("Broken pipe", "closed"),
    };
    assert!(
        msg.contains("altered") || msg.contains("closed") || msg.contains("reset"),
        "{msg}"
    );
    let lines = rx.wait_for("authentication failed: the stream was altered");
    assert!(lines.contains("f.img from"), "{lines}");
    // What the map claims is still good: resume gives the right image.
    let r = send_to(rx.addr, "f.img", &source(4), &rx.code).unwrap();
    assert!(r.verified(), "{r:?}");
}

#[test]
fn a_flipped_handshake_byte_fails_too() {
    let t = TempDir::new("labstream-flip-hs");
    let rx = Rx::start(t.path(), 2, false);
    let p = Proxy::start(rx.addr, None, Some(20));
    let e = send_to(p.addr, "f.img", &source(4), &rx.code).unwrap_err();
    assert!(
        matches!(e, SendError::Handshake(HandshakeError::WrongCode)),
        "{e:?}"
    );
    rx.stop();
}

#[test]
fn escaping_names_are_refused_by_the_receiver() {
    let t = TempDir::new("labstream-names");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let outside = t.join("outside");
    std::fs::write(&outside, b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, recv.join("link.img")).unwrap();
    let rx = Rx::start(&recv, 2, true);
    for name in [
        "../outside",
        "/tmp/x",
        "a/b",
        "..",
        ".x",
        "a\0b",
        "x.map",
        "link.img",
    ] {
        match send_to(rx.addr, name, &source(5), &rx.code) {
            Err(SendError::Refused(why)) => {
                assert!(
                    why.contains("image name") || why.contains("symlink"),
                    "{name:?}: {why}"
                )
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    let mut names: Vec<_> = std::fs::read_dir(&recv)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("link.img")]);
    // And the sender checks the URL before connecting.
    assert!(Target::parse("rescue://127.0.0.1:1/../x").is_err());
}

#[test]
fn another_source_is_refused_without_force() {
    let t = TempDir::new("labstream-force");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let rx = Rx::start(&recv, 2, false);
    assert!(send_to(rx.addr, "d.img", &source(6), &rx.code)
        .unwrap()
        .verified());
    let before = std::fs::read(recv.join("d.img")).unwrap();
    let src7 = source(7);
    let other = job(&src7, "another disk");
    let target = Target {
        addr: rx.addr.to_string(),
        name: "d.img".into(),
    };
    let e = send(
        &other,
        &target,
        &rx.code,
        &AtomicBool::new(false),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap_err();
    let SendError::Refused(why) = &e else {
        panic!("{e:?}")
    };
    assert!(
        why.contains("another source") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(std::fs::read(recv.join("d.img")).unwrap(), before);
    // A foreign file under the name is refused too.
    std::fs::write(recv.join("mine.img"), b"precious").unwrap();
    let e = send_to(rx.addr, "mine.img", &source(6), &rx.code).unwrap_err();
    assert!(
        e.to_string().contains("not written by rescue receive"),
        "{e}"
    );
    assert_eq!(std::fs::read(recv.join("mine.img")).unwrap(), b"precious");
    drop(rx);
    // With --force the other source replaces the image.
    let rx = Rx::start(&recv, 2, true);
    let target = Target {
        addr: rx.addr.to_string(),
        name: "d.img".into(),
    };
    let r = send(
        &other,
        &target,
        &rx.code,
        &AtomicBool::new(false),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    assert!(r.verified() && r.resumed_from.is_none(), "{r:?}");
    rx.wait_for("overwriting (--force)");
}

#[test]
fn senders_beyond_the_limit_are_refused_as_busy() {
    let t = TempDir::new("labstream-busy");
    let rx = Rx::start(t.path(), 1, false);
    // One paired connection holds the only slot.
    let held = channel::connect(TcpStream::connect(rx.addr).unwrap(), &rx.code).unwrap();
    let e = send_to(rx.addr, "b.img", &source(8), &rx.code).unwrap_err();
    assert!(
        matches!(e, SendError::Handshake(HandshakeError::Busy)),
        "{e:?}"
    );
    assert!(e.to_string().contains("busy"), "{e}");
    rx.wait_for("refused: already 1 senders");
    drop(held);
    // Once it is gone the slot is free again.
    let t0 = Instant::now();
    loop {
        match send_to(rx.addr, "b.img", &source(8), &rx.code) {
            Ok(r) => {
                assert!(r.verified());
                break;
            }
            Err(SendError::Handshake(HandshakeError::Busy))
                if t0.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn once_ends_after_the_first_complete_image() {
    let t = TempDir::new("labstream-once");
    let rx = Rx::start_with(t.path(), 2, false, true);
    let src = FaultDevice::new(MemDevice::new(data(9), 512));
    let r = send_to(rx.addr, "ok.img", &src, &rx.code).unwrap();
    assert_eq!(r.exit_code(), 0);
    let rep = rx.handle_join();
    assert!(
        matches!(
            rep.last,
            Some(SessionEnd::Verified {
                all_rescued: true,
                ..
            })
        ),
        "{rep:?}"
    );
    assert_eq!(rep.exit_code(), 0);
    let _ = PathBuf::new();
}
