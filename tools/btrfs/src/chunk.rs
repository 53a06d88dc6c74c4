//! Chunks: how a range of btrfs logical addresses lies on the devices.
//!
//! A chunk is stored as a disk key followed by a `btrfs_chunk`, in the
//! superblock's `sys_chunk_array` (the SYSTEM chunks, enough to read the
//! chunk tree) and as the CHUNK_ITEM items of the chunk tree (all chunks).
//!
//! Disk key, 17 bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 objectid` (256, FIRST_CHUNK_TREE, for chunks) |
//! | 8 | `u8 type` (228 CHUNK_ITEM) |
//! | 9 | `u64 offset` (the chunk's first logical address) |
//!
//! `btrfs_chunk`, 48 bytes, then `num_stripes` stripes of 32 bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 length` (logical bytes) |
//! | 8 | `u64 owner` |
//! | 16 | `u64 stripe_len` (the striping unit, 64 KiB) |
//! | 24 | `u64 type` (block group flags: 1 DATA, 2 SYSTEM, 4 METADATA; profile 8 RAID0, 0x10 RAID1, 0x20 DUP, 0x40 RAID10, 0x80 RAID5, 0x100 RAID6, 0x200 RAID1C3, 0x400 RAID1C4; none: single) |
//! | 32 | `u32 io_align`, 36 `u32 io_width`, 40 `u32 sector_size` |
//! | 44 | `u16 num_stripes` |
//! | 46 | `u16 sub_stripes` (2 for RAID10) |
//! | 48 | stripes: `u64 devid` at +0, `u64 offset` (device byte) at +8, `dev_uuid[16]` at +16 |
//!
//! Mapping: with `factor` stripe groups (1 for single, DUP and the RAID1
//! family, `num_stripes` for RAID0, `num_stripes / sub_stripes` for
//! RAID10) and `stripe_len` units, logical offset `o` in the chunk is in
//! unit `n = o / stripe_len`, group `n % factor`, row `n / factor`; every
//! stripe of that group holds it at `stripe.offset + row * stripe_len + o
//! % stripe_len`. With one group the whole chunk lies as one piece on each
//! stripe.
//!
//! RAID5/6 (kernel `btrfs_map_block`, RAID56 branch): `d = num_stripes -
//! p` data stripes per full stripe (p = 1 for RAID5, 2 for RAID6). Unit
//! `n = o / stripe_len` is data unit `k = n % d` of full stripe `f = n /
//! d`; it lies on stripe `(f + k) % num_stripes` at `stripe.offset + f *
//! stripe_len + o % stripe_len`. P is on stripe `(f + d) % num_stripes`,
//! Q (RAID6) on `(f + d + 1) % num_stripes`: the parity moves one stripe
//! on with every full stripe. [`Chunk::copies`] gives the data copy only;
//! [`Chunk::raid56_role`] tells data from parity on a device row.

use le::Fields;

pub const KEY_SIZE: usize = 17;
pub const CHUNK_SIZE: usize = 48;
pub const STRIPE_SIZE: usize = 32;
/// The disk key type of a chunk.
pub const CHUNK_ITEM_KEY: u8 = 228;
/// The disk key type of a device item (chunk tree).
pub const DEV_ITEM_KEY: u8 = 216;
/// The objectid chunk keys have.
pub const FIRST_CHUNK_TREE_OBJECTID: u64 = 256;

pub const DATA: u64 = 1;
pub const SYSTEM: u64 = 2;
pub const METADATA: u64 = 4;
const RAID0: u64 = 0x8;
const RAID1: u64 = 0x10;
const DUP: u64 = 0x20;
const RAID10: u64 = 0x40;
const RAID5: u64 = 0x80;
const RAID6: u64 = 0x100;
const RAID1C3: u64 = 0x200;
const RAID1C4: u64 = 0x400;
const PROFILES: u64 = RAID0 | RAID1 | DUP | RAID10 | RAID5 | RAID6 | RAID1C3 | RAID1C4;

/// How a chunk's bytes lie on its stripes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Single,
    /// Two copies on one device.
    Dup,
    Raid0,
    /// Two copies on two devices; RAID1C3/C4: three or four.
    Raid1,
    Raid1c3,
    Raid1c4,
    Raid10,
    Raid5,
    Raid6,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Single => "single",
            Profile::Dup => "DUP",
            Profile::Raid0 => "RAID0",
            Profile::Raid1 => "RAID1",
            Profile::Raid1c3 => "RAID1C3",
            Profile::Raid1c4 => "RAID1C4",
            Profile::Raid10 => "RAID10",
            Profile::Raid5 => "RAID5",
            Profile::Raid6 => "RAID6",
        }
    }
    /// Whether each byte has several copies.
    pub fn mirrored(self) -> bool {
        matches!(
            self,
            Profile::Dup | Profile::Raid1 | Profile::Raid1c3 | Profile::Raid1c4 | Profile::Raid10
        )
    }
}

/// One stripe: where a share of the chunk lies on one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripe {
    pub devid: u64,
    /// Device byte of the stripe's first byte.
    pub offset: u64,
    pub dev_uuid: [u8; 16],
}

/// A chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// First logical address.
    pub logical: u64,
    pub length: u64,
    pub stripe_len: u64,
    /// Block group flags (type and profile).
    pub flags: u64,
    pub profile: Profile,
    pub sub_stripes: u16,
    pub stripes: Vec<Stripe>,
}

/// A stretch of a device and the logical addresses it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub device: u64,
    pub logical: u64,
    pub len: u64,
}

impl Chunk {
    /// Parses the `btrfs_chunk` (with stripes) at the start of `b`, for a
    /// chunk starting at logical `logical` (its key's offset). `what`
    /// names it in errors (where it was read).
    pub fn parse(b: &[u8], logical: u64, what: &str) -> Result<Chunk, String> {
        let f = Fields::new(b, "btrfs_chunk");
        let e = |x: le::OutOfRange| format!("{what}: {x}");
        let bad = |field: &str, off: usize, exp: &str, found: String| {
            format!("{what} (chunk at logical {logical}): {field} (at +{off}): expected {exp}, found {found}")
        };
        let length = f.u64(0).map_err(e)?;
        if length == 0 || logical.checked_add(length).is_none() {
            return Err(bad(
                "length",
                0,
                "more than 0, ending below 2^64",
                length.to_string(),
            ));
        }
        let stripe_len = f.u64(16).map_err(e)?;
        if !stripe_len.is_power_of_two() || !(4096..=1 << 30).contains(&stripe_len) {
            return Err(bad(
                "stripe_len",
                16,
                "a power of two, 4 KiB..=1 GiB",
                stripe_len.to_string(),
            ));
        }
        let flags = f.u64(24).map_err(e)?;
        let p = flags & PROFILES;
        if p.count_ones() > 1 {
            return Err(bad(
                "type",
                24,
                "at most one profile bit",
                format!("{flags:#x}"),
            ));
        }
        let profile = match p {
            0 => Profile::Single,
            RAID0 => Profile::Raid0,
            RAID1 => Profile::Raid1,
            DUP => Profile::Dup,
            RAID10 => Profile::Raid10,
            RAID5 => Profile::Raid5,
            RAID6 => Profile::Raid6,
            RAID1C3 => Profile::Raid1c3,
            _ => Profile::Raid1c4,
        };
        let n = f.u16(44).map_err(e)?;
        let sub_stripes = f.u16(46).map_err(e)?;
        let ok = match profile {
            Profile::Single => n == 1,
            Profile::Dup | Profile::Raid1 => n == 2,
            Profile::Raid1c3 => n == 3,
            Profile::Raid1c4 => n == 4,
            Profile::Raid0 => n >= 1,
            Profile::Raid10 => sub_stripes == 2 && n >= 2 && n % 2 == 0,
            Profile::Raid5 => n >= 2,
            Profile::Raid6 => n >= 3,
        };
        if !ok {
            return Err(bad(
                "num_stripes",
                44,
                &format!("a stripe count {} allows", profile.name()),
                format!("{n} (sub_stripes {sub_stripes})"),
            ));
        }
        let mut stripes = Vec::with_capacity(usize::from(n));
        for i in 0..usize::from(n) {
            let at = CHUNK_SIZE + i * STRIPE_SIZE;
            stripes.push(Stripe {
                devid: f.u64(at).map_err(e)?,
                offset: f.u64(at + 8).map_err(e)?,
                dev_uuid: f.array(at + 16).map_err(e)?,
            });
        }
        if profile == Profile::Dup && stripes[0].devid != stripes[1].devid {
            return Err(bad(
                "stripe 1 devid",
                CHUNK_SIZE + STRIPE_SIZE,
                &format!("{} (DUP: both copies on one device)", stripes[0].devid),
                stripes[1].devid.to_string(),
            ));
        }
        let mut c = Chunk {
            logical,
            length,
            stripe_len,
            flags,
            profile,
            sub_stripes,
            stripes,
        };
        if let Some((factor, _)) = c.layout() {
            let per = length / factor;
            if length % factor != 0 || (factor > 1 && per % stripe_len != 0) {
                return Err(bad(
                    "length",
                    0,
                    &format!(
                        "a multiple of {factor} stripe groups of whole {stripe_len}-byte units"
                    ),
                    length.to_string(),
                ));
            }
            for (i, s) in c.stripes.iter().enumerate() {
                if s.offset.checked_add(per).is_none() {
                    return Err(bad(
                        &format!("stripe {i} offset"),
                        CHUNK_SIZE + i * STRIPE_SIZE + 8,
                        "a stripe ending below 2^64",
                        s.offset.to_string(),
                    ));
                }
            }
        }
        c.stripes.shrink_to_fit();
        Ok(c)
    }

    /// Bytes of the item: the chunk and its stripes.
    pub fn item_size(num_stripes: usize) -> usize {
        CHUNK_SIZE + num_stripes * STRIPE_SIZE
    }

    pub fn end(&self) -> u64 {
        self.logical + self.length
    }

    /// `(groups, stripes per group)`, or None for RAID5/6 (rotating
    /// parity: see [`Chunk::raid56_role`]).
    pub fn layout(&self) -> Option<(u64, usize)> {
        let n = self.stripes.len();
        match self.profile {
            Profile::Single
            | Profile::Dup
            | Profile::Raid1
            | Profile::Raid1c3
            | Profile::Raid1c4 => Some((1, n)),
            Profile::Raid0 => Some((n as u64, 1)),
            Profile::Raid10 => {
                let s = usize::from(self.sub_stripes);
                Some(((n / s) as u64, s))
            }
            Profile::Raid5 | Profile::Raid6 => None,
        }
    }

    /// Parity stripes per full stripe: 1 for RAID5, 2 for RAID6, else 0.
    pub fn parity_stripes(&self) -> usize {
        match self.profile {
            Profile::Raid5 => 1,
            Profile::Raid6 => 2,
            _ => 0,
        }
    }

    /// RAID5/6: what stripe `i` holds in device row `row` (full stripe
    /// number `row`): `Ok(k)` data unit k of the full stripe, `Err(j)`
    /// parity (0 P, 1 Q). None for other profiles or a stripe past the
    /// chunk's.
    pub fn raid56_role(&self, i: usize, row: u64) -> Option<Result<u64, usize>> {
        let n = self.stripes.len() as u64;
        let p = self.parity_stripes() as u64;
        if p == 0 || i as u64 >= n || n <= p {
            return None;
        }
        let d = n - p;
        let k = (i as u64 + n - row % n) % n;
        Some(if k < d { Ok(k) } else { Err((k - d) as usize) })
    }

    /// Bytes each stripe holds on its device (None where not mapped).
    pub fn stripe_bytes(&self) -> Option<u64> {
        self.layout().map(|(f, _)| self.length / f)
    }

    /// Bytes each stripe takes on its device, also where the bytes are
    /// not mapped (RAID5/6: the chunk's data spread over all stripes but
    /// one or two, the rest parity).
    pub fn device_extent_len(&self) -> u64 {
        let n = self.stripes.len() as u64;
        match self.profile {
            Profile::Raid5 => self.length / (n - 1).max(1),
            Profile::Raid6 => self.length / (n.saturating_sub(2)).max(1),
            _ => self.stripe_bytes().unwrap_or(self.length),
        }
    }

    /// The kind of data: `DATA`, `METADATA`, `SYSTEM`, `DATA+METADATA`
    /// (mixed block groups).
    pub fn kind(&self) -> &'static str {
        let d = self.flags & DATA != 0;
        let m = self.flags & METADATA != 0;
        if self.flags & SYSTEM != 0 {
            "SYSTEM"
        } else if d && m {
            "DATA+METADATA"
        } else if m {
            "METADATA"
        } else if d {
            "DATA"
        } else {
            "unknown type"
        }
    }

    /// The copies of the byte at `logical`: `(devid, device byte)` for
    /// each copy, and how many bytes from there on lie contiguously the
    /// same way. None outside the chunk or where not mapped.
    pub fn copies(&self, logical: u64) -> Option<(Vec<(u64, u64)>, u64)> {
        if logical < self.logical || logical >= self.end() {
            return None;
        }
        let o = logical - self.logical;
        let p = self.parity_stripes() as u64;
        if p > 0 {
            let n = self.stripes.len() as u64;
            let d = n.checked_sub(p).filter(|&d| d > 0)?;
            let sl = self.stripe_len;
            let (unit, within) = (o / sl, o % sl);
            let (f, k) = (unit / d, unit % d);
            let s = &self.stripes[((f + k) % n) as usize];
            let v = vec![(s.devid, s.offset + f * sl + within)];
            return Some((v, (sl - within).min(self.length - o)));
        }
        let (factor, group) = self.layout()?;
        if factor == 1 {
            let v = self
                .stripes
                .iter()
                .map(|s| (s.devid, s.offset + o))
                .collect();
            return Some((v, self.length - o));
        }
        let sl = self.stripe_len;
        let (unit, within) = (o / sl, o % sl);
        let (g, row) = ((unit % factor) as usize, unit / factor);
        let v = self.stripes[g * group..(g + 1) * group]
            .iter()
            .map(|s| (s.devid, s.offset + row * sl + within))
            .collect();
        Some((v, (sl - within).min(self.length - o)))
    }

    /// The part of device bytes `start..start+len` that stripe `i` holds,
    /// as pieces each contiguous in both spaces.
    pub fn to_logical(&self, i: usize, start: u64, len: u64) -> Vec<Piece> {
        if self.parity_stripes() > 0 {
            return self.raid56_to_logical(i, start, len);
        }
        let mut out = Vec::new();
        let (Some((factor, group)), Some(s)) = (self.layout(), self.stripes.get(i)) else {
            return out;
        };
        let per = self.length / factor;
        let a0 = start.max(s.offset);
        let b = start.saturating_add(len).min(s.offset + per);
        let g = (i / group) as u64;
        let sl = self.stripe_len;
        let mut a = a0;
        while a < b {
            let rel = a - s.offset;
            if factor == 1 {
                out.push(Piece {
                    device: a,
                    logical: self.logical + rel,
                    len: b - a,
                });
                break;
            }
            let (row, within) = (rel / sl, rel % sl);
            let n = (sl - within).min(b - a);
            let logical = self.logical + (row * factor + g) * sl + within;
            match out.last_mut() {
                Some(p) if p.device + p.len == a && p.logical + p.len == logical => p.len += n,
                _ => out.push(Piece {
                    device: a,
                    logical,
                    len: n,
                }),
            }
            a += n;
        }
        out
    }

    /// RAID5/6 `to_logical`: the data rows of stripe `i` (parity rows give
    /// no logical bytes).
    fn raid56_to_logical(&self, i: usize, start: u64, len: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        let Some(s) = self.stripes.get(i) else {
            return out;
        };
        let n = self.stripes.len() as u64;
        let d = n.saturating_sub(self.parity_stripes() as u64);
        if d == 0 {
            return out;
        }
        let sl = self.stripe_len;
        let a0 = start.max(s.offset);
        let b = start
            .saturating_add(len)
            .min(s.offset + self.device_extent_len());
        let mut a = a0;
        while a < b {
            let rel = a - s.offset;
            let (row, within) = (rel / sl, rel % sl);
            let m = (sl - within).min(b - a);
            if let Some(Ok(k)) = self.raid56_role(i, row) {
                let logical = self.logical + (row * d + k) * sl + within;
                out.push(Piece {
                    device: a,
                    logical,
                    len: m,
                });
            }
            a += m;
        }
        out
    }

    /// The stripe group (indices into `stripes`) holding `logical`: the
    /// copies of one byte.
    /// RAID5/6: the one data stripe holding it.
    pub fn group_of(&self, logical: u64) -> Option<std::ops::Range<usize>> {
        if logical < self.logical || logical >= self.end() {
            return None;
        }
        if self.parity_stripes() > 0 {
            let n = self.stripes.len() as u64;
            let d = n
                .checked_sub(self.parity_stripes() as u64)
                .filter(|&d| d > 0)?;
            let unit = (logical - self.logical) / self.stripe_len;
            let i = ((unit / d + unit % d) % n) as usize;
            return Some(i..i + 1);
        }
        let (factor, group) = self.layout()?;
        let g = (((logical - self.logical) / self.stripe_len) % factor) as usize;
        Some(g * group..(g + 1) * group)
    }
}

/// A disk key: `(objectid, type, offset)`.
pub type Key = (u64, u8, u64);

/// The key at the start of `b`.
pub fn parse_key(b: &[u8], what: &str) -> Result<Key, String> {
    let f = Fields::new(b, "btrfs disk key");
    let e = |x: le::OutOfRange| format!("{what}: {x}");
    Ok((
        f.u64(0).map_err(e)?,
        f.u8(8).map_err(e)?,
        f.u64(9).map_err(e)?,
    ))
}

/// The chunks of a superblock's `sys_chunk_array`.
pub fn parse_sys_chunk_array(b: &[u8]) -> Result<Vec<Chunk>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let what = format!("sys_chunk_array at +{at}");
        let (objectid, kind, logical) = parse_key(&b[at..], &what)?;
        if kind != CHUNK_ITEM_KEY || objectid != FIRST_CHUNK_TREE_OBJECTID {
            return Err(format!(
                "{what}: key (objectid {objectid}, type {kind}): expected a chunk (objectid 256, type 228)"
            ));
        }
        at += KEY_SIZE;
        let c = Chunk::parse(&b[at..], logical, &what)?;
        at += Chunk::item_size(c.stripes.len());
        out.push(c);
    }
    if out.is_empty() {
        return Err("sys_chunk_array: expected at least one SYSTEM chunk, found none".into());
    }
    Ok(out)
}
