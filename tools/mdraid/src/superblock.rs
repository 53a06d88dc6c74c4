//! md superblocks, as the kernel's md.c and include/uapi/linux/raid/md_p.h
//! define them. All integers little-endian (x86 byte order for 0.90).
//!
//! Where they are (sizes in 512-byte sectors, S = device size):
//! - 0.90: at `(S & !127) - 128` (64 KiB-aligned, in the last 64..128 KiB)
//! - 1.0: at `(S - 16) & !7` (8 KiB from the end, 4 KiB-aligned)
//! - 1.1: at sector 0; 1.2: at sector 8 (4 KiB)
//!
//! Version 1 superblock (`struct mdp_superblock_1`), byte offsets:
//! 0 magic 0xa92b4efc, 4 major_version (1), 8 feature_map, 16 set_uuid[16],
//! 32 set_name[32], 64 ctime, 72 level (i32), 76 layout, 80 size (sectors),
//! 88 chunksize (sectors), 92 raid_disks, 128 data_offset, 136 data_size,
//! 144 super_offset, 160 dev_number, 168 device_uuid[16], 192 utime,
//! 200 events, 208 resync_offset, 216 sb_csum, 220 max_dev, 256 dev_roles
//! (u16 per device: 0xffff spare, 0xfffe faulty, 0xfffd journal).
//! Also read: 8 feature_map bits (0 bitmap, 1 recovery_offset, 2 reshape),
//! 96 bitmap_offset (i32, sectors from the superblock), 100 new_level,
//! 104 reshape_position, 112 delta_disks, 116 new_layout, 120 new_chunk,
//! 152 recovery_offset, 186 bblog_size (u16), 188 bblog_offset (i32).
//! ctime/utime: low 40 bits seconds, high 24 bits microseconds.
//! Checksum: sum of the LE u32 words of the first 256 + 2*max_dev bytes
//! (sb_csum taken as 0, a trailing u16 added), folded to 32 bits.
//!
//! Version 0.90 (`mdp_super_t`, 4096 bytes, u32 word numbers): 0 magic,
//! 1-3 version, 5 set_uuid0, 6 ctime, 7 level, 8 size (KiB), 9 nr_disks,
//! 10 raid_disks, 11 md_minor, 13-15 set_uuid1..3, 32 utime, 33 state,
//! 34 active, 35 working, 36 failed, 37 spare, 38 sb_csum, 39 events_lo,
//! 40 events_hi, 43 recovery_cp, 44-45 reshape_position, 46 new_level,
//! 47 delta_disks, 48 new_layout, 49 new_chunk (0.91 superblocks), 64 layout,
//! 65 chunk_size (bytes), 128.. disks[27] of 32 words (number, major,
//! minor, raid_disk, state bits 0 faulty 1 active 2 sync 3 removed),
//! 992 this_disk.
//! Checksum: sum of all 1024 words (sb_csum as 0) folded to 32 bits.

use blockdev::BlockDevice;
use serde::Serialize;
use std::fmt;

pub const MD_MAGIC: u32 = 0xa92b_4efc;
/// Sanity bound on devices in one array (the kernel allows up to 1920 in 1.x).
pub const MAX_DEVICES: u32 = 1920;

/// Version-1 superblock fields (`struct mdp_superblock_1`), byte offsets:
/// shared by the parser and the test writer.
pub mod v1 {
    pub const MAGIC: usize = 0;
    pub const MAJOR_VERSION: usize = 4;
    pub const FEATURE_MAP: usize = 8;
    /// 16 bytes.
    pub const SET_UUID: usize = 16;
    /// 32 bytes, NUL-padded `host:name`.
    pub const SET_NAME: usize = 32;
    pub const SET_NAME_LEN: usize = 32;
    pub const CTIME: usize = 64;
    pub const LEVEL: usize = 72;
    pub const LAYOUT: usize = 76;
    /// Sectors of each member used.
    pub const SIZE: usize = 80;
    /// Sectors.
    pub const CHUNKSIZE: usize = 88;
    pub const RAID_DISKS: usize = 92;
    /// i32, sectors from the superblock.
    pub const BITMAP_OFFSET: usize = 96;
    pub const NEW_LEVEL: usize = 100;
    pub const RESHAPE_POSITION: usize = 104;
    pub const DELTA_DISKS: usize = 112;
    pub const NEW_LAYOUT: usize = 116;
    pub const NEW_CHUNK: usize = 120;
    pub const DATA_OFFSET: usize = 128;
    pub const DATA_SIZE: usize = 136;
    pub const SUPER_OFFSET: usize = 144;
    pub const RECOVERY_OFFSET: usize = 152;
    pub const DEV_NUMBER: usize = 160;
    /// 16 bytes.
    pub const DEVICE_UUID: usize = 168;
    pub const BBLOG_SIZE: usize = 186;
    pub const BBLOG_OFFSET: usize = 188;
    pub const UTIME: usize = 192;
    pub const EVENTS: usize = 200;
    /// u64::MAX when the array is clean.
    pub const RESYNC_OFFSET: usize = 208;
    pub const SB_CSUM: usize = 216;
    pub const MAX_DEV: usize = 220;
    /// u16 per device: its role, or 0xffff spare, 0xfffe faulty, 0xfffd journal.
    pub const DEV_ROLES: usize = 256;
}

/// Version-0.90 superblock fields (`mdp_super_t`), u32 word numbers:
/// shared by the parser and the test writer.
pub mod v090 {
    pub const MAGIC: usize = 0;
    pub const MAJOR_VERSION: usize = 1;
    pub const MINOR_VERSION: usize = 2;
    pub const SET_UUID0: usize = 5;
    pub const CTIME: usize = 6;
    pub const LEVEL: usize = 7;
    /// KiB of each member used.
    pub const SIZE: usize = 8;
    pub const NR_DISKS: usize = 9;
    pub const RAID_DISKS: usize = 10;
    pub const MD_MINOR: usize = 11;
    pub const SET_UUID1: usize = 13;
    pub const SET_UUID2: usize = 14;
    pub const SET_UUID3: usize = 15;
    pub const UTIME: usize = 32;
    pub const STATE: usize = 33;
    pub const ACTIVE_DISKS: usize = 34;
    pub const WORKING_DISKS: usize = 35;
    pub const FAILED_DISKS: usize = 36;
    pub const SPARE_DISKS: usize = 37;
    pub const SB_CSUM: usize = 38;
    pub const EVENTS_LO: usize = 39;
    pub const EVENTS_HI: usize = 40;
    pub const RESHAPE_POSITION_LO: usize = 44;
    pub const RESHAPE_POSITION_HI: usize = 45;
    pub const NEW_LEVEL: usize = 46;
    pub const DELTA_DISKS: usize = 47;
    pub const NEW_LAYOUT: usize = 48;
    pub const NEW_CHUNK: usize = 49;
    pub const LAYOUT: usize = 64;
    /// Bytes.
    pub const CHUNK_SIZE: usize = 65;
    /// 27 disk descriptors of [`DISK_WORDS`] words.
    pub const DISKS: usize = 128;
    pub const DISK_WORDS: usize = 32;
    pub const DISK_SLOTS: usize = 27;
    /// This member's own descriptor.
    pub const THIS_DISK: usize = 992;
    /// In a descriptor.
    pub const DISK_NUMBER: usize = 0;
    pub const DISK_MAJOR: usize = 1;
    pub const DISK_MINOR: usize = 2;
    pub const DISK_RAID_DISK: usize = 3;
    /// Bits: 0 faulty, 1 active, 2 sync, 3 removed.
    pub const DISK_STATE: usize = 4;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Superblock {
    /// "0.90", "1.0", "1.1" or "1.2".
    pub version: &'static str,
    /// Byte offset of the superblock on the device.
    pub offset: u64,
    /// Array UUID in mdadm's notation (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    pub array_uuid: String,
    /// `host:name` for 1.x (e.g. `DiskStation:2`); None for 0.90.
    pub name: Option<String>,
    /// -1 linear, 0/1/4/5/6/10, -4 multipath...
    pub level: i32,
    pub layout: u32,
    pub chunk_bytes: u64,
    pub raid_disks: u32,
    /// Bytes of each member used by the array.
    pub component_bytes: u64,
    /// Where array data starts on this member (1.x; 0 for 0.90).
    pub data_offset_bytes: u64,
    pub events: u64,
    /// This member's slot, or None for a spare/faulty device.
    pub role: Option<u32>,
    /// "active", "spare", "faulty", "journal".
    pub role_state: &'static str,
    pub checksum_stored: u32,
    pub checksum_computed: u32,
    /// Array state bit 0 (clean) for 0.90; resync_offset == MAX for 1.x.
    pub clean: bool,
    /// 1.x feature_map (bit 0 bitmap, 1 recovery offset, 2 reshape active,
    /// 3 bad-block log, 4 replacement, 6 PPL...); 0 for 0.90.
    pub feature_map: u32,
    /// Creation and update times, seconds since the epoch.
    pub ctime: u64,
    pub utime: u64,
    /// 1.x dev_number (index into dev_roles); 0.90 this_disk.number.
    pub dev_number: u32,
    /// 1.x device UUID (mdadm notation); None for 0.90.
    pub device_uuid: Option<String>,
    /// Bytes available for data on this member (1.x data_size; 0.90: size).
    pub data_size_bytes: u64,
    /// 1.x resync_offset in sectors when not clean (None: in sync).
    pub resync_offset: Option<u64>,
    /// 1.x recovery_offset in sectors (feature bit 1).
    pub recovery_offset: Option<u64>,
    /// 1.x write-intent bitmap offset in sectors from the superblock (bit 0).
    pub bitmap_offset: Option<i32>,
    /// A reshape in progress (1.x feature bit 2 / 0.90 minor version 91).
    pub reshape: Option<Reshape>,
    /// 1.x bad-block log: offset (sectors from the superblock) and size.
    pub bad_block_log: Option<(i32, u16)>,
    /// 1.x max_dev (length of dev_roles); 27 for 0.90.
    pub max_dev: u32,
    /// The superblock's view of every device of the array: 1.x dev_roles
    /// entries that are not 0xffff (spare/unused), 0.90 the disks table.
    pub devices: Vec<DeviceEntry>,
    /// 0.90 counters (nr_disks, active, working, failed, spare, md_minor).
    pub counts_090: Option<Counts090>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reshape {
    pub position_sectors: u64,
    pub new_level: i32,
    pub delta_disks: i32,
    pub new_layout: u32,
    pub new_chunk_bytes: u64,
}

/// One device in a superblock's device table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceEntry {
    /// 1.x device number (dev_roles index); 0.90 descriptor number.
    pub number: u32,
    pub role: Option<u32>,
    /// "active", "spare", "faulty", "journal", "removed".
    pub state: &'static str,
    /// 0.90 only: major:minor as recorded, and the raw state bits.
    pub major_minor: Option<(u32, u32)>,
    pub state_bits: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counts090 {
    pub md_minor: u32,
    pub nr_disks: u32,
    pub active: u32,
    pub working: u32,
    pub failed: u32,
    pub spare: u32,
    pub state_bits: u32,
}

impl Superblock {
    pub fn checksum_ok(&self) -> bool {
        self.checksum_stored == self.checksum_computed
    }
    pub fn level_name(&self) -> String {
        level_name(self.level)
    }
    /// The member's data area as the kernel sizes it (`rdev->sectors`):
    /// 1.x `data_size`; 0.90 everything before the superblock (its data
    /// starts at byte 0). Linear arrays concatenate these.
    pub fn member_data_bytes(&self) -> u64 {
        if self.counts_090.is_some() {
            self.offset
        } else {
            self.data_size_bytes
        }
    }
}

/// "raid5", "linear"... as mdadm prints levels.
pub fn level_name(level: i32) -> String {
    match level {
        -1 => "linear".into(),
        -4 => "multipath".into(),
        -5 => "faulty".into(),
        l => format!("raid{l}"),
    }
}

/// Levels the kernel knows (md.c personalities).
pub const KNOWN_LEVELS: [i32; 9] = [-5, -4, -1, 0, 1, 4, 5, 6, 10];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// Magic found but a field is impossible.
    Invalid {
        offset: u64,
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    Io(String),
}

impl fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockError::Invalid {
                offset,
                field,
                found,
                expected,
            } => write!(
                f,
                "md superblock at byte {offset}: {field} is {found}, expected {expected}"
            ),
            SuperblockError::Io(e) => write!(f, "{e}"),
        }
    }
}

// Fields of a superblock buffer. The parsers check first that the whole
// 4096 bytes are there, so a field out of range reads as 0 (and the
// checks that follow refuse the superblock) rather than panicking.
fn le32(b: &[u8], at: usize) -> u32 {
    le::Fields::new(b, "md superblock").u32(at).unwrap_or(0)
}
fn le16(b: &[u8], at: usize) -> u16 {
    le::Fields::new(b, "md superblock").u16(at).unwrap_or(0)
}
fn le64(b: &[u8], at: usize) -> u64 {
    le::Fields::new(b, "md superblock").u64(at).unwrap_or(0)
}

fn fold(sum: u64) -> u32 {
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

fn uuid_words(words: [u32; 4]) -> String {
    format!(
        "{:08x}:{:08x}:{:08x}:{:08x}",
        words[0], words[1], words[2], words[3]
    )
}

/// Version-1 checksum over the first 256 + 2*max_dev bytes of `b`.
pub fn csum_v1(b: &[u8], max_dev: u32) -> u32 {
    let size = 256 + 2 * max_dev as usize;
    let mut sum = 0u64;
    let mut i = 0;
    while i + 4 <= size {
        sum += u64::from(if i == v1::SB_CSUM { 0 } else { le32(b, i) });
        i += 4;
    }
    if size - i == 2 {
        sum += u64::from(le16(b, i));
    }
    fold(sum)
}

/// Version-0.90 checksum over the 4096-byte superblock.
pub fn csum_090(b: &[u8]) -> u32 {
    let sum: u64 = (0..1024)
        .map(|w| {
            if w == v090::SB_CSUM {
                0
            } else {
                u64::from(le32(b, w * 4))
            }
        })
        .sum();
    fold(sum)
}

fn invalid(
    offset: u64,
    field: &'static str,
    found: impl fmt::Display,
    expected: &'static str,
) -> SuperblockError {
    SuperblockError::Invalid {
        offset,
        field,
        found: found.to_string(),
        expected,
    }
}

/// Parses a version-1 superblock (`b` holds at least 4096 bytes read at `offset`).
pub fn parse_v1(
    b: &[u8],
    offset: u64,
    version: &'static str,
) -> Result<Superblock, SuperblockError> {
    if b.len() < 4096 {
        return Err(invalid(offset, "buffer", b.len(), "4096 bytes"));
    }
    if le32(b, v1::MAJOR_VERSION) != 1 {
        return Err(invalid(
            offset,
            "major_version",
            le32(b, v1::MAJOR_VERSION),
            "1",
        ));
    }
    let max_dev = le32(b, v1::MAX_DEV);
    if max_dev > MAX_DEVICES || 256 + 2 * max_dev as usize > b.len() {
        return Err(invalid(offset, "max_dev", max_dev, "at most 1920"));
    }
    let raid_disks = le32(b, v1::RAID_DISKS);
    if raid_disks == 0 || raid_disks > MAX_DEVICES {
        return Err(invalid(offset, "raid_disks", raid_disks, "1 to 1920"));
    }
    let level = le32(b, v1::LEVEL) as i32;
    if !KNOWN_LEVELS.contains(&level) {
        return Err(invalid(
            offset,
            "level",
            level,
            "one of -5, -4, -1, 0, 1, 4, 5, 6, 10",
        ));
    }
    let dev_number = le32(b, v1::DEV_NUMBER);
    let role_raw = if dev_number < max_dev {
        le16(b, v1::DEV_ROLES + 2 * dev_number as usize)
    } else {
        0xffff
    };
    let (role, role_state) = match role_raw {
        0xffff => (None, "spare"),
        0xfffe => (None, "faulty"),
        0xfffd => (None, "journal"),
        r => (Some(u32::from(r)), "active"),
    };
    let name = {
        let s = le::Fields::new(b, "md superblock")
            .cstr(v1::SET_NAME, v1::SET_NAME_LEN)
            .unwrap_or_default();
        (!s.is_empty()).then_some(s)
    };
    let uuid = [
        le32_be(b, v1::SET_UUID),
        le32_be(b, v1::SET_UUID + 4),
        le32_be(b, v1::SET_UUID + 8),
        le32_be(b, v1::SET_UUID + 12),
    ];
    let feature_map = le32(b, v1::FEATURE_MAP);
    let devices = (0..max_dev)
        .filter_map(|i| {
            let r = le16(b, v1::DEV_ROLES + 2 * i as usize);
            let (role, state) = match r {
                0xffff => return None,
                0xfffe => (None, "faulty"),
                0xfffd => (None, "journal"),
                r => (Some(u32::from(r)), "active"),
            };
            Some(DeviceEntry {
                number: i,
                role,
                state,
                major_minor: None,
                state_bits: None,
            })
        })
        .collect();
    let device_uuid = {
        let at = v1::DEVICE_UUID;
        uuid_words([
            le32_be(b, at),
            le32_be(b, at + 4),
            le32_be(b, at + 8),
            le32_be(b, at + 12),
        ])
    };
    let resync = le64(b, v1::RESYNC_OFFSET);
    Ok(Superblock {
        version,
        offset,
        array_uuid: uuid_words(uuid),
        name,
        level,
        layout: le32(b, v1::LAYOUT),
        chunk_bytes: u64::from(le32(b, v1::CHUNKSIZE)) * 512,
        raid_disks,
        component_bytes: le64(b, v1::SIZE).saturating_mul(512),
        data_offset_bytes: le64(b, v1::DATA_OFFSET).saturating_mul(512),
        events: le64(b, v1::EVENTS),
        role,
        role_state,
        checksum_stored: le32(b, v1::SB_CSUM),
        checksum_computed: csum_v1(b, max_dev),
        clean: resync == u64::MAX,
        feature_map,
        // Low 40 bits seconds, high 24 bits microseconds.
        ctime: le64(b, v1::CTIME) & 0xff_ffff_ffff,
        utime: le64(b, v1::UTIME) & 0xff_ffff_ffff,
        dev_number,
        device_uuid: Some(device_uuid),
        data_size_bytes: le64(b, v1::DATA_SIZE).saturating_mul(512),
        resync_offset: (resync != u64::MAX).then_some(resync),
        recovery_offset: (feature_map & 2 != 0).then(|| le64(b, v1::RECOVERY_OFFSET)),
        bitmap_offset: (feature_map & 1 != 0).then(|| le32(b, v1::BITMAP_OFFSET) as i32),
        reshape: (feature_map & 4 != 0).then(|| Reshape {
            position_sectors: le64(b, v1::RESHAPE_POSITION),
            new_level: le32(b, v1::NEW_LEVEL) as i32,
            delta_disks: le32(b, v1::DELTA_DISKS) as i32,
            new_layout: le32(b, v1::NEW_LAYOUT),
            new_chunk_bytes: u64::from(le32(b, v1::NEW_CHUNK)) * 512,
        }),
        bad_block_log: (le16(b, v1::BBLOG_SIZE) != 0)
            .then(|| (le32(b, v1::BBLOG_OFFSET) as i32, le16(b, v1::BBLOG_SIZE))),
        max_dev,
        devices,
        counts_090: None,
    })
}

/// mdadm prints version-1 UUIDs as the 16 bytes in order, grouped by four.
fn le32_be(b: &[u8], at: usize) -> u32 {
    le::Fields::new(b, "md superblock").u32_be(at).unwrap_or(0)
}

/// Parses a version-0.90 superblock (4096 bytes read at `offset`).
pub fn parse_090(b: &[u8], offset: u64) -> Result<Superblock, SuperblockError> {
    if b.len() < 4096 {
        return Err(invalid(offset, "buffer", b.len(), "4096 bytes"));
    }
    let w = |i: usize| le32(b, i * 4);
    if w(v090::MAJOR_VERSION) != 0 || (w(v090::MINOR_VERSION) != 90 && w(v090::MINOR_VERSION) != 91)
    {
        return Err(invalid(
            offset,
            "version",
            format!("{}.{}", w(v090::MAJOR_VERSION), w(v090::MINOR_VERSION)),
            "0.90 (or 0.91 while reshaping)",
        ));
    }
    let level = w(v090::LEVEL) as i32;
    if !KNOWN_LEVELS.contains(&level) {
        return Err(invalid(
            offset,
            "level",
            level,
            "one of -5, -4, -1, 0, 1, 4, 5, 6, 10",
        ));
    }
    let raid_disks = w(v090::RAID_DISKS);
    if raid_disks == 0 || raid_disks > 27 {
        return Err(invalid(offset, "raid_disks", raid_disks, "1 to 27"));
    }
    // this_disk descriptor at word 992: number, major, minor, raid_disk, state.
    let raid_disk = w(v090::THIS_DISK + v090::DISK_RAID_DISK);
    let state = w(v090::THIS_DISK + v090::DISK_STATE);
    let (role, role_state) = disk_state_090(raid_disk, state, raid_disks);
    let devices = (0..v090::DISK_SLOTS)
        .filter_map(|d| {
            let base = v090::DISKS + v090::DISK_WORDS * d;
            let (number, major, minor, raid_disk, st) = (
                w(base + v090::DISK_NUMBER),
                w(base + v090::DISK_MAJOR),
                w(base + v090::DISK_MINOR),
                w(base + v090::DISK_RAID_DISK),
                w(base + v090::DISK_STATE),
            );
            if number == 0 && major == 0 && minor == 0 && raid_disk == 0 && st == 0 && d > 0 {
                return None;
            }
            let (role, state) = disk_state_090(raid_disk, st, raid_disks);
            Some(DeviceEntry {
                number,
                role,
                state,
                major_minor: Some((major, minor)),
                state_bits: Some(st),
            })
        })
        .collect();
    Ok(Superblock {
        version: "0.90",
        offset,
        array_uuid: uuid_words([
            w(v090::SET_UUID0),
            w(v090::SET_UUID1),
            w(v090::SET_UUID2),
            w(v090::SET_UUID3),
        ]),
        name: None,
        level,
        layout: w(v090::LAYOUT),
        chunk_bytes: u64::from(w(v090::CHUNK_SIZE)),
        raid_disks,
        component_bytes: u64::from(w(v090::SIZE)) * 1024,
        data_offset_bytes: 0,
        events: u64::from(w(v090::EVENTS_LO)) | (u64::from(w(v090::EVENTS_HI)) << 32),
        role,
        role_state,
        checksum_stored: w(v090::SB_CSUM),
        checksum_computed: csum_090(b),
        clean: w(v090::STATE) & 1 != 0,
        feature_map: 0,
        ctime: u64::from(w(v090::CTIME)),
        utime: u64::from(w(v090::UTIME)),
        dev_number: w(v090::THIS_DISK),
        device_uuid: None,
        data_size_bytes: u64::from(w(v090::SIZE)) * 1024,
        resync_offset: None,
        recovery_offset: None,
        bitmap_offset: None,
        reshape: (w(v090::MINOR_VERSION) == 91).then(|| Reshape {
            position_sectors: u64::from(w(v090::RESHAPE_POSITION_LO))
                | (u64::from(w(v090::RESHAPE_POSITION_HI)) << 32),
            new_level: w(v090::NEW_LEVEL) as i32,
            delta_disks: w(v090::DELTA_DISKS) as i32,
            new_layout: w(v090::NEW_LAYOUT),
            new_chunk_bytes: u64::from(w(v090::NEW_CHUNK)),
        }),
        bad_block_log: None,
        max_dev: 27,
        devices,
        counts_090: Some(Counts090 {
            md_minor: w(v090::MD_MINOR),
            nr_disks: w(v090::NR_DISKS),
            active: w(v090::ACTIVE_DISKS),
            working: w(v090::WORKING_DISKS),
            failed: w(v090::FAILED_DISKS),
            spare: w(v090::SPARE_DISKS),
            state_bits: w(v090::STATE),
        }),
    })
}

/// 0.90 disk descriptor state bits: 0 faulty, 1 active, 2 sync, 3 removed.
fn disk_state_090(raid_disk: u32, st: u32, raid_disks: u32) -> (Option<u32>, &'static str) {
    if st & 1 != 0 {
        (None, "faulty")
    } else if st & 8 != 0 {
        (None, "removed")
    } else if st & 2 != 0 || raid_disk < raid_disks {
        (Some(raid_disk), "active")
    } else {
        (None, "spare")
    }
}

fn read_4k(dev: &dyn BlockDevice, offset: u64) -> Result<Option<Vec<u8>>, SuperblockError> {
    if offset.checked_add(4096).is_none_or(|end| end > dev.size()) {
        return Ok(None);
    }
    let mut b = vec![0u8; 4096];
    dev.read_exact_at(&mut b, offset)
        .map_err(|e| SuperblockError::Io(format!("{}: reading byte {offset}: {e}", dev.name())))?;
    Ok(Some(b))
}

/// Looks for a superblock at every standard place (1.2, 1.1, 1.0, 0.90);
/// `Ok(None)` when there is none, an error when one is there but broken.
pub fn find_superblock(dev: &dyn BlockDevice) -> Result<Option<Superblock>, SuperblockError> {
    let sectors = dev.size() / 512;
    let mut places: Vec<(u64, &'static str)> = vec![(4096, "1.2"), (0, "1.1")];
    if sectors >= 16 {
        places.push((((sectors - 16) & !7) * 512, "1.0"));
    }
    if sectors >= 128 {
        places.push((((sectors & !127) - 128) * 512, "0.90"));
    }
    for (offset, version) in places {
        let Some(b) = read_4k(dev, offset)? else {
            continue;
        };
        if le32(&b, v1::MAGIC) != MD_MAGIC {
            continue;
        }
        return if version == "0.90" {
            parse_090(&b, offset).map(Some)
        } else {
            let sb = parse_v1(&b, offset, version)?;
            // super_offset (sectors) must name where we found it, or this is
            // a stale copy (e.g. a 1.2 member read through its partition).
            // Saturating: a damaged field must not overflow.
            let recorded = le64(&b, v1::SUPER_OFFSET).saturating_mul(512);
            if recorded != offset {
                return Err(invalid(
                    offset,
                    "super_offset",
                    recorded,
                    "the superblock's own position",
                ));
            }
            Ok(Some(sb))
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
