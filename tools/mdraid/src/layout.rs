//! Where md puts array data on its members, following the kernel's
//! raid5.c (`raid5_compute_sector`) and raid10.c (`__raid10_find_phys`,
//! `calc_sectors`), re-derived here.
//!
//! RAID-4/5/6: array chunk c lies in stripe s = c / data_disks at logical
//! position k = c % data_disks; every member holds chunk row s at device
//! offset s * chunk (from its data offset). The parity disk of stripe s,
//! with n = raid_disks:
//! - 0 left-asymmetric: P on n-1-(s%n), data in disk order skipping P
//! - 1 right-asymmetric: P on s%n, data in disk order skipping P
//! - 2 left-symmetric (md default): P on n-1-(s%n), data from P+1 wrapping
//! - 3 right-symmetric: P on s%n, data from P+1 wrapping
//! - 4 parity-first, 5 parity-last (RAID-4 is parity-last)
//!
//! RAID-6 adds Q: layouts 0-3 put Q right after P (Q on disk 0 when P is
//! last, for the asymmetric ones data then starts on disk 1); 2/3 start the
//! data after Q. 8-10 are the DDF layouts, 16-20 are RAID-5 layouts over
//! n-1 disks with Q on the last disk. Q's coefficients: md walks the disks
//! from the one after Q (disk 0 when Q is last) and numbers data disks
//! 0, 1, ... in that order (slot); DDF layouts use the disk index itself.
//!
//! RAID-10 layout word: near copies = layout & 0xff, far copies =
//! (layout >> 8) & 0xff, bit 16 offset, bits 17-18 the far-set variant
//! (kernel `setup_geo`, `layout >> 17`): 0 one set of all disks, 1 sets of
//! `raid_disks / far` disks (an early, buggy layout), 2 sets of
//! `near * far` disks. Chunk c's first copy is on disk `(c * near) % n`,
//! row `(c * near) / n` (times `far` for offset layouts); the other near
//! copies on the next disks (wrapping to disk 0 one row further down); each
//! copy's far copies `near` disks further on within its far set, `stride`
//! rows further down (`stride` = the used rows / far, 1 for offset). A
//! final far set holds the sets' remainder of disks too.
//!
//! Linear (kernel linear.c `linear_conf`): the members' data areas
//! (`rdev->sectors`) in role order, each rounded down to a multiple of the
//! chunk size when the superblock has one (mdadm's `--rounding`).

use crate::superblock::{Superblock, SuperblockError};
use serde::Serialize;

/// The geometry of one array, as its superblocks describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Geometry {
    pub level: i32,
    pub layout: u32,
    pub chunk_bytes: u64,
    pub raid_disks: usize,
    /// Bytes of each member used by the array (from its data offset).
    pub component_bytes: u64,
}

/// The disks of one RAID-4/5/6 stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripe {
    pub p: usize,
    pub q: Option<usize>,
    /// `data[k]`: the disk holding logical data chunk k of the stripe.
    pub data: Vec<usize>,
    /// `q_slot[k]`: the Q coefficient exponent of data chunk k.
    pub q_slot: Vec<u32>,
}

/// RAID-10 parameters decoded from the layout word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Raid10 {
    pub near: u32,
    pub far: u32,
    pub offset: bool,
    /// Bits 17-18: 0 one far set (all disks), 1 sets of `n / far` disks,
    /// 2 sets of `near * far` disks (3 is invalid).
    pub far_sets: u32,
}

impl Raid10 {
    pub fn from_layout(layout: u32) -> Raid10 {
        Raid10 {
            near: layout & 0xff,
            far: (layout >> 8) & 0xff,
            offset: layout & 0x10000 != 0,
            far_sets: (layout >> 17) & 3,
        }
    }
    pub fn copies(&self) -> u32 {
        self.near * self.far
    }
    /// Disks per far set on an `n`-disk array (kernel `setup_geo`).
    pub fn far_set_size(&self, n: u64) -> u64 {
        let size = match self.far_sets {
            0 => n,
            1 => n / u64::from(self.far.max(1)),
            _ => u64::from(self.near) * u64::from(self.far),
        };
        size.clamp(1, n.max(1))
    }
}

fn bad(
    offset: u64,
    field: &'static str,
    found: impl ToString,
    expected: &'static str,
) -> SuperblockError {
    SuperblockError::Invalid {
        offset,
        field,
        found: found.to_string(),
        expected,
    }
}

/// mdadm's names of the RAID-5/6 and RAID-10 layouts.
pub fn layout_name(level: i32, layout: u32) -> String {
    match level {
        4 => "parity-last".into(),
        5 | 6 => match layout {
            0 => "left-asymmetric",
            1 => "right-asymmetric",
            2 => "left-symmetric",
            3 => "right-symmetric",
            4 => "parity-first",
            5 => "parity-last",
            8 => "ddf-zero-restart",
            9 => "ddf-N-restart",
            10 => "ddf-N-continue",
            16 => "left-asymmetric-6",
            17 => "right-asymmetric-6",
            18 => "left-symmetric-6",
            19 => "right-symmetric-6",
            20 => "parity-first-6",
            _ => "unknown",
        }
        .to_string(),
        10 => {
            let r = Raid10::from_layout(layout);
            let mut parts = Vec::new();
            if r.near > 1 {
                parts.push(format!("near={}", r.near));
            }
            if r.far > 1 {
                parts.push(format!(
                    "{}={}",
                    if r.offset { "offset" } else { "far" },
                    r.far
                ));
            }
            if parts.is_empty() {
                parts.push("near=1".into());
            }
            parts.join(", ")
        }
        _ => "-".into(),
    }
}

impl Geometry {
    /// Checks that the superblock's geometry is one md could run; errors
    /// name the field, what it holds and what was expected.
    pub fn from_superblock(sb: &Superblock) -> Result<Geometry, SuperblockError> {
        let g = Geometry {
            level: sb.level,
            layout: sb.layout,
            chunk_bytes: sb.chunk_bytes,
            raid_disks: sb.raid_disks as usize,
            component_bytes: sb.component_bytes,
        };
        let at = sb.offset;
        let striped = matches!(g.level, 0 | 4 | 5 | 6 | 10);
        if striped && (g.chunk_bytes == 0 || !g.chunk_bytes.is_multiple_of(512)) {
            return Err(bad(
                at,
                "chunk_size",
                g.chunk_bytes,
                "a non-zero multiple of 512 bytes",
            ));
        }
        if matches!(g.level, 4 | 5 | 6 | 10)
            && (!g.chunk_bytes.is_power_of_two() || g.chunk_bytes < 4096)
        {
            return Err(bad(
                at,
                "chunk_size",
                g.chunk_bytes,
                "a power of two of at least 4096 bytes",
            ));
        }
        let n = g.raid_disks;
        match g.level {
            4 | 5 if n < 2 => return Err(bad(at, "raid_disks", n, "at least 2 for raid4/5")),
            6 if n < 4 => return Err(bad(at, "raid_disks", n, "at least 4 for raid6")),
            5 if !matches!(g.layout, 0..=5) => {
                return Err(bad(at, "layout", g.layout, "0-5 for raid5"))
            }
            6 if !matches!(g.layout, 0..=5 | 8..=10 | 16..=20) => {
                return Err(bad(at, "layout", g.layout, "0-5, 8-10 or 16-20 for raid6"))
            }
            10 => {
                let r = Raid10::from_layout(g.layout);
                if r.near == 0 || r.far == 0 || r.copies() as usize > n || r.copies() < 1 {
                    return Err(bad(
                        at,
                        "layout",
                        format!("{:#x} (near {}, far {})", g.layout, r.near, r.far),
                        "near and far copies >= 1 with near*far <= raid_disks",
                    ));
                }
                if g.layout >> 19 != 0 || r.far_sets == 3 {
                    return Err(bad(
                        at,
                        "layout",
                        format!("{:#x}", g.layout),
                        "no bits above 18, and bits 17 and 18 not both set",
                    ));
                }
            }
            _ => {}
        }
        Ok(g)
    }

    /// Data disks per stripe (RAID-4/5/6).
    pub fn data_disks(&self) -> usize {
        match self.level {
            4 | 5 => self.raid_disks.saturating_sub(1),
            6 => self.raid_disks.saturating_sub(2),
            _ => self.raid_disks,
        }
    }

    /// Full chunks per member (RAID-0/4/5/6/10 ignore a partial last chunk).
    pub fn dev_chunks(&self) -> u64 {
        self.component_bytes
            .checked_div(self.chunk_bytes)
            .unwrap_or(0)
    }

    /// The array's size in bytes (assuming equal members for RAID-0).
    pub fn array_bytes(&self) -> u64 {
        let n = self.raid_disks as u64;
        match self.level {
            1 | -4 => self.component_bytes,
            4..=6 => self.dev_chunks() * self.chunk_bytes * self.data_disks() as u64,
            0 => self.dev_chunks() * self.chunk_bytes * n,
            -1 => self.component_bytes * n,
            10 => self.raid10_array_chunks() * self.chunk_bytes,
            _ => 0,
        }
    }

    /// Array chunks of a RAID-10 (kernel raid10_size).
    pub fn raid10_array_chunks(&self) -> u64 {
        let r = Raid10::from_layout(self.layout);
        if r.near == 0 || r.far == 0 {
            return 0;
        }
        (self.dev_chunks() / u64::from(r.far)) * self.raid_disks as u64 / u64::from(r.near)
    }

    /// Distance in chunks between far copies (kernel calc_sectors: stride).
    pub fn raid10_stride_chunks(&self) -> u64 {
        let r = Raid10::from_layout(self.layout);
        if r.offset {
            return 1;
        }
        let n = self.raid_disks as u64;
        let used = (self.raid10_array_chunks() * u64::from(r.copies())).div_ceil(n.max(1));
        used / u64::from(r.far.max(1))
    }

    /// The disks of RAID-4/5/6 stripe `s`.
    pub fn stripe(&self, s: u64) -> Stripe {
        let n = self.raid_disks;
        let dd = self.data_disks();
        let rot = (s % n as u64) as usize;
        if self.level == 4 {
            return plain(n, dd, (0..dd).collect());
        }
        if self.level == 5 {
            let p = match self.layout {
                0 | 2 => dd - rot,
                1 | 3 => rot,
                4 => 0,
                _ => dd,
            };
            let data = match self.layout {
                2 | 3 => (0..dd).map(|k| (p + 1 + k) % n).collect(),
                _ => (0..dd).map(|k| if k >= p { k + 1 } else { k }).collect(),
            };
            return Stripe {
                p,
                q: None,
                q_slot: (0..dd as u32).collect(),
                data,
            };
        }
        // RAID-6.
        let (p, q, data, ddf): (usize, usize, Vec<usize>, bool) = match self.layout {
            0 | 1 | 8 | 9 => {
                let p = match self.layout {
                    0 => n - 1 - rot,
                    1 | 8 => rot,
                    _ => n - 1 - ((s + 1) % n as u64) as usize,
                };
                if p == n - 1 {
                    (p, 0, (0..dd).map(|k| k + 1).collect(), self.layout >= 8)
                } else {
                    let data = (0..dd).map(|k| if k >= p { k + 2 } else { k }).collect();
                    (p, p + 1, data, self.layout >= 8)
                }
            }
            2 | 3 => {
                let p = if self.layout == 2 { n - 1 - rot } else { rot };
                (
                    p,
                    (p + 1) % n,
                    (0..dd).map(|k| (p + 2 + k) % n).collect(),
                    false,
                )
            }
            10 => {
                let p = n - 1 - rot;
                (
                    p,
                    (p + n - 1) % n,
                    (0..dd).map(|k| (p + 1 + k) % n).collect(),
                    true,
                )
            }
            4 => (0, 1, (0..dd).map(|k| k + 2).collect(), false),
            5 => (dd, dd + 1, (0..dd).collect(), false),
            16..=20 => {
                let m = n - 1; // RAID-5 over the first n-1 disks, Q last
                let rot = (s % m as u64) as usize;
                let p = match self.layout {
                    16 | 18 => dd - rot,
                    17 | 19 => rot,
                    _ => 0,
                };
                let data = match self.layout {
                    18 | 19 => (0..dd).map(|k| (p + 1 + k) % m).collect(),
                    _ => (0..dd).map(|k| if k >= p { k + 1 } else { k }).collect(),
                };
                (p, n - 1, data, false)
            }
            _ => (dd, dd + 1, (0..dd).collect(), false),
        };
        let q_slot = if ddf {
            data.iter().map(|&d| d as u32).collect()
        } else {
            // Walk from the disk after Q (0 if Q is last), numbering data disks.
            let start = if q == n - 1 { 0 } else { q + 1 };
            let mut slot_of = vec![0u32; n];
            let mut count = 0;
            for i in 0..n {
                let d = (start + i) % n;
                if d != p && d != q {
                    slot_of[d] = count;
                    count += 1;
                }
            }
            data.iter().map(|&d| slot_of[d]).collect()
        };
        Stripe {
            p,
            q: Some(q),
            data,
            q_slot,
        }
    }

    /// Every copy of RAID-10 array chunk `c`: (disk, device chunk index).
    pub fn raid10_copies(&self, c: u64) -> Vec<(usize, u64)> {
        let r = Raid10::from_layout(self.layout);
        let n = self.raid_disks as u64;
        let (nc, fc) = (u64::from(r.near), u64::from(r.far));
        let far_set = r.far_set_size(n);
        let last_set_start = (n / far_set).saturating_sub(1) * far_set;
        let last_set_size = far_set + n % far_set;
        let stride = self.raid10_stride_chunks();
        let first = c * nc;
        let mut dev = first % n;
        let mut row = first / n;
        if r.offset {
            row *= fc;
        }
        let mut out = Vec::with_capacity((nc * fc) as usize);
        for _ in 0..nc {
            let mut d = dev;
            let mut s = row;
            out.push((d as usize, s));
            for _ in 1..fc {
                let set = d / far_set;
                d += nc;
                if !n.is_multiple_of(far_set) && d > last_set_start {
                    d -= last_set_start;
                    d %= last_set_size;
                    d += last_set_start;
                } else {
                    d %= far_set;
                    d += far_set * set;
                }
                s += stride;
                out.push((d as usize, s));
            }
            dev += 1;
            if dev >= n {
                dev = 0;
                row += 1;
            }
        }
        out
    }

    /// The RAID-10 array chunk whose copy is device chunk `row` of disk
    /// `d`, and which copy (index into [`Geometry::raid10_copies`]); None
    /// for a device chunk no array chunk uses (past the used rows). The
    /// inverse of `raid10_copies`: every copy of chunk c lies `w + f *
    /// stride` rows (w 0 or 1, f < far) below its first copy's row
    /// `(c * near) / n` (times far for offset layouts), so the few chunks
    /// whose first row fits are tried.
    pub fn raid10_chunk_at(&self, d: usize, row: u64) -> Option<(u64, usize)> {
        let r = Raid10::from_layout(self.layout);
        let n = self.raid_disks as u64;
        let (nc, fc) = (u64::from(r.near), u64::from(r.far));
        if nc == 0 || fc == 0 || n == 0 || d as u64 >= n {
            return None;
        }
        let chunks = self.raid10_array_chunks();
        let stride = self.raid10_stride_chunks();
        let mult = if r.offset { fc } else { 1 };
        let mut seen = Vec::new();
        for f in 0..fc {
            for w in 0..2u64 {
                let Some(first) = row.checked_sub(w).and_then(|x| x.checked_sub(f * stride)) else {
                    continue;
                };
                if first % mult != 0 {
                    continue;
                }
                let base = first / mult;
                // Chunks c with (c * nc) / n == base.
                let lo = (base * n).div_ceil(nc);
                let hi = ((base + 1) * n).div_ceil(nc).min(chunks);
                for c in lo..hi {
                    if seen.contains(&c) {
                        continue;
                    }
                    seen.push(c);
                    if let Some(k) = self
                        .raid10_copies(c)
                        .iter()
                        .position(|&(dd, rr)| dd == d && rr == row)
                    {
                        return Some((c, k));
                    }
                }
            }
        }
        None
    }

    /// Bytes of a linear array member with `data_bytes` of data area that
    /// the array uses: rounded down to the chunk size when there is one
    /// (kernel linear.c).
    pub fn linear_member_bytes(&self, data_bytes: u64) -> u64 {
        match self.chunk_bytes {
            0 => data_bytes,
            cb => data_bytes / cb * cb,
        }
    }

    /// Where each member of a linear array lies in the array: `(start,
    /// len)` by role, from the members' data area sizes by role.
    pub fn linear_spans(&self, data_bytes: &[u64]) -> Vec<(u64, u64)> {
        let mut at = 0u64;
        data_bytes
            .iter()
            .map(|&b| {
                let len = self.linear_member_bytes(b);
                let span = (at, len);
                at = at.saturating_add(len);
                span
            })
            .collect()
    }

    /// Where array byte `off` is stored: (role, byte offset from the
    /// member's data start), one entry per copy. Empty beyond the array or
    /// for levels without a fixed mapping (RAID-0 assumes equal members).
    pub fn map(&self, off: u64) -> Vec<(usize, u64)> {
        if off >= self.array_bytes() {
            return Vec::new();
        }
        let cb = self.chunk_bytes.max(1);
        let (c, within) = (off / cb, off % cb);
        match self.level {
            1 | -4 => (0..self.raid_disks).map(|d| (d, off)).collect(),
            -1 => vec![(
                (off / self.component_bytes) as usize,
                off % self.component_bytes,
            )],
            0 => {
                let n = self.raid_disks as u64;
                vec![((c % n) as usize, (c / n) * cb + within)]
            }
            4..=6 => {
                let dd = self.data_disks() as u64;
                let st = self.stripe(c / dd);
                vec![(st.data[(c % dd) as usize], (c / dd) * cb + within)]
            }
            10 => self
                .raid10_copies(c)
                .into_iter()
                .map(|(d, row)| (d, row * cb + within))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn plain(n: usize, dd: usize, data: Vec<usize>) -> Stripe {
    let _ = n;
    Stripe {
        p: dd,
        q: None,
        q_slot: (0..dd as u32).collect(),
        data,
    }
}

#[cfg(test)]
mod tests;
