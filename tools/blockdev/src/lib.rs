//! Block devices and image files behind one read-only-by-default handle.
//!
//! Every tool in the appliance reads disks through [`BlockDevice`], so the same
//! code runs on `/dev/sdX` in the appliance and on image files in host tests.
//! Opening is read-only unless a caller asks for a [`WriteAccess`] explicitly;
//! the block layer's read-only flag (BLKROSET) is managed here too.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

mod aligned;
mod memdev;
mod ranges;
mod slice;
pub mod sys;
// Until the vmfs, mdraid and mdkernel callers move to `sys`.
pub use aligned::{AlignedBuf, DIRECT_IO_ALIGN};
pub use memdev::MemDevice;
pub use ranges::{BadAreaDevice, Ranges};
pub use slice::Slice;
pub use sys::{parse_mounts, system_disks};

/// Anything sectors can be read from: a disk, a partition, an image file, a
/// test double. Offsets and lengths are in bytes.
pub trait BlockDevice: Send + Sync {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Logical sector size: the unit of addressing (512 or 4096).
    fn logical_sector_size(&self) -> u32;
    /// Physical sector size as reported by the device (>= logical).
    fn physical_sector_size(&self) -> u32 {
        self.logical_sector_size()
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// A name for messages (a path, usually).
    fn name(&self) -> &str;
    /// Whether the device has been removed (hot-unplugged, or its
    /// controller reset it away). Linux then fails reads with EIO, the
    /// same error as a bad sector, so callers ask this after a failure.
    fn is_gone(&self) -> bool {
        false
    }

    /// Whether the bytes from `offset` on are stored (`true`) or a hole
    /// that reads as zeros (`false`), and for how many bytes: a sparse
    /// image file, a thin file inside a datastore. None when the device
    /// cannot tell (a disk): then everything counts as stored. Lets a
    /// reader skip holes without reading them.
    fn stored_at(&self, offset: u64) -> Option<(bool, u64)> {
        let _ = offset;
        None
    }

    /// Fills `buf` from `offset` or fails; a short read at the end of the
    /// device is an `UnexpectedEof` error that names the offset.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: short read at byte {} (device size {})",
                            self.name(),
                            offset + done as u64,
                            self.size()
                        ),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What kind of object a [`Device`] was opened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    BlockDevice,
    RegularFile,
}

/// Proof that the user asked for writing to exactly this target. Only the
/// front ends (CLI `--write TARGET`, the menu's typed confirmation) create it.
#[derive(Debug)]
pub struct WriteAccess {
    target: PathBuf,
}

impl WriteAccess {
    /// Records the user's confirmation for `target`. Callers must only call this
    /// after the user named the target explicitly.
    pub fn confirmed_by_user(target: impl Into<PathBuf>) -> Self {
        WriteAccess {
            target: target.into(),
        }
    }
    pub fn target(&self) -> &Path {
        &self.target
    }
}

/// A disk, partition or image file.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: String,
    kind: DeviceKind,
    size: u64,
    logical: u32,
    physical: u32,
    writable: bool,
}

/// Options for [`Device::open_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptionsRo {
    /// Bypass the page cache (O_DIRECT) on block devices: reads must then use
    /// [`AlignedBuf`]s and sector-multiple sizes and offsets.
    pub direct: bool,
}

impl Device {
    /// Opens `path` read-only (the default everywhere in the appliance).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Device> {
        Self::open_with(path, OpenOptionsRo::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptionsRo) -> io::Result<Device> {
        let path = path.as_ref();
        let mut oo = OpenOptions::new();
        oo.read(true);
        if opts.direct {
            let meta = std::fs::metadata(path).map_err(|e| annotate(path, "stat", e))?;
            if meta.file_type().is_block_device() {
                oo.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
            }
        }
        let file = oo.open(path).map_err(|e| annotate(path, "open", e))?;
        Self::from_file(file, path, false)
    }

    /// Opens `path` for writing. Requires the user's confirmation naming the
    /// same path; the block layer's read-only flag is cleared for this target
    /// alone (the appliance sets it on every disk at boot).
    pub fn open_writable(path: impl AsRef<Path>, access: &WriteAccess) -> io::Result<Device> {
        let path = path.as_ref();
        if access.target() != path {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "write to {} refused: the confirmation names {}",
                    path.display(),
                    access.target().display()
                ),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| annotate(path, "stat", e))?;
        if meta.file_type().is_block_device() {
            set_read_only(path, false)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| annotate(path, "open for writing", e))?;
        Self::from_file(file, path, true)
    }

    fn from_file(file: File, path: &Path, writable: bool) -> io::Result<Device> {
        let meta = file.metadata()?;
        let name = path.display().to_string();
        if meta.file_type().is_block_device() {
            let size = ioctl_size(&file).map_err(|e| annotate(path, "BLKGETSIZE64", e))?;
            let logical = ioctl_u32::<{ linux_raw_sys::ioctl::BLKSSZGET }>(&file).unwrap_or(512);
            let physical =
                ioctl_u32::<{ linux_raw_sys::ioctl::BLKPBSZGET }>(&file).unwrap_or(logical);
            Ok(Device {
                file,
                path: name,
                kind: DeviceKind::BlockDevice,
                size,
                logical: logical.max(512),
                physical: physical.max(logical).max(512),
                writable,
            })
        } else if meta.file_type().is_file() {
            Ok(Device {
                file,
                path: name,
                kind: DeviceKind::RegularFile,
                size: meta.len(),
                logical: 512,
                physical: 512,
                writable,
            })
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: neither a block device nor a regular file"),
            ))
        }
    }

    /// Treats an image file as having `size`-byte logical sectors (images of
    /// 4Kn disks).
    pub fn with_logical_sector_size(mut self, size: u32) -> Self {
        if self.kind == DeviceKind::RegularFile {
            self.logical = size;
            self.physical = self.physical.max(size);
        }
        self
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Writes `buf` at `offset`; only on handles opened with [`Device::open_writable`].
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: opened read-only", self.path),
            ));
        }
        self.file.write_all_at(buf, offset)
    }

    /// Flushes written data to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

impl BlockDevice for Device {
    fn size(&self) -> u64 {
        self.size
    }
    fn logical_sector_size(&self) -> u32 {
        self.logical
    }
    fn physical_sector_size(&self) -> u32 {
        self.physical
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let len = buf
            .len()
            .min((self.size - offset).min(usize::MAX as u64) as usize);
        loop {
            match self.file.read_at(&mut buf[..len], offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn name(&self) -> &str {
        &self.path
    }
    /// For a regular file, from the filesystem's own map of its holes
    /// (SEEK_DATA/SEEK_HOLE).
    fn stored_at(&self, offset: u64) -> Option<(bool, u64)> {
        if self.kind != DeviceKind::RegularFile || offset >= self.size {
            return None;
        }
        use rustix::fs::{seek, SeekFrom};
        match seek(&self.file, SeekFrom::Data(offset)) {
            Ok(data) if data > offset => Some((false, data.min(self.size) - offset)),
            Ok(_) => {
                let hole = seek(&self.file, SeekFrom::Hole(offset)).ok()?;
                Some((true, hole.min(self.size).saturating_sub(offset).max(1)))
            }
            // ENXIO: no data from here to the end.
            Err(rustix::io::Errno::NXIO) => Some((false, self.size - offset)),
            Err(_) => None,
        }
    }
    /// A removed disk's entry leaves /sys/dev/block (del_gendisk) while
    /// open descriptors stay valid and only return errors.
    fn is_gone(&self) -> bool {
        if self.kind != DeviceKind::BlockDevice {
            return false;
        }
        let sys = Path::new("/sys/dev/block");
        let Ok(meta) = self.file.metadata() else {
            return true;
        };
        use std::os::unix::fs::MetadataExt;
        let rdev = meta.rdev();
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        sys.is_dir() && !sys.join(format!("{major}:{minor}")).exists()
    }
}

fn annotate(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

fn ioctl_size(file: &File) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer Getter provides.
    let v = unsafe {
        rustix::ioctl::ioctl(
            file,
            rustix::ioctl::Getter::<{ linux_raw_sys::ioctl::BLKGETSIZE64 }, u64>::new(),
        )
    }?;
    Ok(v)
}

fn ioctl_u32<const OP: u32>(file: &File) -> io::Result<u32> {
    // SAFETY: the block-layer ioctls used with this helper write one C int.
    let v = unsafe { rustix::ioctl::ioctl(file, rustix::ioctl::Getter::<OP, u32>::new()) }?;
    Ok(v)
}

/// Sets or clears the block layer's read-only flag (BLKROSET) of a disk or
/// partition. Needs CAP_SYS_ADMIN.
pub fn set_read_only(path: impl AsRef<Path>, read_only: bool) -> io::Result<()> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| annotate(path, "open", e))?;
    let flag: i32 = read_only.into();
    // SAFETY: BLKROSET reads one C int through the pointer Setter provides.
    unsafe {
        rustix::ioctl::ioctl(
            &file,
            rustix::ioctl::Setter::<{ linux_raw_sys::ioctl::BLKROSET }, i32>::new(flag),
        )
    }
    .map_err(|e| annotate(path, "BLKROSET", e.into()))
}

/// Asks the kernel to re-read a disk's partition table (BLKRRPART), so a
/// table that was just rewritten shows without a reboot. Reads only; the
/// kernel refuses (EBUSY) while a partition of the disk is in use.
pub fn reread_partitions(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| annotate(path, "open", e))?;
    // SAFETY: BLKRRPART takes no argument and touches no user memory.
    unsafe {
        rustix::ioctl::ioctl(
            &file,
            rustix::ioctl::NoArg::<{ linux_raw_sys::ioctl::BLKRRPART }>::new(),
        )
    }
    .map_err(|e| annotate(path, "BLKRRPART", e.into()))
}

/// Reads the block layer's read-only flag (BLKROGET).
pub fn is_read_only(path: impl AsRef<Path>) -> io::Result<bool> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| annotate(path, "open", e))?;
    Ok(ioctl_u32::<{ linux_raw_sys::ioctl::BLKROGET }>(&file)
        .map_err(|e| annotate(path, "BLKROGET", e))?
        != 0)
}

/// Read-only flags turned off for a task (mounting a destination, letting
/// md write its superblocks), remembered so they can be put back. For a
/// partition the kernel also checks its disk's whole-device flag, so both
/// are given.
#[derive(Debug, Default)]
pub struct WritableWhile {
    saved: Vec<(PathBuf, bool)>,
}

impl WritableWhile {
    /// Clears the read-only flag of every device in `nodes` (duplicates
    /// once); on an error the flags already changed are put back.
    pub fn clear(nodes: &[PathBuf]) -> io::Result<WritableWhile> {
        let mut w = WritableWhile::default();
        for node in nodes {
            if w.saved.iter().any(|(p, _)| p == node) {
                continue;
            }
            let was = is_read_only(node).and_then(|was| {
                if was {
                    set_read_only(node, false)?;
                }
                Ok(was)
            });
            match was {
                Ok(was) => w.saved.push((node.clone(), was)),
                Err(e) => {
                    w.restore();
                    return Err(e);
                }
            }
        }
        Ok(w)
    }

    /// Puts the flags back as they were; returns the errors, if any.
    pub fn restore(&mut self) -> Vec<io::Error> {
        let mut errors = Vec::new();
        for (node, was) in self.saved.drain(..).rev() {
            if was {
                if let Err(e) = set_read_only(&node, true) {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_image(bytes: &[u8]) -> (testkit::TempDir, PathBuf) {
        let dir = testkit::TempDir::new("blockdev-test");
        let p = dir.join("img");
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn image_file_reads_and_reports_size() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let (_d, p) = temp_image(&data);
        let dev = Device::open(&p).unwrap();
        assert_eq!(dev.size(), 4096);
        assert_eq!(dev.kind(), DeviceKind::RegularFile);
        assert_eq!(dev.logical_sector_size(), 512);
        let mut buf = [0u8; 16];
        dev.read_exact_at(&mut buf, 1000).unwrap();
        assert_eq!(&buf[..], &data[1000..1016]);
        let err = dev.read_exact_at(&mut buf, 4090).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("4096"), "{err}");
    }

    #[test]
    fn a_sparse_file_tells_its_holes_from_its_data() {
        let (_d, p) = temp_image(&[]);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(4 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[7u8; 65536], 2 << 20).unwrap();
        f.sync_all().unwrap();
        let dev = Device::open(&p).unwrap();
        // Filesystems report holes in their own block size, so only the
        // shape is certain: a hole first, data at 2 MiB, a hole after it.
        let (stored, n) = dev.stored_at(0).expect("a regular file knows its holes");
        assert!(!stored && n > 0 && n <= 2 << 20, "{stored} {n}");
        let (stored, n) = dev.stored_at(2 << 20).unwrap();
        assert!(stored && n >= 65536, "{stored} {n}");
        let (stored, _) = dev.stored_at(3 << 20).unwrap();
        assert!(!stored);
        let window = Slice::new(std::sync::Arc::new(dev), 1 << 20, 2 << 20);
        assert_eq!(window.stored_at(1 << 20).map(|s| s.0), Some(true));
        assert_eq!(window.stored_at(5 << 20), None);
    }

    #[test]
    fn read_only_handle_refuses_writes() {
        let (_d, p) = temp_image(&[0u8; 512]);
        let dev = Device::open(&p).unwrap();
        assert!(dev.write_all_at(&[1], 0).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), vec![0u8; 512]);
    }

    #[test]
    fn write_needs_matching_confirmation() {
        let (_d, p) = temp_image(&[0u8; 512]);
        let wrong = WriteAccess::confirmed_by_user("/some/other/path");
        assert_eq!(
            Device::open_writable(&p, &wrong).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let ok = WriteAccess::confirmed_by_user(&p);
        let dev = Device::open_writable(&p, &ok).unwrap();
        dev.write_all_at(&[7, 7], 10).unwrap();
        dev.sync().unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[9..13], &[0, 7, 7, 0]);
    }

    #[test]
    fn directory_is_rejected_with_its_name() {
        let d = testkit::TempDir::new("blockdev-test");
        let err = Device::open(d.path()).unwrap_err();
        assert!(err.to_string().contains("neither a block device"), "{err}");
    }

    #[test]
    fn missing_path_names_the_path() {
        let err = Device::open("/nonexistent/disk").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/disk"), "{err}");
    }
}
