//! Opening the devices a scan or verify reads: the given paths, or every
//! disk and partition of the running system.

use crate::scan;
use blockdev::BlockDevice;

/// Opened devices with their disk/partition names.
pub struct Opened {
    pub devs: Vec<(String, blockdev::Device, Option<String>, Option<u32>)>,
    /// One message per device that could not be opened.
    pub errors: Vec<String>,
}

impl Opened {
    pub fn inputs(&self) -> Vec<scan::Input<'_>> {
        self.devs
            .iter()
            .map(|(name, d, disk, part)| {
                let mut i = scan::Input::new(name.clone(), d as &dyn BlockDevice);
                if disk.is_some() {
                    i.disk = disk.clone();
                    i.partition = *part;
                }
                i
            })
            .collect()
    }
}

/// Opens `targets` read-only, or every disk and partition when it is empty.
pub fn open_all(targets: &[String]) -> Opened {
    let list: Vec<(String, Option<String>, Option<u32>)> = if targets.is_empty() {
        system_block_devices()
    } else {
        targets.iter().map(|t| (t.clone(), None, None)).collect()
    };
    let mut o = Opened {
        devs: Vec::new(),
        errors: Vec::new(),
    };
    for (path, disk, part) in list {
        match blockdev::Device::open(&path) {
            Ok(d) => o.devs.push((path, d, disk, part)),
            Err(e) => o.errors.push(e.to_string()),
        }
    }
    o
}

/// Every disk and partition of the machine's data disks
/// ([`blockdev::sys::Scope::DataDisks`]): (/dev path, disk, partition number).
pub fn system_block_devices() -> Vec<(String, Option<String>, Option<u32>)> {
    let sys = std::path::Path::new("/sys");
    let mut out = Vec::new();
    for disk in blockdev::sys::system_disks(sys) {
        out.push((format!("/dev/{disk}"), None, None));
        for (n, name) in blockdev::sys::partitions(sys, &disk) {
            out.push((format!("/dev/{name}"), Some(disk.clone()), Some(n)));
        }
    }
    out
}

/// Scans every disk and partition of the running system.
pub fn scan_system() -> scan::ScanReport {
    let opened = open_all(&[]);
    scan::scan(&opened.inputs())
}
