//! Whole-file and whole-folder reads for the fronts: a byte range of a file
//! copied to a writer with read-ahead ([`copy_range`]), and a folder's tree
//! ([`tree`]), so that `vmfs cat`, `vmfs tree`, the menu and a network
//! export share one implementation.

use crate::extract::is_system_name;
use crate::inode::{FileType, Inode};
use crate::volume::{FileReader, Volume};
use std::collections::HashSet;
use std::io::Write;
use std::ops::ControlFlow;

/// Why [`copy_range`] stopped.
#[derive(Debug)]
pub enum CopyError {
    /// The volume could not be read there (the message names the FD and
    /// the offset).
    Read(crate::Error),
    /// The writer failed (a closed pipe shows as `BrokenPipe`).
    Write(std::io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "{e}"),
            CopyError::Write(e) => write!(f, "writing: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// Copies bytes `start..end` of `file` (clamped to its size) to `out`, in
/// 1 MiB chunks (the usual file block, and small enough to stay in the CPU
/// cache between read and write) read ahead by a few threads while the
/// previous ones are written. Stops at the first read or write error.
pub fn copy_range(
    file: &FileReader<'_>,
    start: u64,
    end: u64,
    out: &mut dyn Write,
) -> Result<(), CopyError> {
    let end = end.min(file.size());
    let chunks = crate::readahead::chunks_of(start.min(end), end, 1 << 20);
    let read = |buf: &mut [u8], off: u64| read_fully(file, buf, off);
    let mut failed = None;
    crate::readahead::for_each_chunk(&chunks, &read, &mut |_, _, data| {
        let res = match data {
            Ok(bytes) => out.write_all(bytes).map_err(CopyError::Write),
            Err(e) => Err(CopyError::Read(e)),
        };
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => out.flush().map_err(CopyError::Write),
    }
}

/// Fills `buf` from `off` of `f`; a short read (the file ends first) is an
/// error, as the chunks given are always inside the file.
fn read_fully(f: &FileReader<'_>, buf: &mut [u8], off: u64) -> crate::Result<()> {
    let got = f.read_at(buf, off)?;
    if got < buf.len() {
        return Err(crate::Error::corrupt(format!(
            "FD {:#010x}: {} bytes at file offset {off:#x}, the file ends after {got}",
            f.inode().addr,
            buf.len()
        )));
    }
    Ok(())
}

/// One line of a folder's tree, `depth` levels below the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeItem {
    Folder {
        depth: usize,
        name: String,
    },
    File {
        depth: usize,
        name: String,
        size: u64,
        file_type: FileType,
    },
    /// A folder met again (a damaged directory pointing back up).
    Loop {
        depth: usize,
        addr: u32,
    },
    /// A folder whose entries, or an entry whose descriptor, could not be
    /// read; `name` is None for the folder's own entries.
    Unreadable {
        depth: usize,
        name: Option<String>,
        error: String,
    },
}

impl TreeItem {
    /// Loops and unreadable items: what makes a tree a finding.
    pub fn is_problem(&self) -> bool {
        matches!(self, TreeItem::Loop { .. } | TreeItem::Unreadable { .. })
    }
}

/// The tree under folder `root`, entries by name, folders followed by
/// their contents; volume metadata files (`.*.sf`) only with `all`.
pub fn tree(v: &Volume, root: &Inode, all: bool) -> Vec<TreeItem> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    walk(v, root, 1, all, &mut seen, &mut items);
    items
}

fn walk(
    v: &Volume,
    folder: &Inode,
    depth: usize,
    all: bool,
    seen: &mut HashSet<u32>,
    items: &mut Vec<TreeItem>,
) {
    if !seen.insert(folder.addr) {
        items.push(TreeItem::Loop {
            depth,
            addr: folder.addr,
        });
        return;
    }
    let mut entries = match v.dir_entries(folder) {
        Ok(e) => e,
        Err(e) => {
            items.push(TreeItem::Unreadable {
                depth,
                name: None,
                error: e.to_string(),
            });
            return;
        }
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        if e.name == "." || e.name == ".." || (!all && is_system_name(&e.name)) {
            continue;
        }
        match v.inode(e.addr) {
            Ok(i) if i.ftype.is_dir() => {
                items.push(TreeItem::Folder {
                    depth,
                    name: e.name,
                });
                walk(v, &i, depth + 1, all, seen, items);
            }
            Ok(i) => items.push(TreeItem::File {
                depth,
                name: e.name,
                size: i.size,
                file_type: i.ftype,
            }),
            Err(err) => items.push(TreeItem::Unreadable {
                depth,
                name: Some(e.name),
                error: err.to_string(),
            }),
        }
    }
}
