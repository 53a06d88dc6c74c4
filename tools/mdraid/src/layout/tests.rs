//! RAID-10 and linear placement against independent descriptions: the
//! pictures in the kernel's commit messages for far/offset and far sets
//! and in md(4), a model written from md(4)'s wording, and properties
//! (every chunk has `copies` places on distinct disks, no device chunk is
//! used twice, the inverse finds every copy).

use super::*;
use proptest::prelude::*;

fn geo(level: i32, layout: u32, n: usize, chunk: u64, component: u64) -> Geometry {
    Geometry {
        level,
        layout,
        chunk_bytes: chunk,
        raid_disks: n,
        component_bytes: component,
    }
}

/// The picture of the first `rows` device rows: `pic[row][disk]` is the
/// array chunk there (letters from 'A'), '.' where none.
fn picture(g: &Geometry, rows: u64) -> Vec<String> {
    let mut pic = vec![vec!['.'; g.raid_disks]; rows as usize];
    for c in 0..g.raid10_array_chunks() {
        for (d, r) in g.raid10_copies(c) {
            if r < rows {
                pic[r as usize][d] = (b'A' + c as u8) as char;
            }
        }
    }
    pic.into_iter().map(|r| r.into_iter().collect()).collect()
}

#[test]
fn far_and_offset_match_the_kernel_pictures() {
    // 6 disks, 2 far copies, chunk 4 KiB, 4 chunks per disk: 12 array
    // chunks, the second copy 2 rows down (the picture in the commit
    // "MD RAID10: Improve redundancy for 'far' and 'offset' algorithms").
    let cb = 4096;
    let g = geo(10, 0x201, 6, cb, 4 * cb);
    assert_eq!(g.raid10_array_chunks(), 12);
    assert_eq!(picture(&g, 4), ["ABCDEF", "GHIJKL", "FABCDE", "LGHIJK"]);
    let g = geo(10, 0x10201, 6, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABCDEF", "FABCDE", "GHIJKL", "LGHIJK"]);
    // Far sets of near*far = 2 disks (bits 17-18 = 2): the copies wrap
    // inside each pair of disks.
    let g = geo(10, 0x40201, 6, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABCDEF", "GHIJKL", "BADCFE", "HGJILK"]);
    let g = geo(10, 0x50201, 6, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABCDEF", "BADCFE", "GHIJKL", "HGJILK"]);
    // Bits 17-18 = 1: sets of n / far = 3 disks.
    let g = geo(10, 0x20201, 6, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABCDEF", "GHIJKL", "CABFDE", "IGHLJK"]);
}

#[test]
fn near_far_offset_on_three_disks_match_md4() {
    // md(4)/mdadm's classic three-disk pictures: n2, f2, o2.
    let cb = 4096;
    let g = geo(10, 0x102, 3, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["AAB", "BCC", "DDE", "EFF"]);
    let g = geo(10, 0x201, 3, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABC", "DEF", "CAB", "FDE"]);
    let g = geo(10, 0x10201, 3, cb, 4 * cb);
    assert_eq!(picture(&g, 4), ["ABC", "CAB", "DEF", "FDE"]);
}

#[test]
fn far_sets_layout_bits_are_checked() {
    let mut img = vec![0u8; 1 << 20];
    img[4096..8192].copy_from_slice(&testkit::mdwriter::write_v1(10, 4, 0, 4096, "h:0"));
    let dev = blockdev::MemDevice::new(img, 512);
    let mut sb = crate::superblock::find_superblock(&dev).unwrap().unwrap();
    for (layout, ok) in [
        (0x201u32, true),
        (0x20201, true),
        (0x40201, true),
        (0x60201, false),
        (0x80201, false),
    ] {
        sb.layout = layout;
        assert_eq!(Geometry::from_superblock(&sb).is_ok(), ok, "{layout:#x}");
    }
}

#[test]
fn linear_members_are_chunk_rounded_and_concatenated() {
    let g = geo(-1, 0, 3, 0, 0);
    assert_eq!(
        g.linear_spans(&[1000, 3000, 512]),
        [(0, 1000), (1000, 3000), (4000, 512)]
    );
    let g = geo(-1, 0, 3, 4096, 0);
    assert_eq!(
        g.linear_spans(&[10000, 4096, 8191]),
        [(0, 8192), (8192, 4096), (12288, 4096)]
    );
}

/// md(4)'s wording as a model: near copy k of chunk c takes position
/// p = c*near + k of a raid0-like walk over the disks (disk p % n, row
/// p / n); far copy f of it lies `near * f` disks further on, wrapping in
/// its far set, `f * stride` rows further down. Offset layouts give every
/// array row `far` device rows, the copy f in the f-th of them; a near
/// copy that wraps to disk 0 lands one device row further down.
fn model(g: &Geometry, c: u64) -> Vec<(usize, u64)> {
    let r = Raid10::from_layout(g.layout);
    let n = g.raid_disks as u64;
    let (nc, fc) = (u64::from(r.near), u64::from(r.far));
    let set = r.far_set_size(n);
    let rows = g.dev_chunks() / fc * n / nc * nc * fc;
    let stride = if r.offset { 1 } else { rows.div_ceil(n) / fc };
    let mut out = Vec::new();
    for k in 0..nc {
        let p = c * nc + k;
        let (d0, wrap) = (p % n, p / n - c * nc / n);
        let row0 = if r.offset {
            (c * nc / n) * fc + wrap
        } else {
            p / n
        };
        for f in 0..fc {
            let start = d0 / set * set;
            let d = start + (d0 - start + f * nc) % set;
            out.push((d as usize, row0 + f * stride));
        }
    }
    out
}

fn raid10_geometries() -> impl Strategy<Value = Geometry> {
    (
        2usize..9,
        1u32..5,
        1u32..5,
        any::<bool>(),
        0u32..3,
        1u64..40,
    )
        .prop_filter_map("near*far <= n", |(n, nc, fc, offset, sets, rows)| {
            if (nc * fc) as usize > n {
                return None;
            }
            let layout = nc | fc << 8 | u32::from(offset) << 16 | sets << 17;
            Some(geo(10, layout, n, 4096, rows * 4096 + 512))
        })
}

/// Geometries the kernel places without two chunks meeting: not offset
/// layouts whose near copies wrap past the last disk (the wrapped copy
/// goes one row down, onto a row the offset copies use: raid10.c does
/// this too; mdadm never makes near and offset copies together), not the
/// buggy far sets of n / far disks (bits 17-18 = 1, which the kernel
/// warns "does not provide data safety").
fn sound(g: &Geometry) -> bool {
    let r = Raid10::from_layout(g.layout);
    !(r.offset && r.far > 1 && !g.raid_disks.is_multiple_of(r.near as usize)) && r.far_sets != 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn raid10_copies_are_distinct_disjoint_and_invertible(g in raid10_geometries()) {
        let r = Raid10::from_layout(g.layout);
        let chunks = g.raid10_array_chunks();
        let mut used = std::collections::BTreeMap::new();
        for c in 0..chunks {
            let cp = g.raid10_copies(c);
            prop_assert_eq!(cp.len(), r.copies() as usize);
            let mut disks: Vec<usize> = cp.iter().map(|x| x.0).collect();
            disks.sort_unstable();
            disks.dedup();
            if r.far_sets != 1 {
                // Far sets of n / far disks may put copies together (the
                // kernel warns: "does not provide data safety").
                prop_assert_eq!(disks.len(), cp.len(), "chunk {} {:?} {:?}", c, cp, g);
            }
            for (k, &(d, row)) in cp.iter().enumerate() {
                prop_assert!(d < g.raid_disks && row < g.dev_chunks(), "{:?} {:?}", cp, g);
                if sound(&g) {
                    prop_assert!(used.insert((d, row), (c, k)).is_none(),
                        "chunk {} copy {} at {:?} taken: {:?}", c, k, (d, row), g);
                }
                let back = g.raid10_chunk_at(d, row);
                prop_assert!(back.is_some_and(|(c2, _)| g.raid10_copies(c2)[back.unwrap().1] == (d, row)));
                if sound(&g) {
                    prop_assert_eq!(back, Some((c, k)));
                }
            }
        }
        if sound(&g) {
            for d in 0..g.raid_disks {
                for row in 0..g.dev_chunks() + 2 {
                    prop_assert_eq!(g.raid10_chunk_at(d, row), used.get(&(d, row)).copied());
                }
            }
        }
    }

    #[test]
    fn raid10_copies_match_the_md4_model(g in raid10_geometries()) {
        let r = Raid10::from_layout(g.layout);
        let n = g.raid_disks as u64;
        // The model's plain wrap inside a set: far sets that divide the
        // disks (the kernel's last, larger set and the n/far sets differ).
        if !(r.far_sets == 0 || (r.far_sets == 2 && n.is_multiple_of(r.far_set_size(n)))) {
            return Ok(());
        }
        for c in 0..g.raid10_array_chunks() {
            prop_assert_eq!(g.raid10_copies(c), model(&g, c), "chunk {} {:?}", c, g);
        }
    }
}
