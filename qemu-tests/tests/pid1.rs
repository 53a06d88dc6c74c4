//! PID 1 under QEMU (TCG): the menu on the serial console, the read-only
//! guard, bad input at boot, hot-plug, a menu restarted after it dies,
//! Ctrl-Alt-Del and SIGTERM. Needs `out/` (cargo run --release -p
//! image-build) and qemu-system-x86_64; the test script provides both.

use qemu_tests::*;
use std::time::Duration;

const MIB: u64 = 1 << 20;

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
    vm.wait_exit_ok(Duration::from_secs(60));
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
    vm.wait_exit_ok(Duration::from_secs(60));
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
    vm.wait_exit_ok(Duration::from_secs(60));
}
