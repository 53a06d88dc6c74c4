//! `rescue mount` / `rescue umount` in the guest, on Debian's 6.1 kernel:
//! the kinds the build host's kernel cannot mount (vfat, exFAT: the
//! crate's host tests cover ext4, XFS, btrfs and NTFS through ntfs-3g on
//! loop devices), plus ext4 from a backup superblock, btrfs and XFS to
//! check the recovery options on 6.1 itself. Every disk image must be
//! unchanged after the boot (fingerprints), and each mount reports
//! unchanged write counters.
//!
//! `ntfs_through_ntfs3g_in_the_guest` needs `/usr/bin/ntfs-3g` (with its
//! libraries) and fuse.ko in the image: it fails until the image ships
//! them.

use qemu_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(120);

fn run(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (qemu-tests/setup.sh installs the tools)"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn blank(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// The disks, in virtio-blk order (vda, vdb, ...), and what each holds.
fn make_disks(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from the guest test\n").unwrap();

    let fat = blank(dir, "fat32.img", 64 * MIB);
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "RMFAT"])
        .arg(&fat));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&fat)
        .arg(src.join("hello.txt"))
        .arg("::/Long File Name.txt"));

    let exfat = blank(dir, "exfat.img", 64 * MIB);
    run(Command::new("mkfs.exfat")
        .args(["-L", "RMEXFAT"])
        .arg(&exfat));

    // ext4 with 4 KiB blocks and its primary superblock zeroed: sb=131072.
    let ext4 = blank(dir, "ext4.img", 256 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&ext4));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&ext4).unwrap();
        f.write_all_at(&[0u8; 1024], 1024).unwrap();
    }

    let btrfs = blank(dir, "btrfs.img", 128 * MIB);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "--rootdir"])
        .arg(&src)
        .arg(&btrfs));

    let xfs = blank(dir, "xfs.img", 300 * MIB);
    run(Command::new("mkfs.xfs").arg("-q").arg(&xfs));

    // btrfs whose current tree root is zeroed (generations written by the
    // host's kernel first): only a backup root mounts it.
    let broken = blank(dir, "btrfs-root.img", 256 * MIB);
    testkit::btrfsimg::destroyed_tree_root(&broken, dir);

    vec![
        (fat, "vfat"),
        (exfat, "exfat"),
        (ext4, "ext4"),
        (btrfs, "btrfs"),
        (xfs, "xfs"),
        (broken, "btrfs with a destroyed tree root"),
    ]
}

fn boot_to_shell(image: &Image, paths: &[PathBuf]) -> Vm {
    let disks = paths
        .iter()
        .enumerate()
        .map(|(i, p)| Disk::new(p, Controller::VirtioBlk, &format!("RMOUNT{i}")))
        .collect();
    let mut vm = Vm::start(image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    vm
}

/// `rescue mount DEV` in the guest's shell: exit 0, the options that
/// worked, unchanged write counters.
fn mount_ok(vm: &mut Vm, dev: &str, want_options: &str) -> String {
    let (out, code) = vm.shell(&format!("rescue mount /dev/{dev}"), T);
    assert_eq!(code, 0, "rescue mount /dev/{dev}:\n{out}");
    assert!(
        out.contains(&format!(
            "mounted read-only at /mnt/{dev} with {want_options}"
        )),
        "{out}"
    );
    assert!(
        out.contains("(unchanged)") && !out.contains("CHANGED"),
        "{out}"
    );
    out
}

fn umount_ok(vm: &mut Vm, dev: &str) {
    let (out, code) = vm.shell(&format!("rescue umount /dev/{dev}"), T);
    assert_eq!(code, 0, "rescue umount /dev/{dev}:\n{out}");
    assert!(out.contains("directory removed"), "{out}");
    let (_, code) = vm.shell(&format!("test -e /mnt/{dev}"), T);
    assert_ne!(code, 0, "/mnt/{dev} left behind");
}

#[test]
fn fat_exfat_ext4_btrfs_xfs_mount_read_only_in_the_guest() {
    let image = Image::built();
    let dir = temp_dir("rmount");
    let disks = make_disks(dir.path());
    let paths: Vec<PathBuf> = disks.iter().map(|(p, _)| p.clone()).collect();
    let before: Vec<String> = paths.iter().map(|p| sha256_file(p)).collect();
    let mut vm = boot_to_shell(&image, &paths);

    // FAT32 with dest's charset options: long names come out intact.
    mount_ok(
        &mut vm,
        "vda",
        "ro,utf8=1,iocharset=ascii,codepage=437,shortname=mixed,errors=remount-ro",
    );
    let (out, code) = vm.shell("cat '/mnt/vda/Long File Name.txt'", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from the guest test"), "{out}");
    let (out, code) = vm.shell("touch /mnt/vda/new", T);
    assert_ne!(code, 0, "a write to the read-only mount worked: {out}");
    umount_ok(&mut vm, "vda");

    mount_ok(&mut vm, "vdb", "ro,iocharset=utf8,errors=remount-ro");
    let (out, code) = vm.shell("ls -a /mnt/vdb", T);
    assert_eq!(code, 0, "{out}");
    umount_ok(&mut vm, "vdb");

    // ext4 without its primary superblock: the backup in group 1, sb= in
    // 1 KiB units on 6.1 too.
    let out = mount_ok(&mut vm, "vdc", "ro,noload,sb=131072");
    // The kernel's console lines may land inside the attempt's line.
    let first = out.split("trying ro,noload,sb=").next().unwrap_or("");
    assert!(
        first.contains("trying ro,noload ...") && first.contains("failed: Invalid argument"),
        "{out}"
    );
    let (out, code) = vm.shell("cat /mnt/vdc/hello.txt", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from the guest test"), "{out}");
    umount_ok(&mut vm, "vdc");

    mount_ok(&mut vm, "vdd", "ro");
    let (out, code) = vm.shell("cat /mnt/vdd/hello.txt", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from the guest test"), "{out}");
    umount_ok(&mut vm, "vdd");

    mount_ok(&mut vm, "vde", "ro,norecovery");
    // JSON: schema first, the attempts, the kind.
    let (out, code) = vm.shell("rescue mount --json /dev/vde /tmp/x", T);
    assert_ne!(code, 0, "mounted twice: {out}");
    assert!(
        out.contains("\"schema\": 1") && out.contains("already mounted"),
        "{out}"
    );
    umount_ok(&mut vm, "vde");
    let (out, code) = vm.shell("rescue mount --json /dev/vde", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\"kind\": \"xfs\"") && out.contains("\"result\": \"mounted\""),
        "{out}"
    );
    umount_ok(&mut vm, "vde");

    // On 6.1 too: plain ro fails on the tree root, a backup root mounts.
    let out = mount_ok(&mut vm, "vdf", "ro,rescue=usebackuproot");
    let first = out
        .split("trying ro,rescue=usebackuproot")
        .next()
        .unwrap_or("");
    assert!(
        first.contains("trying ro ...") && first.contains("failed"),
        "{out}"
    );
    let (out, code) = vm.shell("cat /mnt/vdf/f1.txt", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gen 1"), "{out}");
    umount_ok(&mut vm, "vdf");

    vm.power_off_from_shell();
    for ((p, what), want) in disks.iter().zip(&before) {
        assert_eq!(&sha256_file(p), want, "the {what} disk was written to");
    }
}

#[test]
fn ntfs_through_ntfs3g_in_the_guest() {
    let image = Image::built();
    let dir = temp_dir("rmount-ntfs");
    let ntfs = blank(dir.path(), "ntfs.img", 64 * MIB);
    run(Command::new("mkfs.ntfs")
        .args(["-q", "-F", "-Q", "-L", "RMNTFS"])
        .arg(&ntfs));
    let before = sha256_file(&ntfs);
    let mut vm = boot_to_shell(&image, std::slice::from_ref(&ntfs));
    let (out, code) = vm.shell("rescue mount /dev/vda", T);
    assert_eq!(
        code, 0,
        "rescue mount of NTFS (needs /usr/bin/ntfs-3g and fuse.ko in the image):\n{out}"
    );
    assert!(
        out.contains("mounted read-only at /mnt/vda with ro"),
        "{out}"
    );
    let (out, code) = vm.shell("ls -a /mnt/vda", T);
    assert_eq!(code, 0, "{out}");
    umount_ok(&mut vm, "vda");
    let (out, code) = vm.shell("pidof ntfs-3g", T);
    assert_ne!(code, 0, "ntfs-3g still running after the unmount: {out}");
    vm.power_off_from_shell();
    assert_eq!(sha256_file(&ntfs), before, "the NTFS disk was written to");
}
