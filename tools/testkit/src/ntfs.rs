//! NTFS test volumes made by ntfs-3g's own tools (Debian's `ntfs-3g`
//! package: mkntfs, ntfscp, ntfscat, ntfsfix), which also serve as the
//! independent readers. A missing tool fails the test, naming the package.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} is needed (apt-get install ntfs-3g): {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Makes `img` (created or truncated to `size` bytes, sparse) an empty NTFS
/// volume labelled `label` (`mkntfs -F -Q`: quick, on a file).
pub fn mkntfs(img: &Path, size: u64, label: &str) {
    std::fs::File::create(img)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("{}: {e}", img.display()));
    run(
        Command::new("mkntfs")
            .args(["-F", "-Q", "-L", label])
            .arg(img),
        "mkntfs",
    );
}

/// Copies `bytes` into the unmounted volume `img` as `/name` (ntfscp).
pub fn ntfscp(img: &Path, name: &str, bytes: &[u8]) {
    let src = img.with_extension(format!("ntfscp-{}", name.replace('/', "_")));
    std::fs::write(&src, bytes).unwrap();
    run(
        Command::new("ntfscp").arg(img).arg(&src).arg(name),
        "ntfscp",
    );
    let _ = std::fs::remove_file(&src);
}

/// A file's bytes from the unmounted volume (ntfscat).
pub fn ntfscat(img: &Path, name: &str) -> Vec<u8> {
    run(Command::new("ntfscat").arg(img).arg(name), "ntfscat")
}

/// Marks the volume hibernated the way Windows does: a `hiberfil.sys` in the
/// root whose first bytes are "hibr" (ntfs-3g then refuses to write).
pub fn hibernate(img: &Path) {
    let mut hib = b"hibr".to_vec();
    hib.resize(64 << 10, 0);
    ntfscp(img, "hiberfil.sys", &hib);
}

/// `ntfsfix -n` (no action): Ok with its report when it finds the volume
/// consistent, Err with its report otherwise.
pub fn ntfsfix_check(img: &Path) -> Result<String, String> {
    let out = Command::new("ntfsfix")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("ntfsfix is needed (apt-get install ntfs-3g): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
