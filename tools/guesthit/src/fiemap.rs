//! Where a file's bytes lie on its filesystem's device: the FIEMAP ioctl
//! (`FS_IOC_FIEMAP`, Documentation/filesystems/fiemap.rst) and, where a
//! filesystem does not support it (ntfs-3g's fuseblk, exFAT), FIBMAP one
//! block at a time (needs CAP_SYS_RAWIO; root has it), which is much
//! slower.
//!
//! `struct fiemap` (include/uapi/linux/fiemap.h), native endian, 32 bytes,
//! followed by `fm_extent_count` extents:
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `u64 fm_start` | first logical byte asked for |
//! | 8 | `u64 fm_length` | bytes asked for |
//! | 16 | `u32 fm_flags` | in: `FIEMAP_FLAG_*`; out: the ones not supported |
//! | 20 | `u32 fm_mapped_extents` | out: extents filled in |
//! | 24 | `u32 fm_extent_count` | in: room for this many extents |
//! | 28 | `u32 fm_reserved` | |
//!
//! `struct fiemap_extent`, 56 bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 fe_logical` (byte in the file) |
//! | 8 | `u64 fe_physical` (byte on the device; btrfs: its logical address) |
//! | 16 | `u64 fe_length` |
//! | 24 | `u64 fe_reserved64[2]` |
//! | 40 | `u32 fe_flags` (`FIEMAP_EXTENT_*`) |
//! | 44 | `u32 fe_reserved[3]` |

use linux_raw_sys::ioctl as k;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use linux_raw_sys::ioctl::{
    FIEMAP_EXTENT_DATA_INLINE, FIEMAP_EXTENT_DELALLOC, FIEMAP_EXTENT_ENCODED, FIEMAP_EXTENT_LAST,
    FIEMAP_EXTENT_UNKNOWN, FIEMAP_EXTENT_UNWRITTEN,
};

const HEADER: usize = 32;
const EXTENT: usize = 56;
/// Extents asked for per call.
const BATCH: usize = 128;

/// One extent as FIEMAP reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

impl Extent {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

/// A buffer for one FIEMAP call, 8-byte aligned (`Vec<u64>`).
struct Buf(Vec<u64>);

impl Buf {
    fn new() -> Buf {
        Buf(vec![0; (HEADER + EXTENT * BATCH) / 8])
    }
    fn word(&self, byte: usize) -> u64 {
        self.0[byte / 8]
    }
    /// The u32 at `byte` (a multiple of 4), in native byte order.
    fn half(&self, byte: usize) -> u32 {
        let b = self.0[byte / 8].to_ne_bytes();
        let i = byte % 8;
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }
    fn set_word(&mut self, byte: usize, v: u64) {
        self.0[byte / 8] = v;
    }
    fn set_half(&mut self, byte: usize, v: u32) {
        let mut b = self.0[byte / 8].to_ne_bytes();
        let i = byte % 8;
        b[i..i + 4].copy_from_slice(&v.to_ne_bytes());
        self.0[byte / 8] = u64::from_ne_bytes(b);
    }
}

/// Every extent of the open file `fd`, asking again from after the last
/// one until an extent flagged `FIEMAP_EXTENT_LAST` (or none) comes back.
/// An error of `ENOTSUP`/`ENOTTY`/`EOPNOTSUPP` means the filesystem has no
/// FIEMAP: use [`fibmap_extents`].
pub fn extents(fd: BorrowedFd<'_>) -> io::Result<Vec<Extent>> {
    let mut out: Vec<Extent> = Vec::new();
    let mut buf = Buf::new();
    let mut start = 0u64;
    loop {
        buf.0.fill(0);
        buf.set_word(0, start);
        buf.set_word(8, u64::MAX - start);
        buf.set_half(16, 0);
        buf.set_half(24, BATCH as u32);
        // SAFETY: the buffer is a live, 8-byte aligned allocation of
        // HEADER + EXTENT * BATCH bytes, the size of a struct fiemap with
        // room for fm_extent_count = BATCH extents, which is all the kernel
        // writes; it outlives the call.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                k::FS_IOC_FIEMAP as _,
                buf.0.as_mut_ptr().cast::<libc::c_void>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mapped = (buf.half(20) as usize).min(BATCH);
        if mapped == 0 {
            return Ok(out);
        }
        let mut last = false;
        for i in 0..mapped {
            let at = HEADER + i * EXTENT;
            let e = Extent {
                logical: buf.word(at),
                physical: buf.word(at + 8),
                length: buf.word(at + 16),
                flags: buf.half(at + 40),
            };
            last |= e.has(FIEMAP_EXTENT_LAST);
            out.push(e);
        }
        let end = out
            .last()
            .map(|e| e.logical.saturating_add(e.length))
            .unwrap_or(start);
        if last || end <= start || end == u64::MAX {
            return Ok(out);
        }
        start = end;
    }
}

/// Whether an error from [`extents`] means "no FIEMAP here".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::ENOSYS) | Some(libc::EINVAL)
    )
}

/// The filesystem's block size for FIBMAP (`FIGETBSZ`).
pub fn block_size(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: FIGETBSZ writes one int through the pointer, which points at
    // a live local int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), k::FIGETBSZ as _, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if v <= 0 {
        return Err(io::Error::other(format!("FIGETBSZ gave block size {v}")));
    }
    Ok(v as u32)
}

/// The device block holding file block `block` (0: a hole, or data
/// stored elsewhere such as NTFS's resident data).
pub fn fibmap(fd: BorrowedFd<'_>, block: u32) -> io::Result<u32> {
    let mut v: libc::c_int = block as libc::c_int;
    // SAFETY: FIBMAP reads and writes one int through the pointer, which
    // points at a live local int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), k::FIBMAP as _, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u32)
}

/// A file's extents through FIBMAP, one call per block of its `size`
/// bytes, adjacent blocks merged; holes are left out.
pub fn fibmap_extents(fd: BorrowedFd<'_>, size: u64) -> io::Result<Vec<Extent>> {
    let bs = u64::from(block_size(fd)?);
    let blocks = size.div_ceil(bs);
    if blocks > u64::from(u32::MAX) {
        return Err(io::Error::other(format!(
            "{blocks} blocks: more than FIBMAP can address"
        )));
    }
    let mut out: Vec<Extent> = Vec::new();
    for b in 0..blocks {
        let p = fibmap(fd, b as u32)?;
        if p == 0 {
            continue;
        }
        let (logical, physical) = (b * bs, u64::from(p) * bs);
        match out.last_mut() {
            Some(e) if e.logical + e.length == logical && e.physical + e.length == physical => {
                e.length += bs
            }
            _ => out.push(Extent {
                logical,
                physical,
                length: bs,
                flags: 0,
            }),
        }
    }
    if let Some(e) = out.last_mut() {
        e.flags |= FIEMAP_EXTENT_LAST;
    }
    Ok(out)
}
