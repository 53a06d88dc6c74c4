//! Probe on fake sysfs trees shaped like the ones Debian's 6.1 kernel builds
//! for each controller under QEMU (paths and attribute placement as measured).

use probe::{list_disks, Transport};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

struct FakeSys(PathBuf);

impl FakeSys {
    fn new(tag: &str) -> FakeSys {
        let p = std::env::temp_dir().join(format!("probe-sysfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("block")).unwrap();
        fs::create_dir_all(p.join("class/scsi_host")).unwrap();
        fs::create_dir_all(p.join("bus/pci/drivers")).unwrap();
        FakeSys(p)
    }
    fn write(&self, rel: &str, content: &[u8]) {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    fn link(&self, rel: &str, target: &str) {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }
    fn pci(&self, slot: &str, vendor: &str, device: &str, driver: &str) -> String {
        let dir = format!("devices/pci0000:00/{slot}");
        self.write(&format!("{dir}/vendor"), format!("0x{vendor}\n").as_bytes());
        self.write(&format!("{dir}/device"), format!("0x{device}\n").as_bytes());
        fs::create_dir_all(self.0.join("bus/pci/drivers").join(driver)).unwrap();
        self.link(
            &format!("{dir}/driver"),
            &self
                .0
                .join("bus/pci/drivers")
                .join(driver)
                .to_string_lossy(),
        );
        dir
    }
    /// A block device directory at `devpath` (relative) plus /sys/block/<name>.
    fn block(&self, devpath: &str, name: &str, sectors: u64, lbs: u32) {
        let d = format!("{devpath}/block/{name}");
        self.write(&format!("{d}/size"), format!("{sectors}\n").as_bytes());
        self.write(
            &format!("{d}/queue/logical_block_size"),
            format!("{lbs}\n").as_bytes(),
        );
        self.write(
            &format!("{d}/queue/physical_block_size"),
            format!("{lbs}\n").as_bytes(),
        );
        self.write(&format!("{d}/queue/rotational"), b"1\n");
        self.write(&format!("{d}/ro"), b"1\n");
        self.write(&format!("{d}/removable"), b"0\n");
        self.write(
            &format!("{d}/stat"),
            b"     120        0     9000      30        0        0        0        0        0       40       30\n",
        );
        self.link(
            &format!("{d}/device"),
            &self.0.join(devpath).to_string_lossy(),
        );
        self.link(&format!("block/{name}"), &self.0.join(&d).to_string_lossy());
    }
    fn scsi_host(&self, host: &str, proc_name: &str) {
        self.write(
            &format!("class/scsi_host/{host}/proc_name"),
            format!("{proc_name}\n").as_bytes(),
        );
    }
    fn scsi_ids(&self, devpath: &str, vendor: &str, model: &str, serial: Option<&str>) {
        self.write(
            &format!("{devpath}/vendor"),
            format!("{vendor:<8}\n").as_bytes(),
        );
        self.write(
            &format!("{devpath}/model"),
            format!("{model:<16}\n").as_bytes(),
        );
        self.write(&format!("{devpath}/rev"), b"2.5+\n");
        if let Some(s) = serial {
            let mut page = vec![0u8, 0x80, 0, s.len() as u8];
            page.extend_from_slice(s.as_bytes());
            self.write(&format!("{devpath}/vpd_pg80"), &page);
        }
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeSys {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn ahci_disk_has_serial_from_vpd_and_sata_transport() {
    let s = FakeSys::new("ahci");
    let pci = s.pci("0000:00:1f.2", "8086", "2922", "ahci");
    let dev = format!("{pci}/ata1/host0/target0:0:0/0:0:0:0");
    s.scsi_ids(&dev, "ATA", "QEMU HARDDISK", Some("AHCI-SER-1"));
    s.scsi_host("host0", "ahci");
    s.block(&dev, "sda", 131072, 512);
    s.write(&format!("{dev}/block/sda/sda1/partition"), b"1\n");
    s.write(&format!("{dev}/block/sda/sda1/start"), b"2048\n");
    s.write(&format!("{dev}/block/sda/sda1/size"), b"4096\n");
    s.write(&format!("{dev}/block/sda/sda1/ro"), b"1\n");
    let (disks, problems) = list_disks(s.path());
    assert!(problems.is_empty(), "{problems:?}");
    let d = &disks[0];
    assert_eq!(d.name, "sda");
    assert_eq!(d.size_bytes, 131072 * 512);
    assert_eq!(d.transport, Transport::Sata);
    assert_eq!(d.serial.as_deref(), Some("AHCI-SER-1"));
    assert_eq!(d.model.as_deref(), Some("QEMU HARDDISK"));
    assert_eq!(d.vendor.as_deref(), Some("ATA"));
    assert_eq!(d.hctl.as_deref(), Some("0:0:0:0"));
    let pci = d.pci.as_ref().unwrap();
    assert_eq!(pci.id.as_deref(), Some("8086:2922"));
    assert_eq!(pci.driver.as_deref(), Some("ahci"));
    assert!(d.read_only);
    assert_eq!(d.io.reads_completed, 120);
    assert_eq!(d.io.writes_completed, 0);
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(d.partitions[0].start_bytes, 2048 * 512);
    assert_eq!(d.partitions[0].number, Some(1));
}

#[test]
fn nvme_serial_and_model_come_from_the_controller() {
    let s = FakeSys::new("nvme");
    let pci = s.pci("0000:00:03.0", "1b36", "0010", "nvme");
    let ctrl = format!("{pci}/nvme/nvme0");
    s.write(&format!("{ctrl}/serial"), b"NVME-SER-7          \n");
    s.write(
        &format!("{ctrl}/model"),
        b"QEMU NVMe Ctrl                          \n",
    );
    s.write(&format!("{ctrl}/firmware_rev"), b"7.2     \n");
    // The namespace's block dir lives under the controller, without "block/".
    let ns = format!("{ctrl}/nvme0n1");
    s.write(&format!("{ns}/size"), b"2097152\n");
    s.write(&format!("{ns}/queue/logical_block_size"), b"4096\n");
    s.write(&format!("{ns}/wwid"), b"eui.0000000000000001\n");
    s.link(
        &format!("{ns}/device"),
        &s.path().join(&ctrl).to_string_lossy(),
    );
    s.link("block/nvme0n1", &s.path().join(&ns).to_string_lossy());
    let (disks, _) = list_disks(s.path());
    let d = &disks[0];
    assert_eq!(d.transport, Transport::Nvme);
    assert_eq!(d.serial.as_deref(), Some("NVME-SER-7"));
    assert_eq!(d.model.as_deref(), Some("QEMU NVMe Ctrl"));
    assert_eq!(d.firmware.as_deref(), Some("7.2"));
    assert_eq!(d.logical_sector_size, 4096);
    assert_eq!(d.physical_sector_size, 4096);
    assert_eq!(d.wwn.as_deref(), Some("eui.0000000000000001"));
    assert_eq!(d.size_bytes, 2097152 * 512);
}

#[test]
fn megaraid_logical_drive_is_said_to_be_one() {
    let s = FakeSys::new("megasas");
    let pci = s.pci("0000:00:04.0", "1000", "0078", "megaraid_sas");
    let dev = format!("{pci}/host2/target2:2:0/2:2:0:0");
    s.scsi_ids(&dev, "LSI", "MegaRAID SAS", Some("MEGA-1"));
    s.scsi_host("host2", "megaraid_sas");
    s.block(&dev, "sdb", 2048, 512);
    let (disks, _) = list_disks(s.path());
    let d = &disks[0];
    assert_eq!(d.transport, Transport::Raid);
    assert_eq!(d.driver.as_deref(), Some("megaraid_sas"));
    assert_eq!(d.pci.as_ref().unwrap().id.as_deref(), Some("1000:0078"));
    assert!(
        d.notes.iter().any(|n| n.contains("logical drive")),
        "{:?}",
        d.notes
    );
}

#[test]
fn virtio_blk_serial_is_on_the_disk_and_usb_serial_up_the_tree() {
    let s = FakeSys::new("virtio-usb");
    let pci = s.pci("0000:00:06.0", "1af4", "1001", "virtio-pci");
    s.write(&format!("{pci}/virtio2/.keep"), b"");
    fs::create_dir_all(s.path().join("bus/virtio/drivers/virtio_blk")).unwrap();
    s.link(
        &format!("{pci}/virtio2/driver"),
        &s.path()
            .join("bus/virtio/drivers/virtio_blk")
            .to_string_lossy(),
    );
    let vdisk = format!("{pci}/virtio2/block/vda");
    s.write(&format!("{vdisk}/size"), b"1024\n");
    s.write(&format!("{vdisk}/serial"), b"VIRT-9\n");
    s.link("block/vda", &s.path().join(&vdisk).to_string_lossy());

    let upci = s.pci("0000:00:07.0", "1b36", "000d", "xhci_hcd");
    let usbdev = format!("{upci}/usb2/2-1");
    s.write(&format!("{usbdev}/idVendor"), b"46f4\n");
    s.write(&format!("{usbdev}/serial"), b"USB-SER-3\n");
    let dev = format!("{usbdev}/2-1:1.0/host4/target4:0:0/4:0:0:0");
    s.scsi_ids(&dev, "QEMU", "QEMU HARDDISK", None);
    s.scsi_host("host4", "usb-storage");
    s.block(&dev, "sdc", 4096, 512);

    let (disks, problems) = list_disks(s.path());
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sdc", "vda"]);
    let usb = &disks[0];
    assert_eq!(usb.transport, Transport::Usb);
    assert_eq!(usb.serial.as_deref(), Some("USB-SER-3"));
    assert_eq!(usb.driver.as_deref(), Some("usb-storage"));
    let vda = &disks[1];
    assert_eq!(vda.transport, Transport::Virtio);
    assert_eq!(vda.serial.as_deref(), Some("VIRT-9"));
    assert_eq!(vda.driver.as_deref(), Some("virtio_blk"));
}

#[test]
fn vanished_zero_size_and_serial_less_disks_do_not_stop_the_probe() {
    let s = FakeSys::new("bad");
    // sdx: link to nowhere (unplugged between readdir and probe).
    s.link("block/sdx", "/nonexistent/devices/sdx");
    // sdy: zero size, no serial, unknown controller.
    let dev = "devices/platform/weird/host9/target9:0:0/9:0:0:0";
    s.write(&format!("{dev}/model"), b"Thing\n");
    s.block(dev, "sdy", 0, 512);
    // loop0 is ignored altogether.
    s.block("devices/virtual/loopdev", "loop0", 100, 512);
    let (disks, problems) = list_disks(s.path());
    assert_eq!(disks.len(), 1);
    let d = &disks[0];
    assert_eq!(d.name, "sdy");
    assert_eq!(d.serial, None);
    assert_eq!(d.transport, Transport::Unknown);
    assert!(d.notes.iter().any(|n| n.contains("size is 0")));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("sdx:"), "{problems:?}");
    // Text views render without panicking and mention the missing serial.
    assert!(probe::render::detail(d).contains("(not reported)"));
    assert!(probe::render::overview(&disks).contains("sdy"));
}

#[test]
fn missing_sysfs_is_a_problem_not_a_panic() {
    let (disks, problems) = list_disks(Path::new("/nonexistent-sysfs"));
    assert!(disks.is_empty());
    assert_eq!(problems.len(), 1);
}

#[test]
fn storage_controllers_with_and_without_driver() {
    let s = FakeSys::new("ctrl");
    s.pci("0000:00:04.0", "1000", "0054", "mptsas");
    s.write("devices/pci0000:00/0000:00:04.0/class", b"0x010000\n");
    s.write("devices/pci0000:00/0000:00:05.0/class", b"0x010400\n");
    s.write("devices/pci0000:00/0000:00:05.0/vendor", b"0x9005\n");
    s.write("devices/pci0000:00/0000:00:05.0/device", b"0x028f\n");
    s.write("devices/pci0000:00/0000:00:06.0/class", b"0x020000\n");
    for slot in ["0000:00:04.0", "0000:00:05.0", "0000:00:06.0"] {
        s.link(
            &format!("bus/pci/devices/{slot}"),
            &s.path()
                .join("devices/pci0000:00")
                .join(slot)
                .to_string_lossy(),
        );
    }
    let c = probe::list_storage_controllers(s.path());
    assert_eq!(c.len(), 2, "the NIC is not storage: {c:?}");
    assert_eq!(c[0].driver.as_deref(), Some("mptsas"));
    assert_eq!(c[0].id, "1000:0054");
    assert_eq!(c[1].driver, None);
    assert_eq!(c[1].kind, "RAID");
    let line = probe::render::controllers(&c, &[]);
    assert!(line.contains("00:04.0 mptsas (no disks)"), "{line}");
    assert!(line.contains("NO DRIVER"), "{line}");
}

/// A SATA disk `sda` of 32 MiB on an AHCI controller, with its device node
/// (a sparse file) in `<root>/dev`; returns its sysfs device path and the
/// node directory.
fn sata_disk_with_nodes(s: &FakeSys) -> (String, std::path::PathBuf) {
    let pci = s.pci("0000:00:1f.2", "8086", "2922", "ahci");
    let dev = format!("{pci}/ata1/host0/target0:0:0/0:0:0:0");
    s.scsi_ids(&dev, "ATA", "QEMU HARDDISK", Some("S1"));
    s.scsi_host("host0", "ahci");
    s.block(&dev, "sda", 65536, 512);
    let devdir = s.path().join("dev");
    fs::create_dir_all(&devdir).unwrap();
    fs::File::create(devdir.join("sda"))
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    (dev, devdir)
}

/// Partition `n` of sda in sysfs: start and size in sectors.
fn partition(s: &FakeSys, dev: &str, n: u32, start: u64, sectors: u64) {
    let p = format!("{dev}/block/sda/sda{n}");
    s.write(&format!("{p}/partition"), format!("{n}\n").as_bytes());
    s.write(&format!("{p}/start"), format!("{start}\n").as_bytes());
    s.write(&format!("{p}/size"), format!("{sectors}\n").as_bytes());
}

/// Contents and health through a "dev" directory of image files: an ext4
/// partition, an md 1.2 member partition, a virtio disk whose health is
/// unknown, and a SATA "disk" that is a plain file (no ATA pass-through).
#[test]
fn survey_reads_contents_from_the_device_nodes() {
    let s = FakeSys::new("survey");
    let (dev, devdir) = sata_disk_with_nodes(&s);
    for (n, start) in [(1u32, 2048u64), (2, 34816)] {
        partition(&s, &dev, n, start, 16384);
    }
    // sda1: ext4 made by the real mkfs.
    let p1 = devdir.join("sda1");
    fs::File::create(&p1).unwrap().set_len(8 << 20).unwrap();
    assert!(std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "dsm-vol"])
        .arg(&p1)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)")
        .success());
    // sda2: an md 1.2 superblock (magic, version 1, 2 raid disks, role 1).
    let mut sb = vec![0u8; 8 << 20];
    let at = 4096;
    sb[at..at + 4].copy_from_slice(&0xa92b4efcu32.to_le_bytes());
    sb[at + 4] = 1;
    sb[at + 32..at + 45].copy_from_slice(b"DiskStation:2");
    sb[at + 72] = 1;
    sb[at + 92] = 2;
    sb[at + 144] = 8; // super_offset in sectors
    sb[at + 160] = 1; // dev_number
    sb[at + 220] = 2; // max_dev
    sb[at + 258] = 1; // dev_roles[1] = 1
    fs::write(devdir.join("sda2"), &sb).unwrap();
    let (disks, problems) = probe::survey(s.path(), &devdir);
    assert!(problems.is_empty(), "{problems:?}");
    let d = &disks[0];
    let p = &d.partitions;
    let fs1 = p[0].contents.as_ref().unwrap().filesystem.as_ref().unwrap();
    assert_eq!(fs1.label.as_deref(), Some("dsm-vol"));
    let md = p[1].contents.as_ref().unwrap().md_member.as_ref().unwrap();
    assert_eq!(
        (md.level.as_str(), md.role, md.name.as_deref()),
        ("raid1", Some(1), Some("DiskStation:2"))
    );
    assert!(!md.checksum_ok, "the test superblock carries no checksum");
    // A regular file cannot answer ATA PASS-THROUGH: unknown, with a reason.
    let h = d.health.as_ref().unwrap();
    assert_eq!(h.verdict, health::Verdict::Unknown);
    assert!(!h.findings.is_empty());
    assert_eq!(
        probe::render::contents_summary(d),
        "2 parts: ext4 \"dsm-vol\", md raid1"
    );
    let overview = probe::render::overview(&disks);
    assert!(overview.lines().all(|l| l.len() <= 80), "{overview}");
    assert!(overview.contains("unknown 2 parts: ext4"), "{overview}");
    let detail = probe::render::detail(d);
    assert!(detail.contains("CHECKSUM BAD"), "{detail}");
}

/// A Synology DSM disk (RAID-1 0.90 members on partitions 1 and 2, the data
/// array's 1.2 member on 3, written by mdraid's test writer) is called so
/// in the overview; the same members on partitions 2 and 3 are not.
#[test]
fn dsm_disks_are_named_in_the_summary() {
    use testkit::mdwriter::{build_members, ArraySpec};
    let mut system = ArraySpec::new("0.90", 1, 2);
    system.uuid[0] = 1;
    let mut swap = ArraySpec::new("0.90", 1, 2);
    swap.uuid[0] = 2;
    let data = ArraySpec::new("1.2", 1, 2);
    let members: Vec<Vec<u8>> = [&system, &swap, &data]
        .iter()
        .map(|a| build_members(a).swap_remove(0))
        .collect();
    let summary = |numbers: [u32; 3]| {
        let s = FakeSys::new(&format!("dsm{}", numbers[0]));
        let (dev, devdir) = sata_disk_with_nodes(&s);
        for (n, img) in numbers.iter().zip(&members) {
            partition(&s, &dev, *n, 2048 * u64::from(*n), img.len() as u64 / 512);
            fs::write(devdir.join(format!("sda{n}")), img).unwrap();
        }
        let (disks, problems) = probe::survey(s.path(), &devdir);
        assert!(problems.is_empty(), "{problems:?}");
        probe::render::contents_summary(&disks[0])
    };
    assert_eq!(summary([1, 2, 3]), "Synology DSM: md raid1 x3");
    assert_eq!(summary([2, 3, 4]), "3 parts: md raid1 x3");
}

/// An empty DVD drive on the AHCI controller, as QEMU's `ide-cd` without a
/// medium shows it: the sr driver's placeholder size of 0x1fffff sectors
/// (1 GiB) and ENOMEDIUM on open. The overview says `no medium` with no
/// size, never `damaged?`; a node that cannot be opened for another reason
/// is not called damaged either (nothing was read).
#[test]
fn empty_optical_drive_shows_no_medium_not_damaged() {
    let s = FakeSys::new("sr0");
    let (_, devdir) = sata_disk_with_nodes(&s);
    let pci = "devices/pci0000:00/0000:00:1f.2";
    let dev = format!("{pci}/ata2/host1/target1:0:0/1:0:0:0");
    s.scsi_ids(&dev, "QEMU", "QEMU DVD-ROM", None);
    s.scsi_host("host1", "ahci");
    s.block(&dev, "sr0", 0x1fffff, 2048);
    s.write(&format!("{dev}/block/sr0/removable"), b"1\n");

    // No sr0 node in the dev directory: the open fails with ENOENT.
    let (disks, problems) = probe::survey(s.path(), &devdir);
    assert!(problems.is_empty(), "{problems:?}");
    let sr0 = disks.iter().find(|d| d.name == "sr0").unwrap();
    assert!(!sr0.no_medium);
    let overview = probe::render::overview(&disks);
    assert!(!overview.contains("damaged?"), "{overview}");
    assert!(overview.contains("cannot open"), "{overview}");

    // The kernel's answer for an empty drive.
    let (mut disks, _) = probe::list_disks(s.path());
    probe::contents::fill_with(&mut disks, &devdir, &|node| {
        if node.ends_with("sr0") {
            Err(std::io::Error::from_raw_os_error(123))
        } else {
            fs::File::open(node).map(drop)
        }
    });
    let sr0 = disks.iter().find(|d| d.name == "sr0").unwrap();
    assert!(sr0.no_medium);
    assert_eq!(sr0.size_bytes, 0);
    assert!(sr0.contents.is_none() && sr0.health.is_none());
    let overview = probe::render::overview(&disks);
    let line = overview.lines().find(|l| l.contains("sr0")).unwrap();
    assert!(line.contains("no medium"), "{overview}");
    assert!(
        !line.contains("MiB") && !line.contains("damaged"),
        "{overview}"
    );
    let sda = disks.iter().find(|d| d.name == "sda").unwrap();
    assert!(!sda.no_medium && sda.contents.is_some(), "{sda:?}");
    let detail = probe::render::detail(sr0);
    assert!(detail.contains("no medium in the drive"), "{detail}");
    let json = serde_json::to_value(sr0).unwrap();
    assert_eq!(json["no_medium"], true);
}
