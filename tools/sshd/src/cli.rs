//! `rescue ssh`: a thin front over [`crate::start`], [`crate::stop`] and
//! [`crate::running`].

use crate::keys::{parse_key_file, PublicKey};
use crate::{Paths, Request, State};
use argh::FromArgs;
use cliconv::Exit;
use serde::Serialize;
use std::path::PathBuf;

/// Version of the `--json` documents.
pub const JSON_SCHEMA: u32 = 1;

/// The remote console: an SSH server (dropbear) whose login is the menu,
/// for root with a public key or a one-time password shown on the local
/// consoles only. Never on unless asked (here, from the menu's network
/// screen, or rescue.ssh= on the kernel command line); no default
/// password. Without an action: the status.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "ssh",
    error_code(0, "done: the status was shown, or see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the status could not be written"
    )
)]
pub struct SshCommand {
    #[argh(subcommand)]
    pub action: Option<Action>,
    /// JSON output (for the status)
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Action {
    On(OnCommand),
    Off(OffCommand),
    Status(StatusCommand),
    Serve(ServeCommand),
}

/// Start the SSH server. Logins are as root, with a key given here
/// (written to /root/.ssh/authorized_keys; password logins are then off)
/// and/or a one-time password (--once): random, shown on the local
/// consoles only, valid for one login. The host key's fingerprint is
/// printed to check on the first connection. Connect with
/// 'ssh -t root@ADDRESS': the login is the menu, commands are refused.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "on",
    error_code(0, "done: the server listens"),
    error_code(2, "error: usage error (unknown option, missing argument, no key and no --once, a key that cannot be read), not running as the appliance, already on, or the server did not start")
)]
pub struct OnCommand {
    /// a public key that may log in, as in a .pub file: 'ssh-ed25519 AAAA... comment' (repeatable)
    #[argh(option)]
    pub key: Vec<String>,
    /// a file of public keys, one per line (authorized_keys or .pub)
    #[argh(option)]
    pub key_file: Vec<PathBuf>,
    /// also a one-time password, shown on the local consoles only
    #[argh(switch)]
    pub once: bool,
    /// the TCP port (default 22)
    #[argh(option, default = "crate::DEFAULT_PORT")]
    pub port: u16,
    /// JSON output
    #[argh(switch)]
    pub json: bool,
}

/// Stop the SSH server: the open sessions end, and a one-time password not
/// yet used is taken back.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "off",
    error_code(0, "done: stopped, or it was not running"),
    error_code(2, "error: usage error (unknown option, missing argument), not running as the appliance, or /etc/shadow could not be rewritten")
)]
pub struct OffCommand {}

/// Show whether the SSH server runs: port, how one logs in, the host key's
/// fingerprint, the open sessions.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "status",
    error_code(0, "done: the status was shown"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the output could not be written"
    )
)]
pub struct StatusCommand {
    /// JSON output
    #[argh(switch)]
    pub json: bool,
}

/// (internal) Run dropbear in the foreground for 'ssh on', copying its
/// messages into the action log.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "serve",
    error_code(0, "done: dropbear ended after it had listened"),
    error_code(2, "error: usage error (unknown option, missing argument), no settings from 'ssh on', or dropbear did not start")
)]
pub struct ServeCommand {}

/// The status document and the text lines.
#[derive(Serialize, Debug)]
pub struct Status {
    pub running: bool,
    pub port: Option<u16>,
    pub keys: Vec<String>,
    pub once: bool,
    pub once_used: bool,
    pub host_key_type: Option<String>,
    pub host_key_fingerprint: Option<String>,
    pub sessions: usize,
}

pub fn status_of(state: Option<&State>, sessions: usize) -> Status {
    match state {
        Some(s) => Status {
            running: true,
            port: Some(s.port),
            keys: s.keys.clone(),
            once: s.once,
            once_used: s.once_used,
            host_key_type: Some(s.host_key_type.clone()),
            host_key_fingerprint: Some(s.host_key_fingerprint.clone()),
            sessions,
        },
        None => Status {
            running: false,
            port: None,
            keys: Vec::new(),
            once: false,
            once_used: false,
            host_key_type: None,
            host_key_fingerprint: None,
            sessions: 0,
        },
    }
}

pub fn render(st: &Status, state: Option<&State>) -> String {
    let Some(s) = state else {
        return "SSH: off (rescue ssh on --key '...' or --once)\n".into();
    };
    let mut out = format!("SSH: {} (as root)\n", s.line());
    out.push_str(&format!(
        "  host key       {} {}\n",
        s.host_key_type, s.host_key_fingerprint
    ));
    for k in &s.keys {
        out.push_str(&format!("  key            {k}\n"));
    }
    if s.once {
        out.push_str(if s.once_used {
            "  password       used; password logins are off\n"
        } else {
            "  password       one-time, shown on the local consoles\n"
        });
    }
    out.push_str(&format!("  sessions       {}\n", st.sessions));
    out.push_str("  connect with   ssh -t root@ADDRESS");
    if s.port != 22 {
        out.push_str(&format!(" -p {}", s.port));
    }
    out.push('\n');
    out
}

/// The keys of `--key` and `--key-file`.
pub fn keys_of(cmd: &OnCommand) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for k in &cmd.key {
        keys.push(PublicKey::parse_joined(k).map_err(|e| format!("--key: {e}"))?);
    }
    for f in &cmd.key_file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        keys.extend(parse_key_file(&text).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    Ok(keys)
}

/// Runs the command. `appliance`: this is the appliance (the files it
/// writes are its own /etc and /root); `consoles`: the local consoles.
pub fn run(cmd: SshCommand, appliance: bool, consoles: &[PathBuf]) -> i32 {
    let paths = Paths::default();
    match cmd.action {
        None => status(&paths, cmd.json),
        Some(Action::Status(s)) => status(&paths, s.json || cmd.json),
        Some(Action::On(on)) => {
            const NAME: &str = "ssh on";
            if !appliance {
                return cliconv::fail(
                    NAME,
                    "not running as the appliance; refusing to change this machine's /etc and /root",
                )
                .code();
            }
            let keys = match keys_of(&on) {
                Ok(k) => k,
                Err(e) => return cliconv::fail(NAME, e).code(),
            };
            let req = Request {
                keys,
                once: on.once,
                port: on.port,
            };
            match crate::start(&req, &paths, consoles, &|l| cliconv::eprint(NAME, l)) {
                Ok(s) => {
                    if on.json {
                        let st = status_of(Some(&s), 0);
                        cliconv::print_json(NAME, JSON_SCHEMA, &st).code()
                    } else {
                        print!("{}", render(&status_of(Some(&s), 0), Some(&s)));
                        Exit::Done.code()
                    }
                }
                Err(e) => cliconv::fail(NAME, e).code(),
            }
        }
        Some(Action::Off(_)) => {
            const NAME: &str = "ssh off";
            if !appliance {
                return cliconv::fail(NAME, "not running as the appliance").code();
            }
            match crate::stop(&paths) {
                Ok(true) => {
                    println!("SSH: off; its sessions were ended");
                    Exit::Done.code()
                }
                Ok(false) => {
                    println!("SSH: off (it was not running)");
                    Exit::Done.code()
                }
                Err(e) => cliconv::fail(NAME, e).code(),
            }
        }
        Some(Action::Serve(_)) => match crate::serve(&paths) {
            Ok(()) => Exit::Done.code(),
            Err(e) => cliconv::fail("ssh serve", e).code(),
        },
    }
}

fn status(paths: &Paths, json: bool) -> i32 {
    let state = crate::running(paths);
    let sessions = state.as_ref().map_or(0, |s| crate::sessions(paths, s));
    let st = status_of(state.as_ref(), sessions);
    if json {
        cliconv::print_json("ssh", JSON_SCHEMA, &st).code()
    } else {
        print!("{}", render(&st, state.as_ref()));
        Exit::Done.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let on = SshCommand::from_args(
            &["ssh"],
            &[
                "on",
                "--key",
                "ssh-ed25519 AAAA x",
                "--once",
                "--port",
                "2222",
            ],
        )
        .unwrap();
        match on.action {
            Some(Action::On(o)) => {
                assert_eq!(o.key, ["ssh-ed25519 AAAA x"]);
                assert!(o.once);
                assert_eq!(o.port, 2222);
                assert!(keys_of(&o).unwrap_err().starts_with("--key:"));
            }
            other => panic!("{other:?}"),
        }
        let bare = SshCommand::from_args(&["ssh"], &[]).unwrap();
        assert_eq!(bare.action, None);
        assert!(
            run(
                SshCommand::from_args(&["ssh"], &["on", "--once"]).unwrap(),
                false,
                &[]
            ) == 2
        );
    }

    #[test]
    fn status_text_and_json() {
        let st = status_of(None, 0);
        assert!(render(&st, None).starts_with("SSH: off"));
        let s = State {
            port: 22,
            keys: vec!["SHA256:k admin@desk".into()],
            once: true,
            host_key_type: "ssh-ed25519".into(),
            host_key_fingerprint: "SHA256:h".into(),
            ..State::default()
        };
        let st = status_of(Some(&s), 1);
        let text = render(&st, Some(&s));
        assert!(
            text.contains("SSH: on, port 22, login by 1 key + one-time password (as root)"),
            "{text}"
        );
        assert!(text.contains("ssh-ed25519 SHA256:h"), "{text}");
        assert!(text.contains("sessions       1"), "{text}");
        for l in text.lines() {
            assert!(l.len() <= 80, "{l}");
        }
        let json = cliconv::json_text(JSON_SCHEMA, &st).unwrap();
        assert!(
            json.starts_with("{\n  \"schema\": 1,\n  \"running\": true"),
            "{json}"
        );
    }
}
