//! `rescue md`: scan, examine and verify (read-only, in mdraid) and the
//! kernel-driver subcommands: assemble read-only, stop, check and repair.
//! Exit codes: 0 ok, 1 problems or mismatches found, 2 usage, refusal or
//! error.

use crate::{check_window, kernel_name, member_nodes, members_to_add, Md, Start};
use argh::FromArgs;
use dest::ModuleLoader;
use mdraid::cli::{ExamineCommand, ScanCommand, VerifyCommand};
use mdraid::scan::{self, Array, ScanReport};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Linux md RAID: find arrays, examine superblocks, verify an array without
/// writing anything, assemble one read-only, and run the kernel's check
/// only when asked and confirmed.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "md")]
pub struct MdCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    Scan(ScanCommand),
    Examine(ExamineCommand),
    Verify(VerifyCommand),
    Assemble(AssembleCommand),
    Stop(StopCommand),
    Check(CheckCommand),
}

/// Assemble an array with the kernel's md driver, read-only: no resync, no
/// superblock update, nothing written to its members. ARRAY is the array's
/// UUID or name as `md scan` shows it. Only in-sync members are used;
/// stale ones are left out (and named).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "assemble",
    error_code(0, "assembled read-only (and mounted with --mount)"),
    error_code(2, "usage error (unknown option, missing argument), the array is not found or cannot be assembled or mounted")
)]
pub struct AssembleCommand {
    /// array UUID or name (e.g. DiskStation:2)
    #[argh(positional)]
    pub array: String,
    /// required: start the array read-only (the only mode offered)
    #[argh(switch)]
    pub readonly: bool,
    /// also mount its filesystem read-only at /mnt/md/mdN
    #[argh(switch)]
    pub mount: bool,
}

/// Stop an assembled array and release its members (unmounts
/// /mnt/md/mdN first if `md assemble --mount` mounted it).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "stop",
    error_code(0, "stopped, members released"),
    error_code(2, "usage error (unknown option, missing argument), the array is not assembled, or it cannot be unmounted or stopped")
)]
pub struct StopCommand {
    /// array UUID, name, or md device (md127, /dev/md127)
    #[argh(positional)]
    pub array: String,
}

/// The kernel's own consistency check ('check' to sync_action), after a
/// confirmation: the array has to run read-write for it, so the kernel
/// writes the md superblocks on every member, and it rewrites sectors it
/// cannot read from the redundant copy. mismatch_cnt is reported at the
/// end with its unit. `md verify` does the same comparison without
/// writing anything. Ctrl-C cancels the pass ('idle'). Afterwards the array
/// is put back as it was (read-only, or stopped if it was not assembled).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "check",
    error_code(0, "the pass finished with mismatch_cnt 0, or --cancel stopped a pass"),
    error_code(1, "the pass finished with mismatches"),
    error_code(2, "usage error (unknown option, missing argument), not confirmed, a pass already running, the pass cancelled or interrupted, or an error")
)]
pub struct CheckCommand {
    /// array UUID, name, or md device (md127, /dev/md127)
    #[argh(positional)]
    pub array: String,
    /// first member sector (512 bytes) to check (rounded down to 4 KiB)
    #[argh(option)]
    pub start_sector: Option<u64>,
    /// member sector to stop at (rounded up to a whole chunk)
    #[argh(option)]
    pub end_sector: Option<u64>,
    /// run 'repair' instead of 'check': rewrites parity or mirror copies that
    /// differ (needs its own, second confirmation)
    #[argh(switch)]
    pub repair: bool,
    /// answer the confirmation (scripts); a repair also needs --yes-repair
    #[argh(switch)]
    pub yes: bool,
    /// answer the second confirmation a repair needs
    #[argh(switch)]
    pub yes_repair: bool,
    /// cancel the pass running on the array ('idle') and exit
    #[argh(switch)]
    pub cancel: bool,
}

pub fn run(cmd: MdCommand, load: ModuleLoader<'_>, stop: &AtomicBool) -> i32 {
    let md = Md::system();
    match cmd.action {
        Action::Scan(c) => mdraid::cli::run_scan(c),
        Action::Examine(c) => mdraid::cli::run_examine(c),
        Action::Verify(c) => mdraid::cli::run_verify(c),
        Action::Assemble(c) => exit_code(assemble(&md, &c, load)),
        Action::Stop(c) => exit_code(stop_array(&md, &c.array)),
        Action::Check(c) => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            exit_code(check(&md, &c, load, stop, interactive, &mut stdin.lock()))
        }
    }
}

/// Exit code of a subcommand's result, printing the error.
pub fn exit_code(r: Result<i32, String>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("md: {e}");
            2
        }
    }
}

/// Scans every disk and partition.
pub fn scan_system() -> ScanReport {
    let opened = mdraid::cli::open_all(&[]);
    scan::scan(&opened.inputs())
}

/// The array `spec` names: its UUID, its name (`DiskStation:2`, or the
/// part after the colon if that is unique), or the md device running it.
pub fn resolve<'a>(md: &Md, report: &'a ScanReport, spec: &str) -> Result<&'a Array, String> {
    if let Some(a) = mdraid::cli::find_array(report, spec)? {
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

fn load_modules(load: ModuleLoader<'_>, a: &Array) {
    let mut mods = vec!["md_mod"];
    mods.extend(crate::personality_module(a.level_number));
    for m in mods {
        if let Err(e) = load(m) {
            // Built in or already loaded is fine; assembly says if not.
            eprintln!("md: module {m}: {e}");
        }
    }
}

fn describe(a: &Array) -> String {
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

pub fn assemble(md: &Md, c: &AssembleCommand, load: ModuleLoader<'_>) -> Result<i32, String> {
    if !c.readonly {
        return Err(
            "assemble needs --readonly: only read-only assembly is offered \
            (md check switches an array to read-write after asking)"
                .into(),
        );
    }
    let report = scan_system();
    let a = resolve(md, &report, &c.array)?;
    load_modules(load, a);
    let (members, left_out) = members_to_add(a);
    for l in &left_out {
        println!("left out: {l}");
    }
    let name = md.assemble(a, Start::ReadOnly)?;
    let node = md.dev.join(&name);
    println!(
        "/dev/{name}: {} assembled read-only from {} (array_state {})",
        describe(a),
        members.join(" "),
        md.read(&name, "array_state").unwrap_or_default()
    );
    if a.degraded {
        println!("degraded: roles {:?} missing", a.missing_roles);
    }
    let sig = blockdev::Device::open(&node)
        .ok()
        .and_then(|d| fsmagic::detect(&d));
    match &sig {
        Some(s) => println!("contents: {}", s.kind.name()),
        None => println!("contents: no known signature"),
    }
    if c.mount {
        let kind = sig
            .map(|s| s.kind)
            .ok_or_else(|| format!("/dev/{name}: no filesystem found to mount"))?;
        let (fstype, modules) = dest::fs_type(kind)
            .ok_or_else(|| format!("/dev/{name}: {} cannot be mounted here", kind.name()))?;
        for m in modules {
            let _ = load(m);
        }
        let at = crate::mount_point(&name);
        std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        rustix::mount::mount(
            node.as_path(),
            at.as_path(),
            fstype,
            rustix::mount::MountFlags::RDONLY,
            dest::mount_data(kind).as_deref(),
        )
        .map_err(|e| {
            let _ = std::fs::remove_dir(&at);
            format!(
                "mount /dev/{name} ({fstype}, read-only) at {}: {}",
                at.display(),
                std::io::Error::from(e)
            )
        })?;
        println!("mounted read-only at {}", at.display());
    }
    Ok(0)
}

/// The md device running what `spec` names (an md device name is taken as
/// is, so an array whose members are gone can still be stopped).
fn running_name(md: &Md, spec: &str) -> Result<String, String> {
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

pub fn stop_array(md: &Md, spec: &str) -> Result<i32, String> {
    let name = running_name(md, spec)?;
    let at = crate::mount_point(&name);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if blockdev::parse_mounts(&mounts)
        .iter()
        .any(|(_, m, _)| std::path::Path::new(m) == at)
    {
        rustix::mount::unmount(at.as_path(), rustix::mount::UnmountFlags::empty())
            .map_err(|e| format!("unmount {}: {}", at.display(), std::io::Error::from(e)))?;
        let _ = std::fs::remove_dir(&at);
        println!("unmounted {}", at.display());
    }
    md.stop(&name)?;
    println!("/dev/{name} stopped; its members are released");
    Ok(0)
}

/// The confirmation a check (or repair) shows before anything is written.
pub fn check_question(a: &Array, name: Option<&str>, members: &[String], repair: bool) -> String {
    format!(
        "The kernel's {action} on {dev} ({desc}, members {m}) needs the array running \
         read-write. The kernel then writes the md superblocks on every member (event count, \
         state) and rewrites any sector it cannot read from the redundant copy{extra}. \
         `rescue md verify` compares the same data without writing. \
         Type 'yes' to go on: ",
        action = if repair { "repair" } else { "check" },
        dev = name
            .map(|n| format!("/dev/{n}"))
            .unwrap_or_else(|| "the array".into()),
        desc = describe(a),
        m = members.join(" "),
        extra = if repair {
            "; a repair also overwrites parity (RAID-4/5/6) or the other mirrors and copies \
             (RAID-1/10) wherever they differ from the data the kernel takes as right"
        } else {
            ""
        }
    )
}

/// Second question for a repair.
pub const REPAIR_QUESTION: &str = "Repair rewrites member data where copies differ; which copy \
    is kept is the kernel's choice, not necessarily the right one. Image the members first. \
    Type 'repair' to go on: ";

fn ask(input: &mut dyn BufRead, question: &str, answer: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    input.read_line(&mut line).is_ok() && line.trim() == answer
}

fn human_rate(kib_s: u64) -> String {
    mdraid::cli::human_bytes(kib_s as f64 * 1024.0) + "/s"
}

/// The kernel's check: confirmation, members made writable, the array
/// switched to auto-read-only (assembled first if needed), the pass run
/// with progress, the result, and the previous state restored.
pub fn check(
    md: &Md,
    c: &CheckCommand,
    load: ModuleLoader<'_>,
    stop: &AtomicBool,
    interactive: bool,
    input: &mut dyn BufRead,
) -> Result<i32, String> {
    if c.cancel {
        let name = running_name(md, &c.array)?;
        let before = md.status(&name);
        md.write(&name, "sync_action", "idle")?;
        println!(
            "/dev/{name}: '{}' cancelled (idle); mismatch_cnt so far {}",
            before.action,
            before.mismatch_cnt.map_or("-".into(), |n| n.to_string())
        );
        return Ok(0);
    }
    let report = scan_system();
    let a = resolve(md, &report, &c.array)?;
    let (start, end) = check_window(c.start_sector, c.end_sector, a.chunk_bytes)?;
    let running = md.running_for(a);
    let members: Vec<String> = match &running {
        Some(r) => r.members.iter().map(|m| format!("/dev/{m}")).collect(),
        None => members_to_add(a).0,
    };
    if let Some(r) = &running {
        let s = md.status(&r.name);
        if s.action != "idle" && !s.action.is_empty() {
            return Err(format!(
                "/dev/{}: '{}' is already running; `rescue md check {} --cancel` stops it",
                r.name, s.action, r.name
            ));
        }
    }
    if a.degraded {
        println!(
            "note: the array is degraded (roles {:?} missing): a check compares nothing where a copy is missing",
            a.missing_roles
        );
    }
    let question = check_question(
        a,
        running.as_ref().map(|r| r.name.as_str()),
        &members,
        c.repair,
    );
    if !c.yes {
        if !interactive {
            return Err("not confirmed: run it on a terminal, or give --yes".into());
        }
        if !ask(input, &question, "yes") {
            println!("nothing done");
            return Ok(2);
        }
    }
    if c.repair && !c.yes_repair {
        if !interactive {
            return Err("a repair needs its own confirmation: --yes-repair".into());
        }
        if !ask(input, REPAIR_QUESTION, "repair") {
            println!("nothing done");
            return Ok(2);
        }
    }
    load_modules(load, a);
    let mut writable = blockdev::WritableWhile::clear(&member_nodes(md, &members))
        .map_err(|e| format!("making the members writable: {e}"))?;
    let prior_state = running.as_ref().map(|r| r.array_state.clone());
    let result = (|| {
        let name = match &running {
            Some(r) => {
                if r.array_state == "readonly" {
                    md.write(&r.name, "array_state", "read-auto")?;
                }
                r.name.clone()
            }
            None => {
                let n = md.assemble(a, Start::ReadAuto)?;
                println!("assembled as /dev/{n} for the check");
                n
            }
        };
        let window = Window {
            start,
            end,
            chunk_sectors: a.chunk_bytes / 512,
        };
        let outcome = run_pass(md, &name, c.repair, &window, stop);
        // Window back to the whole device for whatever runs next.
        let _ = md.write(&name, "sync_min", "0");
        let _ = md.write(&name, "sync_max", "max");
        Ok::<_, String>((name, outcome))
    })();
    let (name, outcome) = match result {
        Ok(x) => x,
        Err(e) => {
            writable.restore();
            return Err(e);
        }
    };
    // Back as it was: read-only (or stopped, when assembled for this).
    let back = match prior_state.as_deref() {
        None => md
            .stop(&name)
            .map(|()| format!("/dev/{name} stopped again")),
        Some("readonly") | Some("read-auto") => md
            .write(&name, "array_state", "readonly")
            .map(|()| format!("/dev/{name} read-only again")),
        Some(other) => Ok(format!("/dev/{name} left as it was ({other})")),
    };
    match back {
        Ok(m) => println!("{m}"),
        Err(e) => eprintln!("md: putting /dev/{name} back: {e}"),
    }
    for e in writable.restore() {
        eprintln!("md: {e}");
    }
    let outcome = outcome?;
    let unit = mdraid::verify::kernel_mismatch_unit(a.level_number);
    let action = if c.repair { "repair" } else { "check" };
    println!(
        "{action} {}: mismatch_cnt {} ({unit})",
        match outcome.end {
            PassEnd::Finished => "finished",
            PassEnd::Cancelled => "cancelled",
            PassEnd::Interrupted => "interrupted",
        },
        outcome.mismatch_cnt
    );
    if outcome.end == PassEnd::Interrupted {
        println!(
            "the kernel stopped the pass before its end, not at our request: another process \
             wrote 'idle' or 'frozen' to sync_action, or a member failed (see dmesg); the \
             count covers only the part checked"
        );
    }
    println!(
        "checked member sectors {}..{} in {:.1} s",
        start, outcome.checked_to, outcome.seconds
    );
    Ok(match outcome.end {
        PassEnd::Finished => i32::from(outcome.mismatch_cnt > 0),
        PassEnd::Cancelled | PassEnd::Interrupted => 2,
    })
}

/// The member-sector window of a pass.
pub struct Window {
    pub start: u64,
    /// None: to the end of the members.
    pub end: Option<u64>,
    /// The array's chunk in sectors (0 for RAID-1): sync_max must be a
    /// multiple of it.
    pub chunk_sectors: u64,
}

impl Window {
    /// What we write to sync_max. An open window gets a huge number instead
    /// of "max": the kernel resets sync_max to "max" (and sync_min to 0)
    /// only when a requested pass runs to its end, and leaves both when the
    /// pass is interrupted. That is the one trace in sysfs that tells a
    /// finished pass from one that another process (or a failing member)
    /// stopped: sync_completed reads "none" after either.
    fn sync_max(&self) -> u64 {
        self.end.unwrap_or_else(|| {
            let chunk = self.chunk_sectors.max(1);
            (1u64 << 62) / chunk * chunk
        })
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// It reached the end of its window.
    Finished,
    /// We cancelled it (Ctrl-C).
    Cancelled,
    /// The kernel stopped it before the end, not at our request.
    Interrupted,
}

/// What a pass ended with.
pub struct PassOutcome {
    pub mismatch_cnt: u64,
    pub end: PassEnd,
    /// The last member sector the kernel reported done.
    pub checked_to: u64,
    pub seconds: f64,
}

pub(crate) fn run_pass(
    md: &Md,
    name: &str,
    repair: bool,
    window: &Window,
    stop: &AtomicBool,
) -> Result<PassOutcome, String> {
    let (start, end) = (window.start, window.end);
    // The kernel refuses a sync_min above the current sync_max: open the
    // window fully first, then set it.
    md.write(name, "sync_max", "max")?;
    md.write(name, "sync_min", &start.to_string())?;
    md.write(name, "sync_max", &window.sync_max().to_string())?;
    let action = if repair { "repair" } else { "check" };
    let began = Instant::now();
    md.write(name, "sync_action", action)?;
    let mut cancelled = false;
    let mut window_done = false;
    let mut last_print = Instant::now() - Duration::from_secs(10);
    let mut checked_to = start;
    let mut total = end;
    loop {
        let s = md.status(name);
        if let Some((done, t)) = s.completed {
            checked_to = done;
            total = Some(end.unwrap_or(t).min(t));
        }
        // The write sets the request synchronously, so 'idle' from here on
        // means the pass is over.
        if s.action == "idle" || s.action.is_empty() {
            let ran_to_end = s.sync_max.as_deref() == Some("max");
            let end = if cancelled {
                PassEnd::Cancelled
            } else if window_done || ran_to_end {
                if let Some(t) = total {
                    checked_to = checked_to.max(t);
                }
                PassEnd::Finished
            } else {
                // Interrupted: the kernel left sync_min where it stopped.
                if let Some(at) = s.sync_min {
                    checked_to = at;
                }
                PassEnd::Interrupted
            };
            eprintln!();
            return Ok(PassOutcome {
                mismatch_cnt: s.mismatch_cnt.unwrap_or(0),
                end,
                checked_to,
                seconds: began.elapsed().as_secs_f64(),
            });
        }
        // At sync_max the kernel waits for a larger one; the window is done.
        if let (Some(e), Some((done, _))) = (end, s.completed) {
            if done >= e && !window_done {
                window_done = true;
                md.write(name, "sync_action", "idle")?;
                continue;
            }
        }
        if stop.load(Ordering::SeqCst) && !cancelled && !window_done {
            cancelled = true;
            eprint!("\ncancelling: writing 'idle' to sync_action");
            md.write(name, "sync_action", "idle")?;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let done = s.completed.map_or(checked_to, |c| c.0);
            let to = total.unwrap_or(0);
            let span = to.saturating_sub(start);
            let pct = if span > 0 {
                done.saturating_sub(start) as f64 * 100.0 / span as f64
            } else {
                0.0
            };
            let eta = match s.speed_kib_s {
                Some(k) if k > 0 && to > done => {
                    mdraid::cli::hms(Duration::from_secs((to - done) / 2 / k))
                }
                _ => "-".into(),
            };
            eprint!(
                "\r{action}: {pct:5.1}%  sector {done} / {to}  {}  ETA {eta}  mismatch_cnt {}   ",
                s.speed_kib_s.map(human_rate).unwrap_or_else(|| "-".into()),
                s.mismatch_cnt.unwrap_or(0)
            );
            let _ = std::io::stderr().flush();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
