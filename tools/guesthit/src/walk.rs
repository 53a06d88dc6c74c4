//! Every file and directory of a mounted filesystem, its extents
//! intersected with the bad ranges: which files lose which of their
//! bytes, and which bad bytes lie in no file.
//!
//! The walk does not follow symbolic links and stays on the filesystem
//! it starts on (a directory on another device, or a mount point listed
//! in /proc/self/mountinfo, is not entered; btrfs subvolumes, which show
//! another device number, are). A file with several names is mapped once
//! and reported under each name. Symbolic links, device nodes, FIFOs and
//! sockets hold no data a user would lose (a long symlink's target block
//! counts as metadata). btrfs directories are items in metadata leaves,
//! not extents (FIEMAP refuses them with ENOTTY): they are counted, not
//! mapped, and never make the walk fall back to FIBMAP, which btrfs does
//! not have. FIBMAP itself maps regular files only: with it, directories
//! are counted and not mapped either.

use crate::fiemap::{self, Extent};
use crate::Ranges;
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A file or directory whose bytes lie in bad areas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The path inside the filesystem, `/dir/file`.
    pub path: String,
    /// `file` or `directory`.
    pub kind: &'static str,
    /// The file's size.
    pub size: u64,
    /// Byte ranges of the file (file offsets) that are lost, sorted.
    pub ranges: Vec<(u64, u64)>,
    /// Bytes in `ranges`.
    pub bytes: u64,
    /// Other names of the same file (hard links).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_names: Vec<String>,
    /// How the ranges were decided where it is not byte for byte
    /// (compressed extents, inline data).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How extents were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Fiemap,
    /// FIBMAP, one ioctl per block: slower.
    Fibmap,
}

/// What a walk found.
#[derive(Clone, Debug, Serialize)]
pub struct Walked {
    pub hits: Vec<Hit>,
    /// The bad ranges some file or directory holds (in the bad ranges'
    /// address space).
    #[serde(skip)]
    pub covered: Ranges,
    /// Bad bytes in preallocated (unwritten) extents: they read as zeros
    /// whatever the disk holds, so nothing is lost there.
    pub unwritten_bytes: u64,
    pub method: Method,
    pub files: u64,
    pub directories: u64,
    /// Directories counted but not mapped: FIBMAP maps files only (ntfs-3g
    /// refuses it on a directory with EINVAL).
    pub unmapped_directories: u64,
    /// Symlinks, device nodes, FIFOs, sockets.
    pub others: u64,
    /// Mount points and other filesystems not entered.
    pub not_entered: Vec<String>,
    pub seconds: f64,
    /// Files and directories mapped per second.
    pub per_second: f64,
    /// What could not be read or mapped, by path.
    pub errors: Vec<String>,
    #[serde(skip)]
    fiemap_worked: bool,
}

/// Mount points strictly under `root`, from mountinfo text (field 5,
/// octal escapes decoded).
pub fn mount_points_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let p = PathBuf::from(blockdev::sys::unescape(field));
        if p != root && p.starts_with(root) {
            out.push(p);
        }
    }
    out
}

/// What one file's extents cost it.
#[derive(Default)]
struct FileResult {
    ranges: Vec<(u64, u64)>,
    covered: Vec<(u64, u64)>,
    unwritten: u64,
    notes: Vec<String>,
}

/// Intersects one file's extents with `bad`.
fn intersect_extents(extents: &[Extent], bad: &Ranges) -> FileResult {
    let mut r = FileResult::default();
    for e in extents {
        if e.has(fiemap::FIEMAP_EXTENT_UNKNOWN) || e.has(fiemap::FIEMAP_EXTENT_DELALLOC) {
            continue; // not on the disk yet: nothing there to lose
        }
        if e.has(fiemap::FIEMAP_EXTENT_DATA_INLINE) && e.physical == 0 {
            r.notes.push(format!(
                "bytes {}..{} are stored inline in metadata, at a place FIEMAP does not give",
                e.logical,
                e.logical + e.length
            ));
            continue;
        }
        let hit = bad.intersect(e.physical, e.length);
        if hit.is_empty() {
            continue;
        }
        r.covered.extend(hit.iter().copied());
        if e.has(fiemap::FIEMAP_EXTENT_UNWRITTEN) {
            r.unwritten += hit.iter().map(|h| h.1).sum::<u64>();
            continue;
        }
        if e.has(fiemap::FIEMAP_EXTENT_ENCODED) {
            // Compressed (or otherwise encoded): a bad byte of the stored
            // data costs the whole extent.
            r.ranges.push((e.logical, e.length));
            r.notes.push(format!(
                "bytes {}..{} are stored compressed: the whole extent counts as lost",
                e.logical,
                e.logical + e.length
            ));
            continue;
        }
        for (s, l) in hit {
            r.ranges.push((e.logical + (s - e.physical), l));
        }
    }
    r.ranges = Ranges::from_unsorted(std::mem::take(&mut r.ranges)).0;
    r
}

/// Walks the filesystem mounted at `root`, mapping every file and
/// directory against `bad` (in the address space FIEMAP reports: device
/// bytes, or btrfs logical addresses). `force_fibmap` skips FIEMAP.
pub fn walk(root: &Path, bad: &Ranges, force_fibmap: bool) -> Walked {
    let began = Instant::now();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let canon = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let skip: Vec<PathBuf> = mount_points_under(&mountinfo, &canon);
    let mut w = Walked {
        hits: Vec::new(),
        covered: Ranges::default(),
        unwritten_bytes: 0,
        method: if force_fibmap {
            Method::Fibmap
        } else {
            Method::Fiemap
        },
        files: 0,
        directories: 0,
        unmapped_directories: 0,
        others: 0,
        not_entered: Vec::new(),
        seconds: 0.0,
        per_second: 0.0,
        errors: Vec::new(),
        fiemap_worked: false,
    };
    let root_dev = match std::fs::symlink_metadata(&canon) {
        Ok(m) => m.dev(),
        Err(e) => {
            w.errors.push(format!("/: {e}"));
            return w;
        }
    };
    let btrfs = is_btrfs(&canon);
    let mut covered = Vec::new();
    // Inode -> index in hits (or usize::MAX: mapped, not hit), for files
    // with several names.
    let mut linked: HashMap<(u64, u64), usize> = HashMap::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(canon.clone(), String::from("/"))];
    while let Some((dir, shown)) = stack.pop() {
        w.directories += 1;
        if !btrfs {
            map_one(&mut w, &mut covered, &dir, &shown, "directory", None, bad);
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                w.errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let mut names: Vec<(PathBuf, String)> = Vec::new();
        for e in entries {
            match e {
                Ok(e) => {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let path = if shown == "/" {
                        format!("/{name}")
                    } else {
                        format!("{shown}/{name}")
                    };
                    names.push((e.path(), path));
                }
                Err(e) => w.errors.push(format!("{shown}: {e}")),
            }
        }
        names.sort_by(|a, b| b.1.cmp(&a.1));
        for (path, shown) in names {
            let m = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    w.errors.push(format!("{shown}: {e}"));
                    continue;
                }
            };
            let ft = m.file_type();
            if ft.is_dir() {
                if skip.contains(&path) || (m.dev() != root_dev && !btrfs) {
                    w.not_entered.push(shown);
                    continue;
                }
                stack.push((path, shown));
            } else if ft.is_file() {
                w.files += 1;
                let key = (m.dev(), m.ino());
                if m.nlink() > 1 {
                    if let Some(&i) = linked.get(&key) {
                        if let Some(h) = w.hits.get_mut(i) {
                            h.other_names.push(shown);
                        }
                        continue;
                    }
                }
                let before = w.hits.len();
                map_one(
                    &mut w,
                    &mut covered,
                    &path,
                    &shown,
                    "file",
                    Some(m.len()),
                    bad,
                );
                if m.nlink() > 1 {
                    linked.insert(
                        key,
                        if w.hits.len() > before {
                            before
                        } else {
                            usize::MAX
                        },
                    );
                }
            } else {
                w.others += 1;
            }
        }
    }
    w.covered = Ranges::from_unsorted(covered);
    w.hits.sort_by(|a, b| a.path.cmp(&b.path));
    w.seconds = began.elapsed().as_secs_f64();
    let mapped = (w.files + w.directories) as f64;
    w.per_second = if w.seconds > 0.0 {
        mapped / w.seconds
    } else {
        mapped
    };
    w
}

fn is_btrfs(p: &Path) -> bool {
    rustix_statfs_magic(p) == Some(0x9123_683E)
}

fn rustix_statfs_magic(p: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a zeroed statfs is a valid out-buffer; the path is a live
    // NUL-terminated string; statfs writes only into the buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (r == 0).then_some(st.f_type as i64)
}

/// Maps one file or directory and records a hit.
fn map_one(
    w: &mut Walked,
    covered: &mut Vec<(u64, u64)>,
    path: &Path,
    shown: &str,
    kind: &'static str,
    size: Option<u64>,
    bad: &Ranges,
) {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    if kind == "directory" {
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_NONBLOCK);
    }
    let f: File = match opts.open(path) {
        Ok(f) => f,
        Err(e) => {
            w.errors.push(format!("{shown}: {e}"));
            return;
        }
    };
    let size = match size {
        Some(s) => s,
        None => f.metadata().map(|m| m.len()).unwrap_or(0),
    };
    let extents = match w.method {
        Method::Fiemap => match fiemap::extents(f.as_fd()) {
            Ok(e) => {
                w.fiemap_worked = true;
                Ok(e)
            }
            Err(e) if fiemap::unsupported(&e) && !w.fiemap_worked && !is_btrfs(path) => {
                // The filesystem has no FIEMAP: FIBMAP from here on.
                w.method = Method::Fibmap;
                fiemap::fibmap_extents(f.as_fd(), size)
            }
            Err(e) => Err(e),
        },
        Method::Fibmap => fiemap::fibmap_extents(f.as_fd(), size),
    };
    let extents = match extents {
        Ok(e) => e,
        Err(e)
            if kind == "directory"
                && w.method == Method::Fibmap
                && e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // FIBMAP maps regular files only; the directory's blocks are
            // metadata to this walk.
            w.unmapped_directories += 1;
            return;
        }
        Err(e) => {
            w.errors.push(format!("{shown}: mapping its blocks: {e}"));
            return;
        }
    };
    let r = intersect_extents(&extents, bad);
    covered.extend(r.covered);
    w.unwritten_bytes += r.unwritten;
    if !r.ranges.is_empty() {
        let bytes = r.ranges.iter().map(|x| x.1).sum();
        w.hits.push(Hit {
            path: shown.to_string(),
            kind,
            size,
            ranges: r.ranges,
            bytes,
            other_names: Vec::new(),
            notes: r.notes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags,
        }
    }

    #[test]
    fn extents_give_file_offsets_of_the_bad_bytes() {
        let bad = Ranges(vec![(10_000, 100), (50_000, 8192)]);
        let r = intersect_extents(
            &[
                ext(0, 8192, 4096, 0),
                ext(4096, 49_152, 8192, fiemap::FIEMAP_EXTENT_LAST),
            ],
            &bad,
        );
        // 10_000..10_100 is at file byte 1808; 50_000.. at 4096 + 848.
        assert_eq!(r.ranges, vec![(1808, 100), (4944, 8192 - 848)]);
        assert_eq!(r.covered, vec![(10_000, 100), (50_000, 8192 - 848)]);
    }

    #[test]
    fn flags_decide_what_counts() {
        let bad = Ranges(vec![(0, 1 << 20)]);
        let r = intersect_extents(&[ext(0, 4096, 4096, fiemap::FIEMAP_EXTENT_UNKNOWN)], &bad);
        assert!(r.ranges.is_empty() && r.covered.is_empty());
        let r = intersect_extents(&[ext(0, 4096, 4096, fiemap::FIEMAP_EXTENT_UNWRITTEN)], &bad);
        assert!(r.ranges.is_empty());
        assert_eq!(r.unwritten, 4096);
        let r = intersect_extents(&[ext(0, 0, 60, fiemap::FIEMAP_EXTENT_DATA_INLINE)], &bad);
        assert!(r.ranges.is_empty() && !r.notes.is_empty());
        // ext4 inline data has its place in the inode table.
        let r = intersect_extents(&[ext(0, 5000, 60, fiemap::FIEMAP_EXTENT_DATA_INLINE)], &bad);
        assert_eq!(r.ranges, vec![(0, 60)]);
        let bad = Ranges(vec![(8192, 1)]);
        let r = intersect_extents(
            &[ext(
                1 << 20,
                8000,
                128 * 1024,
                fiemap::FIEMAP_EXTENT_ENCODED,
            )],
            &bad,
        );
        assert_eq!(r.ranges, vec![(1 << 20, 128 * 1024)]);
    }

    #[test]
    fn mountinfo_points_under_a_root() {
        let text = "36 35 98:0 / /mnt/g rw,noatime master:1 - ext4 /dev/nbd0p1 ro\n\
                    37 36 98:1 / /mnt/g/my\\040dir rw - ext4 /dev/nbd0p2 ro\n\
                    38 35 98:2 / /mnt/gx rw - ext4 /dev/x ro\n";
        assert_eq!(
            mount_points_under(text, Path::new("/mnt/g")),
            vec![PathBuf::from("/mnt/g/my dir")]
        );
    }
}
