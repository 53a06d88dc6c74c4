//! The appliance's end of a tree session: `rescue vmfs extract SRC...
//! PATH... rescue://HOST:PORT/NAME`. The extraction walk is the local
//! one ([`vmfs::extract::extract_to`]); only the destination differs:
//! [`RemoteTree`] sends each item as an Entry, a file's chunks as Data
//! from the offset the receiver asks for, and at the end of each file the
//! SHA-256 of all of it (holes and unreadable bytes as zeros), which the
//! receiver compares with its copy. See [`crate::tree`] for the
//! receiver's rules and [`crate::frame`] for the frames.

use crate::channel::{self, Channel};
use crate::code::PairingCode;
use crate::frame::{Entry, EntryKind, Frame, Hello, VERSION};
use crate::sender::{connect, SendError, Target};
use sha2::{Digest, Sha256};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use vmfs::extract::{Destination, ExtractReport, FileMeta, FileOut, Outcome, Progress};

/// What a tree send did, beyond the extraction's own report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeStats {
    /// Files whose digests agreed.
    pub verified: u64,
    /// Files the receiver already had whole (no data sent).
    pub already: u64,
    /// Files continued from the receiver's partial copy.
    pub continued: u64,
    /// Bytes sent in Data frames.
    pub sent: u64,
    /// Files whose digests differed (the receiver removed its copy).
    pub mismatched: Vec<String>,
}

/// How a tree send ended.
#[derive(Debug)]
pub struct TreeReport {
    pub extract: ExtractReport,
    pub stats: TreeStats,
    /// The report file was sent (it is sent when anything was lost,
    /// skipped or stopped), or why not.
    pub report_sent: Option<Result<(), String>>,
    /// The receiver acknowledged the end of the tree.
    pub finished: bool,
}

impl TreeReport {
    /// 0 every file verified and nothing lost; 1 bytes lost or items
    /// skipped (or interrupted); 2 the link or the receiver failed.
    pub fn exit_code(&self) -> i32 {
        match self.extract.outcome() {
            _ if self.extract.cancelled => 1,
            Outcome::Stopped => 2,
            _ if !self.finished => 2,
            Outcome::Clean if self.stats.mismatched.is_empty() => 0,
            _ => 1,
        }
    }
}

/// The [`Destination`] that streams to a receiver.
pub struct RemoteTree<'c> {
    ch: &'c mut Channel,
    url: String,
    pub stats: TreeStats,
}

fn rel_str(rel: &Path) -> io::Result<String> {
    rel.to_str().map(str::to_string).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidFilename,
            format!("{}: not UTF-8", rel.display()),
        )
    })
}

impl<'c> RemoteTree<'c> {
    pub fn new(ch: &'c mut Channel, url: String) -> RemoteTree<'c> {
        RemoteTree {
            ch,
            url,
            stats: TreeStats::default(),
        }
    }

    /// Sends an entry and waits for Accept (the offset) or Skip (an
    /// `InvalidInput` error: this item only). Anything else stops.
    fn offer(&mut self, e: Entry) -> io::Result<u64> {
        self.ch.send(&Frame::Entry(e))?;
        match self.ch.recv()? {
            Frame::Accept(n) => Ok(n),
            Frame::Skip(why) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the receiver skipped it: {why}"),
            )),
            Frame::Refuse(why) => Err(io::Error::other(format!("the receiver: {why}"))),
            f => Err(io::Error::other(format!(
                "the receiver sent {f:?} instead of Accept"
            ))),
        }
    }

    /// Ends the tree: Finish with the files completed, the receiver's Ack, Bye.
    pub fn finish(&mut self, files: u64) -> io::Result<()> {
        self.ch.send(&Frame::Finish(files))?;
        match self.ch.recv()? {
            Frame::Ack => {
                let _ = self.ch.send(&Frame::Bye);
                Ok(())
            }
            Frame::Refuse(why) => Err(io::Error::other(format!("the receiver: {why}"))),
            f => Err(io::Error::other(format!(
                "the receiver sent {f:?} instead of Ack"
            ))),
        }
    }

    /// Sends `text` as the file `name` at the tree's root.
    pub fn send_text(&mut self, name: &str, text: &str, mtime: u32) -> io::Result<()> {
        let meta = FileMeta {
            size: text.len() as u64,
            mode: 0o644,
            atime: mtime,
            mtime,
        };
        let mut f = self.create_file(Path::new(name), &meta)?;
        f.write_at(text.as_bytes(), 0)?;
        f.finish()
    }
}

fn entry(kind: EntryKind, rel: &Path) -> io::Result<Entry> {
    Ok(Entry {
        kind,
        mode: 0,
        size: 0,
        atime: 0,
        mtime: 0,
        path: rel_str(rel)?,
        target: String::new(),
    })
}

impl Destination for RemoteTree<'_> {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn create_dir(&mut self, rel: &Path) -> io::Result<()> {
        self.offer(entry(EntryKind::Dir, rel)?).map(|_| ())
    }

    fn dir_times(&mut self, rel: &Path, atime: u32, mtime: u32) {
        if let Ok(mut e) = entry(EntryKind::DirTimes, rel) {
            e.atime = atime;
            e.mtime = mtime;
            // A failed link shows at the next item.
            let _ = self.offer(e);
        }
    }

    fn symlink(&mut self, rel: &Path, target: &str, atime: u32, mtime: u32) -> io::Result<()> {
        let mut e = entry(EntryKind::Symlink, rel)?;
        e.atime = atime;
        e.mtime = mtime;
        e.target = target.to_string();
        self.offer(e).map(|_| ())
    }

    fn create_file<'a>(
        &'a mut self,
        rel: &Path,
        meta: &FileMeta,
    ) -> io::Result<Box<dyn FileOut + 'a>> {
        let mut e = entry(EntryKind::File, rel)?;
        e.mode = meta.mode;
        e.size = meta.size;
        e.atime = meta.atime;
        e.mtime = meta.mtime;
        let path = e.path.clone();
        let from = self.offer(e)?;
        if from > meta.size {
            return Err(io::Error::other(format!(
                "the receiver has {from} bytes of {path}, which has {}",
                meta.size
            )));
        }
        if from == meta.size && from > 0 {
            self.stats.already += 1;
        } else if from > 0 {
            self.stats.continued += 1;
        }
        Ok(Box::new(RemoteFile {
            tree: self,
            path,
            from,
            size: meta.size,
            hash: Sha256::new(),
            hashed: 0,
            lost: Vec::new(),
        }))
    }
}

/// A file being streamed: every byte is hashed in order (gaps as zeros);
/// only the bytes from `from` on are sent.
struct RemoteFile<'a, 'c> {
    tree: &'a mut RemoteTree<'c>,
    path: String,
    from: u64,
    size: u64,
    hash: Sha256,
    hashed: u64,
    lost: Vec<(u64, u64)>,
}

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl RemoteFile<'_, '_> {
    fn zeros_to(&mut self, end: u64) {
        while self.hashed < end {
            let n = (end - self.hashed).min(ZEROS.len() as u64) as usize;
            self.hash.update(&ZEROS[..n]);
            self.hashed += n as u64;
        }
    }
}

impl FileOut for RemoteFile<'_, '_> {
    fn write_at(&mut self, data: &[u8], pos: u64) -> io::Result<()> {
        let end = pos + data.len() as u64;
        if pos < self.hashed || end > self.size {
            return Err(io::Error::other(format!(
                "{}: bytes {pos}..{end} out of order (at {} of {})",
                self.path, self.hashed, self.size
            )));
        }
        self.zeros_to(pos);
        self.hash.update(data);
        self.hashed = end;
        if end > self.from {
            let skip = self.from.saturating_sub(pos) as usize;
            let start = pos + skip as u64;
            for (i, c) in data[skip..].chunks(1 << 20).enumerate() {
                self.tree.ch.send_data(start + (i as u64) * (1 << 20), c)?;
                self.tree.stats.sent += c.len() as u64;
            }
        }
        Ok(())
    }

    fn lost(&mut self, pos: u64, len: u64) {
        match self.lost.last_mut() {
            Some(l) if l.0 + l.1 == pos => l.1 += len,
            _ => self.lost.push((pos, len)),
        }
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.zeros_to(self.size);
        let ours: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
        let lost = std::mem::take(&mut self.lost);
        self.tree.ch.send(&Frame::FileEnd { sha256: ours, lost })?;
        let theirs = match self.tree.ch.recv()? {
            Frame::Digest(d) => d,
            Frame::Refuse(why) => return Err(io::Error::other(format!("the receiver: {why}"))),
            f => {
                return Err(io::Error::other(format!(
                    "the receiver sent {f:?} instead of its digest"
                )))
            }
        };
        if ours == theirs {
            self.tree.stats.verified += 1;
            Ok(())
        } else {
            self.tree.stats.mismatched.push(self.path.clone());
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "SHA-256 MISMATCH: the source reads {}, the receiver's copy {} (removed there; run the same command again to send it anew)",
                    imaging::hash::hex(&ours),
                    imaging::hash::hex(&theirs)
                ),
            ))
        }
    }

    fn abandon(self: Box<Self>) -> String {
        format!(
            "the receiver keeps what it got of {} as a .rescue-partial file; the same command continues it",
            self.path
        )
    }
}

/// What to send: the paths of an open volume.
pub struct TreeJob<'a> {
    pub volume: &'a vmfs::Volume,
    pub paths: &'a [String],
    /// Names the source for the receiver's overwrite check.
    pub identity: String,
}

/// The identity of a volume for the receiver: its UUID and label.
pub fn volume_identity(v: &vmfs::Volume) -> String {
    let i = v.info();
    format!("vmfs uuid {} label {}", i.uuid, i.label)
}

/// Pairs with the receiver at `target`, extracts `job.paths` to it, sends
/// the report file when anything was lost or skipped, and ends the tree.
pub fn send_tree(
    job: &TreeJob,
    target: &Target,
    code: &PairingCode,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<TreeReport, SendError> {
    let total: u64 = job
        .paths
        .iter()
        .map(|p| vmfs::extract::stored_size(job.volume, p))
        .sum();
    let stream = connect(&target.addr)?;
    let mut ch = channel::connect(stream, code).map_err(SendError::Handshake)?;
    ch.send(&Frame::Hello(Hello {
        version: VERSION,
        size: total,
        sector: 0,
        sparse: true,
        tree: true,
        name: target.name.clone(),
        identity: job.identity.clone(),
    }))
    .map_err(|e| SendError::Connect(e.to_string()))?;
    match ch.recv() {
        Ok(Frame::Welcome(_)) => {}
        Ok(Frame::Refuse(why)) => return Err(SendError::Refused(why)),
        Ok(f) => {
            return Err(SendError::Protocol(format!(
                "the receiver sent {f:?} instead of Welcome"
            )))
        }
        Err(e) => return Err(SendError::Protocol(format!("the receiver: {e}"))),
    }
    let mut dest = RemoteTree::new(&mut ch, target.url());
    let extract = vmfs::extract::extract_to(job.volume, job.paths, &mut dest, on_progress, stop);
    let mut report_sent = None;
    let mut finished = false;
    if extract.stopped.is_none() {
        if extract.outcome() != Outcome::Clean {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(0);
            report_sent = Some(
                dest.send_text(vmfs::extract::REPORT_NAME, &extract.text(), now)
                    .map_err(|e| e.to_string()),
            );
        }
        finished = dest.finish(extract.files).is_ok();
    }
    let stats = std::mem::take(&mut dest.stats);
    if extract.cancelled {
        let _ = ch.send(&Frame::Bye);
    }
    ch.close();
    Ok(TreeReport {
        extract,
        stats,
        report_sent,
        finished,
    })
}
