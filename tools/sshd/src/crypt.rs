//! SHA-512 crypt (`$6$`), as specified in Ulrich Drepper's "Unix crypt
//! using SHA-256 and SHA-512" and as glibc and libxcrypt implement it: the
//! form of the one-time password's hash in /etc/shadow, which dropbear
//! checks with libcrypt's crypt(3).
//!
//! The setting is `$6$[rounds=N$]SALT`, SALT at most 16 characters (more
//! are ignored) up to the next `$`; N is clamped to 1000..=999999999 and
//! shown only when given. The result is the setting followed by `$` and
//! 86 characters of the 64-byte digest in crypt's base64 (`./0-9A-Za-z`,
//! little-endian 6-bit groups, bytes taken in the spec's fixed order).

use sha2::{Digest, Sha512};

/// crypt's base64 alphabet.
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Rounds when the setting names none.
pub const DEFAULT_ROUNDS: u32 = 5000;
const MIN_ROUNDS: u32 = 1000;
const MAX_ROUNDS: u32 = 999_999_999;
const MAX_SALT: usize = 16;

/// `crypt(key, setting)` for a `$6$` setting; an error names what is wrong
/// with the setting.
pub fn sha512_crypt(key: &[u8], setting: &str) -> Result<String, String> {
    let rest = setting
        .strip_prefix("$6$")
        .ok_or_else(|| format!("crypt setting {setting:?}: expected it to start with $6$"))?;
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, after) = r.split_once('$').ok_or_else(|| {
                format!("crypt setting {setting:?}: rounds=N without a $ after N")
            })?;
            let n: u64 = n
                .parse()
                .map_err(|_| format!("crypt setting {setting:?}: rounds {n:?} is not a number"))?;
            (Some(clamp_rounds(n)), after)
        }
        None => (None, rest),
    };
    let salt_full = rest.split('$').next().unwrap_or("");
    let salt: Vec<u8> = salt_full.bytes().take(MAX_SALT).collect();
    if let Some(bad) = salt.iter().find(|b| matches!(b, b':' | b'\n' | 0)) {
        return Err(format!(
            "crypt setting {setting:?}: salt byte {bad:#04x} cannot be stored in /etc/shadow"
        ));
    }
    let digest = digest(key, &salt, rounds.unwrap_or(DEFAULT_ROUNDS));
    let mut out = String::from("$6$");
    if let Some(n) = rounds {
        out.push_str(&format!("rounds={n}$"));
    }
    out.push_str(&String::from_utf8_lossy(&salt));
    out.push('$');
    out.push_str(&encode(&digest));
    Ok(out)
}

/// Whether `key` is the password of `hash` (a `$6$` crypt string);
/// false for anything else (a locked or empty field).
pub fn verify(key: &[u8], hash: &str) -> bool {
    match sha512_crypt(key, hash) {
        // Compared whole: the setting part is recomputed from `hash` too.
        Ok(h) => constant_time_eq(h.as_bytes(), hash.as_bytes()),
        Err(_) => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rounds asked for, within the spec's bounds.
fn clamp_rounds(n: u64) -> u32 {
    n.clamp(u64::from(MIN_ROUNDS), u64::from(MAX_ROUNDS)) as u32
}

/// The spec's steps 1-21: the 64-byte digest.
fn digest(key: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    // Digest B: key, salt, key.
    let b = Sha512::new()
        .chain_update(key)
        .chain_update(salt)
        .chain_update(key)
        .finalize();
    // Digest A: key, salt, then B for each full 64 bytes of the key and
    // its first (len mod 64) bytes, then for each bit of the key's length
    // from the lowest: B for a 1, the key for a 0.
    let mut a = Sha512::new().chain_update(key).chain_update(salt);
    let mut n = key.len();
    while n > 64 {
        a.update(b);
        n -= 64;
    }
    a.update(&b[..n]);
    let mut n = key.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(key);
        }
        n >>= 1;
    }
    let a = a.finalize();
    // P: the digest of the key repeated len(key) times, stretched or cut
    // to len(key) bytes.
    let mut dp = Sha512::new();
    for _ in 0..key.len() {
        dp.update(key);
    }
    let p = stretch(&dp.finalize(), key.len());
    // S: the digest of the salt repeated 16 + A[0] times, to len(salt).
    let mut ds = Sha512::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = stretch(&ds.finalize(), salt.len());
    let mut c: [u8; 64] = a.into();
    for i in 0..rounds {
        let mut h = Sha512::new();
        if i & 1 == 1 {
            h.update(&p);
        } else {
            h.update(c);
        }
        if i % 3 != 0 {
            h.update(&s);
        }
        if i % 7 != 0 {
            h.update(&p);
        }
        if i & 1 == 1 {
            h.update(c);
        } else {
            h.update(&p);
        }
        c = h.finalize().into();
    }
    c
}

/// `digest` repeated to `len` bytes.
fn stretch(digest: &[u8], len: usize) -> Vec<u8> {
    digest.iter().copied().cycle().take(len).collect()
}

/// The spec's step 22: the digest's bytes in groups of three (in this
/// order), each group as four characters of its 24 bits from the low end,
/// the last byte alone as two.
fn encode(d: &[u8; 64]) -> String {
    const ORDER: [(usize, usize, usize); 21] = [
        (0, 21, 42),
        (22, 43, 1),
        (44, 2, 23),
        (3, 24, 45),
        (25, 46, 4),
        (47, 5, 26),
        (6, 27, 48),
        (28, 49, 7),
        (50, 8, 29),
        (9, 30, 51),
        (31, 52, 10),
        (53, 11, 32),
        (12, 33, 54),
        (34, 55, 13),
        (56, 14, 35),
        (15, 36, 57),
        (37, 58, 16),
        (59, 17, 38),
        (18, 39, 60),
        (40, 61, 19),
        (62, 20, 41),
    ];
    let mut out = String::with_capacity(86);
    let mut put = |w: u32, n: usize| {
        let mut w = w;
        for _ in 0..n {
            out.push(ALPHABET[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    for (x, y, z) in ORDER {
        put(
            (u32::from(d[x]) << 16) | (u32::from(d[y]) << 8) | u32::from(d[z]),
            4,
        );
    }
    put(u32::from(d[63]), 2);
    out
}

/// `n` random bytes from the kernel (getrandom(2)).
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut raw = vec![0u8; n];
    let mut filled = 0;
    while filled < raw.len() {
        filled +=
            rustix::rand::getrandom(&mut raw[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(std::io::Error::from)?;
    }
    Ok(raw)
}

/// A fresh setting `$6$SALT` with 16 random salt characters (96 bits).
pub fn new_setting() -> std::io::Result<String> {
    let raw = random_bytes(MAX_SALT)?;
    // 256 is a multiple of 64: masking keeps the characters uniform.
    let salt: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect();
    Ok(format!("$6${salt}"))
}

/// Characters of a one-time password: lower case letters and digits
/// without the look-alikes 0/o and 1/l (easy to read off a console and to
/// type), 32 of them.
const PASSWORD_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Groups of four characters in a one-time password: 16 x 5 = 80 bits.
const PASSWORD_GROUPS: usize = 4;

/// A fresh one-time password, `xxxx-xxxx-xxxx-xxxx`.
pub fn new_password() -> std::io::Result<String> {
    let raw = random_bytes(PASSWORD_GROUPS * 4)?;
    let chars: Vec<char> = raw
        .iter()
        .map(|b| PASSWORD_ALPHABET[usize::from(b & 31)] as char)
        .collect();
    Ok(chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-512 test vectors of the specification ("Unix crypt using
    /// SHA-256 and SHA-512", Drepper): default rounds, rounds given,
    /// a salt cut to 16 characters, a long key, a short salt, rounds
    /// below the minimum raised to 1000.
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "$6$saltstring",
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "$6$rounds=10000$saltstringsaltstring",
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "$6$rounds=5000$toolongsaltstring",
            "This is just a test",
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
        ),
        (
            "$6$rounds=1400$anotherlongsaltstring",
            "a very much longer text to encrypt.  This one even stretches over morethan one line.",
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
        ),
        (
            "$6$rounds=77777$short",
            "we have a short salt string but not a short password",
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
        ),
        (
            "$6$rounds=123456$asaltof16chars..",
            "a short string",
            "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
        ),
        (
            "$6$rounds=10$roundstoolow",
            "the minimum number is still observed",
            "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
        ),
    ];

    #[test]
    fn the_specifications_test_vectors() {
        for (setting, key, want) in VECTORS {
            assert_eq!(
                sha512_crypt(key.as_bytes(), setting).unwrap(),
                *want,
                "{setting}"
            );
            // The result is itself a setting giving the same result.
            assert!(verify(key.as_bytes(), want), "{want}");
            assert!(!verify(b"wrong", want));
        }
    }

    /// An independent implementation: openssl's `passwd -6` (the same
    /// algorithm, OpenSSL's own code), on keys longer than a digest and
    /// of every length around the 64-byte block (openssl cannot take an
    /// empty one).
    #[test]
    fn agrees_with_openssl_passwd() {
        for len in [1usize, 63, 64, 65, 127, 128, 129, 200] {
            let key: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let out = std::process::Command::new("openssl")
                .args(["passwd", "-6", "-salt", "Qx.9/zZ", &key])
                .output()
                .expect("openssl (Debian's openssl package) is needed");
            assert!(out.status.success(), "openssl passwd failed");
            let want = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                sha512_crypt(key.as_bytes(), "$6$Qx.9/zZ").unwrap(),
                want,
                "key of {len} bytes"
            );
        }
    }

    #[test]
    fn bad_settings_are_errors_not_panics() {
        for s in [
            "",
            "$5$abc",
            "$6$rounds=$x",
            "$6$rounds=12",
            "$6$rounds=-5$x",
            "$6$ab:c",
            "*",
            "!",
        ] {
            assert!(sha512_crypt(b"k", s).is_err(), "{s}");
            assert!(!verify(b"k", s), "{s}");
        }
        // An empty salt is allowed by the spec.
        assert!(sha512_crypt(b"k", "$6$").unwrap().starts_with("$6$$"));
        assert_eq!(clamp_rounds(99_999_999_999_999), MAX_ROUNDS);
        assert_eq!(clamp_rounds(3), MIN_ROUNDS);
    }

    #[test]
    fn fresh_settings_and_passwords() {
        let s = new_setting().unwrap();
        assert_eq!(s.len(), 3 + 16);
        assert!(s[3..].bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(s, new_setting().unwrap());
        let p = new_password().unwrap();
        assert_eq!(p.len(), 19, "{p}");
        assert_eq!(p.matches('-').count(), 3, "{p}");
        assert!(p
            .bytes()
            .all(|b| b == b'-' || PASSWORD_ALPHABET.contains(&b)));
        let h = sha512_crypt(p.as_bytes(), &s).unwrap();
        assert!(verify(p.as_bytes(), &h));
    }

    proptest::proptest! {
        #[test]
        fn any_setting_gives_a_result_or_an_error(s in ".{0,40}", k in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(h) = sha512_crypt(&k, &s) {
                proptest::prop_assert!(verify(&k, &h));
            }
            let _ = sha512_crypt(&k, &format!("$6${s}"));
        }
    }
}
