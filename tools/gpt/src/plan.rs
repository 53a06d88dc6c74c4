//! Repair plans: what `rescue gpt repair` would change, computed without
//! writing. A plan is a list of whole sectors (old and new bytes), ordered
//! so that the backup copy is written before the primary, plus the steps and
//! notes that explain it. Nothing is compacted, sorted or relocated unless
//! the chosen mode says so; a mode that needs a second step says so in
//! `steps`.

use crate::verify;
use crate::{Entry, GptError, GptView, TableCopy};
use blockdev::BlockDevice;
use serde::Serialize;
use std::fmt::Write;

/// What to repair. Slot numbers are 1-based, like partition numbers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Recompute the array and header CRCs of each copy as it is.
    FixCrc,
    /// Rebuild the primary (header and array) from the backup.
    FromBackup,
    /// Rebuild the backup (header and array) from the primary.
    FromPrimary,
    /// Move the backup array and header to the end of the disk and set the
    /// last usable LBA (0x30) and the primary's backup LBA (0x20).
    RelocateBackup,
    /// Put each entry back into the slot it has in `reference` (the used
    /// entries of the original disk, a dump of it, or the other copy).
    RestoreSlots {
        reference: Vec<Entry>,
        label: String,
    },
    /// Put each entry into the slot ESXi gives its partition.
    EsxiSlots,
    /// Move one entry to an empty slot.
    MoveSlot { from: u32, to: u32 },
}

impl Mode {
    pub fn describe(&self) -> String {
        match self {
            Mode::FixCrc => "--fix-crc".into(),
            Mode::FromBackup => "--from-backup".into(),
            Mode::FromPrimary => "--from-primary".into(),
            Mode::RelocateBackup => "--relocate-backup".into(),
            Mode::RestoreSlots { label, .. } => format!("--restore-slots-from {label}"),
            Mode::EsxiSlots => "--esxi-slots".into(),
            Mode::MoveSlot { from, to } => format!("--move-slot {from}:{to}"),
        }
    }
}

/// Which copy a sector belongs to; the backup phase is written and synced
/// before the primary phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Backup,
    Primary,
}

/// One sector to be rewritten.
#[derive(Clone, Debug, Serialize)]
pub struct SectorChange {
    pub lba: u64,
    pub phase: Phase,
    /// e.g. "primary entry array (slots 5-8)".
    pub what: String,
    #[serde(skip)]
    pub old: Vec<u8>,
    #[serde(skip)]
    pub new: Vec<u8>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub mode: String,
    pub device: String,
    pub device_size: u64,
    pub sector_size: u32,
    /// What will be done, in order.
    pub steps: Vec<String>,
    /// Things the user should know (what is kept, what is not cleared).
    pub notes: Vec<String>,
    /// Sectors to write, backup phase first.
    pub changes: Vec<SectorChange>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The plan as text: steps, notes, then a hexdump diff of the 16-byte
    /// lines that change in every sector to be written.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let wrap = |out: &mut String, line: String, indent: usize| {
            out.push_str(&screen::wrap_words(&line, screen::SCREEN_WIDTH, indent));
        };
        wrap(
            &mut out,
            format!(
                "Repair plan for {} ({} bytes, {}-byte sectors), mode {}:",
                self.device, self.device_size, self.sector_size, self.mode
            ),
            2,
        );
        for (i, s) in self.steps.iter().enumerate() {
            wrap(&mut out, format!("  {}. {s}", i + 1), 5);
        }
        for n in &self.notes {
            wrap(&mut out, format!("  note: {n}"), 8);
        }
        if self.changes.is_empty() {
            let _ = writeln!(
                out,
                "Nothing to change: the disk already holds what this repair would write."
            );
            return out;
        }
        let backup = self
            .changes
            .iter()
            .filter(|c| c.phase == Phase::Backup)
            .count();
        if backup > 0 && backup < self.changes.len() {
            let _ = writeln!(
                out,
                "Sectors to write: {} ({backup} in the backup phase, written and synced first)",
                self.changes.len(),
            );
        } else {
            let _ = writeln!(out, "Sectors to write: {}", self.changes.len());
        }
        for c in &self.changes {
            out.push_str(&render_diff(c, self.sector_size));
        }
        out
    }
}

/// Hexdump of the lines of one sector that change: `-` old, `+` new.
pub fn render_diff(c: &SectorChange, sector_size: u32) -> String {
    let mut out = String::new();
    let base = c.lba * u64::from(sector_size);
    let _ = writeln!(out, "LBA {} (byte {:#x}) {}:", c.lba, base, c.what);
    for (i, (o, n)) in c.old.chunks(16).zip(c.new.chunks(16)).enumerate() {
        if o == n {
            continue;
        }
        let at = base + 16 * i as u64;
        // 79 columns: sign, 10-digit offset, 16 bytes, 16 characters.
        let _ = writeln!(out, "- {at:010x} {}", hexline(o));
        let _ = writeln!(out, "+ {at:010x} {}", hexline(n));
    }
    out
}

fn hexline(b: &[u8]) -> String {
    let mut s = String::new();
    for x in b {
        let _ = write!(s, "{x:02x} ");
    }
    s.push('|');
    s.extend(b.iter().map(|&x| {
        if (0x20..0x7f).contains(&x) {
            x as char
        } else {
            '.'
        }
    }));
    s.push('|');
    s
}

fn refuse(msg: impl Into<String>) -> GptError {
    GptError::new(0, msg)
}

fn read_sectors(dev: &dyn BlockDevice, lba: u64, count: u64, ss: u64) -> Result<Vec<u8>, GptError> {
    let offset = lba.saturating_mul(ss);
    let len = count.saturating_mul(ss);
    if offset.checked_add(len).is_none_or(|end| end > dev.size()) {
        return Err(GptError::new(
            offset,
            format!(
                "LBA {lba}+{count} lies beyond the end of the disk ({} bytes)",
                dev.size()
            ),
        ));
    }
    let mut b = vec![0u8; len as usize];
    dev.read_exact_at(&mut b, offset)
        .map_err(|e| GptError::new(offset, format!("read failed: {e}")))?;
    Ok(b)
}

/// A header sector built from `src` (a header sector as read) with the
/// location fields and the array CRC replaced and the header CRC recomputed.
/// Everything else (revision, header size, disk GUID, first usable LBA,
/// entry count and size, bytes after the header) is kept.
pub fn rebuild_header(
    src: &[u8],
    my: u64,
    alternate: u64,
    last_usable: u64,
    entries_lba: u64,
    array_crc: u32,
) -> Vec<u8> {
    use crate::layout::header as f;
    use le::{put_u32, put_u64};
    let mut h = src.to_vec();
    // A source shorter than a header is never read as one; pad to be safe.
    if h.len() < f::MIN_SIZE {
        h.resize(f::MIN_SIZE, 0);
    }
    let stored = le::Fields::new(&h, "GPT header").u32(f::HEADER_SIZE);
    let size = (stored.unwrap_or(0) as usize).clamp(f::MIN_SIZE, h.len());
    put_u64(&mut h, f::MY_LBA, my);
    put_u64(&mut h, f::ALTERNATE_LBA, alternate);
    put_u64(&mut h, f::LAST_USABLE_LBA, last_usable);
    put_u64(&mut h, f::ENTRIES_LBA, entries_lba);
    put_u32(&mut h, f::ENTRIES_CRC, array_crc);
    put_u32(&mut h, f::HEADER_CRC, 0);
    let crc = crc32fast::hash(&h[..size]);
    put_u32(&mut h, f::HEADER_CRC, crc);
    h
}

/// A copy is usable as a source when its header and array CRCs are right and
/// it sits where it says it does.
pub fn intact(c: &TableCopy) -> bool {
    c.header.header_crc_ok() && c.array_crc_ok() && c.header.my_lba == c.header_lba
}

fn slot_range(first_slot: u64, bytes_from: u64, bytes_to: u64, entry_size: u64) -> String {
    let a = first_slot + bytes_from / entry_size;
    let b = first_slot + (bytes_to - 1) / entry_size;
    if a == b {
        format!("slot {a}")
    } else {
        format!("slots {a}-{b}")
    }
}

/// Collects the sectors that differ between what is on disk and `new`
/// (written at `lba`, whole sectors; bytes of the last sector past `new` are
/// kept as they are).
#[allow(clippy::too_many_arguments)]
fn diff_region(
    dev: &dyn BlockDevice,
    ss: u64,
    lba: u64,
    new: &[u8],
    phase: Phase,
    what: &str,
    entry_size: Option<u64>,
    out: &mut Vec<SectorChange>,
) -> Result<(), GptError> {
    let count = (new.len() as u64).div_ceil(ss);
    let old = read_sectors(dev, lba, count, ss)?;
    let mut full = old.clone();
    full[..new.len()].copy_from_slice(new);
    for i in 0..count as usize {
        let r = i * ss as usize..(i + 1) * ss as usize;
        if old[r.clone()] != full[r.clone()] {
            let what = match entry_size {
                Some(es) => format!(
                    "{what} ({})",
                    slot_range(
                        1,
                        r.start as u64,
                        (r.end as u64).min(new.len() as u64).max(r.start as u64 + 1),
                        es
                    )
                ),
                None => what.to_string(),
            };
            out.push(SectorChange {
                lba: lba + i as u64,
                phase,
                what,
                old: old[r.clone()].to_vec(),
                new: full[r].to_vec(),
            });
        }
    }
    Ok(())
}

/// Both copies as they should be after the repair.
struct Target<'a> {
    /// A header sector to take the non-location fields from.
    src_header: Vec<u8>,
    array: Vec<u8>,
    entry_size: u64,
    primary_entries_lba: u64,
    backup_lba: u64,
    backup_entries_lba: u64,
    last_usable: u64,
    write_primary: bool,
    write_backup: bool,
    /// New protective MBR sector, when its size field is to be fixed.
    mbr: Option<Vec<u8>>,
    view: &'a GptView,
}

fn changes_for(dev: &dyn BlockDevice, t: &Target) -> Result<Vec<SectorChange>, GptError> {
    let ss = u64::from(t.view.sector_size);
    let crc = crc32fast::hash(&t.array);
    let mut out = Vec::new();
    let es = Some(t.entry_size);
    if t.write_backup {
        diff_region(
            dev,
            ss,
            t.backup_entries_lba,
            &t.array,
            Phase::Backup,
            "backup entry array",
            es,
            &mut out,
        )?;
        let h = rebuild_header(
            &t.src_header,
            t.backup_lba,
            1,
            t.last_usable,
            t.backup_entries_lba,
            crc,
        );
        diff_region(
            dev,
            ss,
            t.backup_lba,
            &h,
            Phase::Backup,
            "backup header",
            None,
            &mut out,
        )?;
    }
    if t.write_primary {
        diff_region(
            dev,
            ss,
            t.primary_entries_lba,
            &t.array,
            Phase::Primary,
            "primary entry array",
            es,
            &mut out,
        )?;
        let h = rebuild_header(
            &t.src_header,
            1,
            t.backup_lba,
            t.last_usable,
            t.primary_entries_lba,
            crc,
        );
        diff_region(
            dev,
            ss,
            1,
            &h,
            Phase::Primary,
            "primary header",
            None,
            &mut out,
        )?;
    }
    if let Some(m) = &t.mbr {
        diff_region(
            dev,
            ss,
            0,
            m,
            Phase::Primary,
            "protective MBR",
            None,
            &mut out,
        )?;
    }
    Ok(out)
}

fn entry_desc(e: &Entry) -> String {
    format!(
        "{} LBA {}-{}{}",
        e.type_name
            .map(String::from)
            .unwrap_or_else(|| e.type_guid.to_string()),
        e.first_lba,
        e.last_lba,
        if e.name.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", e.name)
        }
    )
}

/// Computes the plan for `mode` on the disk `dev` whose tables are `view`
/// (from [`crate::read`] on the same device). Refusals are errors that say
/// why and what to do instead.
pub fn plan(dev: &dyn BlockDevice, view: &GptView, mode: &Mode) -> Result<Plan, GptError> {
    let ss = u64::from(view.sector_size);
    let last = view
        .disk_sectors
        .checked_sub(1)
        .ok_or_else(|| refuse("the disk is empty"))?;
    if let (Err(p), Err(b)) = (&view.primary, &view.backup) {
        return Err(refuse(format!(
            "no GPT on this disk: primary: {p}; backup: {b}. Nothing to repair from"
        )));
    }
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let changes = match mode {
        Mode::FixCrc => fix_crc(dev, view, &mut steps, &mut notes)?,
        Mode::FromBackup => {
            let b = view.backup.as_ref().map_err(|e| {
                refuse(format!(
                    "the backup copy is unusable ({e}); nothing to rebuild the primary from"
                ))
            })?;
            if !intact(b) {
                return Err(refuse(format!(
                    "the backup copy at LBA {} is not intact (header CRC {}, array CRC {}); rebuilding the primary from it would copy the damage. If only CRCs are wrong, use --fix-crc",
                    b.header_lba,
                    ok_word(b.header.header_crc_ok()),
                    ok_word(b.array_crc_ok())
                )));
            }
            let pel = match &view.primary {
                Ok(p) if p.header.header_crc_ok() && p.header.entries_lba >= 2 => {
                    p.header.entries_lba
                }
                _ => 2,
            };
            let array_sectors = b.header.array_bytes().div_ceil(ss);
            if pel.saturating_add(array_sectors) > b.header.first_usable_lba {
                return Err(refuse(format!(
                    "a primary array at LBA {pel} ({array_sectors} sectors) would reach into the usable area starting at LBA {}",
                    b.header.first_usable_lba
                )));
            }
            steps.push(format!(
                "rebuild the primary header (LBA 1) from the backup header at LBA {}: current LBA 1, backup LBA {}, entry array LBA {pel}; everything else copied, CRCs recomputed",
                b.header_lba, b.header_lba
            ));
            steps.push(format!(
                "copy the backup entry array ({} slots, slot positions kept) to LBA {pel}",
                b.header.entry_count
            ));
            if b.header_lba != last {
                steps.push(format!(
                    "afterwards (a second run): the backup is at LBA {}, not at the end of the disk (last LBA {last}): once the primary is back, run --relocate-backup to move it there; this repair leaves it where it is",
                    b.header_lba
                ));
            }
            let t = Target {
                src_header: read_sectors(dev, b.header_lba, 1, ss)?,
                array: b.raw_array.clone(),
                entry_size: u64::from(b.header.entry_size),
                primary_entries_lba: pel,
                backup_lba: b.header_lba,
                backup_entries_lba: b.header.entries_lba,
                last_usable: b.header.last_usable_lba,
                write_primary: true,
                write_backup: false,
                mbr: None,
                view,
            };
            changes_for(dev, &t)?
        }
        Mode::FromPrimary => {
            let p = view.primary.as_ref().map_err(|e| {
                refuse(format!(
                    "the primary copy is unusable ({e}); nothing to rebuild the backup from"
                ))
            })?;
            if !intact(p) {
                return Err(refuse(format!(
                    "the primary copy is not intact (header CRC {}, array CRC {}); rebuilding the backup from it would copy the damage. If only CRCs are wrong, use --fix-crc",
                    ok_word(p.header.header_crc_ok()),
                    ok_word(p.array_crc_ok())
                )));
            }
            let bl = p.header.alternate_lba;
            if bl > last || bl < 2 {
                return Err(refuse(format!(
                    "the primary puts the backup at LBA {bl}, outside this disk (last LBA {last}): use --relocate-backup to place it at the end"
                )));
            }
            let array_sectors = p.header.array_bytes().div_ceil(ss);
            let bel = match &view.backup {
                Ok(b) if b.header_lba == bl && b.header.header_crc_ok() => b.header.entries_lba,
                _ => bl.saturating_sub(array_sectors),
            };
            if bel <= p.header.last_usable_lba {
                return Err(refuse(format!(
                    "a backup array at LBA {bel} would overlap the usable area (last usable LBA {})",
                    p.header.last_usable_lba
                )));
            }
            if bl != last {
                notes.push(format!(
                    "the backup stays where the primary says it is (LBA {bl}), not at the disk's last LBA {last}: use --relocate-backup to move it"
                ));
            }
            steps.push(format!(
                "rebuild the backup header at LBA {bl} from the primary: current LBA {bl}, backup LBA 1, entry array LBA {bel}; everything else copied, CRCs recomputed"
            ));
            steps.push(format!(
                "copy the primary entry array ({} slots, slot positions kept) to LBA {bel}",
                p.header.entry_count
            ));
            let t = Target {
                src_header: read_sectors(dev, 1, 1, ss)?,
                array: p.raw_array.clone(),
                entry_size: u64::from(p.header.entry_size),
                primary_entries_lba: p.header.entries_lba,
                backup_lba: bl,
                backup_entries_lba: bel,
                last_usable: p.header.last_usable_lba,
                write_primary: false,
                write_backup: true,
                mbr: None,
                view,
            };
            changes_for(dev, &t)?
        }
        Mode::RelocateBackup
        | Mode::RestoreSlots { .. }
        | Mode::EsxiSlots
        | Mode::MoveSlot { .. } => whole_table(dev, view, mode, &mut steps, &mut notes)?,
    };
    Ok(Plan {
        mode: mode.describe(),
        device: dev.name().to_string(),
        device_size: dev.size(),
        sector_size: view.sector_size,
        steps,
        notes,
        changes,
    })
}

fn ok_word(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "wrong"
    }
}

fn fix_crc(
    dev: &dyn BlockDevice,
    view: &GptView,
    steps: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Vec<SectorChange>, GptError> {
    let ss = u64::from(view.sector_size);
    let mut out = Vec::new();
    for (name, c, phase) in [
        ("backup", &view.backup, Phase::Backup),
        ("primary", &view.primary, Phase::Primary),
    ] {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!("the {name} header is unusable ({e}): its CRCs cannot be fixed; rebuild it with --from-{}", if name == "primary" { "backup" } else { "primary" }));
                continue;
            }
        };
        let Some(array_crc) = c.entries_crc_computed else {
            notes.push(format!(
                "the {name} entry array cannot be read ({}): its CRCs are left alone",
                c.array_error.as_deref().unwrap_or("?")
            ));
            continue;
        };
        if c.header.header_crc_ok() && c.array_crc_ok() {
            continue;
        }
        let src = read_sectors(dev, c.header_lba, 1, ss)?;
        let h = &c.header;
        let new = rebuild_header(
            &src,
            h.my_lba,
            h.alternate_lba,
            h.last_usable_lba,
            h.entries_lba,
            array_crc,
        );
        if !c.array_crc_ok() {
            steps.push(format!(
                "{name} header at LBA {}: array CRC (0x58) {:08x} -> {array_crc:08x}, computed over the {name} array as it is",
                c.header_lba, h.entries_crc_stored
            ));
        }
        steps.push(format!(
            "{name} header at LBA {}: recompute the header CRC (0x10)",
            c.header_lba
        ));
        if !h.header_crc_ok() {
            notes.push(format!(
                "the {name} header's own CRC was wrong: its fields may be damaged; check them with `gpt show`. Fixing the CRC makes them authoritative; if the other copy is intact, --from-{} is the safer repair",
                if name == "primary" { "backup" } else { "primary" }
            ));
        }
        diff_region(
            dev,
            ss,
            c.header_lba,
            &new,
            phase,
            &format!("{name} header"),
            None,
            &mut out,
        )?;
    }
    if out.is_empty() && steps.is_empty() && notes.is_empty() {
        notes.push("all CRCs are already right".into());
    }
    Ok(out)
}

/// Relocation and slot changes: both copies are rewritten from one intact
/// copy with a (possibly) new entry array.
fn whole_table(
    dev: &dyn BlockDevice,
    view: &GptView,
    mode: &Mode,
    steps: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Vec<SectorChange>, GptError> {
    let ss = u64::from(view.sector_size);
    let last = view.disk_sectors - 1;
    let (src, src_name) = match (&view.primary, &view.backup) {
        (Ok(p), _) if intact(p) => (p, "primary"),
        (_, Ok(b)) if intact(b) => (b, "backup"),
        _ => {
            return Err(refuse(
                "neither copy of the GPT is intact (header and array CRCs right): repair that first (--fix-crc if only CRCs are wrong, or --from-backup/--from-primary)",
            ))
        }
    };
    if let (Ok(p), Ok(b)) = (&view.primary, &view.backup) {
        if intact(p) && intact(b) && p.raw_array != b.raw_array {
            notes.push("the primary and backup arrays differ; both copies are rewritten from the primary's entries".into());
        }
    }
    if src_name == "backup" {
        steps.push(format!(
            "the primary copy is damaged: both copies are rebuilt from the backup at LBA {}",
            src.header_lba
        ));
    }
    let h = &src.header;
    let es = h.entry_size as usize;
    let array_sectors = h.array_bytes().div_ceil(ss);

    // 1. the entry array
    let array = match mode {
        Mode::RelocateBackup => src.raw_array.clone(),
        Mode::RestoreSlots { reference, label } => {
            let moves = slots_from_reference(&src.entries, reference, label, notes)?;
            apply_moves(
                &src.raw_array,
                &src.entries,
                &moves,
                es,
                h.entry_count,
                steps,
            )?
        }
        Mode::EsxiSlots => {
            let l = verify::esxi_layout(&src.entries).ok_or_else(|| {
                refuse("the partitions do not match a known ESXi boot disk layout (ESXi 5.x/6.x: slots 1,5,6,7,8,(9),2,3 in disk order; ESXi 7/8: 1,5,6,7,(8)); use --restore-slots-from with the original disk or an image of it, or --move-slot")
            })?;
            if l.ambiguous {
                return Err(refuse(format!(
                    "the entries fit the {} in more than one way; restoring slots from layout knowledge would be a guess: use --restore-slots-from with the original disk or an image, or --move-slot",
                    l.name
                )));
            }
            steps.push(format!("recognised an {}", l.name));
            apply_moves(
                &src.raw_array,
                &src.entries,
                &l.mapping,
                es,
                h.entry_count,
                steps,
            )?
        }
        Mode::MoveSlot { from, to } => {
            if !src.entries.iter().any(|e| e.slot == *from) {
                return Err(refuse(format!("slot {from} is empty: nothing to move")));
            }
            if let Some(e) = src.entries.iter().find(|e| e.slot == *to) {
                return Err(refuse(format!(
                    "slot {to} is in use ({}): move that entry away first",
                    entry_desc(e)
                )));
            }
            apply_moves(
                &src.raw_array,
                &src.entries,
                &[(*from, *to)],
                es,
                h.entry_count,
                steps,
            )?
        }
        _ => unreachable!("whole_table is only called for relocation and slot modes"),
    };
    if !matches!(mode, Mode::RelocateBackup) && array == src.raw_array {
        notes.push("the entries are already in these slots".into());
    }

    // 2. where the copies go
    let current_backup = match &view.primary {
        Ok(p) if p.header.header_crc_ok() => p.header.alternate_lba,
        _ => match &view.backup {
            Ok(b) => b.header_lba,
            Err(_) => last,
        },
    };
    let relocate = matches!(mode, Mode::RelocateBackup) || current_backup != last;
    let (backup_lba, backup_entries_lba, last_usable) = if relocate {
        let bel = last
            .checked_sub(array_sectors)
            .filter(|b| *b > h.first_usable_lba)
            .ok_or_else(|| {
                refuse("the disk is too small for a backup array after the first usable LBA")
            })?;
        let lu = bel - 1;
        if let Some(e) = src.entries.iter().find(|e| e.last_lba > lu) {
            return Err(refuse(format!(
                "partition {} ends at LBA {}, beyond the last usable LBA {lu} a backup at the end of this disk allows: the disk is smaller than the partitions; relocating would cut it off",
                e.slot, e.last_lba
            )));
        }
        if !matches!(mode, Mode::RelocateBackup) {
            steps.push(format!(
                "the backup GPT is not at the end of the disk (LBA {current_backup}, last LBA {last}): writing it there again would keep the disk inconsistent, so this repair also relocates it (as --relocate-backup does)"
            ));
        }
        steps.push(format!(
            "backup entry array at LBA {bel}-{}, backup header at LBA {last} (the last LBA); primary backup LBA (0x20) {} -> {last}; last usable LBA (0x30) {} -> {lu} in both headers",
            bel + array_sectors - 1,
            current_backup,
            h.last_usable_lba
        ));
        if current_backup != last && current_backup < view.disk_sectors {
            notes.push(format!(
                "the old backup at LBA {}-{current_backup} is left as it is (not zeroed). Nothing points at it after the repair, but a tool scanning for \"EFI PART\" could find it; clear those sectors yourself if wanted",
                current_backup.saturating_sub(array_sectors)
            ));
        }
        (last, bel, lu)
    } else {
        let bel = match &view.backup {
            Ok(b) if b.header_lba == current_backup && b.header.header_crc_ok() => {
                b.header.entries_lba
            }
            _ => current_backup.saturating_sub(array_sectors),
        };
        if bel <= h.last_usable_lba {
            return Err(refuse(format!(
                "a backup array at LBA {bel} would overlap the usable area (last usable LBA {}): use --relocate-backup",
                h.last_usable_lba
            )));
        }
        (current_backup, bel, h.last_usable_lba)
    };
    let primary_entries_lba = match &view.primary {
        Ok(p) if p.header.header_crc_ok() && p.header.entries_lba >= 2 => p.header.entries_lba,
        _ => 2,
    };
    let mbr = if relocate {
        pmbr_fix(dev, view, steps, notes)?
    } else {
        None
    };
    steps.push("write the backup copy (array, then header), sync; then the primary (array, header), sync; then read back and verify".into());
    notes.push("disk GUID, partition GUIDs, types, names, attributes and LBAs are kept; slots change only as listed".into());
    let t = Target {
        src_header: read_sectors(dev, src.header_lba, 1, ss)?,
        array,
        entry_size: es as u64,
        primary_entries_lba,
        backup_lba,
        backup_entries_lba,
        last_usable,
        write_primary: true,
        write_backup: true,
        mbr,
        view,
    };
    changes_for(dev, &t)
}

/// The protective MBR's 0xEE entry should cover the disk (up to 2^32-1
/// sectors); after a disk grew it still has the old size.
fn pmbr_fix(
    dev: &dyn BlockDevice,
    view: &GptView,
    steps: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<u8>>, GptError> {
    use crate::layout::mbr as layout;
    use crate::mbr::MbrKind;
    let want = (view.disk_sectors - 1).min(u64::from(u32::MAX)) as u32;
    match view.mbr.kind {
        MbrKind::Protective => {
            let Some(e) = view
                .mbr
                .entries
                .iter()
                .find(|e| e.kind == layout::PROTECTIVE_TYPE)
            else {
                return Ok(None);
            };
            if e.sectors == want {
                return Ok(None);
            }
            let mut m = read_sectors(dev, 0, 1, u64::from(view.sector_size))?;
            let at = layout::ENTRIES
                + layout::ENTRY_SIZE * (usize::from(e.index) - 1)
                + layout::ENTRY_SECTORS;
            le::put_u32(&mut m, at, want);
            steps.push(format!(
                "protective MBR: size of the 0xEE entry {} -> {want} sectors (it should cover the whole disk)",
                e.sectors
            ));
            Ok(Some(m))
        }
        MbrKind::Hybrid => {
            notes.push("the MBR is hybrid: it is left as it is".into());
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// (current slot, target slot) for entries whose slot differs in `reference`.
fn slots_from_reference(
    current: &[Entry],
    reference: &[Entry],
    label: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<(u32, u32)>, GptError> {
    if reference.is_empty() {
        return Err(refuse(format!(
            "the reference {label} has no partition entries"
        )));
    }
    let mut moves = Vec::new();
    let mut matched_refs = Vec::new();
    for e in current {
        let by_guid: Vec<&Entry> = if e.unique_guid.is_zero() {
            Vec::new()
        } else {
            reference
                .iter()
                .filter(|r| r.unique_guid == e.unique_guid)
                .collect()
        };
        let found = match by_guid.len() {
            1 => Some(by_guid[0]),
            0 => {
                let by_place: Vec<&Entry> = reference
                    .iter()
                    .filter(|r| r.type_guid == e.type_guid && r.first_lba == e.first_lba)
                    .collect();
                match by_place.len() {
                    1 => Some(by_place[0]),
                    0 => None,
                    _ => return Err(refuse(format!("entry in slot {} ({}) matches several reference entries by type and start LBA", e.slot, entry_desc(e)))),
                }
            }
            _ => {
                return Err(refuse(format!(
                    "the reference {label} has the unique GUID {} more than once",
                    e.unique_guid
                )))
            }
        };
        match found {
            Some(r) => {
                matched_refs.push(r.slot);
                if r.first_lba != e.first_lba || r.last_lba != e.last_lba {
                    notes.push(format!(
                        "slot {}: the reference has this partition at LBA {}-{}, the disk at {}-{}; only the slot is restored, the disk's LBAs are kept",
                        e.slot, r.first_lba, r.last_lba, e.first_lba, e.last_lba
                    ));
                }
                moves.push((e.slot, r.slot));
            }
            None => notes.push(format!(
                "slot {} ({}) is not in the reference {label}: it keeps its slot",
                e.slot,
                entry_desc(e)
            )),
        }
    }
    for r in reference {
        if !matched_refs.contains(&r.slot) {
            notes.push(format!(
                "reference slot {} ({}) has no matching entry on this disk",
                r.slot,
                entry_desc(r)
            ));
        }
    }
    Ok(moves)
}

/// Builds the new array: every entry copied byte for byte (all `entry_size`
/// bytes) into its target slot; other slots all zero as empty slots are.
fn apply_moves(
    raw: &[u8],
    entries: &[Entry],
    moves: &[(u32, u32)],
    es: usize,
    count: u32,
    steps: &mut Vec<String>,
) -> Result<Vec<u8>, GptError> {
    let target = |slot: u32| {
        moves
            .iter()
            .find(|m| m.0 == slot)
            .map(|m| m.1)
            .unwrap_or(slot)
    };
    let mut taken: Vec<(u32, u32)> = Vec::new();
    for e in entries {
        let t = target(e.slot);
        if t == 0 || t > count {
            return Err(refuse(format!(
                "slot {t} does not exist: the table has slots 1-{count}"
            )));
        }
        if let Some((other, _)) = taken.iter().find(|(_, tt)| *tt == t) {
            return Err(refuse(format!(
                "the entries of slots {other} and {} would both go to slot {t}",
                e.slot
            )));
        }
        taken.push((e.slot, t));
    }
    let mut array = vec![0u8; raw.len()];
    // Bytes of slots that hold no used entry are copied as they are (an
    // "empty" slot may carry leftovers; we do not clean what we do not move).
    for slot in 1..=count {
        if !entries.iter().any(|e| e.slot == slot) && !taken.iter().any(|(_, t)| *t == slot) {
            let r = (slot as usize - 1) * es..slot as usize * es;
            array[r.clone()].copy_from_slice(&raw[r]);
        }
    }
    for (from, to) in &taken {
        let src = (*from as usize - 1) * es..*from as usize * es;
        let dst = (*to as usize - 1) * es..*to as usize * es;
        array[dst].copy_from_slice(&raw[src]);
        if from != to {
            let e = entries
                .iter()
                .find(|e| e.slot == *from)
                .expect("taken lists used entries");
            steps.push(format!(
                "move the entry in slot {from} to slot {to}: {}",
                entry_desc(e)
            ));
        }
    }
    let moved = taken.iter().filter(|(f, t)| f != t).count();
    if moved > 0 {
        let freed: Vec<String> = taken
            .iter()
            .filter(|(f, _)| !taken.iter().any(|(_, t)| t == f))
            .map(|(f, _)| f.to_string())
            .collect();
        if !freed.is_empty() {
            steps.push(format!("slots left empty (all zero): {}", freed.join(", ")));
        }
    }
    Ok(array)
}

/// The repairs that would fix what `view` shows, most useful first, each
/// with the reason (for the menu: it offers these and shows their plan).
/// Only modes whose plan can be made are listed.
pub fn suggestions(dev: &dyn BlockDevice, view: &GptView) -> Vec<(Mode, String)> {
    let mut out: Vec<(Mode, String)> = Vec::new();
    let p_ok = view.primary.as_ref().is_ok_and(intact);
    let b_ok = view.backup.as_ref().is_ok_and(intact);
    if !p_ok && b_ok {
        out.push((
            Mode::FromBackup,
            "the primary GPT is damaged and the backup is intact".into(),
        ));
    }
    if p_ok && !b_ok {
        out.push((
            Mode::FromPrimary,
            "the backup GPT is damaged or missing and the primary is intact".into(),
        ));
    }
    if !p_ok && !b_ok {
        let crc_only = |c: &Result<TableCopy, GptError>| {
            c.as_ref().is_ok_and(|c| c.entries_crc_computed.is_some())
        };
        if crc_only(&view.primary) || crc_only(&view.backup) {
            out.push((Mode::FixCrc, "no copy is intact; if only the CRCs are wrong (a hand edit), recomputing them helps".into()));
        }
    }
    let last = view.disk_sectors.saturating_sub(1);
    let backup_at = match (&view.primary, &view.backup) {
        (Ok(p), _) if p.header.header_crc_ok() => Some(p.header.alternate_lba),
        (_, Ok(b)) if b_ok => Some(b.header_lba),
        _ => None,
    };
    if (p_ok || b_ok) && backup_at.is_some_and(|b| b != last) {
        out.push((
            Mode::RelocateBackup,
            "the backup GPT is not at the end of the disk (the disk grew or shrank)".into(),
        ));
    }
    if let Some(l) = verify::esxi_layout(crate::best_entries(view)) {
        if l.compacted() && !l.ambiguous {
            out.push((
                Mode::EsxiSlots,
                format!(
                    "the entries look compacted; put them back into the {} slots",
                    l.name
                ),
            ));
        }
    }
    out.retain(|(m, _)| plan(dev, view, m).is_ok_and(|p| !p.is_empty()));
    out
}
