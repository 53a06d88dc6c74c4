//! The kernel's NBD client driven by ioctls on `/dev/nbdN`
//! (`include/uapi/linux/nbd.h`; every request is `_IO(0xab, n)` with the
//! argument passed as an unsigned long).
//!
//! The sequence for a device fed over a socket: block size, size in
//! blocks, transmission flags (read-only), timeout 0, the socket, then
//! `NBD_DO_IT`, which blocks until the connection ends, so it runs on its
//! own thread. `NBD_DISCONNECT` from another process sends the server
//! `NBD_CMD_DISC` and makes `NBD_DO_IT` return.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const NBD_SET_SOCK: u32 = 0xab00;
const NBD_SET_BLKSIZE: u32 = 0xab01;
const NBD_DO_IT: u32 = 0xab03;
const NBD_CLEAR_SOCK: u32 = 0xab04;
const NBD_SET_SIZE_BLOCKS: u32 = 0xab07;
const NBD_DISCONNECT: u32 = 0xab08;
const NBD_SET_TIMEOUT: u32 = 0xab09;
const NBD_SET_FLAGS: u32 = 0xab0a;

/// `NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY`: the kernel marks the disk
/// read-only (`set_disk_ro`) and sends no writes.
const FLAGS_READ_ONLY: usize = (1 << 0) | (1 << 1);

fn ioctl_arg<const OP: u32>(file: &File, what: &str, arg: usize) -> io::Result<()> {
    // SAFETY: the NBD ioctls used here take their argument by value (an
    // integer or a file descriptor number) and touch no user memory.
    unsafe { rustix::ioctl::ioctl(file, rustix::ioctl::IntegerSetter::<OP>::new_usize(arg)) }
        .map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{what}: {e}"))
        })
}

/// The NBD slots the kernel has (`/sys/block/nbdN`), by number.
pub fn slots(sys: &Path) -> Vec<String> {
    let mut names: Vec<(u32, String)> = std::fs::read_dir(sys.join("block"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let num = n.strip_prefix("nbd")?.parse().ok()?;
            Some((num, n))
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

/// Whether slot `name` is connected: the kernel shows a `pid` file while
/// a process is in `NBD_DO_IT`, and a size once one was set.
pub fn is_connected(sys: &Path, name: &str) -> bool {
    let dir = sys.join("block").join(name);
    dir.join("pid").exists()
        || std::fs::read_to_string(dir.join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// The id of the thread serving slot `name` (in `NBD_DO_IT`), from sysfs.
pub fn serving_pid(sys: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(sys.join("block").join(name).join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The unconnected slots, lowest first.
pub fn free_slots(sys: &Path) -> Vec<String> {
    slots(sys)
        .into_iter()
        .filter(|n| !is_connected(sys, n))
        .collect()
}

/// A slot set up and handed its socket, ready for [`Connected::run`].
pub struct Connected {
    pub name: String,
    pub node: PathBuf,
    file: File,
}

/// Opens slot `name`'s node (read-only: the NBD ioctls need no more).
fn open_slot(dev_dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let node = dev_dir.join(name);
    let file = File::open(&node)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", node.display())))?;
    Ok((node, file))
}

/// Sets slot `name` up as a read-only disk of `size` bytes in blocks of
/// `block` bytes served on `sock`. The size must be a multiple of the
/// block size. On failure the slot's socket is cleared again.
pub fn connect(
    dev_dir: &Path,
    name: &str,
    size: u64,
    block: u32,
    sock: OwnedFd,
) -> io::Result<Connected> {
    let (node, file) = open_slot(dev_dir, name)?;
    let blocks = usize::try_from(size / u64::from(block))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
    let set_up = || -> io::Result<()> {
        ioctl_arg::<NBD_SET_BLKSIZE>(&file, "NBD_SET_BLKSIZE", block as usize)?;
        ioctl_arg::<NBD_SET_SIZE_BLOCKS>(&file, "NBD_SET_SIZE_BLOCKS", blocks)?;
        ioctl_arg::<NBD_SET_FLAGS>(&file, "NBD_SET_FLAGS", FLAGS_READ_ONLY)?;
        // 0: never time a request out. A nonzero timeout makes the kernel
        // shut the socket down when one slow read overruns it; the server
        // answers EIO at its own deadline instead.
        ioctl_arg::<NBD_SET_TIMEOUT>(&file, "NBD_SET_TIMEOUT", 0)?;
        ioctl_arg::<NBD_SET_SOCK>(&file, "NBD_SET_SOCK", sock.as_raw_fd() as usize)
    };
    match set_up() {
        Ok(()) => {
            // The kernel holds its own reference to the socket now.
            drop(sock);
            Ok(Connected {
                name: name.to_string(),
                node,
                file,
            })
        }
        Err(e) => {
            let _ = ioctl_arg::<NBD_CLEAR_SOCK>(&file, "NBD_CLEAR_SOCK", 0);
            Err(io::Error::new(e.kind(), format!("{}: {e}", node.display())))
        }
    }
}

impl Connected {
    /// `NBD_DO_IT`: the device serves until the connection ends (a
    /// disconnect, or the server closing its end). Blocks.
    pub fn run(&self) -> io::Result<()> {
        let r = ioctl_arg::<NBD_DO_IT>(&self.file, "NBD_DO_IT", 0);
        // Whatever ended it, leave the slot free for the next attach.
        let _ = ioctl_arg::<NBD_CLEAR_SOCK>(&self.file, "NBD_CLEAR_SOCK", 0);
        r
    }
}

/// Asks the kernel to disconnect slot `name`: it sends the server
/// `NBD_CMD_DISC`, fails what is queued, and `NBD_DO_IT` returns.
pub fn disconnect(dev_dir: &Path, name: &str) -> io::Result<()> {
    let (_, file) = open_slot(dev_dir, name)?;
    ioctl_arg::<NBD_DISCONNECT>(&file, "NBD_DISCONNECT", 0)
}

/// Clears a slot whose server is gone (its process was killed): the
/// kernel drops the dead socket and the slot is free again.
pub fn clear(dev_dir: &Path, name: &str) -> io::Result<()> {
    let (_, file) = open_slot(dev_dir, name)?;
    ioctl_arg::<NBD_CLEAR_SOCK>(&file, "NBD_CLEAR_SOCK", 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_their_state_from_sysfs() {
        let t = testkit::TempDir::new("nbd-slots");
        for (n, size, pid) in [
            ("nbd10", "0", None),
            ("nbd2", "0", None),
            ("nbd0", "2048", Some("77")),
        ] {
            let d = t.join("block").join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
            if let Some(p) = pid {
                std::fs::write(d.join("pid"), format!("{p}\n")).unwrap();
            }
        }
        std::fs::create_dir_all(t.join("block/sda")).unwrap();
        assert_eq!(slots(&t), ["nbd0", "nbd2", "nbd10"]);
        assert_eq!(free_slots(&t), ["nbd2", "nbd10"]);
        assert!(is_connected(&t, "nbd0"));
        assert_eq!(serving_pid(&t, "nbd0"), Some(77));
        assert_eq!(serving_pid(&t, "nbd2"), None);
    }
}
