//! The receiver's directory: image names that cannot leave it, and the
//! files of one image, opened relative to the directory without following
//! symlinks.
//!
//! For an image NAME the directory holds:
//! - `NAME`: the image, written at the source's offsets;
//! - `NAME.map`: its GNU ddrescue mapfile, replaced atomically (temporary
//!   file, fsync, rename, fsync of the directory) only after the image data
//!   it describes was fsynced;
//! - `NAME.source`: which source the image is of (size and identity), so a
//!   different source is refused instead of overwriting the image;
//! - `NAME.sha256`: the verified digest, in sha256sum format.

use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Suffixes of the files kept beside an image; no image may end in one.
pub const SIDECARS: [&str; 4] = [".map", ".source", ".sha256", ".tmp"];

/// Checks that `name` is a plain file name that stays inside the directory.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if name.contains('\0') {
        "contains a NUL byte".into()
    } else if name.starts_with('/') {
        "is an absolute path; give a file name".into()
    } else if name.contains('/') {
        "contains '/'; give a file name without directories".into()
    } else if name == "." || name == ".." || name.starts_with('.') {
        "starts with '.'".into()
    } else if name.len() > crate::frame::MAX_NAME {
        format!("is longer than {} bytes", crate::frame::MAX_NAME)
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        format!(
            "contains '{}' (allowed: letters, digits, '.', '_', '-', '+')",
            c.escape_default()
        )
    } else if let Some(s) = SIDECARS.iter().find(|s| name.ends_with(*s)) {
        format!("ends in {s}, which is kept for the files beside an image")
    } else {
        return Ok(());
    };
    Err(format!("image name '{}' {why}", name.escape_default()))
}

/// The receiving directory, held open.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Largest sidecar read (a mapfile of a badly damaged disk can be large).
const MAX_SIDECAR: u64 = 256 << 20;

impl Dir {
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {}", path.display(), io::Error::from(e)),
            )
        })?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `DIR/name` for messages.
    pub fn show(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    fn err(&self, name: &str, what: &str, e: impl Into<io::Error>) -> io::Error {
        let e = e.into();
        let hint = if e.raw_os_error() == Some(40) {
            " (a symlink: refused)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("{}: {what}: {e}{hint}", self.show(name)))
    }

    /// Opens (creating) the image for reading and writing; a symlink or
    /// anything but a regular file is refused.
    pub fn open_image(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| self.err(name, "open for writing", e))?;
        let f = File::from(fd);
        if !f.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file: refused", self.show(name)),
            ));
        }
        Ok(f)
    }

    /// Whether `name` exists (a symlink counts as existing).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(self.err(name, "stat", e)),
        }
    }

    /// The text of a sidecar file, `None` if it does not exist.
    pub fn read(&self, name: &str) -> io::Result<Option<String>> {
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.err(name, "open", e)),
        };
        let f = File::from(fd);
        if !f.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", self.show(name)),
            ));
        }
        let mut s = String::new();
        f.take(MAX_SIDECAR)
            .read_to_string(&mut s)
            .map_err(|e| self.err(name, "read", e))?;
        Ok(Some(s))
    }

    /// Replaces `name` with `text` atomically: `name.tmp`, fsync, rename, fsync of the directory.
    pub fn save_atomic(&self, name: &str, text: &str) -> io::Result<()> {
        let tmp = format!("{name}.tmp");
        let fd = rustix::fs::openat(
            &self.fd,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| self.err(&tmp, "create", e))?;
        let mut f = File::from(fd);
        f.write_all(text.as_bytes())
            .map_err(|e| self.err(&tmp, "write", e))?;
        f.sync_all().map_err(|e| self.err(&tmp, "fsync", e))?;
        drop(f);
        rustix::fs::renameat(&self.fd, &tmp, &self.fd, name)
            .map_err(|e| self.err(name, "rename", e))?;
        rustix::fs::fsync(&self.fd).map_err(|e| self.err(".", "fsync of the directory", e))?;
        Ok(())
    }

    /// Opens (creating it if missing) the directory `name` of a tree; a
    /// symlink or anything but a directory is refused.
    pub fn open_tree(&self, name: &str) -> io::Result<OwnedFd> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(self.err(name, "mkdir", e)),
        }
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            let kind = if matches!(e.raw_os_error(), Some(20) | Some(40)) {
                io::ErrorKind::InvalidInput
            } else {
                e.kind()
            };
            io::Error::new(
                kind,
                format!(
                    "{}: not a directory (or a symlink): refused",
                    self.show(name)
                ),
            )
        })
    }

    /// Whether `name` is a directory (not following a symlink).
    pub fn is_dir(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
    }

    /// Removes `name` if it exists.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(name, "remove", e)),
        }
    }
}

/// What `NAME.source` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecord {
    pub size: u64,
    pub identity: String,
}

impl SourceRecord {
    /// The identity as stored: control characters become '?'.
    pub fn new(size: u64, identity: &str) -> SourceRecord {
        SourceRecord {
            size,
            identity: identity
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "# rescue receive: the source this image is of\nsize {}\nidentity {}\n",
            self.size, self.identity
        )
    }

    /// Parses [`SourceRecord::render`]'s text; errors name the line.
    pub fn parse(text: &str) -> Result<SourceRecord, String> {
        let mut size = None;
        let mut identity = None;
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "size" => {
                    size = Some(v.parse::<u64>().map_err(|_| {
                        format!(
                            "line {}: size: expected a number of bytes, found '{}'",
                            i + 1,
                            v.escape_default()
                        )
                    })?)
                }
                "identity" => identity = Some(v.to_string()),
                _ => {
                    return Err(format!(
                        "line {}: unknown key '{}'",
                        i + 1,
                        k.escape_default()
                    ))
                }
            }
        }
        Ok(SourceRecord {
            size: size.ok_or("no size line")?,
            identity: identity.ok_or("no identity line")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_stay_inside() {
        for ok in ["disk.img", "sda", "vm-01_disk+1.raw", "a.b.c"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("../x", "'/'"),
            ("..", "'.'"),
            (".hidden", "'.'"),
            ("/etc/passwd", "absolute"),
            ("a/b", "'/'"),
            ("a\0b", "NUL"),
            ("a b", "' '"),
            ("x.map", ".map"),
            ("x.source", ".source"),
            ("x.tmp", ".tmp"),
            ("é", "allowed"),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check_name(&"a".repeat(201)).unwrap_err().contains("longer"));
    }

    #[test]
    fn source_record_roundtrip() {
        let r = SourceRecord::new(123, "wwid naa.1\nx");
        assert_eq!(r.identity, "wwid naa.1?x");
        assert_eq!(SourceRecord::parse(&r.render()), Ok(r));
        assert!(SourceRecord::parse("size x\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(SourceRecord::parse("size 1\n")
            .unwrap_err()
            .contains("identity"));
    }

    proptest! {
        #[test]
        fn record_parser_never_panics(s in "\\PC{0,80}") {
            let _ = SourceRecord::parse(&s);
            let _ = check_name(&s);
        }
    }
}
