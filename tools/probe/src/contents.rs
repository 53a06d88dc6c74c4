//! What is on a disk, from small reads at known offsets: filesystem and
//! volume signatures (fsmagic) and md superblocks (mdraid), for the whole
//! disk and each partition the kernel found. Health comes from the health
//! crate. All through read-only handles.

use crate::{Disk, Transport};
use serde::Serialize;
use std::path::Path;

/// What one block device (a disk or a partition) holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Holds {
    pub filesystem: Option<fsmagic::Signature>,
    pub md_member: Option<MdMember>,
    /// A VMFS volume (or one extent of a spanned one).
    pub vmfs: Option<vmfs::VmfsSignature>,
    /// A signature that is there but damaged, or a read that failed.
    pub problem: Option<String>,
    /// The device could not be opened: nothing was read, so nothing is
    /// known to be damaged.
    pub open_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MdMember {
    pub version: &'static str,
    pub array_uuid: String,
    pub name: Option<String>,
    pub level: String,
    pub raid_disks: u32,
    pub role: Option<u32>,
    pub role_state: &'static str,
    pub events: u64,
    pub checksum_ok: bool,
}

impl Holds {
    /// A few words for the overview: `ext4 "data"`, `md raid1 member`.
    pub fn short(&self) -> Option<String> {
        if let Some(v) = &self.vmfs {
            return Some(vmfs_short(v));
        }
        if let Some(m) = &self.md_member {
            return Some(format!("md {}", m.level));
        }
        if let Some(f) = &self.filesystem {
            return Some(match &f.label {
                Some(l) => format!("{} \"{}\"", f.kind.name(), l),
                None => f.kind.name().to_string(),
            });
        }
        // "damaged?" only after a read failed or found a broken signature;
        // a device that could not even be opened says so instead.
        if self.problem.is_some() {
            return Some("damaged?".to_string());
        }
        self.open_error.as_ref().map(|_| "cannot open".to_string())
    }
}

/// `VMFS5 "datastore1"`, `VMFS-L`, `VMFS6 extent` (no descriptor here).
pub fn vmfs_short(v: &vmfs::VmfsSignature) -> String {
    let name = if v.local {
        "VMFS-L".to_string()
    } else {
        format!("VMFS{}", v.version)
    };
    if v.fs_uuid.is_none() {
        format!("{name} extent")
    } else if v.label.is_empty() {
        name
    } else {
        format!("{name} \"{}\"", v.label)
    }
}

pub fn examine(path: &Path) -> Holds {
    let dev = match blockdev::Device::open(path) {
        Ok(d) => d,
        Err(e) => {
            return Holds {
                open_error: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    let mut holds = Holds::default();
    match mdraid::find_superblock(&dev) {
        Ok(Some(sb)) => {
            holds.md_member = Some(MdMember {
                version: sb.version,
                level: sb.level_name(),
                checksum_ok: sb.checksum_ok(),
                array_uuid: sb.array_uuid,
                name: sb.name,
                raid_disks: sb.raid_disks,
                role: sb.role,
                role_state: sb.role_state,
                events: sb.events,
            });
            if !holds.md_member.as_ref().is_some_and(|m| m.checksum_ok) {
                holds.problem = Some("md superblock checksum mismatch".into());
            }
        }
        Ok(None) => {}
        Err(e) => holds.problem = Some(e.to_string()),
    }
    // A 1.0/0.90 member starts with its data: a filesystem may show through.
    holds.filesystem = fsmagic::detect(&dev);
    holds.vmfs = vmfs::detect(&dev);
    holds
}

/// How to ask this disk about its health, if at all.
pub fn health_method(disk: &Disk) -> Option<health::Method> {
    match disk.transport {
        Transport::Nvme => Some(health::Method::NvmeAdmin),
        // libata disks and USB bridges translate ATA PASS-THROUGH.
        Transport::Sata | Transport::Usb => Some(health::Method::AtaPassThrough),
        _ => None,
    }
}

/// Fills health and contents of every disk, one thread per disk (the reads
/// are small; a slow disk must not hold up the others).
pub fn fill(disks: &mut [Disk], dev_dir: &Path) {
    fill_with(disks, dev_dir, &|node| std::fs::File::open(node).map(drop));
}

/// ENOMEDIUM (asm-generic/errno.h): the kernel's answer to opening a CD/DVD
/// drive, virtual media slot or card reader that holds no medium.
const ENOMEDIUM: i32 = 123;

/// [`fill`] with the first open of each device node given as `try_open`
/// (tests cannot make a file answer ENOMEDIUM).
pub fn fill_with(
    disks: &mut [Disk],
    dev_dir: &Path,
    try_open: &(dyn Fn(&Path) -> std::io::Result<()> + Sync),
) {
    std::thread::scope(|s| {
        for d in disks.iter_mut() {
            s.spawn(move || {
                // An empty drive is not a damaged disk: the sr driver reports
                // a placeholder capacity (0x1fffff sectors, 1 GiB) when READ
                // CAPACITY fails, and every read of it fails.
                if let Err(e) = try_open(&dev_dir.join(&d.name)) {
                    if e.raw_os_error() == Some(ENOMEDIUM) {
                        mark_no_medium(d);
                        return;
                    }
                }
                if d.size_bytes == 0 {
                    return;
                }
                let node = dev_dir.join(&d.name);
                d.health = Some(match health_method(d) {
                    Some(m) => health::query(&node, m),
                    None => health::Health::unknown(format!(
                        "{} disks cannot report health through {}",
                        d.transport.label(),
                        d.driver.as_deref().unwrap_or("this driver")
                    )),
                });
                d.contents = Some(examine(&node));
                if let Ok(dev) = blockdev::Device::open(&node) {
                    let table = gpt::summarize(&dev);
                    if table.table != "none" {
                        for p in d.partitions.iter_mut() {
                            p.type_name = table
                                .entries
                                .iter()
                                .find(|e| Some(e.slot) == p.number)
                                .map(|e| {
                                    e.type_name
                                        .map(String::from)
                                        .unwrap_or_else(|| e.type_guid.to_string())
                                });
                        }
                        if table.layout.is_some() {
                            let ss = u64::from(gpt::detect_sector_size(&dev));
                            d.esxi = Some(crate::esxi::read(&dev, ss, &table.entries));
                        }
                        d.partition_table = Some(table);
                    }
                }
                for p in d.partitions.iter_mut() {
                    p.contents = Some(examine(&dev_dir.join(&p.name)));
                }
            });
        }
    });
}

/// Records that `d` holds no medium: size 0 (the driver's figure is a
/// placeholder), no contents or health to look for.
fn mark_no_medium(d: &mut Disk) {
    d.no_medium = true;
    d.notes.retain(|n| !n.starts_with("size is 0"));
    d.notes.push(if d.size_bytes > 0 {
        format!(
            "no medium in the drive (the driver's size of {} bytes is a placeholder)",
            d.size_bytes
        )
    } else {
        "no medium in the drive".into()
    });
    d.size_bytes = 0;
}
