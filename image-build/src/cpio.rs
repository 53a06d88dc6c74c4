//! cpio "newc" archives, the format the kernel unpacks as initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Header: the magic `070701` and 13 fields of 8 hex digits (ino, mode, uid,
//! gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
//! namesize including the NUL, check=0), then the name and NUL padded to a
//! multiple of 4, then the data padded to a multiple of 4. The archive ends
//! with an entry named `TRAILER!!!`.

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// Permission bits (the file type bits are added from `kind`).
    pub perm: u32,
    pub kind: EntryKind,
}

impl CpioEntry {
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> CpioEntry {
        CpioEntry {
            path: path.trim_start_matches('/').into(),
            perm,
            kind: EntryKind::File(data),
        }
    }
    pub fn dir(path: &str) -> CpioEntry {
        CpioEntry {
            path: path.trim_start_matches('/').into(),
            perm: 0o755,
            kind: EntryKind::Dir,
        }
    }
    pub fn symlink(path: &str, target: &str) -> CpioEntry {
        CpioEntry {
            path: path.trim_start_matches('/').into(),
            perm: 0o777,
            kind: EntryKind::Symlink(target.into()),
        }
    }
    pub fn char_device(path: &str, perm: u32, major: u32, minor: u32) -> CpioEntry {
        CpioEntry {
            path: path.trim_start_matches('/').into(),
            perm,
            kind: EntryKind::CharDevice { major, minor },
        }
    }
}

const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: fixed, for reproducible images
        size as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// Writes `entries` in the given order (callers sort them) as one archive.
/// Inode numbers are assigned in order, so equal input gives equal bytes.
pub fn cpio_newc(entries: &[CpioEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
            EntryKind::File(d) => (S_IFREG | e.perm, 1, d, (0, 0)),
            EntryKind::Dir => (S_IFDIR | e.perm, 2, &[], (0, 0)),
            EntryKind::Symlink(t) => (S_IFLNK | e.perm, 1, t.as_bytes(), (0, 0)),
            EntryKind::CharDevice { major, minor } => (S_IFCHR | e.perm, 1, &[], (*major, *minor)),
        };
        header(&mut out, ino, mode, nlink, data.len(), rdev, &e.path);
        out.extend_from_slice(data);
        pad4(&mut out);
    }
    header(&mut out, 0, 0, 1, 0, (0, 0), "TRAILER!!!");
    out
}

/// An uncompressed archive of a few files (with their parent directories) to
/// concatenate after the initramfs: the kernel unpacks every archive of the
/// concatenation, so a script can be added without rebuilding the image.
pub fn extra_initrd(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for (path, _, _) in files {
        let p = path.trim_start_matches('/');
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    entries.extend(dirs.iter().map(|d| CpioEntry::dir(d)));
    entries.extend(
        files
            .iter()
            .map(|(p, d, m)| CpioEntry::file(p, *m, d.to_vec())),
    );
    cpio_newc(&entries)
}

/// `base` (e.g. the zstd-compressed `out/initramfs.img`) followed by `extra`
/// (e.g. from [`extra_initrd`]), as one initrd for the kernel. The kernel
/// looks for the next archive's `070701` magic only at a 4-byte aligned
/// offset, so `base` is padded with zero bytes (which it skips) first.
pub fn append_initrd(base: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + 3 + extra.len());
    out.extend_from_slice(base);
    pad4(&mut out);
    out.extend_from_slice(extra);
    out
}

/// Reads an archive back (for tests and checks): (path, mode, data) per entry.
pub fn parse_newc(mut bytes: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let total = bytes.len();
    loop {
        let at = total - bytes.len();
        if bytes.len() < 110 || &bytes[..6] != b"070701" {
            return Err(format!("offset {at}: no newc header"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s =
                std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| format!("offset {at}: field {i}: {e}"))
        };
        let mode = field(1)?;
        let size = field(6)? as usize;
        let namesize = field(11)? as usize;
        let name_end = 110 + namesize;
        let data_start = name_end.div_ceil(4) * 4;
        let data_end = data_start + size;
        if bytes.len() < data_end || namesize == 0 {
            return Err(format!("offset {at}: truncated entry"));
        }
        let name = String::from_utf8_lossy(&bytes[110..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push((name, mode, bytes[data_start..data_end].to_vec()));
        bytes = &bytes[(data_end.div_ceil(4) * 4).min(bytes.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let entries = vec![
            CpioEntry::dir("bin"),
            CpioEntry::file("bin/x", 0o755, b"hello".to_vec()),
            CpioEntry::symlink("init", "bin/x"),
            CpioEntry::char_device("dev/console", 0o600, 5, 1),
        ];
        let a = cpio_newc(&entries);
        assert_eq!(a.len() % 4, 0);
        let back = parse_newc(&a).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back[1], ("bin/x".to_string(), 0o100755, b"hello".to_vec()));
        assert_eq!(back[2].2, b"bin/x");
        assert_eq!(back[3].1, 0o020600);
        assert_eq!(cpio_newc(&entries), a, "deterministic");
    }

    #[test]
    fn extra_initrd_has_parent_dirs() {
        let a = extra_initrd(&[("etc/rescue/s.txt", b"probe\n", 0o644)]);
        let names: Vec<String> = parse_newc(&a).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["etc", "etc/rescue", "etc/rescue/s.txt"]);
    }

    /// GNU cpio, an independent reader, lists what we wrote.
    #[test]
    fn gnu_cpio_reads_it() {
        let a = cpio_newc(&[
            CpioEntry::dir("d"),
            CpioEntry::file("d/f", 0o644, vec![1, 2, 3]),
            CpioEntry::symlink("l", "d/f"),
            CpioEntry::char_device("c", 0o600, 5, 1),
        ]);
        let mut child = std::process::Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("GNU cpio is needed (apt-get install cpio)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" d"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("-rw-r--r--") && lines[1].ends_with(" d/f"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("l -> d/f"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("crw-------") && lines[3].contains("5,"),
            "{text}"
        );
    }
}
