//! `rescue probe`: the disk overview as text or JSON.

use argh::FromArgs;
use serde::Serialize;
use std::path::PathBuf;

/// List every disk: identity (vendor, model, serial, transport, controller),
/// health (ATA SMART, NVMe health log) and contents (filesystems, md members).
/// Only reads: sysfs, a few small blocks of each disk, and SMART queries.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "probe",
    error_code(0, "every disk surveyed"),
    error_code(
        1,
        "problems met while probing (a disk vanished, sysfs unreadable); the rest is shown"
    ),
    error_code(
        2,
        "usage error (unknown option, missing argument), or the output could not be written"
    )
)]
pub struct ProbeCommand {
    /// print JSON (schema in the README: "probe --json")
    #[argh(switch)]
    pub json: bool,
    /// show every field of every disk instead of one line each
    #[argh(switch, short = 'l')]
    pub long: bool,
    /// read this sysfs tree instead of /sys (for tests)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    pub sysfs: PathBuf,
    /// device nodes directory (default /dev)
    #[argh(option, default = "PathBuf::from(\"/dev\")")]
    pub dev: PathBuf,
    /// sysfs only: no health queries, no reads from the disks
    #[argh(switch)]
    pub no_io: bool,
    /// print how long the survey took (to stderr)
    #[argh(switch)]
    pub timing: bool,
}

/// The `--json` document.
#[derive(Serialize)]
pub struct ProbeReport<'a> {
    /// Version of this schema; bumped on incompatible changes.
    pub schema: u32,
    pub disks: &'a [crate::Disk],
    /// PCI storage controllers, with or without disks behind them.
    pub controllers: &'a [crate::StorageController],
    /// Problems met while probing (a disk that vanished, an unreadable sysfs).
    pub problems: &'a [String],
    /// UEFI or BIOS, Secure Boot and kernel lockdown.
    pub boot: crate::boot::BootSecurity,
}

pub fn run(cmd: ProbeCommand) -> i32 {
    let start = std::time::Instant::now();
    let (disks, problems) = if cmd.no_io {
        crate::list_disks(&cmd.sysfs)
    } else {
        crate::survey(&cmd.sysfs, &cmd.dev)
    };
    let controllers = crate::list_storage_controllers(&cmd.sysfs);
    if cmd.timing {
        eprintln!(
            "probe: {} disks surveyed in {:.1} ms",
            disks.len(),
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    if cmd.json {
        let report = ProbeReport {
            schema: 1,
            disks: &disks,
            controllers: &controllers,
            problems: &problems,
            boot: crate::boot::read(&cmd.sysfs),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("probe: {e}");
                return 2;
            }
        }
    } else {
        if cmd.long {
            for d in &disks {
                println!("{}", crate::render::detail(d));
            }
        } else {
            print!("{}", crate::render::overview(&disks));
        }
        print!("{}", crate::render::controllers(&controllers, &disks));
        println!("Boot: {}", crate::boot::read(&cmd.sysfs).line());
        for p in &problems {
            eprintln!("probe: {p}");
        }
    }
    if problems.is_empty() {
        0
    } else {
        1
    }
}
