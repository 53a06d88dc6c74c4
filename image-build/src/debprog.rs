//! Debian programs in the initramfs with what they need to run: the
//! program files from their package, glibc's dynamic loader (the
//! program's `PT_INTERP`, `/lib64/ld-linux-x86-64.so.2`, a symlink into
//! `/lib/x86_64-linux-gnu` as in `libc6`) and the closure of their
//! `DT_NEEDED` libraries, laid out as Debian lays them out; the loader
//! finds the libraries in its built-in `/lib/x86_64-linux-gnu` without an
//! `ld.so.cache`. Used for ntfs-3g ([`crate::ntfs3g`]) and dropbear
//! ([`crate::dropbear`]); a file both need (glibc) is in the image once.
//!
//! The packages are found from the program's own: each is
//! `apt-get download`ed (exact names, into one cache folder shared by
//! every program) only when a file is missing. A missing library is looked
//! for first in the package its soname names by Debian's policy
//! (`libfoo.so.N` in `libfooN`), then in the packages the ones fetched so
//! far depend on (`apt-cache depends`), in order.

use crate::{fetch_package, run, CpioEntry, Error};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Directories the dynamic loader searches by default (Debian's multiarch
/// glibc), in its order: where DT_NEEDED names are looked for.
pub const LIBRARY_DIRS: [&str; 4] = [
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib",
    "usr/lib",
];

/// One added file and what it costs, for the build's size report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// Path in the image.
    pub path: String,
    /// Bytes uncompressed (0 for a symlink).
    pub bytes: u64,
    /// The Debian package it comes from.
    pub package: String,
}

/// The `DT_NEEDED` names of a 64-bit little-endian ELF file, in order; an
/// empty list for a static one. Errors name the structure and offset.
///
/// ELF64 header: e_phoff u64 at 0x20, e_phentsize u16 at 0x36, e_phnum u16
/// at 0x38. Program header: p_type u32 at 0 (1 PT_LOAD, 2 PT_DYNAMIC),
/// p_offset u64 at 8, p_vaddr u64 at 16, p_filesz u64 at 32. The dynamic
/// section: 16-byte entries (d_tag i64, d_val u64) up to DT_NULL (0);
/// DT_NEEDED (1) is an offset into the string table at the address
/// DT_STRTAB (5) of length DT_STRSZ (10), mapped to a file offset through
/// the PT_LOAD segment that holds it.
pub fn elf_needed(bytes: &[u8]) -> Result<Vec<String>, String> {
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize, what: &str| -> Result<u16, String> {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("ELF {what} at {o}: past the end ({} bytes)", bytes.len()))
    };
    let u64_at = |o: usize, what: &str| -> Result<u64, String> {
        o.checked_add(8)
            .and_then(|end| bytes.get(o..end))
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("ELF {what} at {o}: past the end ({} bytes)", bytes.len()))
    };
    let u32_at = |o: usize, what: &str| -> Result<u32, String> {
        o.checked_add(4)
            .and_then(|end| bytes.get(o..end))
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("ELF {what} at {o}: past the end ({} bytes)", bytes.len()))
    };
    let phoff = u64_at(0x20, "e_phoff")? as usize;
    let phentsize = usize::from(u16_at(0x36, "e_phentsize")?);
    let phnum = usize::from(u16_at(0x38, "e_phnum")?);
    if phentsize < 56 && phnum > 0 {
        return Err(format!(
            "ELF e_phentsize {phentsize} at 0x36: expected at least 56"
        ));
    }
    // (p_type, p_offset, p_vaddr, p_filesz) of every program header.
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or("ELF program headers: offset overflows")?;
        phdrs.push((
            u32_at(ph, "p_type")?,
            u64_at(ph + 8, "p_offset")?,
            u64_at(ph + 16, "p_vaddr")?,
            u64_at(ph + 32, "p_filesz")?,
        ));
    }
    let Some(&(_, dyn_off, _, dyn_size)) = phdrs.iter().find(|p| p.0 == 2) else {
        return Ok(Vec::new());
    };
    let mut needed = Vec::new();
    let (mut strtab, mut strsz) = (None, None);
    let mut at = dyn_off as usize;
    let end = dyn_off.saturating_add(dyn_size) as usize;
    while at + 16 <= end {
        let tag = u64_at(at, "d_tag")?;
        let val = u64_at(at + 8, "d_val")?;
        match tag {
            0 => break,
            1 => needed.push(val),
            5 => strtab = Some(val),
            10 => strsz = Some(val),
            _ => {}
        }
        at += 16;
    }
    if needed.is_empty() {
        return Ok(Vec::new());
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err("ELF dynamic section: DT_NEEDED without DT_STRTAB/DT_STRSZ".into());
    };
    let file_off = phdrs
        .iter()
        .filter(|p| p.0 == 1)
        .find(|p| p.2 <= strtab && strtab - p.2 < p.3)
        .map(|p| p.1 + (strtab - p.2))
        .ok_or_else(|| format!("ELF DT_STRTAB 0x{strtab:x}: in no PT_LOAD segment"))?;
    let table = (file_off as usize)
        .checked_add(strsz as usize)
        .and_then(|e| bytes.get(file_off as usize..e))
        .ok_or_else(|| format!("ELF string table at {file_off} ({strsz} bytes): past the end"))?;
    needed
        .into_iter()
        .map(|off| {
            let s = table
                .get(off as usize..)
                .ok_or_else(|| format!("ELF DT_NEEDED {off}: past the string table"))?;
            let n = s
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("ELF DT_NEEDED {off}: unterminated"))?;
            Ok(String::from_utf8_lossy(&s[..n]).into_owned())
        })
        .collect()
}

/// An extracted package tree: where it is and its name.
pub struct Root {
    pub dir: PathBuf,
    pub package: String,
}

/// Resolves `path` (absolute inside the package trees) through symlinks
/// within the trees: the chain as (path in image, symlink target or None
/// for the file itself, package, bytes for the file).
type Chain = Vec<(String, Option<String>, String, Vec<u8>)>;

fn resolve(roots: &[Root], path: &str) -> Option<Chain> {
    let mut chain = Vec::new();
    let mut cur = normalize(Path::new(path))?;
    for _ in 0..16 {
        let root = roots
            .iter()
            .find(|r| std::fs::symlink_metadata(r.dir.join(&cur)).is_ok())?;
        let full = root.dir.join(&cur);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        let rel = cur.to_string_lossy().into_owned();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).ok()?;
            let next = if target.is_absolute() {
                normalize(&target)?
            } else {
                normalize(&cur.parent()?.join(&target))?
            };
            chain.push((
                rel,
                Some(target.to_string_lossy().into_owned()),
                root.package.clone(),
                Vec::new(),
            ));
            cur = next;
        } else {
            chain.push((rel, None, root.package.clone(), std::fs::read(&full).ok()?));
            return Some(chain);
        }
    }
    None
}

/// `p` relative to `/`, with `.` and `..` resolved lexically.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// What [`closure`] could not find in the package trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// A program itself.
    Program(String),
    /// A program's loader (PT_INTERP), as an absolute path.
    Loader { path: String, by: String },
    /// A library (a DT_NEEDED name) and who needs it.
    Library { name: String, by: String },
}

impl Missing {
    /// The Debian package names that may hold it, by the policy for
    /// shared library packages: `libfoo.so.N` is in `libfooN`, or
    /// `libfoo-N` when the name ends in a digit. Empty for what is not a
    /// library.
    pub fn likely_packages(&self) -> Vec<String> {
        let Missing::Library { name, .. } = self else {
            return Vec::new();
        };
        let Some((stem, version)) = name.split_once(".so.") else {
            return Vec::new();
        };
        let major = version.split('.').next().unwrap_or("");
        let stem = stem.to_ascii_lowercase().replace('_', "-");
        if stem.ends_with(|c: char| c.is_ascii_digit()) {
            vec![format!("{stem}-{major}")]
        } else {
            vec![format!("{stem}{major}")]
        }
    }

    fn describe(&self, roots: &[Root]) -> String {
        match self {
            Missing::Program(p) => format!("{p}: not in the packages {}", names(roots)),
            Missing::Loader { path, by } => {
                format!("{by}: its loader {path} is not in {}", names(roots))
            }
            Missing::Library { name, by } => format!(
                "{name} (needed by {by}) is in none of {LIBRARY_DIRS:?} of {}",
                names(roots)
            ),
        }
    }
}

/// The programs at `programs` (absolute, in the trees) with their
/// interpreters and the closure of their libraries, as initramfs entries
/// (symlinks kept as in the packages; a file needed by several programs
/// is there once), and what each costs; or the first thing that is not in
/// the trees.
pub fn closure(
    roots: &[Root],
    programs: &[&str],
) -> Result<(Vec<CpioEntry>, Vec<Added>), ClosureError> {
    let mut files: BTreeMap<String, CpioEntry> = BTreeMap::new();
    let mut added = Vec::new();
    let mut add = |chain: Chain, files: &mut BTreeMap<String, CpioEntry>| -> Vec<u8> {
        let mut body = Vec::new();
        for (path, link, package, bytes) in chain {
            if files.contains_key(&path) {
                if link.is_none() {
                    body = bytes;
                }
                continue;
            }
            let entry = match &link {
                Some(t) => CpioEntry::symlink(&path, t),
                None => CpioEntry::file(&path, 0o755, bytes.clone()),
            };
            added.push(Added {
                path: path.clone(),
                bytes: bytes.len() as u64,
                package,
            });
            files.insert(path, entry);
            if link.is_none() {
                body = bytes;
            }
        }
        body
    };
    let mut todo: Vec<(String, String)> = Vec::new();
    for &program in programs {
        let chain = resolve(roots, program).ok_or_else(|| Missing::Program(program.to_string()))?;
        let main = add(chain, &mut files);
        let interp = crate::elf_interpreter(&main).ok_or_else(|| {
            ClosureError::Other(format!(
                "{program}: no program interpreter (not a dynamic ELF file)"
            ))
        })?;
        let chain = resolve(roots, &interp).ok_or_else(|| Missing::Loader {
            path: interp.clone(),
            by: program.to_string(),
        })?;
        add(chain, &mut files);
        todo.extend(
            elf_needed(&main)
                .map_err(|e| ClosureError::Other(format!("{program}: {e}")))?
                .into_iter()
                .rev()
                .map(|n| (n, program.to_string())),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some((lib, by)) = todo.pop() {
        if !seen.insert(lib.clone()) {
            continue;
        }
        let chain = LIBRARY_DIRS
            .iter()
            .find_map(|d| resolve(roots, &format!("/{d}/{lib}")))
            .ok_or_else(|| Missing::Library {
                name: lib.clone(),
                by: by.clone(),
            })?;
        let bytes = add(chain, &mut files);
        for n in elf_needed(&bytes).map_err(|e| ClosureError::Other(format!("{lib}: {e}")))? {
            todo.push((n, lib.clone()));
        }
    }
    Ok((files.into_values().collect(), added))
}

/// Why [`closure`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClosureError {
    /// Something is not in the trees (another package may hold it).
    Missing(Missing),
    /// A file that cannot be used (not an ELF file, a bad header).
    Other(String),
}

impl From<Missing> for ClosureError {
    fn from(m: Missing) -> ClosureError {
        ClosureError::Missing(m)
    }
}

impl ClosureError {
    pub fn describe(&self, roots: &[Root]) -> String {
        match self {
            ClosureError::Missing(m) => m.describe(roots),
            ClosureError::Other(s) => s.clone(),
        }
    }
}

fn names(roots: &[Root]) -> String {
    roots
        .iter()
        .map(|r| r.package.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The packages `package` depends on (`Depends:` of `apt-cache depends`,
/// real packages only, in its order).
pub fn depends_of(package: &str) -> Result<Vec<String>, Error> {
    let out = run(Command::new("apt-cache").args(["depends", package]))?;
    Ok(parse_depends(&out))
}

/// The `Depends:` names in `apt-cache depends` output; virtual packages
/// (`<name>`) and the alternatives under them are left out.
pub fn parse_depends(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        let t = l.trim_start();
        let Some(d) = t
            .strip_prefix("Depends: ")
            .or_else(|| t.strip_prefix("|Depends: "))
        else {
            continue;
        };
        let d = d.trim();
        if d.starts_with('<') || d.is_empty() || out.iter().any(|o| o == d) {
            continue;
        }
        out.push(d.to_string());
    }
    out
}

/// `programs` (absolute paths) of Debian's `package` with their loader and
/// libraries, fetching (once, into `cache`) the packages that hold them;
/// the entries and what each file costs.
pub fn fetch_closure(
    cache: &Path,
    package: &str,
    programs: &[&str],
) -> Result<(Vec<CpioEntry>, Vec<Added>), Error> {
    fetch_closure_with(
        programs,
        package,
        &mut |p| fetch_package(cache, p),
        &mut depends_of,
    )
}

/// [`fetch_closure`] with the fetching and the dependency lookup given
/// (tests use local trees).
pub fn fetch_closure_with(
    programs: &[&str],
    package: &str,
    fetch: &mut dyn FnMut(&str) -> Result<PathBuf, Error>,
    depends: &mut dyn FnMut(&str) -> Result<Vec<String>, Error>,
) -> Result<(Vec<CpioEntry>, Vec<Added>), Error> {
    let mut roots = vec![Root {
        dir: fetch(package)?,
        package: package.to_string(),
    }];
    // Packages to look in next, in the order they were named.
    let mut candidates: Vec<String> = depends(package)?;
    loop {
        let missing = match closure(&roots, programs) {
            Ok(done) => return Ok(done),
            Err(ClosureError::Missing(m)) => m,
            Err(e) => return Err(e.describe(&roots)),
        };
        let fetched = |c: &String| roots.iter().any(|r| &r.package == c);
        let likely = missing.likely_packages();
        let next = candidates
            .iter()
            .find(|c| likely.contains(c) && !fetched(c))
            .or_else(|| candidates.iter().find(|c| !fetched(c)))
            .cloned();
        let Some(next) = next else {
            return Err(format!(
                "{} (and in none of the packages they depend on)",
                missing.describe(&roots)
            ));
        };
        roots.push(Root {
            dir: fetch(&next)?,
            package: next.clone(),
        });
        for d in depends(&next)? {
            if !candidates.contains(&d) {
                candidates.push(d);
            }
        }
    }
}
