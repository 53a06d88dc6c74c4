//! What went wrong reading a VM disk, and where.

use std::fmt;

/// An error reading a VM disk: the file it is about, and what.
#[derive(Debug)]
pub enum Error {
    /// A file could not be opened or read (`what` says which part).
    Io {
        file: String,
        what: String,
        source: std::io::Error,
    },
    /// A file's contents are not what the format says: `offset` in `file`,
    /// the field, what was expected and what was found.
    Corrupt {
        file: String,
        offset: u64,
        message: String,
    },
    /// Something the format allows that this reader does not read (with
    /// what it is).
    Unsupported { file: String, message: String },
    /// The chain of snapshots is broken: a parent missing, a cycle.
    Chain(String),
    /// A raw device mapping: the disk's data is on a LUN, not in any
    /// file. `explanation` says which LUN and what to do.
    RawDeviceMap {
        descriptor: String,
        explanation: String,
    },
}

impl Error {
    pub fn corrupt(file: &str, offset: u64, message: impl Into<String>) -> Error {
        Error::Corrupt {
            file: file.to_string(),
            offset,
            message: message.into(),
        }
    }

    pub fn io(file: &str, what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            file: file.to_string(),
            what: what.into(),
            source,
        }
    }

    pub fn unsupported(file: &str, message: impl Into<String>) -> Error {
        Error::Unsupported {
            file: file.to_string(),
            message: message.into(),
        }
    }

    /// A field of `file`'s structure read past its end: corrupt at the
    /// structure's `base` plus the field's offset.
    pub fn field(file: &str, base: u64) -> impl Fn(le::OutOfRange) -> Error + '_ {
        move |e| Error::corrupt(file, base + e.offset as u64, e.to_string())
    }

    /// Whether this is a read failure of the medium (as opposed to bad
    /// metadata or a broken chain): what an export zero-fills and records
    /// in its bad-area map.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { file, what, source } => write!(f, "{file}: {what}: {source}"),
            Error::Corrupt {
                file,
                offset,
                message,
            } => write!(f, "{file}: at byte {offset}: {message}"),
            Error::Unsupported { file, message } => write!(f, "{file}: {message}"),
            Error::Chain(message) => write!(f, "{message}"),
            Error::RawDeviceMap {
                descriptor,
                explanation,
            } => write!(f, "{descriptor}: {explanation}"),
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

pub type Result<T> = std::result::Result<T, Error>;
