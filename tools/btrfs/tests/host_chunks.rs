//! The chunk map read from real btrfs images made by `mkfs.btrfs` (image
//! files; no loop device, no mount), compared chunk by chunk with
//! `btrfs inspect-internal dump-tree -t chunk` and, for single-device
//! images, byte addresses with `btrfs-map-logical`: the oracles from
//! btrfs-progs. A missing tool fails the test (qemu-tests/setup.sh
//! installs btrfs-progs).

use blockdev::{BlockDevice, Device};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test (btrfs-progs; qemu-tests/setup.sh installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A chunk as dump-tree prints it.
#[derive(Debug, PartialEq, Eq)]
struct Dumped {
    logical: u64,
    length: u64,
    kind: String,
    profile: String,
    sub_stripes: u16,
    stripes: Vec<(u64, u64)>,
}

fn num(s: &str, after: &str) -> u64 {
    let i = s
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {s:?}"));
    s[i + after.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn dump_chunks(devs: &[PathBuf]) -> Vec<Dumped> {
    let mut args = vec!["inspect-internal", "dump-tree", "-t", "chunk", "--noscan"];
    let paths: Vec<&str> = devs.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(paths);
    let text = run("btrfs", &args);
    let mut out: Vec<Dumped> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.contains("CHUNK_ITEM") && l.starts_with("item ") {
            let key = l.split("CHUNK_ITEM ").nth(1).unwrap();
            out.push(Dumped {
                logical: num(key, ""),
                length: 0,
                kind: String::new(),
                profile: String::new(),
                sub_stripes: 0,
                stripes: Vec::new(),
            });
        } else if let Some(d) = out.last_mut() {
            if l.starts_with("length ") && d.length == 0 {
                d.length = num(l, "length ");
                let t = l.split("type ").nth(1).unwrap();
                let (k, p) = t.split_once('|').unwrap();
                d.kind = k.to_string();
                d.profile = p.to_string();
            } else if l.starts_with("num_stripes ") {
                d.sub_stripes = num(l, "sub_stripes ") as u16;
            } else if l.starts_with("stripe ") {
                d.stripes.push((num(l, "devid "), num(l, "offset ")));
            }
        }
    }
    assert!(!out.is_empty(), "no chunk in dump-tree's output:\n{text}");
    out
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("btrfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` sparse image files of `size` bytes, made one btrfs with `opts`;
/// `/data/big.bin` (3 MiB) and a small file in it.
fn mkfs(dir: &Path, n: usize, size: u64, opts: &[&str]) -> Vec<PathBuf> {
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("data")).unwrap();
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(files.join("data/big.bin"), big).unwrap();
    std::fs::write(files.join("hello.txt"), "hello\n").unwrap();
    let imgs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("d{i}.img"))).collect();
    for p in &imgs {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(size).unwrap();
    }
    let mut args = vec!["-q", "-f"];
    args.extend_from_slice(opts);
    if n == 1 {
        args.extend(["--rootdir", files.to_str().unwrap()]);
    }
    let paths: Vec<&str> = imgs.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(paths);
    run("mkfs.btrfs", &args);
    imgs
}

fn open_all(imgs: &[PathBuf]) -> (btrfs::Fs, f64) {
    let devs: Vec<Device> = imgs.iter().map(|p| Device::open(p).unwrap()).collect();
    let refs: Vec<&dyn BlockDevice> = devs.iter().map(|d| d as &dyn BlockDevice).collect();
    let t = std::time::Instant::now();
    let fs = btrfs::open(&refs).unwrap_or_else(|e| panic!("{imgs:?}: {e}"));
    (fs, t.elapsed().as_secs_f64())
}

fn compare(imgs: &[PathBuf]) -> btrfs::Fs {
    let dumped = dump_chunks(imgs);
    let (fs, secs) = open_all(imgs);
    eprintln!(
        "{:?}: {} chunks from {} chunk tree nodes in {:.6} s",
        imgs[0].file_name().unwrap(),
        fs.map.chunks.len(),
        fs.map.nodes_read,
        secs
    );
    assert_eq!(
        fs.map.chunks.len(),
        dumped.len(),
        "{dumped:#?}\n{:#?}",
        fs.map.chunks
    );
    for (c, d) in fs.map.chunks.iter().zip(&dumped) {
        let ours = Dumped {
            logical: c.logical,
            length: c.length,
            kind: c.kind().to_string(),
            profile: match c.profile {
                btrfs::Profile::Single => "single".into(),
                p => p.name().to_string(),
            },
            sub_stripes: c.sub_stripes,
            stripes: c.stripes.iter().map(|s| (s.devid, s.offset)).collect(),
        };
        assert_eq!(&ours, d);
    }
    assert!(fs.notes.is_empty(), "{:?}", fs.notes);
    fs
}

/// Starts of the extents the extent tree lists (EXTENT_ITEM,
/// METADATA_ITEM): addresses `btrfs-map-logical` maps.
fn extent_starts(img: &Path) -> Vec<u64> {
    let text = run(
        "btrfs",
        &[
            "inspect-internal",
            "dump-tree",
            "-t",
            "extent",
            img.to_str().unwrap(),
        ],
    );
    text.lines()
        .filter(|l| l.contains(" EXTENT_ITEM ") || l.contains(" METADATA_ITEM "))
        .filter_map(|l| l.split("key (").nth(1))
        .map(|k| num(k, ""))
        .collect()
}

/// `btrfs-map-logical` agrees at a byte of every extent the extent tree
/// lists (single-device images: the tool finds the device itself).
fn map_logical_agrees(img: &Path, fs: &btrfs::Fs) {
    let starts = extent_starts(img);
    assert!(starts.len() >= 3, "{starts:?}");
    let mut kinds = std::collections::BTreeSet::new();
    for l in starts {
        let l = l + 512;
        let text = run(
            "btrfs-map-logical",
            &["-l", &l.to_string(), "-b", "512", img.to_str().unwrap()],
        );
        let mut theirs: Vec<u64> = text
            .lines()
            .filter(|x| x.starts_with("mirror "))
            .map(|x| num(x, "physical "))
            .collect();
        theirs.sort();
        let c = fs
            .map
            .find(l)
            .unwrap_or_else(|| panic!("logical {l}: in no chunk"));
        kinds.insert(c.kind());
        let (copies, _) = c.copies(l).unwrap();
        let mut ours: Vec<u64> = copies.iter().map(|x| x.1).collect();
        ours.sort();
        assert_eq!(ours, theirs, "logical {l}: {text}");
        for (i, p) in copies.iter().enumerate() {
            assert_eq!(c.to_logical(i, p.1, 1)[0].logical, l);
        }
    }
    assert!(
        kinds.contains("DATA") && kinds.contains("METADATA"),
        "{kinds:?}"
    );
}

#[test]
fn single_device_default_and_dup_agree_with_btrfs_progs() {
    let d = scratch("single");
    for (i, opts) in [
        &[][..],
        &["-m", "single", "-d", "single"][..],
        &["-m", "dup", "-d", "dup"][..],
        &["-n", "4096", "-s", "4096"][..],
    ]
    .iter()
    .enumerate()
    {
        let sub = d.join(format!("case{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let imgs = mkfs(&sub, 1, 300 << 20, opts);
        let fs = compare(&imgs);
        assert_eq!(fs.sb.num_devices, 1);
        map_logical_agrees(&imgs[0], &fs);
        if opts.contains(&"dup") {
            assert!(fs
                .map
                .chunks
                .iter()
                .all(|c| c.profile == btrfs::Profile::Dup));
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn multi_device_profiles_agree_with_dump_tree() {
    let d = scratch("multi");
    for (i, (n, opts)) in [
        (2, &["-m", "raid1", "-d", "raid1"][..]),
        (2, &["-m", "raid1", "-d", "raid0"][..]),
        (4, &["-m", "raid1c3", "-d", "raid10"][..]),
        (4, &["-m", "raid1c4", "-d", "raid1c4"][..]),
        (3, &["-m", "raid1", "-d", "raid5"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = d.join(format!("case{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let imgs = mkfs(&sub, n, 300 << 20, opts);
        let fs = compare(&imgs);
        assert_eq!(fs.sb.num_devices, n as u64);
        assert_eq!(fs.devids.len(), n);
        assert_eq!(fs.map.devids, (1..=n as u64).collect::<Vec<_>>());
        // Every stripe's bytes map back onto its chunk; RAID5/6: the data
        // rows of all stripes together hold the chunk once, and each
        // byte's data place maps back to it.
        for c in &fs.map.chunks {
            let mut data = 0;
            for (i, s) in c.stripes.iter().enumerate() {
                let p = c.to_logical(i, s.offset, u64::MAX);
                data += p.iter().map(|x| x.len).sum::<u64>();
                if c.layout().is_some() {
                    assert_eq!(
                        p.iter().map(|x| x.len).sum::<u64>(),
                        c.stripe_bytes().unwrap()
                    );
                }
                for x in p.iter().take(50) {
                    let (v, _) = c.copies(x.logical).unwrap();
                    assert!(v.contains(&(s.devid, x.device)), "{c:?} {x:?}");
                }
            }
            if c.parity_stripes() > 0 {
                assert_eq!(data, c.length, "{c:?}");
            }
        }
        // One device alone: the chunk tree is read when a copy of it is
        // there (RAID1 on device 1), else the error says which devid.
        let one = btrfs::open(&[&Device::open(&imgs[0]).unwrap()]);
        match one {
            Ok(f) => assert_eq!(f.map.chunks.len(), fs.map.chunks.len()),
            Err(e) => assert!(e.contains("not at hand"), "{e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}
