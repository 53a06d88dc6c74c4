//! Writing a VM disk (or one partition of it) out as a raw image: holes
//! where the disk holds nothing (unallocated and zero grains; with
//! `sparse`, any all-zero block too), unreadable areas zero-filled and
//! listed in a GNU ddrescue mapfile in virtual-disk offsets, progress and
//! cancel for the fronts.

use crate::chain::VirtualDisk;
use crate::extent::Held;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
/// reported.
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
    let mut report = ExportReport {
        dest: dest.to_path_buf(),
        written: 0,
        holes: 0,
        bad: Vec::new(),
        first_error: None,
        badmap: None,
        cancelled: false,
        elapsed: Duration::ZERO,
    };
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = 0u64;
    while pos < job.len {
        if cancel.load(Ordering::SeqCst) {
            report.cancelled = true;
            break;
        }
        let at = job.start + pos;
        let room = (job.len - pos).min(CHUNK);
        let (n, hole) = match job.disk.locate(job.level, at) {
            Ok(loc) => (
                loc.len.min(room),
                matches!(loc.held, Held::Zero | Held::Unallocated),
            ),
            // The map itself is unreadable here: read what can be read.
            Err(_) => (room, false),
        };
        if hole {
            report.holes += n;
        } else {
            let data = &mut buf[..n as usize];
            read_or_mark(job, at, pos, data, &mut report);
            if job.sparse && data.iter().all(|&b| b == 0) {
                report.holes += n;
            } else {
                out.write_all_at(data, pos)
                    .map_err(|e| format!("writing {} at byte {pos}: {e}", dest.display()))?;
                report.written += n;
            }
        }
        pos += n;
        progress(&ExportProgress {
            done: pos,
            total: job.len,
            elapsed: began.elapsed(),
        });
    }
    out.set_len(job.len)
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("finishing {}: {e}", dest.display()))?;
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

/// Reads `data` at virtual `at`; when that fails, again in [`RETRY`]
/// pieces, zero-filling and recording the pieces that fail.
fn read_or_mark(job: &ExportJob<'_>, at: u64, pos: u64, data: &mut [u8], r: &mut ExportReport) {
    if job.disk.read_at(job.level, data, at).is_ok() {
        return;
    }
    for (i, piece) in data.chunks_mut(RETRY as usize).enumerate() {
        let off = i as u64 * RETRY;
        if let Err(e) = job.disk.read_at(job.level, piece, at + off) {
            piece.fill(0);
            r.first_error.get_or_insert_with(|| e.to_string());
            let len = piece.len() as u64;
            match r.bad.last_mut() {
                Some(last) if last.0 + last.1 == pos + off => last.1 += len,
                _ => r.bad.push((pos + off, len)),
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
