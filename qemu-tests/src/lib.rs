//! A harness that boots the built appliance (`out/vmlinuz`, `out/initramfs.img`)
//! under QEMU with TCG, attaches disks on chosen controllers, talks to the
//! serial console over a Unix socket and checks disks' SHA-256 afterwards.
//!
//! Robustness rules: every wait has a timeout and looks for an exact marker;
//! nothing sleeps to guess; the whole console log is kept in a file for the
//! failure message.

pub mod demo;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: TCG on a busy 2-core machine is slow.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The built image: `out/vmlinuz` and `out/initramfs.img`.
pub struct Image {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Image {
    /// The image under `out/`; a clear panic tells how to build it.
    pub fn built() -> Image {
        let out = std::env::var_os("RESCUE_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("out"));
        let img = Image {
            kernel: out.join("vmlinuz"),
            initramfs: out.join("initramfs.img"),
        };
        for p in [&img.kernel, &img.initramfs] {
            assert!(
                p.exists(),
                "{} is missing: build the image first (cargo run --release -p image-build)",
                p.display()
            );
        }
        img
    }
}

/// A scratch directory removed on drop (kept when RESCUE_KEEP_TMP is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var_os("RESCUE_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/qemu-tests"));
        let p = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RESCUE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Creates a sparse raw image of `size` bytes with a recognisable first and
/// last sector (so a write anywhere there changes the hash).
pub fn make_disk(path: &Path, size: u64, tag: &str) -> PathBuf {
    let mut f = std::fs::File::create(path).expect("create disk image");
    f.set_len(size).expect("size disk image");
    let mut sector = vec![0u8; 512];
    let label = format!("rescue-test-disk {tag}\n");
    sector[..label.len()].copy_from_slice(label.as_bytes());
    f.write_all(&sector).expect("write disk image");
    use std::os::unix::fs::FileExt;
    if size >= 1024 {
        f.write_all_at(&sector, size - 512)
            .expect("write disk image");
    }
    path.to_path_buf()
}

/// Chunk size of [`sha256_file`]'s content fingerprint.
const FINGERPRINT_CHUNK: u64 = 64 * 1024;

/// SHA-256 fingerprint of a disk image's content: over its size, then the
/// index and bytes of every 64 KiB chunk that is not all zeros. Holes are
/// skipped with SEEK_DATA/SEEK_HOLE, so multi-GiB sparse images hash in
/// moments, and the result depends only on the bytes, not on how the host
/// filesystem allocated them (mkfs leaves unwritten extents that later turn
/// into data without any byte changing). Any changed byte changes it.
pub fn sha256_file(path: &Path) -> String {
    use rustix::fs::{seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open for hashing");
    let size = f.metadata().expect("stat for hashing").len();
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; FINGERPRINT_CHUNK as usize];
    let mut next_chunk = 0u64;
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(&f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => panic!("SEEK_DATA on {}: {e}", path.display()),
        };
        let end = seek(&f, SeekFrom::Hole(start)).expect("SEEK_HOLE");
        let first = (start / FINGERPRINT_CHUNK).max(next_chunk);
        let last = end.div_ceil(FINGERPRINT_CHUNK);
        for chunk in first..last {
            let off = chunk * FINGERPRINT_CHUNK;
            let len = FINGERPRINT_CHUNK.min(size - off) as usize;
            f.read_exact_at(&mut buf[..len], off)
                .expect("read for hashing");
            if buf[..len].iter().any(|&b| b != 0) {
                h.update(chunk.to_le_bytes());
                h.update(&buf[..len]);
            }
        }
        next_chunk = last;
        pos = end.max(last * FINGERPRINT_CHUNK);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// How a disk is attached to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// `ich9-ahci` + `ide-hd`
    Ahci,
    Nvme,
    /// LSI MegaRAID SAS 2108 (`megasas-gen2`) + `scsi-hd`
    MegasasGen2,
    /// LSI SAS 1068 (`mptsas1068`) + `scsi-hd`; Linux 6.1 shows no disks on it
    Mptsas1068,
    /// LSI 53C895A (`lsi53c895a`) + `scsi-hd`
    Lsi53c895a,
    VirtioScsi,
    VirtioBlk,
    /// `qemu-xhci` + `usb-storage`
    Usb,
}

impl Controller {
    pub const ALL: [Controller; 8] = [
        Controller::Ahci,
        Controller::Nvme,
        Controller::MegasasGen2,
        Controller::Mptsas1068,
        Controller::Lsi53c895a,
        Controller::VirtioScsi,
        Controller::VirtioBlk,
        Controller::Usb,
    ];
}

/// One disk of a VM.
#[derive(Clone, Debug)]
pub struct Disk {
    pub path: PathBuf,
    pub controller: Controller,
    pub serial: String,
    pub model: Option<String>,
    pub logical_block_size: Option<u32>,
    /// Raw `-drive` options replacing the default `format=raw,file=PATH`
    /// (e.g. blkdebug layering).
    pub drive_override: Option<String>,
    /// Appended to the disk's `-device` options (e.g. `,smart_critical_warning=4`).
    pub device_extra: Option<String>,
}

impl Disk {
    pub fn new(path: impl Into<PathBuf>, controller: Controller, serial: &str) -> Disk {
        Disk {
            path: path.into(),
            controller,
            serial: serial.into(),
            model: None,
            logical_block_size: None,
            drive_override: None,
            device_extra: None,
        }
    }
    pub fn model(mut self, m: &str) -> Disk {
        self.model = Some(m.into());
        self
    }
    pub fn logical_block_size(mut self, n: u32) -> Disk {
        self.logical_block_size = Some(n);
        self
    }

    fn qemu_args(&self, i: usize) -> Vec<String> {
        let drive = format!("d{i}");
        let file = match &self.drive_override {
            Some(o) => format!("if=none,id={drive},{o}"),
            None => format!("if=none,id={drive},format=raw,file={}", self.path.display()),
        };
        let mut args = vec!["-drive".to_string(), file];
        let bs = self
            .logical_block_size
            .map(|n| format!(",logical_block_size={n},physical_block_size={n}"))
            .unwrap_or_default()
            + self.device_extra.as_deref().unwrap_or("");
        let serial = &self.serial;
        let scsi = |hba: &str, args: &mut Vec<String>| {
            args.push("-device".into());
            args.push(format!("{hba},id=h{i}"));
            args.push("-device".into());
            let product = self
                .model
                .as_ref()
                .map(|m| format!(",product={m}"))
                .unwrap_or_default();
            args.push(format!(
                "scsi-hd,drive={drive},bus=h{i}.0,serial={serial}{product}{bs}"
            ));
        };
        match self.controller {
            Controller::Ahci => {
                args.push("-device".into());
                args.push(format!("ich9-ahci,id=h{i}"));
                args.push("-device".into());
                let model = self
                    .model
                    .as_ref()
                    .map(|m| format!(",model={m}"))
                    .unwrap_or_default();
                args.push(format!(
                    "ide-hd,drive={drive},bus=h{i}.0,serial={serial}{model}{bs}"
                ));
            }
            Controller::Nvme => {
                args.push("-device".into());
                args.push(format!("nvme,drive={drive},serial={serial}{bs}"));
            }
            Controller::MegasasGen2 => scsi("megasas-gen2", &mut args),
            Controller::Mptsas1068 => scsi("mptsas1068", &mut args),
            Controller::Lsi53c895a => scsi("lsi53c895a", &mut args),
            Controller::VirtioScsi => scsi("virtio-scsi-pci", &mut args),
            Controller::VirtioBlk => {
                args.push("-device".into());
                args.push(format!("virtio-blk-pci,drive={drive},serial={serial}{bs}"));
            }
            Controller::Usb => {
                args.push("-device".into());
                args.push(format!("qemu-xhci,id=h{i}"));
                args.push("-device".into());
                args.push(format!(
                    "usb-storage,drive={drive},bus=h{i}.0,serial={serial}"
                ));
            }
        }
        args
    }
}

/// What to boot.
pub struct VmConfig {
    pub disks: Vec<Disk>,
    /// Kernel command line (without `rescue.script`, added by [`VmConfig::script`]).
    pub append: String,
    /// A script to run unattended, packed into a cpio appended to the initramfs.
    pub script: Option<String>,
    pub memory_mb: u32,
    pub extra_args: Vec<String>,
    /// Start a QMP monitor (see [`Vm::qmp`]).
    pub qmp: bool,
    /// Boot from this directory over the network (QEMU's TFTP server and
    /// the NIC's iPXE ROM) instead of passing the kernel directly.
    pub pxe_dir: Option<PathBuf>,
    /// Boot this USB stick image (attached with snapshot=on: the file is
    /// never written) instead of passing the kernel directly.
    pub usb_stick: Option<PathBuf>,
    /// Keep what the guest writes to the stick (default: snapshot=on).
    pub usb_stick_persistent: bool,
    /// Boot this ISO from a CD drive on the q35 AHCI controller.
    pub cdrom: Option<PathBuf>,
    /// UEFI firmware (OVMF, package ovmf) instead of SeaBIOS: `(true, _)`
    /// with Secure Boot enforced and Microsoft's keys enrolled. The
    /// variables file is copied to the given path.
    pub uefi: Option<(bool, PathBuf)>,
}

impl VmConfig {
    pub fn new(disks: Vec<Disk>) -> VmConfig {
        VmConfig {
            disks,
            append: "console=ttyS0,115200 quiet".into(),
            script: None,
            memory_mb: 1024,
            extra_args: Vec::new(),
            qmp: false,
            pxe_dir: None,
            usb_stick: None,
            usb_stick_persistent: false,
            cdrom: None,
            uefi: None,
        }
    }
    pub fn script(mut self, s: &str) -> VmConfig {
        self.script = Some(s.into());
        self
    }
    pub fn append(mut self, extra: &str) -> VmConfig {
        self.append.push(' ');
        self.append.push_str(extra);
        self
    }
}

impl VmConfig {
    /// QEMU with TCG, q35, no default devices, the kernel, initrd, command
    /// line and disks; the caller adds the serial console.
    pub fn qemu_command(&self, kernel: &Path, initrd: &Path, append: &str) -> Command {
        let mut cmd = Command::new(qemu_binary());
        let secure = self.uefi.as_ref().is_some_and(|u| u.0);
        cmd.args(["-accel", "tcg", "-nodefaults", "-no-reboot"])
            .args(["-machine", if secure { "q35,smm=on" } else { "q35" }])
            .args(["-display", "none", "-vga", "none"])
            .args(["-m", &self.memory_mb.to_string()]);
        if let Some((secure, vars_copy)) = &self.uefi {
            let (code, vars) = if *secure {
                (
                    "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                    "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
                )
            } else {
                (
                    "/usr/share/OVMF/OVMF_CODE_4M.fd",
                    "/usr/share/OVMF/OVMF_VARS_4M.fd",
                )
            };
            std::fs::copy(vars, vars_copy).expect("copy the OVMF variables (package ovmf)");
            if *secure {
                cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,file={code},readonly=on"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars_copy.display()
                ));
        }
        if let Some(iso) = &self.cdrom {
            cmd.arg("-drive")
                .arg(format!(
                    "if=none,id=cd,media=cdrom,readonly=on,file={}",
                    iso.display()
                ))
                .args(["-device", "ide-cd,drive=cd,bus=ide.0,bootindex=0"]);
        }
        match (&self.pxe_dir, &self.usb_stick) {
            _ if self.cdrom.is_some() => {}
            (_, Some(stick)) => {
                cmd.arg("-drive")
                    .arg(format!(
                        "if=none,id=stick,format=raw,snapshot={},file={}",
                        if self.usb_stick_persistent {
                            "off"
                        } else {
                            "on"
                        },
                        stick.display()
                    ))
                    .args(["-device", "qemu-xhci,id=stickbus"])
                    .args([
                        "-device",
                        "usb-storage,drive=stick,bus=stickbus.0,bootindex=0",
                    ]);
            }
            (Some(dir), None) => {
                cmd.arg("-netdev")
                    .arg(format!(
                        "user,id=n0,tftp={},bootfile=boot.ipxe",
                        dir.display()
                    ))
                    .args(["-device", "e1000,netdev=n0", "-boot", "n"]);
            }
            (None, None) => {
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(append);
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            cmd.args(d.qemu_args(i));
        }
        cmd
    }
}

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
        let dir = TempDir::new("vm");
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
        let deadline = Instant::now() + timeout;
        let mut guard = self.transcript.bytes.lock().unwrap();
        loop {
            if let Some(pos) = find(&guard[self.cursor..], marker.as_bytes()) {
                let end = self.cursor + pos + marker.len();
                let text = String::from_utf8_lossy(&guard[self.cursor..end]).into_owned();
                self.cursor = end;
                return text;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(guard);
                panic!(
                    "timed out after {timeout:?} waiting for {marker:?}; console tail:\n{}",
                    self.tail()
                );
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

    /// From the menu's prompt, starts the menu's shell.
    pub fn enter_shell(&mut self) {
        self.send("s\n");
        self.wait_for("type 'exit'", Duration::from_secs(30));
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

/// The number a menu screen shows in front of the first line containing
/// `needle` (menus number their choices in the first column).
/// The number of the ESXi slot repair the menu's GPT view offers.
pub fn esxi_repair_choice(view: &str) -> String {
    view.lines()
        .filter(|l| l.contains("ESXi"))
        .filter_map(|l| l.split_whitespace().next())
        .find(|w| w.parse::<u32>().is_ok())
        .unwrap_or_else(|| panic!("no ESXi repair offered:\n{view}"))
        .to_string()
}

pub fn menu_number(screen: &str, needle: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{screen}"))
        .to_string()
}

/// A file from an ext4 image, read on the host with e2fsprogs' debugfs (no
/// mount); `path` is absolute in the filesystem; `scratch` is where debugfs
/// puts it.
pub fn ext4_file(image: &Path, path: &str, scratch: &Path) -> Vec<u8> {
    let st = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {path} {}", scratch.display()))
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(scratch).unwrap_or_else(|e| panic!("{path} not in {}: {e}", image.display()))
}

pub fn qemu_binary() -> String {
    std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// One command's framed output from an unattended run.
#[derive(Debug, Clone)]
pub struct ScriptSection {
    pub command: String,
    pub output: String,
    pub exit: i32,
}

/// Splits a console transcript into the script's sections (see the README's
/// unattended-mode contract). Carriage returns are removed.
pub fn parse_sections(transcript: &str) -> Vec<ScriptSection> {
    let text = transcript.replace('\r', "");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("=== rescue: ") {
        let after = &rest[start + "=== rescue: ".len()..];
        let Some(eol) = after.find(" ===\n") else {
            break;
        };
        let command = after[..eol].to_string();
        let body = &after[eol + " ===\n".len()..];
        let end_marker = format!("=== end: {command} (exit ");
        let Some(end) = body.find(&end_marker) else {
            break;
        };
        let output = body[..end].to_string();
        let tail = &body[end + end_marker.len()..];
        let close = tail.find(") ===").unwrap_or(0);
        let exit = tail[..close].parse().unwrap_or(-1);
        out.push(ScriptSection {
            command,
            output,
            exit,
        });
        rest = &tail[close..];
    }
    out
}

/// Boots, runs `script` unattended, waits for power-off; returns the sections.
pub fn run_script(image: &Image, cfg: VmConfig, script: &str) -> (Vec<ScriptSection>, String) {
    let cfg = cfg.script(script);
    let mut vm = Vm::start(image, &cfg);
    vm.wait_for("=== rescue.script done ===", BOOT_TIMEOUT);
    vm.wait_exit(Duration::from_secs(60));
    let t = vm.transcript();
    (parse_sections(&t), t)
}

/// The JSON document a `probe --json` section printed.
pub fn probe_json(section: &ScriptSection) -> serde_json::Value {
    let start = section
        .output
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in probe output:\n{}", section.output));
    let end = section.output.rfind('}').expect("JSON end");
    serde_json::from_str(&section.output[start..=end])
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", section.output))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn fingerprint_sees_writes_into_holes_and_data() {
        use std::os::unix::fs::FileExt;
        let dir = TempDir::new("fp");
        let p = make_disk(&dir.path().join("d"), 64 << 20, "x");
        let a = sha256_file(&p);
        assert_eq!(a, sha256_file(&p));
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0; 4096], 32 << 20).unwrap(); // zeros into a hole: same bytes
        assert_eq!(a, sha256_file(&p), "allocation alone must not matter");
        f.write_all_at(&[1], (32 << 20) + 5).unwrap(); // a byte into a hole
        let b = sha256_file(&p);
        assert_ne!(a, b);
        f.write_all_at(b"Z", 3).unwrap(); // a changed byte in data
        assert_ne!(b, sha256_file(&p));
        // Matches a plain read of the content.
        let bytes = std::fs::read(&p).unwrap();
        let mut h = Sha256::new();
        h.update((bytes.len() as u64).to_le_bytes());
        for (i, c) in bytes.chunks(FINGERPRINT_CHUNK as usize).enumerate() {
            if c.iter().any(|&x| x != 0) {
                h.update((i as u64).to_le_bytes());
                h.update(c);
            }
        }
        let plain: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha256_file(&p), plain);
    }

    #[test]
    fn sections_are_split_by_markers() {
        let t = "noise\r\n=== rescue: probe --json ===\r\n{\"a\":1}\r\n=== end: probe --json (exit 0) ===\r\n\
                 === rescue: bad ===\r\nerr\r\n=== end: bad (exit 2) ===\r\n=== rescue.script done ===\r\n";
        let s = parse_sections(t);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].command, "probe --json");
        assert_eq!(s[0].output, "{\"a\":1}\n");
        assert_eq!(s[0].exit, 0);
        assert_eq!(probe_json(&s[0])["a"], 1);
        assert_eq!(s[1].exit, 2);
    }
}
