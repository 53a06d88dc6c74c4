//! One member's superblock in full, like `mdadm --examine`.

use crate::layout::{layout_name, Geometry};
use crate::superblock::Superblock;
use serde::Serialize;
use std::fmt::Write;

/// What `examine --json` prints: the superblock plus derived values.
#[derive(Serialize)]
pub struct Examined<'a> {
    pub device: &'a str,
    pub device_bytes: u64,
    pub superblock: &'a Superblock,
    pub checksum_ok: bool,
    pub level_name: String,
    pub layout_name: String,
    pub array_bytes: Option<u64>,
    /// Geometry problems (impossible chunk, layout...).
    pub geometry_error: Option<String>,
}

pub fn examined<'a>(device: &'a str, device_bytes: u64, sb: &'a Superblock) -> Examined<'a> {
    let geo = Geometry::from_superblock(sb);
    Examined {
        device,
        device_bytes,
        superblock: sb,
        checksum_ok: sb.checksum_ok(),
        level_name: sb.level_name(),
        layout_name: layout_name(sb.level, sb.layout),
        array_bytes: geo.as_ref().ok().map(|g| g.array_bytes()),
        geometry_error: geo.err().map(|e| e.to_string()),
    }
}

fn time(t: u64) -> String {
    format!("{} ({t})", civiltime::format_utc(t))
}

fn sectors(b: u64) -> String {
    format!("{} sectors ({} bytes)", b / 512, b)
}

/// Human-readable examine output.
pub fn render(e: &Examined<'_>) -> String {
    let sb = e.superblock;
    let mut o = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(o, "{k:>22} : {v}");
    };
    line("Device", e.device.to_string());
    line("Magic", "a92b4efc".into());
    line("Version", sb.version.to_string());
    line("Superblock offset", format!("byte {}", sb.offset));
    if sb.version != "0.90" {
        line("Feature Map", format!("{:#x}", sb.feature_map));
    }
    line("Array UUID", sb.array_uuid.clone());
    if let Some(n) = &sb.name {
        line("Name", n.clone());
    }
    line("Creation Time", time(sb.ctime));
    line("Update Time", time(sb.utime));
    line("Raid Level", e.level_name.clone());
    line("Raid Devices", sb.raid_disks.to_string());
    if matches!(sb.level, 4 | 5 | 6 | 10) {
        line("Layout", format!("{} ({})", e.layout_name, sb.layout));
    }
    if sb.chunk_bytes > 0 {
        line("Chunk Size", format!("{}K", sb.chunk_bytes / 1024));
    }
    line("Used Dev Size", sectors(sb.component_bytes));
    if sb.version != "0.90" {
        line("Avail Dev Size", sectors(sb.data_size_bytes));
        line("Data Offset", sectors(sb.data_offset_bytes));
    }
    line("Device Size", format!("{} bytes", e.device_bytes));
    match e.array_bytes {
        Some(a) => line("Array Size", sectors(a)),
        None => line("Array Size", "-".into()),
    }
    if let Some(g) = &e.geometry_error {
        line("Geometry", format!("INVALID: {g}"));
    }
    if let Some(u) = &sb.device_uuid {
        line("Device UUID", u.clone());
    }
    line("Events", sb.events.to_string());
    line(
        "State",
        if sb.clean {
            "clean".into()
        } else {
            match sb.resync_offset {
                Some(r) => format!("active (resync from sector {r})"),
                None => "active".into(),
            }
        },
    );
    if let Some(b) = sb.bitmap_offset {
        line("Internal Bitmap", format!("{b} sectors from superblock"));
    }
    if let Some(r) = sb.recovery_offset {
        line("Recovery Offset", format!("{r} sectors"));
    }
    if let Some((off, len)) = sb.bad_block_log {
        line(
            "Bad Block Log",
            format!("{len} entries at offset {off} sectors"),
        );
    }
    if let Some(r) = &sb.reshape {
        line(
            "Reshape",
            format!(
                "at sector {}, new level {}, delta disks {}, new layout {}, new chunk {}K",
                r.position_sectors,
                r.new_level,
                r.delta_disks,
                r.new_layout,
                r.new_chunk_bytes / 1024
            ),
        );
    }
    line(
        "Checksum",
        format!(
            "{:x} - {}",
            sb.checksum_stored,
            if sb.checksum_ok() {
                "correct".to_string()
            } else {
                format!("WRONG, expected {:x}", sb.checksum_computed)
            }
        ),
    );
    line(
        "Device Role",
        match sb.role {
            Some(r) => format!("Active device {r}"),
            None => sb.role_state.to_string(),
        },
    );
    if let Some(c) = &sb.counts_090 {
        line("Preferred Minor", c.md_minor.to_string());
        line("Total Devices", c.nr_disks.to_string());
        line(
            "Counts",
            format!(
                "active {}, working {}, failed {}, spare {}",
                c.active, c.working, c.failed, c.spare
            ),
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "      Number   Major   Minor   RaidDevice State");
        for d in &sb.devices {
            let (ma, mi) = d.major_minor.unwrap_or((0, 0));
            let _ = writeln!(
                o,
                "   {:>9} {:>7} {:>7} {:>12} {} ({:#x})",
                d.number,
                ma,
                mi,
                d.role.map(|r| r.to_string()).unwrap_or("-".into()),
                d.state,
                d.state_bits.unwrap_or(0)
            );
        }
    } else {
        // Array state as mdadm prints it: A active, . missing, per role.
        let mut st = vec!['.'; sb.raid_disks.min(4096) as usize];
        for d in &sb.devices {
            if let Some(r) = d.role {
                if let Some(c) = st.get_mut(r as usize) {
                    *c = 'A';
                }
            }
        }
        line("Array State", st.into_iter().collect());
        let _ = writeln!(o);
        let _ = writeln!(o, "  Device table (dev_roles, max_dev {}):", sb.max_dev);
        for d in &sb.devices {
            let _ = writeln!(
                o,
                "    device {:>4}: {}",
                d.number,
                match d.role {
                    Some(r) => format!("role {r}"),
                    None => d.state.to_string(),
                }
            );
        }
    }
    o
}
