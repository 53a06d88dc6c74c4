//! Volumes the real fixtures lack, made by the test-only writer
//! (tests/common/writer.rs) from ESXi-written images: VMFS3 with file data,
//! fragmented files on VMFS5 and VMFS6, and volumes inside GPT disks of
//! 4096- and 512-byte sectors. Our reader must return exactly what was
//! written; debugvmfs (VMFS3/5) and debugvmfs6 (VMFS6) must agree where
//! they read correctly.

mod common;
use common::writer::{gpt_disk, scatter, scratch_copy, stamp, Target, Writer};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use vmfs::{Piece, Volume};

fn tool(name: &str) -> Command {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not installed: apt-get install vmfs-tools vmfs6-tools (qemu-tests/setup.sh does)")
        });
    Command::new(found)
}

/// `debugvmfs IMG cat PATH` (or debugvmfs6), banner stripped.
fn oracle_cat(debug: &str, img: &Path, path: &str) -> Vec<u8> {
    let out = tool(debug)
        .arg(img)
        .args(["cat", path])
        .output()
        .unwrap_or_else(|e| panic!("{debug}: {e}"));
    assert!(
        out.status.success(),
        "{debug} cat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let banner = b"VMFS version: 6\n";
    match out.stdout.strip_prefix(&banner[..]) {
        Some(rest) => rest.to_vec(),
        None => out.stdout,
    }
}

fn open_image(img: &Path) -> Volume {
    Volume::from_devices(vec![Box::new(blockdev::Device::open(img).unwrap())]).unwrap()
}

fn ours(v: &Volume, path: &str) -> Vec<u8> {
    let f = v.open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut b = vec![0u8; f.size() as usize];
    assert_eq!(f.read_at(&mut b, 0).unwrap(), b.len(), "{path}");
    b
}

/// First byte where two contents differ, for short failure messages.
fn same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: differs at byte {i:#x}: got {:?}, want {:?}",
            &got[i..(i + 16).min(got.len())],
            &want[i..(i + 16).min(want.len())]
        );
    }
}

/// Known content of `big` and `bigger` (fixture README).
fn big_content() -> Vec<u8> {
    let mut b = b"Kusjes van SRT<3".repeat(65536);
    b.push(b'\n');
    b
}
fn bigger_content() -> Vec<u8> {
    (0..128u32)
        .flat_map(|i| std::iter::repeat((i % 256) as u8).take(1 << 20))
        .collect()
}

/// Volume offsets of a file's blocks, in file order, from the writer.
fn block_offsets(w: &Writer, path: &str) -> Vec<u64> {
    let fd = w.lookup(path);
    w.data_slots(&fd)
        .iter()
        .map(|s| match w.decode(s.ptr) {
            Target::Blocks { vol, .. } => vol,
            t => panic!("{path}: block {} is {t:?}", s.index),
        })
        .collect()
}

/// True if no block directly follows its predecessor on the volume and
/// some block lies before its predecessor.
fn fragmented(offsets: &[u64], block: u64) -> bool {
    offsets.windows(2).all(|p| p[1] != p[0] + block) && offsets.windows(2).any(|p| p[1] < p[0])
}

#[test]
fn vmfs3_thick_files_hold_written_data() {
    let img = scratch_copy("vmfs3-toto.img.gz", "vmfs3-data");
    let w = Writer::open(&img.0);
    assert_eq!((w.version, w.block), (3, 1 << 20));
    let kinds = ["thick", "zeroedthick", "eagerzeroedthick"];
    // ESXi's lazily zeroed thick file: most blocks still flagged
    // to-be-zeroed, so the file reads as zeros before the write.
    let zt = w.lookup("zeroedthick-flat.vmdk");
    let tbz = w
        .data_slots(&zt)
        .iter()
        .filter(|s| matches!(w.decode(s.ptr), Target::Blocks { tbz: true, .. }))
        .count();
    assert!(tbz > 100, "zeroedthick: {tbz} TBZ blocks");
    for kind in kinds {
        let path = format!("{kind}-flat.vmdk");
        let fd = w.lookup(&path);
        assert_eq!(
            (fd.size, fd.unit, w.data_slots(&fd).len()),
            (200 << 20, 1 << 20, 200)
        );
        w.write_file(&fd, 0, &stamp(kind, 0, 200 << 20));
    }
    // A fragmented VMFS3 file too: thick's 200 blocks scattered.
    let thick = w.lookup("thick-flat.vmdk");
    w.permute_blocks(&thick, &scatter(200, 77));
    assert!(fragmented(&block_offsets(&w, "thick-flat.vmdk"), w.block));
    // No block flagged to-be-zeroed is left behind a write.
    let zt = w.lookup("zeroedthick-flat.vmdk");
    assert!(w
        .data_slots(&zt)
        .iter()
        .all(|s| matches!(w.decode(s.ptr), Target::Blocks { tbz: false, .. })));
    // A descriptor rewritten in its 64 KiB sub-block, longer than before.
    let desc = w.lookup("thick.vmdk");
    let old = w.read_file(&desc, 0, desc.size);
    let mut text = old.clone();
    for i in 0..40 {
        text.extend(format!("ddb.written{i} = \"by the test writer, line {i}\"\n").bytes());
    }
    assert!(text.len() > 2000 && text.len() < 64 << 10);
    w.set_size(&desc, text.len() as u64);
    w.write_file(&w.lookup("thick.vmdk"), 0, &text);
    drop(w);

    let v = open_image(&img.0);
    for kind in kinds {
        let path = format!("/{kind}-flat.vmdk");
        let want = stamp(kind, 0, 200 << 20);
        same(&format!("ours {path}"), &ours(&v, &path), &want);
        same(
            &format!("debugvmfs {path}"),
            &oracle_cat("debugvmfs", &img.0, &path),
            &want,
        );
    }
    let f = v.open("thick-flat.vmdk").unwrap();
    assert_eq!(f.pieces().unwrap().len(), 200, "every block its own run");
    same("ours thick.vmdk", &ours(&v, "/thick.vmdk"), &text);
    same(
        "debugvmfs thick.vmdk",
        &oracle_cat("debugvmfs", &img.0, "/thick.vmdk"),
        &text,
    );
    // The untouched files still read as before.
    assert!(ours(&v, "/thin.vmdk").starts_with(b"# Disk DescriptorFile"));
    assert!(ours(&v, "/thin-flat.vmdk").iter().all(|&b| b == 0));
}

/// Scatters `big` (2 blocks, swapped) and `bigger` (128 blocks) on a
/// VMFS5 or VMFS6 copy, checks both readers, returns the image.
fn fragment_big_files(rel: &str, debug: &str) {
    let img = scratch_copy(rel, &format!("{debug}-frag"));
    let w = Writer::open(&img.0);
    let before = block_offsets(&w, "bigger");
    assert_eq!(before.len(), 128);
    assert!(
        before.windows(2).all(|p| p[1] == p[0] + w.block),
        "{rel}: bigger is contiguous as ESXi wrote it"
    );
    w.permute_blocks(&w.lookup("big"), &[1, 0]);
    w.permute_blocks(&w.lookup("bigger"), &scatter(128, 45));
    let after = block_offsets(&w, "bigger");
    assert!(fragmented(&after, w.block), "{after:x?}");
    let mut sorted = after.clone();
    sorted.sort();
    assert_eq!(sorted, before, "same blocks, other order");
    let big = block_offsets(&w, "big");
    assert!(big[1] < big[0]);
    drop(w);

    let v = open_image(&img.0);
    let want_big = big_content();
    let want_bigger = bigger_content();
    same("ours big", &ours(&v, "/big"), &want_big);
    same("ours bigger", &ours(&v, "/bigger"), &want_bigger);
    let pieces = v.open("bigger").unwrap().pieces().unwrap();
    assert_eq!(pieces.len(), 128, "no two blocks adjacent");
    for (i, (off, len, p)) in pieces.iter().enumerate() {
        assert_eq!((*off, *len), ((i as u64) << 20, 1 << 20));
        assert_eq!(*p, Piece::Volume { offset: after[i] });
    }
    same(
        &format!("{debug} big"),
        &oracle_cat(debug, &img.0, "/big"),
        &want_big,
    );
    same(
        &format!("{debug} bigger"),
        &oracle_cat(debug, &img.0, "/bigger"),
        &want_bigger,
    );
}

#[test]
fn vmfs5_fragmented_files_read_back() {
    fragment_big_files("vmfs5.bin.gz", "debugvmfs");
}

#[test]
fn vmfs6_fragmented_files_read_back() {
    fragment_big_files("vmfs6.bin.gz", "debugvmfs6");
}
