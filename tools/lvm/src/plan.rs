//! Device-mapper tables for the LVs of a VG: pure, from the metadata and
//! where each PV was found. The text of a [`TableLine`] is what
//! `dmsetup table` shows for the device.
//!
//! - a `striped` segment with one stripe is a `linear` target:
//!   `start length linear MAJ:MIN offset`, offset = pe_start + extent x
//!   extent_size;
//! - with N stripes it is `striped N chunk MAJ:MIN offset ...` (chunk =
//!   stripe_size, sectors);
//! - `error` and `zero` segments are the dm targets of the same name;
//! - every other segment type (thin-pool, thin, snapshot, mirror, raid1/4/5/
//!   6/10, cache, cache-pool, vdo, writecache, integrity...) is named and the
//!   LV is not activated;
//! - hidden LVs (no `VISIBLE` flag: parts of a pool, a mirror, a RAID) and
//!   the COW store of a snapshot are not activated: their bytes alone are
//!   not the volume.
//!
//! Missing PVs: an LV with an extent on a PV that was not found is not
//! activated and the report names the PV UUID. With `partial` it is
//! activated anyway, each segment touching a missing PV mapped to the dm
//! `error` target in full (a striped segment cannot lose one stripe alone),
//! so reads there fail instead of returning wrong data; lvm2's
//! `--activationmode partial` does the same with its default
//! `missing_stripe_filler = "error"`.

use crate::vg::{Lv, Segment, Vg};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Where a PV was found, as the kernel knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvDevice {
    /// `MAJ:MIN` of the block device.
    pub devt: String,
    /// Bytes.
    pub size: u64,
}

/// One line of a dm table (sectors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableLine {
    pub start: u64,
    pub length: u64,
    pub target: String,
    pub params: String,
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.start, self.length, self.target)?;
        if !self.params.is_empty() {
            write!(f, " {}", self.params)?;
        }
        Ok(())
    }
}

/// The table as `dmsetup table` prints it: one line each, newline-ended.
pub fn table_text(lines: &[TableLine]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// What can be done with one LV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LvPlan {
    pub name: String,
    /// The device-mapper name, `VG-LV` with dashes doubled.
    pub dm_name: String,
    /// The device-mapper UUID lvm2 gives it: `LVM-` VG id LV id, no dashes.
    pub dm_uuid: String,
    pub size_bytes: u64,
    pub visible: bool,
    /// Segment types in order, duplicates once.
    pub segment_types: Vec<String>,
    /// The table to load; None when not activatable.
    pub table: Option<Vec<TableLine>>,
    /// Why it is not activated (or, with partial, what is missing).
    pub why_not: Option<String>,
    /// UUIDs of PVs the LV has extents on that were not found.
    pub missing_pvs: Vec<String>,
}

/// Segment types that map onto dm targets here.
pub fn supported(seg_type: &str) -> bool {
    matches!(seg_type, "striped" | "error" | "zero")
}

/// LVM's escaping of a VG or LV name in a dm name: `-` doubled.
pub fn escape(name: &str) -> String {
    name.replace('-', "--")
}

/// `VG-LV` as lvm2 names the dm device.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", escape(vg), escape(lv))
}

/// The (VG, LV) of a dm name made by [`dm_name`]: split at the first single
/// dash.
pub fn split_dm_name(name: &str) -> Option<(String, String)> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&name[..i], &name[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some((vg.replace("--", "-"), lv.replace("--", "-")));
        }
        i += 1;
    }
    None
}

/// The dm UUID lvm2 uses: `LVM-` + VG id + LV id, dashes removed.
pub fn dm_uuid(vg_id: &str, lv_id: &str) -> String {
    format!("LVM-{}{}", vg_id.replace('-', ""), lv_id.replace('-', ""))
}

/// Plans every LV of `vg`. `found` maps PV UUIDs to their devices; PVs not
/// in it are missing.
pub fn plan_vg(vg: &Vg, found: &BTreeMap<String, PvDevice>, partial: bool) -> Vec<LvPlan> {
    vg.lvs
        .iter()
        .map(|lv| plan_lv(vg, lv, found, partial))
        .collect()
}

/// The LVs whose bytes a snapshot keeps its changes in, with the origin.
fn cow_stores(vg: &Vg) -> BTreeMap<&str, &str> {
    let mut m = BTreeMap::new();
    for lv in &vg.lvs {
        for s in &lv.segments {
            if s.seg_type == "snapshot" {
                if let (Some(cow), origin) = (s.uses.first(), s.uses.get(1)) {
                    m.insert(cow.as_str(), origin.map(String::as_str).unwrap_or("?"));
                }
            }
        }
    }
    m
}

fn plan_lv(vg: &Vg, lv: &Lv, found: &BTreeMap<String, PvDevice>, partial: bool) -> LvPlan {
    let mut types: Vec<String> = Vec::new();
    for s in &lv.segments {
        if !types.contains(&s.seg_type) {
            types.push(s.seg_type.clone());
        }
    }
    let mut p = LvPlan {
        name: lv.name.clone(),
        dm_name: dm_name(&vg.name, &lv.name),
        dm_uuid: dm_uuid(&vg.id, &lv.id),
        size_bytes: lv
            .extents()
            .saturating_mul(vg.extent_size)
            .saturating_mul(512),
        visible: lv.visible,
        segment_types: types,
        table: None,
        why_not: None,
        missing_pvs: Vec::new(),
    };
    // Missing PVs are named whatever else is wrong.
    for s in &lv.segments {
        for st in &s.stripes {
            if let Some(pv) = vg.pv(&st.target) {
                let gone = !found.contains_key(&pv.id) || pv.status.iter().any(|x| x == "MISSING");
                if gone && !p.missing_pvs.contains(&pv.id) {
                    p.missing_pvs.push(pv.id.clone());
                }
            }
        }
    }
    if let Some(origin) = cow_stores(vg).get(lv.name.as_str()) {
        p.why_not = Some(format!(
            "snapshot of {origin}: this LV holds the snapshot's changes (COW store), and the snapshot target is not supported"
        ));
        return p;
    }
    if let Some(s) = lv.segments.iter().find(|s| !supported(&s.seg_type)) {
        p.why_not = Some(format!("segment type {} is not supported", s.seg_type));
        return p;
    }
    if !lv.visible {
        p.why_not = Some("hidden LV (a part of another LV)".into());
        return p;
    }
    if lv.segments.is_empty() {
        p.why_not = Some("no segments".into());
        return p;
    }
    let mut lines = Vec::new();
    for s in &lv.segments {
        match segment_line(vg, s, found) {
            Ok(l) => lines.push(l),
            Err(Missing::Pv) if partial => lines.push(TableLine {
                start: s.start_extent * vg.extent_size,
                length: s.extent_count * vg.extent_size,
                target: "error".into(),
                params: String::new(),
            }),
            Err(Missing::Pv) => {}
            Err(Missing::Other(why)) => {
                p.why_not = Some(why);
                return p;
            }
        }
    }
    if !p.missing_pvs.is_empty() {
        let list = p.missing_pvs.join(", ");
        if partial {
            p.why_not = Some(format!(
                "partial: extents on missing PV {list} read as I/O errors"
            ));
        } else {
            p.why_not = Some(format!("PV {list} is missing"));
            return p;
        }
    }
    lines.sort_by_key(|l| l.start);
    // Segments must tile the LV from 0 without holes or overlaps.
    let mut at = 0;
    for l in &lines {
        if l.start != at {
            p.why_not = Some(format!(
                "segments do not follow each other: one starts at sector {}, expected {at}",
                l.start
            ));
            return p;
        }
        at = l.start + l.length;
    }
    p.table = Some(lines);
    p
}

enum Missing {
    Pv,
    Other(String),
}

fn segment_line(
    vg: &Vg,
    s: &Segment,
    found: &BTreeMap<String, PvDevice>,
) -> Result<TableLine, Missing> {
    let start = s.start_extent * vg.extent_size;
    let length = s.extent_count * vg.extent_size;
    let line = |target: &str, params: String| TableLine {
        start,
        length,
        target: target.into(),
        params,
    };
    match s.seg_type.as_str() {
        "error" => return Ok(line("error", String::new())),
        "zero" => return Ok(line("zero", String::new())),
        _ => {}
    }
    let per_stripe = s.extent_count / s.stripe_count.max(1);
    let mut devs = Vec::new();
    let mut missing = false;
    for st in &s.stripes {
        let Some(pv) = vg.pv(&st.target) else {
            return Err(Missing::Other(if vg.lv(&st.target).is_some() {
                format!(
                    "a segment maps onto LV {} (stacked LVs, as during pvmove, are not supported)",
                    st.target
                )
            } else {
                format!(
                    "a segment names {}, which is neither a PV nor an LV of the VG",
                    st.target
                )
            }));
        };
        if st.extent.saturating_add(per_stripe) > pv.pe_count {
            return Err(Missing::Other(format!(
                "a segment uses extents {}..{} of {} ({}), which has {} extents",
                st.extent,
                st.extent.saturating_add(per_stripe),
                st.target,
                pv.id,
                pv.pe_count
            )));
        }
        let offset = pv
            .pe_start
            .saturating_add(st.extent.saturating_mul(vg.extent_size));
        match found.get(&pv.id) {
            Some(d) if !pv.status.iter().any(|x| x == "MISSING") => {
                let end = offset
                    .saturating_add(per_stripe.saturating_mul(vg.extent_size))
                    .saturating_mul(512);
                if end > d.size {
                    return Err(Missing::Other(format!(
                        "PV {} ({}) is {} bytes, but a segment reaches byte {end} (the device is smaller than the PV was)",
                        st.target, pv.id, d.size
                    )));
                }
                devs.push(format!("{} {offset}", d.devt));
            }
            _ => missing = true,
        }
    }
    if missing {
        return Err(Missing::Pv);
    }
    if s.stripe_count == 1 {
        Ok(line("linear", devs.join(" ")))
    } else {
        Ok(line(
            "striped",
            format!(
                "{} {} {}",
                s.stripe_count,
                s.stripe_size.unwrap_or(0),
                devs.join(" ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_and_split_back() {
        assert_eq!(dm_name("vg1000", "lv"), "vg1000-lv");
        assert_eq!(dm_name("my-vg", "root-fs"), "my--vg-root--fs");
        assert_eq!(
            split_dm_name("my--vg-root--fs"),
            Some(("my-vg".into(), "root-fs".into()))
        );
        assert_eq!(split_dm_name("vg1-lv"), Some(("vg1".into(), "lv".into())));
        assert_eq!(split_dm_name("nodash"), None);
        assert_eq!(split_dm_name("-x"), None);
        assert_eq!(
            dm_uuid("zV6xTk-PEc8-Rm4k", "aZqH7D-q0Lg"),
            "LVM-zV6xTkPEc8Rm4kaZqH7Dq0Lg"
        );
    }
}
