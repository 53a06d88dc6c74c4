//! `rescue vmdk`: a VM's disk read where it lies, through its snapshot
//! chain, read-only.
//!
//! A disk is named the same way by every action: a path on this machine
//! (`/mnt/dest/sdb1/web01/web01.vmdk`), or with `--vmfs SRC` a path inside
//! the VMFS datastore on SRC (`--vmfs /dev/sdb /web01/web01.vmdk`): the
//! disk is then read through the volume, with no copy.

use crate::chain::VirtualDisk;
use crate::device::DiskDevice;
use crate::export::{export, ExportJob, ExportProgress};
use crate::extent::Held;
use crate::files::{Files, HostDir};
use crate::parts::partitions;
use argh::FromArgs;
use cliconv::Exit;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Opens a disk named inside a VMFS datastore: the datastore's sources
/// (disks, partitions, images) and the disk's path in it give the files
/// of the disk's folder and the disk's name there. The front that can
/// open VMFS volumes passes it.
pub type VmfsOpener<'a> = &'a dyn Fn(&[String], &str) -> Result<(Box<dyn Files>, String), String>;

/// VM disks (VMDK: flat, hosted sparse, streamOptimized, COWD and SESparse
/// snapshots) read in place through their snapshot chain, read-only. DISK
/// is a descriptor (the small .vmdk) or a hosted sparse .vmdk: a path here,
/// or with --vmfs SRC a path in the VMFS datastore on SRC.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "vmdk",
    error_code(0, "done: see the action's --help"),
    error_code(1, "findings: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
pub struct VmdkCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    Info(InfoCommand),
    Parts(PartsCommand),
    Export(ExportCommand),
    Cat(CatCommand),
    Map(MapCommand),
}

/// The disk's levels (base first): format, capacity, CIDs, bytes stored,
/// geometry and adapter, and what the readers noticed.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "info",
    error_code(0, "done: the chain reads without warnings"),
    error_code(
        1,
        "findings: warnings (a CID mismatch, a redundant table used, a dirty journal)"
    ),
    error_code(2, "error: usage error (unknown option, missing argument), or the disk or a level could not be opened")
)]
pub struct InfoCommand {
    /// the disk (see `rescue vmdk --help`)
    #[argh(positional)]
    pub disk: String,
    /// a source of the VMFS datastore holding DISK (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// The partition table inside the disk (GPT, else MBR) with the filesystem,
/// LVM or md signature of each partition.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "parts",
    error_code(0, "done: listed"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the disk could not be opened"
    )
)]
pub struct PartsCommand {
    /// the disk (see `rescue vmdk --help`)
    #[argh(positional)]
    pub disk: String,
    /// a source of the VMFS datastore holding DISK (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// read the disk as of level N (0 = base), ignoring the snapshots above
    #[argh(option)]
    pub level: Option<usize>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Write the whole virtual disk, or one partition of it, to DEST as a raw
/// image. What the disk does not store is a hole; unreadable areas are
/// zero-filled and listed in DEST.badmap (a GNU ddrescue mapfile in
/// offsets of what was exported). DEST must not exist.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "export",
    error_code(0, "done: every byte was read"),
    error_code(
        1,
        "partial: unreadable areas were zero-filled (see DEST.badmap), or cancelled"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), the disk could not be opened, or DEST could not be written"
    )
)]
pub struct ExportCommand {
    /// the disk (see `rescue vmdk --help`)
    #[argh(positional)]
    pub disk: String,
    /// the raw image to write (a new file)
    #[argh(positional)]
    pub dest: PathBuf,
    /// a source of the VMFS datastore holding DISK (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// export partition N only (as `rescue vmdk parts` numbers them)
    #[argh(option)]
    pub part: Option<u32>,
    /// read the disk as of level N (0 = base), ignoring the snapshots above
    #[argh(option)]
    pub level: Option<usize>,
    /// read the base level only: the disk before its first snapshot
    #[argh(switch)]
    pub base: bool,
    /// also leave all-zero blocks as holes
    #[argh(switch)]
    pub sparse: bool,
    /// no progress lines
    #[argh(switch)]
    pub quiet: bool,
}

/// Bytes of the virtual disk to stdout.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "cat",
    error_code(0, "done: the bytes were written"),
    error_code(2, "error: usage error (unknown option, missing argument), the disk could not be opened or read")
)]
pub struct CatCommand {
    /// the disk (see `rescue vmdk --help`)
    #[argh(positional)]
    pub disk: String,
    /// a source of the VMFS datastore holding DISK (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// first byte (default 0)
    #[argh(option, default = "0")]
    pub offset: u64,
    /// bytes (default: to the end)
    #[argh(option)]
    pub length: Option<u64>,
    /// read the disk as of level N (0 = base)
    #[argh(option)]
    pub level: Option<usize>,
}

/// Which level and file, at which offset, holds a virtual byte, or whether
/// it is a hole: a zero grain, or stored nowhere.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "map",
    error_code(0, "done: the place is printed"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), the disk could not be opened, or its maps not read"
    )
)]
pub struct MapCommand {
    /// the disk (see `rescue vmdk --help`)
    #[argh(positional)]
    pub disk: String,
    /// the virtual byte offset
    #[argh(positional)]
    pub offset: u64,
    /// a source of the VMFS datastore holding DISK (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// read the disk as of level N (0 = base)
    #[argh(option)]
    pub level: Option<usize>,
}

const JSON_SCHEMA: u32 = 1;

impl Action {
    /// The command as typed, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Info(_) => "vmdk info",
            Action::Parts(_) => "vmdk parts",
            Action::Export(_) => "vmdk export",
            Action::Cat(_) => "vmdk cat",
            Action::Map(_) => "vmdk map",
        }
    }
}

pub fn run(cmd: VmdkCommand, vmfs: VmfsOpener<'_>, stop: &AtomicBool) -> i32 {
    let command = cmd.action.name();
    let r = match cmd.action {
        Action::Info(c) => info(command, c, vmfs),
        Action::Parts(c) => parts(command, c, vmfs),
        Action::Export(c) => export_cmd(c, vmfs, stop),
        Action::Cat(c) => cat(c, vmfs),
        Action::Map(c) => map(c, vmfs),
    };
    r.unwrap_or_else(|e| cliconv::fail(command, e)).code()
}

/// Opens DISK as the user named it.
fn open(disk: &str, vmfs: &[String], opener: VmfsOpener<'_>) -> Result<VirtualDisk, String> {
    let (files, name): (Box<dyn Files>, String) = if vmfs.is_empty() {
        let (dir, name) = HostDir::of(Path::new(disk));
        (Box::new(dir), name)
    } else {
        opener(vmfs, disk)?
    };
    VirtualDisk::open(files.as_ref(), &name).map_err(|e| e.to_string())
}

/// A disk whose data is on a LUN (a raw device mapping) has nothing here
/// to read: the error says which LUN to image.
fn readable(disk: &VirtualDisk) -> Result<(), String> {
    match disk.raw_device_maps().into_iter().next() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// The level asked for, checked against the chain.
fn level_of(disk: &VirtualDisk, level: Option<usize>) -> Result<usize, String> {
    match level {
        None => Ok(disk.top()),
        Some(n) if n <= disk.top() => Ok(n),
        Some(n) => Err(format!(
            "--level {n}: the chain has levels 0 to {} (0 is the base)",
            disk.top()
        )),
    }
}

#[derive(Serialize)]
struct LevelInfo {
    level: usize,
    descriptor: String,
    create_type: String,
    cid: Option<String>,
    parent_cid: Option<String>,
    capacity: u64,
    allocated: Option<u64>,
    extents: Vec<ExtentInfo>,
    adapter: Option<String>,
    geometry: Option<String>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct ExtentInfo {
    format: &'static str,
    file: Option<String>,
    size: u64,
}

#[derive(Serialize)]
struct Info {
    capacity: u64,
    levels: Vec<LevelInfo>,
    warnings: Vec<String>,
}

fn info(command: &str, c: InfoCommand, opener: VmfsOpener<'_>) -> Result<Exit, String> {
    let disk = open(&c.disk, &c.vmfs, opener)?;
    let levels: Vec<LevelInfo> = disk
        .levels()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let d = &l.descriptor;
            let geometry = match (
                d.ddb("ddb.geometry.cylinders"),
                d.ddb("ddb.geometry.heads"),
                d.ddb("ddb.geometry.sectors"),
            ) {
                (Some(c), Some(h), Some(s)) => Some(format!("{c}/{h}/{s}")),
                _ => None,
            };
            let mut notes = l.notes();
            let allocated = l
                .allocated()
                .map_err(|e| notes.push(format!("bytes stored unknown: {e}")))
                .ok();
            LevelInfo {
                level: i,
                descriptor: l.name.clone(),
                create_type: d.create_type.clone(),
                cid: d.cid.map(|c| format!("{c:08x}")),
                parent_cid: d.parent_cid.map(|c| format!("{c:08x}")),
                capacity: l.capacity(),
                allocated,
                extents: l
                    .extents
                    .iter()
                    .map(|(_, x)| ExtentInfo {
                        format: x.format(),
                        file: x.file().map(str::to_string),
                        size: x.size(),
                    })
                    .collect(),
                adapter: d.ddb("ddb.adapterType").map(str::to_string),
                geometry,
                notes,
            }
        })
        .collect();
    let info = Info {
        capacity: disk.capacity(),
        warnings: disk.warnings.clone(),
        levels,
    };
    let findings = !info.warnings.is_empty() || info.levels.iter().any(|l| !l.notes.is_empty());
    if c.json {
        let printed = cliconv::print_json(command, JSON_SCHEMA, &info);
        return Ok(printed.max(Exit::findings_if(findings)));
    }
    println!(
        "{}: {} ({} bytes), {}",
        c.disk,
        screen::human_size(info.capacity),
        info.capacity,
        screen::plural(info.levels.len() as u64, "level", "levels")
    );
    for l in &info.levels {
        println!(
            "level {}{}: {} ({}), CID {} parent {}",
            l.level,
            if l.level == 0 { " (base)" } else { "" },
            l.descriptor,
            l.create_type,
            l.cid.as_deref().unwrap_or("-"),
            l.parent_cid.as_deref().unwrap_or("-")
        );
        for x in &l.extents {
            println!(
                "  {:<15} {:>10}  {}",
                x.format,
                screen::human_size(x.size),
                x.file.as_deref().unwrap_or("")
            );
        }
        if let Some(a) = l.allocated {
            println!("  stored: {}", screen::human_size(a));
        }
        if let (Some(a), g) = (&l.adapter, &l.geometry) {
            println!(
                "  adapter {a}{}",
                g.as_deref()
                    .map(|g| format!(", geometry C/H/S {g}"))
                    .unwrap_or_default()
            );
        }
        for n in &l.notes {
            println!("  note: {n}");
        }
    }
    for w in &info.warnings {
        println!("warning: {w}");
    }
    Ok(Exit::findings_if(findings))
}

fn parts(command: &str, c: PartsCommand, opener: VmfsOpener<'_>) -> Result<Exit, String> {
    let disk = Arc::new(open(&c.disk, &c.vmfs, opener)?);
    readable(&disk)?;
    let level = level_of(&disk, c.level)?;
    let dev = Arc::new(DiskDevice::new(disk, level, c.disk.clone()));
    let p = partitions(dev);
    if c.json {
        return Ok(cliconv::print_json(command, JSON_SCHEMA, &p));
    }
    match p.table {
        "none" => println!("{}: no partition table", c.disk),
        t => println!("{}: {} partition table", c.disk, t.to_uppercase()),
    }
    for n in &p.notes {
        println!("note: {n}");
    }
    if let Some(w) = &p.whole_disk {
        println!("the whole disk holds {w}");
    }
    for part in &p.partitions {
        println!(
            " {:>3}  at byte {:<12} {:>10}  {:<24} {}",
            part.number,
            part.start,
            screen::human_size(part.size),
            part.type_name,
            part.contents.as_deref().unwrap_or("-")
        );
    }
    if p.partitions.is_empty() && p.whole_disk.is_none() {
        println!("no partition and no known filesystem");
    }
    Ok(Exit::Done)
}

fn export_cmd(c: ExportCommand, opener: VmfsOpener<'_>, stop: &AtomicBool) -> Result<Exit, String> {
    let disk = Arc::new(open(&c.disk, &c.vmfs, opener)?);
    readable(&disk)?;
    if c.base && c.level.is_some() {
        return Err("--base and --level are one choice: give one".into());
    }
    let level = if c.base { 0 } else { level_of(&disk, c.level)? };
    let (start, len) = match c.part {
        None => (0, disk.capacity()),
        Some(n) => {
            let dev = Arc::new(DiskDevice::new(disk.clone(), level, c.disk.clone()));
            let p = partitions(dev);
            let part = p.partitions.iter().find(|p| p.number == n).ok_or_else(|| {
                format!(
                    "--part {n}: no such partition ({} table with {})",
                    p.table.to_uppercase(),
                    if p.partitions.is_empty() {
                        "none".to_string()
                    } else {
                        p.partitions
                            .iter()
                            .map(|p| p.number.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            })?;
            (part.start, part.size)
        }
    };
    let job = ExportJob {
        disk: &disk,
        level,
        start,
        len,
        dest: &c.dest,
        sparse: c.sparse,
    };
    let mut throttle = screen::Throttle::new(Duration::from_secs(1));
    let mut progress = |p: &ExportProgress| {
        if !c.quiet && throttle.ready(p.done >= p.total) {
            eprintln!("{}", progress_line(p));
        }
    };
    let r = export(&job, &mut progress, stop)?;
    println!(
        "exported {} of {} to {} in {:.1}s: {} written, {} left as holes{}",
        screen::human_size(len),
        c.disk,
        r.dest.display(),
        r.elapsed.as_secs_f64(),
        screen::human_size(r.written),
        screen::human_size(r.holes),
        if c.part.is_some() {
            format!(" (partition {} at byte {start})", c.part.unwrap_or(0))
        } else {
            String::new()
        }
    );
    if let Some(map) = &r.badmap {
        println!(
            "{} unreadable in {}, zero-filled: see {}{}",
            screen::human_size(r.bad_bytes()),
            screen::plural(r.bad.len() as u64, "area", "areas"),
            map.display(),
            r.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    if r.cancelled {
        println!("STOPPED as asked: the image is incomplete");
    }
    Ok(Exit::findings_if(r.badmap.is_some() || r.cancelled))
}

/// "vmdk: 1.0 GiB of 20.0 GiB (5%), 100.0 MiB/s, ETA 3m10s".
pub fn progress_line(p: &ExportProgress) -> String {
    let secs = p.elapsed.as_secs_f64().max(0.001);
    let rate = p.done as f64 / secs;
    let eta = if rate > 0.0 {
        p.total.saturating_sub(p.done) as f64 / rate
    } else {
        0.0
    };
    format!(
        "vmdk: {} of {} ({:.0}%), {}/s, ETA {}",
        screen::human_size(p.done),
        screen::human_size(p.total),
        if p.total > 0 {
            p.done as f64 * 100.0 / p.total as f64
        } else {
            100.0
        },
        screen::human_size(rate as u64),
        screen::hms(Duration::from_secs_f64(eta))
    )
}

fn cat(c: CatCommand, opener: VmfsOpener<'_>) -> Result<Exit, String> {
    let disk = open(&c.disk, &c.vmfs, opener)?;
    readable(&disk)?;
    let level = level_of(&disk, c.level)?;
    let end = c
        .length
        .map_or(disk.capacity(), |l| c.offset.saturating_add(l))
        .min(disk.capacity());
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = c.offset.min(end);
    while pos < end {
        let n = (end - pos).min(buf.len() as u64) as usize;
        disk.read_at(level, &mut buf[..n], pos)
            .map_err(|e| e.to_string())?;
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            // The reader of our output went away: done, quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Exit::Done),
            Err(e) => return Err(format!("writing stdout: {e}")),
        }
        pos += n as u64;
    }
    out.flush().map_err(|e| format!("writing stdout: {e}"))?;
    Ok(Exit::Done)
}

fn map(c: MapCommand, opener: VmfsOpener<'_>) -> Result<Exit, String> {
    let disk = open(&c.disk, &c.vmfs, opener)?;
    readable(&disk)?;
    let level = level_of(&disk, c.level)?;
    if c.offset >= disk.capacity() {
        return Err(format!(
            "offset {} is past the end of the disk ({} bytes)",
            c.offset,
            disk.capacity()
        ));
    }
    let at = disk.locate(level, c.offset).map_err(|e| e.to_string())?;
    let len = at.len.min(disk.capacity() - c.offset);
    let held_by = |l: usize| format!("level {l} ({})", disk.levels()[l].name);
    match (&at.held, at.level) {
        (Held::Stored { offset }, Some(l)) => println!(
            "byte {}: {}, file {} at byte {offset}; the next {len} bytes alike",
            c.offset,
            held_by(l),
            at.file.as_deref().unwrap_or("-")
        ),
        (Held::Compressed { offset, skip }, Some(l)) => println!(
            "byte {}: {}, file {}, in the compressed grain at byte {offset}, {skip} bytes \
             into it; the next {len} bytes alike",
            c.offset,
            held_by(l),
            at.file.as_deref().unwrap_or("-")
        ),
        (Held::Zero, Some(l)) => println!(
            "byte {}: zeros in {} (nothing stored: a zero grain, a ZERO extent or a hole \
             of a thin file), {len} bytes",
            c.offset,
            held_by(l)
        ),
        _ => println!(
            "byte {}: stored in no level: reads as zeros, {len} bytes",
            c.offset
        ),
    }
    Ok(Exit::Done)
}
