//! Superblocks of built member images, checked against mdadm --examine.

use super::common::*;
use crate::superblock::find_superblock;
use blockdev::MemDevice;
use testkit::mdwriter::{build_members, ArraySpec};

fn check(s: &ArraySpec, tag: &str) {
    let d = temp_dir(tag);
    let imgs = build_members(s);
    let paths = write_images(&d, &names(imgs.len(), ".img"), &imgs);
    for (role, (img, path)) in imgs.iter().zip(&paths).enumerate() {
        let sb = find_superblock(&MemDevice::new(img.clone(), 512))
            .unwrap()
            .unwrap();
        let out = squash(&mdadm_examine_path(path));
        let want_version = if s.version == "0.90" {
            "0.90.00"
        } else {
            s.version
        };
        assert!(
            out.contains(&format!("Version : {want_version}\n")),
            "{out}"
        );
        let uuid_key = if s.version == "0.90" {
            "UUID"
        } else {
            "Array UUID"
        };
        assert!(
            out.contains(&format!("{uuid_key} : {}\n", sb.array_uuid)),
            "{out}"
        );
        assert!(
            out.contains(&format!("Raid Level : {}\n", sb.level_name())),
            "{out}"
        );
        assert!(
            out.contains(&format!("Raid Devices : {}\n", sb.raid_disks)),
            "{out}"
        );
        assert!(out.contains(&format!("Events : {}\n", sb.events)), "{out}");
        assert!(
            out.contains(&format!("Checksum : {:x} - correct", sb.checksum_computed)),
            "{out}"
        );
        let geo = crate::layout::Geometry::from_superblock(&sb).unwrap();
        assert_eq!(geo.array_bytes(), s.array_bytes());
        let kib = geo.array_bytes() / 1024;
        assert!(
            out.contains(&format!("Array Size : {kib} KiB"))
                || out.contains(&format!("Array Size : {kib}\n")),
            "array size {kib} KiB: {out}"
        );
        if matches!(s.level, 5 | 6 | 10) {
            let name = crate::layout::layout_name(s.level, s.layout);
            assert!(out.contains(&format!("Layout : {name}\n")), "{name}: {out}");
            assert!(
                out.contains(&format!("Chunk Size : {}K\n", s.chunk_bytes / 1024)),
                "{out}"
            );
        }
        if s.version == "0.90" {
            assert!(
                out.contains(&format!("Preferred Minor : {}\n", s.md_minor)),
                "{out}"
            );
            assert!(
                out.contains(&format!(
                    "this {role} 8 {} {role} active sync",
                    16 * role + 1
                )),
                "{out}"
            );
        } else {
            assert!(out.contains(&format!("Name : {}\n", s.name)), "{out}");
            assert!(
                out.contains(&format!("Device Role : Active device {role}\n")),
                "{out}"
            );
            assert!(
                out.contains(&format!(
                    "Device UUID : {}\n",
                    sb.device_uuid.clone().unwrap()
                )),
                "{out}"
            );
            assert!(
                out.contains(&format!(
                    "Array State : {} ",
                    "A".repeat(s.raid_disks as usize)
                )),
                "{out}"
            );
            if s.version != "1.0" {
                assert!(
                    out.contains(&format!(
                        "Data Offset : {} sectors",
                        sb.data_offset_bytes / 512
                    )),
                    "{out}"
                );
            }
            assert!(
                out.contains(&format!("Super Offset : {} sectors", sb.offset / 512)),
                "{out}"
            );
        }
        // Our own examine output says the same.
        let e = crate::examine::examined(path, img.len() as u64, &sb);
        let ours = squash(&crate::examine::render(&e));
        assert!(
            ours.contains(&format!("Checksum : {:x} - correct", sb.checksum_computed)),
            "{ours}"
        );
        assert!(
            ours.contains(&format!("Array UUID : {}", sb.array_uuid)),
            "{ours}"
        );
    }
}

#[test]
fn mdadm_agrees_raid5_v12_all_layouts() {
    for layout in 0..4 {
        let mut s = spec("1.2", 5, 4);
        s.layout = layout;
        check(&s, "r5");
    }
}

#[test]
fn mdadm_agrees_raid6_raid10_raid1_all_versions() {
    let mut s = spec("1.0", 6, 5);
    s.layout = 3;
    check(&s, "r6");
    for layout in [0x102, 0x201, 0x10201] {
        let mut s = spec("1.1", 10, 4);
        s.layout = layout;
        check(&s, "r10");
    }
    let mut s = spec("0.90", 1, 3);
    s.md_minor = 1;
    check(&s, "r1");
    check(&spec("0.90", 5, 3), "r5-090");
}

#[test]
fn mdadm_agrees_on_stale_and_faulty_marks() {
    let s = spec("1.2", 5, 4);
    let mut imgs = build_members(&s);
    testkit::mdwriter::set_superblock(&s, &mut imgs[0], Some(0), 120, &[3]);
    let d = temp_dir("faulty");
    let paths = write_images(&d, &["m0".into()], &imgs[..1]);
    let out = squash(&mdadm_examine_path(&paths[0]));
    assert!(out.contains("Array State : AAA. "), "{out}");
    assert!(out.contains("Events : 120"), "{out}");
    let sb = find_superblock(&MemDevice::new(imgs[0].clone(), 512))
        .unwrap()
        .unwrap();
    assert!(sb
        .devices
        .iter()
        .any(|d| d.number == 3 && d.state == "faulty"));
    let ours = crate::examine::render(&crate::examine::examined("m0", 0, &sb));
    assert!(squash(&ours).contains("Array State : AAA."), "{ours}");
}
