//! The menu's list of a VM's disks: the VMDK descriptors in a VM folder
//! (of a VMFS datastore, or of this machine: copies on a USB disk), each
//! opened through its snapshot chain to show its size, chain depth and
//! format; the one chosen goes on to the guest flow ([`crate::guestmenu`]).
//! Also the overview's "open a VM disk file": a path typed in.

use crate::destmenu::ask;
use crate::guestmenu::{Flow, Target};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a VM's files are.
pub enum Folder {
    /// A folder on this machine.
    Host(PathBuf),
    /// A folder of a VMFS volume read from `devices`.
    Vmfs {
        volume: Arc<vmfs::Volume>,
        /// `/`-separated from the volume's root.
        path: String,
        /// The volume's sources (disks, partitions or images), for
        /// attaching (`--vmfs`).
        devices: Vec<String>,
        /// The datastore's label, for screens.
        label: String,
    },
}

impl Folder {
    /// The names of the files in the folder.
    fn names(&self) -> Result<Vec<String>, String> {
        match self {
            Folder::Host(dir) => Ok(std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Folder::Vmfs { volume, path, .. } => Ok(volume
                .read_dir(path)
                .map_err(|e| format!("{path}: {e}"))?
                .into_iter()
                .map(|e| e.name)
                .collect()),
        }
    }

    /// The folder's files for the VMDK reader.
    fn files(&self) -> Box<dyn vmdk::Files> {
        match self {
            Folder::Host(dir) => Box::new(vmdk::HostDir::new(dir)),
            Folder::Vmfs {
                volume,
                path,
                devices,
                ..
            } => {
                let inside = format!("{}/x", path.trim_end_matches('/'));
                let (folder, _) =
                    vmfs::vmdkfiles::VolumeFolder::of(volume.clone(), &inside, devices.join(","));
                Box::new(folder)
            }
        }
    }

    /// The folder as shown: `/mnt/dest/vda/vm1` or `datastore1:/vm1`.
    pub fn shown(&self) -> String {
        match self {
            Folder::Host(dir) => dir.display().to_string(),
            Folder::Vmfs { path, label, .. } => format!("{label}:{path}"),
        }
    }

    /// What to attach for disk `name` of this folder.
    fn target(&self, name: &str, source_disks: &[String]) -> Target {
        match self {
            Folder::Host(dir) => Target {
                source: dir.join(name).display().to_string(),
                vmfs: Vec::new(),
                map: None,
                stem: stem_of(name),
                source_disks: source_disks.to_vec(),
            },
            Folder::Vmfs { path, devices, .. } => Target {
                source: format!("{}/{name}", path.trim_end_matches('/')),
                vmfs: devices.clone(),
                map: None,
                stem: stem_of(name),
                source_disks: source_disks.to_vec(),
            },
        }
    }
}

/// `vm1-000001.vmdk` -> `vm1-000001`: a file-name-safe name for the
/// destination folder of what is copied from the disk.
pub fn stem_of(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.rsplit_once('.').map(|(s, _)| s).unwrap_or(base);
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "disk".into()
    } else {
        s
    }
}

/// Whether a file name is a disk's descriptor (what a user opens), not one
/// of its extents or change-tracking files.
pub fn is_descriptor_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let Some(stem) = lower.strip_suffix(".vmdk") else {
        return false;
    };
    let extent_suffix = ["-flat", "-delta", "-sesparse", "-ctk", "-rdm", "-rdmp"]
        .iter()
        .any(|s| stem.ends_with(s));
    // Split extents of hosted disks: -s001, -f001.
    let split = stem.rsplit_once('-').is_some_and(|(_, tail)| {
        tail.len() == 4
            && (tail.starts_with('s') || tail.starts_with('f'))
            && tail[1..].chars().all(|c| c.is_ascii_digit())
    });
    !stem.is_empty() && !extent_suffix && !split
}

/// One disk of the folder as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRow {
    pub name: String,
    /// Capacity, levels, format; or why it could not be opened.
    pub opened: Result<DiskFacts, String>,
    /// The disk whose chain holds this one as a lower level (a snapshot
    /// was taken of it): reading this one shows the VM's older state.
    pub under: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    pub capacity: u64,
    pub levels: usize,
    /// The top level's createType and the format of its first extent:
    /// `monolithicSparse (hosted sparse)`, `vmfs (flat)`.
    pub format: String,
    /// The base's, when there are levels above it.
    pub base_format: Option<String>,
    /// The LUN a raw device mapping names (nothing here to read).
    pub rdm: Option<String>,
    pub warnings: usize,
}

fn level_format(l: &vmdk::Level) -> String {
    match l.extents.first() {
        Some((_, x)) => format!("{} ({})", l.descriptor.create_type, x.format()),
        None => l.descriptor.create_type.clone(),
    }
}

/// The disks in `folder`: every descriptor opened with its chain.
pub fn disks_in(folder: &Folder) -> Result<Vec<DiskRow>, String> {
    let mut names: Vec<String> = folder
        .names()?
        .into_iter()
        .filter(|n| is_descriptor_name(n))
        .collect();
    names.sort();
    let files = folder.files();
    let mut rows = Vec::new();
    // Each chain's lower levels, by file name.
    let mut lower: Vec<(String, String)> = Vec::new();
    for name in names {
        let opened = vmdk::VirtualDisk::open(files.as_ref(), &name).map_err(|e| e.to_string());
        let opened = opened.map(|d| {
            let levels = d.levels();
            for l in &levels[..levels.len() - 1] {
                let file = l.name.rsplit(['/', ':']).next().unwrap_or(&l.name);
                lower.push((file.to_string(), name.clone()));
            }
            let notes: usize = levels.iter().map(|l| l.notes().len()).sum();
            DiskFacts {
                capacity: d.capacity(),
                levels: levels.len(),
                format: level_format(&levels[d.top()]),
                base_format: (levels.len() > 1).then(|| level_format(&levels[0])),
                rdm: d.raw_device_maps().into_iter().next(),
                warnings: d.warnings.len() + notes,
            }
        });
        rows.push(DiskRow {
            name,
            opened,
            under: None,
        });
    }
    for r in &mut rows {
        // The deepest chain naming it: the VM's current disk.
        r.under = lower
            .iter()
            .filter(|(file, _)| *file == r.name)
            .map(|(_, top)| top.clone())
            .max_by_key(|top| rows_levels(&lower, top));
    }
    Ok(rows)
}

/// How many lower levels the chain of `top` has.
fn rows_levels(lower: &[(String, String)], top: &str) -> usize {
    lower.iter().filter(|(_, t)| t == top).count()
}

/// The listing's lines (79 columns).
pub fn render(folder: &Folder, rows: &[DiskRow]) -> String {
    let mut s = format!("\nVM disks in {}:\n", folder.shown());
    if rows.is_empty() {
        s.push_str("  no VM disk descriptors (.vmdk) here\n");
    }
    for (i, r) in rows.iter().enumerate() {
        let line = match &r.opened {
            Ok(f) => {
                let mut l = format!(
                    " {:>2}  {}  {}  {}, {}",
                    i + 1,
                    r.name,
                    screen::human_size(f.capacity),
                    f.format,
                    screen::plural(f.levels as u64, "level", "levels")
                );
                if let Some(b) = &f.base_format {
                    l.push_str(&format!(", base {b}"));
                }
                if f.warnings > 0 {
                    l.push_str(&format!(
                        ", {}",
                        screen::plural(f.warnings as u64, "warning", "warnings")
                    ));
                }
                if let Some(rdm) = &f.rdm {
                    l.push_str(&format!("; raw device mapping: {rdm}"));
                }
                l
            }
            Err(e) => format!(" {:>2}  {}  cannot be opened: {e}", i + 1, r.name),
        };
        s.push_str(&screen::wrap_words(&line, screen::SCREEN_WIDTH, 6));
        if let Some(top) = &r.under {
            s.push_str(&screen::wrap_words(
                &format!("      a level under {top} (the state before its snapshot)"),
                screen::SCREEN_WIDTH,
                8,
            ));
        }
    }
    s
}

/// The folder's disks; the one chosen is attached and shown
/// ([`Flow::run`]). `source_disks` hold the folder (never offered as
/// destinations). False when the input ended.
pub fn choose(
    flow: &mut Flow<'_>,
    folder: &Folder,
    source_disks: &[String],
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    loop {
        let rows = match disks_in(folder) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                return ask(input, out, "Enter: back: ").is_some();
            }
        };
        let _ = write!(out, "{}", render(folder, &rows));
        if rows.is_empty() {
            return ask(input, out, "Enter: back: ").is_some();
        }
        let Some(a) = ask(
            input,
            out,
            "N: attach disk N read-only and look inside, Enter: back: ",
        ) else {
            return false;
        };
        if a.is_empty() {
            return true;
        }
        let Some(row) = crate::menu::pick(&a, &rows) else {
            let _ = writeln!(out, "'{a}' is not one of the disks.");
            continue;
        };
        match &row.opened {
            Err(e) => {
                let _ = writeln!(out, "{}: cannot be opened: {e}", row.name);
                continue;
            }
            Ok(f) if f.rdm.is_some() => {
                let _ = writeln!(
                    out,
                    "{}: a raw device mapping holds no data here; image that LUN instead.",
                    row.name
                );
                continue;
            }
            Ok(_) => {}
        }
        let target = folder.target(&row.name, source_disks);
        if !flow.run(&target, input, out) {
            return false;
        }
    }
}

/// The overview's "open a VM disk file": a .vmdk, an image file or a
/// folder of VM disks, by path (on a mounted destination, a USB disk).
/// An image's ddrescue mapfile beside it (`IMG.map` or `STEM.map`) is
/// used, so what was never rescued reads as errors.
pub fn open_path(flow: &mut Flow<'_>, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let _ = writeln!(
        out,
        "\nOpen a VM disk file (a .vmdk, or a disk image) or a folder of VM disks,\n\
         e.g. on a mounted destination (/mnt/dest/...); it is only read."
    );
    let Some(a) = ask(input, out, "Path (Enter: back): ") else {
        return false;
    };
    if a.is_empty() {
        return true;
    }
    let path = PathBuf::from(&a);
    let md = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(out, "{a}: {e}");
            return ask(input, out, "Enter: back: ").is_some();
        }
    };
    let disks = host_disk_of(&path).into_iter().collect::<Vec<_>>();
    if md.is_dir() {
        return choose(flow, &Folder::Host(path), &disks, input, out);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_descriptor_name(&name) {
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let folder = Folder::Host(dir);
        let rows = match disks_in(&folder) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                return ask(input, out, "Enter: back: ").is_some();
            }
        };
        let row = rows.into_iter().find(|r| r.name == name);
        let _ = write!(out, "{}", render(&folder, row.as_slice()));
        match row.map(|r| r.opened) {
            Some(Ok(f)) if f.rdm.is_none() => {}
            _ => return ask(input, out, "Enter: back: ").is_some(),
        }
        return flow.run(&folder.target(&name, &disks), input, out);
    }
    let map = image_map(&path);
    if let Some(m) = &map {
        let _ = writeln!(
            out,
            "Using the mapfile {}: what was never rescued reads as I/O errors.",
            m.display()
        );
    }
    let target = Target {
        source: path.display().to_string(),
        vmfs: Vec::new(),
        map: map.map(|m| m.display().to_string()),
        stem: stem_of(&name),
        source_disks: disks,
    };
    flow.run(&target, input, out)
}

/// The ddrescue mapfile of image `img`: `IMG.map`, else `STEM.map`.
pub fn image_map(img: &Path) -> Option<PathBuf> {
    let mut beside = img.as_os_str().to_owned();
    beside.push(".map");
    let beside = PathBuf::from(beside);
    if beside.is_file() {
        return Some(beside);
    }
    let stem = img.with_extension("map");
    (stem != img && stem.is_file()).then_some(stem)
}

/// The kernel name of the disk holding `path` (a file on a mounted
/// filesystem), from its device number; None for an image on tmpfs.
fn host_disk_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let name = link.file_name()?.to_string_lossy().into_owned();
    Some(blockdev::sys::disk_of(Path::new("/sys"), &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_leave_extents_out() {
        for n in ["vm1.vmdk", "vm1-000001.vmdk", "Disk 2.VMDK", "web-s.vmdk"] {
            assert!(is_descriptor_name(n), "{n}");
        }
        for n in [
            "vm1-flat.vmdk",
            "vm1-000001-delta.vmdk",
            "vm1-000001-sesparse.vmdk",
            "vm1-ctk.vmdk",
            "rdm-rdm.vmdk",
            "rdm-rdmp.vmdk",
            "big-s001.vmdk",
            "big-f012.vmdk",
            "vm1.vmx",
            ".vmdk",
        ] {
            assert!(!is_descriptor_name(n), "{n}");
        }
        assert_eq!(stem_of("vm1-000001.vmdk"), "vm1-000001");
        assert_eq!(stem_of("/x/disk image.img"), "disk_image");
        assert_eq!(stem_of(".vmdk"), "disk");
    }

    /// A kernel that only records what it was asked to attach, and
    /// refuses.
    #[derive(Default)]
    struct Recorder(Vec<Target>);

    impl crate::guestmenu::Kernel for Recorder {
        fn attach(&mut self, t: &Target) -> Result<attach::Record, String> {
            self.0.push(t.clone());
            Err("not in this test".into())
        }
        fn detach(&mut self, _: &str) -> Result<String, String> {
            unreachable!()
        }
        fn assemble(&mut self, _: &str, _: &mut dyn Write) -> Result<String, String> {
            unreachable!()
        }
        fn stop(&mut self, _: &str, _: &mut dyn Write) -> Result<(), String> {
            unreachable!()
        }
        fn activate(
            &mut self,
            _: &str,
            _: &mut dyn Write,
        ) -> Result<Vec<lvm::system::Activated>, String> {
            unreachable!()
        }
        fn deactivate(&mut self, _: &str, _: &mut dyn Write) -> Result<(), String> {
            unreachable!()
        }
        fn mount(&mut self, _: &Path, _: &mut dyn Write) -> Result<PathBuf, String> {
            unreachable!()
        }
        fn umount(&mut self, _: &Path, _: &mut dyn Write) -> Result<(), String> {
            unreachable!()
        }
        fn shell(&mut self, _: &Path, _: &mut dyn Write) {
            unreachable!()
        }
        fn node(&self, name: &str) -> PathBuf {
            Path::new("/dev").join(name)
        }
    }

    fn no_destination<'a>() -> crate::destmenu::Machine<'a> {
        unreachable!("no copy in these tests")
    }

    fn run(cmd: &mut std::process::Command) {
        let st = cmd
            .status()
            .unwrap_or_else(|e| panic!("{:?} is needed for this test: {e}", cmd.get_program()));
        assert!(st.success(), "{cmd:?} failed");
    }

    /// A VM folder written by qemu-img: a hosted sparse base, a snapshot
    /// over it, an extent-only file and a broken descriptor.
    fn vm_folder(t: &testkit::TempDir) -> PathBuf {
        let vm = t.join("vm1");
        std::fs::create_dir_all(&vm).unwrap();
        run(std::process::Command::new("qemu-img")
            .current_dir(&vm)
            .args(["create", "-q", "-f", "vmdk", "vm1.vmdk", "8M"]));
        run(std::process::Command::new("qemu-img")
            .current_dir(&vm)
            .args(["create", "-q", "-f", "vmdk", "-b", "vm1.vmdk", "-F", "vmdk"])
            .arg("vm1-000001.vmdk"));
        std::fs::write(vm.join("old-flat.vmdk"), vec![0u8; 4096]).unwrap();
        std::fs::write(
            vm.join("broken.vmdk"),
            "# Disk DescriptorFile\nversion=1\ncreateType=\"vmfs\"\nRW 16 VMFS \"gone-flat.vmdk\"\n",
        )
        .unwrap();
        vm
    }

    #[test]
    fn a_vm_folders_disks_are_listed_with_chains_and_formats() {
        let t = testkit::TempDir::new("vmdisks-folder");
        let vm = vm_folder(&t);
        let folder = Folder::Host(vm.clone());
        let rows = disks_in(&folder).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["broken.vmdk", "vm1-000001.vmdk", "vm1.vmdk"]);
        assert!(rows[0]
            .opened
            .as_ref()
            .unwrap_err()
            .contains("gone-flat.vmdk"));
        let top = rows[1].opened.as_ref().unwrap();
        assert_eq!((top.capacity, top.levels), (8 << 20, 2));
        assert_eq!(top.format, "monolithicSparse (hosted sparse)");
        assert_eq!(
            top.base_format.as_deref(),
            Some("monolithicSparse (hosted sparse)")
        );
        assert_eq!(rows[2].under.as_deref(), Some("vm1-000001.vmdk"));
        assert_eq!(rows[1].under, None);
        let text = render(&folder, &rows);
        assert!(
            text.contains("  2  vm1-000001.vmdk  8.0 MiB  monolithicSparse (hosted sparse), 2"),
            "{text}"
        );
        assert!(text.contains("a level under vm1-000001.vmdk"), "{text}");
        assert!(
            text.contains("  1  broken.vmdk  cannot be opened:"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= 79), "{text}");

        // Choosing the broken one says so; the snapshot is attached as
        // its path here, with no datastore.
        let mut kernel = Recorder::default();
        let mut flow = Flow {
            kernel: &mut kernel,
            dest: &no_destination,
        };
        let mut out = Vec::new();
        let keys = "1\n2\n\n\n";
        let went_on = choose(
            &mut flow,
            &folder,
            &["sdb".to_string()],
            &mut keys.as_bytes(),
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(went_on, "{out}");
        assert!(out.contains("broken.vmdk: cannot be opened:"), "{out}");
        assert!(out.contains("attach failed: not in this test"), "{out}");
        assert_eq!(
            kernel.0,
            [Target {
                source: vm.join("vm1-000001.vmdk").display().to_string(),
                vmfs: vec![],
                map: None,
                stem: "vm1-000001".into(),
                source_disks: vec!["sdb".into()],
            }]
        );
    }

    /// The datastore's folders through the VMFS reader: the real vmfs5
    /// volume holds a raw device mapping's descriptor, which is listed
    /// with the LUN it maps and not attached.
    #[test]
    fn a_datastore_folder_lists_its_disks_and_refuses_a_mapping() {
        let img = testkit::fixtures::unpacked("vmfs/vmfs5.bin.gz", None)
            .expect("this test needs the vmfs5 fixture");
        let img = img.display().to_string();
        let (plans, failed) = vmfs::datastores::plan_paths(std::slice::from_ref(&img));
        assert!(failed.is_empty(), "{failed:?}");
        let d = plans.into_iter().next().unwrap().open();
        let folder = Folder::Vmfs {
            volume: Arc::new(d.volume.unwrap()),
            path: "/".into(),
            devices: vec![img.clone()],
            label: "vmfs5".into(),
        };
        let rows = disks_in(&folder).unwrap();
        let text = render(&folder, &rows);
        assert!(text.starts_with("\nVM disks in vmfs5:/:\n"), "{text}");
        let rdm: Vec<&DiskRow> = rows
            .iter()
            .filter(|r| r.opened.as_ref().is_ok_and(|f| f.rdm.is_some()))
            .collect();
        assert!(!rdm.is_empty(), "{text}");
        assert!(text.contains("raw device mapping:"), "{text}");
        let n = rows.iter().position(|r| r.name == rdm[0].name).unwrap() + 1;
        let mut kernel = Recorder::default();
        let mut flow = Flow {
            kernel: &mut kernel,
            dest: &no_destination,
        };
        let mut out = Vec::new();
        let keys = format!("{n}\n\n");
        assert!(choose(
            &mut flow,
            &folder,
            &[],
            &mut keys.as_bytes(),
            &mut out
        ));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("holds no data here; image that LUN instead"),
            "{out}"
        );
        assert!(kernel.0.is_empty());
    }

    #[test]
    fn an_images_mapfile_is_found_beside_it() {
        let t = testkit::TempDir::new("vmdisks-map");
        let img = t.join("sdb-X.img");
        std::fs::write(&img, "").unwrap();
        assert_eq!(image_map(&img), None);
        std::fs::write(t.join("sdb-X.map"), "").unwrap();
        assert_eq!(image_map(&img), Some(t.join("sdb-X.map")));
        std::fs::write(t.join("sdb-X.img.map"), "").unwrap();
        assert_eq!(image_map(&img), Some(t.join("sdb-X.img.map")));
    }
}
