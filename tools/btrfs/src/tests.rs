use crate::chunk::{self, Chunk};
use crate::synth::{self, NODE, SYS_COPIES, SYS_LOGICAL};
use blockdev::MemDevice;
use proptest::prelude::*;

fn open_img(img: Vec<u8>) -> Result<crate::Fs, String> {
    let d = MemDevice::new(img, 512);
    crate::open(&[&d])
}

#[test]
fn synthetic_chunk_tree_is_read() {
    let fs = open_img(synth::image()).unwrap();
    assert_eq!(fs.sb.devid, 1);
    assert_eq!(fs.sb.num_devices, 2);
    assert_eq!(fs.map.nodes_read, 3);
    assert_eq!(fs.map.devids, [1]);
    let specs: Vec<_> = synth::chunks().into_iter().flatten().collect();
    assert_eq!(fs.map.chunks.len(), specs.len());
    for ((c, s), p) in fs.map.chunks.iter().zip(&specs).zip(synth::profiles()) {
        assert_eq!((c.logical, c.length, c.flags), (s.0, s.1, s.2));
        assert_eq!(c.profile, p);
        let st: Vec<_> = c.stripes.iter().map(|x| (x.devid, x.offset)).collect();
        assert_eq!(st, s.4);
    }
    assert!(fs.notes.is_empty(), "{:?}", fs.notes);
}

#[test]
fn a_damaged_copy_is_skipped_and_both_damaged_is_an_error() {
    let mut img = synth::image();
    let leaf1 = (SYS_COPIES[0] + synth::LEAVES[1] - SYS_LOGICAL) as usize;
    img[leaf1 + 500] ^= 0xFF;
    let fs = open_img(img.clone()).unwrap();
    assert_eq!(fs.map.chunks.len(), 6);
    let n = fs.notes.join("\n");
    assert!(
        n.contains(&format!("logical {}", synth::LEAVES[1]))
            && n.contains("copy 1")
            && n.contains("csum"),
        "{n}"
    );
    let leaf1b = (SYS_COPIES[1] + synth::LEAVES[1] - SYS_LOGICAL) as usize;
    img[leaf1b + 0x30] ^= 1; // bytenr
    let mut b = img[leaf1b..leaf1b + NODE].to_vec();
    synth::seal(&mut b);
    img[leaf1b..leaf1b + NODE].copy_from_slice(&b);
    let e = open_img(img).unwrap_err();
    assert!(e.contains(&format!("logical {}", synth::LEAVES[1])), "{e}");
    assert!(e.contains("csum") && e.contains("bytenr (at +0x30)"), "{e}");
}

#[test]
fn the_superblock_copy_is_used_when_the_primary_is_bad() {
    let mut img = synth::image();
    img.resize(65 << 20, 0);
    let mut sb = img[65536..65536 + 4096].to_vec();
    le::put_u64(&mut sb, 0x30, 64 << 20);
    synth::seal(&mut sb);
    img[64 << 20..(64 << 20) + 4096].copy_from_slice(&sb);
    img[65536 + 0x40] = b'X';
    let fs = open_img(img).unwrap();
    assert_eq!(fs.sb.bytenr, 64 << 20);
    assert!(fs.notes[0].contains("magic (at +0x40)"), "{:?}", fs.notes);
}

#[test]
fn superblock_errors_name_the_field() {
    let mut img = synth::image();
    le::put_u32(&mut img, 65536 + 0x94, 5000);
    let mut sb = img[65536..65536 + 4096].to_vec();
    synth::seal(&mut sb);
    let e = crate::Super::parse(&sb, 65536).unwrap_err();
    assert!(
        e.contains("nodesize (at +0x94)") && e.contains("5000"),
        "{e}"
    );
    let e = crate::Super::parse(&img[65536..65536 + 4096], 65536).unwrap_err();
    assert!(e.contains("csum (at +0x0)"), "{e}");
}

fn chunk(profile_bits: u64, sub: u16, stripes: &[(u64, u64)], length: u64) -> Chunk {
    let (_, c) = synth::chunk_bytes(&(1 << 30, length, 1 | profile_bits, sub, stripes.to_vec()));
    Chunk::parse(&c, 1 << 30, "test").unwrap()
}

#[test]
fn raid0_and_raid10_arithmetic() {
    let k = 65536u64;
    let c = chunk(
        0x8,
        1,
        &[(1, 1000 * k), (2, 2000 * k), (3, 3000 * k)],
        6 * k,
    );
    assert_eq!(c.stripe_bytes(), Some(2 * k));
    // Unit 4 (logical +4*64K+5) is in group 1, row 1.
    let (v, run) = c.copies((1 << 30) + 4 * k + 5).unwrap();
    assert_eq!(v, [(2, 2000 * k + k + 5)]);
    assert_eq!(run, k - 5);
    let p = c.to_logical(1, 2000 * k, 2 * k);
    assert_eq!(
        p,
        [
            chunk::Piece {
                device: 2000 * k,
                logical: (1 << 30) + k,
                len: k
            },
            chunk::Piece {
                device: 2001 * k,
                logical: (1 << 30) + 4 * k,
                len: k
            },
        ]
    );
    let c = chunk(0x40, 2, &[(1, 0), (2, 0), (3, 0), (4, 0)], 4 * k);
    assert_eq!(c.layout(), Some((2, 2)));
    let (v, _) = c.copies((1 << 30) + 3 * k).unwrap();
    assert_eq!(v, [(3, k), (4, k)]);
    assert_eq!(c.group_of((1 << 30) + 3 * k), Some(2..4));
}

#[test]
fn bad_chunks_are_errors() {
    let (_, mut c) = synth::chunk_bytes(&(0, 1 << 20, 1 | 0x20, 1, vec![(1, 0), (2, 0)]));
    let e = Chunk::parse(&c, 0, "t").unwrap_err();
    assert!(e.contains("DUP: both copies on one device"), "{e}");
    le::put_u64(&mut c, 24, 1 | 0x8 | 0x10);
    assert!(Chunk::parse(&c, 0, "t")
        .unwrap_err()
        .contains("profile bit"));
    le::put_u64(&mut c, 24, 1 | 0x10);
    assert!(Chunk::parse(&c, 0, "t").is_ok());
    let e = Chunk::parse(&c[..60], 0, "t").unwrap_err();
    assert!(e.contains("past the end"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_metadata_never_panics(
        edits in prop::collection::vec((0usize..4, 0usize..4096, any::<u8>()), 1..30),
        reseal in any::<bool>(),
    ) {
        let mut img = synth::image();
        // Regions: the superblock, the root, the two leaves (both copies).
        let starts = [
            65536usize,
            SYS_COPIES[0] as usize,
            SYS_COPIES[0] as usize + NODE,
            SYS_COPIES[0] as usize + 2 * NODE,
        ];
        let mut touched = std::collections::BTreeSet::new();
        for (r, at, v) in edits {
            img[starts[r] + at] = v;
            touched.insert(r);
            if r > 0 {
                img[starts[r] + at + (SYS_COPIES[1] - SYS_COPIES[0]) as usize] = v;
            }
        }
        if reseal {
            for r in touched {
                for shift in [0, (SYS_COPIES[1] - SYS_COPIES[0]) as usize] {
                    let s = if r == 0 { starts[0] } else { starts[r] + shift };
                    let mut b = img[s..s + 4096].to_vec();
                    synth::seal(&mut b);
                    img[s..s + 4096].copy_from_slice(&b);
                }
            }
        }
        if let Ok(fs) = open_img(img) {
            for c in &fs.map.chunks {
                let _ = c.copies(c.logical + c.length / 2);
                for i in 0..c.stripes.len() {
                    let _ = c.to_logical(i, 0, u64::MAX);
                }
            }
        }
    }

    #[test]
    fn random_chunk_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200), at in any::<u64>()) {
        if let Ok(c) = Chunk::parse(&b, at, "random") {
            let _ = c.copies(at);
            let _ = c.copies(at.wrapping_add(c.length - 1));
            for i in 0..c.stripes.len() {
                let _ = c.to_logical(i, c.stripes[i].offset, u64::MAX);
            }
        }
        let _ = chunk::parse_sys_chunk_array(&b);
    }

    /// Every copy of every byte maps back to that byte.
    #[test]
    fn forward_and_inverse_agree(
        kind in 0usize..6,
        groups in 1u64..4,
        units in 1u64..4,
        pick in any::<u64>(),
    ) {
        let k = 65536u64;
        let (bits, sub, n) = match kind {
            0 => (0, 1, 1),
            1 => (0x20, 1, 2),
            2 => (0x10, 1, 2),
            3 => (0x200, 1, 3),
            4 => (0x8, 1, groups as usize),
            _ => (0x40, 2, 2 * groups as usize),
        };
        let stripes: Vec<(u64, u64)> = (0..n)
            .map(|i| (if kind == 1 { 1 } else { i as u64 % 3 + 1 }, (i as u64 + 1) * 100 * k))
            .collect();
        let factor = if kind >= 4 { groups } else { 1 };
        let c = chunk(bits, sub, &stripes, factor * units * k);
        let l = c.logical + pick % c.length;
        let (v, run) = c.copies(l).unwrap();
        prop_assert!(run >= 1);
        let g = c.group_of(l).unwrap();
        prop_assert_eq!(v.len(), g.len());
        for (j, (devid, phys)) in v.iter().enumerate() {
            let i = g.start + j;
            prop_assert_eq!(*devid, c.stripes[i].devid);
            let back = c.to_logical(i, *phys, 1);
            prop_assert_eq!(back, vec![chunk::Piece { device: *phys, logical: l, len: 1 }]);
        }
        // The device bytes of all stripes map onto the chunk, each byte
        // as many times as it has copies.
        let total: u64 = (0..n).flat_map(|i| c.to_logical(i, 0, u64::MAX)).map(|p| p.len).sum();
        prop_assert_eq!(total, c.length * g.len() as u64);
    }
}

#[test]
fn raid5_rotates_parity_per_full_stripe() {
    // 3 devices, 2 data stripes: full stripe f has data on stripes f%3 and
    // (f+1)%3, P on (f+2)%3 (the table btrfs's raid_map builds).
    let k = 65536u64;
    let c = chunk(0x80, 1, &[(1, 100 * k), (2, 200 * k), (3, 300 * k)], 6 * k);
    assert_eq!(c.device_extent_len(), 3 * k);
    let at = |u: u64| c.copies((1 << 30) + u * k + 7).unwrap().0;
    assert_eq!(at(0), [(1, 100 * k + 7)]);
    assert_eq!(at(1), [(2, 200 * k + 7)]);
    assert_eq!(at(2), [(2, 200 * k + k + 7)]);
    assert_eq!(at(3), [(3, 300 * k + k + 7)]);
    assert_eq!(at(4), [(3, 300 * k + 2 * k + 7)]);
    assert_eq!(at(5), [(1, 100 * k + 2 * k + 7)]);
    assert_eq!(c.raid56_role(2, 0), Some(Err(0)));
    assert_eq!(c.raid56_role(0, 1), Some(Err(0)));
    assert_eq!(c.raid56_role(1, 2), Some(Err(0)));
    // Stripe 0's rows: data 0, parity, data 1 of full stripe 2.
    let p = c.to_logical(0, 0, u64::MAX);
    assert_eq!(
        p,
        [
            chunk::Piece {
                device: 100 * k,
                logical: 1 << 30,
                len: k
            },
            chunk::Piece {
                device: 102 * k,
                logical: (1 << 30) + 5 * k,
                len: k
            },
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// RAID5/6 against a model of the kernel's raid_map: in full stripe f
    /// with rot = f % n, data unit i is on stripe (i + rot) % n, P on
    /// (d + rot) % n, Q on (d + rot + 1) % n. Every logical byte has one
    /// data place, every device row of a stripe holds exactly one unit
    /// (data or parity), and the inverse agrees.
    #[test]
    fn raid56_matches_the_raid_map_model(
        raid6 in any::<bool>(),
        n in 2usize..8,
        rows in 1u64..6,
        pick in any::<u64>(),
    ) {
        let p = if raid6 { 2 } else { 1 };
        prop_assume!(n > p + usize::from(raid6));
        let d = (n - p) as u64;
        let k = 65536u64;
        let stripes: Vec<(u64, u64)> = (0..n).map(|i| (i as u64 + 1, (i as u64 + 3) * 1000 * k)).collect();
        let c = chunk(if raid6 { 0x100 } else { 0x80 }, 1, &stripes, rows * d * k);
        prop_assert_eq!(c.device_extent_len(), rows * k);
        let mut seen = std::collections::BTreeSet::new();
        for f in 0..rows {
            let rot = f % n as u64;
            let mut map: Vec<Option<Result<u64, usize>>> = vec![None; n];
            for i in 0..d {
                map[((i + rot) % n as u64) as usize] = Some(Ok(i));
            }
            map[((d + rot) % n as u64) as usize] = Some(Err(0));
            if raid6 {
                map[((d + rot + 1) % n as u64) as usize] = Some(Err(1));
            }
            for (s, want) in map.iter().enumerate() {
                prop_assert_eq!(c.raid56_role(s, f), *want, "stripe {} row {}", s, f);
                if let Some(Ok(i)) = want {
                    let within = pick % k;
                    let l = c.logical + (f * d + i) * k + within;
                    let (v, run) = c.copies(l).unwrap();
                    let phys = stripes[s].1 + f * k + within;
                    prop_assert_eq!(v, vec![(stripes[s].0, phys)]);
                    prop_assert_eq!(run, k - within);
                    prop_assert_eq!(c.to_logical(s, phys, 1), vec![chunk::Piece { device: phys, logical: l, len: 1 }]);
                    prop_assert_eq!(c.group_of(l), Some(s..s + 1));
                    prop_assert!(seen.insert((s, f)));
                }
            }
        }
        let total: u64 = (0..n).flat_map(|i| c.to_logical(i, 0, u64::MAX)).map(|x| x.len).sum();
        prop_assert_eq!(total, c.length);
    }
}
