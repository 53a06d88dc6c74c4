//! Corrupted metadata (bytes changed in an in-memory overlay over a real
//! image) gives errors, never panics, and stays bounded in time.

mod common;
use blockdev::BlockDevice;
use common::Overlay;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmfs::{FileType, Volume};

/// Device byte ranges holding metadata of `img`: LVM header and PE table,
/// FS descriptor, the FDs of the root and of a few files, directory data.
fn metadata_regions(img: &str) -> (Arc<dyn BlockDevice>, Vec<(u64, u64)>) {
    let dev: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image(img)).unwrap());
    let v = Volume::from_devices(vec![common::dev(img)]).unwrap();
    let to_dev = |vol_off: u64, len: u64| -> (u64, u64) {
        let r = v.volume_to_devices(vol_off, len).unwrap();
        (r[0].offset, r[0].len)
    };
    let fd = v.layout.fd_size as u64;
    let mut regions = vec![(0x10_0000, 0x200), to_dev(0x20_0000, 0x200)];
    if !v.lv.lvm.is_empty() {
        regions.push((0x18_0600, 0x400));
    }
    for p in [
        "/",
        "/directory",
        "/collision",
        "/big",
        "/normal-flat.vmdk",
        "/large-flat.vmdk",
        "/symlink",
        "/small",
    ] {
        let ino = v.lookup(p).unwrap();
        regions.push(to_dev(v.fd_volume_offset(ino.addr).unwrap(), fd));
        if ino.ftype.is_dir() {
            for e in v.device_extents(&ino).unwrap().into_iter().take(4) {
                regions.push((e.device_offset, e.len.min(64 << 10)));
            }
        }
    }
    // The file block bitmap (free space): header and cluster records.
    let fbb = v.inode(0x0040_0004).unwrap();
    for e in v.device_extents(&fbb).unwrap().into_iter().take(2) {
        regions.push((e.device_offset, e.len.min(0x3_0000)));
    }
    (dev, regions)
}

/// Everything a user can do, bounded: open, walk the tree, map and read
/// the start of every file.
fn exercise(devs: Vec<Box<dyn BlockDevice>>) {
    let t = Instant::now();
    let Ok(v) = Volume::from_devices(devs) else {
        return;
    };
    let _ = vmfs::free_space(&v);
    let mut stack = vec!["/".to_string()];
    let mut seen = HashSet::new();
    let mut visited = 0;
    while let Some(p) = stack.pop() {
        visited += 1;
        assert!(visited < 5000, "walk does not end");
        let Ok(ino) = v.lookup(&p) else { continue };
        if !seen.insert(ino.addr) {
            continue;
        }
        let _ = v.stat_inode(&ino);
        match ino.ftype {
            FileType::Directory => {
                if let Ok(es) = v.dir_entries(&ino) {
                    for e in es
                        .into_iter()
                        .filter(|e| e.name != "." && e.name != "..")
                        .take(200)
                    {
                        stack.push(format!("{}/{}", p.trim_end_matches('/'), e.name));
                    }
                }
            }
            _ => {
                if let Ok(f) = v.open_inode(ino.clone()) {
                    let mut b = vec![0u8; 64 << 10];
                    let _ = f.read_at(&mut b, 0);
                    let _ = f.read_at(&mut b, f.size() / 2);
                    if ino.size < 1 << 50 {
                        let _ = f.pieces();
                    }
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "corrupt volume took too long"
        );
    }
}

fn corruption_cases(img: &'static str) -> impl Strategy<Value = Vec<(usize, u64, u8)>> {
    proptest::collection::vec((0usize..64, 0u64..1 << 16, any::<u8>()), 1..12).prop_map(move |v| {
        let _ = img;
        v
    })
}

fn run_case(dev: &Arc<dyn BlockDevice>, regions: &[(u64, u64)], flips: &[(usize, u64, u8)]) {
    let mut patch = BTreeMap::new();
    for &(r, off, b) in flips {
        let (s, l) = regions[r % regions.len()];
        patch.insert(s + off % l, b);
    }
    exercise(vec![Box::new(Overlay {
        inner: dev.clone(),
        patch,
    })]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn vmfs5_corrupt_metadata_never_panics(flips in corruption_cases("vmfs5")) {
        let (dev, regions) = metadata_regions("vmfs5.bin.gz");
        run_case(&dev, &regions, &flips);
    }

    #[test]
    fn vmfs6_corrupt_metadata_never_panics(flips in corruption_cases("vmfs6")) {
        let (dev, regions) = metadata_regions("vmfs6.bin.gz");
        run_case(&dev, &regions, &flips);
    }

    #[test]
    fn vmfs3_corrupt_metadata_never_panics(flips in proptest::collection::vec((0u64..0x60_0000, any::<u8>()), 1..32)) {
        // VMFS3: anywhere in the first 6 MiB of the volume (LVM header,
        // descriptor, heartbeats, the first FDs).
        let dev: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image("vmfs3-toto.img.gz")).unwrap());
        let patch: BTreeMap<u64, u8> = flips.into_iter().map(|(o, b)| (0x100000 + o % 0x20_0000 + if o > 0x30_0000 { 0x120_0000 } else { 0 }, b)).collect();
        exercise(vec![Box::new(Overlay { inner: dev, patch })]);
    }
}

/// Writes `v` as little-endian at device offset `at`.
fn put(patch: &mut BTreeMap<u64, u8>, at: u64, v: &[u8]) {
    for (i, b) in v.iter().enumerate() {
        patch.insert(at + i as u64, *b);
    }
}

#[test]
fn aliased_pointer_blocks_stay_bounded() {
    // Every top-level slot of the double-indirect file made to point at
    // the same pointer block: the mapping aliases, reads stay bounded.
    for img in ["vmfs5.bin.gz", "vmfs6.bin.gz"] {
        let dev: Arc<dyn BlockDevice> =
            Arc::new(blockdev::Device::open(common::image(img)).unwrap());
        let v = Volume::from_devices(vec![common::dev(img)]).unwrap();
        let ino = v.lookup("large-flat.vmdk").unwrap();
        let top = ino.ptrs.iter().copied().find(|&p| p != 0).unwrap();
        let fd = v.fd_volume_offset(ino.addr).unwrap();
        let fd_dev = v.volume_to_devices(fd, 1).unwrap()[0].offset;
        let lay = v.layout;
        let w = if lay.wide { 8 } else { 4 };
        let mut patch = BTreeMap::new();
        for i in 0..lay.nptrs as u64 {
            put(
                &mut patch,
                fd_dev + lay.ptrs as u64 + i * w,
                &top.to_le_bytes()[..w as usize],
            );
        }
        let v2 = Volume::from_devices(vec![Box::new(Overlay {
            inner: dev.clone(),
            patch,
        })])
        .unwrap();
        let f = v2.open("large-flat.vmdk").unwrap();
        let t = Instant::now();
        let pieces = f.pieces().unwrap();
        assert!(pieces.len() > 1);
        let mut b = vec![0u8; 512];
        f.read_at(&mut b, 117 << 30).unwrap();
        assert!(b.iter().all(|&x| x == 0x42));
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    }
}

#[test]
fn pointer_type_confusion_is_an_error() {
    // The FD pointer array of a double-indirect file made single-indirect
    // (ZLA 3): its PBs then hold PB addresses where data addresses belong,
    // which must be refused, not followed.
    let img = "vmfs5.bin.gz";
    let dev: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image(img)).unwrap());
    let v = Volume::from_devices(vec![common::dev(img)]).unwrap();
    let ino = v.lookup("large-flat.vmdk").unwrap();
    let fd_dev = v
        .volume_to_devices(v.fd_volume_offset(ino.addr).unwrap(), 1)
        .unwrap()[0]
        .offset;
    let mut patch = BTreeMap::new();
    put(
        &mut patch,
        fd_dev + v.layout.meta as u64 + 0x44,
        &3u32.to_le_bytes(),
    );
    let v2 = Volume::from_devices(vec![Box::new(Overlay { inner: dev, patch })]).unwrap();
    let f = v2.open("large-flat.vmdk").unwrap();
    let err = f.pieces().unwrap_err().to_string();
    assert!(err.contains("not a data block type"), "{err}");
}

#[test]
fn directory_entry_pointing_back_at_the_root_ends() {
    // /directory's first entry made to point at the root FD: walking the
    // tree (as files-hit and extract do) must end.
    let img = "vmfs5.bin.gz";
    let dev: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image(img)).unwrap());
    let v = Volume::from_devices(vec![common::dev(img)]).unwrap();
    let dir = v.lookup("directory").unwrap();
    let ext = v.device_extents(&dir).unwrap();
    let mut patch = BTreeMap::new();
    // Entry 2 (after "." and ".."): type = directory, address = root.
    put(
        &mut patch,
        ext[0].device_offset + 2 * 0x8C,
        &2u32.to_le_bytes(),
    );
    put(
        &mut patch,
        ext[0].device_offset + 2 * 0x8C + 4,
        &4u32.to_le_bytes(),
    );
    let v2 = Volume::from_devices(vec![Box::new(Overlay { inner: dev, patch })]).unwrap();
    let names: Vec<_> = v2
        .read_dir("directory")
        .unwrap()
        .into_iter()
        .filter(|e| e.addr == 4)
        .collect();
    assert_eq!(names.len(), 1, "the patched entry is there");
    let t = Instant::now();
    let (hits, errors) =
        vmfs::files_hit::files_hit_in(&v2, &[("x".into(), 0)], &vmfs::damage::Ranges::default());
    assert!(hits.is_empty() && errors.is_empty(), "{hits:?} {errors:?}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn scan_finds_files_of_a_lost_directory_as_orphans() {
    for img in [
        "vmfs6.bin.gz",
        "vmfs3-toto.img.gz",
        "span/vmfs5-span-0.bin.gz",
    ] {
        let mut devs = vec![common::dev(img)];
        if img.starts_with("span") {
            devs.push(common::dev("span/vmfs5-span-1.bin.gz"));
        }
        let v = Volume::from_devices(devs).unwrap();
        let (orphans, errors) = v.orphans();
        assert!(
            errors.is_empty() && orphans.is_empty(),
            "{img}: {errors:?} {:?}",
            orphans.iter().map(|i| i.addr).collect::<Vec<_>>()
        );
    }
    let img = "vmfs5.bin.gz";
    let dev: Arc<dyn BlockDevice> = Arc::new(blockdev::Device::open(common::image(img)).unwrap());
    let v = Volume::from_devices(vec![common::dev(img)]).unwrap();
    let (orphans, errors) = v.orphans();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        orphans.is_empty(),
        "intact volume: {:?}",
        orphans.iter().map(|i| i.addr).collect::<Vec<_>>()
    );
    // Wipe /directory's data: its 100 files become orphans.
    let dir = v.lookup("directory").unwrap();
    let ext = v.device_extents(&dir).unwrap();
    let mut patch = BTreeMap::new();
    for e in &ext {
        for i in 0..e.len {
            patch.insert(e.device_offset + i, 0u8);
        }
    }
    let v2 = Volume::from_devices(vec![Box::new(Overlay { inner: dev, patch })]).unwrap();
    assert!(v2.read_dir("directory").unwrap().is_empty());
    let (orphans, _) = v2.orphans();
    assert_eq!(orphans.len(), 100);
    let mut sizes: Vec<u64> = orphans.iter().map(|i| i.size).collect();
    sizes.sort();
    assert_eq!(sizes[0], 7); // "File 1\n"
    assert_eq!(sizes[99], 9); // "File 100\n"
    let f = v2.open_inode(orphans[0].clone()).unwrap();
    let mut b = vec![0u8; f.size() as usize];
    f.read_at(&mut b, 0).unwrap();
    assert!(b.starts_with(b"File "));
}
