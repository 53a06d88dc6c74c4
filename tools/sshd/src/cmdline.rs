//! `rescue.ssh=` on the kernel command line: `rescue.ssh=once` for a
//! one-time password, or a public key with no spaces in it:
//! `rescue.ssh=ssh-ed25519:AAAAC3...` (or with `,`, and optionally a
//! comment after a second separator), or the key line in double quotes
//! where the boot loader keeps them (`rescue.ssh="ssh-ed25519 AAAA... c"`).
//! The option may be given more than once: every key may log in, and
//! `once` adds a one-time password. `rescue.ssh.port=N` picks the port
//! (default 22).

use crate::keys::PublicKey;
use crate::Request;

/// What the command line asks for: None without `rescue.ssh=`; Err names
/// the word that could not be read (the server is then not started).
pub fn parse(cmdline: &str) -> Option<Result<Request, String>> {
    let mut req = Request::default();
    let mut seen = false;
    let mut errors = Vec::new();
    for word in split_words(cmdline) {
        if let Some(v) = word.strip_prefix("rescue.ssh=") {
            seen = true;
            if v == "once" {
                req.once = true;
            } else if v.is_empty() {
                errors.push("rescue.ssh=: expected a key or 'once'".to_string());
            } else {
                match PublicKey::parse_joined(v) {
                    Ok(k) => req.keys.push(k),
                    Err(e) => errors.push(format!("rescue.ssh=: {e}")),
                }
            }
        } else if let Some(v) = word.strip_prefix("rescue.ssh.port=") {
            match v.parse::<u16>() {
                Ok(p) if p > 0 => req.port = p,
                _ => errors.push(format!(
                    "rescue.ssh.port={v}: expected a port number 1-65535"
                )),
            }
        }
    }
    if !seen {
        return None;
    }
    Some(if errors.is_empty() {
        Ok(req)
    } else {
        Err(errors.join("; "))
    })
}

/// Words of the command line; double quotes group (`a="b c"`) and are
/// removed, as PID 1 reads them.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn keys_once_and_port() {
        assert!(parse("console=ttyS0 rescue.net=dhcp quiet").is_none());
        let r = parse("quiet rescue.ssh=once").unwrap().unwrap();
        assert!(r.once && r.keys.is_empty() && r.port == 22);
        for form in [
            format!("ssh-ed25519:{B64}"),
            format!("ssh-ed25519,{B64}"),
            format!("ssh-ed25519:{B64}:admin@desk"),
            format!("\"ssh-ed25519 {B64} admin@desk\""),
        ] {
            let r = parse(&format!("rescue.net=dhcp rescue.ssh={form} console=ttyS0"))
                .unwrap()
                .unwrap();
            assert_eq!(r.keys.len(), 1, "{form}");
            assert!(!r.once);
            assert_eq!(r.keys[0].kind, "ssh-ed25519");
        }
        let r = parse(&format!(
            "rescue.ssh=ssh-ed25519:{B64} rescue.ssh=once rescue.ssh.port=2222"
        ))
        .unwrap()
        .unwrap();
        assert!(r.once && r.keys.len() == 1 && r.port == 2222);
    }

    #[test]
    fn bad_words_are_named() {
        let e = parse("rescue.ssh=").unwrap().unwrap_err();
        assert!(e.contains("expected a key or 'once'"), "{e}");
        let e = parse("rescue.ssh=ssh-ed25519:AA!").unwrap().unwrap_err();
        assert!(e.contains("offset 2"), "{e}");
        let e = parse("rescue.ssh=once rescue.ssh.port=0")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("rescue.ssh.port=0"), "{e}");
        let e = parse("rescue.ssh=yes").unwrap().unwrap_err();
        assert!(e.contains("TYPE:BASE64"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse(&s);
            let _ = parse(&format!("rescue.ssh={s}"));
        }
    }
}
