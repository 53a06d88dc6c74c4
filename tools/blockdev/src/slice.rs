//! A window of another device: a partition of a disk, a partition inside
//! a VM's virtual disk.

use crate::BlockDevice;
use std::sync::Arc;

/// `len` bytes of `inner` from byte `offset` on, as a device of its own;
/// clamped to the end of `inner`.
pub struct Slice {
    inner: Arc<dyn BlockDevice>,
    offset: u64,
    len: u64,
    name: String,
}

impl Slice {
    pub fn new(inner: Arc<dyn BlockDevice>, offset: u64, len: u64) -> Slice {
        let len = len.min(inner.size().saturating_sub(offset));
        let name = if offset == 0 {
            inner.name().to_string()
        } else {
            format!("{}@{offset:#x}", inner.name())
        };
        Slice {
            inner,
            offset,
            len,
            name,
        }
    }
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl BlockDevice for Slice {
    fn size(&self) -> u64 {
        self.len
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        self.inner.read_at(&mut buf[..n], self.offset + offset)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn stored_at(&self, offset: u64) -> Option<(bool, u64)> {
        if offset >= self.len {
            return None;
        }
        let (stored, n) = self.inner.stored_at(self.offset + offset)?;
        Some((stored, n.min(self.len - offset)))
    }
}
