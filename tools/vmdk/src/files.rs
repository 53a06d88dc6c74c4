//! Where a VM disk's files are read from. A descriptor names its extent
//! files and its parent relative to its own folder; [`Files`] opens such a
//! name wherever the disk lies: a host folder ([`HostDir`]), or a folder of
//! a VMFS volume (an adapter in the front that has the volume open).

use crate::error::{Error, Result};
use blockdev::BlockDevice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opens the files of one VM disk by the names its descriptors use.
pub trait Files: Send + Sync {
    /// Opens `name` (as a descriptor writes it: relative to the folder of
    /// the disk first named, or absolute) for reading.
    fn open(&self, name: &str) -> Result<Arc<dyn BlockDevice>>;
    /// How `name` is shown in messages and listings.
    fn show(&self, name: &str) -> String;

    /// For a raw device mapping file: the LUN it maps, in words (vendor,
    /// model, identifier), when the source can tell (a VMFS volume keeps it
    /// in the mapping's descriptor). None elsewhere.
    fn mapped_lun(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }
}

/// The files of a disk in a folder on the host (a mounted destination, a
/// folder of copies).
pub struct HostDir {
    dir: PathBuf,
}

impl HostDir {
    pub fn new(dir: impl Into<PathBuf>) -> HostDir {
        HostDir { dir: dir.into() }
    }

    /// The folder and file name of `path`, for opening a disk by its path.
    pub fn of(path: &Path) -> (HostDir, String) {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (HostDir::new(dir), name)
    }

    /// Where `name` is: relative names in the folder; an absolute name
    /// that does not exist here (an ESXi path such as
    /// `/vmfs/volumes/datastore1/vm/vm.vmdk` in a copy's descriptor) by its
    /// file name in the folder.
    fn path_of(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            if p.exists() {
                return p.to_path_buf();
            }
            if let Some(file) = p.file_name() {
                return self.dir.join(file);
            }
        }
        self.dir.join(p)
    }
}

impl Files for HostDir {
    fn open(&self, name: &str) -> Result<Arc<dyn BlockDevice>> {
        let path = self.path_of(name);
        blockdev::Device::open(&path)
            .map(|d| Arc::new(d) as Arc<dyn BlockDevice>)
            .map_err(|e| Error::io(&path.display().to_string(), "opening", e))
    }

    fn show(&self, name: &str) -> String {
        self.path_of(name).display().to_string()
    }
}
