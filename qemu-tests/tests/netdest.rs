//! Network destinations (issue 21, part 2) against real servers on the
//! host, over QEMU's restricted user network (nothing leaves loopback):
//!
//! - nfs-ganesha (FSAL VFS) exporting a temporary folder over NFSv4 on a
//!   high port of 127.0.0.1 (v4 only: ganesha registers v3 with a
//!   portmapper, and none runs here), reached by the guest as
//!   10.0.2.100:2049;
//! - Samba's smbd on a high port of 127.0.0.1 with a generated smb.conf
//!   (every state and private folder under the temporary folder, a
//!   passdb of its own, the user's password set with `smbpasswd -a -s`),
//!   reached as 10.0.2.100:445.
//!
//! In the guest: `rescue dest mount nfs://...` and `smb://...
//! --password-file` (the password on a small ext4 disk), a disk imaged
//! onto each with a mapfile, the image run again over its finished map
//! (resume), `dest list --json` showing both, /proc/mounts without the
//! password, `dest umount` of the share, and the power-off unmounting the
//! export. On the host: both images equal the source, both mapfiles
//! finished, and the source unchanged.
//!
//! Needs `ganesha.nfsd` (Debian's nfs-ganesha, nfs-ganesha-vfs) and `smbd`,
//! `smbpasswd` (samba): `qemu-tests/setup.sh` installs them. Runs as root
//! (ganesha's VFS layer opens files by handle; smbd switches users).

use qemu_tests::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(600);
const MIB: usize = 1 << 20;
const PASSWORD: &str = "S3cr,et pass";

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it
/// right after).
/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_listening(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on port {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on port {port} after 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is needed for this test: run qemu-tests/setup.sh (nfs-ganesha, nfs-ganesha-vfs, samba)")
}

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    port: u16,
    /// smbd's own pid file: its children go with it on SIGTERM.
    pid_file: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self
            .pid_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
            // `kill 0` or `kill -1` would signal this test's own process
            // group (cargo and the shell that ran it): only real pids.
            .filter(|&p| p > 1)
            .unwrap_or(self.child.id() as i32);
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nfs-ganesha exporting `export` as `/export` (NFSv4, TCP, 127.0.0.1
/// only, root not squashed) on a free port.
fn ganesha(dir: &Path, export: &Path) -> Server {
    let port = free_port();
    let recov = dir.join("ganesha-recovery");
    std::fs::create_dir_all(&recov).unwrap();
    let conf = dir.join("ganesha.conf");
    std::fs::write(
        &conf,
        format!(
            "NFS_CORE_PARAM {{\n\
             \x20   NFS_Port = {port};\n\
             \x20   Bind_addr = 127.0.0.1;\n\
             \x20   Protocols = 4;\n\
             \x20   Enable_NLM = false;\n\
             \x20   Enable_RQUOTA = false;\n\
             \x20   Enable_UDP = false;\n\
             }}\n\
             NFSV4 {{\n\
             \x20   Graceless = true;\n\
             \x20   RecoveryBackend = fs;\n\
             \x20   RecoveryRoot = {};\n\
             }}\n\
             EXPORT {{\n\
             \x20   Export_Id = 1;\n\
             \x20   Path = {};\n\
             \x20   Pseudo = /export;\n\
             \x20   Access_Type = RW;\n\
             \x20   Squash = No_Root_Squash;\n\
             \x20   SecType = sys;\n\
             \x20   Protocols = 4;\n\
             \x20   Transports = TCP;\n\
             \x20   FSAL {{ Name = VFS; }}\n\
             }}\n",
            recov.display(),
            export.display()
        ),
    )
    .unwrap();
    let log = dir.join("ganesha.log");
    let mut child = Command::new(tool("ganesha.nfsd"))
        .arg("-F")
        .arg("-L")
        .arg(&log)
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .args(["-N", "NIV_EVENT"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ganesha.nfsd");
    wait_listening(port, "ganesha.nfsd", &mut child, &log);
    Server {
        child,
        port,
        pid_file: None,
    }
}

/// The user smbd logs in: this process's own (root when the tests run as
/// root), which Samba needs to exist as a Unix account.
fn unix_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// smbd serving `share` as `[share]` (the user with [`PASSWORD`]) on a
/// free port, everything it keeps under `dir`.
fn smbd(dir: &Path, share: &Path, user: &str) -> Server {
    let port = free_port();
    let state = dir.join("samba");
    for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log"] {
        std::fs::create_dir_all(state.join(sub)).unwrap();
    }
    let s = state.display();
    let conf = dir.join("smb.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\n\
             server role = standalone server\n\
             smb ports = {port}\n\
             interfaces = 127.0.0.1\n\
             bind interfaces only = yes\n\
             disable netbios = yes\n\
             server min protocol = SMB2_10\n\
             passdb backend = tdbsam:{s}/private/passdb.tdb\n\
             private dir = {s}/private\n\
             lock directory = {s}/lock\n\
             state directory = {s}/state\n\
             cache directory = {s}/cache\n\
             pid directory = {s}/pid\n\
             ncalrpc dir = {s}/ncalrpc\n\
             log file = {s}/log/smbd.log\n\
             log level = 1\n\
             load printers = no\n\
             printing = bsd\n\
             printcap name = /dev/null\n\
             disable spoolss = yes\n\
             [share]\n\
             path = {}\n\
             read only = no\n\
             force user = root\n",
            share.display()
        ),
    )
    .unwrap();
    let mut pw = Command::new(tool("smbpasswd"))
        .arg("-c")
        .arg(&conf)
        .args(["-a", "-s", user])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run smbpasswd");
    use std::io::Write;
    pw.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(pw.wait().unwrap().success(), "smbpasswd -a failed");
    let log = state.join("log/smbd.log");
    // Its own process group: smbd signals its whole group (kill(0,
    // SIGTERM)) when it ends, which would end this test and cargo too.
    let mut child = Command::new(tool("smbd"));
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child
        .args(["-F", "--no-process-group", "-s"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smbd");
    wait_listening(port, "smbd", &mut child, &log);
    Server {
        child,
        port,
        pid_file: Some(state.join("pid/smbd.pid")),
    }
}

#[test]
fn images_go_to_nfs_and_smb_shares_and_come_out_equal() {
    let image = Image::built();
    let dir = temp_dir("netdest");
    let d = dir.path();
    let export = d.join("export");
    let share = d.join("share");
    std::fs::create_dir_all(&export).unwrap();
    std::fs::create_dir_all(&share).unwrap();
    let nfs = ganesha(d, &export);
    let user = unix_user();
    let smb = smbd(d, &share, &user);

    // The source: 24 MiB of a pattern.
    let src = d.join("src.img");
    let mut data = vec![0u8; 24 * MIB];
    testkit::mdwriter::pattern(21, 0, &mut data);
    std::fs::write(&src, &data).unwrap();
    let src_hash = sha256_file(&src);
    // The password, on a small ext4 disk.
    let pwdir = d.join("pw");
    std::fs::create_dir_all(&pwdir).unwrap();
    std::fs::write(pwdir.join("pw"), format!("{PASSWORD}\n")).unwrap();
    let pw_disk = d.join("pw.img");
    qemu_tests::guest::ext4_of(&pwdir, &pw_disk, 8 * MIB as u64, None).unwrap();
    let pw_hash = sha256_file(&pw_disk);

    let mut cfg = VmConfig::new(vec![
        Disk::new(&src, Controller::VirtioBlk, "NETSRC-0001"),
        Disk::new(&pw_disk, Controller::VirtioBlk, "NETPW-0002"),
    ])
    .append("rescue.net=dhcp");
    cfg.user_net(&[(2049, nfs.port), (445, smb.port)]);
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell("mkdir -p /mnt/c && mount -o ro -t ext4 /dev/vdb /mnt/c", T);
    assert_eq!(code, 0, "{out}");

    // NFS: v4.2 (ganesha has it), an image with a mapfile, then the same
    // command again over its finished map.
    let (out, code) = vm.shell("rescue dest mount nfs://10.0.2.100/export --yes", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "nfs://10.0.2.100/export mounted read-write at /mnt/dest/nfs-10.0.2.100-export (NFS v4"
        ),
        "{out}"
    );
    let n = "/mnt/dest/nfs-10.0.2.100-export";
    let img_nfs = format!("rescue image /dev/vda {n}/disk.img --map {n}/disk.map");
    let (out, code) = vm.shell(&img_nfs, T);
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(&img_nfs, T);
    assert_eq!(code, 0, "resume over a finished map: {out}");

    // SMB: the password from the file, never shown.
    let (out, code) = vm.shell(
        &format!("rescue dest mount smb://{user}@10.0.2.100/share --password-file /mnt/c/pw --yes"),
        T,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("mounted read-write at /mnt/dest/smb-10.0.2.100-share (SMB 3.1.1)"),
        "{out}"
    );
    let s = "/mnt/dest/smb-10.0.2.100-share";
    let img_smb = format!("rescue image /dev/vda {s}/disk.img --map {s}/disk.map");
    let (out, code) = vm.shell(&img_smb, T);
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(&img_smb, T);
    assert_eq!(code, 0, "resume over a finished map: {out}");

    let (out, code) = vm.shell("cat /proc/mounts", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(" /mnt/dest/smb-10.0.2.100-share cifs "),
        "{out}"
    );
    assert!(
        out.contains(" /mnt/dest/nfs-10.0.2.100-export nfs4 "),
        "{out}"
    );
    assert!(
        !out.contains("password"),
        "/proc/mounts shows a password: {out}"
    );
    assert!(
        !out.contains("S3cr"),
        "/proc/mounts shows the password: {out}"
    );

    let (out, code) = vm.shell("rescue dest list --json", T);
    assert_eq!(code, 0, "{out}");
    let list = json_of(&out);
    let cands = list["candidates"].as_array().expect("candidates");
    for (url, fs, at) in [
        ("nfs://10.0.2.100/export", "nfs4", n),
        ("smb://10.0.2.100/share", "cifs", s),
    ] {
        let c = cands
            .iter()
            .find(|c| c["device"] == url)
            .unwrap_or_else(|| panic!("{url} not listed: {list}"));
        assert_eq!(c["network"], true, "{c}");
        assert_eq!(c["filesystem"], fs, "{c}");
        assert_eq!(c["mounted_at"], at, "{c}");
    }
    let (out, code) = vm.shell("rescue dest list", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("smb://10.0.2.100/share"), "{out}");

    // The share by its URL; the export is left to the power-off.
    let (out, code) = vm.shell("rescue dest umount smb://10.0.2.100/share", T);
    assert_eq!(code, 0, "{out}");
    let (out, _) = vm.shell("grep -c cifs /proc/mounts", T);
    assert!(out.lines().any(|l| l.trim() == "0"), "{out}");
    vm.power_off_from_shell();

    for (what, folder) in [("NFS", &export), ("SMB", &share)] {
        let img = folder.join("disk.img");
        assert_eq!(sha256_file(&img), src_hash, "the image on {what} differs");
        let unrescued = ddmap::read_unrescued(&folder.join("disk.map")).unwrap();
        assert!(unrescued.is_empty(), "{what}: {unrescued:?}");
    }
    assert_eq!(sha256_file(&src), src_hash, "the source was written");
    assert_eq!(
        sha256_file(&pw_disk),
        pw_hash,
        "the password disk was written"
    );
    drop(smb);
    drop(nfs);
}
