//! An in-memory block device for tests and for parsing dumps.

use crate::BlockDevice;
use std::io;

/// A byte vector seen as a disk with a chosen logical sector size.
#[derive(Clone, Debug)]
pub struct MemDevice {
    pub data: Vec<u8>,
    pub sector_size: u32,
    pub name: String,
}

impl MemDevice {
    pub fn new(data: Vec<u8>, sector_size: u32) -> MemDevice {
        MemDevice {
            data,
            sector_size,
            name: "memory".into(),
        }
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn logical_sector_size(&self) -> u32 {
        self.sector_size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = self.data.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let start = offset as usize;
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
    fn name(&self) -> &str {
        &self.name
    }
}
