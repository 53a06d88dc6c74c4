//! `rescue md`: scan, examine and verify (read-only, in mdraid) and the
//! kernel-driver subcommands: assemble read-only, stop, check and repair.
//! Exit codes: 0 ok, 1 problems or mismatches found, 2 usage, refusal or
//! error.

use crate::arrays::{assemble, stop_array};
use crate::check::{cancel_pass, check, CheckOptions};
use crate::Md;
use crate::Output;
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use mdraid::cli::{ExamineCommand, ScanCommand, VerifyCommand};
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;

/// Linux md RAID: find arrays, examine superblocks, verify an array without
/// writing anything, assemble one read-only, and run the kernel's check
/// only when asked and confirmed.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "md",
    error_code(0, "done: see the action's --help"),
    error_code(1, "findings: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
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
    error_code(0, "done: assembled read-only (and mounted with --mount)"),
    error_code(2, "error: usage error (unknown option, missing argument), the array is not found or cannot be assembled or mounted")
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
    error_code(0, "done: stopped, members released"),
    error_code(2, "error: usage error (unknown option, missing argument), the array is not assembled, or it cannot be unmounted or stopped")
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
    error_code(0, "done: the pass finished with mismatch_cnt 0, or --cancel stopped a pass"),
    error_code(1, "findings: the pass finished with mismatches"),
    error_code(2, "error: usage error (unknown option, missing argument), not confirmed, a pass already running, the pass cancelled or interrupted, or an error")
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

/// The kernel-driver commands' names in their messages (`rescue md check: ...`).
pub const ASSEMBLE: &str = "md assemble";
pub const STOP: &str = "md stop";
pub const CHECK: &str = "md check";

pub fn run(cmd: MdCommand, load: ModuleLoader<'_>, stop: &AtomicBool) -> i32 {
    let md = Md::system();
    match cmd.action {
        Action::Scan(c) => mdraid::cli::run_scan(c),
        Action::Examine(c) => mdraid::cli::run_examine(c),
        Action::Verify(c) => mdraid::cli::run_verify(c),
        Action::Assemble(c) => {
            if !c.readonly {
                return exit_code(
                    ASSEMBLE,
                    Err(
                        "assemble needs --readonly: only read-only assembly is offered \
                    (md check switches an array to read-write after asking)"
                            .into(),
                    ),
                );
            }
            exit_code(
                ASSEMBLE,
                with_stdio(|say| assemble(&md, &c.array, c.mount, load, say))
                    .map(|_| Exit::Done.code()),
            )
        }
        Action::Stop(c) => exit_code(
            STOP,
            stop_array(&md, &c.array, &mut std::io::stdout()).map(|()| Exit::Done.code()),
        ),
        Action::Check(c) if c.cancel => exit_code(
            CHECK,
            cancel_pass(&md, &c.array, &mut std::io::stdout()).map(|()| Exit::Done.code()),
        ),
        Action::Check(c) => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let opts = CheckOptions {
                array: c.array,
                start_sector: c.start_sector,
                end_sector: c.end_sector,
                repair: c.repair,
                confirmed: c.yes,
                repair_confirmed: c.yes_repair,
            };
            let end = with_stdio(|say| {
                check(&md, &opts, load, stop, interactive, &mut stdin.lock(), say)
            });
            exit_code(CHECK, end.map(|e| e.exit_code()))
        }
    }
}

/// Runs `f` saying its steps on stdout and its progress on stderr.
fn with_stdio<R>(f: impl FnOnce(&mut Output<'_>) -> R) -> R {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    f(&mut Output {
        out: &mut out,
        err: &mut err,
    })
}

/// Exit code of `command`'s result, printing the error as `rescue
/// <command>: <error>`.
pub fn exit_code(command: &str, r: Result<i32, String>) -> i32 {
    r.unwrap_or_else(|e| cliconv::fail(command, e).code())
}
