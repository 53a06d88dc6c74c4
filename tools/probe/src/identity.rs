//! Who a disk is: transport, controller, vendor/model/serial, from the sysfs
//! path of the block device and the attributes drivers leave along it.
//!
//! Where serials live differs per driver (measured under QEMU with Debian's
//! 6.1 kernel): SCSI/SATA disks in VPD page 0x80 (`device/vpd_pg80`), NVMe on
//! the controller (`device/serial`), virtio-blk on the disk (`serial`), USB
//! mass storage on the USB device further up the path (`serial`).

use crate::sysfs::{link_name, read_trimmed};
use crate::{Disk, PciFunction, Transport};
use std::path::{Component, Path};

/// Storage drivers whose SCSI disks are logical drives of a RAID controller.
const RAID_DRIVERS: &[&str] = &["hpsa", "smartpqi", "aacraid", "arcmsr", "megaraid"];

/// megaraid_sas puts physical (JBOD) disks on channels 0-1 and logical drives
/// on channels 2 and up (MEGASAS_MAX_PD_CHANNELS in the driver).
const MEGARAID_FIRST_LD_CHANNEL: u32 = 2;

pub fn fill(sysfs: &Path, dir: &Path, real: &Path, disk: &mut Disk) {
    let device = dir.join("device");
    let components: Vec<String> = real
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();

    disk.hctl = components.iter().rev().find(|c| is_hctl(c)).cloned();
    let scsi_host = components
        .iter()
        .rev()
        .find(|c| c.strip_prefix("host").is_some_and(all_digits))
        .cloned();
    let host_driver = scsi_host
        .as_ref()
        .and_then(|h| read_trimmed(&sysfs.join("class/scsi_host").join(h).join("proc_name")));
    let has = |pred: &dyn Fn(&str) -> bool| components.iter().any(|c| pred(c));

    let (transport, driver) = if disk.name.starts_with("nvme") || has(&|c| c == "nvme") {
        (Transport::Nvme, Some("nvme".to_string()))
    } else if has(&|c| c.strip_prefix("usb").is_some_and(all_digits)) {
        (Transport::Usb, host_driver.clone())
    } else if has(&|c| c.strip_prefix("ata").is_some_and(all_digits)) {
        (
            Transport::Sata,
            host_driver.clone().or(Some("libata".into())),
        )
    } else if let Some(virtio) = components
        .iter()
        .rev()
        .find(|c| c.strip_prefix("virtio").is_some_and(all_digits))
    {
        let driver = host_driver.clone().or_else(|| {
            let vdir = ancestor_named(real, virtio)?;
            link_name(&vdir.join("driver"))
        });
        (Transport::Virtio, driver)
    } else if has(&|c| c.starts_with("end_device-")) {
        (Transport::Sas, host_driver.clone())
    } else if let Some(drv) = host_driver.clone() {
        let channel = disk
            .hctl
            .as_deref()
            .and_then(|h| h.split(':').nth(1))
            .and_then(|c| c.parse::<u32>().ok());
        let raid = RAID_DRIVERS.contains(&drv.as_str())
            || (drv == "megaraid_sas" && channel.is_some_and(|c| c >= MEGARAID_FIRST_LD_CHANNEL));
        if raid {
            (Transport::Raid, Some(drv))
        } else if drv == "megaraid_sas" || drv.starts_with("mpt") {
            (Transport::Sas, Some(drv))
        } else {
            (Transport::Scsi, Some(drv))
        }
    } else {
        (Transport::Unknown, None)
    };
    disk.transport = transport;
    disk.driver = driver;
    disk.pci = components
        .iter()
        .rev()
        .find(|c| is_pci_address(c))
        .and_then(|slot| {
            let pdir = ancestor_named(real, slot)?;
            let id = match (
                read_trimmed(&pdir.join("vendor")),
                read_trimmed(&pdir.join("device")),
            ) {
                (Some(v), Some(d)) => Some(format!(
                    "{}:{}",
                    v.trim_start_matches("0x"),
                    d.trim_start_matches("0x")
                )),
                _ => None,
            };
            Some(PciFunction {
                slot: slot.clone(),
                id,
                driver: link_name(&pdir.join("driver")),
            })
        });

    disk.vendor = read_trimmed(&device.join("vendor")).filter(|v| !v.starts_with("0x"));
    disk.model = read_trimmed(&device.join("model"));
    disk.firmware =
        read_trimmed(&device.join("rev")).or_else(|| read_trimmed(&device.join("firmware_rev")));
    disk.wwn = read_trimmed(&dir.join("wwid")).or_else(|| read_trimmed(&device.join("wwid")));
    disk.serial = read_trimmed(&dir.join("serial"))
        .or_else(|| read_trimmed(&device.join("serial")))
        .or_else(|| {
            std::fs::read(device.join("vpd_pg80"))
                .ok()
                .and_then(|b| parse_vpd_unit_serial(&b))
        })
        .or_else(|| {
            if transport != Transport::Usb {
                return None;
            }
            // The USB device (the one with idVendor) carries iSerial.
            real.ancestors()
                .find(|a| a.join("idVendor").exists())
                .and_then(|a| read_trimmed(&a.join("serial")))
        });
}

/// Unit Serial Number VPD page (SPC-4 7.8.15): byte 1 page code 0x80, bytes
/// 2..4 page length (big endian), then the serial as ASCII, maybe padded.
pub fn parse_vpd_unit_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([page[2], page[3]]) as usize;
    let body = page.get(4..4 + len.min(page.len() - 4))?;
    let s: String = String::from_utf8_lossy(body)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_hctl(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 4 && parts.iter().all(|p| all_digits(p))
}

/// `dddd:bb:dd.f` in hex.
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

fn ancestor_named<'a>(path: &'a Path, name: &str) -> Option<&'a Path> {
    path.ancestors()
        .find(|a| a.file_name().is_some_and(|f| f == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpd_serial_parsing() {
        let mut page = vec![0, 0x80, 0, 8];
        page.extend_from_slice(b"SER123  ");
        assert_eq!(parse_vpd_unit_serial(&page).as_deref(), Some("SER123"));
        assert_eq!(parse_vpd_unit_serial(&[0, 0x83, 0, 1, b'x']), None);
        assert_eq!(parse_vpd_unit_serial(&[0, 0x80]), None);
        // Length beyond the buffer: take what is there, no panic.
        assert_eq!(
            parse_vpd_unit_serial(&[0, 0x80, 0xff, 0xff, b'A']).as_deref(),
            Some("A")
        );
        assert_eq!(parse_vpd_unit_serial(&[0, 0x80, 0, 0]), None);
    }

    #[test]
    fn address_shapes() {
        assert!(is_pci_address("0000:00:1f.2"));
        assert!(!is_pci_address("0000:00:1g.2"));
        assert!(!is_pci_address("pci0000:00"));
        assert!(is_hctl("2:2:0:0"));
        assert!(!is_hctl("target2:2:0"));
    }
}
