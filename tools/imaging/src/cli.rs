//! `rescue image`: the arguments, turned into a [`Job`] run on the
//! console; the --json result.

use crate::console::{self, ConsoleOutput};
use crate::job::{HashAlgorithm, Job, JobError, JobReport};
use argh::FromArgs;
use cliconv::Exit;
use ddmap::Status;
use std::sync::atomic::AtomicBool;

#[derive(FromArgs, Debug, Clone, PartialEq)]
/// Copy a failing disk, partition or file to an image, ddrescue-style: good
/// areas first with large reads, then trimming and scraping of the failed
/// areas sector by sector. Progress is kept in a GNU ddrescue mapfile; run the
/// same command again to resume (finished areas are never read again), or go
/// on with GNU ddrescue/ddrescuelog on the same mapfile.
#[argh(
    subcommand,
    name = "image",
    error_code(0, "done: everything rescued"),
    error_code(1, "partial: bad areas remain, or interrupted (run again to resume)"),
    error_code(2, "error: usage error (unknown option, missing argument), or an I/O error: a vanished source, a full destination, a mapfile that cannot be saved (the mapfile on disk stays valid and the run resumable); with rescue://: a refused pairing code, a dropped link (resumable), a digest mismatch")
)]
pub struct ImageCommand {
    /// source: a disk, a partition or an image file (only ever read)
    #[argh(positional)]
    pub src: String,
    /// destination: an image file (created if missing, never truncated), a
    /// block device at least as large as SRC together with --write DST, or
    /// rescue://HOST:PORT/NAME to stream to `rescue receive` on a lab host
    /// (which keeps the image and its mapfile, and resumes from them)
    #[argh(positional)]
    pub dst: String,
    /// mapfile path (GNU ddrescue format); resumes if it exists (required
    /// for a local DST, refused with rescue://)
    #[argh(option)]
    pub map: Option<String>,
    /// with rescue://: read the receiver's pairing code from FILE (else
    /// $RESCUE_PAIRING_CODE, else it is asked for on the terminal)
    #[argh(option)]
    pub code_file: Option<String>,
    /// confirm overwriting DST when it is a block device: repeat its path
    #[argh(option)]
    pub write: Option<String>,
    /// run the first copying pass backwards (from the end of SRC)
    #[argh(switch)]
    pub reverse: bool,
    /// retry bad sectors this many times after scraping (default 0)
    #[argh(option, default = "0")]
    pub retry_passes: u32,
    /// reads slower than RATE bytes/s (suffixes k, M, G, Ki, Mi, Gi) in the
    /// first two passes mark a slow area that is read later
    #[argh(option, from_str_fn(parse_size))]
    pub min_read_rate: Option<u64>,
    /// leave all-zero 4 KiB blocks of a new image file as holes
    #[argh(switch)]
    pub sparse: bool,
    /// reserve SRC's size for the image file before copying (fails early
    /// when the destination is too full)
    #[argh(switch)]
    pub preallocate: bool,
    /// hash the image at the end, bad areas counted as zeros (only: sha256)
    #[argh(option)]
    pub hash: Option<String>,
    /// with --hash: also write DST.sha256 in sha256sum format
    #[argh(switch)]
    pub hash_file: bool,
    /// TEST AID: simulate read errors from a ddrescue mapfile as GNU
    /// `ddrescue --test-mode=MAPFILE` does: only its finished (+) blocks read
    /// normally, all other blocks fail, SRC appears to end where its last
    /// finished block ends
    #[argh(option)]
    pub simulate_bad: Option<String>,
    /// do not bypass the page cache on a block-device SRC (O_DIRECT is the
    /// default there)
    #[argh(switch)]
    pub no_direct: bool,
    /// size of the large reads of the copying phase, also the unit in which
    /// failed areas are trimmed (default: 1Mi for a block-device SRC read with
    /// O_DIRECT, else 64Ki as in ddrescue)
    #[argh(option, from_str_fn(parse_size))]
    pub cluster_size: Option<u64>,
    /// print the final result as JSON on stdout (progress goes to stderr)
    #[argh(switch)]
    pub json: bool,
}

/// Parses `123`, `64k`, `10M`, `1Mi`, `2GiB`, `5MB/s` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s");
    let t = t.strip_suffix('B').unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suf) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a number with an optional k/M/G/T[i] suffix"))?;
    let mult: u64 = match suf {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("'{s}': unknown suffix '{suf}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}': number too large"))
}

/// The command's name in its messages (`rescue image: ...`).
pub const NAME: &str = "image";

/// Version of the `--json` result.
pub const JSON_SCHEMA: u32 = 1;

pub fn run(cmd: ImageCommand) -> i32 {
    run_with_stop(cmd, &AtomicBool::new(false))
}

/// Runs the command; the caller sets `stop` on SIGINT/SIGTERM, the run then
/// saves its mapfile and returns 1.
pub fn run_with_stop(cmd: ImageCommand, stop: &AtomicBool) -> i32 {
    if is_remote(&cmd.dst) {
        return cliconv::fail(
            NAME,
            "a rescue:// destination is streamed by the rescue binary (rescue image SRC rescue://HOST:PORT/NAME)",
        )
        .code();
    }
    let json = cmd.json;
    let job = match job_of(cmd) {
        Ok(job) => job,
        Err(e) => return cliconv::fail(NAME, e).code(),
    };
    let output = if json {
        ConsoleOutput::StderrOnly
    } else {
        ConsoleOutput::Text
    };
    match console::run(&job, output, stop) {
        Ok(report) => {
            if json {
                let printed = cliconv::print_json(NAME, JSON_SCHEMA, &json_result(&report));
                if printed == Exit::Error {
                    return printed.code();
                }
            }
            report.exit_code()
        }
        // console::run printed the error.
        Err(_) => Exit::Error.code(),
    }
}

/// Whether DST names a `rescue receive` on a lab host (`rescue://...`).
pub fn is_remote(dst: &str) -> bool {
    dst.starts_with("rescue://")
}

/// The job the arguments describe (everything but --json).
fn job_of(cmd: ImageCommand) -> Result<Job, JobError> {
    if cmd.code_file.is_some() {
        return Err(JobError::RemoteOnly("--code-file"));
    }
    Ok(Job {
        hash: cmd
            .hash
            .as_deref()
            .map(HashAlgorithm::from_name)
            .transpose()?,
        source: cmd.src,
        destination: cmd.dst,
        mapfile: cmd.map.ok_or(JobError::MapfileMissing)?,
        write_confirmation: cmd.write,
        reverse: cmd.reverse,
        retry_passes: cmd.retry_passes,
        min_read_rate: cmd.min_read_rate,
        sparse: cmd.sparse,
        preallocate: cmd.preallocate,
        hash_file: cmd.hash_file,
        simulate_bad: cmd.simulate_bad,
        no_direct: cmd.no_direct,
        cluster_size: cmd.cluster_size,
    })
}

/// The --json result.
fn json_result(r: &JobReport) -> serde_json::Value {
    let t = &r.report.totals;
    serde_json::json!({
        "outcome": r.outcome_name(),
        "error": r.error(),
        "size": r.report.size,
        "rescued": t.bytes(Status::Finished),
        "non_tried": t.bytes(Status::NonTried),
        "non_trimmed": t.bytes(Status::NonTrimmed),
        "non_scraped": t.bytes(Status::NonScraped),
        "bad_sector": t.bytes(Status::BadSector),
        "bad_sector_areas": t.areas(Status::BadSector),
        "rescued_this_run": r.report.rescued_this_run,
        "reads": r.report.reads,
        "read_errors": r.report.read_errors,
        "elapsed_seconds": r.report.elapsed.as_secs_f64(),
        "sha256": r.sha256_hex(),
        "exit_code": r.exit_code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("5MB/s"), Ok(5_000_000));
        assert_eq!(parse_size("64Ki"), Ok(65536));
        assert!(parse_size("x").is_err());
        assert!(parse_size("3Q").unwrap_err().contains("suffix"));
        assert!(parse_size("99999999999999999999").is_err());
    }
}
