//! Errors: every one names what was being read and where.

use std::fmt;
use std::io;

/// What went wrong while reading a VMFS volume.
#[derive(Debug)]
pub enum Error {
    /// The underlying device failed (`what` names the structure and offset).
    Io { what: String, source: io::Error },
    /// On-disk data does not make sense (bad magic, out-of-range field, loop).
    Corrupt(String),
    /// A valid structure we do not know how to read.
    Unsupported(String),
    /// A path or name that does not exist.
    NotFound(String),
    /// A path component that is not a directory.
    NotADirectory(String),
    /// Several copies of one LVM extent were given (a disk and its clone):
    /// which one to read must be chosen.
    Copies(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    pub fn corrupt(msg: impl Into<String>) -> Error {
        Error::Corrupt(msg.into())
    }
    /// True for device read failures (as opposed to bad metadata).
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "I/O error reading {what}: {source}"),
            Error::Corrupt(m) => write!(f, "corrupt metadata: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::NotADirectory(m) => write!(f, "not a directory: {m}"),
            Error::Copies(m) => write!(f, "copies of one extent: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A field read past the end of an on-disk structure ([`le::Fields`]) is
/// corrupt metadata: the structure is shorter than its format says.
impl From<le::OutOfRange> for Error {
    fn from(e: le::OutOfRange) -> Error {
        Error::corrupt(e.to_string())
    }
}

/// VMware UUIDs as fields of an on-disk structure.
pub(crate) trait UuidField {
    fn uuid(&self, offset: usize) -> Result<Uuid>;
}

impl UuidField for le::Fields<'_> {
    fn uuid(&self, offset: usize) -> Result<Uuid> {
        Ok(Uuid(self.array(offset)?))
    }
}

/// A VMware UUID: timeLo u32, timeHi u32, rand u16, mac[6], shown as
/// `xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx` (the form ESXi prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let r = u16::from_le_bytes([b[8], b[9]]);
        write!(f, "{lo:08x}-{hi:08x}-{r:04x}-")?;
        for c in &b[10..16] {
            write!(f, "{c:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Reads exactly `buf.len()` bytes or fails with an error naming `what`.
pub(crate) fn read_exact(
    dev: &dyn blockdev::BlockDevice,
    buf: &mut [u8],
    off: u64,
    what: &str,
) -> Result<()> {
    dev.read_exact_at(buf, off)
        .map_err(|e| Error::io(format!("{what} at {}:{off:#x}", dev.name()), e))
}
