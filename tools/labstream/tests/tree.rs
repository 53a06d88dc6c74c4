//! Tree sessions (`rescue vmfs extract ... rescue://`) over 127.0.0.1 on
//! the real ESXi-written vmfs5 fixture: the receiver's tree equals a local
//! extraction, a cut link resumes per file to the same tree, a hostile
//! sender's escaping paths and symlink tricks are refused, a wrong code
//! fails at once.

use labstream::channel;
use labstream::frame::{Entry, EntryKind, Frame, Hello, VERSION};
use labstream::receiver::{ReceiveOptions, Receiver, Say, ServeReport};
use labstream::sender::{SendError, Target};
use labstream::treesend::{send_tree, volume_identity, TreeJob, TreeReport};
use labstream::PairingCode;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::TempDir;
use vmfs::Volume;

fn vmfs5() -> Volume {
    let p = testkit::fixtures::unpacked("vmfs/vmfs5.bin.gz", None)
        .expect("the vmfs5 fixture (../shared/fixtures/vmfs/vmfs5.bin.gz) is needed");
    Volume::from_devices(vec![Box::new(blockdev::Device::open(p).unwrap())]).unwrap()
}

fn paths() -> Vec<String> {
    vec!["directory".into(), "bigger".into(), "small".into()]
}

struct Rx {
    addr: SocketAddr,
    code: PairingCode,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ServeReport>>,
}

impl Rx {
    fn start(dir: &Path, force: bool) -> Rx {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = Arc::clone(&lines);
        let say: Say = Arc::new(move |s: String| l2.lock().unwrap().push(s));
        let opts = ReceiveOptions {
            dir: dir.to_path_buf(),
            max_senders: 2,
            force,
            once: false,
        };
        let rx =
            Receiver::bind("127.0.0.1:0", opts, PairingCode::generate().unwrap(), say).unwrap();
        let addr = rx.local_addr().unwrap();
        let code = rx.code().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        Rx {
            addr,
            code,
            lines,
            stop,
            handle: Some(std::thread::spawn(move || rx.serve(&s2))),
        }
    }

    fn lines(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn wait_for(&self, what: &str) -> String {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let l = self.lines();
            if l.contains(what) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no receiver line with {what:?}:\n{}", self.lines());
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

fn send(
    v: &Volume,
    addr: SocketAddr,
    name: &str,
    code: &PairingCode,
) -> Result<TreeReport, SendError> {
    let p = paths();
    let job = TreeJob {
        volume: v,
        paths: &p,
        identity: volume_identity(v),
    };
    let target = Target {
        addr: addr.to_string(),
        name: name.into(),
    };
    send_tree(&job, &target, code, &AtomicBool::new(false), &mut |_| {})
}

/// Every entry under `root`: relative path, kind, size, mtime, content
/// (files) or target (links).
fn listing(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for n in entries {
            let r = rel.join(&n);
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(r.clone());
                format!("dir mtime {}", m.mtime())
            } else {
                let data = std::fs::read(&p).unwrap();
                let sum: u64 = data
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| (i as u64 + 1) * u64::from(b))
                    .sum();
                format!("file {} bytes mtime {} sum {sum}", m.len(), m.mtime())
            };
            out.push((r.display().to_string(), what));
        }
    }
    out.sort();
    out
}

fn local(v: &Volume, dest: &Path) -> Vec<(String, String)> {
    let r =
        vmfs::extract::extract(v, &paths(), dest, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert!(r.stopped.is_none(), "{:?}", r.stopped);
    listing(dest)
}

#[test]
fn a_tree_equals_a_local_extraction_and_a_second_run_sends_nothing() {
    let t = TempDir::new("labstream-tree");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let v = vmfs5();
    let want = local(&v, &t.join("local"));
    assert!(
        want.iter().any(|(p, _)| p == "directory/file42"),
        "{want:?}"
    );
    let rx = Rx::start(&recv, false);
    let r = send(&v, rx.addr, "vms", &rx.code).unwrap();
    assert_eq!(r.exit_code(), 0, "{r:?}");
    assert!(r.finished);
    assert_eq!(r.stats.verified, r.extract.files);
    assert!(r.stats.mismatched.is_empty());
    rx.wait_for("files verified");
    assert_eq!(listing(&recv.join("vms")), want);
    let sums = std::fs::read_to_string(recv.join("vms.sha256")).unwrap();
    assert!(sums.contains("  vms/bigger\n"), "{sums}");
    assert!(std::fs::read_to_string(recv.join("vms.source"))
        .unwrap()
        .contains("vmfs uuid"));

    // Again: every file is there whole; it is verified, not sent.
    let r2 = send(&v, rx.addr, "vms", &rx.code).unwrap();
    assert_eq!(r2.exit_code(), 0);
    assert_eq!(r2.stats.sent, 0, "{r2:?}");
    assert_eq!(r2.stats.already, r2.extract.files - count_empty(&want));
    assert_eq!(listing(&recv.join("vms")), want);
}

fn count_empty(l: &[(String, String)]) -> u64 {
    l.iter()
        .filter(|(_, w)| w.starts_with("file 0 bytes"))
        .count() as u64
}

/// A TCP proxy that cuts the link after `cut_after` bytes from the sender.
fn cutting_proxy(upstream: SocketAddr, cut_after: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = l.accept() else {
            return;
        };
        let mut server = TcpStream::connect(upstream).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(Shutdown::Both);
        });
        let mut buf = vec![0u8; 16384];
        let mut total = 0u64;
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = n.min((cut_after - total) as usize);
            let _ = server.write_all(&buf[..n]);
            total += n as u64;
            if total >= cut_after {
                break;
            }
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
    addr
}

#[test]
fn a_cut_link_resumes_per_file_to_the_same_tree() {
    let t = TempDir::new("labstream-tree-cut");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let v = vmfs5();
    let want = local(&v, &t.join("local"));
    let rx = Rx::start(&recv, false);
    // Cut in the middle of `bigger` (128 MiB, its stored part sent after
    // the directory's small files).
    let proxy = cutting_proxy(rx.addr, 3 << 20);
    let r = send(&v, proxy, "vms", &rx.code).unwrap();
    assert_eq!(r.exit_code(), 2, "a dropped link: {r:?}");
    let why = r.extract.stopped.clone().unwrap();
    assert!(why.contains("rescue-partial"), "{why}");
    rx.wait_for("the link dropped");
    // The receiver has a partial file; the tree is not complete.
    assert_ne!(listing(&recv.join("vms")), want);

    let r2 = send(&v, rx.addr, "vms", &rx.code).unwrap();
    assert_eq!(r2.exit_code(), 0, "{r2:?}");
    assert!(
        r2.stats.already + r2.stats.continued > 0,
        "something was resumed: {:?}",
        r2.stats
    );
    assert!(r2.stats.sent < r.extract.total + r2.extract.total);
    assert_eq!(listing(&recv.join("vms")), want);
}

#[test]
fn a_wrong_code_fails_at_once_and_another_source_is_refused() {
    let t = TempDir::new("labstream-tree-code");
    let recv = t.join("recv");
    std::fs::create_dir(&recv).unwrap();
    let v = vmfs5();
    let rx = Rx::start(&recv, false);
    let wrong = PairingCode::parse("0000-0000-0000-0000").unwrap();
    match send(&v, rx.addr, "vms", &wrong) {
        Err(SendError::Handshake(channel::HandshakeError::WrongCode)) => {}
        other => panic!("{other:?}"),
    }
    assert!(!recv.join("vms").exists());
    // An image there is not a tree.
    std::fs::write(recv.join("disk.img"), b"x").unwrap();
    match send(&v, rx.addr, "disk.img", &rx.code) {
        Err(SendError::Refused(why)) => assert!(why.contains("not a directory"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A tree of another source needs --force.
    std::fs::create_dir(recv.join("other")).unwrap();
    std::fs::write(
        recv.join("other.source"),
        "size 0\nidentity vmfs uuid someone else\n",
    )
    .unwrap();
    match send(&v, rx.addr, "other", &rx.code) {
        Err(SendError::Refused(why)) => assert!(why.contains("--force"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// A hostile sender speaking the protocol by hand.
struct Hostile {
    ch: channel::Channel,
}

impl Hostile {
    fn connect(rx: &Rx, name: &str) -> Hostile {
        let s = TcpStream::connect(rx.addr).unwrap();
        let mut ch = channel::connect(s, &rx.code).unwrap();
        ch.send(&Frame::Hello(Hello {
            version: VERSION,
            size: 0,
            sector: 0,
            sparse: true,
            tree: true,
            name: name.into(),
            identity: "hostile".into(),
        }))
        .unwrap();
        assert!(matches!(ch.recv().unwrap(), Frame::Welcome(_)));
        Hostile { ch }
    }

    fn offer(&mut self, kind: EntryKind, path: &str, target: &str) -> std::io::Result<Frame> {
        self.ch.send(&Frame::Entry(Entry {
            kind,
            mode: 0o4777,
            size: 5,
            atime: 0,
            mtime: 0,
            path: path.into(),
            target: target.into(),
        }))?;
        self.ch.recv()
    }
}

#[test]
fn a_hostile_sender_cannot_leave_the_directory() {
    let t = TempDir::new("labstream-tree-hostile");
    let recv = t.join("recv");
    let outside = t.join("outside");
    std::fs::create_dir(&recv).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let rx = Rx::start(&recv, false);

    // Escaping paths end the session.
    for bad in ["../escape", "/etc/x", "a/../../escape", "a//b", "x\0y", ""] {
        let mut h = Hostile::connect(&rx, "evil");
        match h.offer(EntryKind::File, bad, "") {
            Ok(Frame::Refuse(why)) => assert!(why.contains("refused"), "{bad:?}: {why}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }

    // A symlink it made is never followed: not for a file, not for a
    // directory, not as a parent.
    let mut h = Hostile::connect(&rx, "evil");
    let target = outside.display().to_string();
    assert!(matches!(
        h.offer(EntryKind::Symlink, "link", &target).unwrap(),
        Frame::Accept(0)
    ));
    for (kind, path) in [
        (EntryKind::File, "link"),
        (EntryKind::File, "link/x"),
        (EntryKind::Dir, "link"),
        (EntryKind::Dir, "link/sub"),
        (EntryKind::DirTimes, "link"),
    ] {
        match h.offer(kind, path, "").unwrap() {
            Frame::Skip(why) => assert!(
                why.contains("symlink") || why.contains("not a file"),
                "{path}: {why}"
            ),
            other => panic!("{path}: {other:?}"),
        }
    }
    // A file: data beyond its size is refused; setuid bits are dropped.
    match h.offer(EntryKind::File, "ok", "").unwrap() {
        Frame::Accept(0) => {}
        other => panic!("{other:?}"),
    }
    h.ch.send(&Frame::Data {
        offset: 0,
        bytes: b"hello".to_vec(),
    })
    .unwrap();
    use sha2::Digest;
    let d: [u8; 32] = sha2::Sha256::digest(b"hello").into();
    h.ch.send(&Frame::FileEnd {
        sha256: d,
        lost: vec![],
    })
    .unwrap();
    assert_eq!(h.ch.recv().unwrap(), Frame::Digest(d));
    let m = std::fs::metadata(recv.join("evil/ok")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o777);
    match h.offer(EntryKind::File, "big", "").unwrap() {
        Frame::Accept(0) => {}
        other => panic!("{other:?}"),
    }
    h.ch.send(&Frame::Data {
        offset: 3,
        bytes: b"too long".to_vec(),
    })
    .unwrap();
    assert!(matches!(h.ch.recv().unwrap(), Frame::Refuse(_)));

    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!t.join("escape").exists());
    assert!(std::fs::symlink_metadata(recv.join("evil/link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let l = rx.lines();
    assert!(l.contains("paths must stay inside"), "{l}");
}
