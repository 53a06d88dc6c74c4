//! The boot media under QEMU (TCG): PXE, USB stick and ISO (as CD and as
//! stick) with BIOS, UEFI and Secure Boot; the artifacts' SHA256SUMS and
//! sizes. Needs `out/` (cargo run --release -p image-build) and
//! qemu-system-x86_64; the test script provides both.

use qemu_tests::*;
use std::time::Duration;

const MIB: u64 = 1 << 20;

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
