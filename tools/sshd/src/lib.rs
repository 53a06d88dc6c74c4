//! The remote console: `rescue ssh on|off|status`, the kernel command
//! line's `rescue.ssh=`, and root's login shell.
//!
//! The server is Debian's dropbear (shipped in the initramfs with its
//! libraries and `dropbearkey`). Nothing listens unless asked, and there
//! is no default password:
//! - by key: the given public keys go to /root/.ssh/authorized_keys
//!   (0600 in a 0700 folder) and dropbear runs with `-s` (no password
//!   logins at all);
//! - by a one-time password: a random password ([`crypt::new_password`])
//!   whose SHA-512 crypt hash ([`crypt::sha512_crypt`], checked by
//!   dropbear through libcrypt) is root's field in /etc/shadow. It is
//!   written on the local consoles only, never to stdout, the action log,
//!   the kernel log or the network. The first login that succeeds removes
//!   it (the field becomes `*`): the supervisor does so as soon as dropbear
//!   logs the password login, and the login shell again when it starts.
//!
//! Root's login shell is `/bin/rescue-login` ([`login`]), which starts the
//! menu; a command (`ssh host cmd`) is refused: the remote console is the
//! menu, reached with `ssh -t`.
//!
//! Processes: `start` writes the files ([`files`]), makes the ed25519 host
//! key once with dropbearkey, writes the state file and starts the
//! supervisor (`rescue ssh serve`, its own process group), which runs
//! dropbear in the foreground (`-F -E`), copies dropbear's messages into
//! the action log and keeps the state file current. `stop` ends the
//! listener, every session (the listener's descendants) and the
//! supervisor, and takes a pending one-time password back. Power-off ends
//! them like every other process.

pub mod cli;
pub mod cmdline;
pub mod crypt;
pub mod files;
pub mod keys;
pub mod login;
pub mod procs;

use keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The port when none is given.
pub const DEFAULT_PORT: u16 = 22;
/// How long `start` waits for dropbear to listen.
pub const START_WAIT: Duration = Duration::from_secs(15);
/// How long `stop` waits for the processes to go after SIGTERM.
pub const STOP_WAIT: Duration = Duration::from_secs(3);
/// dropbear's command name in /proc.
const DROPBEAR_COMM: &str = "dropbear";
/// The supervisor's command name (it is `rescue`).
const SUPERVISOR_COMM: &str = "rescue";

/// What to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Keys that may log in as root.
    pub keys: Vec<PublicKey>,
    /// Also a one-time password.
    pub once: bool,
    pub port: u16,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            keys: Vec::new(),
            once: false,
            port: DEFAULT_PORT,
        }
    }
}

/// Where everything is.
#[derive(Clone, Debug)]
pub struct Paths {
    /// passwd, shadow, authorized_keys go under this root.
    pub root: files::Root,
    pub dropbear: PathBuf,
    pub dropbearkey: PathBuf,
    pub host_key: PathBuf,
    /// The state file (JSON, [`State`]).
    pub state: PathBuf,
    /// Why the last start failed (the supervisor writes it).
    pub failed: PathBuf,
    /// The one-time password while it is unused (0600, in RAM), for the
    /// menus on the local consoles to show; never shown over SSH.
    pub once_file: PathBuf,
    pub pidfile: PathBuf,
    pub proc: PathBuf,
    /// The `rescue` binary, run as `rescue ssh serve`.
    pub rescue: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            root: files::Root::default(),
            dropbear: "/usr/sbin/dropbear".into(),
            dropbearkey: "/usr/bin/dropbearkey".into(),
            host_key: "/etc/dropbear/dropbear_ed25519_host_key".into(),
            state: "/run/rescue/ssh.json".into(),
            failed: "/run/rescue/ssh.failed".into(),
            once_file: "/run/rescue/ssh.once".into(),
            pidfile: "/run/rescue/dropbear.pid".into(),
            proc: "/proc".into(),
            rescue: std::env::current_exe().unwrap_or_else(|_| "/bin/rescue".into()),
        }
    }
}

/// The server's state, in [`Paths::state`] while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub port: u16,
    /// The keys that may log in: fingerprint and comment.
    pub keys: Vec<String>,
    /// A one-time password was set.
    pub once: bool,
    /// ... and has been used (or taken back).
    pub once_used: bool,
    /// The host key: type and SHA-256 fingerprint (as `ssh-keygen -l`).
    pub host_key_type: String,
    pub host_key_fingerprint: String,
    pub supervisor_pid: Option<u32>,
    pub dropbear_pid: Option<u32>,
    /// dropbear said it listens.
    pub listening: bool,
}

impl State {
    /// How one logs in, in words.
    pub fn auth_words(&self) -> String {
        let mut w = Vec::new();
        if !self.keys.is_empty() {
            w.push(format!(
                "{} key{}",
                self.keys.len(),
                if self.keys.len() == 1 { "" } else { "s" }
            ));
        }
        if self.once {
            w.push(
                if self.once_used {
                    "one-time password (used)"
                } else {
                    "one-time password"
                }
                .to_string(),
            );
        }
        w.join(" + ")
    }

    /// The overview's line: `on, port 22, login by 1 key`.
    pub fn line(&self) -> String {
        format!("on, port {}, login by {}", self.port, self.auth_words())
    }

    /// `host key ssh-ed25519 SHA256:...`, to check on the first connection.
    pub fn host_line(&self) -> String {
        format!(
            "host key {} {}",
            self.host_key_type, self.host_key_fingerprint
        )
    }
}

pub fn read_state(paths: &Paths) -> Option<State> {
    serde_json::from_str(&std::fs::read_to_string(&paths.state).ok()?).ok()
}

fn write_state(paths: &Paths, s: &State) -> Result<(), String> {
    let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    files::write_file(&paths.state, &format!("{text}\n"), 0o600)
        .map_err(|e| format!("{}: {e}", paths.state.display()))
}

/// The state of a server that is running: the state file names a live
/// dropbear (or, while it starts, a live supervisor).
pub fn running(paths: &Paths) -> Option<State> {
    let s = read_state(paths)?;
    let dropbear = s
        .dropbear_pid
        .is_some_and(|p| procs::alive_as(&paths.proc, p, DROPBEAR_COMM));
    let supervisor = s
        .supervisor_pid
        .is_some_and(|p| procs::alive_as(&paths.proc, p, SUPERVISOR_COMM));
    (dropbear || supervisor).then_some(s)
}

/// The overview's SSH lines, when a server runs: how to log in, the host
/// key, and on a local console (`local`) an unused one-time password.
pub fn summary(local: bool) -> Vec<String> {
    summary_at(&Paths::default(), local)
}

pub fn summary_at(paths: &Paths, local: bool) -> Vec<String> {
    let Some(s) = running(paths) else {
        return Vec::new();
    };
    let mut lines = vec![
        format!("SSH: {}", s.line()),
        format!("     {}", s.host_line()),
    ];
    if local && s.once && !s.once_used {
        if let Ok(p) = std::fs::read_to_string(&paths.once_file) {
            lines.push(format!(
                "     one-time password: {} (valid for one login)",
                p.trim()
            ));
        }
    }
    lines
}

/// Removes the file of the one-time password.
fn forget_password(paths: &Paths) {
    let _ = std::fs::remove_file(&paths.once_file);
}

/// Sessions open now: dropbear's connection processes.
pub fn sessions(paths: &Paths, s: &State) -> usize {
    let Some(pid) = s.dropbear_pid else {
        return 0;
    };
    let all = procs::all(&paths.proc);
    all.iter()
        .filter(|p| p.ppid == pid && p.comm == DROPBEAR_COMM)
        .count()
}

/// dropbear's arguments: foreground, messages on stderr, no motd, no port
/// forwarding, the ed25519 host key, and `-s` (no password logins) unless
/// a one-time password was set.
pub fn dropbear_args(paths: &Paths, s: &State) -> Vec<String> {
    let mut a: Vec<String> = ["-F", "-E", "-m", "-j", "-k"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    if !s.once || s.once_used {
        a.push("-s".into());
    }
    a.push("-p".into());
    a.push(s.port.to_string());
    a.push("-r".into());
    a.push(paths.host_key.display().to_string());
    a.push("-P".into());
    a.push(paths.pidfile.display().to_string());
    a
}

/// The host key's public line from dropbearkey's output (`Public key
/// portion is:` then the key line).
pub fn public_key_in(output: &str) -> Result<PublicKey, String> {
    output
        .lines()
        .find(|l| {
            keys::KEY_TYPES
                .iter()
                .any(|t| l.starts_with(&format!("{t} ")))
        })
        .ok_or_else(|| format!("dropbearkey printed no public key: {output:?}"))
        .and_then(PublicKey::parse)
}

/// Makes the host key once (dropbearkey -t ed25519) and returns its
/// public part (dropbearkey -y).
pub fn host_key(paths: &Paths, say: &dyn Fn(&str)) -> Result<PublicKey, String> {
    let run = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&paths.dropbearkey)
            .args(args)
            .arg(&paths.host_key)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", paths.dropbearkey.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(format!(
                "dropbearkey {} failed ({}): {}",
                args.join(" "),
                out.status,
                text.trim()
            ));
        }
        Ok(text)
    };
    if !paths.host_key.exists() {
        if let Some(dir) = paths.host_key.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        say("ssh: making the host key (ed25519)");
        run(&["-t", "ed25519", "-f"])?;
        log::info!("ssh: host key made: {}", paths.host_key.display());
    }
    public_key_in(&run(&["-y", "-f"])?)
}

/// Writes `lines` to each console device (the local screens and serial
/// lines), never anywhere else. Returns the consoles written to.
pub fn tell_consoles(consoles: &[PathBuf], lines: &[String]) -> Vec<PathBuf> {
    let text: String = lines.iter().map(|l| format!("rescue: {l}\r\n")).collect();
    consoles
        .iter()
        .filter(|c| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(
                    rustix::fs::OFlags::NOCTTY.bits() as i32
                        | rustix::fs::OFlags::NONBLOCK.bits() as i32,
                )
                .open(c)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .is_ok()
        })
        .cloned()
        .collect()
}

/// Starts the server. `consoles` are the local consoles, where a one-time
/// password is shown; `say` gets progress lines (never the password).
pub fn start(
    req: &Request,
    paths: &Paths,
    consoles: &[PathBuf],
    say: &dyn Fn(&str),
) -> Result<State, String> {
    if let Some(s) = running(paths) {
        return Err(format!(
            "already on, port {} ({}); 'rescue ssh off' first",
            s.port,
            s.auth_words()
        ));
    }
    if req.keys.is_empty() && !req.once {
        return Err("no way to log in was given: a key (--key, --key-file) or --once".into());
    }
    for p in [&paths.dropbear, &paths.dropbearkey] {
        if !p.exists() {
            return Err(format!("{} is not in this image", p.display()));
        }
    }
    let host = host_key(paths, say)?;
    let password = if req.once {
        Some(crypt::new_password().map_err(|e| format!("getrandom: {e}"))?)
    } else {
        None
    };
    let field = match &password {
        Some(p) => {
            let setting = crypt::new_setting().map_err(|e| format!("getrandom: {e}"))?;
            crypt::sha512_crypt(p.as_bytes(), &setting)?
        }
        None => files::NO_PASSWORD.to_string(),
    };
    files::write_all(&paths.root, &req.keys, &field)?;
    match &password {
        Some(p) => files::write_file(&paths.once_file, &format!("{p}\n"), 0o600)
            .map_err(|e| format!("{}: {e}", paths.once_file.display()))?,
        None => forget_password(paths),
    }
    let state = State {
        port: req.port,
        keys: req
            .keys
            .iter()
            .map(|k| {
                format!("{} {}", k.fingerprint(), k.comment)
                    .trim()
                    .to_string()
            })
            .collect(),
        once: req.once,
        once_used: false,
        host_key_type: host.kind.clone(),
        host_key_fingerprint: host.fingerprint(),
        supervisor_pid: None,
        dropbear_pid: None,
        listening: false,
    };
    let _ = std::fs::remove_file(&paths.failed);
    let result = write_state(paths, &state).and_then(|()| spawn_and_wait(paths));
    let state = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = files::remove_password(&paths.root);
            forget_password(paths);
            let _ = std::fs::remove_file(&paths.state);
            return Err(e);
        }
    };
    log::info!(
        "ssh: on, port {}, {}; host key {} {}",
        state.port,
        state.auth_words(),
        state.host_key_type,
        state.host_key_fingerprint
    );
    let mut lines = vec![format!(
        "ssh: on, port {}; host key {} {}",
        state.port, state.host_key_type, state.host_key_fingerprint
    )];
    if let Some(p) = &password {
        lines.push(format!(
            "ssh: one-time password for root: {p} (valid for one login)"
        ));
        let shown = tell_consoles(consoles, &lines);
        if shown.is_empty() {
            // Nowhere to show it: nobody could use it; take it back.
            let _ = files::remove_password(&paths.root);
            let _ = stop(paths);
            return Err(
                "no local console could show the one-time password; the server was stopped".into(),
            );
        }
        say(&format!(
            "ssh: the one-time password is shown on the local console{} ({}), not here",
            if shown.len() == 1 { "" } else { "s" },
            shown
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        tell_consoles(consoles, &lines);
    }
    Ok(state)
}

/// Starts `rescue ssh serve` in a process group of its own (a console's
/// hang-up does not reach it) and waits until dropbear listens.
fn spawn_and_wait(paths: &Paths) -> Result<State, String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(&paths.rescue)
        .args(["ssh", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", paths.rescue.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + START_WAIT;
    let outcome = loop {
        if let Some(s) = read_state(paths) {
            if s.supervisor_pid == Some(pid) && s.listening {
                break Ok(s);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let why = std::fs::read_to_string(&paths.failed).unwrap_or_default();
            break Err(format!(
                "the server did not start ({status}): {}",
                if why.trim().is_empty() {
                    "no message"
                } else {
                    why.trim()
                }
            ));
        }
        if Instant::now() >= deadline {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            break Err(format!(
                "dropbear did not listen within {} s",
                START_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Reaped when it ends, by a thread of this process if it outlives it.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    outcome
}

/// Stops the server: dropbear, every session, the supervisor; a one-time
/// password not yet used is taken back. Ok(false) when none was running.
pub fn stop(paths: &Paths) -> Result<bool, String> {
    let Some(s) = read_state(paths) else {
        return Ok(false);
    };
    let all = procs::all(&paths.proc);
    let mut targets = Vec::new();
    if let Some(d) = s
        .dropbear_pid
        .filter(|&p| procs::alive_as(&paths.proc, p, DROPBEAR_COMM))
    {
        targets.push(d);
        targets.extend(procs::descendants(&all, d));
    }
    if let Some(sup) = s
        .supervisor_pid
        .filter(|&p| procs::alive_as(&paths.proc, p, SUPERVISOR_COMM))
    {
        targets.push(sup);
    }
    let was_running = !targets.is_empty();
    let send = |pids: &[u32], sig| {
        for &p in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(p as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    send(&targets, rustix::process::Signal::TERM);
    let deadline = Instant::now() + STOP_WAIT;
    let alive =
        |p: &u32| procs::read(&paths.proc, *p).is_some_and(|x| x.state != 'Z' && x.state != 'X');
    while Instant::now() < deadline && targets.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = targets.iter().copied().filter(alive).collect();
    send(&left, rustix::process::Signal::KILL);
    files::remove_password(&paths.root)?;
    forget_password(paths);
    let _ = std::fs::remove_file(&paths.state);
    log::info!("ssh: off");
    Ok(was_running)
}

/// Takes the one-time password back after a login; records it in the
/// state file. True when there was one.
pub fn consume_password(paths: &Paths) -> Result<bool, String> {
    let removed = files::remove_password(&paths.root)?;
    forget_password(paths);
    if removed {
        log::info!("ssh: the one-time password was used and is removed");
        if let Some(mut s) = read_state(paths) {
            s.once_used = true;
            let _ = write_state(paths, &s);
        }
    }
    Ok(removed)
}

/// dropbear's message without its `[pid] Mon DD HH:MM:SS ` prefix.
pub fn message_of(line: &str) -> &str {
    let l = line.trim_end();
    let Some(rest) = l
        .strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .map(|x| x.1)
    else {
        return l;
    };
    // The date: month, day, time (HH:MM:SS), each followed by spaces.
    let mut cur = rest;
    for i in 0..3 {
        let Some((word, after)) = cur.trim_start().split_once(' ') else {
            return rest;
        };
        if i == 2 && !word.contains(':') {
            return rest;
        }
        cur = after;
    }
    cur
}

/// What a dropbear message means to the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Listening,
    PasswordLogin,
    ListenFailed,
    Other,
}

pub fn event_of(message: &str) -> Event {
    if message.starts_with("Not backgrounding") {
        Event::Listening
    } else if message.starts_with("Password auth succeeded for") {
        Event::PasswordLogin
    } else if message.contains("No listening ports available")
        || message.starts_with("Failed listening")
    {
        Event::ListenFailed
    } else {
        Event::Other
    }
}

/// The supervisor (`rescue ssh serve`): runs dropbear in the foreground
/// with the state file's settings, logs its messages, removes the one-time
/// password at the first password login, and returns dropbear's exit when
/// it ends.
pub fn serve(paths: &Paths) -> Result<(), String> {
    let fail = |why: String| {
        let _ = files::write_file(&paths.failed, &format!("{why}\n"), 0o600);
        why
    };
    let mut state = read_state(paths).ok_or_else(|| {
        fail(format!(
            "{}: no server settings (start it with 'rescue ssh on')",
            paths.state.display()
        ))
    })?;
    let mut child = Command::new(&paths.dropbear)
        .args(dropbear_args(paths, &state))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("{}: {e}", paths.dropbear.display())))?;
    state.supervisor_pid = Some(std::process::id());
    state.dropbear_pid = Some(child.id());
    write_state(paths, &state).map_err(&fail)?;
    let mut said = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let msg = message_of(&line).to_string();
            log::info!("ssh: dropbear: {msg}");
            match event_of(&msg) {
                Event::Listening => {
                    if let Some(mut s) = read_state(paths) {
                        s.listening = true;
                        state = s;
                        let _ = write_state(paths, &state);
                    }
                }
                Event::PasswordLogin => {
                    let _ = consume_password(paths);
                }
                Event::ListenFailed | Event::Other => {}
            }
            if said.len() < 8 {
                said.push(msg);
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    log::info!("ssh: dropbear ended ({status})");
    let listened = state.listening;
    // Only ours: a later server's state is left alone.
    if read_state(paths).is_some_and(|s| s.supervisor_pid == Some(std::process::id())) {
        let _ = files::remove_password(&paths.root);
        forget_password(paths);
        let _ = std::fs::remove_file(&paths.state);
    }
    if !listened {
        return Err(fail(format!(
            "dropbear ended ({status}): {}",
            said.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropbear_messages() {
        let l = "[32398] Dec 07 05:19:11 Failed listening on '42223': Error listening: Address already in use";
        assert_eq!(
            message_of(l),
            "Failed listening on '42223': Error listening: Address already in use"
        );
        assert_eq!(event_of(message_of(l)), Event::ListenFailed);
        assert_eq!(
            event_of(message_of("[1] Dec 07 05:19:11 Not backgrounding\n")),
            Event::Listening
        );
        assert_eq!(
            event_of(message_of(
                "[7] Jan  1 00:00:09 Password auth succeeded for 'root' from 10.0.2.2:5000"
            )),
            Event::PasswordLogin
        );
        assert_eq!(
            event_of(message_of(
                "[3] Dec 07 05:19:11 Early exit: No listening ports available."
            )),
            Event::ListenFailed
        );
        assert_eq!(message_of("plain"), "plain");
        assert_eq!(message_of("[x] odd"), "odd");
    }

    #[test]
    fn dropbear_arguments_per_login_kind() {
        let paths = Paths::default();
        let mut s = State {
            port: 2222,
            keys: vec!["SHA256:x me".into()],
            ..State::default()
        };
        let a = dropbear_args(&paths, &s);
        assert!(a.contains(&"-s".to_string()), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["-p", "2222"]), "{a:?}");
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-r" && w[1].ends_with("ed25519_host_key")));
        assert!(!a.contains(&"-w".to_string()) && !a.contains(&"-B".to_string()));
        s.once = true;
        assert!(!dropbear_args(&paths, &s).contains(&"-s".to_string()));
        s.once_used = true;
        assert!(dropbear_args(&paths, &s).contains(&"-s".to_string()));
        assert_eq!(s.auth_words(), "1 key + one-time password (used)");
        s.host_key_fingerprint = "SHA256:abc".into();
        assert_eq!(
            s.line(),
            "on, port 2222, login by 1 key + one-time password (used)"
        );
        s.host_key_type = "ssh-ed25519".into();
        assert_eq!(s.host_line(), "host key ssh-ed25519 SHA256:abc");
    }

    #[test]
    fn public_key_from_dropbearkey_output() {
        let out = "Public key portion is:\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPivt3cgFI9pRxHwKAvymOgPg6GQwk/P03gHD/YMFkaj root@vm\nFingerprint: SHA256:e0895MTV3qs8p5SyOKcfr+saigZyTeZFcqGk/r4cJQM\n";
        let k = public_key_in(out).unwrap();
        assert_eq!(
            k.fingerprint(),
            "SHA256:e0895MTV3qs8p5SyOKcfr+saigZyTeZFcqGk/r4cJQM"
        );
        assert!(public_key_in("nothing").is_err());
    }

    /// The host's dropbearkey (Debian's dropbear-bin, the package the image
    /// ships) makes a key once; its fingerprint is the one it prints.
    #[test]
    fn host_key_made_once_with_dropbearkey() {
        let dir = testkit::TempDir::new("sshd-hostkey");
        let paths = Paths {
            host_key: dir.join("etc/dropbear/key"),
            ..Paths::default()
        };
        assert!(
            paths.dropbearkey.exists(),
            "dropbearkey (apt-get install dropbear-bin) is needed"
        );
        let said = std::cell::RefCell::new(Vec::new());
        let k = host_key(&paths, &|l| said.borrow_mut().push(l.to_string())).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(said.borrow().len(), 1);
        let again = host_key(&paths, &|l| said.borrow_mut().push(l.to_string())).unwrap();
        assert_eq!(again.blob, k.blob, "the key is kept");
        assert_eq!(said.borrow().len(), 1, "not made twice");
        let out = Command::new(&paths.dropbearkey)
            .args(["-y", "-f"])
            .arg(&paths.host_key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&k.fingerprint()), "{text}");
    }

    #[test]
    fn stop_without_a_server_and_status_files() {
        let dir = testkit::TempDir::new("sshd-stop");
        let paths = Paths {
            root: files::Root(dir.path().to_path_buf()),
            state: dir.join("run/ssh.json"),
            failed: dir.join("run/ssh.failed"),
            once_file: dir.join("run/ssh.once"),
            ..Paths::default()
        };
        assert_eq!(stop(&paths), Ok(false));
        assert!(running(&paths).is_none());
        // A state file whose processes are gone is not a running server.
        let s = State {
            port: 22,
            once: true,
            supervisor_pid: Some(u32::MAX - 1),
            dropbear_pid: Some(u32::MAX - 2),
            ..State::default()
        };
        write_state(&paths, &s).unwrap();
        assert_eq!(read_state(&paths), Some(s));
        assert!(running(&paths).is_none());
        files::write_all(&paths.root, &[], "$6$x$y").unwrap();
        files::write_file(&paths.once_file, "pw\n", 0o600).unwrap();
        assert!(summary_at(&paths, true).is_empty(), "not running");
        assert_eq!(stop(&paths), Ok(false));
        assert!(!paths.state.exists());
        assert!(!paths.once_file.exists());
        assert_eq!(
            files::root_password_field(&std::fs::read_to_string(paths.root.shadow()).unwrap()),
            Some("*"),
            "a pending one-time password is taken back"
        );
        let e = start(&Request::default(), &paths, &[], &|_| {}).unwrap_err();
        assert!(e.contains("no way to log in"), "{e}");
    }
}
