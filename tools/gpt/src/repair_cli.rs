//! `rescue gpt repair` and `rescue gpt undo`.

use crate::apply;
use crate::plan::{self, Mode, Plan};
use crate::undofile::UndoFile;
use crate::{Entry, GptView};
use argh::FromArgs;
use blockdev::{BlockDevice, Device};
use cliconv::Exit;
use std::path::{Path, PathBuf};

/// Repair the GPT of TARGET. Dry run by default: prints the plan and a byte
/// diff of every sector it would change. Exactly one mode:
/// --fix-crc, --from-backup, --from-primary, --relocate-backup,
/// --restore-slots-from REF, --esxi-slots, --move-slot FROM:TO.
/// Nothing is compacted, sorted or moved unless the mode says so.
/// To apply: --write --undo FILE (on an image file --write is the
/// confirmation). The undo file is written and synced first, then the backup
/// copy, then the primary, each synced, then everything is read back.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "repair",
    error_code(0, "done: the plan was shown (dry run), nothing needed doing, or the repair was written and read back"),
    error_code(2, "error: usage error (unknown option, missing argument), the disk cannot be opened or is in use, the repair is refused, or a write failed (restore with gpt undo)")
)]
pub struct RepairCommand {
    /// disk or image file
    #[argh(positional)]
    pub target: String,
    /// recompute the array and header CRCs of each copy as it is
    #[argh(switch)]
    pub fix_crc: bool,
    /// rebuild the primary header and array from the backup (location fields
    /// adapted, CRCs recomputed)
    #[argh(switch)]
    pub from_backup: bool,
    /// rebuild the backup header and array from the primary (location fields
    /// adapted, CRCs recomputed)
    #[argh(switch)]
    pub from_primary: bool,
    /// move the backup array and header to the end of a grown or shrunk disk;
    /// fixes the primary's backup LBA (0x20) and the last usable LBA (0x30)
    /// in both headers; slots and everything else kept
    #[argh(switch)]
    pub relocate_backup: bool,
    /// put each entry back into the slot it has in REF: an image or dump of
    /// the original disk, an `sgdisk -b` backup file of it, or @primary /
    /// @backup for the other copy of this disk. Entries are matched by
    /// unique partition GUID, else by type and start LBA
    #[argh(option)]
    pub restore_slots_from: Option<String>,
    /// put the entries into the slots ESXi uses (5.x/6.x: 1,5,6,7,8,(9),2,3
    /// in disk order; 7.x/8.x: 1,5,6,7,(8)); refuses when ambiguous
    #[argh(switch)]
    pub esxi_slots: bool,
    /// expert: move the entry in slot FROM to the empty slot TO (1-based)
    #[argh(option)]
    pub move_slot: Option<String>,
    /// apply the plan (needs --undo)
    #[argh(switch)]
    pub write: bool,
    /// undo file to write before changing anything (must not exist yet)
    #[argh(option)]
    pub undo: Option<PathBuf>,
    /// print the plan as JSON (sectors listed without bytes)
    #[argh(switch)]
    pub json: bool,
}

/// Restore the sectors recorded in UNDOFILE onto DISK exactly. Shows the
/// plan (byte diff); --write applies it. Refuses when the disk size or
/// sector size differ from the recorded ones.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "undo",
    error_code(0, "done: the plan was shown (dry run), or the sectors were restored and read back"),
    error_code(2, "error: usage error (unknown option, missing argument), the undo file is unreadable or for another disk size or sector size, or a write failed")
)]
pub struct UndoCommand {
    /// disk or image file
    #[argh(positional)]
    pub disk: String,
    /// undo file written by `gpt repair --write --undo FILE`
    #[argh(positional)]
    pub undo_file: PathBuf,
    /// apply (on an image file this is the confirmation)
    #[argh(switch)]
    pub write: bool,
}

/// Used entries of the first intact copy of the GPT on `path`: an image or
/// a device of the original disk, a dump of its first sectors (`dd`), or a
/// GPT backup file written by `sgdisk -b`.
pub fn reference_entries(path: &str) -> Result<Vec<Entry>, String> {
    let dev = Device::open(path).map_err(|e| e.to_string())?;
    let v = crate::read(&dev);
    intact_entries(&v)
        .or_else(|| sgdisk_backup_entries(&dev))
        .ok_or_else(|| {
            format!("{path}: no intact GPT copy (header and array CRCs right) to take slots from")
        })
}

/// An `sgdisk -b` backup file: protective MBR, main header, backup header,
/// then one copy of the entry array, each starting on a sector boundary
/// (sector size of the disk it was taken from). The main header still names
/// LBA 2 for its array, so the array is read at LBA 3 here; the entries
/// count only when both CRCs are right.
pub fn sgdisk_backup_entries(dev: &dyn BlockDevice) -> Option<Vec<Entry>> {
    for ss in [512u32, 4096] {
        let s = u64::from(ss);
        let mut head = vec![0u8; 3 * ss as usize];
        if dev.read_exact_at(&mut head, 0).is_err() {
            continue;
        }
        let (main, backup) = (
            &head[ss as usize..2 * ss as usize],
            &head[2 * ss as usize..],
        );
        let (Ok(h), Ok(_)) = (
            crate::parse_header(main, 1, ss),
            crate::parse_header(backup, 2, ss),
        ) else {
            continue;
        };
        if !h.header_crc_ok() || dev.size() != 3 * s + h.array_bytes().div_ceil(s) * s {
            continue;
        }
        let mut array = vec![0u8; h.array_bytes() as usize];
        if dev.read_exact_at(&mut array, 3 * s).is_err()
            || crc32fast::hash(&array) != h.entries_crc_stored
        {
            continue;
        }
        return Some(crate::parse_entries(&array, h.entry_size));
    }
    None
}

fn intact_entries(v: &GptView) -> Option<Vec<Entry>> {
    [&v.primary, &v.backup]
        .into_iter()
        .flatten()
        .find(|c| c.header.header_crc_ok() && c.array_crc_ok())
        .map(|c| c.entries.clone())
}

fn parse_mode(cmd: &RepairCommand, v: &GptView) -> Result<Mode, String> {
    let mut modes = Vec::new();
    if cmd.fix_crc {
        modes.push(Mode::FixCrc);
    }
    if cmd.from_backup {
        modes.push(Mode::FromBackup);
    }
    if cmd.from_primary {
        modes.push(Mode::FromPrimary);
    }
    if cmd.relocate_backup {
        modes.push(Mode::RelocateBackup);
    }
    if cmd.esxi_slots {
        modes.push(Mode::EsxiSlots);
    }
    if let Some(r) = &cmd.restore_slots_from {
        let reference = match r.as_str() {
            "@primary" | "@backup" => {
                let c = if r == "@primary" {
                    &v.primary
                } else {
                    &v.backup
                };
                match c {
                    Ok(c) if c.header.header_crc_ok() && c.array_crc_ok() => c.entries.clone(),
                    Ok(_) => {
                        return Err(format!(
                            "{r}: that copy's CRCs are wrong; it cannot serve as the reference"
                        ))
                    }
                    Err(e) => return Err(format!("{r}: {e}")),
                }
            }
            path => reference_entries(path)?,
        };
        modes.push(Mode::RestoreSlots {
            reference,
            label: r.clone(),
        });
    }
    if let Some(m) = &cmd.move_slot {
        let parsed = m.split_once(':').and_then(|(a, b)| {
            Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
        });
        match parsed {
            Some((from, to)) if from >= 1 && to >= 1 => modes.push(Mode::MoveSlot { from, to }),
            _ => {
                return Err(format!(
                    "--move-slot {m}: expected FROM:TO, two slot numbers from 1"
                ))
            }
        }
    }
    match modes.len() {
        1 => Ok(modes.remove(0)),
        0 => Err("choose one repair mode: --fix-crc, --from-backup, --from-primary, --relocate-backup, --restore-slots-from REF, --esxi-slots or --move-slot FROM:TO (see --help)".into()),
        _ => Err("choose only one repair mode per run; a mode that needs several steps lists them in its plan".into()),
    }
}

/// Version of the `gpt repair --json` document (the plan).
pub const REPAIR_JSON_SCHEMA: u32 = 1;

const REPAIR: &str = "gpt repair";
const UNDO: &str = "gpt undo";

fn print_plan(plan: &Plan, json: bool) -> Exit {
    if json {
        return cliconv::print_json(REPAIR, REPAIR_JSON_SCHEMA, plan);
    }
    print!("{}", plan.render());
    Exit::Done
}

pub fn run_repair(cmd: RepairCommand) -> i32 {
    if cmd.write {
        // Refuse early, before any plan is shown as if it could be applied.
        if let Err(e) = crate::inuse::check_not_in_use(Path::new(&cmd.target)) {
            return cliconv::fail(REPAIR, e).code();
        }
    }
    let dev = match Device::open(&cmd.target) {
        Ok(d) => d,
        Err(e) => {
            return cliconv::fail(REPAIR, e).code();
        }
    };
    let view = crate::read(&dev);
    let mode = match parse_mode(&cmd, &view) {
        Ok(m) => m,
        Err(e) => {
            return cliconv::fail(REPAIR, e).code();
        }
    };
    let plan = match plan::plan(&dev, &view, &mode) {
        Ok(p) => p,
        Err(e) => {
            return cliconv::fail(
                REPAIR,
                format_args!("repair {} refused: {}", mode.describe(), e.message),
            )
            .code();
        }
    };
    if print_plan(&plan, cmd.json) == Exit::Error {
        return Exit::Error.code();
    }
    if !cmd.write {
        if !plan.is_empty() {
            println!("Dry run: nothing written. Add --write --undo FILE to apply.");
        }
        return Exit::Done.code();
    }
    let Some(undo) = cmd.undo.as_deref() else {
        return cliconv::fail(
            REPAIR,
            "--write needs --undo FILE: the old sectors are saved there before anything is written",
        )
        .code();
    };
    if plan.is_empty() {
        return Exit::Done.code();
    }
    match write_plan(&cmd.target, &plan, undo) {
        Ok(()) => Exit::Done.code(),
        Err(e) => cliconv::fail(REPAIR, e).code(),
    }
}

/// Writes `plan` to `target` ([`apply::write_plan`]) and prints what
/// happened as `render_written` does.
pub fn write_plan(target: &str, plan: &Plan, undo: &Path) -> Result<(), String> {
    let written = apply::write_plan(target, plan, undo)?;
    print!("{}", render_written(&written));
    println!("To undo: gpt undo {target} {} --write", undo.display());
    Ok(())
}

/// A written repair in words: a failed re-protection, the note that the
/// kernel still holds the old table, the write log, the findings after.
/// Shared by the CLI and the menu.
pub fn render_written(w: &apply::Written) -> String {
    let mut s = String::new();
    if let Some(e) = &w.reprotect_error {
        s.push_str(&format!("note: {e}\n"));
    }
    if w.on_block_device {
        s.push_str(KERNEL_NOTE);
        s.push('\n');
    }
    for l in &w.log.lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("After the repair:\n");
    s.push_str(&crate::cli::render_findings(&w.findings_after));
    s
}

const KERNEL_NOTE: &str = "The kernel still uses the partition table it read at boot: reboot (or re-read the table) to see the change.";

pub fn run_undo(cmd: UndoCommand) -> i32 {
    let bytes = match std::fs::read(&cmd.undo_file) {
        Ok(b) => b,
        Err(e) => {
            return cliconv::fail(UNDO, format_args!("{}: {e}", cmd.undo_file.display())).code();
        }
    };
    let undo = match UndoFile::decode(&bytes) {
        Ok(u) => u,
        Err(e) => {
            return cliconv::fail(UNDO, format_args!("{}: {e}", cmd.undo_file.display())).code();
        }
    };
    let dev = match Device::open(&cmd.disk) {
        Ok(d) => d,
        Err(e) => {
            return cliconv::fail(UNDO, e).code();
        }
    };
    // An image file has no sector size of its own: take the recorded one.
    // A disk's must match it (undo_plan refuses otherwise).
    let ss = if dev.kind() == blockdev::DeviceKind::RegularFile {
        undo.sector_size
    } else {
        dev.logical_sector_size()
    };
    let plan = match apply::undo_plan(&dev, ss, &undo) {
        Ok(p) => p,
        Err(e) => {
            return cliconv::fail(UNDO, e).code();
        }
    };
    print!("{}", plan.render());
    if !cmd.write {
        if !plan.is_empty() {
            println!("Dry run: nothing written. Add --write to apply.");
        }
        return Exit::Done.code();
    }
    if plan.is_empty() {
        return Exit::Done.code();
    }
    let result = apply::open_for_writing(&cmd.disk)
        .and_then(|d| apply::apply_undo(&d, &plan).map_err(|e| e.to_string()));
    match result {
        Ok(log) => {
            for l in &log.lines {
                println!("{l}");
            }
            Exit::Done.code()
        }
        Err(e) => cliconv::fail(UNDO, e).code(),
    }
}
