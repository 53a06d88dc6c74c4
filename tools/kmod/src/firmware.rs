//! The firmware an image lacks: `/lib/firmware/MISSING`, written by
//! image-build, read by PID 1 (a line on the consoles when a device's
//! driver is loaded whose firmware is not there) and by `rescue net list`.
//!
//! Text format, one entry per line: `MODULE FILE`, the module's name as
//! modules.dep names it (`-` and `_` alike) and the firmware's path
//! relative to `/lib/firmware` as the module's `firmware=` modinfo names
//! it (no blanks in either). Blank lines and lines starting with `#` are
//! comments.

/// Where the list is in the appliance.
pub const MISSING_PATH: &str = "/lib/firmware/MISSING";

/// One firmware file a module may ask for that the image does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// Normalized module name (`_`, see [`crate::normalize`]).
    pub module: String,
    /// Path relative to /lib/firmware.
    pub file: String,
}

/// Parses the list. Errors name the line (1-based) and what was found.
pub fn parse_missing(text: &str) -> Result<Vec<Missing>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            [module, file] => out.push(Missing {
                module: crate::normalize(module),
                file: (*file).to_string(),
            }),
            _ => {
                let shown: String = t.chars().take(80).collect();
                return Err(format!(
                    "missing-firmware list line {}: expected 'MODULE FILE', found {} words: '{shown}'",
                    i + 1,
                    words.len()
                ));
            }
        }
    }
    Ok(out)
}

/// The list as text, with a heading comment; [`parse_missing`] reads it back.
pub fn render_missing(list: &[Missing]) -> String {
    let mut s = String::from(
        "# Firmware the modules of this image may ask for that it does not hold:\n# MODULE FILE (relative to /lib/firmware)\n",
    );
    for m in list {
        s.push_str(&format!("{} {}\n", m.module, m.file));
    }
    s
}

/// The files `module` may ask for that are missing, in list order.
pub fn missing_for<'a>(list: &'a [Missing], module: &str) -> Vec<&'a str> {
    let m = crate::normalize(module);
    list.iter()
        .filter(|x| x.module == m)
        .map(|x| x.file.as_str())
        .collect()
}

/// `a.fw` or `a.fw, b.fw` or `a.fw, b.fw and 3 more`: a short list of
/// missing files for a message.
pub fn short_list(files: &[&str]) -> String {
    const SHOWN: usize = 2;
    let mut s = files
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > SHOWN {
        s.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_comments_blanks_and_normalizes() {
        let l = parse_missing(
            "# heading\n\nbnx2x bnx2x/bnx2x-e2-7.13.21.0.fw\n  xhci-pci-renesas renesas_usb_fw.mem  \n",
        )
        .unwrap();
        assert_eq!(
            l,
            [
                Missing {
                    module: "bnx2x".into(),
                    file: "bnx2x/bnx2x-e2-7.13.21.0.fw".into()
                },
                Missing {
                    module: "xhci_pci_renesas".into(),
                    file: "renesas_usb_fw.mem".into()
                }
            ]
        );
        assert_eq!(missing_for(&l, "xhci-pci-renesas"), ["renesas_usb_fw.mem"]);
        assert!(missing_for(&l, "tg3").is_empty());
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_missing("a b\nonlyone\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("found 1 words"), "{e}");
        let e = parse_missing("a b c\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("found 3 words"), "{e}");
    }

    #[test]
    fn short_lists() {
        assert_eq!(short_list(&["a"]), "a");
        assert_eq!(short_list(&["a", "b"]), "a, b");
        assert_eq!(short_list(&["a", "b", "c", "d"]), "a, b and 2 more");
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec(("[a-z0-9_]{1,12}", "[a-zA-Z0-9_./-]{1,40}"), 0..20)) {
            let list: Vec<Missing> = entries
                .iter()
                .map(|(m, f)| Missing { module: m.clone(), file: f.clone() })
                .collect();
            prop_assert_eq!(parse_missing(&render_missing(&list)).unwrap(), list);
        }

        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse_missing(&text);
        }
    }
}
