use crate::plan::table_text;
use crate::scan::ScanReport;
use crate::system::{self, Env};
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use screen::human_size;

/// LVM2 volume groups: find them from the PVs' metadata (disks,
/// partitions, md arrays, nbd devices), and make their logical volumes
/// available read-only as /dev/mapper/VG-LV. Nothing is written to a PV.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "lvm",
    error_code(0, "done: see the action's --help"),
    error_code(1, "findings: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
pub struct LvmCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    Scan(ScanCommand),
    Activate(ActivateCommand),
    Deactivate(DeactivateCommand),
}

/// Find LVM2 PVs and their volume groups: each VG's PVs and where they
/// were found (or that they are missing), its LVs with size, segment
/// types, and whether they can be activated (or why not), and metadata
/// copies that disagree.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "scan",
    error_code(0, "done: every VG found is complete and every visible LV can be activated (also when none is found)"),
    error_code(1, "findings: a PV is missing, an LV cannot be activated, metadata copies disagree, or a device could not be read"),
    error_code(2, "error: usage error (unknown option, missing argument), or the output could not be written")
)]
pub struct ScanCommand {
    /// devices or image files to look at (default: every disk, partition,
    /// md array, nbd and loop device)
    #[argh(positional)]
    pub targets: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// also print each LV's device-mapper table
    #[argh(switch)]
    pub tables: bool,
}

/// Activate logical volumes read-only through device-mapper and print
/// their /dev/mapper paths. VG activates every LV of the VG that can be;
/// VG/LV one LV; nothing: every VG found. Thin, snapshot, RAID, mirror,
/// cache and VDO LVs are not supported and are left out.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "activate",
    error_code(0, "done: every LV selected is active (read-only)"),
    error_code(1, "partial: some LVs selected were left out (the messages say why), the others are active"),
    error_code(2, "error: usage error (unknown option, missing argument), no such VG or LV, the LV named cannot be activated, nothing to activate, or device-mapper failed")
)]
pub struct ActivateCommand {
    /// VG or VG/LV (default: all)
    #[argh(positional)]
    pub spec: Option<String>,
    /// also activate LVs with a missing PV: their extents there read as
    /// I/O errors (dm error target)
    #[argh(switch)]
    pub partial: bool,
}

/// Deactivate logical volumes: remove their device-mapper devices and
/// /dev/mapper nodes (unmount them first).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "deactivate",
    error_code(0, "done: the LVs selected are no longer active"),
    error_code(2, "error: usage error (unknown option, missing argument), no active LV matches, or one is in use")
)]
pub struct DeactivateCommand {
    /// VG or VG/LV (default: every active LVM logical volume)
    #[argh(positional)]
    pub spec: Option<String>,
}

pub const SCAN: &str = "lvm scan";
pub const ACTIVATE: &str = "lvm activate";
pub const DEACTIVATE: &str = "lvm deactivate";

/// Runs `rescue lvm`; `load` loads kernel modules (dm_mod).
pub fn run(cmd: LvmCommand, load: ModuleLoader<'_>) -> i32 {
    let env = Env::system();
    match cmd.action {
        Action::Scan(c) => run_scan(&env, c),
        Action::Activate(c) => run_activate(&env, c, load),
        Action::Deactivate(c) => run_deactivate(&env, c, load),
    }
}

fn run_scan(env: &Env, c: ScanCommand) -> i32 {
    let report = if c.targets.is_empty() {
        system::scan_system(env, false)
    } else {
        let paths: Vec<(String, Option<String>)> = c
            .targets
            .iter()
            .map(|t| (t.clone(), devt_of_path(env, t)))
            .collect();
        system::scan_paths(&paths, false)
    };
    let findings = Exit::findings_if(report.has_findings());
    if c.json {
        return cliconv::print_json(SCAN, 1, &report).max(findings).code();
    }
    print!("{}", render(&report, c.tables));
    findings.code()
}

/// `MAJ:MIN` of a block-device path (None for an image file).
fn devt_of_path(env: &Env, path: &str) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_block_device() {
        return None;
    }
    let _ = env;
    Some(format!(
        "{}:{}",
        rustix::fs::major(m.rdev()),
        rustix::fs::minor(m.rdev())
    ))
}

/// The scan as text.
pub fn render(r: &ScanReport, tables: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.vgs.is_empty() {
        s.push_str("No LVM2 volume groups found.\n");
    }
    for v in &r.vgs {
        let _ = writeln!(
            s,
            "VG {}  id {}  seqno {}  extent {}  metadata from {} ({} {})",
            v.name,
            v.id,
            v.seqno,
            human_size(v.extent_size_bytes),
            v.metadata_from,
            v.metadata_copies,
            if v.metadata_copies == 1 {
                "copy"
            } else {
                "copies agree"
            }
        );
        for d in &v.disagreements {
            let _ = writeln!(s, "  ! {d}");
        }
        for p in &v.pvs {
            let _ = writeln!(
                s,
                "  PV {:<5} {}  {}  {} extents from byte {}",
                p.key,
                p.uuid,
                match &p.found_on {
                    Some(d) => format!("on {d}"),
                    None => format!(
                        "MISSING (last seen as {})",
                        p.device_hint.as_deref().unwrap_or("?")
                    ),
                },
                p.pe_count,
                p.pe_start_bytes
            );
        }
        for l in &v.lvs {
            let state = match (&l.table, &l.why_not) {
                (Some(_), None) => format!("activatable as /dev/mapper/{}", l.dm_name),
                (Some(_), Some(w)) => format!("activatable as /dev/mapper/{} ({w})", l.dm_name),
                (None, Some(w)) => format!("not activatable: {w}"),
                (None, None) => "not activatable".into(),
            };
            let _ = writeln!(
                s,
                "  LV {}{}  {}  [{}]  {state}",
                l.name,
                if l.visible { "" } else { " (hidden)" },
                human_size(l.size_bytes),
                l.segment_types.join(", ")
            );
            if tables {
                if let Some(t) = &l.table {
                    for line in table_text(t).lines() {
                        let _ = writeln!(s, "      {line}");
                    }
                }
            }
        }
    }
    for o in &r.orphans {
        let _ = writeln!(
            s,
            "PV {} on {}: in no volume group found (no metadata of its own)",
            o.uuid, o.device
        );
    }
    for p in &r.problems {
        let _ = writeln!(s, "{}: {}", p.device, p.error);
    }
    s
}

fn control(env: &Env, load: ModuleLoader<'_>, command: &str) -> Result<crate::dm::Control, String> {
    if let Err(e) = load("dm_mod") {
        // Built in or already loaded is fine; opening the control node says.
        cliconv::eprint(command, format_args!("module dm_mod: {e}"));
    }
    let ctl = crate::dm::Control::open(&env.dev, &env.sys).map_err(|e| e.to_string())?;
    let v = ctl.version().map_err(|e| e.to_string())?;
    log::info!("lvm: device-mapper interface {}.{}.{}", v[0], v[1], v[2]);
    Ok(ctl)
}

fn run_activate(env: &Env, c: ActivateCommand, load: ModuleLoader<'_>) -> i32 {
    let report = system::scan_system(env, c.partial);
    for p in &report.problems {
        cliconv::eprint(ACTIVATE, format_args!("{}: {}", p.device, p.error));
    }
    for v in &report.vgs {
        for d in &v.disagreements {
            cliconv::eprint(ACTIVATE, format_args!("VG {}: {d}", v.name));
        }
    }
    let ctl = match control(env, load, ACTIVATE) {
        Ok(c) => c,
        Err(e) => return cliconv::fail(ACTIVATE, e).code(),
    };
    let mut err = Vec::new();
    let result = system::activate(
        env,
        &ctl,
        &report,
        c.spec.as_deref(),
        &mut std::io::stdout(),
        &mut err,
    );
    for line in String::from_utf8_lossy(&err).lines() {
        cliconv::eprint(ACTIVATE, line);
    }
    match result {
        Ok((done, _)) if done.is_empty() => {
            cliconv::fail(ACTIVATE, "nothing could be activated").code()
        }
        Ok((_, left_out)) => Exit::findings_if(left_out > 0).code(),
        Err(e) => cliconv::fail(ACTIVATE, e).code(),
    }
}

fn run_deactivate(env: &Env, c: DeactivateCommand, load: ModuleLoader<'_>) -> i32 {
    let ctl = match control(env, load, DEACTIVATE) {
        Ok(c) => c,
        Err(e) => return cliconv::fail(DEACTIVATE, e).code(),
    };
    match system::deactivate(env, &ctl, c.spec.as_deref(), &mut std::io::stdout()) {
        Ok(_) => Exit::Done.code(),
        Err(e) => cliconv::fail(DEACTIVATE, e).code(),
    }
}
