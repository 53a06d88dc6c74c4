//! A fault-injecting block device for tests and for `--simulate-bad`.
//!
//! Wraps any [`BlockDevice`] and makes chosen areas fail like a dying disk:
//! bad areas (every read touching them fails, as the kernel fails a whole
//! request), slow areas (each read touching them sleeps), and a device that
//! vanishes when a read reaches a given offset (every later read fails with
//! ENODEV, as after a hot-unplug).
//!
//! [`FaultDevice::from_test_mapfile`] has the semantics of GNU ddrescue's
//! `--test-mode=FILE`: blocks marked finished (`+`) read normally, every other
//! block type is a read error, and the apparent size is the mapfile's extent.

use blockdev::BlockDevice;
use ddmap::{Map, Status};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// See the module documentation.
pub struct FaultDevice<D: BlockDevice> {
    inner: D,
    /// Sorted, non-overlapping `[start, end)` byte ranges that fail.
    bad: Vec<(u64, u64)>,
    /// `[start, end)` ranges where each read sleeps `delay`.
    slow: Vec<(u64, u64, Duration)>,
    vanish_at: Option<u64>,
    vanished: AtomicBool,
    /// errno of reads in bad areas (EIO; NVMe gives ENODATA).
    bad_errno: i32,
    size: u64,
    name: String,
    reads: AtomicU64,
    log: Option<Mutex<Vec<(u64, usize)>>>,
}

impl<D: BlockDevice> FaultDevice<D> {
    pub fn new(inner: D) -> Self {
        let size = inner.size();
        let name = format!("fault({})", inner.name());
        FaultDevice {
            inner,
            bad: Vec::new(),
            slow: Vec::new(),
            vanish_at: None,
            vanished: AtomicBool::new(false),
            bad_errno: libc_errno::EIO,
            size,
            name,
            reads: AtomicU64::new(0),
            log: None,
        }
    }

    /// ddrescue `--test-mode` semantics: non-finished blocks of `map` fail; the
    /// device's size becomes the end of the map's last finished (`+`) block
    /// (0 if none), never more than the inner size. That is what ddrescue 1.27
    /// does: trailing non-finished blocks are outside its apparent input size
    /// (measured: map `0 0xFFC00 +`, `0xFFC00 0x400 -` on a 1 MiB file gives a
    /// 0xFFC00-byte result), while non-finished blocks before it stay errors.
    pub fn from_test_mapfile(inner: D, map: &Map) -> Self {
        let last_finished_end = map
            .extents()
            .filter(|e| e.status == Status::Finished)
            .map(|e| e.end())
            .last()
            .unwrap_or(0);
        let size = last_finished_end.min(inner.size());
        let mut d = Self::new(inner);
        d.size = size;
        for e in map.extents() {
            if e.status != Status::Finished {
                d.bad.push((e.pos, e.end()));
            }
        }
        d.normalize();
        d
    }

    /// Adds bad byte ranges `(start, len)`.
    pub fn with_bad(mut self, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        self.bad.extend(ranges.into_iter().map(|(s, l)| (s, s + l)));
        self.normalize();
        self
    }

    /// Adds bad sectors by number (in the inner device's logical sectors).
    pub fn with_bad_sectors(self, sectors: impl IntoIterator<Item = u64>) -> Self {
        let ss = u64::from(self.inner.logical_sector_size());
        self.with_bad(
            sectors
                .into_iter()
                .map(|s| (s * ss, ss))
                .collect::<Vec<_>>(),
        )
    }

    /// A slow area: every read touching `[start, start+len)` sleeps `delay`.
    pub fn with_slow(mut self, start: u64, len: u64, delay: Duration) -> Self {
        self.slow.push((start, start + len, delay));
        self
    }

    /// The device disappears when a read reaches `offset`.
    pub fn with_vanish_at(mut self, offset: u64) -> Self {
        self.vanish_at = Some(offset);
        self
    }

    /// errno returned for bad areas (default EIO).
    pub fn with_errno(mut self, errno: i32) -> Self {
        self.bad_errno = errno;
        self
    }

    /// Records `(offset, len)` of every read for inspection.
    pub fn with_log(mut self) -> Self {
        self.log = Some(Mutex::new(Vec::new()));
        self
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
    pub fn log(&self) -> Vec<(u64, usize)> {
        self.log
            .as_ref()
            .map(|l| l.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default()
    }
    pub fn bad_ranges(&self) -> &[(u64, u64)] {
        &self.bad
    }
    pub fn has_vanished(&self) -> bool {
        self.vanished.load(Ordering::Relaxed)
    }
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn normalize(&mut self) {
        self.bad.retain(|r| r.1 > r.0);
        self.bad.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.bad.len());
        for r in self.bad.drain(..) {
            match out.last_mut() {
                Some(l) if r.0 <= l.1 => l.1 = l.1.max(r.1),
                _ => out.push(r),
            }
        }
        self.bad = out;
    }

    fn touches_bad(&self, start: u64, end: u64) -> bool {
        // First range ending after `start`.
        let i = self.bad.partition_point(|r| r.1 <= start);
        self.bad.get(i).is_some_and(|r| r.0 < end)
    }
}

/// The few errno values used here (std exposes no constants).
pub mod libc_errno {
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const ENODEV: i32 = 19;
    pub const ENOSPC: i32 = 28;
    pub const ENODATA: i32 = 61;
}

impl<D: BlockDevice> BlockDevice for FaultDevice<D> {
    fn size(&self) -> u64 {
        self.size
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
    }
    fn is_gone(&self) -> bool {
        self.vanished.load(Ordering::Relaxed) || self.inner.is_gone()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = &self.log {
            if let Ok(mut v) = l.lock() {
                v.push((offset, buf.len()));
            }
        }
        // As Linux does for a removed disk: EIO, and the device is gone.
        if self.vanished.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc_errno::EIO));
        }
        if offset >= self.size {
            return Ok(0);
        }
        let len = buf
            .len()
            .min((self.size - offset).min(usize::MAX as u64) as usize);
        let end = offset + len as u64;
        if let Some(v) = self.vanish_at {
            if end > v {
                self.vanished.store(true, Ordering::Relaxed);
                return Err(io::Error::from_raw_os_error(libc_errno::EIO));
            }
        }
        for &(s, e, d) in &self.slow {
            if s < end && offset < e {
                std::thread::sleep(d);
                break;
            }
        }
        if self.touches_bad(offset, end) {
            return Err(io::Error::from_raw_os_error(self.bad_errno));
        }
        self.inner.read_at(&mut buf[..len], offset)
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    #[test]
    fn bad_slow_vanish() {
        let mem = MemDevice::new((0..8192u32).map(|i| i as u8).collect(), 512);
        let d = FaultDevice::new(mem)
            .with_bad_sectors([3, 4])
            .with_bad([(7000, 1)]);
        let mut b = [0u8; 512];
        assert_eq!(d.read_at(&mut b, 1024).unwrap(), 512);
        assert_eq!(d.read_at(&mut b, 1536).unwrap_err().raw_os_error(), Some(5));
        let mut big = [0u8; 4096];
        assert!(d.read_at(&mut big, 0).is_err());
        assert_eq!(d.read_at(&mut b, 2560).unwrap(), 512);
        assert!(d.read_at(&mut b, 6656).is_err());
        assert_eq!(d.bad_ranges(), &[(1536, 2560), (7000, 7001)]);

        let mem = MemDevice::new(vec![0; 8192], 512);
        let d = FaultDevice::new(mem).with_vanish_at(4096).with_errno(61);
        assert!(d.read_at(&mut b, 0).is_ok());
        assert!(!d.is_gone());
        // Like a removed Linux disk: EIO, and is_gone tells it from a bad sector.
        assert_eq!(d.read_at(&mut b, 4096).unwrap_err().raw_os_error(), Some(5));
        assert_eq!(d.read_at(&mut b, 0).unwrap_err().raw_os_error(), Some(5));
        assert!(d.has_vanished());
        assert!(d.is_gone());
    }

    #[test]
    fn test_mapfile_semantics() {
        let map =
            ddmap::parse("0 + 1\n0 1024 +\n1024 512 ?\n1536 512 -\n2048 1024 +\n3072 512 -\n")
                .unwrap()
                .map
                .unwrap();
        let mem = MemDevice::new(vec![1; 8192], 512);
        let d = FaultDevice::from_test_mapfile(mem, &map);
        assert_eq!(d.size(), 3072);
        let mut b = [0u8; 512];
        assert!(d.read_at(&mut b, 1024).is_err());
        assert!(d.read_at(&mut b, 1536).is_err());
        assert!(d.read_at(&mut b, 2048).is_ok());
        assert_eq!(d.read_at(&mut b, 3072).unwrap(), 0);
        let none = ddmap::parse("0 + 1\n0 1024 -\n").unwrap().map.unwrap();
        let d = FaultDevice::from_test_mapfile(MemDevice::new(vec![1; 8192], 512), &none);
        assert_eq!(d.size(), 0);
    }
}
