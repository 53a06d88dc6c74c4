//! Activation and deactivation flows with a fake device-mapper (the host
//! has no dm driver), device listing on a fake sysfs, and the /dev/mapper
//! nodes made in a scratch /dev.

use crate::dm::{Mapper, Reply};
use crate::plan::TableLine;
use crate::scan::build;
use crate::system::{activate, active_lvs, candidates, deactivate, parse_spec, read_device, Env};
use std::cell::RefCell;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use testkit::TempDir;

#[derive(Default)]
struct FakeDm {
    calls: RefCell<Vec<String>>,
    active: RefCell<Vec<(String, u32)>>,
    fail_load: bool,
}

impl FakeDm {
    fn reply(&self, name: &str, minor: u32) -> Reply {
        Reply {
            version: [4, 47, 0],
            flags: 0,
            open_count: 0,
            target_count: 1,
            dev: (253, minor),
            name: name.into(),
            uuid: String::new(),
        }
    }
}

impl Mapper for FakeDm {
    fn create(&self, name: &str, uuid: &str) -> io::Result<(u32, u32)> {
        self.calls
            .borrow_mut()
            .push(format!("create {name} {uuid}"));
        let minor = self.active.borrow().len() as u32;
        self.active.borrow_mut().push((name.into(), minor));
        Ok((253, minor))
    }
    fn load(&self, name: &str, lines: &[TableLine]) -> io::Result<()> {
        let t: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        self.calls
            .borrow_mut()
            .push(format!("load {name} {}", t.join("; ")));
        if self.fail_load {
            return Err(io::Error::other("DM_TABLE_LOAD: Invalid argument"));
        }
        Ok(())
    }
    fn resume(&self, name: &str) -> io::Result<Reply> {
        self.calls.borrow_mut().push(format!("resume {name}"));
        Ok(self.reply(name, 0))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.calls.borrow_mut().push(format!("remove {name}"));
        self.active.borrow_mut().retain(|(n, _)| n != name);
        Ok(())
    }
    fn status(&self, name: &str) -> io::Result<Option<Reply>> {
        self.calls.borrow_mut().push(format!("status {name}"));
        let a = self.active.borrow();
        Ok(a.iter()
            .find(|(n, _)| n == name)
            .map(|(n, m)| self.reply(n, *m)))
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn candidates_are_disks_partitions_md_nbd_and_attached_loops() {
    let d = TempDir::new("lvm-sys");
    let cb = d.join("class/block");
    for (name, size) in [
        ("sda", "100"),
        ("sda1", "50"),
        ("sdb", "100"),
        ("sdb3", "60"),
        ("md2", "40"),
        ("dm-0", "40"),
        ("nbd0", "0"),
        ("nbd1", "8"),
        ("nbd1p1", "6"),
        ("loop0", "0"),
        ("loop1", "64"),
        ("sr0", "10"),
        ("ram0", "10"),
    ] {
        write(&cb.join(name).join("size"), &format!("{size}\n"));
    }
    // sdb3 is a member of the running md2.
    std::fs::create_dir_all(cb.join("sdb3/holders/md2")).unwrap();
    // sda1 is held by one of our dm devices: still a PV to read.
    std::fs::create_dir_all(cb.join("sda1/holders/dm-0")).unwrap();
    assert_eq!(
        candidates(d.path()),
        ["loop1", "md2", "nbd1", "nbd1p1", "sda", "sda1", "sdb"]
    );
    assert!(candidates(&d.join("nowhere")).is_empty());
}

#[test]
fn specs_name_vgs_and_lvs() {
    assert_eq!(parse_spec("vg1"), ("vg1".into(), None));
    assert_eq!(parse_spec("vg1/"), ("vg1".into(), None));
    assert_eq!(parse_spec("vg1/lv"), ("vg1".into(), Some("lv".into())));
    assert_eq!(parse_spec("/dev/vg1/lv"), ("vg1".into(), Some("lv".into())));
    assert_eq!(
        parse_spec("/dev/mapper/my--vg-lv--1"),
        ("my-vg".into(), Some("lv-1".into()))
    );
}

#[test]
fn activation_creates_loads_resumes_and_makes_the_node() {
    let (t, vg) = super::lvm2::two_pv_vg("lvm-act");
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "16m", "-n", "str", &vg,
    ]);
    let seen: Vec<_> = (0..2)
        .map(|i| {
            let p = t.images[i].display().to_string();
            let d = blockdev::Device::open(&p).unwrap();
            read_device(&p, &d, Some(format!("7:{i}")))
                .unwrap()
                .unwrap()
        })
        .collect();
    let report = build(&seen, Vec::new(), false);
    let scratch = TempDir::new("lvm-dev");
    let env = Env {
        sys: scratch.join("sys"),
        dev: scratch.join("dev"),
    };
    let dm = FakeDm::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (done, left_out) = activate(&env, &dm, &report, Some(&vg), &mut out, &mut err).unwrap();
    assert_eq!(left_out, 0);
    assert_eq!(done.len(), 2);
    let esc = vg.replace('-', "--");
    let v = &report.vgs[0];
    let uuid = |lv: &str| v.lvs.iter().find(|l| l.name == lv).unwrap().dm_uuid.clone();
    assert_eq!(
        *dm.calls.borrow(),
        [
            format!("status {esc}-lin"),
            format!("create {esc}-lin {}", uuid("lin")),
            format!("load {esc}-lin 0 16384 linear 7:0 2048"),
            format!("resume {esc}-lin"),
            format!("status {esc}-str"),
            format!("create {esc}-str {}", uuid("str")),
            format!("load {esc}-str 0 32768 striped 2 128 7:0 18432 7:1 2048"),
            format!("resume {esc}-str"),
        ]
    );
    for (i, a) in done.iter().enumerate() {
        let node = env.dev.join("mapper").join(format!("{esc}-{}", a.lv));
        assert_eq!(a.path, node.display().to_string());
        let m = std::fs::symlink_metadata(&node).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!(m.rdev(), rustix::fs::makedev(253, i as u32));
        assert_eq!(a.dm_device, format!("dm-{i}"));
    }
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!(
            "/mapper/{esc}-lin: {vg}/lin activated read-only (/dev/dm-0, 8388608 bytes)"
        )),
        "{out}"
    );

    // Again: already active, nothing created; the node is remade.
    dm.calls.borrow_mut().clear();
    let (done, _) = activate(
        &env,
        &dm,
        &report,
        Some(&format!("{vg}/lin")),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap();
    assert!(done[0].already);
    assert_eq!(*dm.calls.borrow(), [format!("status {esc}-lin")]);

    // Deactivation finds LVM's dm devices in sysfs and removes the nodes.
    for (i, lv) in ["lin", "str"].iter().enumerate() {
        let d = env.sys.join(format!("block/dm-{i}/dm"));
        write(&d.join("name"), &format!("{esc}-{lv}\n"));
        write(&d.join("uuid"), &format!("{}\n", uuid(lv)));
    }
    write(&env.sys.join("block/dm-7/dm/name"), "luks-root\n");
    write(&env.sys.join("block/dm-7/dm/uuid"), "CRYPT-LUKS2-xyz\n");
    assert_eq!(active_lvs(&env.sys).len(), 2, "only LVM's devices");
    dm.calls.borrow_mut().clear();
    let mut out = Vec::new();
    assert_eq!(
        deactivate(&env, &dm, Some(&format!("{vg}/str")), &mut out).unwrap(),
        1
    );
    assert_eq!(*dm.calls.borrow(), [format!("remove {esc}-str")]);
    assert!(!env.dev.join(format!("mapper/{esc}-str")).exists());
    assert!(env.dev.join(format!("mapper/{esc}-lin")).exists());
    let e = deactivate(&env, &dm, Some("othervg"), &mut Vec::new()).unwrap_err();
    assert!(
        e.contains("no active logical volume matches 'othervg'"),
        "{e}"
    );

    // Unknown names are errors that list what there is.
    let e = activate(
        &env,
        &dm,
        &report,
        Some("nosuchvg"),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        e.contains(&format!("no volume group 'nosuchvg' (found: {vg})")),
        "{e}"
    );
    let e = activate(
        &env,
        &dm,
        &report,
        Some(&format!("{vg}/nope")),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.contains("it has: lin, str"), "{e}");
}

#[test]
fn a_failed_load_removes_the_device_and_an_unsupported_lv_named_is_refused() {
    let (t, vg) = super::lvm2::two_pv_vg("lvm-fail");
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "16m", "-n", "str", &vg,
    ]);
    // PV 1 missing: str cannot be activated.
    let p = t.images[0].display().to_string();
    let d = blockdev::Device::open(&p).unwrap();
    let seen = vec![read_device(&p, &d, Some("7:0".into())).unwrap().unwrap()];
    let report = build(&seen, Vec::new(), false);
    let scratch = TempDir::new("lvm-dev");
    let env = Env {
        sys: scratch.join("sys"),
        dev: scratch.join("dev"),
    };
    let dm = FakeDm::default();
    let e = activate(
        &env,
        &dm,
        &report,
        Some(&format!("{vg}/str")),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        e.contains("/str: not activated: PV ") && e.contains(" is missing"),
        "{e}"
    );
    assert!(dm.calls.borrow().is_empty(), "nothing asked of dm");
    // The whole VG: lin activated, str left out with the reason.
    let mut err = Vec::new();
    let (done, left_out) =
        activate(&env, &dm, &report, Some(&vg), &mut Vec::new(), &mut err).unwrap();
    assert_eq!((done.len(), left_out), (1, 1));
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains(&format!("{vg}/str: left out: PV ")), "{err}");

    let bad = FakeDm {
        fail_load: true,
        ..FakeDm::default()
    };
    let e = activate(
        &env,
        &bad,
        &report,
        Some(&format!("{vg}/lin")),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        e.contains("Invalid argument") && e.contains("table was: 0 16384 linear 7:0 2048"),
        "{e}"
    );
    let esc = vg.replace('-', "--");
    assert_eq!(
        bad.calls.borrow().last().unwrap(),
        &format!("remove {esc}-lin")
    );
    assert!(bad.active.borrow().is_empty());
}
