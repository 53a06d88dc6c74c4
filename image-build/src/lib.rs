//! Builds the appliance's boot files: `vmlinuz` (Debian's signed kernel,
//! unmodified) and `initramfs.img` (zstd-compressed cpio newc with the
//! `rescue` binary as `/init`, busybox, and the storage/filesystem/NIC module
//! closure with a filtered module index).
//!
//! Library API used by the QEMU harness and tests:
//! - [`cpio_newc`]: writes a newc archive from [`CpioEntry`]s (file, dir,
//!   symlink, char device), uid/gid 0, mtime 0, inode numbers in entry order;
//!   [`parse_newc`] reads one back.
//! - [`extra_initrd`]: a small uncompressed archive of a few files to append
//!   to `out/initramfs.img`; [`append_initrd`] does the appending with the
//!   4-byte alignment the kernel needs between archives (the zstd image's
//!   length is usually not a multiple of 4).
//! - [`module_closure`]: the modules to ship, pure over the text of
//!   modules.dep / modules.alias / modules.softdep / modules.builtin;
//!   [`select_modules`] does the same over a loaded index ([`load_index`]).
//! - [`initramfs_entries`], [`compress`]: the image itself, reproducibly
//!   (same inputs, same bytes: entries sorted by path, no host metadata).
//! - [`media`]: the USB stick image and the hybrid ISO; [`sums`]: their
//!   SHA-256 and the `SHA256SUMS` file.
//! - [`debprog`]: a Debian program with its loader and the closure of its
//!   libraries from Debian's packages; [`ntfs3g`] (NTFS destinations) and
//!   [`dropbear`] (the remote console) use it, added with [`with_files`].
//! - [`firmware`]: the firmware the shipped modules name, from Debian's
//!   non-free-firmware packages, and the list of what none of them holds.

pub mod cpio;
pub mod debprog;
pub mod dropbear;
pub mod firmware;
pub mod media;
pub mod ntfs3g;
pub mod pxe;
pub mod sums;

pub use cpio::{append_initrd, cpio_newc, extra_initrd, parse_newc, CpioEntry, EntryKind};
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
    // FAT's I/O charset (Debian's default; see dest::mount_options)
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
    "efivarfs",
    // md RAID, loop, nbd, fuse
    "md_mod",
    // device-mapper: LVM logical volumes (rescue lvm activate)
    "dm_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
    "loop",
    "nbd",
    "fuse",
    // NICs (issue 21): Intel, Broadcom, Mellanox/NVIDIA, Realtek, VMware,
    // virtio (above); firmware they name is listed by image-build
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "ice",
    "tg3",
    "bnx2",
    "bnx2x",
    "bnxt_en",
    "mlx4_en",
    "mlx5_core",
    "r8169",
    "vmxnet3",
    // network destinations: the kernel's NFS (v3, v4) and SMB clients
    "nfs",
    "nfsv3",
    "nfsv4",
    "cifs",
    // cifs's soft dependencies (modinfo softdep: gcm ccm aead2 sha512
    // sha256 cmac aes nls md5 hmac ecb); without gcm/ccm an SMB 3 mount
    // fails "crypto alloc failed" and falls back to SMB 2.1 (measured)
    "gcm",
    "ccm",
    // both build on ctr(aes)
    "ctr",
    "cmac",
    "ecb",
    "sha512_generic",
    "aesni_intel",
    "ghash_clmulni_intel",
    // GCM's hash without PCLMULQDQ (QEMU's TCG CPUs lack it)
    "ghash_generic",
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
    let version = single_kernel_version(&root.join("lib/modules"))?;
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
    fetch_package_with(cache, package, &[])
}

/// [`fetch_package`] with options for apt-get (`-o Name=Value` pairs, e.g.
/// a private sources list: see [`firmware::AptConfig`]).
pub fn fetch_package_with(
    cache: &Path,
    package: &str,
    apt_options: &[String],
) -> Result<PathBuf, Error> {
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
                .args(apt_options)
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

/// The one directory name under `lib/modules` of an extracted kernel
/// package: that is the kernel version.
fn single_kernel_version(lib_modules: &Path) -> Result<String, Error> {
    let mut names: Vec<String> = std::fs::read_dir(lib_modules)
        .map_err(|e| format!("{}: {e}", lib_modules.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "{}: expected exactly one kernel version directory, found {names:?}",
            lib_modules.display()
        )),
    }
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

/// A tree given by the user (`--modules DIR`): used as it is when it has a
/// modules.dep; otherwise indexed in a copy under `scratch` (so depmod never
/// writes into the user's directory, which may be the host's /lib/modules).
/// The copy hard-links the `.ko` files (depmod only creates its index files,
/// by rename, so the originals are never written) and copies the rest.
pub fn prepare_module_tree(tree: KernelTree, scratch: &Path) -> Result<KernelTree, Error> {
    if tree.modules_dir.join("modules.dep").exists() {
        return Ok(tree);
    }
    let copy = scratch.join("lib/modules").join(&tree.version);
    let _ = std::fs::remove_dir_all(&copy);
    link_tree(&tree.modules_dir, &copy)?;
    let copied = KernelTree {
        modules_dir: copy,
        ..tree
    };
    eprintln!(
        "image-build: no modules.dep in the given tree; depmod -b {} {}",
        scratch.display(),
        copied.version
    );
    ensure_module_index(&copied)?;
    Ok(copied)
}

fn link_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
        let entry = entry.map_err(|e| err(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| err(&src, e))?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            // Linked files are copied; linked directories (`build`, `source`
            // point at kernel headers) are not module trees: left out.
            if std::fs::metadata(&src).is_ok_and(|m| m.is_file()) {
                std::fs::copy(&src, &dst).map_err(|e| err(&src, e))?;
            }
        } else {
            let is_module = src.extension().is_some_and(|x| x == "ko");
            if !(is_module && std::fs::hard_link(&src, &dst).is_ok()) {
                std::fs::copy(&src, &dst).map_err(|e| err(&src, e))?;
            }
        }
    }
    Ok(())
}

/// depmod writes one `softdep` line per MODULE_SOFTDEP of a module (btrfs
/// has four: blake2b-256, sha256, xxhash64, crypto-crc32c), and a reader
/// that keeps one line per module loses the others. This merges them: one
/// line per module, in order of first appearance, `pre:` and `post:` names
/// each once in order, in depmod's format `softdep MOD pre: A B post: C`.
pub fn merge_softdeps(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut merged: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(m) = words.next() else { continue };
        let entry = merged.entry(m.to_string()).or_insert_with(|| {
            order.push(m.to_string());
            Default::default()
        });
        let mut post = false;
        for w in words {
            match w {
                "pre:" => post = false,
                "post:" => post = true,
                name => {
                    let list = if post { &mut entry.1 } else { &mut entry.0 };
                    if !list.iter().any(|x| x == name) {
                        list.push(name.to_string());
                    }
                }
            }
        }
    }
    let mut out = String::new();
    for m in &order {
        let (pre, post) = &merged[m];
        out.push_str("softdep ");
        out.push_str(m);
        if !pre.is_empty() {
            out.push_str(" pre: ");
            out.push_str(&pre.join(" "));
        }
        if !post.is_empty() {
            out.push_str(" post: ");
            out.push_str(&post.join(" "));
        }
        out.push('\n');
    }
    out
}

/// Loads the module index of `modules_dir` like [`kmod::ModuleIndex::load`],
/// with the softdep lines merged ([`merge_softdeps`]).
pub fn load_index(modules_dir: &Path) -> Result<ModuleIndex, Error> {
    let read = |name: &str| std::fs::read_to_string(modules_dir.join(name));
    let dep = read("modules.dep")
        .map_err(|e| format!("{}: {e}", modules_dir.join("modules.dep").display()))?;
    Ok(ModuleIndex::parse(
        modules_dir,
        &dep,
        &read("modules.alias").unwrap_or_default(),
        &merge_softdeps(&read("modules.softdep").unwrap_or_default()),
        &read("modules.builtin").unwrap_or_default(),
    ))
}

/// [`select_modules`] straight from the text of a kernel's modules.dep,
/// modules.alias, modules.softdep and modules.builtin: the closure of
/// `wanted` (hard dependencies and `pre:` softdeps, resolved through the
/// aliases; `-` and `_` are the same), in load order, and the warnings.
pub fn module_closure(
    dep: &str,
    alias: &str,
    softdep: &str,
    builtin: &str,
    wanted: &[String],
) -> (Vec<String>, Vec<String>) {
    let index = ModuleIndex::parse(
        Path::new("/"),
        dep,
        alias,
        &merge_softdeps(softdep),
        builtin,
    );
    select_modules(&index, wanted)
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

/// The program interpreter (PT_INTERP) a 64-bit little-endian ELF file asks
/// for, i.e. whether it is dynamically linked; None for static (and
/// static-pie) executables and for anything that is not such an ELF file.
/// ELF64 header: e_phoff u64 at 0x20, e_phentsize u16 at 0x36, e_phnum u16
/// at 0x38; program header: p_type u32 at 0 (3 = PT_INTERP), p_offset u64 at
/// 8, p_filesz u64 at 32.
pub fn elf_interpreter(bytes: &[u8]) -> Option<String> {
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? == 3 {
            let off = usize::try_from(u64_at(ph + 8)?).ok()?;
            let len = usize::try_from(u64_at(ph + 32)?).ok()?;
            let raw = bytes.get(off..off.checked_add(len)?)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            return Some(String::from_utf8_lossy(&raw[..end]).into_owned());
        }
    }
    None
}

/// Reads a program for the initramfs, which has no C library: a dynamically
/// linked one could not start there.
fn read_static(path: &Path, hint: &str) -> Result<Vec<u8>, Error> {
    let bytes = read(path)?;
    match elf_interpreter(&bytes) {
        Some(interp) => Err(format!(
            "{} is dynamically linked (interpreter {interp}); the initramfs has no libc: {hint}",
            path.display()
        )),
        None => Ok(bytes),
    }
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
        read_static(
            &payload.rescue_bin,
            "build it for x86_64-unknown-linux-musl",
        )?,
    ));
    entries.push(CpioEntry::file(
        "bin/busybox",
        0o755,
        read_static(
            &payload.busybox,
            "use Debian's busybox-static (apt-get install busybox-static)",
        )?,
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
    let softdep: String = merge_softdeps(
        &std::fs::read_to_string(tree.modules_dir.join("modules.softdep")).unwrap_or_default(),
    )
    .lines()
    .filter(|l| keep_line(l.split_whitespace().nth(1)))
    .map(|l| format!("{l}\n"))
    .collect();
    entries.push(CpioEntry::file(&format!("{kdir}/modules.dep"), 0o644, dep));
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.alias"),
        0o644,
        alias,
    ));
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.softdep"),
        0o644,
        softdep.into_bytes(),
    ));
    // What is built in stays true whatever is shipped: kept whole.
    let builtin = std::fs::read(tree.modules_dir.join("modules.builtin")).unwrap_or_default();
    entries.push(CpioEntry::file(
        &format!("{kdir}/modules.builtin"),
        0o644,
        builtin,
    ));
    if let Ok(modinfo) = std::fs::read(tree.modules_dir.join("modules.builtin.modinfo")) {
        entries.push(CpioEntry::file(
            &format!("{kdir}/modules.builtin.modinfo"),
            0o644,
            modinfo,
        ));
    }

    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(entries)
}

/// `entries` with `extra` added: parents before children (missing parent
/// directories created), sorted as [`initramfs_entries`] sorts, an entry
/// already there kept over an added one of the same path.
pub fn with_files(mut entries: Vec<CpioEntry>, extra: Vec<CpioEntry>) -> Vec<CpioEntry> {
    let mut dirs = BTreeSet::new();
    for e in &extra {
        let mut acc = String::new();
        let parts: Vec<&str> = e.path.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            dirs.insert(acc.clone());
        }
    }
    entries.extend(extra);
    entries.extend(dirs.iter().map(|d| CpioEntry::dir(d)));
    // Stable: of equal paths the one that was there first comes first.
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    entries.dedup_by(|later, first| later.path == first.path);
    entries
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
