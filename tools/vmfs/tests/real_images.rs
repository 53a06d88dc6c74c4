//! Every entry of the fixture README's known content, read through the
//! library from the real ESXi-written images.

mod common;
use common::oracle::{our_names, ours};
use vmfs::{FileType, Piece, Volume};

const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

fn open(rels: &[&str]) -> Volume {
    Volume::from_devices(rels.iter().map(|r| common::dev(r)).collect())
        .unwrap_or_else(|e| panic!("open {rels:?}: {e}"))
}

fn system_files(v: &Volume, six: bool) {
    let n = our_names(v, "/");
    let mut want = vec![
        ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf",
    ];
    if six {
        want.extend([".jbc.sf", ".unmap.sf"]);
    }
    for w in want {
        assert!(n.iter().any(|x| x == w), "{w} missing from {n:?}");
        let st = v.stat(w).unwrap();
        let expect = if w == ".sdd.sf" {
            FileType::Directory
        } else {
            FileType::System
        };
        // .sdd.sf is a directory typed as system file on some versions.
        assert!(
            st.file_type == expect || st.file_type == FileType::System,
            "{w}: {:?}",
            st.file_type
        );
    }
}

/// The README's table for the `vmfs5` and `vmfs6` volumes.
fn known_content(v: &Volume, label: &str, six: bool) {
    assert_eq!(v.sb.label, label);
    assert_eq!(v.sb.vmfs_version(), if six { 6 } else { 5 });
    system_files(v, six);
    let root = our_names(v, "/");
    for n in [
        "small",
        "big",
        "bigger",
        "symlink",
        "directory",
        "normal-flat.vmdk",
        "normal.vmdk",
        "large-flat.vmdk",
        "large.vmdk",
        "rdm-rdm.vmdk",
        "rdm.vmdk",
        "collision",
    ] {
        assert!(root.iter().any(|x| x == n), "{n} missing from {root:?}");
    }

    // small: resident.
    assert_eq!(v.stat("small").unwrap().zla, 4305);
    assert_eq!(ours(v, "/small"), b"tiny\n");

    // big: file blocks.
    let big = ours(v, "big");
    let mut want = b"Kusjes van SRT<3".repeat(65536);
    want.push(b'\n');
    assert_eq!(big.len(), 1_048_577);
    assert!(big == want, "big differs");

    // bigger: 128 runs of 1 MiB, run i = byte i.
    let f = v.open("bigger").unwrap();
    assert_eq!(f.size(), 128 << 20);
    let mut b = vec![0u8; 1 << 20];
    for i in 0..128u64 {
        assert_eq!(f.read_at(&mut b, i << 20).unwrap(), 1 << 20);
        assert!(b.iter().all(|&x| x == i as u8), "bigger run {i}");
    }
    // An unaligned read across a block boundary.
    let mut b2 = [0u8; 10];
    f.read_at(&mut b2, (5 << 20) - 5).unwrap();
    assert_eq!(b2, [4, 4, 4, 4, 4, 5, 5, 5, 5, 5]);

    // symlink.
    let st = v.stat("symlink").unwrap();
    assert_eq!(st.file_type, FileType::Symlink);
    assert_eq!(
        st.link.as_deref(),
        Some(format!("/vmfs/volumes/{label}/small").as_str())
    );
    assert_eq!(
        v.read_link("/symlink").unwrap(),
        format!("/vmfs/volumes/{label}/small")
    );

    // directory: file1..file100.
    let d = our_names(v, "directory");
    let mut want: Vec<String> = (1..=100).map(|i| format!("file{i}")).collect();
    want.sort();
    assert_eq!(d, want);
    for i in 1..=100 {
        assert_eq!(
            ours(v, &format!("directory/file{i}")),
            format!("File {i}\n").as_bytes()
        );
    }
    assert!(v.stat("directory").unwrap().file_type.is_dir());
    assert_eq!(ours(v, "directory/../directory/./file7"), b"File 7\n");

    // normal-flat.vmdk: thin, single indirect.
    let f = v.open("normal-flat.vmdk").unwrap();
    assert_eq!(f.size(), 69 * GIB);
    assert_eq!(v.stat("normal-flat.vmdk").unwrap().zla, 3);
    let mut b = vec![0u8; 1536];
    f.read_at(&mut b, 42 * GIB - 512).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0));
    assert!(
        b[512..1024].iter().all(|&x| x == 0x42),
        "normal-flat @42 GiB"
    );
    assert!(b[1024..].iter().all(|&x| x == 0));
    let stored: u64 = f
        .pieces()
        .unwrap()
        .iter()
        .filter(|p| !matches!(p.2, Piece::Zero))
        .map(|p| p.1)
        .sum();
    assert!(
        stored > 0 && stored <= 8 << 20,
        "normal-flat stored bytes {stored}"
    );

    // large-flat.vmdk: thin, double indirect.
    let f = v.open("large-flat.vmdk").unwrap();
    assert_eq!(f.size(), 42 * TIB);
    assert_eq!(v.stat("large-flat.vmdk").unwrap().zla, 4304);
    f.read_at(&mut b, 117 * GIB - 512).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0));
    assert!(
        b[512..1024].iter().all(|&x| x == 0x42),
        "large-flat @117 GiB"
    );
    assert!(b[1024..].iter().all(|&x| x == 0));
    let t = std::time::Instant::now();
    let pieces = f.pieces().unwrap();
    assert!(
        t.elapsed().as_secs() < 20,
        "mapping a 42 TiB thin file took {:?}",
        t.elapsed()
    );
    let data: Vec<_> = pieces
        .iter()
        .filter(|p| !matches!(p.2, Piece::Zero))
        .collect();
    assert!(
        data.iter()
            .any(|p| p.0 <= 117 * GIB && 117 * GIB + 512 <= p.0 + p.1),
        "{data:?}"
    );
    let ext = f.device_extents().unwrap();
    assert!(!ext.is_empty());

    // RDM: no data, shows the disk it maps.
    let st = v.stat("rdm-rdm.vmdk").unwrap();
    assert_eq!(st.file_type, FileType::Rdm);
    assert_eq!(st.size, 6969 * GIB);
    let rdm = st.rdm.expect("rdm target");
    assert_eq!((rdm.id_type, rdm.id_len), (1, 26));
    assert_eq!(rdm.id, "QM00015             QEMU H");
    let err = v
        .open("rdm-rdm.vmdk")
        .err()
        .expect("RDM open must fail")
        .to_string();
    assert!(err.contains("QM00015"), "{err}");

    // Descriptors.
    for (n, extent) in [
        ("normal.vmdk", "normal-flat.vmdk"),
        ("large.vmdk", "large-flat.vmdk"),
        ("rdm.vmdk", "rdm-rdm.vmdk"),
    ] {
        let t = String::from_utf8(ours(v, n)).unwrap();
        assert!(t.len() < 500);
        assert!(t.starts_with("# Disk DescriptorFile"), "{n}: {t}");
        assert!(t.contains(extent), "{n}: {t}");
    }

    // collision: names that collide in VMFS6's hash; all listed and found.
    let c = our_names(v, "collision");
    assert_eq!(c.len(), 19, "{c:?}");
    for n in [
        "Kusjes van SRT 😘",
        "En groetjes aan je tante🤤🫰🍆💦😍",
        "As",
        "avSb",
        "0ew",
    ] {
        assert!(c.iter().any(|x| x == n), "{n} not in {c:?}");
    }
    for n in &c {
        v.stat(&format!("collision/{n}"))
            .unwrap_or_else(|e| panic!("collision/{n}: {e}"));
    }
}

#[test]
fn vmfs5_known_content() {
    let v = open(&["vmfs5.bin.gz"]);
    assert!(v.lv.lvm.len() == 1 && v.lv.lvm[0].major == 5);
    known_content(&v, "vmfs5", false);
    assert_eq!(v.sb.block_size, 1 << 20);
    assert_eq!(v.sb.sub_block_size, 8192);
}

#[test]
fn vmfs6_known_content() {
    let v = open(&["vmfs6.bin.gz"]);
    assert!(v.lv.lvm.len() == 1 && v.lv.lvm[0].major == 6);
    known_content(&v, "vmfs6", true);
    assert_eq!(v.sb.md_alignment, 4096);
}

#[test]
fn bare_volumes_without_lvm() {
    for (img, label, six) in [
        ("vmfs5d.bin.gz", "vmfs5d", false),
        ("vmfs6d.bin.gz", "vmfs6d", true),
    ] {
        let v = open(&[img]);
        assert!(v.lv.lvm.is_empty(), "{img} has no LVM layer");
        assert_eq!(v.sb.label, label);
        assert_eq!(v.sb.vmfs_version(), if six { 6 } else { 5 });
        system_files(&v, six);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let sig = vmfs::detect(v.lv.devices[0].as_ref()).expect("detect bare");
        assert!(sig.lvm.is_none());
        assert_eq!(sig.label, label);
    }
}

#[test]
fn zero_files_are_thin_and_read_zeros() {
    for (img, six) in [("zero5.bin.gz", false), ("zero6.bin.gz", true)] {
        let v = open(&[img]);
        system_files(&v, six);
        let f = v.open("empty-flat.vmdk").unwrap();
        assert_eq!(f.size(), 100 * GIB);
        assert_eq!(v.stat("empty-flat.vmdk").unwrap().zla, 3);
        let mut b = vec![0xAAu8; 1 << 20];
        for off in [0, 42 * GIB, 100 * GIB - (1 << 20)] {
            assert_eq!(f.read_at(&mut b, off).unwrap(), 1 << 20);
            assert!(b.iter().all(|&x| x == 0), "{img} @{off}");
        }
        let stored: u64 = f
            .pieces()
            .unwrap()
            .iter()
            .filter(|p| p.2 != Piece::Zero)
            .map(|p| p.1)
            .sum();
        assert_eq!(
            stored, 0,
            "{img}: all of empty-flat.vmdk is unallocated or TBZ"
        );
        let t = String::from_utf8(ours(&v, "empty.vmdk")).unwrap();
        assert!(t.contains("empty-flat.vmdk"), "{t}");
    }
}

#[test]
fn spanned_volumes_assemble_in_any_order() {
    for (a, b, label) in [
        (
            "span/vmfs5-span-0.bin.gz",
            "span/vmfs5-span-1.bin.gz",
            "vmfs5-span",
        ),
        (
            "span/vmfs6-span-0.bin.gz",
            "span/vmfs6-span-1.bin.gz",
            "vmfs6-span",
        ),
    ] {
        for order in [[a, b], [b, a]] {
            let v = open(&order);
            assert_eq!(v.sb.label, label);
            assert_eq!(v.lv.size, 4 * GIB);
            assert!(v.lv.missing.is_empty(), "{:?}", v.lv.missing);
            assert_eq!(v.lv.segments.iter().map(|s| s.len).sum::<u64>(), 4 * GIB);
            system_files(&v, label.starts_with("vmfs6"));
            // The span images hold only system files: read the start and
            // end of each.
            let mut on_second = 0;
            for e in v.read_dir("/").unwrap() {
                let st = v.stat(&e.name).unwrap();
                if st.file_type.is_dir() {
                    continue;
                }
                let f = v.open(&e.name).unwrap();
                let mut b = vec![0u8; (1 << 20).min(f.size() as usize)];
                f.read_at(&mut b, 0).unwrap();
                let tail = f.size().saturating_sub(b.len() as u64);
                f.read_at(&mut b, tail).unwrap();
                let second =
                    v.lv.devices
                        .iter()
                        .position(|d| d.name().contains("span-1"))
                        .unwrap();
                on_second += f
                    .device_extents()
                    .unwrap()
                    .iter()
                    .filter(|x| x.device == second)
                    .count();
            }
            // The second devices hold only their LVM header (no file data
            // is there on these images): reads across devices are covered
            // by the LVM span tests below.
            let _ = on_second;
        }
        // One extent alone: the volume opens (descriptor on extent 0) and
        // says what is missing, or fails naming the missing part.
        match Volume::from_devices(vec![common::dev(a)]) {
            Ok(v) => {
                assert!(!v.lv.missing.is_empty());
                assert!(
                    v.warnings.iter().any(|w| w.contains("2 devices")),
                    "{:?}",
                    v.warnings
                );
            }
            Err(e) => assert!(e.to_string().contains("device"), "{e}"),
        }
    }
}

fn pattern_check(lv: &vmfs::LogicalVolume) {
    // ESXi test data: volume MiB k holds byte k % 256 (after the first MiBs).
    let mut b = vec![0u8; 4096];
    let mut k = 8u64;
    while k < lv.size >> 20 {
        lv.read(&mut b, k << 20, "pattern").unwrap();
        assert!(
            b.iter().all(|&x| x == k as u8),
            "volume MiB {k}: {:?}",
            &b[..4]
        );
        k += 37;
    }
    // Across a PE boundary (256 MiB) and, when spanned, a device boundary.
    let mut b = vec![0u8; 2 << 20];
    for boundary in [256u64, 512, 768] {
        if boundary << 20 < lv.size {
            lv.read(&mut b, (boundary - 1) << 20, "boundary").unwrap();
            assert!(b[..1 << 20].iter().all(|&x| x == (boundary - 1) as u8));
            assert!(b[1 << 20..].iter().all(|&x| x == boundary as u8));
        }
    }
}

#[test]
fn lvm_headers_of_versions_3_to_6() {
    for v in 3..=6u32 {
        let d = common::dev(&format!("lvm/lvm{v}.bin.gz"));
        let h = vmfs::LvmHeader::read(d.as_ref()).unwrap();
        assert_eq!(h.major, v);
        assert_eq!(h.lv_name, format!("lvm{v}"));
        assert_eq!(h.lv_size, 512 << 20);
        assert_eq!(h.data_offset, 0x110_0000);
        assert_eq!((h.first_pe, h.last_pe, h.num_devs), (0, 1, 1));
        assert_eq!(h.extents.iter().map(|e| e.len).sum::<u64>(), 512 << 20);
        let sig = vmfs::detect(d.as_ref()).expect("detect lvm");
        let l = sig.lvm.unwrap();
        assert_eq!(
            (l.lvm_version, l.volume_name.as_str()),
            (v, format!("lvm{v}").as_str())
        );
        assert!(
            sig.fs_uuid.is_none(),
            "no filesystem in the LVM-only images"
        );
        let lv = vmfs::LogicalVolume::assemble(vec![d]).unwrap();
        assert!(lv.missing.is_empty());
        pattern_check(&lv);
    }
}

#[test]
fn lvm_spans_of_versions_3_to_6() {
    for v in 3..=6u32 {
        let a = format!("lvm/span/lvm{v}-span-0.bin.gz");
        let b = format!("lvm/span/lvm{v}-span-1.bin.gz");
        let ha = vmfs::LvmHeader::read(common::dev(&a).as_ref()).unwrap();
        let hb = vmfs::LvmHeader::read(common::dev(&b).as_ref()).unwrap();
        assert_eq!(ha.lv_uuid, hb.lv_uuid);
        assert_eq!((ha.first_pe, hb.first_pe, ha.num_devs), (0, 2, 2));
        for order in [[&a, &b], [&b, &a]] {
            let lv = vmfs::LogicalVolume::assemble(order.iter().map(|p| common::dev(p)).collect())
                .unwrap();
            assert_eq!(lv.size, 1 << 30);
            assert!(lv.missing.is_empty(), "{:?}", lv.missing);
            pattern_check(&lv);
        }
        // Half a span: the missing half is named, reads there fail.
        let lv = vmfs::LogicalVolume::assemble(vec![common::dev(&a)]).unwrap();
        assert_eq!(lv.missing, vec![(512 << 20, 512 << 20)]);
        let mut x = [0u8; 16];
        let err = lv.read(&mut x, 600 << 20, "probe").unwrap_err().to_string();
        assert!(err.contains("no given device"), "{err}");
    }
    // Extents of different volumes are refused.
    let err = vmfs::LogicalVolume::assemble(vec![
        common::dev("lvm/span/lvm5-span-0.bin.gz"),
        common::dev("lvm/span/lvm6-span-1.bin.gz"),
    ])
    .err()
    .expect("mixed volumes")
    .to_string();
    assert!(err.contains("belongs to LVM volume"), "{err}");
}

#[test]
fn vmfs3_toto() {
    let v = open(&["vmfs3-toto.img.gz"]);
    assert_eq!(v.sb.label, "toto");
    assert_eq!(v.sb.vmfs_version(), 3);
    assert_eq!((v.sb.major, v.sb.minor), (4, 31));
    assert_eq!(v.sb.block_size, 1 << 20);
    assert_eq!(v.sb.sub_block_size, 64 << 10);
    let n = our_names(&v, "/");
    for kind in ["thin", "thick", "zeroedthick", "eagerzeroedthick"] {
        let flat = format!("{kind}-flat.vmdk");
        let desc = format!("{kind}.vmdk");
        assert!(n.contains(&flat) && n.contains(&desc), "{n:?}");
        assert_eq!(v.stat(&flat).unwrap().size, 200 << 20);
        let f = v.open(&flat).unwrap();
        let mut b = vec![1u8; 4096];
        assert_eq!(f.read_at(&mut b, 100 << 20).unwrap(), 4096);
        let t = String::from_utf8(ours(&v, &desc)).unwrap();
        assert!(t.starts_with("# Disk DescriptorFile"), "{t}");
        assert!(t.contains("createType=\"vmfs\""), "{t}");
        assert!(t.contains(&format!("RW 409600 VMFS \"{flat}\"")), "{t}");
    }
    let t = String::from_utf8(ours(&v, "thin.vmdk")).unwrap();
    assert!(t.contains("ddb.thinProvisioned = \"1\""), "{t}");
}

#[test]
fn detect_reports_version_label_uuid_block_size() {
    for (img, ver, label) in [
        ("vmfs5.bin.gz", 5, "vmfs5"),
        ("vmfs6.bin.gz", 6, "vmfs6"),
        ("vmfs3-toto.img.gz", 3, "toto"),
    ] {
        let d = common::dev(img);
        let s = vmfs::detect(d.as_ref()).unwrap();
        assert_eq!(
            (s.version, s.label.as_str(), s.block_size),
            (ver, label, 1 << 20)
        );
        assert!(s.lvm.is_some());
        assert_eq!(s.fs_uuid.as_ref().map(|u| u.len()), Some(35));
    }
    assert_eq!(
        vmfs::detect(common::dev("vmfs5.bin.gz").as_ref())
            .unwrap()
            .fs_uuid
            .unwrap(),
        "68626efc-2ea12e18-b4ef-bc2411b17e28"
    );
    // The second extent of a span: LVM facts, no descriptor.
    let s = vmfs::detect(common::dev("span/vmfs5-span-1.bin.gz").as_ref()).unwrap();
    assert_eq!(s.version, 5);
    assert!(s.fs_uuid.is_none());
    assert_eq!(s.lvm.unwrap().first_pe, 8);
    // Not VMFS.
    let m = blockdev::MemDevice::new(vec![0u8; 4 << 20], 512);
    assert!(vmfs::detect(&m).is_none());
}
