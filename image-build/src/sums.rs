//! SHA-256 of the built artifacts, printed and written to `SHA256SUMS`
//! beside them in the format `sha256sum -c` reads (`HEX  NAME`, names
//! relative to that directory), so an admin can check a download, a copy
//! on a BMC share, or what was written to a stick.

use crate::Error;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The name of the checksum file written beside the artifacts.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// SHA-256 of a file's bytes, lowercase hex; read in 1 MiB pieces, so a
/// stick image with a large RESCUEDATA partition is not read into memory.
pub fn sha256_file_hex(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hashes `names` (files in `dir`) and writes `dir/SHA256SUMS` with one
/// line per file, in the order given. Returns (name, hex) pairs.
pub fn write_sha256sums(dir: &Path, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
    let mut sums = Vec::new();
    let mut text = String::new();
    for name in names {
        let hex = sha256_file_hex(&dir.join(name))?;
        // Two spaces: text mode in sha256sum's format (`*` would be binary
        // mode, which GNU sha256sum treats the same on Linux).
        text += &format!("{hex}  {name}\n");
        sums.push((name.to_string(), hex));
    }
    crate::write_atomically(&dir.join(SUMS_FILE), text.as_bytes())?;
    Ok(sums)
}
