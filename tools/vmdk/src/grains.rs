//! What the two ESX delta formats (COWD and SESparse) share: a grain
//! directory read at open, grain tables of 4096 entries read on demand
//! (and kept in a small cache), and grains of data. The formats differ
//! only in how an entry is written ([`Kind`]), so one [`GrainMap`] reads
//! both; `cowd.rs` and `sesparse.rs` parse their headers and build one.

use crate::error::{Error, Result};
use crate::extent::{read_exact, ExtentReader, Held, Run};
use blockdev::BlockDevice;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Entries of one grain table, in both formats.
pub(crate) const GT_ENTRIES: u64 = 4096;

/// Grain tables kept in memory per extent (COWD: 16 KiB each, SESparse:
/// 32 KiB each).
const CACHED_TABLES: usize = 32;

/// How the directory and table entries of a format are written.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// u32 entries: a directory entry is the sector of its grain table, a
    /// table entry the sector of its grain (0: none, the parent shows
    /// through).
    Cowd,
    /// u64 entries: a directory entry is `0x10000000_xxxxxxxx` with a
    /// table index, a table entry has its state in the top nibble.
    /// `tables` and `grains` are the byte offsets of the grain-table and
    /// grain areas.
    SeSparse { tables: u64, grains: u64 },
}

impl Kind {
    fn entry_size(self) -> u64 {
        match self {
            Kind::Cowd => 4,
            Kind::SeSparse { .. } => 8,
        }
    }
}

/// A table entry decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Unallocated,
    Zero,
    /// The grain's data at this byte offset of the file.
    Stored(u64),
}

/// A grain-directory extent of either delta format.
pub(crate) struct GrainMap {
    pub format: &'static str,
    pub file: String,
    pub dev: Arc<dyn BlockDevice>,
    /// Bytes of the virtual disk the extent covers.
    pub size: u64,
    /// Bytes per grain.
    pub grain: u64,
    pub kind: Kind,
    /// The directory entries read (as many as `size` needs, at most as
    /// many as the header declares).
    pub gd: Vec<u64>,
    /// Byte offset of the directory in the file.
    pub gd_offset: u64,
    /// File ranges `(offset, len)` every byte of the extent depends on
    /// (the headers).
    pub headers: Vec<(u64, u64)>,
    pub notes: Vec<String>,
    cache: Mutex<VecDeque<(u64, Arc<Vec<u64>>)>>,
}

/// Bytes `[a, a+alen)` and `[b, b+blen)` overlap.
fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

impl GrainMap {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        format: &'static str,
        file: String,
        dev: Arc<dyn BlockDevice>,
        size: u64,
        grain: u64,
        kind: Kind,
        gd: Vec<u64>,
        gd_offset: u64,
        headers: Vec<(u64, u64)>,
        notes: Vec<String>,
    ) -> GrainMap {
        GrainMap {
            format,
            file,
            dev,
            size,
            grain,
            kind,
            gd,
            gd_offset,
            headers,
            notes,
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// Virtual bytes one grain table covers.
    fn cover(&self) -> u64 {
        self.grain * GT_ENTRIES
    }

    fn table_bytes(&self) -> u64 {
        GT_ENTRIES * self.kind.entry_size()
    }

    /// Where directory entry `i`'s grain table is (None: no table), with
    /// errors naming the entry and the virtual bytes it covers.
    fn table_at(&self, i: usize) -> Result<Option<u64>> {
        let gde = self.gd[i];
        let at = self.gd_offset + i as u64 * self.kind.entry_size();
        let virt = i as u64 * self.cover();
        let bad = |what: String| {
            Error::corrupt(
                &self.file,
                at,
                format!(
                    "grain directory entry {i} (virtual bytes from {virt}) is {gde:#x}: {what}"
                ),
            )
        };
        let offset = match self.kind {
            _ if gde == 0 => return Ok(None),
            Kind::Cowd => gde * 512,
            Kind::SeSparse { tables, .. } => {
                if gde >> 32 != 0x1000_0000 {
                    return Err(bad(
                        "not an allocated table (the top 32 bits are not 0x10000000)".into(),
                    ));
                }
                (gde & 0xFFFF_FFFF)
                    .checked_mul(self.table_bytes())
                    .and_then(|o| o.checked_add(tables))
                    .ok_or_else(|| bad("the table's offset overflows".into()))?
            }
        };
        let file_size = self.dev.size();
        if offset.saturating_add(self.table_bytes()) > file_size {
            return Err(bad(format!(
                "its grain table at byte {offset} lies past the end of the file ({file_size} bytes)"
            )));
        }
        Ok(Some(offset))
    }

    /// The grain table at byte `offset`, from the cache or the file.
    fn table(&self, offset: u64) -> Result<Arc<Vec<u64>>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, t)) = cache.iter().find(|(o, _)| *o == offset) {
                return Ok(t.clone());
            }
        }
        let mut raw = vec![0u8; self.table_bytes() as usize];
        read_exact(
            self.dev.as_ref(),
            &self.file,
            "grain table",
            &mut raw,
            offset,
        )?;
        let entries: Vec<u64> = match self.kind {
            Kind::Cowd => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
                .collect(),
            Kind::SeSparse { .. } => raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        };
        let t = Arc::new(entries);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_TABLES {
            cache.pop_front();
        }
        cache.push_back((offset, t.clone()));
        Ok(t)
    }

    /// Decodes table entry `gte` without checking where it points (None:
    /// an entry no format writes).
    fn decode(&self, gte: u64) -> Option<Entry> {
        match self.kind {
            Kind::Cowd if gte == 0 => Some(Entry::Unallocated),
            // QEMU reads every non-zero entry of a VMDK3/COWD table as a
            // sector offset (its "zeroed grain" entry 1 is VMDK4 only).
            Kind::Cowd => Some(Entry::Stored(gte * 512)),
            Kind::SeSparse { grains, .. } => match gte >> 60 {
                0 if gte == 0 => Some(Entry::Unallocated),
                // 1: unmapped by the guest (SCSI UNMAP), 2: zeroed; both
                // read as zeros, as QEMU reads them.
                1 | 2 => Some(Entry::Zero),
                3 => {
                    let cluster = ((gte & 0x0FFF_0000_0000_0000) >> 48)
                        | ((gte & 0x0000_FFFF_FFFF_FFFF) << 12);
                    cluster
                        .checked_mul(self.grain)
                        .and_then(|o| o.checked_add(grains))
                        .map(Entry::Stored)
                }
                _ => None,
            },
        }
    }

    /// Entry `ei` of table `t` of directory entry `gi`, checked: data
    /// must lie in the file.
    fn entry(&self, gi: usize, table: u64, t: &[u64], ei: u64) -> Result<Entry> {
        let gte = t[ei as usize];
        let virt = gi as u64 * self.cover() + ei * self.grain;
        let at = table + ei * self.kind.entry_size();
        let bad = |what: String| {
            Error::corrupt(
                &self.file,
                at,
                format!("grain table entry {ei} (virtual byte {virt}) is {gte:#x}: {what}"),
            )
        };
        let entry = self
            .decode(gte)
            .ok_or_else(|| bad("not a grain state this format has".into()))?;
        if let Entry::Stored(offset) = entry {
            let needed = self.grain.min(self.size - virt);
            let file_size = self.dev.size();
            if offset.saturating_add(needed) > file_size {
                return Err(bad(format!(
                    "its grain at byte {offset} lies past the end of the file ({file_size} bytes)"
                )));
            }
        }
        Ok(entry)
    }
}

impl ExtentReader for GrainMap {
    fn format(&self) -> &'static str {
        self.format
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn file(&self) -> Option<&str> {
        Some(&self.file)
    }

    /// Runs end at the end of a grain table's coverage at the latest; a
    /// run joins grains held the same way (and stored grains that follow
    /// each other in the file).
    fn map(&self, offset: u64) -> Result<Run> {
        let cover = self.cover();
        let gi = offset / cover;
        let start = gi * cover;
        let end = start.saturating_add(cover).min(self.size);
        let unallocated = |len| Run {
            len,
            held: Held::Unallocated,
        };
        if gi >= self.gd.len() as u64 {
            return Ok(unallocated(self.size - offset));
        }
        let gi = gi as usize;
        let Some(table) = self.table_at(gi)? else {
            return Ok(unallocated(end - offset));
        };
        let t = self.table(table)?;
        let mut ei = (offset - start) / self.grain;
        let first = self.entry(gi, table, &t, ei)?;
        let mut grain_end = start + (ei + 1) * self.grain;
        let mut last = first;
        while grain_end < end {
            ei += 1;
            let Ok(next) = self.entry(gi, table, &t, ei) else {
                break;
            };
            let joins = match (last, next) {
                (Entry::Stored(a), Entry::Stored(b)) => b == a + self.grain,
                (a, b) => a == b,
            };
            if !joins {
                break;
            }
            last = next;
            grain_end += self.grain;
        }
        let len = grain_end.min(end) - offset;
        let within = (offset - start) % self.grain;
        Ok(Run {
            len,
            held: match first {
                Entry::Unallocated => Held::Unallocated,
                Entry::Zero => Held::Zero,
                Entry::Stored(o) => Held::Stored { offset: o + within },
            },
        })
    }

    fn read(&self, run: &Run, within: u64, buf: &mut [u8]) -> Result<()> {
        match run.held {
            Held::Stored { offset } => read_exact(
                self.dev.as_ref(),
                &self.file,
                "grain data",
                buf,
                offset.saturating_add(within),
            ),
            _ => Err(Error::corrupt(
                &self.file,
                0,
                format!(
                    "{} extent asked to read a run it does not store",
                    self.format
                ),
            )),
        }
    }

    fn allocated(&self) -> Result<u64> {
        let mut n = 0u64;
        for gi in 0..self.gd.len() {
            if let Some(table) = self.table_at(gi)? {
                let t = self.table(table)?;
                let stored = t
                    .iter()
                    .filter(|&&e| matches!(self.decode(e), Some(Entry::Stored(_))))
                    .count() as u64;
                n = n.saturating_add(stored * self.grain);
            }
        }
        Ok(n)
    }

    /// The headers are behind every byte; a directory entry behind all its
    /// table covers; a table behind all it covers (and an unreadable table
    /// makes all it covers suspect); a grain behind its own bytes.
    fn dependents(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if self
            .headers
            .iter()
            .any(|&(o, l)| overlaps(offset, len, o, l))
        {
            return Ok(vec![(0, self.size)]);
        }
        let cover = self.cover();
        let es = self.kind.entry_size();
        let mut out = Vec::new();
        for gi in 0..self.gd.len() {
            let start = gi as u64 * cover;
            let whole = (start, cover.min(self.size - start));
            if overlaps(offset, len, self.gd_offset + gi as u64 * es, es) {
                out.push(whole);
                continue;
            }
            // A directory entry that points nowhere sensible: nothing in
            // the file is behind its bytes.
            let Ok(Some(table)) = self.table_at(gi) else {
                continue;
            };
            if overlaps(offset, len, table, self.table_bytes()) {
                out.push(whole);
                continue;
            }
            let t = match self.table(table) {
                Ok(t) => t,
                Err(e) if e.is_io() => {
                    out.push(whole);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (ei, &gte) in t.iter().enumerate() {
                let virt = start + ei as u64 * self.grain;
                if virt >= self.size {
                    break;
                }
                if let Some(Entry::Stored(o)) = self.decode(gte) {
                    if overlaps(offset, len, o, self.grain) {
                        out.push((virt, self.grain.min(self.size - virt)));
                    }
                }
            }
        }
        out.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (o, l) in out {
            match merged.last_mut() {
                Some((mo, ml)) if *mo + *ml >= o => *ml = (*ml).max(o + l - *mo),
                _ => merged.push((o, l)),
            }
        }
        Ok(merged)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// `sectors` as bytes, or a corrupt-header error naming `field` (at byte
/// `at` of `file`).
pub(crate) fn sectors_to_bytes(file: &str, at: u64, field: &str, sectors: u64) -> Result<u64> {
    sectors.checked_mul(512).ok_or_else(|| {
        Error::corrupt(
            file,
            at,
            format!("{field} is {sectors} sectors: too large to be a byte offset"),
        )
    })
}

/// Reads the first `entries` directory entries (`entry_size` bytes each)
/// at byte `offset`, which must lie in the file.
pub(crate) fn read_directory(
    dev: &dyn BlockDevice,
    file: &str,
    offset: u64,
    entries: u64,
    entry_size: u64,
) -> Result<Vec<u64>> {
    let bytes = entries * entry_size;
    if offset.saturating_add(bytes) > dev.size() {
        return Err(Error::corrupt(
            file,
            offset,
            format!(
                "the grain directory ({entries} entries at byte {offset}) runs past the end of \
                 the file ({} bytes)",
                dev.size()
            ),
        ));
    }
    let mut raw = vec![0u8; bytes as usize];
    read_exact(dev, file, "grain directory", &mut raw, offset)?;
    Ok(raw
        .chunks_exact(entry_size as usize)
        .map(|c| c.iter().rev().fold(0u64, |v, &b| (v << 8) | b as u64))
        .collect())
}
