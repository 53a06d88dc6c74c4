//! Grouping members into arrays: missing, stale and faulty members, spares,
//! bad checksums and Synology DSM sets.

use super::common::*;
use testkit::mdwriter::{build_members, lvm_label, set_superblock, ArraySpec};

fn scan_imgs(names: &[&str], imgs: Vec<Vec<u8>>) -> crate::scan::ScanReport {
    let devs = devices(names, imgs);
    let inp = inputs(&devs);
    crate::scan::scan(&inp)
}

#[test]
fn complete_raid5_is_ok_with_roles_in_order() {
    let s = spec("1.2", 5, 4);
    let rep = scan_imgs(&["sdd", "sdb", "sda", "sdc"], {
        let mut v = build_members(&s);
        v.rotate_left(1);
        v
    });
    assert_eq!(rep.arrays.len(), 1);
    let a = &rep.arrays[0];
    assert_eq!(a.state, "ok", "{}", crate::scan::render(&rep));
    assert_eq!(a.level, "raid5");
    assert_eq!(a.name.as_deref(), Some("DiskStation:2"));
    assert_eq!(a.md_number, Some(2));
    assert_eq!(a.array_bytes, s.array_bytes());
    assert!(a.members.iter().all(|m| m.status == "in-sync"));
    let roles: Vec<_> = a.members.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Some(0), Some(1), Some(2), Some(3)]);
    assert!(!rep.has_problems());
}

#[test]
fn missing_member_makes_it_degraded_two_missing_fail() {
    let s = spec("1.2", 5, 4);
    let mut imgs = build_members(&s);
    imgs.remove(2);
    let rep = scan_imgs(&["sda", "sdb", "sdd"], imgs.clone());
    let a = &rep.arrays[0];
    assert_eq!(a.state, "degraded");
    assert!(a.degraded && a.startable);
    assert_eq!(a.missing_roles, vec![2]);
    assert!(rep.has_problems());
    imgs.remove(0);
    let rep = scan_imgs(&["sdb", "sdd"], imgs);
    let a = &rep.arrays[0];
    assert_eq!(a.state, "failed");
    assert!(!a.startable);
    assert_eq!(a.missing_roles, vec![0, 2]);
}

#[test]
fn out_of_date_member_is_stale_and_not_counted() {
    let s = spec("1.2", 1, 2);
    let mut imgs = build_members(&s);
    set_superblock(&s, &mut imgs[1], Some(1), 90, &[]);
    let rep = scan_imgs(&["sda", "sdb"], imgs);
    let a = &rep.arrays[0];
    assert_eq!(a.events, 100);
    assert_eq!(a.stale.len(), 1);
    assert!(
        a.stale[0].starts_with("sdb ") && a.stale[0].contains("events 90 < 100"),
        "{:?}",
        a.stale
    );
    let b = a.members.iter().find(|m| m.device == "sdb").unwrap();
    assert_eq!(b.status, "stale");
    assert_eq!(a.state, "degraded");
    assert_eq!(a.missing_roles, vec![1]);
}

#[test]
fn spare_and_bad_checksum_are_reported() {
    let s = spec("1.2", 1, 2);
    let mut imgs = build_members(&s);
    let mut spare = imgs[0].clone();
    set_superblock(&s, &mut spare, None, 100, &[]);
    imgs.push(spare);
    // Flip a byte inside member 1's superblock (the name field).
    let (_, sb_off, _) = s.placement();
    imgs[1][sb_off as usize + 40] ^= 0x20;
    let rep = scan_imgs(&["sda", "sdb", "sdc"], imgs);
    let a = &rep.arrays[0];
    let status = |d: &str| a.members.iter().find(|m| m.device == d).map(|m| m.status);
    assert_eq!(status("sdc"), Some("spare"));
    assert_eq!(status("sdb"), Some("bad-checksum"));
    assert_eq!(a.state, "degraded", "{}", crate::scan::render(&rep));
}

#[test]
fn synology_dsm_set_with_shr() {
    // Two disks: p1 system RAID-1 0.90 (md0), p2 swap RAID-1 0.90 (md1),
    // p5 data RAID-1 1.2 "DiskStation:2" with an LVM PV on it.
    let mut sys = spec("0.90", 1, 2);
    sys.uuid[0] = 1;
    let mut swap = spec("0.90", 1, 2);
    swap.uuid[0] = 2;
    swap.md_minor = 1;
    let mut data = spec("1.2", 1, 2);
    data.head = lvm_label();
    let mut imgs = Vec::new();
    let mut names = Vec::new();
    for (p, s) in [(1, &sys), (2, &swap), (5, &data)] {
        for (d, img) in build_members(s).into_iter().enumerate() {
            names.push(format!("sd{}{p}", (b'a' + d as u8) as char));
            imgs.push(img);
        }
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let rep = scan_imgs(&refs, imgs);
    assert_eq!(rep.arrays.len(), 3, "{}", crate::scan::render(&rep));
    let dsm = rep.dsm.as_ref().expect("DSM recognised");
    assert_eq!(dsm.disks, vec!["sda".to_string(), "sdb".to_string()]);
    assert!(dsm.swap.is_some());
    assert_eq!(dsm.data.len(), 1);
    assert!(dsm.shr);
    let roles: Vec<_> = rep
        .arrays
        .iter()
        .filter_map(|a| a.dsm_role.clone())
        .collect();
    assert!(roles.iter().any(|r| r == "DSM system (md0)"), "{roles:?}");
    assert!(roles.iter().any(|r| r == "DSM swap (md1)"), "{roles:?}");
    assert!(
        roles
            .iter()
            .any(|r| r.starts_with("DSM data (md2, LVM2 PV")),
        "{roles:?}"
    );
    let text = crate::scan::render(&rep);
    assert!(text.contains("DiskStation:2"), "{text}");
}

#[test]
fn plain_disks_are_no_array() {
    let devs = devices(&["sda"], vec![vec![0u8; 1 << 20]]);
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    assert!(rep.arrays.is_empty() && rep.problems.is_empty() && rep.dsm.is_none());
    let _ = ArraySpec::new("1.2", 1, 2);
}

/// Arrays are found by UUID, by name and by the name's part after the host;
/// a name two arrays share is an error that asks for the UUID.
#[test]
fn arrays_are_found_by_uuid_or_name() {
    let mut a = spec("1.2", 1, 2);
    a.name = "DiskStation:2".into();
    let mut b = spec("1.2", 1, 2);
    b.uuid[0] = 0x77;
    b.name = "DiskStation:3".into();
    let mut imgs = build_members(&a);
    imgs.extend(build_members(&b));
    let rep = scan_imgs(&["sda", "sdb", "sdc", "sdd"], imgs);
    assert_eq!(rep.arrays.len(), 2);
    let find = |s: &str| {
        crate::scan::find_array(&rep, s)
            .unwrap()
            .map(|x| x.uuid.clone())
    };
    let uuid_b = rep
        .arrays
        .iter()
        .find(|x| x.name.as_deref() == Some("DiskStation:3"))
        .unwrap()
        .uuid
        .clone();
    assert_eq!(find(&uuid_b.to_ascii_uppercase()), Some(uuid_b.clone()));
    assert_eq!(find("diskstation:3"), Some(uuid_b.clone()));
    assert_eq!(find("3"), Some(uuid_b));
    assert_eq!(find("DiskStation:9"), None);
    let mut c = spec("1.2", 1, 2);
    c.uuid[0] = 0x78;
    c.name = "other:2".into();
    let mut imgs = build_members(&a);
    imgs.extend(build_members(&c));
    let rep = scan_imgs(&["sda", "sdb", "sdc", "sdd"], imgs);
    let err = crate::scan::find_array(&rep, "2").unwrap_err();
    assert!(err.contains("2 arrays are named 2"), "{err}");
}
