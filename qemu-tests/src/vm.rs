//! A running VM: QEMU started on a configuration, its serial console over a
//! Unix socket (the whole transcript kept, and in a log file for failure
//! messages), waits for exact markers with timeouts, the guest's shell, QMP
//! and power-off.

use crate::config::VmConfig;
use crate::fixtures::{temp_dir, Image, TempDir};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: TCG on a busy 2-core machine is slow.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// A console transcript shared between the reader thread and the test.
#[derive(Default)]
struct Transcript {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

/// A running VM.
pub struct Vm {
    child: Child,
    qmp_path: Option<PathBuf>,
    serial: UnixStream,
    transcript: Arc<Transcript>,
    /// Where [`Vm::wait_for`] continues searching.
    cursor: usize,
    pub log_path: PathBuf,
    _dir: TempDir,
}

impl Vm {
    pub fn start(image: &Image, cfg: &VmConfig) -> Vm {
        let dir = temp_dir("vm");
        let sock = dir.path().join("serial.sock");
        let log_path = dir.path().join("console.log");
        let mut append = cfg.append.clone();
        let initrd = match &cfg.script {
            Some(script) => {
                let mut bytes = std::fs::read(&image.initramfs).expect("read initramfs");
                // Each archive of a concatenation starts 4-byte aligned.
                while !bytes.len().is_multiple_of(4) {
                    bytes.push(0);
                }
                bytes.extend(image_build::extra_initrd(&[(
                    "rescue-test.script",
                    script.as_bytes(),
                    0o644,
                )]));
                let p = dir.path().join("initrd");
                std::fs::write(&p, bytes).expect("write initrd");
                append.push_str(" rescue.script=/rescue-test.script");
                p
            }
            None => image.initramfs.clone(),
        };
        let mut cmd = cfg.qemu_command(&image.kernel, &initrd, &append);
        cmd.arg("-chardev")
            .arg(format!(
                "socket,id=ser0,path={},server=on,wait=on,logfile={}",
                sock.display(),
                dir.path().join("qemu-serial.log").display()
            ))
            .args(["-serial", "chardev:ser0"]);
        cmd.args(&cfg.extra_args);
        let qmp_path = dir.path().join("qmp.sock");
        if cfg.qmp {
            cmd.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("qemu.out")).expect("qemu.out"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("qemu.err")).expect("qemu.err"),
            ));
        let mut child = cmd.spawn().expect("start qemu-system-x86_64");
        // QEMU creates the socket and waits for us before the guest runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        let serial = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "qemu exited early ({st}): {}",
                    std::fs::read_to_string(dir.path().join("qemu.err")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "qemu serial socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let transcript = Arc::new(Transcript::default());
        let t = transcript.clone();
        let mut reader = serial.try_clone().expect("clone serial socket");
        let mut log = std::fs::File::create(&log_path).expect("console log");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log.write_all(&buf[..n]);
                        t.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                        t.grew.notify_all();
                    }
                }
            }
            t.grew.notify_all();
        });
        Vm {
            child,
            qmp_path: cfg.qmp.then_some(qmp_path),
            serial,
            transcript,
            cursor: 0,
            log_path,
            _dir: dir,
        }
    }

    /// Everything the console printed so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript.bytes.lock().unwrap()).into_owned()
    }

    fn tail(&self) -> String {
        let t = self.transcript();
        let start = t.len().saturating_sub(3000);
        let start = (start..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(0);
        t[start..].to_string()
    }

    /// Waits until `marker` appears after the previous match; returns the text
    /// between the previous match's end and this match's end.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> String {
        self.try_wait_for(marker, timeout).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {marker:?}; console tail:\n{}",
                self.tail()
            )
        })
    }

    /// Waits until the console's last progress line (`NN.NN% ...`, as
    /// imaging prints it) shows at least `percent`.
    pub fn wait_for_progress(&self, percent: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.transcript();
            let last = t
                .rsplit(['\r', '\n'])
                .filter_map(|l| {
                    l.trim()
                        .split_once("% ")
                        .and_then(|(p, _)| p.trim().parse::<f64>().ok())
                })
                .next();
            if last.is_some_and(|p| p >= percent) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no progress to {percent}% within {timeout:?}: {}",
                &t[t.len().saturating_sub(2000)..]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Vm::wait_for`] that gives None at the timeout.
    pub fn try_wait_for(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.transcript.bytes.lock().unwrap();
        loop {
            if let Some(pos) = find(&guard[self.cursor..], marker.as_bytes()) {
                let end = self.cursor + pos + marker.len();
                let text = String::from_utf8_lossy(&guard[self.cursor..end]).into_owned();
                self.cursor = end;
                return Some(text);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                drop(guard);
                panic!(
                    "qemu exited ({st}) before {marker:?} appeared; console tail:\n{}",
                    self.tail()
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            guard = self.transcript.grew.wait_timeout(guard, wait).unwrap().0;
        }
    }

    /// Runs one QMP command (`{"execute": ...}` as JSON text) and returns
    /// its `return` value; panics on an error reply.
    pub fn qmp(&mut self, command: &str) -> serde_json::Value {
        use std::io::BufRead;
        let path = self.qmp_path.as_ref().expect("VmConfig::qmp was not set");
        let stream = UnixStream::connect(path).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("QMP timeout");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone QMP"));
        let mut writer = stream;
        let mut reply = |writer: &mut UnixStream, msg: Option<&str>| -> serde_json::Value {
            if let Some(m) = msg {
                writer.write_all(m.as_bytes()).expect("QMP write");
                writer.write_all(b"\n").expect("QMP write");
            }
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("QMP read");
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("QMP said {line:?}: {e}"));
                if msg.is_none() && v.get("QMP").is_some() {
                    return v;
                }
                if let Some(err) = v.get("error") {
                    panic!("QMP error for {msg:?}: {err}");
                }
                if let Some(r) = v.get("return") {
                    return r.clone();
                }
            }
        };
        reply(&mut writer, None);
        reply(&mut writer, Some(r#"{"execute":"qmp_capabilities"}"#));
        reply(&mut writer, Some(command))
    }

    /// From the menu's prompt: power off, confirmed, and wait for QEMU to end.
    pub fn power_off_from_menu(&mut self) {
        self.send("p\n");
        self.wait_for("[y/N]", Duration::from_secs(30));
        self.send("y\n");
        self.wait_exit(Duration::from_secs(60));
    }

    /// From the menu's shell: back to the menu, then power off.
    pub fn power_off_from_shell(&mut self) {
        self.send("exit\n");
        self.wait_for("Choose: ", Duration::from_secs(30));
        self.power_off_from_menu();
    }

    /// From the menu's prompt, starts the menu's shell, and makes sure it
    /// runs what is typed: a line typed while ash starts its line editor
    /// was seen echoed but never run (with a DHCP boot's kernel messages
    /// on the console), so a marker command is typed, after a Ctrl-U that
    /// clears any half-taken line, until its output comes back.
    pub fn enter_shell(&mut self) {
        self.send("s\n");
        self.wait_for("type 'exit'", Duration::from_secs(30));
        for _ in 0..12 {
            self.send("\x15echo SHELL-$((40+2))-READY\n");
            if self
                .try_wait_for("SHELL-42-READY", Duration::from_secs(10))
                .is_some()
            {
                return;
            }
        }
        panic!(
            "the shell never ran a command; console tail:\n{}",
            self.tail()
        );
    }

    /// Runs `command` in the guest's shell (see [`Vm::enter_shell`]); returns
    /// what it printed and its exit status.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> (String, i32) {
        // Markers are split in the typed line so its echo (which the serial
        // line may break or decorate) never matches them.
        self.send(&format!(
            "echo \"SH\"\"-BEGIN\"; {command}; echo \"SH\"\"-EXIT=$?\"\n"
        ));
        self.wait_for("SH-BEGIN", timeout);
        self.wait_for("\n", timeout);
        let text = self.wait_for("SH-EXIT=", timeout);
        let code = self.wait_for("\n", Duration::from_secs(10));
        let code = code.trim().parse().unwrap_or(-1);
        let out = text.trim_end_matches("SH-EXIT=").replace('\r', "");
        (out, code)
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) {
        self.serial
            .write_all(text.as_bytes())
            .expect("write to serial console");
    }

    /// Waits for QEMU to exit (the guest powered off, or rebooted: QEMU runs
    /// with `-no-reboot`) and checks that it exited successfully; a QEMU
    /// that failed or was killed is a test failure, with the console tail.
    pub fn wait_exit_ok(&mut self, timeout: Duration) {
        let st = self.wait_exit(timeout);
        assert!(
            st.success(),
            "qemu exited with {st}; console tail:\n{}",
            self.tail()
        );
    }

    /// Waits for QEMU to exit (the guest powered off) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for qemu") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "guest did not power off within {timeout:?}; console tail:\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
