//! Debian's vmfs-tools (`debugvmfs`, VMFS3/5) and vmfs6-tools
//! (`debugvmfs6`) as an independent reference, and our reader's whole-file
//! read and directory listing to compare with.

use std::path::Path;
use std::process::Command;
use vmfs::Volume;

/// The installed tool `name`, or a panic that says how to install it.
pub fn tool(name: &str) -> Command {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not installed: apt-get install vmfs-tools vmfs6-tools (qemu-tests/setup.sh does)")
        });
    Command::new(found)
}

/// `DEBUG IMG ARGS...` (debugvmfs or debugvmfs6): its output, with
/// debugvmfs6's banner stripped. Panics if the tool fails.
pub fn oracle(debug: &str, img: &Path, args: &[&str]) -> Vec<u8> {
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

/// The whole file at `path`, read by our reader.
pub fn ours(v: &Volume, path: &str) -> Vec<u8> {
    let f = v.open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut b = vec![0u8; f.size() as usize];
    assert_eq!(f.read_at(&mut b, 0).unwrap(), b.len(), "{path}");
    b
}

/// The names in directory `dir` (`.` and `..` included), sorted, read by
/// our reader.
pub fn our_names(v: &Volume, dir: &str) -> Vec<String> {
    let mut n: Vec<String> = v
        .read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .into_iter()
        .map(|e| e.name)
        .collect();
    n.sort();
    n
}
