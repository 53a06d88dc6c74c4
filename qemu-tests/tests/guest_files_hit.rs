//! `rescue files-hit` in the guest (issue 20, item 4): an image of a
//! physical disk (GPT, one ext4 partition with known files) and its
//! ddrescue mapfile lie on a destination disk; the command attaches the
//! image with the mapfile (its bad areas read as I/O errors), finds the
//! partition, mounts the filesystem read-only, walks it and names the
//! file and byte ranges the bad areas hit, the inode-table block as
//! metadata, the free block as free space and the gap before the
//! partition as outside any filesystem; the report is saved beside the
//! image, and nothing stays attached or mounted.

use qemu_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::gptdisk::{self, Part};

const T: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;
const BS: u64 = 4096;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes that do not repeat within a MiB.
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

fn debugfs(img: &Path, req: &str) -> String {
    run(Command::new("debugfs").args(["-R", req]).arg(img))
}

#[test]
fn files_hit_names_the_guest_file_its_ranges_and_free_space() {
    let image = Image::built();
    let dir = temp_dir("guest-files-hit");
    let d = dir.path();

    // The guest filesystem: 48 MiB ext4, 4 KiB blocks.
    let files = d.join("files");
    std::fs::create_dir_all(files.join("data")).unwrap();
    std::fs::create_dir_all(files.join("docs")).unwrap();
    std::fs::write(files.join("docs/hello.txt"), "hello from the guest\n").unwrap();
    std::fs::write(files.join("data/big.bin"), pattern(MIB as usize, 7)).unwrap();
    let fs = d.join("fs.raw");
    std::fs::File::create(&fs)
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "GUESTFS", "-d"])
        .arg(&files)
        .arg(&fs));
    let big: Vec<u64> = debugfs(&fs, "blocks /data/big.bin")
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(big.len(), 256);
    let stats = debugfs(&fs, "stats");
    let itable: u64 = stats
        .split("inode table at ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("debugfs stats:\n{stats}"));
    let free: u64 = debugfs(&fs, "ffb 1 11000")
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a free block");

    // The physical disk: GPT, the filesystem at 1 MiB.
    let part_start = MIB;
    let disk_len = 50 * MIB;
    let mut disk = gptdisk::disk(
        disk_len / 512,
        512,
        &[Part {
            slot: 1,
            type_guid: gptdisk::BASIC,
            first: part_start / 512,
            last: (part_start + 48 * MIB) / 512 - 1,
            name: "guest",
        }],
    );
    let fs_bytes = std::fs::read(&fs).unwrap();
    disk[part_start as usize..part_start as usize + fs_bytes.len()].copy_from_slice(&fs_bytes);

    // Bad areas (filesystem offsets): a whole block and part of another
    // of big.bin, an inode-table block no inode in use lies in (the
    // kernel never reads it), a free block; and on the disk, a sector in
    // the gap between the GPT and the partition.
    let fs_bad = [
        (big[10] * BS, BS),
        (big[20] * BS + 512, 1024),
        ((itable + 200) * BS, BS),
        (free * BS, BS),
    ];
    let mut map = ddmap::Map::new(disk_len);
    map.set(0, disk_len, ddmap::Status::Finished);
    for (s, l) in fs_bad {
        map.set(part_start + s, l, ddmap::Status::BadSector);
    }
    map.set(100 * 512, 512, ddmap::Status::BadSector);

    let store = d.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("guest.img"), &disk).unwrap();
    std::fs::write(
        store.join("guest.map"),
        ddmap::render(&map, &ddmap::Header::default()),
    )
    .unwrap();
    let store_disk = d.join("store.raw");
    std::fs::File::create(&store_disk)
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "STORE", "-d"])
        .arg(&store)
        .arg(&store_disk));

    let disks = vec![Disk::new(&store_disk, Controller::VirtioBlk, "STORE-0001")];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let sh = |vm: &mut Vm, c: &str| vm.shell(c, T);

    let (out, code) = sh(&mut vm, "rescue dest mount /dev/vda --yes");
    assert_eq!(code, 0, "{out}");
    let (out, code) = sh(
        &mut vm,
        "rescue files-hit /mnt/dest/vda/guest.img --map /mnt/dest/vda/guest.map",
    );
    assert_eq!(code, 1, "bad areas were mapped: exit 1\n{out}");
    assert!(out.contains("attached as nbd0"), "{out}");
    assert!(out.contains("nbd0p1 ext4 \"GUESTFS\""), "{out}");
    assert!(
        out.contains("file /data/big.bin: 5120 of 1048576 bytes lost"),
        "{out}"
    );
    assert!(out.contains("bytes 40960..45056 (4096 bytes)"), "{out}");
    assert!(out.contains("bytes 82432..83456 (1024 bytes)"), "{out}");
    assert!(!out.contains("hello.txt"), "{out}");
    assert!(
        out.contains(&format!(
            "metadata: bytes {}..{} (4096 bytes) of nbd0p1: inode table of group 0",
            (itable + 200) * BS,
            (itable + 201) * BS
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "free space: bytes {}..{} (4096 bytes) of nbd0p1",
            free * BS,
            (free + 1) * BS
        )),
        "{out}"
    );
    assert!(
        out.contains("bytes 51200..51712 (512 bytes): on nbd0 outside its partitions"),
        "{out}"
    );
    assert!(out.contains("Totals: 1 file hit (5120 bytes)"), "{out}");

    let (out, code) = sh(&mut vm, "cat /mnt/dest/vda/guest.img.files-hit.txt");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("file /data/big.bin"),
        "the saved report:\n{out}"
    );
    let (out, code) = sh(
        &mut vm,
        "rescue files-hit /mnt/dest/vda/guest.img --map /mnt/dest/vda/guest.map --json | grep -c '\"path\": \"/data/big.bin\"'",
    );
    assert_eq!(code, 0, "{out}");
    // Nothing stays attached or mounted.
    let (out, code) = sh(&mut vm, "rescue attach; grep -c nbd /proc/mounts");
    assert!(out.contains("nothing attached"), "{out}");
    assert_ne!(code, 0, "an nbd device is still mounted: {out}");
    let (out, _) = sh(
        &mut vm,
        "dmesg | grep -iE 'hung_task|blocked for more|nbd.*timed out' ; true",
    );
    assert!(out.trim().is_empty(), "kernel log:\n{out}");
    let (out, code) = sh(&mut vm, "rescue dest umount /dev/vda");
    assert_eq!(code, 0, "{out}");
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
}
