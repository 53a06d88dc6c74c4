//! The kernel's check and repair passes, as `rescue md check` and the menu
//! run them: confirmation, the array made writable for the pass and put
//! back afterwards, the pass watched through sysfs with progress, and
//! cancelling a running pass.

use crate::arrays::{describe, load_modules, resolve, running_name, scan_system};
use crate::{check_window, member_nodes, members_to_add, Md, Output, Start};
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use mdraid::scan::Array;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

fn ask(input: &mut dyn BufRead, err: &mut dyn Write, question: &str, answer: &str) -> bool {
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut line = String::new();
    input.read_line(&mut line).is_ok() && line.trim() == answer
}

fn human_rate(kib_s: u64) -> String {
    screen::decimal_size(kib_s.saturating_mul(1024)) + "/s"
}

/// What a check (or repair) is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Array UUID, name, or md device (md127, /dev/md127).
    pub array: String,
    /// First member sector (512 bytes) to check (rounded down to 4 KiB).
    pub start_sector: Option<u64>,
    /// Member sector to stop at (rounded up to a whole chunk).
    pub end_sector: Option<u64>,
    /// 'repair' instead of 'check'.
    pub repair: bool,
    /// The confirmation is already given (scripts): not asked.
    pub confirmed: bool,
    /// The second confirmation a repair needs is already given.
    pub repair_confirmed: bool,
}

impl CheckOptions {
    /// A check of the whole array, asking before anything is written.
    pub fn whole_array(array: impl Into<String>) -> CheckOptions {
        CheckOptions {
            array: array.into(),
            start_sector: None,
            end_sector: None,
            repair: false,
            confirmed: false,
            repair_confirmed: false,
        }
    }
}

/// How a check request ended.
#[derive(Debug)]
pub enum CheckEnd {
    /// The user did not confirm: nothing was done.
    NotConfirmed,
    /// The pass ran (to its end, or until cancelled or interrupted).
    Ran(PassOutcome),
}

impl CheckEnd {
    /// 0 finished without mismatches, 1 with mismatches, 2 not confirmed,
    /// cancelled or interrupted (as `rescue md check`).
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckEnd::NotConfirmed => Exit::Error.code(),
            CheckEnd::Ran(o) => match o.end {
                PassEnd::Finished => Exit::findings_if(o.mismatch_cnt > 0).code(),
                PassEnd::Cancelled | PassEnd::Interrupted => Exit::Error.code(),
            },
        }
    }
}

/// Cancels the pass running on the array `spec` names ('idle'), saying so
/// on `out` with the mismatch count so far.
pub fn cancel_pass(md: &Md, spec: &str, out: &mut dyn Write) -> Result<(), String> {
    let name = running_name(md, spec)?;
    let before = md.status(&name);
    md.write(&name, "sync_action", "idle")?;
    let _ = writeln!(
        out,
        "/dev/{name}: '{}' cancelled (idle); mismatch_cnt so far {}",
        before.action,
        before.mismatch_cnt.map_or("-".into(), |n| n.to_string())
    );
    Ok(())
}

/// The kernel's check: confirmation (read from `input` when `interactive`),
/// members made writable, the array switched to auto-read-only (assembled
/// first if needed), the pass run with progress and questions on
/// `say.err`, steps and the result on `say.out`, and the previous state
/// restored.
pub fn check(
    md: &Md,
    c: &CheckOptions,
    load: ModuleLoader<'_>,
    stop: &AtomicBool,
    interactive: bool,
    input: &mut dyn BufRead,
    say: &mut Output<'_>,
) -> Result<CheckEnd, String> {
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
        let _ = writeln!(
            say.out,
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
    if !c.confirmed {
        if !interactive {
            return Err("not confirmed: run it on a terminal, or give --yes".into());
        }
        if !ask(input, say.err, &question, "yes") {
            let _ = writeln!(say.out, "nothing done");
            return Ok(CheckEnd::NotConfirmed);
        }
    }
    if c.repair && !c.repair_confirmed {
        if !interactive {
            return Err("a repair needs its own confirmation: --yes-repair".into());
        }
        if !ask(input, say.err, REPAIR_QUESTION, "repair") {
            let _ = writeln!(say.out, "nothing done");
            return Ok(CheckEnd::NotConfirmed);
        }
    }
    load_modules(crate::cli::CHECK, load, a, say.err);
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
                let _ = writeln!(say.out, "assembled as /dev/{n} for the check");
                n
            }
        };
        let window = Window {
            start,
            end,
            chunk_sectors: a.chunk_bytes / 512,
        };
        let outcome = run_pass(md, &name, c.repair, &window, stop, &mut *say.err);
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
        Ok(m) => {
            let _ = writeln!(say.out, "{m}");
        }
        Err(e) => {
            let _ = writeln!(
                say.err,
                "{}",
                cliconv::message_line(
                    crate::cli::CHECK,
                    format_args!("putting /dev/{name} back: {e}")
                )
            );
        }
    }
    for e in writable.restore() {
        let _ = writeln!(say.err, "{}", cliconv::message_line(crate::cli::CHECK, e));
    }
    let outcome = outcome?;
    let unit = mdraid::verify::kernel_mismatch_unit(a.level_number);
    let action = if c.repair { "repair" } else { "check" };
    let _ = writeln!(
        say.out,
        "{action} {}: mismatch_cnt {} ({unit})",
        match outcome.end {
            PassEnd::Finished => "finished",
            PassEnd::Cancelled => "cancelled",
            PassEnd::Interrupted => "interrupted",
        },
        outcome.mismatch_cnt
    );
    if outcome.end == PassEnd::Interrupted {
        let _ = writeln!(
            say.out,
            "the kernel stopped the pass before its end, not at our request: another process \
             wrote 'idle' or 'frozen' to sync_action, or a member failed (see dmesg); the \
             count covers only the part checked"
        );
    }
    let _ = writeln!(
        say.out,
        "checked member sectors {}..{} in {:.1} s",
        start, outcome.checked_to, outcome.seconds
    );
    Ok(CheckEnd::Ran(outcome))
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
#[derive(Debug)]
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
    progress: &mut dyn Write,
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
    let mut throttle = screen::Throttle::new(Duration::from_secs(1));
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
            let _ = writeln!(progress);
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
            let _ = write!(progress, "\ncancelling: writing 'idle' to sync_action");
            md.write(name, "sync_action", "idle")?;
        }
        if throttle.ready(false) {
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
                    screen::hms(Duration::from_secs((to - done) / 2 / k))
                }
                _ => "-".into(),
            };
            let _ = write!(
                progress,
                "\r{action}: {pct:5.1}%  sector {done} / {to}  {}  ETA {eta}  mismatch_cnt {}   ",
                s.speed_kib_s.map(human_rate).unwrap_or_else(|| "-".into()),
                s.mismatch_cnt.unwrap_or(0)
            );
            let _ = progress.flush();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
