//! The machine's block devices as the kernel shows them: which devices
//! count for what (one rule, [`Scope`]), disks and their partitions in
//! sysfs, the mount table, mounting a filesystem with the modules it needs,
//! and NTFS through ntfs-3g over FUSE ([`mount_ntfs3g`], [`unmount_fuse`]:
//! a mount is only done when its daemon has exited). Every path is a
//! parameter, so tests run on a fake sysfs.

use std::ffi::CStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which block devices a listing counts. Never counted: our own loop and
/// ram devices, device-mapper and md (the md tools show those), and idle
/// nbd slots ([`block_devices`] leaves those out). An attached device
/// (`rescue attach`: a VM disk or an image as `nbdN`, read-only in the
/// kernel) counts as a disk, except for the boot-time guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Disks and partitions (`class/block`): what the read-only guard
    /// covers. Sorted by name.
    Guarded,
    /// Whole disks (`block`), optical drives included: what the survey
    /// shows. Sorted so that sdb comes before sdaa and nvme2n1 before
    /// nvme10n1.
    Disks,
    /// Whole disks that hold data to rescue (`block`): no optical or floppy
    /// drives. Sorted by name.
    DataDisks,
    /// Disks and partitions that may hold a destination filesystem
    /// (`class/block`): no optical drives. Sorted by name.
    Destinations,
}

impl Scope {
    /// Whether the device `name` (a kernel name such as `sdb1`) counts.
    pub fn counts(self, name: &str) -> bool {
        let never = ["loop", "ram", "zram", "dm-", "md"]
            .iter()
            .any(|p| name.starts_with(p))
            || (self == Scope::Guarded && name.starts_with("nbd"));
        let optical = name.starts_with("sr");
        let floppy = name.starts_with("fd");
        !never
            && match self {
                Scope::Guarded | Scope::Disks => true,
                Scope::DataDisks => !optical && !floppy,
                Scope::Destinations => !optical,
            }
    }

    fn dir(self) -> &'static str {
        match self {
            Scope::Disks | Scope::DataDisks => "block",
            Scope::Guarded | Scope::Destinations => "class/block",
        }
    }
}

/// The kernel names of the block devices in `scope` under `sys` (normally
/// `/sys`), in the scope's order.
pub fn block_devices(sys: &Path, scope: Scope) -> io::Result<Vec<String>> {
    let dir = sys.join(scope.dir());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| scope.counts(n))
        .filter(|n| !n.starts_with("nbd") || is_attached(sys, n))
        .collect();
    match scope {
        Scope::Disks => names.sort_by_key(|n| (n.len(), n.clone())),
        _ => names.sort(),
    }
    Ok(names)
}

/// Whether nbd device `name` (or its partition) is attached: its size is
/// set. Idle slots show a size of 0.
fn is_attached(sys: &Path, name: &str) -> bool {
    std::fs::read_to_string(sys.join("class/block").join(name).join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// The machine's data disks ([`Scope::DataDisks`]); none when sysfs is
/// unreadable.
pub fn system_disks(sys: &Path) -> Vec<String> {
    block_devices(sys, Scope::DataDisks).unwrap_or_default()
}

/// The partitions of `disk` as (number, kernel name), by number.
pub fn partitions(sys: &Path, disk: &str) -> Vec<(u32, String)> {
    let mut parts: Vec<(u32, String)> = std::fs::read_dir(sys.join("block").join(disk))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = std::fs::read_to_string(e.path().join("partition")).ok()?;
            Some((
                n.trim().parse().ok()?,
                e.file_name().to_string_lossy().into_owned(),
            ))
        })
        .collect();
    parts.sort();
    parts
}

/// The disk a block device belongs to: its parent in sysfs for a
/// partition, itself otherwise.
pub fn disk_of(sys: &Path, name: &str) -> String {
    let class = sys.join("class/block").join(name);
    if class.join("partition").exists() {
        if let Ok(real) = std::fs::canonicalize(&class) {
            if let Some(parent) = real.parent().and_then(|p| p.file_name()) {
                return parent.to_string_lossy().into_owned();
            }
        }
    }
    name.to_string()
}

/// The kernel name of the block device node at `node` (`/dev/mapper/vg-lv`
/// made by mknod, which sysfs does not name): the `class/block` entry
/// whose `dev` is the node's major:minor.
pub fn name_of_node(sys: &Path, node: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(node).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let want = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
    std::fs::read_dir(sys.join("class/block"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("dev")).is_ok_and(|d| d.trim() == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// A field of /proc/mounts or mountinfo with its `\040`-style octal
/// escapes (space, tab, newline, backslash) decoded.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            // Three octal digits can exceed a byte (\777): kept as they were.
            match u8::try_from(v) {
                Ok(byte) => {
                    out.push(byte);
                    i += 4;
                    continue;
                }
                Err(_) => out.push(b[i]),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(device, mount point, options)` of every mount in `mounts` (the text
/// of /proc/mounts), with `\040`-style escapes decoded.
pub fn parse_mounts(mounts: &str) -> Vec<(String, String, String)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (dev, at, _fs, opts) = (w.next()?, w.next()?, w.next()?, w.next()?);
            Some((unescape(dev), unescape(at), opts.to_string()))
        })
        .collect()
}

/// Loads a kernel module by name, optionally followed by its parameters
/// as modprobe takes them (`nbd max_part=16`). The appliance passes its
/// loader; on a host the modules are usually there already.
pub type ModuleLoader<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// One filesystem to mount.
pub struct Mount<'a> {
    /// The block device node.
    pub node: &'a Path,
    /// The mount point; created if missing, removed again on failure.
    pub at: &'a Path,
    /// The kernel's filesystem type.
    pub fstype: &'a str,
    /// Modules the filesystem needs.
    pub modules: &'a [&'a str],
    /// mount(2)'s data.
    pub data: Option<&'a CStr>,
    pub read_only: bool,
}

/// Mounts `m` with `noatime`: loads its modules (a failure only logged: a
/// built-in or loaded module is fine, and the mount says whether the
/// filesystem is really there), then mounts. A read-write mount first
/// clears the block layer's read-only flag of the node and of `disk` (the
/// kernel checks a partition's disk too); on any failure the flags are put
/// back and the mount point removed. The error says what failed.
pub fn mount(m: &Mount<'_>, disk: Option<&Path>, load: ModuleLoader<'_>) -> Result<(), String> {
    for module in m.modules {
        if let Err(e) = load(module) {
            log::info!("module {module} for {}: {e}", m.fstype);
        }
    }
    let mut nodes: Vec<PathBuf> = disk.into_iter().map(Path::to_path_buf).collect();
    nodes.push(m.node.to_path_buf());
    let mut writable = if m.read_only {
        crate::WritableWhile::default()
    } else {
        crate::WritableWhile::clear(&nodes).map_err(|e| e.to_string())?
    };
    if let Err(e) = std::fs::create_dir_all(m.at) {
        writable.restore();
        return Err(format!("{}: {e}", m.at.display()));
    }
    let mut flags = rustix::mount::MountFlags::NOATIME;
    if m.read_only {
        flags |= rustix::mount::MountFlags::RDONLY;
    }
    if let Err(e) = rustix::mount::mount(m.node, m.at, m.fstype, flags, m.data) {
        writable.restore();
        let _ = std::fs::remove_dir(m.at);
        let why = io::Error::from(e);
        return Err(format!(
            "mount {} ({}{}) at {}: {why}{}",
            m.node.display(),
            m.fstype,
            if m.read_only { ", read-only" } else { "" },
            m.at.display(),
            if why.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
                " (the kernel has no driver for this filesystem)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// Where image-build puts ntfs-3g in the initramfs (the path of Debian's
/// package, `/bin/ntfs-3g`).
pub const NTFS_3G: &str = "/bin/ntfs-3g";

/// How long ntfs-3g may take to mount (it reads the MFT and the journal).
const NTFS_3G_START: Duration = Duration::from_secs(120);

/// How long a FUSE daemon may take to flush and exit after its unmount.
pub const FUSE_EXIT_WAIT: Duration = Duration::from_secs(60);

/// One NTFS volume to mount with ntfs-3g over FUSE (Debian's 6.1 kernel
/// has no NTFS driver).
pub struct NtfsMount<'a> {
    /// The block device node (or, on a host, an image file).
    pub node: &'a Path,
    /// The mount point; created if missing, removed again on failure.
    pub at: &'a Path,
    pub read_only: bool,
    /// More ntfs-3g `-o` options, e.g. `windows_names`, `noatime`.
    pub options: &'a [&'a str],
    /// The ntfs-3g program, normally [`NTFS_3G`].
    pub program: &'a Path,
}

/// Mounts `m` with ntfs-3g and returns what it printed on stderr (notes,
/// possibly empty). The `fuse` module is loaded first (a failure only
/// logged: built in, or already loaded). The options are `ro` or `rw`,
/// then `norecover` (ntfs-3g's default would empty the journal of a volume
/// Windows did not unmount cleanly: a write nobody asked for), then
/// `m.options`. A read-write mount first clears the block layer's read-only
/// flag of the node and of `disk`, like [`mount`].
///
/// ntfs-3g mounts a volume it will not write (Windows hibernated, fast
/// startup, an unclean journal) read-only and still exits 0; a read-write
/// mount is therefore checked in the mount table, and one that came out
/// read-only is unmounted again and reported as the error, with ntfs-3g's
/// words. Any failure puts the flags back and removes the mount point; the
/// error names the command, its exit code's meaning and its stderr.
pub fn mount_ntfs3g(
    m: &NtfsMount<'_>,
    disk: Option<&Path>,
    load: ModuleLoader<'_>,
) -> Result<String, String> {
    if let Err(e) = load("fuse") {
        log::info!("module fuse for ntfs-3g: {e}");
    }
    // Only block devices have the block layer's flag (a host test mounts
    // an image file).
    let mut nodes: Vec<PathBuf> = disk.into_iter().map(Path::to_path_buf).collect();
    nodes.push(m.node.to_path_buf());
    nodes.retain(|n| is_block_device(n));
    let mut writable = if m.read_only {
        crate::WritableWhile::default()
    } else {
        crate::WritableWhile::clear(&nodes).map_err(|e| e.to_string())?
    };
    let fail = |writable: &mut crate::WritableWhile, why: String| {
        writable.restore();
        let _ = std::fs::remove_dir(m.at);
        Err(why)
    };
    if let Err(e) = std::fs::create_dir_all(m.at) {
        return fail(&mut writable, format!("{}: {e}", m.at.display()));
    }
    let mut opts = vec![if m.read_only { "ro" } else { "rw" }, "norecover"];
    opts.extend_from_slice(m.options);
    let opts = opts.join(",");
    let what = format!(
        "{} -o {opts} {} {}",
        m.program.display(),
        m.node.display(),
        m.at.display()
    );
    let (status, stderr) = match run_bounded(m.program, &opts, m.node, m.at) {
        Ok(r) => r,
        Err(e) => return fail(&mut writable, format!("{what}: {e}")),
    };
    let said = stderr.trim().replace('\n', " ");
    let said_part = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        return fail(
            &mut writable,
            format!("{what} failed ({}){said_part}", ntfs3g_exit_meaning(code)),
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let at_text = m.at.to_string_lossy();
    let Some((_, _, options)) = parse_mounts(&mounts)
        .into_iter()
        .rev()
        .find(|(_, at, _)| *at == at_text)
    else {
        return fail(
            &mut writable,
            format!("{what} exited 0 but nothing is mounted at {at_text}{said_part}"),
        );
    };
    if !m.read_only && !options.split(',').any(|o| o == "rw") {
        let undone = match unmount_fuse(m.at, m.node, FUSE_EXIT_WAIT) {
            Ok(()) => String::new(),
            Err(e) => format!(" (and unmounting it again failed: {e})"),
        };
        return fail(
            &mut writable,
            format!(
                "ntfs-3g mounted {} read-only instead of read-write: it will not write to this \
                 volume{said_part}{undone}",
                m.node.display()
            ),
        );
    }
    Ok(stderr.trim().to_string())
}

fn is_block_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|md| md.file_type().is_block_device())
}

/// Runs `program -o opts node at` (which forks its daemon and exits once
/// the volume is mounted), bounded by [`NTFS_3G_START`]; returns its exit
/// status and stderr. stderr goes to an anonymous memory file, not a pipe:
/// the daemon inherits the descriptor until it detaches, and a pipe would
/// keep a reader waiting on it.
fn run_bounded(
    program: &Path,
    opts: &str,
    node: &Path,
    at: &Path,
) -> Result<(std::process::ExitStatus, String), String> {
    use std::io::{Read, Seek};
    let err_fd = rustix::fs::memfd_create("ntfs-3g-stderr", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd: {}", io::Error::from(e)))?;
    let mut err_file = std::fs::File::from(err_fd);
    let child_err = err_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(program)
        .arg("-o")
        .arg(opts)
        .arg(node)
        .arg(at)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(child_err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let deadline = Instant::now() + NTFS_3G_START;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {} s; stopped",
                    NTFS_3G_START.as_secs()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut text = String::new();
    err_file.rewind().map_err(|e| e.to_string())?;
    let _ = err_file.read_to_string(&mut text);
    Ok((status, text))
}

/// What ntfs-3g's exit code means (ntfs-3g.probe(8)).
pub fn ntfs3g_exit_meaning(code: i32) -> String {
    let why = match code {
        11 => "syntax error in the command line",
        12 => "not a valid NTFS volume",
        13 => "inconsistent NTFS, a hardware or driver fault, or an unset-up software RAID",
        14 => "Windows hibernated/fast startup",
        15 => "the volume was not cleanly unmounted",
        16 => "the volume is already opened exclusively (mounted, or in use)",
        17 => "an unset-up software/fake RAID",
        19 => "not enough privilege to mount",
        20 => "out of memory",
        21 => "FUSE error (is the fuse module loaded and /dev/fuse there?)",
        _ => return format!("exit {code}"),
    };
    format!("exit {code}: {why}")
}

/// The processes serving FUSE mounts: those holding `/dev/fuse` open, and
/// with `node` given only those that also hold `node` open (ntfs-3g keeps
/// its device open). Read from `proc` (normally `/proc`); sorted.
pub fn fuse_daemons(proc: &Path, node: Option<&Path>) -> Vec<u32> {
    let node = node.map(|n| std::fs::canonicalize(n).unwrap_or_else(|_| n.to_path_buf()));
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let fds: Vec<PathBuf> = std::fs::read_dir(proc.join(pid.to_string()).join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .collect();
            fds.iter().any(|t| t == Path::new("/dev/fuse"))
                && node.as_ref().is_none_or(|n| fds.iter().any(|t| t == n))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be
/// reaped) according to `proc`.
pub fn has_exited(proc: &Path, pid: u32) -> bool {
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Waits until every process of `pids` has exited, up to `limit`; returns
/// those still running then.
pub fn wait_exited(proc: &Path, pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| !has_exited(proc, p))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts a FUSE mount of `node` at `at` (or any mount: without a FUSE
/// daemon this is a plain unmount) after a sync, then waits up to `limit`
/// for the daemons that served it to exit: only then has ntfs-3g written
/// everything and closed the device. (For a `fuseblk` mount, ntfs-3g's block
/// device mounts, the kernel already waits for the daemon to close the
/// volume before the unmount returns.)
pub fn unmount_fuse(at: &Path, node: &Path, limit: Duration) -> Result<(), String> {
    let daemons = fuse_daemons(Path::new("/proc"), Some(node));
    rustix::fs::sync();
    rustix::mount::unmount(at, rustix::mount::UnmountFlags::empty())
        .map_err(|e| format!("unmount {}: {}", at.display(), io::Error::from(e)))?;
    let left = wait_exited(Path::new("/proc"), &daemons, limit);
    if !left.is_empty() {
        return Err(format!(
            "{} unmounted, but its FUSE daemon (pid {left:?}) is still running after {} s: \
             the volume may not be fully written yet",
            at.display(),
            limit.as_secs()
        ));
    }
    Ok(())
}

/// Filesystem types of the network destinations (`/proc/mounts`' third
/// field): the kernel's NFS client (v2/v3 `nfs`, v4 `nfs4`) and SMB client.
pub const NETWORK_FSTYPES: &[&str] = &["nfs", "nfs4", "cifs", "smb3"];

/// How long a network destination's unmount may take before it is forced:
/// writing back what is cached goes to a server that may be gone.
pub const NETWORK_UNMOUNT_WAIT: Duration = Duration::from_secs(20);

/// Unmounts `at`, waiting at most `limit`; then forces it (MNT_FORCE: the
/// NFS and SMB clients abort the requests still waiting for a dead
/// server) and, if it still does not go, detaches it (MNT_DETACH). The
/// unmount runs on its own thread, so a hung server never blocks the
/// caller for longer than about twice `limit`. Ok with a note when it had
/// to be forced or detached (data not yet written may be lost then).
pub fn unmount_bounded(at: &Path, limit: Duration) -> Result<Option<String>, String> {
    use rustix::mount::{unmount, UnmountFlags};
    let run = |flags: UnmountFlags| {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = at.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(unmount(&p, flags).map_err(io::Error::from));
        });
        rx.recv_timeout(limit).ok()
    };
    match run(UnmountFlags::empty()) {
        Some(Ok(())) => return Ok(None),
        Some(Err(e)) if e.raw_os_error() != Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            return Err(format!("unmount {}: {e}", at.display()))
        }
        _ => {}
    }
    if let Some(Ok(())) = run(UnmountFlags::FORCE) {
        return Ok(Some(format!(
            "{}: the server did not answer within {} s; unmounted by force (what was not \
             written yet is lost)",
            at.display(),
            limit.as_secs()
        )));
    }
    match unmount(at, UnmountFlags::DETACH) {
        Ok(()) => Ok(Some(format!(
            "{}: busy or the server is not answering; detached (it goes when no longer in use)",
            at.display()
        ))),
        Err(e) => Err(format!("unmount {}: {}", at.display(), io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: `block/<disk>/<part>/partition`, `class/block` links.
    fn fake_sys(disks: &[(&str, &[&str])]) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let sys = std::env::temp_dir().join(format!(
            "blockdev-sys-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(sys.join("class/block")).unwrap();
        for (disk, parts) in disks {
            let d = sys.join("block").join(disk);
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(&d, sys.join("class/block").join(disk)).unwrap();
            for (i, p) in parts.iter().enumerate() {
                std::fs::create_dir_all(d.join(p)).unwrap();
                std::fs::write(d.join(p).join("partition"), format!("{}\n", i + 1)).unwrap();
                std::os::unix::fs::symlink(d.join(p), sys.join("class/block").join(p)).unwrap();
            }
        }
        sys
    }

    #[test]
    fn a_bounded_unmount_unmounts_and_says_what_is_not_mounted() {
        let d = std::env::temp_dir().join(format!("blockdev-umount-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &d,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs needs root: {e}"));
        assert_eq!(unmount_bounded(&d, Duration::from_secs(5)), Ok(None));
        let e = unmount_bounded(&d, Duration::from_secs(5)).unwrap_err();
        assert!(
            e.contains("unmount") && e.contains("nvalid argument"),
            "{e}"
        );
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn scopes_count_and_order_devices() {
        let sys = fake_sys(&[
            ("sdaa", &[]),
            ("sdb", &["sdb1", "sdb2"]),
            ("sr0", &[]),
            ("loop0", &[]),
            ("md127", &[]),
            ("fd0", &[]),
            ("nbd0", &["nbd0p1"]),
            ("nbd1", &[]),
        ]);
        // nbd0 is attached, nbd1 an idle slot.
        for n in ["nbd0", "nbd0p1"] {
            std::fs::write(sys.join("class/block").join(n).join("size"), "2048\n").unwrap();
        }
        std::fs::write(sys.join("class/block/nbd1/size"), "0\n").unwrap();
        let list = |s| block_devices(&sys, s).unwrap();
        assert_eq!(list(Scope::Disks), ["fd0", "sdb", "sr0", "nbd0", "sdaa"]);
        assert_eq!(list(Scope::DataDisks), ["nbd0", "sdaa", "sdb"]);
        assert_eq!(
            list(Scope::Guarded),
            ["fd0", "sdaa", "sdb", "sdb1", "sdb2", "sr0"]
        );
        assert_eq!(
            list(Scope::Destinations),
            ["fd0", "nbd0", "nbd0p1", "sdaa", "sdb", "sdb1", "sdb2"]
        );
        assert_eq!(system_disks(&sys), ["nbd0", "sdaa", "sdb"]);
        assert_eq!(
            partitions(&sys, "sdb"),
            [(1, "sdb1".to_string()), (2, "sdb2".to_string())]
        );
        assert!(partitions(&sys, "sdaa").is_empty());
        assert_eq!(disk_of(&sys, "sdb2"), "sdb");
        assert_eq!(disk_of(&sys, "sdb"), "sdb");
        assert!(!Scope::Guarded.counts("nbd3") && !Scope::Guarded.counts("dm-0"));
        assert!(Scope::DataDisks.counts("nbd3") && !Scope::DataDisks.counts("dm-0"));
        let err = block_devices(&sys.join("nowhere"), Scope::Disks).unwrap_err();
        assert!(err.to_string().contains("nowhere/block"), "{err}");
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn a_node_is_named_by_its_device_numbers() {
        // /dev/loop0 is 7:0 on every Linux with the loop driver.
        let sys = fake_sys(&[("dm-3", &[]), ("sdb", &[])]);
        std::fs::write(sys.join("class/block/dm-3/dev"), "7:0\n").unwrap();
        std::fs::write(sys.join("class/block/sdb/dev"), "8:16\n").unwrap();
        assert_eq!(
            name_of_node(&sys, Path::new("/dev/loop0")).as_deref(),
            Some("dm-3")
        );
        // Not a block device node: no name.
        assert_eq!(name_of_node(&sys, &sys.join("class/block/sdb/dev")), None);
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn mounts_parse_with_escapes() {
        let m = parse_mounts(
            "/dev/sdb1 /mnt/dest/my\\040disk exfat rw 0 0\nproc /proc proc rw 0 0\nshort line\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "/dev/sdb1");
        assert_eq!(m[0].1, "/mnt/dest/my disk");
        assert_eq!(m[1].2, "rw");
        // Three octal digits past a byte stay as written (no overflow).
        assert_eq!(unescape("a\\040b\\011\\777\\04"), "a b\t\\777\\04");
    }
}
