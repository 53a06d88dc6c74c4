//! `rescue image`: the command-line front of the imaging engine.

use crate::engine::{self, errno, FileSink, MapStore, Options, Outcome, Report};
use crate::fault::FaultDevice;
use crate::mapfile::{self, Header, Map, Status};
use crate::progress::ConsoleRenderer;
use argh::FromArgs;
use blockdev::{BlockDevice, Device, DeviceKind, OpenOptionsRo, WriteAccess};
use std::fs::OpenOptions;
use std::io::{self, IsTerminal};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const CMD: &str = "rescue image";

#[derive(FromArgs, Debug, Clone, PartialEq)]
/// Copy a failing disk, partition or file to an image, ddrescue-style: good
/// areas first with large reads, then trimming and scraping of the failed
/// areas sector by sector. Progress is kept in a GNU ddrescue mapfile; run the
/// same command again to resume (finished areas are never read again), or go
/// on with GNU ddrescue/ddrescuelog on the same mapfile.
#[argh(
    subcommand,
    name = "image",
    error_code(0, "everything rescued"),
    error_code(1, "bad areas remain, or interrupted (run again to resume)"),
    error_code(2, "usage error (unknown option, missing argument), or an I/O error: a vanished source, a full destination, a mapfile that cannot be saved (the mapfile on disk stays valid and the run resumable)")
)]
pub struct ImageCommand {
    /// source: a disk, a partition or an image file (only ever read)
    #[argh(positional)]
    pub src: String,
    /// destination: an image file (created if missing, never truncated), or a
    /// block device at least as large as SRC together with --write DST
    #[argh(positional)]
    pub dst: String,
    /// mapfile path (GNU ddrescue format); resumes if it exists
    #[argh(option)]
    pub map: String,
    /// confirm overwriting DST when it is a block device: repeat its path
    #[argh(option)]
    pub write: Option<String>,
    /// run the first copying pass backwards (from the end of SRC)
    #[argh(switch)]
    pub reverse: bool,
    /// retry bad sectors this many times after scraping (default 0)
    #[argh(option, default = "0")]
    pub retry_passes: u32,
    /// reads slower than RATE bytes/s (suffixes k, M, G, Ki, Mi, Gi) in the
    /// first two passes mark a slow area that is read later
    #[argh(option, from_str_fn(parse_size))]
    pub min_read_rate: Option<u64>,
    /// leave all-zero 4 KiB blocks of a new image file as holes
    #[argh(switch)]
    pub sparse: bool,
    /// reserve SRC's size for the image file before copying (fails early
    /// when the destination is too full)
    #[argh(switch)]
    pub preallocate: bool,
    /// hash the image at the end, bad areas counted as zeros (only: sha256)
    #[argh(option)]
    pub hash: Option<String>,
    /// with --hash: also write DST.sha256 in sha256sum format
    #[argh(switch)]
    pub hash_file: bool,
    /// TEST AID: simulate read errors from a ddrescue mapfile as GNU
    /// `ddrescue --test-mode=MAPFILE` does: only its finished (+) blocks read
    /// normally, all other blocks fail, SRC appears to end where its last
    /// finished block ends
    #[argh(option)]
    pub simulate_bad: Option<String>,
    /// do not bypass the page cache on a block-device SRC (O_DIRECT is the
    /// default there)
    #[argh(switch)]
    pub no_direct: bool,
    /// size of the large reads of the copying phase, also the unit in which
    /// failed areas are trimmed (default: 1Mi for a block-device SRC read with
    /// O_DIRECT, else 64Ki as in ddrescue)
    #[argh(option, from_str_fn(parse_size))]
    pub cluster_size: Option<u64>,
    /// print the final result as JSON on stdout (progress goes to stderr)
    #[argh(switch)]
    pub json: bool,
}

/// Parses `123`, `64k`, `10M`, `1Mi`, `2GiB`, `5MB/s` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s");
    let t = t.strip_suffix('B').unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suf) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a number with an optional k/M/G/T[i] suffix"))?;
    let mult: u64 = match suf {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("'{s}': unknown suffix '{suf}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}': number too large"))
}

pub fn run(cmd: ImageCommand) -> i32 {
    run_with_stop(cmd, &AtomicBool::new(false))
}

/// Runs the command; the caller sets `stop` on SIGINT/SIGTERM, the run then
/// saves its mapfile and returns 1.
pub fn run_with_stop(cmd: ImageCommand, stop: &AtomicBool) -> i32 {
    match run_inner(&cmd, stop) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{CMD}: {msg}");
            2
        }
    }
}

/// Everything checked before the first write.
struct Plan {
    src: Box<dyn BlockDevice>,
    size: u64,
    map: Map,
    resuming: bool,
    dst_block: bool,
    /// SRC is a block device read with O_DIRECT.
    direct: bool,
}

fn run_inner(cmd: &ImageCommand, stop: &AtomicBool) -> Result<i32, String> {
    let plan = check(cmd)?;
    // Nothing has been written so far; from here on DST and MAP are written.
    let Plan {
        src,
        size,
        mut map,
        resuming,
        dst_block,
        direct,
    } = plan;
    let file = if dst_block {
        let access = WriteAccess::confirmed_by_user(cmd.write.clone().unwrap_or_default());
        let dev = Device::open_writable(&cmd.dst, &access).map_err(|e| e.to_string())?;
        dev.file()
            .try_clone()
            .map_err(|e| format!("{}: {e}", cmd.dst))?
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cmd.dst)
            .map_err(|e| format!("{}: open for writing: {e}", cmd.dst))?
    };
    if cmd.preallocate {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size).map_err(
            |e| {
                let e = io::Error::from(e);
                if e.raw_os_error() == Some(errno::ENOSPC) {
                    format!("{}: not enough space to preallocate {size} bytes", cmd.dst)
                } else {
                    format!("{}: preallocate: {e}", cmd.dst)
                }
            },
        )?;
    }
    let mut sink = FileSink::new(file, cmd.sparse).map_err(|e| format!("{}: {e}", cmd.dst))?;
    let store = MapStore {
        path: Some(PathBuf::from(&cmd.map)),
        header: Header {
            command_line: command_line(cmd),
            start_time: mapfile::utc_now(),
            phase_message: String::new(),
        },
    };
    let t = engine::Totals::of(&map);
    let plan_text = format!(
        "{CMD}: {} ({} bytes, {}-byte sectors) -> {}{}; mapfile {}{}",
        src.name(),
        size,
        src.logical_sector_size(),
        cmd.dst,
        if dst_block { " (block device)" } else { "" },
        cmd.map,
        if resuming {
            format!(
                " (resuming: {} bytes already rescued, {} bad)",
                t.bytes(Status::Finished),
                t.bytes(Status::BadSector)
            )
        } else {
            String::new()
        }
    );
    let opts = Options {
        reverse: cmd.reverse,
        retry_passes: cmd.retry_passes,
        min_read_rate: cmd.min_read_rate,
        cluster_size: cmd
            .cluster_size
            .unwrap_or(if direct { 1 << 20 } else { 64 << 10 }) as usize,
        ..Options::default()
    };
    let tty = !cmd.json && io::stdout().is_terminal();
    let out: Box<dyn io::Write> = if cmd.json {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let mut render = ConsoleRenderer::new(out, tty, Duration::from_secs(10));
    if cmd.json {
        eprintln!("{plan_text}");
    } else {
        println!("{plan_text}");
    }
    log::info!("{plan_text}");
    let report = engine::rescue(
        src.as_ref(),
        &mut sink,
        &mut map,
        &store,
        &opts,
        stop,
        &mut |p| render.update(p),
    );
    drop(sink);
    if let Some(err) = outcome_error(&report.outcome) {
        eprintln!("{CMD}: {err}");
    }
    if !cmd.json {
        render.finish(&report);
    } else {
        drop(render);
    }
    let completed = matches!(report.outcome, Outcome::Completed);
    let mut digest = None;
    if completed && cmd.hash.is_some() {
        let d = hash_image(cmd, &map)?;
        if !cmd.json {
            print!("{}", crate::hash::sha256sum_line(&d, &cmd.dst));
        }
        digest = Some(crate::hash::hex(&d));
    } else if cmd.hash.is_some() && !cmd.json {
        println!("sha256: not computed, the run did not complete");
    }
    let code = exit_code(&report);
    {
        let t = &report.totals;
        log::info!(
            "{CMD}: {} -> {}: {}; {} of {} bytes rescued ({} this run), {} bytes in {} bad areas, \
             {} bytes not tried; {} reads, {} read errors{}",
            src.name(),
            cmd.dst,
            outcome_name(&report.outcome),
            t.bytes(Status::Finished),
            report.size,
            report.rescued_this_run,
            t.bytes(Status::BadSector),
            t.areas(Status::BadSector),
            t.bytes(Status::NonTried),
            report.reads,
            report.read_errors,
            digest
                .as_deref()
                .map(|d| format!("; sha256 {d}"))
                .unwrap_or_default()
        );
    }
    if cmd.json {
        let t = &report.totals;
        let v = serde_json::json!({
            "outcome": outcome_name(&report.outcome),
            "error": outcome_error(&report.outcome),
            "size": report.size,
            "rescued": t.bytes(Status::Finished),
            "non_tried": t.bytes(Status::NonTried),
            "non_trimmed": t.bytes(Status::NonTrimmed),
            "non_scraped": t.bytes(Status::NonScraped),
            "bad_sector": t.bytes(Status::BadSector),
            "bad_sector_areas": t.areas(Status::BadSector),
            "rescued_this_run": report.rescued_this_run,
            "reads": report.reads,
            "read_errors": report.read_errors,
            "elapsed_seconds": report.elapsed.as_secs_f64(),
            "sha256": digest,
            "exit_code": code,
        });
        println!("{v}");
    }
    Ok(code)
}

fn exit_code(r: &Report) -> i32 {
    match r.outcome {
        Outcome::Completed if r.all_rescued() => 0,
        Outcome::Completed | Outcome::Interrupted => 1,
        _ => 2,
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

fn outcome_error(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Completed | Outcome::Interrupted => None,
        Outcome::SourceVanished(e)
        | Outcome::WriteFailed(e)
        | Outcome::MapfileFailed(e)
        | Outcome::ReadFailed(e) => Some(e.to_string()),
    }
}

fn hash_image(cmd: &ImageCommand, map: &Map) -> Result<[u8; 32], String> {
    let img = Device::open(&cmd.dst).map_err(|e| e.to_string())?;
    let d =
        crate::hash::image_sha256(&img, map).map_err(|e| format!("hashing {}: {e}", cmd.dst))?;
    if cmd.hash_file {
        let path = format!("{}.sha256", cmd.dst);
        let name = Path::new(&cmd.dst)
            .file_name()
            .map_or_else(|| cmd.dst.clone(), |n| n.to_string_lossy().into_owned());
        std::fs::write(&path, crate::hash::sha256sum_line(&d, &name))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(d)
}

fn command_line(cmd: &ImageCommand) -> String {
    let mut s = format!("rescue image {} {} --map {}", cmd.src, cmd.dst, cmd.map);
    if let Some(w) = &cmd.write {
        s += &format!(" --write {w}");
    }
    if cmd.reverse {
        s += " --reverse";
    }
    if cmd.retry_passes > 0 {
        s += &format!(" --retry-passes {}", cmd.retry_passes);
    }
    if let Some(r) = cmd.min_read_rate {
        s += &format!(" --min-read-rate {r}");
    }
    for (on, flag) in [
        (cmd.sparse, " --sparse"),
        (cmd.preallocate, " --preallocate"),
        (cmd.no_direct, " --no-direct"),
    ] {
        if on {
            s += flag;
        }
    }
    if let Some(h) = &cmd.hash {
        s += &format!(" --hash {h}");
    }
    if let Some(f) = &cmd.simulate_bad {
        s += &format!(" --simulate-bad {f}");
    }
    s
}

/// All refusals happen here, before anything is created or written.
fn check(cmd: &ImageCommand) -> Result<Plan, String> {
    if let Some(h) = &cmd.hash {
        if h != "sha256" {
            return Err(format!(
                "--hash: unsupported algorithm '{h}' (supported: sha256)"
            ));
        }
    }
    if cmd.hash_file && cmd.hash.is_none() {
        return Err("--hash-file needs --hash sha256".into());
    }
    if let Some(c) = cmd.cluster_size {
        if c == 0 || c > 64 << 20 {
            return Err(format!("--cluster-size {c}: must be between 1 and 64 MiB"));
        }
    }
    let dev = Device::open_with(
        &cmd.src,
        OpenOptionsRo {
            direct: !cmd.no_direct,
        },
    )
    .map_err(|e| format!("SRC: {e}"))?;
    let src_block = dev.kind() == DeviceKind::BlockDevice;
    let src: Box<dyn BlockDevice> = match &cmd.simulate_bad {
        None => Box::new(dev),
        Some(f) => {
            let (m, _) = mapfile::load(Path::new(f))
                .map_err(|e| format!("--simulate-bad: {e}"))?
                .ok_or_else(|| format!("--simulate-bad: {f}: no such file or no status line"))?;
            Box::new(FaultDevice::from_test_mapfile(dev, &m))
        }
    };
    let size = src.size();

    // DST / MAP must not be SRC or live on SRC's disk.
    let src_id = FileId::of(Path::new(&cmd.src)).map_err(|e| format!("SRC: {e}"))?;
    let dst_id = FileId::of_target(Path::new(&cmd.dst)).map_err(|e| format!("DST: {e}"))?;
    let map_id = FileId::of_target(Path::new(&cmd.map)).map_err(|e| format!("--map: {e}"))?;
    let sys = Path::new("/sys");
    conflict("DST", &dst_id, &src_id, src_block, sys)?;
    conflict("mapfile", &map_id, &src_id, src_block, sys)?;
    if map_id.same_object(&dst_id) {
        return Err("the mapfile and DST are the same file".into());
    }
    if cmd.simulate_bad.as_deref().is_some_and(|f| {
        FileId::of(Path::new(f)).is_ok_and(|id| id.same_object(&dst_id) || id.same_object(&map_id))
    }) {
        return Err("--simulate-bad must not name DST or the mapfile".into());
    }

    // The mapfile: unreadable or for another size is refused.
    let loaded = mapfile::load(Path::new(&cmd.map)).map_err(|e| format!("mapfile: {e}"))?;
    let resuming = loaded.as_ref().is_some_and(|(m, _)| !m.is_empty());
    let map = match loaded {
        Some((m, lines)) if !m.is_empty() => {
            m.check_size(size, Some(&lines))
                .map_err(|e| format!("mapfile {}: {e}", cmd.map))?;
            m
        }
        // A status line without blocks: nothing done yet (as ddrescue reads it).
        _ => Map::new(size),
    };

    // DST: a file, or a confirmed block device at least SRC's size.
    let dst_block = dst_id.exists && dst_id.is_block;
    if let Some(w) = &cmd.write {
        if w != &cmd.dst {
            return Err(format!(
                "--write {w} does not repeat DST {}: refusing to write",
                cmd.dst
            ));
        }
    }
    if dst_block {
        if cmd.write.is_none() {
            return Err(format!(
                "DST {} is a block device: everything on it would be overwritten; repeat its path as --write {} to confirm",
                cmd.dst, cmd.dst
            ));
        }
        if cmd.sparse || cmd.preallocate {
            return Err("--sparse and --preallocate are for an image file DST".into());
        }
        let d = Device::open(&cmd.dst).map_err(|e| format!("DST: {e}"))?;
        if d.size() < size {
            return Err(format!(
                "DST {} is too small: {} bytes, SRC has {} bytes",
                cmd.dst,
                d.size(),
                size
            ));
        }
    } else if dst_id.exists {
        let meta = std::fs::metadata(&cmd.dst).map_err(|e| format!("DST: {}: {e}", cmd.dst))?;
        if !meta.file_type().is_file() {
            return Err(format!(
                "DST {}: neither a regular file nor a block device",
                cmd.dst
            ));
        }
    }
    if !dst_block && !cmd.sparse {
        check_space(Path::new(&cmd.dst), size, &map)?;
    }
    Ok(Plan {
        src,
        size,
        map,
        resuming,
        dst_block,
        direct: src_block && !cmd.no_direct,
    })
}

/// Refuses up front when the destination filesystem cannot hold what is
/// still to be written (best effort: statvfs of DST's directory).
fn check_space(dst: &Path, size: u64, map: &Map) -> Result<(), String> {
    let allocated = std::fs::metadata(dst).map_or(0, |m| m.blocks() * 512);
    let dir = parent_dir(dst);
    let Ok(st) = rustix::fs::statvfs(&dir) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let todo = size - map.bytes(Status::Finished);
    let need = size.saturating_sub(allocated).min(todo);
    if need > free {
        return Err(format!(
            "DST {}: not enough space: {} bytes still to write, {} bytes free on {}",
            dst.display(),
            need,
            free,
            dir.display()
        ));
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

fn conflict(
    what: &str,
    t: &FileId,
    src: &FileId,
    src_block: bool,
    sys: &Path,
) -> Result<(), String> {
    if t.same_object(src) {
        return Err(format!("{what} is the source itself: refusing"));
    }
    // A file next to a file source is fine; anything touching SRC's disk is not,
    // and neither is writing the block device that holds a file source.
    if src_block || t.is_block {
        let a = t.disks(sys);
        if src.disks(sys).iter().any(|d| a.contains(d)) {
            return Err(format!(
                "{what} is on the source's disk (device {}): refusing to write there",
                fmt_dev(a[0])
            ));
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

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("5MB/s"), Ok(5_000_000));
        assert_eq!(parse_size("64Ki"), Ok(65536));
        assert!(parse_size("x").is_err());
        assert!(parse_size("3Q").unwrap_err().contains("suffix"));
        assert!(parse_size("99999999999999999999").is_err());
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
        let err = conflict("DST", &file_on_sda1, &src, true, &root).unwrap_err();
        assert!(err.contains("source's disk"), "{err}");
        let elsewhere = FileId {
            exists: true,
            is_block: false,
            dev: rustix::fs::makedev(8, 16),
            ino: 7,
            rdev: 0,
        };
        assert!(conflict("DST", &elsewhere, &src, true, &root).is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }
}
