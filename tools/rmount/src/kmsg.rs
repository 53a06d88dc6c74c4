//! What the kernel logged during one mount attempt, from /dev/kmsg.
//!
//! /dev/kmsg gives one record per read(2): `PRIO,SEQ,USEC,FLAGS;MESSAGE`,
//! then continuation lines starting with a space (` SUBSYSTEM=...`). A
//! reader opened with O_NONBLOCK and moved to the end (SEEK_END) sees only
//! records logged after that; a read with nothing new fails with EAGAIN,
//! and EPIPE means records were overwritten before they were read (the
//! next read goes on with the oldest left).

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A /dev/kmsg reader positioned after the records that were there.
pub struct Kmsg(File);

impl Kmsg {
    /// Opens `path` (normally /dev/kmsg) non-blocking, at its end.
    pub fn open_at_end(path: &Path) -> std::io::Result<Kmsg> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        f.seek(SeekFrom::End(0))?;
        Ok(Kmsg(f))
    }

    /// The messages of the records logged since the last call (or the
    /// open), oldest first.
    pub fn read_new(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        // A record is at most about 1 KiB of text plus its dictionary.
        let mut buf = vec![0u8; 16 * 1024];
        // Bounded, in case a device file keeps returning data.
        for _ in 0..10_000 {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(m) = message(&buf[..n]) {
                        out.push(m);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {
                    continue
                }
                Err(_) => break,
            }
        }
        out
    }
}

/// The message of one record: the text after the first `;`, up to the
/// first newline (continuation lines dropped). None for a record without
/// the `;` (not kmsg's format).
pub fn message(record: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    let (_, rest) = text.split_once(';')?;
    Some(rest.lines().next().unwrap_or("").trim_end().to_string())
}

/// Whether a kernel message is about this attempt: it names the device
/// (`EXT4-fs (sdb1): ...`, `BTRFS info (device sdb1): ...`) or comes from
/// the filesystem's driver without naming a device (`EXT4-fs: Unrecognized
/// mount option`, `btrfs: Unknown parameter`). Other devices' messages,
/// logged at the same time by others, are left out.
pub fn relevant(message: &str, device: &str, fstype: &str) -> bool {
    if names_device(message, device) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    let prefix = match fstype {
        "vfat" => "fat-fs",
        other => other,
    };
    lower
        .strip_prefix(prefix)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        && !mentions_other_device(&lower, device)
}

/// `device` occurs in `message` as a whole word (`loop1` is not in
/// `loop10`).
fn names_device(message: &str, device: &str) -> bool {
    if device.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    message.match_indices(device).any(|(i, _)| {
        !word(message[..i].chars().next_back()) && !word(message[i + device.len()..].chars().next())
    })
}

/// A driver message that names a device, and not ours: the driver's
/// prefix before the first `:` carries it in parentheses (`EXT4-fs
/// (sdb1):`, `BTRFS info (device sdb1):`).
fn mentions_other_device(lower: &str, device: &str) -> bool {
    let head = lower.split(':').next().unwrap_or("");
    let Some((_, rest)) = head.split_once('(') else {
        return false;
    };
    let inside = rest.split(')').next().unwrap_or("");
    !inside.is_empty() && !names_device(inside, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse() {
        assert_eq!(
            message(b"3,1234,5678,-;EXT4-fs (loop0): bad geometry\n SUBSYSTEM=block\n").as_deref(),
            Some("EXT4-fs (loop0): bad geometry")
        );
        assert_eq!(message(b"6,1,2,c;").as_deref(), Some(""));
        assert_eq!(message(b"no separator"), None);
        assert_eq!(
            message(&[b'6', b',', b';', 0xff, b'x']).as_deref(),
            Some("\u{fffd}x")
        );
    }

    #[test]
    fn relevance_by_device_and_driver() {
        let r = |m: &str| relevant(m, "loop1", "ext4");
        assert!(r(
            "EXT4-fs (loop1): INFO: recovery required on readonly filesystem"
        ));
        assert!(r("EXT4-fs: Mount option(s) incompatible with ext2"));
        assert!(!r("EXT4-fs (loop10): mounted filesystem"));
        assert!(!r("EXT4-fs (sda2): re-mounted"));
        assert!(!r("loop10: detected capacity change"));
        assert!(!r("ext4_foo: something else"));
        assert!(relevant(
            "BTRFS info (device loop1): disabling log replay at mount time",
            "loop1",
            "btrfs"
        ));
        assert!(relevant(
            "btrfs: Unknown parameter 'noload'",
            "loop1",
            "btrfs"
        ));
        assert!(!relevant(
            "BTRFS info (device loop2): first mount",
            "loop1",
            "btrfs"
        ));
        assert!(relevant(
            "FAT-fs (sdb1): Volume was not properly unmounted.",
            "sdb1",
            "vfat"
        ));
        assert!(relevant(
            "XFS (nbd0p1): Mounting V5 Filesystem",
            "nbd0p1",
            "xfs"
        ));
        assert!(!relevant("XFS (nbd0p10): Mounting", "nbd0p1", "xfs"));
    }

    proptest::proptest! {
        /// Any record bytes, device and driver: an answer, never a panic.
        #[test]
        fn never_panics(rec in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                        dev in "[a-z0-9()]{0,8}", fs in "[a-z]{0,6}") {
            if let Some(m) = message(&rec) {
                let _ = relevant(&m, &dev, &fs);
            }
            let text = String::from_utf8_lossy(&rec).into_owned();
            let _ = relevant(&text, &dev, &fs);
        }
    }

    #[test]
    fn reads_only_what_came_after_the_open() {
        let dir = testkit::TempDir::new("rmount-kmsg");
        let p = dir.join("kmsg");
        std::fs::write(&p, b"6,1,0,-;old\n").unwrap();
        let mut k = Kmsg::open_at_end(&p).unwrap();
        assert!(k.read_new().is_empty());
    }
}
