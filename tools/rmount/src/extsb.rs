//! ext2/3/4 backup superblocks: where they are, in the unit the `sb=` mount
//! option takes.
//!
//! The ext4 driver reads `sb=N` as a position in 1 KiB units whatever the
//! filesystem's block size (the kernel multiplies by EXT4_MIN_BLOCK_SIZE;
//! mount(8): "use logical block 32768 on a filesystem with 4 k blocks,
//! use sb=131072"). Checked on a host kernel: a 4 KiB-block filesystem with
//! a zeroed primary mounts with `sb=131072` and not with `sb=32768`; a
//! 1 KiB-block one with `sb=8193`.
//!
//! Superblock layout (at byte 1024 for the primary; each backup at the
//! first block of its group), the fields read:
//!
//! | offset | field |
//! |---|---|
//! | 0x04 | s_blocks_count_lo (u32) |
//! | 0x14 | s_first_data_block (u32): 1 for 1 KiB blocks, else 0 |
//! | 0x18 | s_log_block_size (u32): block size = 1024 << n |
//! | 0x20 | s_blocks_per_group (u32) |
//! | 0x38 | s_magic (u16) = 0xEF53 |
//! | 0x5A | s_block_group_nr (u16): the group a backup copy sits in |
//! | 0x5C | s_feature_compat (u32): 0x200 SPARSE_SUPER2 |
//! | 0x60 | s_feature_incompat (u32): 0x80 64BIT |
//! | 0x64 | s_feature_ro_compat (u32): 0x1 SPARSE_SUPER |
//! | 0x150 | s_blocks_count_hi (u32, with 64BIT) |
//! | 0x24C | s_backup_bgs[2] (u32 each, with SPARSE_SUPER2) |
//!
//! Which groups hold a backup: every group without SPARSE_SUPER; with it,
//! groups 1 and the powers of 3, 5 and 7; with SPARSE_SUPER2 only the (up
//! to two) groups in s_backup_bgs.

use blockdev::BlockDevice;
use std::fmt;

pub const MAGIC: u16 = 0xEF53;

/// How many backups the ladder tries at most: the first ones (near the
/// start, the usual survivors when only the start of a disk was hit) and
/// the last ones (far from it, for damage that spans the start).
pub const NEAR: usize = 3;
pub const FAR: usize = 2;

/// A superblock's geometry fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub blocks: u64,
    pub sparse_super: bool,
    /// SPARSE_SUPER2's two backup groups (0: none).
    pub sparse_super2: Option<[u32; 2]>,
    /// s_block_group_nr: 0 in the primary, the group in a backup.
    pub group_nr: u16,
}

/// A superblock that cannot be used: what, where, expected and found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadSuperblock(pub String);

impl fmt::Display for BadSuperblock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<le::OutOfRange> for BadSuperblock {
    fn from(e: le::OutOfRange) -> Self {
        BadSuperblock(e.to_string())
    }
}

/// Parses the geometry of the superblock in `sb` (its 1024 bytes, or
/// fewer: a missing field is an error, never a panic).
pub fn parse(sb: &[u8]) -> Result<Geometry, BadSuperblock> {
    let f = le::Fields::new(sb, "ext superblock");
    let magic = f.u16(0x38)?;
    if magic != MAGIC {
        return Err(BadSuperblock(format!(
            "ext superblock: magic at +0x38 is {magic:#06x}, expected {MAGIC:#06x}"
        )));
    }
    let log = f.u32(0x18)?;
    if log > 6 {
        return Err(BadSuperblock(format!(
            "ext superblock: s_log_block_size at +0x18 is {log}, expected 0..=6 (1 KiB..64 KiB)"
        )));
    }
    let block_size = 1024u64 << log;
    let bpg = u64::from(f.u32(0x20)?);
    // mke2fs allows 256..=8 * block size blocks per group (one bitmap block).
    if bpg < 256 || bpg > 8 * block_size {
        return Err(BadSuperblock(format!(
            "ext superblock: s_blocks_per_group at +0x20 is {bpg}, expected 256..={}",
            8 * block_size
        )));
    }
    let compat = f.u32(0x5C)?;
    let incompat = f.u32(0x60)?;
    let ro_compat = f.u32(0x64)?;
    let hi = if incompat & 0x80 != 0 {
        u64::from(f.u32(0x150)?)
    } else {
        0
    };
    let blocks = u64::from(f.u32(0x04)?) | hi << 32;
    let first_data_block = u64::from(f.u32(0x14)?);
    if first_data_block >= blocks.max(1) {
        return Err(BadSuperblock(format!(
            "ext superblock: s_first_data_block at +0x14 is {first_data_block}, not below the \
             block count {blocks}"
        )));
    }
    let sparse_super2 = if compat & 0x200 != 0 {
        Some([f.u32(0x24C)?, f.u32(0x250)?])
    } else {
        None
    };
    Ok(Geometry {
        block_size,
        first_data_block,
        blocks_per_group: bpg,
        blocks,
        sparse_super: ro_compat & 0x1 != 0,
        sparse_super2,
        group_nr: f.u16(0x5A)?,
    })
}

/// Whether `n` is a power of `base` (base^k, k >= 1).
fn power_of(mut n: u64, base: u64) -> bool {
    if n < base {
        return false;
    }
    while n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

impl Geometry {
    pub fn groups(&self) -> u64 {
        (self.blocks - self.first_data_block).div_ceil(self.blocks_per_group)
    }

    /// Whether group `g` (>= 1) holds a backup superblock.
    pub fn has_backup(&self, g: u64) -> bool {
        if g == 0 || g >= self.groups() {
            return false;
        }
        if let Some(bgs) = self.sparse_super2 {
            return bgs.iter().any(|&b| u64::from(b) == g);
        }
        !self.sparse_super || g == 1 || power_of(g, 3) || power_of(g, 5) || power_of(g, 7)
    }

    /// Group `g`'s backup superblock in 1 KiB units (the `sb=` value);
    /// None past what 64 bits hold (no device is that large).
    pub fn sb_option(&self, g: u64) -> Option<u64> {
        g.checked_mul(self.blocks_per_group)?
            .checked_add(self.first_data_block)?
            .checked_mul(self.block_size / 1024)
    }

    /// Every backup group, in order. Without SPARSE_SUPER that is every
    /// group, so the walk is bounded by the group count; with it the
    /// groups grow geometrically.
    pub fn backup_groups(&self) -> Vec<u64> {
        if let Some(bgs) = self.sparse_super2 {
            let mut g: Vec<u64> = bgs
                .iter()
                .map(|&b| u64::from(b))
                .filter(|&b| self.has_backup(b))
                .collect();
            g.sort_unstable();
            g.dedup();
            return g;
        }
        let n = self.groups();
        if !self.sparse_super {
            // Only the ends matter to the ladder; do not list millions.
            let near = 1..n.min(1 + NEAR as u64);
            let far = n.saturating_sub(FAR as u64).max(near.end)..n;
            return near.chain(far).collect();
        }
        let mut g = vec![1];
        for base in [3u64, 5, 7] {
            let mut p = base;
            while p < n {
                g.push(p);
                match p.checked_mul(base) {
                    Some(next) => p = next,
                    None => break,
                }
            }
        }
        g.retain(|&x| x < n);
        g.sort_unstable();
        g.dedup();
        g
    }

    /// The `sb=` values the ladder tries: the first [`NEAR`] backups and
    /// the last [`FAR`].
    pub fn ladder_backups(&self) -> Vec<u64> {
        let all = self.backup_groups();
        let mut pick: Vec<u64> = all.iter().take(NEAR).copied().collect();
        for g in all.iter().rev().take(FAR).rev() {
            if !pick.contains(g) {
                pick.push(*g);
            }
        }
        pick.into_iter().filter_map(|g| self.sb_option(g)).collect()
    }
}

/// Where the first backups sit with mke2fs's defaults, as (block size,
/// `sb=` value): groups 1, 3 and 5 with 8 * block size blocks per group
/// for 4 KiB, 1 KiB and 2 KiB blocks.
pub fn default_locations() -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for block in [4096u64, 1024, 2048] {
        let first = u64::from(block == 1024);
        for g in [1u64, 3, 5] {
            out.push((block, (first + g * 8 * block) * (block / 1024)));
        }
    }
    out
}

/// Where the backups of `dev`'s ext filesystem are, as `sb=` values, and
/// how that was found (for the report). From the primary superblock when
/// it is sound, else from the first backup found at a default location
/// (whose geometry gives the rest), else the plain defaults for 4 KiB and
/// 1 KiB blocks, to be tried blind.
pub fn find_backups(dev: &dyn BlockDevice) -> (Vec<u64>, String) {
    let read = |at: u64| -> Option<Vec<u8>> {
        if at.checked_add(1024)? > dev.size() {
            return None;
        }
        let mut b = vec![0u8; 1024];
        dev.read_exact_at(&mut b, at).ok()?;
        Some(b)
    };
    let primary = read(1024).ok_or_else(|| BadSuperblock("primary superblock unreadable".into()));
    match primary.and_then(|b| parse(&b)) {
        Ok(g) => (
            g.ladder_backups(),
            format!(
                "backup superblocks from the primary: {} KiB blocks, {} blocks per group",
                g.block_size / 1024,
                g.blocks_per_group
            ),
        ),
        Err(why) => {
            for (block, sb) in default_locations() {
                let Some(b) = read(sb * 1024) else { continue };
                if let Ok(g) = parse(&b) {
                    if g.block_size == block && g.group_nr != 0 {
                        return (
                            g.ladder_backups(),
                            format!(
                                "primary superblock unusable ({why}); geometry from the backup \
                                 at sb={sb} (group {})",
                                g.group_nr
                            ),
                        );
                    }
                }
            }
            (
                vec![131072, 393216, 8193, 24577],
                format!(
                    "primary superblock unusable ({why}) and no backup at the default places; \
                     trying the defaults for 4 KiB and 1 KiB blocks"
                ),
            )
        }
    }
}

/// The ext kind a superblock's features say (fsmagic's rule), for a
/// filesystem found only through a backup superblock.
pub fn kind_of(sb: &[u8]) -> Option<fsmagic::Kind> {
    let f = le::Fields::new(sb, "ext superblock");
    (f.u16(0x38).ok()? == MAGIC).then_some(())?;
    let compat = f.u32(0x5C).ok()?;
    let incompat = f.u32(0x60).ok()?;
    Some(if incompat & (0x40 | 0x80 | 0x200) != 0 {
        fsmagic::Kind::Ext4
    } else if compat & 0x4 != 0 {
        fsmagic::Kind::Ext3
    } else {
        fsmagic::Kind::Ext2
    })
}

/// An ext filesystem whose primary superblock is gone but a backup at a
/// default location is there: its kind and that backup's `sb=`.
pub fn detect_by_backup(dev: &dyn BlockDevice) -> Option<(fsmagic::Kind, u64)> {
    for (block, sb) in default_locations() {
        let at = sb * 1024;
        if at.checked_add(1024)? > dev.size() {
            continue;
        }
        let mut b = vec![0u8; 1024];
        if dev.read_exact_at(&mut b, at).is_err() {
            continue;
        }
        if matches!(parse(&b), Ok(g) if g.block_size == block && g.group_nr != 0) {
            return Some((kind_of(&b)?, sb));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    /// A superblock with the given geometry (and magic).
    fn sb(log: u32, first: u32, bpg: u32, blocks: u64, ro_compat: u32, group: u16) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        le::put_u32(&mut b, 0x04, blocks as u32);
        le::put_u32(&mut b, 0x14, first);
        le::put_u32(&mut b, 0x18, log);
        le::put_u32(&mut b, 0x20, bpg);
        b[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        b[0x5A..0x5C].copy_from_slice(&group.to_le_bytes());
        le::put_u32(&mut b, 0x64, ro_compat);
        if blocks >> 32 != 0 {
            le::put_u32(&mut b, 0x60, 0x80);
            le::put_u32(&mut b, 0x150, (blocks >> 32) as u32);
        }
        b
    }

    #[test]
    fn four_k_blocks_sparse_super() {
        // 1 TiB in 4 KiB blocks: 8192 groups of 32768 blocks.
        let g = parse(&sb(2, 0, 32768, 1 << 28, 1, 0)).unwrap();
        assert_eq!(g.groups(), 8192);
        assert_eq!(
            g.backup_groups(),
            [1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343, 625, 729, 2187, 2401, 3125, 6561]
        );
        // Group 1 at block 32768 is sb=131072 (1 KiB units), as mount(8) says.
        assert_eq!(g.sb_option(1), Some(131072));
        assert_eq!(
            g.ladder_backups(),
            [131072, 393216, 655360, 3125 * 131072, 6561 * 131072]
        );
    }

    #[test]
    fn one_k_blocks_first_data_block_one() {
        // A 64 MiB mke2fs default: 1 KiB blocks, first data block 1.
        let g = parse(&sb(0, 1, 8192, 65536, 1, 0)).unwrap();
        assert_eq!(g.groups(), 8);
        assert_eq!(g.backup_groups(), [1, 3, 5, 7]);
        // dumpe2fs: backups at 8193, 24577, 40961, 57345.
        assert_eq!(g.ladder_backups(), [8193, 24577, 40961, 57345]);
    }

    #[test]
    fn no_sparse_super_and_sparse_super2() {
        let g = parse(&sb(2, 0, 32768, 10 * 32768, 0, 0)).unwrap();
        assert_eq!(g.backup_groups(), [1, 2, 3, 8, 9]);
        let mut b = sb(2, 0, 32768, 100 * 32768, 1, 0);
        le::put_u32(&mut b, 0x5C, 0x200);
        le::put_u32(&mut b, 0x24C, 1);
        le::put_u32(&mut b, 0x250, 99);
        let g = parse(&b).unwrap();
        assert_eq!(g.backup_groups(), [1, 99]);
        assert_eq!(g.ladder_backups(), [131072, 99 * 131072]);
        le::put_u32(&mut b, 0x250, 0);
        assert_eq!(parse(&b).unwrap().backup_groups(), [1]);
        // A small filesystem of one group has no backup at all.
        assert!(parse(&sb(2, 0, 32768, 1000, 1, 0))
            .unwrap()
            .backup_groups()
            .is_empty());
    }

    #[test]
    fn bad_fields_named() {
        let mut b = sb(2, 0, 32768, 1 << 20, 1, 0);
        b[0x38] = 0;
        assert!(parse(&b).unwrap_err().0.contains("magic at +0x38"));
        let e = parse(&sb(9, 0, 32768, 1 << 20, 1, 0)).unwrap_err();
        assert!(e.0.contains("s_log_block_size at +0x18 is 9"), "{e}");
        let e = parse(&sb(2, 0, 0, 1 << 20, 1, 0)).unwrap_err();
        assert!(e.0.contains("s_blocks_per_group"), "{e}");
        let e = parse(&sb(2, 5, 32768, 3, 1, 0)).unwrap_err();
        assert!(e.0.contains("s_first_data_block"), "{e}");
        let e = parse(&sb(2, 0, 32768, 1 << 20, 1, 0)[..0x40]).unwrap_err();
        assert!(e.0.contains("past the end"), "{e}");
    }

    #[test]
    fn default_places_and_detection_by_backup() {
        let d = default_locations();
        assert_eq!(d[0], (4096, 131072));
        assert!(d.contains(&(1024, 8193)) && d.contains(&(2048, 32768)));
        // A 4 KiB filesystem whose primary is zeroed: the backup in group 1.
        let mut img = vec![0u8; 200 << 20];
        let backup = sb(2, 0, 32768, 5 * 32768, 1, 1);
        img[32768 * 4096..32768 * 4096 + 1024].copy_from_slice(&backup);
        let dev = MemDevice::new(img, 512);
        assert_eq!(detect_by_backup(&dev), Some((fsmagic::Kind::Ext2, 131072)));
        let (list, how) = find_backups(&dev);
        assert_eq!(list, [131072, 393216]);
        assert!(how.contains("from the backup at sb=131072"), "{how}");
        let (list, how) = find_backups(&MemDevice::new(vec![0u8; 1 << 20], 512));
        assert_eq!(list, [131072, 393216, 8193, 24577]);
        assert!(how.contains("defaults"), "{how}");
    }

    proptest::proptest! {
        /// Any bytes: an error or a geometry, never a panic or a runaway
        /// list.
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1100)) {
            if let Ok(g) = parse(&data) {
                let list = g.backup_groups();
                proptest::prop_assert!(list.len() < 200);
                let _ = g.ladder_backups();
            }
            let _ = kind_of(&data);
        }

        /// Sound magic and random geometry fields.
        #[test]
        fn random_geometry(log in 0u32..8, first in 0u32..3, bpg in proptest::num::u32::ANY,
                           lo in proptest::num::u32::ANY, hi in proptest::num::u32::ANY,
                           compat in proptest::num::u32::ANY, ro in proptest::num::u32::ANY,
                           bgs in proptest::num::u32::ANY) {
            let mut b = sb(log, first, bpg, u64::from(lo), ro, 0);
            le::put_u32(&mut b, 0x60, 0x80);
            le::put_u32(&mut b, 0x150, hi);
            le::put_u32(&mut b, 0x5C, compat);
            le::put_u32(&mut b, 0x24C, bgs);
            if let Ok(g) = parse(&b) {
                for s in g.ladder_backups() {
                    proptest::prop_assert!(s / (g.block_size / 1024) < g.blocks);
                }
            }
        }
    }
}
