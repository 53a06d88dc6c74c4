//! Public keys: the `authorized_keys` line (`TYPE BASE64 [COMMENT]`, as
//! OpenSSH writes `.pub` files), the kernel command line's spellings of it
//! without spaces (`TYPE:BASE64[:COMMENT]`, `TYPE,BASE64[,COMMENT]`), and
//! the SHA-256 fingerprint OpenSSH shows (`SHA256:` and the unpadded
//! base64 of the SHA-256 of the key blob).
//!
//! The key blob (RFC 4253 section 6.6): a sequence of SSH strings, each a
//! u32 big-endian length and that many bytes; the first string is the key
//! type, which must be the type named before the base64.

use sha2::{Digest, Sha256};
use std::fmt;

/// Key types dropbear 2022.83 accepts for a login (DSS is left out: it is
/// disabled in current clients and too weak).
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A public key that may log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    /// The decoded key blob.
    pub blob: Vec<u8>,
    /// The comment, printable ASCII only (may be empty).
    pub comment: String,
}

impl PublicKey {
    /// `TYPE BASE64 [COMMENT]`: an authorized_keys or `.pub` line, without
    /// options (a line with options before the type is refused: the
    /// appliance writes its own).
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        let mut words = text.splitn(3, [' ', '\t']);
        let kind = words.next().unwrap_or("");
        let b64 = words.next().unwrap_or("").trim();
        let comment = words.next().unwrap_or("").trim();
        PublicKey::from_parts(kind, b64, comment)
    }

    /// The kernel command line's forms: `TYPE:BASE64[:COMMENT]` or
    /// `TYPE,BASE64[,COMMENT]` (no spaces), or the line itself when the
    /// boot loader kept spaces inside double quotes.
    pub fn parse_joined(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.contains([' ', '\t']) {
            return PublicKey::parse(text);
        }
        let sep = [':', ',']
            .into_iter()
            .filter_map(|c| text.find(c).map(|at| (at, c)))
            .min()
            .map(|(_, c)| c)
            .ok_or_else(|| {
                format!(
                    "key {text:?}: expected TYPE:BASE64 or TYPE,BASE64 (e.g. ssh-ed25519:AAAAC3...)"
                )
            })?;
        let mut parts = text.splitn(3, sep);
        let kind = parts.next().unwrap_or("");
        let b64 = parts.next().unwrap_or("");
        let comment = parts.next().unwrap_or("");
        PublicKey::from_parts(kind, b64, comment)
    }

    fn from_parts(kind: &str, b64: &str, comment: &str) -> Result<PublicKey, String> {
        if !KEY_TYPES.contains(&kind) {
            return Err(format!(
                "key type {kind:?}: expected one of {}",
                KEY_TYPES.join(", ")
            ));
        }
        if b64.is_empty() {
            return Err(format!("{kind} key: the base64 part is missing"));
        }
        let blob = base64_decode(b64).map_err(|e| format!("{kind} key: {e}"))?;
        let inner = ssh_string(&blob, 0).ok_or_else(|| {
            format!(
                "{kind} key: blob of {} bytes has no type string at offset 0",
                blob.len()
            )
        })?;
        if inner != kind.as_bytes() {
            return Err(format!(
                "{kind} key: the blob says {:?} at offset 4, expected {kind:?}",
                String::from_utf8_lossy(inner)
            ));
        }
        // The key material after the type: at least one more string.
        let after = 4 + inner.len();
        if ssh_string(&blob, after).is_none() {
            return Err(format!(
                "{kind} key: blob of {} bytes ends after its type (offset {after})",
                blob.len()
            ));
        }
        Ok(PublicKey {
            kind: kind.to_string(),
            blob,
            comment: comment
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect::<String>()
                .trim()
                .to_string(),
        })
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

impl fmt::Display for PublicKey {
    /// The authorized_keys line, without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, base64_encode(&self.blob))?;
        if !self.comment.is_empty() {
            write!(f, " {}", self.comment)?;
        }
        Ok(())
    }
}

/// Keys from the text of a key file (`authorized_keys` or `.pub`): one per
/// line, blank lines and `#` comments skipped; errors name the line.
pub fn parse_key_file(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        keys.push(PublicKey::parse(l).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    if keys.is_empty() {
        return Err("no key in it".into());
    }
    Ok(keys)
}

/// The SSH string at `at`: u32 big-endian length, then the bytes.
fn ssh_string(blob: &[u8], at: usize) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize;
    blob.get(at + 4..(at + 4).checked_add(len)?)
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of `blob`.
pub fn fingerprint(blob: &[u8]) -> String {
    let enc = base64_encode(&Sha256::digest(blob));
    format!("SHA256:{}", enc.trim_end_matches('='))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let w = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((w >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 4648 base64; padding optional, nothing else allowed. Errors name
/// the offending character's offset.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return Err(format!(
            "base64: {} padding characters at the end",
            text.len() - body.len()
        ));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for (i, c) in body.bytes().enumerate() {
        let v = B64
            .iter()
            .position(|&b| b == c)
            .ok_or_else(|| format!("base64: character {:?} at offset {i}", c as char))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if body.len() % 4 == 1 {
        return Err(format!(
            "base64: {} characters cannot be a whole encoding",
            body.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn base64_round_trips_and_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
            assert_eq!(
                base64_decode(enc.trim_end_matches('=')).unwrap(),
                raw.as_bytes()
            );
        }
        assert!(base64_decode("Zm9v!").unwrap_err().contains("offset 4"));
        assert!(base64_decode("Z").is_err());
        assert!(base64_decode("Zg===").is_err());
    }

    /// A key made by the host's ssh-keygen, in each spelling, against the
    /// fingerprint ssh-keygen -l prints for it.
    #[test]
    fn keys_from_ssh_keygen_in_every_spelling() {
        let dir = testkit::TempDir::new("sshd-keys");
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let path = dir.join(format!("k-{kind}"));
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "admin@lab: desk", "-f"])
                .arg(&path)
                .status()
                .expect("ssh-keygen (Debian's openssh-client) is needed");
            assert!(st.success());
            let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
            let out = Command::new("ssh-keygen")
                .arg("-lf")
                .arg(path.with_extension("pub"))
                .output()
                .unwrap();
            let listed = String::from_utf8_lossy(&out.stdout);
            let want = listed.split_whitespace().nth(1).unwrap().to_string();
            let k = PublicKey::parse(&line).unwrap();
            assert_eq!(k.fingerprint(), want, "{kind}");
            assert_eq!(k.comment, "admin@lab: desk");
            assert_eq!(k.to_string(), line.trim());
            let mut w = line.split_whitespace();
            let (t, b) = (w.next().unwrap(), w.next().unwrap());
            for joined in [
                format!("{t}:{b}"),
                format!("{t},{b}"),
                format!("{t}:{b}:admin@lab"),
                format!("{t},{b},admin@lab"),
            ] {
                let j = PublicKey::parse_joined(&joined).unwrap();
                assert_eq!(j.blob, k.blob, "{joined}");
                assert_eq!(j.kind, t);
            }
            assert_eq!(PublicKey::parse_joined(line.trim()).unwrap(), k);
            assert_eq!(
                parse_key_file(&format!("# mine\n\n{line}")).unwrap(),
                vec![k]
            );
        }
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let good = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        for (text, want) in [
            ("ssh-dss AAAA", "key type \"ssh-dss\""),
            ("ssh-ed25519", "base64 part is missing"),
            ("ssh-ed25519 AA!A", "character '!' at offset 2"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "expected \"ssh-rsa\"",
            ),
            ("ssh-ed25519 AAAA", "no type string"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "ends after its type"),
        ] {
            let e = PublicKey::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(PublicKey::parse(&format!("ssh-ed25519 {good}")).is_ok());
        let e = PublicKey::parse_joined("ssh-ed25519").unwrap_err();
        assert!(e.contains("TYPE:BASE64"), "{e}");
        assert!(parse_key_file("# nothing\n")
            .unwrap_err()
            .contains("no key"));
        let e = parse_key_file(&format!("ssh-ed25519 {good}\nbad\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,120}") {
            let _ = PublicKey::parse(&s);
            let _ = PublicKey::parse_joined(&s);
            let _ = parse_key_file(&s);
            let _ = base64_decode(&s);
        }

        #[test]
        fn base64_round_trips(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            proptest::prop_assert_eq!(base64_decode(&base64_encode(&b)).unwrap(), b);
        }
    }
}
