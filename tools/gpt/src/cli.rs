//! `rescue gpt show|verify`: the table exactly as on disk, and findings.

use crate::verify::{self, Severity};
use crate::{GptView, TableCopy};
use argh::FromArgs;
use serde::Serialize;
use std::fmt::Write;

/// GPT: show both copies exactly as on disk (slots, gaps, CRCs) and verify them.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gpt")]
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
#[argh(subcommand, name = "show")]
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
/// slot layouts. Exit 0 clean, 1 findings, 2 error.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify")]
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
    view: &'a GptView,
    findings: &'a [verify::Finding],
}

pub fn run(cmd: GptCommand) -> i32 {
    let (target, json, show) = match cmd.action {
        Action::Show(c) => (c.target, c.json, true),
        Action::Verify(c) => (c.target, c.json, false),
        Action::Repair(c) => return crate::repair_cli::run_repair(c),
        Action::Undo(c) => return crate::repair_cli::run_undo(c),
    };
    let dev = match blockdev::Device::open(&target) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpt: {e}");
            return 2;
        }
    };
    let view = crate::read(&dev);
    let findings = verify::verify(&view);
    if json {
        let r = Report { view: &view, findings: &findings };
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("gpt: {e}");
                return 2;
            }
        }
    } else {
        if show {
            print!("{}", render_show(&view));
        }
        print!("{}", render_findings(&findings));
    }
    if findings.iter().any(|f| f.severity >= Severity::Warning) {
        1
    } else {
        0
    }
}

pub fn render_findings(findings: &[verify::Finding]) -> String {
    let mut out = String::new();
    let serious = findings.iter().filter(|f| f.severity >= Severity::Warning).count();
    let _ = writeln!(out, "Findings: {}", if serious == 0 { "none".to_string() } else { serious.to_string() });
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
            Severity::Info => "info ",
        };
        let _ = writeln!(out, "  {tag} [{}] {}", f.code, f.message);
    }
    out
}

fn render_copy(out: &mut String, name: &str, c: &Result<TableCopy, crate::GptError>, sector_size: u32) {
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "{name} header: unusable: {e}");
            return;
        }
    };
    let h = &c.header;
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let _ = writeln!(out, "{name} header at LBA {} (byte {}):", c.header_lba, c.header_lba * u64::from(sector_size));
    let _ = writeln!(out, "  0x08 revision          {:08x}", h.revision);
    let _ = writeln!(out, "  0x0C header size       {}", h.header_size);
    let _ = writeln!(out, "  0x10 header CRC32      stored {:08x} computed {:08x} {}", h.header_crc_stored, h.header_crc_computed, ok(h.header_crc_ok()));
    let _ = writeln!(out, "  0x18 current LBA       {}", h.my_lba);
    let _ = writeln!(out, "  0x20 backup LBA        {}", h.alternate_lba);
    let _ = writeln!(out, "  0x28 first usable LBA  {}", h.first_usable_lba);
    let _ = writeln!(out, "  0x30 last usable LBA   {}", h.last_usable_lba);
    let _ = writeln!(out, "  0x38 disk GUID         {}", h.disk_guid);
    let _ = writeln!(out, "  0x48 entry array LBA   {}", h.entries_lba);
    let _ = writeln!(out, "  0x50 entries           {}", h.entry_count);
    let _ = writeln!(out, "  0x54 entry size        {}", h.entry_size);
    match c.entries_crc_computed {
        Some(crc) => {
            let _ = writeln!(out, "  0x58 array CRC32       stored {:08x} computed {crc:08x} {}", h.entries_crc_stored, ok(c.array_crc_ok()));
        }
        None => {
            let _ = writeln!(out, "  0x58 array CRC32       stored {:08x}; {}", h.entries_crc_stored, c.array_error.as_deref().unwrap_or("array unreadable"));
        }
    }
    let _ = writeln!(out, "  slot  first LBA     last LBA      size        type                      name");
    let max_used = c.entries.iter().map(|e| e.slot).max().unwrap_or(0);
    for slot in 1..=max_used {
        match c.entries.iter().find(|e| e.slot == slot) {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "  {:>4}  {:>12}  {:>12}  {:>10}  {:<24}  {}{}",
                    e.slot,
                    e.first_lba,
                    e.last_lba,
                    human(e.sectors().saturating_mul(u64::from(sector_size))),
                    e.type_name.map(String::from).unwrap_or_else(|| e.type_guid.to_string()),
                    e.name,
                    if e.attributes != 0 { format!(" attrs {:#x}", e.attributes) } else { String::new() }
                );
            }
            None => {
                let _ = writeln!(out, "  {slot:>4}  (empty)");
            }
        }
    }
    let _ = writeln!(out, "  slots {}..{} empty", max_used + 1, h.entry_count);
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[u]) }
}

pub fn render_show(v: &GptView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Disk: {} sectors of {} bytes (last LBA {})", v.disk_sectors, v.sector_size, v.disk_sectors.saturating_sub(1));
    let _ = writeln!(out, "MBR: {:?}", v.mbr.kind);
    for e in &v.mbr.entries {
        let _ = writeln!(out, "  entry {} type {:#04x}{} first LBA {} sectors {}", e.index, e.kind, if e.bootable { " boot" } else { "" }, e.first_lba, e.sectors);
    }
    render_copy(&mut out, "Primary", &v.primary, v.sector_size);
    render_copy(&mut out, "Backup", &v.backup, v.sector_size);
    out
}
