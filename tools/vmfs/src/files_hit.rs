//! Which files a damaged disk costs: the files whose stored bytes overlap
//! the bad areas of a ddrescue mapfile, found without reading file data.

use crate::damage::Ranges;
use crate::inode::{FileType, ROOT_ADDR};
use crate::Volume;
use serde::Serialize;
use std::collections::HashSet;

/// One file that overlaps bad areas.
#[derive(Serialize, Debug)]
pub struct Hit {
    pub path: String,
    /// File byte ranges on bad areas.
    pub ranges: Vec<(u64, u64)>,
}

/// Files of the volume whose stored bytes overlap `bad` (in coordinates of
/// the first source; `origins` maps volume devices to their source and
/// offset, as [`crate::open::OpenedVolume::origins`]). Returns the hits,
/// sorted by path, and the metadata that could not be read.
pub fn files_hit_in(
    vol: &Volume,
    origins: &[(String, u64)],
    bad: &Ranges,
) -> (Vec<Hit>, Vec<String>) {
    let mut hits = Vec::new();
    let mut errors = Vec::new();
    let mut stack = vec![("".to_string(), ROOT_ADDR)];
    let mut seen = HashSet::new();
    let first = origins.first().map(|o| o.0.as_str()).unwrap_or_default();
    while let Some((path, addr)) = stack.pop() {
        if !seen.insert(addr) {
            continue;
        }
        let ino = match vol.inode(addr) {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                continue;
            }
        };
        match ino.ftype {
            FileType::Directory => match vol.dir_entries(&ino) {
                Ok(es) => {
                    for e in es.into_iter().filter(|e| e.name != "." && e.name != "..") {
                        stack.push((format!("{path}/{}", e.name), e.addr));
                    }
                }
                Err(e) => errors.push(format!("{path}/: {e}")),
            },
            FileType::File | FileType::System | FileType::Symlink => match vol.device_extents(&ino)
            {
                Ok(ex) => {
                    let mut ranges = Vec::new();
                    for e in ex {
                        // Only the first source has the map; a device
                        // without origin is on none of it.
                        let Some((p, base)) = origins.get(e.device) else {
                            continue;
                        };
                        if p != first {
                            continue;
                        }
                        let at = base.saturating_add(e.device_offset);
                        for (s, l) in bad.intersect(at, e.len) {
                            ranges.push((e.file_offset + (s - at), l));
                        }
                    }
                    if !ranges.is_empty() {
                        hits.push(Hit { path, ranges });
                    }
                }
                Err(e) => errors.push(format!("{path}: {e}")),
            },
            _ => {}
        }
    }
    hits.sort_by(|a, b| a.path.cmp(&b.path));
    (hits, errors)
}
