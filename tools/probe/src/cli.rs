//! `rescue probe`: the disk overview as text or JSON.

use argh::FromArgs;
use cliconv::Exit;
use serde::Serialize;
use std::path::PathBuf;

/// List every disk: identity (vendor, model, serial, transport, controller),
/// health (ATA SMART, NVMe health log) and contents (filesystems, md members).
/// Only reads: sysfs, a few small blocks of each disk, and SMART queries.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "probe",
    error_code(0, "done: every disk surveyed"),
    error_code(
        1,
        "findings: problems met while probing (a disk vanished, sysfs unreadable); the rest is shown"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the output could not be written"
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

/// Version of the `--json` document ([`ProbeReport`] under its `schema`
/// field); bumped on incompatible changes.
pub const JSON_SCHEMA: u32 = 1;

/// The `--json` document (printed with `"schema": JSON_SCHEMA` first).
#[derive(Serialize)]
pub struct ProbeReport<'a> {
    pub disks: &'a [crate::Disk],
    /// PCI storage controllers, with or without disks behind them.
    pub controllers: &'a [crate::StorageController],
    /// Problems met while probing (a disk that vanished, an unreadable sysfs).
    pub problems: &'a [String],
    /// UEFI or BIOS, Secure Boot and kernel lockdown.
    pub boot: crate::boot::BootSecurity,
    /// What `rescue net up` (or the kernel command line) configured:
    /// link, address, gateway, DNS, method and lease; null when nothing.
    pub network: Option<net::State>,
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
        cliconv::eprint(
            "probe",
            format_args!(
                "{} disks surveyed in {:.1} ms",
                disks.len(),
                start.elapsed().as_secs_f64() * 1000.0
            ),
        );
    }
    let found = Exit::findings_if(!problems.is_empty());
    if cmd.json {
        let report = ProbeReport {
            disks: &disks,
            controllers: &controllers,
            problems: &problems,
            boot: crate::boot::read(&cmd.sysfs),
            network: net::status(&net::Paths::default()),
        };
        return cliconv::print_json("probe", JSON_SCHEMA, &report)
            .max(found)
            .code();
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
        if let Some(n) = net::summary() {
            println!("Network: {n}");
        }
        for p in &problems {
            cliconv::eprint("probe", p);
        }
    }
    found.code()
}
