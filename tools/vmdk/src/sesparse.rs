//! Reader of ESXi 6.5+ snapshot deltas (SESparse, `-sesparse.vmdk`).
//!
//! Sector 0 is the constant header (u64 fields): magic `0xCAFEBABE`,
//! version `0x0000000200000001`, capacity, grain size (8 sectors), grain
//! table size (64 sectors), flags (0), four reserved words, then
//! `(offset, size)` pairs in sectors of the volatile header, the journal
//! header, the journal, the grain directory, the grain tables, the free
//! bitmap, the backmap and the grains. The volatile header holds magic
//! `0xCAFECAFE` and whether the journal still has to be replayed.
//!
//! A directory entry is 0 (no table: the parent shows through) or
//! `0x10000000_iiiiiiii`, table `i` of the grain-table area. A table entry
//! says in its top nibble: 0 not in this delta, 1 unmapped and 2 zeroed
//! (both read as zeros), 3 stored, with the grain's cluster number spread
//! over the other bits.
//!
//! Follows QEMU's checks (block/vmdk.c) on grain and table size, version
//! and flags, as "unsupported" errors; unlike QEMU, a journal not replayed
//! does not stop reading: the delta is read as its tables stand, with a
//! note, for rescue.

use crate::error::{Error, Result};
use crate::extent::{read_exact, ExtentReader};
use crate::grains::{read_directory, sectors_to_bytes, GrainMap, Kind, GT_ENTRIES};
use blockdev::BlockDevice;
use std::sync::Arc;

pub const MAGIC: u64 = 0xCAFE_BABE;
pub const VOLATILE_MAGIC: u64 = 0xCAFE_CAFE;
pub const VERSION: u64 = 0x0000_0002_0000_0001;
/// The one grain size read (sectors).
pub const GRAIN_SECTORS: u64 = 8;
/// The one grain table size read (sectors: 4096 entries of 8 bytes).
pub const GT_SECTORS: u64 = 64;

/// Opens the extent in `dev` (shown as `shown`) covering `size` bytes of
/// the virtual disk.
pub fn open(shown: String, dev: Arc<dyn BlockDevice>, size: u64) -> Result<Box<dyn ExtentReader>> {
    let file = shown.as_str();
    if dev.size() < 512 {
        return Err(Error::corrupt(
            file,
            0,
            format!(
                "{} bytes: too short for a SESparse header (512 bytes)",
                dev.size()
            ),
        ));
    }
    let mut head = [0u8; 512];
    read_exact(dev.as_ref(), file, "the SESparse header", &mut head, 0)?;
    let f = le::Fields::new(&head, "SESparse header");
    let field = Error::field(file, 0);
    let u = |at: usize| f.u64(at).map_err(&field);
    let magic = u(0)?;
    if magic != MAGIC {
        return Err(Error::corrupt(
            file,
            0,
            format!("not a SESparse delta: magic {magic:#x}, expected {MAGIC:#x}"),
        ));
    }
    let unsupported = |what: String| Error::unsupported(file, what);
    let version = u(8)?;
    if version != VERSION {
        return Err(unsupported(format!(
            "SESparse version {version:#018x} (only {VERSION:#018x} is read)"
        )));
    }
    let capacity = u(16)?;
    let grain_size = u(24)?;
    if grain_size != GRAIN_SECTORS {
        return Err(unsupported(format!(
            "SESparse grain size {grain_size} sectors (only {GRAIN_SECTORS} is read)"
        )));
    }
    let gt_size = u(32)?;
    if gt_size != GT_SECTORS {
        return Err(unsupported(format!(
            "SESparse grain table size {gt_size} sectors (only {GT_SECTORS} is read)"
        )));
    }
    let flags = u(40)?;
    if flags != 0 {
        return Err(unsupported(format!(
            "SESparse flags {flags:#x} (only 0 is read)"
        )));
    }
    let mut notes = Vec::new();
    let reserved = [u(48)?, u(56)?, u(64)?, u(72)?];
    if reserved.iter().any(|&r| r != 0) || head[208..].iter().any(|&b| b != 0) {
        notes.push(format!(
            "{file}: reserved fields of the header are not zero ({reserved:#x?}); read anyway"
        ));
    }
    let bytes = |at: usize, what: &str| sectors_to_bytes(file, at as u64, what, u(at)?);
    let volatile = bytes(80, "the volatile header's offset")?;
    let gd_offset = bytes(128, "the grain directory's offset")?;
    let gd_bytes = bytes(136, "the grain directory's size")?;
    let tables = bytes(144, "the grain tables' offset")?;
    let grains = bytes(192, "the grains' offset")?;

    if volatile.saturating_add(512) > dev.size() {
        return Err(Error::corrupt(
            file,
            80,
            format!(
                "the volatile header at byte {volatile} lies past the end of the file ({} bytes)",
                dev.size()
            ),
        ));
    }
    let mut vol = [0u8; 512];
    read_exact(
        dev.as_ref(),
        file,
        "the volatile header",
        &mut vol,
        volatile,
    )?;
    let v = le::Fields::new(&vol, "SESparse volatile header");
    let vfield = Error::field(file, volatile);
    let vmagic = v.u64(0).map_err(&vfield)?;
    if vmagic != VOLATILE_MAGIC {
        return Err(Error::corrupt(
            file,
            volatile,
            format!("volatile header magic {vmagic:#x}, expected {VOLATILE_MAGIC:#x}"),
        ));
    }
    if v.u64(24).map_err(&vfield)? != 0 {
        notes.push(format!(
            "{file}: journal not replayed (the delta was not closed cleanly); read as its \
             tables stand, the last writes may be missing"
        ));
    }
    if capacity.checked_mul(512) != Some(size) {
        notes.push(format!(
            "{file}: the header says {capacity} sectors, the descriptor {size} bytes; read as \
             the descriptor says"
        ));
    }
    let grain = GRAIN_SECTORS * 512;
    let needed = size.div_ceil(grain * GT_ENTRIES);
    let declared = gd_bytes / 8;
    let entries = needed.min(declared);
    if entries < needed {
        notes.push(format!(
            "{file}: the grain directory has {declared} entries, {needed} cover the disk; the \
             rest reads from the parent"
        ));
    }
    let gd = read_directory(dev.as_ref(), file, gd_offset, entries, 8)?;
    Ok(Box::new(GrainMap::new(
        "SESparse",
        shown.clone(),
        dev,
        size,
        grain,
        Kind::SeSparse { tables, grains },
        gd,
        gd_offset,
        vec![(0, 512), (volatile, 512)],
        notes,
    )))
}
