//! PV images written by lvm2's own tools, the oracle for the `lvm` crate.
//!
//! Each image file is attached to a loop device and the lvm2 commands are
//! confined to those loop devices (`--devices`), with no device-mapper
//! interaction (`--driverloaded n`: the test host has no dm driver, and
//! LVs are created inactive with `-an -Zn`), no devices file, no udev and
//! no backups under /etc/lvm. Segment types lvm2 refuses to create without
//! dm (thin pools, snapshots) are written by `vgcfgrestore --force` from a
//! VG description in lvm2's own text format: lvm2 checks it and writes the
//! on-disk metadata itself.
//!
//! Needs root, `losetup` and lvm2 (`apt-get install lvm2`); a missing tool
//! fails the test with a message saying so.

use crate::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const CONFIG: &str = "devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 \
     scan_lvs = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } \
     backup { backup = 0 archive = 0 } global { use_lvmpolld = 0 }";

/// Image files on loop devices for lvm2 to write PVs on; detached on drop.
pub struct LvmImages {
    pub dir: TempDir,
    pub images: Vec<PathBuf>,
    pub loops: Vec<String>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (install lvm2 and util-linux: apt-get install -y lvm2)",
            cmd.get_program()
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?} {:?} failed ({}): {stderr}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether loop device `dev` is backed by `file` now.
fn backs(dev: &str, file: &Path) -> bool {
    let name = dev.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .is_ok_and(|b| Path::new(b.trim()) == file)
}

/// Attaches `file` to a free loop device. `losetup -f` can hand the same
/// device to two callers at once (tests run in parallel, other processes
/// use loop devices too), so attaching is serialized in this process and
/// the result checked, and retried.
fn attach(file: &Path) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = file.canonicalize().expect("image path");
    for _ in 0..10 {
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&file));
        let dev = dev.trim().to_string();
        if backs(&dev, &file) {
            return dev;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("could not attach {} to a loop device", file.display());
}

impl LvmImages {
    /// `sizes_mib.len()` sparse images of those sizes, each on a loop device.
    pub fn new(tag: &str, sizes_mib: &[u64]) -> LvmImages {
        let dir = TempDir::new(tag);
        let mut imgs = LvmImages {
            dir,
            images: Vec::new(),
            loops: Vec::new(),
        };
        for (i, mib) in sizes_mib.iter().enumerate() {
            let p = imgs.dir.join(format!("pv{i}.img"));
            let f = std::fs::File::create(&p).expect("create image");
            f.set_len(mib << 20).expect("size image");
            let dev = attach(&p);
            imgs.images.push(p);
            imgs.loops.push(dev);
        }
        imgs
    }

    /// Runs `lvm ARGS` confined to this set's loop devices; its stdout.
    pub fn lvm(&self, args: &[&str]) -> String {
        run(Command::new("lvm")
            .args(args)
            .args(["--driverloaded", "n", "--config", CONFIG, "--devices"])
            .arg(self.loops.join(","))
            .env("LVM_SUPPRESS_FD_WARNINGS", "1"))
    }

    /// `vgcfgbackup -f` of `vg`: its metadata in lvm2's text format.
    pub fn backup(&self, vg: &str) -> String {
        let f = self.dir.join(format!("{vg}.backup"));
        self.lvm(&["vgcfgbackup", "-f", &f.display().to_string(), vg]);
        std::fs::read_to_string(&f).expect("read the backup")
    }

    /// Writes `text` (a VG in lvm2's text format) onto the PVs with
    /// `vgcfgrestore --force`.
    pub fn restore(&self, vg: &str, text: &str) {
        let f = self.dir.join(format!("{vg}.restore"));
        std::fs::write(&f, text).expect("write the description");
        self.lvm(&[
            "vgcfgrestore",
            "--force",
            "-f",
            &f.display().to_string(),
            vg,
        ]);
    }

    /// The image of PV `i`, as bytes.
    pub fn read(&self, i: usize) -> Vec<u8> {
        std::fs::read(&self.images[i]).expect("read image")
    }
}

impl Drop for LvmImages {
    fn drop(&mut self) {
        for (l, f) in self.loops.iter().zip(&self.images) {
            // Only while it is still ours.
            if f.canonicalize().is_ok_and(|f| backs(l, &f)) {
                let _ = Command::new("losetup").args(["-d", l]).status();
            }
        }
    }
}
