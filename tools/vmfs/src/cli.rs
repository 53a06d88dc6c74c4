//! `rescue vmfs`: browse and extract VMFS datastores, read-only.

use crate::damage::{parse_mapfile, Ranges};
use crate::datastores::{pick_copies, plan_paths, Candidate};
use crate::inode::FileType;
use crate::source::{open_source, Opened};
use crate::volume::{Piece, Stat, Volume};
use argh::FromArgs;
use serde::Serialize;
use std::collections::HashSet;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// VMFS 3/5/6 datastores: show, list, read and extract files, read-only.
/// SRC is a disk, a partition or an image; the VMFS partition is found from
/// GPT/MBR by itself. A volume spanning several devices takes them all
/// (as further SRCs or with --extent), in any order.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "vmfs")]
pub struct VmfsCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    List(ListCommand),
    Info(InfoCommand),
    Ls(LsCommand),
    Stat(StatCommand),
    Cat(CatCommand),
    Extract(ExtractCommand),
    FilesHit(FilesHitCommand),
    Scan(ScanCommand),
    Tree(TreeCommand),
}

/// Print the folder tree with sizes: SRC... [PATH].
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "tree",
    error_code(0, "listed"),
    error_code(1, "some entries could not be read"),
    error_code(
        2,
        "usage error (unknown option, missing argument), no volume, or PATH not found"
    )
)]
pub struct TreeCommand {
    /// SRC... then an optional VMFS path
    #[argh(positional)]
    pub args: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// also show the system files (.*.sf)
    #[argh(switch, short = 'a')]
    pub all: bool,
}

/// Scan the file descriptor area for files no directory reaches (after
/// directory damage) and list them as orphans with their FD address, type
/// and size (the same as `ls --scan`). Every command takes `fd:ADDR` as a
/// path for them: `extract SRC fd:0x01000104 DEST_DIR`. Exit 1 if any.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "scan",
    error_code(0, "no orphans"),
    error_code(1, "orphans found"),
    error_code(2, "usage error (unknown option, missing argument), or no volume")
)]
pub struct ScanCommand {
    /// disks, partitions or images holding the volume
    #[argh(positional)]
    pub src: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List the datastores on the disks (default: every disk of this machine)
/// or on the given SRCs: label, version, capacity, free space and where.
/// Devices of a spanned volume are joined. Copies of one volume (a disk
/// and its raw clone: same LVM device) are listed each on its own, noted
/// "same volume as ... (a copy)"; for a span with copies of an extent the
/// newest copy is taken and the choice is printed. Exit 0 when datastores
/// were found, 1 when none were or one could not be opened, 2 on a usage
/// error.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListCommand {
    /// disks, partitions or images to look at (default: all disks)
    #[argh(positional)]
    pub src: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Volume facts: version, label, UUID, block sizes, capacity, extents.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "info",
    error_code(
        0,
        "the volume is whole: every extent found, metadata and bitmap readable"
    ),
    error_code(
        1,
        "an extent is missing, metadata warnings, or the bitmap is unreadable"
    ),
    error_code(
        2,
        "usage error (unknown option, missing argument), or no VMFS volume can be opened on SRC"
    )
)]
pub struct InfoCommand {
    /// disks, partitions or images holding the volume
    #[argh(positional)]
    pub src: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC (skips GPT/MBR search)
    #[argh(option)]
    pub offset: Option<u64>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List a directory (default "/"): SRC... [PATH]. PATH `fd:ADDR` names a
/// file or folder by its FD address (orphans that `--scan` finds).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "ls",
    error_code(0, "listed"),
    error_code(1, "an entry could not be read, or with --scan orphans were found"),
    error_code(
        2,
        "usage error (unknown option, missing argument), no volume, or PATH not found"
    )
)]
pub struct LsCommand {
    /// SRC... then an optional VMFS path (sources are the leading arguments
    /// that exist as files or devices)
    #[argh(positional)]
    pub args: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// long listing: type, mode, size, date, FD address, link target
    #[argh(switch, short = 'l')]
    pub long: bool,
    /// instead of a directory, list the orphans: files and folders no
    /// directory reaches, found by scanning the descriptor area (as `scan`)
    #[argh(switch)]
    pub scan: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// File metadata: SRC... PATH.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "stat",
    error_code(0, "shown"),
    error_code(2, "usage error (unknown option, missing argument), no volume, or PATH not found or unreadable")
)]
pub struct StatCommand {
    /// SRC... then the VMFS path
    #[argh(positional)]
    pub args: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// also list where the file's bytes are on the devices
    #[argh(switch)]
    pub extents: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Write a file's bytes (or --offset/--length of them) to stdout: SRC...
/// PATH. Here --offset is the place in the file, as with dd's skip; the
/// VMFS partition's place in SRC, --offset elsewhere, is --vmfs-offset.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "cat",
    error_code(0, "all bytes written to stdout (or its reader went away)"),
    error_code(2, "usage error (unknown option, missing argument), no volume, PATH not found, or a read or write failed")
)]
pub struct CatCommand {
    /// SRC... then the VMFS path
    #[argh(positional)]
    pub args: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// start at this byte of the file
    #[argh(option)]
    pub offset: Option<u64>,
    /// write at most this many bytes
    #[argh(option)]
    pub length: Option<u64>,
    /// byte offset of the VMFS partition in SRC (skips GPT/MBR search)
    #[argh(option)]
    pub vmfs_offset: Option<u64>,
}

/// Copy files or folders out, recursively: SRC... PATH... DEST_DIR. Sizes
/// and times kept, thin regions written as holes, unreadable bytes
/// zero-filled and listed in DEST_DIR/vmfs-extract-report.txt. Exit 1 when
/// bytes were lost or items skipped; exit 2, and no further files, when
/// the destination fails (full, read-only): what the last file got is kept
/// as NAME.incomplete. PATH `fd:ADDR` takes an orphan that `scan` listed
/// (it comes out as DEST_DIR/orphan-fd-ADDR).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "extract",
    error_code(0, "everything extracted"),
    error_code(1, "bytes were lost (zero-filled) or items skipped: see DEST_DIR/vmfs-extract-report.txt"),
    error_code(2, "usage error (unknown option, missing argument), no volume, PATH not found, or the destination failed (full, read-only, gone)")
)]
pub struct ExtractCommand {
    /// SRC... then VMFS paths, then the destination directory
    #[argh(positional)]
    pub args: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// ddrescue mapfile of SRC (an image): its bad areas read as errors
    #[argh(option)]
    pub map: Option<String>,
    /// no progress lines
    #[argh(switch, short = 'q')]
    pub quiet: bool,
}

/// List the files (and byte ranges) that overlap bad areas of a ddrescue
/// mapfile, without extracting: SRC... --map MAPFILE. Exit 1 if any.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "files-hit",
    error_code(0, "no file overlaps a bad area"),
    error_code(1, "files overlap bad areas, or some metadata could not be read"),
    error_code(
        2,
        "usage error (unknown option, missing argument), no volume, or the mapfile is unreadable"
    )
)]
pub struct FilesHitCommand {
    /// disks, partitions or images holding the volume
    #[argh(positional)]
    pub src: Vec<String>,
    /// further devices of a spanned volume
    #[argh(option)]
    pub extent: Vec<String>,
    /// byte offset of the VMFS partition in SRC
    #[argh(option)]
    pub offset: Option<u64>,
    /// ddrescue mapfile of the first SRC
    #[argh(option)]
    pub map: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: VmfsCommand) -> i32 {
    let r = match cmd.action {
        Action::List(c) => list(c),
        Action::Info(c) => info(c),
        Action::Ls(c) => ls(c),
        Action::Stat(c) => stat(c),
        Action::Cat(c) => cat(c),
        Action::Extract(c) => extract(c),
        Action::FilesHit(c) => files_hit(c),
        Action::Scan(c) => scan(c),
        Action::Tree(c) => tree(c),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmfs: {e}");
            2
        }
    }
}

type CliResult = Result<i32, String>;

fn is_host_source(p: &str) -> bool {
    std::fs::metadata(p)
        .map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.is_file() || m.file_type().is_block_device()
        })
        .unwrap_or(false)
}

/// Splits positionals into sources (leading host files/devices) and the rest.
fn split_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    let n = args
        .iter()
        .take_while(|a| is_host_source(a))
        .count()
        .max(1)
        .min(args.len());
    (args[..n].to_vec(), args[n..].to_vec())
}

struct Opened2 {
    vol: Volume,
    /// Per volume device: (source path, offset of the device on it).
    origins: Vec<(String, u64)>,
}

fn open_volume(
    srcs: &[String],
    extents: &[String],
    offset: Option<u64>,
    bad: Option<&Ranges>,
) -> Result<Opened2, String> {
    if srcs.is_empty() {
        return Err("no source given (a disk, partition or image)".into());
    }
    let mut cands = Vec::new();
    for (i, s) in srcs.iter().chain(extents).enumerate() {
        // The offset and mapfile apply to the first source only.
        let found: Vec<Opened> = open_source(
            s,
            if i == 0 { offset } else { None },
            if i == 0 { bad } else { None },
        )
        .map_err(|e| e.to_string())?;
        cands.extend(found.into_iter().map(Candidate::new));
    }
    let named = cands.len();
    // A spanned volume with only some of its devices named: on a machine
    // with its disks (the appliance), find the others by volume UUID.
    if extents.is_empty() && bad.is_none() {
        let wanted = cands[0]
            .header
            .as_ref()
            .filter(|h| h.num_devs as usize > named)
            .map(|h| h.lv_uuid.to_string());
        if let Some(uuid) = wanted {
            let known: Vec<(String, u64)> = cands
                .iter()
                .map(|c| (c.opened.path.clone(), c.opened.offset))
                .collect();
            let sys = Path::new("/sys");
            for o in crate::source::find_extents(sys, Path::new("/dev"), &uuid, &known) {
                eprintln!(
                    "vmfs: extent of volume {uuid} found on {} at byte {}",
                    o.path, o.offset
                );
                cands.push(Candidate::new(o));
            }
        }
    }
    // Copies of one extent (a disk and its raw clone): the named one, or
    // the newest discovered, and say which.
    let (opened, said) = pick_copies(cands, named);
    for s in said {
        eprintln!("vmfs: {s}");
    }
    let origins = opened.iter().map(|o| (o.path.clone(), o.offset)).collect();
    let vol = Volume::from_devices(opened.into_iter().map(|o| o.dev).collect())
        .map_err(|e| e.to_string())?;
    for w in &vol.warnings {
        eprintln!("vmfs: warning: {w}");
    }
    Ok(Opened2 { vol, origins })
}

fn json_out<T: Serialize>(v: &T) -> CliResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(0)
}

fn list(c: ListCommand) -> CliResult {
    let paths = if c.src.is_empty() {
        blockdev::system_disks(Path::new("/sys"))
            .into_iter()
            .map(|d| format!("/dev/{d}"))
            .collect()
    } else {
        c.src.clone()
    };
    let (plans, failed) = plan_paths(&paths);
    let stores: Vec<crate::datastores::Datastore> = plans.into_iter().map(|p| p.open()).collect();
    let mut code = if stores.is_empty() { 1 } else { 0 };
    #[derive(Serialize)]
    struct Row<'a> {
        source: &'a str,
        offset: u64,
        devices: &'a [(String, u64)],
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vmfs_version: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        capacity: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        free_bytes: Option<u64>,
        /// Other places holding a copy of this volume.
        copies: &'a [String],
        choices: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let mut rows = Vec::new();
    for d in &stores {
        let mut row = Row {
            source: &d.source,
            offset: d.offset,
            devices: &d.devices,
            label: None,
            vmfs_version: None,
            uuid: None,
            capacity: None,
            free_bytes: None,
            copies: &d.copies,
            choices: &d.choices,
            error: None,
        };
        match &d.volume {
            Ok(v) => {
                let i = v.info();
                row.label = Some(i.label);
                row.vmfs_version = Some(i.vmfs_version);
                row.uuid = Some(i.uuid);
                row.capacity = Some(i.capacity);
                row.free_bytes = crate::space::free_space(v).ok().map(|s| s.free_bytes);
            }
            Err(e) => {
                row.error = Some(e.to_string());
                code = 1;
            }
        }
        rows.push(row);
    }
    if !failed.is_empty() {
        code = 1;
    }
    if c.json {
        #[derive(Serialize)]
        struct Out<'a> {
            datastores: &'a [Row<'a>],
            errors: Vec<String>,
        }
        json_out(&Out {
            datastores: &rows,
            errors: failed.iter().map(|(p, e)| format!("{p}: {e}")).collect(),
        })?;
        return Ok(code);
    }
    for (n, r) in rows.iter().enumerate() {
        let place = stores[n].place();
        match (&r.label, &r.error) {
            (Some(label), _) => println!(
                "{:>2}  VMFS{} \"{label}\"  {}, {}  on {place}",
                n + 1,
                r.vmfs_version.unwrap_or(0),
                screen::human_size(r.capacity.unwrap_or(0)),
                r.free_bytes
                    .map(|f| format!("{} free", screen::human_size(f)))
                    .unwrap_or_else(|| "free space unknown".into())
            ),
            (_, Some(e)) => println!("{:>2}  unreadable VMFS on {place}: {e}", n + 1),
            _ => {}
        }
        if let Some(note) = stores[n].copy_note() {
            println!("    {note}");
        }
        for ch in r.choices {
            println!("    {ch}");
        }
        if r.devices.len() > 1 {
            let devs: Vec<String> = r.devices.iter().map(|(p, o)| format!("{p}@{o}")).collect();
            println!("    spans {}", devs.join(" "));
        }
    }
    for (p, e) in &failed {
        println!("    {p}: {e}");
    }
    if rows.is_empty() {
        println!("no VMFS datastore found on {}", paths.join(" "));
    }
    Ok(code)
}

fn info(c: InfoCommand) -> CliResult {
    let o = open_volume(&c.src, &c.extent, c.offset, None)?;
    let i = o.vol.info();
    let space = crate::space::free_space(&o.vol).map_err(|e| e.to_string());
    let code = if i.missing.is_empty() && o.vol.warnings.is_empty() && space.is_ok() {
        0
    } else {
        1
    };
    if c.json {
        #[derive(Serialize)]
        struct WithSpace<'a> {
            #[serde(flatten)]
            info: &'a crate::VolumeInfo,
            /// From the file block bitmap; null when unreadable.
            space: Option<&'a crate::Space>,
            #[serde(skip_serializing_if = "Option::is_none")]
            space_error: Option<&'a str>,
        }
        json_out(&WithSpace {
            info: &i,
            space: space.as_ref().ok(),
            space_error: space.as_ref().err().map(String::as_str),
        })?;
        return Ok(code);
    }
    println!(
        "VMFS version:   {} (descriptor {}.{}){}",
        i.vmfs_version,
        i.major,
        i.minor,
        if i.local { ", VMFS-L" } else { "" }
    );
    println!("label:          {}", i.label);
    println!("UUID:           {}", i.uuid);
    println!(
        "block size:     {} (sub-block {})",
        screen::human_size(i.block_size),
        screen::human_size(i.sub_block_size as u64)
    );
    println!(
        "capacity:       {} ({} bytes)",
        screen::human_size(i.capacity),
        i.capacity
    );
    match &space {
        Ok(sp) => println!(
            "free:           {} ({} bytes, {:.0}% of {} in file blocks)",
            screen::human_size(sp.free_bytes),
            sp.free_bytes,
            sp.free_bytes as f64 * 100.0 / sp.total_bytes.max(1) as f64,
            screen::human_size(sp.total_bytes)
        ),
        Err(e) => println!("free:           unknown: {e}"),
    }
    if let Some(l) = &i.lvm {
        println!(
            "LVM:            version {}, volume {} ({}), {} device(s)",
            l.version, l.volume_name, l.volume_uuid, l.num_devices
        );
    } else {
        println!("LVM:            none (bare volume)");
    }
    for s in &i.segments {
        let (p, off) = &o.origins[s.dev];
        println!(
            "  extent: volume {:#x}..{:#x} on {p} at {:#x}",
            s.l_off,
            s.l_off + s.len,
            off + s.p_off
        );
    }
    for (s, l) in &i.missing {
        println!(
            "  MISSING: volume {:#x}..{:#x} is on no given device",
            s,
            s + l
        );
    }
    for r in &i.resources {
        println!(
            "  {}: {} resources of {} ({} per cluster, {} clusters/group, {} groups)",
            r.name,
            r.total,
            screen::human_size(r.res_size),
            r.per_cluster,
            r.clusters_per_group,
            r.groups
        );
    }
    Ok(code)
}

fn date(t: u32) -> String {
    civiltime::Civil::from_unix(u64::from(t)).to_minutes()
}

fn mode_str(st: &Stat) -> String {
    let mut s = String::new();
    s.push(st.file_type.letter());
    for shift in [6, 3, 0] {
        let b = (st.mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[derive(Serialize)]
struct LsEntry {
    name: String,
    #[serde(flatten)]
    stat: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn ls(c: LsCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    if rest.len() > 1 {
        return Err(format!("ls takes one path, got {rest:?}"));
    }
    let path = rest.first().map(String::as_str).unwrap_or("/");
    let o = open_volume(&srcs, &c.extent, c.offset, None)?;
    if c.scan {
        if !rest.is_empty() {
            return Err("ls --scan takes no path: it scans the whole volume".into());
        }
        return list_orphans(&o, &srcs, c.json);
    }
    let v = &o.vol;
    let st = v.stat(path).map_err(|e| e.to_string())?;
    let entries = if st.file_type.is_dir() {
        v.read_dir(path).map_err(|e| e.to_string())?
    } else {
        vec![crate::DirEntry {
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            addr: st.addr,
            file_type: st.file_type,
        }]
    };
    let mut bad = 0;
    let mut out = Vec::new();
    for e in entries {
        let s = v.inode(e.addr).and_then(|i| v.stat_inode(&i));
        if s.is_err() {
            bad += 1;
        }
        out.push(LsEntry {
            name: e.name,
            error: s.as_ref().err().map(|e| e.to_string()),
            stat: s.ok(),
        });
    }
    if c.json {
        json_out(&out)?;
    } else {
        for e in &out {
            match (&e.stat, c.long) {
                (_, false) => println!("{}", e.name),
                (Some(s), true) => {
                    let mut extra = String::new();
                    if let Some(l) = &s.link {
                        extra = format!(" -> {l}");
                    }
                    if let Some(r) = &s.rdm {
                        extra = format!(" (raw device mapping to {})", r.id.trim());
                    }
                    println!(
                        "{} {:>3} {:>5} {:>5} {:>15} {} {:#010x} {}{}",
                        mode_str(s),
                        s.nlink,
                        s.uid,
                        s.gid,
                        s.size,
                        date(s.mtime),
                        s.addr,
                        e.name,
                        extra
                    );
                }
                (None, true) => println!(
                    "?????????? {} ({})",
                    e.name,
                    e.error.as_deref().unwrap_or("")
                ),
            }
        }
    }
    for e in out.iter().filter(|e| e.error.is_some()) {
        eprintln!(
            "vmfs: warning: {}: {}",
            e.name,
            e.error.as_deref().unwrap_or("")
        );
    }
    Ok(if bad > 0 { 1 } else { 0 })
}

fn stat(c: StatCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let [path] = rest.as_slice() else {
        return Err("stat takes SRC... PATH".into());
    };
    let o = open_volume(&srcs, &c.extent, c.offset, None)?;
    let v = &o.vol;
    let ino = v.lookup(path).map_err(|e| e.to_string())?;
    let st = v.stat_inode(&ino).map_err(|e| e.to_string())?;
    let extents = if c.extents && !st.file_type.is_dir() && st.file_type != FileType::Rdm {
        Some(v.device_extents(&ino).map_err(|e| e.to_string())?)
    } else {
        None
    };
    if c.json {
        #[derive(Serialize)]
        struct S<'a> {
            stat: &'a Stat,
            extents: &'a Option<Vec<crate::FileExtent>>,
        }
        return json_out(&S {
            stat: &st,
            extents: &extents,
        });
    }
    println!("path:        {path}");
    println!("type:        {:?}", st.file_type);
    println!("size:        {} ({})", st.size, screen::human_size(st.size));
    println!("mode:        {} ({:o})", mode_str(&st), st.mode);
    println!("uid/gid:     {}/{}", st.uid, st.gid);
    println!("links:       {}", st.nlink);
    println!("mtime:       {}", date(st.mtime));
    println!("FD address:  {:#010x}", st.addr);
    println!(
        "addressing:  ZLA {} , block {}",
        st.zla,
        screen::human_size(st.block_size)
    );
    if let Some(l) = &st.link {
        println!("target:      {l}");
    }
    if let Some(r) = &st.rdm {
        println!(
            "maps disk:   id type {} len {}: {:?}",
            r.id_type, r.id_len, r.id
        );
    }
    if let Some(ex) = &extents {
        for e in ex {
            let (p, off) = &o.origins[e.device];
            println!(
                "  file {:#x}+{:#x} at {p} {:#x}",
                e.file_offset,
                e.len,
                off + e.device_offset
            );
        }
    }
    Ok(0)
}

fn cat(c: CatCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let [path] = rest.as_slice() else {
        return Err("cat takes SRC... PATH".into());
    };
    let o = open_volume(&srcs, &c.extent, c.vmfs_offset, None)?;
    let f = o.vol.open(path).map_err(|e| e.to_string())?;
    let start = c.offset.unwrap_or(0).min(f.size());
    let end = c
        .length
        .map(|l| start.saturating_add(l).min(f.size()))
        .unwrap_or(f.size());
    // Rust's stdout is line-buffered: it would search every chunk for a
    // newline (half of cat's time on cached data). A duplicate of fd 1 as a
    // File writes the chunks straight through. 1 MiB chunks: the usual file
    // block, and small enough to stay in the CPU cache between read and write.
    use std::os::fd::AsFd;
    let mut out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| format!("stdout: {e}"))?;
    let chunks = crate::readahead::chunks_of(start, end, 1 << 20);
    let read = |buf: &mut [u8], off: u64| read_fully(&f, buf, off);
    let mut failed = None;
    crate::readahead::for_each_chunk(&chunks, &read, &mut |_, _, data| {
        let res = match data {
            Ok(bytes) => out.write_all(bytes).map_err(|e| {
                (e.kind() != std::io::ErrorKind::BrokenPipe).then(|| format!("writing stdout: {e}"))
            }),
            Err(e) => Err(Some(e.to_string())),
        };
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    match failed {
        None => {}
        // The reader of our output went away: done, quietly.
        Some(None) => return Ok(0),
        Some(Some(e)) => return Err(e),
    }
    out.flush().map_err(|e| format!("writing stdout: {e}"))?;
    Ok(0)
}

/// Fills `buf` from `off` of `f`; a short read (the file ends first) is an
/// error, as the chunks given are always inside the file.
fn read_fully(f: &crate::FileReader<'_>, buf: &mut [u8], off: u64) -> crate::Result<()> {
    let got = f.read_at(buf, off)?;
    if got < buf.len() {
        return Err(crate::Error::corrupt(format!(
            "FD {:#010x}: {} bytes at file offset {off:#x}, the file ends after {got}",
            f.inode().addr,
            buf.len()
        )));
    }
    Ok(())
}

/// Lost byte ranges of one extracted file.
#[derive(Serialize, Debug)]
pub struct Loss {
    pub path: String,
    pub ranges: Vec<(u64, u64)>,
    pub reason: String,
}

struct Extractor<'a> {
    vol: &'a Volume,
    quiet: bool,
    /// Stored bytes (thin and to-be-zeroed regions excluded) to copy, and
    /// copied so far: what takes time, so what progress and ETA count.
    total: u64,
    done: u64,
    /// All bytes of the files written so far, holes included.
    written: u64,
    /// Volume metadata files met in folders and left out.
    system_files: u64,
    /// Why extraction stopped early: the destination failed in a way
    /// every further file would meet too (full, read-only, gone).
    stopped: Option<String>,
    files: u64,
    started: Instant,
    last: Instant,
    losses: Vec<Loss>,
    skipped: Vec<String>,
    visited: HashSet<u32>,
}

impl Extractor<'_> {
    fn progress(&mut self, force: bool) {
        if self.quiet || (!force && self.last.elapsed().as_millis() < 1000) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            0.0
        };
        eprintln!(
            "vmfs: {} of {} stored data ({:.0}%), {}/s, ETA {:.0}s, {} files",
            screen::human_size(self.done),
            screen::human_size(self.total),
            if self.total > 0 {
                self.done as f64 * 100.0 / self.total as f64
            } else {
                100.0
            },
            screen::human_size(rate as u64),
            eta,
            self.files
        );
    }

    fn extract(&mut self, path: &str, dest: &Path) {
        let ino = match self.vol.lookup(path) {
            Ok(i) => i,
            Err(e) => {
                self.skipped.push(format!("{path}: {e}"));
                return;
            }
        };
        self.extract_inode(path, ino, dest);
    }

    /// Records a destination error: one that every further file would meet
    /// too (a full, read-only or failing destination) stops the
    /// extraction; one of this file's own (its name, its size) skips it.
    fn dest_error(&mut self, path: &str, what: String, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        let this_file_only = matches!(
            e.kind(),
            InvalidInput
                | InvalidFilename
                | FileTooLarge
                | AlreadyExists
                | IsADirectory
                | NotADirectory
        );
        let msg = format!("{path}: {what}: {e}");
        if this_file_only {
            self.skipped.push(msg);
        } else {
            self.stopped.get_or_insert(msg);
        }
    }

    fn extract_inode(&mut self, path: &str, ino: crate::Inode, dest: &Path) {
        if self.stopped.is_some() {
            return;
        }
        match ino.ftype {
            FileType::Directory => {
                if !self.visited.insert(ino.addr) {
                    self.skipped.push(format!(
                        "{path}: directory FD {:#010x} seen before (a loop)",
                        ino.addr
                    ));
                    return;
                }
                if let Err(e) = std::fs::create_dir_all(dest) {
                    self.dest_error(path, format!("creating {}", dest.display()), &e);
                    return;
                }
                let entries = match self.vol.dir_entries(&ino) {
                    Ok(e) => e,
                    Err(e) => {
                        self.skipped.push(format!("{path}: {e}"));
                        return;
                    }
                };
                for e in entries {
                    if e.name == "." || e.name == ".." {
                        continue;
                    }
                    // Volume metadata, not datastore content: copied only
                    // when named.
                    if is_system_name(&e.name) {
                        self.system_files += 1;
                        continue;
                    }
                    let child = format!("{}/{}", path.trim_end_matches('/'), e.name);
                    match self.vol.inode(e.addr) {
                        Ok(i) => self.extract_inode(&child, i, &dest.join(&e.name)),
                        Err(err) => self.skipped.push(format!("{child}: {err}")),
                    }
                }
                // After its entries, whose creation changed it.
                if let Ok(d) = std::fs::File::open(dest) {
                    let _ = d.set_times(file_times(&ino));
                }
            }
            FileType::Symlink => {
                let t = self.vol.stat_inode(&ino).ok().and_then(|s| s.link);
                match t {
                    Some(t) => {
                        let _ = std::fs::remove_file(dest);
                        if let Err(e) = std::os::unix::fs::symlink(&t, dest) {
                            self.skipped.push(format!("{path}: symlink: {e}"));
                        } else {
                            // The link's own times (lutimes).
                            let ts = |s: u32| rustix::fs::Timespec {
                                tv_sec: s.into(),
                                tv_nsec: 0,
                            };
                            let _ = rustix::fs::utimensat(
                                rustix::fs::CWD,
                                dest,
                                &rustix::fs::Timestamps {
                                    last_access: ts(ino.atime),
                                    last_modification: ts(ino.mtime),
                                },
                                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                            );
                        }
                    }
                    None => self.skipped.push(format!("{path}: unreadable symlink")),
                }
            }
            FileType::Rdm => {
                let r = crate::RdmTarget::parse(&ino.data)
                    .map(|r| r.id)
                    .unwrap_or_default();
                self.skipped.push(format!(
                    "{path}: raw device mapping to disk {:?}: no data on the volume",
                    r.trim()
                ));
            }
            FileType::File | FileType::System => self.copy_file(path, ino, dest),
            t => self
                .skipped
                .push(format!("{path}: file type {t:?} not extracted")),
        }
    }

    fn copy_file(&mut self, path: &str, ino: crate::Inode, dest: &Path) {
        let times = file_times(&ino);
        let size = ino.size;
        let pieces = match self.vol.pieces(&ino) {
            Ok(p) => p,
            Err(e) => {
                self.skipped
                    .push(format!("{path}: block map unreadable: {e}"));
                return;
            }
        };
        let out = match std::fs::File::create(dest) {
            Ok(f) => f,
            Err(e) => {
                self.dest_error(path, format!("creating {}", dest.display()), &e);
                return;
            }
        };
        use std::os::unix::fs::FileExt;
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let mut reason = String::new();
        // Holes stay holes in the destination; the rest is read ahead in
        // 1 MiB chunks while the previous ones are written.
        let mut chunks = Vec::new();
        for (off, len, piece) in pieces {
            if piece != Piece::Zero {
                chunks.extend(crate::readahead::chunks_of(off, off + len, 1 << 20));
            }
        }
        let vol = self.vol;
        let read = |buf: &mut [u8], at: u64| vol.read_inode(&ino, buf, at, 0).map(|_| ());
        let mut write_error = None;
        let mut sector = [0u8; 512];
        crate::readahead::for_each_chunk(&chunks, &read, &mut |pos, n, data| {
            match data {
                Ok(bytes) => {
                    if let Err(e) = out.write_all_at(bytes, pos) {
                        write_error = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                Err(_) => {
                    // Retry sector by sector; what fails stays a hole
                    // (zeros) and is reported.
                    for s in (0..n).step_by(512) {
                        let m = 512.min(n - s);
                        let at = pos + s as u64;
                        match vol.read_inode(&ino, &mut sector[..m], at, 0) {
                            Ok(_) => {
                                if let Err(e) = out.write_all_at(&sector[..m], at) {
                                    write_error = Some(e);
                                    return ControlFlow::Break(());
                                }
                            }
                            Err(e) => {
                                if reason.is_empty() {
                                    reason = e.to_string();
                                }
                                match lost.last_mut() {
                                    Some(l) if l.0 + l.1 == at => l.1 += m as u64,
                                    _ => lost.push((at, m as u64)),
                                }
                            }
                        }
                    }
                }
            }
            self.done += n as u64;
            self.progress(false);
            ControlFlow::Continue(())
        });
        if let Some(e) = write_error {
            // Kept, under a name that says what it is.
            let partial = dest.with_file_name(format!(
                "{}.incomplete",
                dest.file_name().unwrap_or_default().to_string_lossy()
            ));
            let kept = match std::fs::rename(dest, &partial) {
                Ok(()) => format!("what was written is in {}", partial.display()),
                Err(_) => format!("{} is incomplete", dest.display()),
            };
            self.dest_error(path, format!("writing ({kept})"), &e);
            return;
        }
        if let Err(e) = out.set_len(size) {
            // A destination filesystem whose files cannot be that large.
            self.skipped.push(format!(
                "{path}: setting the size to {size} bytes: {e} (data up to there copied)"
            ));
            return;
        }
        let _ = out.set_times(times);
        self.files += 1;
        self.written += size;
        if !lost.is_empty() {
            self.losses.push(Loss {
                path: path.to_string(),
                ranges: lost,
                reason,
            });
        }
    }
}

/// The FD's access and modification times, for the extracted copy.
fn file_times(ino: &crate::Inode) -> std::fs::FileTimes {
    let at = |s: u32| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.into());
    std::fs::FileTimes::new()
        .set_accessed(at(ino.atime))
        .set_modified(at(ino.mtime))
}

/// A volume metadata file (`.fdc.sf`, `.sdd.sf`, ...).
fn is_system_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".sf")
}

/// Stored bytes under `path` (thin regions excluded), as extract will copy
/// them.
fn stored_size(v: &Volume, path: &str) -> u64 {
    let mut total = 0;
    let mut stack: Vec<crate::Inode> = v.lookup(path).into_iter().collect();
    let mut seen = HashSet::new();
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino.addr) {
            continue;
        }
        if ino.ftype.is_dir() {
            for e in v.dir_entries(&ino).unwrap_or_default() {
                if e.name != "." && e.name != ".." && !is_system_name(&e.name) {
                    stack.extend(v.inode(e.addr));
                }
            }
        } else if matches!(ino.ftype, FileType::File | FileType::System) {
            total += v
                .pieces(&ino)
                .map(|p| {
                    p.iter()
                        .filter(|(_, _, piece)| *piece != Piece::Zero)
                        .map(|(_, len, _)| len)
                        .sum()
                })
                .unwrap_or(0);
        }
    }
    total
}

fn load_map(path: &str) -> Result<Ranges, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading mapfile {path}: {e}"))?;
    parse_mapfile(&text).map_err(|e| format!("{path}: {e}"))
}

fn extract(c: ExtractCommand) -> CliResult {
    let (srcs, mut rest) = split_args(&c.args);
    if rest.len() < 2 {
        return Err("extract takes SRC... PATH... DEST_DIR".into());
    }
    let dest = PathBuf::from(rest.pop().unwrap_or_default());
    let bad = c.map.as_deref().map(load_map).transpose()?;
    let o = open_volume(&srcs, &c.extent, c.offset, bad.as_ref())?;
    std::fs::create_dir_all(&dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let total = rest.iter().map(|p| stored_size(&o.vol, p)).sum();
    let mut x = Extractor {
        vol: &o.vol,
        quiet: c.quiet,
        total,
        done: 0,
        written: 0,
        system_files: 0,
        stopped: None,
        files: 0,
        started: Instant::now(),
        last: Instant::now(),
        losses: Vec::new(),
        skipped: Vec::new(),
        visited: HashSet::new(),
    };
    for p in &rest {
        let name = p.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        // An orphan named by FD address: no ':' in the name (FAT and exFAT
        // destinations refuse it).
        let orphan;
        let name = match name.strip_prefix("fd:") {
            Some(addr) if !p.contains('/') => {
                orphan = format!("orphan-fd-{addr}");
                orphan.as_str()
            }
            _ => name,
        };
        let target = if name.is_empty() {
            dest.clone()
        } else {
            dest.join(name)
        };
        x.extract(p, &target);
        if x.stopped.is_some() {
            break;
        }
    }
    x.progress(true);
    let lost: u64 = x
        .losses
        .iter()
        .flat_map(|l| l.ranges.iter().map(|r| r.1))
        .sum();
    println!(
        "extracted {} files, {} ({} of stored data) in {:.1}s; {} bytes lost in {} files; {} items skipped",
        x.files,
        screen::human_size(x.written),
        screen::human_size(x.done),
        x.started.elapsed().as_secs_f64(),
        lost,
        x.losses.len(),
        x.skipped.len()
    );
    log::info!(
        "vmfs extract to {}: {} files, {} bytes written; {lost} bytes lost in {} files; {} \
         items skipped{}",
        dest.display(),
        x.files,
        x.written,
        x.losses.len(),
        x.skipped.len(),
        x.stopped
            .as_deref()
            .map(|w| format!("; STOPPED: {w}"))
            .unwrap_or_default()
    );
    if x.system_files > 0 {
        println!(
            "left out {} volume metadata files (.*.sf); name them to copy them",
            x.system_files
        );
    }
    for s in &x.skipped {
        println!("skipped: {s}");
    }
    if let Some(why) = &x.stopped {
        println!(
            "STOPPED, the destination failed: {why}\n\
             {} of {} stored data copied; the rest was not tried",
            screen::human_size(x.done),
            screen::human_size(x.total)
        );
    }
    if x.losses.is_empty() && x.skipped.is_empty() && x.stopped.is_none() {
        return Ok(0);
    }
    let mut r =
        String::from("# vmfs extract report: bytes that could not be read were written as zeros\n");
    for l in &x.losses {
        r.push_str(&format!("LOST {}: {}\n", l.path, l.reason));
        for (s, n) in &l.ranges {
            r.push_str(&format!("  bytes {s}..{} ({n} bytes)\n", s + n));
        }
    }
    for s in &x.skipped {
        r.push_str(&format!("SKIPPED {s}\n"));
    }
    if let Some(why) = &x.stopped {
        r.push_str(&format!("STOPPED {why}\n"));
    }
    let rp = dest.join("vmfs-extract-report.txt");
    match std::fs::write(&rp, &r) {
        Ok(()) => println!("report: {}", rp.display()),
        // A full destination takes no report either: it goes to stdout.
        Err(e) => print!(
            "report not written to {}: {e}; here it is:\n{r}",
            rp.display()
        ),
    }
    for l in &x.losses {
        println!("lost: {} ({} ranges)", l.path, l.ranges.len());
    }
    // The destination failing is an I/O error; lost or skipped data, a
    // problem found.
    Ok(if x.stopped.is_some() { 2 } else { 1 })
}

/// One file that overlaps bad areas.
#[derive(Serialize, Debug)]
pub struct Hit {
    pub path: String,
    /// File byte ranges on bad areas.
    pub ranges: Vec<(u64, u64)>,
}

/// Files of the volume whose stored bytes overlap `bad` (in coordinates of
/// the first source; `origins` maps volume devices to it).
pub fn files_hit_in(
    vol: &Volume,
    origins: &[(String, u64)],
    bad: &Ranges,
) -> (Vec<Hit>, Vec<String>) {
    let mut hits = Vec::new();
    let mut errors = Vec::new();
    let mut stack = vec![("".to_string(), crate::inode::ROOT_ADDR)];
    let mut seen = HashSet::new();
    let first = origins.first().map(|o| o.0.clone()).unwrap_or_default();
    while let Some((path, addr)) = stack.pop() {
        if !seen.insert(addr) {
            continue;
        }
        let ino = match vol.inode(addr) {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                continue;
            }
        };
        match ino.ftype {
            FileType::Directory => match vol.dir_entries(&ino) {
                Ok(es) => {
                    for e in es.into_iter().filter(|e| e.name != "." && e.name != "..") {
                        stack.push((format!("{path}/{}", e.name), e.addr));
                    }
                }
                Err(e) => errors.push(format!("{path}/: {e}")),
            },
            FileType::File | FileType::System | FileType::Symlink => match vol.device_extents(&ino)
            {
                Ok(ex) => {
                    let mut ranges = Vec::new();
                    for e in ex {
                        let (p, base) = &origins[e.device];
                        if *p != first {
                            continue;
                        }
                        for (s, l) in bad.intersect(base + e.device_offset, e.len) {
                            ranges.push((e.file_offset + (s - base - e.device_offset), l));
                        }
                    }
                    if !ranges.is_empty() {
                        hits.push(Hit { path, ranges });
                    }
                }
                Err(e) => errors.push(format!("{path}: {e}")),
            },
            _ => {}
        }
    }
    hits.sort_by(|a, b| a.path.cmp(&b.path));
    (hits, errors)
}

fn files_hit(c: FilesHitCommand) -> CliResult {
    let bad = load_map(&c.map)?;
    // Metadata is read without the bad areas applied: if metadata itself is
    // in a bad area the listing says so through the errors below.
    let o = open_volume(&c.src, &c.extent, c.offset, Some(&bad))
        .or_else(|_| open_volume(&c.src, &c.extent, c.offset, None))?;
    let (hits, errors) = files_hit_in(&o.vol, &o.origins, &bad);
    if c.json {
        #[derive(Serialize)]
        struct R<'a> {
            hits: &'a [Hit],
            errors: &'a [String],
        }
        json_out(&R {
            hits: &hits,
            errors: &errors,
        })?;
    } else {
        for h in &hits {
            let n: u64 = h.ranges.iter().map(|r| r.1).sum();
            println!("{}: {} bytes in {} ranges", h.path, n, h.ranges.len());
            for (s, l) in &h.ranges {
                println!("  {s}..{}", s + l);
            }
        }
        for e in &errors {
            println!("unreadable metadata: {e}");
        }
        if hits.is_empty() && errors.is_empty() {
            println!("no file overlaps a bad area");
        }
    }
    Ok(if hits.is_empty() && errors.is_empty() {
        0
    } else {
        1
    })
}

fn scan(c: ScanCommand) -> CliResult {
    let o = open_volume(&c.src, &c.extent, c.offset, None)?;
    list_orphans(&o, &c.src, c.json)
}

/// `scan` and `ls --scan`: the orphans with how to get them out. Exit 1 if
/// there are any.
fn list_orphans(o: &Opened2, srcs: &[String], json: bool) -> CliResult {
    let (orphans, errors) = o.vol.orphans();
    let stats: Vec<Stat> = orphans
        .iter()
        .filter_map(|i| o.vol.stat_inode(i).ok())
        .collect();
    if json {
        #[derive(Serialize)]
        struct R<'a> {
            orphans: &'a [Stat],
            errors: &'a [String],
        }
        json_out(&R {
            orphans: &stats,
            errors: &errors,
        })?;
    } else {
        for s in &stats {
            println!(
                "orphan FD {:#010x} {:?} {} bytes, mtime {}",
                s.addr,
                s.file_type,
                s.size,
                date(s.mtime)
            );
        }
        for e in &errors {
            println!("unreadable: {e}");
        }
        println!("{} orphans", stats.len());
        if let Some(s) = stats.first() {
            println!(
                "get them out by FD address, e.g.: rescue vmfs extract {} fd:{:#010x} DEST_DIR \
                 (fd:ADDR/NAME for a file in an orphaned folder)",
                srcs.join(" "),
                s.addr
            );
        }
    }
    Ok(if stats.is_empty() { 0 } else { 1 })
}

fn tree(c: TreeCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let path = rest.first().map(String::as_str).unwrap_or("/");
    let o = open_volume(&srcs, &c.extent, c.offset, None)?;
    let v = &o.vol;
    let root = v.lookup(path).map_err(|e| e.to_string())?;
    println!("{path}");
    let mut problems = 0;
    let mut seen = HashSet::new();
    // (inode, depth) in listing order.
    fn walk(
        v: &Volume,
        ino: &crate::Inode,
        depth: usize,
        all: bool,
        seen: &mut HashSet<u32>,
        problems: &mut u32,
    ) {
        if !seen.insert(ino.addr) {
            println!(
                "{}(loop: FD {:#010x} already shown)",
                "  ".repeat(depth),
                ino.addr
            );
            *problems += 1;
            return;
        }
        let mut es = match v.dir_entries(ino) {
            Ok(e) => e,
            Err(e) => {
                println!("{}(unreadable: {e})", "  ".repeat(depth));
                *problems += 1;
                return;
            }
        };
        es.sort_by(|a, b| a.name.cmp(&b.name));
        for e in es {
            if e.name == "." || e.name == ".." || (!all && is_system_name(&e.name)) {
                continue;
            }
            match v.inode(e.addr) {
                Ok(i) if i.ftype.is_dir() => {
                    println!("{}{}/", "  ".repeat(depth), e.name);
                    walk(v, &i, depth + 1, all, seen, problems);
                }
                Ok(i) => println!(
                    "{}{}  {} ({})",
                    "  ".repeat(depth),
                    e.name,
                    screen::human_size(i.size),
                    format!("{:?}", i.ftype).to_lowercase()
                ),
                Err(err) => {
                    println!("{}{}  (unreadable: {err})", "  ".repeat(depth), e.name);
                    *problems += 1;
                }
            }
        }
    }
    if root.ftype.is_dir() {
        walk(v, &root, 1, c.all, &mut seen, &mut problems);
    }
    Ok(if problems > 0 { 1 } else { 0 })
}
