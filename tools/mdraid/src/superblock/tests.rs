//! Superblocks written by a test-only writer and checked against mdadm
//! --examine (Debian package mdadm), which reads image files without the
//! md driver.

use super::*;
use blockdev::MemDevice;
use testkit::mdwriter::{write_090, write_v1};

fn member_v12(level: i32, disks: u32, n: u32) -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    img[4096..8192].copy_from_slice(&write_v1(level, disks, n, 4096, "DiskStation:2"));
    img
}

#[test]
fn v12_member_parses_with_role_and_checksum() {
    let sb = find_superblock(&MemDevice::new(member_v12(5, 4, 2), 512))
        .unwrap()
        .unwrap();
    assert_eq!(sb.version, "1.2");
    assert_eq!(sb.array_uuid, "11223344:55667788:99aabbcc:ddeeff01");
    assert_eq!(sb.name.as_deref(), Some("DiskStation:2"));
    assert_eq!(sb.level_name(), "raid5");
    assert_eq!(sb.raid_disks, 4);
    assert_eq!(sb.role, Some(2));
    assert_eq!(sb.events, 42);
    assert_eq!(sb.chunk_bytes, 65536);
    assert!(sb.checksum_ok());
    assert!(sb.clean);
}

#[test]
fn v090_member_at_the_end() {
    let size = 32u64 << 20;
    let mut img = vec![0u8; size as usize];
    let at = (((size / 512) & !127) - 128) * 512;
    img[at as usize..at as usize + 4096].copy_from_slice(&write_090(1, 2, 1, 30 * 1024));
    let sb = find_superblock(&MemDevice::new(img, 512)).unwrap().unwrap();
    assert_eq!(sb.version, "0.90");
    assert_eq!(sb.offset, at);
    assert_eq!(sb.level, 1);
    assert_eq!(sb.role, Some(1));
    assert_eq!(sb.array_uuid, "deadbeef:00000001:00000002:00000003");
    assert!(sb.checksum_ok());
}

#[test]
fn bad_checksum_and_impossible_fields_are_reported() {
    let mut img = member_v12(1, 2, 0);
    img[4096 + 200] ^= 1; // events changed, checksum not updated
    let sb = find_superblock(&MemDevice::new(img.clone(), 512))
        .unwrap()
        .unwrap();
    assert!(!sb.checksum_ok());
    img[4096 + 92..4096 + 96].copy_from_slice(&0u32.to_le_bytes());
    let e = find_superblock(&MemDevice::new(img.clone(), 512)).unwrap_err();
    assert!(e.to_string().contains("raid_disks is 0"), "{e}");
    img[4096 + 92..4096 + 96].copy_from_slice(&2u32.to_le_bytes());
    img[4096 + 220..4096 + 224].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = find_superblock(&MemDevice::new(img, 512)).unwrap_err();
    assert!(e.to_string().contains("max_dev"), "{e}");
    assert_eq!(
        find_superblock(&MemDevice::new(vec![0u8; 1 << 20], 512)).unwrap(),
        None
    );
    assert_eq!(
        find_superblock(&MemDevice::new(vec![0u8; 100], 512)).unwrap(),
        None
    );
}

fn mdadm_examine(img: &[u8], tag: &str) -> String {
    let path = std::env::temp_dir().join(format!("mdraid-test-{}-{tag}.img", std::process::id()));
    std::fs::write(&path, img).unwrap();
    let out = std::process::Command::new("mdadm")
        .arg("--examine")
        .arg(&path)
        .output()
        .expect("mdadm is needed (apt-get install mdadm)");
    let _ = std::fs::remove_file(&path);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// mdadm, the independent reference, agrees on every field we parse.
#[test]
fn mdadm_examine_agrees_v12() {
    let img = member_v12(5, 4, 2);
    let sb = find_superblock(&MemDevice::new(img.clone(), 512))
        .unwrap()
        .unwrap();
    let out = mdadm_examine(&img, "v12");
    assert!(out.contains("Version : 1.2"), "{out}");
    assert!(
        out.contains(&format!("Array UUID : {}", sb.array_uuid)),
        "{out}"
    );
    assert!(out.contains("Name : DiskStation:2"), "{out}");
    assert!(out.contains("Raid Level : raid5"), "{out}");
    assert!(out.contains("Raid Devices : 4"), "{out}");
    assert!(out.contains("Events : 42"), "{out}");
    assert!(out.contains("Device Role : Active device 2"), "{out}");
    assert!(
        out.contains(&format!("Checksum : {:x} - correct", sb.checksum_computed)),
        "{out}"
    );
}

#[test]
fn mdadm_examine_agrees_v090() {
    let size = 32u64 << 20;
    let mut img = vec![0u8; size as usize];
    let at = (((size / 512) & !127) - 128) * 512;
    img[at as usize..at as usize + 4096].copy_from_slice(&write_090(1, 2, 1, 30 * 1024));
    let sb = find_superblock(&MemDevice::new(img.clone(), 512))
        .unwrap()
        .unwrap();
    let out = mdadm_examine(&img, "v090");
    assert!(out.contains("Version : 0.90.00"), "{out}");
    assert!(
        out.contains("UUID : deadbeef:00000001:00000002:00000003"),
        "{out}"
    );
    assert!(out.contains("Raid Level : raid1"), "{out}");
    assert!(
        out.contains(&format!("Checksum : {:x} - correct", sb.checksum_computed)),
        "{out}"
    );
}

proptest::proptest! {
    #[test]
    fn corrupt_superblocks_never_panic(pos in 0usize..4096, val in proptest::num::u8::ANY, max_dev in proptest::num::u32::ANY) {
        let mut img = member_v12(6, 4, 1);
        img[4096 + pos] = val;
        let _ = find_superblock(&MemDevice::new(img.clone(), 512));
        img[4096 + 220..4096 + 224].copy_from_slice(&max_dev.to_le_bytes());
        let _ = find_superblock(&MemDevice::new(img, 512));
    }
}
