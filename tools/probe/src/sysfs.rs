//! Small readers for sysfs attribute files.

use crate::IoCounters;
use std::path::Path;

/// The attribute's text with surrounding white space (and NVMe's padding)
/// removed; `None` when absent, unreadable or empty.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_string())
}

pub fn read_parsed<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

pub fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// `/sys/block/<dev>/stat`: reads, merges, sectors, ms, writes, merges,
/// sectors, ms, ... (Documentation/block/stat.rst).
pub fn read_io_counters(path: &Path) -> IoCounters {
    let Some(text) = read_trimmed(path) else {
        return IoCounters::default();
    };
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    IoCounters {
        reads_completed: get(0),
        sectors_read: get(2),
        writes_completed: get(4),
        sectors_written: get(6),
    }
}
