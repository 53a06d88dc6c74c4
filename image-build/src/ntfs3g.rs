//! ntfs-3g in the initramfs: Debian's 6.1 kernel has no NTFS driver, so
//! NTFS destinations are mounted by ntfs-3g over FUSE: `/bin/ntfs-3g` from
//! Debian's `ntfs-3g` package with its loader and libraries
//! (`libntfs-3g.so.89` from `libntfs-3g89`, glibc from `libc6`), gathered
//! by [`crate::debprog`]. `/etc/mtab` links to `/proc/self/mounts`:
//! ntfs-3g reads it to see whether a volume is mounted, and its FUSE code
//! leaves a symlinked mtab alone instead of running `mount -f` to update
//! it.

use crate::debprog::{self, Added};
use crate::{CpioEntry, Error};
use std::path::Path;

/// Where the program goes in the image (Debian's path; `/sbin` links to
/// `/bin` there).
pub const PROGRAM: &str = "bin/ntfs-3g";

/// Downloads (once, into `cache`) `ntfs-3g` and the packages of what it
/// needs, and returns its entries for the initramfs with their sizes: the
/// program, its loader, its libraries, and `/etc/mtab`.
pub fn entries(cache: &Path) -> Result<(Vec<CpioEntry>, Vec<Added>), Error> {
    let (mut entries, mut added) =
        debprog::fetch_closure(cache, "ntfs-3g", &[&format!("/{PROGRAM}")])?;
    entries.push(CpioEntry::symlink("etc/mtab", "/proc/self/mounts"));
    added.push(Added {
        path: "etc/mtab".into(),
        bytes: 0,
        package: "(link to /proc/self/mounts)".into(),
    });
    Ok((entries, added))
}
