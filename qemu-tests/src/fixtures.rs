//! Disk images on the host: the built appliance image, scratch
//! directories, test disks, content fingerprints, files read back out of
//! ext4 images, and the shared fixtures beside the checkout.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use testkit::fixture;
pub use testkit::TempDir;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The built image: `out/vmlinuz` and `out/initramfs.img`.
pub struct Image {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Image {
    /// The image under `out/`; a clear panic tells how to build it.
    pub fn built() -> Image {
        let out = std::env::var_os("RESCUE_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("out"));
        let img = Image {
            kernel: out.join("vmlinuz"),
            initramfs: out.join("initramfs.img"),
        };
        for p in [&img.kernel, &img.initramfs] {
            assert!(
                p.exists(),
                "{} is missing: build the image first (cargo run --release -p image-build)",
                p.display()
            );
        }
        img
    }
}

/// A scratch directory for a test's disks and the VM's sockets and logs,
/// under `$RESCUE_TEST_TMP` or `<workspace>/target/qemu-tests` (not /tmp:
/// the images are large); removed on drop unless `RESCUE_KEEP_TMP` is set.
pub fn temp_dir(tag: &str) -> TempDir {
    let base = std::env::var_os("RESCUE_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/qemu-tests"));
    TempDir::new_in(&base, tag)
}

/// Creates a sparse raw image of `size` bytes with a recognisable first and
/// last sector (so a write anywhere there changes the hash).
pub fn make_disk(path: &Path, size: u64, tag: &str) -> PathBuf {
    let mut f = std::fs::File::create(path).expect("create disk image");
    f.set_len(size).expect("size disk image");
    let mut sector = vec![0u8; 512];
    let label = format!("rescue-test-disk {tag}\n");
    sector[..label.len()].copy_from_slice(label.as_bytes());
    f.write_all(&sector).expect("write disk image");
    use std::os::unix::fs::FileExt;
    if size >= 1024 {
        f.write_all_at(&sector, size - 512)
            .expect("write disk image");
    }
    path.to_path_buf()
}

/// The SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unpacks the shared VMFS fixture `vmfs/REL` (gzip) into the sparse disk
/// image `out`.
pub fn fixture_disk(rel: &str, out: &Path) {
    let gz = fixture(&format!("vmfs/{rel}")).expect("fixture checked by the test");
    let script = format!(
        "gzip -dc '{}' | dd of='{}' bs=1M conv=sparse status=none",
        gz.display(),
        out.display()
    );
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .expect("sh");
    assert!(st.success(), "{script}");
}

/// Chunk size of [`sha256_file`]'s content fingerprint.
pub(crate) const FINGERPRINT_CHUNK: u64 = 64 * 1024;

/// SHA-256 fingerprint of a disk image's content: over its size, then the
/// index and bytes of every 64 KiB chunk that is not all zeros. Holes are
/// skipped with SEEK_DATA/SEEK_HOLE, so multi-GiB sparse images hash in
/// moments, and the result depends only on the bytes, not on how the host
/// filesystem allocated them (mkfs leaves unwritten extents that later turn
/// into data without any byte changing). Any changed byte changes it.
pub fn sha256_file(path: &Path) -> String {
    use rustix::fs::{seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open for hashing");
    let size = f.metadata().expect("stat for hashing").len();
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; FINGERPRINT_CHUNK as usize];
    let mut next_chunk = 0u64;
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(&f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => panic!("SEEK_DATA on {}: {e}", path.display()),
        };
        let end = seek(&f, SeekFrom::Hole(start)).expect("SEEK_HOLE");
        let first = (start / FINGERPRINT_CHUNK).max(next_chunk);
        let last = end.div_ceil(FINGERPRINT_CHUNK);
        for chunk in first..last {
            let off = chunk * FINGERPRINT_CHUNK;
            let len = FINGERPRINT_CHUNK.min(size - off) as usize;
            f.read_exact_at(&mut buf[..len], off)
                .expect("read for hashing");
            if buf[..len].iter().any(|&b| b != 0) {
                h.update(chunk.to_le_bytes());
                h.update(&buf[..len]);
            }
        }
        next_chunk = last;
        pos = end.max(last * FINGERPRINT_CHUNK);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A file from an ext4 image, read on the host with e2fsprogs' debugfs (no
/// mount); `path` is absolute in the filesystem; `scratch` is where debugfs
/// puts it.
pub fn ext4_file(image: &Path, path: &str, scratch: &Path) -> Vec<u8> {
    let st = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {path} {}", scratch.display()))
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(scratch).unwrap_or_else(|e| panic!("{path} not in {}: {e}", image.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn fingerprint_sees_writes_into_holes_and_data() {
        use std::os::unix::fs::FileExt;
        let dir = temp_dir("fp");
        let p = make_disk(&dir.path().join("d"), 64 << 20, "x");
        let a = sha256_file(&p);
        assert_eq!(a, sha256_file(&p));
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0; 4096], 32 << 20).unwrap(); // zeros into a hole: same bytes
        assert_eq!(a, sha256_file(&p), "allocation alone must not matter");
        f.write_all_at(&[1], (32 << 20) + 5).unwrap(); // a byte into a hole
        let b = sha256_file(&p);
        assert_ne!(a, b);
        f.write_all_at(b"Z", 3).unwrap(); // a changed byte in data
        assert_ne!(b, sha256_file(&p));
        // Matches a plain read of the content.
        let bytes = std::fs::read(&p).unwrap();
        let mut h = Sha256::new();
        h.update((bytes.len() as u64).to_le_bytes());
        for (i, c) in bytes.chunks(FINGERPRINT_CHUNK as usize).enumerate() {
            if c.iter().any(|&x| x != 0) {
                h.update((i as u64).to_le_bytes());
                h.update(c);
            }
        }
        let plain: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha256_file(&p), plain);
    }
}
