//! Finding the VMFS partition on a disk or image (GPT, MBR, or none) and
//! presenting it as its own block device.

use crate::error::{Error, Result};
use crate::fs::{FS_DESC_OFFSET, FS_MAGIC, FS_MAGIC_LOCAL};
use crate::lvm::{LVM_HEADER_OFFSET, LVM_MAGIC};
use blockdev::BlockDevice;
use std::sync::Arc;

/// GPT partition type of VMFS, as stored on disk (mixed-endian form of
/// AA31E02A-400F-11DB-9590-000C2911D1B8).
pub const GPT_TYPE_VMFS: [u8; 16] = [
    0x2A, 0xE0, 0x31, 0xAA, 0x0F, 0x40, 0xDB, 0x11, 0x95, 0x90, 0x00, 0x0C, 0x29, 0x11, 0xD1, 0xB8,
];
/// MBR partition type of VMFS.
pub const MBR_TYPE_VMFS: u8 = 0xFB;

use blockdev::Slice;

/// What kind of VMFS start sits at the beginning of a device.
fn looks_like_vmfs(dev: &dyn BlockDevice, base: u64) -> bool {
    let mut m = [0u8; 4];
    if dev.read_exact_at(&mut m, base + LVM_HEADER_OFFSET).is_ok()
        && u32::from_le_bytes(m) == LVM_MAGIC
    {
        return true;
    }
    dev.read_exact_at(&mut m, base + FS_DESC_OFFSET).is_ok()
        && matches!(u32::from_le_bytes(m), FS_MAGIC | FS_MAGIC_LOCAL)
}

/// A partition found on a disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    pub offset: u64,
    pub len: u64,
    /// "gpt", "mbr" or "whole".
    pub table: &'static str,
    pub index: usize,
}

/// VMFS partitions of `dev`: the device itself if VMFS starts at 0, else
/// GPT entries of the VMFS type (or any entry with VMFS inside), else MBR
/// entries of type 0xFB (or with VMFS inside).
pub fn find_vmfs(dev: &dyn BlockDevice) -> Vec<Found> {
    if looks_like_vmfs(dev, 0) {
        return vec![Found {
            offset: 0,
            len: dev.size(),
            table: "whole",
            index: 0,
        }];
    }
    let mut out = gpt_parts(dev);
    if out.is_empty() {
        out = mbr_parts(dev);
    }
    out
}

/// GPT entries of the VMFS type, then others with VMFS inside, read by the
/// gpt crate: the primary table, or the backup when the primary is
/// unreadable or holds no VMFS (CRCs are not required: a damaged table that
/// still names the partition is what a rescue needs).
fn gpt_parts(dev: &dyn BlockDevice) -> Vec<Found> {
    let view = gpt::read(dev);
    let ss = u64::from(view.sector_size);
    for copy in [&view.primary, &view.backup].into_iter().flatten() {
        let mut typed = Vec::new();
        let mut by_content = Vec::new();
        for e in &copy.entries {
            if e.last_lba < e.first_lba {
                continue;
            }
            let (Some(offset), Some(len)) = (
                e.first_lba.checked_mul(ss),
                (e.last_lba - e.first_lba + 1).checked_mul(ss),
            ) else {
                continue;
            };
            let f = Found {
                offset,
                len,
                table: "gpt",
                index: e.slot as usize,
            };
            if e.type_guid.0 == GPT_TYPE_VMFS {
                typed.push(f);
            } else if looks_like_vmfs(dev, offset) {
                by_content.push(f);
            }
        }
        typed.extend(by_content);
        if !typed.is_empty() {
            return typed;
        }
    }
    Vec::new()
}

/// MBR entries of type 0xFB, or of another type with VMFS inside.
fn mbr_parts(dev: &dyn BlockDevice) -> Vec<Found> {
    let mbr = gpt::mbr::read(dev);
    mbr.entries
        .iter()
        .filter(|e| e.sectors != 0 && e.kind != gpt::layout::mbr::PROTECTIVE_TYPE)
        .filter_map(|e| {
            let offset = u64::from(e.first_lba) * 512;
            (e.kind == MBR_TYPE_VMFS || looks_like_vmfs(dev, offset)).then(|| Found {
                offset,
                len: u64::from(e.sectors) * 512,
                table: "mbr",
                index: usize::from(e.index),
            })
        })
        .collect()
}

/// An opened source: the VMFS device and where it starts on `path`.
pub struct Opened {
    pub dev: Box<dyn BlockDevice>,
    pub path: String,
    pub offset: u64,
}

/// Opens a source path: the device itself when VMFS starts at its first
/// byte, else the VMFS partitions found on it; `offset` forces a start.
/// `bad` (from a ddrescue mapfile, in source coordinates) makes reads in
/// those areas fail as on a failing disk.
pub fn open_source(
    path: &str,
    offset: Option<u64>,
    bad: Option<&crate::damage::Ranges>,
) -> Result<Vec<Opened>> {
    let dev = blockdev::Device::open(path).map_err(|e| Error::io(format!("opening {path}"), e))?;
    let mut dev: Arc<dyn BlockDevice> = Arc::new(dev);
    if let Some(b) = bad {
        dev = Arc::new(crate::damage::BadAreaDevice::new(dev, b.clone()));
    }
    let found = match offset {
        Some(off) => vec![Found {
            offset: off,
            len: dev.size().saturating_sub(off),
            table: "offset",
            index: 0,
        }],
        None => find_vmfs(dev.as_ref()),
    };
    if found.is_empty() {
        return Err(Error::NotFound(format!(
            "{path}: no VMFS found (no LVM header at 1 MiB, no FS descriptor at 2 MiB, no VMFS partition in GPT or MBR)"
        )));
    }
    Ok(found
        .into_iter()
        .map(|f| Opened {
            dev: Box::new(Slice::new(dev.clone(), f.offset, f.len)),
            path: path.to_string(),
            offset: f.offset,
        })
        .collect())
}

/// The LVM volume UUID of a VMFS device and how many devices the volume
/// spans, if it has an LVM header.
pub fn volume_of(dev: &dyn BlockDevice) -> Option<(String, u32)> {
    crate::detect(dev)
        .and_then(|s| s.lvm)
        .map(|l| (l.volume_uuid, l.num_devices))
}

/// VMFS devices of LVM volume `volume_uuid` on the disks under `sys`/block
/// (through `dev_dir` nodes), other than the `(path, offset)` ones in
/// `known`: how the appliance finds a spanned volume's other extents
/// without `--extent`. Devices that cannot be opened are passed over.
pub fn find_extents(
    sys: &std::path::Path,
    dev_dir: &std::path::Path,
    volume_uuid: &str,
    known: &[(String, u64)],
) -> Vec<Opened> {
    let mut out = Vec::new();
    for disk in blockdev::sys::system_disks(sys) {
        let path = dev_dir.join(&disk).display().to_string();
        let Ok(found) = open_source(&path, None, None) else {
            continue;
        };
        for o in found {
            let same_place = known
                .iter()
                .any(|(p, off)| *off == o.offset && same_file(p, &o.path));
            if !same_place && volume_of(o.dev.as_ref()).is_some_and(|(u, _)| u == volume_uuid) {
                out.push(o);
            }
        }
    }
    out
}

/// Whether two paths name the same file or device node.
fn same_file(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            (x.dev(), x.ino()) == (y.dev(), y.ino()) || (x.rdev() != 0 && x.rdev() == y.rdev())
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    fn disk_with_gpt(type_guid: [u8; 16], sector: usize) -> Vec<u8> {
        let mut d = vec![0u8; 8 << 20];
        let h = sector;
        d[h..h + 8].copy_from_slice(b"EFI PART");
        d[h + 0x0C..h + 0x10].copy_from_slice(&92u32.to_le_bytes());
        d[h + 0x48..h + 0x50].copy_from_slice(&2u64.to_le_bytes());
        d[h + 0x50..h + 0x54].copy_from_slice(&128u32.to_le_bytes());
        d[h + 0x54..h + 0x58].copy_from_slice(&128u32.to_le_bytes());
        let e = 2 * sector + 128; // second entry
        d[e..e + 16].copy_from_slice(&type_guid);
        let first = (1u64 << 20) / sector as u64;
        d[e + 0x20..e + 0x28].copy_from_slice(&first.to_le_bytes());
        d[e + 0x28..e + 0x30].copy_from_slice(&((8u64 << 20) / sector as u64 - 1).to_le_bytes());
        d
    }

    #[test]
    fn finds_vmfs_partition_in_gpt_by_type() {
        for ss in [512usize, 4096] {
            let d = disk_with_gpt(GPT_TYPE_VMFS, ss);
            let f = find_vmfs(&MemDevice::new(d, ss as u32));
            assert_eq!(
                f,
                vec![Found {
                    offset: 1 << 20,
                    len: 7 << 20,
                    table: "gpt",
                    index: 2
                }]
            );
        }
    }

    #[test]
    fn finds_vmfs_by_content_when_type_is_other() {
        let mut d = disk_with_gpt([1; 16], 512);
        let lvm = (1 << 20) + LVM_HEADER_OFFSET as usize;
        d.resize(lvm + 4096, 0);
        d[lvm..lvm + 4].copy_from_slice(&LVM_MAGIC.to_le_bytes());
        let f = find_vmfs(&MemDevice::new(d, 512));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].offset, 1 << 20);
        // Nothing at all.
        assert!(find_vmfs(&MemDevice::new(vec![0u8; 4 << 20], 512)).is_empty());
    }

    #[test]
    fn mbr_type_fb() {
        let mut d = vec![0u8; 4 << 20];
        d[510] = 0x55;
        d[511] = 0xAA;
        let e = 446;
        d[e + 4] = MBR_TYPE_VMFS;
        d[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
        d[e + 12..e + 16].copy_from_slice(&4096u32.to_le_bytes());
        let f = find_vmfs(&MemDevice::new(d, 512));
        assert_eq!(f[0].offset, 2048 * 512);
        assert_eq!(f[0].table, "mbr");
    }
}
