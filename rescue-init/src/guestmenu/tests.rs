//! The guest flow on the host: a fake kernel whose "devices" are image
//! files (ext4 made by mkfs.ext4, an md member by testkit's writer, a PV
//! written by lvm2, swap by mkswap) and whose "mounts" are folders, so the
//! screens, the choices, the copy and the order of the teardown are
//! checked with scripted keys.

use super::*;
use crate::destmenu::tests::{machine_with_ext4, no_modules};
use std::io::Cursor;
use testkit::TempDir;

fn run(cmd: &mut std::process::Command) {
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("{:?} is needed for this test: {e}", cmd.get_program()));
    assert!(st.success(), "{cmd:?} failed");
}

/// An ext4 image at `path` labelled `label`.
fn ext4(path: &Path, label: &str) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    run(std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label])
        .arg(path));
}

/// A PV of volume group `vg0` with one LV, written by lvm2; made once.
fn pv_image() -> &'static [u8] {
    static PV: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PV.get_or_init(|| {
        let t = testkit::lvm2::LvmImages::new("guestmenu-pv", &[16]);
        t.lvm(&["pvcreate", "-y", &t.loops[0]]);
        t.lvm(&["vgcreate", "-s", "4m", "vg0", &t.loops[0]]);
        t.lvm(&["lvcreate", "-an", "-Zn", "-L", "4m", "-n", "root", "vg0"]);
        let mut img = t.read(0);
        img.truncate(2 << 20);
        img
    })
}

/// The fake kernel: nodes under `<root>/dev`, mounts under `<root>/mnt`.
struct Fake {
    root: PathBuf,
    calls: Vec<String>,
    attach_error: Option<String>,
    umount_fails: usize,
}

impl Fake {
    /// nbd0 with p1 ext4 "GUESTFS", p2 an md raid1 member, p3 swap.
    fn new(t: &TempDir) -> Fake {
        let dev = t.join("dev");
        std::fs::create_dir_all(dev.join("mapper")).unwrap();
        ext4(&dev.join("nbd0p1"), "GUESTFS");
        let spec = testkit::mdwriter::ArraySpec::new("1.2", 1, 2);
        let members = testkit::mdwriter::build_members(&spec);
        std::fs::write(dev.join("nbd0p2"), &members[0]).unwrap();
        let swap = dev.join("nbd0p3");
        std::fs::File::create(&swap)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        run(std::process::Command::new("mkswap").arg("-q").arg(&swap));
        Fake {
            root: t.path().to_path_buf(),
            calls: Vec::new(),
            attach_error: None,
            umount_fails: 0,
        }
    }
}

impl Kernel for Fake {
    fn attach(&mut self, t: &Target) -> Result<attach::Record, String> {
        self.calls.push(format!(
            "attach {} vmfs {:?} map {:?}",
            t.source, t.vmfs, t.map
        ));
        if let Some(e) = &self.attach_error {
            return Err(e.clone());
        }
        Ok(attach::Record {
            device: "nbd0".into(),
            node: "/dev/nbd0".into(),
            name: None,
            what: "VMDK vm1/vm1-000001.vmdk (2 levels)".into(),
            source: t.source.clone(),
            size: 48 << 20,
            map: None,
            bad_bytes: 0,
            pid: 1234,
            partitions: vec!["nbd0p1".into(), "nbd0p2".into(), "nbd0p3".into()],
            deadline_s: 90,
            notes: vec!["parentCID 1 but its parent has CID 2".into()],
        })
    }
    fn detach(&mut self, device: &str) -> Result<String, String> {
        self.calls.push(format!("detach {device}"));
        Ok(format!(
            "detached {device} (VMDK vm1/vm1-000001.vmdk (2 levels))"
        ))
    }
    fn assemble(&mut self, uuid: &str, out: &mut dyn Write) -> Result<String, String> {
        self.calls.push(format!("assemble {uuid}"));
        let _ = writeln!(out, "/dev/md127: assembled read-only");
        // The array holds the PV.
        std::fs::write(self.node("md127"), pv_image()).unwrap();
        Ok("md127".into())
    }
    fn stop(&mut self, md: &str, _: &mut dyn Write) -> Result<(), String> {
        self.calls.push(format!("stop {md}"));
        Ok(())
    }
    fn activate(
        &mut self,
        vg: &str,
        _: &mut dyn Write,
    ) -> Result<Vec<lvm::system::Activated>, String> {
        self.calls.push(format!("activate {vg}"));
        let path = self.root.join("dev/mapper/vg0-root");
        ext4(&path, "LVROOT");
        Ok(vec![lvm::system::Activated {
            vg: vg.into(),
            lv: "root".into(),
            path: path.display().to_string(),
            dm_device: "dm-0".into(),
            size_bytes: 4 << 20,
            already: false,
        }])
    }
    fn deactivate(&mut self, path: &str, _: &mut dyn Write) -> Result<(), String> {
        let name = path.rsplit('/').next().unwrap();
        self.calls.push(format!("deactivate {name}"));
        Ok(())
    }
    fn mount(&mut self, node: &Path, log: &mut dyn Write) -> Result<PathBuf, String> {
        let name = node.file_name().unwrap().to_string_lossy().into_owned();
        self.calls.push(format!("mount {name}"));
        let _ = writeln!(log, "trying ro,noload ... mounted");
        let dir = self.root.join("mnt").join(&name);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("hello.txt"), format!("hello from {name}\n")).unwrap();
        std::fs::write(dir.join("docs/a.txt"), "a\n").unwrap();
        std::fs::write(dir.join("docs/b.bin"), vec![7u8; 3 << 20]).unwrap();
        Ok(dir)
    }
    fn umount(&mut self, dir: &Path, _: &mut dyn Write) -> Result<(), String> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        self.calls.push(format!("umount {name}"));
        if self.umount_fails > 0 {
            self.umount_fails -= 1;
            return Err("target is busy".into());
        }
        Ok(())
    }
    fn shell(&mut self, cwd: &Path, _: &mut dyn Write) {
        let rel = cwd.strip_prefix(&self.root).unwrap();
        self.calls.push(format!("shell {}", rel.display()));
    }
    fn node(&self, name: &str) -> PathBuf {
        self.root.join("dev").join(name)
    }
}

fn target() -> Target {
    Target {
        source: "/vm1/vm1-000001.vmdk".into(),
        vmfs: vec!["/dev/sda".into()],
        map: None,
        stem: "vm1-000001".into(),
        source_disks: vec!["sda".into()],
    }
}

/// The screen as a terminal shows it: what is written and, as the
/// console echoes them, the keys read.
#[derive(Clone, Default)]
struct Screen(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for Screen {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keys that are echoed on the screen when read.
struct Keys {
    keys: Cursor<Vec<u8>>,
    screen: Screen,
}

impl std::io::Read for Keys {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.keys.read(buf)?;
        self.screen.0.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl BufRead for Keys {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.keys.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        let at = self.keys.position() as usize;
        let taken = self.keys.get_ref()[at..at + n].to_vec();
        self.screen.0.borrow_mut().extend_from_slice(&taken);
        self.keys.consume(n);
    }
}

/// Runs the flow with the fake and `keys`; whether it went on and the
/// screen (every line within 79 columns). The destination is /dev/sdb1,
/// "mounted" at `<t>/dest`.
fn drive(t: &TempDir, fake: &mut Fake, keys: &str) -> (bool, String) {
    let dest_root = t.join("dest");
    std::fs::create_dir_all(&dest_root).unwrap();
    let machine = machine_with_ext4(t, Some(&dest_root.display().to_string()));
    let dest = || Machine {
        sys: &machine.0,
        dev: &machine.1,
        mounts: machine.2.clone(),
        load: &no_modules,
    };
    let mut flow = Flow {
        kernel: fake,
        dest: &dest,
    };
    let mut screen = Screen::default();
    let mut input = Keys {
        keys: Cursor::new(keys.as_bytes().to_vec()),
        screen: screen.clone(),
    };
    let went_on = flow.run(&target(), &mut input, &mut screen);
    let out = String::from_utf8(screen.0.borrow().clone()).unwrap();
    // Paths of the test's scratch folders are longer than the
    // appliance's; the rest must fit.
    let scratch = t.path().display().to_string();
    for l in out.lines() {
        let shown = l.replace(&scratch, "/mnt");
        assert!(shown.len() <= 79, "wider than 79 columns: {shown:?}\n{out}");
    }
    (went_on, out)
}

#[test]
fn a_disk_is_opened_browsed_copied_from_and_left_in_order() {
    let t = TempDir::new("guestmenu-flow");
    let mut fake = Fake::new(&t);
    let keys = [
        "1",   // p1: mount, browse its root
        "2",   // hello.txt is no folder
        "1",   // into docs/
        "c 2", // copy b.bin
        "1",   // to the mounted destination
        "y",   // confirm
        "",    // back to the folder
        "c 2", // again: it exists now
        "1", "y", "s", // skip it
        "",  // back to the folder
        "s", // a shell in docs
        "u", "",  // up, back to the disk
        "2", // p2: assemble its array (md127 holds vg0's PV)
        "4", // md127: activate vg0
        "5", // vg0-root: mount and browse
        "",  // back to the disk
        "3", // p3 (swap): nothing to open
        "x", "d", // leave: undo all
    ]
    .join("\n")
        + "\n";
    let (went_on, out) = drive(&t, &mut fake, &keys);
    assert!(went_on, "{out}");
    assert_eq!(
        fake.calls,
        [
            "attach /vm1/vm1-000001.vmdk vmfs [\"/dev/sda\"] map None",
            "mount nbd0p1",
            "shell mnt/nbd0p1/docs",
            "assemble 5eed0001:a1b2c3d4:10203040:99887766",
            "activate vg0",
            "mount vg0-root",
            // Undone in order: the mounts (last first), the LV, the
            // array, the device.
            "umount vg0-root",
            "umount nbd0p1",
            "deactivate vg0-root",
            "stop md127",
            "detach nbd0",
        ],
        "{out}"
    );
    // Wrapping depends on the scratch folder's length: compare words.
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = words(&out);
    for want in [
        "Attaching /vm1/vm1-000001.vmdk read-only ...",
        "/dev/nbd0 (48.0 MiB, read-only): VMDK vm1/vm1-000001.vmdk (2 levels)",
        "note: parentCID 1 but its parent has CID 2",
        "ext4 \"GUESTFS\"  (not mounted)",
        "md raid1 member (DiskStation:2)  (assemble the array)",
        "swap",
        "trying ro,noload ... mounted",
        "mounted read-only at",
        "hello.txt is not a folder: 'c N' copies it.",
        "/docs  (",
        "Destination for /docs/b.bin (1 file, 3.0 MiB):",
        "copied 1 file (3.0 MiB), 0 folders, 0 links",
        "Copied: every byte was read.",
        "b.bin exists at the destination: o overwrite, O overwrite all, s skip,",
        "copied 0 files (0 B), 0 folders, 0 links\n0 files with unreadable blocks (0 B zero-filled), 0 errors, 1 skipped",
        "array 5eed0001:a1b2c3d4:10203040:99887766 runs read-only as /dev/md127",
        "LVM2 PV, VG vg0  (activate its LVs)",
        "ext4 \"LVROOT\"",
        "nothing to open on it.",
        "  d: unmount 2 filesystems, deactivate 1 logical volume, stop 1 array,",
        "unmounted",
        "detached nbd0",
        "(DiskStation:2) (in /dev/md127)",
        "vg0 (LVs active)",
        "Copied what was not at the destination yet",
    ] {
        assert!(flat.contains(&words(want)), "missing {want:?}:\n{out}");
    }
    let copied = t.join("dest/vm1-000001/p1/b.bin");
    assert_eq!(std::fs::read(&copied).unwrap(), vec![7u8; 3 << 20]);
}

#[test]
fn a_failed_unmount_keeps_the_rest_and_leaving_can_be_tried_again() {
    let t = TempDir::new("guestmenu-busy");
    let mut fake = Fake::new(&t);
    fake.umount_fails = 1;
    let (went_on, out) = drive(&t, &mut fake, "1\n\nx\nd\nx\nd\n");
    assert!(went_on, "{out}");
    assert_eq!(
        fake.calls[1..],
        [
            "mount nbd0p1",
            "umount nbd0p1",
            "umount nbd0p1",
            "detach nbd0"
        ],
        "{out}"
    );
    assert!(
        out.contains("unmounting") && out.contains("target is busy\nThe rest is left as it is."),
        "{out}"
    );
}

#[test]
fn keeping_the_disk_undoes_nothing_and_a_failed_attach_says_why() {
    let t = TempDir::new("guestmenu-keep");
    let mut fake = Fake::new(&t);
    let (went_on, out) = drive(&t, &mut fake, "1\n\nx\nk\n");
    assert!(went_on, "{out}");
    assert_eq!(fake.calls.len(), 2, "{:?}", fake.calls);
    assert!(out.contains("nbd0 stays attached."), "{out}");

    let t = TempDir::new("guestmenu-attach-fails");
    let mut fake = Fake::new(&t);
    fake.attach_error = Some("no free NBD device".into());
    let (went_on, out) = drive(&t, &mut fake, "\n");
    assert!(went_on);
    assert!(out.contains("attach failed: no free NBD device"), "{out}");

    // The input ends on the disk's screen: nothing is undone.
    let t = TempDir::new("guestmenu-ends");
    let mut fake = Fake::new(&t);
    let (went_on, _) = drive(&t, &mut fake, "1\n");
    assert!(!went_on);
    assert_eq!(fake.calls.last().unwrap(), "mount nbd0p1");
}
