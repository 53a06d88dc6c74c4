//! The whole walk over an imaged disk: its VMFS datastore's VM disks hit
//! (or, without VMFS, the disk itself) attached read-only with their bad
//! areas, the partitions, md arrays and LVM volumes inside found and
//! their bad ranges carried up ([`crate::layers`]), each filesystem with
//! bad bytes mounted read-only, walked ([`crate::walk`]), its other bad
//! bytes told apart ([`crate::extmap`]) and unmounted; then everything
//! is released in reverse order, also after a failure.
//!
//! What touches the kernel is behind [`System`]: the appliance's uses
//! `rescue attach`, `rmount`, `mdkernel` and `lvm`; host tests use loop
//! devices.

use crate::extmap::{Area, Layout};
use crate::layers::{self, MdMember, MemberBad};
use crate::report::{DiskReport, FsReport, Report, VmfsPart, WalkStats};
use crate::Ranges;
use lvm::plan::TableLine;
use mdraid::layout::Geometry;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A device made by [`System::attach`].
#[derive(Clone, Debug)]
pub struct Attached {
    /// Kernel name, `nbd0` (or `loop3` on a host).
    pub device: String,
}

/// A filesystem mounted by [`System::mount`].
#[derive(Clone, Debug)]
pub struct MountedFs {
    pub dir: PathBuf,
    pub notes: Vec<String>,
}

/// One member of an assembled md array, as its superblock says.
#[derive(Clone, Debug)]
pub struct ArrayMember {
    /// Kernel name (`nbd0p1`, `sdb1`).
    pub device: String,
    pub role: usize,
    pub data_offset: u64,
    /// Its data area per its superblock (what a linear array uses).
    pub data_bytes: u64,
}

/// An md array assembled by [`System::assemble_md`].
#[derive(Clone, Debug)]
pub struct Assembled {
    /// Kernel name, `md127`.
    pub device: String,
    pub geometry: Geometry,
    /// The members in use (in sync).
    pub members: Vec<ArrayMember>,
    /// `md raid1 "DiskStation:2"`.
    pub what: String,
}

/// An LV made active by [`System::activate_lvm`].
#[derive(Clone, Debug)]
pub struct ActiveLv {
    /// `vg/lv`.
    pub name: String,
    /// Kernel name, `dm-0`.
    pub device: String,
    pub table: Vec<TableLine>,
}

/// What touches the kernel.
pub trait System {
    /// sysfs (`/sys`): partitions, their starts, `MAJ:MIN`.
    fn sys(&self) -> PathBuf;
    /// Device nodes (`/dev`).
    fn dev(&self) -> PathBuf;
    /// Attaches `source` read-only (a VM disk inside the VMFS on `vmfs`
    /// when that is not empty, else a file) with the bad areas of `map`
    /// failing reads.
    fn attach(&mut self, source: &str, vmfs: &[String], map: &Path) -> Result<Attached, String>;
    fn detach(&mut self, a: &Attached) -> Result<(), String>;
    /// Assembles, read-only, the md array with this UUID.
    fn assemble_md(&mut self, uuid: &str) -> Result<Assembled, String>;
    fn stop_md(&mut self, a: &Assembled) -> Result<(), String>;
    /// Activates, read-only, the LVs of the VGs whose PVs are on these
    /// devices (kernel names); says what it left out.
    fn activate_lvm(&mut self, pvs: &[String]) -> Result<(Vec<ActiveLv>, Vec<String>), String>;
    fn deactivate_lvm(&mut self, lvs: &[ActiveLv]) -> Result<(), String>;
    /// Mounts the filesystem on device `name` read-only.
    fn mount(&mut self, name: &str) -> Result<MountedFs, String>;
    fn umount(&mut self, m: &MountedFs) -> Result<(), String>;
}

/// What to do.
#[derive(Clone, Debug)]
pub struct Request {
    /// The image of the disk (from `rescue image`).
    pub image: PathBuf,
    /// Its ddrescue mapfile.
    pub map: PathBuf,
    /// Where the VM disks' `.badmap` files go.
    pub badmap_dir: PathBuf,
    /// Look for VMFS on the image (else it is taken as a physical disk).
    pub vmfs: bool,
}

/// `<image>.files-hit.txt`.
pub fn report_path(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".files-hit.txt");
    PathBuf::from(s)
}

/// `<image>.badmaps`: the default folder of the VM disks' maps.
pub fn badmap_dir(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".badmaps");
    PathBuf::from(s)
}

/// Runs the whole walk; `say` hears each step (for progress lines).
pub fn run(req: &Request, sys: &mut dyn System, say: &mut dyn FnMut(&str)) -> Report {
    let mut report = Report {
        image: req.image.display().to_string(),
        map: req.map.display().to_string(),
        ..Report::default()
    };
    let bad = match ddmap::read_unrescued(&req.map) {
        Ok(b) => Ranges::from_unsorted(b),
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    report.bad_bytes = bad.total();
    if bad.0.is_empty() {
        report
            .notes
            .push("the mapfile has no unrescued area: nothing was hit".into());
        report.total();
        return report;
    }
    let image = req.image.display().to_string();
    let vmfs = if req.vmfs {
        vmfs_disks(req, &bad, &mut report, say)
    } else {
        None
    };
    match vmfs {
        Some(disks) => {
            for (d, badmap) in disks {
                say(&format!("attaching VM disk {}", d.descriptor));
                let mut dr = DiskReport {
                    source: format!("VM disk {}", d.descriptor),
                    size: d.capacity,
                    bad_bytes: d.ranges.iter().map(|r| r.1).sum(),
                    badmap: Some(badmap.display().to_string()),
                    ..DiskReport::default()
                };
                disk(
                    sys,
                    &d.descriptor,
                    std::slice::from_ref(&image),
                    &badmap,
                    Ranges(d.ranges.clone()),
                    &mut dr,
                    say,
                );
                report.disks.push(dr);
            }
        }
        None => {
            say(&format!("attaching {image}"));
            let mut dr = DiskReport {
                source: format!("image {image}"),
                size: std::fs::metadata(&req.image).map(|m| m.len()).unwrap_or(0),
                bad_bytes: bad.total(),
                ..DiskReport::default()
            };
            disk(sys, &image, &[], &req.map, bad.clone(), &mut dr, say);
            report.disks.push(dr);
        }
    }
    report.total();
    report
}

/// The VM disks hit, when the image holds a VMFS datastore: the
/// datastore's files hit go into the report, each disk's map is written.
fn vmfs_disks(
    req: &Request,
    bad: &Ranges,
    report: &mut Report,
    say: &mut dyn FnMut(&str),
) -> Option<Vec<(vmfs::files_hit::DiskHit, PathBuf)>> {
    let image = req.image.display().to_string();
    let sources = [image.clone()];
    let open = |bad: Option<&Ranges>| {
        vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: &sources,
            bad,
            ..Default::default()
        })
    };
    let o = match open(Some(bad)).or_else(|_| open(None)) {
        Ok(o) => o,
        Err(e) => {
            report.notes.push(format!(
                "no VMFS datastore on the image ({}): taken as a disk with partitions",
                e.message
            ));
            return None;
        }
    };
    say("VMFS datastore found: mapping its files");
    let (hits, mut errors) = vmfs::files_hit::files_hit_in(&o.volume, &o.origins, bad);
    let mut out = Vec::new();
    if !hits.is_empty() {
        match open(None) {
            Ok(plain) => {
                let (found, failed) =
                    vmfs::files_hit::vm_disks_hit(Arc::new(plain.volume), &image, &hits);
                errors.extend(failed);
                if let Err(e) = std::fs::create_dir_all(&req.badmap_dir) {
                    report
                        .errors
                        .push(format!("{}: {e}", req.badmap_dir.display()));
                }
                for d in found {
                    let name = d.descriptor.rsplit('/').next().unwrap_or("disk.vmdk");
                    let path = req.badmap_dir.join(format!("{name}.badmap"));
                    let what = format!(
                        "bytes of VM disk {} (virtual offsets) that depend on bad areas of {}: rescue files-hit",
                        d.descriptor,
                        req.map.display()
                    );
                    match vmdk::export::write_badmap(&path, d.capacity, &d.ranges, &what) {
                        Ok(()) => out.push((d, path)),
                        Err(e) => report.errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e.message),
        }
    }
    report.vmfs = Some(VmfsPart { hits, errors });
    Some(out)
}

/// A block device being looked into.
#[derive(Clone, Debug)]
struct Node {
    name: String,
    bad: Ranges,
    chain: Vec<String>,
}

/// What was made, to undo in reverse.
enum Undo {
    Detach(Attached),
    StopMd(Assembled),
    Deactivate(Vec<ActiveLv>),
}

fn sysfs_u64(sys: &Path, name: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(sys.join("class/block").join(name).join(field))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Attaches one disk, looks into it and walks its filesystems.
fn disk(
    sys: &mut dyn System,
    source: &str,
    vmfs: &[String],
    map: &Path,
    bad: Ranges,
    dr: &mut DiskReport,
    say: &mut dyn FnMut(&str),
) {
    let a = match sys.attach(source, vmfs, map) {
        Ok(a) => a,
        Err(e) => {
            dr.errors.push(format!("attaching {source}: {e}"));
            dr.elsewhere.extend(areas(
                &bad,
                &format!("not mapped: {source} could not be attached"),
            ));
            return;
        }
    };
    dr.device = Some(a.device.clone());
    let mut undo = vec![Undo::Detach(a.clone())];
    look_into(sys, &a, bad, dr, &mut undo, say);
    while let Some(u) = undo.pop() {
        let r = match &u {
            Undo::Detach(a) => sys
                .detach(a)
                .map_err(|e| format!("detaching {}: {e}", a.device)),
            Undo::StopMd(m) => sys
                .stop_md(m)
                .map_err(|e| format!("stopping {}: {e}", m.device)),
            Undo::Deactivate(l) => sys
                .deactivate_lvm(l)
                .map_err(|e| format!("deactivating LVM: {e}")),
        };
        if let Err(e) = r {
            dr.errors.push(e);
        }
    }
}

fn areas(r: &Ranges, what: &str) -> Vec<Area> {
    r.0.iter()
        .map(|&(start, len)| Area {
            start,
            len,
            what: what.to_string(),
        })
        .collect()
}

fn look_into(
    sys: &mut dyn System,
    a: &Attached,
    bad: Ranges,
    dr: &mut DiskReport,
    undo: &mut Vec<Undo>,
    say: &mut dyn FnMut(&str),
) {
    let sysfs = sys.sys();
    let dev = sys.dev();
    let mut queue: VecDeque<Node> = VecDeque::from([Node {
        name: a.device.clone(),
        bad,
        chain: Vec::new(),
    }]);
    let mut tracked: Vec<Node> = Vec::new();
    let mut md: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pvs: Vec<String> = Vec::new();
    let mut fs: Vec<(Node, fsmagic::Signature)> = Vec::new();
    let mut lvm_done = false;
    loop {
        while let Some(n) = queue.pop_front() {
            tracked.push(n.clone());
            let parts = blockdev::sys::partitions(&sysfs, &n.name);
            if !parts.is_empty() {
                let mut used = Vec::new();
                for (num, p) in parts {
                    let start = sysfs_u64(&sysfs, &p, "start").unwrap_or(0) * 512;
                    let size = sysfs_u64(&sysfs, &p, "size").unwrap_or(0) * 512;
                    used.push((start, size));
                    let mut chain = n.chain.clone();
                    chain.push(format!("partition {num} of {} at byte {start}", n.name));
                    queue.push_back(Node {
                        name: p,
                        bad: layers::partition(&n.bad, start, size),
                        chain,
                    });
                }
                let rest = layers::subtract(&n.bad, &Ranges::from_unsorted(used));
                dr.elsewhere.extend(areas(
                    &rest,
                    &format!(
                        "on {} outside its partitions (partition table, gaps)",
                        n.name
                    ),
                ));
                continue;
            }
            let d = match blockdev::Device::open(dev.join(&n.name)) {
                Ok(d) => d,
                Err(e) => {
                    dr.errors.push(format!("{}: {e}", n.name));
                    dr.elsewhere.extend(areas(
                        &n.bad,
                        &format!("on {}: could not be opened", n.name),
                    ));
                    continue;
                }
            };
            if let Ok(Some(sb)) = mdraid::superblock::find_superblock(&d) {
                md.entry(sb.array_uuid.clone())
                    .or_default()
                    .push(n.name.clone());
                continue;
            }
            if let Ok(Some(_)) = lvm::label::read_header(&d) {
                pvs.push(n.name.clone());
                continue;
            }
            match fsmagic::detect(&d) {
                Some(sig) if sig.kind == fsmagic::Kind::Swap => dr
                    .elsewhere
                    .extend(areas(&n.bad, &format!("swap space on {}", n.name))),
                Some(sig) => fs.push((n, sig)),
                None => dr.elsewhere.extend(areas(
                    &n.bad,
                    &format!("on {}: no filesystem, md member or LVM PV found", n.name),
                )),
            }
        }
        if let Some((uuid, members)) = md.pop_first() {
            say(&format!("assembling md array {uuid}"));
            assemble(sys, &uuid, &members, &tracked, dr, undo, &mut queue);
            continue;
        }
        if !pvs.is_empty() && !lvm_done {
            lvm_done = true;
            say("activating LVM volumes");
            activate(sys, &pvs, &tracked, dr, undo, &mut queue);
            continue;
        }
        break;
    }
    for (n, sig) in fs {
        let f = filesystem(sys, &n, &sig, say);
        dr.filesystems.push(f);
    }
}

fn bad_of<'a>(tracked: &'a [Node], name: &str) -> Option<&'a Ranges> {
    tracked.iter().find(|t| t.name == name).map(|t| &t.bad)
}

fn assemble(
    sys: &mut dyn System,
    uuid: &str,
    members: &[String],
    tracked: &[Node],
    dr: &mut DiskReport,
    undo: &mut Vec<Undo>,
    queue: &mut VecDeque<Node>,
) {
    let unmapped = |dr: &mut DiskReport, why: &str| {
        for m in members {
            if let Some(b) = bad_of(tracked, m) {
                dr.elsewhere
                    .extend(areas(b, &format!("md member {m} of array {uuid}: {why}")));
            }
        }
    };
    let a = match sys.assemble_md(uuid) {
        Ok(a) => a,
        Err(e) => {
            dr.errors.push(format!("md array {uuid}: {e}"));
            unmapped(dr, "not assembled");
            return;
        }
    };
    undo.push(Undo::StopMd(a.clone()));
    let g = &a.geometry;
    let list: Vec<MdMember> = a
        .members
        .iter()
        .map(|m| MdMember {
            role: m.role,
            data_offset: m.data_offset,
            data_bytes: m.data_bytes,
            bad: MemberBad::Known(bad_of(tracked, &m.device).cloned().unwrap_or_default()),
        })
        .collect();
    // Bad bytes of a member outside its data: superblock, bitmap.
    for (m, mm) in a.members.iter().zip(&list) {
        if let Some(b) = bad_of(tracked, &m.device) {
            let data = Ranges(vec![(m.data_offset, layers::member_used_bytes(g, mm))]);
            dr.elsewhere.extend(areas(
                &layers::subtract(b, &data),
                &format!(
                    "md member {} of {}: superblock, bitmap or unused space",
                    m.device, a.device
                ),
            ));
        }
    }
    match layers::md_array(g, &list) {
        Ok(mapped) => {
            if mapped.redundant.total() > 0 {
                dr.notes.push(format!(
                    "{}: {} bytes bad on a member are still read from another copy or through parity",
                    a.device,
                    mapped.redundant.total()
                ));
            }
            let chain = members
                .iter()
                .filter_map(|m| tracked.iter().find(|t| &t.name == m))
                .flat_map(|t| t.chain.clone())
                .chain([format!("{} on {}", a.what, members.join(", "))])
                .collect();
            queue.push_back(Node {
                name: a.device.clone(),
                bad: mapped.lost,
                chain,
            });
        }
        Err(e) => {
            dr.errors.push(format!("{}: {e}", a.device));
            unmapped(dr, &e);
        }
    }
}

fn activate(
    sys: &mut dyn System,
    pvs: &[String],
    tracked: &[Node],
    dr: &mut DiskReport,
    undo: &mut Vec<Undo>,
    queue: &mut VecDeque<Node>,
) {
    let sysfs = sys.sys();
    let devt = |name: &str| lvm::system::devt_of(&sysfs, name);
    let by_devt: Vec<(String, &Node)> = tracked
        .iter()
        .filter_map(|t| devt(&t.name).map(|d| (d, t)))
        .collect();
    let (lvs, left_out) = match sys.activate_lvm(pvs) {
        Ok(x) => x,
        Err(e) => {
            dr.errors.push(format!("LVM: {e}"));
            for p in pvs {
                if let Some(b) = bad_of(tracked, p) {
                    dr.elsewhere
                        .extend(areas(b, &format!("LVM PV {p}: not activated")));
                }
            }
            return;
        }
    };
    dr.notes.extend(left_out);
    undo.push(Undo::Deactivate(lvs.clone()));
    let mut used: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for lv in &lvs {
        for (d, s, l) in layers::dm_table_uses(&lv.table) {
            used.entry(d).or_default().push((s, l));
        }
        let lookup = |d: &str| {
            by_devt
                .iter()
                .find(|(x, _)| x == d)
                .map(|(_, n)| n.bad.clone())
        };
        match layers::dm_table(&lv.table, &lookup) {
            Ok(bad) => {
                let mut chain: Vec<String> = by_devt
                    .iter()
                    .filter(|(d, _)| {
                        lv.table
                            .iter()
                            .any(|l| l.params.split_whitespace().any(|p| p == d))
                    })
                    .flat_map(|(_, n)| n.chain.clone())
                    .collect();
                chain.push(format!("LVM volume {}", lv.name));
                queue.push_back(Node {
                    name: lv.device.clone(),
                    bad,
                    chain,
                });
            }
            Err(e) => dr.errors.push(format!("LVM volume {}: {e}", lv.name)),
        }
    }
    for p in pvs {
        let (Some(d), Some(b)) = (devt(p), bad_of(tracked, p)) else {
            continue;
        };
        let u = Ranges::from_unsorted(used.get(&d).cloned().unwrap_or_default());
        dr.elsewhere.extend(areas(
            &layers::subtract(b, &u),
            &format!("LVM PV {p}: metadata or extents no active volume uses"),
        ));
    }
}

/// Mounts, walks, tells apart and unmounts one filesystem.
fn filesystem(
    sys: &mut dyn System,
    n: &Node,
    sig: &fsmagic::Signature,
    say: &mut dyn FnMut(&str),
) -> FsReport {
    let kind = sig.kind;
    let mut f = FsReport {
        device: n.name.clone(),
        chain: n.chain.clone(),
        kind: kind.name().to_string(),
        label: sig.label.clone(),
        size: sysfs_u64(&sys.sys(), &n.name, "size").unwrap_or(0) * 512,
        bad_bytes: n.bad.total(),
        bad: n.bad.0.clone(),
        ..FsReport::default()
    };
    if n.bad.0.is_empty() {
        f.notes.push("no bad area in it: not mounted".into());
        return f;
    }
    let btrfs = if kind == fsmagic::Kind::Btrfs {
        let Some(p) = btrfs_prepare(sys, n, &mut f) else {
            return f;
        };
        if !crate::btrfsmap::touches_data(&p.fs.map, &p.lost) {
            f.notes.push(
                "no bad byte lost in a btrfs data chunk: no file can be hit, not mounted".into(),
            );
            btrfs_told(&p, n, &Ranges::default(), &mut f);
            return f;
        }
        Some(p)
    } else {
        None
    };
    // FIEMAP's address space: device bytes, or btrfs logical addresses.
    let walk_bad = match &btrfs {
        Some(p) => &p.lost,
        None => &n.bad,
    };
    say(&format!("mounting {} ({}) read-only", n.name, kind.name()));
    let m = match sys.mount(&n.name) {
        Ok(m) => m,
        Err(e) => {
            f.errors.push(format!("mount: {e}"));
            f.not_told_apart = areas(&n.bad, "not mapped: the filesystem could not be mounted");
            return f;
        }
    };
    f.mounted = true;
    f.notes.extend(m.notes.iter().cloned());
    say(&format!("walking {}", m.dir.display()));
    let w = crate::walk::walk(&m.dir, walk_bad, false);
    classify(sys, n, kind, &w, btrfs.as_ref(), &mut f);
    if let Err(e) = sys.umount(&m) {
        f.errors
            .push(format!("unmounting {}: {e}", m.dir.display()));
    }
    f
}

/// A btrfs filesystem's chunk map and its lost logical bytes.
struct BtrfsPrep {
    fs: btrfs::Fs,
    /// The device's size.
    size: u64,
    /// Logical bytes whose every copy is bad.
    lost: Ranges,
}

/// Reads the chunk map of the btrfs on `n` and carries its bad bytes to
/// logical addresses; None (with the bad bytes not told apart and why)
/// when the chunk tree cannot be read.
fn btrfs_prepare(sys: &dyn System, n: &Node, f: &mut FsReport) -> Option<BtrfsPrep> {
    let opened = blockdev::Device::open(sys.dev().join(&n.name))
        .map_err(|e| e.to_string())
        .and_then(|d| btrfs::open(&[&d]).map(|fs| (fs, blockdev::BlockDevice::size(&d))));
    let (fs, size) = match opened {
        Ok(x) => x,
        Err(e) => {
            f.errors.push(format!("btrfs chunk tree: {e}"));
            f.not_told_apart = areas(
                &n.bad,
                "not mapped: the btrfs chunk tree (logical to device addresses) could not be read",
            );
            return None;
        }
    };
    if fs.sb.num_devices > 1 {
        f.notes.push(format!(
            "btrfs with {} devices, this one devid {}: only its stripes are mapped; copies on the other devices are taken as good and striped (RAID0/10) data on them is not looked at",
            fs.sb.num_devices, fs.sb.devid
        ));
    }
    f.notes
        .extend(fs.notes.iter().map(|x| format!("btrfs: {x}")));
    let known = std::collections::BTreeMap::from([(fs.sb.devid, (size, n.bad.clone()))]);
    let lost = crate::btrfsmap::lost_logical(&fs.map, &known);
    Some(BtrfsPrep { fs, size, lost })
}

/// Fills in where a btrfs's bad bytes no file holds lie (`covered`: the
/// logical bytes the walk found in files).
fn btrfs_told(p: &BtrfsPrep, n: &Node, covered: &Ranges, f: &mut FsReport) {
    let devid = p.fs.sb.devid;
    let t = crate::btrfsmap::classify(&p.fs.map, devid, p.size, &n.bad, &p.lost, covered, &[devid]);
    f.metadata = t.metadata;
    f.free = t.free;
    f.not_told_apart = t.unknown;
    f.redundant = t.redundant;
}

/// Fills a filesystem's report from its walk.
fn classify(
    sys: &dyn System,
    n: &Node,
    kind: fsmagic::Kind,
    w: &crate::walk::Walked,
    btrfs: Option<&BtrfsPrep>,
    f: &mut FsReport,
) {
    for h in &w.hits {
        if h.kind == "directory" {
            f.directories.push(h.clone());
        } else {
            f.files.push(h.clone());
        }
    }
    if w.unwritten_bytes > 0 {
        f.notes.push(format!(
            "{} bad bytes lie in preallocated (unwritten) extents of files: they read as zeros, nothing is lost there",
            w.unwritten_bytes
        ));
    }
    f.errors.extend(w.errors.iter().cloned());
    f.walk = Some(WalkStats {
        method: w.method,
        files: w.files,
        directories: w.directories,
        unmapped_directories: w.unmapped_directories,
        others: w.others,
        seconds: w.seconds,
        per_second: w.per_second,
        not_entered: w.not_entered.clone(),
    });
    if let Some(p) = btrfs {
        btrfs_told(p, n, &w.covered, f);
        if !w.errors.is_empty() {
            f.notes.push(
                "some files or directories could not be mapped (see errors): their bytes show as not in any file here"
                    .into(),
            );
        }
        return;
    }
    let rest = layers::subtract(&n.bad, &w.covered);
    if rest.0.is_empty() {
        return;
    }
    if matches!(
        kind,
        fsmagic::Kind::Ext2 | fsmagic::Kind::Ext3 | fsmagic::Kind::Ext4
    ) {
        let told = blockdev::Device::open(sys.dev().join(&n.name))
            .map_err(|e| e.to_string())
            .and_then(|d| Layout::read(&d).map(|l| l.classify(&d, &rest)));
        match told {
            Ok(c) => {
                f.metadata = c.metadata;
                f.free = c.free;
                f.not_told_apart = c.unknown;
            }
            Err(e) => {
                f.not_told_apart = areas(&rest, &format!("not in any file; not told apart: {e}"));
            }
        }
        if !w.errors.is_empty() {
            f.notes.push(
                "some files or directories could not be mapped (see errors): their bytes count as metadata here"
                    .into(),
            );
        }
    } else {
        f.not_told_apart = areas(
            &rest,
            &format!(
                "not in any file: metadata or free space (not told apart for {})",
                kind.name()
            ),
        );
    }
}
