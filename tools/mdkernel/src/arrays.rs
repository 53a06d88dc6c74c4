//! Arrays found, assembled read-only and stopped, as `rescue md` and the
//! menu do it: scanning the system, resolving what the user named,
//! assembly (with the filesystem mounted read-only on request) and stop.

use crate::{kernel_name, members_to_add, mount_point, Md, Output, Start};
use blockdev::sys::ModuleLoader;
use mdraid::scan::{Array, ScanReport};
use std::io::Write;

/// Scans every disk and partition.
pub fn scan_system() -> ScanReport {
    mdraid::devices::scan_system()
}

/// The array `spec` names: its UUID, its name (`DiskStation:2`, or the
/// part after the colon if that is unique), or the md device running it.
pub fn resolve<'a>(md: &Md, report: &'a ScanReport, spec: &str) -> Result<&'a Array, String> {
    if let Some(a) = mdraid::scan::find_array(report, spec)? {
        return Ok(a);
    }
    let dev = kernel_name(spec);
    if let Some(r) = md.running().into_iter().find(|r| r.name == dev) {
        if let Some(a) = report.arrays.iter().find(|a| r.holds(a)) {
            return Ok(a);
        }
    }
    Err(format!(
        "no array '{spec}' (known: {})",
        if report.arrays.is_empty() {
            "none".to_string()
        } else {
            report
                .arrays
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{} {n}", a.uuid),
                    None => a.uuid.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    ))
}

/// Loads the driver modules of `a`; a failure is said on `err` as `rescue
/// <command>: ...` and does not stop `command`.
pub(crate) fn load_modules(command: &str, load: ModuleLoader<'_>, a: &Array, err: &mut dyn Write) {
    let mut mods = vec!["md_mod"];
    mods.extend(crate::personality_module(a.level_number));
    for m in mods {
        if let Err(e) = load(m) {
            // Built in or already loaded is fine; assembly says if not.
            let _ = writeln!(
                err,
                "{}",
                cliconv::message_line(command, format_args!("module {m}: {e}"))
            );
        }
    }
}

pub(crate) fn describe(a: &Array) -> String {
    format!(
        "{}{} ({} {}, {} devices)",
        a.uuid,
        a.name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default(),
        a.level,
        a.layout_name,
        a.raid_disks
    )
}

/// Assembles the array `spec` names read-only from its in-sync members
/// (the others are named as left out) and, with `mount`, mounts its
/// filesystem read-only at [`mount_point`]. Says what it did on `say`;
/// returns the md device's name.
pub fn assemble(
    md: &Md,
    spec: &str,
    mount: bool,
    load: ModuleLoader<'_>,
    say: &mut Output<'_>,
) -> Result<String, String> {
    let report = scan_system();
    let a = resolve(md, &report, spec)?;
    load_modules(crate::cli::ASSEMBLE, load, a, say.err);
    let (members, left_out) = members_to_add(a);
    for l in &left_out {
        let _ = writeln!(say.out, "left out: {l}");
    }
    let name = md.assemble(a, Start::ReadOnly)?;
    let node = md.dev.join(&name);
    let _ = writeln!(
        say.out,
        "/dev/{name}: {} assembled read-only from {} (array_state {})",
        describe(a),
        members.join(" "),
        md.read(&name, "array_state").unwrap_or_default()
    );
    if a.degraded {
        let _ = writeln!(say.out, "degraded: roles {:?} missing", a.missing_roles);
    }
    let sig = blockdev::Device::open(&node)
        .ok()
        .and_then(|d| fsmagic::detect(&d));
    let _ = match &sig {
        Some(s) => writeln!(say.out, "contents: {}", s.kind.name()),
        None => writeln!(say.out, "contents: no known signature"),
    };
    if mount {
        let kind = sig
            .map(|s| s.kind)
            .ok_or_else(|| format!("/dev/{name}: no filesystem found to mount"))?;
        let fs = kind
            .kernel_mount()
            .ok_or_else(|| format!("/dev/{name}: {} cannot be mounted here", kind.name()))?;
        let data = fs.options.and_then(|o| std::ffi::CString::new(o).ok());
        let at = mount_point(&name);
        let m = blockdev::sys::Mount {
            node: &node,
            at: &at,
            fstype: fs.fstype,
            modules: fs.modules,
            data: data.as_deref(),
            read_only: true,
        };
        blockdev::sys::mount(&m, None, load)?;
        let _ = writeln!(say.out, "mounted read-only at {}", at.display());
    }
    Ok(name)
}

/// The md device running what `spec` names (an md device name is taken as
/// is, so an array whose members are gone can still be stopped).
pub(crate) fn running_name(md: &Md, spec: &str) -> Result<String, String> {
    let dev = kernel_name(spec);
    if md.running().iter().any(|r| r.name == dev) {
        return Ok(dev.to_string());
    }
    let report = scan_system();
    let a = resolve(md, &report, spec)?;
    md.running_for(a)
        .map(|r| r.name)
        .ok_or_else(|| format!("array {} is not assembled", a.uuid))
}

/// Stops the array `spec` names (unmounting what [`assemble`] mounted) and
/// releases its members. Says what it did on `out`.
pub fn stop_array(md: &Md, spec: &str, out: &mut dyn Write) -> Result<(), String> {
    let name = running_name(md, spec)?;
    let at = mount_point(&name);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if blockdev::sys::parse_mounts(&mounts)
        .iter()
        .any(|(_, m, _)| std::path::Path::new(m) == at)
    {
        rustix::mount::unmount(at.as_path(), rustix::mount::UnmountFlags::empty())
            .map_err(|e| format!("unmount {}: {}", at.display(), std::io::Error::from(e)))?;
        let _ = std::fs::remove_dir(&at);
        let _ = writeln!(out, "unmounted {}", at.display());
    }
    md.stop(&name)?;
    let _ = writeln!(out, "/dev/{name} stopped; its members are released");
    Ok(())
}
