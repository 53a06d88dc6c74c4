//! Writing a VM disk (or one partition of it) out as a raw image: holes
//! where the disk holds nothing (unallocated and zero grains; with
//! `sparse`, any all-zero block too), unreadable areas zero-filled and
//! listed in a GNU ddrescue mapfile in virtual-disk offsets, progress and
//! cancel for the fronts.

use crate::chain::VirtualDisk;
use crate::extent::Held;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes read at a time.
const CHUNK: u64 = 1 << 20;
/// After a chunk fails, the size it is retried in: what is marked bad.
const RETRY: u64 = 4096;

/// What to export.
pub struct ExportJob<'a> {
    pub disk: &'a VirtualDisk,
    /// The level read (with those under it).
    pub level: usize,
    /// The virtual byte range: the whole disk or one partition.
    pub start: u64,
    pub len: u64,
    pub dest: &'a Path,
    /// Leave all-zero blocks as holes too.
    pub sparse: bool,
}

/// Progress of an export, for the front's progress line.
#[derive(Clone, Debug)]
pub struct ExportProgress {
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

/// How an export ended.
#[derive(Debug)]
pub struct ExportReport {
    pub dest: PathBuf,
    /// Bytes of data written (holes excluded).
    pub written: u64,
    /// Bytes left as holes (nothing stored, zeros, or `sparse` zeros).
    pub holes: u64,
    /// Unreadable ranges `(offset, len)` relative to the exported range,
    /// zero-filled in the image.
    pub bad: Vec<(u64, u64)>,
    /// The first read error met, in words.
    pub first_error: Option<String>,
    /// Where the bad ranges were written, when there were any.
    pub badmap: Option<PathBuf>,
    /// Stopped by the cancel flag before the end.
    pub cancelled: bool,
    pub elapsed: Duration,
}

impl ExportReport {
    pub fn bad_bytes(&self) -> u64 {
        self.bad.iter().map(|r| r.1).sum()
    }
}

/// Exports `job`; `progress` is called after each chunk. Fails only when the
/// destination cannot be created or written (a destination that fails
/// leaves no doubt about the image); read failures are zero-filled and
/// reported. Chunks are read and written by a few threads at once (an
/// inflating or chain-walking read is CPU work), each written at its own
/// place in the image.
pub fn export(
    job: &ExportJob<'_>,
    progress: &mut dyn FnMut(&ExportProgress),
    cancel: &AtomicBool,
) -> Result<ExportReport, String> {
    let began = Instant::now();
    let dest = job.dest;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| {
            format!(
                "creating {}: {e}{}",
                dest.display(),
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (an export never overwrites a file; remove it or name another)"
                } else {
                    ""
                }
            )
        })?;
    let shared = Shared {
        job,
        out: &out,
        cursor: Mutex::new(0),
        written: AtomicU64::new(0),
        holes: AtomicU64::new(0),
        bad: Mutex::new(Vec::new()),
        first_error: Mutex::new(None),
        write_error: Mutex::new(None),
        cancel,
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done = done_tx.clone();
            let shared = &shared;
            scope.spawn(move || shared.work(&done));
        }
        drop(done_tx);
        let mut done = 0u64;
        for n in done_rx {
            done += n;
            progress(&ExportProgress {
                done,
                total: job.len,
                elapsed: began.elapsed(),
            });
        }
    });
    if let Some(e) = shared
        .write_error
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        return Err(e);
    }
    let cancelled = cancel.load(Ordering::SeqCst)
        && *shared.cursor.lock().unwrap_or_else(|e| e.into_inner()) < job.len;
    out.set_len(job.len)
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("finishing {}: {e}", dest.display()))?;
    let bad =
        blockdev::Ranges::from_unsorted(shared.bad.into_inner().unwrap_or_else(|e| e.into_inner()))
            .0;
    let mut report = ExportReport {
        dest: dest.to_path_buf(),
        written: shared.written.into_inner(),
        holes: shared.holes.into_inner(),
        first_error: shared
            .first_error
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        bad,
        badmap: None,
        cancelled,
        elapsed: Duration::ZERO,
    };
    if !report.bad.is_empty() {
        let path = badmap_path(dest);
        let what = format!(
            "unreadable areas of {} (virtual-disk offsets), zero-filled there: rescue vmdk export",
            dest.display()
        );
        write_badmap(&path, job.len, &report.bad, &what)?;
        report.badmap = Some(path);
    }
    report.elapsed = began.elapsed();
    Ok(report)
}

/// What the export threads share.
struct Shared<'a> {
    job: &'a ExportJob<'a>,
    out: &'a std::fs::File,
    /// The next byte of the exported range no thread has taken yet.
    cursor: Mutex<u64>,
    written: AtomicU64,
    holes: AtomicU64,
    bad: Mutex<Vec<(u64, u64)>>,
    first_error: Mutex<Option<String>>,
    /// The destination failed: every thread stops.
    write_error: Mutex<Option<String>>,
    cancel: &'a AtomicBool,
}

impl Shared<'_> {
    /// Takes the next piece of the range: up to a chunk of what one level
    /// holds the same way, and whether it is a hole.
    fn claim(&self) -> Option<(u64, u64, bool)> {
        let job = self.job;
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let pos = *cursor;
        if pos >= job.len || self.cancel.load(Ordering::SeqCst) {
            return None;
        }
        if self.write_error.lock().map_or(true, |e| e.is_some()) {
            return None;
        }
        let room = (job.len - pos).min(CHUNK);
        let (n, hole) = match job.disk.locate(job.level, job.start + pos) {
            Ok(loc) => (
                loc.len.min(room).max(1),
                matches!(loc.held, Held::Zero | Held::Unallocated),
            ),
            // The map itself is unreadable here: read what can be read.
            Err(_) => (room, false),
        };
        *cursor = pos + n;
        Some((pos, n, hole))
    }

    fn work(&self, done: &std::sync::mpsc::Sender<u64>) {
        let mut buf = vec![0u8; CHUNK as usize];
        while let Some((pos, n, hole)) = self.claim() {
            if hole {
                self.holes.fetch_add(n, Ordering::Relaxed);
            } else {
                let data = &mut buf[..n as usize];
                self.read_or_mark(pos, data);
                if self.job.sparse && data.iter().all(|&b| b == 0) {
                    self.holes.fetch_add(n, Ordering::Relaxed);
                } else if let Err(e) = self.out.write_all_at(data, pos) {
                    let mut w = self.write_error.lock().unwrap_or_else(|e| e.into_inner());
                    w.get_or_insert_with(|| {
                        format!("writing {} at byte {pos}: {e}", self.job.dest.display())
                    });
                    return;
                } else {
                    self.written.fetch_add(n, Ordering::Relaxed);
                }
            }
            let _ = done.send(n);
        }
    }

    /// Reads `data` at `pos` of the range; when that fails, again in
    /// [`RETRY`] pieces, zero-filling and recording the pieces that fail.
    fn read_or_mark(&self, pos: u64, data: &mut [u8]) {
        let (disk, level, at) = (self.job.disk, self.job.level, self.job.start + pos);
        if disk.read_at(level, data, at).is_ok() {
            return;
        }
        for (i, piece) in data.chunks_mut(RETRY as usize).enumerate() {
            let off = i as u64 * RETRY;
            if let Err(e) = disk.read_at(level, piece, at + off) {
                piece.fill(0);
                self.first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| e.to_string());
                self.bad
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((pos + off, piece.len() as u64));
            }
        }
    }
}

/// `DEST.badmap`.
pub fn badmap_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".badmap");
    PathBuf::from(name)
}

/// Writes a GNU ddrescue mapfile of `len` bytes at `path`: the `bad`
/// ranges (sorted, not overlapping) `-`, the rest `+`; `what` says in its
/// header what the map is of.
pub fn write_badmap(path: &Path, len: u64, bad: &[(u64, u64)], what: &str) -> Result<(), String> {
    let mut map = ddmap::Map::new(len);
    map.set(0, len, ddmap::Status::Finished);
    for &(s, n) in bad.iter().filter(|r| r.0 < len) {
        map.set(s, n.min(len - s), ddmap::Status::BadSector);
    }
    map.current_pos = len;
    map.current_status = ddmap::PhaseChar::Finished;
    let header = ddmap::Header {
        phase_message: what.to_string(),
        ..Default::default()
    };
    ddmap::save_atomic(path, &ddmap::render(&map, &header))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}
