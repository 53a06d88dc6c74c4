//! The boot stick's RESCUEDATA partition (image-build --data-size): offered
//! first by `rescue dest list`, an image written there survives a clean
//! reboot (PID 1 unmounts destinations) and reads back in the next boot.

use qemu_tests::*;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn shell(vm: &mut Vm, line: &str, marker: &str) -> String {
    // The marker is split in the typed line so its echo does not match.
    let (a, b) = marker.split_at(1);
    vm.send(&format!("{line}; echo {a}\"\"{b}=$?\n"));
    let out = vm.wait_for(&format!("{marker}="), Duration::from_secs(300));
    let status = vm.wait_for("\n", Duration::from_secs(10));
    format!("{out}{}", status.trim())
}

/// A copy of the built USB stick with a 64 MiB RESCUEDATA partition added.
fn stick_with_data_partition(image: &Image, dir: &TempDir) -> std::path::PathBuf {
    let stick = dir.path().join("stick.img");
    let built = image.kernel.parent().unwrap().join("rescue-usb.img");
    std::fs::copy(&built, &stick).expect("out/rescue-usb.img");
    image_build::media::add_data_partition(&stick, &dir.path().join("work"), 64 * MIB)
        .expect("data partition");
    stick
}

fn boot_to_shell(image: &Image, cfg: &VmConfig) -> Vm {
    let mut vm = Vm::start(image, cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    vm
}

#[test]
fn rescuedata_is_offered_first_and_keeps_an_image_across_reboot() {
    let image = Image::built();
    let dir = temp_dir("rescuedata");
    let stick = stick_with_data_partition(&image, &dir);
    let src = make_disk(&dir.path().join("src.img"), 16 * MIB, "src");
    let src_hash = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&src).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut cfg = VmConfig::new(vec![Disk::new(&src, Controller::VirtioBlk, "SRC-0001")]);
    cfg.usb_stick = Some(stick.clone());
    cfg.usb_stick_persistent = true;

    let mut vm = boot_to_shell(&image, &cfg);
    let list = shell(&mut vm, "rescue dest list --exclude /dev/vda", "LIST");
    let lines: Vec<&str> = list.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no destination listed:\n{list}"));
    assert!(
        lines[first].contains("/dev/sda2")
            && lines[first].contains("RESCUEDATA")
            && lines[first + 1].contains("boot stick data partition"),
        "{list}"
    );
    // The stick's boot partition is never offered.
    let apart = list
        .split_once("Not offered:")
        .map(|x| x.1)
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        apart.contains("/dev/sda1") && apart.contains("boot partition of a rescue medium"),
        "{list}"
    );
    let m = shell(&mut vm, "rescue dest mount /dev/sda2 --yes", "MOUNT");
    assert!(m.ends_with("MOUNT=0"), "{m}");
    let i = shell(
        &mut vm,
        "rescue image /dev/vda /mnt/dest/sda2/src.img --map /mnt/dest/sda2/src.map --hash sha256",
        "IMAGE",
    );
    assert!(i.ends_with("IMAGE=0") && i.contains(&src_hash), "{i}");
    // No unmount: the reboot must unmount the destination itself.
    vm.send("rescue reboot\n");
    vm.wait_exit(Duration::from_secs(120));

    let mut vm = boot_to_shell(&image, &cfg);
    let m = shell(&mut vm, "rescue dest mount /dev/sda2 --yes", "MOUNT");
    assert!(m.ends_with("MOUNT=0"), "{m}");
    let h = shell(&mut vm, "sha256sum /mnt/dest/sda2/src.img", "HASH");
    assert!(h.contains(&src_hash), "{h}");
    // Resuming with the finished mapfile reads nothing again.
    let r = shell(
        &mut vm,
        "rescue image /dev/vda /mnt/dest/sda2/src.img --map /mnt/dest/sda2/src.map",
        "RESUME",
    );
    assert!(r.ends_with("RESUME=0"), "{r}");
    let u = shell(&mut vm, "rescue dest umount /dev/sda2", "UMOUNT");
    assert!(
        u.ends_with("UMOUNT=0") && u.contains("read-only again"),
        "{u}"
    );
    vm.send("rescue poweroff\n");
    vm.wait_exit(Duration::from_secs(120));
    // The host's fsck agrees the filesystem is clean after the guest's use.
    let bytes = std::fs::read(&stick).unwrap();
    let start = (bytes.len() as u64 - 65 * MIB) as usize;
    let part = dir.path().join("part.img");
    std::fs::write(&part, &bytes[start..start + (64 * MIB) as usize]).unwrap();
    let fsck = std::process::Command::new("fsck.exfat")
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// The USB sticks admins bring are FAT32 (older ones FAT16). Debian's
/// kernel defaults FAT's I/O charset to `ascii`: without explicit options
/// and nls_ascii the mount failed ("IO charset ascii not found"). Both are
/// mounted as destinations, an image is written to each, and a file named
/// `résumé.txt` is written, read back by name after a remount in the
/// guest, and found under that long name by mtools on the host.
#[test]
fn fat32_and_fat16_sticks_are_destinations_with_unicode_names() {
    let image = Image::built();
    let dir = temp_dir("fatdest");
    let fat = |name: &str, size: u64, bits: &str, label: &str| {
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let st = std::process::Command::new("mkfs.vfat")
            .args(["-F", bits, "-n", label])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("mkfs.vfat (dosfstools) is needed");
        assert!(st.success());
        path
    };
    let fat32 = fat("fat32.img", 64 * MIB, "32", "STICK32");
    let fat16 = fat("fat16.img", 32 * MIB, "16", "STICK16");
    let src = make_disk(&dir.path().join("src.img"), 8 * MIB, "fatsrc");
    let src_hash = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&src).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let cfg = VmConfig::new(vec![
        Disk::new(&fat32, Controller::VirtioBlk, "FAT32-STICK"),
        Disk::new(&fat16, Controller::VirtioBlk, "FAT16-STICK"),
        Disk::new(&src, Controller::VirtioBlk, "FAT-SRC"),
    ]);
    let mut vm = boot_to_shell(&image, &cfg);
    // The name typed as octal escapes: the serial line carries ASCII only.
    let name = "$(printf 'r\\303\\251sum\\303\\251.txt')";
    for (dev, fs) in [("vda", "FAT32"), ("vdb", "FAT16")] {
        let list = shell(&mut vm, "rescue dest list --exclude /dev/vdc", "LIST");
        assert!(
            list.lines().any(|l| l.contains(&format!("/dev/{dev}"))
                && l.contains(fs)
                && l.contains("not mounted")),
            "{list}"
        );
        let m = shell(
            &mut vm,
            &format!("rescue dest mount /dev/{dev} --yes"),
            "MOUNT",
        );
        assert!(m.ends_with("MOUNT=0"), "{dev}: {m}");
        let i = shell(
            &mut vm,
            &format!("rescue image /dev/vdc /mnt/dest/{dev}/src.img --map /mnt/dest/{dev}/src.map --hash sha256"),
            "IMAGE",
        );
        assert!(
            i.ends_with("IMAGE=0") && i.contains(&src_hash),
            "{dev}: {i}"
        );
        let w = shell(
            &mut vm,
            &format!("echo 'rescued by name' > /mnt/dest/{dev}/{name}"),
            "WRITE",
        );
        assert!(w.ends_with("WRITE=0"), "{dev}: {w}");
        let u = shell(&mut vm, &format!("rescue dest umount /dev/{dev}"), "UMOUNT");
        assert!(u.ends_with("UMOUNT=0"), "{dev}: {u}");
        let m = shell(
            &mut vm,
            &format!("rescue dest mount /dev/{dev} --yes"),
            "REMOUNT",
        );
        assert!(m.ends_with("REMOUNT=0"), "{dev}: {m}");
        let r = shell(&mut vm, &format!("cat /mnt/dest/{dev}/{name}"), "READ");
        assert!(
            r.ends_with("READ=0") && r.contains("rescued by name"),
            "{dev}: {r}"
        );
        let h = shell(
            &mut vm,
            &format!("sha256sum /mnt/dest/{dev}/src.img"),
            "HASH",
        );
        assert!(h.contains(&src_hash), "{dev}: {h}");
        let u = shell(&mut vm, &format!("rescue dest umount /dev/{dev}"), "UMOUNT");
        assert!(u.ends_with("UMOUNT=0"), "{dev}: {u}");
    }
    vm.send("rescue poweroff\n");
    vm.wait_exit(Duration::from_secs(120));
    // On the host: the long name is stored as résumé.txt (UTF-16 in the
    // VFAT entries), and both filesystems are clean.
    for img in [&fat32, &fat16] {
        let out = std::process::Command::new("mtype")
            .env("LC_ALL", "C.UTF-8")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(img)
            .arg("::résumé.txt")
            .output()
            .expect("mtype (mtools) is needed");
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("rescued by name"),
            "{}: {}{}",
            img.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let fsck = std::process::Command::new("fsck.vfat")
            .arg("-n")
            .arg(img)
            .output()
            .expect("fsck.vfat");
        assert!(
            fsck.status.success(),
            "{}: {}",
            img.display(),
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}

/// A GPT repair's undo file must outlive the reboot the repair asks for:
/// with the boot stick's RESCUEDATA partition there, the menu's repair of
/// the demo's compacted RAID LD mounts it and writes the undo file to it.
/// After a reboot, `gpt undo` from that file restores the pre-repair bytes
/// exactly; the action log was appended to RESCUEDATA at power-off too.
#[test]
fn gpt_repair_undo_file_on_rescuedata_undoes_after_reboot() {
    let image = Image::built();
    let dir = temp_dir("undo-rescuedata");
    let stick = stick_with_data_partition(&image, &dir);
    let demo = demo::demo_disks(&dir.path().join("demo"), true).expect("demo disks");
    let raid = demo
        .iter()
        .find(|d| d.serial == "RAID-LD-0001")
        .unwrap()
        .clone();
    let compacted = sha256_file(&raid.path);
    let mut cfg = VmConfig::new(vec![raid.clone()]);
    cfg.usb_stick = Some(stick.clone());
    cfg.usb_stick_persistent = true;
    let t = Duration::from_secs(120);
    let raid_in = |overview: &str| -> (String, String) {
        let l = overview
            .lines()
            .find(|l| l.contains("RAID-LD"))
            .unwrap_or_else(|| panic!("no RAID LD in:\n{overview}"));
        let w: Vec<&str> = l.split_whitespace().collect();
        (w[0].to_string(), w[1].to_string())
    };

    let mut vm = Vm::start(&image, &cfg);
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let (number, _) = raid_in(&overview);
    vm.send(&format!("{number}\n"));
    vm.wait_for("g: GPT findings and repairs", t);
    vm.send("g\n");
    let view = vm.wait_for("Repair choice (Enter: back): ", t);
    let choice = esxi_repair_choice(&view);
    vm.send(&format!("{choice}\n"));
    vm.wait_for("anything else cancels: ", t);
    vm.send("RAID-LD-0001\n");
    let result = vm.wait_for("[y/N]: ", t);
    assert!(
        result.contains("The undo file goes to the boot stick's RESCUEDATA partition (/mnt/dest/"),
        "{result}"
    );
    assert!(result.contains("Repair written and verified."), "{result}");
    let undo_name = result
        .lines()
        .find_map(|l| l.trim().strip_prefix("Undo file: "))
        .and_then(|p| p.split("/gpt-undo/").nth(1))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| panic!("no undo file named:\n{result}"));
    assert!(
        undo_name.starts_with("gpt-undo-RAID-LD-0001-"),
        "{undo_name}"
    );
    vm.send("n\n");
    vm.wait_for("Repair choice (Enter: back): ", t);
    vm.send("\n");
    vm.wait_for("Choose: ", t);
    vm.power_off_from_menu();
    assert_ne!(
        sha256_file(&raid.path),
        compacted,
        "the repair wrote nothing"
    );

    // The next boot: the undo file is on RESCUEDATA and undoes the repair.
    let mut vm = Vm::start(&image, &cfg);
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let (_, raid_dev) = raid_in(&overview);
    vm.send("s\n");
    vm.wait_for("type 'exit'", Duration::from_secs(30));
    let list = shell(&mut vm, "rescue dest list", "LIST");
    let data = list
        .lines()
        .find(|l| l.contains("RESCUEDATA"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no RESCUEDATA in:\n{list}"))
        .to_string();
    let m = shell(&mut vm, &format!("rescue dest mount {data} --yes"), "MOUNT");
    assert!(m.ends_with("MOUNT=0"), "{m}");
    let at = format!("/mnt/dest/{}", data.trim_start_matches("/dev/"));
    let log = shell(&mut vm, &format!("cat {at}/rescue-logs/rescue.log"), "LOG");
    assert!(
        log.ends_with("LOG=0") && log.contains("gpt: wrote") && log.contains(&undo_name),
        "{log}"
    );
    let u = shell(
        &mut vm,
        &format!("rescue gpt undo /dev/{raid_dev} {at}/gpt-undo/{undo_name} --write"),
        "UNDO",
    );
    assert!(u.ends_with("UNDO=0") && u.contains("restored"), "{u}");
    let u = shell(&mut vm, &format!("rescue dest umount {data}"), "UMOUNT");
    assert!(u.ends_with("UMOUNT=0"), "{u}");
    vm.send("rescue poweroff\n");
    vm.wait_exit(Duration::from_secs(120));
    assert_eq!(
        sha256_file(&raid.path),
        compacted,
        "the undo did not restore the pre-repair bytes"
    );
}
