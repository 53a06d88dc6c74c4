//! The files of a VM disk inside a VMFS volume, for the vmdk reader: a
//! folder of the volume as a [`vmdk::Files`], each file as a block device
//! read through the volume (no copy; thin regions read as zeros).

use crate::inode::Inode;
use crate::volume::{Piece, Volume};
use blockdev::BlockDevice;
use std::sync::Arc;
use std::sync::OnceLock;

/// One file of a volume as a read-only block device.
pub struct VolumeFile {
    volume: Arc<Volume>,
    inode: Inode,
    name: String,
    /// The file's runs (stored or thin), worked out on first use; None
    /// when its block map could not be read.
    runs: OnceLock<Option<Vec<(u64, u64, bool)>>>,
}

impl VolumeFile {
    /// The file at `path` in `volume`.
    pub fn open(volume: Arc<Volume>, path: &str) -> crate::Result<VolumeFile> {
        let inode = volume.lookup(path)?;
        Ok(VolumeFile {
            volume,
            inode,
            name: path.to_string(),
            runs: OnceLock::new(),
        })
    }
}

impl BlockDevice for VolumeFile {
    fn size(&self) -> u64 {
        self.inode.size
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.volume
            .read_inode(&self.inode, buf, offset, 0)
            .map_err(|e| match e {
                // The medium's error (a bad sector under the file) keeps
                // its kind: a reader above tells it from bad metadata.
                crate::Error::Io { source, what } => {
                    std::io::Error::new(source.kind(), format!("{}: {what}: {source}", self.name))
                }
                e => std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.name),
                ),
            })
    }
    fn name(&self) -> &str {
        &self.name
    }
    /// Thin (never written) regions are holes.
    fn stored_at(&self, offset: u64) -> Option<(bool, u64)> {
        let runs = self.runs.get_or_init(|| {
            self.volume.pieces(&self.inode).ok().map(|pieces| {
                pieces
                    .into_iter()
                    .map(|(at, len, piece)| (at, len, piece != Piece::Zero))
                    .collect()
            })
        });
        let runs = runs.as_ref()?;
        let i = runs.partition_point(|(at, len, _)| at + len <= offset);
        let &(at, len, stored) = runs.get(i)?;
        (at <= offset).then(|| (stored, at + len - offset))
    }
}

/// A folder of a volume: where a VM's descriptor, its extents and (by
/// `parentFileNameHint`) its parents are.
pub struct VolumeFolder {
    volume: Arc<Volume>,
    /// The folder, `/`-separated from the volume's root.
    folder: String,
    /// The volume as the user named it, for messages.
    shown_as: String,
}

impl VolumeFolder {
    /// The folder of `path` (a file in the volume) and the file's name.
    pub fn of(volume: Arc<Volume>, path: &str, shown_as: String) -> (VolumeFolder, String) {
        let path = format!("/{}", path.trim_start_matches('/'));
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        (
            VolumeFolder {
                volume,
                folder: folder.to_string(),
                shown_as,
            },
            name.to_string(),
        )
    }

    /// The volume path of `name`: relative names in the folder; an ESXi
    /// absolute path (`/vmfs/volumes/<datastore>/vm/x.vmdk`) by its path
    /// after the datastore, else by its file name in the folder.
    fn path_of(&self, name: &str) -> String {
        if let Some(rest) = name.strip_prefix("/vmfs/volumes/") {
            let inside = rest.split_once('/').map(|(_, p)| format!("/{p}"));
            if let Some(p) = inside.filter(|p| self.volume.lookup(p).is_ok()) {
                return p;
            }
            let file = name.rsplit('/').next().unwrap_or(name);
            return format!("{}/{file}", self.folder);
        }
        if name.starts_with('/') {
            return name.to_string();
        }
        format!("{}/{name}", self.folder)
    }
}

impl vmdk::Files for VolumeFolder {
    fn open(&self, name: &str) -> vmdk::Result<Arc<dyn BlockDevice>> {
        let path = self.path_of(name);
        VolumeFile::open(self.volume.clone(), &path)
            .map(|f| Arc::new(f) as Arc<dyn BlockDevice>)
            .map_err(|e| {
                let kind = match e {
                    crate::Error::NotFound(_) => std::io::ErrorKind::NotFound,
                    _ => std::io::ErrorKind::Other,
                };
                vmdk::Error::io(
                    &self.show(name),
                    "opening",
                    std::io::Error::new(kind, e.to_string()),
                )
            })
    }

    fn show(&self, name: &str) -> String {
        format!("{}:{}", self.shown_as, self.path_of(name))
    }

    /// The LUN a mapping file's descriptor names: vendor, model and
    /// identifier, as ESXi recorded them.
    fn mapped_lun(&self, name: &str) -> Option<String> {
        let ino = self.volume.lookup(&self.path_of(name)).ok()?;
        if ino.ftype != crate::FileType::Rdm {
            return None;
        }
        let t = crate::RdmTarget::parse(&ino.data).ok()?;
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let device = words(&format!("{} {}", t.vendor, t.model));
        Some(format!(
            "{}with id \"{}\" (LUN {})",
            if device.is_empty() {
                String::new()
            } else {
                format!("{device} ")
            },
            words(&t.id),
            t.lun
        ))
    }
}

/// Opens the VMFS volume on `sources` and gives the folder of the disk at
/// `path` in it and the disk's file name, for [`vmdk::VirtualDisk::open`];
/// with what opening noticed (extents found elsewhere, copies chosen,
/// metadata warnings), one sentence each, for the front to show.
pub fn disk_in_volume(
    sources: &[String],
    path: &str,
) -> Result<(VolumeFolder, String, Vec<String>), String> {
    let opened = crate::open::open_volume(&crate::open::OpenRequest {
        sources,
        ..Default::default()
    })
    .map_err(|e| {
        let mut m = e.message.clone();
        for n in &e.notes {
            m.push_str(&format!("; {n}"));
        }
        m
    })?;
    let mut notes = opened.notes;
    notes.extend(opened.volume.warnings.iter().cloned());
    let (folder, name) = VolumeFolder::of(Arc::new(opened.volume), path, sources.join(","));
    Ok((folder, name, notes))
}
