//! The pairing code: 16 random characters of Crockford's base32 (80 bits),
//! shown as `ABCD-EFGH-JKMN-PQRS`, and the Noise pre-shared key derived
//! from it.
//!
//! Why 80 bits and a plain hash as the KDF: a passive eavesdropper who
//! records the first handshake message can test guesses offline (the
//! message's AEAD tag is keyed by the PSK), so the code alone must carry
//! enough entropy: 2^80 guesses is out of reach however fast the KDF is,
//! and a slow KDF would buy nothing against that while costing every
//! connection. Online guessing is bounded much tighter: the receiver
//! retires its code after [`crate::receiver::WRONG_CODE_LIMIT`] wrong ones.

use sha2::{Digest, Sha256};
use std::fmt;

/// Crockford's base32: no I, L, O, U (read as 1, 1, 0 and refused).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a code (5 bits each).
pub const CODE_CHARS: usize = 16;

/// A pairing code, normalized (upper case, no separators).
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

// Never printed by accident (logs, panics): Debug hides it.
impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

impl PairingCode {
    /// A fresh code from the kernel's random generator (getrandom(2)).
    pub fn generate() -> std::io::Result<PairingCode> {
        let mut raw = [0u8; CODE_CHARS];
        let mut filled = 0;
        while filled < raw.len() {
            filled +=
                rustix::rand::getrandom(&mut raw[filled..], rustix::rand::GetRandomFlags::empty())
                    .map_err(std::io::Error::from)?;
        }
        // 256 is a multiple of 32: masking keeps the characters uniform.
        Ok(PairingCode(
            raw.iter()
                .map(|b| ALPHABET[usize::from(b & 31)] as char)
                .collect(),
        ))
    }

    /// Reads a code as typed: case, spaces and dashes do not matter; `O` is
    /// read as 0, `I` and `L` as 1.
    pub fn parse(text: &str) -> Result<PairingCode, String> {
        let mut s = String::with_capacity(CODE_CHARS);
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' | '\n' | '\r' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(format!(
                    "the pairing code has a character that is not in it: '{}' (codes are {CODE_CHARS} letters and digits, e.g. ABCD-EFGH-JKMN-PQRS)",
                    c.escape_default()
                ));
            }
            s.push(c);
        }
        if s.len() != CODE_CHARS {
            return Err(format!(
                "the pairing code has {} characters, expected {CODE_CHARS} (e.g. ABCD-EFGH-JKMN-PQRS)",
                s.len()
            ));
        }
        Ok(PairingCode(s))
    }

    /// Grouped by four for the screen: `ABCD-EFGH-JKMN-PQRS`.
    pub fn display(&self) -> String {
        let b = self.0.as_bytes();
        b.chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The Noise PSK: SHA-256 over a domain label and the normalized code.
    pub fn psk(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"rescue labstream v1 pairing code\0");
        h.update(self.0.as_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_roundtrip() {
        let a = PairingCode::generate().unwrap();
        let b = PairingCode::generate().unwrap();
        assert_ne!(a, b);
        let shown = a.display();
        assert_eq!(shown.len(), CODE_CHARS + 3);
        assert_eq!(PairingCode::parse(&shown).unwrap(), a);
        assert_eq!(PairingCode::parse(&shown.to_lowercase()).unwrap(), a);
        assert_eq!(a.psk(), PairingCode::parse(&shown).unwrap().psk());
        assert_ne!(a.psk(), b.psk());
    }

    #[test]
    fn typed_forms_normalize() {
        let c = PairingCode::parse("abcd efgh jkmn pqrs\n").unwrap();
        assert_eq!(c.display(), "ABCD-EFGH-JKMN-PQRS");
        assert_eq!(
            PairingCode::parse("0O1I-L000-0000-0000").unwrap().display(),
            "0011-1000-0000-0000"
        );
        assert!(PairingCode::parse("ABCD-EFGH")
            .unwrap_err()
            .contains("expected 16"));
        assert!(PairingCode::parse("ABCD-EFGH-JKMN-PQRU")
            .unwrap_err()
            .contains("'U'"));
        assert!(format!("{c:?}").contains(".."));
    }
}
