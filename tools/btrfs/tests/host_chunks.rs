//! The chunk map read from real btrfs images made by `mkfs.btrfs` (image
//! files; no loop device, no mount), compared chunk by chunk with
//! `btrfs inspect-internal dump-tree -t chunk` and, for single-device
//! images, byte addresses with `btrfs-map-logical`: the oracles from
//! btrfs-progs. RAID5/6 (mkfs --rootdir takes one device only): made on
//! loop devices and written through the host kernel's btrfs (root), then
//! the file's bytes read back from the images through the map and the
//! parity checked. A missing tool fails the test (qemu-tests/setup.sh
//! installs btrfs-progs and e2fsprogs' filefrag).

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

/// Loop devices, a mount and btrfs's device registration made for one
/// test, undone even when it panics.
struct Loops {
    devs: Vec<String>,
    mnt: Option<PathBuf>,
}

impl Loops {
    fn release(&mut self) {
        if let Some(m) = self.mnt.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        if !self.devs.is_empty() {
            let mut a = vec!["device", "scan", "--forget"];
            a.extend(self.devs.iter().map(|s| s.as_str()));
            let _ = Command::new("btrfs").args(&a).output();
        }
        for d in self.devs.drain(..) {
            let _ = Command::new("losetup").args(["-d", &d]).status();
        }
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        self.release();
    }
}

/// The test file's bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `n` image files made one btrfs (`-d PROFILE -m raid1`) through loop
/// devices and written through the host kernel (mkfs --rootdir takes one
/// device only): `/big.bin` holds `pattern(len)`. Returns the images and
/// the file's extents from FIEMAP (`filefrag -v`): (file byte, btrfs
/// logical, length).
fn raid56_image(
    dir: &Path,
    n: usize,
    profile: &str,
    len: usize,
) -> (Vec<PathBuf>, Vec<(u64, u64, u64)>) {
    let imgs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("d{i}.img"))).collect();
    let mut loops = Loops {
        devs: Vec::new(),
        mnt: None,
    };
    for p in &imgs {
        std::fs::File::create(p)
            .unwrap()
            .set_len(300 << 20)
            .unwrap();
        let d = run("losetup", &["-f", "--show", p.to_str().unwrap()]);
        loops.devs.push(d.trim().to_string());
    }
    let mut args = vec!["-q", "-f", "-m", "raid1", "-d", profile];
    args.extend(loops.devs.iter().map(|s| s.as_str()));
    run("mkfs.btrfs", &args);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let opts: Vec<String> = loops.devs.iter().map(|d| format!("device={d}")).collect();
    run(
        "mount",
        &["-o", &opts.join(","), &loops.devs[0], mnt.to_str().unwrap()],
    );
    loops.mnt = Some(mnt.clone());
    let file = mnt.join("big.bin");
    std::fs::write(&file, pattern(len)).unwrap();
    run("sync", &[]);
    let text = run("filefrag", &["-v", "-b4096", file.to_str().unwrap()]);
    let mut extents = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split([' ', ':', '.']).filter(|x| !x.is_empty()).collect();
        if f.len() >= 6 && f[0].parse::<u64>().is_ok() && f[1].parse::<u64>().is_ok() {
            let (lo, po, n): (u64, u64, u64) = (
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].parse().unwrap(),
            );
            extents.push((lo * 4096, po * 4096, n * 4096));
        }
    }
    assert_eq!(
        extents.iter().map(|e| e.2).sum::<u64>(),
        len as u64,
        "{text}"
    );
    loops.release();
    (imgs, extents)
}

fn read_at(p: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; len];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    b
}

/// RAID5 and RAID6 data written by the kernel: every block of the file
/// read back from the images through the chunk map's data copy, and each
/// full stripe the file touches has parity where `raid56_role` says
/// (RAID5: the XOR of all stripes is zero; RAID6: of all but Q).
#[test]
fn raid5_and_raid6_data_read_back_through_the_map() {
    let d = scratch("raid56");
    for (n, profile) in [(3, "raid5"), (4, "raid5"), (4, "raid6")] {
        let sub = d.join(format!("{profile}-{n}"));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 3 << 20;
        let (imgs, extents) = raid56_image(&sub, n, profile, len);
        let fs = compare(&imgs);
        let img_of = |devid: u64| &imgs[fs.devids.iter().position(|&x| x == devid).unwrap()];
        let want = pattern(len);
        let mut rows = std::collections::BTreeSet::new();
        for &(file, logical, elen) in &extents {
            for at in (0..elen).step_by(4096) {
                let l = logical + at;
                let c = fs.map.find(l).unwrap();
                assert_eq!(c.parity_stripes(), if profile == "raid6" { 2 } else { 1 });
                let ((devid, phys), run) = {
                    let (v, run) = c.copies(l).unwrap();
                    assert_eq!(v.len(), 1);
                    (v[0], run)
                };
                assert!(run >= 4096);
                let got = read_at(img_of(devid), phys, 4096);
                let f = (file + at) as usize;
                assert!(
                    got == want[f..f + 4096],
                    "{profile} on {n}: file byte {f}, logical {l}, devid {devid} at {phys}"
                );
                let i = c.group_of(l).unwrap().start;
                rows.insert((c.logical, (phys - c.stripes[i].offset) / c.stripe_len));
            }
        }
        assert!(rows.len() >= 3, "{rows:?}");
        for (cl, row) in rows {
            let c = fs.map.find(cl).unwrap();
            let sl = c.stripe_len as usize;
            let mut x = vec![0u8; sl];
            for (i, s) in c.stripes.iter().enumerate() {
                if c.raid56_role(i, row) == Some(Err(1)) {
                    continue; // Q
                }
                let b = read_at(img_of(s.devid), s.offset + row * c.stripe_len, sl);
                x.iter_mut().zip(b).for_each(|(a, b)| *a ^= b);
            }
            assert!(
                x.iter().all(|&b| b == 0),
                "{profile} on {n}: row {row} parity"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}
