//! btrfs: bad device bytes carried to btrfs logical addresses (the
//! address space FIEMAP reports on btrfs) through the chunk map
//! ([`btrfs`] crate), and the bad bytes no file holds told apart.
//!
//! A logical byte is lost when every copy of it is bad: one copy for
//! single, RAID0 and the striped part of RAID10; two for DUP (both on one
//! device, so both are known) and RAID1, three or four for RAID1C3/C4.
//! Only the devices whose bad ranges are given are known: a copy on
//! another device is taken as good, and a RAID0 stripe there is not
//! mapped from here.
//!
//! The bad bytes of a device, by where they lie:
//! - a superblock copy (64 KiB, 64 MiB, 256 GiB): metadata;
//! - a stripe of a METADATA or SYSTEM chunk: metadata, when every copy is
//!   bad;
//! - a stripe of a DATA chunk: in a file (the walk names it) or "data
//!   chunk, not in any file" (free space inside the chunk, or an extent
//!   no file references any more: not told apart without the extent
//!   tree);
//! - bad here but another copy is good: still readable;
//! - in no chunk: unallocated, free;
//! - in a RAID5/6 chunk: not mapped yet.

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
    /// A chunk whose profile is not mapped (RAID5/6).
    NotMapped(usize),
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
                if c.layout().is_none() {
                    out.push((a, n, Place::NotMapped(ci)));
                    continue;
                }
                for p in c.to_logical(si, a, n) {
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
            Place::NotMapped(ci) => push(
                &mut t.unknown,
                start,
                len,
                format!(
                    "in a {}: {} is not mapped yet",
                    chunk_name(&map.chunks[ci]),
                    map.chunks[ci].profile.name()
                ),
            ),
            Place::Stripe { chunk, logical, .. } => {
                let c = &map.chunks[chunk];
                let dev = |l: u64| start + (l - logical);
                let gone = Ranges(lost.intersect(logical, len));
                let kept = subtract(&Ranges(vec![(logical, len)]), &gone);
                if !kept.0.is_empty() {
                    let others: Vec<String> = c
                        .stripes
                        .iter()
                        .filter(|s| s.devid != devid && !known.contains(&s.devid))
                        .map(|s| s.devid.to_string())
                        .collect();
                    let what = if others.is_empty() {
                        format!("{}: another copy is good", chunk_name(c))
                    } else {
                        format!(
                            "{}: another copy is taken as good (devid {}, whose bad areas are not known here)",
                            chunk_name(c),
                            others.join(", ")
                        )
                    };
                    for (l, n) in kept.0 {
                        push(&mut t.redundant, dev(l), n, what.clone());
                    }
                }
                let lost_what = if c.profile.mirrored() {
                    "every copy bad"
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
        assert_eq!(t.unknown.len(), 2, "{:?}", t.unknown);
        assert_eq!((t.unknown[0].start, t.unknown[0].len), (8 * M + 4096, 4096));
        assert!(t.unknown[0].what.contains("not in any file"));
        assert!(t.unknown[1].what.contains("RAID5 is not mapped yet"));
        assert_eq!(t.redundant.len(), 2);
        assert!(t.redundant[0].what.ends_with("another copy is good"));
        assert!(
            t.redundant[1].what.contains("taken as good (devid 2"),
            "{:?}",
            t.redundant
        );
        assert!(touches_data(&m, &lost));
        assert!(!touches_data(&m, &Ranges(vec![(2 * g, 4096)])));
    }

    use proptest::prelude::*;
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
