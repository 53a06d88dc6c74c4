//! The menu's datastore browser in the guest: the demo's ESXi boot disk
//! (GPT with the real ESXi-written VMFS5 volume in slot 3) attached to a
//! MegaRAID (megasas-gen2) controller; the datastore is browsed over the
//! serial console, a folder and a file are marked and extracted to the
//! ext4 destination on a second disk; the source is unchanged and the
//! extracted files hold the fixture's known content.

use qemu_tests::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn datastore_on_megaraid_browsed_and_extracted_from_the_menu() {
    if demo::vmfs5_fixture().is_none() {
        eprintln!("skipped: ../shared/fixtures/vmfs/vmfs5.bin.gz is not beside the checkout");
        return;
    }
    let image = Image::built();
    let dir = TempDir::new("datastore");
    let demo = demo::demo_disks(dir.path(), true).expect("demo disks");
    let boot = demo.iter().find(|d| d.serial == "ESXI-BOOT-0001").unwrap();
    let dest = demo.iter().find(|d| d.serial == "DEST-0001").unwrap();
    let boot_hash = sha256_file(&boot.path);
    let disks = vec![
        Disk::new(&boot.path, Controller::MegasasGen2, "ESXI-LD-0001").model("ESXi LD"),
        Disk::new(&dest.path, Controller::VirtioBlk, "DEST-0001"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(overview.contains("d VMFS datastores"), "{overview}");
    vm.send("d\n");
    let stores = vm.wait_for("Datastore (Enter: back): ", T);
    assert!(stores.contains("VMFS5 \"vmfs5\""), "{stores}");
    vm.send(&format!("{}\n", menu_number(&stores, "\"vmfs5\"")));
    let root = vm.wait_for("Enter: back: ", T);
    for name in [
        "directory/",
        "big ",
        "bigger ",
        "small ",
        "symlink",
        "rdm-rdm.vmdk",
    ] {
        assert!(root.contains(name), "{name} missing:\n{root}");
    }
    assert!(root.contains("raw device mapping"), "{root}");
    // Into the folder and back up.
    vm.send(&format!("{}\n", menu_number(&root, "directory/")));
    let folder = vm.wait_for("Enter: back: ", T);
    assert!(
        folder.contains("vmfs5:/directory") && folder.contains("file100"),
        "{folder}"
    );
    vm.send("u\n");
    let root = vm.wait_for("Enter: back: ", T);
    vm.send(&format!("m {}\n", menu_number(&root, "directory/")));
    let root = vm.wait_for("Enter: back: ", T);
    assert!(root.contains("(1 marked)"), "{root}");
    vm.send(&format!("m {}\n", menu_number(&root, "big ")));
    let root = vm.wait_for("Enter: back: ", T);
    assert!(root.contains("(2 marked)"), "{root}");
    vm.send("x\n");
    let dests = vm.wait_for("Destination (Enter: back): ", T);
    assert!(dests.contains("RESCUEDEST"), "{dests}");
    assert!(
        !dests
            .lines()
            .any(|l| l.trim_start().starts_with(char::is_numeric) && l.contains("/dev/sda")),
        "the source disk is offered as a destination: {dests}"
    );
    vm.send(&format!("{}\n", menu_number(&dests, "RESCUEDEST")));
    vm.wait_for("Type yes to mount: ", T);
    vm.send("yes\n");
    let confirm = vm.wait_for("[y/N]: ", T);
    assert!(confirm.contains("/mnt/dest/vda/vmfs-vmfs5"), "{confirm}");
    vm.send("y\n");
    let done = vm.wait_for("Enter: back to the folder: ", Duration::from_secs(300));
    assert!(done.contains("Extracted: every byte was read."), "{done}");
    vm.send("\n");
    vm.wait_for("Enter: back: ", T);
    vm.send("\n");
    vm.wait_for("Choose: ", T);
    vm.power_off_from_menu();
    assert_eq!(sha256_file(&boot.path), boot_hash, "source changed");
    let big = ext4_file(&dest.path, "/vmfs-vmfs5/big", &dir.path().join("big"));
    let mut want = b"Kusjes van SRT<3".repeat(65536);
    want.push(b'\n');
    assert!(big == want, "big differs ({} bytes)", big.len());
    let f42 = ext4_file(
        &dest.path,
        "/vmfs-vmfs5/directory/file42",
        &dir.path().join("f42"),
    );
    assert_eq!(f42, b"File 42\n");
}

/// Unpacks a shared VMFS fixture into a sparse disk image.
fn fixture_disk(rel: &str, out: &std::path::Path) {
    let gz = workspace_root().join("../shared/fixtures/vmfs").join(rel);
    let script = format!(
        "gzip -dc '{}' | dd of='{}' bs=1M conv=sparse status=none",
        gz.display(),
        out.display()
    );
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .expect("sh");
    assert!(st.success(), "{script}");
}

/// A VMFS5 volume spanning two disks (the real ESXi-written span fixture):
/// the CLI given one disk finds the other extent by volume UUID, and the
/// menu lists the volume once, whole.
#[test]
fn spanned_datastore_is_assembled_from_the_disks_by_uuid() {
    let span0 = workspace_root().join("../shared/fixtures/vmfs/span/vmfs5-span-0.bin.gz");
    if !span0.exists() {
        eprintln!("skipped: ../shared/fixtures/vmfs/span is not beside the checkout");
        return;
    }
    let image = Image::built();
    let dir = TempDir::new("span");
    let (a, b) = (dir.path().join("span0.img"), dir.path().join("span1.img"));
    fixture_disk("span/vmfs5-span-0.bin.gz", &a);
    fixture_disk("span/vmfs5-span-1.bin.gz", &b);
    let hashes = [sha256_file(&a), sha256_file(&b)];
    // The second extent first, so the volume's start is on vdb.
    let disks = vec![
        Disk::new(&b, Controller::VirtioBlk, "SPAN-1"),
        Disk::new(&a, Controller::VirtioBlk, "SPAN-0"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.send("d\n");
    let stores = vm.wait_for("Datastore (Enter: back): ", T);
    let listed: Vec<&str> = stores.lines().filter(|l| l.contains("VMFS5 \"")).collect();
    assert_eq!(listed.len(), 1, "one volume, listed once:\n{stores}");
    assert!(!stores.contains(" ! "), "{stores}");
    vm.send("\n");
    vm.wait_for("Choose: ", T);
    vm.enter_shell();
    let (info, code) = vm.shell("rescue vmfs info /dev/vda", T);
    assert_eq!(code, 0, "{info}");
    assert!(info.contains("found on /dev/vdb"), "{info}");
    assert!(!info.contains("MISSING"), "{info}");
    assert!(
        info.contains("on /dev/vda") && info.contains("on /dev/vdb"),
        "{info}"
    );
    let (ls, code) = vm.shell("rescue vmfs ls /dev/vdb /", T);
    assert_eq!(code, 0, "{ls}");
    assert!(ls.contains(".fdc.sf") && ls.contains(".sbc.sf"), "{ls}");
    vm.power_off_from_shell();
    assert_eq!([sha256_file(&a), sha256_file(&b)], hashes);
}
