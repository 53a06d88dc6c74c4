//! Bad ranges carried up one layer at a time, from the disk (or image)
//! whose unreadable areas are known to the block device a filesystem
//! lives on. Every function is pure: ranges in, ranges out, in bytes.
//!
//! - a partition: the disk's ranges inside it, less its start;
//! - an nbd device made by `rescue attach`: 1:1 onto what it serves (a VM
//!   disk's `.badmap` is in virtual-disk offsets, the device's own);
//! - md: RAID-1 and RAID-10 (near layouts) lose an array byte only when
//!   every copy of it is bad; RAID-4/5/6 when its member is bad and more
//!   members than the parity can make up are bad at the same member
//!   offset; RAID-0 when its one member is. Bytes that are bad on a member
//!   but still readable through redundancy are given apart. RAID-10 far
//!   and offset layouts go through `mdraid`'s one placement
//!   (`raid10_copies` and its inverse `raid10_chunk_at`). Linear: the
//!   members' data areas one after the other in role order, each rounded
//!   down to the chunk size (kernel linear.c); an array byte is lost when
//!   its member byte is;
//! - device-mapper (LVM): `linear`, `striped`, `error` (every byte lost)
//!   and `zero` targets, as `lvm::plan` writes the tables.

use blockdev::Ranges;
use lvm::plan::TableLine;
use mdraid::layout::Geometry;

/// The disk's bad ranges inside the partition at byte `start`, `len`
/// bytes long, in partition offsets.
pub fn partition(disk: &Ranges, start: u64, len: u64) -> Ranges {
    Ranges(
        disk.intersect(start, len)
            .into_iter()
            .map(|(s, l)| (s - start, l))
            .collect(),
    )
}

/// The parts of `0..len` that `r` does not cover.
pub fn outside(r: &Ranges, len: u64) -> Ranges {
    let mut out = Vec::new();
    let mut at = 0u64;
    for &(s, l) in &r.0 {
        if s >= len {
            break;
        }
        if s > at {
            out.push((at, s - at));
        }
        at = at.max(s.saturating_add(l));
    }
    if at < len {
        out.push((at, len - at));
    }
    Ranges(out)
}

/// `a` without what `b` covers.
pub fn subtract(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = Vec::new();
    for &(s, l) in &a.0 {
        let mut at = s;
        let end = s.saturating_add(l);
        for (bs, bl) in b.intersect(s, l) {
            if bs > at {
                out.push((at, bs - at));
            }
            at = bs + bl;
        }
        if at < end {
            out.push((at, end - at));
        }
    }
    Ranges(out)
}

/// What is known about one md member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberBad {
    /// Readable but for these ranges (member device offsets, from the
    /// member's byte 0, superblock and data offset included).
    Known(Ranges),
    /// Not there (a degraded array): every byte of it is missing.
    Missing,
}

/// One member of an md array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdMember {
    /// Its slot in the array (the superblock's role).
    pub role: usize,
    /// Where the array's data starts on it, bytes.
    pub data_offset: u64,
    /// Its data area as its superblock gives it (`mdraid`'s
    /// `MemberInfo::data_bytes`): what a linear array concatenates. Other
    /// levels use the array's component size.
    pub data_bytes: u64,
    pub bad: MemberBad,
}

/// An md array's bad ranges, in array offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdMapped {
    /// Bytes no member can give back.
    pub lost: Ranges,
    /// Bytes bad on some member that the array still reads from another
    /// copy or through parity.
    pub redundant: Ranges,
}

/// Bytes of member `m`'s data area that the array uses.
pub fn member_used_bytes(g: &Geometry, m: &MdMember) -> u64 {
    if g.level == -1 {
        g.linear_member_bytes(m.data_bytes)
    } else {
        g.component_bytes
    }
}

/// Per role, the bad ranges relative to the member's data start (within
/// the part the array uses), or None for a missing member.
fn per_role(g: &Geometry, members: &[MdMember]) -> Result<Vec<Option<Ranges>>, String> {
    let mut roles: Vec<Option<Option<Ranges>>> = vec![None; g.raid_disks];
    for m in members {
        let Some(slot) = roles.get_mut(m.role) else {
            return Err(format!(
                "member role {} is outside the array's {} slots",
                m.role, g.raid_disks
            ));
        };
        if slot.is_some() {
            continue;
        }
        *slot = Some(match &m.bad {
            MemberBad::Known(r) => Some(partition(r, m.data_offset, member_used_bytes(g, m))),
            MemberBad::Missing => None,
        });
    }
    Ok(roles.into_iter().map(|r| r.unwrap_or(None)).collect())
}

/// Carries the members' bad ranges up to the array.
pub fn md_array(g: &Geometry, members: &[MdMember]) -> Result<MdMapped, String> {
    let roles = per_role(g, members)?;
    let missing = roles.iter().filter(|r| r.is_none()).count();
    let cb = g.chunk_bytes;
    match g.level {
        1 => {
            if missing == roles.len() {
                return Err("no member of the RAID-1 array is there".into());
            }
            // Lost: bad on every member that is there; redundant: the rest
            // of what any member has bad.
            let known: Vec<&Ranges> = roles.iter().flatten().collect();
            let mut lost = known[0].clone();
            for r in &known[1..] {
                lost = intersect(&lost, r);
            }
            let all = Ranges::from_unsorted(known.iter().flat_map(|r| r.0.clone()).collect());
            Ok(MdMapped {
                redundant: subtract(&all, &lost),
                lost,
            })
        }
        0 => {
            if missing > 0 {
                return Err(format!(
                    "RAID-0 with {missing} member(s) missing cannot run"
                ));
            }
            let n = g.raid_disks as u64;
            let usable = g.dev_chunks() * cb;
            let mut lost = Vec::new();
            for (d, r) in roles.iter().enumerate() {
                let r = r.as_ref().expect("checked above");
                for (s, l) in r.intersect(0, usable) {
                    for (row, w0, w1) in chunk_pieces(s, l, cb) {
                        lost.push(((row * n + d as u64) * cb + w0, w1 - w0));
                    }
                }
            }
            Ok(MdMapped {
                lost: Ranges::from_unsorted(lost),
                redundant: Ranges::default(),
            })
        }
        4..=6 => parity_array(g, &roles),
        10 => raid10(g, &roles),
        -1 => linear(g, members, &roles),
        l => Err(format!(
            "md level {} is not mapped",
            mdraid::superblock::level_name(l)
        )),
    }
}

/// The common part of two range sets.
pub fn intersect(a: &Ranges, b: &Ranges) -> Ranges {
    Ranges(a.0.iter().flat_map(|&(s, l)| b.intersect(s, l)).collect())
}

/// `s..s+l` cut at chunk boundaries: (chunk row, start within, end within).
fn chunk_pieces(s: u64, l: u64, cb: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let end = s.saturating_add(l);
    let mut at = s;
    while at < end {
        let row = at / cb;
        let w0 = at % cb;
        let w1 = (end - row * cb).min(cb);
        out.push((row, w0, w1));
        at = row * cb + w1;
    }
    out
}

/// Whether role `d` has member offset `x` bad (a missing role has all).
fn bad_at(roles: &[Option<Ranges>], d: usize, x: u64, len: u64) -> Ranges {
    match &roles[d] {
        None => Ranges(vec![(x, len)]),
        Some(r) => Ranges(r.intersect(x, len)),
    }
}

fn parity_array(g: &Geometry, roles: &[Option<Ranges>]) -> Result<MdMapped, String> {
    let parity = if g.level == 6 { 2 } else { 1 };
    let missing = roles.iter().filter(|r| r.is_none()).count();
    if missing > parity {
        return Err(format!(
            "{} with {missing} members missing cannot run",
            mdraid::superblock::level_name(g.level)
        ));
    }
    let cb = g.chunk_bytes;
    let dd = g.data_disks() as u64;
    let usable = g.dev_chunks() * cb;
    // Every lost byte has a known bad member at its member offset: walk the
    // elementary pieces of the known bad ranges.
    let mut edges: Vec<u64> = Vec::new();
    for r in roles.iter().flatten() {
        for (s, l) in r.intersect(0, usable) {
            edges.push(s);
            edges.push(s + l);
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let (mut lost, mut redundant) = (Vec::new(), Vec::new());
    for w in edges.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Inside one elementary piece a role is bad throughout or not at
        // all (a missing role is bad throughout).
        let bad: Vec<usize> = (0..roles.len())
            .filter(|&d| bad_at(roles, d, a, b - a).total() == b - a)
            .collect();
        if bad.iter().all(|&d| roles[d].is_none()) {
            continue;
        }
        let too_many = bad.len() > parity;
        for (row, w0, w1) in chunk_pieces(a, b - a, cb) {
            let st = g.stripe(row);
            for &d in &bad {
                if roles[d].is_none() {
                    continue;
                }
                let Some(k) = st.data.iter().position(|&x| x == d) else {
                    continue; // parity
                };
                let at = (row * dd + k as u64) * cb + w0;
                if too_many {
                    lost.push((at, w1 - w0));
                } else {
                    redundant.push((at, w1 - w0));
                }
            }
            if too_many {
                // A missing data member's bytes of this row are lost too.
                for &d in &bad {
                    if roles[d].is_some() {
                        continue;
                    }
                    if let Some(k) = st.data.iter().position(|&x| x == d) {
                        lost.push(((row * dd + k as u64) * cb + w0, w1 - w0));
                    }
                }
            }
        }
    }
    Ok(MdMapped {
        lost: Ranges::from_unsorted(lost),
        redundant: Ranges::from_unsorted(redundant),
    })
}

/// Linear: each member's bad bytes moved to where its data area lies in
/// the array.
fn linear(
    g: &Geometry,
    members: &[MdMember],
    roles: &[Option<Ranges>],
) -> Result<MdMapped, String> {
    let missing = roles.iter().filter(|r| r.is_none()).count();
    if missing > 0 {
        return Err(format!(
            "linear array with {missing} member(s) missing cannot run"
        ));
    }
    let mut sizes = vec![0u64; g.raid_disks];
    for (d, size) in sizes.iter_mut().enumerate() {
        let m = members
            .iter()
            .find(|m| m.role == d)
            .ok_or_else(|| format!("linear array: no member in role {d}"))?;
        *size = m.data_bytes;
    }
    let spans = g.linear_spans(&sizes);
    let mut lost = Vec::new();
    for (r, &(start, _)) in roles.iter().zip(&spans) {
        let r = r.as_ref().expect("checked above");
        lost.extend(r.0.iter().map(|&(s, l)| (start + s, l)));
    }
    Ok(MdMapped {
        lost: Ranges::from_unsorted(lost),
        redundant: Ranges::default(),
    })
}

/// RAID-10, any of near, far and offset copies: each bad piece of a
/// device chunk goes to the array chunk stored there (mdraid's inverse
/// of the placement); its bytes are lost where every copy is bad.
fn raid10(g: &Geometry, roles: &[Option<Ranges>]) -> Result<MdMapped, String> {
    let missing = roles.iter().filter(|r| r.is_none()).count();
    if missing == roles.len() {
        return Err("no member of the RAID-10 array is there".into());
    }
    let n = g.raid_disks as u64;
    // Which disks hold a chunk's copies depends on (c * near) % n only:
    // a chunk none of whose copies is there means the array cannot run.
    for c in 0..n.min(g.raid10_array_chunks()) {
        if g.raid10_copies(c)
            .iter()
            .all(|&(d, _)| roles.get(d).is_none_or(|r| r.is_none()))
        {
            return Err(format!(
                "RAID-10 with {missing} member(s) missing has no copy of some chunks: it cannot run"
            ));
        }
    }
    let cb = g.chunk_bytes;
    let (mut lost, mut redundant) = (Vec::new(), Vec::new());
    for (d, r) in roles.iter().enumerate() {
        let Some(r) = r else { continue };
        for (s, l) in r.intersect(0, g.dev_chunks() * cb) {
            for (row, w0, w1) in chunk_pieces(s, l, cb) {
                // A device chunk no array chunk uses holds no array data.
                let Some((c, _)) = g.raid10_chunk_at(d, row) else {
                    continue;
                };
                let mut common = Ranges(vec![(w0, w1 - w0)]);
                for (d2, row2) in g.raid10_copies(c) {
                    if d2 >= roles.len() {
                        continue;
                    }
                    let b = bad_at(roles, d2, row2 * cb + w0, w1 - w0);
                    let shifted = Ranges(b.0.iter().map(|&(x, y)| (x - row2 * cb, y)).collect());
                    common = intersect(&common, &shifted);
                }
                let piece = Ranges(vec![(w0, w1 - w0)]);
                for (x, y) in common.0.iter() {
                    lost.push((c * cb + x, *y));
                }
                for (x, y) in subtract(&piece, &common).0 {
                    redundant.push((c * cb + x, y));
                }
            }
        }
    }
    Ok(MdMapped {
        lost: Ranges::from_unsorted(lost),
        redundant: Ranges::from_unsorted(redundant),
    })
}

/// Carries the bad ranges of the devices under a device-mapper table up
/// to the mapped device. `bad_of` gives a device's bad ranges by its
/// `MAJ:MIN` (None: nothing known to be bad on it).
pub fn dm_table(
    lines: &[TableLine],
    bad_of: &dyn Fn(&str) -> Option<Ranges>,
) -> Result<Ranges, String> {
    let mut lost = Vec::new();
    for line in lines {
        let start = line.start.checked_mul(512).ok_or("table start overflows")?;
        let len = line
            .length
            .checked_mul(512)
            .ok_or("table length overflows")?;
        let p: Vec<&str> = line.params.split_whitespace().collect();
        let num = |i: usize, what: &str| -> Result<u64, String> {
            p.get(i).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| {
                format!(
                    "dm table line \"{line}\": {what} expected at parameter {}",
                    i + 1
                )
            })
        };
        match line.target.as_str() {
            "zero" => {}
            "error" => lost.push((start, len)),
            "linear" => {
                let dev = p
                    .first()
                    .ok_or_else(|| format!("dm table line \"{line}\": no device"))?;
                let off = num(1, "an offset in sectors")?.saturating_mul(512);
                if let Some(bad) = bad_of(dev) {
                    for (s, l) in bad.intersect(off, len) {
                        lost.push((start + (s - off), l));
                    }
                }
            }
            "striped" => {
                let n = num(0, "a stripe count")?;
                let chunk = num(1, "a chunk size in sectors")?.saturating_mul(512);
                if n == 0 || chunk == 0 || p.len() as u64 != 2 + 2 * n {
                    return Err(format!(
                        "dm table line \"{line}\": {n} stripes of {chunk} bytes and {} parameters",
                        p.len()
                    ));
                }
                let width = len / n;
                for i in 0..n {
                    let dev = p[2 + 2 * i as usize];
                    let off = num(3 + 2 * i as usize, "an offset in sectors")?.saturating_mul(512);
                    let Some(bad) = bad_of(dev) else { continue };
                    for (s, l) in bad.intersect(off, width) {
                        for (row, w0, w1) in chunk_pieces(s - off, l, chunk) {
                            lost.push((start + (row * n + i) * chunk + w0, w1 - w0));
                        }
                    }
                }
            }
            t => {
                return Err(format!(
                    "dm target {t} is not mapped (only linear, striped, error and zero)"
                ))
            }
        }
    }
    Ok(Ranges::from_unsorted(lost))
}

/// The byte ranges of the devices under a dm table that it maps:
/// `(MAJ:MIN, start, len)`. Bad bytes of a PV outside them are LVM
/// metadata or extents no LV uses.
pub fn dm_table_uses(lines: &[TableLine]) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for line in lines {
        let len = line.length.saturating_mul(512);
        let p: Vec<&str> = line.params.split_whitespace().collect();
        let num = |i: usize| p.get(i).and_then(|s| s.parse::<u64>().ok());
        match line.target.as_str() {
            "linear" => {
                if let (Some(d), Some(o)) = (p.first(), num(1)) {
                    out.push((d.to_string(), o.saturating_mul(512), len));
                }
            }
            "striped" => {
                let n = num(0).unwrap_or(0);
                if n == 0 || p.len() as u64 != 2 + 2 * n {
                    continue;
                }
                for i in 0..n as usize {
                    if let Some(o) = num(3 + 2 * i) {
                        out.push((p[2 + 2 * i].to_string(), o.saturating_mul(512), len / n));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
