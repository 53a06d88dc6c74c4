//! VM disks read inside the real ESXi-written VMFS5 volume, through the
//! volume (no copy): the thin `normal.vmdk` and the raw device mapping
//! `rdm.vmdk`.

mod common;
use std::sync::atomic::AtomicBool;
use vmfs::vmdkfiles::disk_in_volume;

fn open(path: &str) -> Result<vmdk::VirtualDisk, String> {
    let img = common::image("vmfs5.bin.gz").display().to_string();
    let (folder, name, notes) = disk_in_volume(&[img], path)?;
    assert!(notes.is_empty(), "{notes:?}");
    vmdk::VirtualDisk::open(&folder, &name).map_err(|e| e.to_string())
}

#[test]
fn a_thin_disk_reads_through_the_volume_with_its_holes() {
    let disk = open("/normal.vmdk").unwrap();
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
    let v = vmfs::Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap();
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
    let e = open("/rdm.vmdk").err().unwrap();
    assert!(
        e.contains("raw device mapping") && e.contains("rdm-rdm.vmdk"),
        "{e}"
    );
}

#[test]
fn a_missing_disk_in_the_volume_is_named() {
    let e = open("/nonexistent/vm.vmdk").err().unwrap();
    assert!(e.contains("/nonexistent/vm.vmdk"), "{e}");
}
