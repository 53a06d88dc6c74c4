//! A damaged btrfs image for recovery-mount tests: several generations
//! written through the host kernel (a loop device, mounted read-write in a
//! scratch directory), then the current tree root zeroed, so that a plain
//! `ro` mount fails ("couldn't read tree root") and
//! `rescue=usebackuproot` mounts an older generation with `f1.txt`
//! (`gen 1`) .. `f3.txt` as far as that generation had them.
//!
//! Needs root, the host kernel's btrfs, `losetup`, `mount` and btrfs-progs
//! (`mkfs.btrfs`, `btrfs-map-logical`); a missing one fails the test.

use std::path::Path;
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (apt-get install btrfs-progs)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Undoes a loop attach and a mount even when the test panics.
struct Undo {
    dev: String,
    dir: Option<std::path::PathBuf>,
    /// Detached already: the device number may belong to someone else now.
    detached: bool,
}

impl Undo {
    /// Detaches the loop device and waits until it is gone: `losetup -d`
    /// only marks it for detaching while something still has it open (a
    /// test beside this one scanning every device), and the caller's next
    /// attach of the image would see this device as a second copy of the
    /// filesystem.
    fn detach(&mut self) -> Result<(), String> {
        if std::mem::replace(&mut self.detached, true) {
            return Ok(());
        }
        let backing = format!(
            "/sys/class/block/{}/loop/backing_file",
            self.dev.trim_start_matches("/dev/")
        );
        let was = std::fs::read_to_string(&backing).unwrap_or_default();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let began = std::time::Instant::now();
        while std::fs::read_to_string(&backing).is_ok_and(|b| b == was) {
            if began.elapsed() > std::time::Duration::from_secs(10) {
                return Err(format!("{} still attached 10 s after losetup -d", self.dev));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = Command::new("umount").arg(&d).status();
            let _ = std::fs::remove_dir(&d);
        }
        let _ = self.detach();
    }
}

/// Makes `img` (a file of at least 256 MiB) a btrfs with three generations
/// and a destroyed current tree root (single metadata: no second copy).
pub fn destroyed_tree_root(img: &Path, scratch: &Path) {
    let path = img.to_str().expect("UTF-8 path");
    run("mkfs.btrfs", &["-q", "-f", "-m", "single", path]);
    {
        let dev = run("losetup", &["-f", "--show", path]).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        let mut undo = Undo {
            dev,
            dir: None,
            detached: false,
        };
        // A read-only flag left on this loop device by another test must
        // not make the read-write mount fail (util-linux blockdev).
        run("blockdev", &["--setrw", &undo.dev]);
        for i in 1..=3 {
            let dir = scratch.join(format!("btrfs-gen{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            run(
                "mount",
                &["-t", "btrfs", "-o", "rw", &undo.dev, dir.to_str().unwrap()],
            );
            undo.dir = Some(dir.clone());
            std::fs::write(dir.join(format!("f{i}.txt")), format!("gen {i}\n")).unwrap();
            run("umount", &[dir.to_str().unwrap()]);
            undo.dir = None;
            let _ = std::fs::remove_dir(&dir);
        }
        if let Err(e) = undo.detach() {
            panic!("{e}");
        }
    }
    // The tree root's logical address (superblock at 64 KiB, root +0x50),
    // mapped to the image's bytes by btrfs-progs.
    let sb = std::fs::read(img).unwrap()[65536..65536 + 4096].to_vec();
    let root = u64::from_le_bytes(sb[0x50..0x58].try_into().unwrap());
    let map = run("btrfs-map-logical", &["-l", &root.to_string(), path]);
    let physical: u64 = map
        .split_whitespace()
        .skip_while(|w| *w != "physical")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("btrfs-map-logical said {map:?}"));
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 16384], physical).unwrap();
}
