//! Copying files and folders out of an open volume, recursively: sizes and
//! times kept, thin regions written as holes, unreadable bytes retried
//! sector by sector and zero-filled, every loss and skip recorded in a
//! report. A destination that fails (full, read-only, gone) stops the
//! extraction, as every further file would fail too; what the file being
//! written got is kept as `NAME.incomplete`, as on cancellation.

use crate::inode::FileType;
use crate::volume::Piece;
use crate::{Inode, Volume};
use cliconv::Exit;
use serde::Serialize;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The report's file name, in the destination directory.
pub const REPORT_NAME: &str = "vmfs-extract-report.txt";

/// How far an extraction is, given to the progress callback after every
/// chunk copied and once at the end (`finished`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Stored bytes copied so far (thin regions are not stored, so not
    /// counted: these are what takes time).
    pub done: u64,
    /// Stored bytes under the paths to extract.
    pub total: u64,
    /// Files completed.
    pub files: u64,
    /// Since copying started.
    pub elapsed: Duration,
    /// The last call: extraction ended (completed, stopped or cancelled).
    pub finished: bool,
}

/// Lost byte ranges of one extracted file.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub path: String,
    /// File byte ranges `(start, len)` written as zeros.
    pub ranges: Vec<(u64, u64)>,
    /// The first read error met.
    pub reason: String,
}

/// How an extraction ended, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte of every item was copied.
    Clean,
    /// Completed, with bytes zero-filled or items skipped.
    LostOrSkipped,
    /// Ended early: the destination failed, or it was cancelled.
    Stopped,
}

impl Outcome {
    /// The CLI's exit status: 0, 1, 2. A failing destination is an I/O
    /// error (2); lost or skipped data, a problem found (1).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Clean => Exit::Done.code(),
            Outcome::LostOrSkipped => Exit::Findings.code(),
            Outcome::Stopped => Exit::Error.code(),
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    /// The destination directory.
    pub dest: PathBuf,
    /// Files completed.
    pub files: u64,
    /// All bytes of the completed files, holes included.
    pub written: u64,
    /// Stored bytes copied, and to copy (see [`Progress`]).
    pub done: u64,
    pub total: u64,
    /// Volume metadata files (`.*.sf`) met in folders and left out.
    pub system_files: u64,
    pub losses: Vec<Loss>,
    /// Items not extracted, each "PATH: why".
    pub skipped: Vec<String>,
    /// Why extraction ended early: the destination failed in a way every
    /// further file would meet too, or it was cancelled.
    pub stopped: Option<String>,
    /// The cancel flag ended it (`stopped` says where).
    pub cancelled: bool,
    /// Time spent copying.
    pub elapsed: Duration,
}

impl ExtractReport {
    pub fn outcome(&self) -> Outcome {
        if self.stopped.is_some() {
            Outcome::Stopped
        } else if self.losses.is_empty() && self.skipped.is_empty() {
            Outcome::Clean
        } else {
            Outcome::LostOrSkipped
        }
    }

    /// Bytes zero-filled, over all files.
    pub fn lost_bytes(&self) -> u64 {
        self.losses
            .iter()
            .flat_map(|l| l.ranges.iter().map(|r| r.1))
            .sum()
    }

    /// The report file's text: every loss with its byte ranges, every skip,
    /// why it stopped.
    pub fn text(&self) -> String {
        let mut r = String::from(
            "# vmfs extract report: bytes that could not be read were written as zeros\n",
        );
        for l in &self.losses {
            r.push_str(&format!("LOST {}: {}\n", l.path, l.reason));
            for (s, n) in &l.ranges {
                r.push_str(&format!("  bytes {s}..{} ({n} bytes)\n", s + n));
            }
        }
        for s in &self.skipped {
            r.push_str(&format!("SKIPPED {s}\n"));
        }
        if let Some(why) = &self.stopped {
            r.push_str(&format!("STOPPED {why}\n"));
        }
        r
    }

    /// Where [`Self::write_report`] writes: DEST/vmfs-extract-report.txt.
    pub fn report_path(&self) -> PathBuf {
        self.dest.join(REPORT_NAME)
    }

    /// Writes [`Self::text`] to [`Self::report_path`] and returns that path.
    pub fn write_report(&self) -> std::io::Result<PathBuf> {
        let path = self.report_path();
        std::fs::write(&path, self.text())?;
        Ok(path)
    }
}

/// Extracts `paths` of `vol` into the directory `dest` (created if
/// needed): each path as DEST/its last name; `fd:ADDR` (an orphan by FD
/// address) as DEST/orphan-fd-ADDR; "/" as DEST itself. `progress` is
/// called after every chunk and once at the end. Setting `cancel` stops
/// between chunks; the file being written is kept as `NAME.incomplete`.
/// Errors only when `dest` cannot be created; everything else is in the
/// report.
pub fn extract(
    vol: &Volume,
    paths: &[String],
    dest: &Path,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<ExtractReport, String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let mut local = LocalDir::new(dest);
    Ok(extract_to(vol, paths, &mut local, progress, cancel))
}

/// The walk of [`extract`], writing through `dest`: the same for a local
/// directory ([`LocalDir`]) and a stream to a lab host. Paths given to
/// `dest` are relative to its root, one component per VMFS name.
pub fn extract_to(
    vol: &Volume,
    paths: &[String],
    dest: &mut dyn Destination,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> ExtractReport {
    let total = paths.iter().map(|p| stored_size(vol, p)).sum();
    let shown = dest.describe();
    let mut x = Extractor {
        vol,
        dest,
        progress,
        cancel,
        started: Instant::now(),
        visited: HashSet::new(),
        report: ExtractReport {
            dest: PathBuf::from(&shown),
            files: 0,
            written: 0,
            done: 0,
            total,
            system_files: 0,
            losses: Vec::new(),
            skipped: Vec::new(),
            stopped: None,
            cancelled: false,
            elapsed: Duration::ZERO,
        },
    };
    for p in paths {
        let target = PathBuf::from(target_name(p));
        x.extract(p, &target);
        if x.report.stopped.is_some() {
            break;
        }
    }
    x.report_progress(true);
    let mut report = x.report;
    report.elapsed = x.started.elapsed();
    log::info!(
        "vmfs extract to {shown}: {} files, {} bytes written; {} bytes lost in {} files; {} \
         items skipped{}",
        report.files,
        report.written,
        report.lost_bytes(),
        report.losses.len(),
        report.skipped.len(),
        report
            .stopped
            .as_deref()
            .map(|w| format!("; STOPPED: {w}"))
            .unwrap_or_default()
    );
    report
}

/// What a file to be written is, for [`Destination::create_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Bytes, holes included.
    pub size: u64,
    /// The FD's mode (permission bits; the type bits are not kept).
    pub mode: u32,
    /// Seconds since the epoch.
    pub atime: u32,
    pub mtime: u32,
}

/// Where an extraction writes. Paths are relative to the destination's
/// root, built only from names the walk read from the volume ("" is the
/// root itself); a destination must still not trust them (a damaged
/// volume can hold any bytes in a name).
///
/// Errors are classified by their kind, as for a local directory: those
/// of one file (`InvalidInput`, `InvalidData`, `AlreadyExists`,
/// `IsADirectory`, `NotADirectory`, `FileTooLarge`, `InvalidFilename`)
/// skip that item; any other stops the extraction, as every further
/// file would meet it too (a full disk, a dropped link).
pub trait Destination {
    /// The root, for messages and the report (a directory or a URL).
    fn describe(&self) -> String;
    /// Creates the directory `rel` (and its parents) if needed.
    fn create_dir(&mut self, rel: &Path) -> std::io::Result<()>;
    /// Sets a directory's times, after its entries were written.
    fn dir_times(&mut self, rel: &Path, atime: u32, mtime: u32);
    /// Creates the symbolic link `rel` pointing at `target`, with its own times.
    fn symlink(&mut self, rel: &Path, target: &str, atime: u32, mtime: u32) -> std::io::Result<()>;
    /// Starts writing the file `rel`; the walk then writes its stored
    /// chunks in ascending order, reports the unreadable ones, and ends
    /// with [`FileOut::finish`] or [`FileOut::abandon`].
    fn create_file<'a>(
        &'a mut self,
        rel: &Path,
        meta: &FileMeta,
    ) -> std::io::Result<Box<dyn FileOut + 'a>>;
}

/// A file being written to a [`Destination`].
pub trait FileOut {
    /// `data` at byte `pos` of the file (ascending; gaps are holes).
    fn write_at(&mut self, data: &[u8], pos: u64) -> std::io::Result<()>;
    /// Bytes `[pos, pos + len)` could not be read: they stay zeros.
    fn lost(&mut self, _pos: u64, _len: u64) {}
    /// All chunks are written: set the size and times, make it complete.
    fn finish(self: Box<Self>) -> std::io::Result<()>;
    /// The copy did not complete (cancelled, the destination failed):
    /// says where what was written is kept.
    fn abandon(self: Box<Self>) -> String;
}

/// A local directory as the [`Destination`]: files created (replacing
/// what is there), holes left as holes, times kept; a file that does not
/// complete is kept as `NAME.incomplete`.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: &Path) -> LocalDir {
        LocalDir {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl Destination for LocalDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn create_dir(&mut self, rel: &Path) -> std::io::Result<()> {
        let p = self.path(rel);
        std::fs::create_dir_all(&p)
            .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", p.display())))
    }

    fn dir_times(&mut self, rel: &Path, atime: u32, mtime: u32) {
        if let Ok(d) = std::fs::File::open(self.path(rel)) {
            let _ = d.set_times(file_times(atime, mtime));
        }
    }

    fn symlink(&mut self, rel: &Path, target: &str, atime: u32, mtime: u32) -> std::io::Result<()> {
        let dest = self.path(rel);
        let _ = std::fs::remove_file(&dest);
        // A destination that cannot hold links (FAT) skips this one only.
        std::os::unix::fs::symlink(target, &dest).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("symlink: {e}"))
        })?;
        // The link's own times (lutimes).
        let ts = |s: u32| rustix::fs::Timespec {
            tv_sec: s.into(),
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            &dest,
            &rustix::fs::Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(())
    }

    fn create_file<'a>(
        &'a mut self,
        rel: &Path,
        meta: &FileMeta,
    ) -> std::io::Result<Box<dyn FileOut + 'a>> {
        let path = self.path(rel);
        let file = std::fs::File::create(&path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display()))
        })?;
        Ok(Box::new(LocalFile {
            file,
            path,
            meta: *meta,
        }))
    }
}

struct LocalFile {
    file: std::fs::File,
    path: PathBuf,
    meta: FileMeta,
}

impl FileOut for LocalFile {
    fn write_at(&mut self, data: &[u8], pos: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, pos)
    }

    fn finish(self: Box<Self>) -> std::io::Result<()> {
        let size = self.meta.size;
        self.file.set_len(size).map_err(|e| {
            // A destination filesystem whose files cannot be that large:
            // this file only.
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("setting the size to {size} bytes: {e} (data up to there copied)"),
            )
        })?;
        let _ = self
            .file
            .set_times(file_times(self.meta.atime, self.meta.mtime));
        Ok(())
    }

    fn abandon(self: Box<Self>) -> String {
        drop(self.file);
        keep_incomplete(&self.path)
    }
}

/// The name `path` is extracted under in the destination ("" for the
/// root: its content goes straight in).
fn target_name(path: &str) -> String {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    // An orphan named by FD address: no ':' in the name (FAT and exFAT
    // destinations refuse it).
    match name.strip_prefix("fd:") {
        Some(addr) if !path.contains('/') => format!("orphan-fd-{addr}"),
        _ => name.to_string(),
    }
}

/// A volume metadata file (`.fdc.sf`, `.sdd.sf`, ...): left out of folders
/// extracted (copied only when named).
pub fn is_system_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".sf")
}

/// Stored bytes under `path` (thin regions and volume metadata files in
/// folders excluded), as [`extract`] will copy them.
pub fn stored_size(v: &Volume, path: &str) -> u64 {
    let mut total = 0;
    let mut stack: Vec<Inode> = v.lookup(path).into_iter().collect();
    let mut seen = HashSet::new();
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino.addr) {
            continue;
        }
        if ino.ftype.is_dir() {
            for e in v.dir_entries(&ino).unwrap_or_default() {
                if e.name != "." && e.name != ".." && !is_system_name(&e.name) {
                    stack.extend(v.inode(e.addr));
                }
            }
        } else if matches!(ino.ftype, FileType::File | FileType::System) {
            total += v
                .pieces(&ino)
                .map(|p| {
                    p.iter()
                        .filter(|(_, _, piece)| *piece != Piece::Zero)
                        .map(|(_, len, _)| len)
                        .sum()
                })
                .unwrap_or(0);
        }
    }
    total
}

/// An FD's access and modification times, for the extracted copy.
fn file_times(atime: u32, mtime: u32) -> std::fs::FileTimes {
    let at = |s: u32| std::time::UNIX_EPOCH + Duration::from_secs(s.into());
    std::fs::FileTimes::new()
        .set_accessed(at(atime))
        .set_modified(at(mtime))
}

/// Why copying a file's chunks ended early.
enum Halt {
    Write(std::io::Error),
    Cancel,
}

struct Extractor<'a> {
    vol: &'a Volume,
    dest: &'a mut dyn Destination,
    progress: &'a mut dyn FnMut(&Progress),
    cancel: &'a AtomicBool,
    started: Instant,
    /// Directories entered, against loops.
    visited: HashSet<u32>,
    report: ExtractReport,
}

impl Extractor<'_> {
    fn report_progress(&mut self, finished: bool) {
        let r = &self.report;
        (self.progress)(&Progress {
            done: r.done,
            total: r.total,
            files: r.files,
            elapsed: self.started.elapsed(),
            finished,
        });
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn extract(&mut self, path: &str, dest: &Path) {
        let ino = match self.vol.lookup(path) {
            Ok(i) => i,
            Err(e) => {
                self.report.skipped.push(format!("{path}: {e}"));
                return;
            }
        };
        self.extract_inode(path, ino, dest);
    }

    /// Records a destination error: one that every further file would meet
    /// too (a full, read-only or failing destination) stops the
    /// extraction; one of this file's own (its name, its size) skips it.
    fn dest_error(&mut self, path: &str, what: String, e: &std::io::Error) {
        dest_error(&mut self.report, path, what, e)
    }

    fn stop_cancelled(&mut self, why: String) {
        stop_cancelled(&mut self.report, why)
    }

    fn extract_inode(&mut self, path: &str, ino: Inode, dest: &Path) {
        if self.report.stopped.is_some() {
            return;
        }
        if self.cancelled() {
            self.stop_cancelled(format!("cancelled before {path}"));
            return;
        }
        match ino.ftype {
            FileType::Directory => {
                if !self.visited.insert(ino.addr) {
                    self.report.skipped.push(format!(
                        "{path}: directory FD {:#010x} seen before (a loop)",
                        ino.addr
                    ));
                    return;
                }
                if let Err(e) = self.dest.create_dir(dest) {
                    self.dest_error(path, String::new(), &e);
                    return;
                }
                let entries = match self.vol.dir_entries(&ino) {
                    Ok(e) => e,
                    Err(e) => {
                        self.report.skipped.push(format!("{path}: {e}"));
                        return;
                    }
                };
                for e in entries {
                    if e.name == "." || e.name == ".." {
                        continue;
                    }
                    // Volume metadata, not datastore content: copied only
                    // when named.
                    if is_system_name(&e.name) {
                        self.report.system_files += 1;
                        continue;
                    }
                    let child = format!("{}/{}", path.trim_end_matches('/'), e.name);
                    match self.vol.inode(e.addr) {
                        Ok(i) => self.extract_inode(&child, i, &dest.join(&e.name)),
                        Err(err) => self.report.skipped.push(format!("{child}: {err}")),
                    }
                    if self.report.stopped.is_some() {
                        return;
                    }
                }
                // After its entries, whose creation changed it.
                self.dest.dir_times(dest, ino.atime, ino.mtime);
            }
            FileType::Symlink => self.make_symlink(path, &ino, dest),
            FileType::Rdm => {
                let r = crate::RdmTarget::parse(&ino.data)
                    .map(|r| r.id)
                    .unwrap_or_default();
                self.report.skipped.push(format!(
                    "{path}: raw device mapping to disk {:?}: no data on the volume",
                    r.trim()
                ));
            }
            FileType::File | FileType::System => self.copy_file(path, ino, dest),
            t => self
                .report
                .skipped
                .push(format!("{path}: file type {t:?} not extracted")),
        }
    }

    fn make_symlink(&mut self, path: &str, ino: &Inode, dest: &Path) {
        let Some(target) = self.vol.stat_inode(ino).ok().and_then(|s| s.link) else {
            self.report
                .skipped
                .push(format!("{path}: unreadable symlink"));
            return;
        };
        if let Err(e) = self.dest.symlink(dest, &target, ino.atime, ino.mtime) {
            self.dest_error(path, String::new(), &e);
        }
    }

    fn copy_file(&mut self, path: &str, ino: Inode, dest: &Path) {
        let size = ino.size;
        let pieces = match self.vol.pieces(&ino) {
            Ok(p) => p,
            Err(e) => {
                self.report
                    .skipped
                    .push(format!("{path}: block map unreadable: {e}"));
                return;
            }
        };
        let meta = FileMeta {
            size,
            mode: ino.mode & 0o7777,
            atime: ino.atime,
            mtime: ino.mtime,
        };
        let created = self.dest.create_file(dest, &meta);
        let mut out = match created {
            Ok(f) => f,
            Err(e) => {
                dest_error(&mut self.report, path, String::new(), &e);
                return;
            }
        };
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let mut reason = String::new();
        // Holes stay holes in the destination; the rest is read ahead in
        // 1 MiB chunks while the previous ones are written.
        let mut chunks = Vec::new();
        for (off, len, piece) in pieces {
            if piece != Piece::Zero {
                chunks.extend(crate::readahead::chunks_of(off, off + len, 1 << 20));
            }
        }
        let vol = self.vol;
        let read = |buf: &mut [u8], at: u64| vol.read_inode(&ino, buf, at, 0).map(|_| ());
        let mut halt = None;
        let mut sector = [0u8; 512];
        let cancel = self.cancel;
        let mut done = 0u64;
        let progress = &mut *self.progress;
        let started = self.started;
        let (files, total, done0) = (self.report.files, self.report.total, self.report.done);
        crate::readahead::for_each_chunk(&chunks, &read, &mut |pos, n, data| {
            if cancel.load(Ordering::Relaxed) {
                halt = Some(Halt::Cancel);
                return ControlFlow::Break(());
            }
            match data {
                Ok(bytes) => {
                    if let Err(e) = out.write_at(bytes, pos) {
                        halt = Some(Halt::Write(e));
                        return ControlFlow::Break(());
                    }
                }
                Err(_) => {
                    // Retry sector by sector; what fails stays a hole
                    // (zeros) and is reported.
                    for s in (0..n).step_by(512) {
                        let m = 512.min(n - s);
                        let at = pos + s as u64;
                        match vol.read_inode(&ino, &mut sector[..m], at, 0) {
                            Ok(_) => {
                                if let Err(e) = out.write_at(&sector[..m], at) {
                                    halt = Some(Halt::Write(e));
                                    return ControlFlow::Break(());
                                }
                            }
                            Err(e) => {
                                if reason.is_empty() {
                                    reason = e.to_string();
                                }
                                out.lost(at, m as u64);
                                match lost.last_mut() {
                                    Some(l) if l.0 + l.1 == at => l.1 += m as u64,
                                    _ => lost.push((at, m as u64)),
                                }
                            }
                        }
                    }
                }
            }
            done += n as u64;
            progress(&Progress {
                done: done0 + done,
                total,
                files,
                elapsed: started.elapsed(),
                finished: false,
            });
            ControlFlow::Continue(())
        });
        self.report.done += done;
        if let Some(halt) = halt {
            let kept = out.abandon();
            match halt {
                Halt::Write(e) => {
                    dest_error(&mut self.report, path, format!("writing ({kept})"), &e)
                }
                Halt::Cancel => {
                    stop_cancelled(&mut self.report, format!("{path}: cancelled ({kept})"))
                }
            }
            return;
        }
        if let Err(e) = out.finish() {
            dest_error(&mut self.report, path, String::new(), &e);
            return;
        }
        self.report.files += 1;
        self.report.written += size;
        if !lost.is_empty() {
            self.report.losses.push(Loss {
                path: path.to_string(),
                ranges: lost,
                reason,
            });
        }
    }
}

/// See [`Extractor::dest_error`]: records a destination error in `report`.
fn dest_error(report: &mut ExtractReport, path: &str, what: String, e: &std::io::Error) {
    use std::io::ErrorKind::*;
    let this_file_only = matches!(
        e.kind(),
        InvalidInput
            | InvalidData
            | InvalidFilename
            | FileTooLarge
            | AlreadyExists
            | IsADirectory
            | NotADirectory
    );
    let msg = if what.is_empty() {
        format!("{path}: {e}")
    } else {
        format!("{path}: {what}: {e}")
    };
    if this_file_only {
        report.skipped.push(msg);
    } else {
        report.stopped.get_or_insert(msg);
    }
}

fn stop_cancelled(report: &mut ExtractReport, why: String) {
    report.cancelled = true;
    report.stopped.get_or_insert(why);
}

/// Renames a file whose copy did not complete to NAME.incomplete, so it is
/// not taken for the whole file, and says where it is.
fn keep_incomplete(dest: &Path) -> String {
    let partial = dest.with_file_name(format!(
        "{}.incomplete",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    match std::fs::rename(dest, &partial) {
        Ok(()) => format!("what was written is in {}", partial.display()),
        Err(_) => format!("{} is incomplete", dest.display()),
    }
}
