//! One extent of one level: the part of a VM disk's virtual bytes that one
//! extent line of a descriptor covers, and the reader of its format.
//!
//! Every format answers the same questions through [`ExtentReader`]: what
//! holds the bytes from a virtual offset on ([`ExtentReader::map`]: stored
//! in the file, compressed, zero, or not in this level), reading them, and
//! the reverse question that the bad-sector work needs: which virtual bytes
//! depend on a range of the file ([`ExtentReader::dependents`]).

use crate::error::{Error, Result};
use blockdev::BlockDevice;
use std::sync::Arc;

/// What one extent holds from an offset on, for `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub len: u64,
    pub held: Held,
}

/// How a run's bytes are held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// As they are, at byte `offset` of the extent's file.
    Stored { offset: u64 },
    /// Deflated (streamOptimized): in the grain whose marker is at byte
    /// `offset` of the file; the run starts `skip` bytes into the grain's
    /// inflated data.
    Compressed { offset: u64, skip: u64 },
    /// Reads as zeros: a zero grain, an unmapped grain, a `ZERO` extent.
    Zero,
    /// Not in this level: the parent's bytes show through (zeros at the
    /// base).
    Unallocated,
}

/// A reader of one extent's format.
pub trait ExtentReader: Send + Sync {
    /// The format, as `vmdk info` names it: "flat", "hosted sparse",
    /// "streamOptimized", "COWD", "SESparse", "zero".
    fn format(&self) -> &'static str;

    /// Bytes of the virtual disk this extent covers.
    fn size(&self) -> u64;

    /// The extent's file as shown in messages (None for a `ZERO` extent).
    fn file(&self) -> Option<&str>;

    /// What holds the bytes from `offset` (below [`size`](Self::size)) on.
    /// The run is at least one byte and ends at a grain or extent boundary
    /// at the latest, never past `size`.
    fn map(&self, offset: u64) -> Result<Run>;

    /// Fills `buf` with the bytes of `run` (a [`Held::Stored`] or
    /// [`Held::Compressed`] run that `map` gave) from `within` bytes into
    /// it on.
    fn read(&self, run: &Run, within: u64, buf: &mut [u8]) -> Result<()>;

    /// Bytes of data this extent stores (allocated grains; a flat extent's
    /// whole length).
    fn allocated(&self) -> Result<u64>;

    /// The virtual ranges `(offset, len)` of this extent whose bytes depend
    /// on `len` bytes at byte `offset` of its file: the data stored there,
    /// and every grain that a grain directory or table there maps (when a
    /// table is unreadable, all it covers is suspect).
    fn dependents(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>>;

    /// What the reader noticed: a redundant grain directory used, a dirty
    /// journal ignored, a missing footer. Empty when all is well.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Reads exactly `buf.len()` bytes at `offset` of `dev`, with errors that
/// name the file and what was read.
pub fn read_exact(
    dev: &dyn BlockDevice,
    file: &str,
    what: &str,
    buf: &mut [u8],
    offset: u64,
) -> Result<()> {
    dev.read_exact_at(buf, offset)
        .map_err(|e| Error::io(file, format!("{what} at byte {offset}"), e))
}

/// A `FLAT` or `VMFS` extent: the virtual bytes are the file's bytes from
/// `offset` on. Past the end of a short file reads as zeros (a thin file
/// on some filesystems, a truncated copy), with a note.
pub struct FlatExtent {
    file: String,
    dev: Arc<dyn BlockDevice>,
    /// Byte offset of the extent's first byte in the file.
    offset: u64,
    len: u64,
}

impl FlatExtent {
    pub fn new(file: String, dev: Arc<dyn BlockDevice>, offset: u64, len: u64) -> FlatExtent {
        FlatExtent {
            file,
            dev,
            offset,
            len,
        }
    }

    /// Bytes of the extent the file holds.
    fn stored(&self) -> u64 {
        self.dev.size().saturating_sub(self.offset).min(self.len)
    }
}

impl ExtentReader for FlatExtent {
    fn format(&self) -> &'static str {
        "flat"
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn file(&self) -> Option<&str> {
        Some(&self.file)
    }
    fn map(&self, offset: u64) -> Result<Run> {
        let stored = self.stored();
        Ok(if offset < stored {
            let len = stored - offset;
            // A hole of a sparse or thin file: zeros, not read.
            match self.dev.stored_at(self.offset + offset) {
                Some((false, n)) if n > 0 => Run {
                    len: n.min(len),
                    held: Held::Zero,
                },
                Some((true, n)) if n > 0 => Run {
                    len: n.min(len),
                    held: Held::Stored {
                        offset: self.offset + offset,
                    },
                },
                _ => Run {
                    len,
                    held: Held::Stored {
                        offset: self.offset + offset,
                    },
                },
            }
        } else {
            Run {
                len: self.len - offset,
                held: Held::Zero,
            }
        })
    }
    fn read(&self, run: &Run, within: u64, buf: &mut [u8]) -> Result<()> {
        match run.held {
            Held::Stored { offset } => {
                read_exact(self.dev.as_ref(), &self.file, "data", buf, offset + within)
            }
            _ => Err(Error::corrupt(
                &self.file,
                0,
                "flat extent asked to read a run it does not store",
            )),
        }
    }
    /// The file's bytes in the extent, holes of a sparse or thin file
    /// not counted.
    fn allocated(&self) -> Result<u64> {
        let stored = self.stored();
        let mut at = 0;
        let mut total = 0;
        while at < stored {
            match self.dev.stored_at(self.offset + at) {
                Some((data, n)) if n > 0 => {
                    let n = n.min(stored - at);
                    if data {
                        total += n;
                    }
                    at += n;
                }
                _ => return Ok(total + (stored - at)),
            }
        }
        Ok(total)
    }
    fn dependents(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let start = offset.max(self.offset);
        let end = offset.saturating_add(len).min(self.offset + self.stored());
        Ok(if start < end {
            vec![(start - self.offset, end - start)]
        } else {
            Vec::new()
        })
    }
    fn notes(&self) -> Vec<String> {
        let stored = self.stored();
        if stored < self.len {
            vec![format!(
                "{}: the file holds {} of the extent's {} bytes; the rest reads as zeros",
                self.file, stored, self.len
            )]
        } else {
            Vec::new()
        }
    }
}

/// A `ZERO` extent.
pub struct ZeroExtent {
    pub len: u64,
}

impl ExtentReader for ZeroExtent {
    fn format(&self) -> &'static str {
        "zero"
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn file(&self) -> Option<&str> {
        None
    }
    fn map(&self, offset: u64) -> Result<Run> {
        Ok(Run {
            len: self.len - offset,
            held: Held::Zero,
        })
    }
    fn read(&self, _: &Run, _: u64, _: &mut [u8]) -> Result<()> {
        Err(Error::corrupt(
            "ZERO extent",
            0,
            "nothing is stored to read",
        ))
    }
    fn allocated(&self) -> Result<u64> {
        Ok(0)
    }
    fn dependents(&self, _: u64, _: u64) -> Result<Vec<(u64, u64)>> {
        Ok(Vec::new())
    }
}

/// A raw device mapping (`VMFSRDM`/`VMFSRAW`): the disk's data is on a LUN,
/// not in any file. The level opens, so `info` can say what it maps;
/// reading it is an error that says which LUN to image.
pub struct RawDeviceMapExtent {
    /// The mapping file as shown.
    pub mapping: String,
    /// The LUN, when the source could tell.
    pub lun: Option<String>,
    pub len: u64,
}

impl RawDeviceMapExtent {
    /// What to do instead of reading.
    pub fn explain(&self) -> String {
        format!(
            "a raw device mapping ({}): the data is on {}, not in a file; image that LUN instead",
            self.mapping,
            self.lun
                .as_deref()
                .map(|l| format!("the LUN {l}"))
                .unwrap_or_else(|| "the LUN it maps".to_string())
        )
    }
}

impl ExtentReader for RawDeviceMapExtent {
    fn format(&self) -> &'static str {
        "raw device map"
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn file(&self) -> Option<&str> {
        Some(&self.mapping)
    }
    fn map(&self, _: u64) -> Result<Run> {
        Err(Error::RawDeviceMap {
            descriptor: self.mapping.clone(),
            explanation: self.explain(),
        })
    }
    fn read(&self, _: &Run, _: u64, _: &mut [u8]) -> Result<()> {
        Err(Error::RawDeviceMap {
            descriptor: self.mapping.clone(),
            explanation: self.explain(),
        })
    }
    fn allocated(&self) -> Result<u64> {
        Ok(0)
    }
    fn dependents(&self, _: u64, _: u64) -> Result<Vec<(u64, u64)>> {
        Ok(Vec::new())
    }
    fn notes(&self) -> Vec<String> {
        vec![self.explain()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    #[test]
    fn a_flat_extent_maps_its_file_and_zeros_past_a_short_file() {
        let data: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let dev = Arc::new(MemDevice::new(data.clone(), 512));
        let x = FlatExtent::new("f.vmdk".into(), dev, 1024, 8192);
        let run = x.map(100).unwrap();
        assert_eq!(
            run,
            Run {
                len: 2972,
                held: Held::Stored { offset: 1124 }
            }
        );
        let mut buf = [0u8; 4];
        x.read(&run, 2, &mut buf).unwrap();
        assert_eq!(buf, data[1126..1130]);
        assert_eq!(
            x.map(3072).unwrap(),
            Run {
                len: 5120,
                held: Held::Zero
            }
        );
        assert_eq!(x.allocated().unwrap(), 3072);
        assert_eq!(x.dependents(0, 1100).unwrap(), vec![(0, 76)]);
        assert!(x.dependents(0, 1000).unwrap().is_empty());
        assert_eq!(x.notes().len(), 1);
    }
}
