//! The markers that frame unattended-mode output (`rescue.script=`), in one
//! place for both sides: rescue-init prints them, qemu-tests (and labs)
//! parse them. The format is a stable contract documented in the README:
//!
//! ```text
//! === rescue: <command> ===
//! ...output of the command (stdout and stderr)...
//! === end: <command> (exit N) ===
//! ...
//! === rescue.script done ===
//! ```
//!
//! and, when the script itself cannot be read,
//! `=== rescue.script error: <path>: <error> ===` before the done marker.

use std::fmt::Display;

/// Opens a command's section: `BEGIN_PREFIX` + command + [`CLOSE`].
pub const BEGIN_PREFIX: &str = "=== rescue: ";
/// Closes a command's section: `END_PREFIX` + command + ` (exit N)` + [`CLOSE`].
pub const END_PREFIX: &str = "=== end: ";
/// Ends every marker line (before its newline).
pub const CLOSE: &str = " ===";
/// The last line of an unattended run, before the machine powers off.
pub const DONE: &str = "=== rescue.script done ===";

/// The line that opens `command`'s section (without newline).
pub fn begin(command: &str) -> String {
    format!("{BEGIN_PREFIX}{command}{CLOSE}")
}

/// The line that closes `command`'s section with its exit code.
pub fn end(command: &str, exit: i32) -> String {
    format!("{END_PREFIX}{command} (exit {exit}){CLOSE}")
}

/// The line printed when the script at `path` cannot be read.
pub fn script_error(path: &str, error: impl Display) -> String {
    format!("=== rescue.script error: {path}: {error}{CLOSE}")
}

/// One command's framed output from an unattended run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub command: String,
    pub output: String,
    /// The exit code in the end marker (-1 when it is not a number).
    pub exit: i32,
}

/// Splits a console transcript into the script's sections. Carriage returns
/// are removed; text outside the sections (boot messages) is skipped; a
/// section without its end marker (the run was cut short) ends the list.
pub fn parse(transcript: &str) -> Vec<Section> {
    let text = transcript.replace('\r', "");
    let open_eol = format!("{CLOSE}\n");
    let close_exit = format!("){CLOSE}");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN_PREFIX) {
        let after = &rest[start + BEGIN_PREFIX.len()..];
        let Some(eol) = after.find(&open_eol) else {
            break;
        };
        let command = after[..eol].to_string();
        let body = &after[eol + open_eol.len()..];
        let end_marker = format!("{END_PREFIX}{command} (exit ");
        let Some(end) = body.find(&end_marker) else {
            break;
        };
        let output = body[..end].to_string();
        let tail = &body[end + end_marker.len()..];
        let close = tail.find(&close_exit).unwrap_or(0);
        let exit = tail[..close].parse().unwrap_or(-1);
        out.push(Section {
            command,
            output,
            exit,
        });
        rest = &tail[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_the_documented_lines() {
        assert_eq!(begin("probe --json"), "=== rescue: probe --json ===");
        assert_eq!(end("probe --json", 2), "=== end: probe --json (exit 2) ===");
        assert_eq!(
            script_error("/job.txt", "No such file"),
            "=== rescue.script error: /job.txt: No such file ==="
        );
        assert_eq!(DONE, "=== rescue.script done ===");
    }

    #[test]
    fn sections_are_split_by_markers() {
        let t = "noise\r\n=== rescue: probe --json ===\r\n{\"a\":1}\r\n=== end: probe --json (exit 0) ===\r\n\
                 === rescue: bad ===\r\nerr\r\n=== end: bad (exit 2) ===\r\n=== rescue.script done ===\r\n";
        let s = parse(t);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].command, "probe --json");
        assert_eq!(s[0].output, "{\"a\":1}\n");
        assert_eq!(s[0].exit, 0);
        assert_eq!(s[1].command, "bad");
        assert_eq!(s[1].output, "err\n");
        assert_eq!(s[1].exit, 2);
    }

    #[test]
    fn what_the_writer_prints_the_parser_reads() {
        let mut t = String::from("boot noise\n");
        for (cmd, body, code) in [("gpt show /dev/sda", "x\ny\n", 1), ("md scan", "", 0)] {
            t += &format!("{}\n{body}{}\n", begin(cmd), end(cmd, code));
        }
        t += DONE;
        let s = parse(&t);
        assert_eq!(
            s,
            [
                Section {
                    command: "gpt show /dev/sda".into(),
                    output: "x\ny\n".into(),
                    exit: 1
                },
                Section {
                    command: "md scan".into(),
                    output: String::new(),
                    exit: 0
                }
            ]
        );
    }

    #[test]
    fn a_cut_short_run_ends_the_list() {
        let t = format!(
            "{}\nout\n{}\n{}\npartial",
            begin("a"),
            end("a", 0),
            begin("b")
        );
        assert_eq!(parse(&t).len(), 1);
    }
}
