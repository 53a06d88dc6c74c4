//! Volume groups from the PVs found: the metadata copies compared (the
//! highest seqno wins; older or different copies are reported), each VG's
//! PVs located by UUID (duplicates resolved, missing ones named), and the
//! plan of every LV. Pure over what was read, so tests run it on images.

use crate::label::{MdaRead, PvOnDisk};
use crate::plan::{plan_vg, LvPlan, PvDevice};
use crate::vg::{parse_vg, Vg};
use serde::Serialize;
use std::collections::BTreeMap;

/// A device that was read: its name, `MAJ:MIN` (None for an image file),
/// size in bytes, and what it holds.
#[derive(Clone, Debug)]
pub struct Seen {
    pub device: String,
    pub devt: Option<String>,
    pub size: u64,
    pub pv: PvOnDisk,
    /// Why this device must not be used although it carries the label
    /// (a member of an md array that is not assembled: the label seen
    /// through it is the array's).
    pub unusable: Option<String>,
}

/// A PV of a VG and where it was found.
#[derive(Clone, Debug, Serialize)]
pub struct PvReport {
    /// `pv0`, as the metadata names it.
    pub key: String,
    pub uuid: String,
    /// The device it was found on; None: missing.
    pub found_on: Option<String>,
    /// The device the metadata last saw it on.
    pub device_hint: Option<String>,
    pub size_bytes: u64,
    pub pe_start_bytes: u64,
    pub pe_count: u64,
}

/// One volume group.
#[derive(Clone, Debug, Serialize)]
pub struct VgReport {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    pub extent_size_bytes: u64,
    /// The device whose metadata copy is used.
    pub metadata_from: String,
    /// How many metadata copies agree with it.
    pub metadata_copies: usize,
    /// Copies that are older or differ.
    pub disagreements: Vec<String>,
    pub pvs: Vec<PvReport>,
    pub lvs: Vec<LvPlan>,
    #[serde(skip)]
    pub vg: Vg,
}

impl VgReport {
    pub fn missing_pvs(&self) -> impl Iterator<Item = &PvReport> {
        self.pvs.iter().filter(|p| p.found_on.is_none())
    }
}

/// A PV whose VG is not known (no metadata of its own, and none of the VGs
/// found lists it).
#[derive(Clone, Debug, Serialize)]
pub struct Orphan {
    pub device: String,
    pub uuid: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub device: String,
    pub error: String,
}

/// What a scan found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScanReport {
    pub vgs: Vec<VgReport>,
    pub orphans: Vec<Orphan>,
    pub problems: Vec<Problem>,
}

impl ScanReport {
    /// Whether anything needs the user's attention.
    pub fn has_findings(&self) -> bool {
        !self.problems.is_empty()
            || !self.orphans.is_empty()
            || self.vgs.iter().any(|v| {
                !v.disagreements.is_empty()
                    || v.missing_pvs().next().is_some()
                    || v.lvs.iter().any(|l| l.visible && l.table.is_none())
            })
    }

    /// The VG named `name` (or with that id).
    pub fn vg(&self, name: &str) -> Option<&VgReport> {
        self.vgs.iter().find(|v| v.name == name || v.id == name)
    }
}

struct Copy<'a> {
    vg: Vg,
    device: &'a str,
    area: u64,
}

/// Groups what was read into VGs, PVs without a VG, and problems. With
/// `partial`, LVs with missing PVs are planned with error targets.
pub fn build(seen: &[Seen], read_errors: Vec<Problem>, partial: bool) -> ScanReport {
    let mut report = ScanReport {
        problems: read_errors,
        ..ScanReport::default()
    };
    let mut copies: Vec<Copy<'_>> = Vec::new();
    for s in seen {
        if let Some(why) = &s.unusable {
            report.problems.push(Problem {
                device: s.device.clone(),
                error: format!("LVM2 label of PV {} ignored: {why}", s.pv.header.uuid),
            });
            continue;
        }
        for (i, m) in s.pv.metadata.iter().enumerate() {
            let area = s.pv.header.metadata_areas.get(i).map_or(0, |a| a.offset);
            match m {
                Ok(MdaRead::Empty) => {}
                // `pvchange --metadataignore y`: lvm2 stops updating this
                // copy, so it is not one to compare.
                Ok(MdaRead::Text(t)) if t.ignored => {}
                Ok(MdaRead::Text(t)) => match parse_vg(&t.text) {
                    Ok(vg) => copies.push(Copy {
                        vg,
                        device: &s.device,
                        area,
                    }),
                    Err(e) => report.problems.push(Problem {
                        device: s.device.clone(),
                        error: format!("metadata area at byte {area}: {e}"),
                    }),
                },
                Err(e) => report.problems.push(Problem {
                    device: s.device.clone(),
                    error: format!("metadata area {i}: {e}"),
                }),
            }
        }
    }
    // Group by VG id; the highest seqno wins.
    let mut by_id: BTreeMap<String, Vec<&Copy<'_>>> = BTreeMap::new();
    for c in &copies {
        by_id.entry(c.vg.id.clone()).or_default().push(c);
    }
    let usable: Vec<&Seen> = seen.iter().filter(|s| s.unusable.is_none()).collect();
    let mut in_vg: Vec<String> = Vec::new();
    for (_, mut group) in by_id {
        group.sort_by_key(|c| std::cmp::Reverse(c.vg.seqno));
        let best = group[0];
        let mut disagreements = Vec::new();
        let mut agree = 0;
        for c in &group {
            if c.vg.seqno < best.vg.seqno {
                disagreements.push(format!(
                    "{} (metadata area at byte {}) has seqno {}, older than {} from {}",
                    c.device, c.area, c.vg.seqno, best.vg.seqno, best.device
                ));
            } else if c.vg != best.vg {
                disagreements.push(format!(
                    "{} (metadata area at byte {}) has seqno {} like {} but different contents",
                    c.device, c.area, c.vg.seqno, best.device
                ));
            } else {
                agree += 1;
            }
        }
        let vg = best.vg.clone();
        let mut found: BTreeMap<String, PvDevice> = BTreeMap::new();
        let mut pvs = Vec::new();
        for p in &vg.pvs {
            in_vg.push(p.id.clone());
            let mut holders: Vec<&&Seen> =
                usable.iter().filter(|s| s.pv.header.uuid == p.id).collect();
            // An md array over a member with the label at its start: the
            // array is the PV. Otherwise the first device found.
            holders.sort_by_key(|s| !kernel_name(&s.device).starts_with("md"));
            if holders.len() > 1 {
                disagreements.push(format!(
                    "PV {} ({}) is on {} devices: using {}, ignoring {}",
                    p.key,
                    p.id,
                    holders.len(),
                    holders[0].device,
                    holders[1..]
                        .iter()
                        .map(|s| s.device.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let on = holders.first();
            if let Some(s) = on {
                found.insert(
                    p.id.clone(),
                    PvDevice {
                        devt: s.devt.clone().unwrap_or_else(|| s.device.clone()),
                        size: s.size,
                    },
                );
            }
            pvs.push(PvReport {
                key: p.key.clone(),
                uuid: p.id.clone(),
                found_on: on.map(|s| s.device.clone()),
                device_hint: p.device.clone(),
                size_bytes: p.dev_size.saturating_mul(512),
                pe_start_bytes: p.pe_start.saturating_mul(512),
                pe_count: p.pe_count,
            });
        }
        let lvs = plan_vg(&vg, &found, partial);
        report.vgs.push(VgReport {
            name: vg.name.clone(),
            id: vg.id.clone(),
            seqno: vg.seqno,
            extent_size_bytes: vg.extent_size.saturating_mul(512),
            metadata_from: best.device.to_string(),
            metadata_copies: agree,
            disagreements,
            pvs,
            lvs,
            vg,
        });
    }
    report.vgs.sort_by(|a, b| a.name.cmp(&b.name));
    for s in usable {
        if !in_vg.contains(&s.pv.header.uuid)
            && !report.orphans.iter().any(|o| o.uuid == s.pv.header.uuid)
        {
            report.orphans.push(Orphan {
                device: s.device.clone(),
                uuid: s.pv.header.uuid.clone(),
            });
        }
    }
    report
}

/// `/dev/md2` to `md2`.
pub fn kernel_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
