//! Debian's vmfs-tools (`debugvmfs`, VMFS5) and vmfs6-tools (`debugvmfs6`)
//! as an independent reference on the real ESXi-written images, for the
//! entries where the fixture README says they read correctly: directory
//! listings and the files with data (not the 0x42 sectors deep inside the
//! thin flat files, which those tools return as zeros). Only their
//! read-only `ls` and `cat` commands are used, on our decompressed copies.

mod common;
use std::process::Command;
use vmfs::Volume;

fn tool(name: &str) -> Command {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not installed: apt-get install vmfs-tools vmfs6-tools (qemu-tests/setup.sh does)")
        });
    Command::new(found)
}

fn oracle(debug: &str, img: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = tool(debug)
        .arg(img)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{debug}: {e}"));
    assert!(
        out.status.success(),
        "{debug} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // debugvmfs6 prints its banner on stdout before the data.
    let banner = b"VMFS version: 6\n";
    match out.stdout.strip_prefix(&banner[..]) {
        Some(rest) => rest.to_vec(),
        None => out.stdout,
    }
}

fn ours(v: &Volume, path: &str) -> Vec<u8> {
    let f = v.open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut b = vec![0u8; f.size() as usize];
    assert_eq!(f.read_at(&mut b, 0).unwrap(), b.len(), "{path}");
    b
}

fn listing(v: &Volume, dir: &str) -> Vec<String> {
    let mut n: Vec<String> = v
        .read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect();
    n.sort();
    n
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
