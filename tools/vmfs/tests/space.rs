//! Free space from the file block bitmap (.fbb.sf), checked two ways on the
//! ESXi-written images: equal to debugvmfs's `df` on the VMFS3/5 volumes it
//! reads; on VMFS6 (vmfs6-tools' `df` counts only the LFB records: "Total
//! blocks: 4" of 1 MiB on a 2 GiB volume, measured) equal to the volume's
//! blocks minus the blocks its files use. Damaged records are errors that
//! name the record.

mod common;
use blockdev::BlockDevice;
use common::oracle::oracle;
use common::Overlay;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vmfs::{FileType, Piece, Volume};

fn open(rels: &[&str]) -> Volume {
    Volume::from_devices(rels.iter().map(|r| common::dev(r)).collect())
        .unwrap_or_else(|e| panic!("{rels:?}: {e}"))
}

/// `debugvmfs IMG df`: free bytes.
fn debugvmfs_free(rel: &str) -> u64 {
    let out = String::from_utf8(oracle("debugvmfs", &common::image(rel), &["df"])).unwrap();
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches([' ', ':']).split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in debugvmfs df output:\n{out}"))
    };
    field("Free blocks") * field("Block size")
}

#[test]
fn vmfs3_and_vmfs5_free_space_equals_debugvmfs_df() {
    for rel in [
        "vmfs5.bin.gz",
        "vmfs3-toto.img.gz",
        "zero5.bin.gz",
        "vmfs5-resource-optimized.bin.gz",
        "vmfs5-no-dense-sbpc.bin.gz",
    ] {
        let s = vmfs::free_space(&open(&[rel])).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(s.free_bytes, debugvmfs_free(rel), "{rel}");
        assert!(s.free_bytes < s.total_bytes, "{rel}: {s:?}");
    }
    // Known numbers, as debugvmfs and a vmfs-fuse mount's statfs give them.
    let s = vmfs::free_space(&open(&["vmfs5.bin.gz"])).unwrap();
    assert_eq!(
        (s.block_size, s.total_blocks, s.free_bytes),
        (1 << 20, 2048, 1544 << 20)
    );
}

/// Distinct file blocks holding bytes of some file reachable from the root
/// (system files included: they hold the metadata).
fn blocks_in_use(v: &Volume) -> u64 {
    let bs = v.sb.block_size;
    let mut blocks = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![v.lookup("/").unwrap()];
    while let Some(ino) = stack.pop() {
        // A raw device mapping has no blocks on the volume.
        if !seen.insert(ino.addr) || ino.ftype == FileType::Rdm {
            continue;
        }
        let pieces = v.pieces(&ino);
        let pieces = pieces.unwrap_or_else(|e| {
            panic!(
                "FD {:#x} {:?} flags {:#x}: {e}",
                ino.addr, ino.ftype, ino.flags
            )
        });
        for (_, len, piece) in pieces {
            if let Piece::Volume { offset } = piece {
                blocks.extend(offset / bs..(offset + len).div_ceil(bs));
            }
        }
        if ino.ftype.is_dir() {
            for e in v.dir_entries(&ino).unwrap() {
                if e.name != "." && e.name != ".." {
                    stack.push(v.inode(e.addr).unwrap());
                }
            }
        }
    }
    blocks.len() as u64
}

#[test]
fn vmfs6_free_space_is_the_blocks_no_file_uses() {
    for rels in [
        &["vmfs6.bin.gz"][..],
        &["vmfs6d.bin.gz"],
        &["zero6.bin.gz"],
        &["span/vmfs6-span-0.bin.gz", "span/vmfs6-span-1.bin.gz"],
        &["vmfs6l.bin.gz"],
        &["vmfs6-resource-optimized.bin.gz"],
    ] {
        let v = open(rels);
        let s = vmfs::free_space(&v).unwrap_or_else(|e| panic!("{rels:?}: {e}"));
        let bs = v.sb.block_size;
        assert_eq!(s.total_bytes, v.lv.size / bs * bs, "{rels:?}");
        assert_eq!(
            s.free_bytes / bs,
            s.total_blocks - blocks_in_use(&v),
            "{rels:?}"
        );
    }
    let s = vmfs::free_space(&open(&["vmfs6.bin.gz"])).unwrap();
    assert_eq!((s.total_blocks, s.free_bytes), (2048, 472 << 20));
}

/// `rel` with the u16 at `.fbb.sf` offset `at` set to `value`.
fn with_fbb_u16(rel: &str, at: u64, value: u16) -> Volume {
    let v = open(&[rel]);
    let fbb = v.open_inode(v.inode(0x0040_0004).unwrap()).unwrap();
    let e = fbb
        .device_extents()
        .unwrap()
        .into_iter()
        .find(|e| e.file_offset <= at && at < e.file_offset + e.len)
        .expect(".fbb.sf holds the offset");
    let dev = e.device_offset + (at - e.file_offset);
    let mut patch = BTreeMap::new();
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        patch.insert(dev + i as u64, b);
    }
    let inner: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image(rel)).unwrap());
    Volume::from_devices(vec![Box::new(Overlay { inner, patch })]).unwrap()
}

#[test]
fn damaged_bitmap_records_are_errors_naming_the_record() {
    // VMFS5: cluster 1's record at 0x10000 + 1024 + 0x200 says it is 7.
    let e = vmfs::free_space(&with_fbb_u16("vmfs5.bin.gz", 0x10600, 7)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cluster record at offset 0x10600: number 7 (expected 1)"),
        "{e}"
    );
    // VMFS6: LFB 1's SFB record (0x22000 + mdAlignment) with more free SFBs
    // (600) than an LFB holds (512).
    let e = vmfs::free_space(&with_fbb_u16("vmfs6.bin.gz", 0x23022, 600)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cluster record at offset 0x23000: number 1 (expected 1), 512 blocks (at most 512), 600 free"),
        "{e}"
    );
    // A header whose counts add up to an absurd number of clusters.
    let e = vmfs::free_space(&with_fbb_u16("vmfs5.bin.gz", 0x16, 0xFFFF)).unwrap_err();
    assert!(e.to_string().contains(".fbb.sf header"), "{e}");
}
