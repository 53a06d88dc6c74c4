//! What `rescue attach` and `rescue export` can serve, opened as the user
//! named it: a VM disk through its snapshot chain (a .vmdk here or inside
//! a datastore), any other file inside a datastore, or an image file or
//! device here.

use blockdev::BlockDevice;
use std::path::Path;
use std::sync::Arc;

/// Opens `source` for [`attach::serve`]; `vmfs` names the datastore's
/// devices when the source is inside a VMFS volume.
pub fn open(source: &str, vmfs: &[String]) -> Result<attach::Source, String> {
    let lower = source.to_ascii_lowercase();
    if lower.ends_with(".vmdk") && !lower.ends_with("-flat.vmdk") {
        return open_vmdk(source, vmfs);
    }
    if !vmfs.is_empty() {
        let opened = vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: vmfs,
            ..Default::default()
        })
        .map_err(|e| e.message)?;
        let mut notes = opened.notes;
        notes.extend(opened.volume.warnings.iter().cloned());
        let file = vmfs::vmdkfiles::VolumeFile::open(Arc::new(opened.volume), source)
            .map_err(|e| format!("{source}: {e}"))?;
        return Ok(attach::Source {
            device: Arc::new(file),
            what: format!("file {} in the datastore on {}", source, vmfs.join(",")),
            source: source.to_string(),
            notes,
        });
    }
    let dev = blockdev::Device::open(source).map_err(|e| e.to_string())?;
    let kind = if Path::new(source).starts_with("/dev") {
        "device"
    } else {
        "image"
    };
    Ok(attach::Source {
        device: Arc::new(dev),
        what: format!("{kind} {source}"),
        source: source.to_string(),
        notes: Vec::new(),
    })
}

fn open_vmdk(source: &str, vmfs: &[String]) -> Result<attach::Source, String> {
    let mut notes = Vec::new();
    let (files, name): (Box<dyn vmdk::Files>, String) = if vmfs.is_empty() {
        let (dir, name) = vmdk::HostDir::of(Path::new(source));
        (Box::new(dir), name)
    } else {
        let (folder, name, opened) = vmfs::vmdkfiles::disk_in_volume(vmfs, source)?;
        notes.extend(opened);
        (Box::new(folder), name)
    };
    let disk = vmdk::VirtualDisk::open(files.as_ref(), &name).map_err(|e| e.to_string())?;
    if let Some(lun) = disk.raw_device_maps().into_iter().next() {
        return Err(lun);
    }
    notes.extend(disk.warnings.iter().cloned());
    let levels = disk.levels().len();
    let top = disk.top();
    let what = format!(
        "VMDK {} ({})",
        short_path(source),
        screen::plural(levels as u64, "level", "levels")
    );
    let device: Arc<dyn BlockDevice> = Arc::new(vmdk::DiskDevice::new(
        Arc::new(disk),
        top,
        source.to_string(),
    ));
    Ok(attach::Source {
        device,
        what,
        source: source.to_string(),
        notes,
    })
}

/// The VM folder and the file: `vm1/vm1.vmdk`.
fn short_path(p: &str) -> String {
    let parts: Vec<&str> = p.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_paths_name_folder_and_file() {
        assert_eq!(
            super::short_path("/vmfs/volumes/ds1/vm1/vm1.vmdk"),
            "vm1/vm1.vmdk"
        );
        assert_eq!(super::short_path("vm1.vmdk"), "vm1.vmdk");
    }
}
