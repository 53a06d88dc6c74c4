//! Real mounts on the host kernel: image files made with the mkfs tools,
//! damaged the way disks are (a journal or log that needs replaying, a
//! zeroed primary superblock), attached read-only to loop devices, and
//! mounted through `rmount::mount`. Needs root, loop devices, and the
//! host kernel's ext4, xfs, btrfs and fuse (checked first: a missing one
//! fails the test naming it). vfat and exFAT are not in this host's
//! kernel: those kinds are left to the QEMU tests.
//!
//! Every loop device and mount is undone on drop, also when an assertion
//! fails; every test works in its own scratch directory.

use rmount::{Paths, Request};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test (qemu-tests/setup.sh installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host kernel must have `fs` (loaded now if it is a module).
fn need_fs(fs: &str) {
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs))
    };
    if !has() {
        let _ = Command::new("modprobe").arg(fs).status();
    }
    assert!(
        has(),
        "the host kernel has no {fs} (not in /proc/filesystems, modprobe {fs} failed): this \
         test cannot run here; run it on a host with {fs} or in the QEMU tests"
    );
}

fn need_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests mount loop devices: run them as root"
    );
}

/// A scratch directory with the loop devices and mounts made in it, all
/// undone on drop (mounts first, then loops, then the files).
struct Fixture {
    tmp: testkit::TempDir,
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        need_root();
        Fixture {
            tmp: testkit::TempDir::new(tag),
            loops: Vec::new(),
            mounts: Vec::new(),
        }
    }

    fn paths(&self) -> Paths {
        Paths {
            state: self.tmp.join("state"),
            mnt_root: self.tmp.join("mnt"),
            ..Paths::default()
        }
    }

    fn request(&self, device: &str) -> Request {
        let mut r = Request::new(device);
        r.paths = self.paths();
        r
    }

    /// A sparse image file of `size` bytes.
    fn image(&self, name: &str, size: u64) -> PathBuf {
        let p = self.tmp.join(name);
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        p
    }

    /// Attaches `img` to a free loop device; read-only unless `rw`.
    fn attach(&mut self, img: &Path, rw: bool) -> String {
        let img = img.to_str().unwrap();
        let mut args = vec!["-f", "--show"];
        if !rw {
            args.push("-r");
        }
        args.push(img);
        let dev = run("losetup", &args).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        self.loops.push(dev.clone());
        if rw {
            // A block-layer read-only flag (BLKROSET) outlives a loop
            // device's detach; one left by a crashed run must not make
            // this attach read-only.
            blockdev::set_read_only(&dev, false).unwrap();
        }
        dev
    }

    /// Detaches `dev`, clearing the read-only flag rmount set first: the
    /// flag would stay with the loop device and make the next user's
    /// attach read-only.
    ///
    /// Waits until the detach is done: a device open elsewhere at that
    /// moment (another test scanning every device for a UUID) defers it,
    /// and a test must not see its own image's old loop device as a copy.
    fn detach(&mut self, dev: &str) {
        let backing = Path::new("/sys/class/block")
            .join(name(dev))
            .join("loop/backing_file");
        let was = std::fs::read_to_string(&backing).unwrap_or_default();
        let _ = blockdev::set_read_only(dev, false);
        run("losetup", &["-d", dev]);
        self.loops.retain(|l| l != dev);
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&backing).is_ok_and(|b| b == was) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "{dev} still attached 10 s after losetup -d"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Mounts with mount(8) (to build images), remembered for cleanup.
    fn os_mount(&mut self, dev: &str, fstype: &str, opts: &str) -> PathBuf {
        let dir = self.tmp.join(format!("os-{}", self.mounts.len()));
        std::fs::create_dir_all(&dir).unwrap();
        run(
            "mount",
            &["-t", fstype, "-o", opts, dev, dir.to_str().unwrap()],
        );
        self.mounts.push(dir.clone());
        dir
    }

    fn os_umount(&mut self, dir: &Path) {
        run("umount", &[dir.to_str().unwrap()]);
        self.mounts.retain(|m| m != dir);
    }

    /// Remembers a mount rmount made, so a failing test still undoes it.
    fn track(&mut self, dir: &Path) {
        self.mounts.push(dir.to_path_buf());
    }

    fn untrack(&mut self, dir: &Path) {
        self.mounts.retain(|m| m != dir);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let ok = Command::new("umount")
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
        for l in self.loops.drain(..).rev() {
            let _ = blockdev::set_read_only(&l, false);
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
    }
}

fn name(dev: &str) -> &str {
    dev.trim_start_matches("/dev/")
}

fn writes(dev: &str) -> u64 {
    rmount::write_count(Path::new("/sys"), name(dev)).unwrap()
}

fn no_modules(_: &str) -> Result<(), String> {
    Ok(())
}

impl Fixture {
    /// Mounts with rmount, printing what it logged (shown by a failing
    /// test), and tracks the mount.
    fn mount_req(&mut self, req: &Request) -> Result<rmount::Mounted, Box<rmount::Failure>> {
        let mut log = Vec::new();
        let r = rmount::mount(req, &no_modules, &mut log);
        eprintln!("{}", String::from_utf8_lossy(&log));
        if let Ok(m) = &r {
            self.track(&m.mount_point);
        }
        r
    }

    /// [`Fixture::mount_req`] of `dev` at its default place.
    fn mount_dev(&mut self, dev: &str) -> Result<rmount::Mounted, Box<rmount::Failure>> {
        let req = self.request(dev);
        self.mount_req(&req)
    }
}

fn rumount(fx: &mut Fixture, m: &rmount::Mounted) -> rmount::Unmounted {
    let u = rmount::umount(&fx.paths(), m.mount_point.to_str().unwrap()).unwrap();
    fx.untrack(&m.mount_point);
    u
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

/// A directory of files for `mkfs -d`/`--rootdir`.
fn source_tree(fx: &Fixture) -> PathBuf {
    let src = fx.tmp.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "hello from a\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), vec![0xA5u8; 100_000]).unwrap();
    src
}

/// Makes `img` a filesystem whose journal or log needs replaying, as
/// after a crash: written through a read-write loop, `one.txt` then
/// unmounted cleanly, mounted again, `two.txt` written and synced, and the
/// image copied while still mounted. Returns the copy.
fn crashed_copy(fx: &mut Fixture, img: &Path, fstype: &str) -> PathBuf {
    let dev = fx.attach(img, true);
    let dir = fx.os_mount(&dev, fstype, "rw");
    std::fs::write(dir.join("one.txt"), "one\n").unwrap();
    fx.os_umount(&dir);
    let dir = fx.os_mount(&dev, fstype, "rw");
    std::fs::write(dir.join("two.txt"), "two\n").unwrap();
    run("sync", &[]);
    let copy = img.with_extension("crashed");
    run(
        "cp",
        &[
            "--sparse=always",
            img.to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
    );
    fx.os_umount(&dir);
    fx.detach(&dev);
    copy
}

/// A plain read-only mount(8) of `dev` fails (the image needs recovery).
fn plain_ro_fails(fx: &Fixture, dev: &str, fstype: &str) {
    let dir = fx.tmp.join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", fstype, "-o", "ro", dev, dir.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    if ok {
        let _ = Command::new("umount").arg(&dir).status();
    }
    assert!(
        !ok,
        "{dev}: a plain ro mount worked, so the image is not dirty"
    );
}

#[test]
fn ext4_with_a_journal_to_replay_mounts_with_noload() {
    need_fs("ext4");
    let mut fx = Fixture::new("rmount-ext4-dirty");
    let img = fx.image("e.img", 64 << 20);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-b", "4096", img.to_str().unwrap()],
    );
    let copy = crashed_copy(&mut fx, &img, "ext4");
    let dev = fx.attach(&copy, false);
    plain_ro_fails(&fx, &dev, "ext4");
    let before = writes(&dev);

    let m = fx.mount_dev(&dev).unwrap();
    assert_eq!(m.kind, fsmagic::Kind::Ext4);
    assert_eq!(m.options, "ro,noload");
    assert_eq!(m.mount_point, fx.tmp.join("mnt").join(name(&dev)));
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(m.attempts[0].result, "mounted");
    // The kernel's own lines only (recent kernels rate-limit ext4's
    // "mounted filesystem" line, 64 per 30 s, so it may be missing).
    assert!(
        m.attempts[0]
            .kernel
            .iter()
            .all(|k| k.contains(name(&dev)) || k.starts_with("EXT4-fs")),
        "kernel messages: {:?}",
        m.attempts[0].kernel
    );
    assert_eq!(read(&m.mount_point, "one.txt"), "one\n");
    assert!(!m.writes_changed(), "{:?}", m.writes);
    assert!(rustix::fs::statvfs(&m.mount_point)
        .unwrap()
        .f_flag
        .contains(rustix::fs::StatVfsMountFlags::RDONLY));

    // The same device again, and another device onto the same directory:
    // both refused, nothing tried.
    let e = fx.mount_dev(&dev).unwrap_err();
    assert!(e.reason.contains("already mounted"), "{}", e.reason);
    let other = fx.image("other.img", 16 << 20);
    run("mkfs.ext4", &["-q", "-F", other.to_str().unwrap()]);
    let other_dev = fx.attach(&other, false);
    let mut req = fx.request(&other_dev);
    req.dir = Some(m.mount_point.clone());
    let e = fx.mount_req(&req).unwrap_err();
    assert!(e.reason.contains("already a mount point"), "{}", e.reason);
    assert!(e.attempts.is_empty());

    let u = rumount(&mut fx, &m);
    assert!(u.was_mounted && u.removed_dir, "{u:?}");
    assert!(!m.mount_point.exists());
    assert!(!u.problems(), "{u:?}");
    assert_eq!(writes(&dev), before, "the loop device was written to");
    let e = rmount::umount(&fx.paths(), m.mount_point.to_str().unwrap()).unwrap_err();
    assert!(e.contains("not mounted by rescue mount"), "{e}");
}

/// A zeroed primary superblock: found by its backup, mounted with sb= in
/// 1 KiB units (131072 for 4 KiB blocks, 8193 for 1 KiB blocks).
#[test]
fn ext4_with_a_zeroed_primary_superblock_mounts_from_a_backup() {
    need_fs("ext4");
    let mut fx = Fixture::new("rmount-ext4-sb");
    let src = source_tree(&fx);
    for (block, size, sb) in [("4096", 256u64 << 20, 131072u64), ("1024", 64 << 20, 8193)] {
        let img = fx.image(&format!("e{block}.img"), size);
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                block,
                "-d",
                src.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 1024], 1024).unwrap();
        drop(f);
        let dev = fx.attach(&img, false);
        let before = writes(&dev);
        let m = fx.mount_dev(&dev).unwrap();
        assert_eq!(m.kind, fsmagic::Kind::Ext4);
        assert_eq!(
            m.options,
            format!("ro,noload,sb={sb}"),
            "{block}-byte blocks"
        );
        assert_eq!(m.attempts[0].result, "failed");
        assert!(m.attempts[0].error.is_some());
        assert!(
            !m.attempts[0].kernel.is_empty(),
            "the kernel said why the primary failed"
        );
        assert!(
            m.notes.iter().any(|n| n.contains("no primary superblock")),
            "{:?}",
            m.notes
        );
        assert_eq!(read(&m.mount_point, "a.txt"), "hello from a\n");
        assert_eq!(
            std::fs::read(m.mount_point.join("sub/b.bin")).unwrap(),
            vec![0xA5u8; 100_000]
        );
        rumount(&mut fx, &m);
        assert_eq!(writes(&dev), before, "the loop device was written to");
    }
}

/// Nothing to find and nothing that mounts: every attempt reported, the
/// file-level recovery named, the directory made for it removed again.
#[test]
fn ext4_that_mounts_with_nothing_reports_each_attempt() {
    need_fs("ext4");
    let mut fx = Fixture::new("rmount-ext4-none");
    let img = fx.image("zero.img", 64 << 20);
    let dev = fx.attach(&img, false);
    let e = fx.mount_dev(&dev).unwrap_err();
    assert!(
        e.reason.contains("no known filesystem signature"),
        "{}",
        e.reason
    );
    let mut req = fx.request(&dev);
    req.kind = Some(fsmagic::Kind::Ext4);
    let e = fx.mount_req(&req).unwrap_err();
    let tried: Vec<&str> = e.attempts.iter().map(|a| a.options.as_str()).collect();
    assert_eq!(
        tried,
        [
            "ro,noload",
            "ro,noload,sb=131072",
            "ro,noload,sb=393216",
            "ro,noload,sb=8193",
            "ro,noload,sb=24577"
        ]
    );
    assert!(e.attempts.iter().all(|a| a.result == "failed"));
    assert!(e.attempts[0].kernel.iter().any(|k| k.contains(name(&dev))));
    assert!(e.recovery.unwrap().contains("debugfs rdump"));
    assert!(!fx.tmp.join("mnt").join(name(&dev)).exists());
    assert!(e.writes.iter().all(|w| !w.changed()), "{:?}", e.writes);
}

#[test]
fn ext2_without_journal_mounts_with_noload() {
    need_fs("ext4");
    let mut fx = Fixture::new("rmount-ext2");
    let src = source_tree(&fx);
    let img = fx.image("e2.img", 16 << 20);
    run(
        "mkfs.ext2",
        &[
            "-q",
            "-F",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let dev = fx.attach(&img, false);
    let mut req = fx.request(&dev);
    req.dir = Some(fx.tmp.join("given dir"));
    let m = fx.mount_req(&req).unwrap();
    assert_eq!(
        (m.kind, m.options.as_str()),
        (fsmagic::Kind::Ext2, "ro,noload")
    );
    assert_eq!(read(&m.mount_point, "a.txt"), "hello from a\n");
    let u = rumount(&mut fx, &m);
    assert!(u.removed_dir, "it made the directory, so it removes it");
}

#[test]
fn xfs_with_a_log_to_replay_mounts_with_norecovery_and_nouuid_beside_a_copy() {
    need_fs("xfs");
    let mut fx = Fixture::new("rmount-xfs");
    let img = fx.image("x.img", 300 << 20);
    run("mkfs.xfs", &["-q", img.to_str().unwrap()]);
    let copy = crashed_copy(&mut fx, &img, "xfs");
    let dev = fx.attach(&copy, false);
    plain_ro_fails(&fx, &dev, "xfs");
    let m = fx.mount_dev(&dev).unwrap();
    assert_eq!(
        (m.kind, m.options.as_str()),
        (fsmagic::Kind::Xfs, "ro,norecovery")
    );
    assert!(
        m.attempts[0]
            .kernel
            .iter()
            .any(|k| k.contains("no-recovery mode")),
        "{:?}",
        m.attempts[0].kernel
    );
    assert_eq!(read(&m.mount_point, "one.txt"), "one\n");
    assert!(!m.writes_changed(), "{:?}", m.writes);
    // A second device with the same UUID: the kernel would refuse it while
    // the first is mounted; nouuid lets both be looked at.
    let twin = fx.attach(&copy, false);
    let m2 = fx.mount_dev(&twin).unwrap();
    assert_eq!(m2.options, "ro,norecovery,nouuid");
    assert!(
        m2.notes.iter().any(|n| n.contains(name(&dev))),
        "{:?}",
        m2.notes
    );
    assert_eq!(read(&m2.mount_point, "one.txt"), "one\n");
    rumount(&mut fx, &m2);
    rumount(&mut fx, &m);
}

#[test]
fn btrfs_mounts_ro_and_is_refused_beside_a_copy() {
    need_fs("btrfs");
    let mut fx = Fixture::new("rmount-btrfs");
    let src = source_tree(&fx);
    let img = fx.image("b.img", 128 << 20);
    run(
        "mkfs.btrfs",
        &[
            "-q",
            "-f",
            "--rootdir",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let dev = fx.attach(&img, false);
    let before = writes(&dev);
    let m = fx.mount_dev(&dev).unwrap();
    assert_eq!((m.kind, m.options.as_str()), (fsmagic::Kind::Btrfs, "ro"));
    assert_eq!(read(&m.mount_point, "a.txt"), "hello from a\n");
    assert_eq!(
        std::fs::read(m.mount_point.join("sub/b.bin")).unwrap(),
        vec![0xA5u8; 100_000]
    );
    rumount(&mut fx, &m);
    assert_eq!(writes(&dev), before);

    let copy = fx.attach(&img, false);
    let e = fx.mount_dev(&dev).unwrap_err();
    assert!(
        e.reason.contains(name(&copy)) && e.reason.contains("same btrfs"),
        "{}",
        e.reason
    );
    assert!(e.attempts.is_empty());
    assert!(!fx.tmp.join("mnt").join(name(&dev)).exists());
}

#[test]
fn ntfs_mounts_through_ntfs3g_and_umount_waits_for_it() {
    need_fs("fuseblk");
    let mut fx = Fixture::new("rmount-ntfs");
    let img = fx.image("n.img", 32 << 20);
    run("mkfs.ntfs", &["-q", "-F", "-Q", img.to_str().unwrap()]);
    let rw = fx.attach(&img, true);
    let dir = fx.tmp.join("fill");
    std::fs::create_dir_all(&dir).unwrap();
    run("ntfs-3g", &[&rw, dir.to_str().unwrap()]);
    fx.track(&dir);
    std::fs::write(dir.join("a.txt"), "hello from ntfs\n").unwrap();
    let proc = Path::new("/proc");
    let pid = rmount::ntfs3g::daemon_for(proc, &dir).expect("the ntfs-3g daemon");
    fx.os_umount(&dir);
    // ntfs-3g finishes writing the volume when it exits after the unmount.
    assert!(rmount::ntfs3g::wait_exit(
        proc,
        pid,
        &dir,
        rmount::DAEMON_WAIT
    ));
    fx.detach(&rw);

    let dev = fx.attach(&img, false);
    let before = writes(&dev);
    let m = fx.mount_dev(&dev).unwrap();
    assert_eq!((m.kind, m.options.as_str()), (fsmagic::Kind::Ntfs, "ro"));
    assert_eq!(m.attempts[0].by, "ntfs-3g");
    assert_eq!(read(&m.mount_point, "a.txt"), "hello from ntfs\n");
    let u = rumount(&mut fx, &m);
    assert_eq!(u.daemon_exited, Some(true), "{u:?}");
    assert!(u.removed_dir);
    assert_eq!(writes(&dev), before, "the loop device was written to");
}

/// A btrfs whose current tree root is destroyed: `ro` fails with the
/// kernel's "couldn't read tree root", `rescue=usebackuproot` mounts an
/// older generation.
#[test]
fn btrfs_with_a_destroyed_tree_root_mounts_from_a_backup_root() {
    need_fs("btrfs");
    let mut fx = Fixture::new("rmount-btrfs-root");
    let img = fx.image("b.img", 256 << 20);
    testkit::btrfsimg::destroyed_tree_root(&img, &fx.tmp);

    let dev = fx.attach(&img, false);
    let before = writes(&dev);
    let m = fx.mount_dev(&dev).unwrap();
    let tried: Vec<(&str, &str)> = m
        .attempts
        .iter()
        .map(|a| (a.options.as_str(), a.result))
        .collect();
    assert_eq!(
        tried,
        [("ro", "failed"), ("ro,rescue=usebackuproot", "mounted")]
    );
    assert!(
        m.attempts[0]
            .kernel
            .iter()
            .any(|k| k.contains("tree root") && k.contains(name(&dev))),
        "{:?}",
        m.attempts[0].kernel
    );
    assert_eq!(read(&m.mount_point, "f1.txt"), "gen 1\n");
    rumount(&mut fx, &m);
    assert_eq!(writes(&dev), before, "the loop device was written to");
}
