//! `rescue receive`: the lab host's end. It listens, pairs each sender by
//! the pairing code, and keeps each image with its mapfile in its
//! directory; a sender that comes back resumes from that mapfile.

use crate::channel::{self, Channel, HandshakeError};
use crate::code::PairingCode;
use crate::frame::{Frame, Hello, VERSION};
use crate::store::{check_name, Dir, SourceRecord};
use blockdev::BlockDevice;
use ddmap::{Map, Status};
use imaging::{FileSink, Sink, Totals};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Wrong pairing codes after which the code is retired and the receiver
/// stops: an online guesser gets this many tries at 80 bits.
pub const WRONG_CODE_LIMIT: u32 = 5;

/// How often a sender's progress line is printed at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    pub dir: PathBuf,
    /// Senders served at once; more are refused as busy.
    pub max_senders: usize,
    /// Replace an image of another source (or a file that is not ours).
    pub force: bool,
    /// Stop after the first session that ran to the end (verified or not).
    pub once: bool,
}

/// How one session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Complete and the digests agree; `all_rescued`: no bad areas.
    Verified {
        name: String,
        all_rescued: bool,
    },
    /// Complete but the digests differ.
    Mismatch {
        name: String,
    },
    /// The sender stopped (interrupted) or the link dropped: resumable.
    Ended {
        name: Option<String>,
        why: String,
    },
    /// Refused: bad name, other source, busy name, ...
    Refused(String),
    WrongCode,
    Busy,
    /// An error on our side or a protocol violation.
    Failed(String),
}

/// What [`Receiver::serve`] came to.
#[derive(Debug)]
pub struct ServeReport {
    /// The session that ended `--once`, or why serving stopped.
    pub last: Option<SessionEnd>,
    pub wrong_codes: u32,
    /// The code was retired after too many wrong codes.
    pub retired: bool,
}

impl ServeReport {
    /// 0: (with --once) verified and all rescued, or stopped by signal;
    /// 1: verified with bad areas; 2: mismatch, retired code, failure.
    pub fn exit_code(&self) -> i32 {
        if self.retired {
            return 2;
        }
        match &self.last {
            Some(SessionEnd::Verified {
                all_rescued: true, ..
            })
            | None => 0,
            Some(SessionEnd::Verified { .. }) => 1,
            Some(_) => 2,
        }
    }
}

/// Where the receiver's lines go (stdout in the CLI, a vector in tests).
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) dir: Dir,
    psk: [u8; 32],
    pub(crate) opts: ReceiveOptions,
    active: AtomicUsize,
    wrong: AtomicU32,
    names: Mutex<HashSet<String>>,
    conns: Mutex<HashMap<u64, TcpStream>>,
    pub(crate) say: Say,
}

pub struct Receiver {
    listener: TcpListener,
    code: PairingCode,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Binds `addr` (`PORT` alone listens on every IPv4 address) and opens
    /// the directory; `code` is the pairing code senders must give.
    pub fn bind(
        addr: &str,
        opts: ReceiveOptions,
        code: PairingCode,
        say: Say,
    ) -> io::Result<Receiver> {
        let addr = if addr.parse::<u16>().is_ok() {
            format!("0.0.0.0:{addr}")
        } else {
            addr.to_string()
        };
        let listener = TcpListener::bind(&addr)
            .map_err(|e| io::Error::new(e.kind(), format!("--listen {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let dir = Dir::open(&opts.dir)?;
        Ok(Receiver {
            listener,
            shared: Arc::new(Shared {
                dir,
                psk: code.psk(),
                opts,
                active: AtomicUsize::new(0),
                wrong: AtomicU32::new(0),
                names: Mutex::new(HashSet::new()),
                conns: Mutex::new(HashMap::new()),
                say,
            }),
            code,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn code(&self) -> &PairingCode {
        &self.code
    }

    /// Serves senders until `stop` is set, the code is retired, or (with
    /// `once`) a session has run to its end. Open sessions are then cut;
    /// their images stay resumable from the last saved mapfile.
    pub fn serve(self, stop: &AtomicBool) -> ServeReport {
        let sh = &self.shared;
        let (tx, rx) = mpsc::channel::<SessionEnd>();
        let mut next_id = 0u64;
        let mut handles = Vec::new();
        let mut last = None;
        let mut retired = false;
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nonblocking(false);
                    let busy = sh.active.load(Ordering::SeqCst) >= sh.opts.max_senders;
                    if !busy {
                        sh.active.fetch_add(1, Ordering::SeqCst);
                    }
                    next_id += 1;
                    let id = next_id;
                    if let Ok(c) = stream.try_clone() {
                        sh.conns.lock().expect("conns").insert(id, c);
                    }
                    let sh2 = Arc::clone(sh);
                    let tx = tx.clone();
                    handles.push(std::thread::spawn(move || {
                        let end = session(&sh2, stream, peer, busy);
                        sh2.conns.lock().expect("conns").remove(&id);
                        if !busy {
                            sh2.active.fetch_sub(1, Ordering::SeqCst);
                        }
                        let _ = tx.send(end);
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    (sh.say)(format!("accept: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            let mut done = false;
            while let Ok(end) = rx.try_recv() {
                if sh.opts.once
                    && matches!(
                        end,
                        SessionEnd::Verified { .. } | SessionEnd::Mismatch { .. }
                    )
                {
                    last = Some(end);
                    done = true;
                }
            }
            if sh.wrong.load(Ordering::SeqCst) >= WRONG_CODE_LIMIT {
                (sh.say)(format!(
                    "{WRONG_CODE_LIMIT} wrong pairing codes: the code is retired; start rescue receive again for a new one"
                ));
                retired = true;
                done = true;
            }
            if done {
                break;
            }
            handles.retain(|h| !h.is_finished());
        }
        // Cut open sessions; what they saved stays resumable.
        for c in sh.conns.lock().expect("conns").values() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        for h in handles {
            let _ = h.join();
        }
        ServeReport {
            last,
            wrong_codes: sh.wrong.load(Ordering::SeqCst),
            retired,
        }
    }
}

fn session(sh: &Shared, stream: TcpStream, peer: SocketAddr, busy: bool) -> SessionEnd {
    let mut ch = match channel::accept(stream, &sh.psk, busy) {
        Ok(ch) => ch,
        Err(HandshakeError::WrongCode) => {
            let n = sh.wrong.fetch_add(1, Ordering::SeqCst) + 1;
            (sh.say)(format!(
                "{peer}: wrong pairing code, refused ({n} of {WRONG_CODE_LIMIT} before the code is retired)"
            ));
            return SessionEnd::WrongCode;
        }
        Err(HandshakeError::Busy) => {
            (sh.say)(format!(
                "{peer}: refused: already {} senders (--max-senders)",
                sh.opts.max_senders
            ));
            return SessionEnd::Busy;
        }
        Err(e) => {
            (sh.say)(format!("{peer}: {e}"));
            return SessionEnd::Failed(e.to_string());
        }
    };
    let hello = match ch.recv() {
        Ok(Frame::Hello(h)) => h,
        Ok(f) => {
            return fail(
                sh,
                &mut ch,
                peer,
                None,
                format!("expected Hello, got {f:?}"),
            )
        }
        Err(e) => return fail(sh, &mut ch, peer, None, e.to_string()),
    };
    if hello.version != VERSION {
        return refuse(
            sh,
            &mut ch,
            peer,
            format!(
                "protocol version {} (this receiver speaks {VERSION})",
                hello.version
            ),
        );
    }
    if let Err(e) = check_name(&hello.name) {
        return refuse(sh, &mut ch, peer, e);
    }
    let name = hello.name.clone();
    if !sh.names.lock().expect("names").insert(name.clone()) {
        return refuse(
            sh,
            &mut ch,
            peer,
            format!(
                "{} is being received from another sender right now (a dropped link is noticed within about a minute)",
                sh.dir.show(&name)
            ),
        );
    }
    let end = if hello.tree {
        crate::tree::receive(sh, &mut ch, peer, &hello)
    } else {
        receive(sh, &mut ch, peer, &hello)
    };
    sh.names.lock().expect("names").remove(&name);
    ch.close();
    end
}

pub(crate) fn refuse(sh: &Shared, ch: &mut Channel, peer: SocketAddr, why: String) -> SessionEnd {
    (sh.say)(format!("{peer}: refused: {why}"));
    let _ = ch.send(&Frame::Refuse(why.clone()));
    ch.close();
    SessionEnd::Refused(why)
}

pub(crate) fn fail(
    sh: &Shared,
    ch: &mut Channel,
    peer: SocketAddr,
    name: Option<&str>,
    why: String,
) -> SessionEnd {
    let who = name.map_or_else(|| peer.to_string(), |n| format!("{n} from {peer}"));
    (sh.say)(format!("{who}: error: {why}"));
    let _ = ch.send(&Frame::Refuse(why.clone()));
    ch.close();
    SessionEnd::Failed(why)
}

/// The files of the image are checked and opened: the image, and the map
/// to resume from (text for the sender, parsed for us).
fn open_files(sh: &Shared, h: &Hello) -> Result<(File, Option<(String, Map)>), String> {
    let d = &sh.dir;
    let name = &h.name;
    let src_name = format!("{name}.source");
    let map_name = format!("{name}.map");
    let want = SourceRecord::new(h.size, &h.identity);
    let have = d.read(&src_name).map_err(|e| e.to_string())?;
    let image_exists = d.exists(name).map_err(|e| e.to_string())?;
    let mut fresh = false;
    match have.as_deref().map(SourceRecord::parse) {
        Some(Ok(r)) if r == want => {}
        other => {
            let why = match other {
                Some(Ok(r)) => Some(format!(
                    "{} holds an image of another source ({} bytes, {}); this one is {} bytes, {}",
                    d.show(name),
                    r.size,
                    r.identity,
                    want.size,
                    want.identity
                )),
                Some(Err(e)) => Some(format!("{}: {e}", d.show(&src_name))),
                None if image_exists => Some(format!(
                    "{} exists and was not written by rescue receive",
                    d.show(name)
                )),
                None => None,
            };
            if let Some(why) = why {
                if !sh.opts.force {
                    return Err(format!(
                        "{why}: refusing to overwrite it (choose another NAME, or run rescue receive with --force)"
                    ));
                }
                (sh.say)(format!("{why}: overwriting (--force)"));
            }
            fresh = true;
        }
    }
    let file = d.open_image(name).map_err(|e| e.to_string())?;
    if fresh {
        for f in [&map_name, &format!("{name}.sha256")] {
            d.remove(f).map_err(|e| e.to_string())?;
        }
        file.set_len(0)
            .map_err(|e| format!("{}: truncate: {e}", d.show(name)))?;
        d.save_atomic(&src_name, &want.render())
            .map_err(|e| e.to_string())?;
        return Ok((file, None));
    }
    let Some(text) = d.read(&map_name).map_err(|e| e.to_string())? else {
        return Ok((file, None));
    };
    let parsed = ddmap::parse(&text).map_err(|e| format!("{}: {e}", d.show(&map_name)))?;
    match parsed.map {
        Some(m) => {
            m.check_size(h.size, Some(&parsed.block_lines))
                .map_err(|e| format!("{}: {e}", d.show(&map_name)))?;
            Ok((file, Some((text, m))))
        }
        None => Ok((file, None)),
    }
}

/// The image file as a device, for hashing.
struct ImageDev<'a> {
    file: &'a File,
    size: u64,
    name: String,
}

impl BlockDevice for ImageDev<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn name(&self) -> &str {
        &self.name
    }
}

struct Tracker {
    name: String,
    peer: SocketAddr,
    size: u64,
    last_line: Instant,
    last_bytes: u64,
    received: u64,
    shown: Option<Totals>,
}

impl Tracker {
    /// A line when something changed and the last one is older than
    /// [`PROGRESS_EVERY`], or at once when `now`.
    fn maybe(&mut self, sh: &Shared, map: &Map, now: bool) {
        let t = Totals::of(map);
        let due = self.last_line.elapsed() >= PROGRESS_EVERY && self.shown != Some(t);
        if !(now || due) {
            return;
        }
        let secs = self.last_line.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (self.received - self.last_bytes) as f64 / secs
        } else {
            0.0
        };
        let bad: u64 = [Status::NonTrimmed, Status::NonScraped, Status::BadSector]
            .iter()
            .map(|&s| t.bytes(s))
            .sum();
        let areas: u64 = [Status::NonTrimmed, Status::NonScraped, Status::BadSector]
            .iter()
            .map(|&s| t.areas(s))
            .sum();
        let pct = if self.size == 0 {
            100.0
        } else {
            t.bytes(Status::Finished) as f64 * 100.0 / self.size as f64
        };
        (sh.say)(format!(
            "{} from {}: {pct:6.2}% {} of {} rescued, {areas} bad areas ({}), {}/s received",
            self.name,
            self.peer,
            screen::decimal_size(t.bytes(Status::Finished)),
            screen::decimal_size(self.size),
            screen::decimal_size(bad),
            screen::decimal_size(rate as u64),
        ));
        self.last_line = Instant::now();
        self.last_bytes = self.received;
        self.shown = Some(t);
    }
}

fn receive(sh: &Shared, ch: &mut Channel, peer: SocketAddr, h: &Hello) -> SessionEnd {
    let name = h.name.as_str();
    let (file, resume) = match open_files(sh, h) {
        Ok(x) => x,
        Err(why) => return refuse(sh, ch, peer, why),
    };
    let hash_file = match file.try_clone() {
        Ok(f) => f,
        Err(e) => return fail(sh, ch, peer, Some(name), e.to_string()),
    };
    let mut sink = match FileSink::new(file, h.sparse) {
        Ok(s) => s,
        Err(e) => return fail(sh, ch, peer, Some(name), e.to_string()),
    };
    let (text, mut map) = match resume {
        Some((t, m)) => (t, m),
        None => (String::new(), Map::new(h.size)),
    };
    let mut tr = Tracker {
        name: name.to_string(),
        peer,
        size: h.size,
        last_line: Instant::now(),
        last_bytes: 0,
        received: 0,
        shown: None,
    };
    (sh.say)(format!(
        "{name} from {peer}: {} ({} bytes, source {}) into {}",
        if text.is_empty() {
            "new image".to_string()
        } else {
            format!(
                "resuming: {} bytes already rescued",
                map.bytes(Status::Finished)
            )
        },
        h.size,
        SourceRecord::new(h.size, &h.identity).identity,
        sh.dir.show(name)
    ));
    if let Err(e) = ch.send(&Frame::Welcome(text)) {
        return ended(sh, Some(name), peer, e);
    }
    let mut finished = false;
    let mut digest: Option<[u8; 32]> = None;
    loop {
        let f = match ch.recv() {
            Ok(f) => f,
            Err(e) => {
                if channel::is_altered(&e) || e.kind() == io::ErrorKind::InvalidData {
                    return fail(sh, ch, peer, Some(name), e.to_string());
                }
                return ended(sh, Some(name), peer, e);
            }
        };
        let r: Result<(), String> = match f {
            Frame::Data { offset, bytes } => {
                if offset
                    .checked_add(bytes.len() as u64)
                    .is_none_or(|e| e > h.size)
                {
                    Err(format!(
                        "data at byte {offset} (+{}) is beyond the image's {} bytes",
                        bytes.len(),
                        h.size
                    ))
                } else {
                    tr.received += bytes.len() as u64;
                    sink.write_at(&bytes, offset)
                        .map_err(|e| format!("writing {} at byte {offset}: {e}", sh.dir.show(name)))
                }
            }
            Frame::SaveMap(text) => save_map(sh, &mut sink, name, h.size, &text)
                .map(|m| {
                    map = m;
                    tr.maybe(sh, &map, false);
                })
                .and_then(|()| ch.send(&Frame::Ack).map_err(|e| e.to_string())),
            Frame::Finish(size) if size == h.size => {
                finished = true;
                sink.finish(size)
                    .map_err(|e| format!("flushing {}: {e}", sh.dir.show(name)))
                    .and_then(|()| ch.send(&Frame::Ack).map_err(|e| e.to_string()))
            }
            Frame::HashRequest if finished => {
                let dev = ImageDev {
                    file: &hash_file,
                    size: h.size,
                    name: sh.dir.show(name),
                };
                match imaging::hash::image_sha256(&dev, &map) {
                    Ok(d) => {
                        digest = Some(d);
                        ch.send(&Frame::Digest(d)).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(format!("hashing {}: {e}", sh.dir.show(name))),
                }
            }
            Frame::Digest(theirs) if digest.is_some() => {
                let ours = digest.expect("checked");
                tr.maybe(sh, &map, true);
                let all = map.bytes(Status::Finished) == h.size;
                if ours == theirs {
                    let line = imaging::hash::sha256sum_line(&ours, name);
                    if let Err(e) = sh.dir.save_atomic(&format!("{name}.sha256"), &line) {
                        (sh.say)(format!("{name}: {e}"));
                    }
                    (sh.say)(format!(
                        "{name} from {peer}: complete and verified{}: sha256 {}",
                        if all {
                            ""
                        } else {
                            " (bad areas remain, counted as zeros)"
                        },
                        imaging::hash::hex(&ours)
                    ));
                    let _ = ch.send(&Frame::Ack);
                    return SessionEnd::Verified {
                        name: name.to_string(),
                        all_rescued: all,
                    };
                }
                let why = format!(
                    "SHA-256 MISMATCH: the image here is {}, the sender's source is {}",
                    imaging::hash::hex(&ours),
                    imaging::hash::hex(&theirs)
                );
                (sh.say)(format!("{name} from {peer}: error: {why}"));
                let _ = ch.send(&Frame::Refuse(why));
                return SessionEnd::Mismatch {
                    name: name.to_string(),
                };
            }
            Frame::Bye => {
                tr.maybe(sh, &map, true);
                (sh.say)(format!(
                    "{name} from {peer}: the sender stopped; resumable from {}.map",
                    sh.dir.show(name)
                ));
                return SessionEnd::Ended {
                    name: Some(name.to_string()),
                    why: "the sender stopped".into(),
                };
            }
            other => Err(format!("unexpected {other:?}")),
        };
        if let Err(why) = r {
            return fail(sh, ch, peer, Some(name), why);
        }
    }
}

pub(crate) fn ended(sh: &Shared, name: Option<&str>, peer: SocketAddr, e: io::Error) -> SessionEnd {
    let who = name.map_or_else(|| peer.to_string(), |n| format!("{n} from {peer}"));
    (sh.say)(format!(
        "{who}: the link dropped ({e}); the same command on the sender resumes from the saved mapfile"
    ));
    SessionEnd::Ended {
        name: name.map(str::to_string),
        why: e.to_string(),
    }
}

/// Checks the sender's map, makes the image data durable, then replaces the mapfile.
fn save_map(
    sh: &Shared,
    sink: &mut FileSink,
    name: &str,
    size: u64,
    text: &str,
) -> Result<Map, String> {
    let parsed = ddmap::parse(text).map_err(|e| format!("the sender's mapfile: {e}"))?;
    let m = parsed
        .map
        .ok_or("the sender's mapfile has no status line")?;
    m.check_size(size, Some(&parsed.block_lines))
        .map_err(|e| format!("the sender's mapfile: {e}"))?;
    sink.sync()
        .map_err(|e| format!("fsync of {}: {e}", sh.dir.show(name)))?;
    sh.dir
        .save_atomic(&format!("{name}.map"), text)
        .map_err(|e| e.to_string())?;
    Ok(m)
}
