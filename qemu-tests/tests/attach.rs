//! `rescue attach` in the guest: a VMDK snapshot chain and an image with a
//! ddrescue mapfile, both files on a disk, become read-only kernel block
//! devices (`/dev/nbdN` with partitions) served by the `rescue` process;
//! the kernel reads exactly the bytes of the chain's top, the mapfile's
//! unrescued areas read as I/O errors, writes are refused, a killed server
//! leaves I/O errors (not a hang), and detach and power-off release it all.

use qemu_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// Bytes that do not repeat within a MiB, so a misplaced block shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The guest disk: `hello.txt` and a 3 MiB `big.bin` on ext4 in GPT
/// partition 1 (LBA 2048, 46 MiB). Gives the disk and the partition.
fn guest_disk(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from the guest\n").unwrap();
    std::fs::write(files.join("big.bin"), pattern(3 * MIB, 7)).unwrap();
    qemu_tests::guest::guest_disk(dir, &files, "GUESTFS").unwrap()
}

#[test]
fn vm_disks_and_images_attach_read_only_and_detach() {
    let image = Image::built();
    let dir = temp_dir("attach");
    let d = dir.path();
    let (guest, part) = guest_disk(d);
    let store = d.join("store");
    let vm1 = store.join("vm1");
    std::fs::create_dir_all(&vm1).unwrap();
    std::fs::write(d.join("guest.raw"), &guest).unwrap();
    // The base as a hosted sparse VMDK, and a snapshot over it that
    // changes 512 KiB at 47 MiB (after the partition).
    qemu_tests::guest::vmdk_chain(&d.join("guest.raw"), &vm1, "vm1").unwrap();
    run(Command::new("qemu-io").current_dir(&vm1).args([
        "-f",
        "vmdk",
        "-c",
        "write -q -P 0x5a 47M 512K",
        "vm1-000001.vmdk",
    ]));
    let mut top = guest.clone();
    top[47 * MIB..47 * MIB + 512 * 1024].fill(0x5a);

    // An 8 MiB image whose mapfile leaves two areas unrescued.
    std::fs::write(store.join("img.raw"), pattern(8 * MIB, 11)).unwrap();
    std::fs::write(
        store.join("img.map"),
        "# Mapfile. Created by GNU ddrescue\n\
         # current_pos  current_status  current_pass\n\
         0x00000000     +               1\n\
         #      pos        size  status\n\
         0x00000000  0x00100000  +\n\
         0x00100000  0x00002000  -\n\
         0x00102000  0x003FE000  +\n\
         0x00500000  0x00001000  ?\n\
         0x00501000  0x002FF000  +\n",
    )
    .unwrap();
    let store_disk = d.join("store.raw");
    qemu_tests::guest::ext4_of(&store, &store_disk, 256 * MIB as u64, Some("STORE")).unwrap();
    let store_hash = sha256_file(&store_disk);

    let disks = vec![Disk::new(&store_disk, Controller::VirtioBlk, "STORE-0001")];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let sh = |vm: &mut Vm, c: &str| vm.shell(c, T);

    let (out, code) = sh(
        &mut vm,
        "mkdir -p /mnt/store && mount -o ro -t ext4 /dev/vda /mnt/store",
    );
    assert_eq!(code, 0, "{out}");
    // A source the serving process cannot open: its words come back.
    let (out, code) = sh(&mut vm, "rescue attach /mnt/store/vm1/nope.vmdk");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("rescue attach: ") && out.contains("nope.vmdk"),
        "{out}"
    );
    assert!(!out.contains("without attaching"), "{out}");
    let (out, code) = sh(
        &mut vm,
        "rescue attach /mnt/store/vm1/vm1-000001.vmdk --name vm1",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("attached nbd0") && out.contains("VMDK vm1/vm1-000001.vmdk (2 levels)"),
        "{out}"
    );
    assert!(out.contains("/dev/nbd0p1"), "{out}");
    let (out, _) = sh(&mut vm, "cat /sys/block/nbd0/ro");
    assert_eq!(out.trim(), "1", "the kernel device is read-only");
    let (out, code) = sh(&mut vm, "sha256sum /dev/nbd0p1 /dev/nbd0");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&sha256_hex(&part)),
        "partition bytes differ:\n{out}"
    );
    assert!(
        out.contains(&sha256_hex(&top)),
        "the chain's top differs:\n{out}"
    );
    let (out, code) = sh(&mut vm, "dd if=/dev/zero of=/dev/nbd0 bs=512 count=1");
    assert_ne!(code, 0, "a write to the attached disk succeeded: {out}");

    let (out, code) = sh(
        &mut vm,
        "rescue attach /mnt/store/img.raw --map /mnt/store/img.map",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("attached nbd1") && out.contains("12.0 KiB unreadable"),
        "{out}"
    );
    let (out, code) = sh(
        &mut vm,
        "for i in $(seq 0 2047); do dd if=/dev/nbd1 of=/dev/null bs=4096 skip=$i count=1 2>/dev/null || echo BAD $i; done",
    );
    assert_eq!(code, 0, "{out}");
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("BAD")).collect();
    assert_eq!(bad, ["BAD 256", "BAD 257", "BAD 1280"], "{out}");

    let (out, code) = sh(&mut vm, "rescue attach");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("nbd0  48.0 MiB  VMDK vm1/vm1-000001.vmdk (2 levels)  [vm1]"),
        "{out}"
    );
    assert!(
        out.contains("nbd1  8.0 MiB  image /mnt/store/img.raw"),
        "{out}"
    );
    let (out, code) = sh(&mut vm, "rescue probe");
    assert!(code <= 1, "{out}");
    assert!(
        out.contains("nbd0") && out.contains("VMDK vm1/vm1-000001.vmdk"),
        "{out}"
    );

    // A mounted guest filesystem keeps the device: detach says why.
    let (out, code) = sh(
        &mut vm,
        "mkdir -p /mnt/g && mount -o ro,noload -t ext4 /dev/nbd0p1 /mnt/g && cat /mnt/g/hello.txt",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from the guest"), "{out}");
    let (out, code) = sh(&mut vm, "rescue detach vm1");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nbd0p1 is mounted at /mnt/g"), "{out}");

    // The server killed under the mount: reads fail, nothing hangs, and
    // the device is released.
    let (out, code) = sh(
        &mut vm,
        "p=$(cat /sys/block/nbd0/pid); kill -9 $p; while [ -e /proc/$p ]; do sleep 0.1; done; cat /mnt/g/big.bin > /dev/null",
    );
    assert_ne!(code, 0, "reading after the server died succeeded: {out}");
    let (out, code) = sh(&mut vm, "umount /mnt/g && rescue attach");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("server gone: detach it"), "{out}");
    let (out, code) = sh(&mut vm, "rescue detach vm1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("detached nbd0"), "{out}");

    // Detach by device, then attach again into the freed slot.
    let (out, code) = sh(
        &mut vm,
        "rescue detach /dev/nbd1 && cat /sys/block/nbd1/size",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("detached nbd1") && out.trim_end().ends_with('0'),
        "{out}"
    );
    let (out, code) = sh(
        &mut vm,
        "rescue attach /mnt/store/vm1/vm1.vmdk && sha256sum /dev/nbd0",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VMDK vm1/vm1.vmdk (1 level)"), "{out}");
    assert!(
        out.contains(&sha256_hex(&guest)),
        "the base differs:\n{out}"
    );

    let (out, _) = sh(
        &mut vm,
        "dmesg | grep -iE 'nbd.*(timed out|timeout)|hung_task|blocked for more' ; true",
    );
    assert!(out.trim().is_empty(), "kernel log:\n{out}");
    // Power-off detaches what is still attached, after the mounts.
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
    let transcript = vm.transcript();
    assert!(
        transcript.contains("detached nbd0 (VMDK vm1/vm1.vmdk (1 level))"),
        "{transcript}"
    );
    assert_eq!(
        sha256_file(&store_disk),
        store_hash,
        "the store disk was written"
    );
}
