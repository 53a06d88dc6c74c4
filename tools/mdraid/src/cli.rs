//! `rescue md scan|examine|verify`: find arrays, show one member's
//! superblock, check an array's consistency from its members (read-only).
//! The `rescue md` command itself, with the kernel-driver subcommands, is
//! in the mdkernel crate.
//! Exit codes: 0 ok, 1 problems or mismatches found, 2 usage or I/O error.

use crate::array_verify::{
    render_verify, stderr_progress, verify_array, ArrayVerifyError, ArrayVerifyOptions,
};
use crate::devices::open_all;
use crate::{examine, scan};
use argh::FromArgs;
use blockdev::BlockDevice;
use cliconv::Exit;

/// Find md superblocks (0.90, 1.0, 1.1, 1.2) on the given devices or image
/// files (default: every disk and partition under /sys/block), group them
/// into arrays: level, layout, chunk, size, members with role, state and
/// events, missing and stale members, Synology DSM sets.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "scan",
    error_code(0, "done: every array found is healthy"),
    error_code(1, "findings: an array is degraded or failed, a member is stale, or a superblock is bad"),
    error_code(2, "error: usage error (unknown option, missing argument), no device could be opened, or a named device cannot be opened")
)]
pub struct ScanCommand {
    /// devices or image files
    #[argh(positional)]
    pub targets: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Print one member's md superblock in full (like mdadm --examine).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "examine",
    error_code(0, "done: a consistent md superblock"),
    error_code(1, "findings: no md superblock, a bad checksum or an impossible geometry"),
    error_code(2, "error: usage error (unknown option, missing argument), an I/O error, or the output could not be written")
)]
pub struct ExamineCommand {
    /// device or image file
    #[argh(positional)]
    pub target: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Check an array's redundancy by reading its members directly (nothing is
/// written, no md driver needed): RAID-1 mirrors, RAID-4/5 parity, RAID-6
/// P and Q, RAID-10 copies. Give the members (devices or image files), or
/// an array's UUID or name (e.g. DiskStation:2) alone to use that array's
/// members among all disks.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "verify",
    error_code(0, "done: the array is consistent"),
    error_code(1, "findings: mismatches found, or the array cannot be verified (members missing, unknown geometry)"),
    error_code(2, "error: usage error (unknown option, missing argument), a member cannot be opened, or reads failed")
)]
pub struct VerifyCommand {
    /// member devices or image files, or one array's UUID or name
    #[argh(positional)]
    pub targets: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// no progress on stderr
    #[argh(switch)]
    pub quiet: bool,
    /// mismatches listed in full (default 100; all are counted)
    #[argh(option, default = "100")]
    pub max_listed: usize,
    /// mebibytes read per member per batch (default 2)
    #[argh(option, default = "2")]
    pub batch_mib: u64,
}

/// The commands' names in their messages (`rescue md scan: ...`).
pub const SCAN: &str = "md scan";
pub const EXAMINE: &str = "md examine";
pub const VERIFY: &str = "md verify";

/// Version of the `md scan`, `md examine` and `md verify --json` documents.
pub const JSON_SCHEMA: u32 = 1;

pub fn run_scan(c: ScanCommand) -> i32 {
    let opened = open_all(&c.targets);
    for e in &opened.errors {
        cliconv::eprint(SCAN, e);
    }
    if opened.devs.is_empty() {
        return cliconv::fail(SCAN, "no device could be opened").code();
    }
    let inputs = opened.inputs();
    let report = scan::scan(&inputs);
    if c.json {
        if cliconv::print_json(SCAN, JSON_SCHEMA, &report) == Exit::Error {
            return Exit::Error.code();
        }
    } else {
        print!("{}", scan::render(&report));
    }
    if !opened.errors.is_empty() && !c.targets.is_empty() {
        return Exit::Error.code();
    }
    Exit::findings_if(report.has_problems()).code()
}

pub fn run_examine(c: ExamineCommand) -> i32 {
    let dev = match blockdev::Device::open(&c.target) {
        Ok(d) => d,
        Err(e) => return cliconv::fail(EXAMINE, e).code(),
    };
    match crate::find_superblock(&dev) {
        Ok(Some(sb)) => {
            let e = examine::examined(&c.target, dev.size(), &sb);
            if c.json {
                if cliconv::print_json(EXAMINE, JSON_SCHEMA, &e) == Exit::Error {
                    return Exit::Error.code();
                }
            } else {
                print!("{}", examine::render(&e));
            }
            Exit::findings_if(!e.checksum_ok || e.geometry_error.is_some()).code()
        }
        Ok(None) => {
            cliconv::eprint(
                EXAMINE,
                format_args!(
                    "{}: no md superblock (looked for 1.2, 1.1, 1.0, 0.90)",
                    c.target
                ),
            );
            Exit::Findings.code()
        }
        Err(crate::SuperblockError::Io(e)) => cliconv::fail(EXAMINE, e).code(),
        Err(e) => {
            cliconv::eprint(EXAMINE, format_args!("{}: {e}", c.target));
            Exit::Findings.code()
        }
    }
}

pub fn run_verify(c: VerifyCommand) -> i32 {
    let opts = ArrayVerifyOptions {
        targets: c.targets,
        max_listed: c.max_listed,
        batch_mib: c.batch_mib,
    };
    let verified = verify_array(
        &opts,
        &mut |n| cliconv::eprint(VERIFY, n),
        &mut stderr_progress(c.quiet),
    );
    let v = match verified {
        Ok(v) => v,
        // Each unopened member was already named.
        Err(ArrayVerifyError::MembersUnopened) => return Exit::Error.code(),
        Err(e) => {
            cliconv::eprint(VERIFY, &e);
            return e.exit_code();
        }
    };
    if c.json {
        if cliconv::print_json(VERIFY, JSON_SCHEMA, &v.report) == Exit::Error {
            return Exit::Error.code();
        }
    } else {
        print!("{}", render_verify(&v.array, &v.report));
    }
    v.exit_code()
}
