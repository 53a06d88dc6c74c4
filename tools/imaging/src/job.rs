//! An imaging job as a library: what to copy where ([`Job`]), the checks
//! done before anything is written ([`Job::validate`]), opening the
//! destination ([`Validated::prepare`]), the copy itself with progress and
//! the stop flag ([`Prepared::run`]), and what came of it ([`JobReport`]).
//! `rescue image` and the menu are fronts of this.

use crate::engine::{self, errno, FileSink, MapStore, Options, Outcome, Report};
use crate::fault::FaultDevice;
use crate::progress::Progress;
use blockdev::{BlockDevice, Device, DeviceKind, OpenOptionsRo, WriteAccess};
use ddmap::{Header, Map, Status};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The command name messages and the mapfile's heading start with.
pub const COMMAND: &str = "rescue image";

/// The digest of the finished image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
}

impl HashAlgorithm {
    /// The algorithm `name` names (only `sha256`).
    pub fn from_name(name: &str) -> Result<HashAlgorithm, JobError> {
        match name {
            "sha256" => Ok(HashAlgorithm::Sha256),
            _ => Err(JobError::UnsupportedHash(name.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
        }
    }
}

/// What to image where, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// A disk, a partition or an image file; only ever read.
    pub source: String,
    /// An image file (created if missing, never truncated), or a block
    /// device at least as large as the source.
    pub destination: String,
    /// GNU ddrescue mapfile; the run resumes from it if it exists.
    pub mapfile: String,
    /// The destination's path repeated: confirms overwriting a block device.
    pub write_confirmation: Option<String>,
    /// The first copying pass runs backwards.
    pub reverse: bool,
    /// Retries of bad sectors after scraping.
    pub retry_passes: u32,
    /// Bytes/s below which the first two passes mark an area slow.
    pub min_read_rate: Option<u64>,
    /// All-zero 4 KiB blocks of a new image file are left as holes.
    pub sparse: bool,
    /// The image file gets the source's size reserved before copying.
    pub preallocate: bool,
    /// Digest of the image at the end (bad areas read as zeros).
    pub hash: Option<HashAlgorithm>,
    /// With `hash`: also write `<destination>.sha256` (sha256sum format).
    pub hash_file: bool,
    /// Test aid: read errors simulated from a ddrescue test-mode mapfile.
    pub simulate_bad: Option<String>,
    /// A block-device source is read through the page cache, not O_DIRECT.
    pub no_direct: bool,
    /// Size of the copying phase's reads (default by source kind).
    pub cluster_size: Option<u64>,
}

impl Job {
    /// A plain job: no options, the defaults of `rescue image`.
    pub fn new(
        source: impl Into<String>,
        destination: impl Into<String>,
        mapfile: impl Into<String>,
    ) -> Job {
        Job {
            source: source.into(),
            destination: destination.into(),
            mapfile: mapfile.into(),
            write_confirmation: None,
            reverse: false,
            retry_passes: 0,
            min_read_rate: None,
            sparse: false,
            preallocate: false,
            hash: None,
            hash_file: false,
            simulate_bad: None,
            no_direct: false,
            cluster_size: None,
        }
    }

    /// The equivalent `rescue image` command line, for the mapfile heading.
    pub fn command_line(&self) -> String {
        let mut s = format!(
            "{COMMAND} {} {} --map {}",
            self.source, self.destination, self.mapfile
        );
        if let Some(w) = &self.write_confirmation {
            s += &format!(" --write {w}");
        }
        if self.reverse {
            s += " --reverse";
        }
        if self.retry_passes > 0 {
            s += &format!(" --retry-passes {}", self.retry_passes);
        }
        if let Some(r) = self.min_read_rate {
            s += &format!(" --min-read-rate {r}");
        }
        for (on, flag) in [
            (self.sparse, " --sparse"),
            (self.preallocate, " --preallocate"),
            (self.no_direct, " --no-direct"),
        ] {
            if on {
                s += flag;
            }
        }
        if let Some(h) = self.hash {
            s += &format!(" --hash {}", h.name());
        }
        if let Some(f) = &self.simulate_bad {
            s += &format!(" --simulate-bad {f}");
        }
        s
    }

    /// Every refusal, before anything is created or written: options that
    /// do not fit together, an unreadable source, a destination or mapfile
    /// that is the source or on the source's disk, a mapfile of another
    /// size, an unconfirmed or too small block device, too little space.
    pub fn validate(&self) -> Result<Validated, JobError> {
        self.validate_on(Path::new("/sys"))
    }

    /// [`Job::validate`] with sysfs at `sys` (for the source-disk checks).
    fn validate_on(&self, sys: &Path) -> Result<Validated, JobError> {
        if self.hash_file && self.hash.is_none() {
            return Err(JobError::HashFileWithoutHash);
        }
        if let Some(c) = self.cluster_size {
            if c == 0 || c > 64 << 20 {
                return Err(JobError::ClusterSize(c));
            }
        }
        let dev = Device::open_with(
            &self.source,
            OpenOptionsRo {
                direct: !self.no_direct,
            },
        )
        .map_err(|e| JobError::Source(e.to_string()))?;
        let src_block = dev.kind() == DeviceKind::BlockDevice;
        let src: Box<dyn BlockDevice> = match &self.simulate_bad {
            None => Box::new(dev),
            Some(f) => {
                let (m, _) = ddmap::load(Path::new(f))
                    .map_err(|e| JobError::SimulateBad(e.to_string()))?
                    .ok_or_else(|| {
                        JobError::SimulateBad(format!("{f}: no such file or no status line"))
                    })?;
                Box::new(FaultDevice::from_test_mapfile(dev, &m))
            }
        };
        let size = src.size();

        // DST / MAP must not be SRC or live on SRC's disk.
        let src_id =
            FileId::of(Path::new(&self.source)).map_err(|e| JobError::Source(e.to_string()))?;
        let dst_id = FileId::of_target(Path::new(&self.destination))
            .map_err(|e| JobError::Destination(e.to_string()))?;
        let map_id = FileId::of_target(Path::new(&self.mapfile))
            .map_err(|e| JobError::MapfilePath(e.to_string()))?;
        conflict(Target::Destination, &dst_id, &src_id, src_block, sys)?;
        conflict(Target::Mapfile, &map_id, &src_id, src_block, sys)?;
        if map_id.same_object(&dst_id) {
            return Err(JobError::MapfileIsDestination);
        }
        if self.simulate_bad.as_deref().is_some_and(|f| {
            FileId::of(Path::new(f))
                .is_ok_and(|id| id.same_object(&dst_id) || id.same_object(&map_id))
        }) {
            return Err(JobError::SimulateBadNamesOutput);
        }

        // The mapfile: unreadable or for another size is refused.
        let loaded = ddmap::load(Path::new(&self.mapfile))
            .map_err(|e| JobError::MapfileUnreadable(e.to_string()))?;
        let resuming = loaded.as_ref().is_some_and(|(m, _)| !m.is_empty());
        let map = match loaded {
            Some((m, lines)) if !m.is_empty() => {
                m.check_size(size, Some(&lines))
                    .map_err(|e| JobError::MapfileMismatch {
                        mapfile: self.mapfile.clone(),
                        detail: e.to_string(),
                    })?;
                m
            }
            // A status line without blocks: nothing done yet (as ddrescue reads it).
            _ => Map::new(size),
        };

        // DST: a file, or a confirmed block device at least SRC's size.
        let dst_block = dst_id.exists && dst_id.is_block;
        if let Some(w) = &self.write_confirmation {
            if w != &self.destination {
                return Err(JobError::ConfirmationMismatch {
                    confirmation: w.clone(),
                    destination: self.destination.clone(),
                });
            }
        }
        if dst_block {
            if self.write_confirmation.is_none() {
                return Err(JobError::BlockDestinationUnconfirmed(
                    self.destination.clone(),
                ));
            }
            if self.sparse || self.preallocate {
                return Err(JobError::FileOptionsOnBlockDevice);
            }
            let d = Device::open(&self.destination)
                .map_err(|e| JobError::Destination(e.to_string()))?;
            if d.size() < size {
                return Err(JobError::DestinationTooSmall {
                    destination: self.destination.clone(),
                    destination_bytes: d.size(),
                    source_bytes: size,
                });
            }
        } else if dst_id.exists {
            let meta = std::fs::metadata(&self.destination)
                .map_err(|e| JobError::Destination(format!("{}: {e}", self.destination)))?;
            if !meta.file_type().is_file() {
                return Err(JobError::DestinationNotFileOrBlockDevice(
                    self.destination.clone(),
                ));
            }
        }
        if !dst_block && !self.sparse {
            check_space(Path::new(&self.destination), size, &map)?;
        }
        Ok(Validated {
            job: self.clone(),
            src,
            size,
            map,
            resuming,
            dst_block,
            direct: src_block && !self.no_direct,
        })
    }
}

/// Why a job was refused or failed outside the copy itself. The messages
/// are those `rescue image` prints after its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    UnsupportedHash(String),
    HashFileWithoutHash,
    ClusterSize(u64),
    /// The source cannot be opened or looked at.
    Source(String),
    /// The test-mode mapfile cannot be used.
    SimulateBad(String),
    /// The destination (or its directory) cannot be looked at or opened.
    Destination(String),
    /// The mapfile's directory cannot be looked at.
    MapfilePath(String),
    /// The destination or the mapfile is the source itself.
    IsTheSource(Target),
    /// The destination or the mapfile lives on the source's disk.
    OnTheSourceDisk {
        target: Target,
        device: String,
    },
    MapfileIsDestination,
    SimulateBadNamesOutput,
    MapfileUnreadable(String),
    /// The mapfile is for another size (or broken).
    MapfileMismatch {
        mapfile: String,
        detail: String,
    },
    /// The write confirmation does not repeat the destination.
    ConfirmationMismatch {
        confirmation: String,
        destination: String,
    },
    /// A block-device destination without the write confirmation.
    BlockDestinationUnconfirmed(String),
    FileOptionsOnBlockDevice,
    DestinationTooSmall {
        destination: String,
        destination_bytes: u64,
        source_bytes: u64,
    },
    DestinationNotFileOrBlockDevice(String),
    /// The destination filesystem cannot hold what is still to be written.
    NotEnoughSpace {
        destination: String,
        needed: u64,
        free: u64,
        filesystem: String,
    },
    /// Reserving the image's size failed for lack of space.
    PreallocateNoSpace {
        destination: String,
        bytes: u64,
    },
    Preallocate {
        destination: String,
        error: String,
    },
    /// Hashing the finished image failed (or writing its .sha256 file).
    Hash(String),
    /// A local DST without --map.
    MapfileMissing,
    /// An option that only a rescue:// DST takes.
    RemoteOnly(&'static str),
}

/// Which output a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Destination,
    Mapfile,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Destination => "DST",
            Target::Mapfile => "mapfile",
        })
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::UnsupportedHash(h) => {
                write!(f, "--hash: unsupported algorithm '{h}' (supported: sha256)")
            }
            JobError::HashFileWithoutHash => write!(f, "--hash-file needs --hash sha256"),
            JobError::ClusterSize(c) => {
                write!(f, "--cluster-size {c}: must be between 1 and 64 MiB")
            }
            JobError::Source(e) => write!(f, "SRC: {e}"),
            JobError::SimulateBad(e) => write!(f, "--simulate-bad: {e}"),
            JobError::Destination(e) => write!(f, "DST: {e}"),
            JobError::MapfilePath(e) => write!(f, "--map: {e}"),
            JobError::IsTheSource(t) => write!(f, "{t} is the source itself: refusing"),
            JobError::OnTheSourceDisk { target, device } => write!(
                f,
                "{target} is on the source's disk (device {device}): refusing to write there"
            ),
            JobError::MapfileIsDestination => write!(f, "the mapfile and DST are the same file"),
            JobError::SimulateBadNamesOutput => {
                write!(f, "--simulate-bad must not name DST or the mapfile")
            }
            JobError::MapfileUnreadable(e) => write!(f, "mapfile: {e}"),
            JobError::MapfileMismatch { mapfile, detail } => write!(f, "mapfile {mapfile}: {detail}"),
            JobError::ConfirmationMismatch {
                confirmation,
                destination,
            } => write!(
                f,
                "--write {confirmation} does not repeat DST {destination}: refusing to write"
            ),
            JobError::BlockDestinationUnconfirmed(d) => write!(
                f,
                "DST {d} is a block device: everything on it would be overwritten; repeat its path as --write {d} to confirm"
            ),
            JobError::FileOptionsOnBlockDevice => {
                write!(f, "--sparse and --preallocate are for an image file DST")
            }
            JobError::DestinationTooSmall {
                destination,
                destination_bytes,
                source_bytes,
            } => write!(
                f,
                "DST {destination} is too small: {destination_bytes} bytes, SRC has {source_bytes} bytes"
            ),
            JobError::DestinationNotFileOrBlockDevice(d) => {
                write!(f, "DST {d}: neither a regular file nor a block device")
            }
            JobError::NotEnoughSpace {
                destination,
                needed,
                free,
                filesystem,
            } => write!(
                f,
                "DST {destination}: not enough space: {needed} bytes still to write, {free} bytes free on {filesystem}"
            ),
            JobError::PreallocateNoSpace { destination, bytes } => {
                write!(f, "{destination}: not enough space to preallocate {bytes} bytes")
            }
            JobError::Preallocate { destination, error } => {
                write!(f, "{destination}: preallocate: {error}")
            }
            JobError::Hash(e) => write!(f, "{e}"),
            JobError::MapfileMissing => {
                write!(f, "--map MAPFILE is required (the run resumes from it)")
            }
            JobError::RemoteOnly(o) => write!(f, "{o} is only for a rescue:// DST"),
        }
    }
}

impl std::error::Error for JobError {}

/// A job that passed every check; nothing has been written yet.
pub struct Validated {
    job: Job,
    src: Box<dyn BlockDevice>,
    size: u64,
    map: Map,
    resuming: bool,
    dst_block: bool,
    /// SRC is a block device read with O_DIRECT.
    direct: bool,
}

impl Validated {
    /// The source's size in bytes.
    pub fn source_size(&self) -> u64 {
        self.size
    }

    /// Whether the mapfile holds an earlier run's progress.
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    /// Opens (or creates) the destination for writing, and reserves the
    /// image's size if asked. From here on DST and the mapfile are written.
    pub fn prepare(self) -> Result<Prepared, JobError> {
        let job = &self.job;
        let dst = &job.destination;
        let file = if self.dst_block {
            let access =
                WriteAccess::confirmed_by_user(job.write_confirmation.clone().unwrap_or_default());
            let dev = Device::open_writable(dst, &access)
                .map_err(|e| JobError::Destination(e.to_string()))?;
            dev.file()
                .try_clone()
                .map_err(|e| JobError::Destination(format!("{dst}: {e}")))?
        } else {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dst)
                .map_err(|e| JobError::Destination(format!("{dst}: open for writing: {e}")))?
        };
        if job.preallocate {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.size)
                .map_err(|e| {
                    let e = io::Error::from(e);
                    if e.raw_os_error() == Some(errno::ENOSPC) {
                        JobError::PreallocateNoSpace {
                            destination: dst.clone(),
                            bytes: self.size,
                        }
                    } else {
                        JobError::Preallocate {
                            destination: dst.clone(),
                            error: e.to_string(),
                        }
                    }
                })?;
        }
        let sink = FileSink::new(file, job.sparse)
            .map_err(|e| JobError::Destination(format!("{dst}: {e}")))?;
        let store = MapStore {
            path: Some(PathBuf::from(&job.mapfile)),
            header: Header {
                command_line: job.command_line(),
                start_time: ddmap::utc_now(),
                phase_message: String::new(),
            },
        };
        let options = Options {
            reverse: job.reverse,
            retry_passes: job.retry_passes,
            min_read_rate: job.min_read_rate,
            cluster_size: job
                .cluster_size
                .unwrap_or(if self.direct { 1 << 20 } else { 64 << 10 })
                as usize,
            ..Options::default()
        };
        Ok(Prepared {
            validated: self,
            sink,
            store,
            options,
        })
    }
}

/// What a run reports while it copies.
pub trait ProgressSink {
    /// A progress snapshot (after every read batch).
    fn progress(&mut self, p: &Progress);
    /// The copy is over; called before the image is hashed.
    fn copied(&mut self, report: &Report);
}

/// A job with its destination open, ready to run.
pub struct Prepared {
    validated: Validated,
    sink: FileSink,
    store: MapStore,
    options: Options,
}

impl Prepared {
    /// The line announcing the run: source, size, destination, mapfile and
    /// what an earlier run already rescued.
    pub fn plan_line(&self) -> String {
        let v = &self.validated;
        let t = engine::Totals::of(&v.map);
        format!(
            "{COMMAND}: {} ({} bytes, {}-byte sectors) -> {}{}; mapfile {}{}",
            v.src.name(),
            v.size,
            v.src.logical_sector_size(),
            v.job.destination,
            if v.dst_block { " (block device)" } else { "" },
            v.job.mapfile,
            if v.resuming {
                format!(
                    " (resuming: {} bytes already rescued, {} bad)",
                    t.bytes(Status::Finished),
                    t.bytes(Status::BadSector)
                )
            } else {
                String::new()
            }
        )
    }

    /// Copies until done or until `stop` is set (the mapfile is then saved
    /// and the job resumable), then hashes the image if asked and the copy
    /// completed. An error is returned only when hashing fails; how the
    /// copy ended is in the report.
    pub fn run(
        self,
        stop: &AtomicBool,
        progress: &mut dyn ProgressSink,
    ) -> Result<JobReport, JobError> {
        let Prepared {
            validated,
            mut sink,
            store,
            options,
        } = self;
        let Validated {
            job, src, mut map, ..
        } = validated;
        let report = engine::rescue(
            src.as_ref(),
            &mut sink,
            &mut map,
            &store,
            &options,
            stop,
            &mut |p| progress.progress(p),
        );
        drop(sink);
        progress.copied(&report);
        let sha256 = match job.hash {
            Some(HashAlgorithm::Sha256) if matches!(report.outcome, Outcome::Completed) => {
                Some(hash_image(&job, &map)?)
            }
            _ => None,
        };
        let r = JobReport {
            source_name: src.name().to_string(),
            destination: job.destination.clone(),
            hash_requested: job.hash.is_some(),
            report,
            sha256,
        };
        log::info!("{}", r.log_line());
        Ok(r)
    }
}

fn hash_image(job: &Job, map: &Map) -> Result<[u8; 32], JobError> {
    let dst = &job.destination;
    let img = Device::open(dst).map_err(|e| JobError::Hash(e.to_string()))?;
    let d = crate::hash::image_sha256(&img, map)
        .map_err(|e| JobError::Hash(format!("hashing {dst}: {e}")))?;
    if job.hash_file {
        let path = format!("{dst}.sha256");
        let name = Path::new(dst)
            .file_name()
            .map_or_else(|| dst.clone(), |n| n.to_string_lossy().into_owned());
        std::fs::write(&path, crate::hash::sha256sum_line(&d, &name))
            .map_err(|e| JobError::Hash(format!("{path}: {e}")))?;
    }
    Ok(d)
}

/// What a run came to.
#[derive(Debug)]
pub struct JobReport {
    /// The source as the device names itself.
    pub source_name: String,
    pub destination: String,
    /// The engine's account: outcome, totals by status, reads.
    pub report: Report,
    /// Whether a hash was asked for (it is computed only after a completed copy).
    pub hash_requested: bool,
    /// The image's SHA-256 (bad areas as zeros), when asked and completed.
    pub sha256: Option<[u8; 32]>,
}

impl JobReport {
    /// Bytes of the source now in the image (this and earlier runs).
    pub fn rescued_bytes(&self) -> u64 {
        self.report.totals.bytes(Status::Finished)
    }

    /// Bytes in bad areas, and how many areas.
    pub fn bad_bytes(&self) -> u64 {
        self.report.totals.bytes(Status::BadSector)
    }

    pub fn bad_areas(&self) -> u64 {
        self.report.totals.areas(Status::BadSector)
    }

    /// The stop flag ended the run (the mapfile is saved; run again to resume).
    pub fn stopped(&self) -> bool {
        matches!(self.report.outcome, Outcome::Interrupted)
    }

    /// 0 everything rescued, 1 bad areas remain or stopped, 2 an I/O error
    /// ended the run (as `rescue image`).
    pub fn exit_code(&self) -> i32 {
        match self.report.outcome {
            Outcome::Completed if self.report.all_rescued() => cliconv::Exit::Done.code(),
            Outcome::Completed | Outcome::Interrupted => cliconv::Exit::Findings.code(),
            _ => cliconv::Exit::Error.code(),
        }
    }

    /// `completed`, `interrupted`, `source_vanished`, ...
    pub fn outcome_name(&self) -> &'static str {
        outcome_name(&self.report.outcome)
    }

    /// The error that ended the run early, if one did.
    pub fn error(&self) -> Option<String> {
        outcome_error(&self.report.outcome)
    }

    /// The image's SHA-256 in hex.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|d| crate::hash::hex(d))
    }

    /// One line with everything, for the log.
    pub fn log_line(&self) -> String {
        let r = &self.report;
        let t = &r.totals;
        format!(
            "{COMMAND}: {} -> {}: {}; {} of {} bytes rescued ({} this run), {} bytes in {} bad areas, \
             {} bytes not tried; {} reads, {} read errors{}",
            self.source_name,
            self.destination,
            self.outcome_name(),
            t.bytes(Status::Finished),
            r.size,
            r.rescued_this_run,
            t.bytes(Status::BadSector),
            t.areas(Status::BadSector),
            t.bytes(Status::NonTried),
            r.reads,
            r.read_errors,
            self.sha256_hex()
                .map(|d| format!("; sha256 {d}"))
                .unwrap_or_default()
        )
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted",
        Outcome::SourceVanished(_) => "source_vanished",
        Outcome::WriteFailed(_) => "write_failed",
        Outcome::MapfileFailed(_) => "mapfile_failed",
        Outcome::ReadFailed(_) => "read_failed",
    }
}

/// The error that ended a run early, if one did.
pub fn outcome_error(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Completed | Outcome::Interrupted => None,
        Outcome::SourceVanished(e)
        | Outcome::WriteFailed(e)
        | Outcome::MapfileFailed(e)
        | Outcome::ReadFailed(e) => Some(e.to_string()),
    }
}

/// Refuses up front when the destination filesystem cannot hold what is
/// still to be written (best effort: statvfs of DST's directory).
fn check_space(dst: &Path, size: u64, map: &Map) -> Result<(), JobError> {
    let allocated = std::fs::metadata(dst).map_or(0, |m| m.blocks() * 512);
    let dir = parent_dir(dst);
    let Ok(st) = rustix::fs::statvfs(&dir) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let todo = size - map.bytes(Status::Finished);
    let need = size.saturating_sub(allocated).min(todo);
    if need > free {
        return Err(JobError::NotEnoughSpace {
            destination: dst.display().to_string(),
            needed: need,
            free,
            filesystem: dir.display().to_string(),
        });
    }
    Ok(())
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Identity of a path for the "is DST the source?" checks.
#[derive(Debug, Clone)]
struct FileId {
    exists: bool,
    is_block: bool,
    /// st_dev of the object (or of its directory if it does not exist yet).
    dev: u64,
    ino: u64,
    /// st_rdev for block devices.
    rdev: u64,
}

impl FileId {
    fn of(p: &Path) -> io::Result<FileId> {
        let m = std::fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        Ok(FileId {
            exists: true,
            is_block: m.file_type().is_block_device(),
            dev: m.dev(),
            ino: m.ino(),
            rdev: m.rdev(),
        })
    }
    /// Like `of`, but a missing file is described by its directory.
    fn of_target(p: &Path) -> io::Result<FileId> {
        match std::fs::metadata(p) {
            Ok(_) => Self::of(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = parent_dir(p);
                let m = std::fs::metadata(&dir)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
                Ok(FileId {
                    exists: false,
                    is_block: false,
                    dev: m.dev(),
                    ino: 0,
                    rdev: 0,
                })
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        }
    }
    fn same_object(&self, o: &FileId) -> bool {
        (self.exists && o.exists && self.dev == o.dev && self.ino == o.ino)
            || (self.is_block && o.is_block && self.rdev == o.rdev)
    }
    /// The whole disks this object lives on (block device: itself; file: its filesystem's device).
    fn disks(&self, sys: &Path) -> Vec<u64> {
        disks_under(sys, if self.is_block { self.rdev } else { self.dev })
    }
}

/// Refuses `target` when it is the source or (unless both are files) on
/// the source's disk.
fn conflict(
    target: Target,
    t: &FileId,
    src: &FileId,
    src_block: bool,
    sys: &Path,
) -> Result<(), JobError> {
    if t.same_object(src) {
        return Err(JobError::IsTheSource(target));
    }
    // A file next to a file source is fine; anything touching SRC's disk is not,
    // and neither is writing the block device that holds a file source.
    if src_block || t.is_block {
        let a = t.disks(sys);
        if src.disks(sys).iter().any(|d| a.contains(d)) {
            return Err(JobError::OnTheSourceDisk {
                target,
                device: fmt_dev(a[0]),
            });
        }
    }
    Ok(())
}

fn fmt_dev(d: u64) -> String {
    format!("{}:{}", rustix::fs::major(d), rustix::fs::minor(d))
}

/// Whole-disk device numbers under `dev` via sysfs: a partition maps to its
/// disk; dm/md devices map to the disks of their `slaves/`.
fn disks_under(sys: &Path, dev: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let node = sys.join("dev/block").join(fmt_dev(dev));
    collect_disks(&node, &mut out, 0);
    out
}

fn collect_disks(node: &Path, out: &mut Vec<u64>, depth: u32) {
    let Ok(real) = std::fs::canonicalize(node) else {
        return;
    };
    let disk_dir = if real.join("partition").exists() {
        match real.parent() {
            Some(p) => p.to_path_buf(),
            None => return,
        }
    } else {
        real
    };
    let slaves: Vec<PathBuf> = std::fs::read_dir(disk_dir.join("slaves"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if !slaves.is_empty() && depth < 8 {
        for s in slaves {
            collect_disks(&s, out, depth + 1);
        }
        return;
    }
    if let Some(d) = std::fs::read_to_string(disk_dir.join("dev"))
        .ok()
        .and_then(|s| parse_devnum(s.trim()))
    {
        if !out.contains(&d) {
            out.push(d);
        }
    }
}

fn parse_devnum(s: &str) -> Option<u64> {
    let (ma, mi) = s.split_once(':')?;
    Some(rustix::fs::makedev(ma.parse().ok()?, mi.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddmap::render;
    use std::sync::atomic::Ordering;

    use testkit::TempDir;

    /// A scratch directory for one test.
    fn dir(tag: &str) -> TempDir {
        TempDir::new(&format!("imaging-job-{tag}"))
    }

    fn data(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Records what a run reports.
    #[derive(Default)]
    struct Seen {
        progress: usize,
        copied: Vec<String>,
    }
    impl ProgressSink for Seen {
        fn progress(&mut self, _: &Progress) {
            self.progress += 1;
        }
        fn copied(&mut self, r: &Report) {
            self.copied.push(outcome_name(&r.outcome).to_string());
        }
    }

    fn refusal(job: &Job) -> JobError {
        match job.validate() {
            Ok(_) => panic!("{job:?} was not refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn sysfs_partition_and_dm_resolve_to_disks() {
        let root = std::env::temp_dir().join(format!("imaging-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let blk = root.join("devices/pci/block");
        let sda = blk.join("sda");
        std::fs::create_dir_all(sda.join("sda1")).unwrap();
        std::fs::write(sda.join("dev"), "8:0\n").unwrap();
        std::fs::write(sda.join("sda1/dev"), "8:1\n").unwrap();
        std::fs::write(sda.join("sda1/partition"), "1\n").unwrap();
        let dm = root.join("devices/virtual/block/dm-0");
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        std::fs::write(dm.join("dev"), "253:0\n").unwrap();
        std::os::unix::fs::symlink(sda.join("sda1"), dm.join("slaves/sda1")).unwrap();
        let db = root.join("dev/block");
        std::fs::create_dir_all(&db).unwrap();
        std::os::unix::fs::symlink(sda.join("sda1"), db.join("8:1")).unwrap();
        std::os::unix::fs::symlink(&sda, db.join("8:0")).unwrap();
        std::os::unix::fs::symlink(&dm, db.join("253:0")).unwrap();
        let sda_dev = rustix::fs::makedev(8, 0);
        assert_eq!(disks_under(&root, rustix::fs::makedev(8, 1)), vec![sda_dev]);
        assert_eq!(disks_under(&root, sda_dev), vec![sda_dev]);
        assert_eq!(
            disks_under(&root, rustix::fs::makedev(253, 0)),
            vec![sda_dev]
        );
        assert!(disks_under(&root, rustix::fs::makedev(0, 42)).is_empty());

        // A file on a filesystem on sda1 (dev 8:1) is on source disk sda.
        let src = FileId {
            exists: true,
            is_block: true,
            dev: 5,
            ino: 1,
            rdev: sda_dev,
        };
        let file_on_sda1 = FileId {
            exists: true,
            is_block: false,
            dev: rustix::fs::makedev(8, 1),
            ino: 7,
            rdev: 0,
        };
        let err = conflict(Target::Destination, &file_on_sda1, &src, true, &root).unwrap_err();
        assert_eq!(
            err,
            JobError::OnTheSourceDisk {
                target: Target::Destination,
                device: "8:0".into()
            }
        );
        assert!(err.to_string().contains("source's disk"), "{err}");
        let elsewhere = FileId {
            exists: true,
            is_block: false,
            dev: rustix::fs::makedev(8, 16),
            ino: 7,
            rdev: 0,
        };
        assert!(conflict(Target::Destination, &elsewhere, &src, true, &root).is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn validate_refuses_outputs_that_are_the_source_or_each_other() {
        let d = dir("same");
        std::fs::write(d.join_str("src.img"), data(64 << 10)).unwrap();
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("src.img"),
            d.join_str("m.map"),
        ));
        assert_eq!(e, JobError::IsTheSource(Target::Destination));
        assert_eq!(e.to_string(), "DST is the source itself: refusing");
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("dst.img"),
            d.join_str("src.img"),
        ));
        assert_eq!(e, JobError::IsTheSource(Target::Mapfile));
        std::fs::write(d.join_str("dst.img"), b"").unwrap();
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("dst.img"),
            d.join_str("dst.img"),
        ));
        assert_eq!(e, JobError::MapfileIsDestination);
        // Through a symlink it is still the source.
        std::os::unix::fs::symlink(d.join("src.img"), d.join("link.img")).unwrap();
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("link.img"),
            d.join_str("m.map"),
        ));
        assert_eq!(e, JobError::IsTheSource(Target::Destination));
        assert!(!d.join("m.map").exists(), "a refusal writes nothing");
    }

    #[test]
    fn validate_refuses_bad_options_and_destinations() {
        let d = dir("opts");
        std::fs::write(d.join_str("src.img"), data(64 << 10)).unwrap();
        let job = Job::new(
            d.join_str("src.img"),
            d.join_str("dst.img"),
            d.join_str("m.map"),
        );
        assert_eq!(
            HashAlgorithm::from_name("md5").unwrap_err().to_string(),
            "--hash: unsupported algorithm 'md5' (supported: sha256)"
        );
        let e = refusal(&Job {
            hash_file: true,
            ..job.clone()
        });
        assert_eq!(e, JobError::HashFileWithoutHash);
        let e = refusal(&Job {
            cluster_size: Some(0),
            ..job.clone()
        });
        assert_eq!(e, JobError::ClusterSize(0));
        let e = refusal(&Job {
            write_confirmation: Some("/dev/other".into()),
            ..job.clone()
        });
        assert!(matches!(e, JobError::ConfirmationMismatch { .. }), "{e:?}");
        let e = refusal(&Job::new(
            d.join_str("missing.img"),
            d.join_str("dst.img"),
            d.join_str("m.map"),
        ));
        assert!(
            matches!(&e, JobError::Source(m) if m.contains("missing.img")),
            "{e:?}"
        );
        std::fs::create_dir(d.join("adir")).unwrap();
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("adir"),
            d.join_str("m.map"),
        ));
        assert_eq!(
            e,
            JobError::DestinationNotFileOrBlockDevice(d.join_str("adir"))
        );
        let e = refusal(&Job::new(
            d.join_str("src.img"),
            d.join_str("nodir/dst.img"),
            d.join_str("m.map"),
        ));
        assert!(matches!(e, JobError::Destination(_)), "{e:?}");
        // A mapfile of another size belongs to another source.
        let mut other = Map::new(128 << 10);
        other.set(0, 4096, Status::Finished);
        std::fs::write(d.join_str("m.map"), render(&other, &Header::default())).unwrap();
        let e = refusal(&job);
        assert!(matches!(e, JobError::MapfileMismatch { .. }), "{e:?}");
        assert!(!d.join("dst.img").exists(), "a refusal creates nothing");
    }

    #[test]
    fn an_existing_image_file_is_accepted_and_not_truncated() {
        let d = dir("exist");
        let src = data(128 << 10);
        std::fs::write(d.join_str("src.img"), &src).unwrap();
        std::fs::write(d.join_str("dst.img"), vec![0xee; 192 << 10]).unwrap();
        let v = Job::new(
            d.join_str("src.img"),
            d.join_str("dst.img"),
            d.join_str("m.map"),
        )
        .validate()
        .unwrap();
        assert_eq!(v.source_size(), 128 << 10);
        assert!(!v.resuming());
        let r = v
            .prepare()
            .unwrap()
            .run(&AtomicBool::new(false), &mut Seen::default())
            .unwrap();
        assert_eq!(r.exit_code(), 0);
        let img = std::fs::read(d.join_str("dst.img")).unwrap();
        assert_eq!(img.len(), 192 << 10, "never truncated");
        assert_eq!(&img[..src.len()], &src[..]);
        assert!(img[src.len()..].iter().all(|&b| b == 0xee));
    }

    #[test]
    fn a_run_on_a_faulty_image_maps_its_bad_areas_and_hashes() {
        let d = dir("faulty");
        let size = 256u64 << 10;
        let src = data(size as usize);
        std::fs::write(d.join_str("src.img"), &src).unwrap();
        // ddrescue test mode: two unreadable sectors.
        let mut test_map = Map::new(size);
        test_map.set(0, size, Status::Finished);
        test_map.set(70 * 512, 512, Status::BadSector);
        test_map.set(300 * 512, 512, Status::BadSector);
        std::fs::write(d.join_str("bad.map"), render(&test_map, &Header::default())).unwrap();
        let job = Job {
            simulate_bad: Some(d.join_str("bad.map")),
            hash: Some(HashAlgorithm::Sha256),
            hash_file: true,
            sparse: true,
            ..Job::new(
                d.join_str("src.img"),
                d.join_str("dst.img"),
                d.join_str("m.map"),
            )
        };
        let prepared = job.validate().unwrap().prepare().unwrap();
        assert!(prepared.plan_line().starts_with("rescue image: "));
        let mut seen = Seen::default();
        let r = prepared.run(&AtomicBool::new(false), &mut seen).unwrap();
        assert!(seen.progress > 0);
        assert_eq!(seen.copied, ["completed"]);
        assert_eq!(r.outcome_name(), "completed");
        assert!(!r.stopped());
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.bad_areas(), 2);
        assert_eq!(r.bad_bytes(), 1024);
        assert_eq!(r.rescued_bytes(), size - 1024);
        assert_eq!(r.error(), None);
        let img = std::fs::read(d.join_str("dst.img")).unwrap();
        let mut expected = src.clone();
        expected[70 * 512..71 * 512].fill(0);
        expected[300 * 512..301 * 512].fill(0);
        assert_eq!(img, expected, "good areas copied, bad ones left as zeros");
        let hex = r.sha256_hex().unwrap();
        let line = std::fs::read_to_string(d.join_str("dst.img.sha256")).unwrap();
        assert_eq!(line, format!("{hex}  dst.img\n"));
        assert!(
            r.log_line().contains("1024 bytes in 2 bad areas"),
            "{}",
            r.log_line()
        );
        let (saved, _) = ddmap::load(&d.join("m.map")).unwrap().unwrap();
        assert_eq!(saved.areas(Status::BadSector), 2);
    }

    #[test]
    fn a_stopped_run_reports_stopped_and_the_same_job_resumes() {
        let d = dir("stop");
        let src = data(512 << 10);
        std::fs::write(d.join_str("src.img"), &src).unwrap();
        let job = Job {
            hash: Some(HashAlgorithm::Sha256),
            ..Job::new(
                d.join_str("src.img"),
                d.join_str("dst.img"),
                d.join_str("m.map"),
            )
        };
        let stop = AtomicBool::new(true);
        let r = job
            .validate()
            .unwrap()
            .prepare()
            .unwrap()
            .run(&stop, &mut Seen::default())
            .unwrap();
        assert!(r.stopped());
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.sha256, None, "no hash of an unfinished image");
        assert!(r.hash_requested);

        stop.store(false, Ordering::SeqCst);
        let v = job.validate().unwrap();
        let r = v
            .prepare()
            .unwrap()
            .run(&stop, &mut Seen::default())
            .unwrap();
        assert_eq!(r.exit_code(), 0);
        assert_eq!(r.rescued_bytes(), 512 << 10);
        assert_eq!(std::fs::read(d.join_str("dst.img")).unwrap(), src);
        assert!(r.sha256.is_some());
    }
}
