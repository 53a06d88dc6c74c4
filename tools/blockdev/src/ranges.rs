//! Bad areas of a device: byte ranges (sorted, merged) and a device whose
//! reads fail in them as on a failing disk, for reading an image through
//! the bad areas its ddrescue mapfile records.

use crate::BlockDevice;
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
