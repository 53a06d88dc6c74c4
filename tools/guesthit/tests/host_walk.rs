//! Real ext4 and btrfs images with known files (`mkfs.ext4 -d`,
//! `mkfs.btrfs --rootdir`; btrfs RAID1 over two loop devices), attached
//! read-only to loop devices and mounted read-only: bad ranges chosen
//! with debugfs inside one known file, a directory, the inode table and
//! free space must come back as exactly that file and range, that
//! directory, metadata and free space. Needs root, loop devices, the host
//! kernel's ext4, mkfs.ext4 and debugfs (a missing one fails the test).
//!
//! The host kernel here reads no partition tables on loop devices, so
//! the whole-run test gives [`guesthit::run`] a small sysfs of its own
//! naming the partition, whose device is a second loop device over the
//! partition's bytes. Loop devices do not fail reads in bad areas as the
//! appliance's attached devices do; the walk does not need them to.
//!
//! Every loop device and mount is undone on drop, also when an assertion
//! fails; every test works in its own scratch directory.

use guesthit::run::{ActiveLv, Assembled, Attached, MountedFs, Request, System};
use guesthit::Ranges;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test (qemu-tests/setup.sh installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need_root_and_ext4() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests mount loop devices: run them as root"
    );
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().last() == Some("ext4"))
    };
    if !has() {
        let _ = Command::new("modprobe").arg("ext4").status();
    }
    assert!(
        has(),
        "the host kernel has no ext4: this test cannot run here"
    );
}

/// Loop devices and mounts, undone on drop (mounts first).
struct Guard {
    tmp: testkit::TempDir,
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Guard {
    fn new(tag: &str) -> Guard {
        need_root_and_ext4();
        Guard {
            tmp: testkit::TempDir::new(tag),
            loops: Vec::new(),
            mounts: Vec::new(),
        }
    }

    /// A read-only loop device over `len` bytes of `img` from `offset`.
    fn attach(&mut self, img: &Path, offset: u64, len: Option<u64>) -> String {
        let off = offset.to_string();
        let lim = len.map(|l| l.to_string());
        let mut args = vec!["-r", "-f", "--show", "-o", &off];
        if let Some(l) = &lim {
            args.extend(["--sizelimit", l]);
        }
        let img = img.to_str().unwrap();
        args.push(img);
        let dev = run("losetup", &args).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        self.loops.push(dev.clone());
        dev
    }

    /// A read-write loop device over all of `img` (to make a filesystem
    /// on it).
    fn attach_rw(&mut self, img: &Path) -> String {
        let dev = run("losetup", &["-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        self.loops.push(dev.clone());
        // A read-only flag another user left on this loop device.
        run("blockdev", &["--setrw", &dev]);
        dev
    }

    /// Mounts the btrfs on `dev` (with its other devices) with `opts`.
    fn mount_btrfs(&mut self, dev: &str, others: &[&str], opts: &str) -> PathBuf {
        let dir = self.tmp.join(format!("m{}", self.mounts.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut o = opts.to_string();
        for d in others {
            o.push_str(&format!(",device={d}"));
        }
        run(
            "mount",
            &["-t", "btrfs", "-o", &o, dev, dir.to_str().unwrap()],
        );
        self.mounts.push(dir.clone());
        dir
    }

    fn umount(&mut self, dir: &Path) {
        run("umount", &[dir.to_str().unwrap()]);
        self.mounts.retain(|m| m != dir);
    }

    fn detach(&mut self, dev: &str) {
        // The kernel keeps btrfs devices it has seen registered by fsid.
        let _ = Command::new("btrfs")
            .args(["device", "scan", "--forget", dev])
            .stderr(std::process::Stdio::null())
            .status();
        // rmount sets the block layer's read-only flag; it would outlive
        // the loop device and make its next user's attach read-only.
        let _ = blockdev::set_read_only(dev, false);
        let _ = Command::new("losetup").args(["-d", dev]).status();
        self.loops.retain(|l| l != dev);
    }

    fn mount(&mut self, dev: &str) -> PathBuf {
        let dir = self.tmp.join(format!("m{}", self.mounts.len()));
        std::fs::create_dir_all(&dir).unwrap();
        run(
            "mount",
            &["-t", "ext4", "-o", "ro,noload", dev, dir.to_str().unwrap()],
        );
        self.mounts.push(dir.clone());
        dir
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).status();
        }
        for l in std::mem::take(&mut self.loops).into_iter().rev() {
            self.detach(&l);
        }
    }
}

/// Bytes that do not repeat, so a misplaced block shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const FS_BYTES: u64 = 48 << 20;
const BS: u64 = 4096;

/// An ext4 image (4 KiB blocks) with `/docs/report.txt`, a 1 MiB
/// `/data/big.bin` and `many` small files under `/many/dNN/`.
fn ext4_image(dir: &Path, many: usize) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("docs")).unwrap();
    std::fs::create_dir_all(files.join("data")).unwrap();
    std::fs::write(files.join("docs/report.txt"), pattern(6000, 3)).unwrap();
    std::fs::write(files.join("data/big.bin"), pattern(1 << 20, 7)).unwrap();
    for i in 0..many {
        let d = files.join(format!("many/d{:02}", i % 50));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    let img = dir.join("fs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(FS_BYTES)
        .unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-L",
            "GUESTFS",
            "-d",
            files.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    img
}

fn debugfs(img: &Path, req: &str) -> String {
    run("debugfs", &["-R", req, img.to_str().unwrap()])
}

/// The blocks of `path` in the image, in file order.
fn blocks_of(img: &Path, path: &str) -> Vec<u64> {
    debugfs(img, &format!("blocks {path}"))
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect()
}

/// Where things are, found with debugfs: the bad ranges (filesystem
/// offsets) and what each must come back as.
struct Chosen {
    bad: Ranges,
    big: Vec<u64>,
    report: Vec<u64>,
    docs: Vec<u64>,
    itable: u64,
    free: u64,
}

fn choose(img: &Path) -> Chosen {
    let big = blocks_of(img, "/data/big.bin");
    assert_eq!(big.len(), 256);
    let report = blocks_of(img, "/docs/report.txt");
    let docs = blocks_of(img, "/docs");
    let stats = debugfs(img, "stats");
    let itable: u64 = stats
        .split("inode table at ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no inode table in debugfs stats:\n{stats}"));
    let ffb = debugfs(img, "ffb 1 11000");
    let free: u64 = ffb
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("debugfs ffb: {ffb}"));
    let bad = Ranges::from_unsorted(vec![
        (big[10] * BS, BS),
        (big[20] * BS + 512, 1024),
        (report[1] * BS + 100, 200),
        (docs[0] * BS, BS),
        ((itable + 2) * BS, BS),
        (free * BS, BS),
    ]);
    Chosen {
        bad,
        big,
        report,
        docs,
        itable,
        free,
    }
}

#[test]
fn walk_names_the_file_and_range_metadata_and_free_space() {
    let mut g = Guard::new("guesthit-walk");
    let img = ext4_image(g.tmp.path(), 3000);
    let c = choose(&img);
    let loop_dev = g.attach(&img, 0, None);
    let dir = g.mount(&loop_dev);

    let w = guesthit::walk::walk(&dir, &c.bad, false);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    assert_eq!(w.method, guesthit::walk::Method::Fiemap);
    assert_eq!(w.files, 3002);
    assert_eq!(
        w.directories,
        1 + 3 + 50 + 1,
        "/, /docs, /data, /many, 50 dirs, lost+found"
    );
    eprintln!(
        "walk: {} files and {} directories in {:.3} s: {:.0} per second",
        w.files, w.directories, w.seconds, w.per_second
    );
    type Got<'a> = Vec<(&'a str, &'a str, Vec<(u64, u64)>)>;
    let got: Got<'_> = w
        .hits
        .iter()
        .map(|h| (h.path.as_str(), h.kind, h.ranges.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/data/big.bin",
                "file",
                vec![(10 * BS, BS), (20 * BS + 512, 1024)]
            ),
            ("/docs", "directory", vec![(0, BS)]),
            ("/docs/report.txt", "file", vec![(BS + 100, 200)]),
        ]
    );
    let rest = guesthit::layers::subtract(&c.bad, &w.covered);
    assert_eq!(
        rest,
        Ranges(vec![((c.itable + 2) * BS, BS), (c.free * BS, BS)])
    );
    let dev = blockdev::Device::open(&loop_dev).unwrap();
    let l = guesthit::extmap::Layout::read(&dev).unwrap();
    let told = l.classify(&dev, &rest);
    assert_eq!(told.metadata.len(), 1, "{told:?}");
    assert_eq!(told.metadata[0].what, "inode table of group 0");
    assert_eq!(told.free.len(), 1, "{told:?}");
    assert_eq!(told.free[0].start, c.free * BS);
    assert!(told.unknown.is_empty());
    let _ = (&c.big, &c.report, &c.docs);
}

#[test]
fn bitmaps_agree_with_debugfs() {
    let g = Guard::new("guesthit-testb");
    let img = ext4_image(g.tmp.path(), 10);
    let dev = blockdev::Device::open(&img).unwrap();
    let l = guesthit::extmap::Layout::read(&dev).unwrap();
    // Every 97th block, and the ends: allocated (metadata or file) or free
    // as debugfs's testb says.
    let blocks: Vec<u64> = (1..FS_BYTES / BS)
        .step_by(97)
        .chain([FS_BYTES / BS - 1])
        .collect();
    let mut checked = 0;
    for b in blocks {
        // debugfs says it on stderr.
        let o = Command::new("debugfs")
            .args(["-R", &format!("testb {b}"), img.to_str().unwrap()])
            .output()
            .expect("debugfs");
        let out =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(out.contains("in use"), "debugfs testb {b}: {out}");
        let used = out.contains("marked in use");
        let c = l.classify(&dev, &Ranges(vec![(b * BS, BS)]));
        assert!(c.unknown.is_empty(), "block {b}: {c:?}");
        assert_eq!(!c.metadata.is_empty(), used, "block {b}: {c:?} vs {out}");
        checked += 1;
    }
    assert!(checked > 100);
}

/// The host's side of [`System`]: a sysfs and /dev of its own naming the
/// image `disk0` and its one partition `disk0p1` (each a loop device),
/// and mounts through rmount.
struct Host<'a> {
    g: &'a mut Guard,
    part: (u64, u64),
    fake_sys: PathBuf,
    fake_dev: PathBuf,
    attached: Vec<String>,
    log: Vec<String>,
}

impl Host<'_> {
    fn rpaths(&self) -> rmount::Paths {
        rmount::Paths {
            state: self.g.tmp.join("rmount-state"),
            mnt_root: self.g.tmp.join("mnt"),
            ..rmount::Paths::default()
        }
    }
}

fn write(p: PathBuf, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

impl System for Host<'_> {
    fn sys(&self) -> PathBuf {
        self.fake_sys.clone()
    }
    fn dev(&self) -> PathBuf {
        self.fake_dev.clone()
    }
    fn attach(&mut self, source: &str, vmfs: &[String], map: &Path) -> Result<Attached, String> {
        assert!(vmfs.is_empty(), "no VMFS on this image");
        assert!(map.exists());
        self.log.push(format!("attach {source}"));
        let whole = self.g.attach(Path::new(source), 0, None);
        let part = self
            .g
            .attach(Path::new(source), self.part.0, Some(self.part.1));
        self.attached = vec![whole.clone(), part.clone()];
        let size = std::fs::metadata(source).unwrap().len();
        write(
            self.fake_sys.join("class/block/disk0/size"),
            &(size / 512).to_string(),
        );
        write(self.fake_sys.join("block/disk0/disk0p1/partition"), "1");
        write(
            self.fake_sys.join("class/block/disk0p1/start"),
            &(self.part.0 / 512).to_string(),
        );
        write(
            self.fake_sys.join("class/block/disk0p1/size"),
            &(self.part.1 / 512).to_string(),
        );
        std::fs::create_dir_all(&self.fake_dev).unwrap();
        std::os::unix::fs::symlink(&whole, self.fake_dev.join("disk0")).unwrap();
        std::os::unix::fs::symlink(&part, self.fake_dev.join("disk0p1")).unwrap();
        Ok(Attached {
            device: "disk0".into(),
        })
    }
    fn detach(&mut self, a: &Attached) -> Result<(), String> {
        self.log.push(format!("detach {}", a.device));
        for l in std::mem::take(&mut self.attached) {
            self.g.detach(&l);
        }
        Ok(())
    }
    fn assemble_md(&mut self, uuid: &str) -> Result<Assembled, String> {
        Err(format!("no md on this host ({uuid})"))
    }
    fn stop_md(&mut self, _: &Assembled) -> Result<(), String> {
        Ok(())
    }
    fn activate_lvm(&mut self, _: &[String]) -> Result<(Vec<ActiveLv>, Vec<String>), String> {
        Err("no device-mapper on this host".into())
    }
    fn deactivate_lvm(&mut self, _: &[ActiveLv]) -> Result<(), String> {
        Ok(())
    }
    fn mount(&mut self, name: &str) -> Result<MountedFs, String> {
        self.log.push(format!("mount {name}"));
        let node = std::fs::read_link(self.fake_dev.join(name)).map_err(|e| e.to_string())?;
        let mut req = rmount::Request::new(node.display().to_string());
        req.paths = self.rpaths();
        let m = rmount::mount(&req, &|_| Ok(()), &mut Vec::new()).map_err(|f| f.reason)?;
        self.g.mounts.push(m.mount_point.clone());
        Ok(MountedFs {
            dir: m.mount_point,
            notes: m.notes,
        })
    }
    fn umount(&mut self, m: &MountedFs) -> Result<(), String> {
        self.log.push("umount".into());
        rmount::umount(&self.rpaths(), &m.dir.display().to_string())?;
        self.g.mounts.retain(|x| *x != m.dir);
        Ok(())
    }
}

#[test]
fn files_hit_on_a_disk_image_without_vmfs() {
    use testkit::gptdisk::{self, Part};
    let mut g = Guard::new("guesthit-run");
    let fs_img = ext4_image(g.tmp.path(), 20);
    let c = choose(&fs_img);
    let part_start = 1u64 << 20;
    let sectors = (FS_BYTES + (2 << 20)) / 512;
    let mut disk = gptdisk::disk(
        sectors,
        512,
        &[Part {
            slot: 1,
            type_guid: gptdisk::BASIC,
            first: part_start / 512,
            last: (part_start + FS_BYTES) / 512 - 1,
            name: "guest",
        }],
    );
    let fs = std::fs::read(&fs_img).unwrap();
    disk[part_start as usize..part_start as usize + fs.len()].copy_from_slice(&fs);
    let image = g.tmp.join("disk.img");
    std::fs::write(&image, &disk).unwrap();
    // The mapfile: the chosen areas moved to disk offsets, and the GPT
    // header's sector.
    let mut map = ddmap::Map::new(disk.len() as u64);
    map.set(0, disk.len() as u64, ddmap::Status::Finished);
    for &(s, l) in c.bad.0.iter() {
        map.set(part_start + s, l, ddmap::Status::BadSector);
    }
    map.set(512, 512, ddmap::Status::BadSector);
    let mapfile = g.tmp.join("disk.map");
    std::fs::write(&mapfile, ddmap::render(&map, &ddmap::Header::default())).unwrap();

    let fake_sys = g.tmp.join("sys");
    let fake_dev = g.tmp.join("dev");
    let req = Request {
        image: image.clone(),
        map: mapfile,
        badmap_dir: guesthit::run::badmap_dir(&image),
        vmfs: true,
    };
    let mut host = Host {
        g: &mut g,
        part: (part_start, FS_BYTES),
        fake_sys,
        fake_dev,
        attached: Vec::new(),
        log: Vec::new(),
    };
    let mut steps = Vec::new();
    let report = guesthit::run::run(&req, &mut host, &mut |s| steps.push(s.to_string()));
    assert_eq!(
        host.log,
        [
            "attach ".to_string() + image.to_str().unwrap(),
            "mount disk0p1".into(),
            "umount".into(),
            "detach disk0".into()
        ]
    );
    assert!(host.attached.is_empty());
    let text = report.text();
    eprintln!("{text}");
    assert!(report.errors.is_empty(), "{text}");
    assert!(
        report.notes.iter().any(|n| n.contains("no VMFS datastore")),
        "{text}"
    );
    assert_eq!(report.disks.len(), 1);
    let d = &report.disks[0];
    assert!(d.errors.is_empty(), "{text}");
    assert_eq!(d.elsewhere.len(), 1, "{text}");
    assert_eq!((d.elsewhere[0].start, d.elsewhere[0].len), (512, 512));
    assert!(
        d.elsewhere[0].what.contains("outside its partitions"),
        "{text}"
    );
    assert_eq!(d.filesystems.len(), 1);
    let f = &d.filesystems[0];
    assert_eq!(f.device, "disk0p1");
    assert_eq!(f.kind, "ext4");
    assert_eq!(f.chain, ["partition 1 of disk0 at byte 1048576"]);
    let files: Vec<(&str, &[(u64, u64)])> = f
        .files
        .iter()
        .map(|h| (h.path.as_str(), h.ranges.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("/data/big.bin", &[(10 * BS, BS), (20 * BS + 512, 1024)][..]),
            ("/docs/report.txt", &[(BS + 100, 200)][..]),
        ]
    );
    assert_eq!(f.directories.len(), 1);
    assert_eq!(f.directories[0].path, "/docs");
    assert_eq!(f.metadata.len(), 1, "{text}");
    assert_eq!(f.metadata[0].what, "inode table of group 0");
    assert_eq!(f.free.len(), 1, "{text}");
    assert_eq!((f.free[0].start, f.free[0].len), (c.free * BS, BS));
    assert!(f.not_told_apart.is_empty(), "{text}");
    let t = &report.totals;
    assert_eq!((t.files_hit, t.file_bytes), (2, BS + 1024 + 200));
    assert_eq!(
        (
            t.directories_hit,
            t.metadata_bytes,
            t.free_bytes,
            t.elsewhere_bytes
        ),
        (1, BS, BS, 512)
    );
    assert!(
        text.contains("file /data/big.bin: 5120 of 1048576 bytes lost"),
        "{text}"
    );
    assert!(text.contains("bytes 40960..45056 (4096 bytes)"), "{text}");
    assert!(
        text.contains(&format!(
            "free space: bytes {}..{} ({BS} bytes) of disk0p1",
            c.free * BS,
            (c.free + 1) * BS
        )),
        "{text}"
    );
    let json = cliconv::json_text(guesthit::report::SCHEMA, &report).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(
        v["disks"][0]["filesystems"][0]["files"][0]["path"],
        "/data/big.bin"
    );
    assert_eq!(v["totals"]["free_bytes"], BS);
}

// ---- btrfs ----

fn need_btrfs() {
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().last() == Some("btrfs"))
    };
    if !has() {
        let _ = Command::new("modprobe").arg("btrfs").status();
    }
    assert!(
        has(),
        "the host kernel has no btrfs: this test cannot run here"
    );
}

const BTRFS_BYTES: u64 = 300 << 20;

/// The files of the btrfs tests: a 3 MiB `/data/big.bin`, a 6000-byte
/// `/docs/report.txt` (too big to be inline) and an inline `/hello.txt`.
fn btrfs_files(dir: &Path) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("docs")).unwrap();
    std::fs::create_dir_all(files.join("data")).unwrap();
    std::fs::write(files.join("docs/report.txt"), pattern(6000, 3)).unwrap();
    std::fs::write(files.join("data/big.bin"), pattern(3 << 20, 7)).unwrap();
    std::fs::write(files.join("hello.txt"), "hello\n").unwrap();
    files
}

/// A single-device btrfs image (metadata DUP, data single) with
/// [`btrfs_files`].
fn btrfs_image(dir: &Path) -> PathBuf {
    need_btrfs();
    let files = btrfs_files(dir);
    let img = dir.join("btrfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(BTRFS_BYTES)
        .unwrap();
    run(
        "mkfs.btrfs",
        &[
            "-q",
            "-f",
            "-m",
            "dup",
            "-L",
            "GUESTBTR",
            "--rootdir",
            files.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    img
}

/// The logical address of byte `off` of a file, from its FIEMAP extents.
fn logical_of(path: &Path, off: u64) -> u64 {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(path).unwrap();
    let ext = guesthit::fiemap::extents(f.as_fd()).unwrap();
    let e = ext
        .iter()
        .find(|e| e.logical <= off && off < e.logical + e.length)
        .unwrap_or_else(|| panic!("{path:?} byte {off}: in no extent of {ext:?}"));
    assert_eq!(e.flags & guesthit::fiemap::FIEMAP_EXTENT_ENCODED, 0);
    e.physical + (off - e.logical)
}

/// `btrfs-map-logical`'s copies of `logical`: (device, physical).
fn map_logical(dev: &str, logical: u64) -> Vec<(String, u64)> {
    let text = run(
        "btrfs-map-logical",
        &["-l", &logical.to_string(), "-b", "4096", dev],
    );
    let mut v: Vec<(String, u64)> = text
        .lines()
        .filter(|l| l.starts_with("mirror "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = |k: &str| f[f.iter().position(|x| *x == k).unwrap() + 1];
            (at("device").to_string(), at("physical").parse().unwrap())
        })
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "btrfs-map-logical -l {logical} {dev}:\n{text}"
    );
    v
}

fn super_u64(img: &Path, off: usize) -> u64 {
    let b = std::fs::read(img).unwrap();
    u64::from_le_bytes(b[65536 + off..65536 + off + 8].try_into().unwrap())
}

/// The one copy of `logical` on a single-device btrfs.
fn single_copy(fs: &btrfs::Fs, logical: u64) -> u64 {
    let (v, _) = fs.map.find(logical).unwrap().copies(logical).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].1
}

/// Bad ranges chosen on a single-device btrfs (device offsets) and what
/// they must come back as.
struct BtrfsChosen {
    bad: Ranges,
    root_copies: Vec<u64>,
    chunk_root_copies: Vec<u64>,
    free: u64,
    data_free: u64,
}

fn choose_btrfs(img: &Path, fs: &btrfs::Fs, mounted: &Path) -> BtrfsChosen {
    let l_big = logical_of(&mounted.join("data/big.bin"), (1 << 20) + 4096);
    let l_rep = logical_of(&mounted.join("docs/report.txt"), BS + 100);
    let p_big = single_copy(fs, l_big);
    let p_rep = single_copy(fs, l_rep);
    // btrfs-progs agrees on where the file's bytes lie.
    // (btrfs-map-logical wants a range inside one extent: from the
    // sector's start.)
    let img_s = img.to_str().unwrap();
    for (l, p) in [(l_big, p_big), (l_rep, p_rep)] {
        let a = l & !(BS - 1);
        assert_eq!(map_logical(img_s, a), [(img_s.to_string(), p - (l - a))]);
    }
    // The root tree's node (both DUP copies) and the chunk tree's (one).
    let copies = |l: u64| -> Vec<u64> {
        let (v, _) = fs.map.find(l).unwrap().copies(l).unwrap();
        v.iter().map(|c| c.1).collect()
    };
    let root_copies = copies(super_u64(img, 0x50));
    let chunk_root_copies = copies(fs.sb.chunk_root);
    assert_eq!((root_copies.len(), chunk_root_copies.len()), (2, 2));
    // Unallocated: the last MiB of the device lies in no chunk.
    let free = BTRFS_BYTES - (1 << 20);
    assert!(fs.map.chunks.iter().all(|c| c
        .stripes
        .iter()
        .all(|s| s.offset + c.device_extent_len() <= free)));
    // The data chunk's last 4 KiB: no file there (3 MiB of files in it).
    let data = fs
        .map
        .chunks
        .iter()
        .find(|c| c.kind() == "DATA" && c.logical <= l_big && l_big < c.end())
        .unwrap();
    let data_free = single_copy(fs, data.end() - BS);
    let bad = Ranges::from_unsorted(vec![
        (p_big, BS),
        (p_rep, 200),
        (65536, BS),
        (root_copies[0], BS),
        (root_copies[1], BS),
        (chunk_root_copies[0], BS),
        (free, BS),
        (data_free, BS),
    ]);
    BtrfsChosen {
        bad,
        root_copies,
        chunk_root_copies,
        free,
        data_free,
    }
}

#[test]
fn btrfs_walk_names_the_file_metadata_and_unallocated_space() {
    let mut g = Guard::new("guesthit-btrfs");
    let img = btrfs_image(g.tmp.path());
    let loop_dev = g.attach(&img, 0, None);
    let dir = g.mount_btrfs(&loop_dev, &[], "ro");
    let dev = blockdev::Device::open(&img).unwrap();
    let t = std::time::Instant::now();
    let fs = btrfs::open(&[&dev]).unwrap();
    eprintln!(
        "chunk tree: {} chunks from {} nodes in {:.6} s",
        fs.map.chunks.len(),
        fs.map.nodes_read,
        t.elapsed().as_secs_f64()
    );
    let c = choose_btrfs(&img, &fs, &dir);
    let known = std::collections::BTreeMap::from([(1, (BTRFS_BYTES, c.bad.clone()))]);
    let lost = guesthit::btrfsmap::lost_logical(&fs.map, &known);
    let w = guesthit::walk::walk(&dir, &lost, false);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let got: Vec<(&str, Vec<(u64, u64)>)> = w
        .hits
        .iter()
        .map(|h| (h.path.as_str(), h.ranges.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("/data/big.bin", vec![((1 << 20) + 4096, BS)]),
            ("/docs/report.txt", vec![(BS + 100, 200)]),
        ]
    );
    let t = guesthit::btrfsmap::classify(&fs.map, 1, BTRFS_BYTES, &c.bad, &lost, &w.covered, &[1]);
    let m: Vec<(u64, &str)> = t
        .metadata
        .iter()
        .map(|a| (a.start, a.what.as_str()))
        .collect();
    assert_eq!(m.len(), 3, "{t:#?}");
    assert!(m.contains(&(65536, "the superblock")), "{m:?}");
    for r in &c.root_copies {
        let a = t
            .metadata
            .iter()
            .find(|a| a.start == *r)
            .expect("root copy");
        assert!(
            a.what.contains("METADATA chunk") && a.what.contains("every copy bad"),
            "{a:?}"
        );
        assert_eq!(a.len, BS);
    }
    assert_eq!(t.redundant.len(), 1, "{t:#?}");
    assert_eq!(t.redundant[0].start, c.chunk_root_copies[0]);
    assert!(
        t.redundant[0].what.contains("SYSTEM chunk")
            && t.redundant[0].what.ends_with("another copy is good")
    );
    assert_eq!(t.free.len(), 1, "{t:#?}");
    assert_eq!((t.free[0].start, t.free[0].len), (c.free, BS));
    assert_eq!(t.unknown.len(), 1, "{t:#?}");
    assert_eq!((t.unknown[0].start, t.unknown[0].len), (c.data_free, BS));
    assert!(t.unknown[0]
        .what
        .contains("not in any file (free space or an unreachable/old extent)"));
}

#[test]
fn btrfs_raid1_loses_a_byte_only_when_both_copies_are_bad() {
    let mut g = Guard::new("guesthit-btrfs-raid1");
    need_btrfs();
    let files = btrfs_files(g.tmp.path());
    let imgs: Vec<PathBuf> = (0..2).map(|i| g.tmp.join(format!("r{i}.img"))).collect();
    for p in &imgs {
        std::fs::File::create(p)
            .unwrap()
            .set_len(BTRFS_BYTES)
            .unwrap();
    }
    let a = g.attach_rw(&imgs[0]);
    let b = g.attach_rw(&imgs[1]);
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-d", "raid1", "-m", "raid1", &a, &b],
    );
    let rw = g.mount_btrfs(&a, &[&b], "rw");
    run(
        "cp",
        &[
            "-a",
            &format!("{}/.", files.display()),
            rw.to_str().unwrap(),
        ],
    );
    run("sync", &[]);
    g.umount(&rw);
    let dir = g.mount_btrfs(&a, &[&b], "ro");
    let l = logical_of(&dir.join("data/big.bin"), 2 << 20);
    let da = blockdev::Device::open(&a).unwrap();
    let db = blockdev::Device::open(&b).unwrap();
    let fs = btrfs::open(&[&da, &db]).unwrap();
    assert_eq!(fs.devids, [1, 2]);
    let c = fs.map.find(l).unwrap();
    assert_eq!((c.kind(), c.profile), ("DATA", btrfs::Profile::Raid1));
    let (copies, _) = c.copies(l).unwrap();
    let name = |devid: u64| if devid == 1 { a.clone() } else { b.clone() };
    let mut ours: Vec<(String, u64)> = copies.iter().map(|&(d, p)| (name(d), p)).collect();
    ours.sort();
    assert_eq!(ours, map_logical(&a, l), "btrfs-map-logical");
    let p1 = copies.iter().find(|c| c.0 == 1).unwrap().1;
    let p2 = copies.iter().find(|c| c.0 == 2).unwrap().1;
    let size = BTRFS_BYTES;
    // Device 1 bad alone, device 2 not known: taken as good.
    let bad1 = Ranges(vec![(p1, BS)]);
    let only1 = std::collections::BTreeMap::from([(1, (size, bad1.clone()))]);
    let lost = guesthit::btrfsmap::lost_logical(&fs.map, &only1);
    assert!(lost.0.is_empty(), "{lost:?}");
    let t = guesthit::btrfsmap::classify(&fs.map, 1, size, &bad1, &lost, &Ranges::default(), &[1]);
    assert_eq!(t.redundant.len(), 1, "{t:#?}");
    assert!(
        t.redundant[0].what.contains("taken as good (devid 2"),
        "{t:#?}"
    );
    // Both devices bad at the same logical bytes: lost, and the walk
    // names the file.
    let mut both = only1.clone();
    both.insert(2, (size, Ranges(vec![(p2 + 1024, BS)])));
    let lost = guesthit::btrfsmap::lost_logical(&fs.map, &both);
    assert_eq!(lost, Ranges(vec![(l + 1024, BS - 1024)]));
    let w = guesthit::walk::walk(&dir, &lost, false);
    assert_eq!(w.hits.len(), 1, "{w:?}");
    assert_eq!(w.hits[0].path, "/data/big.bin");
    assert_eq!(w.hits[0].ranges, [((2 << 20) + 1024, BS - 1024)]);
}

#[test]
fn files_hit_on_a_disk_image_with_btrfs() {
    use testkit::gptdisk::{self, Part};
    let mut g = Guard::new("guesthit-run-btrfs");
    let fs_img = btrfs_image(g.tmp.path());
    // Choose the bad ranges on the filesystem image, mounted once.
    let c = {
        let l = g.attach(&fs_img, 0, None);
        let dir = g.mount_btrfs(&l, &[], "ro");
        let dev = blockdev::Device::open(&fs_img).unwrap();
        let fs = btrfs::open(&[&dev]).unwrap();
        let c = choose_btrfs(&fs_img, &fs, &dir);
        g.umount(&dir);
        g.detach(&l);
        c
    };
    let part_start = 1u64 << 20;
    let sectors = (BTRFS_BYTES + (2 << 20)) / 512;
    let mut disk = gptdisk::disk(
        sectors,
        512,
        &[Part {
            slot: 1,
            type_guid: gptdisk::BASIC,
            first: part_start / 512,
            last: (part_start + BTRFS_BYTES) / 512 - 1,
            name: "guest",
        }],
    );
    let fs = std::fs::read(&fs_img).unwrap();
    disk[part_start as usize..part_start as usize + fs.len()].copy_from_slice(&fs);
    let image = g.tmp.join("disk.img");
    std::fs::write(&image, &disk).unwrap();
    let mut map = ddmap::Map::new(disk.len() as u64);
    map.set(0, disk.len() as u64, ddmap::Status::Finished);
    for &(s, l) in c.bad.0.iter() {
        map.set(part_start + s, l, ddmap::Status::BadSector);
    }
    let mapfile = g.tmp.join("disk.map");
    std::fs::write(&mapfile, ddmap::render(&map, &ddmap::Header::default())).unwrap();
    let fake_sys = g.tmp.join("sys");
    let fake_dev = g.tmp.join("dev");
    let req = Request {
        image: image.clone(),
        map: mapfile,
        badmap_dir: guesthit::run::badmap_dir(&image),
        vmfs: false,
    };
    let mut host = Host {
        g: &mut g,
        part: (part_start, BTRFS_BYTES),
        fake_sys,
        fake_dev,
        attached: Vec::new(),
        log: Vec::new(),
    };
    let report = guesthit::run::run(&req, &mut host, &mut |_| {});
    let text = report.text();
    eprintln!("{text}");
    assert!(host.attached.is_empty());
    assert!(report.errors.is_empty(), "{text}");
    let f = &report.disks[0].filesystems[0];
    assert_eq!((f.kind.as_str(), f.mounted), ("btrfs", true), "{text}");
    assert!(f.errors.is_empty(), "{text}");
    let files: Vec<(&str, &[(u64, u64)])> = f
        .files
        .iter()
        .map(|h| (h.path.as_str(), h.ranges.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("/data/big.bin", &[((1 << 20) + 4096, BS)][..]),
            ("/docs/report.txt", &[(BS + 100, 200)][..]),
        ]
    );
    assert_eq!(f.metadata.len(), 3, "{text}");
    assert_eq!(f.redundant.len(), 1, "{text}");
    assert_eq!((f.free[0].start, f.free[0].len), (c.free, BS));
    assert_eq!(f.not_told_apart.len(), 1, "{text}");
    assert!(
        text.contains("file /data/big.bin: 4096 of 3145728 bytes lost"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "free space: bytes {}..{} (4096 bytes) of disk0p1: unallocated (in no chunk)",
            c.free,
            c.free + BS
        )),
        "{text}"
    );
    let t = &report.totals;
    assert_eq!((t.files_hit, t.file_bytes), (2, BS + 200));
    assert_eq!(
        (t.metadata_bytes, t.free_bytes, t.redundant_bytes),
        (3 * BS, BS, BS)
    );
    assert_eq!(t.not_told_apart_bytes, BS);
}
