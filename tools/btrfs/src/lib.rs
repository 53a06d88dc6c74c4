//! A small read-only btrfs reader: the superblock, the SYSTEM chunks in
//! it and the chunk tree, giving the map between btrfs logical addresses
//! (what FIEMAP reports on btrfs, what tree pointers hold) and device
//! offsets, in both directions, with each chunk's type (DATA, METADATA,
//! SYSTEM) and profile (single, DUP, RAID0/1/10, RAID1C3/C4, and RAID5/6
//! data stripes with their rotating parity). Superblocks and tree nodes are checked
//! (crc32c, fsid, bytenr, level, generation) and a damaged or unreadable
//! copy of a node makes the reader try the next copy.
//!
//! - [`crc32c`]: the Castagnoli CRC btrfs uses;
//! - [`superblock`]: the superblock and its copies;
//! - [`chunk`]: one chunk, its stripes and the address arithmetic;
//! - [`tree`]: B-tree node headers, key pointers and items;
//! - [`chunkmap`]: the chunk tree read into a [`ChunkMap`];
//! - [`open`]: all of it for the devices of one filesystem.

pub mod chunk;
pub mod chunkmap;
pub mod crc32c;
pub mod superblock;
pub mod tree;

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;

pub use chunk::{Chunk, Piece, Profile};
pub use chunkmap::{ChunkMap, Devices};
pub use superblock::Super;

use blockdev::BlockDevice;

/// Reads exactly `buf.len()` bytes at device byte `at`.
pub fn read_into(dev: &dyn BlockDevice, at: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        match dev.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => {
                return Err(format!(
                    "{}: {} bytes at byte {at}: the device ends at {}",
                    dev.name(),
                    buf.len(),
                    dev.size()
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "{}: reading {} bytes at byte {}: {e}",
                    dev.name(),
                    buf.len() - done,
                    at + done as u64
                ))
            }
        }
    }
    Ok(())
}

/// `len` bytes at device byte `at`.
pub fn read_exact(dev: &dyn BlockDevice, at: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; len];
    read_into(dev, at, &mut b)?;
    Ok(b)
}

/// A btrfs filesystem as seen from the devices at hand.
#[derive(Clone, Debug)]
pub struct Fs {
    /// The first device's superblock.
    pub sb: Super,
    pub map: ChunkMap,
    /// The devids of the devices given, in their order.
    pub devids: Vec<u64>,
    /// Superblock copies used instead of the primary, copies of nodes
    /// skipped, other devices left out.
    pub notes: Vec<String>,
}

/// Reads the superblock of each device (the first one's is used; others
/// of another filesystem are left out with a note) and the chunk tree.
pub fn open(devices: &[&dyn BlockDevice]) -> Result<Fs, String> {
    let Some(first) = devices.first() else {
        return Err("no device given".into());
    };
    let (sb, mut notes) = Super::read(*first)?;
    let mut list: Vec<(u64, &dyn BlockDevice)> = vec![(sb.devid, *first)];
    for d in &devices[1..] {
        match Super::read(*d) {
            Ok((s, _)) if s.fsid == sb.fsid && !list.iter().any(|x| x.0 == s.devid) => {
                list.push((s.devid, *d))
            }
            Ok((s, _)) => notes.push(format!(
                "{}: devid {} of filesystem {}: left out (not another device of {})",
                d.name(),
                s.devid,
                superblock::uuid_text(&s.fsid),
                superblock::uuid_text(&sb.fsid)
            )),
            Err(e) => notes.push(format!("{}: left out: {e}", d.name())),
        }
    }
    let map = ChunkMap::read(&sb, Devices { list: &list })?;
    notes.extend(map.notes.iter().cloned());
    Ok(Fs {
        devids: list.iter().map(|d| d.0).collect(),
        sb,
        map,
        notes,
    })
}
