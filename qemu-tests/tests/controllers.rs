//! Boot the real image under QEMU (TCG) and check what probe finds: one
//! disk on each emulated controller (exact size, serial, model, sector
//! size), the README's demo disk set, and contents and health on real
//! disks; nothing is written. Needs `out/` (cargo run --release -p
//! image-build) and qemu-system-x86_64; the test script provides both.

use qemu_tests::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Boots with one disk on `controller` and checks probe finds it with the
/// exact size and the serial (and model where the controller passes it).
fn probe_one(controller: Controller, size: u64, model: Option<&str>, lbs: Option<u32>) -> Value {
    let image = Image::built();
    let dir = temp_dir("probe");
    let tag = format!("{controller:?}");
    let serial = format!("SER{}", tag.to_uppercase());
    let path = make_disk(&dir.path().join("d.img"), size, &tag);
    let mut disk = Disk::new(&path, controller, &serial);
    if let Some(m) = model {
        disk = disk.model(m);
    }
    if let Some(n) = lbs {
        disk = disk.logical_block_size(n);
    }
    let before = sha256_file(&path);
    let (sections, transcript) =
        run_script(&image, VmConfig::new(vec![disk]), "probe --json\nprobe\n");
    assert_eq!(sections.len(), 2, "script sections:\n{transcript}");
    let json = probe_json(&sections[0]);
    assert_eq!(sha256_file(&path), before, "disk image changed");
    // Every disk is read-only and was never written.
    for d in json["disks"].as_array().unwrap() {
        assert_eq!(d["read_only"], true, "{d}");
        assert_eq!(d["io"]["writes_completed"], 0, "{d}");
    }
    if controller == Controller::Mptsas1068 {
        return json;
    }
    let d = disk_named(&json, &serial).unwrap_or_else(|| {
        panic!(
            "no disk with serial {serial} in probe output:\n{}",
            sections[0].output
        )
    });
    assert_eq!(d["size_bytes"].as_u64(), Some(size), "{d}");
    if let Some(m) = model {
        assert_eq!(d["model"].as_str(), Some(m), "{d}");
    }
    assert!(
        sections[1].output.contains(d["name"].as_str().unwrap()),
        "text probe lists the disk:\n{}",
        sections[1].output
    );
    json
}

#[test]
fn ahci_disk_with_serial_and_model() {
    let json = probe_one(Controller::Ahci, 64 * MIB, Some("RESCUE AHCI DISK"), None);
    let d = disk_named(&json, "SERAHCI").unwrap();
    assert_eq!(d["transport"], "sata");
    // QEMU's IDE/AHCI model answers IDENTIFY and SMART through SAT.
    let h = &d["health"];
    assert_eq!(h["source"], "ata-smart", "{h}");
    assert_eq!(h["verdict"], "passed", "{h}");
    assert_eq!(h["identify"]["model"], "RESCUE AHCI DISK", "{h}");
    assert_eq!(h["identify"]["serial"], "SERAHCI", "{h}");
    assert_eq!(
        h["identify"]["sectors"].as_u64(),
        Some(64 * MIB / 512),
        "{h}"
    );
    assert!(h["power_on_hours"].is_u64(), "{h}");
    assert_eq!(h["reallocated_sectors"], 0, "{h}");
}

#[test]
fn nvme_disk() {
    let json = probe_one(Controller::Nvme, 96 * MIB, None, None);
    let d = disk_named(&json, "SERNVME").unwrap();
    assert_eq!(d["transport"], "nvme");
    assert_eq!(d["driver"], "nvme");
    let h = &d["health"];
    assert_eq!(h["source"], "nvme-smart-log", "{h}");
    assert_eq!(h["verdict"], "passed", "{h}");
    assert_eq!(h["critical_warning"], 0, "{h}");
    assert!(
        h["temperature_c"]
            .as_i64()
            .is_some_and(|t| t > 0 && t < 100),
        "{h}"
    );
}

#[test]
fn megaraid_disk() {
    let json = probe_one(Controller::MegasasGen2, 80 * MIB, Some("MEGA LD"), None);
    let d = disk_named(&json, "SERMEGASASGEN2").unwrap();
    assert_eq!(d["driver"], "megaraid_sas");
    assert_eq!(d["pci"]["driver"], "megaraid_sas");
}

/// Linux 6.1's mptsas binds QEMU's SAS1068 but reports no targets (measured,
/// see shared/notes/qemu-boot.md): the controller itself must be found.
#[test]
fn mptsas_controller_is_detected() {
    let json = probe_one(Controller::Mptsas1068, 64 * MIB, None, None);
    let ctrls = json["controllers"].as_array().unwrap();
    assert!(
        ctrls
            .iter()
            .any(|c| c["id"] == "1000:0054" && c["driver"] == "mptsas"),
        "no mptsas controller in {ctrls:?}"
    );
}

#[test]
fn lsi53c895a_disk() {
    let json = probe_one(Controller::Lsi53c895a, 72 * MIB, None, None);
    let d = disk_named(&json, "SERLSI53C895A").unwrap();
    assert_eq!(d["driver"], "sym53c8xx");
}

#[test]
fn virtio_scsi_disk() {
    let json = probe_one(Controller::VirtioScsi, 88 * MIB, None, None);
    let d = disk_named(&json, "SERVIRTIOSCSI").unwrap();
    assert_eq!(d["transport"], "virtio");
}

#[test]
fn virtio_blk_disk() {
    let json = probe_one(Controller::VirtioBlk, 100 * MIB, None, None);
    let d = disk_named(&json, "SERVIRTIOBLK").unwrap();
    assert_eq!(d["transport"], "virtio");
    assert_eq!(d["driver"], "virtio_blk");
    assert_eq!(d["health"]["verdict"], "unknown", "virtio has no SMART");
}

#[test]
fn usb_storage_disk() {
    let json = probe_one(Controller::Usb, 56 * MIB, None, None);
    let d = disk_named(&json, "SERUSB").unwrap();
    assert_eq!(d["transport"], "usb");
}

#[test]
fn disk_with_4096_byte_sectors() {
    let json = probe_one(Controller::VirtioScsi, 64 * MIB, None, Some(4096));
    let d = disk_named(&json, "SERVIRTIOSCSI").unwrap();
    assert_eq!(d["logical_sector_size"], 4096);
    assert_eq!(d["physical_sector_size"], 4096);
}

/// The README's demo disk set boots, every disk is found and the kernel sees
/// the ESXi partitions on both GPT disks; nothing is written.
#[test]
fn demo_disk_set_boots_and_is_found() {
    let image = Image::built();
    let dir = temp_dir("demo");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    let hashes: Vec<String> = disks.iter().map(|d| sha256_file(&d.path)).collect();
    let (sections, transcript) = run_script(
        &image,
        VmConfig::new(disks.clone()),
        "probe --json\ngpt verify /dev/sda\ngpt verify /dev/sdb\ngpt show /dev/sda\ngpt show /dev/sdb\nprobe\n\
         vmfs info /dev/sdb\nvmfs ls -l /dev/sdb /directory\nvmfs cat /dev/sdb /big --offset 1048560\nvmfs info /dev/sda\n\
         md scan\nmd verify DiskStation:2\nmd assemble DiskStation:2 --readonly --mount\nmd stop DiskStation:2\n\
         vmfs list\ndest list --json\n\
         vmdk info --vmfs /dev/sdb /normal.vmdk\nvmdk map --vmfs /dev/sdb /normal.vmdk 45097156608\n\
         mount /dev/vda\nattach /mnt/vda/vms/demo-vm/demo-vm-000001.vmdk\nmount /dev/nbd0p1\n\
         umount /mnt/nbd0p1\ndetach nbd0\numount /mnt/vda\n",
    );
    assert_eq!(sections.len(), 24, "{transcript}");
    let json = probe_json(&sections[0]);
    for d in &disks {
        let found = disk_named(&json, &d.serial)
            .unwrap_or_else(|| panic!("{} missing:\n{}", d.serial, sections[0].output));
        assert_eq!(
            found["size_bytes"].as_u64(),
            Some(std::fs::metadata(&d.path).unwrap().len())
        );
    }
    let numbers = |serial: &str| -> Vec<u64> {
        disk_named(&json, serial).unwrap()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["number"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        numbers("ESXI-BOOT-0001"),
        [1, 2, 3, 5, 6, 7, 8],
        "slot 4 stays empty"
    );
    assert_eq!(
        numbers("RAID-LD-0001"),
        [1, 2, 3, 4, 5, 6, 7],
        "compacted copy"
    );
    // Our own GPT reading agrees, and flags the compacted copy (whose CRCs
    // are all valid: partition editors see nothing wrong there).
    let table = |serial: &str| disk_named(&json, serial).unwrap()["partition_table"].clone();
    let boot = table("ESXI-BOOT-0001");
    assert_eq!(boot["layout"], "ESXi 5.x/6.x boot disk", "{boot}");
    assert_eq!(boot["problems"], 0, "{boot}");
    let raid = table("RAID-LD-0001");
    assert_eq!(
        raid["layout"], "ESXi 5.x/6.x boot disk (entries compacted)",
        "{raid}"
    );
    assert_eq!(raid["problems"], 1, "{raid}");
    let parts = &disk_named(&json, "ESXI-BOOT-0001").unwrap()["partitions"];
    assert_eq!(parts[2]["type_name"], "VMware VMFS", "{parts}");
    // gpt verify: exit 1 and the slot moves for the copy, exit 0 for the original.
    let verdicts: Vec<(i32, bool)> = sections[1..3]
        .iter()
        .map(|s| {
            let moves =
                s.output.contains("esxi-compacted") && s.output.contains("4->5, 5->6, 6->7, 7->8");
            (s.exit, moves)
        })
        .collect();
    assert!(
        verdicts.contains(&(1, true)) && verdicts.contains(&(0, false)),
        "{verdicts:?}\n{}\n{}",
        sections[1].output,
        sections[2].output
    );
    assert!(
        sections[3..5]
            .iter()
            .any(|s| s.output.contains("     4  (empty)")),
        "{}",
        sections[3].output
    );
    let esxi = &disk_named(&json, "ESXI-BOOT-0001").unwrap()["esxi"];
    assert_eq!(esxi["bootbank_build"], demo::BOOTBANK_BUILD, "{esxi}");
    assert_eq!(esxi["altbootbank_build"], demo::ALTBOOTBANK_BUILD, "{esxi}");
    let datastore = if demo::vmfs5_fixture().is_some() {
        ", VMFS5 \"vmfs5\""
    } else {
        " boot"
    };
    assert!(
        sections[5].output.contains("GPT! ESXi 5.0.0 compacted")
            && sections[5]
                .output
                .contains(&format!("ESXi 5.0.0{datastore}")),
        "{}",
        sections[5].output
    );
    if demo::vmfs5_fixture().is_some() {
        // The datastore, found through the GPT on the original and on the
        // compacted copy, browsed and read in the guest.
        for s in [&sections[6], &sections[9]] {
            assert_eq!(s.exit, 0, "{}", s.output);
            assert!(
                s.output.contains("vmfs5") && s.output.contains("VMFS version:   5"),
                "{}",
                s.output
            );
            // Free space from the block bitmap, as debugvmfs df gives it.
            assert!(
                s.output
                    .contains("free:           1.5 GiB (1619001344 bytes, 75% of 2.0 GiB"),
                "{}",
                s.output
            );
        }
        assert_eq!(sections[7].exit, 0, "{}", sections[7].output);
        for n in [1, 50, 100] {
            assert!(
                sections[7].output.contains(&format!("file{n}\n"))
                    || sections[7].output.contains(&format!("file{n}\r\n")),
                "{}",
                sections[7].output
            );
        }
        // The last 17 bytes of `big`: its 16-byte pattern and a newline.
        assert!(
            sections[8].output.contains("Kusjes van SRT<3"),
            "{}",
            sections[8].output
        );
        // The datastore's thin VM disk, read in place through the volume:
        // one 1 MiB block stored at 42 GiB, the rest holes.
        let info = &sections[16].output;
        assert_eq!(sections[16].exit, 0, "{info}");
        assert!(
            info.contains("69.0 GiB") && info.contains("stored: 1.0 MiB"),
            "{info}"
        );
        let map = &sections[17].output;
        assert_eq!(sections[17].exit, 0, "{map}");
        assert!(
            map.contains("normal-flat.vmdk at byte 45097156608"),
            "{map}"
        );
        // The boot disk and its raw copy on the RAID LD: two datastores,
        // each noted as a copy of the other (never one volume of both).
        let list = &sections[14].output;
        assert_eq!(sections[14].exit, 0, "{list}");
        assert_eq!(list.matches("VMFS5 \"vmfs5\"").count(), 2, "{list}");
        for (a, b) in [("/dev/sda", "/dev/sdb"), ("/dev/sdb", "/dev/sda")] {
            assert!(
                list.lines()
                    .any(|l| l.contains(&format!("same volume as {b} at byte"))
                        && l.contains("(a copy)"))
                    && list.contains(&format!("on {a} at byte")),
                "{list}"
            );
        }
    }
    // The DSM pair: three RAID-1 arrays recognised as a DSM set; the data
    // mirrors differ in exactly the one byte the demo changed.
    let scan = &sections[10].output;
    assert_eq!(sections[10].exit, 0, "{scan}");
    for role in [
        "DSM system (md0)",
        "DSM swap (md1)",
        "DSM data",
        "DiskStation:2",
    ] {
        assert!(scan.contains(role), "{role}: {scan}");
    }
    let verify = &sections[11].output;
    assert_eq!(sections[11].exit, 1, "{verify}");
    assert!(verify.contains("Result: 1 mismatch;"), "{verify}");
    let at = demo::DSM_MISMATCH_IN_DATA / 65536 * 65536;
    assert!(
        verify.contains(&format!("{at}")),
        "array offset {at}: {verify}"
    );
    // Destinations: RESCUEDEST is offered; the bootbanks of both ESXi boot
    // disks (and anything else on them) are marked unsafe, with the reason.
    let dl = &sections[15].output;
    assert_eq!(sections[15].exit, 0, "{dl}");
    let start = dl.find('{').unwrap_or_else(|| panic!("no JSON:\n{dl}"));
    let end = dl.rfind('}').expect("JSON end");
    let list: Value = serde_json::from_str(&dl[start..=end]).expect("dest list JSON");
    assert_eq!(list["schema"], 1, "{dl}");
    let cands = list["candidates"].as_array().unwrap();
    let dest = cands
        .iter()
        .find(|c| c["label"] == "RESCUEDEST")
        .unwrap_or_else(|| panic!("{dl}"));
    assert!(
        dest["unsafe"].is_null() && dest["unusable"].is_null(),
        "{dest}"
    );
    let on_esxi: Vec<&Value> = cands
        .iter()
        .filter(|c| c["disk"] == "sda" || c["disk"] == "sdb")
        .collect();
    assert!(
        on_esxi.len() >= 4,
        "the bootbanks of both boot disks:\n{dl}"
    );
    for c in on_esxi {
        let why = c["unsafe"]
            .as_str()
            .unwrap_or_else(|| panic!("offered: {c}"));
        assert!(why.contains("holds an ESXi system"), "{c}");
    }
    // The demo VM on the destination: attached through its snapshot chain,
    // its ext4 mounted read-only, all released again.
    for (i, want) in [
        (18, "mounted read-only at /mnt/vda"),
        (19, "VMDK demo-vm/demo-vm-000001.vmdk (2 levels)"),
        (20, "mounted read-only at /mnt/nbd0p1"),
        (21, "unmounted"),
        (22, "detached nbd0"),
        (23, "unmounted"),
    ] {
        let s = &sections[i];
        assert!(
            s.exit == 0 && s.output.contains(want),
            "{want}: {}",
            s.output
        );
    }
    let after: Vec<String> = disks.iter().map(|d| sha256_file(&d.path)).collect();
    assert_eq!(after, hashes);
}

/// Contents are recognised on real disks in the guest (an ext4 made by
/// mkfs.ext4, an md 1.2 member, an empty disk), and an NVMe disk reporting
/// a critical warning is called failing; nothing is written.
#[test]
fn contents_and_failing_nvme_health() {
    let image = Image::built();
    let dir = temp_dir("contents");
    let ext4 = make_disk(&dir.path().join("ext4.img"), 32 * MIB, "ext4");
    assert!(std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "guestvol"])
        .arg(&ext4)
        .status()
        .expect("mkfs.ext4")
        .success());
    let md = dir.path().join("md.img");
    let mut member = vec![0u8; 16 * MIB as usize];
    member[4096..8192].copy_from_slice(&testkit::mdwriter::write_v1(
        1,
        2,
        1,
        4096,
        "DiskStation:3",
    ));
    std::fs::write(&md, member).unwrap();
    let empty = make_disk(&dir.path().join("empty.img"), 8 * MIB, "empty");
    let nv = make_disk(&dir.path().join("nvme.img"), 16 * MIB, "nvme");
    let paths = [&ext4, &md, &empty, &nv];
    let before: Vec<String> = paths.iter().map(|p| sha256_file(p)).collect();
    let mut failing = Disk::new(&nv, Controller::Nvme, "FAILNVME");
    failing.device_extra = Some(",smart_critical_warning=4".into());
    let cfg = VmConfig::new(vec![
        Disk::new(&ext4, Controller::VirtioBlk, "EXT4DISK"),
        Disk::new(&md, Controller::VirtioScsi, "MDMEMBER"),
        Disk::new(&empty, Controller::Ahci, "EMPTYDISK"),
        failing,
    ]);
    let (sections, transcript) = run_script(&image, cfg, "probe --json\nprobe\n");
    assert_eq!(sections.len(), 2, "{transcript}");
    let json = probe_json(&sections[0]);
    let fs = &disk_named(&json, "EXT4DISK").unwrap()["contents"]["filesystem"];
    assert_eq!(
        (fs["kind"].as_str(), fs["label"].as_str()),
        (Some("ext4"), Some("guestvol")),
        "{fs}"
    );
    let m = &disk_named(&json, "MDMEMBER").unwrap()["contents"]["md_member"];
    assert_eq!(m["name"], "DiskStation:3", "{m}");
    assert_eq!(m["level"], "raid1");
    assert_eq!(m["role"], 1);
    assert_eq!(m["checksum_ok"], true);
    let e = &disk_named(&json, "EMPTYDISK").unwrap()["contents"];
    assert!(e["filesystem"].is_null() && e["md_member"].is_null(), "{e}");
    let h = &disk_named(&json, "FAILNVME").unwrap()["health"];
    assert_eq!(h["verdict"], "failing", "{h}");
    assert_eq!(h["critical_warning"], 4, "{h}");
    let text = &sections[1].output;
    assert!(
        text.contains("FAILING") && text.contains("ext4 \"guestvol\"") && text.contains("md raid1"),
        "{text}"
    );
    assert!(text.contains("no known signature"), "{text}");
    let after: Vec<String> = paths.iter().map(|p| sha256_file(p)).collect();
    assert_eq!(after, before);
}
