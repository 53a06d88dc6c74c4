//! VM disks read inside the real ESXi-written VMFS volumes, through the
//! volume (no copy): the thin `normal.vmdk` and the raw device mapping
//! `rdm.vmdk`.

mod common;
use std::sync::atomic::AtomicBool;
use vmfs::vmdkfiles::disk_in_volume;

fn open(path: &str) -> Result<vmdk::VirtualDisk, String> {
    open_in("vmfs5.bin.gz", path)
}

fn open_in(fixture: &str, path: &str) -> Result<vmdk::VirtualDisk, String> {
    let img = common::image(fixture).display().to_string();
    let (folder, name, notes) = disk_in_volume(&[img], path)?;
    assert!(notes.is_empty(), "{notes:?}");
    vmdk::VirtualDisk::open(&folder, &name).map_err(|e| e.to_string())
}

#[test]
fn a_thin_disk_reads_through_the_volume_with_its_holes() {
    thin_disk_in("vmfs5.bin.gz");
    thin_disk_in("vmfs6.bin.gz");
}

fn thin_disk_in(fixture: &str) {
    let disk = open_in(fixture, "/normal.vmdk").unwrap();
    assert_eq!(disk.capacity(), 74_088_185_856);
    let level = &disk.levels()[0];
    assert_eq!(level.descriptor.ddb("ddb.thinProvisioned"), Some("1"));
    // One 1 MiB block was ever written (at 42 GiB); the rest is thin.
    assert_eq!(level.allocated().unwrap(), 1 << 20);
    let written = 0xa_8000_0000_u64;
    let at = disk.locate(0, written).unwrap();
    assert!(
        matches!(at.held, vmdk::Held::Stored { offset } if offset == written),
        "{at:?}"
    );
    assert_eq!(disk.locate(0, 0).unwrap().held, vmdk::Held::Zero);
    // The disk's bytes are the flat file's bytes.
    let v = vmfs::Volume::from_devices(vec![common::dev(fixture)]).unwrap();
    let flat = v.open("/normal-flat.vmdk").unwrap();
    let mut want = vec![0u8; 1 << 20];
    flat.read_at(&mut want, written).unwrap();
    let mut got = vec![1u8; 1 << 20];
    disk.read_at(0, &mut got, written).unwrap();
    assert!(got == want);

    // Exported: the written block, and holes for the rest, at once.
    let t = testkit::TempDir::new_in(
        &common::workspace().join("target/vmfs-test-scratch"),
        "vmdk",
    );
    let dest = t.join("normal.raw");
    let job = vmdk::export::ExportJob {
        disk: &disk,
        level: 0,
        start: written - 4096,
        len: (1 << 20) + 8192,
        dest: &dest,
        sparse: false,
    };
    let r = vmdk::export::export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!((r.written, r.holes), (1 << 20, 8192));
    let out = std::fs::read(&dest).unwrap();
    assert!(out[4096..4096 + (1 << 20)] == want[..]);
    assert!(out[..4096]
        .iter()
        .chain(&out[4096 + (1 << 20)..])
        .all(|&b| b == 0));
}

#[test]
fn a_raw_device_mapping_names_its_lun_instead_of_data() {
    let disk = open("/rdm.vmdk").unwrap();
    let why = disk.raw_device_maps();
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].contains("rdm-rdm.vmdk")
            && why[0].contains("QEMU")
            && why[0].contains("image that LUN"),
        "{why:?}"
    );
    let e = disk.read_at(0, &mut [0u8; 512], 0).unwrap_err();
    assert!(e.to_string().contains("raw device mapping"), "{e}");
}

#[test]
fn a_missing_disk_in_the_volume_is_named() {
    let e = open("/nonexistent/vm.vmdk").err().unwrap();
    assert!(e.contains("/nonexistent/vm.vmdk"), "{e}");
}

/// A bad area under the one stored block of `normal-flat.vmdk` (image
/// bytes 0x60e00000.., the file's bytes 42 GiB..): `files-hit` names the
/// file, and one layer down the VM disk `normal.vmdk` and the virtual
/// bytes lost, in a mapfile ddrescuelog reads.
#[test]
fn files_hit_carries_bad_areas_into_the_vm_disks_virtual_bytes() {
    use vmfs::cli::{run, Action, FilesHitCommand, VmfsCommand};
    let img = common::image("vmfs5.bin.gz").display().to_string();
    let t = testkit::TempDir::new_in(
        &common::workspace().join("target/vmfs-test-scratch"),
        "badmap",
    );
    let map = t.join("img.map");
    let (bad_at, bad_len) = (0x60e0_1000u64, 0x2000u64);
    std::fs::write(
        &map,
        format!(
            "0 +\n0x0 {bad_at:#x} +\n{bad_at:#x} {bad_len:#x} -\n{:#x} 0x100000000 +\n",
            bad_at + bad_len
        ),
    )
    .unwrap();

    // The library: the file hit, then the disk's virtual ranges.
    let bad = vmfs::damage::read_mapfile(&map.display().to_string()).unwrap();
    let sources = [img.clone()];
    let o = vmfs::open::open_volume(&vmfs::open::OpenRequest {
        sources: &sources,
        ..Default::default()
    })
    .unwrap();
    let (hits, errors) = vmfs::files_hit::files_hit_in(&o.volume, &o.origins, &bad);
    assert!(errors.is_empty(), "{errors:?}");
    let hit = hits
        .iter()
        .find(|h| h.path == "/normal-flat.vmdk")
        .expect("the flat file is hit");
    let file_at = 0xa_8000_0000 + 0x1000;
    assert_eq!(hit.ranges, vec![(file_at, bad_len)]);
    let (disks, errors) = vmfs::files_hit::vm_disks_hit(std::sync::Arc::new(o.volume), &img, &hits);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!(disks[0].descriptor, "/normal.vmdk");
    assert_eq!(
        disks[0].ranges,
        vec![(file_at, bad_len)],
        "flat: the same offsets"
    );

    // The command writes DIR/normal.vmdk.badmap.
    let dir = t.join("badmaps");
    let code = run(VmfsCommand {
        action: Action::FilesHit(FilesHitCommand {
            src: vec![img],
            extent: vec![],
            offset: None,
            map: map.display().to_string(),
            badmap_dir: Some(dir.clone()),
            json: false,
        }),
    });
    assert_eq!(code, 1, "files were hit");
    let badmap = dir.join("normal.vmdk.badmap");
    let out = std::process::Command::new("ddrescuelog")
        .args(["--list-blocks=-", "--block-size=4096"])
        .arg(&badmap)
        .output()
        .expect("ddrescuelog (gddrescue) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(blocks, vec![file_at / 4096, file_at / 4096 + 1]);
}

/// A snapshot chain placed in a real ESXi-written VMFS3 volume by the test
/// writer: the thick disk `thick.vmdk` (its flat file stamped with known
/// data) as the base, a COWD delta over it and a SESparse delta over that
/// (their data files and descriptors written into the volume's other two
/// disks' files). Read through the volume with no copy, every level gives
/// what was written, and the export equals the model.
#[test]
fn a_snapshot_chain_inside_a_volume_reads_level_by_level() {
    use common::writer::{scratch_copy, stamp, Writer};
    use testkit::vmdkdelta::{cowd_delta, descriptor, sesparse_with, GrainState, SeSparseOptions};
    let img = scratch_copy("vmfs3-toto.img.gz", "vmdk-chain");
    let w = Writer::open(&img.0);
    let size = 200u64 << 20;
    let sectors = size / 512;
    let base = stamp("base", 0, size as usize);
    w.write_file(&w.lookup("thick-flat.vmdk"), 0, &base);

    // COWD level: 1-sector grains at 1 MiB and 5 MiB + 512.
    let cowd_grains: Vec<(u64, Option<Vec<u8>>)> = vec![
        (2048, Some(vec![0xC1; 512])),
        (10241, Some(vec![0xC2; 512])),
    ];
    let cowd = cowd_delta(sectors as u32, 1, &cowd_grains);
    let fd = w.lookup("zeroedthick-flat.vmdk");
    w.write_file(&fd, 0, &cowd.bytes);
    w.set_size(&fd, cowd.bytes.len() as u64);
    let mid = descriptor(
        "vmfsSparse",
        0x22,
        Some(("thick.vmdk", 0x05a1_5a72)), // thick.vmdk's CID
        &[&format!(
            "RW {sectors} VMFSSPARSE \"zeroedthick-flat.vmdk\""
        )],
    );
    let fd = w.lookup("zeroedthick.vmdk");
    w.set_size(&fd, mid.len() as u64);
    w.write_file(&w.lookup("zeroedthick.vmdk"), 0, mid.as_bytes());

    // SESparse level: a 4 KiB grain over the COWD one at 5 MiB (hides
    // it), a zero grain at 3 MiB, an unmapped one at 7 MiB.
    let se = sesparse_with(
        sectors,
        &[
            (1280, GrainState::Data(vec![0x5E; 4096])),
            (768, GrainState::Zero),
            (1792, GrainState::Unmapped),
        ],
        &SeSparseOptions {
            compact: true,
            ..Default::default()
        },
    );
    let fd = w.lookup("eagerzeroedthick-flat.vmdk");
    w.write_file(&fd, 0, &se.bytes);
    w.set_size(&fd, se.bytes.len() as u64);
    let top = descriptor(
        "seSparse",
        0x33,
        Some(("zeroedthick.vmdk", 0x22)),
        &[&format!(
            "RW {sectors} SESPARSE \"eagerzeroedthick-flat.vmdk\""
        )],
    );
    let fd = w.lookup("eagerzeroedthick.vmdk");
    w.set_size(&fd, top.len() as u64);
    w.write_file(&w.lookup("eagerzeroedthick.vmdk"), 0, top.as_bytes());
    drop(w);

    // The model, level by level.
    let mut want = [base.clone(), base.clone(), base];
    for level in &mut want[1..] {
        level[1 << 20..(1 << 20) + 512].fill(0xC1);
        level[(5 << 20) + 512..(5 << 20) + 1024].fill(0xC2);
    }
    want[2][5 << 20..(5 << 20) + 4096].fill(0x5E);
    want[2][3 << 20..(3 << 20) + 4096].fill(0);
    want[2][7 << 20..(7 << 20) + 4096].fill(0);

    let src = img.0.display().to_string();
    let (folder, name, _) = disk_in_volume(&[src], "/eagerzeroedthick.vmdk").unwrap();
    let disk = vmdk::VirtualDisk::open(&folder, &name).unwrap();
    let formats: Vec<&str> = disk
        .levels()
        .iter()
        .map(|l| l.extents[0].1.format())
        .collect();
    assert_eq!(formats, ["flat", "COWD", "SESparse"]);
    assert!(disk.warnings.is_empty(), "{:?}", disk.warnings);
    for (level, want) in want.iter().enumerate() {
        let mut got = vec![0u8; size as usize];
        disk.read_at(level, &mut got, 0).unwrap();
        assert!(got == *want, "level {level} differs");
    }
    let t = testkit::TempDir::new_in(
        &common::workspace().join("target/vmfs-test-scratch"),
        "chain",
    );
    let dest = t.join("top.raw");
    let job = vmdk::export::ExportJob {
        disk: &disk,
        level: disk.top(),
        start: 0,
        len: size,
        dest: &dest,
        sparse: false,
    };
    let r = vmdk::export::export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert!(r.bad.is_empty());
    assert!(std::fs::read(&dest).unwrap() == want[2]);
}
