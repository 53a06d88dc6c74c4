//! A superblock writer for tests (ours and other crates'): fixtures with
//! known fields, checked against mdadm --examine in this crate's tests. Not
//! used by the appliance to write to disks.

use crate::superblock::{csum_090, csum_v1, MD_MAGIC};

/// A version-1.x superblock for member `dev_number` of a `raid_disks` array.
pub fn write_v1(
    level: i32,
    raid_disks: u32,
    dev_number: u32,
    super_offset: u64,
    name: &str,
) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 0, MD_MAGIC);
    put32(&mut b, 4, 1);
    b[16..32].copy_from_slice(&[
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ]);
    b[32..32 + name.len()].copy_from_slice(name.as_bytes());
    put64(&mut b, 64, 1_700_000_000);
    put32(&mut b, 72, level as u32);
    put32(&mut b, 76, if level == 5 { 2 } else { 0 });
    put64(&mut b, 80, 2048 * 30);
    put32(&mut b, 88, 128);
    put32(&mut b, 92, raid_disks);
    put64(&mut b, 128, 2048);
    put64(&mut b, 136, 2048 * 30);
    put64(&mut b, 144, super_offset / 512);
    put32(&mut b, 160, dev_number);
    b[168..184].copy_from_slice(&[7u8; 16]);
    put64(&mut b, 192, 1_700_000_100);
    put64(&mut b, 200, 42);
    put64(&mut b, 208, u64::MAX);
    put32(&mut b, 220, raid_disks);
    for i in 0..raid_disks as usize {
        b[256 + 2 * i..258 + 2 * i].copy_from_slice(&(i as u16).to_le_bytes());
    }
    let c = csum_v1(&b, raid_disks);
    put32(&mut b, 216, c);
    b
}

/// A 0.90 superblock for member `raid_disk`.
pub fn write_090(level: i32, raid_disks: u32, raid_disk: u32, size_kib: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let mut put = |w: usize, v: u32| b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    put(0, MD_MAGIC);
    put(2, 90);
    put(5, 0xdeadbeef);
    put(6, 1_700_000_000);
    put(7, level as u32);
    put(8, size_kib);
    put(9, raid_disks);
    put(10, raid_disks);
    put(13, 1);
    put(14, 2);
    put(15, 3);
    put(32, 1_700_000_100);
    put(33, 1);
    put(34, raid_disks);
    put(35, raid_disks);
    put(39, 9);
    put(65, 65536);
    for d in 0..raid_disks as usize {
        let base = 128 + 32 * d;
        put(base, d as u32);
        put(base + 3, d as u32);
        put(base + 4, 6); // active, sync
    }
    let this = 992;
    put(this, raid_disk);
    put(this + 3, raid_disk);
    put(this + 4, 6);
    let c = csum_090(&b);
    b[38 * 4..38 * 4 + 4].copy_from_slice(&c.to_le_bytes());
    b
}
