//! Read-only mounts of filesystems being rescued, with the recovery
//! options that let a damaged filesystem mount without a single write.
//!
//! [`mount`] sets the device (and its whole disk) read-only in the block
//! layer, finds the filesystem (fsmagic; an ext filesystem whose primary
//! superblock is gone by a backup), and walks the [`ladder`]: each attempt
//! is reported with what the kernel logged for it (/dev/kmsg, see
//! [`kmsg`]). The device's write counter is compared before and after.
//! [`umount`] undoes what a mount made: the mount, the ntfs-3g daemon, the
//! directory. What a mount made is kept in a small record under
//! [`Paths::state`] so that `rescue umount` (another process) knows it.

pub mod cli;
pub mod extsb;
pub mod kmsg;
pub mod ladder;
pub mod ntfs3g;

use blockdev::sys::ModuleLoader;
use fsmagic::Kind;
use ladder::{Attempt, Method, Visible};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the system's interfaces are; tests point them elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// sysfs (`/sys`): `class/block/NAME` and its `stat`.
    pub sys: PathBuf,
    /// Device nodes (`/dev`).
    pub dev: PathBuf,
    /// The mount table (`/proc/mounts`).
    pub mounts: PathBuf,
    /// The kernel log (`/dev/kmsg`).
    pub kmsg: PathBuf,
    /// procfs (`/proc`): the ntfs-3g daemon is found there.
    pub proc: PathBuf,
    /// Where the records of our mounts are kept (`/run/rmount`).
    pub state: PathBuf,
    /// The default mount points' parent (`/mnt`): `/mnt/<device name>`.
    pub mnt_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            sys: "/sys".into(),
            dev: "/dev".into(),
            mounts: "/proc/mounts".into(),
            kmsg: "/dev/kmsg".into(),
            proc: "/proc".into(),
            state: "/run/rmount".into(),
            mnt_root: "/mnt".into(),
        }
    }
}

/// What to mount, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// A device node (`/dev/sdb1`, a `/dev/disk/by-*` link) or a kernel
    /// name (`sdb1`).
    pub device: String,
    /// The mount point; default `<mnt_root>/<device name>`. Created when
    /// missing (and removed again by [`umount`]); refused when it is a
    /// mount point already.
    pub dir: Option<PathBuf>,
    /// The filesystem, when the signature is not to be trusted or found.
    pub kind: Option<Kind>,
    /// The ntfs-3g program; default: found on PATH or at
    /// /usr/bin/ntfs-3g.
    pub ntfs3g: Option<PathBuf>,
    pub paths: Paths,
}

impl Request {
    /// `device` at its default place, on the real system.
    pub fn new(device: impl Into<String>) -> Request {
        Request {
            device: device.into(),
            dir: None,
            kind: None,
            ntfs3g: None,
            paths: Paths::default(),
        }
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptReport {
    /// The options, as mount(8) shows them (`ro,noload,sb=131072`).
    pub options: String,
    /// `kernel` (mount(2)) or `ntfs-3g`.
    pub by: &'static str,
    /// The kernel's filesystem type (`fuseblk` for ntfs-3g).
    pub fstype: &'static str,
    /// What the attempt gives up.
    pub meaning: &'static str,
    /// `mounted` or `failed`.
    pub result: &'static str,
    /// Why it failed (errno text, or ntfs-3g's status).
    pub error: Option<String>,
    /// What the kernel logged about it (and ntfs-3g printed).
    pub kernel: Vec<String>,
}

/// A device's write counter (`/sys/class/block/NAME/stat`, field 7,
/// "sectors written") before and after. Not field 5 (write I/Os): the
/// 6.1 kernel counts a cache flush there (XFS flushes at unmount, even
/// read-only), which writes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteCount {
    pub device: String,
    pub before: u64,
    pub after: u64,
}

impl WriteCount {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// A filesystem mounted read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mounted {
    /// The device node (`/dev/sdb1`).
    pub device: String,
    pub kind: Kind,
    pub mount_point: PathBuf,
    /// The options of the attempt that worked.
    pub options: String,
    pub attempts: Vec<AttemptReport>,
    /// The device's and its disk's write counters around the mount: they
    /// must not change.
    pub writes: Vec<WriteCount>,
    /// What the user should know: which backup was used, what the options
    /// give up, a write counter that moved.
    pub notes: Vec<String>,
}

impl Mounted {
    /// A write counter moved during the mount (it must not).
    pub fn writes_changed(&self) -> bool {
        self.writes.iter().any(WriteCount::changed)
    }
}

/// Nothing was mounted: why, each attempt made, and what could still get
/// files back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub device: String,
    /// The filesystem, when one was found.
    pub kind: Option<Kind>,
    pub reason: String,
    pub attempts: Vec<AttemptReport>,
    /// A file-level recovery that reads the unmounted device, where one
    /// exists for the kind.
    pub recovery: Option<&'static str>,
    pub writes: Vec<WriteCount>,
    pub notes: Vec<String>,
}

impl Failure {
    fn new(device: &str, reason: impl Into<String>) -> Box<Failure> {
        Box::new(Failure {
            device: device.to_string(),
            kind: None,
            reason: reason.into(),
            attempts: Vec::new(),
            recovery: None,
            writes: Vec::new(),
            notes: Vec::new(),
        })
    }
}

/// The kernel name and node of `device` (a node path, a link to one, or
/// a name), checked against sysfs.
pub fn resolve(paths: &Paths, device: &str) -> Result<(String, PathBuf), String> {
    let name = if device.contains('/') {
        let real = std::fs::canonicalize(device).map_err(|e| format!("{device}: {e}"))?;
        let base = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{device}: not a device node"))?;
        if paths.sys.join("class/block").join(&base).exists() {
            base
        } else {
            // A node named otherwise (/dev/mapper/vg-lv): by its numbers.
            blockdev::sys::name_of_node(&paths.sys, &real).unwrap_or(base)
        }
    } else {
        device.to_string()
    };
    if name.is_empty() || !paths.sys.join("class/block").join(&name).exists() {
        return Err(format!(
            "{device}: not a block device the kernel lists (see rescue probe; an image file \
             needs attaching first, e.g. losetup -r)"
        ));
    }
    let node = paths.dev.join(&name);
    Ok((name, node))
}

/// The sectors written (field 7 of `class/block/NAME/stat`).
pub fn write_count(sys: &Path, name: &str) -> Result<u64, String> {
    let p = sys.join("class/block").join(name).join("stat");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    parse_write_count(&text).ok_or_else(|| {
        format!(
            "{}: field 7 (sectors written) expected, found {:?}",
            p.display(),
            text.trim()
        )
    })
}

/// Field 7 of a block device's `stat` line (sectors written).
pub fn parse_write_count(stat: &str) -> Option<u64> {
    stat.split_whitespace().nth(6)?.parse().ok()
}

fn mount_table(paths: &Paths) -> Vec<(String, String, String)> {
    blockdev::sys::parse_mounts(&std::fs::read_to_string(&paths.mounts).unwrap_or_default())
}

/// Where `dir` is mounted on, if it is a mount point (compared as given
/// and after resolving links).
fn is_mount_point(table: &[(String, String, String)], dir: &Path) -> bool {
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    table
        .iter()
        .any(|(_, at, _)| Path::new(at) == dir || Path::new(at) == real)
}

/// Other block devices with a filesystem signature: (name, node), the
/// device itself, ram disks and empty devices (idle nbd slots) left out.
/// Every kind of device counts here (loop, nbd, md, dm too): a copy on
/// any of them confuses the kernel the same way.
fn other_devices(paths: &Paths, name: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(paths.sys.join("class/block")) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != name && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    for n in names {
        let size = std::fs::read_to_string(paths.sys.join("class/block").join(&n).join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if size > 0 {
            out.push((n.clone(), paths.dev.join(&n)));
        }
    }
    out
}

/// What the ladder needs to know about the rest of the machine for
/// `kind` on `dev`; notes say how it was found.
fn visible(
    req: &Request,
    name: &str,
    kind: Kind,
    dev: &blockdev::Device,
    notes: &mut Vec<String>,
) -> Visible {
    let mut v = Visible::default();
    match kind {
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => {
            let (list, how) = extsb::find_backups(dev);
            v.ext_backups = list;
            notes.push(how);
        }
        Kind::Xfs => {
            let uuid = fsmagic::detect(dev).and_then(|s| s.uuid);
            if let Some(uuid) = uuid {
                for (n, node) in other_devices(&req.paths, name) {
                    let Ok(d) = blockdev::Device::open(&node) else {
                        continue;
                    };
                    if fsmagic::detect(&d)
                        .is_some_and(|s| s.kind == Kind::Xfs && s.uuid.as_ref() == Some(&uuid))
                    {
                        v.same_uuid.push(n);
                    }
                }
            }
            if !v.same_uuid.is_empty() {
                notes.push(format!(
                    "the same XFS UUID is on {}: mounting with nouuid",
                    v.same_uuid.join(", ")
                ));
            }
        }
        Kind::Btrfs => {
            if let Some(me) = fsmagic::btrfs_device(dev) {
                for (n, node) in other_devices(&req.paths, name) {
                    let Ok(d) = blockdev::Device::open(&node) else {
                        continue;
                    };
                    let Some(other) = fsmagic::btrfs_device(&d) else {
                        continue;
                    };
                    if other.fsid != me.fsid {
                        continue;
                    }
                    if other.devid == me.devid {
                        v.btrfs_copies.push(n);
                    } else {
                        v.btrfs_members.push(node);
                    }
                }
                if me.num_devices > 1 {
                    notes.push(format!(
                        "btrfs over {} devices; {} other member(s) found",
                        me.num_devices,
                        v.btrfs_members.len()
                    ));
                }
            }
        }
        Kind::Ntfs => v.ntfs3g = req.ntfs3g.clone().or_else(ntfs3g::find),
        _ => {}
    }
    v
}

/// Sets each node read-only in the block layer and checks that it is.
fn make_read_only(nodes: &[PathBuf]) -> Result<(), String> {
    for n in nodes {
        blockdev::set_read_only(n, true).map_err(|e| e.to_string())?;
        match blockdev::is_read_only(n) {
            Ok(true) => {}
            Ok(false) => return Err(format!("{}: still writable after BLKROSET", n.display())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn errno_text(e: rustix::io::Errno) -> String {
    let why = std::io::Error::from(e);
    let hint = match e {
        rustix::io::Errno::NODEV => " (the kernel has no driver for this filesystem)",
        rustix::io::Errno::ROFS => " (the filesystem wants to write, e.g. to replay a journal)",
        _ => "",
    };
    format!("{why}{hint}")
}

/// Runs one attempt; Err with why it failed and the output of ntfs-3g.
fn run_attempt(
    a: &Attempt,
    node: &Path,
    dir: &Path,
    paths: &Paths,
) -> Result<Vec<String>, (String, Vec<String>)> {
    match &a.method {
        Method::Kernel { fstype, .. } => {
            let data = a
                .data()
                .map(std::ffi::CString::new)
                .transpose()
                .map_err(|_| ("an option holds a NUL byte".to_string(), Vec::new()))?;
            use rustix::mount::MountFlags;
            rustix::mount::mount(
                node,
                dir,
                *fstype,
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                data.as_deref(),
            )
            .map(|()| Vec::new())
            .map_err(|e| (errno_text(e), Vec::new()))
        }
        Method::Ntfs3g { program } => {
            let out = ntfs3g::run(program, &a.options, node, dir)?;
            if is_mount_point(&mount_table(paths), dir) {
                Ok(out)
            } else {
                Err(("ntfs-3g exited 0 but nothing is mounted there".into(), out))
            }
        }
    }
}

/// Mounts `req.device` read-only, trying the ladder's options in order;
/// `load` loads kernel modules; each step is written to `log` as it
/// happens (`trying ro,noload ... failed: ...`). Ok when one attempt
/// mounted; Err when none did or nothing was tried (refused), saying why.
pub fn mount(
    req: &Request,
    load: ModuleLoader<'_>,
    log: &mut dyn Write,
) -> Result<Mounted, Box<Failure>> {
    let (name, node) =
        resolve(&req.paths, &req.device).map_err(|e| Failure::new(&req.device, e))?;
    let device = format!("/dev/{name}");
    let fail = |reason: String| Failure::new(&device, reason);
    let table = mount_table(&req.paths);
    if let Some((_, at, _)) = table
        .iter()
        .find(|(d, _, _)| *d == device || Path::new(d) == node)
    {
        return Err(fail(format!("{device} is already mounted at {at}")));
    }
    let dir = req
        .dir
        .clone()
        .unwrap_or_else(|| req.paths.mnt_root.join(&name));
    if dir.to_string_lossy().contains('\n') {
        return Err(fail(format!(
            "{}: a mount point with a newline",
            dir.display()
        )));
    }
    if is_mount_point(&table, &dir) {
        return Err(fail(format!(
            "{} is already a mount point; choose another directory",
            dir.display()
        )));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(fail(format!("{}: not a directory", dir.display())));
    }

    // The guard first: nothing below may write, whatever the driver does.
    let disk = blockdev::sys::disk_of(&req.paths.sys, &name);
    let mut names = vec![name.clone()];
    if disk != name {
        names.push(disk.clone());
    }
    let nodes: Vec<PathBuf> = names.iter().map(|n| req.paths.dev.join(n)).collect();
    make_read_only(&nodes).map_err(|e| fail(format!("cannot make it read-only: {e}")))?;
    let _ = writeln!(log, "{} read-only in the block layer", names.join(" and "));
    let before: Vec<(String, u64)> = names
        .iter()
        .map(|n| write_count(&req.paths.sys, n).map(|c| (n.clone(), c)))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let writes_now = || -> Vec<WriteCount> {
        before
            .iter()
            .map(|(n, b)| WriteCount {
                device: n.clone(),
                before: *b,
                after: write_count(&req.paths.sys, n).unwrap_or(u64::MAX),
            })
            .collect()
    };

    let dev = blockdev::Device::open(&node).map_err(|e| fail(format!("{device}: {e}")))?;
    let mut notes = Vec::new();
    let kind = match req.kind {
        Some(k) => k,
        None => match fsmagic::detect(&dev) {
            Some(s) => s.kind,
            None => match extsb::detect_by_backup(&dev) {
                Some((k, sb)) => {
                    notes.push(format!(
                        "no primary superblock; an {} backup superblock is at sb={sb}",
                        k.name()
                    ));
                    k
                }
                None => {
                    let parts: Vec<String> = blockdev::sys::partitions(&req.paths.sys, &name)
                        .into_iter()
                        .map(|(_, p)| p)
                        .collect();
                    let mut f = fail(if parts.is_empty() {
                        format!(
                            "{device}: no known filesystem signature (name one with --type if \
                             you know it)"
                        )
                    } else {
                        format!(
                            "{device}: a whole disk with partitions ({}); mount one of them",
                            parts.join(", ")
                        )
                    });
                    f.writes = writes_now();
                    return Err(f);
                }
            },
        },
    };
    let vis = visible(req, &name, kind, &dev, &mut notes);
    drop(dev);
    let attempts = match ladder::ladder(kind, &vis) {
        Ok(a) => a,
        Err(r) => {
            let mut f = fail(format!("{device} ({}): {}", kind.name(), r.0));
            f.kind = Some(kind);
            f.notes = notes;
            f.writes = writes_now();
            return Err(f);
        }
    };
    // The btrfs members are read too: read-only as well.
    let members: Vec<PathBuf> = vis
        .btrfs_members
        .iter()
        .flat_map(|m| {
            let n = m.file_name().map(|n| n.to_string_lossy().into_owned());
            let d = n
                .as_ref()
                .map(|n| blockdev::sys::disk_of(&req.paths.sys, n));
            [Some(m.clone()), d.map(|d| req.paths.dev.join(d))]
        })
        .flatten()
        .collect();
    if let Err(e) = make_read_only(&members) {
        let mut f = fail(format!(
            "cannot make the other btrfs members read-only: {e}"
        ));
        f.kind = Some(kind);
        return Err(f);
    }

    let created = !dir.exists();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let mut f = fail(format!("{}: {e}", dir.display()));
        f.kind = Some(kind);
        return Err(f);
    }
    let mut reports = Vec::new();
    let mut loaded: Vec<&str> = Vec::new();
    let mut won = None;
    let mut kmsg_error = None;
    let mut module_errors = Vec::new();
    for a in &attempts {
        for m in ladder::modules(a) {
            if !loaded.contains(m) {
                loaded.push(m);
                // A failure matters only if nothing mounts (on a host the
                // modules are usually loaded or built in already).
                if let Err(e) = load(m) {
                    log::info!("rmount: module {m}: {e}");
                    module_errors.push(format!("module {m} not loaded: {e}"));
                }
            }
        }
        let _ = write!(log, "trying {} ... ", a.options);
        let _ = log.flush();
        let mut kmsg = kmsg::Kmsg::open_at_end(&req.paths.kmsg);
        let result = run_attempt(a, &node, &dir, &req.paths);
        let (by, fstype) = match &a.method {
            Method::Kernel { fstype, .. } => ("kernel", *fstype),
            Method::Ntfs3g { .. } => ("ntfs-3g", "fuseblk"),
        };
        let filter = if by == "ntfs-3g" { "fuse" } else { fstype };
        let mut kernel: Vec<String> = match &mut kmsg {
            Ok(k) => k
                .read_new()
                .into_iter()
                .filter(|m| kmsg::relevant(m, &name, filter))
                .collect(),
            Err(e) => {
                kmsg_error.get_or_insert(e.to_string());
                Vec::new()
            }
        };
        let (ok, error) = match result {
            Ok(out) => {
                kernel.extend(out);
                (true, None)
            }
            Err((why, out)) => {
                kernel.extend(out);
                (false, Some(why))
            }
        };
        let _ = writeln!(
            log,
            "{}",
            match &error {
                None => "mounted".to_string(),
                Some(e) => format!("failed: {e}"),
            }
        );
        for k in &kernel {
            let _ = writeln!(log, "    {k}");
        }
        reports.push(AttemptReport {
            options: a.options.clone(),
            by,
            fstype,
            meaning: a.meaning,
            result: if ok { "mounted" } else { "failed" },
            error,
            kernel,
        });
        if ok {
            won = Some(a);
            break;
        }
    }
    if let Some(e) = kmsg_error {
        notes.push(format!(
            "kernel messages unavailable ({}: {e})",
            req.paths.kmsg.display()
        ));
    }
    let writes = writes_now();
    for w in writes.iter().filter(|w| w.changed()) {
        notes.push(format!(
            "WARNING: {} write counter went from {} to {} during the mount: something wrote \
             to it",
            w.device, w.before, w.after
        ));
    }
    let Some(won) = won else {
        notes.extend(module_errors);
        if created {
            let _ = std::fs::remove_dir(&dir);
        }
        log::info!(
            "rmount: {device} ({}) mounted with none of the options",
            kind.name()
        );
        return Err(Box::new(Failure {
            device: device.clone(),
            kind: Some(kind),
            reason: format!(
                "{device} ({}) did not mount with any of the {} option set(s) tried",
                kind.name(),
                reports.len()
            ),
            attempts: reports,
            recovery: ladder::file_level_recovery(kind),
            writes,
            notes,
        }));
    };
    notes.push(format!("mounted with {}: {}", won.options, won.meaning));
    let daemon = match won.method {
        Method::Ntfs3g { .. } => ntfs3g::daemon_for(&req.paths.proc, &dir),
        Method::Kernel { .. } => None,
    };
    let rec = Record {
        device: device.clone(),
        dir: dir.clone(),
        created_dir: created,
        daemon,
        writes: writes.first().map(|w| w.after),
    };
    if let Err(e) = rec.save(&req.paths.state, &name) {
        notes.push(format!(
            "could not record the mount ({e}): rescue umount will not know it; use umount {}",
            dir.display()
        ));
    }
    log::info!(
        "rmount: {device} ({}) mounted read-only at {} with {}",
        kind.name(),
        dir.display(),
        won.options
    );
    Ok(Mounted {
        device,
        kind,
        mount_point: dir,
        options: won.options.clone(),
        attempts: reports,
        writes,
        notes,
    })
}

/// What [`mount`] leaves for [`umount`]: one file per device under
/// [`Paths::state`], `key=value` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub device: String,
    pub dir: PathBuf,
    /// The directory was made by the mount, so the unmount removes it.
    pub created_dir: bool,
    /// The ntfs-3g daemon serving the mount.
    pub daemon: Option<u32>,
    /// The device's write counter right after the mount.
    pub writes: Option<u64>,
}

impl Record {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "device={}\ndir={}\ncreated_dir={}\n",
            self.device,
            self.dir.display(),
            u8::from(self.created_dir)
        );
        if let Some(p) = self.daemon {
            s.push_str(&format!("daemon={p}\n"));
        }
        if let Some(w) = self.writes {
            s.push_str(&format!("writes={w}\n"));
        }
        s
    }

    /// Parses [`Record::to_text`]'s form; an error names the line.
    pub fn parse(text: &str) -> Result<Record, String> {
        let (mut device, mut dir, mut created, mut daemon, mut writes) =
            (None, None, false, None, None);
        for (i, line) in text.lines().enumerate() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key=value, found {line:?}", i + 1))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("line {}: {k}: expected a number, found {v:?}", i + 1))
            };
            match k {
                "device" => device = Some(v.to_string()),
                "dir" => dir = Some(PathBuf::from(v)),
                "created_dir" => created = v == "1",
                "daemon" => daemon = Some(num(v)? as u32),
                "writes" => writes = Some(num(v)?),
                _ => {}
            }
        }
        Ok(Record {
            device: device.ok_or("no device= line")?,
            dir: dir.ok_or("no dir= line")?,
            created_dir: created,
            daemon,
            writes,
        })
    }

    fn save(&self, state: &Path, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(state)?;
        let tmp = state.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(tmp, state.join(name))
    }

    /// Every record, with its file.
    pub fn all(state: &Path) -> Vec<(PathBuf, Record)> {
        let mut out: Vec<(PathBuf, Record)> = std::fs::read_dir(state)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let r = Record::parse(&std::fs::read_to_string(e.path()).ok()?).ok()?;
                Some((e.path(), r))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// What [`umount`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unmounted {
    pub device: String,
    pub dir: PathBuf,
    /// It was still mounted (else only the leftovers were cleaned up).
    pub was_mounted: bool,
    pub removed_dir: bool,
    /// ntfs-3g: whether its daemon exited within [`DAEMON_WAIT`].
    pub daemon_exited: Option<bool>,
    /// The device's write counter at the mount and now.
    pub writes: Option<WriteCount>,
    pub notes: Vec<String>,
}

impl Unmounted {
    /// Something is wrong: a write counter moved, or ntfs-3g did not exit.
    pub fn problems(&self) -> bool {
        self.writes.as_ref().is_some_and(WriteCount::changed) || self.daemon_exited == Some(false)
    }
}

/// How long the unmount waits for ntfs-3g to exit.
pub const DAEMON_WAIT: Duration = Duration::from_secs(10);

/// Unmounts what [`mount`] mounted, named by its directory or device:
/// the mount, then (ntfs-3g) waits for the daemon to exit, removes the
/// directory if the mount made it, and forgets the record. The device
/// stays read-only. Mounts made otherwise are refused.
pub fn umount(paths: &Paths, target: &str) -> Result<Unmounted, String> {
    let records = Record::all(&paths.state);
    let as_dev = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/dev/{target}")
    };
    let real = std::fs::canonicalize(target).ok();
    let trimmed = Path::new(target.trim_end_matches('/'));
    let found = records.into_iter().find(|(_, r)| {
        r.device == as_dev
            || r.dir == trimmed
            || (real.is_some() && std::fs::canonicalize(&r.dir).ok() == real)
    });
    let table = mount_table(paths);
    let Some((file, rec)) = found else {
        let mounted = table
            .iter()
            .any(|(d, at, _)| *d == as_dev || Path::new(at) == trimmed);
        return Err(if mounted {
            format!(
                "{target} was not mounted by rescue mount; not unmounting it (a destination: \
                 rescue dest umount)"
            )
        } else {
            format!("{target}: not mounted by rescue mount")
        });
    };
    let mut notes = Vec::new();
    let was_mounted = is_mount_point(&table, &rec.dir);
    if was_mounted {
        // A process that held a file there a moment ago (a child forked
        // while a file was open) keeps the mount busy briefly: retry for
        // a second before reporting it.
        let mut tries = 0;
        let unmounted = loop {
            match rustix::mount::unmount(&rec.dir, rustix::mount::UnmountFlags::empty()) {
                Err(rustix::io::Errno::BUSY) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other,
            }
        };
        unmounted.map_err(|e| {
            let busy = if e == rustix::io::Errno::BUSY {
                " (a program or shell is using files there; leave the directory and retry)"
            } else {
                ""
            };
            format!(
                "unmount {}: {}{busy}",
                rec.dir.display(),
                std::io::Error::from(e)
            )
        })?;
    } else {
        notes.push(format!(
            "{} was no longer mounted; cleaning up",
            rec.dir.display()
        ));
    }
    let daemon_exited = rec.daemon.map(|pid| {
        let exited = ntfs3g::wait_exit(&paths.proc, pid, &rec.dir, DAEMON_WAIT);
        if !exited {
            notes.push(format!(
                "ntfs-3g (pid {pid}) still running {} s after the unmount",
                DAEMON_WAIT.as_secs()
            ));
        }
        exited
    });
    let mut removed_dir = false;
    if rec.created_dir {
        match std::fs::remove_dir(&rec.dir) {
            Ok(()) => removed_dir = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push(format!("{}: not removed: {e}", rec.dir.display())),
        }
    }
    let name = rec.device.trim_start_matches("/dev/").to_string();
    let writes = rec.writes.map(|before| WriteCount {
        device: name.clone(),
        before,
        after: write_count(&paths.sys, &name).unwrap_or(u64::MAX),
    });
    if let Some(w) = writes.as_ref().filter(|w| w.changed()) {
        notes.push(format!(
            "WARNING: {} write counter went from {} to {} while mounted",
            w.device, w.before, w.after
        ));
    }
    let _ = std::fs::remove_file(file);
    log::info!(
        "rmount: {} unmounted from {}",
        rec.device,
        rec.dir.display()
    );
    Ok(Unmounted {
        device: rec.device,
        dir: rec.dir,
        was_mounted,
        removed_dir,
        daemon_exited,
        writes,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node made with mknod under another name (as the appliance makes
    /// /dev/mapper/VG-LV) is found by its device number: here one for the
    /// host's loop0, in a fake sysfs whose `dev` file names it.
    #[test]
    fn a_node_named_otherwise_resolves_by_its_device_number() {
        let t = testkit::TempDir::new("rmount-rdev");
        let sys = t.join("sys");
        std::fs::create_dir_all(sys.join("class/block/loop0")).unwrap();
        std::fs::write(sys.join("class/block/loop0/dev"), "7:0\n").unwrap();
        let node = t.join("vg0-root");
        let made = std::process::Command::new("mknod")
            .arg(&node)
            .args(["b", "7", "0"])
            .status()
            .expect("mknod (coreutils) is needed for this test");
        assert!(made.success(), "mknod needs root");
        let paths = Paths {
            sys,
            dev: "/dev".into(),
            ..Default::default()
        };
        let (name, n) = resolve(&paths, &node.display().to_string()).unwrap();
        assert_eq!((name.as_str(), n), ("loop0", PathBuf::from("/dev/loop0")));
    }

    #[test]
    fn write_counter_is_field_seven() {
        let stat = "    1024        0   967826      605      198    19304   157855      292        0      440      945\n";
        assert_eq!(parse_write_count(stat), Some(157855));
        // A flush after an XFS unmount: one write I/O, no sector written.
        let flushed = "27 0 275 18 1 0 0 0 0 16 19 0 0 0 0 1 0\n";
        assert_eq!(parse_write_count(flushed), Some(0));
        assert_eq!(parse_write_count("1 2 3"), None);
        assert_eq!(parse_write_count("1 2 3 4 x"), None);
    }

    #[test]
    fn records_round_trip_and_bad_lines_are_named() {
        let r = Record {
            device: "/dev/nbd0p1".into(),
            dir: "/mnt/nbd0p1".into(),
            created_dir: true,
            daemon: Some(77),
            writes: Some(5),
        };
        assert_eq!(Record::parse(&r.to_text()).unwrap(), r);
        let plain = Record {
            daemon: None,
            writes: None,
            created_dir: false,
            ..r.clone()
        };
        assert_eq!(Record::parse(&plain.to_text()).unwrap(), plain);
        assert!(Record::parse("device=/dev/x\nnonsense\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(Record::parse("device=/dev/x\ndir=/m\ndaemon=x\n")
            .unwrap_err()
            .contains("daemon: expected a number"));
        assert!(Record::parse("dir=/m\n").unwrap_err().contains("device"));
    }

    proptest::proptest! {
        /// Record files and stat lines of any content: an answer or an
        /// error, never a panic.
        #[test]
        fn text_parsers_never_panic(text in "(?s).{0,300}") {
            let _ = Record::parse(&text);
            let _ = parse_write_count(&text);
        }
    }

    /// A fake sysfs and /dev: names resolve only when the kernel lists
    /// them; a directory that is a mount point is refused before anything
    /// is touched.
    #[test]
    fn refusals_before_any_change() {
        let root = testkit::TempDir::new("rmount-refuse");
        let paths = Paths {
            sys: root.join("sys"),
            dev: root.join("dev"),
            mounts: root.join("mounts"),
            kmsg: root.join("kmsg"),
            proc: root.join("proc"),
            state: root.join("state"),
            mnt_root: root.join("mnt"),
        };
        std::fs::create_dir_all(paths.sys.join("class/block/sdz1")).unwrap();
        std::fs::create_dir_all(&paths.dev).unwrap();
        std::fs::write(
            &paths.mounts,
            format!(
                "/dev/sdy1 /somewhere ext4 ro 0 0\n/dev/vda {} ext4 rw 0 0\n",
                root.join("busy").display()
            ),
        )
        .unwrap();
        let load = |_: &str| -> Result<(), String> { Ok(()) };
        let mut req = Request::new("sdx9");
        req.paths = paths.clone();
        let e = mount(&req, &load, &mut std::io::sink()).unwrap_err();
        assert!(e.reason.contains("not a block device"), "{}", e.reason);
        req.device = "sdz1".into();
        req.dir = Some(root.join("busy"));
        let e = mount(&req, &load, &mut std::io::sink()).unwrap_err();
        assert!(e.reason.contains("already a mount point"), "{}", e.reason);
        std::fs::write(
            &paths.mounts,
            format!("/dev/sdz1 {} ext4 ro 0 0\n", root.join("x").display()),
        )
        .unwrap();
        let e = mount(&req, &load, &mut std::io::sink()).unwrap_err();
        assert!(e.reason.contains("already mounted at"), "{}", e.reason);
        assert!(e.attempts.is_empty());

        let e = umount(&paths, "/somewhere").unwrap_err();
        assert!(e.contains("not mounted by rescue mount"), "{e}");
        let e = umount(&paths, "sdq").unwrap_err();
        assert!(e.contains("not mounted by rescue mount"), "{e}");
    }
}
