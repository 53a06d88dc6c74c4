//! Bad areas: ddrescue mapfiles, a device wrapper that fails reads in them,
//! and range arithmetic for reporting which file bytes are lost.

use blockdev::BlockDevice;
use std::io;
use std::sync::Arc;

/// Byte ranges `(start, len)`, sorted and merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(pub Vec<(u64, u64)>);

impl Ranges {
    pub fn from_unsorted(mut v: Vec<(u64, u64)>) -> Ranges {
        v.retain(|r| r.1 > 0);
        v.sort();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, l) in v {
            if let Some(last) = out.last_mut() {
                if s <= last.0 + last.1 {
                    let end = (last.0 + last.1).max(s.saturating_add(l));
                    last.1 = end - last.0;
                    continue;
                }
            }
            out.push((s, l));
        }
        Ranges(out)
    }
    /// Parts of `start..start+len` inside these ranges.
    pub fn intersect(&self, start: u64, len: u64) -> Vec<(u64, u64)> {
        let end = start.saturating_add(len);
        let i = self.0.partition_point(|r| r.0 + r.1 <= start);
        let mut out = Vec::new();
        for &(s, l) in &self.0[i..] {
            if s >= end {
                break;
            }
            let a = s.max(start);
            let b = (s + l).min(end);
            if a < b {
                out.push((a, b - a));
            }
        }
        out
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|r| r.1).sum()
    }
}

/// Reads and parses the ddrescue mapfile at `path` ([`parse_mapfile`]);
/// errors name the file.
pub fn read_mapfile(path: &str) -> Result<Ranges, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading mapfile {path}: {e}"))?;
    parse_mapfile(&text).map_err(|e| format!("{path}: {e}"))
}

/// The bad areas of a GNU ddrescue mapfile (parsed by [`ddmap`], the
/// parser imaging writes and resumes with): every block whose status is not
/// `+` (finished) is bad: `-` bad sector, `*` non-trimmed, `/` non-scraped,
/// `?` non-tried. A mapfile without a status line is refused: it maps
/// nothing.
pub fn parse_mapfile(text: &str) -> Result<Ranges, String> {
    let parsed = ddmap::parse(text).map_err(|e| format!("mapfile {e}"))?;
    let map = parsed
        .map
        .ok_or_else(|| "mapfile has no status line".to_string())?;
    Ok(Ranges::from_unsorted(
        map.extents()
            .filter(|e| e.status != ddmap::Status::Finished)
            .map(|e| (e.pos, e.size))
            .collect(),
    ))
}

/// A device whose reads fail (EIO) where a mapfile marks bad areas, so
/// extraction meets them exactly as it would meet a failing disk.
pub struct BadAreaDevice {
    inner: Arc<dyn BlockDevice>,
    bad: Ranges,
}

impl BadAreaDevice {
    pub fn new(inner: Arc<dyn BlockDevice>, bad: Ranges) -> BadAreaDevice {
        BadAreaDevice { inner, bad }
    }
}

impl BlockDevice for BadAreaDevice {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if let Some(&(s, _)) = self.bad.intersect(offset, buf.len() as u64).first() {
            return Err(io::Error::other(format!(
                "{}: byte {s:#x} is in a bad area of the mapfile",
                self.inner.name()
            )));
        }
        self.inner.read_at(buf, offset)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapfile_bad_areas() {
        let m = "# Mapfile. Created by GNU ddrescue\n# current_pos  current_status  current_pass\n0x00120000     +               1\n#      pos        size  status\n0x00000000  0x00100000  +\n0x00100000  0x00000200  -\n0x00100200  0x00000400  *\n0x00100600  0x10000000  +\n0x10100600  0x00001000  ?\n";
        let r = parse_mapfile(m).unwrap();
        assert_eq!(r.0, vec![(0x100000, 0x600), (0x10100600, 0x1000)]);
        assert_eq!(r.intersect(0x1005ff, 10), vec![(0x1005ff, 1)]);
        assert!(r.intersect(0, 0x100000).is_empty());
        assert!(parse_mapfile("garbage").is_err());
        assert!(parse_mapfile("0 +\n0 10 x\n").is_err());
    }

    #[test]
    fn bad_area_device_fails_reads_there_only() {
        let m = blockdev::MemDevice::new(vec![7u8; 8192], 512);
        let d = BadAreaDevice::new(Arc::new(m), Ranges(vec![(4096, 512)]));
        let mut b = [0u8; 512];
        assert!(d.read_exact_at(&mut b, 0).is_ok());
        assert!(d.read_exact_at(&mut b, 4000).is_err());
        assert!(d.read_exact_at(&mut b, 4608).is_ok());
    }
}
