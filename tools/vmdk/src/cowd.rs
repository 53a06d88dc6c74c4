//! Reader of ESX snapshot deltas ("COWD", vmfsSparse, `-delta.vmdk`).
//!
//! A 2048-byte little-endian header: `COWD`, version (1), flags (3),
//! capacity and grain size in sectors, the sector of the grain directory
//! and its number of entries, then the parent's name and the disk's
//! generation, name and description. Directory entries are u32 sectors of
//! grain tables (0: none); a table has 4096 u32 entries, each the sector of
//! a grain (0: not in this delta, the parent shows through). There is no
//! zeroed-grain entry: as QEMU does, every non-zero entry is a sector.

use crate::error::{Error, Result};
use crate::extent::{read_exact, ExtentReader};
use crate::grains::{read_directory, GrainMap, Kind, GT_ENTRIES};
use blockdev::BlockDevice;
use std::sync::Arc;

/// Bytes of the header.
pub const HEADER_BYTES: u64 = 2048;

/// Grains larger than this (1 GiB, QEMU's limit) are refused as corrupt.
pub const MAX_GRAIN_SECTORS: u32 = 0x20_0000;

/// Opens the extent in `dev` (shown as `shown`) covering `size` bytes of
/// the virtual disk.
pub fn open(shown: String, dev: Arc<dyn BlockDevice>, size: u64) -> Result<Box<dyn ExtentReader>> {
    let file = shown.as_str();
    let mut head = vec![0u8; dev.size().min(HEADER_BYTES) as usize];
    read_exact(dev.as_ref(), file, "the COWD header", &mut head, 0)?;
    if !head.starts_with(b"COWD") {
        return Err(Error::corrupt(
            file,
            0,
            format!(
                "not a COWD (vmfsSparse) delta: it starts with {:02x?}, not \"COWD\"",
                &head[..head.len().min(4)]
            ),
        ));
    }
    let f = le::Fields::new(&head, "COWD header");
    let field = Error::field(file, 0);
    let version = f.u32(4).map_err(&field)?;
    let capacity = f.u32(12).map_err(&field)?;
    let grain_sectors = f.u32(16).map_err(&field)?;
    let gd_sector = f.u32(20).map_err(&field)?;
    let gd_entries = f.u32(24).map_err(&field)?;
    if grain_sectors == 0 || grain_sectors > MAX_GRAIN_SECTORS {
        return Err(Error::corrupt(
            file,
            16,
            format!("grain size {grain_sectors} sectors (1 to {MAX_GRAIN_SECTORS} expected)"),
        ));
    }
    let mut notes = Vec::new();
    if version != 1 {
        notes.push(format!(
            "{file}: COWD version {version} (1 expected); read as version 1"
        ));
    }
    if u64::from(capacity) * 512 != size {
        notes.push(format!(
            "{file}: the header says {capacity} sectors, the descriptor {} bytes; read as the \
             descriptor says",
            size
        ));
    }
    if f.u32(1648).is_ok_and(|v| v & 0xFF != 0) {
        notes.push(format!(
            "{file}: marked as not closed cleanly (uncleanShutdown)"
        ));
    }
    let grain = u64::from(grain_sectors) * 512;
    let needed = size.div_ceil(grain * GT_ENTRIES);
    let entries = needed.min(u64::from(gd_entries));
    if entries < needed {
        notes.push(format!(
            "{file}: the grain directory has {gd_entries} entries, {needed} cover the disk; \
             the rest reads from the parent"
        ));
    }
    let gd_offset = u64::from(gd_sector) * 512;
    let gd = read_directory(dev.as_ref(), file, gd_offset, entries, 4)?;
    Ok(Box::new(GrainMap::new(
        "COWD",
        shown.clone(),
        dev,
        size,
        grain,
        Kind::Cowd,
        gd,
        gd_offset,
        vec![(0, HEADER_BYTES)],
        notes,
    )))
}
