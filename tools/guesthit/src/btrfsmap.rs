//! btrfs: bad device bytes carried to btrfs logical addresses (the
//! address space FIEMAP reports on btrfs) through the chunk map
//! ([`btrfs`] crate), and the bad bytes no file holds told apart.
//!
//! A logical byte is lost when every copy of it is bad: one copy for
//! single, RAID0 and the striped part of RAID10; two for DUP (both on one
//! device, so both are known) and RAID1, three or four for RAID1C3/C4.
//! RAID5/6: a data byte is lost when its data stripe is bad there and
//! more stripes of its full stripe than there is parity (1 RAID5, 2
//! RAID6) are bad at the same device row and offset, counting its own:
//! btrfs rebuilds the rest from parity on read. That assumes the parity
//! is current (no unfinished write left it stale: the RAID5/6 write
//! hole) and that a missing device is not among the stripes.
//! Only the devices whose bad ranges are given are known: a copy or a
//! RAID5/6 stripe on another device is taken as good, and a RAID0 stripe
//! there is not mapped from here.
//!
//! The bad bytes of a device, by where they lie:
//! - a superblock copy (64 KiB, 64 MiB, 256 GiB): metadata;
//! - a stripe of a METADATA or SYSTEM chunk: metadata, when every copy is
//!   bad;
//! - a stripe of a DATA chunk: in a file (the walk names it) or "data
//!   chunk, not in any file" (free space inside the chunk, or an extent
//!   no file references any more: not told apart without the extent
//!   tree);
//! - bad here but another copy is good, or RAID5/6 parity makes it up:
//!   still readable;
//! - RAID5/6 parity (P or Q) rows: no data of their own, still readable
//!   data around them;
//! - in no chunk: unallocated, free.

use crate::extmap::Area;
use crate::layers::subtract;
use crate::Ranges;
use btrfs::{Chunk, ChunkMap};
use std::collections::BTreeMap;

/// Where a stretch of bad device bytes lies.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Unallocated,
    /// Superblock copy number (0 the primary).
    Superblock(usize),
    /// Stripe `stripe` of chunk `chunk` (index in the map), holding
    /// logical bytes from `logical`.
    Stripe {
        chunk: usize,
        stripe: usize,
        logical: u64,
    },
    /// A parity row of a RAID5/6 chunk (index in the map).
    Parity(usize),
}

/// The bad bytes `bad` of device `devid` (`dev_size` bytes), cut where
/// they change place.
fn pieces(map: &ChunkMap, devid: u64, dev_size: u64, bad: &Ranges) -> Vec<(u64, u64, Place)> {
    let mut out = Vec::new();
    let supers = Ranges(btrfs::Super::copies_on(dev_size));
    for (k, &(s, l)) in supers.0.iter().enumerate() {
        for (a, n) in bad.intersect(s, l) {
            out.push((a, n, Place::Superblock(k)));
        }
    }
    let rest = subtract(bad, &supers);
    let mut used = Vec::new();
    for (ci, c) in map.chunks.iter().enumerate() {
        let len = c.device_extent_len();
        for (si, s) in c.stripes.iter().enumerate() {
            if s.devid != devid {
                continue;
            }
            for (a, n) in rest.intersect(s.offset, len) {
                used.push((a, n));
                let data = c.to_logical(si, a, n);
                if c.parity_stripes() > 0 {
                    let held = Ranges(data.iter().map(|p| (p.device, p.len)).collect());
                    for (x, y) in subtract(&Ranges(vec![(a, n)]), &held).0 {
                        out.push((x, y, Place::Parity(ci)));
                    }
                }
                for p in data {
                    out.push((
                        p.device,
                        p.len,
                        Place::Stripe {
                            chunk: ci,
                            stripe: si,
                            logical: p.logical,
                        },
                    ));
                }
            }
        }
    }
    for (a, n) in subtract(&rest, &Ranges::from_unsorted(used)).0 {
        out.push((a, n, Place::Unallocated));
    }
    out.sort_by_key(|p| p.0);
    out
}

/// The logical bytes lost: every copy bad. `bad` has the bad ranges
/// (device offsets) of each device known, by devid; a copy on a device
/// not in it counts as good.
pub fn lost_logical(map: &ChunkMap, bad: &BTreeMap<u64, (u64, Ranges)>) -> Ranges {
    // (chunk, stripe) -> logical ranges bad on that stripe.
    let mut per: BTreeMap<(usize, usize), Vec<(u64, u64)>> = BTreeMap::new();
    for (&devid, (size, b)) in bad {
        for (_, n, p) in pieces(map, devid, *size, b) {
            if let Place::Stripe {
                chunk,
                stripe,
                logical,
            } = p
            {
                per.entry((chunk, stripe)).or_default().push((logical, n));
            }
        }
    }
    let mut lost = Vec::new();
    for (ci, c) in map.chunks.iter().enumerate() {
        if c.parity_stripes() > 0 {
            lost.extend(raid56_lost(c, bad));
            continue;
        }
        let Some((factor, group)) = c.layout() else {
            continue;
        };
        for g in 0..factor as usize {
            let mut acc: Option<Ranges> = None;
            for i in g * group..(g + 1) * group {
                let known = bad.contains_key(&c.stripes[i].devid);
                let r = if known {
                    Ranges::from_unsorted(per.get(&(ci, i)).cloned().unwrap_or_default())
                } else {
                    Ranges::default()
                };
                acc = Some(match acc {
                    None => r,
                    Some(a) => subtract(&a, &subtract(&a, &r)),
                });
            }
            lost.extend(acc.unwrap_or_default().0);
        }
    }
    Ranges::from_unsorted(lost)
}

/// The logical bytes of RAID5/6 chunk `c` lost: bad on their data stripe
/// with more stripes bad at that device row and offset than parity can
/// make up. A stripe on a device not in `bad` is taken as good.
fn raid56_lost(c: &Chunk, bad: &BTreeMap<u64, (u64, Ranges)>) -> Vec<(u64, u64)> {
    let ext = c.device_extent_len();
    let sl = c.stripe_len;
    let parity = c.parity_stripes();
    let d = (c.stripes.len() - parity) as u64;
    // Each stripe's bad bytes, from the stripe's start.
    let rel: Vec<Ranges> = c
        .stripes
        .iter()
        .map(|s| match bad.get(&s.devid) {
            Some((_, b)) => Ranges(
                b.intersect(s.offset, ext)
                    .into_iter()
                    .map(|(a, n)| (a - s.offset, n))
                    .collect(),
            ),
            None => Ranges::default(),
        })
        .collect();
    let mut edges: Vec<u64> = rel
        .iter()
        .flat_map(|r| r.0.iter().flat_map(|&(a, n)| [a, a + n]))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let mut out = Vec::new();
    for w in edges.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Inside an elementary piece a stripe is bad throughout or not.
        let bad_stripes: Vec<usize> = (0..rel.len())
            .filter(|&i| Ranges(rel[i].intersect(a, b - a)).total() == b - a)
            .collect();
        if bad_stripes.len() <= parity {
            continue;
        }
        let mut at = a;
        while at < b {
            let (row, within) = (at / sl, at % sl);
            let n = (sl - within).min(b - at);
            for &i in &bad_stripes {
                if let Some(Ok(k)) = c.raid56_role(i, row) {
                    out.push((c.logical + (row * d + k) * sl + within, n));
                }
            }
            at += n;
        }
    }
    out
}

/// Whether any of `lost` (logical) lies in a chunk holding data: only
/// then can a file be hit.
pub fn touches_data(map: &ChunkMap, lost: &Ranges) -> bool {
    map.chunks
        .iter()
        .filter(|c| c.flags & btrfs::chunk::DATA != 0)
        .any(|c| !lost.intersect(c.logical, c.length).is_empty())
}

/// The bad bytes of one device told apart (device offsets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    pub metadata: Vec<Area>,
    pub free: Vec<Area>,
    pub unknown: Vec<Area>,
    /// Bad here, but another copy is good (or taken as good).
    pub redundant: Vec<Area>,
}

fn push(v: &mut Vec<Area>, start: u64, len: u64, what: String) {
    if let Some(a) = v.last_mut() {
        if a.start + a.len == start && a.what == what {
            a.len += len;
            return;
        }
    }
    v.push(Area { start, len, what });
}

fn chunk_name(c: &Chunk) -> String {
    format!(
        "{} chunk at logical {} ({})",
        c.kind(),
        c.logical,
        c.profile.name()
    )
}

/// Tells apart the bad bytes `bad` of device `devid` that no file holds:
/// `lost` are the logical bytes lost ([`lost_logical`]), `covered` the
/// logical bytes the walk found in files, `known` the devids whose bad
/// ranges went into `lost`.
pub fn classify(
    map: &ChunkMap,
    devid: u64,
    dev_size: u64,
    bad: &Ranges,
    lost: &Ranges,
    covered: &Ranges,
    known: &[u64],
) -> Told {
    let mut t = Told::default();
    for (start, len, place) in pieces(map, devid, dev_size, bad) {
        match place {
            Place::Unallocated => push(&mut t.free, start, len, "unallocated (in no chunk)".into()),
            Place::Superblock(k) => push(
                &mut t.metadata,
                start,
                len,
                if k == 0 {
                    "the superblock".into()
                } else {
                    format!("superblock copy {k}")
                },
            ),
            Place::Parity(ci) => push(
                &mut t.redundant,
                start,
                len,
                format!(
                    "{}: parity (no data of its own; the data it guards is read from the data stripes)",
                    chunk_name(&map.chunks[ci])
                ),
            ),
            Place::Stripe { chunk, logical, .. } => {
                let c = &map.chunks[chunk];
                let dev = |l: u64| start + (l - logical);
                let gone = Ranges(lost.intersect(logical, len));
                let kept = subtract(&Ranges(vec![(logical, len)]), &gone);
                if !kept.0.is_empty() {
                    let mut others: Vec<String> = c
                        .stripes
                        .iter()
                        .filter(|s| s.devid != devid && !known.contains(&s.devid))
                        .map(|s| s.devid.to_string())
                        .collect();
                    others.dedup();
                    let parity = c.parity_stripes() > 0;
                    let what = match (parity, others.is_empty()) {
                        (false, true) => format!("{}: another copy is good", chunk_name(c)),
                        (false, false) => format!(
                            "{}: another copy is taken as good (devid {}, whose bad areas are not known here)",
                            chunk_name(c),
                            others.join(", ")
                        ),
                        (true, true) => format!("{}: rebuilt from parity", chunk_name(c)),
                        (true, false) => format!(
                            "{}: rebuilt from parity (the stripes on devid {} taken as good, their bad areas are not known here)",
                            chunk_name(c),
                            others.join(", ")
                        ),
                    };
                    for (l, n) in kept.0 {
                        push(&mut t.redundant, dev(l), n, what.clone());
                    }
                }
                let lost_what = if c.profile.mirrored() {
                    "every copy bad"
                } else if c.parity_stripes() > 0 {
                    "more stripes bad than parity can make up"
                } else {
                    "no other copy"
                };
                let data = c.flags & btrfs::chunk::DATA != 0;
                let meta = c.flags & (btrfs::chunk::METADATA | btrfs::chunk::SYSTEM) != 0;
                if !data {
                    for (l, n) in gone.0 {
                        push(
                            &mut t.metadata,
                            dev(l),
                            n,
                            format!("{}: {lost_what}", chunk_name(c)),
                        );
                    }
                    continue;
                }
                for (l, n) in subtract(&gone, covered).0 {
                    let what = if meta {
                        format!(
                            "{}, in no file: metadata or free space (mixed chunk)",
                            chunk_name(c)
                        )
                    } else {
                        format!(
                            "{}, not in any file (free space or an unreachable/old extent)",
                            chunk_name(c)
                        )
                    };
                    push(&mut t.unknown, dev(l), n, what);
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfs::chunk::Stripe;

    const M: u64 = 1 << 20;

    fn chunk(
        logical: u64,
        length: u64,
        flags: u64,
        profile: btrfs::Profile,
        stripes: &[(u64, u64)],
    ) -> Chunk {
        Chunk {
            logical,
            length,
            stripe_len: 65536,
            flags,
            profile,
            sub_stripes: if profile == btrfs::Profile::Raid10 {
                2
            } else {
                1
            },
            stripes: stripes
                .iter()
                .map(|&(devid, offset)| Stripe {
                    devid,
                    offset,
                    dev_uuid: [0; 16],
                })
                .collect(),
        }
    }

    /// devid 1 (64 MiB): DATA single at 1 GiB on 8..16 MiB; METADATA DUP
    /// on 16..20 and 20..24 MiB; DATA RAID1 with devid 2 on 24..28 MiB;
    /// DATA RAID0 with devid 2 on 28..30 MiB; RAID5 on 40..41 MiB.
    fn map() -> ChunkMap {
        use btrfs::Profile::*;
        let g = 1u64 << 30;
        ChunkMap {
            chunks: vec![
                chunk(g, 8 * M, 1, Single, &[(1, 8 * M)]),
                chunk(2 * g, 4 * M, 4, Dup, &[(1, 16 * M), (1, 20 * M)]),
                chunk(3 * g, 4 * M, 1, Raid1, &[(1, 24 * M), (2, 0)]),
                chunk(4 * g, 4 * M, 1, Raid0, &[(2, 100 * M), (1, 28 * M)]),
                chunk(5 * g, 2 * M, 1, Raid5, &[(1, 40 * M), (2, 40 * M), (3, 0)]),
            ],
            devids: vec![1, 2],
            nodes_read: 1,
            notes: vec![],
        }
    }

    fn known1(b: &[(u64, u64)]) -> BTreeMap<u64, (u64, Ranges)> {
        BTreeMap::from([(1, (64 * M, Ranges::from_unsorted(b.to_vec())))])
    }

    #[test]
    fn single_dup_raid1_raid0_lose_what_they_should() {
        let g = 1u64 << 30;
        let m = map();
        // Single data: lost. DUP metadata one copy: kept; both: lost.
        // RAID1 here only: kept (devid 2 taken as good). RAID0 second
        // stripe, first 64 KiB: logical 4G + 64K.
        let bad = [
            (8 * M + 4096, 100),
            (16 * M, 8192),
            (20 * M + 4096, 8192),
            (24 * M, 4096),
            (28 * M, 4096),
        ];
        let lost = lost_logical(&m, &known1(&bad));
        assert_eq!(
            lost,
            Ranges(vec![
                (g + 4096, 100),
                (2 * g + 4096, 4096),
                (4 * g + 65536, 4096)
            ])
        );
        // With devid 2's bad ranges known too, RAID1 both bad is lost.
        let mut both = known1(&bad);
        both.insert(2, (200 * M, Ranges(vec![(0, 2048)])));
        let lost2 = lost_logical(&m, &both);
        assert!(lost2.0.contains(&(3 * g, 2048)), "{lost2:?}");
    }

    #[test]
    fn classify_names_places() {
        let g = 1u64 << 30;
        let m = map();
        let bad = Ranges::from_unsorted(vec![
            (65536, 4096),  // superblock
            (2 * M, 4096),  // unallocated
            (8 * M, 8192),  // data single: 4096 in a file, 4096 not
            (16 * M, 4096), // DUP, one copy
            (24 * M, 4096), // RAID1, other copy on devid 2
            (40 * M, 4096), // RAID5
            (17 * M, 4096), // DUP both copies:
            (21 * M, 4096),
        ]);
        let known = known1(&bad.0);
        let lost = lost_logical(&m, &known);
        let covered = Ranges(vec![(g, 4096)]);
        let t = classify(&m, 1, 64 * M, &bad, &lost, &covered, &[1]);
        let w = |v: &[Area]| -> Vec<(u64, u64, String)> {
            v.iter().map(|a| (a.start, a.len, a.what.clone())).collect()
        };
        assert_eq!(
            w(&t.metadata),
            [
                (65536, 4096, "the superblock".into()),
                (
                    17 * M,
                    4096,
                    format!("METADATA chunk at logical {} (DUP): every copy bad", 2 * g)
                ),
                (
                    21 * M,
                    4096,
                    format!("METADATA chunk at logical {} (DUP): every copy bad", 2 * g)
                ),
            ]
        );
        assert_eq!(
            w(&t.free),
            [(2 * M, 4096, "unallocated (in no chunk)".into())]
        );
        assert_eq!(t.unknown.len(), 1, "{:?}", t.unknown);
        assert_eq!((t.unknown[0].start, t.unknown[0].len), (8 * M + 4096, 4096));
        assert!(t.unknown[0].what.contains("not in any file"));
        assert_eq!(t.redundant.len(), 3);
        assert!(t.redundant[0].what.ends_with("another copy is good"));
        assert!(
            t.redundant[1].what.contains("taken as good (devid 2"),
            "{:?}",
            t.redundant
        );
        // RAID5 stripe 0, row 0: data, the other stripes taken as good.
        assert_eq!(t.redundant[2].start, 40 * M);
        assert!(
            t.redundant[2]
                .what
                .contains("rebuilt from parity (the stripes on devid 2, 3"),
            "{:?}",
            t.redundant
        );
        assert!(touches_data(&m, &lost));
        assert!(!touches_data(&m, &Ranges(vec![(2 * g, 4096)])));
    }

    #[test]
    fn raid5_loses_a_byte_only_when_two_stripes_are_bad_there() {
        use btrfs::Profile::*;
        let g = 1u64 << 30;
        let k = 65536u64;
        // 3 devices, full stripe 0: data 0 on devid 1, data 1 on devid 2,
        // P on devid 3; full stripe 1: P on devid 1.
        let m = ChunkMap {
            chunks: vec![chunk(
                g,
                4 * k,
                1,
                Raid5,
                &[(1, 10 * M), (2, 20 * M), (3, 30 * M)],
            )],
            devids: vec![1, 2, 3],
            nodes_read: 1,
            notes: vec![],
        };
        let known = |b: [Vec<(u64, u64)>; 3]| -> BTreeMap<u64, (u64, Ranges)> {
            b.into_iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, (64 * M, Ranges::from_unsorted(r))))
                .collect()
        };
        // Data 0 bad alone: rebuilt.
        let one = known([vec![(10 * M + 100, 50)], vec![], vec![]]);
        assert_eq!(lost_logical(&m, &one), Ranges::default());
        // Data 0 and the parity overlap on 120..150: lost there only.
        let two = known([vec![(10 * M + 100, 50)], vec![], vec![(30 * M + 120, 100)]]);
        assert_eq!(lost_logical(&m, &two), Ranges(vec![(g + 120, 30)]));
        // Row 1 on devid 1 is parity: bad with data 2 (devid 2 row 1)
        // loses data 2 only.
        let p = known([vec![(10 * M + k, 10)], vec![(20 * M + k, 10)], vec![]]);
        assert_eq!(lost_logical(&m, &p), Ranges(vec![(g + 2 * k, 10)]));
        let t = classify(
            &m,
            1,
            64 * M,
            &p[&1].1,
            &lost_logical(&m, &p),
            &Ranges::default(),
            &[1, 2, 3],
        );
        assert!(t.redundant[0].what.contains("parity"), "{t:?}");
    }

    /// Synthetic RAID5/6 chunks, every device known, against a model from
    /// the kernel's raid_map: full stripe f has data unit i on stripe
    /// (i + f) % n and its parity on the others; a 4 KiB block is lost
    /// when its stripe and more than `parity` stripes in all are bad at
    /// its device row and offset.
    fn raid56_model(c: &Chunk, bad: &BTreeMap<u64, (u64, Ranges)>) -> Vec<u64> {
        let n = c.stripes.len() as u64;
        let p = if c.profile == btrfs::Profile::Raid6 {
            2
        } else {
            1
        };
        let d = n - p;
        let sl = c.stripe_len;
        let is_bad = |i: u64, x: u64| {
            let s = &c.stripes[i as usize];
            !bad[&s.devid].1.intersect(s.offset + x, 1).is_empty()
        };
        let mut out = Vec::new();
        for l in (0..c.length).step_by(4096) {
            let (unit, within) = (l / sl, l % sl);
            let (f, i) = (unit / d, unit % d);
            let x = f * sl + within;
            let count = (0..n).filter(|&j| is_bad(j, x)).count() as u64;
            if is_bad((i + f) % n, x) && count > p {
                out.push(c.logical + l);
            }
        }
        out
    }

    use proptest::prelude::*;
    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn raid56_lost_matches_the_model(
            raid6 in any::<bool>(),
            n in 3u64..7,
            rows in 1u64..5,
            bad in prop::collection::vec((0u64..7, 0u64..80, 1u64..40), 0..14),
        ) {
            let p = if raid6 { 2 } else { 1 };
            prop_assume!(n > p + 1);
            let k = 65536u64;
            let profile = if raid6 { btrfs::Profile::Raid6 } else { btrfs::Profile::Raid5 };
            let stripes: Vec<(u64, u64)> = (0..n).map(|i| (i + 1, (i + 2) * M)).collect();
            let c = chunk(1 << 30, rows * (n - p) * k, 1, profile, &stripes);
            let m = ChunkMap { chunks: vec![c.clone()], devids: (1..=n).collect(), nodes_read: 1, notes: vec![] };
            let known: BTreeMap<u64, (u64, Ranges)> = (1..=n)
                .map(|devid| {
                    let r = bad
                        .iter()
                        .filter(|b| b.0 % n + 1 == devid)
                        .map(|&(_, at, len)| ((devid + 1) * M + at * 4096, len * 4096))
                        .collect();
                    (devid, (64 * M, Ranges::from_unsorted(r)))
                })
                .collect();
            let lost = lost_logical(&m, &known);
            let blocks: Vec<u64> = lost.0.iter().flat_map(|&(s, l)| (s..s + l).step_by(4096)).collect();
            prop_assert_eq!(blocks, raid56_model(&c, &known));
            // Every bad byte is told apart once on each device.
            for devid in 1..=n {
                let b = &known[&devid].1;
                let t = classify(&m, devid, 64 * M, b, &lost, &Ranges::default(), &[]);
                let sum = |v: &[Area]| v.iter().map(|a| a.len).sum::<u64>();
                prop_assert_eq!(sum(&t.metadata) + sum(&t.free) + sum(&t.unknown) + sum(&t.redundant), b.total());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Every bad byte lands in exactly one list or in a file.
        #[test]
        fn every_bad_byte_is_accounted_for(
            bad in prop::collection::vec((0u64..64 * M, 1u64..300_000), 0..8),
        ) {
            let m = map();
            let bad = Ranges::from_unsorted(bad);
            let known = BTreeMap::from([(1, (64 * M, bad.clone()))]);
            let lost = lost_logical(&m, &known);
            let t = classify(&m, 1, 64 * M, &bad, &lost, &Ranges::default(), &[1]);
            let sum = |v: &[Area]| v.iter().map(|a| a.len).sum::<u64>();
            let total = sum(&t.metadata) + sum(&t.free) + sum(&t.unknown) + sum(&t.redundant);
            prop_assert_eq!(total, bad.total());
        }
    }
}
