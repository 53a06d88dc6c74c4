//! Verifying one whole array, as `rescue md verify` and the menu do it:
//! the array named by its members (devices or image files) or by its UUID
//! or name among all disks, its members opened and scanned, the array
//! picked, and [`verify::verify`] run on it. Nothing is written.

use crate::devices::open_all;
use crate::scan::{self, find_array, Array};
use crate::verify::{self, VerifyReport};
use cliconv::Exit;
use screen::{decimal_size, hms};
use std::fmt;
use std::io::Write as _;
use std::time::Duration;

/// What to verify and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayVerifyOptions {
    /// Member devices or image files, or one array's UUID or name.
    pub targets: Vec<String>,
    /// Mismatches listed in full (all are counted).
    pub max_listed: usize,
    /// Mebibytes read per member per batch (clamped to 1..=1024).
    pub batch_mib: u64,
}

impl ArrayVerifyOptions {
    /// `rescue md verify`'s defaults for these targets.
    pub fn new(targets: Vec<String>) -> ArrayVerifyOptions {
        ArrayVerifyOptions {
            targets,
            max_listed: 100,
            batch_mib: 2,
        }
    }
}

/// Something worth telling while the array is looked for; the run goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A device could not be opened.
    OpenFailed(String),
    /// A device's superblock could not be read or made no sense.
    DeviceProblem { device: String, error: String },
    /// An out-of-date member that the comparison leaves out.
    StaleLeftOut(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::OpenFailed(e) => write!(f, "{e}"),
            Notice::DeviceProblem { device, error } => write!(f, "{device}: {error}"),
            Notice::StaleLeftOut(s) => write!(f, "left out, out of date: {s}"),
        }
    }
}

/// Why an array could not be verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArrayVerifyError {
    /// Neither members nor an array were named.
    NoTargets,
    /// Named members could not all be opened (each was a [`Notice`]).
    MembersUnopened,
    /// The spec matches several arrays' names.
    AmbiguousName(String),
    /// The given devices belong to more than one array (their UUIDs).
    SeveralArrays(Vec<String>),
    /// No array among the devices, or none with that UUID or name.
    NotFound { by_uuid_or_name: bool },
    /// The array's geometry is unknown or impossible.
    NoGeometry { uuid: String, problems: Vec<String> },
    /// The comparison could not be done (members missing and the like).
    NotVerifiable { uuid: String, error: String },
}

impl ArrayVerifyError {
    /// The `rescue md verify` exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ArrayVerifyError::NoGeometry { .. } | ArrayVerifyError::NotVerifiable { .. } => {
                Exit::Findings.code()
            }
            _ => Exit::Error.code(),
        }
    }
}

impl fmt::Display for ArrayVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayVerifyError::NoTargets => {
                write!(f, "give the members of one array, or an array UUID or name")
            }
            ArrayVerifyError::MembersUnopened => write!(f, "a member could not be opened"),
            ArrayVerifyError::AmbiguousName(e) => write!(f, "{e}"),
            ArrayVerifyError::SeveralArrays(uuids) => write!(
                f,
                "the devices belong to {} arrays ({}); give the members of one",
                uuids.len(),
                uuids.join(", ")
            ),
            ArrayVerifyError::NotFound { by_uuid_or_name } => write!(
                f,
                "no array found{}",
                if *by_uuid_or_name {
                    " with that UUID or name (and no such file)"
                } else {
                    ""
                }
            ),
            ArrayVerifyError::NoGeometry { uuid, problems } => {
                write!(f, "{uuid}: {}", problems.join("; "))
            }
            ArrayVerifyError::NotVerifiable { uuid, error } => write!(f, "{uuid}: {error}"),
        }
    }
}

impl std::error::Error for ArrayVerifyError {}

/// A finished comparison.
#[derive(Clone, Debug)]
pub struct ArrayVerified {
    pub array: Array,
    pub report: VerifyReport,
}

impl ArrayVerified {
    /// 0 consistent, 1 mismatches, 2 reads failed (as `rescue md verify`).
    pub fn exit_code(&self) -> i32 {
        if !self.report.read_failures.is_empty() {
            Exit::Error.code()
        } else {
            Exit::findings_if(self.report.mismatch_count > 0).code()
        }
    }
}

/// Finds the array `opts` names and compares its redundancy. `notice` hears
/// about unopenable devices, bad superblocks and stale members as they come
/// up; `progress` is called after every batch.
pub fn verify_array(
    opts: &ArrayVerifyOptions,
    notice: &mut dyn FnMut(&Notice),
    progress: &mut dyn FnMut(&verify::Progress),
) -> Result<ArrayVerified, ArrayVerifyError> {
    if opts.targets.is_empty() {
        return Err(ArrayVerifyError::NoTargets);
    }
    // One argument that is not a file: an array's UUID or name, whose
    // members are looked for on all disks.
    let by_spec = opts.targets.len() == 1 && !std::path::Path::new(&opts.targets[0]).exists();
    let opened = open_all(if by_spec { &[] } else { &opts.targets });
    for e in &opened.errors {
        notice(&Notice::OpenFailed(e.clone()));
    }
    if !by_spec && !opened.errors.is_empty() {
        return Err(ArrayVerifyError::MembersUnopened);
    }
    let inputs = opened.inputs();
    let report = scan::scan(&inputs);
    for p in &report.problems {
        notice(&Notice::DeviceProblem {
            device: p.device.clone(),
            error: p.error.clone(),
        });
    }
    let array = if by_spec {
        find_array(&report, &opts.targets[0]).map_err(ArrayVerifyError::AmbiguousName)?
    } else {
        if report.arrays.len() > 1 {
            return Err(ArrayVerifyError::SeveralArrays(
                report.arrays.iter().map(|a| a.uuid.clone()).collect(),
            ));
        }
        report.arrays.first()
    };
    let array = array.ok_or(ArrayVerifyError::NotFound {
        by_uuid_or_name: by_spec,
    })?;
    let Some(geo) = array.geometry.as_ref() else {
        return Err(ArrayVerifyError::NoGeometry {
            uuid: array.uuid.clone(),
            problems: array.problems.clone(),
        });
    };
    for s in &array.stale {
        notice(&Notice::StaleLeftOut(s.clone()));
    }
    let members = scan::verify_members(array, &inputs);
    let verify_opts = verify::Options {
        batch_bytes: opts.batch_mib.clamp(1, 1024) << 20,
        max_listed: opts.max_listed,
    };
    match verify::verify(geo, &members, &verify_opts, progress) {
        Ok(r) => Ok(ArrayVerified {
            array: array.clone(),
            report: r,
        }),
        Err(e) => Err(ArrayVerifyError::NotVerifiable {
            uuid: array.uuid.clone(),
            error: e.to_string(),
        }),
    }
}

/// One progress line: `verify:  42.0%  120.5 MB/s  ETA 0:01:10`.
pub fn progress_line(p: &verify::Progress) -> String {
    let pct = if p.total_bytes > 0 {
        p.done_bytes as f64 * 100.0 / p.total_bytes as f64
    } else {
        100.0
    };
    let eta = p.eta().map(hms).unwrap_or("-".into());
    format!(
        "verify: {pct:5.1}%  {}/s  ETA {eta}   ",
        decimal_size(p.rate() as u64)
    )
}

/// Progress on stderr, rewritten in place at most once a second, with the
/// final line ended; nothing when `quiet`.
pub fn stderr_progress(quiet: bool) -> impl FnMut(&verify::Progress) {
    let mut throttle = screen::Throttle::new(Duration::from_secs(1));
    move |p: &verify::Progress| {
        let finished = p.done_bytes >= p.total_bytes;
        if quiet || !throttle.ready(finished) {
            return;
        }
        eprint!("\r{}{}", progress_line(p), if finished { "\n" } else { "" });
        let _ = std::io::stderr().flush();
    }
}

/// Human-readable verify output.
pub fn render_verify(a: &Array, r: &VerifyReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Array {}{}: {} {}, {} devices",
        a.uuid,
        a.name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        r.level,
        r.layout,
        r.raid_disks
    );
    let _ = writeln!(o, "  members: {}", r.members_used.join(", "));
    for n in &r.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    let _ = writeln!(
        o,
        "  checked {} bytes of each member ({} array bytes) in {:.1} s",
        r.checked_member_bytes, r.checked_array_bytes, r.seconds
    );
    for m in &r.mismatches {
        let _ = writeln!(
            o,
            "  MISMATCH {} at array byte {} (+{}), bytes {}..={} of the block",
            m.kind, m.array_offset, m.array_length, m.first_bad_byte, m.last_bad_byte
        );
        for p in &m.places {
            let _ = writeln!(
                o,
                "      role {:>2} {:<5} {} byte {}{}",
                p.role,
                p.holds,
                p.device,
                p.device_offset,
                p.array_offset
                    .map(|a| format!(" (array byte {a})"))
                    .unwrap_or_default()
            );
        }
        if let Some(s) = &m.suspect {
            let _ = writeln!(o, "      suspect: {s}");
        }
    }
    if r.mismatch_count as usize > r.mismatches.len() {
        let _ = writeln!(
            o,
            "  ... {} more not listed",
            r.mismatch_count as usize - r.mismatches.len()
        );
    }
    if r.skipped_blocks > 0 {
        let _ = writeln!(
            o,
            "  {} not compared: fewer than two copies present",
            screen::plural(r.skipped_blocks, "block", "blocks")
        );
    }
    for f in &r.read_failures {
        let _ = writeln!(
            o,
            "  READ ERROR {} byte {} (+{}): {}",
            f.device, f.offset, f.length, f.error
        );
    }
    let _ = writeln!(
        o,
        "Result: {} mismatch{}; kernel mismatch_cnt would be {} ({})",
        r.mismatch_count,
        if r.mismatch_count == 1 { "" } else { "es" },
        r.kernel_mismatch_sectors,
        r.kernel_unit
    );
    screen::wrap_text(&o, screen::SCREEN_WIDTH)
}
