//! Finds md members among devices and groups them into arrays by array
//! UUID: geometry, members with role, state and events, missing and stale
//! members, degraded state, what the array holds (LVM2 PV, ext4, btrfs,
//! swap), and Synology DSM sets.
//!
//! Synology DSM: partition 1 of every disk is a RAID-1 system array (md0)
//! and partition 2 a RAID-1 swap array (md1), both with 0.90 superblocks;
//! data arrays (md2, md3... named `host:N`, 1.2 superblocks) live on
//! partitions 3 (DSM 7 GPT layouts) or 5 and up (MBR with logical
//! partitions). SHR puts an LVM2 PV on every data array and joins them in
//! one volume group (vg1000); the LVM2 label is "LABELONE" in one of the
//! array's first four sectors (sector 1 by default) with "LVM2 001" at
//! byte 24.

use crate::layout::Geometry;
use crate::superblock::{find_superblock, Superblock};
use crate::verify;
use blockdev::BlockDevice;
use serde::Serialize;
use std::collections::BTreeMap;

/// One device or image to look at.
pub struct Input<'a> {
    pub name: String,
    pub dev: &'a dyn BlockDevice,
    /// The whole disk this is a partition of, and the partition number.
    pub disk: Option<String>,
    pub partition: Option<u32>,
}

impl<'a> Input<'a> {
    /// Disk and partition number guessed from the name (`sda5`,
    /// `nvme0n1p2`, `mmcblk0p1`, also `sdb2.img`).
    pub fn new(name: impl Into<String>, dev: &'a dyn BlockDevice) -> Input<'a> {
        let name = name.into();
        let (disk, partition) = partition_of(&name);
        Input {
            name,
            dev,
            disk,
            partition,
        }
    }
}

/// Splits `sda5` into (`sda`, 5), `nvme0n1p2` into (`nvme0n1`, 2); the
/// path and an `.img`/`.raw` suffix are ignored. Whole disks give (None, None).
pub fn partition_of(name: &str) -> (Option<String>, Option<u32>) {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base
        .strip_suffix(".img")
        .or_else(|| base.strip_suffix(".raw"))
        .unwrap_or(base);
    let digits = base.len() - base.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == base.len() {
        return (None, None);
    }
    let (head, num) = base.split_at(base.len() - digits);
    let Ok(n) = num.parse::<u32>() else {
        return (None, None);
    };
    // nvme0n1p2, mmcblk0p1, loop0p1: a 'p' after a digit.
    if let Some(disk) = head.strip_suffix('p') {
        if disk.ends_with(|c: char| c.is_ascii_digit()) {
            return (Some(disk.to_string()), Some(n));
        }
    }
    // sda5, vdb1, hdc2, xvda1: letters only before the number.
    if head.chars().all(|c| c.is_ascii_lowercase())
        && ["sd", "vd", "hd", "xvd"]
            .iter()
            .any(|p| head.starts_with(p))
    {
        return (Some(head.to_string()), Some(n));
    }
    (None, None)
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberInfo {
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    pub version: &'static str,
    pub role: Option<u32>,
    /// The superblock's own role state: active, spare, faulty, journal.
    pub role_state: &'static str,
    pub events: u64,
    /// in-sync, stale, spare, faulty, bad-checksum, duplicate.
    pub status: &'static str,
    pub checksum_ok: bool,
    pub superblock_offset: u64,
    pub data_offset: u64,
    /// Bytes of data area this member's superblock gives it (the kernel's
    /// `rdev->sectors`: 1.x data_size, 0.90 up to the superblock); linear
    /// arrays concatenate them.
    pub data_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Index into the scan's inputs.
    #[serde(skip)]
    pub input: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Array {
    pub uuid: String,
    /// `host:name` (1.x), e.g. `DiskStation:2`.
    pub name: Option<String>,
    /// md device number: 0.90 md_minor, or the number a 1.x name ends in.
    pub md_number: Option<u32>,
    pub version: &'static str,
    pub level: String,
    pub level_number: i32,
    pub layout: u32,
    pub layout_name: String,
    pub chunk_bytes: u64,
    pub raid_disks: u32,
    pub component_bytes: u64,
    pub array_bytes: u64,
    /// The newest event count among members with a good checksum.
    pub events: u64,
    pub clean: bool,
    /// ok, degraded, failed.
    pub state: &'static str,
    pub degraded: bool,
    /// Enough in-sync members to run (possibly degraded).
    pub startable: bool,
    pub members: Vec<MemberInfo>,
    /// Roles without an in-sync member.
    pub missing_roles: Vec<u32>,
    /// Members whose event count is below the newest (out of date).
    pub stale: Vec<String>,
    pub problems: Vec<String>,
    /// What the array's data starts with: "LVM2 PV", "ext4", "btrfs", "swap".
    pub contents: Option<String>,
    /// Synology DSM role: "system (md0)", "swap (md1)", "data (md2)".
    pub dsm_role: Option<String>,
    #[serde(skip)]
    pub geometry: Option<Geometry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceProblem {
    pub device: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DsmSet {
    pub disks: Vec<String>,
    pub system: Option<String>,
    pub swap: Option<String>,
    /// Data arrays (UUIDs) on later partitions.
    pub data: Vec<String>,
    /// True when the data arrays carry LVM2 PVs (SHR).
    pub shr: bool,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub scanned: usize,
    pub arrays: Vec<Array>,
    /// Devices with an md magic but an unusable superblock, or unreadable.
    pub problems: Vec<DeviceProblem>,
    pub dsm: Option<DsmSet>,
}

impl ScanReport {
    /// Anything an admin should look at.
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
            || self
                .arrays
                .iter()
                .any(|a| a.state != "ok" || !a.problems.is_empty() || !a.stale.is_empty())
    }
}

/// Reads every input's superblock and groups the members.
pub fn scan(inputs: &[Input<'_>]) -> ScanReport {
    let mut problems = Vec::new();
    let mut found: Vec<(usize, Superblock)> = Vec::new();
    for (i, inp) in inputs.iter().enumerate() {
        match find_superblock(inp.dev) {
            Ok(Some(sb)) => found.push((i, sb)),
            Ok(None) => {}
            Err(e) => problems.push(DeviceProblem {
                device: inp.name.clone(),
                error: e.to_string(),
            }),
        }
    }
    // A whole disk and its last partition can show the same 0.90/1.0
    // superblock: keep the partition.
    let mut drop = vec![false; found.len()];
    for a in 0..found.len() {
        for b in 0..found.len() {
            let (ia, sa) = &found[a];
            let (ib, sb) = &found[b];
            if a != b
                && inputs[*ia].partition.is_none()
                && inputs[*ib].disk.as_deref() == Some(kernel_name(&inputs[*ia].name))
                && sa.array_uuid == sb.array_uuid
                && sa.role == sb.role
                && sa.events == sb.events
            {
                drop[a] = true;
            }
        }
    }
    let mut groups: BTreeMap<String, Vec<(usize, Superblock)>> = BTreeMap::new();
    for (k, f) in found.into_iter().enumerate() {
        if !drop[k] {
            groups.entry(f.1.array_uuid.clone()).or_default().push(f);
        }
    }
    let mut arrays: Vec<Array> = groups
        .into_values()
        .map(|g| build_array(inputs, g))
        .collect();
    arrays.sort_by(|a, b| {
        (a.md_number.unwrap_or(u32::MAX), &a.uuid).cmp(&(b.md_number.unwrap_or(u32::MAX), &b.uuid))
    });
    let dsm = recognise_dsm(&mut arrays);
    ScanReport {
        scanned: inputs.len(),
        arrays,
        problems,
        dsm,
    }
}

/// Kernel name of a device path (`/dev/sda3` -> `sda3`).
pub fn kernel_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn build_array(inputs: &[Input<'_>], mut g: Vec<(usize, Superblock)>) -> Array {
    g.sort_by_key(|(i, sb)| (sb.role.unwrap_or(u32::MAX), *i));
    let newest = g
        .iter()
        .filter(|(_, sb)| sb.checksum_ok())
        .map(|(_, sb)| sb.events)
        .max();
    let events = newest.unwrap_or_else(|| g.iter().map(|(_, s)| s.events).max().unwrap_or(0));
    // The reference superblock: newest with a good checksum, lowest role.
    let reference = g
        .iter()
        .find(|(_, sb)| sb.checksum_ok() && sb.events == events)
        .or_else(|| g.first())
        .map(|(_, sb)| sb.clone());
    let Some(r) = reference else {
        // Not reachable: groups are never empty.
        return empty_array();
    };
    let mut problems = Vec::new();
    let geometry = match Geometry::from_superblock(&r) {
        Ok(geo) => Some(geo),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let mut members = Vec::new();
    let mut filled: BTreeMap<u32, usize> = BTreeMap::new();
    let mut stale = Vec::new();
    for (i, sb) in &g {
        let inp = &inputs[*i];
        let mut note = None;
        let status = if !sb.checksum_ok() {
            note = Some(format!(
                "checksum {:08x} stored, {:08x} computed",
                sb.checksum_stored, sb.checksum_computed
            ));
            "bad-checksum"
        } else if sb.role.is_none() {
            if sb.role_state == "spare" {
                "spare"
            } else {
                "faulty"
            }
        } else if sb.events < events {
            note = Some(format!("events {} < newest {events}", sb.events));
            "stale"
        } else if faulty_in_reference(&r, sb) {
            note = Some("marked faulty by the newest superblock".into());
            "faulty"
        } else if sb.role.is_some_and(|role| filled.contains_key(&role)) {
            note = Some("another in-sync member claims the same role".into());
            "duplicate"
        } else {
            "in-sync"
        };
        if status == "in-sync" {
            if let Some(role) = sb.role {
                filled.insert(role, members.len());
            }
        }
        if status == "stale" {
            stale.push(format!(
                "{} (role {}, events {} < {events})",
                inp.name,
                sb.role.map(|r| r.to_string()).unwrap_or("-".into()),
                sb.events
            ));
        }
        if sb.level != r.level || sb.raid_disks != r.raid_disks || sb.chunk_bytes != r.chunk_bytes {
            problems.push(format!(
                "{}: geometry differs from the newest superblock ({} {} devices, chunk {})",
                inp.name,
                sb.level_name(),
                sb.raid_disks,
                sb.chunk_bytes
            ));
        }
        let need = sb.data_offset_bytes.saturating_add(sb.component_bytes);
        if need > inp.dev.size() {
            problems.push(format!(
                "{}: device has {} bytes, the superblock needs {need} (data offset {} + size {})",
                inp.name,
                inp.dev.size(),
                sb.data_offset_bytes,
                sb.component_bytes
            ));
        }
        members.push(MemberInfo {
            device: inp.name.clone(),
            disk: inp.disk.clone(),
            partition: inp.partition,
            version: sb.version,
            role: sb.role,
            role_state: sb.role_state,
            events: sb.events,
            status,
            checksum_ok: sb.checksum_ok(),
            superblock_offset: sb.offset,
            data_offset: sb.data_offset_bytes,
            data_bytes: sb.member_data_bytes(),
            device_uuid: sb.device_uuid.clone(),
            note,
            input: *i,
        });
    }
    let missing_roles: Vec<u32> = (0..r.raid_disks)
        .filter(|x| !filled.contains_key(x))
        .collect();
    let present = r.raid_disks as usize - missing_roles.len();
    let startable = match r.level {
        1 | -4 => present >= 1,
        4 | 5 => missing_roles.len() <= 1,
        6 => missing_roles.len() <= 2,
        10 => geometry
            .as_ref()
            .is_some_and(|geo| raid10_complete(geo, &missing_roles)),
        _ => missing_roles.is_empty(),
    };
    let degraded = !missing_roles.is_empty();
    let state = if !startable {
        "failed"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let md_number = match &r.counts_090 {
        Some(c) => Some(c.md_minor),
        None => r
            .name
            .as_deref()
            .and_then(|n| n.rsplit(':').next())
            .and_then(|n| n.parse().ok()),
    };
    let mut a = Array {
        uuid: r.array_uuid.clone(),
        name: r.name.clone(),
        md_number,
        version: r.version,
        level: r.level_name(),
        level_number: r.level,
        layout: r.layout,
        layout_name: crate::layout::layout_name(r.level, r.layout),
        chunk_bytes: r.chunk_bytes,
        raid_disks: r.raid_disks,
        component_bytes: r.component_bytes,
        array_bytes: geometry.as_ref().map(|g| g.array_bytes()).unwrap_or(0),
        events,
        clean: r.clean,
        state,
        degraded,
        startable,
        members,
        missing_roles,
        stale,
        problems,
        contents: None,
        dsm_role: None,
        geometry,
    };
    a.contents = detect_contents(&a, inputs);
    a
}

fn empty_array() -> Array {
    Array {
        uuid: String::new(),
        name: None,
        md_number: None,
        version: "",
        level: String::new(),
        level_number: 0,
        layout: 0,
        layout_name: String::new(),
        chunk_bytes: 0,
        raid_disks: 0,
        component_bytes: 0,
        array_bytes: 0,
        events: 0,
        clean: false,
        state: "failed",
        degraded: true,
        startable: false,
        members: Vec::new(),
        missing_roles: Vec::new(),
        stale: Vec::new(),
        problems: Vec::new(),
        contents: None,
        dsm_role: None,
        geometry: None,
    }
}

/// Whether the newest superblock's device table marks this member faulty.
fn faulty_in_reference(r: &Superblock, sb: &Superblock) -> bool {
    if r.counts_090.is_some() {
        return false;
    }
    r.devices
        .iter()
        .any(|d| d.number == sb.dev_number && d.state == "faulty")
}

/// Every RAID-10 chunk still has a copy on a present member.
fn raid10_complete(geo: &Geometry, missing: &[u32]) -> bool {
    let n = geo.raid_disks as u64;
    let period = (n * n * 2).min(geo.raid10_array_chunks());
    (0..period).all(|c| {
        geo.raid10_copies(c)
            .iter()
            .any(|(d, _)| !missing.contains(&(*d as u32)))
    })
}

/// Reads array bytes [off, off+len) through the mapping, from in-sync
/// members; None when a part is on no present member or unreadable.
pub fn read_array(a: &Array, inputs: &[Input<'_>], off: u64, len: usize) -> Option<Vec<u8>> {
    let geo = a.geometry.as_ref()?;
    let mut out = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        let pos = off + done as u64;
        let step = (512 - (pos % 512) as usize).min(len - done);
        let places = geo.map(pos);
        let (m, dev_off) = places.iter().find_map(|&(role, dev_off)| {
            let m = a
                .members
                .iter()
                .find(|m| m.status == "in-sync" && m.role == Some(role as u32))?;
            Some((m, dev_off))
        })?;
        inputs
            .get(m.input)?
            .dev
            .read_exact_at(&mut out[done..done + step], m.data_offset + dev_off)
            .ok()?;
        done += step;
    }
    Some(out)
}

/// LVM2 PV, ext2/3/4, btrfs, swap at the start of the array.
fn detect_contents(a: &Array, inputs: &[Input<'_>]) -> Option<String> {
    if a.array_bytes < 4096 {
        return None;
    }
    let head = read_array(a, inputs, 0, 4096)?;
    for s in 0..4 {
        let sec = &head[s * 512..s * 512 + 512];
        if &sec[0..8] == b"LABELONE" && &sec[24..32] == b"LVM2 001" {
            return Some("LVM2 PV".into());
        }
    }
    if &head[4086..4096] == b"SWAPSPACE2" {
        return Some("swap".into());
    }
    if head[1080] == 0x53 && head[1081] == 0xef {
        return Some("ext2/3/4".into());
    }
    if a.array_bytes >= 65536 + 4096 {
        if let Some(b) = read_array(a, inputs, 65536 + 64, 8) {
            if &b == b"_BHRfS_M" {
                return Some("btrfs".into());
            }
        }
    }
    None
}

/// Synology DSM: RAID-1 0.90 arrays on partitions 1 and 2 of the same
/// disks, data arrays on later partitions of those disks.
fn recognise_dsm(arrays: &mut [Array]) -> Option<DsmSet> {
    let on_partition = |a: &Array, p: u32| {
        !a.members.is_empty() && a.members.iter().all(|m| m.partition == Some(p))
    };
    let disks_of = |a: &Array| -> Vec<String> {
        let mut d: Vec<String> = a.members.iter().filter_map(|m| m.disk.clone()).collect();
        d.sort();
        d.dedup();
        d
    };
    let sys = arrays
        .iter()
        .position(|a| a.version == "0.90" && a.level_number == 1 && on_partition(a, 1))?;
    let disks = disks_of(&arrays[sys]);
    let swap = arrays
        .iter()
        .position(|a| a.version == "0.90" && a.level_number == 1 && on_partition(a, 2));
    let mut set = DsmSet {
        disks: disks.clone(),
        system: Some(arrays[sys].uuid.clone()),
        swap: swap.map(|i| arrays[i].uuid.clone()),
        data: Vec::new(),
        shr: false,
        notes: Vec::new(),
    };
    let sys_md = arrays[sys].md_number.unwrap_or(0);
    arrays[sys].dsm_role = Some(format!("DSM system (md{sys_md})"));
    if let Some(i) = swap {
        let md = arrays[i].md_number.unwrap_or(1);
        arrays[i].dsm_role = Some(format!("DSM swap (md{md})"));
    } else {
        set.notes.push("no swap array (partition 2) found".into());
    }
    let mut lvm = 0;
    for a in arrays.iter_mut() {
        let later = !a.members.is_empty()
            && a.members
                .iter()
                .all(|m| m.partition.is_some_and(|p| p >= 3));
        let shares_disks = a
            .members
            .iter()
            .any(|m| m.disk.as_ref().is_some_and(|d| disks.contains(d)));
        if a.version.starts_with('1') && later && shares_disks {
            let md = a
                .md_number
                .map(|n| format!("md{n}"))
                .unwrap_or("md?".into());
            let is_lvm = a.contents.as_deref() == Some("LVM2 PV");
            if is_lvm {
                lvm += 1;
            }
            a.dsm_role = Some(format!(
                "DSM data ({md}{})",
                if is_lvm {
                    ", LVM2 PV: SHR or a volume group"
                } else {
                    ""
                }
            ));
            set.data.push(a.uuid.clone());
        }
    }
    set.shr = lvm > 0;
    if set.shr {
        set.notes.push(format!(
            "{lvm} data array(s) carry LVM2 physical volumes: Synology Hybrid RAID joins them in one volume group"
        ));
    }
    if set.data.is_empty() {
        set.notes
            .push("no data array (partition 3 or 5 and up) found".into());
    }
    Some(set)
}

/// The members of `a` in role order for [`verify::verify`] (in-sync only).
pub fn verify_members<'a>(a: &Array, inputs: &[Input<'a>]) -> Vec<Option<verify::Member<'a>>> {
    (0..a.raid_disks)
        .map(|role| {
            let m = a
                .members
                .iter()
                .find(|m| m.status == "in-sync" && m.role == Some(role))?;
            let inp = inputs.get(m.input)?;
            Some(verify::Member {
                role: role as usize,
                name: inp.name.clone(),
                dev: inp.dev,
                data_offset: m.data_offset,
            })
        })
        .collect()
}

/// The array `spec` names in `report`: its UUID, its name (`DiskStation:2`)
/// or the name's part after the host (`2`). None if nothing matches; an
/// error if several arrays have that name.
pub fn find_array<'a>(report: &'a ScanReport, spec: &str) -> Result<Option<&'a Array>, String> {
    let want = spec.trim().to_ascii_lowercase();
    if let Some(a) = report.arrays.iter().find(|a| a.uuid == want) {
        return Ok(Some(a));
    }
    let by_name: Vec<&Array> = report
        .arrays
        .iter()
        .filter(|a| {
            a.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(spec) || n.rsplit(':').next() == Some(spec))
        })
        .collect();
    match by_name.len() {
        0 => Ok(None),
        1 => Ok(Some(by_name[0])),
        n => Err(format!("{n} arrays are named {spec}; give the UUID")),
    }
}

/// Human-readable scan output.
pub fn render(r: &ScanReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} device(s) scanned, {} md array(s) found",
        r.scanned,
        r.arrays.len()
    );
    for a in &r.arrays {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Array {}{}{}",
            a.uuid,
            a.name
                .as_deref()
                .map(|n| format!("  name {n}"))
                .unwrap_or_default(),
            a.md_number
                .map(|n| format!("  (md{n})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            o,
            "  {} {}, superblock {}, {} devices{}{}, array size {} ({} bytes), member size {}",
            a.level,
            a.state.to_uppercase(),
            a.version,
            a.raid_disks,
            if matches!(a.level_number, 4 | 5 | 6 | 10) {
                format!(", layout {}", a.layout_name)
            } else {
                String::new()
            },
            if a.chunk_bytes > 0 {
                format!(", chunk {}", screen::human_size(a.chunk_bytes))
            } else {
                String::new()
            },
            screen::human_size(a.array_bytes),
            a.array_bytes,
            screen::human_size(a.component_bytes)
        );
        let _ = writeln!(
            o,
            "  events {}, {}",
            a.events,
            if a.clean {
                "clean"
            } else {
                "not clean (resync pending)"
            }
        );
        if let Some(d) = &a.dsm_role {
            let _ = writeln!(o, "  Synology {d}");
        }
        if let Some(c) = &a.contents {
            let _ = writeln!(o, "  contents: {c}");
        }
        for m in &a.members {
            let _ = writeln!(
                o,
                "    role {:>3}  {:<24} {:<12} events {:<8} sb at {}{}",
                m.role.map(|r| r.to_string()).unwrap_or("-".into()),
                m.device,
                m.status,
                m.events,
                m.superblock_offset,
                m.note
                    .as_deref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            );
        }
        for role in &a.missing_roles {
            let _ = writeln!(o, "    role {role:>3}  MISSING (no in-sync member)");
        }
        for s in &a.stale {
            let _ = writeln!(o, "  out of date: {s}");
        }
        for p in &a.problems {
            let _ = writeln!(o, "  problem: {p}");
        }
    }
    if let Some(d) = &r.dsm {
        let _ = writeln!(o);
        let _ = writeln!(o, "Synology DSM set on {}", d.disks.join(", "));
        let _ = writeln!(o, "  system: {}", d.system.as_deref().unwrap_or("-"));
        let _ = writeln!(o, "  swap:   {}", d.swap.as_deref().unwrap_or("-"));
        let _ = writeln!(
            o,
            "  data:   {}",
            if d.data.is_empty() {
                "-".into()
            } else {
                d.data.join(", ")
            }
        );
        for n in &d.notes {
            let _ = writeln!(o, "  note: {n}");
        }
    }
    for p in &r.problems {
        let _ = writeln!(o, "{}: {}", p.device, p.error);
    }
    o
}
