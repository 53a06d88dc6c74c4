//! A small btrfs made byte by byte for tests: one 8 MiB device (devid 1)
//! with a DUP SYSTEM chunk, a two-level chunk tree (a root node and two
//! leaves, 4 KiB nodes) listing DATA single, METADATA DUP, and RAID1,
//! RAID0 and RAID5 chunks shared with a devid 2 that is not there.

use crate::chunk::Profile;
use crate::crc32c::crc32c;
use le::{put_u32, put_u64};

pub const NODE: usize = 4096;
pub const DEV_SIZE: usize = 8 << 20;
pub const FSID: [u8; 16] = *b"synthetic-fsid!!";
pub const SYS_LOGICAL: u64 = 1 << 20;
/// The SYSTEM chunk's two copies on the device.
pub const SYS_COPIES: [u64; 2] = [1 << 20, 2 << 20];
pub const ROOT: u64 = SYS_LOGICAL;
pub const LEAVES: [u64; 2] = [SYS_LOGICAL + 4096, SYS_LOGICAL + 8192];
const GEN: u64 = 9;

/// `(logical, length, type flags, sub_stripes, stripes (devid, offset))`
pub type Spec = (u64, u64, u64, u16, Vec<(u64, u64)>);

pub fn chunks() -> Vec<Vec<Spec>> {
    let m = 1u64 << 20;
    vec![
        vec![
            (
                SYS_LOGICAL,
                m,
                2 | 0x20,
                1,
                vec![(1, SYS_COPIES[0]), (1, SYS_COPIES[1])],
            ),
            (16 * m, 2 * m, 1, 1, vec![(1, 4 * m)]),
        ],
        vec![
            (
                32 * m,
                m / 2,
                4 | 0x20,
                1,
                vec![(1, 6 * m), (1, 6 * m + m / 2)],
            ),
            (64 * m, m / 2, 1 | 0x10, 1, vec![(1, 7 * m), (2, m)]),
            (
                128 * m,
                m / 4,
                1 | 0x8,
                1,
                vec![(2, 3 * m), (1, 7 * m + m / 2)],
            ),
            (
                256 * m,
                m / 4,
                1 | 0x80,
                1,
                vec![(1, 7 * m + 3 * m / 4), (2, 5 * m), (2, 6 * m)],
            ),
        ],
    ]
}

pub fn profiles() -> Vec<Profile> {
    vec![
        Profile::Dup,
        Profile::Single,
        Profile::Dup,
        Profile::Raid1,
        Profile::Raid0,
        Profile::Raid5,
    ]
}

/// The key and `btrfs_chunk` bytes of one chunk.
pub fn chunk_bytes(s: &Spec) -> (Vec<u8>, Vec<u8>) {
    let mut key = vec![0u8; 17];
    put_u64(&mut key, 0, 256);
    key[8] = 228;
    put_u64(&mut key, 9, s.0);
    let mut c = vec![0u8; 48 + 32 * s.4.len()];
    put_u64(&mut c, 0, s.1);
    put_u64(&mut c, 8, 2);
    put_u64(&mut c, 16, 65536);
    put_u64(&mut c, 24, s.2);
    put_u32(&mut c, 32, 65536);
    put_u32(&mut c, 36, 65536);
    put_u32(&mut c, 40, 4096);
    c[44..46].copy_from_slice(&(s.4.len() as u16).to_le_bytes());
    c[46..48].copy_from_slice(&s.3.to_le_bytes());
    for (i, (devid, off)) in s.4.iter().enumerate() {
        put_u64(&mut c, 48 + 32 * i, *devid);
        put_u64(&mut c, 48 + 32 * i + 8, *off);
    }
    (key, c)
}

fn header(n: &mut [u8], logical: u64, nritems: u32, level: u8) {
    n[0x20..0x30].copy_from_slice(&FSID);
    put_u64(n, 0x30, logical);
    put_u64(n, 0x50, GEN);
    put_u64(n, 0x58, 3);
    put_u32(n, 0x60, nritems);
    n[0x64] = level;
}

/// Recomputes a node's or superblock's crc32c.
pub fn seal(b: &mut [u8]) {
    let c = crc32c(&b[0x20..]);
    put_u32(b, 0, c);
}

fn leaf(logical: u64, items: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut n = vec![0u8; NODE];
    header(&mut n, logical, items.len() as u32, 0);
    let mut end = NODE - 101;
    for (i, (key, data)) in items.iter().enumerate() {
        end -= data.len();
        let at = 101 + 25 * i;
        n[at..at + 17].copy_from_slice(key);
        put_u32(&mut n, at + 17, end as u32);
        put_u32(&mut n, at + 21, data.len() as u32);
        n[101 + end..101 + end + data.len()].copy_from_slice(data);
    }
    seal(&mut n);
    n
}

/// The image.
pub fn image() -> Vec<u8> {
    let mut img = vec![0u8; DEV_SIZE];
    let specs = chunks();
    // Superblock.
    let sb = &mut img[65536..65536 + 4096];
    sb[0x20..0x30].copy_from_slice(&FSID);
    put_u64(sb, 0x30, 65536);
    sb[0x40..0x48].copy_from_slice(b"_BHRfS_M");
    put_u64(sb, 0x48, GEN);
    put_u64(sb, 0x58, ROOT);
    put_u64(sb, 0x70, DEV_SIZE as u64);
    put_u64(sb, 0x88, 2);
    put_u32(sb, 0x90, 4096);
    put_u32(sb, 0x94, NODE as u32);
    put_u64(sb, 0xA4, GEN);
    sb[0xC7] = 1;
    put_u64(sb, 0xC9, 1);
    put_u64(sb, 0xC9 + 8, DEV_SIZE as u64);
    let (k, c) = chunk_bytes(&specs[0][0]);
    let sys: Vec<u8> = [k, c].concat();
    put_u32(sb, 0xA0, sys.len() as u32);
    sb[0x32B..0x32B + sys.len()].copy_from_slice(&sys);
    seal(sb);
    // Chunk tree: root at level 1 over two leaves.
    let mut root = vec![0u8; NODE];
    header(&mut root, ROOT, 2, 1);
    for (i, l) in LEAVES.iter().enumerate() {
        let at = 101 + 33 * i;
        let first = if i == 0 {
            (1u64, 216u8, 1u64)
        } else {
            (256, 228, specs[1][0].0)
        };
        put_u64(&mut root, at, first.0);
        root[at + 8] = first.1;
        put_u64(&mut root, at + 9, first.2);
        put_u64(&mut root, at + 17, *l);
        put_u64(&mut root, at + 25, GEN);
    }
    seal(&mut root);
    let mut dev_key = vec![0u8; 17];
    put_u64(&mut dev_key, 0, 1);
    dev_key[8] = 216;
    put_u64(&mut dev_key, 9, 1);
    let mut dev_item = vec![0u8; 98];
    put_u64(&mut dev_item, 0, 1);
    let mut items0 = vec![(dev_key, dev_item)];
    items0.extend(specs[0].iter().map(chunk_bytes));
    let leaf0 = leaf(LEAVES[0], &items0);
    let items1: Vec<_> = specs[1].iter().map(chunk_bytes).collect();
    let leaf1 = leaf(LEAVES[1], &items1);
    for copy in SYS_COPIES {
        for (logical, node) in [(ROOT, &root), (LEAVES[0], &leaf0), (LEAVES[1], &leaf1)] {
            let at = (copy + logical - SYS_LOGICAL) as usize;
            img[at..at + NODE].copy_from_slice(node);
        }
    }
    img
}
