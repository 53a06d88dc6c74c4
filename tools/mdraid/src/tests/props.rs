//! Property tests: the array mapping reads back what the test writer put
//! in, for every level and layout; damaged superblocks never panic a scan.

use super::common::*;
use proptest::prelude::*;
use testkit::mdwriter::{build_members, ArraySpec};

fn layouts() -> impl Strategy<Value = (i32, u32, u32)> {
    prop_oneof![
        (Just(1), Just(0), 2u32..4),
        (Just(5), 0u32..4, 3u32..6),
        (Just(6), 0u32..4, 4u32..7),
        (
            Just(10),
            prop::sample::select(vec![0x102u32, 0x201, 0x10201, 0x103]),
            3u32..6
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn array_reads_match_the_written_contents(
        (level, layout, disks) in layouts(),
        version in prop::sample::select(vec!["0.90", "1.0", "1.1", "1.2"]),
        at in 0u64..u64::MAX,
        len in 1usize..200_000,
    ) {
        let mut s = ArraySpec::new(version, level, disks);
        s.layout = layout;
        s.component_bytes = 512 * 1024;
        let total = s.array_bytes();
        prop_assume!(total > 0);
        let off = at % total;
        let len = len.min((total - off) as usize);
        let imgs = build_members(&s);
        let devs = sd_devices(imgs);
        let inp = inputs(&devs);
        let rep = crate::scan::scan(&inp);
        prop_assert_eq!(rep.arrays.len(), 1);
        let got = crate::scan::read_array(&rep.arrays[0], &inp, off, len).expect("readable");
        let mut want = vec![0u8; len];
        s.content(off, &mut want);
        prop_assert!(got == want, "level {} layout {:#x} at {} len {}", level, layout, off, len);
    }

    #[test]
    fn scans_of_damaged_superblocks_never_panic(
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..16),
        version in prop::sample::select(vec!["0.90", "1.0", "1.1", "1.2"]),
    ) {
        let mut s = ArraySpec::new(version, 5, 3);
        s.component_bytes = 256 * 1024;
        let (_, sb_off, _) = s.placement();
        let mut imgs = build_members(&s);
        for (pos, val) in flips {
            imgs[1][sb_off as usize + pos] = val;
        }
        let devs = devices(&["sda", "sdb", "sdc"], imgs);
        let inp = inputs(&devs);
        let rep = crate::scan::scan(&inp);
        // Whatever the damage, the report renders and the two intact
        // members still form the array.
        let _ = crate::scan::render(&rep);
        prop_assert!(rep.arrays.iter().any(|a| a.members.len() >= 2));
    }
}
