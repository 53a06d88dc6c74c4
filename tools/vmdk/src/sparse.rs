//! Reader of hosted sparse extents ("KDMV": monolithicSparse,
//! twoGbMaxExtentSparse, and streamOptimized with deflated grains, see
//! [`crate::stream`]).
//!
//! A 512-byte little-endian header: magic "KDMV", version, flags, capacity
//! and grain size in sectors, the embedded descriptor's place, the number
//! of entries in a grain table, the redundant and primary grain
//! directories' sectors, the overhead (sectors before the first grain), an
//! unclean-shutdown byte, the newline test bytes "\n \r\n" and the
//! compression algorithm. A grain directory (GD) lists the sector of each
//! grain table (GT); a GT lists the sector of each grain: 0 not allocated
//! here (the parent shows through), 1 a zero grain, else the grain's data.
//! When the GD is written last (streamOptimized, `gdOffset` all ones), the
//! real header is a copy in a footer at the end of the file. Sources:
//! VMware's "Virtual Disk Format 5.0" technote; QEMU's block/vmdk.c;
//! libvmdk's format documentation.

use crate::error::{Error, Result};
use crate::extent::{read_exact, ExtentReader, Held, Run};
use crate::stream::{self, GrainCache, GRAIN_MARKER_HEAD};
use blockdev::BlockDevice;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub const MAGIC: &[u8; 4] = b"KDMV";
pub const HEADER_BYTES: usize = 512;
/// `gdOffset` of a stream whose GD (and real header) come at the end.
pub const GD_AT_END: u64 = u64::MAX;

pub const FLAG_NEWLINE_TEST: u32 = 1;
pub const FLAG_REDUNDANT_GD: u32 = 1 << 1;
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub const FLAG_COMPRESSED: u32 = 1 << 16;
pub const FLAG_MARKERS: u32 = 1 << 17;

/// `compressAlgorithm` of deflate.
pub const COMPRESS_DEFLATE: u16 = 1;

/// Largest grain read (sectors): 64 MiB.
pub const MAX_GRAIN_SECTORS: u64 = 1 << 17;
/// Most entries in one grain table read.
pub const MAX_GTES_PER_GT: u32 = 1 << 16;
/// Most grain directory entries read (a 64 MiB directory).
pub const MAX_GD_ENTRIES: u64 = 1 << 24;
/// Memory for cached grain tables.
const GT_CACHE_BYTES: usize = 4 << 20;
/// Memory for cached inflated grains.
const GRAIN_CACHE_BYTES: usize = 4 << 20;

/// GT entry of a zero grain.
const GTE_ZERO: u32 = 1;

/// The header of a hosted sparse file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub flags: u32,
    /// Sectors of virtual disk.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_size: u64,
    /// Sector of the embedded descriptor (0: none).
    pub descriptor_offset: u64,
    /// Sectors of the embedded descriptor.
    pub descriptor_size: u64,
    pub gtes_per_gt: u32,
    /// Sector of the redundant GD.
    pub rgd_offset: u64,
    /// Sector of the GD ([`GD_AT_END`]: see the footer).
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    pub unclean_shutdown: bool,
    /// Bytes 73..77: "\n \r\n" unless a text-mode copy changed them.
    pub newline_test: [u8; 4],
    pub compress_algorithm: u16,
}

impl Header {
    /// Parses the 512 bytes of `b` (read at byte `at` of `file`). Checks
    /// only the magic; [`Header::check`] checks the rest.
    pub fn parse(b: &[u8], file: &str, at: u64) -> Result<Header> {
        let f = le::Fields::new(b, "hosted sparse header");
        let e = Error::field(file, at);
        if f.bytes(0, 4).map_err(&e)? != MAGIC {
            return Err(Error::corrupt(file, at, "no KDMV magic"));
        }
        Ok(Header {
            version: f.u32(4).map_err(&e)?,
            flags: f.u32(8).map_err(&e)?,
            capacity: f.u64(12).map_err(&e)?,
            grain_size: f.u64(20).map_err(&e)?,
            descriptor_offset: f.u64(28).map_err(&e)?,
            descriptor_size: f.u64(36).map_err(&e)?,
            gtes_per_gt: f.u32(44).map_err(&e)?,
            rgd_offset: f.u64(48).map_err(&e)?,
            gd_offset: f.u64(56).map_err(&e)?,
            overhead: f.u64(64).map_err(&e)?,
            unclean_shutdown: f.u8(72).map_err(&e)? != 0,
            newline_test: f.array(73).map_err(&e)?,
            compress_algorithm: f.u16(77).map_err(&e)?,
        })
    }

    /// Whether the fields describe a disk this reader reads.
    pub fn check(&self, file: &str, at: u64) -> Result<()> {
        if !(1..=3).contains(&self.version) {
            return Err(Error::unsupported(
                file,
                format!("hosted sparse version {} (1 to 3 are read)", self.version),
            ));
        }
        if self.grain_size == 0 || self.grain_size > MAX_GRAIN_SECTORS {
            return Err(Error::corrupt(
                file,
                at + 20,
                format!(
                    "grain size {} sectors (1 to {MAX_GRAIN_SECTORS} are read)",
                    self.grain_size
                ),
            ));
        }
        if self.gtes_per_gt == 0 || self.gtes_per_gt > MAX_GTES_PER_GT {
            return Err(Error::corrupt(
                file,
                at + 44,
                format!(
                    "{} entries per grain table (1 to {MAX_GTES_PER_GT} are read)",
                    self.gtes_per_gt
                ),
            ));
        }
        if self.capacity > u64::MAX / 512 / 2 {
            return Err(Error::corrupt(
                file,
                at + 12,
                format!("capacity {} sectors is impossible", self.capacity),
            ));
        }
        if self.gd_entries() > MAX_GD_ENTRIES {
            return Err(Error::unsupported(
                file,
                format!(
                    "a grain directory of {} entries (at most {MAX_GD_ENTRIES} are read)",
                    self.gd_entries()
                ),
            ));
        }
        if self.compressed() && self.compress_algorithm != COMPRESS_DEFLATE {
            return Err(Error::unsupported(
                file,
                format!(
                    "compression algorithm {} (only 1, deflate, is read)",
                    self.compress_algorithm
                ),
            ));
        }
        Ok(())
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }
    pub fn markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * 512
    }
    /// Virtual bytes one grain table covers.
    pub fn gt_span(&self) -> u64 {
        self.grain_bytes() * u64::from(self.gtes_per_gt)
    }
    /// Bytes of one grain table.
    pub fn gt_bytes(&self) -> u64 {
        u64::from(self.gtes_per_gt) * 4
    }
    /// Entries of the grain directory.
    pub fn gd_entries(&self) -> u64 {
        self.capacity.saturating_mul(512).div_ceil(self.gt_span())
    }
}

/// Which grain directory (and its tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Primary,
    Redundant,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Primary => "grain",
            Which::Redundant => "redundant grain",
        }
    }
}

/// A grain table as read: its entries and where they came from.
struct Gt {
    entries: Vec<u32>,
    /// Byte offset in the file (None: the GD entry is 0, no table).
    at: Option<u64>,
}

/// Where the grains are found.
enum GrainMap {
    /// Through a grain directory and its tables.
    Tables {
        which: Which,
        gd: Vec<u32>,
        gd_at: u64,
        /// The other directory (for tables the one in use cannot give).
        spare: Option<(Which, Vec<u32>)>,
    },
    /// From a scan of the grain markers: (grain, marker byte offset),
    /// sorted.
    Scanned(Vec<(u64, u64)>),
}

/// A grain as its table entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grain {
    Unallocated,
    Zero,
    /// Data at this byte offset (a marker's when compressed).
    At(u64),
}

/// An open hosted sparse extent.
pub struct SparseExtent {
    file: String,
    dev: Arc<dyn BlockDevice>,
    size: u64,
    header: Header,
    map: GrainMap,
    /// The footer's place when the header used is the footer's copy.
    footer_at: Option<u64>,
    gts: Mutex<GtCache>,
    grains: GrainCache,
    notes: Mutex<Vec<String>>,
}

#[derive(Default)]
struct GtCache {
    tables: HashMap<u64, Arc<Gt>>,
    order: VecDeque<u64>,
}

/// Opens the extent in `dev` (shown as `shown`) covering `size` bytes of
/// the virtual disk.
pub fn open(shown: String, dev: Arc<dyn BlockDevice>, size: u64) -> Result<Box<dyn ExtentReader>> {
    Ok(Box::new(SparseExtent::open(shown, dev, size)?))
}

/// The descriptor text inside a hosted sparse file (`head`: its first
/// bytes), None when `dev` is not one or has none inside.
pub fn embedded_descriptor(
    dev: &Arc<dyn BlockDevice>,
    shown: &str,
    head: &[u8],
) -> Result<Option<String>> {
    if head.get(..4) != Some(MAGIC.as_slice()) {
        return Ok(None);
    }
    let mut b = [0u8; HEADER_BYTES];
    read_exact(dev.as_ref(), shown, "the header", &mut b, 0)?;
    let mut h = Header::parse(&b, shown, 0)?;
    if h.descriptor_offset == 0 && h.gd_offset == GD_AT_END {
        if let Some(f) = stream::read_footer(dev.as_ref(), shown)? {
            h = f;
        }
    }
    if h.descriptor_offset == 0 || h.descriptor_size == 0 {
        return Ok(None);
    }
    let at = h.descriptor_offset.saturating_mul(512);
    let len = h
        .descriptor_size
        .saturating_mul(512)
        .min(crate::descriptor::MAX_DESCRIPTOR_BYTES as u64)
        .min(dev.size().saturating_sub(at));
    if len == 0 {
        return Err(Error::corrupt(
            shown,
            28,
            format!(
                "the embedded descriptor at sector {} is past the end of the file",
                h.descriptor_offset
            ),
        ));
    }
    let mut text = vec![0u8; len as usize];
    read_exact(
        dev.as_ref(),
        shown,
        "the embedded descriptor",
        &mut text,
        at,
    )?;
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    let text = String::from_utf8_lossy(&text[..end]).into_owned();
    // An extent of a split disk may keep room for a descriptor but hold
    // none.
    Ok((!text.trim().is_empty()).then_some(text))
}

impl SparseExtent {
    /// Opens the hosted sparse file in `dev`, `size` bytes of virtual disk.
    pub fn open(file: String, dev: Arc<dyn BlockDevice>, size: u64) -> Result<SparseExtent> {
        let mut b = [0u8; HEADER_BYTES];
        read_exact(dev.as_ref(), &file, "the header", &mut b, 0)?;
        let first = Header::parse(&b, &file, 0)?;
        first.check(&file, 0)?;
        let mut notes = Vec::new();
        if first.flags & FLAG_NEWLINE_TEST != 0 && &first.newline_test != b"\n \r\n" {
            notes.push(format!(
                "{file}: the newline test bytes are changed: the file went through a text-mode \
                 copy and its data is likely damaged"
            ));
        }
        if first.unclean_shutdown {
            notes.push(format!(
                "{file}: marked as not closed cleanly; the last writes may be missing"
            ));
        }
        let mut header = first.clone();
        let mut footer_at = None;
        let mut scan = false;
        if first.gd_offset == GD_AT_END {
            match stream::read_footer(dev.as_ref(), &file)? {
                Some(f) => {
                    f.check(&file, dev.size() - 1024)?;
                    header = f;
                    footer_at = Some(dev.size() - 3 * HEADER_BYTES as u64);
                }
                None if first.markers() && first.compressed() => scan = true,
                None => {
                    return Err(Error::corrupt(
                        &file,
                        56,
                        "the grain directory is at the end but there is no footer there",
                    ))
                }
            }
        }
        let mut x = SparseExtent {
            file,
            dev,
            size,
            grains: GrainCache::new(GRAIN_CACHE_BYTES),
            gts: Mutex::new(GtCache::default()),
            map: GrainMap::Scanned(Vec::new()),
            footer_at,
            header,
            notes: Mutex::new(Vec::new()),
        };
        if !scan {
            match x.open_tables(&mut notes) {
                Ok(map) => x.map = map,
                Err(e) if x.header.markers() && x.header.compressed() => {
                    notes.push(format!("{}: {e}", x.file));
                    scan = true;
                }
                Err(e) => return Err(e),
            }
        }
        if scan {
            let from = x.grains_from();
            let s = stream::scan_markers(x.dev.as_ref(), &x.file, &x.header, from);
            notes.push(format!(
                "{}: no usable grain directory (no footer: a truncated copy?); the map was \
                 rebuilt from {} grain markers ({})",
                x.file,
                s.grains.len(),
                s.ended
            ));
            x.map = GrainMap::Scanned(s.grains);
        }
        let cap = x.header.capacity.saturating_mul(512);
        if cap < size {
            notes.push(format!(
                "{}: the header gives {cap} bytes but the descriptor {size}; the rest reads as \
                 zeros",
                x.file
            ));
        }
        *x.notes.get_mut().unwrap_or_else(|e| e.into_inner()) = notes;
        Ok(x)
    }

    /// Where the grains start, for a scan.
    fn grains_from(&self) -> u64 {
        let h = &self.header;
        let after_descriptor = h.descriptor_offset.saturating_add(h.descriptor_size).max(1);
        let o = if h.overhead > 0 {
            h.overhead
        } else {
            after_descriptor
        };
        o.saturating_mul(512).min(self.dev.size())
    }

    fn note(&self, n: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if !notes.contains(&n) {
            notes.push(n);
        }
    }

    /// Reads a grain directory at sector `sector`, with what is wrong with
    /// its entries (one pointing past the end of the file), if anything.
    fn read_gd(&self, which: Which, sector: u64) -> Result<(Vec<u32>, Option<String>)> {
        let h = &self.header;
        let n = h.gd_entries();
        let at = sector.saturating_mul(512);
        if sector == 0 || sector == GD_AT_END || at.saturating_add(n * 4) > self.dev.size() {
            return Err(Error::corrupt(
                &self.file,
                if which == Which::Primary { 56 } else { 48 },
                format!(
                    "the {} directory at sector {sector} ({n} entries) is not inside the file",
                    which.name()
                ),
            ));
        }
        let mut b = vec![0u8; (n * 4) as usize];
        read_exact(
            self.dev.as_ref(),
            &self.file,
            &format!("the {} directory", which.name()),
            &mut b,
            at,
        )?;
        let gd: Vec<u32> = b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let problem = gd
            .iter()
            .enumerate()
            .find(|(_, &s)| s != 0 && u64::from(s) * 512 + h.gt_bytes() > self.dev.size())
            .map(|(i, &s)| {
                format!(
                    "{} directory entry {i} (byte {}) points to sector {s}, past the end of the \
                     file",
                    which.name(),
                    at + i as u64 * 4
                )
            });
        Ok((gd, problem))
    }

    /// The directory to use: the primary, unless it cannot be read or is
    /// wrong and the redundant one is right. The other one stands by for
    /// single tables.
    fn open_tables(&self, notes: &mut Vec<String>) -> Result<GrainMap> {
        let h = &self.header;
        let rgd = if h.rgd_offset != 0 && h.rgd_offset != GD_AT_END && h.rgd_offset != h.gd_offset {
            Some(self.read_gd(Which::Redundant, h.rgd_offset))
        } else {
            None
        };
        let primary = self.read_gd(Which::Primary, h.gd_offset);
        let use_redundant = match (&primary, &rgd) {
            (Ok((_, None)), _) => false,
            (_, Some(Ok((_, None)))) => true,
            (Err(_), Some(Ok(_))) => true,
            _ => false,
        };
        if use_redundant {
            let Some(Ok((gd, _))) = rgd else {
                unreachable!("checked above")
            };
            let why = match &primary {
                Err(e) => e.to_string(),
                Ok((_, p)) => p.clone().unwrap_or_default(),
            };
            notes.push(format!(
                "{}: the grain directory is unusable ({why}); the redundant one is read",
                self.file
            ));
            return Ok(GrainMap::Tables {
                which: Which::Redundant,
                gd,
                gd_at: h.rgd_offset * 512,
                spare: primary.ok().map(|(p, _)| (Which::Primary, p)),
            });
        }
        let (gd, problem) = primary?;
        if let Some(p) = problem {
            notes.push(format!(
                "{}: {p}; no redundant directory can stand in, the tables it names are not read",
                self.file
            ));
        }
        Ok(GrainMap::Tables {
            which: Which::Primary,
            gd,
            gd_at: h.gd_offset * 512,
            spare: rgd.and_then(|r| r.ok()).map(|(r, _)| (Which::Redundant, r)),
        })
    }

    /// What is wrong with a table's entries, if anything.
    fn gt_problem(&self, entries: &[u32]) -> Option<String> {
        let end = self.dev.size();
        entries
            .iter()
            .enumerate()
            .find(|(_, &e)| e > GTE_ZERO && u64::from(e) * 512 >= end)
            .map(|(i, &e)| format!("entry {i} points to sector {e}, past the end of the file"))
    }

    /// Reads GT `index` of directory `gd`.
    fn read_gt(&self, gd: &[u32], index: u64) -> Result<Gt> {
        let n = self.header.gtes_per_gt as usize;
        let Some(&sector) = gd.get(index as usize) else {
            return Ok(Gt {
                entries: vec![0; n],
                at: None,
            });
        };
        if sector == 0 {
            return Ok(Gt {
                entries: vec![0; n],
                at: None,
            });
        }
        let at = u64::from(sector) * 512;
        if at + n as u64 * 4 > self.dev.size() {
            return Err(Error::corrupt(
                &self.file,
                at,
                format!(
                    "grain table {index} (virtual bytes from {}) is at sector {sector}, past the \
                     end of the file",
                    index * self.header.gt_span()
                ),
            ));
        }
        let mut b = vec![0u8; n * 4];
        read_exact(
            self.dev.as_ref(),
            &self.file,
            &format!("grain table {index}"),
            &mut b,
            at,
        )?;
        Ok(Gt {
            entries: b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            at: Some(at),
        })
    }

    /// GT `index` of the directory in use, from the other directory when
    /// this one's is unreadable or points past the end of the file.
    fn gt(&self, index: u64) -> Result<Arc<Gt>> {
        {
            let c = self.gts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = c.tables.get(&index) {
                return Ok(t.clone());
            }
        }
        let GrainMap::Tables {
            which, gd, spare, ..
        } = &self.map
        else {
            return Err(Error::corrupt(&self.file, 0, "no grain tables"));
        };
        let first = self.read_gt(gd, index);
        let problem = match &first {
            Ok(t) => self.gt_problem(&t.entries),
            Err(e) => Some(e.to_string()),
        };
        let gt = match (problem, spare) {
            (Some(p), Some((other, sgd))) => match self.read_gt(sgd, index) {
                Ok(t) if self.gt_problem(&t.entries).is_none() => {
                    self.note(format!(
                        "{}: {} table {index} is unusable ({p}); the {} table is read for \
                         virtual bytes {}..{}",
                        self.file,
                        which.name(),
                        other.name(),
                        index * self.header.gt_span(),
                        ((index + 1) * self.header.gt_span()).min(self.size)
                    ));
                    t
                }
                _ => first?,
            },
            _ => first?,
        };
        let gt = Arc::new(gt);
        let mut c = self.gts.lock().unwrap_or_else(|e| e.into_inner());
        let max = (GT_CACHE_BYTES / (self.header.gt_bytes() as usize).max(1)).max(4);
        while c.order.len() >= max {
            if let Some(old) = c.order.pop_front() {
                c.tables.remove(&old);
            }
        }
        c.order.push_back(index);
        c.tables.insert(index, gt.clone());
        Ok(gt)
    }

    /// Grain `g` as its table gives it.
    fn grain(&self, g: u64) -> Result<Grain> {
        match &self.map {
            GrainMap::Scanned(list) => Ok(match list.binary_search_by_key(&g, |&(i, _)| i) {
                Ok(i) => Grain::At(list[i].1),
                Err(_) => Grain::Unallocated,
            }),
            GrainMap::Tables { .. } => {
                let per = u64::from(self.header.gtes_per_gt);
                let gt = self.gt(g / per)?;
                Ok(decode(gt.entries[(g % per) as usize], self.zero_grains()))
            }
        }
    }

    fn zero_grains(&self) -> bool {
        self.header.flags & FLAG_ZERO_GRAIN != 0
    }

    /// Virtual bytes held (the smaller of header and descriptor sizes).
    fn held_bytes(&self) -> u64 {
        self.header.capacity.saturating_mul(512).min(self.size)
    }

    /// Every grain with data: `f(grain index, byte offset in the file)`;
    /// a table that cannot be read goes to `bad(table index, error)`.
    fn for_each_grain(&self, mut f: impl FnMut(u64, u64), mut bad: impl FnMut(u64, Error)) {
        match &self.map {
            GrainMap::Scanned(list) => {
                for &(g, at) in list {
                    f(g, at);
                }
            }
            GrainMap::Tables { gd, .. } => {
                let per = u64::from(self.header.gtes_per_gt);
                for (i, &s) in gd.iter().enumerate() {
                    if s == 0 {
                        continue;
                    }
                    match self.gt(i as u64) {
                        Ok(gt) => {
                            for (j, &e) in gt.entries.iter().enumerate() {
                                if let Grain::At(at) = decode(e, self.zero_grains()) {
                                    f(i as u64 * per + j as u64, at);
                                }
                            }
                        }
                        Err(e) => bad(i as u64, e),
                    }
                }
            }
        }
    }

    /// Where grain data at byte `at` ends in the file.
    fn grain_end(&self, at: u64) -> u64 {
        let h = &self.header;
        if h.compressed() && h.markers() {
            let mut b = [0u8; 12];
            if read_exact(self.dev.as_ref(), &self.file, "a grain marker", &mut b, at).is_ok() {
                let n = u64::from(u32::from_le_bytes([b[8], b[9], b[10], b[11]]));
                return at + GRAIN_MARKER_HEAD + n.min(stream::max_compressed(h.grain_bytes()));
            }
            at + GRAIN_MARKER_HEAD + stream::max_compressed(h.grain_bytes())
        } else {
            at + h.grain_bytes()
        }
    }

    /// The virtual range of grain `g`, within the extent.
    fn grain_range(&self, g: u64) -> Option<(u64, u64)> {
        let gb = self.header.grain_bytes();
        let start = g.checked_mul(gb)?;
        let end = start.saturating_add(gb).min(self.held_bytes());
        (start < end).then(|| (start, end - start))
    }

    /// The virtual range GT `i` covers, within the extent.
    fn gt_range(&self, i: u64) -> Option<(u64, u64)> {
        let span = self.header.gt_span();
        let start = i.checked_mul(span)?;
        let end = start.saturating_add(span).min(self.held_bytes());
        (start < end).then(|| (start, end - start))
    }
}

/// A GT entry: 0 not here, 1 a zero grain (when the header says zero
/// grains are used; else, as QEMU reads it, data at sector 1), else the
/// grain's sector.
fn decode(e: u32, zero_grains: bool) -> Grain {
    match e {
        0 => Grain::Unallocated,
        GTE_ZERO if zero_grains => Grain::Zero,
        s => Grain::At(u64::from(s) * 512),
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

impl ExtentReader for SparseExtent {
    fn format(&self) -> &'static str {
        if self.header.compressed() {
            "streamOptimized"
        } else {
            "hosted sparse"
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn file(&self) -> Option<&str> {
        Some(&self.file)
    }

    fn map(&self, offset: u64) -> Result<Run> {
        let held = self.held_bytes();
        if offset >= held {
            return Ok(Run {
                len: self.size.saturating_sub(offset).max(1),
                held: Held::Zero,
            });
        }
        let gb = self.header.grain_bytes();
        let g = offset / gb;
        let within = offset % gb;
        let first = self.grain(g)?;
        let compressed = self.header.compressed();
        if let Grain::At(at) = first {
            let need = if compressed {
                GRAIN_MARKER_HEAD.min(gb)
            } else {
                (gb - within).min(held - offset) + within
            };
            if at.saturating_add(need) > self.dev.size() {
                return Err(Error::corrupt(
                    &self.file,
                    at,
                    format!(
                        "the grain at virtual byte {} is mapped to byte {at}, past the end of \
                         the file ({} bytes)",
                        g * gb,
                        self.dev.size()
                    ),
                ));
            }
            if compressed {
                return Ok(Run {
                    len: (gb - within).min(held - offset),
                    held: Held::Compressed {
                        offset: at,
                        skip: within,
                    },
                });
            }
        }
        // Extend over following grains held the same way, within the table.
        let per = u64::from(self.header.gtes_per_gt);
        let last = match &self.map {
            GrainMap::Tables { .. } => ((g / per + 1) * per).min(held.div_ceil(gb)),
            GrainMap::Scanned(_) => held.div_ceil(gb),
        };
        let mut end = g + 1;
        if let (GrainMap::Scanned(list), Grain::Unallocated) = (&self.map, first) {
            let next = list.partition_point(|&(i, _)| i <= g);
            end = list.get(next).map_or(last, |&(i, _)| i.min(last));
        }
        while end < last {
            let next = self.grain(end)?;
            let same = match (first, next) {
                (Grain::At(a), Grain::At(b)) => {
                    !compressed
                        && b == a + (end - g) * gb
                        && b.saturating_add(gb.min(held - end * gb)) <= self.dev.size()
                }
                (a, b) => a == b,
            };
            if !same {
                break;
            }
            end += 1;
        }
        let len = (end * gb).min(held) - offset;
        Ok(Run {
            len,
            held: match first {
                Grain::Unallocated => Held::Unallocated,
                Grain::Zero => Held::Zero,
                Grain::At(at) => Held::Stored {
                    offset: at + within,
                },
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
                offset + within,
            ),
            // A whole grain asked for (an export, a sequential read):
            // inflated straight into the caller's buffer, not cached.
            Held::Compressed { offset, skip }
                if skip + within == 0
                    && buf.len() as u64 == self.header.grain_bytes()
                    && self.grains.get(offset).is_none() =>
            {
                stream::read_grain_into(
                    self.dev.as_ref(),
                    &self.file,
                    offset,
                    self.header.markers(),
                    buf,
                )
            }
            Held::Compressed { offset, skip } => {
                let data = match self.grains.get(offset) {
                    Some(d) => d,
                    None => {
                        let d = Arc::new(stream::read_grain(
                            self.dev.as_ref(),
                            &self.file,
                            offset,
                            self.header.markers(),
                            self.header.grain_bytes(),
                        )?);
                        self.grains.put(offset, d.clone());
                        d
                    }
                };
                let from = (skip + within) as usize;
                let src = from
                    .checked_add(buf.len())
                    .and_then(|end| data.get(from..end))
                    .ok_or_else(|| {
                        Error::corrupt(
                            &self.file,
                            offset,
                            "a read past the end of a compressed grain",
                        )
                    })?;
                buf.copy_from_slice(src);
                Ok(())
            }
            _ => Err(Error::corrupt(
                &self.file,
                0,
                "hosted sparse extent asked to read a run it does not store",
            )),
        }
    }

    fn allocated(&self) -> Result<u64> {
        let mut n = 0u64;
        let mut err = None;
        self.for_each_grain(
            |g, _| n += self.grain_range(g).map_or(0, |r| r.1),
            |_, e| {
                err.get_or_insert(e);
            },
        );
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn dependents(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let whole = (0, self.size);
        // The header (and a footer's copy of it) says where everything is.
        if overlaps(offset, len, 0, HEADER_BYTES as u64) {
            out.push(whole);
        }
        if let Some(f) = self.footer_at {
            if overlaps(offset, len, f, 3 * HEADER_BYTES as u64) {
                out.push(whole);
            }
        }
        if let GrainMap::Tables { gd, gd_at, .. } = &self.map {
            for (i, &s) in gd.iter().enumerate() {
                let i = i as u64;
                let entry_hit = overlaps(offset, len, gd_at + i * 4, 4);
                let table_hit = s != 0
                    && match self.gt(i) {
                        Ok(t) => {
                            t.at.is_some_and(|at| overlaps(offset, len, at, self.header.gt_bytes()))
                        }
                        Err(_) => overlaps(offset, len, u64::from(s) * 512, self.header.gt_bytes()),
                    };
                if entry_hit || table_hit {
                    out.extend(self.gt_range(i));
                }
            }
        }
        let mut grains = Vec::new();
        let lead = if self.header.compressed() {
            GRAIN_MARKER_HEAD + stream::max_compressed(self.header.grain_bytes())
        } else {
            self.header.grain_bytes()
        };
        // A table that cannot be read: its sectors were matched above.
        self.for_each_grain(
            |g, at| {
                if overlaps(offset, len, at, lead) {
                    grains.push((g, at));
                }
            },
            |_, _| {},
        );
        for (g, at) in grains {
            if overlaps(offset, len, at, self.grain_end(at) - at) {
                out.extend(self.grain_range(g));
            }
        }
        out.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, l) in out {
            match merged.last_mut() {
                Some((ms, ml)) if s <= *ms + *ml => *ml = (*ml).max(s + l - *ms),
                _ => merged.push((s, l)),
            }
        }
        Ok(merged)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
