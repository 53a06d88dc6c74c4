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

/// The bad areas of one VM disk, one layer down: which of its virtual
/// bytes depend on the bad file bytes of its extents (data, or a grain
/// table that maps them).
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct DiskHit {
    /// The disk's descriptor, as a volume path.
    pub descriptor: String,
    /// Its virtual size.
    pub capacity: u64,
    /// Virtual byte ranges, sorted and merged.
    pub ranges: Vec<(u64, u64)>,
}

/// Descriptors larger than this are not looked at (they are data files).
const DESCRIPTOR_MAX: u64 = 1 << 20;

/// For every VM disk in the folders of `hits` (each `.vmdk` descriptor
/// there, with its snapshot chain) whose files were hit: the virtual
/// ranges that depend on the bad bytes. `volume` is read without the bad
/// areas applied (the disks' maps are read from it); `shown_as` names it in
/// messages. Returns the disks hit, by descriptor, and what could not be
/// opened or translated.
pub fn vm_disks_hit(
    volume: std::sync::Arc<Volume>,
    shown_as: &str,
    hits: &[Hit],
) -> (Vec<DiskHit>, Vec<String>) {
    use crate::vmdkfiles::VolumeFolder;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut folders: Vec<&str> = hits
        .iter()
        .map(|h| h.path.rsplit_once('/').map_or("", |(d, _)| d))
        .collect();
    folders.sort();
    folders.dedup();
    for folder in folders {
        let dir = if folder.is_empty() { "/" } else { folder };
        let entries = match volume.read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{dir}: {e}"));
                continue;
            }
        };
        for e in entries {
            let path = format!("{folder}/{}", e.name);
            let small = volume
                .inode(e.addr)
                .is_ok_and(|i| i.ftype == FileType::File && i.size <= DESCRIPTOR_MAX);
            if !e.name.ends_with(".vmdk") || !small {
                continue;
            }
            let (files, name) = VolumeFolder::of(volume.clone(), &path, shown_as.to_string());
            let disk = match vmdk::VirtualDisk::open(&files, &name) {
                Ok(d) => d,
                // A small data file (a tiny -flat or -delta) is no disk.
                Err(vmdk::Error::Corrupt { .. }) if !is_descriptor(&volume, &path) => continue,
                Err(err) => {
                    errors.push(format!("{path}: {err}"));
                    continue;
                }
            };
            let mut ranges = Vec::new();
            for level in disk.levels() {
                for (start, extent) in &level.extents {
                    let Some(file) = extent.file() else { continue };
                    for h in hits
                        .iter()
                        .filter(|h| vmdk::Files::show(&files, &h.path) == file)
                    {
                        for &(off, len) in &h.ranges {
                            match extent.dependents(off, len) {
                                Ok(v) => ranges.extend(v.into_iter().map(|(s, l)| (start + s, l))),
                                Err(err) => errors.push(format!("{path}: {err}")),
                            }
                        }
                    }
                }
            }
            if !ranges.is_empty() {
                out.push(DiskHit {
                    descriptor: path,
                    capacity: disk.capacity(),
                    ranges: crate::damage::Ranges::from_unsorted(ranges).0,
                });
            }
        }
    }
    (out, errors)
}

/// Whether the file at `path` starts like a VMDK text descriptor.
fn is_descriptor(volume: &Volume, path: &str) -> bool {
    let Ok(f) = volume.open(path) else {
        return false;
    };
    let mut head = vec![0u8; 4096.min(f.size() as usize)];
    f.read_at(&mut head, 0).is_ok() && vmdk::Descriptor::looks_like(&head)
}
