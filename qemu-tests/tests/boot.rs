//! Boot the real image under QEMU (TCG) and check probe, menu and the
//! read-only guard. Needs `out/` (cargo run --release -p image-build) and
//! qemu-system-x86_64; the test script provides both.

use qemu_tests::*;
use serde_json::Value;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn disk_named<'a>(probe: &'a Value, serial_or_name: &str) -> Option<&'a Value> {
    probe["disks"].as_array()?.iter().find(|d| {
        d["serial"].as_str() == Some(serial_or_name) || d["name"].as_str() == Some(serial_or_name)
    })
}

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

/// Menu over the serial console with both consoles on the command line:
/// overview -> disk detail -> back -> a write attempt from the shell fails
/// -> power off; the disks are unchanged afterwards.
#[test]
fn menu_browse_shell_write_refused_and_power_off() {
    let image = Image::built();
    let dir = temp_dir("menu");
    let a = make_disk(&dir.path().join("a.img"), 64 * MIB, "a");
    let b = make_disk(&dir.path().join("b.img"), 32 * MIB, "b");
    let hashes = [sha256_file(&a), sha256_file(&b)];
    let mut cfg = VmConfig::new(vec![
        Disk::new(&a, Controller::VirtioBlk, "MENUA"),
        Disk::new(&b, Controller::Ahci, "MENUB").model("MENU DISK B"),
    ]);
    cfg.append = "console=tty0 console=ttyS0,115200 quiet".into();
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(boot.contains("menus on /dev/tty1 /dev/ttyS0"), "{boot}");
    assert!(boot.contains("set read-only"), "{boot}");
    let overview = boot;
    assert!(overview.contains("MENU DISK B"), "{overview}");
    // The overview numbers disks in name order: sda (AHCI) then vda.
    vm.send("1\n");
    let detail = vm.wait_for("Enter: back", Duration::from_secs(30));
    assert!(detail.contains("Disk sda"), "{detail}");
    assert!(detail.contains("MENUB"), "{detail}");
    assert!(detail.contains("yes (block layer)"), "{detail}");
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(30));
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    // Markers are split in the typed line so its echo does not match them.
    vm.send("dd if=/dev/zero of=/dev/vda bs=512 count=1; echo DD\"\"-EXIT=$?\n");
    let dd = vm.wait_for("DD-EXIT=", Duration::from_secs(60));
    let status = vm.wait_for("\n", Duration::from_secs(10));
    assert_ne!(status.trim(), "0", "the write succeeded:\n{dd}{status}");
    assert!(
        dd.contains("Operation not permitted")
            || dd.contains("Permission denied")
            || dd.contains("Read-only"),
        "no clear error for the refused write:\n{dd}"
    );
    vm.send("rescue probe --json | grep -c '\"writes_completed\": 0'; echo PROBE\"\"-DONE\n");
    let counts = vm.wait_for("PROBE-DONE", Duration::from_secs(60));
    assert!(
        counts.contains("\n2\r") || counts.contains("\n2\n"),
        "{counts}"
    );
    vm.send("exit\n");
    vm.wait_for("Choose: ", Duration::from_secs(30));
    vm.send("p\n");
    vm.wait_for("[y/N]", Duration::from_secs(30));
    vm.send("y\n");
    vm.wait_for("powering off", Duration::from_secs(60));
    vm.wait_exit(Duration::from_secs(60));
    assert_eq!(
        [sha256_file(&a), sha256_file(&b)],
        hashes,
        "a disk image changed"
    );
}

/// Bad input at boot: an unknown script command, a missing script file, a
/// zero-size disk, a missing module, no automatic module loading but an
/// explicit module list: clear messages, boot and power-off still happen.
#[test]
fn bad_input_and_module_options_do_not_stop_the_boot() {
    let image = Image::built();
    let dir = temp_dir("bad");
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    let zero = dir.path().join("zero.img");
    std::fs::File::create(&zero).unwrap();
    let b = make_disk(&dir.path().join("b.img"), 16 * MIB, "b");
    let cfg = VmConfig::new(vec![
        Disk::new(&a, Controller::VirtioBlk, "EXPLICIT"),
        Disk::new(&zero, Controller::VirtioBlk, "ZEROSIZE"),
        Disk::new(&b, Controller::Nvme, "NODRIVER"),
    ])
    .append("rescue.nomodules rescue.modules=virtio_pci,virtio_blk,no_such_module");
    let (sections, transcript) = run_script(
        &image,
        cfg,
        "# comment\nno-such-command\nrun-script /nonexistent\nprobe --json\nprobe -l\n",
    );
    assert!(transcript.contains("rescue.nomodules"), "{transcript}");
    assert!(
        transcript.contains("module no_such_module: no such module"),
        "{transcript}"
    );
    assert_eq!(sections.len(), 4, "{transcript}");
    assert_eq!(sections[0].exit, 2);
    assert!(
        sections[0].output.contains("Unrecognized"),
        "{}",
        sections[0].output
    );
    assert!(
        sections[1].output.contains("/nonexistent"),
        "{}",
        sections[1].output
    );
    let json = probe_json(&sections[2]);
    // Loaded on request: virtio_blk. Not loaded: nvme (no autoload).
    assert!(
        disk_named(&json, "EXPLICIT").is_some(),
        "{}",
        sections[2].output
    );
    assert!(
        disk_named(&json, "NODRIVER").is_none(),
        "{}",
        sections[2].output
    );
    let z = disk_named(&json, "ZEROSIZE").expect("zero-size disk listed");
    assert_eq!(z["size_bytes"], 0);
    assert!(
        sections[3].output.contains("size is 0"),
        "{}",
        sections[3].output
    );
    let ctrls = json["controllers"].as_array().unwrap();
    assert!(
        ctrls
            .iter()
            .any(|c| c["kind"] == "NVMe" && c["driver"].is_null()),
        "the NVMe controller without driver is shown: {ctrls:?}"
    );
}

/// A disk plugged in after boot is made read-only at once; the menu's
/// overview redraws by itself to show it; a menu that dies is restarted;
/// Ctrl-Alt-Del reboots cleanly.
#[test]
fn hotplug_menu_restart_and_ctrl_alt_del() {
    let image = Image::built();
    let dir = temp_dir("hotplug");
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    let b = make_disk(&dir.path().join("b.img"), 24 * MIB, "b");
    let hashes = [sha256_file(&a), sha256_file(&b)];
    let mut cfg = VmConfig::new(vec![Disk::new(&a, Controller::VirtioBlk, "BOOTDISK")]);
    cfg.qmp = true;
    cfg.extra_args = [
        "-drive",
        &format!("if=none,id=hp,format=raw,file={}", b.display()),
        "-device",
        "pcie-root-port,id=rp1,chassis=1,slot=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.qmp(r#"{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","drive":"hp","id":"hp0","bus":"rp1","serial":"HOTPLUG"}}"#);
    vm.wait_for(
        "hotplug: new block device vdb set read-only",
        Duration::from_secs(60),
    );
    // The overview redraws by itself when the disks change (no 'r').
    vm.wait_for(
        "(the disks changed: a new overview)",
        Duration::from_secs(30),
    );
    let menu = vm.wait_for("Choose: ", Duration::from_secs(30));
    let vdb = menu
        .lines()
        .find(|l| l.trim_start().starts_with("2  vdb "))
        .unwrap_or_else(|| panic!("{menu}"));
    assert!(!vdb.contains("WRITABLE"), "{vdb}");
    vm.send("2\n");
    let detail = vm.wait_for("Enter: back", Duration::from_secs(30));
    assert!(
        detail.contains("Disk vdb") && detail.contains("yes (block layer)"),
        "{detail}"
    );
    assert!(detail.contains("HOTPLUG"), "{detail}");
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(30));
    // Kill the menu from its own shell: PID 1 starts a new one.
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    vm.send("kill -9 $PPID; exit\n");
    vm.wait_for("Choose: ", Duration::from_secs(30));
    vm.qmp(r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}"#);
    vm.wait_for("rescue: rebooting", Duration::from_secs(60));
    vm.wait_exit(Duration::from_secs(60));
    assert_eq!([sha256_file(&a), sha256_file(&b)], hashes);
}

/// SIGTERM to PID 1 (what `rescue reboot` sends) reboots cleanly.
#[test]
fn sigterm_to_pid1_reboots_cleanly() {
    let image = Image::built();
    let dir = temp_dir("sigterm");
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    let mut vm = Vm::start(
        &image,
        &VmConfig::new(vec![Disk::new(&a, Controller::VirtioBlk, "T")]),
    );
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    vm.send("rescue reboot\n");
    vm.wait_for("rescue: rebooting", Duration::from_secs(60));
    vm.wait_exit(Duration::from_secs(60));
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
         vmfs list\ndest list --json\n",
    );
    assert_eq!(sections.len(), 16, "{transcript}");
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
    let start = dl.find('[').unwrap_or_else(|| panic!("no JSON:\n{dl}"));
    let end = dl.rfind(']').expect("JSON end");
    let cands: Value = serde_json::from_str(&dl[start..=end]).expect("dest list JSON");
    let cands = cands.as_array().unwrap();
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

/// Incident 003 repaired from the menu: the compacted ESXi boot disk on a
/// MegaRAID logical drive gets its slots back; after a reboot the guest
/// kernel sees partitions 1,2,3,5,6,7,8 at the same offsets; the other
/// disks are unchanged; the undo file restores the compacted table exactly.
#[test]
fn gpt_repair_from_the_menu_survives_reboot() {
    let image = Image::built();
    let dir = temp_dir("gptrepair");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    // The destination takes the undo file, an image and the action log.
    let others: Vec<&Disk> = disks
        .iter()
        .filter(|d| d.serial != "RAID-LD-0001" && d.serial != "DEST-0001")
        .collect();
    let dest_path = disks
        .iter()
        .find(|d| d.serial == "DEST-0001")
        .unwrap()
        .path
        .clone();
    let before: Vec<String> = others.iter().map(|d| sha256_file(&d.path)).collect();
    let raid_path = disks
        .iter()
        .find(|d| d.serial == "RAID-LD-0001")
        .unwrap()
        .path
        .clone();
    let compacted = sha256_file(&raid_path);

    // Offsets the kernel sees before, by partition number.
    let parts = |json: &Value| -> Vec<(u64, u64)> {
        disk_named(json, "RAID-LD-0001").unwrap()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["number"].as_u64().unwrap(),
                    p["start_bytes"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (s, t) = run_script(&image, VmConfig::new(disks.clone()), "probe --json\n");
    assert_eq!(s.len(), 1, "{t}");
    let old = parts(&probe_json(&s[0]));
    assert_eq!(
        old.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );

    let mut vm = Vm::start(&image, &VmConfig::new(disks.clone()));
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let number = overview
        .lines()
        .find(|l| l.contains("RAID-LD") && l.contains("GPT!"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no flagged RAID disk in:\n{overview}"))
        .to_string();
    vm.send(&format!("{number}\n"));
    let detail = vm.wait_for("g: GPT findings and repairs", Duration::from_secs(60));
    // The boot banks are found through the layout even on the compacted table.
    assert!(
        detail.contains("bootbank 5.0.0-1489271, altbootbank 5.0.0-1311175"),
        "{detail}"
    );
    vm.send("g\n");
    let view = vm.wait_for("Repair choice (Enter: back): ", Duration::from_secs(60));
    assert!(view.contains("esxi-compacted"), "{view}");
    let choice = esxi_repair_choice(&view);
    // A wrong confirmation writes nothing.
    vm.send(&format!("{choice}\n"));
    vm.wait_for("anything else cancels: ", Duration::from_secs(60));
    vm.send("yes\n");
    vm.wait_for("Cancelled: nothing was written.", Duration::from_secs(30));
    vm.wait_for("Repair choice (Enter: back): ", Duration::from_secs(60));
    assert_eq!(
        sha256_file(&raid_path),
        compacted,
        "a cancelled repair wrote"
    );
    vm.send(&format!("{choice}\n"));
    let plan = vm.wait_for("anything else cancels: ", Duration::from_secs(60));
    assert!(plan.contains("RAID-LD-0001"), "{plan}");
    vm.send("RAID-LD-0001\n");
    // No RESCUEDATA here: the undo file must outlive the reboot, so the
    // repair asks for a destination first (never one on an ESXi disk).
    let dests = vm.wait_for("Destination (Enter: back): ", Duration::from_secs(60));
    assert!(dests.contains("No RESCUEDATA partition"), "{dests}");
    vm.send(&format!("{}\n", menu_number(&dests, "RESCUEDEST")));
    vm.wait_for("Type yes to mount: ", Duration::from_secs(60));
    vm.send("yes\n");
    let result = vm.wait_for("[y/N]: ", Duration::from_secs(120));
    assert!(result.contains("Repair written and verified."), "{result}");
    assert!(
        result.contains("Undo file: /mnt/dest/vda/gpt-undo/gpt-undo-RAID-LD-0001-"),
        "{result}"
    );
    assert!(result.contains("re-read the partition table"), "{result}");
    // The kernel re-reads the repaired table: slot 8 shows without a reboot.
    vm.send("y\n");
    let reread = vm.wait_for("Repair choice (Enter: back): ", Duration::from_secs(60));
    assert!(reread.contains("Re-read: the kernel now shows"), "{reread}");
    vm.send("\n");
    let overview = vm.wait_for("Choose: ", Duration::from_secs(60));
    let raid_line = overview
        .lines()
        .find(|l| l.contains("RAID-LD"))
        .unwrap_or_else(|| panic!("{overview}"));
    let raid_name = raid_line.split_whitespace().nth(1).unwrap().to_string();
    vm.send(&format!("{number}\n"));
    let detail = vm.wait_for("Enter: back to the overview: ", Duration::from_secs(60));
    assert!(detail.contains(&format!("{raid_name}8 ")), "{detail}");
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(60));
    // Image the dying NVMe onto the destination mounted above.
    vm.send("i\n");
    let sources = vm.wait_for("Source (Enter: back): ", Duration::from_secs(60));
    vm.send(&format!("{}\n", menu_number(&sources, "nvme0n1")));
    let dests = vm.wait_for("Destination (Enter: back): ", Duration::from_secs(60));
    vm.send(&format!("{}\n", menu_number(&dests, "RESCUEDEST")));
    vm.wait_for("Start? [y/N]: ", Duration::from_secs(60));
    vm.send("y\n");
    let done = vm.wait_for("Enter: back to the overview: ", Duration::from_secs(900));
    assert!(
        done.contains("Done: some areas could not be read"),
        "{done}"
    );
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(60));
    // The log screen shows both.
    vm.send("l\n");
    let log = vm.wait_for("Enter: back to the overview: ", Duration::from_secs(60));
    assert!(
        log.contains("gpt: wrote") && log.contains("rescue image:"),
        "{log}"
    );
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(60));
    vm.power_off_from_menu();

    // After the "reboot": the ESXi slots, at the very same offsets.
    let (s, t) = run_script(
        &image,
        VmConfig::new(disks.clone()),
        "probe --json\ngpt verify /dev/sda\ngpt verify /dev/sdb\n",
    );
    assert_eq!(s.len(), 3, "{t}");
    let new = parts(&probe_json(&s[0]));
    assert_eq!(
        new.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3, 5, 6, 7, 8]
    );
    let mut old_offsets: Vec<u64> = old.iter().map(|p| p.1).collect();
    let mut new_offsets: Vec<u64> = new.iter().map(|p| p.1).collect();
    old_offsets.sort();
    new_offsets.sort();
    assert_eq!(old_offsets, new_offsets, "partitions moved");
    assert!(
        s[1..].iter().all(|x| x.exit == 0),
        "{}\n{}",
        s[1].output,
        s[2].output
    );
    let after: Vec<String> = others.iter().map(|d| sha256_file(&d.path)).collect();
    assert_eq!(after, before, "another disk changed");
    assert_ne!(sha256_file(&raid_path), compacted);
    // The action log, appended to the destination at power-off, is still
    // there after the second boot: the repair and the imaging with their
    // byte counts, the confirmations and the mount.
    let log = String::from_utf8_lossy(&ext4_file(
        &dest_path,
        "/rescue-logs/rescue.log",
        &dir.path().join("rescue.log"),
    ))
    .into_owned();
    for want in [
        "=== rescue boot ",
        "confirmed by typing its serial number RAID-LD-0001",
        "gpt: undo file /mnt/dest/vda/gpt-undo/gpt-undo-RAID-LD-0001-",
        "mounted read-write at /mnt/dest/vda",
        "partition table of /dev/",
        "imaging of /dev/nvme0n1 to /mnt/dest/vda/",
        "power off",
    ] {
        assert!(log.contains(want), "{want:?} not in the log:\n{log}");
    }
    let gpt_line = log
        .lines()
        .find(|l| l.contains("gpt: wrote "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        gpt_line.contains(" bytes in ") && gpt_line.contains("read back as written"),
        "{gpt_line}"
    );
    let image_line = log
        .lines()
        .find(|l| l.contains("rescue image: ") && l.contains(" bytes rescued"))
        .unwrap_or_else(|| panic!("{log}"));
    // Exactly the injected sectors, in their runs (as the imaging test
    // finds them in the mapfile).
    let bad = demo::DYING_BAD_SECTORS.len() as u64 * 512;
    let runs = demo::DYING_BAD_SECTORS
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .count()
        + 1;
    let size = std::fs::metadata(
        &disks
            .iter()
            .find(|d| d.serial == "DYING-SSD-0001")
            .unwrap()
            .path,
    )
    .unwrap()
    .len();
    assert!(
        image_line.contains(&format!("{} of {size} bytes rescued", size - bad))
            && image_line.contains(&format!("{bad} bytes in {runs} bad areas")),
        "{image_line}"
    );
}

/// PXE: QEMU's TFTP server and the e1000's iPXE ROM boot `out/pxe/` as
/// image-build wrote it (its iPXE menu's default entry after the timeout),
/// to the menu on the serial console, which lists the disk; then power off.
#[test]
fn pxe_boot_from_the_bundle() {
    let image = Image::built();
    let pxe = image.kernel.parent().unwrap().join("pxe");
    for f in [
        "boot.ipxe",
        "vmlinuz",
        "initramfs.img",
        "pxelinux.0",
        "pxelinux.cfg/default",
        "grub/grub.cfg",
    ] {
        assert!(pxe.join(f).exists(), "{} missing", pxe.join(f).display());
    }
    let dir = temp_dir("pxe");
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    let mut cfg = VmConfig::new(vec![Disk::new(&a, Controller::VirtioBlk, "PXEDISK")]);
    cfg.pxe_dir = Some(pxe);
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(boot.contains("menus on /dev/tty1 /dev/ttyS0"), "{boot}");
    assert!(boot.contains(" vda "), "{boot}");
    vm.power_off_from_menu();
}

/// UEFI with Secure Boot enforced (OVMF with Microsoft's keys) boots the USB
/// stick image through Debian's signed shim and GRUB to the menu; the guest
/// confirms Secure Boot is on and its signed modules load under lockdown.
#[test]
fn usb_stick_boots_with_secure_boot() {
    let image = Image::built();
    let stick = image.kernel.parent().unwrap().join("rescue-usb.img");
    assert!(stick.exists(), "{} missing", stick.display());
    let dir = temp_dir("secboot");
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    let mut cfg = VmConfig::new(vec![Disk::new(&a, Controller::VirtioBlk, "SBDISK")]);
    cfg.usb_stick = Some(stick.clone());
    cfg.uefi = Some((true, dir.path().join("vars.fd")));
    let before = sha256_file(&stick);
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(boot.contains(" vda "), "{boot}");
    // The menu says so itself (the kernel's own messages are quiet).
    assert!(boot.contains(&format!("Boot: {SECURE_BOOT}")), "{boot}");
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    vm.send("od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -s ' '; dmesg | grep -c 'Secure boot enabled'; echo SB\"\"-DONE\n");
    let sb = vm.wait_for("SB-DONE", Duration::from_secs(60));
    // efivar: 4 attribute bytes, then the value 1.
    assert!(
        sb.contains(" 6 0 0 0 1"),
        "SecureBoot variable not 1:\n{sb}"
    );
    assert!(
        sb.lines().any(|l| l.trim() == "1"),
        "no 'Secure boot enabled' in dmesg:\n{sb}"
    );
    vm.power_off_from_shell();
    assert_eq!(sha256_file(&stick), before);
}

/// Boots a medium to the menu, checks the disk is listed and the menu's
/// `Boot:` line starts with `boot_line`, powers off, and checks the
/// medium's image was not changed. Returns the boot transcript.
fn boot_medium(cfg: VmConfig, medium: &std::path::Path, boot_line: &str) -> String {
    let image = Image::built();
    let before = sha256_file(medium);
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(boot.contains(" vda "), "{boot}");
    assert!(boot.contains(&format!("Boot: {boot_line}")), "{boot}");
    vm.power_off_from_menu();
    assert_eq!(sha256_file(medium), before);
    boot
}

/// The menu's `Boot:` line (see probe::boot) for each firmware setup.
const BIOS_BOOT: &str = "BIOS (not UEFI), no Secure Boot (lockdown: none)";
const UEFI_BOOT: &str = "UEFI, Secure Boot off (lockdown: none)";
const SECURE_BOOT: &str = "UEFI, Secure Boot on (lockdown: integrity)";

fn media_cfg(dir: &TempDir) -> VmConfig {
    let a = make_disk(&dir.path().join("a.img"), 16 * MIB, "a");
    VmConfig::new(vec![Disk::new(&a, Controller::VirtioBlk, "MEDIADISK")])
}

fn out_file(name: &str) -> std::path::PathBuf {
    let p = Image::built().kernel.parent().unwrap().join(name);
    assert!(p.exists(), "{} missing", p.display());
    p
}

#[test]
fn iso_boots_as_cd_in_bios() {
    let dir = temp_dir("iso-bios");
    let mut cfg = media_cfg(&dir);
    let iso = out_file("rescue.iso");
    cfg.cdrom = Some(iso.clone());
    boot_medium(cfg, &iso, BIOS_BOOT);
}

#[test]
fn iso_boots_as_cd_in_uefi() {
    let dir = temp_dir("iso-uefi");
    let mut cfg = media_cfg(&dir);
    let iso = out_file("rescue.iso");
    cfg.cdrom = Some(iso.clone());
    cfg.uefi = Some((false, dir.path().join("vars.fd")));
    boot_medium(cfg, &iso, UEFI_BOOT);
}

/// BMC virtual media is a CD to the firmware, on servers that usually
/// enforce Secure Boot: the ISO's small EFI image (shim, GRUB, a config
/// that finds the ISO9660 volume) boots the kernel from the CD with it on.
#[test]
fn iso_boots_as_cd_with_secure_boot() {
    let dir = temp_dir("iso-uefi-sb");
    let mut cfg = media_cfg(&dir);
    let iso = out_file("rescue.iso");
    cfg.cdrom = Some(iso.clone());
    cfg.uefi = Some((true, dir.path().join("vars.fd")));
    boot_medium(cfg, &iso, SECURE_BOOT);
}

/// Also: an empty DVD drive (QEMU's ide-cd without a medium, as on a
/// server with an empty drive or virtual media slot) is `no medium`, not a
/// damaged 1 GiB disk.
#[test]
fn usb_stick_boots_in_bios() {
    let dir = temp_dir("usb-bios");
    let mut cfg = media_cfg(&dir);
    let stick = out_file("rescue-usb.img");
    cfg.usb_stick = Some(stick.clone());
    cfg.extra_args = [
        "-drive",
        "if=none,id=emptycd,media=cdrom",
        "-device",
        "ide-cd,drive=emptycd,bus=ide.1",
    ]
    .map(String::from)
    .to_vec();
    let boot = boot_medium(cfg, &stick, BIOS_BOOT);
    let sr0 = boot
        .lines()
        .find(|l| l.contains(" sr0 "))
        .unwrap_or_else(|| panic!("no sr0 in the overview:\n{boot}"));
    assert!(sr0.contains("no medium"), "{sr0}");
    assert!(!sr0.contains("damaged") && !sr0.contains("MiB"), "{sr0}");
    // Nothing to protect on an empty drive, and no alarm about it at boot.
    assert!(!boot.contains("could not set /dev/sr0"), "{boot}");
}

#[test]
fn usb_stick_boots_in_uefi() {
    let dir = temp_dir("usb-uefi");
    let mut cfg = media_cfg(&dir);
    let stick = out_file("rescue-usb.img");
    cfg.usb_stick = Some(stick.clone());
    cfg.uefi = Some((false, dir.path().join("vars.fd")));
    boot_medium(cfg, &stick, UEFI_BOOT);
}

/// The ISO written to a stick (hybrid) boots with Secure Boot enforced.
#[test]
fn iso_as_usb_stick_boots_with_secure_boot() {
    let dir = temp_dir("iso-usb-sb");
    let mut cfg = media_cfg(&dir);
    let iso = out_file("rescue.iso");
    cfg.usb_stick = Some(iso.clone());
    cfg.uefi = Some((true, dir.path().join("vars.fd")));
    boot_medium(cfg, &iso, SECURE_BOOT);
}

/// image-build's `out/SHA256SUMS` names every artifact and matches them, as
/// GNU sha256sum (an independent implementation) computes the hashes: the
/// check the README tells an admin to run.
#[test]
fn sha256sums_match_the_artifacts() {
    let sums = out_file("SHA256SUMS");
    let text = std::fs::read_to_string(&sums).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_once("  ").map(|(_, n)| n).unwrap_or(l))
        .collect();
    assert_eq!(
        names,
        ["rescue-usb.img", "rescue.iso", "vmlinuz", "initramfs.img"],
        "{text}"
    );
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(sums.parent().unwrap())
        .output()
        .expect("sha256sum (coreutils)");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(report.matches(": OK").count(), 4, "{report}");
}

/// How often `needle` occurs in `hay` at 512-byte boundaries: file data
/// starts on a sector in FAT and on a 2048-byte block in ISO9660.
fn count_aligned(hay: &[u8], needle: &[u8]) -> usize {
    hay.chunks(512)
        .enumerate()
        .filter(|(i, _)| hay[i * 512..].starts_with(needle))
        .count()
}

/// Issue 17 item 9: each medium is at most 40 MiB, and each carries the
/// kernel and the initramfs once (the ISO used to hold them in its ISO9660
/// tree and again inside its EFI image, and the stick a 64 MiB ESP).
#[test]
fn media_are_small_and_carry_the_payload_once() {
    const LIMIT: u64 = 40 * MIB;
    let kernel = std::fs::read(out_file("vmlinuz")).unwrap();
    let initramfs = std::fs::read(out_file("initramfs.img")).unwrap();
    for name in ["rescue-usb.img", "rescue.iso"] {
        let medium = out_file(name);
        let size = std::fs::metadata(&medium).unwrap().len();
        // The suite's out/ is built without --data-size (a RESCUEDATA
        // partition makes the stick as large as asked).
        assert!(
            size <= LIMIT,
            "{name}: {size} bytes, over {LIMIT} (out/ built with --data-size?)"
        );
        let bytes = std::fs::read(&medium).unwrap();
        // 64 KiB from 1 MiB into each file: a sector-aligned piece of it.
        for (what, file) in [("vmlinuz", &kernel), ("initramfs.img", &initramfs)] {
            let piece = &file[1 << 20..(1 << 20) + (64 << 10)];
            assert_eq!(
                count_aligned(&bytes, piece),
                1,
                "{name} should hold {what} exactly once"
            );
        }
    }
}
