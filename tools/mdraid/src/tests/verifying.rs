//! The read-only verify: clean arrays show no mismatch; a changed byte is
//! found at the right array and member offsets with a kernel-like count.

use super::common::*;
use testkit::mdwriter::{build_members, ArraySpec};

fn clean(s: &ArraySpec) {
    let r = verify_imgs(build_members(s), 96 * 1024);
    assert_eq!(
        r.mismatch_count, 0,
        "{:?} layout {:#x}: {:?}",
        s.level, s.layout, r.mismatches
    );
    assert_eq!(r.kernel_mismatch_sectors, 0);
    assert!(r.read_failures.is_empty());
    assert_eq!(r.skipped_blocks, 0);
    assert_eq!(
        r.checked_array_bytes,
        s.array_bytes(),
        "the whole array was compared"
    );
}

#[test]
fn clean_arrays_of_every_level_and_layout_verify() {
    for l in 0..4 {
        let mut s = spec("1.2", 5, 4);
        s.layout = l;
        clean(&s);
        let mut s = spec("1.2", 6, 5);
        s.layout = l;
        clean(&s);
    }
    for l in [0x102, 0x103, 0x201, 0x10201] {
        let mut s = spec("1.2", 10, 4);
        s.layout = l;
        clean(&s);
    }
    clean(&spec("0.90", 1, 3));
}

/// Device offset of array byte `off` on its data member.
fn data_place(s: &ArraySpec, imgs: &[Vec<u8>], off: u64) -> (usize, usize) {
    let devs = sd_devices(imgs.to_vec());
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    let places = rep.arrays[0].geometry.as_ref().unwrap().map(off);
    let (_, _, data_off) = s.placement();
    let (d, dev_off) = places[0];
    (d, (data_off + dev_off) as usize)
}

#[test]
fn raid5_parity_mismatch_found_at_its_stripe() {
    let s = spec("1.2", 5, 4);
    let mut imgs = build_members(&s);
    let off = 5 * 64 * 1024 + 1000; // stripe 1 (3 data chunks per stripe), chunk 2
    let (d, at) = data_place(&s, &imgs, off);
    imgs[d][at] ^= 0xff;
    let r = verify_imgs(imgs, 128 * 1024);
    assert_eq!(r.mismatch_count, 1, "{:?}", r.mismatches);
    let m = &r.mismatches[0];
    assert_eq!(m.kind, "parity");
    assert_eq!(m.array_offset, 3 * 64 * 1024);
    assert_eq!(m.array_length, 3 * 64 * 1024);
    assert_eq!((m.first_bad_byte, m.last_bad_byte), (1000, 1000));
    assert_eq!(m.kernel_sectors, 8, "one 4 KiB unit");
    assert_eq!(r.kernel_mismatch_sectors, 8);
    let p = m.places.iter().find(|p| p.role == d).unwrap();
    assert_eq!(p.holds, "data");
    assert_eq!(p.array_offset, Some(5 * 64 * 1024));
    assert_eq!(p.device_offset, at as u64 - 1000);
}

#[test]
fn raid6_names_the_damaged_data_block() {
    let s = spec("1.2", 6, 5);
    let mut imgs = build_members(&s);
    let off = 64 * 1024 + 77;
    let (d, at) = data_place(&s, &imgs, off);
    imgs[d][at] ^= 0x5a;
    let r = verify_imgs(imgs, 64 * 1024);
    assert_eq!(r.mismatch_count, 1);
    let m = &r.mismatches[0];
    assert_eq!(m.kind, "P+Q");
    let want = format!("data block of role {d}");
    assert!(
        m.suspect.as_deref().unwrap_or("").starts_with(&want),
        "{:?}",
        m.suspect
    );
}

#[test]
fn raid1_three_copies_majority_names_the_odd_one() {
    let s = spec("1.2", 1, 3);
    let mut imgs = build_members(&s);
    let (_, _, data_off) = s.placement();
    imgs[2][data_off as usize + 300_000] ^= 1;
    let r = verify_imgs(imgs, 64 * 1024);
    assert_eq!(r.mismatch_count, 1);
    let m = &r.mismatches[0];
    assert_eq!(m.kind, "mirror");
    assert!(
        m.suspect.as_deref().unwrap_or("").contains("sdc"),
        "{:?}",
        m.suspect
    );
    assert!(m.array_offset <= 300_000 && 300_000 < m.array_offset + m.array_length);
}

#[test]
fn raid10_far_copy_mismatch() {
    let mut s = spec("1.2", 10, 4);
    s.layout = 0x201;
    let mut imgs = build_members(&s);
    let off = 3 * 64 * 1024 + 5;
    let devs = sd_devices(imgs.clone());
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    let copies = rep.arrays[0].geometry.as_ref().unwrap().map(off);
    assert_eq!(copies.len(), 2, "far 2 keeps two copies");
    let (_, _, data_off) = s.placement();
    let (d, dev_off) = copies[1];
    imgs[d][(data_off + dev_off) as usize] ^= 0x80;
    let r = verify_imgs(imgs, 64 * 1024);
    assert_eq!(r.mismatch_count, 1, "{:?}", r.mismatches);
    let m = &r.mismatches[0];
    assert_eq!(m.kind, "mirror");
    assert!(m.array_offset <= off && off < m.array_offset + m.array_length);
}

#[test]
fn degraded_raid5_skips_with_a_note() {
    let s = spec("1.2", 5, 3);
    let mut imgs = build_members(&s);
    imgs.pop();
    let devs = sd_devices(imgs);
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    let a = &rep.arrays[0];
    let members = crate::scan::verify_members(a, &inp);
    let opts = crate::verify::Options {
        batch_bytes: 64 * 1024,
        max_listed: 10,
    };
    match crate::verify::verify(a.geometry.as_ref().unwrap(), &members, &opts, &mut |_| {}) {
        Ok(r) => {
            assert_eq!(r.mismatch_count, 0);
            assert_eq!(r.missing_roles, vec![2]);
            assert!(
                !r.notes.is_empty(),
                "a degraded check says what it could not compare"
            );
        }
        Err(e) => assert!(
            e.to_string().contains("missing") || e.to_string().contains("degraded"),
            "{e}"
        ),
    }
}

/// A member whose reads fail inside one byte range (a bad area).
struct FailingRange<'a> {
    inner: &'a dyn blockdev::BlockDevice,
    bad: std::ops::Range<u64>,
}

impl blockdev::BlockDevice for FailingRange<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.end && self.bad.start < end {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        self.inner.read_at(buf, offset)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// Unreadable member areas are reported with device and offset, read as
/// zeros, and the check goes on to the end of the array: with every member
/// on its own reader thread, the failing one must not stall or end the run.
#[test]
fn read_failures_are_reported_and_the_check_goes_on() {
    let s = spec("1.2", 5, 3);
    let imgs = build_members(&s);
    let devs = sd_devices(imgs);
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    let a = &rep.arrays[0];
    let mut members = crate::scan::verify_members(a, &inp);
    let m1 = members[1].as_ref().unwrap();
    let bad_at = m1.data_offset + 3 * 64 * 1024;
    let failing = FailingRange {
        inner: m1.dev,
        bad: bad_at..bad_at + 512,
    };
    members[1].as_mut().unwrap().dev = &failing;
    let opts = crate::verify::Options {
        batch_bytes: 64 * 1024,
        max_listed: 10,
    };
    let r =
        crate::verify::verify(a.geometry.as_ref().unwrap(), &members, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.read_failures.len(), 1, "{:?}", r.read_failures);
    let f = &r.read_failures[0];
    assert_eq!(f.device, "sdb");
    assert!(f.offset <= bad_at && bad_at < f.offset + f.length, "{f:?}");
    assert_eq!(r.checked_array_bytes, s.array_bytes());
    // The zeros read in place of the bad batch make its stripe mismatch.
    assert!(r.mismatch_count >= 1);
}
