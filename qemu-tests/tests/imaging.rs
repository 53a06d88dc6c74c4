//! Imaging in the guest: the demo's dying NVMe disk (read errors injected by
//! QEMU's blkdebug at known sectors) copied onto the ext4 destination,
//! which is found by `rescue dest list` and mounted read-write only after
//! `rescue dest mount --yes`.

use qemu_tests::*;

#[test]
fn dying_nvme_imaged_to_a_mounted_destination() {
    let image = Image::built();
    let dir = temp_dir("imaging");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    let dying = disks
        .iter()
        .find(|d| d.serial == "DYING-SSD-0001")
        .unwrap()
        .path
        .clone();
    let dest = disks
        .iter()
        .find(|d| d.serial == "DEST-0001")
        .unwrap()
        .path
        .clone();
    let dying_hash = sha256_file(&dying);
    let (sections, transcript) = run_script(
        &image,
        VmConfig::new(disks.clone()),
        "dest list --exclude /dev/nvme0n1\n\
         dest mount /dev/vda\n\
         dest mount /dev/vda --yes\n\
         image /dev/nvme0n1 /mnt/dest/vda/dying.img --map /mnt/dest/vda/dying.map --hash sha256\n\
         dest list\n\
         dest umount /dev/vda\n",
    );
    assert_eq!(sections.len(), 6, "{transcript}");
    let list = &sections[0].output;
    assert!(
        list.contains("/dev/vda") && list.contains("RESCUEDEST") && list.contains("not mounted"),
        "{list}"
    );
    // Without --yes and without a terminal on stdin: refused, nothing mounted.
    assert_eq!(sections[1].exit, 2, "{}", sections[1].output);
    assert!(
        sections[1].output.contains("--yes"),
        "{}",
        sections[1].output
    );
    assert_eq!(sections[2].exit, 0, "{}", sections[2].output);
    assert!(
        sections[2]
            .output
            .contains("mounted read-write at /mnt/dest/vda"),
        "{}",
        sections[2].output
    );
    // Bad areas remain: exit 1.
    assert_eq!(sections[3].exit, 1, "{}", sections[3].output);
    assert!(
        sections[4].output.contains("mounted at /mnt/dest/vda"),
        "{}",
        sections[4].output
    );
    assert_eq!(sections[5].exit, 0, "{}", sections[5].output);

    // The source is unchanged; the mapfile marks exactly the injected sectors.
    assert_eq!(sha256_file(&dying), dying_hash, "the source was written");
    let map = String::from_utf8(ext4_file(&dest, "/dying.map", &dir.path().join("map"))).unwrap();
    let bad: Vec<(u64, u64)> = map
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            (w.len() == 3 && w[2] != "+").then(|| (hex(w[0]).unwrap(), hex(w[1]).unwrap()))
        })
        .collect();
    let mut want: Vec<(u64, u64)> = Vec::new();
    for &s in demo::DYING_BAD_SECTORS {
        match want.last_mut() {
            Some((p, l)) if *p + *l == s * 512 => *l += 512,
            _ => want.push((s * 512, 512)),
        }
    }
    assert_eq!(bad, want, "{map}");
    assert!(
        map.lines().filter(|l| l.ends_with('-')).count() == want.len(),
        "{map}"
    );
    // The image equals the source with the bad sectors as zeros, and the
    // hash printed in the guest says the same.
    let img = ext4_file(&dest, "/dying.img", &dir.path().join("img"));
    let mut expect = std::fs::read(&dying).unwrap();
    assert_eq!(img.len(), expect.len());
    for &s in demo::DYING_BAD_SECTORS {
        expect[(s * 512) as usize..(s * 512 + 512) as usize].fill(0);
    }
    assert!(img == expect, "image differs from the readable source");
    let want_hash = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&expect);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(
        sections[3].output.contains(&want_hash),
        "{}",
        sections[3].output
    );
}
