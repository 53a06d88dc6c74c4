//! The kernel md driver under control, through its sysfs interface only
//! (Documentation/admin-guide/md.rst; no mdadm, no ioctls):
//!
//! - assembly: `new_array` creates an inactive `mdN`, `metadata_version`
//!   names the superblock format, each member's `MAJ:MIN` goes to `new_dev`
//!   (the kernel loads and checks its superblock), and writing `readonly` to
//!   `array_state` starts the array fully read-only: no resync, no
//!   superblock update. `read-auto` starts it auto-read-only instead (the
//!   first write, or a write to `sync_action`, makes it read-write);
//! - stop: `clear` to `array_state` stops it and releases the members;
//! - check and repair: `sync_min`/`sync_max` bound the pass (member
//!   sectors), `check` or `repair` to `sync_action` starts it,
//!   `sync_completed` ("done / total" sectors) and `sync_speed` (KiB/s)
//!   show progress, `idle` cancels, `mismatch_cnt` counts what differed.
//!
//! md also treats a member whose block-layer read-only flag is set as a
//! reason to run the whole array read-only, so a check needs the members'
//! flags cleared first (the appliance sets them on every disk).

/// Scan, resolve, read-only assembly and stop.
pub mod arrays;

/// Where md's library calls say what they do: `out` for steps and results
/// (stdout for `rescue md`), `err` for questions, progress and warnings
/// (stderr). The menu passes its own screen.
pub struct Output<'a> {
    pub out: &'a mut dyn std::io::Write,
    pub err: &'a mut dyn std::io::Write,
}
/// The kernel's check and repair passes.
pub mod check;
/// `rescue md`: arguments and dispatch only.
pub mod cli;

use mdraid::scan::Array;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the kernel's md interface and the device nodes are.
#[derive(Clone, Debug)]
pub struct Md {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

/// An md device the kernel has, with its members' kernel names.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Running {
    /// `md127`.
    pub name: String,
    /// `array_state`: clear, inactive, readonly, read-auto, clean, active...
    pub array_state: String,
    pub level: String,
    /// Member block devices (`vdb`, `sda3`), from the `dev-*` entries.
    pub members: Vec<String>,
}

impl Running {
    /// Whether this md device runs (some of) the members of `a`.
    pub fn holds(&self, a: &Array) -> bool {
        a.members
            .iter()
            .any(|m| self.members.iter().any(|x| x == kernel_name(&m.device)))
    }
}

/// How a freshly assembled array starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Fully read-only: nothing is written until it is switched.
    ReadOnly,
    /// Auto-read-only: the first write (or a check) makes it read-write.
    ReadAuto,
}

/// A snapshot of an array's sync state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStatus {
    /// `sync_action`: idle, check, repair, resync, recover, frozen...
    pub action: String,
    pub last_action: String,
    /// (done, total) in 512-byte member sectors while a pass runs.
    pub completed: Option<(u64, u64)>,
    /// KiB per second, averaged by the kernel over the last seconds.
    pub speed_kib_s: Option<u64>,
    pub mismatch_cnt: Option<u64>,
    /// Member-sector window of the pass.
    pub sync_min: Option<u64>,
    pub sync_max: Option<String>,
}

/// `sync_completed`: "none", "delayed" or "done / total".
pub fn parse_sync_completed(s: &str) -> Option<(u64, u64)> {
    let (done, total) = s.trim().split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// `sync_speed`: KiB/s, or "none".
pub fn parse_sync_speed(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// The kernel module that implements a RAID level.
pub fn personality_module(level: i32) -> Option<&'static str> {
    Some(match level {
        -1 => "linear",
        0 => "raid0",
        1 => "raid1",
        4..=6 => "raid456",
        10 => "raid10",
        _ => return None,
    })
}

pub use mdraid::scan::kernel_name;

/// The members md should be given: in sync, good checksum. Stale, spare,
/// faulty and duplicate members are left out (so nothing is rebuilt onto
/// them), with the reason.
pub fn members_to_add(a: &Array) -> (Vec<String>, Vec<String>) {
    let mut add = Vec::new();
    let mut left_out = Vec::new();
    for m in &a.members {
        if m.status == "in-sync" && m.checksum_ok {
            add.push(m.device.clone());
        } else {
            left_out.push(format!("{} ({})", m.device, m.status));
        }
    }
    (add, left_out)
}

impl Md {
    pub fn system() -> Md {
        Md {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }

    fn attr(&self, md: &str, name: &str) -> PathBuf {
        self.sys.join("block").join(md).join("md").join(name)
    }

    /// One md attribute, trimmed.
    pub fn read(&self, md: &str, name: &str) -> io::Result<String> {
        std::fs::read_to_string(self.attr(md, name)).map(|s| s.trim().to_string())
    }

    /// Writes one md attribute; the error names the file and the value.
    pub fn write(&self, md: &str, name: &str, value: &str) -> Result<(), String> {
        let path = self.attr(md, name);
        log::info!("md: writing '{value}' to {}", path.display());
        std::fs::write(&path, value).map_err(|e| {
            format!(
                "writing '{value}' to {}: {e}{}",
                path.display(),
                match e.raw_os_error() {
                    Some(16) => " (busy: the array is in use or a pass is running)",
                    Some(30) => " (a member is read-only)",
                    _ => "",
                }
            )
        })
    }

    /// The md devices the kernel has now.
    pub fn running(&self) -> Vec<Running> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.sys.join("block")) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("md") || !e.path().join("md").is_dir() {
                continue;
            }
            let mut members: Vec<String> = std::fs::read_dir(e.path().join("md"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|d| {
                    let n = d.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("dev-").map(str::to_string)
                })
                .collect();
            members.sort();
            out.push(Running {
                array_state: self.read(&name, "array_state").unwrap_or_default(),
                level: self.read(&name, "level").unwrap_or_default(),
                name,
                members,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The running md device holding any of the array's members.
    pub fn running_for(&self, a: &Array) -> Option<Running> {
        self.running().into_iter().find(|r| r.holds(a))
    }

    /// A free md device name: the 0.90 preferred minor if free, else the
    /// first free from md127 down (as mdadm picks).
    fn free_name(&self, a: &Array) -> Option<String> {
        let free = |n: u32| !self.sys.join("block").join(format!("md{n}")).exists();
        if a.version == "0.90" {
            if let Some(n) = a.md_number.filter(|&n| free(n)) {
                return Some(format!("md{n}"));
            }
        }
        (0..=127u32)
            .rev()
            .find(|&n| free(n))
            .map(|n| format!("md{n}"))
    }

    /// Assembles `a` from its in-sync members and starts it as `start`
    /// says. On failure the half-built device is cleared again.
    pub fn assemble(&self, a: &Array, start: Start) -> Result<String, String> {
        if let Some(r) = self.running_for(a) {
            return Err(format!(
                "array {} is already assembled as /dev/{} ({})",
                a.uuid, r.name, r.array_state
            ));
        }
        if !a.startable {
            return Err(format!(
                "array {} cannot run: {} (missing roles {:?})",
                a.uuid, a.state, a.missing_roles
            ));
        }
        let (members, _) = members_to_add(a);
        let md = self
            .free_name(a)
            .ok_or_else(|| "no free md device name".to_string())?;
        let new_array = self.sys.join("module/md_mod/parameters/new_array");
        std::fs::write(&new_array, &md).map_err(|e| {
            format!(
                "creating {md} through {}: {e}{}",
                new_array.display(),
                if e.kind() == io::ErrorKind::NotFound {
                    " (is the md_mod module loaded?)"
                } else {
                    ""
                }
            )
        })?;
        let result = (|| {
            self.write(&md, "metadata_version", a.version)?;
            for m in &members {
                let name = kernel_name(m);
                let devno =
                    std::fs::read_to_string(self.sys.join("class/block").join(name).join("dev"))
                        .map_err(|e| format!("{m}: no device number in sysfs: {e}"))?;
                self.write(&md, "new_dev", devno.trim())
                    .map_err(|e| format!("adding {m}: {e}"))?;
            }
            let state = match start {
                Start::ReadOnly => "readonly",
                Start::ReadAuto => "read-auto",
            };
            self.write(&md, "array_state", state)
                .map_err(|e| format!("starting the array: {e} (the kernel log, dmesg, says why)"))
        })();
        if let Err(e) = result {
            let _ = self.write(&md, "array_state", "clear");
            return Err(e);
        }
        self.wait_for_node(&md);
        log::info!(
            "md: array {} assembled as /dev/{md} ({}) from {}",
            a.uuid,
            match start {
                Start::ReadOnly => "read-only",
                Start::ReadAuto => "read-auto",
            },
            members.join(", ")
        );
        Ok(md)
    }

    /// devtmpfs creates the node a moment after the disk appears.
    fn wait_for_node(&self, md: &str) {
        let node = self.dev.join(md);
        let until = Instant::now() + Duration::from_secs(5);
        while !node.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops an array and releases its members (`clear`). A read-only
    /// array is not written to; a read-write one gets its superblocks
    /// marked clean by the kernel first.
    pub fn stop(&self, md: &str) -> Result<(), String> {
        self.write(md, "array_state", "clear").map_err(|e| {
            if e.contains("busy") {
                format!("{e}; unmount what is mounted from /dev/{md} first")
            } else {
                e
            }
        })
    }

    pub fn status(&self, md: &str) -> SyncStatus {
        SyncStatus {
            action: self.read(md, "sync_action").unwrap_or_default(),
            last_action: self.read(md, "last_sync_action").unwrap_or_default(),
            completed: self
                .read(md, "sync_completed")
                .ok()
                .and_then(|s| parse_sync_completed(&s)),
            speed_kib_s: self
                .read(md, "sync_speed")
                .ok()
                .and_then(|s| parse_sync_speed(&s)),
            mismatch_cnt: self
                .read(md, "mismatch_cnt")
                .ok()
                .and_then(|s| s.parse().ok()),
            sync_min: self.read(md, "sync_min").ok().and_then(|s| s.parse().ok()),
            sync_max: self.read(md, "sync_max").ok(),
        }
    }
}

/// The window of a check in member sectors: start rounded down to 4 KiB
/// (the kernel does so too), end rounded up to a whole chunk (the kernel
/// refuses others). `None` end: to the end of the members.
pub fn check_window(
    start: Option<u64>,
    end: Option<u64>,
    chunk_bytes: u64,
) -> Result<(u64, Option<u64>), String> {
    let start = start.unwrap_or(0) & !7;
    let chunk = (chunk_bytes / 512).max(1);
    let end = end.map(|e| e.div_ceil(chunk) * chunk);
    if let Some(e) = end {
        if e <= start {
            return Err(format!(
                "the window's end (sector {e}) is not after its start (sector {start})"
            ));
        }
    }
    Ok((start, end))
}

/// Block-device nodes whose read-only flags must be off for md to write to
/// these members: each member and, for a partition, its disk.
pub fn member_nodes(md: &Md, members: &[String]) -> Vec<PathBuf> {
    let mut nodes = Vec::new();
    for m in members {
        let name = kernel_name(m);
        let disk = blockdev::sys::disk_of(&md.sys, name);
        if disk != name {
            nodes.push(md.dev.join(&disk));
        }
        nodes.push(md.dev.join(name));
    }
    nodes
}

/// Where `--mount` puts an assembled array's filesystem.
pub fn mount_point(md: &str) -> PathBuf {
    Path::new("/mnt/md").join(md)
}

#[cfg(test)]
mod tests;
