//! GPT repair from the menu under QEMU (TCG), incident 003: the repaired
//! table survives a reboot and the undo file restores the old one. Needs
//! `out/` (cargo run --release -p image-build) and qemu-system-x86_64; the
//! test script provides both.

use qemu_tests::*;
use serde_json::Value;
use std::time::Duration;

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
