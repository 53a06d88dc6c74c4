//! The remote console (issue 21, part 5), over QEMU's user network with
//! `restrict=on`: the host reaches the guest's port 22 only through a
//! `hostfwd` on 127.0.0.1; nothing leaves the host.
//!
//! - `rescue.ssh=TYPE:BASE64` (a key made here by ssh-keygen): the host's
//!   `ssh -tt` with that key reaches the menu (its header), the host key
//!   it is shown is the fingerprint the console printed at boot; a command
//!   (`ssh host cmd`) is refused; no password login works (dropbear runs
//!   with -s); `rescue ssh` shows the status; `rescue ssh off` ends the
//!   open session and nothing answers on the port any more.
//! - `rescue.ssh=once`: the one-time password printed on the serial
//!   console logs in once (sshpass) and not a second time; it is in
//!   neither the action log nor the kernel log, and /etc/shadow holds no
//!   password afterwards.
//!
//! Needs ssh, ssh-keygen (openssh-client) and sshpass on the host
//! (qemu-tests/setup.sh installs them).

use qemu_tests::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(300);
/// A login under TCG: key exchange and the menu's first overview.
const LOGIN: Duration = Duration::from_secs(240);

/// A free port on 127.0.0.1 for the forward (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A virtio NIC on QEMU's restricted user network; the host's
/// 127.0.0.1:`port` forwards to the guest's port 22.
fn user_net_with_ssh(cfg: &mut VmConfig, port: u16) {
    cfg.extra_args.extend([
        "-netdev".to_string(),
        format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ]);
}

fn need(program: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{program} is needed (apt-get install {package})");
}

/// The common options: no known_hosts, no agent or config of the host's.
fn ssh_opts(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentityAgent=none",
        "-o",
        "ConnectTimeout=120",
        "-o",
        "ServerAliveInterval=0",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect()
}

/// An ssh client running on the host, its output collected.
struct Session {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    fn start(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh (openssh-client) is needed");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        for (stream, buf) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                out.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ] {
            let mut stream = stream;
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = stream.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&b[..n]);
                }
            });
        }
        Session { child, out, err }
    }

    fn text(&self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned(),
            String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned(),
        )
    }

    /// Waits until stdout holds `marker`; panics with both streams if ssh
    /// ends first or time runs out.
    fn wait_for(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (out, err) = self.text();
            if out.contains(marker) {
                return out;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(300));
                let (out, err) = self.text();
                panic!("ssh ended ({st}) before {marker:?}:\n{out}\nstderr:\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} within {timeout:?}:\n{out}\nstderr:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for ssh to end; its status, or None after `timeout`.
    fn wait_end(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an ssh command to the end: (status code, stdout, stderr).
fn run(mut cmd: Command, timeout: Duration) -> (i32, String, String) {
    cmd.stdin(Stdio::null());
    let mut s = Session::start(cmd);
    let st = s
        .wait_end(timeout)
        .unwrap_or_else(|| panic!("ssh did not end within {timeout:?}: {:?}", s.text()));
    std::thread::sleep(Duration::from_millis(200));
    let (out, err) = s.text();
    (st.code().unwrap_or(-1), out, err)
}

/// The `SHA256:...` after `marker` in `text`.
fn fingerprint_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
    text[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn key_login_reaches_the_menu_and_no_password_works() {
    need("ssh", "openssh-client");
    need("ssh-keygen", "openssh-client");
    need("sshpass", "sshpass");
    let image = Image::built();
    let dir = temp_dir("ssh-key");
    let key = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "lab@desk", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut words = public.split_whitespace();
    let joined = format!("{}:{}", words.next().unwrap(), words.next().unwrap());
    let port = free_port();
    let mut cfg = VmConfig::new(Vec::new()).append(&format!("rescue.net=dhcp rescue.ssh={joined}"));
    user_net_with_ssh(&mut cfg, port);
    let mut vm = Vm::start(&image, &cfg);
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(
        boot.contains("rescue: ssh: on, port 22; host key ssh-ed25519 SHA256:"),
        "{boot}"
    );
    assert!(!boot.contains("one-time password"), "{boot}");
    let console_fp = fingerprint_after(&boot, "host key ssh-ed25519 ");
    assert!(
        boot.contains("SSH: on, port 22, login by 1 key"),
        "menu header: {boot}"
    );

    // The key reaches the menu; the host key is the one the console showed.
    let mut cmd = Command::new("ssh");
    cmd.arg("-tt")
        .arg("-v")
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "BatchMode=yes",
        ])
        .args(ssh_opts(port))
        .arg("root@127.0.0.1");
    let mut session = Session::start(cmd);
    let menu = session.wait_for("Choose: ", LOGIN);
    assert!(menu.contains("disk rescue appliance ==="), "{menu}");
    assert!(menu.contains("SSH: on, port 22"), "{menu}");
    let (_, err) = session.text();
    assert!(
        err.contains(&format!("Server host key: ssh-ed25519 {console_fp}")),
        "console said {console_fp}; ssh -v said:\n{err}"
    );

    // A command is refused: the login is the menu.
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(&key)
        .args(["-o", "BatchMode=yes"])
        .args(ssh_opts(port))
        .args(["root@127.0.0.1", "rescue", "probe"]);
    let (code, _, err) = run(cmd, LOGIN);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("commands are not run"), "{err}");

    // No password login: with a password, and with no password at all.
    for pw in ["", "root", "rescue"] {
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", pw, "ssh"])
            .args([
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(ssh_opts(port))
            .args(["root@127.0.0.1"]);
        let (code, out, err) = run(cmd, LOGIN);
        assert_ne!(code, 0, "password {pw:?} logged in:\n{out}\n{err}");
        assert!(!out.contains("disk rescue appliance"), "{out}");
    }

    // The status on the console, then off: the open session ends.
    vm.enter_shell();
    let (out, code) = vm.shell("rescue ssh", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SSH: on, port 22, login by 1 key"), "{out}");
    assert!(out.contains("sessions"), "{out}");
    assert!(out.contains(&console_fp), "{out}");
    let (out, code) = vm.shell("ls -l /root/.ssh/authorized_keys; stat -c %a /root/.ssh", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("-rw-------"), "{out}");
    assert!(out.contains("700"), "{out}");
    let (out, code) = vm.shell("rescue ssh off", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        session.wait_end(Duration::from_secs(60)).is_some(),
        "the open session did not end: {:?}",
        session.text()
    );
    let (out, code) = vm.shell("rescue ssh status --json", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"running\": false"), "{out}");
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(&key)
        .args(["-o", "BatchMode=yes", "-o", "ConnectionAttempts=1"])
        .args(ssh_opts(port))
        .args(["root@127.0.0.1"]);
    let (code, out, _) = run(cmd, LOGIN);
    assert_ne!(code, 0, "{out}");
    vm.power_off_from_shell();
}

#[test]
fn one_time_password_logs_in_once() {
    need("ssh", "openssh-client");
    need("sshpass", "sshpass");
    let image = Image::built();
    let port = free_port();
    let mut cfg = VmConfig::new(Vec::new()).append("rescue.net=dhcp rescue.ssh=once");
    user_net_with_ssh(&mut cfg, port);
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("one-time password for root: ", BOOT_TIMEOUT);
    let line = vm.wait_for("\n", Duration::from_secs(10));
    let password = line.split_whitespace().next().unwrap().to_string();
    assert_eq!(password.len(), 19, "{line}");
    let boot = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    assert!(
        boot.contains(&format!("one-time password: {password}")),
        "the local menu shows it: {boot}"
    );
    let login = |vm_port: u16| {
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", &password, "ssh", "-tt"])
            .args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(ssh_opts(vm_port))
            .arg("root@127.0.0.1");
        Session::start(cmd)
    };
    let mut first = login(port);
    let menu = first.wait_for("Choose: ", LOGIN);
    assert!(menu.contains("disk rescue appliance ==="), "{menu}");
    assert!(
        !menu.contains(&password),
        "the password is never shown over SSH:\n{menu}"
    );
    drop(first);
    let mut second = login(port);
    let st = second
        .wait_end(LOGIN)
        .expect("the second login attempt did not end");
    let (out, err) = second.text();
    assert!(!st.success(), "the password worked twice:\n{out}\n{err}");
    assert!(!out.contains("disk rescue appliance"), "{out}");

    vm.enter_shell();
    let (out, code) = vm.shell(
        &format!(
            "grep -c '{password}' /run/rescue/log; dmesg | grep -c '{password}'; \
             cut -d: -f1,2 /etc/shadow; rescue ssh"
        ),
        T,
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(lines.starts_with(&["0", "0", "root:*"]), "{out}");
    assert!(out.contains("one-time password (used)"), "{out}");
    let (out, code) = vm.shell("rescue ssh off", T);
    assert_eq!(code, 0, "{out}");
    vm.power_off_from_shell();
}
