//! Unattended mode: run a script of `rescue` subcommands and frame each
//! command's output with markers that tests and labs parse.
//!
//! Contract (stable, documented in the README): one subcommand per line,
//! without the leading `rescue`; `#` starts a comment; blank lines are
//! skipped. Output of each command is printed between
//! `=== rescue: <command> ===` and `=== end: <command> (exit N) ===`; after the
//! last command `=== rescue.script done ===` (the format is the `scriptmark`
//! crate, shared with the test harness that parses it).

use cliconv::Exit;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

/// The command's name in its messages (`rescue run-script: ...`), which
/// stand in a command's section where its own stderr would be.
const RUN_SCRIPT: &str = "run-script";

/// The commands of a script, comments and blank lines removed.
pub fn parse_script(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Splits a command line into words: whitespace separates, single and double
/// quotes group, backslash escapes one character.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                have = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    have = true;
                }
                None => return Err("trailing backslash".into()),
            },
            (None, c) if c.is_whitespace() => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            (_, c) => {
                cur.push(c);
                have = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if have {
        words.push(cur);
    }
    Ok(words)
}

/// Output goes to every console, or to stdout when none is known (host).
struct Tee(Vec<std::fs::File>);

impl Tee {
    fn open(paths: &[String]) -> Tee {
        Tee(paths
            .iter()
            .filter_map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(p)
                    .ok()
            })
            .collect())
    }
    fn write(&mut self, bytes: &[u8]) {
        if self.0.is_empty() {
            let _ = std::io::stdout().write_all(bytes);
            let _ = std::io::stdout().flush();
            return;
        }
        // Serial consoles want CR LF.
        let mut crlf = Vec::with_capacity(bytes.len() + 16);
        for &b in bytes {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        for f in &mut self.0 {
            let _ = f.write_all(&crlf);
        }
    }
    fn line(&mut self, s: &str) {
        self.write(format!("{s}\n").as_bytes());
    }
}

/// Runs the script at `path`; returns 0 when every command exited 0.
pub fn run_script(path: &str, consoles: &[String]) -> i32 {
    let mut out = Tee::open(consoles);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            out.line(&scriptmark::script_error(path, e));
            out.line(scriptmark::DONE);
            return Exit::Error.code();
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "/bin/rescue".into());
    let mut worst = 0;
    for line in parse_script(&text) {
        out.line(&scriptmark::begin(&line));
        let code = match split_command(&line) {
            Err(e) => failed(&mut out, format_args!("{line}: {e}")),
            Ok(words) => run_one(&exe, &words, &mut out),
        };
        out.line(&scriptmark::end(&line, code));
        if code != 0 {
            worst = worst.max(code);
        }
    }
    out.line(scriptmark::DONE);
    worst
}

fn run_one(exe: &std::path::Path, words: &[String], out: &mut Tee) -> i32 {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return failed(out, format_args!("pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed(out, format_args!("pipe: {e}")),
    };
    let child = Command::new(exe)
        .args(words)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(out, format_args!("cannot start {}: {e}", exe.display())),
    };
    let mut reader = reader;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match child.wait() {
        Ok(st) => st.code().unwrap_or(Exit::Error.code()),
        Err(_) => Exit::Error.code(),
    }
}

/// Says in the command's section why it could not run, as `rescue
/// run-script: ...`; the error exit.
fn failed(out: &mut Tee, why: std::fmt::Arguments<'_>) -> i32 {
    out.line(&cliconv::message_line(RUN_SCRIPT, why));
    Exit::Error.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn script_lines_and_words() {
        assert_eq!(
            parse_script("# c\n\n probe --json \n#x\ngpt show /dev/sda\n"),
            ["probe --json", "gpt show /dev/sda"]
        );
        assert_eq!(
            split_command(r#"vmfs ls "/dev/sd a" 'x y' a\ b"#).unwrap(),
            ["vmfs", "ls", "/dev/sd a", "x y", "a b"]
        );
        assert_eq!(split_command("a ''").unwrap(), ["a", ""]);
        assert!(split_command("a 'b").is_err());
        assert!(split_command("a \\").is_err());
    }
}
