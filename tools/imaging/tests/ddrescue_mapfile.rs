//! Mapfile and `--test-mode` compatibility against GNU ddrescue and ddrescuelog
//! (Debian package `gddrescue`), the independent reference.
//!
//! - our rendering is byte-identical (below the comments) to what ddrescuelog
//!   writes for the same map, for random maps including positions past 4 GiB;
//! - mapfiles ddrescue writes (finished, interrupted after copying, after
//!   trimming, reverse, with retries) parse and re-render identically;
//! - hand-edited forms: whatever we accept, ddrescuelog reads the same way,
//!   and whatever ddrescuelog rejects we reject too;
//! - ddrescue resumes from a mapfile we wrote mid-rescue and ends where its
//!   own uninterrupted run ends;
//! - FaultDevice::from_test_mapfile fails exactly the sectors `ddrescue
//!   --test-mode` fails.

use blockdev::{BlockDevice, MemDevice};
use ddmap::{Extent, Header, Map, PhaseChar, Status};
use imaging::fault::FaultDevice;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found in PATH: these tests need GNU ddrescue as the reference \
         (apt-get install gddrescue)"
    );
}

use testkit::TempDir;

/// A scratch directory for one test.
fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("imaging-ddr-{tag}"))
}

/// xorshift64*: deterministic test data without extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Non-comment lines: the status line and the block lines.
fn body(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("spawn reference tool");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ddrescuelog re-renders `path` (changing no type): its own writer's output.
fn ddrescuelog_rewrite(path: &Path) -> (i32, String, String) {
    run(Command::new(tool("ddrescuelog"))
        .arg("-a")
        .arg("?,?")
        .arg(path))
}

fn parse_map(text: &str) -> Map {
    ddmap::parse(text)
        .unwrap_or_else(|e| panic!("our parser rejected:\n{text}\n{e}"))
        .map
        .expect("status line")
}

fn random_map(rng: &mut Rng, big: bool) -> Map {
    let n = 1 + rng.below(40) as usize;
    let mut ex = Vec::new();
    let mut pos = 0u64;
    let mut last: Option<Status> = None;
    for _ in 0..n {
        let unit = if big && rng.below(3) == 0 {
            1 << 32
        } else {
            512
        };
        let size = unit * (1 + rng.below(5000));
        let mut st = Status::ALL[rng.below(5) as usize];
        if Some(st) == last {
            st = Status::ALL[(st as usize + 1) % 5];
        }
        ex.push(Extent {
            pos,
            size,
            status: st,
        });
        pos += size;
        last = Some(st);
    }
    let mut m = Map::from_extents(&ex).unwrap();
    m.current_pos = rng.below(pos + 1);
    m.current_status = [
        PhaseChar::Copying,
        PhaseChar::Trimming,
        PhaseChar::Scraping,
        PhaseChar::Retrying,
        PhaseChar::Finished,
    ][rng.below(5) as usize];
    m.current_pass = 1 + rng.below(5) as u32;
    m
}

#[test]
fn ddrescuelog_writes_our_maps_byte_for_byte_as_we_do() {
    let dir = temp_dir("render");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..150 {
        let m = random_map(&mut rng, i % 2 == 1);
        let ours = ddmap::render(
            &m,
            &Header {
                command_line: "rescue image SRC DST --map MAP".into(),
                start_time: ddmap::utc_now(),
                phase_message: "Copying non-tried blocks... Pass 1 (forwards)".into(),
            },
        );
        let p = dir.join("m");
        ddmap::save_atomic(&p, &ours).unwrap();
        let (rc, theirs, err) = ddrescuelog_rewrite(&p);
        assert_eq!(rc, 0, "ddrescuelog refused our mapfile:\n{ours}\n{err}");
        assert_eq!(
            body(&theirs),
            body(&ours),
            "map {i}:\n{ours}\n---\n{theirs}"
        );
        assert_eq!(parse_map(&theirs), m);
        let (rc, _, err) = run(Command::new(tool("ddrescuelog")).arg("-t").arg(&p));
        assert_eq!(rc, 0, "ddrescuelog -t: {err}");
    }
}

/// Source, fault map (bad sectors, clusters of them, a bad area) and the
/// truth: which 512-byte sectors ddrescue --test-mode may rescue.
fn fault_setup(rng: &mut Rng, size: u64) -> (Vec<u8>, Map) {
    let data = rng.bytes(size as usize);
    let mut m = Map::new(size);
    m.set(0, size, Status::Finished);
    let sectors = size / 512;
    for _ in 0..(1 + rng.below(12)) {
        let s = rng.below(sectors);
        let len = [1, 1, 1, 3, 8, 40][rng.below(6) as usize].min(sectors - s);
        m.set(
            s * 512,
            len * 512,
            [Status::BadSector, Status::NonTried][rng.below(2) as usize],
        );
    }
    // The last sector stays readable: ddrescue's apparent size in test mode
    // ends at the last finished block.
    m.set(size - 512, 512, Status::Finished);
    (data, m)
}

fn ddrescue(args: &[&str], src: &Path, out: &Path, map: &Path) -> (i32, String) {
    let (rc, _o, e) = run(Command::new(tool("ddrescue"))
        .arg("-q")
        .args(args)
        .arg(src)
        .arg(out)
        .arg(map));
    (rc, e)
}

#[test]
fn ddrescue_written_mapfiles_parse_and_render_identically() {
    let dir = temp_dir("theirs");
    let mut rng = Rng(77);
    let option_sets: &[&[&str]] = &[
        &[],
        &["-n"],
        &["-n", "-N"],
        &["--cpass=1", "-n", "-N"],
        &["-R"],
        &["-r2"],
        &["-c4", "-n"],
    ];
    for round in 0..4 {
        let size = 512 * (600 + rng.below(800));
        let (data, faults) = fault_setup(&mut rng, size);
        let src = dir.join("src");
        std::fs::write(&src, &data).unwrap();
        let fmap = dir.join("faults.map");
        std::fs::write(&fmap, ddmap::render(&faults, &Header::default())).unwrap();
        for opts in option_sets {
            let out = dir.join("out");
            let map = dir.join("out.map");
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_file(&map);
            let tm = format!("--test-mode={}", fmap.display());
            let mut args = vec![tm.as_str()];
            args.extend_from_slice(opts);
            let (rc, err) = ddrescue(&args, &src, &out, &map);
            assert_eq!(rc, 0, "ddrescue {args:?}: {err}");
            let theirs = std::fs::read_to_string(&map).unwrap();
            let m = parse_map(&theirs);
            assert_eq!(m.size(), size, "round {round} {opts:?}");
            let ours = ddmap::render(&m, &Header::default());
            assert_eq!(body(&ours), body(&theirs), "round {round} {opts:?}");
            // Sanity on what the map claims: finished areas hold source bytes
            // and are readable in the fault map.
            let img = std::fs::read(&out).unwrap();
            for e in m.extents().filter(|e| e.status == Status::Finished) {
                let (a, b) = (e.pos as usize, e.end() as usize);
                assert_eq!(
                    &img[a..b],
                    &data[a..b],
                    "round {round} {opts:?} block {e:?}"
                );
                assert!(
                    faults
                        .extents()
                        .all(|f| f.status == Status::Finished || f.end() <= e.pos || f.pos >= e.end()),
                    "round {round} {opts:?}: ddrescue claims {e:?} but the fault map has errors there"
                );
            }
        }
    }
}

#[test]
fn hand_edited_forms_agree_with_ddrescuelog() {
    let dir = temp_dir("forms");
    // (text, we accept?)
    let cases: &[(&str, bool)] = &[
        ("0 + 1\n0 512 +\n512 512 -\n", true),
        (
            "# c\n0x200 * 2 # where\n0 0x200 + # x\n0x200 01000 / \n",
            true,
        ),
        ("0 ?\n0 1024 ?\n", true),
        ("\t0\t/\t3\n0\t4096\t*\n", true),
        ("0 - 7\n0 1536 +\n1536 512 +\n2048 512 -\n", true),
        ("0 + 1\n0 0x10000000000 +\n0x10000000000 0x200 -\n", true),
        // Rejected by ddrescuelog (exit 2) and by us.
        ("0 + 1\n0 512 +\n1024 512 -\n", false),
        ("0 + 1\n0 512 +\n256 512 -\n", false),
        ("0 + 1\n0 512 x\n", false),
        ("0 + 1\n0 512\n", false),
        ("0 Q 1\n", false),
        ("0 + 0\n", false),
        ("0 + 0x1\n", false),
        ("0 + 1\n0 08 +\n", false),
        ("0 + 1\n0 1k +\n", false),
        ("0 + 1\n0 512 +\n512 0 -\n512 512 +\n", false),
    ];
    for (i, (text, accept)) in cases.iter().enumerate() {
        let p = dir.join(format!("f{i}"));
        std::fs::write(&p, text).unwrap();
        let ours = ddmap::parse(text);
        let (rc, theirs, err) = ddrescuelog_rewrite(&p);
        if *accept {
            let m = ours.unwrap_or_else(|e| panic!("case {i}: we rejected {text:?}: {e}"));
            let m = m.map.unwrap();
            assert_eq!(rc, 0, "case {i}: ddrescuelog rejected {text:?}: {err}");
            assert_eq!(parse_map(&theirs), m, "case {i}");
            assert_eq!(
                body(&ddmap::render(&m, &Header::default())),
                body(&theirs),
                "case {i}"
            );
        } else {
            assert!(ours.is_err(), "case {i}: we accepted {text:?}");
            assert_eq!(rc, 2, "case {i}: ddrescuelog accepted {text:?}");
        }
    }
}

#[test]
fn ddrescue_resumes_from_our_mapfile_mid_rescue() {
    let dir = temp_dir("resume");
    let mut rng = Rng(4242);
    for round in 0..6 {
        let size = 512 * (500 + rng.below(700));
        let (data, faults) = fault_setup(&mut rng, size);
        let src = dir.join("src");
        std::fs::write(&src, &data).unwrap();
        let fmap = dir.join("faults.map");
        std::fs::write(&fmap, ddmap::render(&faults, &Header::default())).unwrap();
        let tm = format!("--test-mode={}", fmap.display());

        // Reference: ddrescue alone, from scratch.
        let (ref_out, ref_map) = (dir.join("ref.out"), dir.join("ref.map"));
        let _ = std::fs::remove_file(&ref_out);
        let _ = std::fs::remove_file(&ref_map);
        let (rc, err) = ddrescue(&[&tm], &src, &ref_out, &ref_map);
        assert_eq!(rc, 0, "{err}");
        let reference = parse_map(&std::fs::read_to_string(&ref_map).unwrap());

        // A mid-rescue state written by us: random areas still non-tried,
        // non-trimmed or non-scraped; finished areas only where the source
        // is readable, and the image holds the source there.
        let mut m = Map::new(size);
        let mut img = vec![0u8; size as usize];
        let mut pos = 0;
        while pos < size {
            let len = (512 * (1 + rng.below(64))).min(size - pos);
            let st = [
                Status::NonTried,
                Status::NonTrimmed,
                Status::NonScraped,
                Status::Finished,
            ][rng.below(4) as usize];
            m.set(pos, len, st);
            pos += len;
        }
        for e in faults.extents().filter(|e| e.status != Status::Finished) {
            for s in (e.pos..e.end()).step_by(512) {
                if m.status_at(s) == Status::Finished {
                    m.set(s, 512, Status::NonScraped);
                }
            }
        }
        for e in m.extents().filter(|e| e.status == Status::Finished) {
            let (a, b) = (e.pos as usize, e.end() as usize);
            img[a..b].copy_from_slice(&data[a..b]);
        }
        m.current_status = PhaseChar::Copying;
        m.current_pass = 1;
        m.current_pos = 0;
        let (out, map) = (dir.join("out"), dir.join("our.map"));
        std::fs::write(&out, &img).unwrap();
        ddmap::save_atomic(&map, &ddmap::render(&m, &Header::default())).unwrap();
        let (rc, err) = ddrescue(&[&tm], &src, &out, &map);
        assert_eq!(rc, 0, "round {round}: ddrescue on our mapfile: {err}");
        let done = parse_map(&std::fs::read_to_string(&map).unwrap());
        let blocks = |m: &Map| m.extents().collect::<Vec<_>>();
        assert_eq!(blocks(&done), blocks(&reference), "round {round}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&ref_out).unwrap()
        );
        // And ddrescuelog's own comparison agrees.
        let (rc, _, err) = run(Command::new(tool("ddrescuelog"))
            .arg("-p")
            .arg(&ref_map)
            .arg(&map));
        assert_eq!(rc, 0, "ddrescuelog -p: {err}");
    }
}

#[test]
fn fault_device_fails_exactly_what_ddrescue_test_mode_fails() {
    let dir = temp_dir("testmode");
    let mut rng = Rng(99);
    for round in 0..5 {
        let size = 512 * (300 + rng.below(500));
        let (data, mut faults) = fault_setup(&mut rng, size);
        // Sometimes end the fault map with non-finished blocks and make it
        // shorter than the source: the apparent size rule.
        if round % 2 == 1 {
            faults.set(size - 1024, 1024, Status::BadSector);
        }
        let src = dir.join("src");
        let mut bigger = data.clone();
        bigger.extend(rng.bytes(4096));
        std::fs::write(&src, &bigger).unwrap();
        let fmap = dir.join("faults.map");
        std::fs::write(&fmap, ddmap::render(&faults, &Header::default())).unwrap();
        let (out, map) = (dir.join("out"), dir.join("out.map"));
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&map);
        let tm = format!("--test-mode={}", fmap.display());
        let (rc, err) = ddrescue(&[&tm], &src, &out, &map);
        assert_eq!(rc, 0, "{err}");
        let theirs = parse_map(&std::fs::read_to_string(&map).unwrap());

        let dev = FaultDevice::from_test_mapfile(MemDevice::new(bigger.clone(), 512), &faults);
        assert_eq!(dev.size(), theirs.size(), "round {round}: apparent size");
        let mut buf = [0u8; 512];
        for s in (0..dev.size()).step_by(512) {
            let ok = dev.read_at(&mut buf, s).is_ok();
            let finished = theirs.status_at(s) == Status::Finished;
            assert_eq!(ok, finished, "round {round}: sector {}", s / 512);
            if ok {
                assert_eq!(&buf[..], &bigger[s as usize..s as usize + 512]);
            }
        }
    }
}
