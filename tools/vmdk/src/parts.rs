//! The partitions inside a VM disk (GPT, else MBR) with what each holds:
//! a filesystem, an LVM physical volume, an md member. So nobody has to
//! work out `mount -o loop,offset=...` by hand again.

use blockdev::{BlockDevice, Slice};
use serde::Serialize;
use std::sync::Arc;

/// One partition of the virtual disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// The partition number (GPT slot, MBR entry 1-4).
    pub number: u32,
    /// Byte offset in the virtual disk.
    pub start: u64,
    pub size: u64,
    /// "EFI system", "Linux filesystem", "0x83", ...
    pub type_name: String,
    /// GPT partition name.
    pub name: String,
    /// What it holds: `ext4 "root"`, `LVM2 PV`, `md raid1 member (DiskStation:2)`.
    pub contents: Option<String>,
}

/// The partition table found and its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partitions {
    /// "gpt", "mbr" or "none".
    pub table: &'static str,
    pub partitions: Vec<Partition>,
    /// What the whole disk holds when there is no table (a filesystem
    /// written to the whole disk).
    pub whole_disk: Option<String>,
    /// GPT problems worth knowing (a damaged primary read from the backup).
    pub notes: Vec<String>,
}

/// Reads the partition table of `disk` and looks into each partition.
pub fn partitions(disk: Arc<dyn BlockDevice>) -> Partitions {
    let view = gpt::read(disk.as_ref());
    let ss = u64::from(view.sector_size);
    let mut notes = Vec::new();
    let copy = match (&view.primary, &view.backup) {
        (Ok(p), _) => Some(p),
        (Err(e), Ok(b)) => {
            notes.push(format!("primary GPT unreadable ({e}); the backup is read"));
            Some(b)
        }
        _ => None,
    };
    if let Some(copy) = copy {
        let partitions = copy
            .entries
            .iter()
            .filter(|e| e.last_lba >= e.first_lba)
            .map(|e| {
                let start = e.first_lba.saturating_mul(ss);
                let size = e.sectors().saturating_mul(ss);
                Partition {
                    number: e.slot,
                    start,
                    size,
                    type_name: e
                        .type_name
                        .map(str::to_string)
                        .unwrap_or_else(|| e.type_guid.to_string()),
                    name: e.name.clone(),
                    contents: contents(&Slice::new(disk.clone(), start, size)),
                }
            })
            .collect();
        return Partitions {
            table: "gpt",
            partitions,
            whole_disk: None,
            notes,
        };
    }
    let mbr = gpt::mbr::read(disk.as_ref());
    if mbr.kind == gpt::mbr::MbrKind::Classic {
        let partitions = mbr
            .entries
            .iter()
            .map(|e| {
                let start = u64::from(e.first_lba) * 512;
                let size = u64::from(e.sectors) * 512;
                Partition {
                    number: u32::from(e.index),
                    start,
                    size,
                    type_name: format!("{:#04x}", e.kind),
                    name: String::new(),
                    contents: contents(&Slice::new(disk.clone(), start, size)),
                }
            })
            .collect();
        return Partitions {
            table: "mbr",
            partitions,
            whole_disk: None,
            notes,
        };
    }
    Partitions {
        table: "none",
        partitions: Vec::new(),
        whole_disk: contents(disk.as_ref()),
        notes,
    }
}

/// What a device holds, in a few words; None when nothing is recognised.
pub fn contents(dev: &dyn BlockDevice) -> Option<String> {
    if let Ok(Some(sb)) = mdraid::find_superblock(dev) {
        return Some(format!(
            "md {} member{}",
            sb.level_name(),
            sb.name.map(|n| format!(" ({n})")).unwrap_or_default()
        ));
    }
    fsmagic::detect(dev).map(|s| match s.label {
        Some(l) => format!("{} \"{l}\"", s.kind.name()),
        None => s.kind.name().to_string(),
    })
}
