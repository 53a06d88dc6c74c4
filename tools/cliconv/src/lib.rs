//! The command-line convention every `rescue` front follows, in one place
//! so that scripts and labs can rely on it whatever the subcommand:
//!
//! - the exit code is an [`Exit`]: 0 done, 1 findings or a partial result,
//!   2 error (usage errors included, which argh reports before a front runs);
//! - a message on stderr (error, warning, note) reads
//!   `rescue <command>: <message>`, where `<command>` is the command as typed
//!   after `rescue` down to its action: `probe`, `image`, `gpt verify`,
//!   `md scan`, `vmfs ls`, `dest mount` ([`eprint`], [`fail`]);
//! - every `--json` document is a JSON object whose first field is
//!   `"schema": N`, the version of that command's document, bumped on
//!   incompatible changes ([`print_json`]). A list is never the top level:
//!   it is a named field, so that the schema (and later fields) fit.
//!
//! Lines written to the action log and a command's normal output on stdout
//! (including progress lines tests parse) are not messages in this sense.

use serde::Serialize;
use std::fmt::Display;
use std::io::Write;

/// A front's exit status. Ordered by gravity, so that `a.max(b)` is the
/// status of a run that met both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// Did what it was asked; nothing wrong found.
    Done = 0,
    /// Completed, but found problems, or the result is partial (some items
    /// unreadable, interrupted, not confirmed): the output says what.
    Findings = 1,
    /// Could not do what it was asked: a usage error, a refusal, or a
    /// failure (I/O, output that could not be written).
    Error = 2,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// [`Exit::Findings`] when something was found, else [`Exit::Done`].
    pub const fn findings_if(found: bool) -> Exit {
        if found {
            Exit::Findings
        } else {
            Exit::Done
        }
    }
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e.code()
    }
}

/// `rescue <command>: <message>`: the form of every message a front
/// prints on stderr.
pub fn message_line(command: &str, message: impl Display) -> String {
    format!("rescue {command}: {message}")
}

/// Prints [`message_line`] on stderr.
pub fn eprint(command: &str, message: impl Display) {
    eprintln!("{}", message_line(command, message));
}

/// Prints the error as [`eprint`] does and gives [`Exit::Error`], for the
/// common `return cliconv::fail(..).code()`.
pub fn fail(command: &str, message: impl Display) -> Exit {
    eprint(command, message);
    Exit::Error
}

/// The `--json` document: `schema` first, then the value's own fields.
/// Flattening keeps the value's field order (a struct's declaration order)
/// without serde_json's order-preserving map; it accepts structs and maps
/// only, which is the rule: a list must be a named field.
#[derive(Serialize)]
struct Versioned<'a, T: ?Sized> {
    schema: u32,
    #[serde(flatten)]
    document: &'a T,
}

/// The `--json` text of `value` (pretty, without a final newline) with
/// `"schema": schema` as its first field. Fails for a value that is not a
/// struct or map, or that serde_json cannot represent (a map with
/// non-string keys).
pub fn json_text<T: Serialize + ?Sized>(schema: u32, value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Versioned {
        schema,
        document: value,
    })
}

/// Prints the `--json` document of `value` ([`json_text`]) on stdout.
/// [`Exit::Done`] when it was written; when it cannot be serialized or
/// written, `rescue <command>: JSON: <error>` on stderr and [`Exit::Error`]
/// (nothing is printed on stdout for a value that cannot be serialized).
pub fn print_json<T: Serialize + ?Sized>(command: &str, schema: u32, value: &T) -> Exit {
    write_json(
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
        command,
        schema,
        value,
    )
}

/// [`print_json`] to any pair of streams.
pub fn write_json<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    err: &mut dyn Write,
    command: &str,
    schema: u32,
    value: &T,
) -> Exit {
    // Serialized whole before anything is written: a failure halfway must
    // not leave half a document on stdout.
    let written = json_text(schema, value)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            out.write_all(text.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => Exit::Done,
        Err(e) => {
            let _ = writeln!(err, "{}", message_line(command, format_args!("JSON: {e}")));
            Exit::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Report {
        outcome: &'static str,
        disks: Vec<u32>,
    }

    fn json(schema: u32, value: &(impl Serialize + ?Sized)) -> (Exit, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = write_json(&mut out, &mut err, "gpt verify", schema, value);
        (
            exit,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        assert_eq!(Exit::Done.code(), 0);
        assert_eq!(Exit::Findings.code(), 1);
        assert_eq!(Exit::Error.code(), 2);
        assert_eq!(i32::from(Exit::Findings), 1);
        assert_eq!(Exit::findings_if(true), Exit::Findings);
        assert_eq!(Exit::findings_if(false), Exit::Done);
        assert_eq!(Exit::Findings.max(Exit::Error), Exit::Error);
        assert_eq!(Exit::Done.max(Exit::Findings), Exit::Findings);
    }

    #[test]
    fn messages_name_the_command() {
        assert_eq!(
            message_line("md scan", "no device could be opened"),
            "rescue md scan: no device could be opened"
        );
        assert_eq!(message_line("probe", 42), "rescue probe: 42");
    }

    #[test]
    fn schema_is_the_first_field_of_a_struct() {
        let (exit, out, err) = json(
            3,
            &Report {
                outcome: "clean",
                disks: vec![1, 2],
            },
        );
        assert_eq!(exit, Exit::Done);
        assert_eq!(err, "");
        assert!(out.ends_with("}\n"), "{out}");
        assert!(
            out.starts_with("{\n  \"schema\": 3,\n  \"outcome\""),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["schema"], 3);
        assert_eq!(v["outcome"], "clean");
        assert_eq!(v["disks"], serde_json::json!([1, 2]));
    }

    #[test]
    fn schema_is_inserted_into_a_map_and_a_json_object() {
        let map = BTreeMap::from([("b", 2), ("a", 1)]);
        let v: serde_json::Value = serde_json::from_str(&json(1, &map).1).unwrap();
        assert_eq!(v, serde_json::json!({"schema": 1, "a": 1, "b": 2}));
        let obj = serde_json::json!({"outcome": "done"});
        let v: serde_json::Value = serde_json::from_str(&json(1, &obj).1).unwrap();
        assert_eq!(v, serde_json::json!({"schema": 1, "outcome": "done"}));
    }

    #[test]
    fn a_list_at_the_top_is_refused_it_must_be_named() {
        let (exit, out, err) = json(1, &[1, 2, 3]);
        assert_eq!(exit, Exit::Error);
        assert_eq!(out, "");
        assert!(err.starts_with("rescue gpt verify: JSON: "), "{err}");
        #[derive(Serialize)]
        struct Named<'a> {
            candidates: &'a [u32],
        }
        let v: serde_json::Value = serde_json::from_str(
            &json(
                1,
                &Named {
                    candidates: &[1, 2],
                },
            )
            .1,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"schema": 1, "candidates": [1, 2]}));
    }

    #[test]
    fn a_failing_serializer_gives_the_error_exit_and_a_message() {
        // JSON object keys must be strings.
        let bad = BTreeMap::from([((1u8, 2u8), "x")]);
        #[derive(Serialize)]
        struct Holder<'a> {
            table: &'a BTreeMap<(u8, u8), &'static str>,
        }
        let (exit, out, err) = json(1, &Holder { table: &bad });
        assert_eq!(exit, Exit::Error);
        assert_eq!(out, "", "nothing, not even an empty line, on stdout");
        assert!(err.starts_with("rescue gpt verify: JSON: "), "{err}");
        assert!(err.contains("key must be a string"), "{err}");
        assert!(err.ends_with('\n'));
    }

    #[test]
    fn a_failing_writer_gives_the_error_exit_and_a_message() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no space left"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut err = Vec::new();
        let exit = write_json(&mut Full, &mut err, "probe", 1, &serde_json::json!({}));
        assert_eq!(exit, Exit::Error);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(err, "rescue probe: JSON: no space left\n");
    }
}
