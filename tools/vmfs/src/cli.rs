//! `rescue vmfs`: browse and extract VMFS datastores, read-only.

use crate::damage::{read_mapfile, Ranges};
use crate::datastores::plan_paths;
use crate::extract::{ExtractReport, Outcome, Progress};
use crate::files_hit::{files_hit_in, Hit};
use crate::inode::FileType;
use crate::open::{OpenRequest, OpenedVolume};
use crate::volume::Stat;
use crate::walk::{CopyError, TreeItem};
use argh::FromArgs;
use cliconv::Exit;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// VMFS 3/5/6 datastores: show, list, read and extract files, read-only.
/// SRC is a disk, a partition or an image; the VMFS partition is found from
/// GPT/MBR by itself. A volume spanning several devices takes them all
/// (as further SRCs or with --extent), in any order.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "vmfs",
    error_code(0, "done: see the action's --help"),
    error_code(1, "findings: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
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
    error_code(0, "done: listed"),
    error_code(1, "findings: some entries could not be read"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), no volume, or PATH not found"
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
    error_code(0, "done: no orphans"),
    error_code(1, "findings: orphans found"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or no volume"
    )
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
#[argh(
    subcommand,
    name = "list",
    error_code(0, "done: datastores found and opened"),
    error_code(1, "findings: no datastore found, or one could not be opened"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the output could not be written"
    )
)]
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
        "done: the volume is whole: every extent found, metadata and bitmap readable"
    ),
    error_code(
        1,
        "findings: an extent is missing, metadata warnings, or the bitmap is unreadable"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or no VMFS volume can be opened on SRC"
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
    error_code(0, "done: listed"),
    error_code(
        1,
        "findings: an entry could not be read, or with --scan orphans were found"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), no volume, or PATH not found"
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
    error_code(0, "done: shown"),
    error_code(2, "error: usage error (unknown option, missing argument), no volume, or PATH not found or unreadable")
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
    error_code(0, "done: all bytes written to stdout (or its reader went away)"),
    error_code(2, "error: usage error (unknown option, missing argument), no volume, PATH not found, or a read or write failed")
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
/// (it comes out as DEST_DIR/orphan-fd-ADDR). DEST_DIR
/// `rescue://HOST:PORT/NAME` streams the files to `rescue receive` on a
/// lab host (into its DIR/NAME/, resumable per file, each file's SHA-256
/// compared; the pairing code from --code-file, $RESCUE_PAIRING_CODE or
/// the terminal).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "extract",
    error_code(0, "done: everything extracted"),
    error_code(1, "findings: bytes were lost (zero-filled) or items skipped: see DEST_DIR/vmfs-extract-report.txt"),
    error_code(2, "error: usage error (unknown option, missing argument), no volume, PATH not found, or the destination failed (full, read-only, gone)")
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
    /// with a rescue:// destination: read the pairing code from FILE
    #[argh(option)]
    pub code_file: Option<String>,
}

/// List the files (and byte ranges) that overlap bad areas of a ddrescue
/// mapfile, without extracting: SRC... --map MAPFILE. Exit 1 if any.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "files-hit",
    error_code(0, "done: no file overlaps a bad area"),
    error_code(1, "findings: files overlap bad areas, or some metadata could not be read"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), no volume, or the mapfile is unreadable"
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
    /// also write, for every VM disk whose files were hit, DIR/NAME.badmap:
    /// a GNU ddrescue mapfile of the disk's virtual bytes that depend on
    /// the bad areas (through its grain tables for snapshots)
    #[argh(option)]
    pub badmap_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Version of every `vmfs ... --json` document.
pub const JSON_SCHEMA: u32 = 1;

impl Action {
    /// The command's name in its messages (`rescue vmfs ls: ...`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::List(_) => LIST,
            Action::Info(_) => INFO,
            Action::Ls(_) => LS,
            Action::Stat(_) => STAT,
            Action::Cat(_) => CAT,
            Action::Extract(_) => EXTRACT,
            Action::FilesHit(_) => FILES_HIT,
            Action::Scan(_) => SCAN,
            Action::Tree(_) => TREE,
        }
    }
}

const LIST: &str = "vmfs list";
const INFO: &str = "vmfs info";
const LS: &str = "vmfs ls";
const STAT: &str = "vmfs stat";
const CAT: &str = "vmfs cat";
const EXTRACT: &str = "vmfs extract";
const FILES_HIT: &str = "vmfs files-hit";
const SCAN: &str = "vmfs scan";
const TREE: &str = "vmfs tree";

pub fn run(cmd: VmfsCommand) -> i32 {
    let command = cmd.action.name();
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
    r.unwrap_or_else(|e| cliconv::fail(command, e).code())
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

/// Opens the volume through the library and prints what it found or
/// decided on the way (and the volume's metadata warnings), failed or not.
fn open_volume(
    command: &str,
    srcs: &[String],
    extents: &[String],
    offset: Option<u64>,
    bad: Option<&Ranges>,
) -> Result<OpenedVolume, String> {
    let req = OpenRequest {
        sources: srcs,
        extents,
        offset,
        bad,
    };
    match crate::open::open_volume(&req) {
        Ok(o) => {
            for n in &o.notes {
                cliconv::eprint(command, n);
            }
            for w in &o.volume.warnings {
                cliconv::eprint(command, format_args!("warning: {w}"));
            }
            Ok(o)
        }
        Err(e) => {
            for n in &e.notes {
                cliconv::eprint(command, n);
            }
            Err(e.message)
        }
    }
}

/// Prints a `--json` document; [`Exit::Error`] (and the message) when it
/// could not be.
fn json_out<T: Serialize>(command: &str, v: &T) -> Exit {
    cliconv::print_json(command, JSON_SCHEMA, v)
}

fn list(c: ListCommand) -> CliResult {
    let paths = if c.src.is_empty() {
        blockdev::sys::system_disks(Path::new("/sys"))
            .into_iter()
            .map(|d| format!("/dev/{d}"))
            .collect()
    } else {
        c.src.clone()
    };
    let (plans, failed) = plan_paths(&paths);
    let stores: Vec<crate::datastores::Datastore> = plans.into_iter().map(|p| p.open()).collect();
    let mut code = Exit::findings_if(stores.is_empty());
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
                code = Exit::Findings;
            }
        }
        rows.push(row);
    }
    if !failed.is_empty() {
        code = Exit::Findings;
    }
    if c.json {
        #[derive(Serialize)]
        struct Out<'a> {
            datastores: &'a [Row<'a>],
            errors: Vec<String>,
        }
        let printed = json_out(
            LIST,
            &Out {
                datastores: &rows,
                errors: failed.iter().map(|(p, e)| format!("{p}: {e}")).collect(),
            },
        );
        return Ok(printed.max(code).code());
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
        for note in stores[n].notes() {
            println!("    {note}");
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
    Ok(code.code())
}

fn info(c: InfoCommand) -> CliResult {
    let o = open_volume(INFO, &c.src, &c.extent, c.offset, None)?;
    let i = o.volume.info();
    let space = crate::space::free_space(&o.volume).map_err(|e| e.to_string());
    let code =
        Exit::findings_if(!(i.missing.is_empty() && o.volume.warnings.is_empty() && space.is_ok()));
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
        let printed = json_out(
            INFO,
            &WithSpace {
                info: &i,
                space: space.as_ref().ok(),
                space_error: space.as_ref().err().map(String::as_str),
            },
        );
        return Ok(printed.max(code).code());
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
    Ok(code.code())
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
    let o = open_volume(LS, &srcs, &c.extent, c.offset, None)?;
    if c.scan {
        if !rest.is_empty() {
            return Err("ls --scan takes no path: it scans the whole volume".into());
        }
        return list_orphans(LS, &o, &srcs, c.json);
    }
    let v = &o.volume;
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
        /// The entries under a name: a document is an object with its schema.
        #[derive(Serialize)]
        struct Listing<'a> {
            entries: &'a [LsEntry],
        }
        if json_out(LS, &Listing { entries: &out }) == Exit::Error {
            return Ok(Exit::Error.code());
        }
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
        cliconv::eprint(
            LS,
            format_args!("warning: {}: {}", e.name, e.error.as_deref().unwrap_or("")),
        );
    }
    Ok(Exit::findings_if(bad > 0).code())
}

fn stat(c: StatCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let [path] = rest.as_slice() else {
        return Err("stat takes SRC... PATH".into());
    };
    let o = open_volume(STAT, &srcs, &c.extent, c.offset, None)?;
    let v = &o.volume;
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
        return Ok(json_out(
            STAT,
            &S {
                stat: &st,
                extents: &extents,
            },
        )
        .code());
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
    Ok(Exit::Done.code())
}

fn cat(c: CatCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let [path] = rest.as_slice() else {
        return Err("cat takes SRC... PATH".into());
    };
    let o = open_volume(CAT, &srcs, &c.extent, c.vmfs_offset, None)?;
    let f = o.volume.open(path).map_err(|e| e.to_string())?;
    let start = c.offset.unwrap_or(0);
    let end = c.length.map_or(u64::MAX, |l| start.saturating_add(l));
    // Rust's stdout is line-buffered: it would search every chunk for a
    // newline (half of cat's time on cached data). A duplicate of fd 1 as a
    // File writes the chunks straight through.
    use std::os::fd::AsFd;
    let mut out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| format!("stdout: {e}"))?;
    match crate::walk::copy_range(&f, start, end, &mut out) {
        Ok(()) => Ok(Exit::Done.code()),
        // The reader of our output went away: done, quietly.
        Err(CopyError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Exit::Done.code())
        }
        Err(CopyError::Write(e)) => Err(format!("writing stdout: {e}")),
        Err(CopyError::Read(e)) => Err(e.to_string()),
    }
}

/// The progress line of an extraction: "vmfs: 1.0 GiB of 2.0 GiB stored
/// data (50%), 100 MiB/s, ETA 10s, 3 files".
pub fn progress_line(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(0.001);
    let rate = p.done as f64 / secs;
    let eta = if rate > 0.0 {
        (p.total.saturating_sub(p.done)) as f64 / rate
    } else {
        0.0
    };
    format!(
        "vmfs: {} of {} stored data ({:.0}%), {}/s, ETA {:.0}s, {} files",
        screen::human_size(p.done),
        screen::human_size(p.total),
        if p.total > 0 {
            p.done as f64 * 100.0 / p.total as f64
        } else {
            100.0
        },
        screen::human_size(rate as u64),
        eta,
        p.files
    )
}

/// A progress callback for [`crate::extract::extract`] that writes
/// [`progress_line`]s to `out`: at most one a second, and the last one.
pub fn progress_printer<'a>(mut out: impl std::io::Write + 'a) -> impl FnMut(&Progress) + 'a {
    let mut throttle = screen::Throttle::after(std::time::Duration::from_secs(1));
    move |p: &Progress| {
        if throttle.ready(p.finished) {
            let _ = writeln!(out, "{}", progress_line(p));
        }
    }
}

/// Prints the end of an extraction to `out`: the summary, what was left
/// out, skipped or why it stopped; when anything was lost, skipped or
/// stopped, also writes the report file (or, when the destination takes
/// none, prints it) and lists the files with lost bytes.
pub fn print_extract_end(r: &ExtractReport, out: &mut dyn std::io::Write) {
    print_extract_summary(r, out);
    if r.outcome() == Outcome::Clean {
        return;
    }
    match r.write_report() {
        Ok(path) => {
            let _ = writeln!(out, "report: {}", path.display());
        }
        // A full destination takes no report either: it goes to `out`.
        Err(e) => {
            let _ = write!(
                out,
                "report not written to {}: {e}; here it is:\n{}",
                r.report_path().display(),
                r.text()
            );
        }
    }
    for l in &r.losses {
        let _ = writeln!(out, "lost: {} ({} ranges)", l.path, l.ranges.len());
    }
}

/// The summary part of [`print_extract_end`]: counts, what was left
/// out, skipped, why it stopped; no report file.
pub fn print_extract_summary(r: &ExtractReport, out: &mut dyn std::io::Write) {
    let _ = writeln!(
        out,
        "extracted {} files, {} ({} of stored data) in {:.1}s; {} bytes lost in {} files; {} items skipped",
        r.files,
        screen::human_size(r.written),
        screen::human_size(r.done),
        r.elapsed.as_secs_f64(),
        r.lost_bytes(),
        r.losses.len(),
        r.skipped.len()
    );
    if r.system_files > 0 {
        let _ = writeln!(
            out,
            "left out {} volume metadata files (.*.sf); name them to copy them",
            r.system_files
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    if let Some(why) = &r.stopped {
        let _ = writeln!(
            out,
            "STOPPED, {}: {why}\n\
             {} of {} stored data copied; the rest was not tried",
            if r.cancelled {
                "as asked"
            } else {
                "the destination failed"
            },
            screen::human_size(r.done),
            screen::human_size(r.total)
        );
    }
}

impl ExtractCommand {
    /// The last argument: the destination (a directory, or a
    /// `rescue://HOST:PORT/NAME` that `rescue-init` hands to labstream).
    pub fn dest(&self) -> Option<&str> {
        self.args.last().map(String::as_str)
    }

    /// Opens the volume (SRC..., --extent, --offset, --map) and gives the
    /// VMFS paths to extract and the destination argument.
    pub fn open(&self) -> Result<(OpenedVolume, Vec<String>, String), String> {
        let (srcs, mut rest) = split_args(&self.args);
        if rest.len() < 2 {
            return Err("extract takes SRC... PATH... DEST_DIR".into());
        }
        let dest = rest.pop().unwrap_or_default();
        let bad = self.map.as_deref().map(read_mapfile).transpose()?;
        let o = open_volume(EXTRACT, &srcs, &self.extent, self.offset, bad.as_ref())?;
        Ok((o, rest, dest))
    }
}

impl VmfsCommand {
    /// `extract ... rescue://HOST:PORT/NAME`: streamed to a lab host by
    /// the labstream crate (which `rescue-init` calls), not run here.
    pub fn is_remote_extract(&self) -> bool {
        matches!(&self.action, Action::Extract(c) if c.dest().is_some_and(|d| d.starts_with("rescue://")))
    }

    /// The extract action, if that is what this is.
    pub fn into_extract(self) -> Option<ExtractCommand> {
        match self.action {
            Action::Extract(c) => Some(c),
            _ => None,
        }
    }
}

/// `rescue vmfs extract`'s command name in messages.
pub const EXTRACT_NAME: &str = EXTRACT;

fn extract(c: ExtractCommand) -> CliResult {
    if c.code_file.is_some() {
        return Err("--code-file goes only with a rescue://HOST:PORT/NAME destination".into());
    }
    let (o, rest, dest) = c.open()?;
    let dest = PathBuf::from(dest);
    let mut progress: Box<dyn FnMut(&Progress)> = if c.quiet {
        Box::new(|_: &Progress| {})
    } else {
        Box::new(progress_printer(std::io::stderr()))
    };
    // Nothing cancels the command: Ctrl-C ends the process.
    let never = AtomicBool::new(false);
    let report = crate::extract::extract(&o.volume, &rest, &dest, &mut progress, &never)?;
    print_extract_end(&report, &mut std::io::stdout().lock());
    Ok(report.outcome().exit_code())
}

fn files_hit(c: FilesHitCommand) -> CliResult {
    let bad = read_mapfile(&c.map)?;
    // Metadata is read without the bad areas applied: if metadata itself is
    // in a bad area the listing says so through the errors below.
    let o = open_volume(FILES_HIT, &c.src, &c.extent, c.offset, Some(&bad))
        .or_else(|_| open_volume(FILES_HIT, &c.src, &c.extent, c.offset, None))?;
    let (hits, mut errors) = files_hit_in(&o.volume, &o.origins, &bad);
    // One layer down: the VM disks those files belong to, their maps read
    // from the volume without the bad areas applied.
    let mut disks = Vec::new();
    if let (Some(dir), false) = (&c.badmap_dir, hits.is_empty()) {
        let plain = open_volume(FILES_HIT, &c.src, &c.extent, c.offset, None)?;
        let (found, failed) = crate::files_hit::vm_disks_hit(
            std::sync::Arc::new(plain.volume),
            &c.src.join(","),
            &hits,
        );
        errors.extend(failed);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for d in found {
            let name = d.descriptor.rsplit('/').next().unwrap_or("disk.vmdk");
            let path = dir.join(format!("{name}.badmap"));
            let what = format!(
                "bytes of VM disk {} (virtual offsets) that depend on bad areas of {}: rescue vmfs files-hit",
                d.descriptor, c.map
            );
            vmdk::export::write_badmap(&path, d.capacity, &d.ranges, &what)?;
            disks.push((d, path));
        }
    }
    if c.json {
        #[derive(Serialize)]
        struct Disk<'a> {
            descriptor: &'a str,
            capacity: u64,
            ranges: &'a [(u64, u64)],
            badmap: &'a Path,
        }
        #[derive(Serialize)]
        struct R<'a> {
            hits: &'a [Hit],
            vm_disks: Vec<Disk<'a>>,
            errors: &'a [String],
        }
        let printed = json_out(
            FILES_HIT,
            &R {
                hits: &hits,
                vm_disks: disks
                    .iter()
                    .map(|(d, p)| Disk {
                        descriptor: &d.descriptor,
                        capacity: d.capacity,
                        ranges: &d.ranges,
                        badmap: p,
                    })
                    .collect(),
                errors: &errors,
            },
        );
        if printed == Exit::Error {
            return Ok(printed.code());
        }
    } else {
        for h in &hits {
            let n: u64 = h.ranges.iter().map(|r| r.1).sum();
            println!("{}: {} bytes in {} ranges", h.path, n, h.ranges.len());
            for (s, l) in &h.ranges {
                println!("  {s}..{}", s + l);
            }
        }
        for (d, path) in &disks {
            let n: u64 = d.ranges.iter().map(|r| r.1).sum();
            println!(
                "VM disk {}: {n} virtual bytes in {} ranges depend on them: {}",
                d.descriptor,
                d.ranges.len(),
                path.display()
            );
        }
        for e in &errors {
            println!("unreadable metadata: {e}");
        }
        if hits.is_empty() && errors.is_empty() {
            println!("no file overlaps a bad area");
        }
    }
    Ok(Exit::findings_if(!(hits.is_empty() && errors.is_empty())).code())
}

fn scan(c: ScanCommand) -> CliResult {
    let o = open_volume(SCAN, &c.src, &c.extent, c.offset, None)?;
    list_orphans(SCAN, &o, &c.src, c.json)
}

/// `scan` and `ls --scan`: the orphans with how to get them out. Exit 1 if
/// there are any.
fn list_orphans(command: &str, o: &OpenedVolume, srcs: &[String], json: bool) -> CliResult {
    let (orphans, errors) = o.volume.orphans();
    let stats: Vec<Stat> = orphans
        .iter()
        .filter_map(|i| o.volume.stat_inode(i).ok())
        .collect();
    if json {
        #[derive(Serialize)]
        struct R<'a> {
            orphans: &'a [Stat],
            errors: &'a [String],
        }
        let printed = json_out(
            command,
            &R {
                orphans: &stats,
                errors: &errors,
            },
        );
        if printed == Exit::Error {
            return Ok(printed.code());
        }
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
    Ok(Exit::findings_if(!stats.is_empty()).code())
}

fn tree(c: TreeCommand) -> CliResult {
    let (srcs, rest) = split_args(&c.args);
    let path = rest.first().map(String::as_str).unwrap_or("/");
    let o = open_volume(TREE, &srcs, &c.extent, c.offset, None)?;
    let v = &o.volume;
    let root = v.lookup(path).map_err(|e| e.to_string())?;
    println!("{path}");
    if !root.ftype.is_dir() {
        return Ok(Exit::Done.code());
    }
    let items = crate::walk::tree(v, &root, c.all);
    for item in &items {
        println!("{}", tree_line(item));
    }
    Ok(Exit::findings_if(items.iter().any(TreeItem::is_problem)).code())
}

/// One line of `vmfs tree`, indented two spaces a level.
fn tree_line(item: &TreeItem) -> String {
    match item {
        TreeItem::Folder { depth, name } => format!("{}{name}/", "  ".repeat(*depth)),
        TreeItem::File {
            depth,
            name,
            size,
            file_type,
        } => format!(
            "{}{name}  {} ({})",
            "  ".repeat(*depth),
            screen::human_size(*size),
            format!("{file_type:?}").to_lowercase()
        ),
        TreeItem::Loop { depth, addr } => {
            format!(
                "{}(loop: FD {addr:#010x} already shown)",
                "  ".repeat(*depth)
            )
        }
        TreeItem::Unreadable {
            depth,
            name: None,
            error,
        } => format!("{}(unreadable: {error})", "  ".repeat(*depth)),
        TreeItem::Unreadable {
            depth,
            name: Some(name),
            error,
        } => format!("{}{name}  (unreadable: {error})", "  ".repeat(*depth)),
    }
}
