//! The btrfs superblock: 4096 bytes at 64 KiB of every device, with
//! copies at 64 MiB and 256 GiB where the device is that large. All
//! fields little-endian.
//!
//! | offset | field | |
//! |---|---|---|
//! | 0x000 | `csum[32]` | checksum of bytes 0x20..0x1000 (crc32c: first 4 bytes) |
//! | 0x020 | `fsid[16]` | the filesystem's UUID, the same on all its devices |
//! | 0x030 | `u64 bytenr` | where this copy lies on the device |
//! | 0x038 | `u64 flags` | |
//! | 0x040 | `magic[8]` | `_BHRfS_M` |
//! | 0x048 | `u64 generation` | |
//! | 0x050 | `u64 root` | logical address of the root tree |
//! | 0x058 | `u64 chunk_root` | logical address of the chunk tree's root node |
//! | 0x060 | `u64 log_root` | |
//! | 0x070 | `u64 total_bytes` | of all devices |
//! | 0x078 | `u64 bytes_used` | |
//! | 0x088 | `u64 num_devices` | |
//! | 0x090 | `u32 sectorsize` | |
//! | 0x094 | `u32 nodesize` | tree node size |
//! | 0x0A0 | `u32 sys_chunk_array_size` | bytes used of `sys_chunk_array` |
//! | 0x0A4 | `u64 chunk_root_generation` | |
//! | 0x0BC | `u64 incompat_flags` | 0x400 METADATA_UUID |
//! | 0x0C4 | `u16 csum_type` | 0 crc32c, 1 xxhash64, 2 sha256, 3 blake2b |
//! | 0x0C7 | `u8 chunk_root_level` | |
//! | 0x0C9 | `dev_item` (98 bytes) | this device: `u64 devid` at +0, `u64 total_bytes` at +8, `uuid[16]` at +0x42 |
//! | 0x12B | `label[256]` | |
//! | 0x23B | `metadata_uuid[16]` | the fsid tree nodes carry, with METADATA_UUID |
//! | 0x32B | `sys_chunk_array[2048]` | the SYSTEM chunks: (disk key, `btrfs_chunk`) pairs, see [`crate::chunk`] |

use crate::crc32c::crc32c;
use blockdev::BlockDevice;
use le::Fields;

/// Bytes of a superblock.
pub const SIZE: usize = 4096;
/// Where the superblock and its copies lie on each device.
pub const OFFSETS: [u64; 3] = [64 << 10, 64 << 20, 256 << 30];
pub const MAGIC: &[u8; 8] = b"_BHRfS_M";
const INCOMPAT_METADATA_UUID: u64 = 0x400;
/// Bytes the superblock has for SYSTEM chunks.
pub const SYS_CHUNK_ARRAY_MAX: usize = 2048;
const SYS_CHUNK_ARRAY: usize = 0x32B;
/// The deepest B-tree btrfs makes has 8 levels (0..=7).
pub const MAX_LEVEL: u8 = 7;

/// What the chunk map needs from a superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Super {
    /// Where this copy was read.
    pub bytenr: u64,
    pub fsid: [u8; 16],
    /// The fsid tree node headers carry (`fsid` unless METADATA_UUID).
    pub metadata_uuid: [u8; 16],
    pub generation: u64,
    pub chunk_root: u64,
    pub chunk_root_level: u8,
    pub chunk_root_generation: u64,
    pub total_bytes: u64,
    pub num_devices: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub csum_type: u16,
    /// This device's id and size (`dev_item`).
    pub devid: u64,
    pub dev_total_bytes: u64,
    pub dev_uuid: [u8; 16],
    pub label: String,
    /// `sys_chunk_array`, its used bytes.
    pub sys_chunk_array: Vec<u8>,
}

fn err(at: u64, field: &str, off: usize, expected: &str, found: impl std::fmt::Display) -> String {
    format!(
        "btrfs superblock at byte {at}: {field} (at +{off:#x}): expected {expected}, found {found}"
    )
}

/// A name for a checksum type.
pub fn csum_name(t: u16) -> String {
    match t {
        0 => "crc32c".into(),
        1 => "xxhash64".into(),
        2 => "sha256".into(),
        3 => "blake2b".into(),
        n => format!("unknown type {n}"),
    }
}

/// `sizes` must be a power of two within `lo..=hi`.
fn pow2(v: u32, lo: u32, hi: u32) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

/// A UUID as text.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Super {
    /// Parses the superblock copy read at device byte `at`. The checksum
    /// is checked when it is crc32c (others are not known here).
    pub fn parse(b: &[u8], at: u64) -> Result<Super, String> {
        let f = Fields::new(b, "btrfs superblock");
        let e = |x: le::OutOfRange| format!("at byte {at}: {x}");
        let magic = f.bytes(0x40, 8).map_err(e)?;
        if magic != MAGIC {
            return Err(err(
                at,
                "magic",
                0x40,
                "_BHRfS_M",
                String::from_utf8_lossy(magic).escape_debug(),
            ));
        }
        if b.len() < SIZE {
            return Err(err(at, "size", 0, "4096 bytes", b.len()));
        }
        let csum_type = f.u16(0xC4).map_err(e)?;
        if csum_type == 0 {
            let stored = f.u32(0).map_err(e)?;
            let computed = crc32c(&b[0x20..SIZE]);
            if stored != computed {
                return Err(err(
                    at,
                    "csum",
                    0,
                    &format!("{computed:#010x} (crc32c of bytes 0x20..0x1000)"),
                    format!("{stored:#010x}"),
                ));
            }
        }
        let bytenr = f.u64(0x30).map_err(e)?;
        if bytenr != at {
            return Err(err(at, "bytenr", 0x30, &at.to_string(), bytenr));
        }
        let sectorsize = f.u32(0x90).map_err(e)?;
        if !pow2(sectorsize, 512, 65536) {
            return Err(err(
                at,
                "sectorsize",
                0x90,
                "a power of two, 512..=65536",
                sectorsize,
            ));
        }
        let nodesize = f.u32(0x94).map_err(e)?;
        if !pow2(nodesize, 4096, 65536) || nodesize < sectorsize {
            return Err(err(
                at,
                "nodesize",
                0x94,
                "a power of two, 4096..=65536, at least sectorsize",
                nodesize,
            ));
        }
        let sys_size = f.u32(0xA0).map_err(e)? as usize;
        if sys_size > SYS_CHUNK_ARRAY_MAX {
            return Err(err(
                at,
                "sys_chunk_array_size",
                0xA0,
                "at most 2048",
                sys_size,
            ));
        }
        let chunk_root_level = f.u8(0xC7).map_err(e)?;
        if chunk_root_level > MAX_LEVEL {
            return Err(err(at, "chunk_root_level", 0xC7, "0..=7", chunk_root_level));
        }
        let num_devices = f.u64(0x88).map_err(e)?;
        if num_devices == 0 {
            return Err(err(at, "num_devices", 0x88, "at least 1", 0));
        }
        let devid = f.u64(0xC9).map_err(e)?;
        if devid == 0 {
            return Err(err(at, "dev_item.devid", 0xC9, "at least 1", 0));
        }
        let fsid: [u8; 16] = f.array(0x20).map_err(e)?;
        let incompat = f.u64(0xBC).map_err(e)?;
        let metadata_uuid = if incompat & INCOMPAT_METADATA_UUID != 0 {
            f.array(0x23B).map_err(e)?
        } else {
            fsid
        };
        let label = f
            .cstr(0x12B, 256)
            .map_err(e)?
            .trim_end_matches('\0')
            .to_string();
        Ok(Super {
            bytenr,
            fsid,
            metadata_uuid,
            generation: f.u64(0x48).map_err(e)?,
            chunk_root: f.u64(0x58).map_err(e)?,
            chunk_root_level,
            chunk_root_generation: f.u64(0xA4).map_err(e)?,
            total_bytes: f.u64(0x70).map_err(e)?,
            num_devices,
            sectorsize,
            nodesize,
            csum_type,
            devid,
            dev_total_bytes: f.u64(0xC9 + 8).map_err(e)?,
            dev_uuid: f.array(0xC9 + 0x42).map_err(e)?,
            label,
            sys_chunk_array: f.bytes(SYS_CHUNK_ARRAY, sys_size).map_err(e)?.to_vec(),
        })
    }

    /// Reads the superblock of `dev`: the primary copy, or when it cannot
    /// be read or is damaged, the valid copy with the highest generation
    /// (said in the notes).
    pub fn read(dev: &dyn BlockDevice) -> Result<(Super, Vec<String>), String> {
        let mut errors = Vec::new();
        let mut best: Option<Super> = None;
        for &at in &OFFSETS {
            if at + SIZE as u64 > dev.size() {
                break;
            }
            let got = crate::read_exact(dev, at, SIZE).and_then(|b| Super::parse(&b, at));
            match got {
                Ok(s) if at == OFFSETS[0] => return Ok((s, Vec::new())),
                Ok(s) => match &best {
                    Some(b) if b.generation >= s.generation => {}
                    _ => best = Some(s),
                },
                Err(e) => errors.push(e),
            }
        }
        match best {
            Some(s) => {
                let note = format!(
                    "the primary superblock is unusable ({}): the copy at byte {} is used",
                    errors.first().map(String::as_str).unwrap_or("not read"),
                    s.bytenr
                );
                Ok((s, vec![note]))
            }
            None if errors.is_empty() => Err(format!(
                "{}: too small for a btrfs superblock ({} bytes)",
                dev.name(),
                dev.size()
            )),
            None => Err(errors.join("; ")),
        }
    }

    /// The superblock copies on this device: `(offset, 4096)` for each
    /// that fits in it.
    pub fn copies_on(dev_size: u64) -> Vec<(u64, u64)> {
        OFFSETS
            .iter()
            .filter(|&&o| o + SIZE as u64 <= dev_size)
            .map(|&o| (o, SIZE as u64))
            .collect()
    }
}
