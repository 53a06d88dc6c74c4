//! Host tests on a fake sysfs tree: parsing, naming, windows, the pass
//! loop's state machine (the real driver is exercised in qemu-tests).

use super::*;
use crate::check::PassEnd;

#[test]
fn sync_files_parse() {
    assert_eq!(parse_sync_completed("1024 / 8192\n"), Some((1024, 8192)));
    assert_eq!(parse_sync_completed("none"), None);
    assert_eq!(parse_sync_completed("delayed"), None);
    assert_eq!(parse_sync_completed("x / 3"), None);
    assert_eq!(parse_sync_speed("51200 (51200)"), Some(51200));
    assert_eq!(parse_sync_speed("none"), None);
}

#[test]
fn windows_round_as_the_kernel_wants() {
    assert_eq!(check_window(None, None, 65536).unwrap(), (0, None));
    // start down to 4 KiB, end up to a 64 KiB chunk (128 sectors)
    assert_eq!(
        check_window(Some(13), Some(129), 65536).unwrap(),
        (8, Some(256))
    );
    // RAID-1 has no chunk: any end
    assert_eq!(check_window(Some(0), Some(77), 0).unwrap(), (0, Some(77)));
    assert!(check_window(Some(512), Some(100), 65536).is_err());
}

#[test]
fn personalities() {
    assert_eq!(personality_module(5), Some("raid456"));
    assert_eq!(personality_module(1), Some("raid1"));
    assert_eq!(personality_module(10), Some("raid10"));
    assert_eq!(personality_module(7), None);
    assert_eq!(kernel_name("/dev/sda3"), "sda3");
    assert_eq!(kernel_name("md127"), "md127");
}

struct FakeSys(PathBuf);
impl FakeSys {
    fn new(tag: &str) -> FakeSys {
        let p = std::env::temp_dir().join(format!("mdkernel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        FakeSys(p)
    }
    fn md(&self) -> Md {
        Md {
            sys: self.0.join("sys"),
            dev: self.0.join("dev"),
        }
    }
    fn array(&self, name: &str, members: &[&str], attrs: &[(&str, &str)]) {
        let d = self.0.join("sys/block").join(name).join("md");
        std::fs::create_dir_all(&d).unwrap();
        for m in members {
            std::fs::create_dir_all(d.join(format!("dev-{m}"))).unwrap();
        }
        for (k, v) in attrs {
            std::fs::write(d.join(k), format!("{v}\n")).unwrap();
        }
    }
}
impl Drop for FakeSys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn running_arrays_are_listed_with_members_and_status() {
    let f = FakeSys::new("running");
    f.array(
        "md127",
        &["vdc", "vdb"],
        &[
            ("array_state", "readonly"),
            ("level", "raid5"),
            ("sync_action", "check"),
            ("last_sync_action", "check"),
            ("sync_completed", "2048 / 8192"),
            ("sync_speed", "1000"),
            ("mismatch_cnt", "8"),
        ],
    );
    std::fs::create_dir_all(f.0.join("sys/block/sda")).unwrap();
    let md = f.md();
    let r = md.running();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name, "md127");
    assert_eq!(r[0].members, vec!["vdb", "vdc"]);
    assert_eq!(r[0].array_state, "readonly");
    let s = md.status("md127");
    assert_eq!(s.completed, Some((2048, 8192)));
    assert_eq!(s.speed_kib_s, Some(1000));
    assert_eq!(s.mismatch_cnt, Some(8));
    assert_eq!(s.action, "check");
    let e = md.write("md999", "array_state", "clear").unwrap_err();
    assert!(e.contains("md999") && e.contains("clear"), "{e}");
}

/// An assembled array with no pass running.
const IDLE: &[(&str, &str)] = &[
    ("array_state", "read-auto"),
    ("sync_action", "idle"),
    ("sync_completed", "none"),
    ("sync_speed", "none"),
    ("mismatch_cnt", "0"),
    ("sync_min", "0"),
    ("sync_max", "max"),
];

/// The pass loop against a fake kernel: the "kernel" thread advances
/// sync_completed and goes idle; a window end makes us write idle; a stop
/// request cancels.
#[test]
fn pass_loop_reports_window_and_cancel() {
    use std::sync::atomic::AtomicBool;
    let f = FakeSys::new("pass");
    f.array("md5", &["vdb"], IDLE);
    let md = f.md();
    let dir = f.0.join("sys/block/md5/md");
    // Window: the fake kernel moves to the end and waits there until idle.
    let kernel = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            while std::fs::read_to_string(dir.join("sync_action"))
                .unwrap()
                .trim()
                != "check"
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::fs::write(dir.join("mismatch_cnt"), "16").unwrap();
            std::fs::write(dir.join("sync_completed"), "256 / 8192").unwrap();
        })
    };
    let stop = AtomicBool::new(false);
    let out = check::run_pass(
        &md,
        "md5",
        false,
        &window(Some(256)),
        &stop,
        &mut std::io::sink(),
    )
    .unwrap();
    kernel.join().unwrap();
    assert_eq!(out.end, PassEnd::Finished);
    assert_eq!(out.mismatch_cnt, 16);
    assert_eq!(out.checked_to, 256);
    assert_eq!(md.read("md5", "sync_max").unwrap(), "256");
    // Cancel: stop is set; the loop writes idle and reports it.
    std::fs::write(dir.join("sync_completed"), "100 / 8192").unwrap();
    let stop = AtomicBool::new(true);
    let out =
        check::run_pass(&md, "md5", true, &window(None), &stop, &mut std::io::sink()).unwrap();
    assert_eq!(out.end, PassEnd::Cancelled);
    assert_eq!(out.checked_to, 100);
}

fn window(end: Option<u64>) -> check::Window {
    check::Window {
        start: 0,
        end,
        chunk_sectors: 128,
    }
}

/// A fake kernel that, once the pass starts, reports `done / 8192` and then
/// ends it the way md_do_sync does: run to the end (sync_min 0, sync_max
/// "max") or interrupted (sync_min where it stopped, sync_max untouched).
fn fake_pass(dir: std::path::PathBuf, done: u64, to_end: bool) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        while read("sync_action") != "check" {
            std::thread::sleep(Duration::from_millis(10));
        }
        let sync_max_seen = read("sync_max");
        std::fs::write(dir.join("sync_completed"), format!("{done} / 8192")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if to_end {
            std::fs::write(dir.join("sync_min"), "0").unwrap();
            std::fs::write(dir.join("sync_max"), "max").unwrap();
        } else {
            std::fs::write(dir.join("sync_min"), done.to_string()).unwrap();
        }
        std::fs::write(dir.join("sync_completed"), "none").unwrap();
        std::fs::write(dir.join("sync_action"), "idle").unwrap();
        sync_max_seen
    })
}

/// A pass that another process stops (it writes idle) is told apart from one
/// that ran to its end by what the kernel leaves in sync_min/sync_max.
#[test]
fn pass_stopped_elsewhere_is_reported_as_interrupted() {
    use std::sync::atomic::AtomicBool;
    let f = FakeSys::new("interrupted");
    f.array("md6", &["vdb", "vdc"], IDLE);
    let md = f.md();
    let dir = f.0.join("sys/block/md6/md");
    let stop = AtomicBool::new(false);

    let kernel = fake_pass(dir.clone(), 8192, true);
    let out = check::run_pass(
        &md,
        "md6",
        false,
        &window(None),
        &stop,
        &mut std::io::sink(),
    )
    .unwrap();
    let open_end = kernel.join().unwrap();
    assert_eq!(open_end, ((1u64 << 62) / 128 * 128).to_string());
    assert_eq!(out.end, PassEnd::Finished);
    assert_eq!(out.checked_to, 8192);

    let kernel = fake_pass(dir.clone(), 2048, false);
    let out = check::run_pass(
        &md,
        "md6",
        false,
        &window(None),
        &stop,
        &mut std::io::sink(),
    )
    .unwrap();
    kernel.join().unwrap();
    assert_eq!(out.end, PassEnd::Interrupted);
    assert_eq!(out.checked_to, 2048);
}
