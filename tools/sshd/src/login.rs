//! Root's login shell over SSH, `/bin/rescue-login` (a link to `rescue`):
//! the menu on the session's terminal. dropbear starts it as a login shell
//! (no arguments; argv[0] `-rescue-login` or `/bin/rescue-login`) for a
//! session without a command, or as
//! `rescue-login -c COMMAND` for `ssh host COMMAND`, which is refused: the
//! remote console is the menu (`ssh -t host`), as on the local consoles.
//! A one-time password is taken back first, whichever way the session
//! started.

use std::path::Path;

/// The name `rescue` answers to as the login shell.
pub const NAME: &str = "rescue-login";

/// Whether a process whose argv[0] is `argv0` is the login shell
/// (`/bin/rescue-login`, `-rescue-login`).
pub fn is_login_name(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    base.trim_start_matches('-') == NAME
}

/// What the session asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Session {
    /// The menu.
    Menu,
    /// `-c COMMAND`: refused, with the message to show.
    Command(String),
}

pub fn session_of(args: &[String]) -> Session {
    match args.iter().position(|a| a == "-c") {
        Some(i) => Session::Command(args.get(i + 1).cloned().unwrap_or_default()),
        None => Session::Menu,
    }
}

/// The message for a refused command.
pub fn refusal(command: &str) -> String {
    format!(
        "rescue: this SSH login is the appliance's menu; commands are not run ({command:?}). \
         Connect with 'ssh -t' and use the menu (s: a shell)."
    )
}

/// Runs the login shell: never returns on success (the menu replaces
/// this process); returns the exit code when it could not.
pub fn run(args: &[String], paths: &crate::Paths, rescue: &Path) -> i32 {
    if let Err(e) = crate::consume_password(paths) {
        eprintln!("rescue: {e}");
    }
    let from = std::env::var("SSH_CONNECTION").unwrap_or_default();
    match session_of(args) {
        Session::Command(c) => {
            log::info!("ssh: command refused from {from}: {c:?}");
            eprintln!("{}", refusal(&c));
            2
        }
        Session::Menu => {
            log::info!("ssh: session from {from}");
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(rescue);
            cmd.arg("menu")
                // dropbear clears the environment: what PID 1 gives the
                // menus on the consoles.
                .env("RESCUE_APPLIANCE", "1")
                .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
                .env("HOME", "/root");
            if std::env::var_os("TERM").is_none() {
                cmd.env("TERM", "vt100");
            }
            let e = cmd.exec();
            eprintln!("rescue: {}: {e}", rescue.display());
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sessions() {
        assert!(is_login_name("/bin/rescue-login"));
        assert!(is_login_name("-rescue-login"));
        assert!(is_login_name("rescue-login"));
        assert!(!is_login_name("/bin/rescue"));
        assert!(!is_login_name("-sh"));
        let s = |a: &[&str]| session_of(&a.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), Session::Menu);
        assert_eq!(
            s(&["-c", "rescue probe"]),
            Session::Command("rescue probe".into())
        );
        assert_eq!(s(&["-c"]), Session::Command(String::new()));
        assert!(refusal("ls").contains("ssh -t"));
    }
}
