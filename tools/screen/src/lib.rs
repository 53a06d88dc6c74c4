//! Text for the appliance's consoles: an 80x24 serial line or VGA text
//! screen of unknown terminal, so lines stay within 79 columns and counts
//! read "1 finding", "2 findings". [`noecho`]: a secret typed unseen.

pub mod noecho;
pub use noecho::EchoOff;

/// Lines stay within an 80-column serial console (one column spare so a
/// terminal that wraps at the last column does not add blank lines).
pub const SCREEN_WIDTH: usize = 79;

/// `1536` -> `1.5 KiB`; exact for small values.
pub fn human_size(bytes: u64) -> String {
    scaled(bytes, 1024, ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])
}

/// Decimal units as on a drive's label and in transfer rates:
/// `128035676160` -> `128.0 GB`.
pub fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000, ["kB", "MB", "GB", "TB", "PB", "EB"])
}

fn scaled(bytes: u64, base: u64, units: [&str; 6]) -> String {
    if bytes < base {
        return format!("{bytes} B");
    }
    let base = base as f64;
    let mut v = bytes as f64 / base;
    let mut unit = 0;
    while v >= base && unit < units.len() - 1 {
        v /= base;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

/// A duration as `h:mm:ss` (ETAs of long passes).
pub fn hms(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Lets progress lines through at most once a period, and the last line
/// always: what a console (a 9600-baud serial line) can take.
#[derive(Debug)]
pub struct Throttle {
    period: std::time::Duration,
    last: Option<std::time::Instant>,
}

impl Throttle {
    /// The first line passes at once.
    pub fn new(period: std::time::Duration) -> Throttle {
        Throttle { period, last: None }
    }

    /// The first line too waits a period: a job that ends within it shows
    /// only its last line.
    pub fn after(period: std::time::Duration) -> Throttle {
        Throttle {
            period,
            last: Some(std::time::Instant::now()),
        }
    }

    /// Whether to print now; `last_line` (the job ended) always passes.
    pub fn ready(&mut self, last_line: bool) -> bool {
        if !last_line && self.last.is_some_and(|t| t.elapsed() < self.period) {
            return false;
        }
        self.last = Some(std::time::Instant::now());
        true
    }
}

/// "1 finding", "2 findings".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Breaks `line` at spaces so no line is longer than `width` columns;
/// continuation lines are indented by `indent`. A word longer than a
/// continuation line (a WWN, a long path) is cut into pieces that fit.
/// The result ends with a newline.
pub fn wrap_words(line: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut current = String::new();
    let mut current_len = 0;
    // Keep the leading indentation of the first line as part of its first word.
    let leading = line.len() - line.trim_start().len();
    let room = width.saturating_sub(indent).max(1);
    let words = line.trim_start().split(' ').flat_map(|w| {
        let chars: Vec<char> = w.chars().collect();
        if chars.len() <= room {
            vec![w.to_string()]
        } else {
            chars.chunks(room).map(|c| c.iter().collect()).collect()
        }
    });
    for (i, word) in words.enumerate() {
        let word = word.as_str();
        let word_len = word.chars().count();
        if i == 0 {
            current = format!("{}{word}", &line[..leading]);
            current_len = leading + word_len;
            continue;
        }
        if current_len + 1 + word_len > width && current_len > indent {
            out.push_str(current.trim_end());
            out.push('\n');
            current = " ".repeat(indent);
            current_len = indent;
            if word.is_empty() {
                continue;
            }
            current.push_str(word);
            current_len += word_len;
        } else {
            current.push(' ');
            current.push_str(word);
            current_len += 1 + word_len;
        }
    }
    out.push_str(current.trim_end());
    out.push('\n');
    out
}

/// [`wrap_words`] on every line of `text`, continuation lines indented
/// two more than the line's own indentation.
pub fn wrap_text(text: &str, width: usize) -> String {
    text.lines()
        .map(|l| {
            let indent = l.len() - l.trim_start().len() + 2;
            wrap_words(l, width, indent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_line_by_line_under_its_indentation() {
        let t = format!(
            "Result: {}\n  MISMATCH {}\nok\n",
            "x ".repeat(50),
            "y ".repeat(50)
        );
        let w = wrap_text(&t, SCREEN_WIDTH);
        assert!(w.lines().all(|l| l.len() <= SCREEN_WIDTH), "{w}");
        assert!(w.lines().nth(1).unwrap().starts_with("  x"), "{w}");
        assert!(w.contains("\n    y"), "{w}");
        assert!(w.ends_with("ok\n"));
    }

    #[test]
    fn throttle_passes_the_first_and_last_lines() {
        use std::time::Duration;
        let mut t = Throttle::new(Duration::from_secs(3600));
        assert!(t.ready(false), "the first line");
        assert!(!t.ready(false), "within the period");
        assert!(t.ready(true), "the last line");
        let mut t = Throttle::after(Duration::from_secs(3600));
        assert!(!t.ready(false), "waits a period first");
        assert!(t.ready(true));
        let mut t = Throttle::new(Duration::ZERO);
        assert!(t.ready(false) && t.ready(false));
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(hms(Duration::from_secs(59)), "0:00:59");
        assert_eq!(hms(Duration::from_secs(3 * 3600 + 61)), "3:01:01");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(decimal_size(999), "999 B");
        assert_eq!(decimal_size(1_500_000), "1.5 MB");
        assert_eq!(decimal_size(128_035_676_160), "128.0 GB");
    }

    #[test]
    fn plural_forms() {
        assert_eq!(plural(1, "finding", "findings"), "1 finding");
        assert_eq!(plural(0, "finding", "findings"), "0 findings");
        assert_eq!(plural(2, "device", "devices"), "2 devices");
    }

    #[test]
    fn words_longer_than_a_line_are_cut_to_fit() {
        let wwn = format!("nvme.{}", "1b36".repeat(30));
        let line = format!("  {:<18} {wwn}", "wwn");
        let wrapped = wrap_words(&line, SCREEN_WIDTH, 21);
        for l in wrapped.lines() {
            assert!(l.chars().count() <= SCREEN_WIDTH, "{l:?}");
        }
        let joined: String = wrapped.lines().map(str::trim).collect::<Vec<_>>().join("");
        assert!(joined.ends_with(&wwn), "{wrapped}");
    }
}
