//! ntfs-3g mounts through `blockdev::sys::mount_ntfs3g` on this host (the
//! host's ntfs-3g and FUSE), on image files and on a loop device (the
//! `fuseblk` path the appliance takes), checked with ntfs-3g's own tools.

use blockdev::sys::{fuse_daemons, mount_ntfs3g, unmount_fuse, NtfsMount, FUSE_EXIT_WAIT};
use std::path::{Path, PathBuf};
use testkit::ntfs::{hibernate, mkntfs, ntfscat, ntfsfix_check};
use testkit::TempDir;

fn ntfs_3g() -> PathBuf {
    for p in ["/bin/ntfs-3g", "/usr/bin/ntfs-3g"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("ntfs-3g is needed (apt-get install ntfs-3g)");
}

fn mounted_options(at: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    blockdev::sys::parse_mounts(&mounts)
        .into_iter()
        .find(|(_, a, _)| Path::new(a) == at)
        .map(|(_, _, o)| o)
}

/// A loop device over an image, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(img: &Path) -> Loop {
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(img)
            .output()
            .expect("losetup (util-linux) is needed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

/// Read-write on a loop device set read-only like the appliance's guard:
/// the flag is cleared for the mount, the mount is fuseblk and read-write,
/// a file written there is on the volume after the unmount (which waits for
/// the daemon), and ntfsfix finds the volume consistent.
#[test]
fn read_write_on_a_guarded_loop_device_then_clean_unmount() {
    let t = TempDir::new("ntfs3g-loop");
    let img = t.join("vol.img");
    mkntfs(&img, 64 << 20, "DEST");
    let lo = Loop::attach(&img);
    blockdev::set_read_only(&lo.0, true).unwrap();
    let at = t.join("mnt");
    let program = ntfs_3g();
    let m = NtfsMount {
        node: &lo.0,
        at: &at,
        read_only: false,
        options: &["windows_names", "noatime"],
        program: &program,
    };
    let loaded = std::sync::Mutex::new(Vec::new());
    let notes = mount_ntfs3g(&m, None, &|name| {
        loaded.lock().unwrap().push(name.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(*loaded.lock().unwrap(), ["fuse"]);
    assert!(!blockdev::is_read_only(&lo.0).unwrap(), "flag cleared");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == at.to_str())
        .unwrap_or_else(|| panic!("not mounted ({notes}):\n{mounts}"));
    assert!(line.contains(" fuseblk rw,"), "{line}");
    let daemons = fuse_daemons(Path::new("/proc"), Some(&lo.0));
    assert_eq!(daemons.len(), 1, "one ntfs-3g serves {}", lo.0.display());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(at.join("sda.img"), &data).unwrap();
    let e = std::fs::write(at.join("what?.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(22), "windows_names refuses '?'");
    unmount_fuse(&at, &lo.0, FUSE_EXIT_WAIT).unwrap();
    assert!(mounted_options(&at).is_none());
    assert!(daemons
        .iter()
        .all(|&p| blockdev::sys::has_exited(Path::new("/proc"), p)));
    drop(lo);
    assert!(
        ntfscat(&img, "sda.img") == data,
        "bytes differ on the volume"
    );
    ntfsfix_check(&img).unwrap();
}

/// A hibernated volume: ntfs-3g mounts it read-only and exits 0; asked for
/// read-write, the helper unmounts it again and says why, leaving nothing
/// mounted and no mount point. Read-only it mounts.
#[test]
fn hibernated_volume_is_refused_read_write_and_mounts_read_only() {
    let t = TempDir::new("ntfs3g-hib");
    let img = t.join("hib.img");
    mkntfs(&img, 32 << 20, "WIN");
    hibernate(&img);
    let at = t.join("mnt");
    let program = ntfs_3g();
    let mut m = NtfsMount {
        node: &img,
        at: &at,
        read_only: false,
        options: &[],
        program: &program,
    };
    let e = mount_ntfs3g(&m, None, &|_| Ok(())).unwrap_err();
    assert!(
        e.contains("read-only instead of read-write") && e.contains("hibernated"),
        "{e}"
    );
    assert!(mounted_options(&at).is_none(), "left mounted");
    assert!(!at.exists(), "mount point left behind");
    m.read_only = true;
    mount_ntfs3g(&m, None, &|_| Ok(())).unwrap();
    let opts = mounted_options(&at).unwrap();
    assert!(opts.split(',').any(|o| o == "ro"), "{opts}");
    unmount_fuse(&at, &img, FUSE_EXIT_WAIT).unwrap();
}

/// Failures name the command and what its exit code means.
#[test]
fn failures_say_what_ntfs3g_said() {
    let t = TempDir::new("ntfs3g-fail");
    let img = t.join("zero.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let at = t.join("mnt");
    let program = ntfs_3g();
    let m = NtfsMount {
        node: &img,
        at: &at,
        read_only: true,
        options: &[],
        program: &program,
    };
    let e = mount_ntfs3g(&m, None, &|_| Err("no such module".into())).unwrap_err();
    assert!(
        e.contains("not a valid NTFS volume") && e.contains("-o ro,norecover"),
        "{e}"
    );
    assert!(!at.exists());
    let missing = t.join("no-ntfs-3g");
    let m = NtfsMount {
        program: &missing,
        ..m
    };
    let e = mount_ntfs3g(&m, None, &|_| Ok(())).unwrap_err();
    assert!(e.contains("cannot run") && e.contains("no-ntfs-3g"), "{e}");
}
