//! Directories: VMFS3/5 linear arrays and VMFS6 hashed directories.

use crate::error::{Error, Result};
use crate::inode::{FileType, Inode};
use crate::volume::Volume;
use serde::Serialize;

/// Most entries one directory may yield (a bound against corrupt sizes).
const MAX_ENTRIES: usize = 1 << 20;
/// Largest directory file we read.
const MAX_DIR_SIZE: u64 = 1 << 30;

/// VMFS3/5 directory entry, 140 bytes, an array filling the directory file:
///
/// | off  | size | field |
/// |------|------|-------|
/// | 0x00 | 4   | type (file type of the target) |
/// | 0x04 | 4   | FD address (0 = free slot) |
/// | 0x08 | 4   | generation |
/// | 0x0C | 128 | name, NUL padded |
pub const V5_DIRENT: usize = 0x8C;

/// VMFS6 directory entry, 288 bytes:
///
/// | off  | size | field |
/// |------|------|-------|
/// | 0x00 | 4   | type |
/// | 0x04 | 4   | FD address |
/// | 0x08 | 4   | generation |
/// | 0x0C | 4   | hash fields |
/// | 0x10 | 8   | offset of this entry in the directory file |
/// | 0x18 | 264 | name, NUL terminated |
pub const V6_DIRENT: usize = 0x120;
/// VMFS6: the header block (64 KiB) holds version 0xF50001 at 0, "." at
/// 0x3B8, ".." at 0x4D8 and the hash table; after it come mdAlignment-sized
/// blocks, each with a 64-byte header: version u16 @0, type u16 @2 (1
/// dirents, 2 hash links, 3 allocation map), total slots u16 @4, free slots
/// u16 @6, slot bitmap @8 (56 bytes; a set bit = free slot). Dirent slots
/// follow the header.
pub const V6_HEADER_BLOCK: u64 = 0x1_0000;
const V6_DOT: usize = 0x3B8;
const V6_DOTDOT: usize = 0x4D8;
const V6_BLOCK_HDR: usize = 0x40;

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirEntry {
    pub name: String,
    pub addr: u32,
    pub file_type: FileType,
}

fn entry(b: &[u8], name_off: usize, name_len: usize, what: &str) -> Result<Option<DirEntry>> {
    let e = le::Fields::new(b, what);
    let addr = e.u32(4)?;
    if addr == 0 {
        return Ok(None);
    }
    let name = e.cstr(name_off, name_len)?;
    if name.is_empty() {
        return Err(Error::corrupt(format!(
            "{what}: entry for FD {addr:#010x} has an empty name"
        )));
    }
    if name.contains('/') {
        return Err(Error::corrupt(format!(
            "{what}: name {name:?} contains '/'"
        )));
    }
    Ok(Some(DirEntry {
        name,
        addr,
        file_type: FileType::from_raw(e.u32(0)?),
    }))
}

/// Reads the entries of directory `ino` ("." and ".." included).
pub fn read(vol: &Volume, ino: &Inode) -> Result<Vec<DirEntry>> {
    if ino.size > MAX_DIR_SIZE {
        return Err(Error::corrupt(format!(
            "directory FD {:#010x}: size {} is over {MAX_DIR_SIZE}",
            ino.addr, ino.size
        )));
    }
    if vol.sb.is_vmfs6() {
        read_v6(vol, ino)
    } else {
        read_v5(vol, ino)
    }
}

fn read_v5(vol: &Volume, ino: &Inode) -> Result<Vec<DirEntry>> {
    let mut buf = vec![0u8; ino.size as usize];
    let n = vol.read_inode(ino, &mut buf, 0, 0)?;
    buf.truncate(n);
    let mut out = Vec::new();
    for (i, c) in buf.chunks_exact(V5_DIRENT).enumerate() {
        let what = format!("directory FD {:#010x} entry {i}", ino.addr);
        if let Some(e) = entry(c, 0xC, 128, &what)? {
            out.push(e);
        }
        if out.len() > MAX_ENTRIES {
            return Err(Error::corrupt(format!(
                "{what}: over {MAX_ENTRIES} entries"
            )));
        }
    }
    Ok(out)
}

fn read_v6(vol: &Volume, ino: &Inode) -> Result<Vec<DirEntry>> {
    let a = vol.sb.md_alignment as usize;
    let what = format!("directory FD {:#010x}", ino.addr);
    let hsize = (V6_HEADER_BLOCK as usize).min(ino.size as usize);
    let mut hdr = vec![0u8; hsize];
    let n = vol.read_inode(ino, &mut hdr, 0, 0)?;
    hdr.truncate(n);
    let h = le::Fields::new(&hdr, &what);
    let version = h.u32(0)?;
    if version & 0xFFFF_0000 != 0x00F5_0000 && version & 0xFFFF_0000 != 0x00FD_0000 {
        return Err(Error::corrupt(format!(
            "{what}: header version at +0x0 is {version:#x}, expected 0xf5xxxx"
        )));
    }
    let mut out = Vec::new();
    for off in [V6_DOT, V6_DOTDOT] {
        if let Some(e) = entry(h.bytes(off, V6_DIRENT)?, 0x18, V6_DIRENT - 0x18, &what)? {
            out.push(e);
        }
    }
    let mut block = vec![0u8; a];
    let mut off = V6_HEADER_BLOCK;
    let slots_max = (a - V6_BLOCK_HDR) / V6_DIRENT;
    while off < ino.size {
        let n = vol.read_inode(ino, &mut block, off, 0)?;
        if n < a {
            break;
        }
        let bh = le::Fields::new(&block, &what);
        if bh.u16(2)? == 1 {
            let total = (bh.u16(4)? as usize).min(slots_max).min(56 * 8);
            let bitmap = bh.bytes(8, 56)?;
            for s in 0..total {
                if bitmap[s / 8] & (1 << (s % 8)) != 0 {
                    continue; // free slot
                }
                let at = V6_BLOCK_HDR + s * V6_DIRENT;
                let swhat = format!("{what} block at {off:#x} slot {s}");
                if let Some(e) = entry(bh.bytes(at, V6_DIRENT)?, 0x18, V6_DIRENT - 0x18, &swhat)? {
                    out.push(e);
                }
            }
            if out.len() > MAX_ENTRIES {
                return Err(Error::corrupt(format!(
                    "{what}: over {MAX_ENTRIES} entries"
                )));
            }
        }
        off += a as u64;
    }
    Ok(out)
}
