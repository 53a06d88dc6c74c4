//! Builds the appliance's boot files: `vmlinuz` (Debian's signed kernel,
//! unmodified) and `initramfs.img` (zstd-compressed cpio newc with the
//! `rescue` binary as `/init`, busybox, and the storage/filesystem/NIC module
//! closure with a filtered module index).
//!
//! Library API used by the QEMU harness: [`cpio_newc`], [`extra_initrd`]
//! (a small archive to append to the initramfs), [`select_modules`].

pub mod cpio;
pub mod media;
pub mod pxe;

pub use cpio::{cpio_newc, extra_initrd, parse_newc, CpioEntry, EntryKind};
use kmod::ModuleIndex;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules shipped (with their dependency closure). Grouped by purpose; a
/// name this kernel lacks or has built in is reported, not fatal.
/// Debian's 6.1 kernel has no in-kernel NTFS (neither ntfs3 nor ntfs).
pub const DEFAULT_MODULES: &[&str] = &[
    // SATA/AHCI, SCSI disks and CD, generic SCSI (SG_IO)
    "ahci",
    "ata_piix",
    "ata_generic",
    "sd_mod",
    "sr_mod",
    "sg",
    // NVMe
    "nvme",
    // RAID and SAS HBAs
    "megaraid_sas",
    "mpt3sas",
    "mptsas",
    "mptspi",
    "sym53c8xx",
    "hpsa",
    "smartpqi",
    "aacraid",
    "mpi3mr",
    "vmw_pvscsi",
    // virtio
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    // USB storage and keyboards
    "xhci_pci",
    "xhci_hcd",
    "ehci_pci",
    "ehci_hcd",
    "ohci_pci",
    "uhci_hcd",
    "usb_storage",
    "uas",
    "usbhid",
    "hid_generic",
    // filesystems for destinations and guest volumes
    "ext4",
    "xfs",
    "btrfs",
    "vfat",
    "exfat",
    "isofs",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "efivarfs",
    // md RAID, loop, nbd, fuse
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
    "loop",
    "nbd",
    "fuse",
    // server NICs
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "tg3",
    "bnx2",
    "bnxt_en",
    "vmxnet3",
];

pub type Error = String;

/// An extracted kernel: the image and its `lib/modules/<version>` tree.
#[derive(Clone, Debug)]
pub struct KernelTree {
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
    pub version: String,
    /// The Debian package it came from, if any.
    pub package: Option<String>,
}

pub(crate) fn run(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The exact kernel package `linux-image-amd64` depends on now, e.g.
/// `linux-image-6.1.0-56-amd64`. Runs `apt-get update` once if apt knows none.
pub fn resolve_kernel_package() -> Result<String, Error> {
    let find = || -> Option<String> {
        let out = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"])).ok()?;
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))
            .map(String::from)
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("image-build: apt knows no linux-image-amd64; running apt-get update");
    run(Command::new("apt-get").args(["update", "-q"]))?;
    find().ok_or_else(|| "apt-cache depends linux-image-amd64 names no kernel package".into())
}

/// Downloads (once) and extracts the kernel package into `cache`, and
/// generates its module index with depmod (the package ships none).
pub fn fetch_debian_kernel(cache: &Path) -> Result<KernelTree, Error> {
    let package = resolve_kernel_package()?;
    let root = fetch_package(cache, &package)?;
    let version = package
        .strip_prefix("linux-image-")
        .ok_or("unexpected kernel package name")?
        .to_string();
    let tree = KernelTree {
        vmlinuz: root.join("boot").join(format!("vmlinuz-{version}")),
        modules_dir: root.join("lib/modules").join(&version),
        version,
        package: Some(package),
    };
    ensure_module_index(&tree)?;
    Ok(tree)
}

/// Downloads (once) Debian package `package` into `cache` with `apt-get
/// download` and extracts it to `cache/<package>/`; returns that root.
pub fn fetch_package(cache: &Path, package: &str) -> Result<PathBuf, Error> {
    let root = cache.join(package);
    let done = root.join(".extracted");
    if done.exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let deb = match find_deb(cache, package) {
        Some(d) => d,
        None => {
            eprintln!("image-build: apt-get download {package}");
            run(Command::new("apt-get")
                .args(["download", package])
                .current_dir(cache))?;
            find_deb(cache, package).ok_or_else(|| {
                format!(
                    "apt-get download {package} left no .deb in {}",
                    cache.display()
                )
            })?
        }
    };
    let _ = std::fs::remove_dir_all(&root);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    std::fs::write(&done, package).map_err(|e| e.to_string())?;
    Ok(root)
}

fn find_deb(cache: &Path, package: &str) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// Runs `depmod -b BASE VERSION` when modules.dep is missing; the tree must
/// be laid out as `BASE/lib/modules/VERSION`.
pub fn ensure_module_index(tree: &KernelTree) -> Result<(), Error> {
    if tree.modules_dir.join("modules.dep").exists() {
        return Ok(());
    }
    let base = tree
        .modules_dir
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .filter(|b| b.join("lib/modules").join(&tree.version) == tree.modules_dir)
        .ok_or_else(|| {
            format!(
                "{} has no modules.dep and is not laid out as BASE/lib/modules/VERSION for depmod",
                tree.modules_dir.display()
            )
        })?;
    run(Command::new("depmod")
        .arg("-b")
        .arg(base)
        .arg(&tree.version))
    .map_err(|e| format!("{e}\n(depmod comes with the kmod package: apt-get install kmod)"))?;
    Ok(())
}

/// The modules to ship: the closure of `wanted` in load order, and one
/// warning per name this kernel does not have as a module.
pub fn select_modules(index: &ModuleIndex, wanted: &[String]) -> (Vec<String>, Vec<String>) {
    let mut done = HashSet::new();
    let mut order = Vec::new();
    let mut warnings = Vec::new();
    for w in wanted {
        let resolved = index.resolve(w);
        if resolved.is_empty() {
            warnings.push(format!("module {w}: not in this kernel; left out"));
            continue;
        }
        for m in resolved {
            if index.is_builtin(&m) {
                warnings.push(format!("module {w}: built into this kernel"));
                continue;
            }
            order.extend(index.load_order(&m, &mut done));
        }
    }
    (order, warnings)
}

/// What goes into the initramfs besides the kernel modules.
pub struct Payload {
    pub rescue_bin: PathBuf,
    pub busybox: PathBuf,
    /// Text of /etc/rescue-release.
    pub release: String,
}

/// Busybox applets to link, from `busybox --list`; never `init`/`linuxrc`
/// (PID 1 is rescue) nor a name of ours.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>, Error> {
    let out = run(Command::new(busybox).arg("--list")).map_err(|e| {
        format!("{e}\n(busybox comes from Debian's busybox-static package: apt-get install busybox-static)")
    })?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !matches!(*a, "init" | "linuxrc" | "rescue" | "busybox"))
        .map(String::from)
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every initramfs entry, sorted so that parents come before children.
pub fn initramfs_entries(
    payload: &Payload,
    applets: &[String],
    tree: &KernelTree,
    index: &ModuleIndex,
    modules: &[String],
) -> Result<Vec<CpioEntry>, Error> {
    let mut entries = Vec::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "mnt",
        "root",
        "etc",
        "bin",
        "lib",
        "lib/modules",
    ] {
        entries.push(CpioEntry::dir(d));
    }
    entries.push(CpioEntry::char_device("dev/console", 0o600, 5, 1));
    entries.push(CpioEntry::char_device("dev/null", 0o666, 1, 3));
    entries.push(CpioEntry::symlink("init", "bin/rescue"));
    entries.push(CpioEntry::symlink("sbin", "bin"));
    entries.push(CpioEntry::file(
        "bin/rescue",
        0o755,
        read(&payload.rescue_bin)?,
    ));
    entries.push(CpioEntry::file(
        "bin/busybox",
        0o755,
        read(&payload.busybox)?,
    ));
    for a in applets {
        entries.push(CpioEntry::symlink(&format!("bin/{a}"), "busybox"));
    }
    entries.push(CpioEntry::file(
        "etc/rescue-release",
        0o644,
        payload.release.clone().into_bytes(),
    ));

    let kdir = format!("lib/modules/{}", tree.version);
    let included: BTreeSet<&str> = modules.iter().map(|s| s.as_str()).collect();
    let mut dirs = BTreeSet::new();
    dirs.insert(kdir.clone());
    for m in modules {
        let rel = index
            .relative_path_of(m)
            .ok_or_else(|| format!("module {m} has no path in modules.dep"))?;
        let mut acc = kdir.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            acc = format!("{acc}/{p}");
            dirs.insert(acc.clone());
        }
        // Shipped byte for byte: the modules are signed for Secure Boot.
        entries.push(CpioEntry::file(
            &format!("{kdir}/{rel}"),
            0o644,
            read(&tree.modules_dir.join(rel))?,
        ));
    }
    for d in &dirs {
        entries.push(CpioEntry::dir(d));
    }
    let keep_line = |name_field: Option<&str>| {
        name_field.is_some_and(|n| included.contains(kmod::normalize(n).as_str()))
    };
    let filter = |file: &str, pick: &dyn Fn(&str) -> Option<String>| -> Result<Vec<u8>, Error> {
        let text = std::fs::read_to_string(tree.modules_dir.join(file)).unwrap_or_default();
        Ok(text
            .lines()
            .filter(|l| keep_line(pick(l).as_deref()))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes())
    };
    let dep = filter("modules.dep", &|l| {
        l.split(':').next().map(kmod::module_name_of)
    })?;
    let alias = filter("modules.alias", &|l| {
        l.split_whitespace().nth(2).map(String::from)
    })?;
    let softdep = filter("modules.softdep", &|l| {
        l.split_whitespace().nth(1).map(String::from)
    })?;
    entries.push(CpioEntry::file(&format!("{kdir}/modules.dep"), 0o644, dep));
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.alias"),
        0o644,
        alias,
    ));
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.softdep"),
        0o644,
        softdep,
    ));
    let builtin = std::fs::read(tree.modules_dir.join("modules.builtin")).unwrap_or_default();
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.builtin"),
        0o644,
        builtin,
    ));

    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(entries)
}

/// zstd level 19, single-threaded (deterministic); the kernel has RD_ZSTD.
pub fn compress(archive: &[u8]) -> Result<Vec<u8>, Error> {
    zstd::bulk::compress(archive, 19).map_err(|e| format!("zstd: {e}"))
}

/// Writes `bytes` to `path` via a temporary file and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
