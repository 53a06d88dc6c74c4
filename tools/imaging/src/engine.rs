//! The rescue engine: ddrescue's phases over a [`BlockDevice`].
//!
//! Copying (large reads; pass 1 skips ahead past errors and slow areas with a
//! growing skip, pass 2 runs the other way and stops inside each skipped block
//! at its first error, pass 3 sweeps what is left without skipping), trimming
//! (edges of failed reads sector by sector), scraping (the rest sector by
//! sector), then optional retry passes over bad sectors. Every area only moves
//! forward in ddrescue's order `? -> * -> / -> - -> +`, so an interrupted run
//! resumes from its mapfile without re-reading finished areas.

use crate::progress::Progress;
use blockdev::{AlignedBuf, BlockDevice};
use ddmap::{render, save_atomic, Header, Map, PhaseChar, Status};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where rescued bytes go.
pub trait Sink {
    /// Writes `buf` at `offset` of the image (same offset as on the source).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Called once at the end of a run: make the image at least `size` long
    /// (sparse output leaves trailing holes unwritten) and flush it.
    fn finish(&mut self, size: u64) -> io::Result<()>;
    /// Makes written data durable; called before each mapfile save so the
    /// map never claims data that a crash could lose.
    fn sync(&mut self) -> io::Result<()>;
    /// Whether the sink keeps the mapfile itself, beside an image it owns
    /// (a remote receiver): the engine then hands every save to
    /// [`Sink::save_map`] instead of writing [`MapStore::path`].
    fn keeps_map(&self) -> bool {
        false
    }
    /// Saves the rendered mapfile where the image is; called after
    /// [`Sink::sync`] (periodic saves) or [`Sink::finish`] (the last one),
    /// only when [`Sink::keeps_map`] is true.
    fn save_map(&mut self, text: &str) -> io::Result<()> {
        let _ = text;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this sink does not keep a mapfile",
        ))
    }
}

/// A regular file or block device written at the source's offsets.
pub struct FileSink {
    file: File,
    sparse: bool,
    regular: bool,
    /// Length of the file when opened: zero blocks below it may hold old
    /// data and are punched out instead of skipped.
    orig_len: u64,
}

impl FileSink {
    /// `sparse` leaves 4 KiB blocks that are all zero as holes (regular files
    /// only; holes read back as zeros). Where the file already had data, the
    /// range is punched out (FALLOC_FL_PUNCH_HOLE) or, if the filesystem cannot,
    /// written as zeros, so old bytes never show through.
    pub fn new(file: File, sparse: bool) -> io::Result<FileSink> {
        let meta = file.metadata()?;
        let regular = meta.file_type().is_file();
        Ok(FileSink {
            file,
            sparse: sparse && regular,
            regular,
            orig_len: meta.len(),
        })
    }

    fn zero_range(&mut self, zeros: &[u8], pos: u64) -> io::Result<()> {
        if pos >= self.orig_len {
            return Ok(());
        }
        let len = (zeros.len() as u64).min(self.orig_len - pos);
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(&self.file, flags, pos, len).is_err() {
            self.file.write_all_at(&zeros[..len as usize], pos)?;
        }
        Ok(())
    }
}

/// Granule of sparse-output zero detection.
const SPARSE_BLOCK: usize = 4096;

impl Sink for FileSink {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.sparse {
            return self.file.write_all_at(buf, offset);
        }
        // Runs of all-zero blocks become holes; the other runs are written.
        let is_zero = |j: usize| {
            buf[j..(j + SPARSE_BLOCK).min(buf.len())]
                .iter()
                .all(|&b| b == 0)
        };
        let mut i = 0;
        while i < buf.len() {
            let zero = is_zero(i);
            let start = i;
            while i < buf.len() && is_zero(i) == zero {
                i += SPARSE_BLOCK;
            }
            let end = i.min(buf.len());
            let pos = offset + start as u64;
            if zero {
                self.zero_range(&buf[start..end], pos)?;
            } else {
                self.file.write_all_at(&buf[start..end], pos)?;
            }
        }
        Ok(())
    }
    fn finish(&mut self, size: u64) -> io::Result<()> {
        if self.regular && self.file.metadata()?.len() < size {
            self.file.set_len(size)?;
        }
        self.file.sync_all()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Engine settings (CLI flags map onto these).
#[derive(Clone, Debug)]
pub struct Options {
    /// Copy pass 1 runs backwards (and the later passes flip from there).
    pub reverse: bool,
    /// Retry passes over bad sectors after scraping.
    pub retry_passes: u32,
    /// Reads slower than this (bytes/s) in copy passes 1-2 are treated as a
    /// slow area: skipped for now, read in a later pass.
    pub min_read_rate: Option<u64>,
    /// Size of the large reads of the copying phase (multiple of the sector
    /// size). A failed large read is trimmed sector by sector, so this is also
    /// the granularity of error handling: ddrescue's 64 KiB is the default;
    /// O_DIRECT disks read faster with 1 MiB.
    pub cluster_size: usize,
    /// First skip after an error in pass 1 (doubles per error, up to `max_skip`).
    /// `None`: max(64 KiB, size / 100 000) as in ddrescue.
    pub initial_skip: Option<u64>,
    /// `None`: max(initial, 1 % of the size).
    pub max_skip: Option<u64>,
    pub mapfile_interval: Duration,
    /// How often the progress callback runs; zero = after every read.
    pub progress_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reverse: false,
            retry_passes: 0,
            min_read_rate: None,
            cluster_size: 64 << 10,
            initial_skip: None,
            max_skip: None,
            mapfile_interval: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
        }
    }
}

/// Where and how the mapfile is saved while running (unless the sink
/// keeps it: [`Sink::keeps_map`]).
#[derive(Clone, Debug, Default)]
pub struct MapStore {
    /// `None`: keep the map in memory only (tests).
    pub path: Option<PathBuf>,
    /// Command line and start time for the heading comments.
    pub header: Header,
}

/// Why a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// All phases done (bad sectors may remain).
    Completed,
    /// The stop flag was set; the mapfile is saved and the run resumable.
    Interrupted,
    /// The source disappeared (ENODEV/ENXIO/ENOMEDIUM).
    SourceVanished(io::Error),
    /// Writing the image failed (ENOSPC, ...); resumable once fixed.
    WriteFailed(io::Error),
    /// Saving the mapfile failed; the previous mapfile is intact.
    MapfileFailed(io::Error),
    /// A read failed in a way that is not a media error (EINVAL: bad alignment).
    ReadFailed(io::Error),
}

/// Bytes and areas per [`Status`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    bytes: [u64; 5],
    areas: [u64; 5],
}

impl Totals {
    pub fn of(map: &Map) -> Totals {
        let mut t = Totals::default();
        for (i, st) in Status::ALL.iter().enumerate() {
            t.bytes[i] = map.bytes(*st);
            t.areas[i] = map.areas(*st);
        }
        t
    }
    pub fn bytes(&self, st: Status) -> u64 {
        self.bytes[st as usize]
    }
    pub fn areas(&self, st: Status) -> u64 {
        self.areas[st as usize]
    }
}

/// Linux errno values the engine tells apart (std has no constants).
pub mod errno {
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const EBADF: i32 = 9;
    pub const ENOMEM: i32 = 12;
    pub const EFAULT: i32 = 14;
    pub const ENODEV: i32 = 19;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENODATA: i32 = 61;
    pub const EILSEQ: i32 = 84;
    pub const ENOMEDIUM: i32 = 123;
}

/// Result of [`rescue`].
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub totals: Totals,
    pub size: u64,
    pub elapsed: Duration,
    /// Bytes rescued by this run.
    pub rescued_this_run: u64,
    pub reads: u64,
    pub read_errors: u64,
}

impl Report {
    /// True when every byte is finished.
    pub fn all_rescued(&self) -> bool {
        self.totals.bytes(Status::Finished) == self.size
    }
}

/// Phase of the run, for progress and the mapfile comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    Copying,
    Trimming,
    Scraping,
    Retrying,
    Finished,
}

impl Phase {
    fn map_status(self) -> PhaseChar {
        match self {
            Phase::Copying => PhaseChar::Copying,
            Phase::Trimming => PhaseChar::Trimming,
            Phase::Scraping => PhaseChar::Scraping,
            Phase::Retrying => PhaseChar::Retrying,
            Phase::Finished => PhaseChar::Finished,
        }
    }
    /// ddrescue-style description, e.g. "Copying non-tried blocks... Pass 1 (forwards)".
    pub fn describe(self, pass: u32, backwards: bool) -> String {
        let dir = if backwards { "backwards" } else { "forwards" };
        match self {
            Phase::Copying => format!("Copying non-tried blocks... Pass {pass} ({dir})"),
            Phase::Trimming => "Trimming failed blocks...".into(),
            Phase::Scraping => format!("Scraping failed blocks... ({dir})"),
            Phase::Retrying => format!("Retrying bad sectors... Retry {pass} ({dir})"),
            Phase::Finished => "Finished".into(),
        }
    }
}

enum Stop {
    Interrupted,
    Vanished(io::Error),
    Write(io::Error),
    Map(io::Error),
    Read(io::Error),
}

type Step<T = ()> = Result<T, Stop>;

/// What one read gave: `good` bytes from the requested start are rescued;
/// `failed` says the rest of the request hit a media error.
struct ReadResult {
    good: u64,
    failed: bool,
    slow: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Pass 1: skip ahead past an error or slow read, doubling the skip.
    Growing,
    /// Pass 2: give up the rest of the current non-tried block.
    RestOfBlock,
    /// Pass 3: read everything.
    None,
}

/// Classifies a read error: media errors mark the area; a vanished device
/// or a programming error (EINVAL from a misaligned O_DIRECT read) stop.
enum ErrClass {
    Media,
    Vanished,
    Fatal,
}

fn classify(e: &io::Error) -> ErrClass {
    match e.raw_os_error() {
        Some(errno::ENODEV | errno::ENXIO | errno::ENOMEDIUM) => ErrClass::Vanished,
        Some(errno::EINVAL | errno::EBADF | errno::EFAULT | errno::ENOMEM | errno::EISDIR) => {
            ErrClass::Fatal
        }
        // EIO, ENODATA (NVMe), EILSEQ, EBADMSG, ETIMEDOUT, EREMOTEIO, ...
        Some(_) => ErrClass::Media,
        None => match e.kind() {
            io::ErrorKind::InvalidInput => ErrClass::Fatal,
            _ => ErrClass::Media,
        },
    }
}

struct Engine<'a> {
    src: &'a dyn BlockDevice,
    sink: &'a mut dyn Sink,
    map: &'a mut Map,
    store: &'a MapStore,
    opts: &'a Options,
    stop: &'a AtomicBool,
    on_progress: &'a mut dyn FnMut(&Progress),
    buf: AlignedBuf,
    size: u64,
    sector: u64,
    phase: Phase,
    pass: u32,
    backwards: bool,
    start: Instant,
    last_good: Instant,
    last_save: Instant,
    last_progress: Instant,
    window_start: Instant,
    window_bytes: u64,
    current_rate: f64,
    rescued_this_run: u64,
    reads: u64,
    read_errors: u64,
}

/// Runs all remaining phases on `map` (a fresh [`Map::new`] or a loaded
/// one whose size equals `src.size()`; any other map is refused with
/// [`Outcome::MapfileFailed`] before any I/O), writing rescued data to `sink`.
/// The map is saved through `store` periodically, when `stop` is set, and at
/// the end; `on_progress` is called every `opts.progress_interval`.
pub fn rescue(
    src: &dyn BlockDevice,
    sink: &mut dyn Sink,
    map: &mut Map,
    store: &MapStore,
    opts: &Options,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(&Progress),
) -> Report {
    let size = src.size();
    if map.size() != size {
        // Refused without reading or writing anything (the CLI checks this earlier).
        return Report {
            outcome: Outcome::MapfileFailed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the map covers {} bytes but {} has {size}",
                    map.size(),
                    src.name()
                ),
            )),
            totals: Totals::of(map),
            size,
            elapsed: Duration::ZERO,
            rescued_this_run: 0,
            reads: 0,
            read_errors: 0,
        };
    }
    let sector = u64::from(src.logical_sector_size().max(1));
    let cluster = (opts.cluster_size as u64).max(sector) / sector * sector;
    let now = Instant::now();
    let mut opts_eff = opts.clone();
    opts_eff.cluster_size = cluster as usize;
    let slack = 2 * sector.max(4096);
    let mut e = Engine {
        src,
        sink,
        map,
        store,
        opts: &opts_eff,
        stop,
        on_progress,
        buf: AlignedBuf::new((cluster + slack) as usize),
        size,
        sector,
        phase: Phase::Copying,
        pass: 1,
        backwards: opts.reverse,
        start: now,
        last_good: now,
        last_save: now,
        last_progress: now,
        window_start: now,
        window_bytes: 0,
        current_rate: 0.0,
        rescued_this_run: 0,
        reads: 0,
        read_errors: 0,
    };
    let res = e.run_phases();
    let outcome = match res {
        Ok(()) => Outcome::Completed,
        Err(Stop::Interrupted) => Outcome::Interrupted,
        Err(Stop::Vanished(err)) => Outcome::SourceVanished(err),
        Err(Stop::Write(err)) => Outcome::WriteFailed(err),
        Err(Stop::Map(err)) => Outcome::MapfileFailed(err),
        Err(Stop::Read(err)) => Outcome::ReadFailed(err),
    };
    let mut outcome = outcome;
    // Flush the image before the final map claims its data is there.
    let flushed = if matches!(outcome, Outcome::WriteFailed(_)) {
        Ok(())
    } else {
        e.sink.finish(size)
    };
    if let Err(err) = flushed {
        outcome = Outcome::WriteFailed(err);
    }
    if let Err(err) = e.save_map() {
        if matches!(outcome, Outcome::Completed | Outcome::Interrupted) {
            outcome = Outcome::MapfileFailed(err);
        }
    }
    e.emit_progress();
    Report {
        outcome,
        totals: Totals::of(e.map),
        size,
        elapsed: e.start.elapsed(),
        rescued_this_run: e.rescued_this_run,
        reads: e.reads,
        read_errors: e.read_errors,
    }
}

impl Engine<'_> {
    fn run_phases(&mut self) -> Step {
        let first_dir = self.opts.reverse;
        // Resume the copying phase at the pass the mapfile was saved in.
        let resume_pass = if self.map.current_status == PhaseChar::Copying {
            self.map.current_pass.clamp(1, 3)
        } else {
            1
        };
        let resume_pos = self.map.current_pos;
        for pass in resume_pass..=3 {
            if self.map.bytes(Status::NonTried) == 0 {
                break;
            }
            let backwards = first_dir ^ (pass == 2);
            let from = (pass == resume_pass && self.map.current_status == PhaseChar::Copying)
                .then_some(resume_pos);
            let skip = match pass {
                1 => Skip::Growing,
                2 => Skip::RestOfBlock,
                _ => Skip::None,
            };
            self.enter(Phase::Copying, pass, backwards);
            self.copy_pass(backwards, skip, from)?;
        }
        if self.map.bytes(Status::NonTrimmed) > 0 {
            self.enter(Phase::Trimming, 1, false);
            self.trim()?;
        }
        if self.map.bytes(Status::NonScraped) > 0 {
            self.enter(Phase::Scraping, 1, first_dir);
            self.sector_pass(Status::NonScraped, first_dir)?;
        }
        for pass in 1..=self.opts.retry_passes {
            if self.map.bytes(Status::BadSector) == 0 {
                break;
            }
            let backwards = first_dir ^ (pass % 2 == 0);
            self.enter(Phase::Retrying, pass, backwards);
            self.sector_pass(Status::BadSector, backwards)?;
        }
        self.enter(Phase::Finished, 1, false);
        Ok(())
    }

    fn enter(&mut self, phase: Phase, pass: u32, backwards: bool) {
        self.phase = phase;
        self.pass = pass;
        self.backwards = backwards;
        self.map.current_status = phase.map_status();
        self.map.current_pass = pass;
    }

    fn initial_skip(&self) -> u64 {
        let s = self
            .opts
            .initial_skip
            .unwrap_or_else(|| (self.size / 100_000).max(64 << 10));
        s.max(self.sector).div_ceil(self.sector) * self.sector
    }

    fn max_skip(&self, initial: u64) -> u64 {
        let m = self.opts.max_skip.unwrap_or(self.size / 100);
        m.max(initial).div_ceil(self.sector) * self.sector
    }

    /// One copying pass over the non-tried blocks.
    fn copy_pass(&mut self, backwards: bool, skip_mode: Skip, from: Option<u64>) -> Step {
        let cluster = self.opts.cluster_size as u64;
        let initial = self.initial_skip();
        let max_skip = self.max_skip(initial);
        let mut skip = initial;
        let check_slow = skip_mode != Skip::None;
        if !backwards {
            let mut pos = from.unwrap_or(0);
            while let Some(b) = self.map.next_forward(pos, Status::NonTried) {
                // Reads stay on the cluster grid so O_DIRECT and RAID stripes line up.
                let end = b.end().min((b.pos / cluster + 1) * cluster);
                let r = self.read_area(b.pos, end - b.pos, check_slow)?;
                if r.failed {
                    self.map
                        .set(b.pos + r.good, end - b.pos - r.good, Status::NonTrimmed);
                }
                pos = end;
                if r.failed || r.slow {
                    match skip_mode {
                        Skip::Growing => {
                            pos = end.saturating_add(skip);
                            if r.failed {
                                skip = (skip * 2).min(max_skip);
                            }
                        }
                        Skip::RestOfBlock => pos = b.end(),
                        Skip::None => {}
                    }
                } else {
                    skip = initial;
                }
                self.map.current_pos = pos.min(self.size);
            }
        } else {
            let mut end = from.filter(|&p| p > 0).unwrap_or(self.size);
            while let Some(b) = self.map.next_backward(end, Status::NonTried) {
                let start = b.pos.max((b.end() - 1) / cluster * cluster);
                let r = self.read_area(start, b.end() - start, check_slow)?;
                if r.failed {
                    self.map
                        .set(start + r.good, b.end() - start - r.good, Status::NonTrimmed);
                }
                end = start;
                if r.failed || r.slow {
                    match skip_mode {
                        Skip::Growing => {
                            end = start.saturating_sub(skip);
                            if r.failed {
                                skip = (skip * 2).min(max_skip);
                            }
                        }
                        Skip::RestOfBlock => end = b.pos,
                        Skip::None => {}
                    }
                } else {
                    skip = initial;
                }
                self.map.current_pos = end;
            }
        }
        Ok(())
    }

    /// The sector `[s, e)` after `pos`, clipped to `limit`.
    fn sector_after(&self, pos: u64, limit: u64) -> u64 {
        ((pos / self.sector + 1) * self.sector).min(limit)
    }

    /// Trimming: from each non-trimmed block's leading edge forwards and from
    /// its trailing edge backwards, sector by sector, until a bad sector; the
    /// middle becomes non-scraped. An edge next to a bad sector is not trimmed.
    fn trim(&mut self) -> Step {
        let mut pos = 0;
        while let Some(b) = self.map.next_forward(pos, Status::NonTrimmed) {
            let (mut lo, mut hi) = (b.pos, b.end());
            let bad_before = lo > 0 && self.map.status_at(lo - 1) == Status::BadSector;
            let bad_after = hi < self.size && self.map.status_at(hi) == Status::BadSector;
            if !bad_before {
                while lo < hi {
                    let e = self.sector_after(lo, hi);
                    self.map.current_pos = lo;
                    let ok = self.read_sector(lo, e)?;
                    lo = e;
                    if !ok {
                        break;
                    }
                }
            }
            if !bad_after {
                while hi > lo {
                    let s = ((hi - 1) / self.sector * self.sector).max(lo);
                    self.map.current_pos = hi;
                    let ok = self.read_sector(s, hi)?;
                    hi = s;
                    if !ok {
                        break;
                    }
                }
            }
            if hi > lo {
                self.map.set(lo, hi - lo, Status::NonScraped);
            }
            pos = b.end();
        }
        Ok(())
    }

    /// Scraping and retrying: every block of `status`, sector by sector.
    fn sector_pass(&mut self, status: Status, backwards: bool) -> Step {
        if !backwards {
            let mut pos = 0;
            while let Some(b) = self.map.next_forward(pos, status) {
                let mut at = b.pos;
                while at < b.end() {
                    let e = self.sector_after(at, b.end());
                    self.map.current_pos = at;
                    self.read_sector(at, e)?;
                    at = e;
                }
                pos = b.end();
            }
        } else {
            let mut end = self.size;
            while let Some(b) = self.map.next_backward(end, status) {
                let mut at = b.end();
                while at > b.pos {
                    let s = ((at - 1) / self.sector * self.sector).max(b.pos);
                    self.map.current_pos = at;
                    self.read_sector(s, at)?;
                    at = s;
                }
                end = b.pos;
            }
        }
        Ok(())
    }

    /// Reads one sector (or part of one at a block edge); a failure marks it bad.
    fn read_sector(&mut self, s: u64, e: u64) -> Step<bool> {
        let r = self.read_area(s, e - s, false)?;
        if r.failed {
            self.map.set(s + r.good, e - s - r.good, Status::BadSector);
        }
        Ok(!r.failed)
    }

    /// Reads `[pos, pos+len)` (len <= cluster), writes what was read to the
    /// sink and marks it finished. The device is read over the enclosing
    /// sector-aligned range so O_DIRECT accepts it.
    fn read_area(&mut self, pos: u64, len: u64, check_slow: bool) -> Step<ReadResult> {
        debug_assert!(len > 0);
        let a = pos / self.sector * self.sector;
        let b = (pos + len).div_ceil(self.sector) * self.sector;
        let b = b.min(self.size);
        let want = (b - a) as usize;
        let t0 = Instant::now();
        let mut got = 0usize;
        let mut error = None;
        while got < want {
            self.reads += 1;
            match self.src.read_at(&mut self.buf[got..want], a + got as u64) {
                Ok(0) => {
                    error = Some(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("short read at byte {}", a + got as u64),
                    ));
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let elapsed = t0.elapsed();
        if let Some(e) = &error {
            // EIO from a disk that was removed is not a bad sector.
            let class = match classify(e) {
                ErrClass::Media if self.src.is_gone() => ErrClass::Vanished,
                c => c,
            };
            match class {
                ErrClass::Vanished => {
                    return Err(Stop::Vanished(io::Error::new(
                        e.kind(),
                        format!(
                            "{}: device vanished at byte {}: {e}",
                            self.src.name(),
                            a + got as u64
                        ),
                    )))
                }
                ErrClass::Fatal => {
                    return Err(Stop::Read(io::Error::new(
                        e.kind(),
                        format!(
                            "{}: read at byte {} failed: {e}",
                            self.src.name(),
                            a + got as u64
                        ),
                    )))
                }
                ErrClass::Media => self.read_errors += 1,
            }
        }
        // Whole sectors read before an error count as good.
        let good_end = if error.is_some() {
            (a + got as u64) / self.sector * self.sector
        } else {
            a + got as u64
        };
        let good = good_end.saturating_sub(pos).min(len);
        if good > 0 {
            let off = (pos - a) as usize;
            self.sink
                .write_at(&self.buf[off..off + good as usize], pos)
                .map_err(|e| {
                    Stop::Write(io::Error::new(
                        e.kind(),
                        format!("writing the image at byte {pos}: {e}"),
                    ))
                })?;
            self.map.set(pos, good, Status::Finished);
            self.rescued_this_run += good;
            self.window_bytes += good;
            self.last_good = Instant::now();
        }
        let slow = check_slow
            && error.is_none()
            && self.opts.min_read_rate.is_some_and(|min| {
                let secs = elapsed.as_secs_f64();
                secs > 0.0 && (len as f64 / secs) < min as f64
            });
        self.tick()?;
        Ok(ReadResult {
            good,
            failed: error.is_some(),
            slow,
        })
    }

    /// After every read: stop flag, progress, periodic mapfile save.
    fn tick(&mut self) -> Step {
        let now = Instant::now();
        if now.duration_since(self.last_progress) >= self.opts.progress_interval {
            let w = now.duration_since(self.window_start);
            if w >= Duration::from_millis(500) {
                self.current_rate = self.window_bytes as f64 / w.as_secs_f64();
                self.window_start = now;
                self.window_bytes = 0;
            }
            self.last_progress = now;
            self.emit_progress();
        }
        if self.stop.load(Ordering::Relaxed) {
            self.save()?;
            return Err(Stop::Interrupted);
        }
        if now.duration_since(self.last_save) >= self.opts.mapfile_interval {
            self.save()?;
        }
        Ok(())
    }

    fn emit_progress(&mut self) {
        let t = Totals::of(self.map);
        let elapsed = self.start.elapsed();
        let avg = if elapsed.as_secs_f64() > 0.0 {
            self.rescued_this_run as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        let p = Progress::new(
            self.phase,
            self.pass,
            self.backwards,
            self.map.current_pos,
            self.size,
            &t,
            self.reads,
            self.read_errors,
            self.current_rate,
            avg,
            elapsed,
            self.last_good.elapsed(),
        );
        (self.on_progress)(&p);
    }

    fn save(&mut self) -> Step {
        self.last_save = Instant::now();
        if self.store.path.is_none() && !self.sink.keeps_map() {
            return Ok(());
        }
        self.sink.sync().map_err(|e| {
            Stop::Write(io::Error::new(e.kind(), format!("flushing the image: {e}")))
        })?;
        self.save_map().map_err(Stop::Map)
    }

    /// Writes the mapfile alone (the final save, after the sink's own flush).
    fn save_map(&mut self) -> io::Result<()> {
        let header = Header {
            phase_message: self.phase.describe(self.pass, self.backwards),
            ..self.store.header.clone()
        };
        if self.sink.keeps_map() {
            return self.sink.save_map(&render(self.map, &header));
        }
        let Some(path) = &self.store.path else {
            return Ok(());
        };
        save_atomic(path, &render(self.map, &header)).map_err(|e| {
            io::Error::new(e.kind(), format!("saving mapfile {}: {e}", path.display()))
        })
    }
}
