//! `rescue image` end to end on files, with GNU ddrescue/ddrescuelog (Debian
//! package gddrescue) as the independent reference, and the bad-input refusals.

use argh::FromArgs;
use ddmap::{render, Header, Map, Status};
use imaging::cli::{run, ImageCommand};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use testkit::TempDir;

/// A scratch directory for one test.
fn dir(tag: &str) -> TempDir {
    TempDir::new(&format!("imaging-cli-{tag}"))
}

fn tool(name: &str) -> Command {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "reference tool `{name}` is missing: install the Debian package gddrescue"
    );
    Command::new(name)
}

fn cli(args: &[&str]) -> i32 {
    let cmd = ImageCommand::from_args(&["image"], args).unwrap_or_else(|e| panic!("{}", e.output));
    run(cmd)
}

fn data(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[size / 4..size / 4 + (256 << 10)].fill(0);
    v
}

/// A ddrescue test-mode map: `bad` sector numbers are `-`, the rest `+`.
fn fault_map(size: u64, bad: &[u64]) -> String {
    let mut m = Map::new(size);
    m.set(0, size, Status::Finished);
    for &s in bad {
        m.set(s * 512, 512, Status::BadSector);
    }
    render(&m, &Header::default())
}

fn bad_list(size: u64) -> Vec<u64> {
    let n = size / 512;
    let mut v: Vec<u64> = (0..40u64).map(|i| (i * 7919 + 13) * 37 % n).collect();
    v.extend(5000..5100); // a scratch
    v.push(n - 1);
    v.sort_unstable();
    v.dedup();
    v
}

/// Size and bad bytes as ddrescue's test mode sees them: trailing bad sectors
/// are outside the apparent size (`bad_list` always ends with the last sector).
fn effective(size: u64, bad: &[u64]) -> (u64, u64) {
    let mut end = size;
    let mut n = bad.len() as u64;
    for &s in bad.iter().rev() {
        if (s + 1) * 512 == end {
            end -= 512;
            n -= 1;
        } else {
            break;
        }
    }
    (end, n * 512)
}

fn load(p: &Path) -> Map {
    ddmap::load(p).unwrap().unwrap().0
}

fn extents(m: &Map) -> Vec<(u64, u64, char)> {
    m.extents()
        .map(|e| (e.pos, e.size, e.status.as_char()))
        .collect()
}

fn sha256sum(p: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum (coreutils)");
    String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn same_bytes_and_map_as_gnu_ddrescue_test_mode() {
    let d = dir("vsdd");
    let size = 6u64 << 20;
    let src = data(size as usize, 5);
    std::fs::write(d.join("src"), &src).unwrap();
    let bad = bad_list(size);
    std::fs::write(d.join("fault"), fault_map(size, &bad)).unwrap();
    let before = sha256sum(&d.join("src"));

    let st = tool("ddrescue")
        .args(["-q", "-H"])
        .arg(d.join("fault"))
        .arg(d.join("src"))
        .arg(d.join("dd.img"))
        .arg(d.join("dd.map"))
        .status()
        .unwrap();
    assert!(st.success(), "ddrescue failed: {st}");

    let code = cli(&[
        &d.join_str("src"),
        &d.join_str("our.img"),
        "--map",
        &d.join_str("our.map"),
        "--simulate-bad",
        &d.join_str("fault"),
        "--no-direct",
    ]);
    assert_eq!(code, 1, "bad areas remain -> exit 1");
    assert_eq!(before, sha256sum(&d.join("src")), "the source was modified");
    let ours = std::fs::read(d.join("our.img")).unwrap();
    let theirs = std::fs::read(d.join("dd.img")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert!(ours == theirs, "rescued bytes differ from GNU ddrescue's");
    let (mo, md) = (load(&d.join("our.map")), load(&d.join("dd.map")));
    assert_eq!(extents(&mo), extents(&md));
    // Exactly the injected sectors are bad.
    let (eff, bad_bytes) = effective(size, &bad);
    assert_eq!(mo.size(), eff);
    assert_eq!(mo.bytes(Status::BadSector), bad_bytes);
    // ddrescuelog reads our map and agrees it matches ddrescue's.
    let st = tool("ddrescuelog")
        .args(["-q", "-p"])
        .arg(d.join("dd.map"))
        .arg(d.join("our.map"))
        .status()
        .unwrap();
    assert!(st.success(), "ddrescuelog -p says the maps differ");
}

#[test]
fn mapfile_round_trips_with_ddrescue_and_ddrescuelog() {
    let d = dir("rt");
    let size = 4u64 << 20;
    std::fs::write(d.join("src"), data(size as usize, 9)).unwrap();
    let bad = bad_list(size);
    std::fs::write(d.join("fault"), fault_map(size, &bad)).unwrap();
    // A partial ddrescue map with every status: copy pass 1 only, no trim/scrape.
    let st = tool("ddrescue")
        .args(["-q", "--cpass=1", "-n", "-N", "-H"])
        .arg(d.join("fault"))
        .arg(d.join("src"))
        .arg(d.join("img"))
        .arg(d.join("dd.map"))
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(d.join("dd.map")).unwrap();
    let m = ddmap::parse(&text).unwrap().map.unwrap();
    assert!(
        m.bytes(Status::NonTrimmed) > 0 || m.bytes(Status::NonTried) > 0,
        "{text}"
    );
    // Our rendering of their map has the same non-comment lines, byte for byte.
    let ours = render(&m, &Header::default());
    let body = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&ours), body(&text));
    std::fs::write(d.join("our.map"), &ours).unwrap();
    let st = tool("ddrescuelog")
        .args(["-q", "-p"])
        .arg(d.join("dd.map"))
        .arg(d.join("our.map"))
        .status()
        .unwrap();
    assert!(st.success());
    // ddrescuelog's listing of bad (non-finished) blocks from our map.
    let o = tool("ddrescuelog")
        .args(["-l-"])
        .arg(d.join("our.map"))
        .output()
        .unwrap();
    assert!(o.status.success());

    // We resume ddrescue's partial rescue; ddrescue resumes ours.
    let code = cli(&[
        &d.join_str("src"),
        &d.join_str("img"),
        "--map",
        &d.join_str("dd.map"),
        "--simulate-bad",
        &d.join_str("fault"),
        "--no-direct",
    ]);
    assert_eq!(code, 1);
    let done = load(&d.join("dd.map"));
    let (eff, bad_bytes) = effective(size, &bad);
    assert_eq!(done.bytes(Status::BadSector), bad_bytes);
    assert_eq!(done.bytes(Status::Finished), eff - bad_bytes);
    let st = tool("ddrescuelog")
        .args(["-q", "-D"])
        .arg(d.join("dd.map"))
        .status()
        .unwrap();
    assert!(!st.success(), "-D: not finished while bad sectors remain");

    // ddrescue takes our finished map and has nothing left to do but retry.
    let st = tool("ddrescue")
        .args(["-q", "-H"])
        .arg(d.join("fault"))
        .arg(d.join("src"))
        .arg(d.join("img"))
        .arg(d.join("dd.map"))
        .status()
        .unwrap();
    assert!(st.success());
    let again = load(&d.join("dd.map"));
    assert_eq!(extents(&again), extents(&done));
    let src = std::fs::read(d.join("src")).unwrap();
    let img = std::fs::read(d.join("img")).unwrap();
    for e in again.extents().filter(|e| e.status == Status::Finished) {
        assert!(img[e.pos as usize..e.end() as usize] == src[e.pos as usize..e.end() as usize]);
    }
}

#[test]
fn ddrescue_resumes_a_map_we_left_interrupted() {
    use imaging::{rescue, FaultDevice, FileSink, MapStore, Options};
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = dir("ddresume");
    let size = 4u64 << 20;
    std::fs::write(d.join("src"), data(size as usize, 17)).unwrap();
    let bad = bad_list(size);
    std::fs::write(d.join("fault"), fault_map(size, &bad)).unwrap();
    let fault = load(&d.join("fault"));
    let dev =
        FaultDevice::from_test_mapfile(blockdev::Device::open(d.join("src")).unwrap(), &fault);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(d.join("img"))
        .unwrap();
    let mut sink = FileSink::new(file, false).unwrap();
    let mut map = Map::new(blockdev::BlockDevice::size(&dev));
    let stop = AtomicBool::new(false);
    let store = MapStore {
        path: Some(d.join("map")),
        header: Header::default(),
    };
    let opts = Options {
        progress_interval: std::time::Duration::ZERO,
        cluster_size: 64 << 10,
        ..Options::default()
    };
    let r = rescue(&dev, &mut sink, &mut map, &store, &opts, &stop, &mut |p| {
        if p.reads >= 40 {
            stop.store(true, Ordering::Relaxed)
        }
    });
    assert!(
        matches!(r.outcome, imaging::Outcome::Interrupted),
        "{:?}",
        r.outcome
    );
    drop(sink);
    let st = tool("ddrescue")
        .args(["-q", "-H"])
        .arg(d.join("fault"))
        .arg(d.join("src"))
        .arg(d.join("img"))
        .arg(d.join("map"))
        .status()
        .unwrap();
    assert!(st.success(), "ddrescue refused our interrupted map");
    let m = load(&d.join("map"));
    let (eff, bad_bytes) = effective(size, &bad);
    assert_eq!(m.bytes(Status::BadSector), bad_bytes);
    assert_eq!(m.bytes(Status::Finished), eff - bad_bytes);
}

#[test]
fn hash_matches_sha256sum_and_checks_with_sha256sum_c() {
    let d = dir("hash");
    let size = 3u64 << 20;
    std::fs::write(d.join("src"), data(size as usize, 3)).unwrap();
    std::fs::write(d.join("fault"), fault_map(size, &[7, 8, 4000])).unwrap();
    let code = cli(&[
        &d.join_str("src"),
        &d.join_str("img"),
        "--map",
        &d.join_str("map"),
        "--hash",
        "sha256",
        "--hash-file",
        "--simulate-bad",
        &d.join_str("fault"),
        "--no-direct",
    ]);
    assert_eq!(code, 1);
    let line = std::fs::read_to_string(d.join("img.sha256")).unwrap();
    assert_eq!(line, format!("{}  img\n", sha256sum(&d.join("img"))));
    let st = Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg("img.sha256")
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    // Without faults the hash is the source's.
    let code = cli(&[
        &d.join_str("src"),
        &d.join_str("img2"),
        "--map",
        &d.join_str("map2"),
        "--hash",
        "sha256",
        "--hash-file",
        "--no-direct",
    ]);
    assert_eq!(code, 0);
    let line = std::fs::read_to_string(d.join("img2.sha256")).unwrap();
    assert!(line.starts_with(&sha256sum(&d.join("src"))));
}

#[test]
fn sparse_leaves_holes_and_preallocate_reserves() {
    let d = dir("sparse");
    let size = 8usize << 20;
    let mut v = data(size, 4);
    v[1 << 20..6 << 20].fill(0);
    std::fs::write(d.join("src"), &v).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("sp"),
            "--map",
            &d.join_str("m1"),
            "--sparse",
            "--no-direct"
        ]),
        0
    );
    assert_eq!(std::fs::read(d.join("sp")).unwrap(), v);
    let alloc = std::fs::metadata(d.join("sp")).unwrap().blocks() * 512;
    assert!(alloc < 5 << 20, "sparse image allocates {alloc} bytes");
    // Over an old file full of 0xAA: zero blocks are punched, not left stale.
    std::fs::write(d.join("old"), vec![0xAAu8; size]).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("old"),
            "--map",
            &d.join_str("m3"),
            "--sparse",
            "--no-direct"
        ]),
        0
    );
    assert!(
        std::fs::read(d.join("old")).unwrap() == v,
        "stale bytes under --sparse"
    );
    let alloc = std::fs::metadata(d.join("old")).unwrap().blocks() * 512;
    assert!(alloc < 5 << 20, "punched image allocates {alloc} bytes");
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("pre"),
            "--map",
            &d.join_str("m2"),
            "--preallocate",
            "--no-direct"
        ]),
        0
    );
    assert_eq!(std::fs::read(d.join("pre")).unwrap(), v);
    let alloc = std::fs::metadata(d.join("pre")).unwrap().blocks() * 512;
    assert!(
        alloc >= size as u64,
        "preallocated image allocates only {alloc} bytes"
    );
}

/// Every refusal leaves DST uncreated (or unchanged) and the mapfile unchanged.
#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let d = dir("refuse");
    let size = 1u64 << 20;
    std::fs::write(d.join("src"), data(size as usize, 1)).unwrap();
    let untouched = |dst: &str, map: Option<&[u8]>| {
        assert!(!d.join(dst).exists(), "{dst} was created");
        if let Some(m) = map {
            assert_eq!(std::fs::read(d.join("map")).unwrap(), m, "mapfile changed");
        }
    };
    // Unreadable mapfile.
    std::fs::write(d.join("map"), b"0 ? 1\n0 0x100000 Q\n").unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    untouched("dst", Some(b"0 ? 1\n0 0x100000 Q\n"));
    // Binary garbage.
    std::fs::write(d.join("map"), [0xffu8, 0xfe, 0, 1]).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    untouched("dst", Some(&[0xff, 0xfe, 0, 1]));
    // Mapfile of a different size.
    let other = "0 + 1\n0 0x200000 +\n";
    std::fs::write(d.join("map"), other).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    untouched("dst", Some(other.as_bytes()));
    std::fs::remove_file(d.join("map")).unwrap();
    // DST is SRC: same path, and a hard link.
    let before = std::fs::read(d.join("src")).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("src"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    std::fs::hard_link(d.join("src"), d.join("link")).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("link"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    // The mapfile must not be SRC or DST.
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("src"),
            "--no-direct"
        ]),
        2
    );
    std::fs::write(d.join("dst2"), b"old").unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst2"),
            "--map",
            &d.join_str("dst2"),
            "--no-direct"
        ]),
        2
    );
    assert_eq!(std::fs::read(d.join("dst2")).unwrap(), b"old");
    assert_eq!(std::fs::read(d.join("src")).unwrap(), before);
    assert!(!d.join("map").exists());
    // DST neither file nor block device; --write not repeating DST; bad --hash.
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            "/dev/null",
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--write",
            "/dev/sdz",
            "--no-direct"
        ]),
        2
    );
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--hash",
            "md5",
            "--no-direct"
        ]),
        2
    );
    untouched("dst", None);
    assert!(!d.join("map").exists());
    // Missing source.
    assert_eq!(
        cli(&[
            &d.join_str("nope"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        2
    );
    untouched("dst", None);
}

#[test]
fn existing_dst_is_not_truncated_and_clean_source_exits_0() {
    let d = dir("notrunc");
    let size = 1usize << 20;
    let v = data(size, 2);
    std::fs::write(d.join("src"), &v).unwrap();
    let mut longer = vec![0xAAu8; size + 4096];
    longer[..10].fill(1);
    std::fs::write(d.join("dst"), &longer).unwrap();
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        0
    );
    let out = std::fs::read(d.join("dst")).unwrap();
    assert_eq!(out.len(), size + 4096, "DST was truncated");
    assert_eq!(&out[..size], &v[..]);
    assert!(out[size..].iter().all(|&b| b == 0xAA));
    // A second run on the finished map reads nothing and still exits 0.
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &d.join_str("dst"),
            "--map",
            &d.join_str("map"),
            "--no-direct"
        ]),
        0
    );
}

/// The stop flag (SIGINT/SIGTERM in the appliance) ends the run with exit 1
/// and a valid mapfile; the same command then finishes the job.
#[test]
fn stop_flag_interrupts_and_the_same_command_resumes() {
    use std::sync::atomic::AtomicBool;
    let d = dir("stop");
    let size = 2usize << 20;
    let v = data(size, 6);
    std::fs::write(d.join("src"), &v).unwrap();
    let args = [
        d.join_str("src"),
        d.join_str("img"),
        "--map".into(),
        d.join_str("map"),
        "--no-direct".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ImageCommand::from_args(&["image"], &args).unwrap();
    let code = imaging::cli::run_with_stop(cmd, &AtomicBool::new(true));
    assert_eq!(code, 1);
    let m = load(&d.join("map"));
    assert_eq!(m.size(), size as u64);
    assert!(m.bytes(Status::Finished) < size as u64, "stopped at once");
    assert_eq!(cli(&args), 0);
    assert_eq!(std::fs::read(d.join("img")).unwrap(), v);
}

/// A loop device (root and loop support needed) detached on drop.
struct Loop(String);
impl Loop {
    fn new(file: &Path) -> Loop {
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("losetup (util-linux) is needed");
        assert!(
            o.status.success(),
            "losetup failed (run the tests as root with loop devices): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Loop(String::from_utf8(o.stdout).unwrap().trim().to_string())
    }
}
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Block devices: DST needs --write DST, must be large enough and must not
/// be SRC; SRC as a block device is read with O_DIRECT through aligned buffers.
#[test]
fn block_device_source_and_destination() {
    let d = dir("blk");
    let v = data(4 << 20, 12);
    std::fs::write(d.join("src"), &v).unwrap();
    std::fs::write(d.join("big"), vec![0u8; 8 << 20]).unwrap();
    std::fs::write(d.join("small"), vec![0u8; 1 << 20]).unwrap();
    let big = Loop::new(&d.join("big"));
    let small = Loop::new(&d.join("small"));
    let map = d.join_str("map");
    // No confirmation, wrong confirmation, too small: refused, nothing written.
    assert_eq!(cli(&[&d.join_str("src"), &big.0, "--map", &map]), 2);
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &big.0,
            "--map",
            &map,
            "--write",
            &small.0
        ]),
        2
    );
    assert_eq!(
        cli(&[
            &d.join_str("src"),
            &small.0,
            "--map",
            &map,
            "--write",
            &small.0
        ]),
        2
    );
    assert!(!d.join("map").exists());
    assert!(std::fs::read(&big.0).unwrap().iter().all(|&b| b == 0));
    // Confirmed clone to the larger device.
    assert_eq!(
        cli(&[&d.join_str("src"), &big.0, "--map", &map, "--write", &big.0]),
        0
    );
    let out = std::fs::read(&big.0).unwrap();
    assert_eq!(&out[..4 << 20], &v[..]);
    assert!(out[4 << 20..].iter().all(|&b| b == 0));
    // The device as SRC (O_DIRECT) to a file; and as its own DST: refused.
    assert_eq!(
        cli(&[&big.0, &d.join_str("img"), "--map", &d.join_str("map2")]),
        0
    );
    assert_eq!(std::fs::read(d.join("img")).unwrap(), out);
    assert_eq!(
        cli(&[
            &big.0,
            &big.0,
            "--map",
            &d.join_str("map3"),
            "--write",
            &big.0
        ]),
        2
    );
    assert!(!d.join("map3").exists());
}
