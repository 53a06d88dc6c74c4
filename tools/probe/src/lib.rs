//! Disk discovery from sysfs.
//!
//! Everything here reads a sysfs tree given as a root path (`/sys` in the
//! appliance), so tests can build fake trees that mimic each controller. A
//! disk that vanishes half-way, or a file the driver does not provide, leaves
//! that field empty; nothing here panics or invents a value.

pub mod boot;
pub mod cli;
pub mod contents;
pub mod esxi;
mod identity;
pub mod render;
mod sysfs;

use serde::Serialize;
use std::path::Path;

pub use identity::parse_vpd_unit_serial;

/// How a disk is attached, as far as sysfs tells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Sata,
    Sas,
    Nvme,
    Scsi,
    Usb,
    Virtio,
    /// A logical drive of a RAID controller (megaraid_sas, hpsa, ...): the
    /// physical disks are hidden behind it.
    Raid,
    /// A VM disk, datastore file or image attached with `rescue attach`
    /// (`nbdN`): the model says what it serves.
    Attached,
    #[default]
    Unknown,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Sata => "SATA",
            Transport::Sas => "SAS",
            Transport::Nvme => "NVMe",
            Transport::Scsi => "SCSI",
            Transport::Usb => "USB",
            Transport::Virtio => "virtio",
            Transport::Raid => "RAID-LD",
            Transport::Attached => "attached",
            Transport::Unknown => "unknown",
        }
    }
}

/// The PCI function a disk hangs off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PciFunction {
    /// Bus address, e.g. `0000:00:1f.2`.
    pub slot: String,
    /// `vendor:device` in hex, e.g. `1000:005b`.
    pub id: Option<String>,
    /// Kernel driver bound to the PCI function.
    pub driver: Option<String>,
}

/// Read/write counters from `/sys/block/<dev>/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IoCounters {
    pub reads_completed: u64,
    pub sectors_read: u64,
    pub writes_completed: u64,
    pub sectors_written: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Kernel name, e.g. `sda1`.
    pub name: String,
    pub number: Option<u32>,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub read_only: bool,
    /// Filled by [`contents::fill`].
    pub contents: Option<contents::Holds>,
    /// The GPT partition type of this slot, when the disk has a GPT.
    pub type_name: Option<String>,
}

/// One whole disk as the kernel sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Kernel name, e.g. `sda`, `nvme0n1`.
    pub name: String,
    /// Device node, e.g. `/dev/sda`.
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    /// World-wide name / EUI as the kernel reports it (`wwid`).
    pub wwn: Option<String>,
    pub transport: Transport,
    /// The storage driver that presents the disk (scsi host `proc_name`,
    /// `virtio_blk`, `nvme`, ...).
    pub driver: Option<String>,
    pub pci: Option<PciFunction>,
    /// SCSI host:channel:target:lun, where it applies.
    pub hctl: Option<String>,
    pub rotational: Option<bool>,
    pub removable: bool,
    /// The block layer's read-only flag (`/sys/block/<dev>/ro`).
    pub read_only: bool,
    pub io: IoCounters,
    pub partitions: Vec<Partition>,
    /// Things worth telling the user (zero size, logical drive, ...).
    pub notes: Vec<String>,
    /// Filled by [`contents::fill`]; None when not looked at.
    pub health: Option<health::Health>,
    pub contents: Option<contents::Holds>,
    /// The partition table as on disk (GPT headers' state, slots, ESXi layout).
    pub partition_table: Option<gpt::Summary>,
    /// The ESXi builds in the boot banks, for an ESXi boot disk.
    pub esxi: Option<esxi::EsxiBoot>,
    /// A drive with removable media (CD/DVD, a BMC's virtual media slot, a
    /// card reader) that holds none: opening it failed with ENOMEDIUM.
    /// Its size is then 0, whatever placeholder the driver reported.
    pub no_medium: bool,
}

/// Lists the disks with their health and contents: sysfs for identity, then
/// small read-only reads of each disk through the nodes in `dev_dir`.
pub fn survey(sysfs: &Path, dev_dir: &Path) -> (Vec<Disk>, Vec<String>) {
    let (mut disks, problems) = list_disks(sysfs);
    contents::fill(&mut disks, dev_dir);
    (disks, problems)
}

/// Lists the disks under `sysfs` (normally `/sys`), sorted by name, and the
/// problems met on the way (one line each). Reads sysfs only.
pub fn list_disks(sysfs: &Path) -> (Vec<Disk>, Vec<String>) {
    let names = match blockdev::sys::block_devices(sysfs, blockdev::sys::Scope::Disks) {
        Ok(n) => n,
        Err(e) => return (Vec::new(), vec![e.to_string()]),
    };
    let mut disks = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match probe_disk(sysfs, &name) {
            Ok(d) => disks.push(d),
            Err(e) => problems.push(format!("{name}: {e} (disk vanished during probe?)")),
        }
    }
    (disks, problems)
}

/// Reads one disk `name` from `sysfs/block/name`.
pub fn probe_disk(sysfs: &Path, name: &str) -> std::io::Result<Disk> {
    let dir = sysfs.join("block").join(name);
    let real = std::fs::canonicalize(&dir)?;
    let sectors: u64 = sysfs::read_parsed(&dir.join("size")).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no readable size attribute")
    })?;
    let logical = sysfs::read_parsed(&dir.join("queue/logical_block_size")).unwrap_or(512u32);
    let physical = sysfs::read_parsed(&dir.join("queue/physical_block_size")).unwrap_or(logical);
    let mut disk = Disk {
        name: name.to_string(),
        path: format!("/dev/{name}"),
        size_bytes: sectors.saturating_mul(512),
        logical_sector_size: logical,
        physical_sector_size: physical,
        vendor: None,
        model: None,
        serial: None,
        firmware: None,
        wwn: None,
        transport: Transport::Unknown,
        driver: None,
        pci: None,
        hctl: None,
        rotational: sysfs::read_parsed::<u8>(&dir.join("queue/rotational")).map(|v| v != 0),
        removable: sysfs::read_parsed::<u8>(&dir.join("removable")) == Some(1),
        read_only: sysfs::read_parsed::<u8>(&dir.join("ro")) == Some(1),
        io: sysfs::read_io_counters(&dir.join("stat")),
        partitions: partitions(sysfs, name),
        notes: Vec::new(),
        health: None,
        contents: None,
        partition_table: None,
        esxi: None,
        no_medium: false,
    };
    identity::fill(sysfs, &dir, &real, &mut disk);
    if name.starts_with("nbd") {
        disk.transport = Transport::Attached;
        match attach::record_of(&attach::Paths::system(), name) {
            Some(r) => {
                disk.model = Some(r.what);
                if let Some(m) = r.map {
                    disk.notes
                        .push(format!("unrescued areas per {m} read as I/O errors"));
                }
            }
            None => disk
                .notes
                .push("an NBD device not attached by rescue attach".into()),
        }
    }
    if disk.size_bytes == 0 {
        disk.notes
            .push("size is 0: no medium, or the device did not report a capacity".into());
    }
    if disk.transport == Transport::Raid {
        disk.notes.push(format!(
            "logical drive of a RAID controller ({}): the physical disks behind it are not visible",
            disk.driver.as_deref().unwrap_or("unknown driver")
        ));
    }
    Ok(disk)
}

fn partitions(sysfs: &Path, disk: &str) -> Vec<Partition> {
    let dir = sysfs.join("block").join(disk);
    blockdev::sys::partitions(sysfs, disk)
        .into_iter()
        .filter_map(|(number, name)| {
            let p = dir.join(&name);
            Some(Partition {
                number: Some(number),
                start_bytes: sysfs::read_parsed::<u64>(&p.join("start"))?.saturating_mul(512),
                size_bytes: sysfs::read_parsed::<u64>(&p.join("size"))?.saturating_mul(512),
                read_only: sysfs::read_parsed::<u8>(&p.join("ro")) == Some(1),
                name,
                contents: None,
                type_name: None,
            })
        })
        .collect()
}

/// A PCI mass-storage controller (class 01xxxx), whether or not any disk
/// showed up behind it: a controller without a driver, or with a driver but
/// no disks, is itself worth telling the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageController {
    pub slot: String,
    /// `vendor:device` in hex.
    pub id: String,
    /// PCI class code, e.g. `010400` (RAID), `010601` (AHCI), `010802` (NVMe).
    pub class: String,
    pub kind: &'static str,
    /// The bound driver; None when no driver claimed it.
    pub driver: Option<String>,
}

/// Names for the PCI storage subclasses (PCI Code and ID Assignment spec).
fn storage_kind(class: &str) -> &'static str {
    match class.get(0..4) {
        Some("0100") => "SCSI",
        Some("0101") => "IDE",
        Some("0104") => "RAID",
        Some("0106") => "SATA",
        Some("0107") => "SAS",
        Some("0108") => "NVMe",
        Some("0105") => "ATA (ADMA)",
        _ => "storage",
    }
}

pub fn list_storage_controllers(sysfs: &Path) -> Vec<StorageController> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(sysfs.join("bus/pci/devices")) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let Some(class) = sysfs::read_trimmed(&dir.join("class")) else {
            continue;
        };
        let class = class.trim_start_matches("0x").to_string();
        if !class.starts_with("01") {
            continue;
        }
        let hex = |f: &str| {
            sysfs::read_trimmed(&dir.join(f))
                .map(|v| v.trim_start_matches("0x").to_string())
                .unwrap_or_else(|| "????".into())
        };
        out.push(StorageController {
            slot: e.file_name().to_string_lossy().into_owned(),
            id: format!("{}:{}", hex("vendor"), hex("device")),
            kind: storage_kind(&class),
            class,
            driver: sysfs::link_name(&dir.join("driver")),
        });
    }
    out.sort_by(|a, b| a.slot.cmp(&b.slot));
    out
}
