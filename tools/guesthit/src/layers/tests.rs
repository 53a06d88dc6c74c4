//! The upward mappings checked against the forward ones, sector by
//! sector: md through `mdraid::layout::Geometry::map` (the kernel's
//! placement, tested in mdraid against mdadm-made arrays), dm tables
//! through the targets' own definitions.

use super::*;
use proptest::prelude::*;

const S: u64 = 512;

fn geometry(level: i32, layout: u32, disks: usize, chunk: u64, component: u64) -> Geometry {
    Geometry {
        level,
        layout,
        chunk_bytes: chunk,
        raid_disks: disks,
        component_bytes: component,
    }
}

/// Whether member `d` (data-relative offset `x`) is bad.
fn member_bad(members: &[MdMember], d: usize, x: u64) -> bool {
    match members.iter().find(|m| m.role == d) {
        None => true,
        Some(m) => match &m.bad {
            MemberBad::Missing => true,
            MemberBad::Known(r) => !r.intersect(m.data_offset + x, 1).is_empty(),
        },
    }
}

/// The array sectors lost and the ones bad but recoverable, by brute force
/// over the forward map.
fn brute(g: &Geometry, members: &[MdMember]) -> (Vec<u64>, Vec<u64>) {
    let (mut lost, mut red) = (Vec::new(), Vec::new());
    let parity = match g.level {
        6 => 2,
        4 | 5 => 1,
        _ => 0,
    };
    for sec in 0..g.array_bytes() / S {
        let copies = g.map(sec * S);
        let known_bad = |d: usize, x: u64| {
            members
                .iter()
                .any(|m| m.role == d && matches!(&m.bad, MemberBad::Known(r) if !r.intersect(m.data_offset + x, 1).is_empty()))
        };
        match g.level {
            1 | 10 => {
                let all = copies.iter().all(|&(d, x)| member_bad(members, d, x));
                let any_known = copies.iter().any(|&(d, x)| known_bad(d, x));
                if all {
                    lost.push(sec);
                } else if any_known {
                    red.push(sec);
                }
            }
            0 => {
                if copies.iter().any(|&(d, x)| member_bad(members, d, x)) {
                    lost.push(sec);
                }
            }
            _ => {
                let (d, x) = copies[0];
                let count = (0..g.raid_disks)
                    .filter(|&r| member_bad(members, r, x))
                    .count();
                if member_bad(members, d, x) && count > parity {
                    lost.push(sec);
                } else if known_bad(d, x) {
                    red.push(sec);
                }
            }
        }
    }
    (lost, red)
}

fn sectors(r: &Ranges) -> Vec<u64> {
    r.0.iter()
        .flat_map(|&(s, l)| (s / S)..((s + l) / S))
        .collect()
}

fn arrays() -> impl Strategy<Value = Geometry> {
    prop_oneof![
        (2usize..4).prop_map(|n| geometry(1, 0, n, 0, 64 * 1024)),
        (2usize..5).prop_map(|n| geometry(0, 0, n, 4096, 64 * 1024)),
        (3usize..6, 0u32..6).prop_map(|(n, l)| geometry(5, l, n, 4096, 64 * 1024)),
        (4usize..7, 0u32..6).prop_map(|(n, l)| geometry(6, l, n, 4096, 64 * 1024)),
        (Just(4), 0u32..6).prop_map(|(n, _)| geometry(4, 0, n, 4096, 64 * 1024)),
        (
            2usize..7,
            prop::sample::select(vec![
                0x102u32, 0x103, 0x201, 0x301, 0x10201, 0x10301, 0x202, 0x40201, 0x20201, 0x50201,
            ]),
            prop::sample::select(vec![64u64 * 1024, 60 * 1024 + 512]),
        )
            .prop_map(|(n, l, comp)| {
                let copies = ((l & 0xff) * ((l >> 8) & 0xff)) as usize;
                geometry(10, l, n.max(copies), 4096, comp)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn md_mapping_matches_the_forward_map(
        g in arrays(),
        offsets in prop::collection::vec(0u64..4, 6),
        bad in prop::collection::vec((0usize..7, 0u64..200, 1u64..40), 0..8),
        missing in prop::option::of(0usize..7),
    ) {
        let members: Vec<MdMember> = (0..g.raid_disks)
            .map(|d| {
                let data_offset = offsets[d] * 8 * S;
                let ranges = Ranges::from_unsorted(
                    bad.iter()
                        .filter(|b| b.0 == d)
                        .map(|&(_, s, l)| (data_offset + s * S, l * S))
                        .collect(),
                );
                MdMember {
                    role: d,
                    data_offset,
                    data_bytes: g.component_bytes,
                    bad: if missing == Some(d) { MemberBad::Missing } else { MemberBad::Known(ranges) },
                }
            })
            .collect();
        match md_array(&g, &members) {
            Ok(m) => {
                let (lost, red) = brute(&g, &members);
                prop_assert_eq!(sectors(&m.lost), lost, "lost, {:?}", g);
                prop_assert_eq!(sectors(&m.redundant), red, "redundant, {:?}", g);
            }
            Err(e) => {
                // Only arrays that cannot run are refused.
                let gone = members.iter().filter(|m| m.bad == MemberBad::Missing).count();
                prop_assert!(gone > 0, "{}", e);
            }
        }
    }

    #[test]
    fn dm_mapping_matches_the_targets(
        stripes in 1u64..4,
        chunk_sectors in prop::sample::select(vec![8u64, 16]),
        rows in 1u64..6,
        base in 0u64..64,
        bad in prop::collection::vec((0usize..3, 0u64..300, 1u64..30), 0..6),
    ) {
        let devs = ["8:1", "8:2", "8:3"];
        let len = stripes * chunk_sectors * rows;
        let mut params = if stripes == 1 {
            format!("{} {}", devs[0], base)
        } else {
            let mut p = format!("{stripes} {chunk_sectors}");
            for (i, d) in devs.iter().enumerate().take(stripes as usize) {
                p.push_str(&format!(" {} {}", d, base + 7 * i as u64));
            }
            p
        };
        params = params.trim().to_string();
        let line = TableLine {
            start: 100,
            length: len,
            target: if stripes == 1 { "linear".into() } else { "striped".into() },
            params,
        };
        let per_dev = |i: usize| Ranges::from_unsorted(
            bad.iter().filter(|b| b.0 == i).map(|&(_, s, l)| (s * S, l * S)).collect(),
        );
        let mapped = dm_table(&[line], &|d| devs.iter().position(|x| *x == d).map(per_dev)).unwrap();
        let mut want = Vec::new();
        for x in 0..len {
            let (dev, off) = if stripes == 1 {
                (0, base + x)
            } else {
                let c = x / chunk_sectors;
                let i = (c % stripes) as usize;
                (i, base + 7 * i as u64 + (c / stripes) * chunk_sectors + x % chunk_sectors)
            };
            if !per_dev(dev).intersect(off * S, 1).is_empty() {
                want.push(100 + x);
            }
        }
        prop_assert_eq!(sectors(&mapped), want);
    }

    #[test]
    fn dm_tables_never_panic(target in "[a-z]{0,8}", params in "[0-9: a-z]{0,40}", start in any::<u64>(), length in any::<u64>()) {
        let line = TableLine { start, length, target, params };
        let _ = dm_table(&[line], &|_| Some(Ranges(vec![(0, 1 << 20)])));
    }
}

#[test]
fn partitions_shift_and_clip() {
    let disk = Ranges(vec![(0, 512), (1 << 20, 4096), (3 << 20, 1 << 20)]);
    let p = partition(&disk, 1 << 20, 2 << 20);
    assert_eq!(p, Ranges(vec![(0, 4096)]));
    let p = partition(&disk, (3 << 20) + 512, 10 << 20);
    assert_eq!(p, Ranges(vec![(0, (1 << 20) - 512)]));
}

#[test]
fn outside_and_subtract() {
    let r = Ranges(vec![(10, 10), (30, 5)]);
    assert_eq!(outside(&r, 40), Ranges(vec![(0, 10), (20, 10), (35, 5)]));
    assert_eq!(outside(&r, 25), Ranges(vec![(0, 10), (20, 5)]));
    let b = Ranges(vec![(12, 3), (33, 10)]);
    assert_eq!(subtract(&r, &b), Ranges(vec![(10, 2), (15, 5), (30, 3)]));
}

#[test]
fn raid1_with_one_imaged_member_loses_nothing_but_says_what_is_redundant() {
    let g = geometry(1, 0, 2, 0, 1 << 20);
    let members = [
        MdMember {
            role: 0,
            data_offset: 8192,
            data_bytes: 1 << 20,
            bad: MemberBad::Known(Ranges(vec![(8192 + 4096, 512)])),
        },
        MdMember {
            role: 1,
            data_offset: 8192,
            data_bytes: 1 << 20,
            bad: MemberBad::Known(Ranges::default()),
        },
    ];
    let m = md_array(&g, &members).unwrap();
    assert!(m.lost.0.is_empty());
    assert_eq!(m.redundant, Ranges(vec![(4096, 512)]));
    // Degraded: the other mirror is gone, so the byte is lost.
    let members = [
        members[0].clone(),
        MdMember {
            role: 1,
            data_offset: 0,
            data_bytes: 0,
            bad: MemberBad::Missing,
        },
    ];
    assert_eq!(
        md_array(&g, &members).unwrap().lost,
        Ranges(vec![(4096, 512)])
    );
}

#[test]
fn raid10_far_and_offset_lose_only_what_every_copy_lost() {
    // 4 disks f2, chunk 4 KiB, 8 rows: 16 array chunks, the far copies 4
    // rows down, one disk on. Chunk 5 is at (1, row 1) and (2, row 5).
    let cb = 4096;
    let g = geometry(10, 0x201, 4, cb, 8 * cb);
    let member = |d: usize, bad: Vec<(u64, u64)>| MdMember {
        role: d,
        data_offset: 0,
        data_bytes: 8 * cb,
        bad: MemberBad::Known(Ranges(bad)),
    };
    let ms = [
        member(0, vec![]),
        member(1, vec![(cb + 100, 50)]),
        member(2, vec![(5 * cb + 120, 50)]),
        member(3, vec![]),
    ];
    let m = md_array(&g, &ms).unwrap();
    assert_eq!(m.lost, Ranges(vec![(5 * cb + 120, 30)]));
    assert_eq!(
        m.redundant,
        Ranges(vec![(5 * cb + 100, 20), (5 * cb + 150, 20)])
    );
    // Offset o2: chunk 5 is at (1, row 2) and (2, row 3).
    let g = geometry(10, 0x10201, 4, cb, 8 * cb);
    let ms = [
        member(0, vec![]),
        member(1, vec![(2 * cb, cb)]),
        member(2, vec![(3 * cb + 8, 8)]),
        member(3, vec![]),
    ];
    assert_eq!(
        md_array(&g, &ms).unwrap().lost,
        Ranges(vec![(5 * cb + 8, 8)])
    );
}

/// A linear array's lost bytes from a model of linear.c: member d starts
/// at the sum of the chunk-rounded sizes of the members before it.
#[test]
fn linear_arrays_concatenate_chunk_rounded_members() {
    proptest!(ProptestConfig { cases: 200, ..ProptestConfig::default() }, |(
        sizes in prop::collection::vec(1u64..40, 1..5),
        partial in prop::collection::vec(0u64..8, 4),
        chunk in prop::sample::select(vec![0u64, 4096, 8192]),
        bad in prop::collection::vec((0usize..4, 0u64..400, 1u64..20), 0..8),
    )| {
        let n = sizes.len();
        let g = geometry(-1, 0, n, chunk, 0);
        let bytes: Vec<u64> = (0..n).map(|d| sizes[d] * 4096 + partial[d] * S).collect();
        let members: Vec<MdMember> = (0..n)
            .map(|d| MdMember {
                role: d,
                data_offset: 2048,
                data_bytes: bytes[d],
                bad: MemberBad::Known(Ranges::from_unsorted(
                    bad.iter()
                        .filter(|b| b.0 == d)
                        .map(|&(_, s, l)| (2048 + s * S, l * S))
                        .collect(),
                )),
            })
            .collect();
        // The model: sector by sector.
        let used = |d: usize| if chunk == 0 { bytes[d] } else { bytes[d] - bytes[d] % chunk };
        let mut want = Vec::new();
        let mut start = 0u64;
        for (d, m) in members.iter().enumerate() {
            for x in (0..used(d)).step_by(S as usize) {
                if member_bad(&members, d, x) {
                    want.push((start + x) / S);
                }
            }
            let _ = m;
            start += used(d);
        }
        let got = md_array(&g, &members).unwrap();
        prop_assert_eq!(sectors(&got.lost), want);
        prop_assert!(got.redundant.0.is_empty());
    });
    // A missing member: the array cannot run.
    let g = geometry(-1, 0, 2, 0, 0);
    let ms = [MdMember {
        role: 0,
        data_offset: 0,
        data_bytes: 4096,
        bad: MemberBad::Known(Ranges::default()),
    }];
    assert!(md_array(&g, &ms).unwrap_err().contains("missing"));
}

#[test]
fn unmapped_levels_say_so() {
    let g = geometry(-4, 0, 2, 0, 1 << 20);
    assert!(md_array(&g, &[]).unwrap_err().contains("not mapped"));
}
