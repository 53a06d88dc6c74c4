//! `rescue md scan|examine|verify`: find arrays, show one member's
//! superblock, check an array's consistency from its members (read-only).
//! The `rescue md` command itself, with the kernel-driver subcommands, is
//! in the mdkernel crate.
//! Exit codes: 0 ok, 1 problems or mismatches found, 2 usage or I/O error.

use crate::{examine, scan, verify};
use argh::FromArgs;
use blockdev::BlockDevice;
use serde::Serialize;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Find md superblocks (0.90, 1.0, 1.1, 1.2) on the given devices or image
/// files (default: every disk and partition under /sys/block), group them
/// into arrays: level, layout, chunk, size, members with role, state and
/// events, missing and stale members, Synology DSM sets.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "scan",
    error_code(0, "every array found is healthy"),
    error_code(1, "an array is degraded or failed, a member is stale, or a superblock is bad"),
    error_code(2, "usage error (unknown option, missing argument), no device could be opened, or a named device cannot be opened")
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
    error_code(0, "a consistent md superblock"),
    error_code(1, "no md superblock, a bad checksum or an impossible geometry"),
    error_code(2, "usage error (unknown option, missing argument), or an I/O error")
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
    error_code(0, "the array is consistent"),
    error_code(1, "mismatches found, or the array cannot be verified (members missing, unknown geometry)"),
    error_code(2, "usage error (unknown option, missing argument), a member cannot be opened, or reads failed")
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

pub fn print_json<T: Serialize>(v: &T) -> bool {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            true
        }
        Err(e) => {
            eprintln!("md: {e}");
            false
        }
    }
}

/// Opened devices with their disk/partition names.
pub struct Opened {
    pub devs: Vec<(String, blockdev::Device, Option<String>, Option<u32>)>,
    pub errors: Vec<String>,
}

impl Opened {
    pub fn inputs(&self) -> Vec<scan::Input<'_>> {
        self.devs
            .iter()
            .map(|(name, d, disk, part)| {
                let mut i = scan::Input::new(name.clone(), d as &dyn BlockDevice);
                if disk.is_some() {
                    i.disk = disk.clone();
                    i.partition = *part;
                }
                i
            })
            .collect()
    }
}

pub fn open_all(targets: &[String]) -> Opened {
    let list: Vec<(String, Option<String>, Option<u32>)> = if targets.is_empty() {
        system_block_devices()
    } else {
        targets.iter().map(|t| (t.clone(), None, None)).collect()
    };
    let mut o = Opened {
        devs: Vec::new(),
        errors: Vec::new(),
    };
    for (path, disk, part) in list {
        match blockdev::Device::open(&path) {
            Ok(d) => o.devs.push((path, d, disk, part)),
            Err(e) => o.errors.push(e.to_string()),
        }
    }
    o
}

/// Every disk and partition under /sys/block ([`blockdev::system_disks`]):
/// (/dev path, disk, partition number).
pub fn system_block_devices() -> Vec<(String, Option<String>, Option<u32>)> {
    let mut out = Vec::new();
    let disks = blockdev::system_disks(std::path::Path::new("/sys"));
    for disk in disks {
        out.push((format!("/dev/{disk}"), None, None));
        let mut parts = Vec::new();
        if let Ok(rd) = std::fs::read_dir(format!("/sys/block/{disk}")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pfile = e.path().join("partition");
                if let Ok(n) = std::fs::read_to_string(&pfile) {
                    if let Ok(n) = n.trim().parse::<u32>() {
                        parts.push((n, name));
                    }
                }
            }
        }
        parts.sort();
        for (n, name) in parts {
            out.push((format!("/dev/{name}"), Some(disk.clone()), Some(n)));
        }
    }
    out
}

pub fn run_scan(c: ScanCommand) -> i32 {
    let opened = open_all(&c.targets);
    for e in &opened.errors {
        eprintln!("md scan: {e}");
    }
    if opened.devs.is_empty() {
        eprintln!("md scan: no device could be opened");
        return 2;
    }
    let inputs = opened.inputs();
    let report = scan::scan(&inputs);
    if c.json {
        if !print_json(&report) {
            return 2;
        }
    } else {
        print!("{}", scan::render(&report));
    }
    if !opened.errors.is_empty() && !c.targets.is_empty() {
        return 2;
    }
    i32::from(report.has_problems())
}

pub fn run_examine(c: ExamineCommand) -> i32 {
    let dev = match blockdev::Device::open(&c.target) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("md examine: {e}");
            return 2;
        }
    };
    match crate::find_superblock(&dev) {
        Ok(Some(sb)) => {
            let e = examine::examined(&c.target, dev.size(), &sb);
            if c.json {
                if !print_json(&e) {
                    return 2;
                }
            } else {
                print!("{}", examine::render(&e));
            }
            i32::from(!e.checksum_ok || e.geometry_error.is_some())
        }
        Ok(None) => {
            eprintln!(
                "md examine: {}: no md superblock (looked for 1.2, 1.1, 1.0, 0.90)",
                c.target
            );
            1
        }
        Err(crate::SuperblockError::Io(e)) => {
            eprintln!("md examine: {e}");
            2
        }
        Err(e) => {
            eprintln!("md examine: {}: {e}", c.target);
            1
        }
    }
}

pub fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The array `spec` names in `report`: its UUID, its name (`DiskStation:2`)
/// or the name's part after the host (`2`). None if nothing matches; an
/// error if several arrays have that name.
pub fn find_array<'a>(
    report: &'a scan::ScanReport,
    spec: &str,
) -> Result<Option<&'a scan::Array>, String> {
    let want = spec.trim().to_ascii_lowercase();
    if let Some(a) = report.arrays.iter().find(|a| a.uuid == want) {
        return Ok(Some(a));
    }
    let by_name: Vec<&scan::Array> = report
        .arrays
        .iter()
        .filter(|a| {
            a.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(spec) || n.rsplit(':').next() == Some(spec))
        })
        .collect();
    match by_name.len() {
        0 => Ok(None),
        1 => Ok(Some(by_name[0])),
        n => Err(format!("{n} arrays are named {spec}; give the UUID")),
    }
}

pub fn run_verify(c: VerifyCommand) -> i32 {
    if c.targets.is_empty() {
        eprintln!("md verify: give the members of one array, or an array UUID or name");
        return 2;
    }
    // One argument that is not a file: an array's UUID or name, whose
    // members are looked for on all disks.
    let by_spec = c.targets.len() == 1 && !std::path::Path::new(&c.targets[0]).exists();
    let opened = open_all(if by_spec { &[] } else { &c.targets });
    for e in &opened.errors {
        eprintln!("md verify: {e}");
    }
    if !by_spec && !opened.errors.is_empty() {
        return 2;
    }
    let inputs = opened.inputs();
    let report = scan::scan(&inputs);
    for p in &report.problems {
        eprintln!("md verify: {}: {}", p.device, p.error);
    }
    let array = if by_spec {
        match find_array(&report, &c.targets[0]) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("md verify: {e}");
                return 2;
            }
        }
    } else {
        if report.arrays.len() > 1 {
            eprintln!(
                "md verify: the devices belong to {} arrays ({}); give the members of one",
                report.arrays.len(),
                report
                    .arrays
                    .iter()
                    .map(|a| a.uuid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return 2;
        }
        report.arrays.first()
    };
    let Some(array) = array else {
        eprintln!(
            "md verify: no array found{}",
            if by_spec {
                " with that UUID or name (and no such file)"
            } else {
                ""
            }
        );
        return 2;
    };
    let Some(geo) = array.geometry.as_ref() else {
        eprintln!("md verify: {}: {}", array.uuid, array.problems.join("; "));
        return 1;
    };
    for s in &array.stale {
        eprintln!("md verify: left out, out of date: {s}");
    }
    let members = scan::verify_members(array, &inputs);
    let opts = verify::Options {
        batch_bytes: c.batch_mib.clamp(1, 1024) << 20,
        max_listed: c.max_listed,
    };
    let mut last = Instant::now() - Duration::from_secs(10);
    let quiet = c.quiet;
    let mut progress = |p: &verify::Progress| {
        let finished = p.done_bytes >= p.total_bytes;
        if quiet || (!finished && last.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last = Instant::now();
        let pct = if p.total_bytes > 0 {
            p.done_bytes as f64 * 100.0 / p.total_bytes as f64
        } else {
            100.0
        };
        let eta = p.eta().map(hms).unwrap_or("-".into());
        eprint!(
            "\rverify: {pct:5.1}%  {}/s  ETA {eta}   {}",
            human_bytes(p.rate()),
            if finished { "\n" } else { "" }
        );
        let _ = std::io::stderr().flush();
    };
    let r = match verify::verify(geo, &members, &opts, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("md verify: {}: {e}", array.uuid);
            return 1;
        }
    };
    if c.json {
        if !print_json(&r) {
            return 2;
        }
    } else {
        print!("{}", render_verify(array, &r));
    }
    if !r.read_failures.is_empty() {
        2
    } else {
        i32::from(r.mismatch_count > 0)
    }
}

/// Human-readable verify output.
pub fn render_verify(a: &scan::Array, r: &verify::VerifyReport) -> String {
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
