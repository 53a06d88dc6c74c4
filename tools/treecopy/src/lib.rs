//! Copying files and folders out of a filesystem being rescued (a guest
//! filesystem mounted read-only) to a destination, for the menu.
//!
//! [`copy`] copies one file or folder (recursively) into a destination
//! folder, as `cp -a` would, but made for damaged sources:
//!
//! - a read error does not end the file: the chunk is read again in
//!   4 KiB blocks, the blocks that still fail are written as zeros and
//!   listed (file, byte ranges), and the copy goes on with the next block;
//!   a file or folder that cannot be opened at all is listed and skipped;
//! - nothing at the destination is overwritten unless the caller's
//!   [`Conflict`] answer says so (asked per existing file; folders merge);
//! - a destination that fails a write (full, gone, read-only) stops the
//!   whole copy, with the file being written removed: every further file
//!   would fail the same way;
//! - sizes, permissions and modification times are kept where the
//!   destination can hold them; symbolic links are copied as links;
//!   devices, FIFOs and sockets are listed as skipped;
//! - progress is reported after every chunk; a cancel flag stops it
//!   between chunks (the file being written is removed).
//!
//! Reading goes through [`Opener`] so that tests can inject read errors.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Bytes read at once; a failed chunk is read again in [`BLOCK`]s.
pub const CHUNK: usize = 1 << 20;
/// The unit a read error costs.
pub const BLOCK: usize = 4096;

/// A file opened for reading.
pub trait Reader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl Reader for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

/// Opens a source file for reading: [`std::fs::File::open`] on a real
/// filesystem; tests wrap it to fail where they want.
pub type Opener<'a> = &'a dyn Fn(&Path) -> io::Result<Box<dyn Reader>>;

/// The plain opener.
pub fn open_file(p: &Path) -> io::Result<Box<dyn Reader>> {
    Ok(Box::new(File::open(p)?))
}

/// What to do with a file that exists at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    Overwrite,
    Skip,
    /// Overwrite this one and every further one without asking.
    OverwriteAll,
    /// Skip this one and every further one without asking.
    SkipAll,
    /// End the copy here.
    Stop,
}

/// Progress after a chunk or a file.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Files finished (copied, with or without lost blocks).
    pub files: u64,
    /// Bytes copied so far (read or zero-filled).
    pub bytes: u64,
    /// Bytes of every regular file to copy, counted before starting.
    pub total_bytes: u64,
    pub elapsed: Duration,
    /// The file being copied, relative to the destination folder.
    pub current: &'a Path,
    /// The copy has ended (the last report).
    pub done: bool,
}

impl Progress<'_> {
    /// `copy: 12 files, 340.0 MiB of 1.2 GiB (28%), 45.1 MiB/s, ETA 0:00:20`.
    pub fn line(&self) -> String {
        let pct = self
            .bytes
            .saturating_mul(100)
            .checked_div(self.total_bytes)
            .unwrap_or(100);
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            (self.bytes as f64 / secs) as u64
        } else {
            0
        };
        let eta = if rate > 0 && !self.done {
            let left = self.total_bytes.saturating_sub(self.bytes) / rate;
            format!(", ETA {}", screen::hms(Duration::from_secs(left)))
        } else {
            String::new()
        };
        format!(
            "copy: {}, {} of {} ({pct}%), {}/s{eta}",
            screen::plural(self.files, "file", "files"),
            screen::human_size(self.bytes),
            screen::human_size(self.total_bytes),
            screen::human_size(rate),
        )
    }
}

/// A file copied with blocks that could not be read (zero-filled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    /// Relative to the destination folder.
    pub path: PathBuf,
    /// (offset, length) of each run of unreadable bytes.
    pub lost: Vec<(u64, u64)>,
    /// The first error's text.
    pub error: String,
}

impl Damaged {
    pub fn lost_bytes(&self) -> u64 {
        self.lost.iter().map(|r| r.1).sum()
    }
}

/// How a copy went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Regular files written whole (damaged ones included).
    pub files: u64,
    pub bytes: u64,
    pub folders: u64,
    pub links: u64,
    /// Files with zero-filled blocks.
    pub damaged: Vec<Damaged>,
    /// Items not copied at all, with why (unreadable, special file,
    /// refused by the destination).
    pub errors: Vec<(PathBuf, String)>,
    /// Items left as they were at the destination (the answer was skip).
    pub skipped: Vec<PathBuf>,
    /// Why the copy stopped before the end (destination failing, asked
    /// to stop, cancelled).
    pub stopped: Option<String>,
}

impl Report {
    /// Whether something was lost or left out (the menu's "partial").
    pub fn problems(&self) -> bool {
        !self.damaged.is_empty() || !self.errors.is_empty() || self.stopped.is_some()
    }

    /// The summary: what was copied, then what went wrong, one item a
    /// line (at most `max_items` of each list).
    pub fn render(&self, max_items: usize) -> String {
        let mut s = format!(
            "copied {} ({}), {}, {}\n",
            screen::plural(self.files, "file", "files"),
            screen::human_size(self.bytes),
            screen::plural(self.folders, "folder", "folders"),
            screen::plural(self.links, "link", "links"),
        );
        let lost: u64 = self.damaged.iter().map(Damaged::lost_bytes).sum();
        if !self.damaged.is_empty() || !self.errors.is_empty() || !self.skipped.is_empty() {
            s.push_str(&format!(
                "{} with unreadable blocks ({} zero-filled), {}, {} skipped\n",
                screen::plural(self.damaged.len() as u64, "file", "files"),
                screen::human_size(lost),
                screen::plural(self.errors.len() as u64, "error", "errors"),
                self.skipped.len()
            ));
        }
        let wrap = |line: String| screen::wrap_words(&line, screen::SCREEN_WIDTH, 4);
        for d in self.damaged.iter().take(max_items) {
            s.push_str(&wrap(format!(
                "  damaged {}: {} zero-filled in {} ({})",
                d.path.display(),
                screen::human_size(d.lost_bytes()),
                screen::plural(d.lost.len() as u64, "range", "ranges"),
                d.error
            )));
        }
        for (p, e) in self.errors.iter().take(max_items) {
            s.push_str(&wrap(format!("  not copied {}: {e}", p.display())));
        }
        let more = self.damaged.len().saturating_sub(max_items)
            + self.errors.len().saturating_sub(max_items);
        if more > 0 {
            s.push_str(&format!("  ... and {more} more (see the report file)\n"));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&wrap(format!("STOPPED: {why}")));
        }
        s
    }

    /// The report file's text: every damaged file with its byte ranges,
    /// every error, what was skipped.
    pub fn full_text(&self, source: &Path, dest: &Path) -> String {
        let mut s = format!("copy of {} to {}\n", source.display(), dest.display());
        s.push_str(&self.render(0));
        for d in &self.damaged {
            s.push_str(&format!("DAMAGED {} ({})\n", d.path.display(), d.error));
            for (o, l) in &d.lost {
                s.push_str(&format!("  zero-filled bytes {o}..{}\n", o + l));
            }
        }
        for (p, e) in &self.errors {
            s.push_str(&format!("NOT COPIED {}: {e}\n", p.display()));
        }
        for p in &self.skipped {
            s.push_str(&format!(
                "SKIPPED (exists at the destination) {}\n",
                p.display()
            ));
        }
        s
    }
}

/// Files and bytes under `src` (a file or a folder), without following
/// links: the total for progress.
pub fn measure(src: &Path) -> (u64, u64) {
    let Ok(md) = std::fs::symlink_metadata(src) else {
        return (0, 0);
    };
    if md.is_file() {
        return (1, md.len());
    }
    if !md.is_dir() {
        return (0, 0);
    }
    let mut files = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(src).into_iter().flatten().flatten() {
        let (f, b) = measure(&e.path());
        files += f;
        bytes += b;
    }
    (files, bytes)
}

/// The copy's state while it runs.
struct Run<'a> {
    open: Opener<'a>,
    ask: &'a mut dyn FnMut(&Path) -> Conflict,
    progress: &'a mut dyn FnMut(&Progress<'_>),
    cancel: &'a AtomicBool,
    total: u64,
    began: Instant,
    /// A standing answer (OverwriteAll / SkipAll).
    always: Option<Conflict>,
    report: Report,
}

/// Copies `src` (a file or a folder, recursively) to `dest_dir/<its
/// name>`. `ask` is asked about each file that exists at the destination;
/// `progress` hears after each chunk; `cancel` stops between chunks.
pub fn copy(
    src: &Path,
    dest_dir: &Path,
    open: Opener<'_>,
    ask: &mut dyn FnMut(&Path) -> Conflict,
    progress: &mut dyn FnMut(&Progress<'_>),
    cancel: &AtomicBool,
) -> Report {
    let name = match src.file_name() {
        Some(n) => PathBuf::from(n),
        // The root of a mount: its files go straight into dest_dir.
        None => PathBuf::new(),
    };
    let mut run = Run {
        open,
        ask,
        progress,
        cancel,
        total: measure(src).1,
        began: Instant::now(),
        always: None,
        report: Report::default(),
    };
    if let (Ok(s), Ok(d)) = (src.canonicalize(), dest_dir.canonicalize()) {
        if d.starts_with(&s) {
            run.report.stopped = Some(format!(
                "the destination {} is inside {}",
                dest_dir.display(),
                src.display()
            ));
            return run.report;
        }
    }
    if let Err(e) = std::fs::create_dir_all(dest_dir) {
        run.report.stopped = Some(format!("{}: {e}", dest_dir.display()));
        return run.report;
    }
    let _ = run.item(src, dest_dir, &name);
    let done = Progress {
        files: run.report.files,
        bytes: run.report.bytes,
        total_bytes: run.total,
        elapsed: run.began.elapsed(),
        current: &name,
        done: true,
    };
    (run.progress)(&done);
    run.report
}

/// Ends the walk: the copy stopped.
struct Stop;

impl Run<'_> {
    fn stop(&mut self, why: String) -> Stop {
        if self.report.stopped.is_none() {
            self.report.stopped = Some(why);
        }
        Stop
    }

    fn item(&mut self, src: &Path, dest_dir: &Path, rel: &Path) -> Result<(), Stop> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(self.stop(format!("cancelled before {}", rel.display())));
        }
        let target = dest_dir.join(rel);
        let md = match std::fs::symlink_metadata(src) {
            Ok(m) => m,
            Err(e) => {
                self.report.errors.push((rel.to_path_buf(), e.to_string()));
                return Ok(());
            }
        };
        let ft = md.file_type();
        if ft.is_dir() {
            return self.folder(src, dest_dir, rel, &target, &md);
        }
        if ft.is_symlink() {
            return self.link(src, rel, &target);
        }
        if !ft.is_file() {
            self.report.errors.push((
                rel.to_path_buf(),
                "a device, FIFO or socket: not copied".into(),
            ));
            return Ok(());
        }
        if std::fs::symlink_metadata(&target).is_ok() {
            let answer = match self.always {
                Some(a) => a,
                None => (self.ask)(rel),
            };
            match answer {
                Conflict::Skip | Conflict::SkipAll => {
                    if answer == Conflict::SkipAll {
                        self.always = Some(Conflict::SkipAll);
                    }
                    self.report.skipped.push(rel.to_path_buf());
                    return Ok(());
                }
                Conflict::Stop => {
                    return Err(self.stop(format!(
                        "stopped as asked at {} (it exists at the destination)",
                        rel.display()
                    )))
                }
                Conflict::OverwriteAll => self.always = Some(Conflict::OverwriteAll),
                Conflict::Overwrite => {}
            }
            if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                self.report.errors.push((
                    rel.to_path_buf(),
                    "a folder of that name is at the destination".into(),
                ));
                return Ok(());
            }
        }
        self.file(src, rel, &target, &md)
    }

    fn folder(
        &mut self,
        src: &Path,
        dest_dir: &Path,
        rel: &Path,
        target: &Path,
        md: &std::fs::Metadata,
    ) -> Result<(), Stop> {
        let entries = match std::fs::read_dir(src) {
            Ok(rd) => rd,
            Err(e) => {
                self.report.errors.push((rel.to_path_buf(), e.to_string()));
                return Ok(());
            }
        };
        if !target.is_dir() {
            if let Err(e) = std::fs::create_dir(target) {
                return Err(self.stop(format!("{}: {e}", target.display())));
            }
        }
        self.report.folders += 1;
        let mut names: Vec<(PathBuf, std::ffi::OsString)> = Vec::new();
        for e in entries {
            match e {
                Ok(e) => names.push((e.path(), e.file_name())),
                Err(e) => self
                    .report
                    .errors
                    .push((rel.to_path_buf(), format!("listing: {e}"))),
            }
        }
        names.sort_by(|a, b| a.1.cmp(&b.1));
        for (path, name) in names {
            self.item(&path, dest_dir, &rel.join(name))?;
        }
        let _ = std::fs::set_permissions(target, md.permissions());
        if let Ok(t) = md.modified() {
            let _ = File::open(target).and_then(|f| f.set_modified(t));
        }
        Ok(())
    }

    fn link(&mut self, src: &Path, rel: &Path, target: &Path) -> Result<(), Stop> {
        if std::fs::symlink_metadata(target).is_ok() {
            self.report.skipped.push(rel.to_path_buf());
            return Ok(());
        }
        let made = std::fs::read_link(src).and_then(|to| std::os::unix::fs::symlink(to, target));
        match made {
            Ok(()) => self.report.links += 1,
            // FAT and exFAT hold no links: said per link, the copy goes on.
            Err(e) => self
                .report
                .errors
                .push((rel.to_path_buf(), format!("symbolic link: {e}"))),
        }
        Ok(())
    }

    fn file(
        &mut self,
        src: &Path,
        rel: &Path,
        target: &Path,
        md: &std::fs::Metadata,
    ) -> Result<(), Stop> {
        let reader = match (self.open)(src) {
            Ok(r) => r,
            Err(e) => {
                self.report.errors.push((rel.to_path_buf(), e.to_string()));
                return Ok(());
            }
        };
        let mut out = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(target)
        {
            Ok(f) => f,
            Err(e) => return Err(self.stop(format!("{}: {e}", target.display()))),
        };
        let size = md.len();
        let mut buf = vec![0u8; CHUNK];
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let mut first_error: Option<String> = None;
        let mut at = 0u64;
        while at < size {
            if self.cancel.load(Ordering::SeqCst) {
                drop(out);
                let _ = std::fs::remove_file(target);
                return Err(self.stop(format!(
                    "cancelled during {} (its partial copy removed)",
                    rel.display()
                )));
            }
            let n = (size - at).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            if let Err(e) = read_full(reader.as_ref(), chunk, at) {
                first_error.get_or_insert_with(|| e.to_string());
                // Again block by block: only what still fails is lost.
                for (i, block) in chunk.chunks_mut(BLOCK).enumerate() {
                    let off = at + (i * BLOCK) as u64;
                    if read_full(reader.as_ref(), block, off).is_err() {
                        block.fill(0);
                        let len = block.len() as u64;
                        match lost.last_mut() {
                            Some(last) if last.0 + last.1 == off => last.1 += len,
                            _ => lost.push((off, len)),
                        }
                    }
                }
            }
            if let Err(e) = out.write_all(chunk) {
                drop(out);
                let _ = std::fs::remove_file(target);
                return Err(self.stop(format!(
                    "writing {}: {e} (its partial copy removed)",
                    target.display()
                )));
            }
            at += n as u64;
            self.report.bytes += n as u64;
            let p = Progress {
                files: self.report.files,
                bytes: self.report.bytes,
                total_bytes: self.total,
                elapsed: self.began.elapsed(),
                current: rel,
                done: false,
            };
            (self.progress)(&p);
        }
        if let Err(e) = out.flush().and_then(|()| out.sync_data()) {
            drop(out);
            let _ = std::fs::remove_file(target);
            return Err(self.stop(format!("writing {}: {e}", target.display())));
        }
        let _ = out.set_permissions(std::fs::Permissions::from_mode(md.mode_bits()));
        if let Ok(t) = md.modified() {
            let _ = out.set_times(
                std::fs::FileTimes::new()
                    .set_modified(t)
                    .set_accessed(md.accessed().unwrap_or(SystemTime::now())),
            );
        }
        self.report.files += 1;
        if let Some(error) = first_error.filter(|_| !lost.is_empty()) {
            self.report.damaged.push(Damaged {
                path: rel.to_path_buf(),
                lost,
                error,
            });
        }
        Ok(())
    }
}

/// The permission bits of a file's mode.
trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Metadata {
    fn mode_bits(&self) -> u32 {
        self.permissions().mode() & 0o7777
    }
}

/// Reads `buf.len()` bytes at `offset`; a short file reads as an error.
fn read_full(r: &dyn Reader, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match r.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at byte {}", offset + done as u64),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
