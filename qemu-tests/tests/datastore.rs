//! The menu's datastore browser in the guest: the demo's ESXi boot disk
//! (GPT with the real ESXi-written VMFS5 volume in slot 3) attached to a
//! MegaRAID (megasas-gen2) controller, beside its raw copy (the demo's
//! RAID LD, incident 003): both copies are listed, each with a note that
//! it is a copy; the first is browsed over the serial console, a folder
//! and a file are marked and extracted to the ext4 destination on a third
//! disk, the second is browsed too; the sources are unchanged and the
//! extracted files hold the fixture's known content.

use qemu_tests::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn datastore_on_megaraid_browsed_and_extracted_from_the_menu() {
    if fixture("vmfs/vmfs5.bin.gz").is_none() {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("datastore");
    let demo = demo::demo_disks(dir.path(), true).expect("demo disks");
    let boot = demo.iter().find(|d| d.serial == "ESXI-BOOT-0001").unwrap();
    let copy = demo.iter().find(|d| d.serial == "RAID-LD-0001").unwrap();
    let dest = demo.iter().find(|d| d.serial == "DEST-0001").unwrap();
    let boot_hash = sha256_file(&boot.path);
    let copy_hash = sha256_file(&copy.path);
    let disks = vec![
        Disk::new(&boot.path, Controller::MegasasGen2, "ESXI-LD-0001").model("ESXi LD"),
        Disk::new(&copy.path, Controller::MegasasGen2, "RAID-LD-0001").model("RAID LD"),
        Disk::new(&dest.path, Controller::VirtioBlk, "DEST-0001"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(overview.contains("d VMFS datastores"), "{overview}");
    vm.send("d\n");
    let stores = vm.wait_for("Datastore (Enter: back): ", T);
    // The disk and its raw copy carry the same LVM device: two datastores,
    // never one volume assembled from both.
    let listed: Vec<&str> = stores
        .lines()
        .filter(|l| l.contains("VMFS5 \"vmfs5\"  2.0 GiB, 1.5 GiB free"))
        .collect();
    assert_eq!(listed.len(), 2, "both copies listed:\n{stores}");
    assert_eq!(stores.matches("(a copy)").count(), 2, "{stores}");
    assert!(!stores.contains(" ! "), "{stores}");
    let second = listed[1].split_whitespace().next().unwrap().to_string();
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
    // Neither the source nor its copy (both ESXi boot disks with
    // bootbanks) is offered; they are listed apart with the reason.
    assert!(
        !dests
            .lines()
            .any(|l| l.trim_start().starts_with(char::is_numeric) && l.contains("/dev/sd")),
        "a disk being rescued is offered as a destination: {dests}"
    );
    let apart = dests
        .split_once("Not offered:")
        .map(|x| x.1)
        .unwrap_or_else(|| panic!("{dests}"));
    assert!(
        apart.contains("/dev/sdb") && apart.contains("holds an ESXi system"),
        "{dests}"
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
    // The other copy is browsable on its own.
    vm.send("d\n");
    vm.wait_for("Datastore (Enter: back): ", T);
    vm.send(&format!("{second}\n"));
    let other = vm.wait_for("Enter: back: ", T);
    assert!(
        other.contains("directory/") && other.contains("bigger "),
        "{other}"
    );
    vm.send("\n");
    vm.wait_for("Choose: ", T);
    vm.power_off_from_menu();
    assert_eq!(sha256_file(&boot.path), boot_hash, "source changed");
    assert_eq!(sha256_file(&copy.path), copy_hash, "the copy changed");
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

/// A VMFS5 volume spanning two disks (the real ESXi-written span fixture):
/// the CLI given one disk finds the other extent by volume UUID, and the
/// menu lists the volume once, whole.
#[test]
fn spanned_datastore_is_assembled_from_the_disks_by_uuid() {
    if fixture("vmfs/span/vmfs5-span-0.bin.gz").is_none()
        || fixture("vmfs/span/vmfs5-span-1.bin.gz").is_none()
    {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("span");
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

/// Extraction from a disk whose reads fail (QEMU blkdebug: EIO on one
/// sector inside the file `big`, as a dying disk gives): the 1 MiB read
/// over it fails, the sector-by-sector retry loses only the page the
/// kernel could not fill (a block device's page cache reads 4 KiB pages),
/// extraction runs to the end with exit 1, and the report names `big` and
/// exactly that 4 KiB range; `bigger` and `small` come out whole. Then the
/// same to a destination too small for `bigger`: extraction stops there
/// (exit 2, "STOPPED"), the part written is kept as `bigger.incomplete`.
#[test]
fn extraction_over_read_errors_loses_only_the_unreadable_page() {
    if fixture("vmfs/vmfs5.bin.gz").is_none() {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("vmfs-eio");
    let src = dir.path().join("vmfs5.img");
    fixture_disk("vmfs5.bin.gz", &src);
    let (page, file_bad, bigger) = {
        let dev = blockdev::Device::open(&src).expect("open the image");
        let v = vmfs::Volume::from_devices(vec![Box::new(dev)]).expect("fixture volume");
        let ext = v.open("big").unwrap().device_extents().unwrap();
        let e = ext
            .iter()
            .find(|e| e.file_offset <= 500_000 && 500_000 < e.file_offset + e.len)
            .expect("big holds byte 500000");
        let page = (e.device_offset + (500_000 - e.file_offset)) / 4096 * 4096;
        let f = v.open("bigger").unwrap();
        let mut bigger = vec![0u8; f.size() as usize];
        f.read_at(&mut bigger, 0).unwrap();
        (page, e.file_offset + (page - e.device_offset), bigger)
    };
    let conf = dir.path().join("eio.blkdebug");
    std::fs::write(
        &conf,
        format!(
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{}\"\nonce = \"off\"\n",
            page / 512 + 3
        ),
    )
    .unwrap();
    let ext4 = |name: &str, size: u64, label: &str| {
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label])
            .arg(&path)
            .status()
            .expect("mkfs.ext4");
        assert!(st.success());
        path
    };
    let dest = ext4("dest.img", 1 << 30, "RESCUEDEST");
    let small_dest = ext4("small-dest.img", 16 << 20, "SMALLDEST");
    let src_hash = sha256_file(&src);
    let mut bad_disk = Disk::new(&src, Controller::VirtioBlk, "VMFS-EIO");
    bad_disk.drive_override = Some(format!(
        "format=raw,file.driver=blkdebug,file.config={},file.image.filename={}",
        conf.display(),
        src.display()
    ));
    // The destination first: /dev/vda; the failing disk /dev/vdb; the
    // small destination /dev/vdc.
    let disks = vec![
        Disk::new(&dest, Controller::VirtioBlk, "DEST-0001"),
        bad_disk,
        Disk::new(&small_dest, Controller::VirtioBlk, "DEST-0002"),
    ];
    let (sections, transcript) = run_script(
        &image,
        VmConfig::new(disks),
        "dest mount /dev/vda --yes\n\
         vmfs extract -q /dev/vdb big bigger small /mnt/dest/vda/out\n\
         dest umount /dev/vda\n\
         dest mount /dev/vdc --yes\n\
         vmfs extract -q /dev/vdb small bigger directory /mnt/dest/vdc/out\n\
         dest umount /dev/vdc\n",
    );
    assert_eq!(sections.len(), 6, "{transcript}");
    assert_eq!(sections[0].exit, 0, "{}", sections[0].output);
    assert_eq!(
        sections[1].exit, 1,
        "lost bytes: exit 1\n{}",
        sections[1].output
    );
    assert_eq!(sections[2].exit, 0, "{}", sections[2].output);
    assert_eq!(sha256_file(&src), src_hash, "the source was written");

    let big = ext4_file(&dest, "/out/big", &dir.path().join("big"));
    let mut want = b"Kusjes van SRT<3".repeat(65536);
    want.push(b'\n');
    assert_eq!(big.len(), want.len());
    let fb = file_bad as usize;
    assert!(
        big[fb..fb + 4096].iter().all(|&x| x == 0),
        "lost page zero-filled"
    );
    assert!(big[..fb] == want[..fb], "big before the lost page differs");
    assert!(
        big[fb + 4096..] == want[fb + 4096..],
        "big after the lost page differs"
    );
    assert!(
        ext4_file(&dest, "/out/bigger", &dir.path().join("bigger")) == bigger,
        "bigger differs"
    );
    assert_eq!(
        ext4_file(&dest, "/out/small", &dir.path().join("small")),
        b"tiny\n"
    );
    let report = String::from_utf8(ext4_file(
        &dest,
        "/out/vmfs-extract-report.txt",
        &dir.path().join("report"),
    ))
    .unwrap();
    assert!(report.contains("LOST big"), "{report}");
    assert!(
        report.contains(&format!(
            "bytes {file_bad}..{} (4096 bytes)",
            file_bad + 4096
        )),
        "{report}"
    );
    assert!(
        !report.contains("bigger") && !report.contains("small"),
        "{report}"
    );

    // The small destination: full in `bigger`, which is kept as far as it
    // got under another name; `directory` after it is not tried.
    assert_eq!(sections[3].exit, 0, "{}", sections[3].output);
    assert_eq!(sections[4].exit, 2, "{}", sections[4].output);
    assert!(
        sections[4].output.contains(
            "STOPPED, the destination failed: bigger: writing (what was written is in \
             /mnt/dest/vdc/out/bigger.incomplete): No space left on device"
        ),
        "{}",
        sections[4].output
    );
    assert_eq!(sections[5].exit, 0, "{}", sections[5].output);
    let scratch = dir.path().join("from-small");
    assert_eq!(ext4_file(&small_dest, "/out/small", &scratch), b"tiny\n");
    let partial = ext4_file(&small_dest, "/out/bigger.incomplete", &scratch);
    assert!(
        partial.len() > 1 << 20 && partial[..1 << 20] == bigger[..1 << 20],
        "{} bytes kept",
        partial.len()
    );
    let listing = std::process::Command::new("debugfs")
        .args(["-R", "ls /out"])
        .arg(&small_dest)
        .output()
        .expect("debugfs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        !listing.contains("directory") && !listing.contains("bigger "),
        "{listing}"
    );
    assert_eq!(sha256_file(&src), src_hash, "the source was written");
}
