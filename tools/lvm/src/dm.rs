//! The kernel's device-mapper through its ioctls on `/dev/mapper/control`
//! (include/uapi/linux/dm-ioctl.h, interface version 4), without
//! libdevmapper: create a device, load a table read-only, resume it,
//! remove it.
//!
//! Every call passes one buffer that starts with `struct dm_ioctl` (312
//! bytes; linux-raw-sys has the ioctl numbers but not the struct, so it is
//! built here byte by byte at these offsets, native-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 12 | version[3]: 4, 0, 0 in; the kernel's out |
//! | 12 | 4 | data_size: the whole buffer, this struct included |
//! | 16 | 4 | data_start: where the payload starts (312) |
//! | 20 | 4 | target_count |
//! | 24 | 4 | open_count (out) |
//! | 28 | 4 | flags (DM_READONLY_FLAG 1, DM_SUSPEND_FLAG 2, ...) |
//! | 32 | 4 | event_nr |
//! | 36 | 4 | padding |
//! | 40 | 8 | dev: the device number, huge-encoded |
//! | 48 | 128 | name, NUL-terminated |
//! | 176 | 129 | uuid, NUL-terminated |
//! | 305 | 7 | data (padding) |
//!
//! DM_TABLE_LOAD's payload is `target_count` targets, each a
//! `struct dm_target_spec` (sector_start u64 +0, length u64 +8, status i32
//! +16, next u32 +20: bytes from this spec to the next, type char[16] +24)
//! followed by its NUL-terminated parameter string, padded to 8 bytes.
//!
//! The device is made read-only by loading its table with
//! DM_READONLY_FLAG: the kernel then opens the PVs for reading only and
//! marks the dm disk read-only when the table goes live.

use crate::plan::TableLine;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// sizeof(struct dm_ioctl).
pub const DM_IOCTL_SIZE: usize = 312;
/// sizeof(struct dm_target_spec).
pub const TARGET_SPEC_SIZE: usize = 40;
pub const DM_NAME_LEN: usize = 128;
pub const DM_UUID_LEN: usize = 129;
pub const DM_MAX_TYPE_NAME: usize = 16;
pub const DM_READONLY_FLAG: u32 = 1 << 0;
pub const DM_SUSPEND_FLAG: u32 = 1 << 1;
pub const DM_ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
pub const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
/// The interface major version this code speaks.
pub const DM_VERSION_MAJOR: u32 = 4;

const OFF_VERSION: usize = 0;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = 176;

/// Every call's buffer: room for a table of a few hundred segments.
pub const BUFFER_SIZE: usize = 64 * 1024;

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}
fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn get_str(b: &[u8], off: usize, len: usize) -> String {
    let f = &b[off..off + len];
    let end = f.iter().position(|&c| c == 0).unwrap_or(len);
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// A call's buffer: the header for device `name` (and `uuid`) with `flags`.
pub fn header(name: &str, uuid: &str, flags: u32) -> Result<Vec<u8>, String> {
    if name.len() >= DM_NAME_LEN || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "device-mapper name '{name}' is too long (at most {} bytes) or has '/' in it",
            DM_NAME_LEN - 1
        ));
    }
    if uuid.len() >= DM_UUID_LEN {
        return Err(format!("device-mapper uuid '{uuid}' is too long"));
    }
    let mut b = vec![0u8; BUFFER_SIZE];
    put_u32(&mut b, OFF_VERSION, DM_VERSION_MAJOR);
    put_u32(&mut b, OFF_DATA_SIZE, BUFFER_SIZE as u32);
    put_u32(&mut b, OFF_DATA_START, DM_IOCTL_SIZE as u32);
    put_u32(&mut b, OFF_FLAGS, flags);
    b[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
    b[OFF_UUID..OFF_UUID + uuid.len()].copy_from_slice(uuid.as_bytes());
    Ok(b)
}

/// The DM_TABLE_LOAD buffer for `name` with `lines`, read-only.
pub fn table_load(name: &str, lines: &[TableLine]) -> Result<Vec<u8>, String> {
    let mut b = header(name, "", DM_READONLY_FLAG)?;
    let mut at = DM_IOCTL_SIZE;
    for l in lines {
        if l.target.len() >= DM_MAX_TYPE_NAME {
            return Err(format!("target type '{}' is too long", l.target));
        }
        let next = (TARGET_SPEC_SIZE + l.params.len() + 1).next_multiple_of(8);
        if at + next > BUFFER_SIZE {
            return Err(format!(
                "table of {} lines does not fit in {BUFFER_SIZE} bytes",
                lines.len()
            ));
        }
        put_u64(&mut b, at, l.start);
        put_u64(&mut b, at + 8, l.length);
        put_u32(&mut b, at + 20, next as u32);
        b[at + 24..at + 24 + l.target.len()].copy_from_slice(l.target.as_bytes());
        let p = at + TARGET_SPEC_SIZE;
        b[p..p + l.params.len()].copy_from_slice(l.params.as_bytes());
        at += next;
    }
    put_u32(&mut b, OFF_TARGET_COUNT, lines.len() as u32);
    put_u32(&mut b, OFF_DATA_SIZE, at as u32);
    Ok(b)
}

/// What the kernel answered in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub version: [u32; 3],
    pub flags: u32,
    pub open_count: i32,
    pub target_count: u32,
    /// (major, minor) of the dm device.
    pub dev: (u32, u32),
    pub name: String,
    pub uuid: String,
}

/// Decodes the header of a buffer the kernel filled.
pub fn decode(b: &[u8]) -> Reply {
    Reply {
        version: [
            get_u32(b, OFF_VERSION),
            get_u32(b, OFF_VERSION + 4),
            get_u32(b, OFF_VERSION + 8),
        ],
        flags: get_u32(b, OFF_FLAGS),
        open_count: get_u32(b, OFF_OPEN_COUNT) as i32,
        target_count: get_u32(b, OFF_TARGET_COUNT),
        dev: decode_dev(get_u64(b, OFF_DEV)),
        name: get_str(b, OFF_NAME, DM_NAME_LEN),
        uuid: get_str(b, OFF_UUID, DM_UUID_LEN),
    }
}

/// The kernel's `huge_encode_dev` undone: minor's low byte in bits 0-7,
/// major in 8-19, the rest of minor from bit 20.
pub fn decode_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
    (major, minor)
}

/// An open `/dev/mapper/control`.
pub struct Control {
    file: File,
}

fn ioctl_err(what: &str, name: &str, e: rustix::io::Errno) -> io::Error {
    let e = io::Error::from(e);
    let hint = match e.raw_os_error() {
        Some(16) => " (busy: the device is open or mounted)",
        Some(6) => " (no such device-mapper device)",
        Some(17) => " (a device-mapper device of that name exists)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what} {name}: {e}{hint}"))
}

macro_rules! dm_call {
    ($file:expr, $op:ident, $buf:expr) => {{
        let buf: &mut [u8; BUFFER_SIZE] = $buf
            .as_mut_slice()
            .try_into()
            .map_err(|_| io::Error::other("device-mapper buffer of the wrong size"))?;
        // SAFETY: every dm ioctl reads and writes one `struct dm_ioctl`
        // followed by its payload, at most `data_size` bytes, which the
        // header of this BUFFER_SIZE-byte buffer never exceeds; Updater
        // passes the buffer's address and keeps it borrowed for the call.
        unsafe {
            rustix::ioctl::ioctl(
                $file,
                rustix::ioctl::Updater::<
                    { linux_raw_sys::ioctl::$op as rustix::ioctl::Opcode },
                    [u8; BUFFER_SIZE],
                >::new(buf),
            )
        }
    }};
}

impl Control {
    /// Opens `<dev>/mapper/control`; when devtmpfs did not create it, makes
    /// the node from the misc device's number in `<sys>/class/misc/device-mapper/dev`.
    pub fn open(dev: &Path, sys: &Path) -> io::Result<Control> {
        let path = dev.join("mapper/control");
        if !path.exists() {
            let number = sys.join("class/misc/device-mapper/dev");
            let text = std::fs::read_to_string(&number).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} is missing and {}: {e} (is the dm_mod module loaded?)",
                        path.display(),
                        number.display()
                    ),
                )
            })?;
            let (major, minor) = parse_devt(text.trim())
                .ok_or_else(|| io::Error::other(format!("{}: bad contents", number.display())))?;
            std::fs::create_dir_all(dev.join("mapper"))?;
            mknod(&path, rustix::fs::FileType::CharacterDevice, major, minor)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Control { file })
    }

    /// The kernel's interface version.
    pub fn version(&self) -> io::Result<[u32; 3]> {
        let mut b = header("", "", 0).map_err(io::Error::other)?;
        dm_call!(&self.file, DM_VERSION, b).map_err(|e| ioctl_err("DM_VERSION", "", e))?;
        Ok(decode(&b).version)
    }

    /// Creates device `name` (suspended, no table yet); returns (major, minor).
    pub fn create(&self, name: &str, uuid: &str) -> io::Result<(u32, u32)> {
        let mut b = header(name, uuid, DM_READONLY_FLAG).map_err(io::Error::other)?;
        dm_call!(&self.file, DM_DEV_CREATE, b).map_err(|e| ioctl_err("DM_DEV_CREATE", name, e))?;
        Ok(decode(&b).dev)
    }

    /// Loads `lines` as the inactive table of `name`, read-only.
    pub fn load(&self, name: &str, lines: &[TableLine]) -> io::Result<()> {
        let mut b = table_load(name, lines).map_err(io::Error::other)?;
        dm_call!(&self.file, DM_TABLE_LOAD, b).map_err(|e| ioctl_err("DM_TABLE_LOAD", name, e))?;
        Ok(())
    }

    /// Resumes `name`: its loaded table goes live.
    pub fn resume(&self, name: &str) -> io::Result<Reply> {
        let mut b = header(name, "", 0).map_err(io::Error::other)?;
        dm_call!(&self.file, DM_DEV_SUSPEND, b)
            .map_err(|e| ioctl_err("DM_DEV_SUSPEND (resume)", name, e))?;
        Ok(decode(&b))
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let mut b = header(name, "", 0).map_err(io::Error::other)?;
        dm_call!(&self.file, DM_DEV_REMOVE, b).map_err(|e| ioctl_err("DM_DEV_REMOVE", name, e))?;
        Ok(())
    }

    /// `name`'s state, None when there is no such device.
    pub fn status(&self, name: &str) -> io::Result<Option<Reply>> {
        let mut b = header(name, "", 0).map_err(io::Error::other)?;
        match dm_call!(&self.file, DM_DEV_STATUS, b) {
            Ok(()) => Ok(Some(decode(&b))),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(e) => Err(ioctl_err("DM_DEV_STATUS", name, e)),
        }
    }
}

/// The device-mapper calls activation makes, so its flow is tested with a
/// fake; [`Control`] is the kernel's.
pub trait Mapper {
    /// Creates device `name`; returns (major, minor).
    fn create(&self, name: &str, uuid: &str) -> io::Result<(u32, u32)>;
    /// Loads `lines` as `name`'s table, read-only.
    fn load(&self, name: &str, lines: &[TableLine]) -> io::Result<()>;
    /// Makes the loaded table live.
    fn resume(&self, name: &str) -> io::Result<Reply>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// None when there is no such device.
    fn status(&self, name: &str) -> io::Result<Option<Reply>>;
}

impl Mapper for Control {
    fn create(&self, name: &str, uuid: &str) -> io::Result<(u32, u32)> {
        Control::create(self, name, uuid)
    }
    fn load(&self, name: &str, lines: &[TableLine]) -> io::Result<()> {
        Control::load(self, name, lines)
    }
    fn resume(&self, name: &str) -> io::Result<Reply> {
        Control::resume(self, name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        Control::remove(self, name)
    }
    fn status(&self, name: &str) -> io::Result<Option<Reply>> {
        Control::status(self, name)
    }
}

/// `MAJ:MIN`.
pub fn parse_devt(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn mknod(path: &Path, kind: rustix::fs::FileType, major: u32, minor: u32) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mknod {}: {}", path.display(), io::Error::from(e)),
        )
    })
}

/// The node `/dev/mapper/NAME` for a dm device. devtmpfs makes only
/// `/dev/dm-N`; the `/dev/mapper` names are udev's work, and the appliance
/// has no udev. A block-device node (not a symlink to dm-N) is made, as
/// libdevmapper does when udev is not there: it is what `mount` and
/// `/proc/mounts` then show, and it does not dangle if dm-N is renumbered.
/// A stale node of the same name is replaced.
pub fn make_node(dev: &Path, name: &str, major: u32, minor: u32) -> io::Result<PathBuf> {
    let dir = dev.join("mapper");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_ok() {
        remove_node(dev, name)?;
    }
    mknod(&path, rustix::fs::FileType::BlockDevice, major, minor)?;
    Ok(path)
}

/// Removes `/dev/mapper/NAME` if it is a block-device node or a symlink.
pub fn remove_node(dev: &Path, name: &str) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let path = dev.join("mapper").join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_block_device() || m.file_type().is_symlink() => {
            std::fs::remove_file(&path)
        }
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a device node; left alone",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_documented_offsets() {
        let b = header("vg1-lv", "LVM-abc", DM_READONLY_FLAG).unwrap();
        assert_eq!(b.len(), BUFFER_SIZE);
        assert_eq!(get_u32(&b, 0), 4);
        assert_eq!(get_u32(&b, 12), BUFFER_SIZE as u32);
        assert_eq!(get_u32(&b, 16), 312);
        assert_eq!(get_u32(&b, 28), 1);
        assert_eq!(&b[48..54], b"vg1-lv");
        assert_eq!(b[54], 0);
        assert_eq!(&b[176..183], b"LVM-abc");
        let r = decode(&b);
        assert_eq!(r.name, "vg1-lv");
        assert_eq!(r.uuid, "LVM-abc");
        assert!(header(&"x".repeat(128), "", 0).is_err());
        assert!(header("a/b", "", 0).is_err());
        assert!(header("ok", &"u".repeat(129), 0).is_err());
    }

    #[test]
    fn table_load_lays_out_targets_8_byte_aligned() {
        let lines = vec![
            TableLine {
                start: 0,
                length: 8192,
                target: "linear".into(),
                params: "7:0 2048".into(),
            },
            TableLine {
                start: 8192,
                length: 16384,
                target: "striped".into(),
                params: "2 128 7:0 10240 7:1 2048".into(),
            },
        ];
        let b = table_load("vg-lv", &lines).unwrap();
        assert_eq!(get_u32(&b, 20), 2, "target_count");
        assert_eq!(get_u32(&b, 28), DM_READONLY_FLAG);
        let t0 = 312;
        assert_eq!(get_u64(&b, t0), 0);
        assert_eq!(get_u64(&b, t0 + 8), 8192);
        let next = get_u32(&b, t0 + 20) as usize;
        assert_eq!(next, (40 + 9usize).next_multiple_of(8));
        assert_eq!(get_str(&b, t0 + 24, 16), "linear");
        assert_eq!(get_str(&b, t0 + 40, 100), "7:0 2048");
        let t1 = t0 + next;
        assert_eq!(get_u64(&b, t1), 8192);
        assert_eq!(get_u64(&b, t1 + 8), 16384);
        assert_eq!(get_str(&b, t1 + 24, 16), "striped");
        assert_eq!(get_str(&b, t1 + 40, 100), "2 128 7:0 10240 7:1 2048");
        let end = t1 + get_u32(&b, t1 + 20) as usize;
        assert_eq!(
            get_u32(&b, 12) as usize,
            end,
            "data_size ends after the last target"
        );
        assert_eq!(end % 8, 0);
    }

    #[test]
    fn device_numbers_decode_like_the_kernel_encodes() {
        // huge_encode_dev(MKDEV(253, 0)) and (253, 300), (259, 1048575).
        let enc = |ma: u64, mi: u64| (mi & 0xff) | (ma << 8) | ((mi & !0xff) << 12);
        assert_eq!(decode_dev(enc(253, 0)), (253, 0));
        assert_eq!(decode_dev(enc(253, 300)), (253, 300));
        assert_eq!(decode_dev(enc(259, 1_048_575)), (259, 1_048_575));
        assert_eq!(parse_devt("10:236"), Some((10, 236)));
        assert_eq!(parse_devt("x"), None);
    }
}
