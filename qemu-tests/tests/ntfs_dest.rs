//! NTFS destinations through ntfs-3g over FUSE (Debian's 6.1 kernel has no
//! NTFS driver): an mkntfs disk is listed with its label, mounted
//! read-write after confirmation, takes an image, and is left clean by the
//! power-off alone (no `dest umount`: PID 1 must unmount it and wait for
//! ntfs-3g to flush and exit). A disk Windows left hibernated is listed
//! apart with the reason, its mount is refused, and not a byte of it
//! changes. On the host, ntfs-3g's own tools read the result.

use qemu_tests::*;
use sha2::Digest;

const MIB: u64 = 1 << 20;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn ntfs_destination_gets_an_image_and_is_clean_after_power_off() {
    let image = Image::built();
    let dir = temp_dir("ntfsdest");
    let dest = dir.path().join("ntfs-dest.img");
    testkit::ntfs::mkntfs(&dest, 96 * MIB, "USB BACKUP");
    let hib = dir.path().join("ntfs-hibernated.img");
    testkit::ntfs::mkntfs(&hib, 32 * MIB, "Windows");
    testkit::ntfs::hibernate(&hib);
    let hib_before = sha256_file(&hib);
    // A source whose every byte matters: a pseudo-random 16 MiB disk.
    let src = dir.path().join("src.img");
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let bytes: Vec<u8> = (0..16 * MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&src, &bytes).unwrap();
    let src_hash = hex(&sha2::Sha256::digest(&bytes));

    let (sections, transcript) = run_script(
        &image,
        VmConfig::new(vec![
            Disk::new(&dest, Controller::VirtioBlk, "NTFS-DEST-0001"),
            Disk::new(&src, Controller::VirtioBlk, "NTFS-SRC-0001"),
            Disk::new(&hib, Controller::VirtioBlk, "NTFS-HIB-0001"),
        ]),
        "dest list --exclude /dev/vdb\n\
         dest list --json\n\
         dest mount /dev/vdc --yes\n\
         dest mount /dev/vda --yes\n\
         image /dev/vdb /mnt/dest/vda/src.img --map /mnt/dest/vda/src.map --hash sha256\n\
         dest list\n",
    );
    assert_eq!(sections.len(), 6, "{transcript}");
    let list = &sections[0].output;
    let (offered, apart) = list.split_once("Not offered:").expect(list);
    assert!(
        offered.lines().any(|l| l.contains("/dev/vda")
            && l.contains("NTFS")
            && l.contains("USB BACKUP")
            && l.contains("not mounted")),
        "{list}"
    );
    assert!(
        apart.contains("/dev/vdc") && apart.contains("Windows hibernated/fast startup"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(
        sections[1]
            .output
            .find('{')
            .map(|i| &sections[1].output[i..])
            .unwrap_or("null"),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", sections[1].output));
    let vdc = json["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vdc")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(vdc["filesystem"], "NTFS");
    assert!(
        vdc["unusable"]
            .as_str()
            .is_some_and(|w| w.starts_with("Windows hibernated/fast startup")),
        "{vdc}"
    );
    // The hibernated volume: refused before ntfs-3g runs.
    assert_eq!(sections[2].exit, 2, "{}", sections[2].output);
    assert!(
        sections[2].output.contains("hibernated"),
        "{}",
        sections[2].output
    );
    assert_eq!(sections[3].exit, 0, "{}", sections[3].output);
    assert!(
        sections[3]
            .output
            .contains("mounted read-write at /mnt/dest/vda"),
        "{}",
        sections[3].output
    );
    assert_eq!(sections[4].exit, 0, "{}", sections[4].output);
    assert!(
        sections[4].output.contains(&src_hash),
        "{}",
        sections[4].output
    );
    assert!(
        sections[5]
            .output
            .lines()
            .any(|l| l.contains("/dev/vda") && l.contains("mounted at /mnt/dest/vda")),
        "{}",
        sections[5].output
    );
    assert!(
        transcript.contains("=== rescue.script done ==="),
        "{transcript}"
    );

    // On the host, after the power-off: the image file on the NTFS volume
    // holds the source's bytes, the mapfile is there, the volume is clean
    // for ntfsfix, and ntfs-3g would write to it again (journal closed).
    let copied = testkit::ntfs::ntfscat(&dest, "src.img");
    assert_eq!(copied.len(), bytes.len());
    assert_eq!(hex(&sha2::Sha256::digest(&copied)), src_hash);
    let map = String::from_utf8(testkit::ntfs::ntfscat(&dest, "src.map")).unwrap();
    assert!(map.contains("0x00000000"), "{map}");
    let fix = testkit::ntfs::ntfsfix_check(&dest).unwrap_or_else(|e| panic!("{e}"));
    assert!(fix.contains("processed successfully"), "{fix}");
    let dev = blockdev::Device::open(&dest).unwrap();
    assert_eq!(fsmagic::ntfs::write_blocker(&dev).unwrap(), None);
    assert_eq!(sha256_file(&hib), hib_before, "the hibernated disk changed");
}
