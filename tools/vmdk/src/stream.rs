//! The streamOptimized side of hosted sparse files: markers, the footer
//! that holds the real header when the grain directory is written last,
//! deflated grains, and rebuilding the grain map from the grain markers
//! when the footer is gone (a truncated download).
//!
//! A marker is a sector: `u64 val, u32 size, u32 type`, zero-padded. A
//! grain marker has `size` > 0: `val` is the grain's first virtual sector
//! and `size` bytes of zlib data follow the 12-byte head directly (padded
//! to a sector). A metadata marker has `size` 0 and a type: 0 end of
//! stream, 1 grain table, 2 grain directory, 3 footer; `val` is how many
//! sectors of metadata follow it. Sources: VMware's "Virtual Disk Format
//! 5.0" technote; QEMU's block/vmdk.c.

use crate::error::{Error, Result};
use crate::extent::read_exact;
use crate::sparse::{Header, HEADER_BYTES};
use blockdev::BlockDevice;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Marker types (metadata markers, `size` 0).
pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;

/// Bytes of a grain marker's head before the deflated data.
pub const GRAIN_MARKER_HEAD: u64 = 12;

/// One marker as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub val: u64,
    pub size: u32,
    pub kind: u32,
}

impl Marker {
    /// Parses the 16 bytes at the start of `b` (shorter: None).
    pub fn parse(b: &[u8]) -> Option<Marker> {
        let f = le::Fields::new(b, "marker");
        Some(Marker {
            val: f.u64(0).ok()?,
            size: f.u32(8).ok()?,
            kind: f.u32(12).ok()?,
        })
    }
}

/// The header copy in the footer at the end of `dev`: footer marker, the
/// header, end-of-stream marker (1536 bytes). None when they are not there.
pub fn read_footer(dev: &dyn BlockDevice, file: &str) -> Result<Option<Header>> {
    let size = dev.size();
    if size < 4 * HEADER_BYTES as u64 {
        return Ok(None);
    }
    let at = size - 3 * HEADER_BYTES as u64;
    let mut b = vec![0u8; 3 * HEADER_BYTES];
    read_exact(dev, file, "the footer", &mut b, at)?;
    let Some(m) = Marker::parse(&b) else {
        return Ok(None);
    };
    if m.size != 0 || m.kind != MARKER_FOOTER {
        return Ok(None);
    }
    let h = &b[HEADER_BYTES..2 * HEADER_BYTES];
    if &h[..4] != crate::sparse::MAGIC {
        return Ok(None);
    }
    let header = Header::parse(h, file, at + HEADER_BYTES as u64)?;
    if header.gd_offset == crate::sparse::GD_AT_END {
        return Ok(None);
    }
    Ok(Some(header))
}

/// What a scan of the grain markers found: each grain's index and the byte
/// offset of its marker (sorted by grain; a grain written twice: the last),
/// and why the scan stopped where it did.
pub struct Scan {
    pub grains: Vec<(u64, u64)>,
    pub ended: String,
}

/// Walks the markers from byte `from` to the end of the stream or the
/// file, collecting grain markers (an LBA each) into a grain map.
pub fn scan_markers(dev: &dyn BlockDevice, file: &str, header: &Header, from: u64) -> Scan {
    let size = dev.size();
    let grain_sectors = header.grain_size;
    let max_cmp = max_compressed(header.grain_bytes());
    let mut grains = Vec::new();
    let mut at = from.div_ceil(512) * 512;
    let mut b = [0u8; 16];
    let ended = loop {
        if at + 16 > size {
            break format!("the file ends at byte {size} without an end-of-stream marker");
        }
        if let Err(e) = read_exact(dev, file, "a marker", &mut b, at) {
            break format!("stopped at an unreadable marker: {e}");
        }
        let Some(m) = Marker::parse(&b) else {
            break format!("stopped at byte {at}");
        };
        if m.size > 0 {
            let lba = m.val;
            if u64::from(m.size) > max_cmp || at + GRAIN_MARKER_HEAD + u64::from(m.size) > size {
                break format!(
                    "stopped at byte {at}: a grain marker of {} bytes does not fit",
                    m.size
                );
            }
            if lba % grain_sectors != 0 || lba >= header.capacity {
                break format!("stopped at byte {at}: a grain marker for sector {lba} is not a grain of this disk");
            }
            grains.push((lba / grain_sectors, at));
            at += (GRAIN_MARKER_HEAD + u64::from(m.size)).div_ceil(512) * 512;
            continue;
        }
        match m.kind {
            MARKER_EOS => break format!("end-of-stream marker at byte {at}"),
            MARKER_GT | MARKER_GD | MARKER_FOOTER => {
                let skip = if m.kind == MARKER_FOOTER { 1 } else { m.val };
                match skip
                    .checked_add(1)
                    .and_then(|s| s.checked_mul(512))
                    .and_then(|s| s.checked_add(at))
                {
                    Some(next) if next <= size => at = next,
                    _ => {
                        break format!("stopped at byte {at}: a metadata marker runs past the end")
                    }
                }
            }
            other => break format!("stopped at byte {at}: unknown marker type {other}"),
        }
    };
    // Later copies of a grain win: sort stably by grain, keep the last.
    grains.sort_by_key(|&(g, _)| g);
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(grains.len());
    for g in grains {
        match out.last_mut() {
            Some(last) if last.0 == g.0 => *last = g,
            _ => out.push(g),
        }
    }
    Scan { grains: out, ended }
}

/// The most deflated bytes a grain of `grain` bytes may take: incompressible
/// data grows a little; far more is a corrupt size field.
pub fn max_compressed(grain: u64) -> u64 {
    grain * 2 + 4096
}

/// Inflated grains, the last few, by the byte offset they are stored at.
pub struct GrainCache {
    grains: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
    max_bytes: usize,
}

impl GrainCache {
    /// A cache of `max_bytes` (at least one grain is always kept).
    pub fn new(max_bytes: usize) -> GrainCache {
        GrainCache {
            grains: Mutex::new(VecDeque::new()),
            max_bytes,
        }
    }

    pub fn get(&self, at: u64) -> Option<Arc<Vec<u8>>> {
        let mut g = self.grains.lock().unwrap_or_else(|e| e.into_inner());
        let i = g.iter().position(|(o, _)| *o == at)?;
        let hit = g.remove(i)?;
        let data = hit.1.clone();
        g.push_front(hit);
        Some(data)
    }

    pub fn put(&self, at: u64, data: Arc<Vec<u8>>) {
        let mut g = self.grains.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|(o, _)| *o != at);
        g.push_front((at, data));
        let mut total = 0usize;
        let mut keep = 0usize;
        for (_, d) in g.iter() {
            if keep > 0 && total + d.len() > self.max_bytes {
                break;
            }
            total += d.len();
            keep += 1;
        }
        g.truncate(keep);
    }
}

/// Inflates `data` (zlib, or a bare deflate stream) into `grain` bytes: a
/// shorter result is padded with zeros (the last grain of a disk), a longer
/// one cut at the grain. The error says what went wrong.
pub fn inflate(data: &[u8], grain: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0u8; grain];
    inflate_into(data, &mut out)?;
    Ok(out)
}

/// [`inflate`] into `out` (the grain's size), overwriting all of it.
pub fn inflate_into(data: &[u8], out: &mut [u8]) -> std::result::Result<(), String> {
    match inflate_with(data, out, true) {
        Ok(()) => Ok(()),
        Err(zlib) => inflate_with(data, out, false).map_err(|_| zlib),
    }
}

thread_local! {
    /// One inflater per thread, reset for each grain: its state is tens of
    /// KiB, and allocating it per grain costs more than the inflating.
    static INFLATER: std::cell::RefCell<Option<flate2::Decompress>> =
        const { std::cell::RefCell::new(None) };
    /// The compressed bytes of the grain being read, reused likewise.
    static COMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn inflate_with(data: &[u8], out: &mut [u8], zlib: bool) -> std::result::Result<(), String> {
    use flate2::{Decompress, FlushDecompress, Status};
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = slot.get_or_insert_with(|| Decompress::new(zlib));
        d.reset(zlib);
        let status = d
            .decompress(data, out, FlushDecompress::Finish)
            .map_err(|e| e.to_string())?;
        let n = d.total_out() as usize;
        match status {
            Status::StreamEnd => {}
            _ if n == out.len() => {}
            _ => {
                return Err(format!(
                    "the deflate data ends after {} of {} bytes",
                    n,
                    data.len()
                ))
            }
        }
        out[n..].fill(0);
        Ok(())
    })
}

/// Reads and inflates the grain stored at byte `at` of `dev` (`markers`:
/// behind a grain marker, whose LBA names the grain in errors).
pub fn read_grain(
    dev: &dyn BlockDevice,
    file: &str,
    at: u64,
    markers: bool,
    grain: u64,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; grain as usize];
    read_grain_into(dev, file, at, markers, &mut out)?;
    Ok(out)
}

/// [`read_grain`] into `out` (the grain's size).
pub fn read_grain_into(
    dev: &dyn BlockDevice,
    file: &str,
    at: u64,
    markers: bool,
    out: &mut [u8],
) -> Result<()> {
    let grain = out.len() as u64;
    let size = dev.size();
    let max = max_compressed(grain);
    let (data_at, len, lba) = if markers {
        let mut b = [0u8; 12];
        read_exact(dev, file, "a grain marker", &mut b, at)?;
        let f = le::Fields::new(&b, "grain marker");
        let lba = f.u64(0).map_err(Error::field(file, at))?;
        let n = u64::from(f.u32(8).map_err(Error::field(file, at))?);
        if n == 0 || n > max || at + GRAIN_MARKER_HEAD + n > size {
            return Err(Error::corrupt(
                file,
                at,
                format!(
                    "the grain at virtual byte {} has a marker giving {n} deflated bytes \
                     ({} bytes of file left)",
                    lba.saturating_mul(512),
                    size.saturating_sub(at + GRAIN_MARKER_HEAD)
                ),
            ));
        }
        (at + GRAIN_MARKER_HEAD, n, Some(lba))
    } else {
        (at, max.min(size.saturating_sub(at)), None)
    };
    COMPRESSED.with(|cell| {
        let mut data = cell.borrow_mut();
        data.resize(len as usize, 0);
        read_exact(dev, file, "a compressed grain", &mut data, data_at)?;
        inflate_into(&data, out).map_err(|e| {
            let what = match lba {
                Some(l) => format!("the grain at virtual byte {}", l.saturating_mul(512)),
                None => format!("the grain stored at byte {at}"),
            };
            Error::corrupt(file, data_at, format!("{what} does not inflate: {e}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflate_pads_short_grains_and_rejects_garbage() {
        let z = deflate(&[7u8; 1000]);
        let g = inflate(&z, 4096).unwrap();
        assert!(g[..1000].iter().all(|&b| b == 7) && g[1000..].iter().all(|&b| b == 0));
        let mut bad = z.clone();
        bad[2] = 0xff;
        assert!(inflate(&bad, 4096).is_err());
        assert!(inflate(&z[..z.len() / 2], 4096).is_err());
    }

    #[test]
    fn the_cache_keeps_the_most_recent_within_its_budget() {
        let c = GrainCache::new(2048);
        for i in 0..5u64 {
            c.put(i, Arc::new(vec![i as u8; 1024]));
        }
        assert!(c.get(4).is_some() && c.get(3).is_some());
        assert!(c.get(2).is_none());
        let big = GrainCache::new(10);
        big.put(9, Arc::new(vec![0; 100]));
        assert!(
            big.get(9).is_some(),
            "one grain is kept whatever the budget"
        );
    }
}
