//! A VM disk with its snapshot chain: the level named (a descriptor, or a
//! hosted sparse file with its descriptor inside) and its parents, found
//! through `parentFileNameHint` relative to each child, read as one
//! virtual disk. Levels are numbered from the base (0) up; any level can be
//! read with what lies under it, so the state before a snapshot is there
//! too.

use crate::descriptor::{Descriptor, ExtentKind, MAX_DESCRIPTOR_BYTES};
use crate::error::{Error, Result};
use crate::extent::{ExtentReader, FlatExtent, Held, Run, ZeroExtent};
use crate::files::Files;

/// Snapshot chains deeper than this are refused as a loop.
pub const MAX_LEVELS: usize = 255;

/// One level: a descriptor and the readers of its extents.
pub struct Level {
    /// The descriptor's file as shown.
    pub name: String,
    pub descriptor: Descriptor,
    /// Each extent with the virtual offset it starts at.
    pub extents: Vec<(u64, Box<dyn ExtentReader>)>,
}

impl Level {
    /// Virtual size in bytes.
    pub fn capacity(&self) -> u64 {
        self.extents
            .last()
            .map(|(start, x)| start + x.size())
            .unwrap_or(0)
    }

    /// The extent holding virtual byte `offset`, and the offset in it.
    fn extent_at(&self, offset: u64) -> Option<(&dyn ExtentReader, u64)> {
        let i = self.extents.partition_point(|(start, _)| *start <= offset);
        let (start, x) = self.extents.get(i.checked_sub(1)?)?;
        (offset - start < x.size()).then(|| (x.as_ref(), offset - start))
    }

    /// What this level holds at `offset` (past the extents: zeros).
    pub fn map(&self, offset: u64) -> Result<(Run, Option<&dyn ExtentReader>)> {
        match self.extent_at(offset) {
            Some((x, within)) => {
                let run = x.map(within)?;
                if run.len == 0 {
                    return Err(Error::corrupt(
                        x.file().unwrap_or(&self.name),
                        within,
                        "the format reader gave an empty run",
                    ));
                }
                Ok((run, Some(x)))
            }
            None => Ok((
                Run {
                    len: u64::MAX - offset,
                    held: Held::Zero,
                },
                None,
            )),
        }
    }

    /// Bytes stored in this level's files.
    pub fn allocated(&self) -> Result<u64> {
        self.extents
            .iter()
            .try_fold(0u64, |n, (_, x)| Ok(n.saturating_add(x.allocated()?)))
    }

    /// What the extent readers noticed.
    pub fn notes(&self) -> Vec<String> {
        self.extents.iter().flat_map(|(_, x)| x.notes()).collect()
    }
}

/// Where a virtual byte comes from ([`VirtualDisk::locate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The level that holds it; None when no level does (zeros).
    pub level: Option<usize>,
    /// That level's extent file, when it has one.
    pub file: Option<String>,
    pub held: Held,
    /// Bytes from the offset on that are held the same way.
    pub len: u64,
}

/// A VM disk: levels from the base (0) to the one named.
pub struct VirtualDisk {
    levels: Vec<Level>,
    /// Chain problems that do not stop reading (a CID mismatch).
    pub warnings: Vec<String>,
}

impl VirtualDisk {
    /// Opens the disk `name` in `files` with all its parents.
    pub fn open(files: &dyn Files, name: &str) -> Result<VirtualDisk> {
        let mut levels: Vec<Level> = Vec::new();
        let mut warnings = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(n) = next.take() {
            let shown = files.show(&n);
            if seen.contains(&shown) {
                return Err(Error::Chain(format!(
                    "snapshot chain loops: {shown} is its own ancestor ({})",
                    seen.join(" -> ")
                )));
            }
            if seen.len() >= MAX_LEVELS {
                return Err(Error::Chain(format!(
                    "snapshot chain deeper than {MAX_LEVELS} levels from {}",
                    seen[0]
                )));
            }
            seen.push(shown.clone());
            let level = open_level(files, &n).map_err(|e| match (&e, levels.last()) {
                (Error::Io { source, .. }, Some(child))
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Error::Chain(format!(
                        "{}: its parent {shown} is missing ({e})",
                        child.name
                    ))
                }
                _ => e,
            })?;
            if let Some(child) = levels.last() {
                let (want, have) = (child.descriptor.parent_cid, level.descriptor.cid);
                if want.is_some() && have.is_some() && want != have {
                    warnings.push(format!(
                        "{}: parentCID {:08x} but its parent {} has CID {:08x} (common after a \
                         failed consolidation; read anyway)",
                        child.name,
                        want.unwrap_or_default(),
                        level.name,
                        have.unwrap_or_default()
                    ));
                }
                if level.capacity() != child.capacity() {
                    warnings.push(format!(
                        "{} is {} bytes but its parent {} is {} bytes",
                        child.name,
                        child.capacity(),
                        level.name,
                        level.capacity()
                    ));
                }
            }
            next = level
                .descriptor
                .has_parent()
                .then(|| level.descriptor.parent_hint.clone())
                .flatten()
                .map(|hint| relative_to(&n, &hint));
            levels.push(level);
        }
        levels.reverse();
        Ok(VirtualDisk { levels, warnings })
    }

    /// The levels, base first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The level named when opening (the top).
    pub fn top(&self) -> usize {
        self.levels.len() - 1
    }

    /// The raw device mappings among the levels' extents, explained: such
    /// a disk's data is on a LUN, so there is nothing here to read.
    pub fn raw_device_maps(&self) -> Vec<String> {
        self.levels
            .iter()
            .flat_map(|l| &l.extents)
            .filter(|(_, x)| x.format() == "raw device map")
            .flat_map(|(_, x)| x.notes())
            .collect()
    }

    /// Virtual size in bytes (the top level's).
    pub fn capacity(&self) -> u64 {
        self.levels[self.top()].capacity()
    }

    /// Where virtual byte `offset` comes from when the disk is read as of
    /// level `top` (levels above are ignored).
    pub fn locate(&self, top: usize, offset: u64) -> Result<Located> {
        let mut len = u64::MAX;
        for level in (0..=top.min(self.top())).rev() {
            let (run, extent) = self.levels[level].map(offset)?;
            len = len.min(run.len);
            if run.held != Held::Unallocated {
                return Ok(Located {
                    level: extent.is_some().then_some(level),
                    file: extent.and_then(|x| x.file().map(str::to_string)),
                    held: run.held,
                    len,
                });
            }
        }
        Ok(Located {
            level: None,
            file: None,
            held: Held::Unallocated,
            len,
        })
    }

    /// Fills `buf` with the virtual bytes at `offset`, as of level `top`.
    /// Past the capacity reads as zeros.
    pub fn read_at(&self, top: usize, buf: &mut [u8], offset: u64) -> Result<()> {
        let top = top.min(self.top());
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = self.read_level(top, &mut buf[done..], at)?;
            done += n;
        }
        Ok(())
    }

    /// Reads what level `level` (or below) holds at `at`: as much of `buf`
    /// as one run of this level covers. Returns the bytes filled.
    fn read_level(&self, level: usize, buf: &mut [u8], at: u64) -> Result<usize> {
        let (run, extent) = self.levels[level].map(at)?;
        let n = (buf.len() as u64).min(run.len) as usize;
        let part = &mut buf[..n];
        match (&run.held, extent) {
            (Held::Zero, _) | (_, None) => part.fill(0),
            (Held::Unallocated, _) if level == 0 => part.fill(0),
            (Held::Unallocated, _) => {
                let mut done = 0;
                while done < n {
                    done += self.read_level(level - 1, &mut part[done..], at + done as u64)?;
                }
            }
            (_, Some(x)) => x.read(&run, 0, part)?,
        }
        Ok(n)
    }
}

/// `hint` (a parent named by a child) as a name for [`Files`]: relative to
/// the child's folder, or absolute.
fn relative_to(child: &str, hint: &str) -> String {
    if hint.starts_with('/') {
        return hint.to_string();
    }
    match child.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{hint}"),
        None => hint.to_string(),
    }
}

/// Opens one level: a text descriptor, or a file with a descriptor inside.
fn open_level(files: &dyn Files, name: &str) -> Result<Level> {
    let dev = files.open(name)?;
    let shown = files.show(name);
    let mut head = vec![0u8; (dev.size() as usize).min(MAX_DESCRIPTOR_BYTES)];
    crate::extent::read_exact(dev.as_ref(), &shown, "the start", &mut head, 0)?;
    let text = match crate::sparse::embedded_descriptor(&dev, &shown, &head)? {
        Some(t) => t,
        None if Descriptor::looks_like(&head) && dev.size() as usize <= MAX_DESCRIPTOR_BYTES => {
            String::from_utf8_lossy(&head).into_owned()
        }
        None => {
            return Err(Error::corrupt(
                &shown,
                0,
                "neither a VMDK descriptor nor a disk with one inside (name the small .vmdk \
                 descriptor, not its -flat, -delta or -sesparse data file)",
            ))
        }
    };
    let descriptor = Descriptor::parse(&text, &shown)?;
    let mut extents = Vec::new();
    let mut start = 0u64;
    for line in &descriptor.extents {
        let len = line.sectors.saturating_mul(512);
        let reader = open_extent(files, name, &shown, line, len)?;
        extents.push((start, reader));
        start = start.saturating_add(len);
    }
    Ok(Level {
        name: shown,
        descriptor,
        extents,
    })
}

fn open_extent(
    files: &dyn Files,
    level_name: &str,
    level_shown: &str,
    line: &crate::descriptor::ExtentLine,
    len: u64,
) -> Result<Box<dyn ExtentReader>> {
    let Some(file) = &line.file else {
        return Ok(Box::new(ZeroExtent { len }));
    };
    let name = relative_to(level_name, file);
    let shown = files.show(&name);
    let open = || {
        files.open(&name).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::Chain(format!("{level_shown}: its extent {shown} is missing"))
            }
            e => e,
        })
    };
    match &line.kind {
        ExtentKind::Flat => {
            let dev = open()?;
            Ok(Box::new(FlatExtent::new(
                shown,
                dev,
                line.offset.saturating_mul(512),
                len,
            )))
        }
        ExtentKind::Zero => Ok(Box::new(ZeroExtent { len })),
        ExtentKind::RawDeviceMap => Ok(Box::new(crate::extent::RawDeviceMapExtent {
            lun: files.mapped_lun(&name),
            mapping: shown,
            len,
        })),
        ExtentKind::Sparse => {
            let dev = open()?;
            crate::sparse::open(shown, dev, len)
        }
        ExtentKind::VmfsSparse => {
            let dev = open()?;
            crate::cowd::open(shown, dev, len)
        }
        ExtentKind::SeSparse => {
            let dev = open()?;
            crate::sesparse::open(shown, dev, len)
        }
        ExtentKind::Other(kind) => Err(Error::unsupported(
            level_shown,
            format!("extent type {kind} of {shown} is not a format this reader knows"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::HostDir;

    fn write(dir: &testkit::TempDir, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn a_flat_disk_of_two_extents_and_a_zero_extent_reads_as_one() {
        let d = testkit::TempDir::new("vmdk-flat");
        write(&d, "a-f001.vmdk", &[1u8; 1024]);
        write(&d, "a-f002.vmdk", &[9u8; 4096]);
        write(
            &d,
            "a.vmdk",
            b"# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\nRW 2 FLAT \"a-f001.vmdk\" 0\nRW 1 ZERO\nRW 2 FLAT \"a-f002.vmdk\" 4\n",
        );
        let disk = VirtualDisk::open(&HostDir::new(d.path()), "a.vmdk").unwrap();
        assert_eq!(disk.capacity(), 5 * 512);
        let mut buf = vec![0xEEu8; 5 * 512];
        disk.read_at(disk.top(), &mut buf, 0).unwrap();
        assert!(buf[..1024].iter().all(|&b| b == 1));
        assert!(buf[1024..1536].iter().all(|&b| b == 0));
        assert!(buf[1536..].iter().all(|&b| b == 9));
        let at = disk.locate(0, 1600).unwrap();
        assert_eq!(at.held, Held::Stored { offset: 2048 + 64 });
        assert!(at.file.unwrap().ends_with("a-f002.vmdk"));
        assert_eq!(disk.locate(0, 1100).unwrap().held, Held::Zero);
    }

    #[test]
    fn missing_extents_and_parents_and_loops_are_named() {
        let d = testkit::TempDir::new("vmdk-chain-errors");
        write(
            &d,
            "x.vmdk",
            b"createType=\"vmfs\"\nRW 8 VMFS \"x-flat.vmdk\"\n",
        );
        let files = HostDir::new(d.path());
        let e = VirtualDisk::open(&files, "x.vmdk").err().unwrap();
        assert!(e.to_string().contains("x-flat.vmdk is missing"), "{e}");
        write(
            &d,
            "c.vmdk",
            b"CID=2\nparentCID=1\nparentFileNameHint=\"p.vmdk\"\ncreateType=\"vmfs\"\nRW 1 ZERO\n",
        );
        let e = VirtualDisk::open(&files, "c.vmdk").err().unwrap();
        assert!(
            e.to_string().contains("its parent") && e.to_string().contains("p.vmdk"),
            "{e}"
        );
        write(
            &d,
            "p.vmdk",
            b"CID=1\nparentCID=2\nparentFileNameHint=\"c.vmdk\"\ncreateType=\"vmfs\"\nRW 1 ZERO\n",
        );
        let e = VirtualDisk::open(&files, "c.vmdk").err().unwrap();
        assert!(e.to_string().contains("loops"), "{e}");
    }

    #[test]
    fn a_cid_mismatch_is_a_warning_and_the_chain_reads() {
        let d = testkit::TempDir::new("vmdk-cid");
        write(&d, "base-flat.vmdk", &[5u8; 512]);
        write(&d, "base.vmdk", b"CID=aaaaaaaa\nparentCID=ffffffff\ncreateType=\"vmfs\"\nRW 1 VMFS \"base-flat.vmdk\"\n");
        write(&d, "top.vmdk", b"CID=bbbbbbbb\nparentCID=cccccccc\nparentFileNameHint=\"base.vmdk\"\ncreateType=\"vmfs\"\nRW 1 ZERO\n");
        let disk = VirtualDisk::open(&HostDir::new(d.path()), "top.vmdk").unwrap();
        assert_eq!(disk.levels().len(), 2);
        assert_eq!(disk.warnings.len(), 1, "{:?}", disk.warnings);
        assert!(disk.warnings[0].contains("parentCID cccccccc"));
        let mut buf = [1u8; 512];
        disk.read_at(0, &mut buf, 0).unwrap();
        assert_eq!(buf, [5u8; 512], "the base level on its own");
        disk.read_at(1, &mut buf, 0).unwrap();
        assert_eq!(
            buf, [0u8; 512],
            "the top level's ZERO extent hides the base"
        );
    }

    #[test]
    fn a_data_file_named_instead_of_its_descriptor_is_explained() {
        let d = testkit::TempDir::new("vmdk-not-descriptor");
        write(&d, "x-flat.vmdk", &[0u8; 4096]);
        let e = VirtualDisk::open(&HostDir::new(d.path()), "x-flat.vmdk")
            .err()
            .unwrap();
        assert!(e.to_string().contains("name the small .vmdk"), "{e}");
    }
}
