//! B-tree nodes (the chunk tree's here): a header, then key pointers
//! (internal nodes, level > 0) or items (leaves, level 0).
//!
//! Header, 101 bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | `csum[32]` (crc32c of bytes 0x20..nodesize: first 4 bytes) |
//! | 0x20 | `fsid[16]` (the superblock's metadata UUID) |
//! | 0x30 | `u64 bytenr` (the node's own logical address) |
//! | 0x38 | `u64 flags` |
//! | 0x40 | `chunk_tree_uuid[16]` |
//! | 0x50 | `u64 generation` |
//! | 0x58 | `u64 owner` (the tree: 3 for the chunk tree) |
//! | 0x60 | `u32 nritems` |
//! | 0x64 | `u8 level` |
//!
//! Key pointer (internal nodes), 33 bytes from 101: disk key (17), `u64
//! blockptr` (child's logical address) at +17, `u64 generation` at +25.
//!
//! Item (leaves), 25 bytes from 101: disk key (17), `u32 offset` at +17
//! and `u32 size` at +21: the item's data lies at `101 + offset`.

use crate::chunk::{parse_key, Key, KEY_SIZE};
use crate::crc32c::crc32c;
use crate::superblock::Super;
use le::Fields;

pub const HEADER_SIZE: usize = 101;
pub const KEY_PTR_SIZE: usize = 33;
pub const ITEM_SIZE: usize = 25;
/// The chunk tree's id (header `owner`).
pub const CHUNK_TREE_OBJECTID: u64 = 3;

/// What a node must be, known from where it is referenced.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub logical: u64,
    pub level: u8,
    /// From the parent's key pointer (or the superblock for a root).
    pub generation: Option<u64>,
    pub owner: u64,
}

/// A checked node.
#[derive(Debug)]
pub struct Node<'a> {
    pub buf: &'a [u8],
    pub level: u8,
    pub nritems: usize,
}

/// One key pointer of an internal node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPtr {
    pub key: Key,
    pub blockptr: u64,
    pub generation: u64,
}

fn field_err(x: &Expect, field: &str, off: usize, exp: String, found: String) -> String {
    format!(
        "tree node at logical {} (level {}): {field} (at +{off:#x}): expected {exp}, found {found}",
        x.logical, x.level
    )
}

/// Checks a node read for `x`: checksum (crc32c filesystems), fsid,
/// bytenr, level, generation, owner and that its items fit.
pub fn check<'a>(buf: &'a [u8], sb: &Super, x: &Expect) -> Result<Node<'a>, String> {
    let f = Fields::new(buf, "btrfs tree node");
    let e = |y: le::OutOfRange| format!("tree node at logical {}: {y}", x.logical);
    if buf.len() != sb.nodesize as usize {
        return Err(field_err(
            x,
            "size",
            0,
            sb.nodesize.to_string(),
            buf.len().to_string(),
        ));
    }
    if sb.csum_type == 0 {
        let stored = f.u32(0).map_err(e)?;
        let computed = crc32c(&buf[0x20..]);
        if stored != computed {
            return Err(field_err(
                x,
                "csum",
                0,
                format!("{computed:#010x}"),
                format!("{stored:#010x}"),
            ));
        }
    }
    let fsid: [u8; 16] = f.array(0x20).map_err(e)?;
    if fsid != sb.metadata_uuid {
        return Err(field_err(
            x,
            "fsid",
            0x20,
            crate::superblock::uuid_text(&sb.metadata_uuid),
            crate::superblock::uuid_text(&fsid),
        ));
    }
    let bytenr = f.u64(0x30).map_err(e)?;
    if bytenr != x.logical {
        return Err(field_err(
            x,
            "bytenr",
            0x30,
            x.logical.to_string(),
            bytenr.to_string(),
        ));
    }
    let generation = f.u64(0x50).map_err(e)?;
    if let Some(g) = x.generation {
        if generation != g {
            return Err(field_err(
                x,
                "generation",
                0x50,
                g.to_string(),
                generation.to_string(),
            ));
        }
    }
    let owner = f.u64(0x58).map_err(e)?;
    if owner != x.owner {
        return Err(field_err(
            x,
            "owner",
            0x58,
            x.owner.to_string(),
            owner.to_string(),
        ));
    }
    let level = f.u8(0x64).map_err(e)?;
    if level != x.level {
        return Err(field_err(
            x,
            "level",
            0x64,
            x.level.to_string(),
            level.to_string(),
        ));
    }
    let nritems = f.u32(0x60).map_err(e)? as usize;
    let each = if level == 0 { ITEM_SIZE } else { KEY_PTR_SIZE };
    let room = (buf.len() - HEADER_SIZE) / each;
    if nritems > room || (level > 0 && nritems == 0) {
        return Err(field_err(
            x,
            "nritems",
            0x60,
            format!(
                "{}..={room} for a {} of {} bytes",
                if level > 0 { 1 } else { 0 },
                if level > 0 { "node" } else { "leaf" },
                buf.len()
            ),
            nritems.to_string(),
        ));
    }
    Ok(Node {
        buf,
        level,
        nritems,
    })
}

impl Node<'_> {
    /// Key pointer `i` of an internal node.
    pub fn key_ptr(&self, i: usize, logical: u64) -> Result<KeyPtr, String> {
        let at = HEADER_SIZE + i * KEY_PTR_SIZE;
        let what = format!("tree node at logical {logical}: key pointer {i} (at +{at:#x})");
        let b = self.buf.get(at..).unwrap_or(&[]);
        let key = parse_key(b, &what)?;
        let f = Fields::new(b, "btrfs key pointer");
        let e = |x: le::OutOfRange| format!("{what}: {x}");
        Ok(KeyPtr {
            key,
            blockptr: f.u64(KEY_SIZE).map_err(e)?,
            generation: f.u64(KEY_SIZE + 8).map_err(e)?,
        })
    }

    /// Item `i` of a leaf: its key and data.
    pub fn item(&self, i: usize, logical: u64) -> Result<(Key, &[u8]), String> {
        let at = HEADER_SIZE + i * ITEM_SIZE;
        let what = format!("leaf at logical {logical}: item {i} (at +{at:#x})");
        let b = self.buf.get(at..).unwrap_or(&[]);
        let key = parse_key(b, &what)?;
        let f = Fields::new(b, "btrfs item");
        let e = |x: le::OutOfRange| format!("{what}: {x}");
        let off = f.u32(KEY_SIZE).map_err(e)? as usize;
        let size = f.u32(KEY_SIZE + 4).map_err(e)? as usize;
        let start = HEADER_SIZE + off;
        let data = start
            .checked_add(size)
            .and_then(|end| self.buf.get(start..end))
            .ok_or_else(|| {
                format!(
                    "{what}: data offset {off} and size {size}: expected within the {}-byte leaf, found past its end",
                    self.buf.len()
                )
            })?;
        Ok((key, data))
    }
}
