//! The kernel command line options PID 1 understands.

/// A console the kernel was told about with `console=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console {
    /// Device node, e.g. `/dev/ttyS0`, `/dev/tty1`.
    pub path: String,
    /// Baud rate for serial lines (`console=ttyS0,115200n8`).
    pub baud: Option<u32>,
}

impl Console {
    pub fn is_serial(&self) -> bool {
        self.baud.is_some() || self.path.starts_with("/dev/ttyS") || self.path.contains("hvc")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub consoles: Vec<Console>,
    /// `rescue.script=PATH`: run this script unattended, then power off.
    pub script: Option<String>,
    /// `rescue.modules=a,b`: extra modules to load.
    pub extra_modules: Vec<String>,
    /// `rescue.nomodules`: no automatic module loading.
    pub no_modules: bool,
    /// `rescue.shell`: a shell instead of the menu on every console.
    pub shell: bool,
}

pub fn parse(cmdline: &str) -> Options {
    let mut o = Options::default();
    for word in split_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match (key, value) {
            ("console", Some(v)) => {
                let c = parse_console(v);
                if !o.consoles.contains(&c) {
                    o.consoles.push(c);
                }
            }
            ("rescue.script", Some(v)) if !v.is_empty() => o.script = Some(v.to_string()),
            ("rescue.modules", Some(v)) => o.extra_modules.extend(
                v.split(',')
                    .filter(|m| !m.is_empty())
                    .map(|m| m.to_string()),
            ),
            ("rescue.nomodules", _) => o.no_modules = true,
            ("rescue.shell", _) => o.shell = true,
            _ => {}
        }
    }
    o
}

/// Words of the command line; double quotes group (`a="b c"`).
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

fn parse_console(v: &str) -> Console {
    let (name, opts) = match v.split_once(',') {
        Some((n, o)) => (n, Some(o)),
        None => (v, None),
    };
    // tty0 means "the current virtual terminal", which is tty1 at boot.
    let name = if name == "tty0" { "tty1" } else { name };
    let baud = opts.and_then(|o| {
        let digits: String = o.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    });
    let baud = baud.or_else(|| name.starts_with("ttyS").then_some(9600));
    Console {
        path: format!("/dev/{name}"),
        baud,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles_scripts_and_flags() {
        let o = parse(
            "BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 quiet rescue.script=/s.txt \
             rescue.modules=raid1,,dm_mod rescue.nomodules",
        );
        assert_eq!(
            o.consoles,
            vec![
                Console {
                    path: "/dev/tty1".into(),
                    baud: None
                },
                Console {
                    path: "/dev/ttyS0".into(),
                    baud: Some(115200)
                }
            ]
        );
        assert_eq!(o.script.as_deref(), Some("/s.txt"));
        assert_eq!(o.extra_modules, ["raid1", "dm_mod"]);
        assert!(o.no_modules);
        assert!(!o.shell);
        assert!(o.consoles[1].is_serial() && !o.consoles[0].is_serial());
    }

    #[test]
    fn duplicates_and_odd_values() {
        let o = parse("console=ttyS1 console=ttyS1 rescue.script= rescue.shell x=\"a b\"");
        assert_eq!(o.consoles.len(), 1);
        assert_eq!(o.consoles[0].baud, Some(9600));
        assert_eq!(o.script, None);
        assert!(o.shell);
        assert_eq!(parse("").consoles, vec![]);
    }
}
