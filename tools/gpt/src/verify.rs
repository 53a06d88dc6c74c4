//! Findings about a GPT, each with a severity and a plain explanation.

use crate::guid::TypeClass;
use crate::{best_entries, Entry, GptView, TableCopy};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier for scripts, e.g. `backup-not-at-end`.
    pub code: &'static str,
    pub message: String,
}

fn f(severity: Severity, code: &'static str, message: String) -> Finding {
    Finding {
        severity,
        code,
        message,
    }
}

/// An ESXi slot layout: which slot holds which kind of partition, the slots
/// that may be absent, and the order of the slots on disk.
pub struct Template {
    pub name: &'static str,
    pub slots: &'static [(u32, TypeClass, bool)],
    pub disk_order: &'static [u32],
}

/// ESXi 5.x/6.x boot disks: 1 systemPartition, 5/6 bootbank/altbootbank,
/// 7 vmkDiagnostic, 8 store, 9 second vmkDiagnostic (6.x), 2 scratch,
/// 3 VMFS datastore; slot 4 empty. On disk: 1,5,6,7,8,(9),2,3. Installs on
/// USB media lack 2 and 3.
///
/// Known from published `partedUtil getptbl` listings (5.x: slots 1,5,6,7,8
/// with their types; 6.0: 1,5,6,7,8,9,2,3 in disk order) and VMware's 5.5
/// upgrade guide ("the partition table is a fixed part of the binary
/// image"); see /work/shared/notes/reference-tools.md section 2. Types:
/// EFI system (1), Microsoft basic data ("linuxNative", 2/5/6/8),
/// vmkDiagnostic (7/9), VMFS (3). Not known: whether every 6.x build places
/// the second vmkDiagnostic partition, so slot 9 is optional here.
pub const ESXI_5_6: Template = Template {
    name: "ESXi 5.x/6.x boot disk",
    slots: &[
        (1, TypeClass::EfiSystem, true),
        (2, TypeClass::BasicData, false),
        (3, TypeClass::Vmfs, false),
        (5, TypeClass::BasicData, true),
        (6, TypeClass::BasicData, true),
        (7, TypeClass::VmkDiagnostic, true),
        (8, TypeClass::BasicData, true),
        (9, TypeClass::VmkDiagnostic, false),
    ],
    disk_order: &[1, 5, 6, 7, 8, 9, 2, 3],
};

/// ESXi 7.x/8.x boot disks: 1 system boot, 5/6 boot banks, 7 OSDATA
/// (VMFS-L), 8 VMFS datastore when there is room; slots 2-4 empty.
///
/// Known from one real ESXi 7 boot disk image published as a test fixture
/// of dissect.volume (slot 1 "BOOT" EFI system, 5 "BOOTBANK1" and
/// 6 "BOOTBANK2" Microsoft basic data, 7 "OSDATA" type 4EB2EA39-7855-4790-
/// A79E-FAE495E21F8D, 8 "datastore1" VMFS, in that disk order) and VMware's
/// description of the 7.0 layout (system boot, two boot banks, ESX-OSData).
/// Not verified: 8.x (assumed the same, as VMware documents no change) and
/// installs whose OSDATA lives on another device (no VMFS-L or VMFS entry:
/// such tables are not recognised as ESXi, so never flagged or rewritten).
pub const ESXI_7_8: Template = Template {
    name: "ESXi 7.x/8.x boot disk",
    slots: &[
        (1, TypeClass::EfiSystem, true),
        (5, TypeClass::BasicData, true),
        (6, TypeClass::BasicData, true),
        (7, TypeClass::VmfsL, true),
        (8, TypeClass::Vmfs, false),
    ],
    disk_order: &[1, 5, 6, 7, 8],
};

/// A recognised ESXi layout and, when compacted, where each entry belongs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EsxiLayout {
    pub name: &'static str,
    /// (current slot, ESXi slot) for every used entry, in slot order.
    pub mapping: Vec<(u32, u32)>,
    /// More than one mapping fits: slots cannot be restored from layout
    /// knowledge alone.
    pub ambiguous: bool,
}

impl EsxiLayout {
    pub fn compacted(&self) -> bool {
        self.mapping.iter().any(|(a, b)| a != b)
    }
    pub fn description(&self) -> String {
        if self.compacted() {
            format!("{} (entries compacted)", self.name)
        } else {
            self.name.to_string()
        }
    }
}

fn mappings(
    entries: &[&Entry],
    slots: &[(u32, TypeClass, bool)],
    ti: usize,
    ei: usize,
    cur: &mut Vec<(u32, u32)>,
    out: &mut Vec<Vec<(u32, u32)>>,
) {
    if out.len() > 4 {
        return;
    }
    if ei == entries.len() {
        if slots[ti..].iter().all(|s| !s.2) {
            out.push(cur.clone());
        }
        return;
    }
    if ti == slots.len() {
        return;
    }
    let (slot, class, required) = slots[ti];
    if entries[ei].class() == class {
        cur.push((entries[ei].slot, slot));
        mappings(entries, slots, ti + 1, ei + 1, cur, out);
        cur.pop();
    }
    if !required {
        mappings(entries, slots, ti + 1, ei, cur, out);
    }
}

fn disk_order_fits(entries: &[&Entry], mapping: &[(u32, u32)], t: &Template) -> bool {
    let mut by_disk: Vec<&&Entry> = entries.iter().collect();
    by_disk.sort_by_key(|e| e.first_lba);
    let target = |slot: u32| mapping.iter().find(|m| m.0 == slot).map(|m| m.1);
    let order: Vec<u32> = by_disk.iter().filter_map(|e| target(e.slot)).collect();
    let expected: Vec<u32> = t
        .disk_order
        .iter()
        .copied()
        .filter(|s| order.contains(s))
        .collect();
    order == expected
}

/// Recognises an ESXi boot disk layout, intact or compacted (entries in the
/// same order, gaps removed), from entry types, slot order and disk order.
pub fn esxi_layout(entries: &[Entry]) -> Option<EsxiLayout> {
    let used: Vec<&Entry> = entries.iter().collect();
    if !used.iter().any(|e| {
        matches!(
            e.class(),
            TypeClass::VmkDiagnostic | TypeClass::Vmfs | TypeClass::VmfsL
        )
    }) {
        return None;
    }
    for t in [&ESXI_5_6, &ESXI_7_8] {
        let mut all = Vec::new();
        mappings(&used, t.slots, 0, 0, &mut Vec::new(), &mut all);
        let fitting: Vec<Vec<(u32, u32)>> = all
            .into_iter()
            .filter(|m| disk_order_fits(&used, m, t))
            .collect();
        if let Some(first) = fitting.first() {
            return Some(EsxiLayout {
                name: t.name,
                mapping: first.clone(),
                ambiguous: fitting.len() > 1,
            });
        }
    }
    // Entries sorted by start LBA (sgdisk -s, sfdisk -r, TestDisk): match the
    // types in disk order against the layout's disk order instead.
    let mut by_disk = used.clone();
    by_disk.sort_by_key(|e| (e.first_lba, e.slot));
    if by_disk.windows(2).any(|w| w[0].first_lba == w[1].first_lba) {
        return None;
    }
    for t in [&ESXI_5_6, &ESXI_7_8] {
        let ordered: Vec<(u32, TypeClass, bool)> = t
            .disk_order
            .iter()
            .filter_map(|s| t.slots.iter().find(|x| x.0 == *s).copied())
            .collect();
        let mut all = Vec::new();
        mappings(&by_disk, &ordered, 0, 0, &mut Vec::new(), &mut all);
        if let Some(first) = all.first() {
            let mut mapping = first.clone();
            mapping.sort();
            return Some(EsxiLayout {
                name: t.name,
                mapping,
                ambiguous: all.len() > 1,
            });
        }
    }
    None
}

fn copy_findings(which: &str, c: &TableCopy, v: &GptView, out: &mut Vec<Finding>) {
    let h = &c.header;
    if !h.header_crc_ok() {
        out.push(f(Severity::Error, "header-crc", format!(
            "{which} header CRC is {:08x} but the header computes to {:08x}: the header was changed or damaged",
            h.header_crc_stored, h.header_crc_computed
        )));
    }
    match (&c.array_error, c.entries_crc_computed) {
        (Some(e), _) => out.push(f(Severity::Error, "array-unreadable", format!("{which} {e}"))),
        (None, Some(crc)) if crc != h.entries_crc_stored => out.push(f(Severity::Error, "array-crc", format!(
            "{which} entry array CRC is {:08x} but the array computes to {crc:08x}: entries were changed or damaged",
            h.entries_crc_stored
        ))),
        _ => {}
    }
    if h.my_lba != c.header_lba {
        out.push(f(
            Severity::Error,
            "my-lba",
            format!(
                "{which} header read at LBA {} says it is at LBA {}",
                c.header_lba, h.my_lba
            ),
        ));
    }
    if h.last_usable_lba >= v.disk_sectors {
        out.push(f(Severity::Error, "last-usable-beyond-disk", format!(
            "{which} header's last usable LBA {} is beyond the disk's last LBA {}: the disk shrank or the table belongs to a larger disk",
            h.last_usable_lba, v.disk_sectors.saturating_sub(1)
        )));
    }
    if h.first_usable_lba > h.last_usable_lba {
        out.push(f(Severity::Error, "usable-range", format!(
            "{which} header's first usable LBA {} is after its last usable LBA {}: no room for partitions, the header is damaged",
            h.first_usable_lba, h.last_usable_lba
        )));
    }
    // The entry array must lie outside the usable area (partitions would
    // overwrite it) and must not cover sector 0 or its own header.
    let ss = u64::from(v.sector_size.max(1));
    let array_sectors = h.array_bytes().div_ceil(ss);
    if array_sectors > 0 {
        let (a0, a1) = (
            h.entries_lba,
            h.entries_lba.saturating_add(array_sectors - 1),
        );
        if a0 <= h.last_usable_lba && h.first_usable_lba <= a1 {
            out.push(f(Severity::Error, "array-overlaps-usable", format!(
                "{which} entry array (LBA {a0}-{a1}) lies inside the usable LBAs {}-{}: writing to a partition there would overwrite the table",
                h.first_usable_lba, h.last_usable_lba
            )));
        }
        if a0 == 0 || (a0 <= c.header_lba && c.header_lba <= a1) {
            out.push(f(
                Severity::Error,
                "array-location",
                format!(
                    "{which} entry array (LBA {a0}-{a1}) covers {}: the header is damaged",
                    if a0 == 0 {
                        "the MBR in LBA 0".to_string()
                    } else {
                        format!("its own header at LBA {}", c.header_lba)
                    }
                ),
            ));
        }
    }
    if which == "backup" && h.alternate_lba != 1 {
        out.push(f(Severity::Info, "backup-alternate", format!(
            "the backup header's backup LBA (0x20) is {}, the primary is at LBA 1 (--from-primary rewrites it)",
            h.alternate_lba
        )));
    }
    if h.revision != 0x0001_0000 {
        out.push(f(
            Severity::Info,
            "revision",
            format!(
                "{which} header revision is {:08x} (1.0 is 00010000)",
                h.revision
            ),
        ));
    }
}

/// All findings about `v`, most severe first.
pub fn verify(v: &GptView) -> Vec<Finding> {
    let mut out = Vec::new();
    let last = v.disk_sectors.saturating_sub(1);
    match (&v.primary, &v.backup) {
        (Err(_), Err(_)) => {
            // A finding, not a note: a script must be able to tell a blank or
            // MBR-only disk from a healthy GPT by the exit code alone.
            let mbr = match v.mbr.kind {
                crate::mbr::MbrKind::Classic => "; sector 0 holds an MBR partition table",
                crate::mbr::MbrKind::Protective | crate::mbr::MbrKind::Hybrid => {
                    "; sector 0 holds a protective MBR, so the GPT headers are lost"
                }
                crate::mbr::MbrKind::None => "; sector 0 holds no MBR either",
            };
            out.push(f(
                Severity::Warning,
                "no-gpt",
                format!("no GPT on this disk (neither header found){mbr}"),
            ));
            return out;
        }
        (Err(e), Ok(_)) => out.push(f(Severity::Error, "primary-missing", format!(
            "primary header unusable ({e}); the backup is intact: the kernel ignores the backup unless booted with 'gpt', so partitions may be missing"
        ))),
        (Ok(_), Err(e)) => out.push(f(Severity::Error, "backup-missing", format!("backup header unusable ({e})"))),
        _ => {}
    }
    if let Ok(p) = &v.primary {
        copy_findings("primary", p, v, &mut out);
        if p.header.alternate_lba != last {
            out.push(f(Severity::Warning, "backup-not-at-end", format!(
                "the primary header puts the backup at LBA {} but the disk's last LBA is {}: the disk was copied to a {} disk (or resized) without moving the backup",
                p.header.alternate_lba, last, if p.header.alternate_lba < last { "larger" } else { "smaller" }
            )));
        }
    }
    if let Ok(b) = &v.backup {
        copy_findings("backup", b, v, &mut out);
        if b.header_lba != last {
            out.push(f(
                Severity::Warning,
                "backup-stranded",
                format!(
                    "the backup header was found at LBA {}, not at the last LBA {}",
                    b.header_lba, last
                ),
            ));
        }
    }
    if let (Ok(p), Ok(b)) = (&v.primary, &v.backup) {
        if !p.raw_array.is_empty() && !b.raw_array.is_empty() && p.raw_array != b.raw_array {
            let slots: Vec<String> = (0..p.header.entry_count.max(b.header.entry_count) as usize)
                .filter(|&i| {
                    let size = p.header.entry_size as usize;
                    p.raw_array.get(i * size..(i + 1) * size)
                        != b.raw_array.get(i * size..(i + 1) * size)
                })
                .take(16)
                .map(|i| (i + 1).to_string())
                .collect();
            out.push(f(
                Severity::Error,
                "arrays-differ",
                format!(
                    "primary and backup entry arrays differ (slots {})",
                    slots.join(", ")
                ),
            ));
        }
        // A header whose own CRC is wrong differs for that reason alone.
        if p.header.header_crc_ok() && b.header.header_crc_ok() {
            for (name, a, bb) in [
                (
                    "disk GUID",
                    p.header.disk_guid.to_string(),
                    b.header.disk_guid.to_string(),
                ),
                (
                    "first usable LBA",
                    p.header.first_usable_lba.to_string(),
                    b.header.first_usable_lba.to_string(),
                ),
                (
                    "last usable LBA",
                    p.header.last_usable_lba.to_string(),
                    b.header.last_usable_lba.to_string(),
                ),
                (
                    "entry count",
                    p.header.entry_count.to_string(),
                    b.header.entry_count.to_string(),
                ),
                (
                    "entry size",
                    p.header.entry_size.to_string(),
                    b.header.entry_size.to_string(),
                ),
            ] {
                if a != bb {
                    out.push(f(
                        Severity::Error,
                        "headers-differ",
                        format!("{name}: primary {a}, backup {bb}"),
                    ));
                }
            }
        }
    }
    match v.mbr.kind {
        crate::mbr::MbrKind::None => out.push(f(
            Severity::Warning,
            "no-protective-mbr",
            "sector 0 has no protective MBR (0x55AA and a type 0xEE entry): MBR-only tools may take the disk for empty".into(),
        )),
        crate::mbr::MbrKind::Classic => out.push(f(
            Severity::Warning,
            "no-protective-mbr",
            "sector 0 holds an MBR partition table without a 0xEE entry: MBR-only tools see those partitions, not the GPT".into(),
        )),
        crate::mbr::MbrKind::Hybrid => out.push(f(Severity::Info, "hybrid-mbr", "the MBR is hybrid (0xEE plus other entries)".into())),
        crate::mbr::MbrKind::Protective => {
            let want = v.disk_sectors.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
            if let Some(e) = v.mbr.entries.iter().find(|e| e.kind == 0xEE) {
                if e.sectors != want {
                    out.push(f(
                        Severity::Info,
                        "pmbr-size",
                        format!(
                            "the protective MBR's 0xEE entry covers {} sectors, the disk {want}: usual after a copy to a disk of another size (--relocate-backup also fixes this)",
                            e.sectors
                        ),
                    ));
                }
            }
        }
    }
    let entries = best_entries(v);
    let (first_usable, last_usable) = match (&v.primary, &v.backup) {
        (Ok(p), _) => (p.header.first_usable_lba, p.header.last_usable_lba),
        (_, Ok(b)) => (b.header.first_usable_lba, b.header.last_usable_lba),
        _ => (0, 0),
    };
    for e in entries {
        if e.first_lba > e.last_lba {
            out.push(f(
                Severity::Error,
                "out-of-range",
                format!(
                    "partition {} ends (LBA {}) before it starts (LBA {})",
                    e.slot, e.last_lba, e.first_lba
                ),
            ));
        } else if e.last_lba >= v.disk_sectors {
            out.push(f(Severity::Error, "out-of-range", format!(
                "partition {} spans LBA {}-{}, beyond the end of the disk (last LBA {}): the disk is smaller than the one the table was made for",
                e.slot, e.first_lba, e.last_lba, v.disk_sectors.saturating_sub(1)
            )));
        } else if e.first_lba < first_usable || e.last_lba > last_usable {
            out.push(f(Severity::Error, "out-of-range", format!(
                "partition {} spans LBA {}-{}, outside the usable LBAs {first_usable}-{last_usable}",
                e.slot, e.first_lba, e.last_lba
            )));
        }
    }
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            if a.first_lba <= b.last_lba && b.first_lba <= a.last_lba {
                out.push(f(
                    Severity::Error,
                    "overlap",
                    format!(
                        "partitions {} (LBA {}-{}) and {} (LBA {}-{}) overlap: writing to one damages the other",
                        a.slot, a.first_lba, a.last_lba, b.slot, b.first_lba, b.last_lba
                    ),
                ));
            }
        }
    }
    if let Some(l) = esxi_layout(entries) {
        if l.compacted() {
            let moves: Vec<String> = l
                .mapping
                .iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("{a}->{b}"))
                .collect();
            out.push(f(Severity::Warning, "esxi-compacted", format!(
                "looks like an {} whose entries were compacted (slots renumbered, gaps removed): ESXi finds its partitions by slot number; they belong in slots {}{}",
                l.name,
                moves.join(", "),
                if l.ambiguous { " (more than one layout fits: check against the original disk)" } else { "" }
            )));
        } else {
            out.push(f(
                Severity::Info,
                "esxi-layout",
                format!("{}: slot layout intact", l.name),
            ));
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}
