//! An md superblock and member-image writer for tests (mdraid's and other
//! crates'): fixtures with known fields, checked against mdadm --examine in
//! mdraid's tests. Every offset is the production crate's named one
//! (`mdraid::superblock`). Not part of the appliance.

use le::{put_u32, put_u64};
use mdraid::superblock::{csum_090, csum_v1, v090, v1, MD_MAGIC};

/// A version-1.x superblock for member `dev_number` of a `raid_disks` array.
pub fn write_v1(
    level: i32,
    raid_disks: u32,
    dev_number: u32,
    super_offset: u64,
    name: &str,
) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    put_u32(&mut b, v1::MAGIC, MD_MAGIC);
    put_u32(&mut b, v1::MAJOR_VERSION, 1);
    b[v1::SET_UUID..v1::SET_UUID + 16].copy_from_slice(&[
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ]);
    b[v1::SET_NAME..v1::SET_NAME + name.len()].copy_from_slice(name.as_bytes());
    put_u64(&mut b, v1::CTIME, 1_700_000_000);
    put_u32(&mut b, v1::LEVEL, level as u32);
    put_u32(&mut b, v1::LAYOUT, if level == 5 { 2 } else { 0 });
    put_u64(&mut b, v1::SIZE, 2048 * 30);
    put_u32(&mut b, v1::CHUNKSIZE, 128);
    put_u32(&mut b, v1::RAID_DISKS, raid_disks);
    put_u64(&mut b, v1::DATA_OFFSET, 2048);
    put_u64(&mut b, v1::DATA_SIZE, 2048 * 30);
    put_u64(&mut b, v1::SUPER_OFFSET, super_offset / 512);
    put_u32(&mut b, v1::DEV_NUMBER, dev_number);
    b[v1::DEVICE_UUID..v1::DEVICE_UUID + 16].copy_from_slice(&[7u8; 16]);
    put_u64(&mut b, v1::UTIME, 1_700_000_100);
    put_u64(&mut b, v1::EVENTS, 42);
    put_u64(&mut b, v1::RESYNC_OFFSET, u64::MAX);
    put_u32(&mut b, v1::MAX_DEV, raid_disks);
    for i in 0..raid_disks as usize {
        b[v1::DEV_ROLES + 2 * i..v1::DEV_ROLES + 2 * i + 2]
            .copy_from_slice(&(i as u16).to_le_bytes());
    }
    let c = csum_v1(&b, raid_disks);
    put_u32(&mut b, v1::SB_CSUM, c);
    b
}

/// A 0.90 superblock for member `raid_disk`.
pub fn write_090(level: i32, raid_disks: u32, raid_disk: u32, size_kib: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let mut put = |w: usize, v: u32| b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    put(v090::MAGIC, MD_MAGIC);
    put(v090::MINOR_VERSION, 90);
    put(v090::SET_UUID0, 0xdeadbeef);
    put(v090::CTIME, 1_700_000_000);
    put(v090::LEVEL, level as u32);
    put(v090::SIZE, size_kib);
    put(v090::NR_DISKS, raid_disks);
    put(v090::RAID_DISKS, raid_disks);
    put(v090::SET_UUID1, 1);
    put(v090::SET_UUID2, 2);
    put(v090::SET_UUID3, 3);
    put(v090::UTIME, 1_700_000_100);
    put(v090::STATE, 1);
    put(v090::ACTIVE_DISKS, raid_disks);
    put(v090::WORKING_DISKS, raid_disks);
    put(v090::EVENTS_LO, 9);
    put(v090::CHUNK_SIZE, 65536);
    for d in 0..raid_disks as usize {
        let base = v090::DISKS + v090::DISK_WORDS * d;
        put(base + v090::DISK_NUMBER, d as u32);
        put(base + v090::DISK_RAID_DISK, d as u32);
        put(base + v090::DISK_STATE, 6); // active, sync
    }
    let this = v090::THIS_DISK;
    put(this + v090::DISK_NUMBER, raid_disk);
    put(this + v090::DISK_RAID_DISK, raid_disk);
    put(this + v090::DISK_STATE, 6);
    let c = csum_090(&b);
    b[v090::SB_CSUM * 4..v090::SB_CSUM * 4 + 4].copy_from_slice(&c.to_le_bytes());
    b
}

/// An array to build member images for (tests only).
#[derive(Clone, Debug)]
pub struct ArraySpec {
    /// "0.90", "1.0", "1.1" or "1.2".
    pub version: &'static str,
    pub level: i32,
    pub layout: u32,
    pub chunk_bytes: u64,
    pub raid_disks: u32,
    /// Bytes of array data on each member (a multiple of 64 KiB).
    pub component_bytes: u64,
    pub uuid: [u8; 16],
    /// `host:name` for 1.x.
    pub name: String,
    /// 0.90 preferred minor.
    pub md_minor: u32,
    pub events: u64,
    /// Seed of the array contents (see [`pattern`]).
    pub seed: u64,
    /// Bytes written at array offset 0 over the pattern (e.g. an LVM label).
    pub head: Vec<u8>,
}

impl ArraySpec {
    pub fn new(version: &'static str, level: i32, raid_disks: u32) -> ArraySpec {
        ArraySpec {
            version,
            level,
            layout: match level {
                5 | 6 => 2,
                10 => 0x102,
                _ => 0,
            },
            chunk_bytes: if matches!(level, 1 | -1) {
                0
            } else {
                64 * 1024
            },
            raid_disks,
            component_bytes: 1 << 20,
            uuid: [
                0x5e, 0xed, 0x00, 0x01, 0xa1, 0xb2, 0xc3, 0xd4, 0x10, 0x20, 0x30, 0x40, 0x99, 0x88,
                0x77, 0x66,
            ],
            name: "DiskStation:2".into(),
            md_minor: 0,
            events: 100,
            seed: 1,
            head: Vec::new(),
        }
    }

    /// (device bytes, superblock offset, data offset) of one member.
    pub fn placement(&self) -> (u64, u64, u64) {
        let c = self.component_bytes;
        match self.version {
            "1.1" => (c + (1 << 20), 0, 1 << 20),
            "1.2" => (c + (1 << 20), 4096, 1 << 20),
            "1.0" => {
                let dev = c + 64 * 1024;
                (dev, ((dev / 512 - 16) & !7) * 512, 0)
            }
            _ => {
                let dev = c + 128 * 1024;
                (dev, (((dev / 512) & !127) - 128) * 512, 0)
            }
        }
    }

    /// The array's size in bytes.
    pub fn array_bytes(&self) -> u64 {
        let n = u64::from(self.raid_disks);
        let rows = self
            .component_bytes
            .checked_div(self.chunk_bytes)
            .unwrap_or(0);
        match self.level {
            1 => self.component_bytes,
            4 | 5 => rows * self.chunk_bytes * (n - 1),
            6 => rows * self.chunk_bytes * (n - 2),
            0 => rows * self.chunk_bytes * n,
            10 => {
                let (nc, fc) = (
                    u64::from(self.layout & 0xff),
                    u64::from((self.layout >> 8) & 0xff),
                );
                rows / fc * n / nc * self.chunk_bytes
            }
            _ => 0,
        }
    }

    /// Array contents at `off`: the pattern, with `head` over the start.
    pub fn content(&self, off: u64, buf: &mut [u8]) {
        pattern(self.seed, off, buf);
        for (i, b) in buf.iter_mut().enumerate() {
            if let Some(h) = self.head.get((off + i as u64) as usize) {
                *b = *h;
            }
        }
    }
}

/// Deterministic pseudo-random bytes: byte at array offset `off` depends
/// only on (seed, off).
pub fn pattern(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = off + i as u64;
        let mut z = (x / 8).wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *b = (z >> ((x % 8) * 8)) as u8;
    }
}

/// GF(2^8) multiply by shift-and-add (polynomial 0x11d), independent of
/// the table-based arithmetic in [`mdraid::gf`].
pub fn gf_mul_slow(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1d;
        }
        b >>= 1;
    }
    r
}

/// What disk `d` holds in RAID-5/6 stripe `s` (n disks), described per
/// disk (the inverse of the mapping in `layout`): `Err('P')`/`Err('Q')`
/// or `Ok(k)`, the logical data index. Layouts 0-3 only.
pub fn disk_holds(level: i32, layout: u32, n: u64, s: u64, d: u64) -> Result<u64, char> {
    let rot = s % n;
    let left = layout == 0 || layout == 2;
    let symmetric = layout == 2 || layout == 3;
    let pd = if left { n - 1 - rot } else { rot };
    if level == 5 {
        if d == pd {
            return Err('P');
        }
        return Ok(if symmetric {
            (d + n - pd - 1) % n
        } else if d < pd {
            d
        } else {
            d - 1
        });
    }
    if symmetric {
        let qd = (pd + 1) % n;
        if d == pd {
            return Err('P');
        }
        if d == qd {
            return Err('Q');
        }
        return Ok((d + 2 * n - pd - 2) % n);
    }
    // Asymmetric RAID-6: Q follows P; when P is last, Q is disk 0.
    let qd = if pd == n - 1 { 0 } else { pd + 1 };
    if d == pd {
        Err('P')
    } else if d == qd {
        Err('Q')
    } else if pd == n - 1 {
        Ok(d - 1)
    } else if d < pd {
        Ok(d)
    } else {
        Ok(d - 2)
    }
}

/// The Q coefficient exponent of disk `d` in a RAID-6 stripe: md counts
/// the data disks starting from the disk after Q (disk 0 if Q is last).
fn q_exponent(n: u64, pd: u64, qd: u64, d: u64) -> u32 {
    let start = if qd == n - 1 { 0 } else { qd + 1 };
    let mut e = 0;
    for i in 0..n {
        let x = (start + i) % n;
        if x == d {
            return e;
        }
        if x != pd && x != qd {
            e += 1;
        }
    }
    e
}

/// All copies of RAID-10 array chunk `c`: (disk, device chunk row), from
/// md's description: near copies next to each other across the disks,
/// far copies in the later sections of the disks shifted by `near` disks,
/// offset copies in the next rows shifted likewise.
pub fn raid10_places(layout: u32, n: u64, dev_rows: u64, c: u64) -> Vec<(u64, u64)> {
    let nc = u64::from(layout & 0xff);
    let fc = u64::from((layout >> 8) & 0xff);
    let offset = layout & 0x10000 != 0;
    let array_chunks = dev_rows / fc * n / nc;
    let section = (array_chunks * nc * fc).div_ceil(n) / fc;
    let mut out = Vec::new();
    for i in 0..nc {
        let pos = c * nc + i;
        let (d, row) = (pos % n, pos / n);
        for f in 0..fc {
            let disk = (d + f * nc) % n;
            let r = if offset {
                row * fc + f
            } else {
                row + f * section
            };
            out.push((disk, r));
        }
    }
    out
}

/// Data areas of all members (index = role), array contents from `spec`.
pub fn member_data(spec: &ArraySpec) -> Vec<Vec<u8>> {
    let n = u64::from(spec.raid_disks);
    let comp = spec.component_bytes as usize;
    let mut out = vec![vec![0u8; comp]; n as usize];
    let cb = spec.chunk_bytes;
    match spec.level {
        1 => {
            for m in out.iter_mut() {
                spec.content(0, m);
            }
        }
        5 | 6 => {
            let rows = spec.component_bytes / cb;
            let dd = if spec.level == 5 { n - 1 } else { n - 2 };
            let mut chunk = vec![0u8; cb as usize];
            for s in 0..rows {
                let at = (s * cb) as usize;
                let mut p = vec![0u8; cb as usize];
                let mut q = vec![0u8; cb as usize];
                let (mut pd, mut qd) = (0, 0);
                for d in 0..n {
                    match disk_holds(spec.level, spec.layout, n, s, d) {
                        Ok(k) => {
                            spec.content((s * dd + k) * cb, &mut chunk);
                            out[d as usize][at..at + cb as usize].copy_from_slice(&chunk);
                        }
                        Err('P') => pd = d,
                        Err(_) => qd = d,
                    }
                }
                for d in 0..n {
                    if d == pd || (spec.level == 6 && d == qd) {
                        continue;
                    }
                    let coef = {
                        let mut c = 1u8;
                        for _ in 0..q_exponent(n, pd, qd, d) {
                            c = gf_mul_slow(c, 2);
                        }
                        c
                    };
                    let src = &out[d as usize][at..at + cb as usize];
                    for i in 0..cb as usize {
                        p[i] ^= src[i];
                        q[i] ^= gf_mul_slow(coef, src[i]);
                    }
                }
                out[pd as usize][at..at + cb as usize].copy_from_slice(&p);
                if spec.level == 6 {
                    out[qd as usize][at..at + cb as usize].copy_from_slice(&q);
                }
            }
        }
        10 => {
            let rows = spec.component_bytes / cb;
            let chunks = spec.array_bytes() / cb;
            let mut chunk = vec![0u8; cb as usize];
            for c in 0..chunks {
                spec.content(c * cb, &mut chunk);
                for (d, r) in raid10_places(spec.layout, n, rows, c) {
                    let at = (r * cb) as usize;
                    out[d as usize][at..at + cb as usize].copy_from_slice(&chunk);
                }
            }
        }
        _ => {}
    }
    out
}

/// The superblock of member `role` (None: spare) with its own event count;
/// `faulty` roles are marked faulty in the device table.
pub fn superblock_for(spec: &ArraySpec, role: Option<u32>, events: u64, faulty: &[u32]) -> Vec<u8> {
    let (dev_bytes, sb_off, data_off) = spec.placement();
    if spec.version == "0.90" {
        return superblock_090(spec, role, events, faulty);
    }
    let mut b = vec![0u8; 4096];
    put_u32(&mut b, v1::MAGIC, MD_MAGIC);
    put_u32(&mut b, v1::MAJOR_VERSION, 1);
    b[v1::SET_UUID..v1::SET_UUID + 16].copy_from_slice(&spec.uuid);
    let name = spec.name.as_bytes();
    let nl = name.len().min(32);
    b[v1::SET_NAME..v1::SET_NAME + nl].copy_from_slice(&name[..nl]);
    put_u64(&mut b, v1::CTIME, 1_700_000_000);
    put_u32(&mut b, v1::LEVEL, spec.level as u32);
    put_u32(&mut b, v1::LAYOUT, spec.layout);
    put_u64(&mut b, v1::SIZE, spec.component_bytes / 512);
    put_u32(&mut b, v1::CHUNKSIZE, (spec.chunk_bytes / 512) as u32);
    put_u32(&mut b, v1::RAID_DISKS, spec.raid_disks);
    put_u64(&mut b, v1::DATA_OFFSET, data_off / 512);
    let avail = if spec.version == "1.0" {
        sb_off - data_off
    } else {
        dev_bytes - data_off
    };
    put_u64(&mut b, v1::DATA_SIZE, avail / 512);
    put_u64(&mut b, v1::SUPER_OFFSET, sb_off / 512);
    // Device numbers: role r is device r; a spare is device raid_disks.
    let dev_number = role.unwrap_or(spec.raid_disks);
    put_u32(&mut b, v1::DEV_NUMBER, dev_number);
    let mut du = [0u8; 16];
    du[0] = 0xde;
    du[15] = dev_number as u8;
    b[v1::DEVICE_UUID..v1::DEVICE_UUID + 16].copy_from_slice(&du);
    put_u64(&mut b, v1::UTIME, 1_700_000_000 + events);
    put_u64(&mut b, v1::EVENTS, events);
    put_u64(&mut b, v1::RESYNC_OFFSET, u64::MAX);
    let max_dev = spec.raid_disks + 1;
    put_u32(&mut b, v1::MAX_DEV, max_dev);
    for i in 0..max_dev as usize {
        let v: u16 = if (i as u32) < spec.raid_disks {
            if faulty.contains(&(i as u32)) {
                0xfffe
            } else {
                i as u16
            }
        } else {
            0xffff
        };
        b[v1::DEV_ROLES + 2 * i..v1::DEV_ROLES + 2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
    let c = csum_v1(&b, max_dev);
    put_u32(&mut b, v1::SB_CSUM, c);
    b
}

fn superblock_090(spec: &ArraySpec, role: Option<u32>, events: u64, faulty: &[u32]) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let mut put = |w: usize, v: u32| b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    let u = |i: usize| {
        u32::from_be_bytes([
            spec.uuid[i],
            spec.uuid[i + 1],
            spec.uuid[i + 2],
            spec.uuid[i + 3],
        ])
    };
    put(v090::MAGIC, MD_MAGIC);
    put(v090::MINOR_VERSION, 90);
    put(v090::SET_UUID0, u(0));
    put(v090::CTIME, 1_700_000_000);
    put(v090::LEVEL, spec.level as u32);
    put(v090::SIZE, (spec.component_bytes / 1024) as u32);
    put(v090::NR_DISKS, spec.raid_disks);
    put(v090::RAID_DISKS, spec.raid_disks);
    put(v090::MD_MINOR, spec.md_minor);
    put(v090::SET_UUID1, u(4));
    put(v090::SET_UUID2, u(8));
    put(v090::SET_UUID3, u(12));
    put(v090::UTIME, 1_700_000_000 + events as u32);
    put(v090::STATE, 1);
    let working = spec.raid_disks - faulty.len() as u32;
    put(v090::ACTIVE_DISKS, working);
    put(v090::WORKING_DISKS, working);
    put(v090::FAILED_DISKS, faulty.len() as u32);
    put(v090::EVENTS_LO, events as u32);
    put(v090::EVENTS_HI, (events >> 32) as u32);
    put(v090::LAYOUT, spec.layout);
    put(v090::CHUNK_SIZE, spec.chunk_bytes as u32);
    for d in 0..spec.raid_disks as usize {
        let base = v090::DISKS + v090::DISK_WORDS * d;
        put(base + v090::DISK_NUMBER, d as u32);
        put(base + v090::DISK_MAJOR, 8);
        put(base + v090::DISK_MINOR, 16 * d as u32 + 1);
        put(base + v090::DISK_RAID_DISK, d as u32);
        put(
            base + v090::DISK_STATE,
            if faulty.contains(&(d as u32)) { 1 } else { 6 },
        );
    }
    let this = v090::THIS_DISK;
    let r = role.unwrap_or(spec.raid_disks);
    put(this + v090::DISK_NUMBER, r);
    put(this + v090::DISK_MAJOR, 8);
    put(this + v090::DISK_MINOR, 16 * r + 1);
    put(this + v090::DISK_RAID_DISK, r);
    put(this + v090::DISK_STATE, if role.is_some() { 6 } else { 0 });
    let c = csum_090(&b);
    b[v090::SB_CSUM * 4..v090::SB_CSUM * 4 + 4].copy_from_slice(&c.to_le_bytes());
    b
}

/// Whole member images (index = role): superblock plus data area, all in
/// sync with `spec.events`.
pub fn build_members(spec: &ArraySpec) -> Vec<Vec<u8>> {
    let (dev_bytes, sb_off, data_off) = spec.placement();
    member_data(spec)
        .into_iter()
        .enumerate()
        .map(|(r, data)| {
            let mut img = vec![0u8; dev_bytes as usize];
            img[data_off as usize..data_off as usize + data.len()].copy_from_slice(&data);
            let sb = superblock_for(spec, Some(r as u32), spec.events, &[]);
            img[sb_off as usize..sb_off as usize + 4096].copy_from_slice(&sb);
            img
        })
        .collect()
}

/// Replaces member image `img`'s superblock with one for `role` at `events`.
pub fn set_superblock(
    spec: &ArraySpec,
    img: &mut [u8],
    role: Option<u32>,
    events: u64,
    faulty: &[u32],
) {
    let (_, sb_off, _) = spec.placement();
    let sb = superblock_for(spec, role, events, faulty);
    img[sb_off as usize..sb_off as usize + 4096].copy_from_slice(&sb);
}

/// An LVM2 PV label as pvcreate writes it into sector 1 (only the fields
/// the scan looks at: "LABELONE", sector number, "LVM2 001").
pub fn lvm_label() -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    h[512..520].copy_from_slice(b"LABELONE");
    h[520..528].copy_from_slice(&1u64.to_le_bytes());
    h[536..544].copy_from_slice(b"LVM2 001");
    h
}
