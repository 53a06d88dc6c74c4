//! Attach: any readable thing (a VM disk read through its snapshot chain, a
//! file inside a datastore, an image file) becomes a read-only kernel block
//! device, `/dev/nbdN` with its partitions, so the kernel's own md, device
//! mapper and filesystems work on what is inside.
//!
//! How: the kernel's NBD client (`nbd.ko`, loaded with `max_part=16` so
//! partitions show) is fed by [`nbd::parallel::transmission`] in this process over a
//! Unix socket pair. The device is flagged read-only (the kernel sets the
//! disk read-only and sends no writes), and its request timeout is 0:
//! a nonzero one tears the device down when one slow bad-sector read
//! overruns it, so the server bounds each read itself
//! ([`nbd::parallel`]: a pool of readers and a watchdog) and answers EIO. With a ddrescue
//! mapfile the areas it marks as not rescued read as EIO too, not as the
//! zeros the image holds there, so guest tools see the truth.
//!
//! One process serves one device, and outlives the command that started
//! it ([`cli`]). It records what it serves in the state directory
//! ([`Record`]); probe and the menu show attached devices from there, and
//! `detach` finds the device by name. If the serving thread dies, the
//! socket closes, the kernel fails the device's requests with I/O errors
//! and the device comes free: nothing is left hanging.

pub mod cli;
pub mod kernel;

use blockdev::sys::ModuleLoader;
use blockdev::{BadAreaDevice, BlockDevice, Ranges};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The state directory of the appliance: one record per attached device.
pub const STATE_DIR: &str = "/run/rescue/attached";

/// How long a read may take before it is answered with EIO, by default:
/// longer than a drive's own retries and the kernel's 30 s SCSI timeout,
/// so a slow but readable sector is still read.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(90);

/// Where the machine's pieces are; tests use a fake tree.
#[derive(Clone, Debug)]
pub struct Paths {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub state: PathBuf,
    /// procfs: whether a serving process is alive.
    pub proc: PathBuf,
}

impl Paths {
    pub fn system() -> Paths {
        Paths {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            state: PathBuf::from(STATE_DIR),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// A source opened for attaching: the device to serve and what it is.
pub struct Source {
    pub device: Arc<dyn BlockDevice>,
    /// What it is, for listings: `VMDK vm1/vm1.vmdk (2 levels)`,
    /// `image /mnt/dest/disk.img`.
    pub what: String,
    /// The source as the user named it.
    pub source: String,
    /// What opening it noticed (warnings of the chain, copies chosen).
    pub notes: Vec<String>,
}

/// Opens a source as the user named it: the front that knows VMFS and VMDK
/// passes it. Arguments: the source, and the datastore's devices when the
/// source is inside a VMFS volume (`--vmfs`).
pub type SourceOpener<'a> = &'a dyn Fn(&str, &[String]) -> Result<Source, String>;

/// What one attached device serves, as recorded in the state directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The kernel name, `nbd0`.
    pub device: String,
    pub node: String,
    /// The name given with `--name`.
    pub name: Option<String>,
    pub what: String,
    pub source: String,
    /// Bytes the kernel device shows.
    pub size: u64,
    /// The mapfile whose unrescued areas read as errors.
    pub map: Option<String>,
    /// Bytes in those areas.
    pub bad_bytes: u64,
    /// The serving process (the kernel's `pid` file shows its thread in
    /// `NBD_DO_IT` instead).
    pub pid: u32,
    /// Partitions the kernel found, `nbd0p1`...
    pub partitions: Vec<String>,
    /// The per-read deadline, seconds.
    pub deadline_s: u64,
    pub notes: Vec<String>,
}

impl Record {
    /// One line for listings: `nbd0  40.0 GiB  VMDK vm1/vm1.vmdk (2 levels)`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}  {}  {}",
            self.device,
            screen::human_size(self.size),
            self.what
        );
        if let Some(n) = &self.name {
            s.push_str(&format!("  [{n}]"));
        }
        if let Some(m) = &self.map {
            s.push_str(&format!(
                "  ({} unreadable per {m})",
                screen::human_size(self.bad_bytes)
            ));
        }
        s
    }

    fn path(state: &Path, device: &str) -> PathBuf {
        state.join(format!("{device}.json"))
    }

    fn save(&self, state: &Path) -> Result<(), String> {
        std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        ddmap::save_atomic(&Record::path(state, &self.device), &text)
            .map_err(|e| format!("{}: {e}", state.display()))
    }
}

/// The attached devices recorded in `paths.state`, by device name; a
/// record whose device no longer has a server (it was killed) is
/// `stale`.
pub fn records(paths: &Paths) -> Vec<(Record, bool)> {
    let mut out: Vec<(Record, bool)> = std::fs::read_dir(&paths.state)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            serde_json::from_str::<Record>(&text).ok()
        })
        .map(|r| {
            let stale = !is_served(paths, &r);
            (r, stale)
        })
        .collect();
    out.sort_by_key(|(r, _)| (r.device.len(), r.device.clone()));
    out
}

/// Whether the device of `r` still has its server: the kernel shows a
/// serving thread and the recorded process is alive. (The kernel keeps
/// showing the thread of a killed server while the device is open, e.g.
/// mounted.)
fn is_served(paths: &Paths, r: &Record) -> bool {
    kernel::serving_pid(&paths.sys, &r.device).is_some()
        && paths.proc.join(r.pid.to_string()).exists()
}

/// The record of attached device `device` (`nbd0`), if any.
pub fn record_of(paths: &Paths, device: &str) -> Option<Record> {
    let text = std::fs::read_to_string(Record::path(&paths.state, device)).ok()?;
    serde_json::from_str(&text).ok()
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// A ddrescue mapfile of the source: its unrescued areas read as EIO.
    pub map: Option<PathBuf>,
    pub name: Option<String>,
    pub deadline: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            map: None,
            name: None,
            deadline: DEFAULT_DEADLINE,
        }
    }
}

/// The device as served: the mapfile's bad areas failing. Gives the
/// device and the bytes in bad areas.
pub fn served_device(
    source: Arc<dyn BlockDevice>,
    opts: &Options,
) -> Result<(Arc<dyn BlockDevice>, u64), String> {
    Ok(match &opts.map {
        None => (source, 0),
        Some(map) => {
            let bad = Ranges::from_unsorted(ddmap::read_unrescued(map)?);
            let total = bad.total();
            (Arc::new(BadAreaDevice::new(source, bad)), total)
        }
    })
}

/// Readers serving one device: the kernel sends a readahead window's
/// requests at once, and reading them side by side keeps the source and
/// the socket busy together.
pub const READERS: usize = 4;

/// Refuses a `--name` already in use, or one that looks like a device.
pub fn check_name(paths: &Paths, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with("nbd")
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "--name {name:?}: use letters, digits, '-', '_' and '.', not starting with \"nbd\""
        ));
    }
    if let Some((r, _)) = records(paths)
        .into_iter()
        .find(|(r, _)| r.name.as_deref() == Some(name))
    {
        return Err(format!("--name {name}: already names {}", r.device));
    }
    Ok(())
}

/// How a served device ended.
#[derive(Debug)]
pub struct Served {
    pub record: Record,
    pub counts: nbd::Counts,
    /// The server's error when it did not end by a disconnect.
    pub error: Option<String>,
}

/// Serves `src` as a read-only kernel block device until it is detached:
/// loads `nbd` (with `max_part=16`), takes a free slot, connects it to a
/// socket pair served on a thread, waits for the kernel to start, finds
/// the partitions, records the device in the state directory and calls
/// `ready` with the record. Then blocks in `NBD_DO_IT` until a disconnect
/// (or the server's end), removes the record and says how it went.
pub fn serve(
    src: Source,
    opts: &Options,
    paths: &Paths,
    load: ModuleLoader<'_>,
    ready: &mut dyn FnMut(&Record),
) -> Result<Served, String> {
    if let Some(n) = &opts.name {
        check_name(paths, n)?;
    }
    let mut notes = src.notes.clone();
    load("nbd max_part=16").map_err(|e| format!("loading nbd: {e}"))?;
    let max_part = std::fs::read_to_string(paths.sys.join("module/nbd/parameters/max_part"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if max_part == Some(0) {
        notes.push(
            "nbd was loaded without max_part, so the kernel shows no partitions of this device"
                .into(),
        );
    }
    let (device, bad_bytes) = served_device(Arc::clone(&src.device), opts)?;
    let block = if device.logical_sector_size() == 4096 {
        4096
    } else {
        512
    };
    let size = device.size() / u64::from(block) * u64::from(block);
    if size == 0 {
        return Err(format!(
            "{}: smaller than one {block}-byte block",
            src.source
        ));
    }
    if size < device.size() {
        notes.push(format!(
            "the last {} bytes are not a whole block and are not shown",
            device.size() - size
        ));
    }

    // Take the first free slot; another attach may win a race for it.
    let mut last_err = String::from("the nbd module shows no devices");
    let mut connected = None;
    let mut server_end = None;
    for slot in kernel::free_slots(&paths.sys) {
        let (ours, kernels) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        match kernel::connect(&paths.dev, &slot, size, block, OwnedFd::from(kernels)) {
            Ok(c) => {
                connected = Some(c);
                server_end = Some(ours);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let (Some(conn), Some(stream)) = (connected, server_end) else {
        return Err(format!("no free NBD device: {last_err}"));
    };

    // Serve before NBD_DO_IT: the kernel reads the partition table at once.
    let served = Arc::clone(&device);
    let writer = stream.try_clone().map_err(|e| format!("socket: {e}"))?;
    let serving = nbd::parallel::Options {
        workers: READERS,
        deadline: opts.deadline,
        ..Default::default()
    };
    let server = std::thread::Builder::new()
        .name("nbd-serve".into())
        .spawn(move || {
            let stream = stream;
            let reader = stream.try_clone();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                nbd::parallel::transmission(served, reader?, writer, &serving)
            }));
            // Whatever ended it, close the socket: the kernel then fails
            // what is queued and NBD_DO_IT returns, so nothing hangs.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            match r {
                Ok(Ok((_, counts))) => (counts, None),
                Ok(Err(e)) => (nbd::Counts::default(), Some(e.to_string())),
                Err(_) => (
                    nbd::Counts::default(),
                    Some("the serving thread panicked".to_string()),
                ),
            }
        })
        .map_err(|e| format!("starting the server thread: {e}"))?;

    let record = Record {
        device: conn.name.clone(),
        node: conn.node.display().to_string(),
        name: opts.name.clone(),
        what: src.what.clone(),
        source: src.source.clone(),
        size,
        map: opts.map.as_ref().map(|m| m.display().to_string()),
        bad_bytes,
        pid: std::process::id(),
        partitions: Vec::new(),
        deadline_s: opts.deadline.as_secs(),
        notes,
    };
    let device_name = conn.name.clone();
    // NBD_DO_IT blocks until the end; the caller hears of the start here.
    let running = std::thread::Builder::new()
        .name("nbd-do-it".into())
        .spawn(move || conn.run())
        .map_err(|e| format!("starting the device thread: {e}"))?;
    let announced = announce(&paths.sys, &paths.state, record);
    if let Ok(r) = &announced {
        ready(r);
    } else {
        // Not usable as announced: end it rather than serve unseen.
        let _ = kernel::disconnect(&paths.dev, &device_name);
    }
    let run = running
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the device thread panicked")));
    let (counts, error) = server.join().unwrap_or_else(|_| {
        (
            nbd::Counts::default(),
            Some("the serving thread panicked".to_string()),
        )
    });
    let record = announced?;
    let _ = std::fs::remove_file(Record::path(&paths.state, &record.device));
    let error = error.or_else(|| run.err().map(|e| e.to_string()));
    Ok(Served {
        record,
        counts,
        error,
    })
}

/// Attaches `source` in a serving process of its own and gives its record
/// once the kernel serves the device: the CLI's `rescue attach` and the
/// menu both start it this way. The process is this program again
/// (`attach SOURCE [--vmfs V]... [--map M] [--name N] --deadline S
/// --foreground --json`), in its own process group so that Ctrl-C at the
/// console does not end it; it prints one JSON line (the [`Record`]) when
/// ready and serves until the device is detached. PID 1 reaps it.
pub fn spawn(
    source: &str,
    vmfs: &[String],
    map: Option<&str>,
    name: Option<&str>,
    deadline: Duration,
) -> Result<Record, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    spawn_program(&exe, source, vmfs, map, name, deadline)
}

/// [`spawn`] with the serving program named (tests use a stand-in).
pub fn spawn_program(
    program: &Path,
    source: &str,
    vmfs: &[String],
    map: Option<&str>,
    name: Option<&str>,
    deadline: Duration,
) -> Result<Record, String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(program);
    cmd.arg("attach").arg(source);
    for v in vmfs {
        cmd.arg("--vmfs").arg(v);
    }
    if let Some(m) = map {
        cmd.arg("--map").arg(m);
    }
    if let Some(n) = name {
        cmd.arg("--name").arg(n);
    }
    cmd.arg("--deadline")
        .arg(deadline.as_secs().max(1).to_string());
    cmd.args(["--foreground", "--json"]);
    // Its own process group: Ctrl-C at the console must not end it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Both outputs are pipes to this process only: a server that kept
    // the caller's stderr would hold a pipe of whoever runs this (a
    // script runner waiting for its end) open for as long as it serves.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    let out = child.stdout.take().ok_or("no pipe from the server")?;
    let mut err = child.stderr.take().ok_or("no pipe from the server")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| format!("reading from the server: {e}"))?;
    if line.trim().is_empty() {
        let mut said = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut said);
        let status = child.wait().map_err(|e| e.to_string())?;
        // Its messages read `rescue attach: ...` like ours: pass them on.
        let said: Vec<&str> = said
            .lines()
            .map(|l| l.strip_prefix("rescue attach: ").unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
            .collect();
        return Err(if said.is_empty() {
            format!("the server ended ({status}) without attaching")
        } else {
            said.join("; ")
        });
    }
    drop(err);
    // The server keeps running; PID 1 reaps it when it ends.
    serde_json::from_str::<Record>(line.trim())
        .map_err(|e| format!("the server's answer {:?}: {e}", line.trim()))
}

/// Waits until the kernel serves the device (its `pid` file), makes it
/// scan the partition table, and records the device.
fn announce(sys: &Path, state: &Path, mut record: Record) -> Result<Record, String> {
    let began = Instant::now();
    // The kernel shows the thread in NBD_DO_IT, not the process.
    while kernel::serving_pid(sys, &record.device).is_none() {
        if began.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "{}: the kernel did not start serving it",
                record.node
            ));
        }
        // Short: the kernel's thread starts within milliseconds, and a
        // files-hit run attaches one device per VM disk.
        std::thread::sleep(Duration::from_millis(1));
    }
    // The kernel shows the pid before it sets the capacity (6.1's
    // nbd_start_device); a partition rescan in between finds an empty
    // disk and no partitions (seen once polling got fast). Wait for the
    // size too.
    let size_file = sys.join("block").join(&record.device).join("size");
    while std::fs::read_to_string(&size_file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        == 0
    {
        if began.elapsed() > Duration::from_secs(30) {
            return Err(format!("{}: the kernel shows it with no size", record.node));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    tune_queue(sys, &record.device);
    // The kernel scans partitions on the next open; ask once more in case
    // that open came before it was marked for a scan.
    let _ = blockdev::reread_partitions(&record.node);
    record.partitions = blockdev::sys::partitions(sys, &record.device)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    record.save(state)?;
    Ok(record)
}

/// Requests of up to 8 MiB and an 8 MiB readahead window: with the NBD
/// queue's defaults (128 KiB requests and readahead) every 128 KiB is a
/// round trip through the server, and a sequential read of a file ran at
/// 0.27x the kernel's loop device (bench/attach.sh); 8 MiB and the reader
/// pool give 0.80x. (16 MiB measured the same within noise, at twice
/// the readers' buffer memory.)
pub const QUEUE_KB: u32 = 8192;

fn tune_queue(sys: &Path, device: &str) {
    let q = sys.join("block").join(device).join("queue");
    let hw: u32 = std::fs::read_to_string(q.join("max_hw_sectors_kb"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(QUEUE_KB);
    for (file, kb) in [
        ("max_sectors_kb", QUEUE_KB.min(hw)),
        ("read_ahead_kb", QUEUE_KB),
    ] {
        if let Err(e) = std::fs::write(q.join(file), kb.to_string()) {
            log::info!("attach: {device}: queue/{file}: {e}");
        }
    }
}

/// What keeps a device from being detached: mounts of it or its
/// partitions, and holders (md arrays, device-mapper devices) in sysfs.
/// Each entry says what to do first.
pub fn users(paths: &Paths, mounts: &str, device: &str) -> Vec<String> {
    let mut names = vec![device.to_string()];
    names.extend(
        blockdev::sys::partitions(&paths.sys, device)
            .into_iter()
            .map(|(_, n)| n),
    );
    let mut out = Vec::new();
    for (dev, at, _) in blockdev::sys::parse_mounts(mounts) {
        if let Some(n) = dev.strip_prefix("/dev/") {
            if names.iter().any(|x| x == n) {
                out.push(format!(
                    "{n} is mounted at {at}: unmount it first (rescue umount {at})"
                ));
            }
        }
    }
    for n in &names {
        let dir = if n == device {
            paths.sys.join("block").join(device)
        } else {
            paths.sys.join("block").join(device).join(n)
        };
        let mut holders: Vec<String> = std::fs::read_dir(dir.join("holders"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        holders.sort();
        for h in holders {
            let how = if h.starts_with("md") {
                format!("stop it first (rescue md stop /dev/{h})")
            } else if h.starts_with("dm-") {
                "deactivate it first (rescue lvm deactivate)".to_string()
            } else {
                "release it first".to_string()
            };
            out.push(format!("{n} is in use by {h}: {how}"));
        }
    }
    out
}

/// Resolves what the user named (`nbd0`, `/dev/nbd0`, or a `--name`) to a
/// device name.
pub fn resolve(paths: &Paths, which: &str) -> Result<String, String> {
    let bare = which.strip_prefix("/dev/").unwrap_or(which);
    if bare.starts_with("nbd") && !bare.contains('p') {
        return Ok(bare.to_string());
    }
    records(paths)
        .into_iter()
        .find(|(r, _)| r.name.as_deref() == Some(which))
        .map(|(r, _)| r.device)
        .ok_or_else(|| format!("{which}: no attached device of that name (see rescue attach)"))
}

/// Detaches `device`: refuses while something uses it ([`users`]), then
/// disconnects it and waits (up to `wait`) for its server to end. A device
/// whose server was killed is cleared. Gives what was detached.
pub fn detach(paths: &Paths, mounts: &str, device: &str, wait: Duration) -> Result<String, String> {
    let record = record_of(paths, device);
    let connected = kernel::is_connected(&paths.sys, device);
    if record.is_none() && !connected {
        return Err(format!("{device} is not attached"));
    }
    let busy = users(paths, mounts, device);
    if !busy.is_empty() {
        return Err(busy.join("; "));
    }
    let what = record
        .as_ref()
        .map(|r| r.what.clone())
        .unwrap_or_else(|| "served by another program".into());
    let serving = kernel::serving_pid(&paths.sys, device);
    let alive = record.as_ref().is_none_or(|r| is_served(paths, r));
    if serving.is_none() || !alive {
        // The server is gone (killed); free the slot.
        let _ = kernel::clear(&paths.dev, device);
    } else {
        kernel::disconnect(&paths.dev, device).map_err(|e| e.to_string())?;
        let began = Instant::now();
        while kernel::serving_pid(&paths.sys, device).is_some() {
            if began.elapsed() > wait {
                return Err(format!(
                    "{device}: asked to disconnect, but its server (pid {}) is still running after {} s",
                    serving.unwrap_or(0),
                    wait.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = std::fs::remove_file(Record::path(&paths.state, device));
    Ok(format!("detached {device} ({what})"))
}

#[cfg(test)]
mod tests;
