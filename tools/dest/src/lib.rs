//! Destinations for images and extracted files: filesystems on disks other
//! than the source that the appliance can mount read-write, and the one
//! write path that turns a disk's read-only guard off for them.
//!
//! Everything is found from sysfs (`class/block/*`: a `partition` file
//! marks a partition, its parent directory is the disk) and the device
//! nodes' superblocks; mounts under [`MOUNT_ROOT`]`/<name>`.

pub mod cli;
pub mod network;

use blockdev::BlockDevice;
use fsmagic::Kind;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where destinations are mounted: `/mnt/dest/<kernel name>`.
pub const MOUNT_ROOT: &str = "/mnt/dest";

/// The label image-build gives the boot stick's data partition; it is
/// offered first.
pub const DATA_LABEL: &str = "RESCUEDATA";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Kernel name, e.g. `vda`, `sdb2`.
    pub name: String,
    /// Device node, e.g. `/dev/sdb2`.
    pub device: String,
    /// The whole disk it is on (itself for an unpartitioned disk).
    pub disk: String,
    pub filesystem: &'static str,
    pub label: Option<String>,
    pub size_bytes: u64,
    /// From statvfs when mounted, else from the superblock where it
    /// records it (see `free_is_estimate`); None when unknown until mounted.
    pub free_bytes: Option<u64>,
    pub free_is_estimate: bool,
    pub mounted_at: Option<String>,
    /// The boot stick's `RESCUEDATA` partition.
    pub rescue_data: bool,
    /// An NFS export or SMB share ([`network`]): `device` is its URL,
    /// `disk` empty; listed only while mounted.
    pub network: bool,
    /// Why it cannot be used, when it cannot (held by md/dm, on the source).
    pub unusable: Option<String>,
    /// Why it is not offered by default: its disk holds what is being
    /// rescued (an ESXi system, VMFS, an md member). Mounting it needs the
    /// device named and a second confirmation.
    #[serde(rename = "unsafe")]
    pub unsafe_reason: Option<String>,
}

impl Candidate {
    /// Offered as a destination by default: neither unusable nor on a disk
    /// being rescued.
    pub fn usable(&self) -> bool {
        self.unusable.is_none() && self.unsafe_reason.is_none()
    }

    /// Why it is not offered, if it is not.
    pub fn not_offered_because(&self) -> Option<&str> {
        self.unusable.as_deref().or(self.unsafe_reason.as_deref())
    }
}

/// The candidates that are not offered, each with why, under a "Not
/// offered:" heading indented by `margin` columns (empty when there are
/// none); wrapped at 79 columns. Shared by `dest list` and the menu.
pub fn render_not_offered(list: &[Candidate], margin: usize) -> String {
    let mut s = String::new();
    let pad = " ".repeat(margin);
    for c in list {
        let Some(why) = c.not_offered_because() else {
            continue;
        };
        if s.is_empty() {
            s = format!("{pad}Not offered:\n");
        }
        s.push_str(&screen::wrap_words(
            &format!("{pad}    {:<12} {:<6} {why}", c.device, c.filesystem),
            screen::SCREEN_WIDTH,
            margin + 24,
        ));
    }
    s
}

/// What a disk holds that a rescue may be after, from its partition table
/// and the signatures on it and its partitions (`nodes`: the disk's and
/// its partitions' device nodes): "an ESXi system (boot banks)", "a VMFS
/// datastore (sda3)", "an md RAID member (sdb5 of DiskStation:2)". Empty for a disk that
/// holds none of these.
pub fn rescue_contents(disk_node: &Path, part_nodes: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dev) = blockdev::Device::open(disk_node) {
        // The layouts gpt recognises are ESXi boot disks (5.x/6.x, 7/8).
        if gpt::summarize(&dev).layout.is_some() {
            out.push("an ESXi system (boot banks)".into());
        }
    }
    for node in std::iter::once(disk_node).chain(part_nodes.iter().map(PathBuf::as_path)) {
        let name = node
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(dev) = blockdev::Device::open(node) else {
            continue;
        };
        if let Some(v) = vmfs::detect(&dev) {
            let what = if v.local {
                "a VMFS-L system volume"
            } else if v.fs_uuid.is_some() {
                "a VMFS datastore"
            } else {
                "a VMFS extent"
            };
            out.push(format!("{what} ({name})"));
        }
        if let Ok(Some(sb)) = mdraid::find_superblock(&dev) {
            out.push(format!(
                "an md RAID member ({name}{})",
                sb.name.map(|n| format!(" of {n}")).unwrap_or_default()
            ));
        }
    }
    out
}

/// Whether a FAT filesystem is the boot partition of a rescue medium
/// (this appliance's stick, or another Linux boot stick): its root holds a
/// kernel and a boot loader configuration that loads an initramfs. An image written
/// there could fill the partition the machine boots from.
pub fn is_boot_partition(dev: &dyn BlockDevice) -> bool {
    let Ok(v) = fat::Volume::open(dev, 0) else {
        return false;
    };
    // The reader looks up 8.3 names: `initramfs.img` has only a long name,
    // so it is found through the boot configuration that loads it.
    let loads_initramfs = |cfg: &str| {
        v.read_file(cfg).is_ok_and(|b| {
            let t = String::from_utf8_lossy(&b);
            t.contains("initramfs") || t.contains("initrd")
        })
    };
    v.exists("vmlinuz") && (loads_initramfs("syslinux.cfg") || loads_initramfs("EFI/BOOT/grub.cfg"))
}

/// "disk sda holds an ESXi system (...), a VMFS datastore (sda3)".
fn unsafe_reason(disk: &str, holds: &[String]) -> Option<String> {
    (!holds.is_empty()).then(|| format!("disk {disk} holds {}", holds.join(", ")))
}

use blockdev::sys::{disk_of, parse_mounts, ModuleLoader};

/// Every filesystem on the machine's disks, the boot stick's `RESCUEDATA`
/// partition first, then the usable ones, then by name. None is left out:
/// what cannot take files is listed with why ([`Candidate::unusable`]):
/// on `exclude_disks` (the source), held by md/dm, a device that cannot be
/// opened, a format the appliance does not write ([`cannot_write`]: swap,
/// ISO9660, LVM2 PV, FAT12) or an NTFS volume ntfs-3g would not write to.
/// Only devices with no known signature at all are not listed.
pub fn list(
    sysfs: &Path,
    dev_dir: &Path,
    mounts: &str,
    exclude_disks: &[String],
) -> Vec<Candidate> {
    let mounted = parse_mounts(mounts);
    let mut out = Vec::new();
    let Ok(names) = blockdev::sys::block_devices(sysfs, blockdev::sys::Scope::Destinations) else {
        return out;
    };
    // What each disk holds that is being rescued, looked at once a disk.
    let mut holdings: Vec<(String, Vec<String>)> = Vec::new();
    for name in names.clone() {
        let class = sysfs.join("class/block").join(&name);
        let node = dev_dir.join(&name);
        let disk = disk_of(sysfs, &name);
        let dev = match blockdev::Device::open(&node) {
            Ok(d) => d,
            // No medium (an empty card reader), or no node (the device went
            // away since sysfs was read): nothing there to list.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOMEDIUM.raw_os_error()) =>
            {
                continue
            }
            Err(e) => {
                out.push(unreadable(
                    &name,
                    &disk,
                    &class,
                    format!("cannot be opened: {e}"),
                ));
                continue;
            }
        };
        // No signature at all: not a filesystem (free space, a partition
        // table, a format none of the appliance's tools know).
        let Some(sig) = fsmagic::detect(&dev) else {
            continue;
        };
        if !holdings.iter().any(|(d, _)| *d == disk) {
            let parts: Vec<PathBuf> = names
                .iter()
                .filter(|n| **n != disk && disk_of(sysfs, n) == disk)
                .map(|n| dev_dir.join(n))
                .collect();
            holdings.push((disk.clone(), rescue_contents(&dev_dir.join(&disk), &parts)));
        }
        let boot = matches!(sig.kind, Kind::Fat16 | Kind::Fat32) && is_boot_partition(&dev);
        let unsafe_reason = if boot {
            Some("the boot partition of a rescue medium (it holds vmlinuz and boots it)".into())
        } else {
            holdings
                .iter()
                .find(|(d, _)| *d == disk)
                .and_then(|(d, holds)| unsafe_reason(d, holds))
        };
        let device = format!("/dev/{name}");
        let mounted_at = mounted
            .iter()
            .find(|(d, _, _)| *d == device || Path::new(d) == node)
            .map(|(_, at, _)| at.clone());
        let (free_bytes, free_is_estimate) = match &mounted_at {
            Some(at) => (statvfs_free(at), false),
            None => match fsmagic::space(&dev, sig.kind) {
                Some(s) => (Some(s.free_bytes), s.estimate),
                None => (None, false),
            },
        };
        let holders = std::fs::read_dir(class.join("holders"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let unusable = if exclude_disks.iter().any(|d| *d == disk || *d == name) {
            Some("on the source disk".to_string())
        } else if !holders.is_empty() {
            Some(format!("in use by {}", holders.join(", ")))
        } else {
            cannot_write(&dev, sig.kind)
        };
        let rescue_data = sig
            .label
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(DATA_LABEL));
        out.push(Candidate {
            name: name.clone(),
            device,
            disk,
            filesystem: sig.kind.name(),
            label: sig.label,
            size_bytes: dev.size(),
            free_bytes,
            free_is_estimate,
            mounted_at,
            rescue_data,
            network: false,
            unusable,
            unsafe_reason,
        });
    }
    out.extend(network::list(mounts));
    out.sort_by_key(|c| (!c.rescue_data, !c.usable(), c.name.clone()));
    out
}

/// Why a filesystem of `kind` on `dev` cannot take files here, if it
/// cannot: formats the appliance does not write, and NTFS volumes ntfs-3g
/// would only mount read-only (Windows hibernated, fast startup, an unclean
/// journal).
pub fn cannot_write(dev: &dyn BlockDevice, kind: Kind) -> Option<String> {
    let why = match kind {
        Kind::Ntfs => {
            return match fsmagic::ntfs::write_blocker(dev) {
                Ok(b) => b.map(|b| b.reason().to_string()),
                // ntfs-3g reads the volume itself at mount time, and a
                // read-only result is refused then: not decided here.
                Err(e) => {
                    log::info!("dest: NTFS state unknown: {e}");
                    None
                }
            };
        }
        Kind::Iso9660 => "ISO9660 is read-only (a CD/DVD image, or an ISO written to a stick)",
        Kind::Swap => "swap space, not a filesystem",
        Kind::LvmPv => "an LVM2 physical volume: its logical volumes are not activated here",
        Kind::Fat12 => "FAT12, a floppy-sized format: too small for images",
        _ if kind.kernel_mount().is_none() => "this appliance cannot write to this format",
        _ => return None,
    };
    Some(why.to_string())
}

/// A device that could not be read, listed with why (never left out).
fn unreadable(name: &str, disk: &str, class: &Path, why: String) -> Candidate {
    let sectors: u64 = std::fs::read_to_string(class.join("size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Candidate {
        name: name.to_string(),
        device: format!("/dev/{name}"),
        disk: disk.to_string(),
        filesystem: "?",
        label: None,
        size_bytes: sectors.saturating_mul(512),
        free_bytes: None,
        free_is_estimate: false,
        mounted_at: None,
        rescue_data: false,
        network: false,
        unusable: Some(why),
        unsafe_reason: None,
    }
}

fn statvfs_free(at: &str) -> Option<u64> {
    let s = rustix::fs::statvfs(at).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// ntfs-3g's options for a destination, besides `rw,norecover`
/// ([`blockdev::sys::mount_ntfs3g`]): names Windows could not open
/// (`" * : < > ? \\ |`, a trailing dot or space, CON, NUL...) are refused
/// with EINVAL instead of created (`windows_names`: the disk goes back to a
/// Windows machine); no access-time writes (`noatime`, as the kernel mounts
/// get); writes passed on in 128 KiB pieces rather than 4 KiB
/// (`big_writes`). Nothing that hides a failure: no `recover`, no
/// `remove_hiberfile`, no `force`.
pub const NTFS_OPTIONS: &[&str] = &["windows_names", "noatime", "big_writes"];

/// The mount point a destination gets.
pub fn mount_point(name: &str) -> PathBuf {
    Path::new(MOUNT_ROOT).join(name)
}

/// Mounts `c` read-write at [`mount_point`]: loads its filesystem's
/// modules, turns the block layer's read-only flag off for exactly this
/// device (and its disk's whole-device flag, which the kernel also checks
/// for partitions), mounts, and on any failure puts the flags back. A
/// filesystem on a disk being rescued ([`Candidate::unsafe_reason`]) is
/// refused unless `on_rescued_disk` says the user confirmed that too.
pub fn mount(
    c: &Candidate,
    dev_dir: &Path,
    load: ModuleLoader<'_>,
    on_rescued_disk: bool,
) -> Result<PathBuf, String> {
    if let Some(why) = &c.unusable {
        return Err(format!("{}: not usable as a destination: {why}", c.device));
    }
    if let (Some(why), false) = (&c.unsafe_reason, on_rescued_disk) {
        return Err(format!(
            "{}: not offered as a destination: {why}; writing there could destroy what is \
             being rescued",
            c.device
        ));
    }
    if let Some(at) = &c.mounted_at {
        return Ok(PathBuf::from(at));
    }
    let node = dev_dir.join(&c.name);
    let disk = (c.disk != c.name).then(|| dev_dir.join(&c.disk));
    let at = mount_point(&c.name);
    let fstype = if Kind::from_name(c.filesystem) == Some(Kind::Ntfs) {
        let m = blockdev::sys::NtfsMount {
            node: &node,
            at: &at,
            read_only: false,
            options: NTFS_OPTIONS,
            program: Path::new(blockdev::sys::NTFS_3G),
        };
        match blockdev::sys::mount_ntfs3g(&m, disk.as_deref(), load) {
            Ok(notes) if notes.is_empty() => {}
            Ok(notes) => log::info!("dest: ntfs-3g on {}: {notes}", c.device),
            Err(e) => {
                log::info!("dest: mount of {} (ntfs-3g) failed: {e}", c.device);
                return Err(e);
            }
        }
        "ntfs-3g"
    } else {
        let fs = Kind::from_name(c.filesystem)
            .and_then(Kind::kernel_mount)
            .ok_or_else(|| format!("{}: {} cannot be mounted here", c.device, c.filesystem))?;
        let data = fs.options.and_then(|o| std::ffi::CString::new(o).ok());
        let m = blockdev::sys::Mount {
            node: &node,
            at: &at,
            fstype: fs.fstype,
            modules: fs.modules,
            data: data.as_deref(),
            read_only: false,
        };
        if let Err(e) = blockdev::sys::mount(&m, disk.as_deref(), load) {
            log::info!("dest: mount of {} ({}) failed: {e}", c.device, fs.fstype);
            return Err(e);
        }
        fs.fstype
    };
    log::info!(
        "dest: {} ({fstype}{}) mounted read-write at {}{}",
        c.device,
        c.label
            .as_deref()
            .map(|l| format!(" \"{l}\""))
            .unwrap_or_default(),
        at.display(),
        c.unsafe_reason
            .as_deref()
            .map(|w| format!(" although {w} (confirmed twice)"))
            .unwrap_or_default()
    );
    Ok(at)
}

/// The boot stick's RESCUEDATA partition as a directory, mounted
/// read-write (it is the appliance's own) if it is not yet; None when there
/// is none. For files that must outlive the boot: undo files, the log.
pub fn data_partition_dir(
    sysfs: &Path,
    dev_dir: &Path,
    load: ModuleLoader<'_>,
) -> Result<Option<PathBuf>, String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let cands = list(sysfs, dev_dir, &mounts, &[]);
    let Some(data) = cands.iter().find(|c| c.rescue_data && c.usable()) else {
        return Ok(None);
    };
    if let Some(at) = &data.mounted_at {
        return Ok(Some(PathBuf::from(at)));
    }
    log::info!(
        "mounting the boot stick's data partition {} (RESCUEDATA) to keep a file there",
        data.device
    );
    mount(data, dev_dir, load, false).map(Some)
}

/// Unmounts a destination (by device or mount point), then sets its
/// device read-only again, and its disk too unless another of the disk's
/// partitions is still mounted.
pub fn unmount(sysfs: &Path, dev_dir: &Path, mounts: &str, what: &str) -> Result<String, String> {
    if let Some(notes) = unmount_network(mounts, what)? {
        return Ok(notes);
    }
    let all = parse_mounts(mounts);
    let what_dev = if what.starts_with('/') {
        what.to_string()
    } else {
        format!("/dev/{what}")
    };
    let (dev, at, _) = all
        .iter()
        .find(|(d, a, _)| {
            *d == what_dev
                || a == what.trim_end_matches('/')
                || *a == mount_point(what).display().to_string()
        })
        .cloned()
        .ok_or_else(|| format!("{what}: not mounted"))?;
    if !Path::new(&at).starts_with(MOUNT_ROOT) {
        return Err(format!(
            "{at}: not a destination mount (only {MOUNT_ROOT}/* are unmounted here)"
        ));
    }
    let name = dev.trim_start_matches("/dev/").to_string();
    // Syncs, unmounts, and for an ntfs-3g mount waits for ntfs-3g to have
    // written everything and exited.
    blockdev::sys::unmount_fuse(
        Path::new(&at),
        &dev_dir.join(&name),
        blockdev::sys::FUSE_EXIT_WAIT,
    )?;
    let _ = std::fs::remove_dir(&at);
    let disk = disk_of(sysfs, &name);
    log::info!("dest: {dev} unmounted from {at}");
    let mut notes = format!("{dev} unmounted from {at}; read-only again");
    if let Err(e) = blockdev::set_read_only(dev_dir.join(&name), true) {
        notes.push_str(&format!(" (failed: {e})"));
    }
    let others = all.iter().any(|(d, a, _)| {
        *a != at && d.starts_with("/dev/") && disk_of(sysfs, d.trim_start_matches("/dev/")) == disk
    });
    if disk != name && !others {
        if let Err(e) = blockdev::set_read_only(dev_dir.join(&disk), true) {
            notes.push_str(&format!(" ({disk}: {e})"));
        }
    }
    Ok(notes)
}

/// Unmounts a network destination named by its mount point, its name
/// under [`MOUNT_ROOT`] or its URL; None when `what` is none of those.
/// A server that does not answer gets [`blockdev::sys::NETWORK_UNMOUNT_WAIT`],
/// then the unmount is forced.
fn unmount_network(mounts: &str, what: &str) -> Result<Option<String>, String> {
    let want = what.trim_end_matches('/');
    let url = network::NetUrl::parse(what).ok();
    let Some((src, at, fs)) = network::entries(mounts).into_iter().find(|(src, at, fs)| {
        at == want
            || *at == mount_point(want).display().to_string()
            || network::url_of_source(src, fs) == want
            || url
                .as_ref()
                .is_some_and(|u| *at == mount_point(&u.mount_name()).display().to_string())
    }) else {
        return Ok(None);
    };
    // No sync first: it could wait forever on a server that is gone; the
    // unmount writes back what is cached, within its bound.
    let note = blockdev::sys::unmount_bounded(Path::new(&at), blockdev::sys::NETWORK_UNMOUNT_WAIT)?;
    let _ = std::fs::remove_dir(&at);
    let url = network::url_of_source(&src, &fs);
    log::info!(
        "dest: {url} unmounted from {at}{}",
        note.as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    Ok(Some(match note {
        Some(n) => format!("{url} unmounted from {at}: {n}"),
        None => format!("{url} unmounted from {at}"),
    }))
}

use screen::human_size as human;

/// The table `rescue dest list` prints: the destinations offered, then
/// under their own heading the filesystems not offered, each with why.
pub fn render(list: &[Candidate]) -> String {
    use std::fmt::Write;
    if list.is_empty() {
        return "No mountable filesystem (ext2/3/4, xfs, btrfs, FAT, exFAT, NTFS) found on the disks.\n"
            .into();
    }
    let row = |s: &mut String, i: usize, c: &Candidate| {
        let free = match c.free_bytes {
            Some(f) if c.free_is_estimate => format!("~{}", human(f)),
            Some(f) => human(f),
            None => "?".into(),
        };
        let label = c.label.clone().unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:>2}  {:<12} {:<6} {:<12} {:>10} {:>11}  {}",
            i + 1,
            c.device,
            c.filesystem,
            label,
            human(c.size_bytes),
            free,
            match &c.mounted_at {
                Some(at) => format!("mounted at {at}"),
                None => "not mounted".into(),
            },
        );
    };
    let mut s = String::new();
    let offered: Vec<&Candidate> = list.iter().filter(|c| c.usable()).collect();
    if offered.is_empty() {
        s.push_str(
            "No usable destination: every filesystem found is on a disk being rescued or in use.\n",
        );
    } else {
        s.push_str(" #  DEVICE       FS     LABEL          SIZE        FREE  STATE\n");
        for (i, c) in offered.iter().enumerate() {
            row(&mut s, i, c);
            if c.rescue_data {
                s.push_str("    (boot stick data partition)\n");
            }
        }
    }
    s.push_str(&render_not_offered(list, 0));
    s
}

#[cfg(test)]
mod tests;
