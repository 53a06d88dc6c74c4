//! The host's Debian dropbear (dropbear-bin, the package the image ships)
//! run with the files this crate writes, in a chroot inside a private
//! mount namespace (`unshare -m`), on a free port of 127.0.0.1: nothing of
//! the host's /etc or /root is read or written. The chroot holds dropbear,
//! the libraries it needs, busybox, and a stand-in for the login shell
//! that prints a marker (the real one is `rescue`).
//!
//! - by key: the key made by ssh-keygen logs in (the login shell from
//!   /etc/passwd runs, /etc/shells accepted it), no password works
//!   (dropbear runs with -s), `stop` ends the server;
//! - by a one-time password: its `$6$` hash in /etc/shadow is accepted by
//!   dropbear's libcrypt; after the first login the supervisor has removed
//!   it, and the same password fails.
//!
//! Needs root, unshare and chroot (util-linux, coreutils), busybox-static,
//! dropbear-bin, openssh-client and sshpass.

use sshd::{files, keys::PublicKey, Paths, State};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is needed (apt-get install {package})"
    );
}

/// Copies `from` (following links) to the same path under `root`.
fn copy_in(root: &Path, from: &str) {
    let to = root.join(from.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{from}: {e}"));
}

/// The libraries `ldd` names for `program`, with the loader.
fn libraries(program: &str) -> Vec<String> {
    let out = Command::new("ldd").arg(program).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next().map(String::from),
                None => l
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                    .map(String::from),
            }
        })
        .collect()
}

struct Server {
    dir: testkit::TempDir,
    root: PathBuf,
    paths: Paths,
    port: u16,
    key: PathBuf,
}

impl Server {
    fn new(tag: &str) -> Server {
        need("/usr/sbin/dropbear", "dropbear-bin");
        need("/usr/bin/dropbearkey", "dropbear-bin");
        need("/bin/busybox", "busybox-static");
        need("/usr/bin/unshare", "util-linux");
        need("/usr/bin/sshpass", "sshpass");
        need("/usr/bin/ssh-keygen", "openssh-client");
        let dir = testkit::TempDir::new(tag);
        let root = dir.join("root");
        for p in ["/usr/sbin/dropbear", "/bin/busybox"] {
            copy_in(&root, p);
        }
        for lib in libraries("/usr/sbin/dropbear") {
            copy_in(&root, &lib);
        }
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        for d in ["dev", "proc", "run", "tmp", "var/run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // The login shell's stand-in: says it ran, with its arguments.
        std::fs::write(
            root.join("bin/rescue-login"),
            "#!/bin/sh\necho \"LOGIN-SHELL-RAN $0 $*\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("bin/rescue-login"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // dropbear in a chroot of `root` in a private mount namespace,
        // with the host's /dev bound there (pty, urandom); the execs keep
        // one pid, dropbear's.
        let wrapper = dir.join("dropbear-in-chroot");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec unshare --mount --propagation private sh -c '\
                 mount --rbind /dev \"$0/dev\" && exec chroot \"$0\" /usr/sbin/dropbear \"$@\"' \
                 '{}' \"$@\"\n",
                root.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let paths = Paths {
            root: files::Root(root.clone()),
            dropbear: wrapper,
            // Paths dropbear opens are seen from inside the chroot.
            host_key: "/etc/dropbear/host_key".into(),
            pidfile: "/run/dropbear.pid".into(),
            state: dir.join("ssh.json"),
            failed: dir.join("ssh.failed"),
            once_file: dir.join("ssh.once"),
            ..Paths::default()
        };
        // The host key, made by dropbearkey where the chroot sees it.
        std::fs::create_dir_all(root.join("etc/dropbear")).unwrap();
        let st = Command::new("/usr/bin/dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(root.join("etc/dropbear/host_key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let key = dir.join("id");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        Server {
            dir,
            root,
            paths,
            port,
            key,
        }
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::parse(&std::fs::read_to_string(self.key.with_extension("pub")).unwrap()).unwrap()
    }

    /// Writes the state as `start` does and runs the supervisor on a
    /// thread until dropbear listens.
    fn serve(&self, once: bool, keys: usize) -> std::thread::JoinHandle<Result<(), String>> {
        let state = State {
            port: self.port,
            keys: vec!["k".into(); keys],
            once,
            host_key_type: "ssh-ed25519".into(),
            host_key_fingerprint: "SHA256:x".into(),
            ..State::default()
        };
        std::fs::write(&self.paths.state, serde_json::to_string(&state).unwrap()).unwrap();
        let paths = self.paths.clone();
        let handle = std::thread::spawn(move || sshd::serve(&paths));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if sshd::read_state(&self.paths).is_some_and(|s| s.listening) {
                return handle;
            }
            assert!(
                !handle.is_finished() && Instant::now() < deadline,
                "dropbear did not listen: {:?}",
                std::fs::read_to_string(&self.paths.failed)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ssh(&self, pre: &[&str], opts: &[&str], command: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(pre.first().copied().unwrap_or("ssh"));
        if !pre.is_empty() {
            cmd.args(&pre[1..]).arg("ssh");
        }
        cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentityAgent=none",
            ])
            .args(["-o", "ConnectTimeout=20", "-o", "NumberOfPasswordPrompts=1"])
            .args(opts)
            .args(["-p", &self.port.to_string(), "root@127.0.0.1"])
            .args(command)
            .stdin(Stdio::null());
        let out = cmd.output().expect("ssh");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn a_key_logs_in_and_no_password_does() {
    let s = Server::new("sshd-chroot-key");
    files::write_all(&s.paths.root, &[s.public_key()], files::NO_PASSWORD).unwrap();
    let handle = s.serve(false, 1);
    let key = s.key.display().to_string();
    let (ok, out) = s.ssh(&[], &["-i", &key, "-o", "BatchMode=yes", "-T"], &[]);
    assert!(
        ok && out.contains("LOGIN-SHELL-RAN") && out.contains("rescue-login"),
        "{out}"
    );
    // A command reaches the login shell as -c COMMAND (which refuses it).
    let (_, out) = s.ssh(
        &[],
        &["-i", &key, "-o", "BatchMode=yes"],
        &["rescue", "probe"],
    );
    assert!(
        out.contains("LOGIN-SHELL-RAN") && out.contains("-c rescue probe"),
        "{out}"
    );
    for pw in ["", "root", "*"] {
        let (ok, out) = s.ssh(
            &["sshpass", "-p", pw],
            &[
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
            ],
            &[],
        );
        assert!(!ok && !out.contains("LOGIN-SHELL-RAN"), "{pw:?}: {out}");
    }
    // Group and other bits on the keys' folder: dropbear refuses the key.
    use std::os::unix::fs::PermissionsExt;
    let ssh_dir = s.root.join("root/.ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, out) = s.ssh(&[], &["-i", &key, "-o", "BatchMode=yes", "-T"], &[]);
    assert!(!ok, "{out}");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(sshd::stop(&s.paths), Ok(true));
    assert!(handle.join().unwrap().is_ok());
    let (ok, out) = s.ssh(&[], &["-i", &key, "-o", "BatchMode=yes", "-T"], &[]);
    assert!(!ok && !out.contains("LOGIN-SHELL-RAN"), "{out}");
    drop(s.dir);
}

#[test]
fn a_one_time_password_logs_in_once() {
    let s = Server::new("sshd-chroot-once");
    let password = sshd::crypt::new_password().unwrap();
    let hash = sshd::crypt::sha512_crypt(password.as_bytes(), &sshd::crypt::new_setting().unwrap())
        .unwrap();
    files::write_all(&s.paths.root, &[], &hash).unwrap();
    let handle = s.serve(true, 0);
    let opts = [
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-T",
    ];
    let (ok, out) = s.ssh(&["sshpass", "-p", "wrong-password"], &opts, &[]);
    assert!(!ok && !out.contains("LOGIN-SHELL-RAN"), "{out}");
    let (ok, out) = s.ssh(&["sshpass", "-p", &password], &opts, &[]);
    assert!(ok && out.contains("LOGIN-SHELL-RAN"), "{out}");
    // The supervisor saw the password login and removed the password.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sshd::read_state(&s.paths).is_some_and(|st| st.once_used) {
        assert!(Instant::now() < deadline, "once_used not recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shadow = std::fs::read_to_string(s.paths.root.shadow()).unwrap();
    assert_eq!(files::root_password_field(&shadow), Some("*"));
    let (ok, out) = s.ssh(&["sshpass", "-p", &password], &opts, &[]);
    assert!(
        !ok && !out.contains("LOGIN-SHELL-RAN"),
        "the password worked twice: {out}"
    );
    assert_eq!(sshd::stop(&s.paths), Ok(true));
    assert!(handle.join().unwrap().is_ok());
}
