//! Hosted VMDK formats as qemu-img writes them, read back byte for byte;
//! a VMware-style stream (grain directory and header at the end) written
//! here; damaged files; and headers and tables of random bytes.
//!
//! qemu-img and qemu-io (Debian: qemu-utils) must be installed: without
//! them these tests fail, they do not skip.

use blockdev::{BlockDevice, MemDevice};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use testkit::TempDir;
use vmdk::{Held, HostDir, VirtualDisk};

fn run(dir: &Path, prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {prog} ({e}): these tests need qemu-img and qemu-io (qemu-utils)")
        });
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `size` bytes: pseudo-random stretches, zero stretches, repeating text.
fn pattern(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for (i, chunk) in v.chunks_mut(96 * 1024).enumerate() {
        match i % 5 {
            0 | 3 => {
                for b in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            1 => {}
            2 => {
                for (j, b) in chunk.iter_mut().enumerate() {
                    *b = b"rescue appliance "[j % 17];
                }
            }
            _ => chunk[..512].fill(0x11),
        }
    }
    v
}

fn read_all(disk: &VirtualDisk, top: usize) -> Vec<u8> {
    let mut out = vec![0u8; disk.capacity() as usize];
    // Odd-sized reads cross grain and run boundaries.
    for (i, part) in out.chunks_mut(300 * 1024 + 512).enumerate() {
        let at = (i * (300 * 1024 + 512)) as u64;
        disk.read_at(top, part, at)
            .unwrap_or_else(|e| panic!("read at {at}: {e}"));
    }
    out
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(
        got == want,
        "{what}: differs first at byte {:?}",
        first_diff(got, want)
    );
}

/// Converts `raw` to a VMDK of `subformat` as x.vmdk, reads it back and
/// compares with the raw bytes and with qemu-img's own reading.
fn round_trip(subformat: &str, size: usize) -> (TempDir, Vec<u8>) {
    let d = TempDir::new(&format!("vmdk-{subformat}"));
    let raw = pattern(size);
    std::fs::write(d.join("r.raw"), &raw).unwrap();
    run(
        d.path(),
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={subformat}"),
            "r.raw",
            "x.vmdk",
        ],
    );
    run(
        d.path(),
        "qemu-img",
        &["convert", "-f", "vmdk", "-O", "raw", "x.vmdk", "back.raw"],
    );
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk")
        .unwrap_or_else(|e| panic!("{subformat}: open: {e}"));
    assert_eq!(disk.capacity(), size as u64, "{subformat}");
    let notes = disk.levels()[0].notes();
    assert!(notes.is_empty(), "{subformat}: {notes:?}");
    let got = read_all(&disk, disk.top());
    assert_same(subformat, &got, &raw);
    assert_same(
        &format!("{subformat} against qemu-img"),
        &got,
        &std::fs::read(d.join("back.raw")).unwrap(),
    );
    (d, raw)
}

#[test]
fn monolithic_sparse_reads_as_the_raw_disk() {
    let (d, _) = round_trip("monolithicSparse", 40 << 20);
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let x = disk.levels()[0].extents[0].1.as_ref();
    assert_eq!(x.format(), "hosted sparse");
    // 96 KiB of every 480 KiB is zeros; qemu-img leaves those grains out.
    let alloc = x.allocated().unwrap();
    assert!(alloc < 40 << 20 && alloc > 30 << 20, "{alloc}");
}

#[test]
fn monolithic_sparse_of_an_odd_size_reads_as_the_raw_disk() {
    round_trip("monolithicSparse", (5 << 20) + 7 * 512);
}

#[test]
fn two_gb_max_extent_sparse_reads_as_the_raw_disk() {
    let (d, _) = round_trip("twoGbMaxExtentSparse", (9 << 20) + 3 * 512);
    // An extent file named instead of the descriptor is explained.
    let e = VirtualDisk::open(&HostDir::new(d.path()), "x-s001.vmdk")
        .err()
        .expect("an extent without a descriptor inside is not a disk");
    assert!(e.to_string().contains("name the small .vmdk"), "{e}");
}

#[test]
fn stream_optimized_reads_as_the_raw_disk() {
    let (d, _) = round_trip("streamOptimized", (12 << 20) + 5 * 512);
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let x = disk.levels()[0].extents[0].1.as_ref();
    assert_eq!(x.format(), "streamOptimized");
    match disk.locate(0, 70_000).unwrap().held {
        Held::Compressed { skip, .. } => assert_eq!(skip, 70_000 - 65_536),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flat_formats_read_as_the_raw_disk() {
    round_trip("monolithicFlat", (3 << 20) + 512);
    round_trip("twoGbMaxExtentFlat", 3 << 20);
}

#[test]
fn a_snapshot_shows_its_writes_and_the_base_level_does_not() {
    let d = TempDir::new("vmdk-hosted-chain");
    let raw = pattern(6 << 20);
    std::fs::write(d.join("r.raw"), &raw).unwrap();
    run(
        d.path(),
        "qemu-img",
        &["convert", "-f", "raw", "-O", "vmdk", "r.raw", "base.vmdk"],
    );
    run(
        d.path(),
        "qemu-img",
        &[
            "create",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            "-o",
            "zeroed_grain=on",
            "child.vmdk",
        ],
    );
    run(
        d.path(),
        "qemu-io",
        &["-c", "write -P 0xab 1M 64k", "child.vmdk"],
    );
    run(
        d.path(),
        "qemu-io",
        &["-c", "write -z 3M 128k", "child.vmdk"],
    );
    run(
        d.path(),
        "qemu-img",
        &[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            "child.vmdk",
            "child.raw",
        ],
    );
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "child.vmdk").unwrap();
    assert_eq!(disk.levels().len(), 2);
    assert!(disk.warnings.is_empty(), "{:?}", disk.warnings);
    let mut want = raw.clone();
    want[1 << 20..(1 << 20) + 65536].fill(0xab);
    want[3 << 20..(3 << 20) + 131072].fill(0);
    let top = read_all(&disk, disk.top());
    assert_same("child", &top, &want);
    assert_same(
        "child against qemu-img",
        &top,
        &std::fs::read(d.join("child.raw")).unwrap(),
    );
    assert_same("base level", &read_all(&disk, 0), &raw);
    let at = disk.locate(1, (1 << 20) + 10).unwrap();
    assert_eq!(at.level, Some(1));
    assert!(matches!(at.held, Held::Stored { .. }), "{at:?}");
    assert_eq!(disk.locate(1, 5 << 20).unwrap().level, Some(0));
    // A zeroed grain (GT entry 1) hides the base's bytes.
    let z = disk.locate(1, 3 << 20).unwrap();
    assert_eq!((z.level, z.held), (Some(1), Held::Zero));
    assert!(raw[3 << 20..(3 << 20) + 131072].iter().any(|&b| b != 0));
}

/// Writes `raw` as a stream the way VMware does: grains, then each grain
/// table behind a marker, the directory, and a footer with the header.
fn vmware_stream(raw: &[u8], name: &str) -> Vec<u8> {
    let grain = 65536usize;
    let sectors = raw.len().div_ceil(512) as u64;
    let mut header = vec![0u8; 512];
    header[..4].copy_from_slice(b"KDMV");
    le::put_u32(&mut header, 4, 3);
    le::put_u32(&mut header, 8, 1 | 1 << 16 | 1 << 17);
    le::put_u64(&mut header, 12, sectors);
    le::put_u64(&mut header, 20, 128);
    le::put_u64(&mut header, 28, 1);
    le::put_u64(&mut header, 36, 2);
    le::put_u32(&mut header, 44, 512);
    le::put_u64(&mut header, 56, u64::MAX);
    le::put_u64(&mut header, 64, 128);
    header[73..77].copy_from_slice(b"\n \r\n");
    header[77] = 1;
    let mut f = header.clone();
    let desc = format!(
        "# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\n\
         createType=\"streamOptimized\"\nRW {sectors} SPARSE \"{name}\"\n"
    );
    f.extend_from_slice(desc.as_bytes());
    f.resize(128 * 512, 0);
    let pad = |f: &mut Vec<u8>| f.resize(f.len().div_ceil(512) * 512, 0);
    let grains = raw.len().div_ceil(grain);
    let mut gd = Vec::new();
    for t in 0..grains.div_ceil(512) {
        let mut gt = vec![0u32; 512];
        for (j, e) in gt.iter_mut().enumerate() {
            let g = t * 512 + j;
            if g >= grains {
                break;
            }
            let data = &raw[g * grain..((g + 1) * grain).min(raw.len())];
            if data.iter().all(|&b| b == 0) {
                continue;
            }
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(data).unwrap();
            let z = z.finish().unwrap();
            *e = (f.len() / 512) as u32;
            f.extend_from_slice(&((g * 128) as u64).to_le_bytes());
            f.extend_from_slice(&(z.len() as u32).to_le_bytes());
            f.extend_from_slice(&z);
            pad(&mut f);
        }
        if gt.iter().all(|&e| e == 0) {
            gd.push(0u32);
            continue;
        }
        let mut m = vec![0u8; 512];
        le::put_u64(&mut m, 0, 4);
        le::put_u32(&mut m, 12, 1);
        f.extend_from_slice(&m);
        gd.push((f.len() / 512) as u32);
        gt.iter()
            .for_each(|e| f.extend_from_slice(&e.to_le_bytes()));
    }
    let mut m = vec![0u8; 512];
    le::put_u64(&mut m, 0, (gd.len() * 4).div_ceil(512) as u64);
    le::put_u32(&mut m, 12, 2);
    f.extend_from_slice(&m);
    let gd_sector = (f.len() / 512) as u64;
    gd.iter()
        .for_each(|e| f.extend_from_slice(&e.to_le_bytes()));
    pad(&mut f);
    let mut m = vec![0u8; 512];
    le::put_u64(&mut m, 0, 1);
    le::put_u32(&mut m, 12, 3);
    f.extend_from_slice(&m);
    le::put_u64(&mut header, 56, gd_sector);
    f.extend_from_slice(&header);
    f.extend_from_slice(&[0u8; 512]);
    f
}

#[test]
fn a_vmware_stream_with_its_directory_at_the_end_reads_and_without_the_footer_too() {
    let d = TempDir::new("vmdk-vmware-stream");
    let raw = pattern((7 << 20) + 512);
    let file = vmware_stream(&raw, "s.vmdk");
    std::fs::write(d.join("s.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "s.vmdk").unwrap();
    assert!(disk.levels()[0].notes().is_empty());
    assert_same("VMware stream", &read_all(&disk, 0), &raw);
    // qemu-img reads it the same way (the writer above is right).
    run(
        d.path(),
        "qemu-img",
        &["convert", "-f", "vmdk", "-O", "raw", "s.vmdk", "s.raw"],
    );
    assert_same(
        "qemu-img on the VMware stream",
        &std::fs::read(d.join("s.raw")).unwrap(),
        &raw,
    );

    // A download that stopped before the footer: the grain markers remain.
    std::fs::write(d.join("s.vmdk"), &file[..file.len() - 1536]).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "s.vmdk").unwrap();
    let notes = disk.levels()[0].notes();
    assert!(
        notes.iter().any(|n| n.contains("rebuilt from")),
        "{notes:?}"
    );
    assert_same("stream without footer", &read_all(&disk, 0), &raw);

    // One stopped halfway: what arrived reads, the rest is not there.
    let half = file.len() / 2 / 512 * 512 + 100;
    std::fs::write(d.join("s.vmdk"), &file[..half]).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "s.vmdk").unwrap();
    let got = read_all(&disk, 0);
    let good = first_diff(&got, &raw).expect("half a stream is not all of it");
    assert!(good > 2 << 20, "only {good} bytes read back");
    assert!(got[good..].iter().all(|&b| b == 0));
    let x = disk.levels()[0].extents[0].1.as_ref();
    assert!(x.allocated().unwrap() < raw.len() as u64);
}

#[test]
fn a_grain_that_does_not_inflate_is_an_error_naming_its_virtual_offset() {
    let (d, raw) = round_trip("streamOptimized", 4 << 20);
    let bad_at = 4 * 65536u64;
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let Held::Compressed { offset, .. } = disk.locate(0, bad_at).unwrap().held else {
        panic!("grain 4 is not compressed");
    };
    drop(disk);
    let mut file = std::fs::read(d.join("x.vmdk")).unwrap();
    // Right after the zlib header: a block of the reserved type.
    file[offset as usize + 12 + 2] = 0xff;
    std::fs::write(d.join("x.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let mut buf = vec![0u8; 4096];
    let e = disk.read_at(0, &mut buf, bad_at + 8192).unwrap_err();
    assert!(!e.is_io(), "{e}");
    assert!(
        e.to_string().contains(&format!("virtual byte {bad_at}")),
        "{e}"
    );
    for at in [0u64, bad_at - 4096, bad_at + 65536, 3 << 20] {
        disk.read_at(0, &mut buf, at).unwrap();
        assert_eq!(buf[..], raw[at as usize..at as usize + 4096], "at {at}");
    }
}

fn u32_at(f: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(f[at..at + 4].try_into().unwrap())
}

#[test]
fn a_grain_table_entry_past_the_end_falls_back_or_is_an_error_naming_it() {
    let (d, raw) = round_trip("monolithicSparse", 3 << 20);
    let mut file = std::fs::read(d.join("x.vmdk")).unwrap();
    let rgd = u64::from_le_bytes(file[48..56].try_into().unwrap()) as usize * 512;
    let gd = u64::from_le_bytes(file[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32_at(&file, gd) as usize * 512;
    let rgt = u32_at(&file, rgd) as usize * 512;
    assert_ne!(gt, rgt);
    assert_eq!(file[gt..gt + 2048], file[rgt..rgt + 2048]);
    let grain = 5usize;
    assert!(u32_at(&file, gt + grain * 4) > 1, "grain 5 is allocated");

    // The primary table is wrong: the redundant one is read, with a note.
    le::put_u32(&mut file, gt + grain * 4, 0x7fff_0000);
    std::fs::write(d.join("x.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    assert_same("redundant table", &read_all(&disk, 0), &raw);
    let notes = disk.levels()[0].notes();
    assert!(
        notes.iter().any(|n| n.contains("redundant grain table")),
        "{notes:?}"
    );
    // The table in use is the redundant one: its sectors matter, the
    // primary's do not.
    let x = disk.levels()[0].extents[0].1.as_ref();
    assert_eq!(x.dependents(rgt as u64, 512).unwrap(), vec![(0, 3 << 20)]);
    assert!(x.dependents(gt as u64, 512).unwrap().is_empty());

    // Both are wrong: that grain is an error naming it; the rest reads.
    le::put_u32(&mut file, rgt + grain * 4, 0x7fff_0000);
    std::fs::write(d.join("x.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let mut buf = vec![0u8; 65536];
    let at = (grain * 65536) as u64;
    let e = disk.read_at(0, &mut buf, at + 512).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("virtual byte {at}")) && msg.contains("past the end"),
        "{msg}"
    );
    for at in [0usize, (grain - 1) * 65536, (grain + 1) * 65536] {
        disk.read_at(0, &mut buf, at as u64).unwrap();
        assert_eq!(buf[..], raw[at..at + 65536], "at {at}");
    }
}

#[test]
fn a_broken_grain_directory_falls_back_to_the_redundant_one() {
    let (d, raw) = round_trip("monolithicSparse", 3 << 20);
    let mut file = std::fs::read(d.join("x.vmdk")).unwrap();
    let gd = u64::from_le_bytes(file[56..64].try_into().unwrap()) as usize * 512;
    le::put_u32(&mut file, gd, 0xffff_fff0);
    std::fs::write(d.join("x.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    assert_same("redundant directory", &read_all(&disk, 0), &raw);
    let notes = disk.levels()[0].notes();
    assert!(
        notes.iter().any(|n| n.contains("redundant one is read")),
        "{notes:?}"
    );
}

#[test]
fn each_grain_table_comes_from_whichever_directory_has_it_right() {
    let (d, raw) = round_trip("monolithicSparse", 40 << 20);
    let mut file = std::fs::read(d.join("x.vmdk")).unwrap();
    let rgd = u64::from_le_bytes(file[48..56].try_into().unwrap()) as usize * 512;
    let gd = u64::from_le_bytes(file[56..64].try_into().unwrap()) as usize * 512;
    le::put_u32(&mut file, gd, 0xffff_fff0);
    le::put_u32(&mut file, rgd + 4, 0xffff_fff0);
    std::fs::write(d.join("x.vmdk"), &file).unwrap();
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    assert_same("tables from both directories", &read_all(&disk, 0), &raw);
    let notes = disk.levels()[0].notes();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("grain table 0 is unusable") && n.contains("redundant")),
        "{notes:?}"
    );
}

#[test]
fn dependents_name_the_grains_and_tables_in_a_file_range() {
    let (d, _) = round_trip("monolithicSparse", 40 << 20);
    let disk = VirtualDisk::open(&HostDir::new(d.path()), "x.vmdk").unwrap();
    let x = disk.levels()[0].extents[0].1.as_ref();
    let Held::Stored { offset } = disk.locate(0, (1 << 20) + 100).unwrap().held else {
        panic!("1 MiB is stored");
    };
    assert_eq!(
        x.dependents(offset, 1).unwrap(),
        vec![(1 << 20, 65536)],
        "a byte of grain data: that grain"
    );
    let file = std::fs::read(d.join("x.vmdk")).unwrap();
    let gd = u64::from_le_bytes(file[56..64].try_into().unwrap()) as u64 * 512;
    let gt1 = u64::from(u32_at(&file, gd as usize + 4)) * 512;
    assert_eq!(
        x.dependents(gt1 + 100, 8).unwrap(),
        vec![(32 << 20, 8 << 20)],
        "a table: every grain it covers"
    );
    assert_eq!(
        x.dependents(gd, 4).unwrap(),
        vec![(0, 32 << 20)],
        "a directory entry: its table's span"
    );
    assert_eq!(x.dependents(0, 1).unwrap(), vec![(0, 40 << 20)]);
    assert!(x.dependents(u64::MAX - 10, 5).unwrap().is_empty());
}

/// Opens `bytes` as a hosted sparse extent and uses every part of it.
fn exercise(bytes: Vec<u8>, size: u64) {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(bytes, 512));
    let head = {
        let mut h = vec![0u8; dev.size().min(1 << 20) as usize];
        let _ = dev.read_at(&mut h, 0);
        h
    };
    let _ = vmdk::sparse::embedded_descriptor(&dev, "p.vmdk", &head);
    let Ok(x) = vmdk::sparse::open("p.vmdk".into(), dev, size) else {
        return;
    };
    let _ = x.allocated();
    let _ = x.notes();
    let _ = x.dependents(0, 1 << 20);
    let _ = x.dependents(4096, u64::MAX);
    let mut at = 0u64;
    let mut steps = 0;
    while at < x.size() && steps < 64 {
        let Ok(run) = x.map(at) else {
            at += 512;
            steps += 1;
            continue;
        };
        assert!(run.len > 0 && at + run.len <= x.size(), "{run:?} at {at}");
        if matches!(run.held, Held::Stored { .. } | Held::Compressed { .. }) {
            let mut buf = vec![0u8; run.len.min(4096) as usize];
            let _ = x.read(&run, 0, &mut buf);
        }
        at += run.len;
        steps += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_headers_and_tables_never_panic(
        version in 0u32..5,
        flags in prop::sample::select(vec![0u32, 1, 3, 7, 0x30001, 0x30003, 0x10000, 0x20000, u32::MAX]),
        capacity in prop_oneof![0u64..20_000, any::<u64>()],
        grain in prop_oneof![0u64..300, any::<u64>()],
        desc in (0u64..12, 0u64..4),
        gtes in prop_oneof![0u32..1100, any::<u32>()],
        rgd in prop_oneof![0u64..40, any::<u64>()],
        gd in prop_oneof![0u64..40, Just(u64::MAX), any::<u64>()],
        overhead in 0u64..40,
        body in prop::collection::vec(any::<u8>(), 0..20_000),
        small_entries in any::<bool>(),
        size in 0u64..(16 << 20),
    ) {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"KDMV");
        le::put_u32(&mut h, 4, version);
        le::put_u32(&mut h, 8, flags);
        le::put_u64(&mut h, 12, capacity);
        le::put_u64(&mut h, 20, grain);
        le::put_u64(&mut h, 28, desc.0);
        le::put_u64(&mut h, 36, desc.1);
        le::put_u32(&mut h, 44, gtes);
        le::put_u64(&mut h, 48, rgd);
        le::put_u64(&mut h, 56, gd);
        le::put_u64(&mut h, 64, overhead);
        h[77] = 1;
        let mut body = body;
        if small_entries {
            // Table entries that point inside the file, like real ones.
            for c in body.chunks_mut(4) {
                if c.len() == 4 {
                    c[1] = 0;
                    c[2] = 0;
                    c[3] = 0;
                    c[0] %= 48;
                }
            }
        }
        h.extend_from_slice(&body);
        exercise(h, size);
    }

    #[test]
    fn arbitrary_header_sectors_never_panic(
        mut h in prop::collection::vec(any::<u8>(), 512..4096),
        size in 0u64..(1 << 30),
    ) {
        h[..4].copy_from_slice(b"KDMV");
        exercise(h, size);
    }
}
