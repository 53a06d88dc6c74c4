//! The shared test fixtures: `<workspace>/../shared/fixtures/<name>`,
//! beside the checkout (not in the repository; see
//! `../shared/fixtures/*/README.md`).
//!
//! A missing fixture fails the test that needs it, with the path and how
//! to get it, so a suite cannot pass by testing nothing. Setting
//! `RESCUE_ALLOW_MISSING_FIXTURES=1` turns that into a skip: [`fixture`]
//! returns `None` (and says so on stderr) and the test returns early.

use std::path::{Path, PathBuf};

/// The environment variable that lets tests skip on a missing fixture.
pub const ALLOW_MISSING: &str = "RESCUE_ALLOW_MISSING_FIXTURES";

/// The workspace root (the directory of the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The shared fixtures' directory, `<workspace>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("../shared/fixtures")
}

/// Where fixture `name` (e.g. `vmfs/vmfs5.bin.gz`) is, whether or not it
/// is there.
pub fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// Fixture `name` (e.g. `vmfs/vmfs5.bin.gz`, relative to
/// `../shared/fixtures`). Panics when it is missing, naming the path and how
/// to get it, unless `RESCUE_ALLOW_MISSING_FIXTURES=1` is set: then `None`.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let p = fixture_path(name);
    if p.exists() {
        return Some(p);
    }
    let msg = missing_message(name, &p);
    if allow_missing() {
        eprintln!("skipped: {msg}");
        return None;
    }
    panic!("{msg}");
}

/// Gzipped fixture `name` (e.g. `vmfs/vmfs5.bin.gz`) decompressed once
/// into `<workspace>/target/fixtures/`, sparsely (the ESXi images are GiBs
/// of mostly zeros), and cut after `limit` bytes if given (headers-only
/// copies of big images). A fixture missing from `../shared` is looked for
/// in `target/vmfs-pypi/` too (the images `qemu-tests/setup.sh` fetches).
/// Missing everywhere: as [`fixture`].
pub fn unpacked(name: &str, limit: Option<u64>) -> Option<PathBuf> {
    use std::sync::Mutex;
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let fetched = name
        .strip_prefix("vmfs/")
        .map(|rel| workspace_root().join("target/vmfs-pypi").join(rel))
        .filter(|p| p.exists());
    let src = match fetched {
        Some(p) if !fixture_path(name).exists() => p,
        _ => fixture(name)?,
    };
    let mut file_name = name.trim_end_matches(".gz").replace('/', "_");
    if let Some(l) = limit {
        file_name = format!("{file_name}.head{}M", l >> 20);
    }
    let cache = workspace_root().join("target/fixtures");
    let dst = cache.join(&file_name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if dst.exists() {
        return Some(dst);
    }
    std::fs::create_dir_all(&cache).expect("create the fixture cache");
    // Another test process may unpack the same fixture: each writes its
    // own temporary file and renames it into place.
    let tmp = cache.join(format!("{file_name}.tmp{}", std::process::id()));
    let input = std::fs::File::open(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(input));
    let out = std::fs::File::create(&tmp).expect("create the unpacked fixture");
    let len = copy_sparse(&mut gz, &out, 0, limit);
    out.set_len(len).expect("size the unpacked fixture");
    drop(out);
    std::fs::rename(&tmp, &dst).expect("rename the unpacked fixture");
    Some(dst)
}

/// Copies `src` into `out` from byte `at` on, writing only the non-zero
/// 64 KiB chunks (the rest stays a hole), up to `limit` bytes if given.
/// Returns the bytes copied.
pub fn copy_sparse(
    src: &mut dyn std::io::Read,
    out: &std::fs::File,
    at: u64,
    limit: Option<u64>,
) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    loop {
        let want = limit.map_or(buf.len() as u64, |l| (l - pos).min(buf.len() as u64)) as usize;
        let mut n = 0;
        while n < want {
            let r = src.read(&mut buf[n..want]).expect("read the source");
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.write_all_at(&buf[..n], at + pos).expect("write");
        }
        pos += n as u64;
    }
    pos
}

fn allow_missing() -> bool {
    std::env::var_os(ALLOW_MISSING).is_some_and(|v| v == "1")
}

fn missing_message(name: &str, path: &Path) -> String {
    let top = name.split('/').next().unwrap_or(name);
    let how = if top == "vmfs" {
        "the VMFS images are dissect.vmfs 3.13's tests/_data/ \
         (`pip download --no-deps --no-binary :all: dissect.vmfs==3.13`, unpack \
         dissect_vmfs-3.13.tar.gz, copy tests/_data/vmfs/* and tests/_data/lvm there; \
         check them against SHA256SUMS)"
            .to_string()
    } else {
        "see the README of that fixture directory".to_string()
    };
    format!(
        "test fixture {} is missing: put the shared fixtures beside the checkout \
         (<workspace>/../shared/fixtures/{top}/, described in its README.md); {how}; \
         or set {ALLOW_MISSING}=1 to skip the tests that need it",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(toml.contains("[workspace]"));
        assert!(fixture_path("vmfs/x").ends_with("shared/fixtures/vmfs/x"));
    }

    #[test]
    fn a_missing_fixture_names_its_path_and_the_way_out() {
        let m = missing_message("vmfs/none.gz", &fixture_path("vmfs/none.gz"));
        assert!(m.contains("shared/fixtures/vmfs/none.gz"), "{m}");
        assert!(m.contains("dissect.vmfs==3.13"), "{m}");
        assert!(m.contains(ALLOW_MISSING), "{m}");
        if !allow_missing() {
            let r = std::panic::catch_unwind(|| fixture("no-such-dir/none"));
            assert!(r.is_err(), "a missing fixture must fail");
        } else {
            assert_eq!(fixture("no-such-dir/none"), None);
        }
    }
}
