//! The menu's way from a VM disk to the guest's files, in the guest: a
//! VM folder copied to a disk (a hosted sparse VMDK with a snapshot over
//! it, made by qemu-img) is opened with the overview's "v open a VM disk
//! file"; the disk is attached read-only; its partition 2, an LVM PV
//! written by lvm2, has its volume group activated read-only through
//! device-mapper and the LV's ext4 mounted and listed; partition 1's ext4
//! is mounted read-only (attempts shown), browsed, a folder copied to the
//! ext4 destination on another disk (mounted after a typed yes), a shell
//! opened in the folder; leaving unmounts, deactivates and detaches in
//! that order. The store disk is unchanged; the copy holds the guest's
//! bytes.

use qemu_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::gptdisk::{self, Part};

const T: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// An ext4 image of `mib` MiB labelled `label` holding `files`.
fn ext4_with(
    dir: &Path,
    name: &str,
    mib: usize,
    label: &str,
    files: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let tree = dir.join(format!("{name}-files"));
    for (p, data) in files {
        let f = tree.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, data).unwrap();
    }
    let img = dir.join(format!("{name}.raw"));
    qemu_tests::guest::ext4_of(&tree, &img, (mib * MIB) as u64, Some(label)).unwrap();
    std::fs::read(&img).unwrap()
}

/// A 16 MiB LVM PV written by lvm2: volume group `guestvg` with LV `data`
/// (8 MiB, linear) holding `lv_fs`.
fn pv_with(lv_fs: &[u8]) -> Vec<u8> {
    let t = testkit::lvm2::LvmImages::new("guestmenu-qemu-pv", &[16]);
    t.lvm(&["pvcreate", "-y", &t.loops[0]]);
    t.lvm(&["vgcreate", "-s", "4m", "guestvg", &t.loops[0]]);
    t.lvm(&[
        "lvcreate", "-an", "-Zn", "-L", "8m", "-n", "data", "guestvg",
    ]);
    let pe_start: usize = t
        .lvm(&[
            "pvs",
            "--noheadings",
            "--nosuffix",
            "--units",
            "b",
            "-o",
            "pe_start",
            &t.loops[0],
        ])
        .trim()
        .parse()
        .expect("pe_start");
    let mut pv = t.read(0);
    // The first LV of the only PV starts at its first extent.
    pv[pe_start..pe_start + lv_fs.len()].copy_from_slice(lv_fs);
    pv
}

/// The guest disk: GPT, partition 1 (LBA 2048, 46 MiB) ext4 "GUESTFS",
/// partition 2 (at 48 MiB, 16 MiB) the PV; 72 MiB.
fn guest_disk(dir: &Path) -> Vec<u8> {
    let p1 = ext4_with(
        dir,
        "p1",
        46,
        "GUESTFS",
        &[
            ("hello.txt", b"hello from the guest\n".to_vec()),
            ("docs/a.txt", b"the guest's letter\n".to_vec()),
            (
                "docs/big.bin",
                (0..3 * MIB).map(|i| (i % 253) as u8).collect(),
            ),
        ],
    );
    let lv = ext4_with(
        dir,
        "lv",
        8,
        "LVDATA",
        &[("lv.txt", b"inside the LV\n".to_vec())],
    );
    let pv = pv_with(&lv);
    let sectors = (72 * MIB / 512) as u64;
    let mut disk = gptdisk::disk(
        sectors,
        512,
        &[
            Part {
                slot: 1,
                type_guid: gptdisk::BASIC,
                first: 2048,
                last: 2048 + (46 * MIB / 512) as u64 - 1,
                name: "root",
            },
            Part {
                slot: 2,
                type_guid: gptdisk::BASIC,
                first: (48 * MIB / 512) as u64,
                last: (64 * MIB / 512) as u64 - 1,
                name: "lvm",
            },
        ],
    );
    disk[MIB..MIB + p1.len()].copy_from_slice(&p1);
    disk[48 * MIB..48 * MIB + pv.len()].copy_from_slice(&pv);
    disk
}

/// The words of a screen, one space apart: lines wrap at 79 columns.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_vm_disk_file_is_opened_from_the_menu_and_its_files_copied() {
    let image = Image::built();
    let dir = temp_dir("guestmenu");
    let d = dir.path();
    let guest = guest_disk(d);
    std::fs::write(d.join("guest.raw"), &guest).unwrap();
    let vm1 = d.join("store/vm1");
    std::fs::create_dir_all(&vm1).unwrap();
    qemu_tests::guest::vmdk_chain(&d.join("guest.raw"), &vm1, "vm1").unwrap();
    let store = d.join("store.raw");
    qemu_tests::guest::ext4_of(&d.join("store"), &store, 256 * MIB as u64, Some("STORE")).unwrap();
    let store_hash = sha256_file(&store);
    let dest = d.join("dest.raw");
    std::fs::File::create(&dest)
        .unwrap()
        .set_len(128 * MIB as u64)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "RESCUEDEST"])
        .arg(&dest));

    let disks = vec![
        Disk::new(&store, Controller::VirtioBlk, "STORE-0001"),
        Disk::new(&dest, Controller::VirtioBlk, "DEST-0001"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(overview.contains("v open a VM disk file"), "{overview}");
    // The VM folder's disk, mounted read-only from the shell.
    vm.enter_shell();
    let (out, code) = vm.shell("rescue mount /dev/vda /mnt/store", T);
    assert_eq!(code, 0, "{out}");
    vm.send("exit\n");
    vm.wait_for("Choose: ", T);

    vm.send("v\n");
    vm.wait_for("Path (Enter: back): ", T);
    vm.send("/mnt/store/vm1/vm1-000001.vmdk\n");
    let disk = vm.wait_for("x: leave this disk: ", T);
    assert!(
        disk.contains("vm1-000001.vmdk  72.0 MiB  monolithicSparse (hosted sparse), 2 levels"),
        "{disk}"
    );
    assert!(disk.contains("attached as /dev/nbd0"), "{disk}");
    assert!(
        words(&disk).contains("ext4 \"GUESTFS\" (not mounted)"),
        "{disk}"
    );
    assert!(
        words(&disk).contains("LVM2 PV, VG guestvg (activate its LVs)"),
        "{disk}"
    );

    // The volume group, read-only through device-mapper; its LV mounted.
    vm.send(&format!("{}\n", menu_number(&disk, "/dev/nbd0p2")));
    let disk = vm.wait_for("x: leave this disk: ", T);
    assert!(disk.contains("guestvg/data activated read-only"), "{disk}");
    assert!(
        disk.contains("/dev/mapper/guestvg-data") && disk.contains("ext4 \"LVDATA\""),
        "{disk}"
    );
    vm.send(&format!("{}\n", menu_number(&disk, "ext4 \"LVDATA\"")));
    let lv = vm.wait_for("Enter: back to the disk: ", T);
    assert!(lv.contains("trying ro,noload"), "{lv}");
    assert!(lv.contains("lv.txt"), "{lv}");
    vm.send("\n");
    let disk = vm.wait_for("x: leave this disk: ", T);

    // Partition 1: mounted with its attempts shown, browsed, copied from.
    vm.send(&format!("{}\n", menu_number(&disk, "/dev/nbd0p1")));
    let root = vm.wait_for("Enter: back to the disk: ", T);
    assert!(
        root.contains("/dev/nbd0p1 mounted read-only at /mnt/nbd0p1"),
        "{root}"
    );
    for name in ["docs/", "lost+found/", "hello.txt"] {
        assert!(root.contains(name), "{name}:\n{root}");
    }
    vm.send(&format!("{}\n", menu_number(&root, "docs/")));
    let docs = vm.wait_for("Enter: back to the disk: ", T);
    assert!(
        docs.contains("big.bin") && docs.contains("3.0 MiB"),
        "{docs}"
    );
    vm.send("u\n");
    let root = vm.wait_for("Enter: back to the disk: ", T);
    vm.send(&format!("c {}\n", menu_number(&root, "docs/")));
    let dests = vm.wait_for("Destination (Enter: back): ", T);
    assert!(
        dests.contains("Destination for /docs (2 files, 3.0 MiB):"),
        "{dests}"
    );
    let offered = dests.split("Not offered:").next().unwrap_or("");
    assert!(
        !offered
            .lines()
            .any(|l| l.trim_start().starts_with(char::is_numeric) && l.contains("/dev/vda")),
        "the store is offered: {dests}"
    );
    vm.send(&format!("{}\n", menu_number(&dests, "RESCUEDEST")));
    vm.wait_for("Type yes to mount: ", T);
    vm.send("yes\n");
    let confirm = vm.wait_for("[y/N]: ", T);
    assert!(
        confirm.contains("/mnt/dest/vdb/vm1-000001/p1?"),
        "{confirm}"
    );
    vm.send("y\n");
    let copied = vm.wait_for("Enter: back to the folder: ", T);
    assert!(
        copied.contains("copied 2 files (3.0 MiB), 1 folder, 0 links"),
        "{copied}"
    );
    assert!(copied.contains("Copied: every byte was read."), "{copied}");
    vm.send("\n");
    vm.wait_for("Enter: back to the disk: ", T);

    // A shell in the folder shown.
    vm.send("s\n");
    vm.wait_for("type 'exit'", T);
    let (out, code) = vm.shell("pwd; touch x", T);
    assert!(out.contains("/mnt/nbd0p1"), "{out}");
    assert_ne!(code, 0, "a write to the guest filesystem worked: {out}");
    vm.send("exit\n");
    vm.wait_for("Enter: back to the disk: ", T);
    vm.send("\n");
    vm.wait_for("x: leave this disk: ", T);

    // Leaving undoes it all, in order.
    vm.send("x\n");
    let leave = vm.wait_for("Enter: back to the disk: ", T);
    assert!(
        words(&leave)
            .contains("d: unmount 2 filesystems, deactivate 1 logical volume, detach nbd0"),
        "{leave}"
    );
    vm.send("d\n");
    let after = vm.wait_for("Choose: ", T);
    let order: Vec<usize> = [
        "unmounted /mnt/nbd0p1",
        "unmounted /mnt/dm-",
        "guestvg/data deactivated",
        "detached nbd0",
    ]
    .iter()
    .map(|w| {
        after
            .find(w)
            .unwrap_or_else(|| panic!("{w} missing:\n{after}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{after}");

    vm.enter_shell();
    let (out, _) = vm.shell("rescue attach; ls /dev/mapper; grep -c nbd /proc/mounts", T);
    assert!(out.contains("nothing attached"), "{out}");
    assert!(!out.contains("guestvg"), "{out}");
    vm.power_off_from_shell();
    assert_eq!(
        sha256_file(&store),
        store_hash,
        "the store disk was written"
    );
    let a = ext4_file(&dest, "/vm1-000001/p1/docs/a.txt", &d.join("a.txt"));
    assert_eq!(a, b"the guest's letter\n");
    let big = ext4_file(&dest, "/vm1-000001/p1/docs/big.bin", &d.join("big.bin"));
    assert!(big == (0..3 * MIB).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
}
