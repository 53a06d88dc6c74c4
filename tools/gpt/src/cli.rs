//! `rescue gpt show|verify`: the table exactly as on disk, and findings.

use crate::verify::{self, Severity};
use crate::{GptView, TableCopy};
use argh::FromArgs;
use cliconv::Exit;
use serde::Serialize;
use std::fmt::Write;

/// GPT: show both copies exactly as on disk (slots, gaps, CRCs) and verify them.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "gpt",
    error_code(0, "done: see the action's --help"),
    error_code(1, "findings: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
pub struct GptCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    Show(ShowCommand),
    Verify(VerifyCommand),
    Repair(crate::repair_cli::RepairCommand),
    Undo(crate::repair_cli::UndoCommand),
}

/// Print the protective MBR, both headers field by field with stored and
/// computed CRCs, and both entry arrays with slot numbers and empty slots.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "show",
    error_code(0, "done: a GPT was found and verify finds nothing wrong"),
    error_code(1, "findings: as verify's, including no GPT at all (no-gpt)"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), the disk cannot be opened, or the output could not be written"
    )
)]
pub struct ShowCommand {
    /// disk or image file
    #[argh(positional)]
    pub target: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List findings with severity and explanation: CRC mismatches, a backup not
/// at the end of the disk, ranges, overlaps, differing copies, compacted ESXi
/// slot layouts.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "verify",
    error_code(0, "done: a GPT was found and is clean"),
    error_code(
        1,
        "findings: including no GPT at all (no-gpt: a blank, MBR-only or wiped disk)"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), the disk cannot be opened, or the output could not be written"
    )
)]
pub struct VerifyCommand {
    /// disk or image file
    #[argh(positional)]
    pub target: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    /// `clean` (a GPT was found and nothing is wrong), `findings`, or
    /// `no-gpt` (neither header found: a blank, MBR-only or wiped disk).
    outcome: &'static str,
    view: &'a GptView,
    /// Primary vs backup, field by field and slot by slot (show only).
    #[serde(skip_serializing_if = "Option::is_none")]
    differences: Option<Vec<String>>,
    findings: &'a [verify::Finding],
}

/// Version of the `gpt show`/`gpt verify --json` document.
pub const JSON_SCHEMA: u32 = 1;

/// The verdict on `findings`: the JSON outcome and the exit code (0 a GPT
/// that was found and is clean, 1 findings, including no GPT at all).
pub fn outcome(findings: &[verify::Finding]) -> (&'static str, i32) {
    if findings.iter().any(|f| f.code == "no-gpt") {
        ("no-gpt", Exit::Findings.code())
    } else if findings.iter().any(|f| f.severity >= Severity::Warning) {
        ("findings", Exit::Findings.code())
    } else {
        ("clean", Exit::Done.code())
    }
}

pub fn run(cmd: GptCommand) -> i32 {
    let (target, json, show) = match cmd.action {
        Action::Show(c) => (c.target, c.json, true),
        Action::Verify(c) => (c.target, c.json, false),
        Action::Repair(c) => return crate::repair_cli::run_repair(c),
        Action::Undo(c) => return crate::repair_cli::run_undo(c),
    };
    let command = if show { "gpt show" } else { "gpt verify" };
    match report(&target, json, show) {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(e) => cliconv::fail(command, e).code(),
    }
}

/// What `gpt show`/`gpt verify` print for `target`, and their exit code;
/// Err for an I/O error or JSON that cannot be serialized (exit 2).
pub fn report(target: &str, json: bool, show: bool) -> Result<(String, i32), String> {
    let dev = blockdev::Device::open(target).map_err(|e| e.to_string())?;
    let view = crate::read(&dev);
    let findings = verify::verify(&view);
    let (outcome, code) = outcome(&findings);
    let mut text = String::new();
    if json {
        let r = Report {
            outcome,
            view: &view,
            differences: show.then(|| differences(&view)),
            findings: &findings,
        };
        text = cliconv::json_text(JSON_SCHEMA, &r).map_err(|e| format!("JSON: {e}"))?;
        text.push('\n');
    } else {
        if show {
            text.push_str(&render_show(&view));
        }
        text.push_str(&render_findings(&findings));
    }
    Ok((text, code))
}

pub fn render_findings(findings: &[verify::Finding]) -> String {
    let mut out = String::new();
    let serious = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count();
    let _ = writeln!(
        out,
        "Findings: {}",
        if serious == 0 {
            "none".to_string()
        } else {
            serious.to_string()
        }
    );
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
            Severity::Info => "info ",
        };
        out.push_str(&screen::wrap_words(
            &format!("  {tag} [{}] {}", f.code, f.message),
            screen::SCREEN_WIDTH,
            8,
        ));
    }
    out
}

/// Entry attribute bits in words. Bits 0-2 are defined by UEFI for every
/// type; bits 48-63 belong to the partition type (named here for Microsoft
/// basic data, whose bits 60, 62 and 63 Windows uses).
pub fn attr_text(a: u64, class: crate::TypeClass) -> String {
    if a == 0 {
        return String::new();
    }
    let mut parts = Vec::new();
    for (bit, name) in [
        (0, "required"),
        (1, "no-block-io"),
        (2, "legacy-bios-bootable"),
    ] {
        if a & (1 << bit) != 0 {
            parts.push(name.to_string());
        }
    }
    let mut typed = a >> 48;
    if class == crate::TypeClass::BasicData {
        for (bit, name) in [(60, "read-only"), (62, "hidden"), (63, "no-drive-letter")] {
            if a & (1 << bit) != 0 {
                parts.push(name.to_string());
                typed &= !(1 << (bit - 48));
            }
        }
    }
    if typed != 0 {
        parts.push(format!("type-specific bits 48-63 = {typed:#06x}"));
    }
    let reserved = a & 0x0000_FFFF_FFFF_FFF8;
    if reserved != 0 {
        parts.push(format!("reserved bits {reserved:#x}"));
    }
    format!("{a:#x} ({})", parts.join(", "))
}

fn render_copy(
    out: &mut String,
    name: &str,
    c: &Result<TableCopy, crate::GptError>,
    sector_size: u32,
) {
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "{name} GPT: unusable: {e}");
            return;
        }
    };
    let h = &c.header;
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let ss = u64::from(sector_size);
    let _ = writeln!(
        out,
        "{name} GPT header at LBA {} (byte {}):",
        c.header_lba,
        c.header_lba.saturating_mul(ss)
    );
    let _ = writeln!(out, "  0x00 signature         \"EFI PART\"");
    let _ = writeln!(
        out,
        "  0x08 revision          {:08x}{}",
        h.revision,
        if h.revision == 0x0001_0000 {
            " (1.0)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "  0x0C header size       {}", h.header_size);
    let _ = writeln!(
        out,
        "  0x10 header CRC32      stored {:08x} computed {:08x} {}",
        h.header_crc_stored,
        h.header_crc_computed,
        ok(h.header_crc_ok())
    );
    let _ = writeln!(
        out,
        "  0x18 current LBA       {}{}",
        h.my_lba,
        if h.my_lba != c.header_lba {
            "  (not where it was read!)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "  0x20 backup LBA        {}", h.alternate_lba);
    let _ = writeln!(out, "  0x28 first usable LBA  {}", h.first_usable_lba);
    let _ = writeln!(out, "  0x30 last usable LBA   {}", h.last_usable_lba);
    let _ = writeln!(out, "  0x38 disk GUID         {}", h.disk_guid);
    let _ = writeln!(out, "  0x48 entry array LBA   {}", h.entries_lba);
    let _ = writeln!(out, "  0x50 entries           {}", h.entry_count);
    let _ = writeln!(out, "  0x54 entry size        {}", h.entry_size);
    match c.entries_crc_computed {
        Some(crc) => {
            let _ = writeln!(
                out,
                "  0x58 array CRC32       stored {:08x} computed {crc:08x} {}",
                h.entries_crc_stored,
                ok(c.array_crc_ok())
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  0x58 array CRC32       stored {:08x}; {}",
                h.entries_crc_stored,
                c.array_error.as_deref().unwrap_or("array unreadable")
            );
            return;
        }
    }
    let array_sectors = h.array_bytes().div_ceil(ss.max(1));
    let _ = writeln!(
        out,
        "{name} entry array at LBA {}-{}: {} of {} slots used ({} entries per sector)",
        h.entries_lba,
        (h.entries_lba + array_sectors).saturating_sub(1),
        c.entries.len(),
        h.entry_count,
        (ss / u64::from(h.entry_size.max(1))).max(1)
    );
    let _ = writeln!(out, "  slot  first LBA     last LBA      size        type                        name / unique GUID / attributes");
    let mut slot = 1u32;
    let mut iter = c.entries.iter().peekable();
    while slot <= h.entry_count {
        match iter.peek() {
            Some(e) if e.slot == slot => {
                let _ = writeln!(
                    out,
                    "  {:>4}  {:>12}  {:>12}  {:>10}  {:<26}  \"{}\" {}{}",
                    e.slot,
                    e.first_lba,
                    e.last_lba,
                    screen::human_size(e.sectors().saturating_mul(ss)),
                    e.type_name
                        .map(String::from)
                        .unwrap_or_else(|| e.type_guid.to_string()),
                    e.name,
                    e.unique_guid,
                    if e.attributes != 0 {
                        format!(" attrs {}", attr_text(e.attributes, e.class()))
                    } else {
                        String::new()
                    }
                );
                iter.next();
                slot += 1;
            }
            next => {
                // A run of empty slots up to the next used one (or the end).
                let end = next.map(|e| e.slot - 1).unwrap_or(h.entry_count);
                if end == slot {
                    let _ = writeln!(out, "  {slot:>4}  (empty)");
                } else if next.is_some() {
                    let _ = writeln!(
                        out,
                        "  {slot:>4}  (empty) .. {end} (empty): {} empty slots",
                        end - slot + 1
                    );
                } else {
                    let _ = writeln!(out, "  slots {slot}..{end} empty");
                }
                slot = end + 1;
            }
        }
    }
    let mut by_disk: Vec<&crate::Entry> = c.entries.iter().collect();
    by_disk.sort_by_key(|e| (e.first_lba, e.slot));
    let order: Vec<String> = by_disk.iter().map(|e| e.slot.to_string()).collect();
    let _ = writeln!(
        out,
        "  disk order (by first LBA): slots {}",
        order.join(", ")
    );
    let mut gaps = Vec::new();
    let mut next_free = h.first_usable_lba;
    for e in &by_disk {
        if e.first_lba > next_free {
            gaps.push(format!(
                "{}-{} ({})",
                next_free,
                e.first_lba - 1,
                screen::human_size((e.first_lba - next_free).saturating_mul(ss))
            ));
        }
        next_free = next_free.max(e.last_lba.saturating_add(1));
    }
    if h.last_usable_lba >= next_free {
        gaps.push(format!(
            "{}-{} ({})",
            next_free,
            h.last_usable_lba,
            screen::human_size(
                (h.last_usable_lba - next_free)
                    .saturating_add(1)
                    .saturating_mul(ss)
            )
        ));
    }
    if !gaps.is_empty() {
        let _ = writeln!(out, "  free space (LBA): {}", gaps.join(", "));
    }
}

fn differences(v: &GptView) -> Vec<String> {
    let (Ok(p), Ok(b)) = (&v.primary, &v.backup) else {
        return vec!["only one copy is readable".into()];
    };
    let mut d = Vec::new();
    let (hp, hb) = (&p.header, &b.header);
    for (name, a, bb) in [
        (
            "revision",
            format!("{:08x}", hp.revision),
            format!("{:08x}", hb.revision),
        ),
        (
            "header size",
            hp.header_size.to_string(),
            hb.header_size.to_string(),
        ),
        (
            "first usable LBA",
            hp.first_usable_lba.to_string(),
            hb.first_usable_lba.to_string(),
        ),
        (
            "last usable LBA",
            hp.last_usable_lba.to_string(),
            hb.last_usable_lba.to_string(),
        ),
        (
            "disk GUID",
            hp.disk_guid.to_string(),
            hb.disk_guid.to_string(),
        ),
        (
            "entries",
            hp.entry_count.to_string(),
            hb.entry_count.to_string(),
        ),
        (
            "entry size",
            hp.entry_size.to_string(),
            hb.entry_size.to_string(),
        ),
        (
            "array CRC32 (stored)",
            format!("{:08x}", hp.entries_crc_stored),
            format!("{:08x}", hb.entries_crc_stored),
        ),
    ] {
        if a != bb {
            d.push(format!("{name}: primary {a}, backup {bb}"));
        }
    }
    if hp.alternate_lba != b.header_lba {
        d.push(format!(
            "the primary points at a backup at LBA {}, the backup was read at LBA {}",
            hp.alternate_lba, b.header_lba
        ));
    }
    if hb.alternate_lba != 1 {
        d.push(format!(
            "the backup's backup LBA (0x20) is {}, expected 1",
            hb.alternate_lba
        ));
    }
    if p.raw_array != b.raw_array {
        let size = hp.entry_size.max(1) as usize;
        let n = p.raw_array.len().max(b.raw_array.len()) / size;
        for i in 0..n {
            let (x, y) = (
                p.raw_array.get(i * size..(i + 1) * size),
                b.raw_array.get(i * size..(i + 1) * size),
            );
            if x != y {
                let desc = |c: &TableCopy| {
                    c.entries
                        .iter()
                        .find(|e| e.slot as usize == i + 1)
                        .map(|e| {
                            format!(
                                "{} {}-{}",
                                e.type_name.unwrap_or("unknown type"),
                                e.first_lba,
                                e.last_lba
                            )
                        })
                        .unwrap_or_else(|| "empty".into())
                };
                d.push(format!(
                    "slot {}: primary {}, backup {}",
                    i + 1,
                    desc(p),
                    desc(b)
                ));
            }
        }
    }
    d
}

pub fn render_show(v: &GptView) -> String {
    let mut out = String::new();
    let ss = u64::from(v.sector_size);
    let _ = writeln!(
        out,
        "Disk: {} bytes, {} sectors of {} bytes (last LBA {})",
        v.disk_sectors.saturating_mul(ss),
        v.disk_sectors,
        v.sector_size,
        v.disk_sectors.saturating_sub(1)
    );
    let _ = writeln!(
        out,
        "MBR (LBA 0): {:?}, boot signature 55AA {}, disk signature {:08x}",
        v.mbr.kind,
        if v.mbr.boot_signature {
            "present"
        } else {
            "missing"
        },
        v.mbr.disk_signature
    );
    for e in &v.mbr.entries {
        let _ = writeln!(
            out,
            "  entry {} type {:#04x}{}{} first LBA {} sectors {}",
            e.index,
            e.kind,
            if e.kind == 0xEE {
                " (GPT protective)"
            } else {
                ""
            },
            if e.bootable { " boot" } else { "" },
            e.first_lba,
            e.sectors
        );
    }
    render_copy(&mut out, "Primary", &v.primary, v.sector_size);
    render_copy(&mut out, "Backup", &v.backup, v.sector_size);
    let d = differences(v);
    if d.is_empty() {
        let _ = writeln!(
            out,
            "Primary and backup: identical apart from their location fields"
        );
    } else {
        let _ = writeln!(out, "Primary and backup differ:");
        for x in d {
            let _ = writeln!(out, "  {x}");
        }
    }
    out
}
