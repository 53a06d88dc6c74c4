//! Reader of hosted sparse ("KDMV": monolithicSparse, twoGbMaxExtentSparse) and streamOptimized extents.
//! Not written yet: opening one is an "unsupported" error that says so.

use crate::error::{Error, Result};
use crate::extent::ExtentReader;
use blockdev::BlockDevice;
use std::sync::Arc;

/// Opens the extent in `dev` (shown as `shown`) covering `size` bytes of
/// the virtual disk.
pub fn open(shown: String, dev: Arc<dyn BlockDevice>, size: u64) -> Result<Box<dyn ExtentReader>> {
    let _ = (dev, size);
    Err(Error::unsupported(
        &shown,
        "this extent format is not read yet",
    ))
}

/// The descriptor text inside a hosted sparse file (`head`: its first
/// bytes), None when `dev` is not one.
pub fn embedded_descriptor(
    dev: &Arc<dyn BlockDevice>,
    shown: &str,
    head: &[u8],
) -> Result<Option<String>> {
    let _ = (dev, shown, head);
    Ok(None)
}
