//! A VM disk as a block device, so that everything that reads disks (the
//! GPT and MBR readers, filesystem and md signatures, imaging) reads the
//! virtual disk the same way, through its snapshot chain.

use crate::chain::VirtualDisk;
use blockdev::BlockDevice;
use std::sync::Arc;

/// The virtual disk as of level `top` (and the levels under it).
pub struct DiskDevice {
    disk: Arc<VirtualDisk>,
    top: usize,
    name: String,
}

impl DiskDevice {
    pub fn new(disk: Arc<VirtualDisk>, top: usize, name: String) -> DiskDevice {
        DiskDevice { disk, top, name }
    }
}

impl BlockDevice for DiskDevice {
    fn size(&self) -> u64 {
        self.disk.capacity()
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - offset) as usize;
        self.disk
            .read_at(self.top, &mut buf[..n], offset)
            .map_err(|e| match e {
                // The medium's own error kind, so callers can tell it apart.
                crate::Error::Io { source, .. } => {
                    std::io::Error::new(source.kind(), format!("{}: {source}", self.name))
                }
                e => std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
        Ok(n)
    }
    fn name(&self) -> &str {
        &self.name
    }
}
