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
    let total = paths.iter().map(|p| stored_size(vol, p)).sum();
    let mut x = Extractor {
        vol,
        progress,
        cancel,
        started: Instant::now(),
        visited: HashSet::new(),
        report: ExtractReport {
            dest: dest.to_path_buf(),
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
        let name = target_name(p);
        let target = if name.is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(name)
        };
        x.extract(p, &target);
        if x.report.stopped.is_some() {
            break;
        }
    }
    x.report_progress(true);
    let mut report = x.report;
    report.elapsed = x.started.elapsed();
    log::info!(
        "vmfs extract to {}: {} files, {} bytes written; {} bytes lost in {} files; {} \
         items skipped{}",
        dest.display(),
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
    Ok(report)
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

/// The FD's access and modification times, for the extracted copy.
fn file_times(ino: &Inode) -> std::fs::FileTimes {
    let at = |s: u32| std::time::UNIX_EPOCH + Duration::from_secs(s.into());
    std::fs::FileTimes::new()
        .set_accessed(at(ino.atime))
        .set_modified(at(ino.mtime))
}

/// Why copying a file's chunks ended early.
enum Halt {
    Write(std::io::Error),
    Cancel,
}

struct Extractor<'a> {
    vol: &'a Volume,
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
        use std::io::ErrorKind::*;
        let this_file_only = matches!(
            e.kind(),
            InvalidInput
                | InvalidFilename
                | FileTooLarge
                | AlreadyExists
                | IsADirectory
                | NotADirectory
        );
        let msg = format!("{path}: {what}: {e}");
        if this_file_only {
            self.report.skipped.push(msg);
        } else {
            self.report.stopped.get_or_insert(msg);
        }
    }

    fn stop_cancelled(&mut self, why: String) {
        self.report.cancelled = true;
        self.report.stopped.get_or_insert(why);
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
                if let Err(e) = std::fs::create_dir_all(dest) {
                    self.dest_error(path, format!("creating {}", dest.display()), &e);
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
                }
                // After its entries, whose creation changed it.
                if let Ok(d) = std::fs::File::open(dest) {
                    let _ = d.set_times(file_times(&ino));
                }
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
        let _ = std::fs::remove_file(dest);
        if let Err(e) = std::os::unix::fs::symlink(&target, dest) {
            self.report.skipped.push(format!("{path}: symlink: {e}"));
            return;
        }
        // The link's own times (lutimes).
        let ts = |s: u32| rustix::fs::Timespec {
            tv_sec: s.into(),
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            dest,
            &rustix::fs::Timestamps {
                last_access: ts(ino.atime),
                last_modification: ts(ino.mtime),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }

    fn copy_file(&mut self, path: &str, ino: Inode, dest: &Path) {
        let times = file_times(&ino);
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
        let out = match std::fs::File::create(dest) {
            Ok(f) => f,
            Err(e) => {
                self.dest_error(path, format!("creating {}", dest.display()), &e);
                return;
            }
        };
        use std::os::unix::fs::FileExt;
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
        crate::readahead::for_each_chunk(&chunks, &read, &mut |pos, n, data| {
            if self.cancelled() {
                halt = Some(Halt::Cancel);
                return ControlFlow::Break(());
            }
            match data {
                Ok(bytes) => {
                    if let Err(e) = out.write_all_at(bytes, pos) {
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
                                if let Err(e) = out.write_all_at(&sector[..m], at) {
                                    halt = Some(Halt::Write(e));
                                    return ControlFlow::Break(());
                                }
                            }
                            Err(e) => {
                                if reason.is_empty() {
                                    reason = e.to_string();
                                }
                                match lost.last_mut() {
                                    Some(l) if l.0 + l.1 == at => l.1 += m as u64,
                                    _ => lost.push((at, m as u64)),
                                }
                            }
                        }
                    }
                }
            }
            self.report.done += n as u64;
            self.report_progress(false);
            ControlFlow::Continue(())
        });
        if let Some(halt) = halt {
            drop(out);
            let kept = keep_incomplete(dest);
            match halt {
                Halt::Write(e) => self.dest_error(path, format!("writing ({kept})"), &e),
                Halt::Cancel => self.stop_cancelled(format!("{path}: cancelled ({kept})")),
            }
            return;
        }
        if let Err(e) = out.set_len(size) {
            // A destination filesystem whose files cannot be that large.
            self.report.skipped.push(format!(
                "{path}: setting the size to {size} bytes: {e} (data up to there copied)"
            ));
            return;
        }
        let _ = out.set_times(times);
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
