//! ext2/3/4: whether the bad bytes no file holds are metadata or free
//! space, from the block allocation bitmaps read off the device
//! (read-only). Allocated blocks no file or directory holds are metadata:
//! superblock copies, group descriptors, bitmaps and inode tables (named
//! here, with their group), and the rest of what the filesystem keeps
//! for itself (the journal, extent tree and indirect blocks, extended
//! attribute blocks, a long symlink's target). Blocks not allocated are
//! free space.
//!
//! Superblock (at byte 1024 of the filesystem; offsets in it):
//!
//! | off | field |
//! |---|---|
//! | 0x04 | `s_blocks_count_lo` |
//! | 0x14 | `s_first_data_block` |
//! | 0x18 | `s_log_block_size` (block = 1024 << n) |
//! | 0x1C | `s_log_cluster_size` (bigalloc: cluster = 1024 << n) |
//! | 0x20 | `s_blocks_per_group` |
//! | 0x28 | `s_inodes_per_group` |
//! | 0x38 | `s_magic` = 0xEF53 |
//! | 0x4C | `s_rev_level` |
//! | 0x58 | `s_inode_size` (rev >= 1; else 128) |
//! | 0x5C | `s_feature_compat` (0x200 sparse_super2) |
//! | 0x60 | `s_feature_incompat` (0x10 meta_bg, 0x80 64bit) |
//! | 0x64 | `s_feature_ro_compat` (0x1 sparse_super, 0x10 gdt_csum, 0x200 bigalloc, 0x400 metadata_csum) |
//! | 0xCE | `s_reserved_gdt_blocks` (u16) |
//! | 0xFE | `s_desc_size` (u16, 64bit only) |
//! | 0x104 | `s_first_meta_bg` |
//! | 0x150 | `s_blocks_count_hi` (64bit) |
//! | 0x24C | `s_backup_bgs[2]` (sparse_super2) |
//!
//! Group descriptor (32 bytes, or `s_desc_size` with 64bit): 0x00
//! `bg_block_bitmap_lo`, 0x04 `bg_inode_bitmap_lo`, 0x08
//! `bg_inode_table_lo`, 0x12 `bg_flags` (0x2 BLOCK_UNINIT: the bitmap was
//! never written; only the group's metadata is in use), and with 64-byte
//! descriptors 0x20/0x24/0x28 the `_hi` halves. Descriptors follow the
//! superblock's block (first_data_block + 1); with meta_bg, from group
//! `s_first_meta_bg * per_block` on, each meta group's descriptor block
//! is the first block of its first group (after a superblock copy).

use blockdev::{BlockDevice, Ranges};
use le::Fields;
use serde::Serialize;
use std::collections::HashMap;

const MAGIC: u16 = 0xEF53;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_SPARSE_SUPER: u32 = 0x1;
const RO_GDT_CSUM: u32 = 0x10;
const RO_BIGALLOC: u32 = 0x200;
const RO_METADATA_CSUM: u32 = 0x400;
const BG_BLOCK_UNINIT: u16 = 0x2;

/// The superblock fields the bitmaps need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Super {
    pub block_size: u64,
    pub blocks: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    /// Blocks per bitmap bit (bigalloc clusters; else 1).
    pub cluster_blocks: u64,
    pub inodes_per_group: u64,
    pub inode_size: u64,
    pub groups: u64,
    pub desc_size: u64,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub reserved_gdt: u64,
    pub first_meta_bg: u64,
    pub backup_bgs: [u64; 2],
}

fn bad(field: &str, off: usize, expected: &str, found: impl std::fmt::Display) -> String {
    format!("ext superblock: {field} (at +{off:#x}): expected {expected}, found {found}")
}

impl Super {
    /// Parses the 1024-byte superblock.
    pub fn parse(b: &[u8]) -> Result<Super, String> {
        let f = Fields::new(b, "ext superblock");
        let e = |x: le::OutOfRange| x.to_string();
        let magic = f.u16(0x38).map_err(e)?;
        if magic != MAGIC {
            return Err(bad("s_magic", 0x38, "0xef53", format!("{magic:#x}")));
        }
        let log = f.u32(0x18).map_err(e)?;
        if log > 6 {
            return Err(bad("s_log_block_size", 0x18, "0..=6", log));
        }
        let block_size = 1024u64 << log;
        let incompat = f.u32(0x60).map_err(e)?;
        let ro_compat = f.u32(0x64).map_err(e)?;
        let compat = f.u32(0x5C).map_err(e)?;
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let mut blocks = u64::from(f.u32(0x04).map_err(e)?);
        if is64 {
            blocks |= u64::from(f.u32(0x150).map_err(e)?) << 32;
        }
        let first_data_block = u64::from(f.u32(0x14).map_err(e)?);
        if first_data_block >= blocks.max(1) || first_data_block > 1 {
            return Err(bad(
                "s_first_data_block",
                0x14,
                "0 or 1, below the block count",
                first_data_block,
            ));
        }
        let blocks_per_group = u64::from(f.u32(0x20).map_err(e)?);
        let cluster_blocks = if ro_compat & RO_BIGALLOC != 0 {
            let clog = f.u32(0x1C).map_err(e)?;
            if clog < log || clog > log + 16 {
                return Err(bad(
                    "s_log_cluster_size",
                    0x1C,
                    "at least the block size's",
                    clog,
                ));
            }
            1u64 << (clog - log)
        } else {
            1
        };
        // One bitmap block covers block_size * 8 bits.
        if blocks_per_group == 0 || blocks_per_group > block_size * 8 * cluster_blocks {
            return Err(bad(
                "s_blocks_per_group",
                0x20,
                &format!("1..={}", block_size * 8 * cluster_blocks),
                blocks_per_group,
            ));
        }
        let inodes_per_group = u64::from(f.u32(0x28).map_err(e)?);
        let rev = f.u32(0x4C).map_err(e)?;
        let inode_size = if rev >= 1 {
            u64::from(f.u16(0x58).map_err(e)?)
        } else {
            128
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(bad(
                "s_inode_size",
                0x58,
                "a power of two from 128 to the block size",
                inode_size,
            ));
        }
        let desc_size = if is64 {
            u64::from(f.u16(0xFE).map_err(e)?)
        } else {
            32
        };
        if desc_size < 32 || !desc_size.is_power_of_two() || desc_size > block_size {
            return Err(bad(
                "s_desc_size",
                0xFE,
                "a power of two from 32 to the block size",
                desc_size,
            ));
        }
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        if groups > u64::from(u32::MAX) {
            return Err(bad(
                "s_blocks_count",
                0x04,
                "fewer than 2^32 groups",
                groups,
            ));
        }
        Ok(Super {
            block_size,
            blocks,
            first_data_block,
            blocks_per_group,
            cluster_blocks,
            inodes_per_group,
            inode_size,
            groups,
            desc_size,
            compat,
            incompat,
            ro_compat,
            reserved_gdt: u64::from(f.u16(0xCE).map_err(e)?),
            first_meta_bg: u64::from(f.u32(0x104).map_err(e)?),
            backup_bgs: [
                u64::from(f.u32(0x24C).map_err(e)?),
                u64::from(f.u32(0x250).map_err(e)?),
            ],
        })
    }

    fn descs_per_block(&self) -> u64 {
        self.block_size / self.desc_size
    }

    fn meta_bg(&self) -> bool {
        self.incompat & INCOMPAT_META_BG != 0
    }

    /// The first block of group `g`.
    pub fn group_first(&self, g: u64) -> u64 {
        self.first_data_block + g * self.blocks_per_group
    }

    /// Whether group `g` holds a copy of the superblock.
    pub fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if self.ro_compat & RO_SPARSE_SUPER == 0 || g == 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&p| {
            let mut x = g;
            while x.is_multiple_of(p) {
                x /= p;
            }
            x == 1
        })
    }

    /// Blocks at the start of group `g` taken by the superblock copy and
    /// group descriptors (with the reserved ones).
    pub fn base_meta(&self, g: u64) -> u64 {
        let sb = u64::from(self.has_super(g));
        let dpb = self.descs_per_block();
        let gdt = if !self.meta_bg() || g / dpb < self.first_meta_bg {
            if sb == 1 {
                let old = if self.meta_bg() {
                    self.first_meta_bg
                } else {
                    self.groups.div_ceil(dpb)
                };
                old + self.reserved_gdt
            } else {
                0
            }
        } else {
            let i = g % dpb;
            u64::from(i == 0 || i == 1 || i == dpb - 1)
        };
        sb + gdt
    }

    /// Block and byte offset of group `g`'s descriptor.
    pub fn desc_place(&self, g: u64) -> (u64, u64) {
        let dpb = self.descs_per_block();
        let mg = g / dpb;
        let block = if self.meta_bg() && mg >= self.first_meta_bg {
            let first = mg * dpb;
            self.group_first(first) + u64::from(self.has_super(first))
        } else {
            self.first_data_block + 1 + mg
        };
        (block, (g % dpb) * self.desc_size)
    }

    /// Whether BLOCK_UNINIT flags are to be believed (only with
    /// checksummed descriptors).
    fn uninit_valid(&self) -> bool {
        self.ro_compat & (RO_GDT_CSUM | RO_METADATA_CSUM) != 0
    }
}

/// One group descriptor's fields used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub flags: u16,
}

impl Desc {
    pub fn parse(b: &[u8], sb: &Super) -> Result<Desc, String> {
        let f = Fields::new(b, "ext group descriptor");
        let e = |x: le::OutOfRange| x.to_string();
        let wide = sb.desc_size >= 64;
        let hi = |off: usize| -> Result<u64, String> {
            Ok(if wide {
                u64::from(f.u32(off).map_err(e)?) << 32
            } else {
                0
            })
        };
        Ok(Desc {
            block_bitmap: u64::from(f.u32(0).map_err(e)?) | hi(0x20)?,
            inode_bitmap: u64::from(f.u32(4).map_err(e)?) | hi(0x24)?,
            inode_table: u64::from(f.u32(8).map_err(e)?) | hi(0x28)?,
            flags: f.u16(0x12).map_err(e)?,
        })
    }
}

/// A part of a bad range, classified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Area {
    pub start: u64,
    pub len: u64,
    /// What it is: the metadata's name, "free space", or why it is not
    /// known.
    pub what: String,
}

/// The bad bytes no file holds, told apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Classified {
    pub metadata: Vec<Area>,
    pub free: Vec<Area>,
    /// Bytes that could not be told apart (a bitmap or descriptor that
    /// could not be read), with why.
    pub unknown: Vec<Area>,
}

/// The filesystem's layout as read from the device.
pub struct Layout {
    pub sb: Super,
    /// Per group, its descriptor or why it could not be read.
    pub descs: Vec<Result<Desc, String>>,
    /// Named metadata: (first block, blocks, name), sorted.
    named: Vec<(u64, u64, String)>,
}

/// Other allocated blocks no file or directory holds.
pub const OTHER_METADATA: &str =
    "other metadata (journal, extent tree or indirect blocks, extended attributes, symlink targets)";

fn read_block(dev: &dyn BlockDevice, bs: u64, block: u64) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; bs as usize];
    let at = block
        .checked_mul(bs)
        .ok_or_else(|| format!("block {block} is beyond any device"))?;
    dev.read_exact_at(&mut b, at)
        .map_err(|e| format!("block {block} (byte {at}): {e}"))?;
    Ok(b)
}

impl Layout {
    /// Reads the superblock and every group descriptor of the ext
    /// filesystem on `dev`.
    pub fn read(dev: &dyn BlockDevice) -> Result<Layout, String> {
        let mut b = vec![0u8; 1024];
        dev.read_exact_at(&mut b, 1024)
            .map_err(|e| format!("ext superblock (byte 1024): {e}"))?;
        let sb = Super::parse(&b)?;
        let room = dev.size() / sb.block_size;
        if sb.blocks > room.saturating_mul(2).saturating_add(64) {
            return Err(format!(
                "ext superblock: s_blocks_count says {} blocks of {} bytes, the device holds {room}",
                sb.blocks, sb.block_size
            ));
        }
        let mut cache: HashMap<u64, Result<Vec<u8>, String>> = HashMap::new();
        let mut descs = Vec::with_capacity(sb.groups as usize);
        for g in 0..sb.groups {
            let (block, off) = sb.desc_place(g);
            let blk = cache
                .entry(block)
                .or_insert_with(|| read_block(dev, sb.block_size, block));
            descs.push(match blk {
                Ok(bytes) => {
                    Desc::parse(&bytes[off as usize..], &sb).map_err(|e| format!("group {g}: {e}"))
                }
                Err(e) => Err(format!("descriptor of group {g}: {e}")),
            });
            if cache.len() > 64 {
                cache.clear();
            }
        }
        Ok(Layout::new(sb, descs))
    }

    /// The layout from parsed parts.
    pub fn new(sb: Super, descs: Vec<Result<Desc, String>>) -> Layout {
        let mut named = Vec::new();
        if sb.first_data_block > 0 {
            named.push((
                0,
                sb.first_data_block,
                "boot block (before the superblock)".to_string(),
            ));
        }
        let itable = (sb.inodes_per_group * sb.inode_size).div_ceil(sb.block_size);
        for g in 0..sb.groups {
            let base = sb.base_meta(g);
            if base > 0 {
                named.push((
                    sb.group_first(g),
                    base,
                    format!("superblock and group descriptors (group {g})"),
                ));
            }
            if let Some(Ok(d)) = descs.get(g as usize) {
                named.push((d.block_bitmap, 1, format!("block bitmap of group {g}")));
                named.push((d.inode_bitmap, 1, format!("inode bitmap of group {g}")));
                named.push((d.inode_table, itable, format!("inode table of group {g}")));
            }
        }
        named.sort();
        Layout { sb, descs, named }
    }

    /// The named metadata holding `block`, if any.
    pub fn name_of(&self, block: u64) -> Option<&str> {
        let i = self.named.partition_point(|n| n.0 <= block);
        // Named areas may overlap on a damaged filesystem: look back a few.
        self.named[..i]
            .iter()
            .rev()
            .take(8)
            .find(|n| block < n.0.saturating_add(n.1))
            .map(|n| n.2.as_str())
    }

    /// Splits `bad` (device bytes, none of them in a file) into metadata,
    /// free space and what cannot be told, reading bitmaps from `dev`.
    pub fn classify(&self, dev: &dyn BlockDevice, bad: &Ranges) -> Classified {
        let sb = &self.sb;
        let bs = sb.block_size;
        let mut bitmaps: HashMap<u64, Result<Vec<u8>, String>> = HashMap::new();
        let mut out = Classified::default();
        for &(s, l) in &bad.0 {
            let end = s.saturating_add(l);
            let mut at = s;
            while at < end {
                let block = at / bs;
                let piece_end = ((block + 1).saturating_mul(bs)).min(end);
                let state = self.state(dev, block, &mut bitmaps);
                let list = match &state {
                    State::Meta(_) => &mut out.metadata,
                    State::Free => &mut out.free,
                    State::Unknown(_) => &mut out.unknown,
                };
                let what = match state {
                    State::Meta(n) => n,
                    State::Free => "free space".to_string(),
                    State::Unknown(w) => w,
                };
                match list.last_mut() {
                    Some(a) if a.start + a.len == at && a.what == what => a.len += piece_end - at,
                    _ => list.push(Area {
                        start: at,
                        len: piece_end - at,
                        what,
                    }),
                }
                at = piece_end;
            }
        }
        out
    }

    fn state(
        &self,
        dev: &dyn BlockDevice,
        block: u64,
        bitmaps: &mut HashMap<u64, Result<Vec<u8>, String>>,
    ) -> State {
        let sb = &self.sb;
        if block >= sb.blocks {
            return State::Unknown("beyond the end of the filesystem".into());
        }
        if let Some(n) = self.name_of(block) {
            return State::Meta(n.to_string());
        }
        let rel = block - sb.first_data_block;
        let g = rel / sb.blocks_per_group;
        let bit = (rel % sb.blocks_per_group) / sb.cluster_blocks;
        let d = match self.descs.get(g as usize) {
            Some(Ok(d)) => *d,
            Some(Err(e)) => return State::Unknown(format!("not told apart: {e}")),
            None => return State::Unknown(format!("group {g} is not in the filesystem")),
        };
        if d.flags & BG_BLOCK_UNINIT != 0 && sb.uninit_valid() {
            // Never written: only metadata (named above) is in use.
            return State::Free;
        }
        if bitmaps.len() > 256 {
            bitmaps.clear();
        }
        let bm = bitmaps
            .entry(g)
            .or_insert_with(|| read_block(dev, sb.block_size, d.block_bitmap));
        match bm {
            Ok(b) => match b.get((bit / 8) as usize) {
                Some(byte) if byte & (1 << (bit % 8)) != 0 => State::Meta(OTHER_METADATA.into()),
                Some(_) => State::Free,
                None => State::Unknown(format!("group {g}: bit {bit} is past its bitmap block")),
            },
            Err(e) => State::Unknown(format!(
                "not told apart: the block bitmap of group {g} is unreadable: {e}"
            )),
        }
    }
}

enum State {
    Meta(String),
    Free,
    Unknown(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;
    use proptest::prelude::*;

    /// A small ext2 made here: 1 KiB blocks, 2 groups of 8192 blocks.
    fn tiny() -> Vec<u8> {
        let bs = 1024usize;
        let mut img = vec![0u8; 16384 * bs];
        let sb = &mut img[1024..2048];
        le::put_u32(sb, 0x04, 16384);
        le::put_u32(sb, 0x14, 1);
        le::put_u32(sb, 0x18, 0);
        le::put_u32(sb, 0x20, 8192);
        le::put_u32(sb, 0x28, 1024);
        sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        le::put_u32(sb, 0x4C, 1);
        sb[0x58..0x5A].copy_from_slice(&128u16.to_le_bytes());
        le::put_u32(sb, 0x64, RO_SPARSE_SUPER);
        // Descriptors at block 2: group 0 bitmaps at 3/4, table at 5 (128
        // blocks); group 1 at 8193 + 1 (backup sb, gdt) = 8195...
        let gd = &mut img[2 * bs..3 * bs];
        le::put_u32(gd, 0, 3);
        le::put_u32(gd, 4, 4);
        le::put_u32(gd, 8, 5);
        le::put_u32(gd, 32, 8195);
        le::put_u32(gd, 36, 8196);
        le::put_u32(gd, 40, 8197);
        // Group 0 bitmap: blocks 1..=200 in use (bits 0..200).
        for bit in 0..200 {
            img[3 * bs + bit / 8] |= 1 << (bit % 8);
        }
        img
    }

    #[test]
    fn bitmaps_tell_metadata_from_free_space() {
        let dev = MemDevice::new(tiny(), 512);
        let l = Layout::read(&dev).unwrap();
        assert_eq!(l.sb.groups, 2);
        assert_eq!(
            l.name_of(1),
            Some("superblock and group descriptors (group 0)")
        );
        assert_eq!(
            l.name_of(8193),
            Some("superblock and group descriptors (group 1)")
        );
        assert_eq!(l.name_of(4), Some("inode bitmap of group 0"));
        assert_eq!(l.name_of(132), Some("inode table of group 0"));
        assert_eq!(l.name_of(133), None);
        let c = l.classify(
            &dev,
            &Ranges(vec![(132 * 1024 + 10, 2048), (300 * 1024, 100)]),
        );
        assert_eq!(
            c.metadata,
            vec![
                Area {
                    start: 132 * 1024 + 10,
                    len: 1014,
                    what: "inode table of group 0".into()
                },
                Area {
                    start: 133 * 1024,
                    len: 1034,
                    what: OTHER_METADATA.into()
                },
            ]
        );
        assert_eq!(
            c.free,
            vec![Area {
                start: 300 * 1024,
                len: 100,
                what: "free space".into()
            }]
        );
        // Group 1's bitmap is all zeros: free.
        let c = l.classify(&dev, &Ranges(vec![(9000 * 1024, 1024)]));
        assert_eq!(c.free.len(), 1);
        let c = l.classify(&dev, &Ranges(vec![(20000 * 1024, 1024)]));
        assert_eq!(c.unknown[0].what, "beyond the end of the filesystem");
    }

    #[test]
    fn sparse_super_groups() {
        let dev = MemDevice::new(tiny(), 512);
        let sb = Layout::read(&dev).unwrap().sb;
        let with: Vec<u64> = (0..60).filter(|&g| sb.has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn errors_name_the_field() {
        let mut img = tiny();
        img[1024 + 0x18] = 9;
        let e = Layout::read(&MemDevice::new(img, 512)).err().unwrap();
        assert!(
            e.contains("s_log_block_size (at +0x18): expected 0..=6, found 9"),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn damaged_metadata_never_panics(
            edits in prop::collection::vec((0usize..3072, any::<u8>()), 1..40),
            ranges in prop::collection::vec((0u64..20_000_000, 1u64..100_000), 0..4),
        ) {
            let mut img = tiny();
            for (at, v) in edits {
                img[1024 + at] = v;
            }
            let dev = MemDevice::new(img, 512);
            if let Ok(l) = Layout::read(&dev) {
                let _ = l.classify(&dev, &Ranges::from_unsorted(ranges));
            }
        }
    }
}
