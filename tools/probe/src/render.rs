//! Plain-ASCII views of disks for an 80-column serial console.

use crate::Disk;
use std::fmt::Write;

pub use screen::{decimal_size, human_size, plural, wrap_text, wrap_words, SCREEN_WIDTH};

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars().take(width.saturating_sub(1)).collect::<String>() + "~"
    }
}

/// Synology DSM's signature on one disk: partitions 1 and 2 are RAID-1
/// members with 0.90 superblocks (the system and swap arrays DSM puts on
/// every disk); `md scan` then groups the disks into their arrays.
fn is_dsm_disk(d: &Disk) -> bool {
    let raid1_090 = |n: u32| {
        d.partitions.iter().any(|p| {
            p.number == Some(n)
                && p.contents
                    .as_ref()
                    .and_then(|c| c.md_member.as_ref())
                    .is_some_and(|m| m.version == "0.90" && m.level == "raid1")
        })
    };
    raid1_090(1) && raid1_090(2)
}

/// A few words on what a disk holds: the whole-disk signature, or its
/// partitions' contents, e.g. `7 parts: FAT16 x3, vfat, md raid1 member`.
pub fn contents_summary(d: &Disk) -> String {
    let flag = match &d.partition_table {
        Some(t) if t.problems > 0 => "GPT! ",
        _ => "",
    };
    format!("{flag}{}", contents_text(d))
}

fn contents_text(d: &Disk) -> String {
    if d.no_medium {
        return "no medium".into();
    }
    if let Some(layout) = d.partition_table.as_ref().and_then(|t| t.layout.as_deref()) {
        // Short for the overview: "ESXi 5.x/6.x boot disk" -> "ESXi 5/6 boot",
        // "... boot disk (entries compacted)" -> "ESXi 5/6 compacted".
        let layout = layout
            .replace(".x", "")
            .replace(" boot disk (entries compacted)", " compacted")
            .replace(" boot disk", " boot");
        // The build from the boot bank is more precise than the layout's era.
        let layout = match d.esxi.as_ref().and_then(|e| e.version()) {
            Some(v) => layout.replace("5/6", v).replace("7/8", v),
            None => layout,
        };
        let datastores: Vec<String> = d
            .partitions
            .iter()
            .filter_map(|p| p.contents.as_ref().and_then(|c| c.short()))
            .filter(|s| s.starts_with("VMFS"))
            .collect();
        // A compacted table is the urgent news and fills the column alone
        // (the detail view names the datastores); otherwise the layout's
        // " boot" makes room for them: 80 columns are tight.
        return if datastores.is_empty() || layout.ends_with(" compacted") {
            layout
        } else {
            format!(
                "{}, {}",
                layout.trim_end_matches(" boot"),
                datastores.join(", ")
            )
        };
    }
    if let Some(s) = d.contents.as_ref().and_then(|c| c.short()) {
        return s;
    }
    if d.partitions.is_empty() {
        return if d.contents.is_some() {
            "no known signature".into()
        } else {
            "-".into()
        };
    }
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for p in &d.partitions {
        if let Some(s) = p.contents.as_ref().and_then(|c| c.short()) {
            match kinds.iter_mut().find(|(k, _)| *k == s) {
                Some((_, n)) => *n += 1,
                None => kinds.push((s, 1)),
            }
        }
    }
    let list: Vec<String> = kinds
        .into_iter()
        .map(|(k, n)| if n > 1 { format!("{k} x{n}") } else { k })
        .collect();
    if is_dsm_disk(d) {
        return format!("Synology DSM: {}", list.join(", "));
    }
    if list.is_empty() {
        format!("{} parts", d.partitions.len())
    } else {
        format!("{} parts: {}", d.partitions.len(), list.join(", "))
    }
}

/// One line per disk, numbered from 1, fitting 80 columns.
pub fn overview(disks: &[Disk]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        " #  {:<8} {:>9} {:<14} {:<7} {:<7} CONTENTS",
        "DISK", "SIZE", "MODEL", "BUS", "HEALTH"
    );
    for (i, d) in disks.iter().enumerate() {
        let model = match (&d.vendor, &d.model) {
            (Some(v), Some(m)) if !m.starts_with(v.as_str()) && v != "ATA" => format!("{v} {m}"),
            (_, Some(m)) => m.clone(),
            (Some(v), None) => v.clone(),
            (None, None) => "-".into(),
        };
        let health = d.health.as_ref().map(|h| h.verdict.label()).unwrap_or("-");
        let mut contents = contents_summary(d);
        if !d.read_only {
            contents = format!("WRITABLE {contents}");
        }
        let _ = writeln!(
            out,
            // 79 columns with 25 for the contents.
            "{:>2}  {:<8} {:>9} {:<14} {:<7} {:<7} {}",
            i + 1,
            cut(&d.name, 8),
            if d.no_medium {
                "-".to_string()
            } else {
                human_size(d.size_bytes)
            },
            cut(&model, 14),
            d.transport.label(),
            health,
            cut(&contents, 25)
        );
    }
    if disks.is_empty() {
        out.push_str("    (no disks found)\n");
    }
    // What an attached device serves is longer than the model column.
    for d in disks
        .iter()
        .filter(|d| d.transport == crate::Transport::Attached)
    {
        let what = d
            .model
            .as_deref()
            .unwrap_or("not attached by rescue attach");
        out.push_str(&wrap_words(
            &format!("    {}: {what}", d.name),
            SCREEN_WIDTH,
            8,
        ));
    }
    out
}

fn holds_text(h: &crate::contents::Holds) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &h.vmfs {
        let mut s = crate::contents::vmfs_short(v);
        if let Some(u) = &v.fs_uuid {
            s += &format!(" uuid {u}, block size {}", v.block_size);
        }
        if let Some(l) = &v.lvm {
            s += &format!(
                ", LVM volume {} on {}",
                l.volume_uuid,
                plural(u64::from(l.num_devices), "device", "devices")
            );
        }
        parts.push(s);
    }
    if let Some(f) = &h.filesystem {
        let mut s = f.kind.name().to_string();
        if let Some(l) = &f.label {
            s += &format!(" label \"{l}\"");
        }
        if let Some(u) = &f.uuid {
            s += &format!(" uuid {u}");
        }
        parts.push(s);
    }
    if let Some(m) = &h.md_member {
        parts.push(format!(
            "md {} member ({} superblock), array {}{}, {} devices, role {}, events {}{}",
            m.level,
            m.version,
            m.array_uuid,
            m.name
                .as_ref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default(),
            m.raid_disks,
            m.role
                .map(|r| r.to_string())
                .unwrap_or_else(|| m.role_state.to_string()),
            m.events,
            if m.checksum_ok { "" } else { ", CHECKSUM BAD" }
        ));
    }
    if let Some(p) = &h.problem {
        parts.push(format!("problem: {p}"));
    }
    if let Some(e) = &h.open_error {
        parts.push(format!("cannot open: {e}"));
    }
    if parts.is_empty() {
        "no known signature".into()
    } else {
        parts.join("; ")
    }
}

fn health_text(out: &mut String, h: &health::Health) {
    let _ = writeln!(
        out,
        "  {:<18} {} ({})",
        "health",
        h.verdict.label(),
        h.source
    );
    let mut facts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            facts.push(format!("{k} {v}"));
        }
    };
    add("reallocated", h.reallocated_sectors.map(|v| v.to_string()));
    add("pending", h.pending_sectors.map(|v| v.to_string()));
    add(
        "uncorrectable",
        h.uncorrectable_sectors.map(|v| v.to_string()),
    );
    add("media errors", h.media_errors.map(|v| v.to_string()));
    add("power-on hours", h.power_on_hours.map(|v| v.to_string()));
    add("temperature", h.temperature_c.map(|v| format!("{v} C")));
    add("used", h.percentage_used.map(|v| format!("{v}%")));
    add("spare", h.available_spare.map(|v| format!("{v}%")));
    if !facts.is_empty() {
        out.push_str(&wrap_words(
            &format!("  {:<18} {}", "", facts.join(", ")),
            SCREEN_WIDTH,
            21,
        ));
    }
    for f in &h.findings {
        out.push_str(&wrap_words(
            &format!("  {:<18} ! {f}", ""),
            SCREEN_WIDTH,
            23,
        ));
    }
}

/// One line naming every storage controller, flagging those without a
/// driver or without disks.
pub fn controllers(ctrls: &[crate::StorageController], disks: &[Disk]) -> String {
    if ctrls.is_empty() {
        return String::new();
    }
    let items: Vec<String> = ctrls
        .iter()
        .map(|c| {
            let has_disks = disks
                .iter()
                .any(|d| d.pci.as_ref().is_some_and(|p| p.slot == c.slot));
            let short = c.slot.strip_prefix("0000:").unwrap_or(&c.slot);
            match &c.driver {
                None => format!("{short} {} [{}] NO DRIVER", c.kind, c.id),
                Some(d) if !has_disks => format!("{short} {d} (no disks)"),
                Some(d) => format!("{short} {d}"),
            }
        })
        .collect();
    // Wrapped to 80 columns for serial consoles.
    let mut out = String::from("Controllers:");
    let mut col = out.len();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!(" {item},")
        } else {
            format!(" {item}")
        };
        if col + piece.len() > 79 {
            out.push('\n');
            col = 0;
        }
        out.push_str(&piece);
        col += piece.len();
    }
    out.push('\n');
    out
}

/// Everything known about one disk, one field per line.
pub fn detail(d: &Disk) -> String {
    let mut out = String::new();
    let unknown = "-".to_string();
    let field = |out: &mut String, k: &str, v: &str| {
        out.push_str(&wrap_words(&format!("  {k:<18} {v}"), SCREEN_WIDTH, 21));
    };
    let _ = writeln!(out, "Disk {} ({})", d.name, d.path);
    field(
        &mut out,
        "size",
        &format!(
            "{} bytes ({}, {})",
            d.size_bytes,
            human_size(d.size_bytes),
            decimal_size(d.size_bytes)
        ),
    );
    field(
        &mut out,
        "sectors",
        &format!(
            "logical {} B, physical {} B",
            d.logical_sector_size, d.physical_sector_size
        ),
    );
    field(&mut out, "vendor", d.vendor.as_ref().unwrap_or(&unknown));
    field(&mut out, "model", d.model.as_ref().unwrap_or(&unknown));
    field(
        &mut out,
        "serial",
        d.serial.as_deref().unwrap_or("(not reported)"),
    );
    field(
        &mut out,
        "firmware",
        d.firmware.as_ref().unwrap_or(&unknown),
    );
    field(&mut out, "wwn", d.wwn.as_ref().unwrap_or(&unknown));
    field(&mut out, "transport", d.transport.label());
    field(&mut out, "driver", d.driver.as_ref().unwrap_or(&unknown));
    if let Some(p) = &d.pci {
        field(
            &mut out,
            "controller",
            &format!(
                "PCI {} [{}] driver {}",
                p.slot,
                p.id.as_deref().unwrap_or("?"),
                p.driver.as_deref().unwrap_or("-")
            ),
        );
    }
    field(&mut out, "h:c:t:l", d.hctl.as_ref().unwrap_or(&unknown));
    field(
        &mut out,
        "rotational",
        match d.rotational {
            Some(true) => "yes",
            Some(false) => "no (SSD/flash or virtual)",
            None => "-",
        },
    );
    field(
        &mut out,
        "removable",
        if d.removable { "yes" } else { "no" },
    );
    field(
        &mut out,
        "read-only",
        if d.read_only {
            "yes (block layer)"
        } else {
            "NO: writable"
        },
    );
    field(
        &mut out,
        "I/O since boot",
        &format!(
            "{} reads, {} writes",
            d.io.reads_completed, d.io.writes_completed
        ),
    );
    if let Some(h) = &d.health {
        health_text(&mut out, h);
    }
    if let Some(c) = &d.contents {
        field(&mut out, "whole disk", &holds_text(c));
    }
    if let Some(t) = &d.partition_table {
        field(
            &mut out,
            "partition table",
            &format!(
                "{} (primary {}, backup {}){}{}",
                t.table.to_uppercase(),
                if t.primary_ok { "ok" } else { "DAMAGED" },
                if t.backup_ok { "ok" } else { "DAMAGED" },
                t.layout
                    .as_ref()
                    .map(|l| format!(", {l}"))
                    .unwrap_or_default(),
                if t.problems > 0 {
                    format!(
                        ", {}: see 'rescue gpt verify {}'",
                        plural(t.problems as u64, "finding", "findings"),
                        d.path
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    if let Some(e) = &d.esxi {
        field(
            &mut out,
            "ESXi boot banks",
            &format!(
                "bootbank {}, altbootbank {}",
                e.bootbank_build.as_deref().unwrap_or("unreadable"),
                e.altbootbank_build.as_deref().unwrap_or("unreadable")
            ),
        );
    }
    if d.partitions.is_empty() {
        field(&mut out, "partitions", "none seen by the kernel");
    } else {
        let _ = writeln!(out, "  partitions:");
        for p in &d.partitions {
            let line = format!(
                "    {:<10} start {:>13} size {:>10}{}  {}{}",
                p.name,
                p.start_bytes,
                human_size(p.size_bytes),
                if p.read_only { "  ro" } else { "  RW" },
                p.type_name
                    .as_ref()
                    .map(|t| format!("[{t}] "))
                    .unwrap_or_default(),
                p.contents.as_ref().map(holds_text).unwrap_or_default()
            );
            out.push_str(&wrap_words(&line, SCREEN_WIDTH, 15));
        }
    }
    for n in &d.notes {
        out.push_str(&wrap_words(&format!("  note: {n}"), SCREEN_WIDTH, 8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn long_lines_wrap_within_the_screen() {
        let line = format!("    sdb3       start 1 size 2  ro  {}", "word ".repeat(40));
        let wrapped = wrap_words(&line, SCREEN_WIDTH, 15);
        assert!(wrapped.lines().count() > 1);
        for l in wrapped.lines() {
            assert!(l.chars().count() <= SCREEN_WIDTH, "{l:?}");
        }
        assert!(wrapped
            .lines()
            .skip(1)
            .all(|l| l.starts_with(&" ".repeat(15))));
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words(&wrapped), words(&line));
        assert_eq!(wrap_words("  short", SCREEN_WIDTH, 4), "  short\n");
    }
    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(64 << 30), "64.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
        assert_eq!(decimal_size(128_035_676_160), "128.0 GB");
        assert_eq!(decimal_size(33_554_432), "33.6 MB");
        assert_eq!(decimal_size(999), "999 B");
    }
    #[test]
    fn cut_marks_truncation() {
        assert_eq!(cut("abcdef", 4), "abc~");
        assert_eq!(cut("abc", 4), "abc");
    }
}

#[cfg(test)]
mod controller_tests {
    use super::*;
    #[test]
    fn controller_line_wraps_at_80_columns() {
        let c: Vec<crate::StorageController> = (0..8)
            .map(|i| crate::StorageController {
                slot: format!("0000:00:0{i}.0"),
                id: "1000:0079".into(),
                class: "010400".into(),
                kind: "RAID",
                driver: Some("megaraid_sas".into()),
            })
            .collect();
        let text = controllers(&c, &[]);
        assert!(text.lines().count() > 1);
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        assert_eq!(text.matches("megaraid_sas").count(), 8);
    }
}
