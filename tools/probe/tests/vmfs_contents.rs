//! The probe recognises VMFS volumes on the real ESXi-written fixtures
//! (`../shared/fixtures/vmfs`), from the first MiBs only.

use std::io::{Read, Write};
use std::path::PathBuf;

/// The first `bytes` of a gzipped fixture, in a temp file; `None` when the
/// fixture is missing and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
/// (otherwise a missing fixture fails the test).
fn head_of(rel: &str, bytes: usize) -> Option<PathBuf> {
    let ws = testkit::workspace_root();
    let src = testkit::fixture(&format!("vmfs/{rel}"))?;
    let f = std::fs::File::open(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut head = vec![0u8; bytes];
    flate2::read::GzDecoder::new(f)
        .read_exact(&mut head)
        .expect("decompress fixture head");
    let dir = ws.join("target/probe-vmfs-heads");
    std::fs::create_dir_all(&dir).unwrap();
    // One file per (fixture, length): tests run in parallel and two of them
    // cut the same fixture at different lengths.
    let out = dir.join(format!(
        "{}-{bytes}",
        rel.replace('/', "_").trim_end_matches(".gz")
    ));
    std::fs::File::create(&out)
        .and_then(|mut o| o.write_all(&head))
        .unwrap();
    Some(out)
}

#[test]
fn vmfs5_and_vmfs6_with_lvm_are_recognised() {
    for (rel, version, label) in [("vmfs5.bin.gz", 5, "vmfs5"), ("vmfs6.bin.gz", 6, "vmfs6")] {
        let Some(img) = head_of(rel, 24 << 20) else {
            return;
        };
        let holds = probe::contents::examine(&img);
        let v = holds
            .vmfs
            .as_ref()
            .unwrap_or_else(|| panic!("{rel}: no VMFS found: {holds:?}"));
        assert_eq!(v.version, version, "{rel}");
        assert_eq!(v.label, label, "{rel}");
        assert!(v.lvm.is_some(), "{rel}: LVM header expected");
        assert!(
            v.block_size >= 1 << 20,
            "{rel}: block size {}",
            v.block_size
        );
        assert_eq!(
            holds.short().as_deref(),
            Some(format!("VMFS{version} \"{label}\"").as_str())
        );
    }
}

#[test]
fn bare_vmfs_volume_without_lvm_is_recognised() {
    let Some(img) = head_of("vmfs5d.bin.gz", 8 << 20) else {
        return;
    };
    let holds = probe::contents::examine(&img);
    let v = holds.vmfs.expect("VMFS descriptor at 2 MiB");
    // Its label is `vmfs5d` (measured; the fixture README names only the
    // LVM images' labels).
    assert_eq!(
        (v.version, v.label.as_str(), v.lvm.is_none()),
        (5, "vmfs5d", true)
    );
}

#[test]
fn zeroed_and_truncated_images_hold_no_vmfs() {
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/probe-vmfs-heads");
    std::fs::create_dir_all(&ws).unwrap();
    let zero = ws.join("zero.img");
    std::fs::write(&zero, vec![0u8; 4 << 20]).unwrap();
    assert!(probe::contents::examine(&zero).vmfs.is_none());
    // The LVM header is there but the descriptor it points to is cut off:
    // still reported (as an extent without descriptor), never a panic.
    let Some(cut) = head_of("vmfs5.bin.gz", (1 << 20) + 4096) else {
        return;
    };
    let holds = probe::contents::examine(&cut);
    if let Some(v) = holds.vmfs {
        assert!(v.fs_uuid.is_none());
    }
}
