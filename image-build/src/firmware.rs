//! Firmware for the shipped modules (issue 21): the files each module may
//! ask for (the `firmware=` entries of its `.modinfo` section, what
//! `modinfo -F firmware` prints), taken from Debian's non-free-firmware
//! packages, and a list of the ones no package holds, written into the
//! image as `/lib/firmware/MISSING` (format: [`kmod::firmware`]) so that
//! PID 1 can say so when such a device's driver is loaded.
//!
//! The packages come through a private apt configuration ([`AptConfig`]:
//! the system's own sources may have only `main`), with the system's
//! suite (`VERSION_CODENAME` of /etc/os-release) and mirror. A download
//! that fails (offline) does not fail the build: what it would have held
//! is listed as missing, with a warning.
//!
//! Only the files named are shipped, following symlinks (the link is
//! kept under its name, its target shipped too): `intel/ice/ddp/ice.pkg`
//! is a link to `ice-1.3.30.0.pkg`. For the drivers in [`NEWEST_ONLY`]
//! only the newest version of each file that a package holds is shipped.

use crate::debprog::Added;
use crate::{fetch_package_with, run, CpioEntry, Error, KernelTree};
use kmod::firmware::Missing;
use kmod::ModuleIndex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Debian's firmware packages that hold what the NIC drivers of
/// [`crate::DEFAULT_MODULES`] name (Debian 12, non-free-firmware):
/// bnx2 -> `bnx2/*.fw`, bnx2x -> `bnx2x/*.fw`, r8169 -> `rtl_nic/*.fw`,
/// tg3 -> `tigon/*.bin` and ice -> `intel/ice/ddp/ice.pkg` (both in the
/// 13 MB firmware-misc-nonfree, of which only those files are shipped).
/// A file in none of them is listed as missing.
pub const PACKAGES: &[&str] = &[
    "firmware-bnx2",
    "firmware-bnx2x",
    "firmware-realtek",
    "firmware-misc-nonfree",
];

/// Drivers that ask for the newest version of a firmware file first and
/// fall back to an older one only when it is missing, so shipping the
/// newest alone loses nothing. bnx2x (6.1, `bnx2x_init_firmware` in
/// bnx2x_main.c): per chip (e1, e1h, e2) it requests
/// `bnx2x/bnx2x-<chip>-7.13.21.0.fw`, and only if that fails
/// `...-7.13.15.0.fw` (the `_V15` names; both are MODULE_FIRMWARE).
/// The files of such a driver are grouped by name without the version
/// (`bnx2x/bnx2x-e2-` + `.fw`); of each group the newest one a package
/// holds is shipped and the other versions are left out, neither shipped
/// nor missing (the driver loads the shipped one). When no version is
/// held, all are missing.
pub const NEWEST_ONLY: &[&str] = &["bnx2x"];

/// Where the missing list goes in the image.
pub const MISSING_FILE: &str = "lib/firmware/MISSING";

/// One firmware file a shipped module names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub module: String,
    /// Relative to /lib/firmware.
    pub file: String,
}

/// An extracted firmware package: its name and its `lib/firmware`
/// directory (`usr/lib/firmware` in newer Debian releases).
#[derive(Clone, Debug)]
pub struct Root {
    pub package: String,
    pub dir: PathBuf,
}

/// What [`select`] decided.
#[derive(Debug, Default)]
pub struct Selection {
    /// Files and symlinks under lib/firmware, plus [`MISSING_FILE`].
    pub entries: Vec<CpioEntry>,
    /// One per shipped file or link, for the size report.
    pub added: Vec<Added>,
    pub missing: Vec<Missing>,
    /// Versions left out because another version of the same file is
    /// shipped ([`NEWEST_ONLY`]).
    pub other_versions: Vec<Wanted>,
}

/// The `.modinfo` section of a 64-bit little-endian ELF relocatable
/// (a `.ko`). ELF64 header: e_shoff u64 at 0x28, e_shentsize u16 at 0x3A,
/// e_shnum u16 at 0x3C, e_shstrndx u16 at 0x3E. Section header (64
/// bytes): sh_name u32 at 0 (offset into the section-name string table),
/// sh_offset u64 at 24, sh_size u64 at 32.
pub fn modinfo_section(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let past =
        |what: &str, o: usize| format!("ELF {what} at {o}: past the end ({} bytes)", bytes.len());
    let u16_at = |o: usize, what: &str| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| past(what, o))
    };
    let u32_at = |o: usize, what: &str| {
        o.checked_add(4)
            .and_then(|e| bytes.get(o..e))
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| past(what, o))
    };
    let usize_at = |o: usize, what: &str| -> Result<usize, String> {
        let v = o
            .checked_add(8)
            .and_then(|e| bytes.get(o..e))
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .ok_or_else(|| past(what, o))?;
        usize::try_from(v).map_err(|_| format!("ELF {what} at {o}: {v} is too large"))
    };
    let slice = |off: usize, size: usize, what: &str| {
        off.checked_add(size)
            .and_then(|e| bytes.get(off..e))
            .ok_or_else(|| {
                format!(
                    "ELF {what}: {size} bytes at {off} run past the end ({} bytes)",
                    bytes.len()
                )
            })
    };
    let shoff = usize_at(0x28, "e_shoff")?;
    let shentsize = usize::from(u16_at(0x3A, "e_shentsize")?);
    let shnum = usize::from(u16_at(0x3C, "e_shnum")?);
    let shstrndx = usize::from(u16_at(0x3E, "e_shstrndx")?);
    if shentsize < 64 {
        return Err(format!(
            "ELF e_shentsize at 0x3A: expected at least 64, found {shentsize}"
        ));
    }
    if shstrndx >= shnum {
        return Err(format!(
            "ELF e_shstrndx at 0x3E: {shstrndx} is not below e_shnum {shnum}"
        ));
    }
    let header = |i: usize| -> Result<usize, String> {
        i.checked_mul(shentsize)
            .and_then(|x| x.checked_add(shoff))
            .ok_or_else(|| format!("ELF section header {i}: offset overflows"))
    };
    let strtab_h = header(shstrndx)?;
    let strtab = slice(
        usize_at(strtab_h + 24, "section-name table sh_offset")?,
        usize_at(strtab_h + 32, "section-name table sh_size")?,
        "section-name table",
    )?;
    for i in 0..shnum {
        let h = header(i)?;
        let name_off = u32_at(h, "sh_name")? as usize;
        let Some(name) = strtab.get(name_off..) else {
            continue;
        };
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if &name[..end] == b".modinfo" {
            return slice(
                usize_at(h + 24, ".modinfo sh_offset")?,
                usize_at(h + 32, ".modinfo sh_size")?,
                ".modinfo section",
            );
        }
    }
    Err("ELF: no .modinfo section".into())
}

/// The values of `key` in a `.modinfo` section (NUL-separated
/// `key=value` strings), in order.
pub fn modinfo_values(section: &[u8], key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    section
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter_map(|s| s.strip_prefix(prefix.as_str()))
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// The firmware each of `modules` names, sorted by module and file. A
/// module that is not an ELF file (compressed) is asked of `modinfo`.
pub fn firmware_names(
    tree: &KernelTree,
    index: &ModuleIndex,
    modules: &[String],
) -> Result<Vec<Wanted>, Error> {
    let mut out = BTreeSet::new();
    for m in modules {
        let rel = index
            .relative_path_of(m)
            .ok_or_else(|| format!("module {m} has no path in modules.dep"))?;
        let path = tree.modules_dir.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let files = if bytes.starts_with(b"\x7fELF") {
            let section =
                modinfo_section(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            modinfo_values(section, "firmware")
        } else {
            run(Command::new("modinfo").args(["-F", "firmware"]).arg(&path))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        };
        for file in files {
            out.insert(Wanted {
                module: kmod::normalize(m),
                file,
            });
        }
    }
    Ok(out.into_iter().collect())
}

/// `bnx2x/bnx2x-e2-7.13.21.0.fw` -> (`bnx2x/bnx2x-e2-`, [7, 13, 21, 0],
/// `.fw`): the name without its version, and the version; None when the
/// last `-` is not followed by a dotted number and an extension.
pub fn split_version(file: &str) -> Option<(String, Vec<u64>, String)> {
    let (head, tail) = file.rsplit_once('-')?;
    // The extension is what follows the last dot unless that is a number.
    let (ver, ext) = match tail.rfind('.') {
        Some(i) if !tail[i + 1..].bytes().all(|b| b.is_ascii_digit()) => (&tail[..i], &tail[i..]),
        _ => (tail, ""),
    };
    let nums: Option<Vec<u64>> = ver.split('.').map(|p| p.parse().ok()).collect();
    Some((format!("{head}-"), nums?, ext.to_string()))
}

/// Lexically joins `rel` (a link target) to directory `base`, both
/// relative to the firmware directory; None when it climbs out of it.
fn join_inside(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut parts: Vec<String> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// The root holding `file` (a file or a link), preferring `prefer`.
fn holder(roots: &[Root], file: &str, prefer: Option<usize>) -> Option<usize> {
    let has = |i: usize| roots[i].dir.join(file).symlink_metadata().is_ok();
    prefer
        .filter(|&i| has(i))
        .or_else(|| (0..roots.len()).find(|&i| has(i)))
}

/// The entries for `file` in root `at`: links followed (at most 8),
/// each kept, and the final file. Err names what is wrong.
fn resolve(roots: &[Root], file: &str, at: usize) -> Result<Vec<(CpioEntry, Added)>, String> {
    let mut out = Vec::new();
    let (mut rel, mut at) = (file.to_string(), at);
    for _ in 0..8 {
        let path = roots[at].dir.join(&rel);
        let meta = path
            .symlink_metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let image_path = format!("lib/firmware/{rel}");
        let added = |bytes: u64| Added {
            path: image_path.clone(),
            bytes,
            package: roots[at].package.clone(),
        };
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // An absolute target names the firmware directory of the
            // system the package is installed on.
            let (next, text) = match ["/lib/firmware", "/usr/lib/firmware"]
                .iter()
                .find_map(|p| target.strip_prefix(p).ok())
            {
                Some(inside) => {
                    let n = join_inside(Path::new(""), inside);
                    (
                        n.clone(),
                        n.map(|n| format!("/lib/firmware/{}", n.display())),
                    )
                }
                None if target.is_absolute() => (None, None),
                None => {
                    let base = Path::new(&rel).parent().unwrap_or(Path::new(""));
                    (
                        join_inside(base, &target),
                        Some(target.to_string_lossy().into_owned()),
                    )
                }
            };
            let (Some(next), Some(text)) = (next, text) else {
                return Err(format!(
                    "{}: link to {} leaves the firmware directory",
                    path.display(),
                    target.display()
                ));
            };
            out.push((CpioEntry::symlink(&image_path, &text), added(0)));
            rel = next.to_string_lossy().into_owned();
            at = holder(roots, &rel, Some(at)).ok_or_else(|| {
                format!(
                    "{}: link target {rel} is in no firmware package",
                    path.display()
                )
            })?;
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let n = bytes.len() as u64;
            out.push((CpioEntry::file(&image_path, 0o644, bytes), added(n)));
            return Ok(out);
        } else {
            return Err(format!("{}: neither a file nor a link", path.display()));
        }
    }
    Err(format!("lib/firmware/{file}: more than 8 links deep"))
}

/// A file's name without its version: (module, head, extension).
type Family = (String, String, String);

/// What to ship of `wanted` from `roots`: the files (and links) found,
/// the rest as missing (and in [`MISSING_FILE`]). `warnings` collects a
/// line per file that is there but cannot be shipped (then missing too).
pub fn select(wanted: &[Wanted], roots: &[Root], warnings: &mut Vec<String>) -> Selection {
    let mut sel = Selection::default();
    // Families of NEWEST_ONLY drivers: the newest held version stands for
    // the group; the other versions are left out.
    let mut families: BTreeMap<Family, Vec<(Vec<u64>, &Wanted)>> = BTreeMap::new();
    let mut plain = Vec::new();
    for w in wanted {
        match split_version(&w.file) {
            Some((head, ver, ext)) if NEWEST_ONLY.contains(&w.module.as_str()) => families
                .entry((w.module.clone(), head, ext))
                .or_default()
                .push((ver, w)),
            _ => plain.push(w),
        }
    }
    for (_, mut versions) in families {
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        match versions
            .iter()
            .position(|(_, w)| holder(roots, &w.file, None).is_some())
        {
            Some(i) => {
                plain.push(versions[i].1);
                sel.other_versions.extend(
                    versions
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, (_, w))| (*w).clone()),
                );
            }
            None => plain.extend(versions.iter().map(|(_, w)| *w)),
        }
    }
    plain.sort();
    let mut seen = BTreeSet::new();
    for w in plain {
        let found = holder(roots, &w.file, None).map(|at| resolve(roots, &w.file, at));
        match found {
            Some(Ok(items)) => {
                for (entry, added) in items {
                    if seen.insert(entry.path.clone()) {
                        sel.entries.push(entry);
                        sel.added.push(added);
                    }
                }
            }
            Some(Err(e)) => {
                warnings.push(format!("firmware {} for {}: {e}", w.file, w.module));
                sel.missing.push(missing(w));
            }
            None => sel.missing.push(missing(w)),
        }
    }
    sel.other_versions.sort();
    sel.entries.push(CpioEntry::file(
        MISSING_FILE,
        0o644,
        kmod::firmware::render_missing(&sel.missing).into_bytes(),
    ));
    sel
}

fn missing(w: &Wanted) -> Missing {
    Missing {
        module: w.module.clone(),
        file: w.file.clone(),
    }
}

/// The `lib/firmware` directory of an extracted package.
pub fn firmware_dir(package_root: &Path) -> PathBuf {
    let usr = package_root.join("usr/lib/firmware");
    if usr.is_dir() {
        usr
    } else {
        package_root.join("lib/firmware")
    }
}

/// `VERSION_CODENAME` of an os-release text.
pub fn suite_of(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.trim().strip_prefix("VERSION_CODENAME=")?;
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The mirror for `suite` in an apt sources text: deb822 (`URIs:` of the
/// stanza whose `Suites:` has `suite`) or one-line (`deb [opts] URI
/// suite ...`).
pub fn mirror_of(sources: &str, suite: &str) -> Option<String> {
    for stanza in sources.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        if let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) {
            if suites.split_whitespace().any(|s| s == suite) {
                return uris.split_whitespace().next().map(String::from);
            }
        }
    }
    sources.lines().find_map(|l| {
        let mut w = l.split_whitespace().peekable();
        if w.next()? != "deb" {
            return None;
        }
        if w.peek()?.starts_with('[') {
            while !w.next()?.ends_with(']') {}
        }
        let uri = w.next()?;
        (w.next()? == suite).then(|| uri.to_string())
    })
}

/// A private apt configuration under `dir` that knows only
/// `MIRROR SUITE non-free-firmware`; the system's is left alone.
pub struct AptConfig {
    pub dir: PathBuf,
    /// `-o Name=Value` pairs for apt-get.
    pub options: Vec<String>,
}

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl AptConfig {
    /// Writes `dir/sources.list` and the directories apt needs.
    pub fn new(dir: &Path, mirror: &str, suite: &str) -> Result<AptConfig, Error> {
        for d in ["lists/partial", "cache/archives/partial"] {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let list = dir.join("sources.list");
        std::fs::write(
            &list,
            format!("deb [signed-by={KEYRING}] {mirror} {suite} non-free-firmware\n"),
        )
        .map_err(|e| format!("{}: {e}", list.display()))?;
        let o = |k: &str, v: &Path| ["-o".to_string(), format!("{k}={}", v.display())];
        let options = [
            o("Dir::Etc::SourceList", &list),
            o("Dir::Etc::SourceParts", Path::new("/nonexistent")),
            o("Dir::State::Lists", &dir.join("lists")),
            o("Dir::Cache", &dir.join("cache")),
            o("Dir::State::status", Path::new("/dev/null")),
        ]
        .concat();
        Ok(AptConfig {
            dir: dir.to_path_buf(),
            options,
        })
    }

    /// The system's suite and mirror (default [`DEFAULT_MIRROR`]).
    pub fn for_system(dir: &Path) -> Result<AptConfig, Error> {
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let suite = suite_of(&os).ok_or("/etc/os-release has no VERSION_CODENAME")?;
        let sources = [
            "/etc/apt/sources.list.d/debian.sources",
            "/etc/apt/sources.list",
        ]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n\n");
        let mirror = mirror_of(&sources, &suite).unwrap_or_else(|| DEFAULT_MIRROR.into());
        AptConfig::new(dir, &mirror, &suite)
    }

    pub fn update(&self) -> Result<(), Error> {
        eprintln!(
            "image-build: apt-get update (non-free-firmware, {})",
            self.dir.join("sources.list").display()
        );
        run(Command::new("apt-get")
            .args(&self.options)
            .args(["update", "-q"]))
        .map(|_| ())
    }
}

/// The firmware packages' roots: each of [`PACKAGES`] fetched once into
/// `cache` (apt-get update only when one is not there yet). A package that
/// cannot be fetched is left out with a warning: its files become missing.
pub fn fetch_roots(cache: &Path, warnings: &mut Vec<String>) -> Vec<Root> {
    let done = |p: &str| cache.join(p).join(".extracted").exists();
    let mut options = Vec::new();
    if !PACKAGES.iter().all(|p| done(p)) {
        match AptConfig::for_system(&cache.join("apt")).and_then(|a| a.update().map(|()| a)) {
            Ok(a) => options = a.options,
            Err(e) => {
                warnings.push(format!(
                    "firmware packages cannot be fetched ({e}); their firmware is listed as missing"
                ));
            }
        }
    }
    let mut roots = Vec::new();
    for p in PACKAGES {
        if !done(p) && options.is_empty() {
            continue;
        }
        match fetch_package_with(cache, p, &options) {
            Ok(root) => roots.push(Root {
                package: p.to_string(),
                dir: firmware_dir(&root),
            }),
            Err(e) => warnings.push(format!("{p}: {e}; its firmware is listed as missing")),
        }
    }
    roots
}

#[cfg(test)]
mod tests;
