//! COWD (vmfsSparse) and SESparse deltas read through a snapshot chain,
//! written by testkit's writers and checked against a model of the bytes
//! and against qemu-img, which reads both formats.

use blockdev::MemDevice;
use proptest::prelude::*;
use std::process::Command;
use std::sync::Arc;
use testkit::vmdkdelta::{
    cowd_delta, descriptor, sesparse, sesparse_with, GrainState, SeSparseOptions,
};
use testkit::TempDir;
use vmdk::{Error, ExtentReader, Held, HostDir, VirtualDisk};

/// 34 MiB: three SESparse grain tables (16 MiB each), the last partly.
const SECTORS: u64 = 34 * 2048;
const SIZE: usize = SECTORS as usize * 512;

fn base_bytes() -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 | 1)
        .collect()
}

fn fill(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag ^ (i as u8).wrapping_mul(3)).collect()
}

/// Writes `name` in `dir`.
fn put(dir: &TempDir, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A flat base, a COWD child and a SESparse grandchild; returns the bytes
/// expected of the middle level and of the top.
fn three_levels(dir: &TempDir) -> (Vec<u8>, Vec<u8>) {
    let base = base_bytes();
    put(dir, "base-flat.vmdk", &base);
    put(
        dir,
        "base.vmdk",
        descriptor(
            "vmfs",
            0x1111_1111,
            None,
            &[&format!("RW {SECTORS} VMFS \"base-flat.vmdk\"")],
        )
        .as_bytes(),
    );

    // COWD, grains of one sector; 100..=103 stored in reverse order.
    let last = SECTORS - 1;
    let cowd: Vec<(u64, Option<Vec<u8>>)> = vec![
        (0, Some(fill(0xA0, 512))),
        (1, Some(fill(0xA1, 512))),
        (5, None),
        (103, Some(fill(0xB3, 512))),
        (102, Some(fill(0xB2, 512))),
        (101, Some(fill(0xB1, 512))),
        (100, Some(fill(0xB0, 512))),
        (4096 * 3 + 7, Some(fill(0xC0, 300))),
        (20000, Some(fill(0xD0, 512))),
        (40000, Some(fill(0xD1, 512))),
        (last, Some(fill(0xE0, 512))),
    ];
    let mut mid = base.clone();
    for (g, data) in &cowd {
        if let Some(d) = data {
            let at = *g as usize * 512;
            mid[at..at + 512].fill(0);
            mid[at..at + d.len()].copy_from_slice(d);
        }
    }
    put(
        dir,
        "mid-delta.vmdk",
        &cowd_delta(SECTORS as u32, 1, &cowd).bytes,
    );
    put(
        dir,
        "mid.vmdk",
        descriptor(
            "vmfsSparse",
            0x2222_2222,
            Some(("base.vmdk", 0x1111_1111)),
            &[&format!("RW {SECTORS} VMFSSPARSE \"mid-delta.vmdk\"")],
        )
        .as_bytes(),
    );

    // SESparse, grains of 4 KiB; the third table listed first so table
    // numbers do not follow directory order.
    let se: Vec<(u64, GrainState)> = vec![
        (4096 * 2 + 5, GrainState::Data(fill(0x30, 4096))),
        (0, GrainState::Data(fill(0x31, 4096))),
        (12, GrainState::Zero),
        (2500, GrainState::Unmapped),
        (1000, GrainState::Data(fill(0x32, 100))),
        (1001, GrainState::Data(fill(0x33, 4096))),
        (SECTORS / 8 - 1, GrainState::Data(fill(0x34, 4096))),
    ];
    let mut top = mid.clone();
    for (g, state) in &se {
        let at = *g as usize * 4096;
        top[at..at + 4096].fill(0);
        if let GrainState::Data(d) = state {
            top[at..at + d.len()].copy_from_slice(d);
        }
    }
    let opts = SeSparseOptions {
        first_cluster: 5000,
        ..SeSparseOptions::default()
    };
    put(
        dir,
        "top-sesparse.vmdk",
        &sesparse_with(SECTORS, &se, &opts).bytes,
    );
    put(
        dir,
        "top.vmdk",
        descriptor(
            "seSparse",
            0x3333_3333,
            Some(("mid.vmdk", 0x2222_2222)),
            &[&format!("RW {SECTORS} SESPARSE \"top-sesparse.vmdk\"")],
        )
        .as_bytes(),
    );
    (mid, top)
}

fn read_all(disk: &VirtualDisk, level: usize) -> Vec<u8> {
    let mut buf = vec![0xEEu8; disk.capacity() as usize];
    // In odd pieces, so reads start and end inside grains.
    let mut at = 0;
    while at < buf.len() {
        let n = (buf.len() - at).min(12_345);
        disk.read_at(level, &mut buf[at..at + n], at as u64)
            .unwrap();
        at += n;
    }
    buf
}

/// The first differing byte, for a readable failure.
fn same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: differs first at byte {i} (sector {}): {:#04x} != {:#04x}",
            i / 512,
            got[i],
            want[i]
        );
    }
}

fn qemu_img_raw(dir: &TempDir, name: &str) -> Vec<u8> {
    let out = dir.join(format!("{name}.raw"));
    let run = Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(dir.join(name))
        .arg(&out)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is needed to check the delta readers (apt install qemu-utils): {e}")
        });
    assert!(
        run.status.success(),
        "qemu-img convert {name}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    bytes
}

#[test]
fn a_sesparse_over_a_cowd_over_a_flat_base_reads_as_written() {
    let dir = TempDir::new("vmdk-deltas");
    let (mid, top) = three_levels(&dir);
    let disk = VirtualDisk::open(&HostDir::new(dir.path()), "top.vmdk").unwrap();
    assert_eq!(disk.levels().len(), 3);
    assert!(disk.warnings.is_empty(), "{:?}", disk.warnings);
    assert_eq!(disk.capacity(), SIZE as u64);
    let formats: Vec<_> = disk
        .levels()
        .iter()
        .map(|l| l.extents[0].1.format())
        .collect();
    assert_eq!(formats, ["flat", "COWD", "SESparse"]);
    for l in disk.levels() {
        assert!(l.notes().is_empty(), "{:?}", l.notes());
    }
    same("base", &read_all(&disk, 0), &base_bytes());
    same("COWD level", &read_all(&disk, 1), &mid);
    same("SESparse level", &read_all(&disk, 2), &top);

    // Where bytes come from.
    let at = |level, offset| disk.locate(level, offset).unwrap();
    assert_eq!(at(2, 0).level, Some(2));
    assert_eq!(at(2, 12 * 4096).held, Held::Zero, "zeroed grain");
    assert_eq!(at(2, 2500 * 4096).held, Held::Zero, "unmapped grain");
    assert_eq!(at(2, 9 * 4096).level, Some(0), "through both deltas");
    assert_eq!(at(1, 512 * 100).level, Some(1));
    assert_eq!(at(1, 512 * 5).level, Some(0), "COWD entry 0 in a table");
    // COWD grains 0 and 1 follow each other in the file: one run.
    assert_eq!(at(1, 0).len, 1024);
    // 100..=103 are in reverse order in the file: one grain each.
    assert_eq!(at(1, 512 * 100).len, 512);

    // Allocated bytes: 10 COWD grains of 512, 5 SESparse grains of 4096.
    assert_eq!(disk.levels()[1].allocated().unwrap(), 10 * 512);
    assert_eq!(disk.levels()[2].allocated().unwrap(), 5 * 4096);
}

#[test]
fn qemu_img_reads_the_same_bytes() {
    let dir = TempDir::new("vmdk-deltas-qemu");
    let (mid, top) = three_levels(&dir);
    let disk = VirtualDisk::open(&HostDir::new(dir.path()), "top.vmdk").unwrap();
    let q_mid = qemu_img_raw(&dir, "mid.vmdk");
    same("qemu-img on the COWD level vs the model", &q_mid, &mid);
    same("qemu-img vs our COWD level", &q_mid, &read_all(&disk, 1));
    let q_top = qemu_img_raw(&dir, "top.vmdk");
    same("qemu-img on the SESparse level vs the model", &q_top, &top);
    same(
        "qemu-img vs our SESparse level",
        &q_top,
        &read_all(&disk, 2),
    );
}

fn mem(bytes: Vec<u8>) -> Arc<MemDevice> {
    Arc::new(MemDevice::new(bytes, 512))
}

fn open_cowd(bytes: Vec<u8>, size: u64) -> vmdk::Result<Box<dyn ExtentReader>> {
    vmdk::cowd::open("x-delta.vmdk".into(), mem(bytes), size)
}

fn open_se(bytes: Vec<u8>, size: u64) -> vmdk::Result<Box<dyn ExtentReader>> {
    vmdk::sesparse::open("x-sesparse.vmdk".into(), mem(bytes), size)
}

#[test]
fn a_table_entry_past_the_end_of_the_file_is_corrupt_and_named() {
    let img = cowd_delta(8192, 1, &[(4100, Some(vec![1; 512]))]);
    let mut b = img.bytes.clone();
    let e = img.table_entry(4100).unwrap() as usize;
    b[e..e + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
    let x = open_cowd(b, 8192 * 512).unwrap();
    assert_eq!(x.map(0).unwrap().held, Held::Unallocated);
    let err = x.map(4100 * 512).unwrap_err();
    match &err {
        Error::Corrupt {
            file,
            offset,
            message,
        } => {
            assert_eq!(file, "x-delta.vmdk");
            assert_eq!(*offset, e as u64);
            assert!(message.contains("virtual byte 2099200"), "{message}");
            assert!(message.contains("past the end of the file"), "{message}");
        }
        e => panic!("{e}"),
    }

    let img = sesparse_with(
        SECTORS,
        &[(4096 + 3, GrainState::Data(vec![1; 4096]))],
        &SeSparseOptions {
            compact: true,
            ..Default::default()
        },
    );
    let mut b = img.bytes.clone();
    let e = img.table_entry(4096 + 3).unwrap() as usize;
    b[e..e + 8].copy_from_slice(&(0x3000_0000_0000_0000u64 | 0x10_0000).to_le_bytes());
    let x = open_se(b.clone(), SIZE as u64).unwrap();
    let err = x.map((4096 + 3) * 4096 + 10).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Corrupt { offset, .. } if offset == e as u64),
        "{text}"
    );
    assert!(
        text.contains("x-sesparse.vmdk") && text.contains("virtual byte 16789504"),
        "{text}"
    );

    // A directory entry whose table lies past the end.
    let d = img.directory_entry(1) as usize;
    b[d..d + 8].copy_from_slice(&0x1000_0000_0000_0400u64.to_le_bytes());
    let err = open_se(b.clone(), SIZE as u64)
        .unwrap()
        .map(16 << 20)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { offset, message, .. }
            if *offset == d as u64 && message.contains("virtual bytes from 16777216")),
        "{err}"
    );
    // Not a table at all.
    b[d..d + 8].copy_from_slice(&0x2000_0000_0000_0000u64.to_le_bytes());
    let err = open_se(b, SIZE as u64).unwrap().map(16 << 20).unwrap_err();
    assert!(err.to_string().contains("0x10000000"), "{err}");
}

#[test]
fn a_chain_with_a_bad_entry_fails_to_read_there_not_to_open() {
    let dir = TempDir::new("vmdk-deltas-bad");
    three_levels(&dir);
    let mut b = std::fs::read(dir.join("mid-delta.vmdk")).unwrap();
    // The entry of grain 100 (the writer's layout: header, directory of
    // 17 entries at sector 4, tables from sector 5).
    let table0 = u32::from_le_bytes(b[2048..2052].try_into().unwrap()) as usize * 512;
    b[table0 + 400..table0 + 404].copy_from_slice(&u32::MAX.to_le_bytes());
    put(&dir, "mid-delta.vmdk", &b);
    let disk = VirtualDisk::open(&HostDir::new(dir.path()), "top.vmdk").unwrap();
    let mut buf = [0u8; 512];
    disk.read_at(2, &mut buf, 0).unwrap();
    let err = disk.read_at(1, &mut buf, 100 * 512).unwrap_err();
    assert!(err.to_string().contains("mid-delta.vmdk"), "{err}");
    assert!(err.to_string().contains("virtual byte 51200"), "{err}");
}

#[test]
fn bad_magic_is_corrupt() {
    let mut b = cowd_delta(64, 1, &[]).bytes;
    b[0] = b'X';
    let err = open_cowd(b, 64 * 512).err().unwrap();
    assert!(
        matches!(&err, Error::Corrupt { message, .. } if message.contains("not a COWD")),
        "{err}"
    );
    let img = sesparse(64, &[]);
    let mut b = img.bytes.clone();
    b[0] = 0xBF;
    let err = open_se(b, 64 * 512).err().unwrap();
    assert!(
        matches!(&err, Error::Corrupt { message, .. } if message.contains("not a SESparse")),
        "{err}"
    );
    let mut b = img.bytes;
    b[512] = 0;
    let err = open_se(b, 64 * 512).err().unwrap();
    assert!(
        matches!(&err, Error::Corrupt { offset: 512, message, .. } if message.contains("volatile")),
        "{err}"
    );
    assert!(open_cowd(b"CO".to_vec(), 512).is_err());
    assert!(open_se(vec![0xBE; 100], 512).is_err());
}

#[test]
fn a_dirty_journal_is_noted_and_the_delta_still_reads() {
    let opts = SeSparseOptions {
        compact: true,
        dirty: true,
        ..Default::default()
    };
    let x = open_se(
        sesparse_with(64, &[(1, GrainState::Data(vec![9; 4096]))], &opts).bytes,
        64 * 512,
    )
    .unwrap();
    let notes = x.notes();
    assert!(
        notes.len() == 1 && notes[0].contains("journal not replayed"),
        "{notes:?}"
    );
    let run = x.map(4096 + 1).unwrap();
    assert_eq!(run.len, 4095);
    let mut buf = [0u8; 4095];
    x.read(&run, 0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 9));
}

#[test]
fn unsupported_sesparse_headers_name_the_field_and_value() {
    let img = sesparse(64, &[]).bytes;
    for (at, value, want) in [
        (24usize, 16u64, "grain size 16"),
        (32, 128, "grain table size 128"),
        (40, 1, "flags 0x1"),
        (8, 1, "version 0x0000000000000001"),
    ] {
        let mut b = img.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let err = open_se(b, 64 * 512).err().unwrap();
        assert!(
            matches!(&err, Error::Unsupported { message, .. } if message.contains(want)),
            "{want}: {err}"
        );
    }
    // A COWD grain of 0 sectors.
    let mut b = cowd_delta(64, 1, &[]).bytes;
    b[16..20].fill(0);
    assert!(open_cowd(b, 64 * 512).is_err());
}

#[test]
fn dependents_name_the_grains_behind_file_ranges() {
    let img = cowd_delta(
        3 * 4096,
        1,
        &[(10, Some(vec![1; 512])), (4096 + 2, Some(vec![2; 512]))],
    );
    let x = open_cowd(img.bytes.clone(), 3 * 4096 * 512).unwrap();
    let g = img.grains[1].1;
    assert_eq!(
        x.dependents(g + 10, 1).unwrap(),
        vec![((4096 + 2) * 512, 512)]
    );
    // The table of the second directory entry: all it covers.
    let t = img.tables[1].1;
    assert_eq!(x.dependents(t, 4).unwrap(), vec![(4096 * 512, 4096 * 512)]);
    // Directory entries 0 and 1.
    assert_eq!(
        x.dependents(img.directory_entry(0), 8).unwrap(),
        vec![(0, 2 * 4096 * 512)]
    );
    // The header: everything.
    assert_eq!(x.dependents(100, 1).unwrap(), vec![(0, 3 * 4096 * 512)]);
    // Past everything: nothing.
    assert!(x
        .dependents(img.bytes.len() as u64, 512)
        .unwrap()
        .is_empty());

    let img = sesparse(SECTORS, &[(4096 + 1, GrainState::Data(vec![3; 4096]))]);
    let x = open_se(img.bytes.clone(), SIZE as u64).unwrap();
    let g = img.grains[0].1;
    assert_eq!(
        x.dependents(g, 4096).unwrap(),
        vec![((4096 + 1) * 4096, 4096)]
    );
    assert_eq!(
        x.dependents(img.tables[0].1 + 100, 1).unwrap(),
        vec![(16 << 20, 16 << 20)]
    );
    assert_eq!(
        x.dependents(512, 1).unwrap(),
        vec![(0, SIZE as u64)],
        "volatile header"
    );
}

/// Reads every byte of `x` through map/read (errors allowed, no panics),
/// and asks the other questions.
fn exercise(x: &dyn ExtentReader) {
    let mut offset = 0;
    let mut steps = 0;
    while offset < x.size() && steps < 2000 {
        steps += 1;
        let Ok(run) = x.map(offset) else {
            offset += 512;
            continue;
        };
        assert!(run.len > 0 && offset + run.len <= x.size(), "{run:?}");
        if let Held::Stored { .. } = run.held {
            let mut buf = vec![0u8; run.len.min(8192) as usize];
            let _ = x.read(&run, 0, &mut buf);
        }
        offset += run.len;
    }
    let _ = x.allocated();
    let _ = x.dependents(0, u64::MAX);
    let _ = x.dependents(4000, 9000);
    let _ = x.notes();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn damaged_cowd_never_panics(
        grains in proptest::collection::vec((0u64..3 * 4096, any::<bool>()), 0..6),
        damage in proptest::collection::vec((0usize..1 << 16, any::<u8>()), 0..24),
        size in 1u64..4 * 4096,
    ) {
        let mut seen = Vec::new();
        let grains: Vec<_> = grains
            .into_iter()
            .filter(|(g, _)| { let new = !seen.contains(g); seen.push(*g); new })
            .map(|(g, some)| (g, some.then(|| vec![0x5A; 512])))
            .collect();
        let mut b = cowd_delta(3 * 4096, 1, &grains).bytes;
        let len = b.len();
        for (at, v) in damage {
            // Mostly the header, directory and tables.
            b[at % len.min(4096 + 2048 * 3)] = v;
        }
        if let Ok(x) = open_cowd(b, size * 512) {
            exercise(x.as_ref());
        }
    }

    #[test]
    fn damaged_sesparse_never_panics(
        grains in proptest::collection::vec((0u64..3 * 4096, 0u8..3), 0..6),
        damage in proptest::collection::vec((0usize..1 << 16, any::<u8>()), 0..24),
        size in 1u64..3 * 4096 * 8,
    ) {
        let mut seen = Vec::new();
        let grains: Vec<_> = grains
            .into_iter()
            .filter(|(g, _)| { let new = !seen.contains(g); seen.push(*g); new })
            .map(|(g, s)| (g, match s {
                0 => GrainState::Data(vec![0xA5; 4096]),
                1 => GrainState::Zero,
                _ => GrainState::Unmapped,
            }))
            .collect();
        let opts = SeSparseOptions { compact: true, ..Default::default() };
        let mut b = sesparse_with(3 * 4096 * 8, &grains, &opts).bytes;
        let len = b.len();
        for (at, v) in damage {
            // The headers, directory and the first tables.
            let at = if at % 2 == 0 { at % 512 } else { at % len.min(1 << 16) };
            b[at] = v;
        }
        if let Ok(x) = open_se(b, size * 512) {
            exercise(x.as_ref());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..3000),
                                   size in 0u64..1 << 40, se in any::<bool>()) {
        if se {
            if b.len() >= 8 { b[..8].copy_from_slice(&0xCAFE_BABEu64.to_le_bytes()); }
            if let Ok(x) = open_se(b, size) { exercise(x.as_ref()); }
        } else {
            if b.len() >= 4 { b[..4].copy_from_slice(b"COWD"); }
            if let Ok(x) = open_cowd(b, size) { exercise(x.as_ref()); }
        }
    }

    #[test]
    fn sesparse_reads_what_the_writer_wrote(
        grains in proptest::collection::vec((0u64..40, 0u8..4), 0..12),
        first_cluster in prop_oneof![Just(0u64), 4090u64..4100],
    ) {
        let mut seen = Vec::new();
        let grains: Vec<_> = grains
            .into_iter()
            .filter(|(g, _)| { let new = !seen.contains(g); seen.push(*g); new })
            .map(|(g, s)| (g, match s {
                0 | 3 => GrainState::Data(vec![g as u8 + 1; 4096]),
                1 => GrainState::Zero,
                _ => GrainState::Unmapped,
            }))
            .collect();
        let opts = SeSparseOptions { compact: true, first_cluster, dirty: false };
        let x = open_se(sesparse_with(40 * 8, &grains, &opts).bytes, 40 * 4096).unwrap();
        for g in 0..40u64 {
            let run = x.map(g * 4096).unwrap();
            let want = grains.iter().find(|(i, _)| *i == g).map(|(_, s)| s);
            match (want, &run.held) {
                (None, Held::Unallocated) => {}
                (Some(GrainState::Zero | GrainState::Unmapped), Held::Zero) => {}
                (Some(GrainState::Data(d)), Held::Stored { .. }) => {
                    let mut buf = vec![0u8; 4096];
                    x.read(&run, 0, &mut buf).unwrap();
                    prop_assert_eq!(&buf, d);
                }
                (w, h) => prop_assert!(false, "grain {}: {:?} read as {:?}", g, w, h),
            }
        }
    }
}

#[test]
fn a_cowd_table_entry_of_1_is_sector_1_as_qemu_reads_it() {
    // VMDK4's "zeroed grain" entry (1) does not exist in COWD: QEMU's
    // VMDK3 path reads the grain at sector 1, and so does this reader.
    let img = cowd_delta(64, 1, &[(3, None)]);
    let mut b = img.bytes.clone();
    let e = img.table_entry(3).unwrap() as usize;
    b[e..e + 4].copy_from_slice(&1u32.to_le_bytes());
    let x = open_cowd(b, 64 * 512).unwrap();
    assert_eq!(x.map(3 * 512).unwrap().held, Held::Stored { offset: 512 });
}
