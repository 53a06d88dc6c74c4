//! LVM on the running system: which block devices may be PVs (sysfs), the
//! scan over them, and activation and deactivation through device-mapper.
//! Paths are parameters so the device listing is tested on a fake sysfs.

use crate::dm::{self, Mapper};
use crate::plan::{split_dm_name, table_text, LvPlan};
use crate::scan::{build, kernel_name, Problem, ScanReport, Seen};
use blockdev::BlockDevice;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the kernel's interfaces are.
#[derive(Clone, Debug)]
pub struct Env {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Env {
    pub fn system() -> Env {
        Env {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The block devices that may hold a PV, by kernel name: disks and their
/// partitions, md arrays, attached nbd devices (and their partitions),
/// attached loop devices. Left out: device-mapper devices (our own LVs;
/// LVM on LVM is not looked into, as lvm2's default `scan_lvs = 0`),
/// ram/zram, optical and floppy drives, empty nbd and loop slots, and
/// members of a running md array (their holder is the array).
pub fn candidates(sys: &Path) -> Vec<String> {
    let dir = sys.join("class/block");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["dm-", "ram", "zram", "sr", "fd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .filter(|n| {
            let d = dir.join(n);
            let size: u64 = std::fs::read_to_string(d.join("size"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let held_by_md = std::fs::read_dir(d.join("holders"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|h| h.file_name().to_string_lossy().starts_with("md"));
            size > 0 && !held_by_md
        })
        .collect();
    names.sort();
    names
}

/// `MAJ:MIN` of a kernel block device from sysfs.
pub fn devt_of(sys: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(sys.join("class/block").join(name).join("dev"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads one device: its PV label and metadata, and whether it is an md
/// member (a label seen through an md member that is not assembled
/// belongs to the array, not to this device).
pub fn read_device(
    path: &str,
    dev: &dyn BlockDevice,
    devt: Option<String>,
) -> Result<Option<Seen>, String> {
    let Some(pv) = crate::label::read_pv(dev)? else {
        return Ok(None);
    };
    let unusable = if kernel_name(path).starts_with("md") {
        None
    } else {
        match mdraid::superblock::find_superblock(dev) {
            Ok(Some(sb)) => Some(format!(
                "{path} is a member of md array {} ({}), which is not assembled: assemble it (rescue md assemble) and the array is the PV",
                sb.array_uuid, sb.level_name()
            )),
            _ => None,
        }
    };
    Ok(Some(Seen {
        device: path.to_string(),
        devt,
        size: dev.size(),
        pv,
        unusable,
    }))
}

/// Reads every device in `paths` (opened read-only) and builds the report.
/// `devts` gives each path's `MAJ:MIN` (None: an image file).
pub fn scan_paths(paths: &[(String, Option<String>)], partial: bool) -> ScanReport {
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    for (path, devt) in paths {
        let result = blockdev::Device::open(path)
            .map_err(|e| e.to_string())
            .and_then(|d| read_device(path, &d, devt.clone()));
        match result {
            Ok(Some(s)) => seen.push(s),
            Ok(None) => {}
            Err(e) => problems.push(Problem {
                device: path.clone(),
                error: e,
            }),
        }
    }
    build(&seen, problems, partial)
}

/// Scans the machine's block devices ([`candidates`]).
pub fn scan_system(env: &Env, partial: bool) -> ScanReport {
    let paths: Vec<(String, Option<String>)> = candidates(&env.sys)
        .into_iter()
        .map(|n| {
            let devt = devt_of(&env.sys, &n);
            (env.dev.join(&n).display().to_string(), devt)
        })
        .collect();
    scan_paths(&paths, partial)
}

/// `VG` or `VG/LV` (also `/dev/VG/LV`, `/dev/mapper/VG-LV`).
pub fn parse_spec(spec: &str) -> (String, Option<String>) {
    if let Some(m) = spec.strip_prefix("/dev/mapper/") {
        if let Some((vg, lv)) = split_dm_name(m) {
            return (vg, Some(lv));
        }
    }
    let s = spec.strip_prefix("/dev/").unwrap_or(spec);
    match s.split_once('/') {
        Some((vg, lv)) if !lv.is_empty() => (vg.to_string(), Some(lv.to_string())),
        Some((vg, _)) => (vg.to_string(), None),
        None => (s.to_string(), None),
    }
}

/// One LV made available.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Activated {
    pub vg: String,
    pub lv: String,
    pub path: String,
    pub dm_device: String,
    pub size_bytes: u64,
    pub already: bool,
}

/// The LVs `spec` selects (every VG when None): (vg name, plan). An unknown
/// VG or LV is an error listing the known ones.
pub fn select<'a>(
    report: &'a ScanReport,
    spec: Option<&str>,
) -> Result<Vec<(&'a str, &'a LvPlan)>, String> {
    let Some(spec) = spec else {
        return Ok(report
            .vgs
            .iter()
            .flat_map(|v| v.lvs.iter().map(move |l| (v.name.as_str(), l)))
            .collect());
    };
    let (vg, lv) = parse_spec(spec);
    let v = report.vg(&vg).ok_or_else(|| {
        format!(
            "no volume group '{vg}' (found: {})",
            if report.vgs.is_empty() {
                "none".to_string()
            } else {
                report
                    .vgs
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    })?;
    match lv {
        None => Ok(v.lvs.iter().map(|l| (v.name.as_str(), l)).collect()),
        Some(lv) => {
            let l = v.lvs.iter().find(|l| l.name == lv).ok_or_else(|| {
                format!(
                    "no logical volume '{lv}' in {} (it has: {})",
                    v.name,
                    v.lvs
                        .iter()
                        .filter(|l| l.visible)
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            Ok(vec![(v.name.as_str(), l)])
        }
    }
}

/// Activates, read-only, the activatable LVs `spec` selects; says each
/// step on `out` and each LV left out (with why) on `err`. Returns what is
/// active and how many selected LVs were left out; an error when nothing
/// could be activated because of device-mapper, or the only LV named
/// cannot be.
pub fn activate(
    env: &Env,
    ctl: &dyn Mapper,
    report: &ScanReport,
    spec: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(Vec<Activated>, usize), String> {
    let chosen = select(report, spec)?;
    let named_lv = spec.is_some_and(|s| parse_spec(s).1.is_some());
    let mut done = Vec::new();
    let mut left_out = 0;
    for (vg, lv) in chosen {
        let Some(table) = &lv.table else {
            if lv.visible || named_lv {
                let why = lv.why_not.as_deref().unwrap_or("not activatable");
                if named_lv {
                    return Err(format!("{vg}/{}: not activated: {why}", lv.name));
                }
                let _ = writeln!(err, "{vg}/{}: left out: {why}", lv.name);
                left_out += 1;
            }
            continue;
        };
        if let Some(why) = &lv.why_not {
            let _ = writeln!(err, "{vg}/{}: {why}", lv.name);
        }
        let node = env.dev.join("mapper").join(&lv.dm_name);
        if let Some(r) = ctl.status(&lv.dm_name).map_err(|e| e.to_string())? {
            let path = dm::make_node(&env.dev, &lv.dm_name, r.dev.0, r.dev.1)
                .map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{}: already active ({vg}/{})", path.display(), lv.name);
            done.push(Activated {
                vg: vg.to_string(),
                lv: lv.name.clone(),
                path: node.display().to_string(),
                dm_device: format!("dm-{}", r.dev.1),
                size_bytes: lv.size_bytes,
                already: true,
            });
            continue;
        }
        log::info!(
            "lvm: activating {vg}/{} as {} read-only with table:\n{}",
            lv.name,
            lv.dm_name,
            table_text(table)
        );
        let (major, minor) = ctl
            .create(&lv.dm_name, &lv.dm_uuid)
            .map_err(|e| format!("{vg}/{}: {e}", lv.name))?;
        let live = ctl
            .load(&lv.dm_name, table)
            .and_then(|()| ctl.resume(&lv.dm_name));
        if let Err(e) = live {
            let _ = ctl.remove(&lv.dm_name);
            return Err(format!(
                "{vg}/{}: {e} (the kernel log, dmesg, says why; table was: {})",
                lv.name,
                table_text(table).trim_end().replace('\n', "; ")
            ));
        }
        let path = dm::make_node(&env.dev, &lv.dm_name, major, minor)
            .map_err(|e| format!("{vg}/{}: active as /dev/dm-{minor}, but {e}", lv.name))?;
        let _ = writeln!(
            out,
            "{}: {vg}/{} activated read-only (/dev/dm-{minor}, {} bytes)",
            path.display(),
            lv.name,
            lv.size_bytes
        );
        done.push(Activated {
            vg: vg.to_string(),
            lv: lv.name.clone(),
            path: path.display().to_string(),
            dm_device: format!("dm-{minor}"),
            size_bytes: lv.size_bytes,
            already: false,
        });
    }
    Ok((done, left_out))
}

/// A device-mapper device lvm2 (or [`activate`]) made: its dm name, VG and
/// LV, from `<sys>/block/dm-*/dm/{name,uuid}` (uuid starting `LVM-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub dm_name: String,
    pub vg: String,
    pub lv: String,
    pub kernel_name: String,
}

pub fn active_lvs(sys: &Path) -> Vec<Active> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(sys.join("block"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let kname = e.file_name().to_string_lossy().into_owned();
        if !kname.starts_with("dm-") {
            continue;
        }
        let read = |f: &str| {
            std::fs::read_to_string(e.path().join("dm").join(f))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let (name, uuid) = (read("name"), read("uuid"));
        if !uuid.starts_with("LVM-") {
            continue;
        }
        if let Some((vg, lv)) = split_dm_name(&name) {
            out.push(Active {
                dm_name: name,
                vg,
                lv,
                kernel_name: kname,
            });
        }
    }
    out.sort_by(|a, b| a.dm_name.cmp(&b.dm_name));
    out
}

/// Removes the active LVs `spec` selects (all LVM ones when None) and
/// their /dev/mapper nodes. Returns how many were removed; the first
/// failure stops and is returned.
pub fn deactivate(
    env: &Env,
    ctl: &dyn Mapper,
    spec: Option<&str>,
    out: &mut dyn Write,
) -> Result<usize, String> {
    let (vg, lv) = match spec {
        Some(s) => {
            let (vg, lv) = parse_spec(s);
            (Some(vg), lv)
        }
        None => (None, None),
    };
    let chosen: Vec<Active> = active_lvs(&env.sys)
        .into_iter()
        .filter(|a| vg.as_ref().is_none_or(|v| &a.vg == v))
        .filter(|a| lv.as_ref().is_none_or(|l| &a.lv == l))
        .collect();
    if chosen.is_empty() {
        return Err(match spec {
            Some(s) => format!("no active logical volume matches '{s}'"),
            None => "no active logical volumes".into(),
        });
    }
    for a in &chosen {
        ctl.remove(&a.dm_name).map_err(|e| {
            format!(
                "{}/{}: {e}; unmount what is mounted from it first",
                a.vg, a.lv
            )
        })?;
        dm::remove_node(&env.dev, &a.dm_name).map_err(|e| e.to_string())?;
        let _ = writeln!(
            out,
            "/dev/mapper/{}: {}/{} deactivated",
            a.dm_name, a.vg, a.lv
        );
    }
    Ok(chosen.len())
}
