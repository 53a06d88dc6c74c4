//! Debian's vmfs-tools (`debugvmfs`, VMFS5) and vmfs6-tools (`debugvmfs6`)
//! as an independent reference on the real ESXi-written images, for the
//! entries where the fixture README says they read correctly: directory
//! listings and the files with data (not the 0x42 sectors deep inside the
//! thin flat files, which those tools return as zeros). Only their
//! read-only `ls` and `cat` commands are used, on our decompressed copies.

mod common;
use common::oracle::{oracle, our_names, ours};
use vmfs::Volume;

fn listing(v: &Volume, dir: &str) -> Vec<String> {
    our_names(v, dir)
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect()
}

fn oracle_listing(debug: &str, img: &std::path::Path, dir: &str) -> Vec<String> {
    let text = String::from_utf8(oracle(debug, img, &["ls", dir])).unwrap();
    let mut n: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "." && *l != ".." && !l.starts_with("VMFS version"))
        .map(String::from)
        .collect();
    n.sort();
    n
}

fn agree(rel: &str, debug: &str) {
    let img = common::image(rel);
    let v = Volume::from_devices(vec![common::dev(rel)]).unwrap();
    for dir in ["/", "/directory"] {
        assert_eq!(
            listing(&v, dir),
            oracle_listing(debug, &img, dir),
            "{rel}: ls {dir}"
        );
    }
    let mut files: Vec<String> = [
        "small",
        "big",
        "bigger",
        "normal.vmdk",
        "large.vmdk",
        "rdm.vmdk",
    ]
    .iter()
    .map(|f| format!("/{f}"))
    .collect();
    files.extend((1..=100).step_by(11).map(|i| format!("/directory/file{i}")));
    for f in &files {
        let want = oracle(debug, &img, &["cat", f]);
        assert!(
            ours(&v, f) == want,
            "{rel}: {f} differs from {debug} ({} bytes)",
            want.len()
        );
    }
}

#[test]
fn vmfs5_agrees_with_debugvmfs() {
    agree("vmfs5.bin.gz", "debugvmfs");
}

#[test]
fn vmfs6_agrees_with_debugvmfs6() {
    agree("vmfs6.bin.gz", "debugvmfs6");
}
