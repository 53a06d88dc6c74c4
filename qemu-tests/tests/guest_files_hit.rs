//! `rescue files-hit` in the guest (issue 20, item 4): an image of a
//! physical disk (GPT, one ext4 partition with known files) and its
//! ddrescue mapfile lie on a destination disk; the command attaches the
//! image with the mapfile (its bad areas read as I/O errors), finds the
//! partition, mounts the filesystem read-only, walks it and names the
//! file and byte ranges the bad areas hit, the inode-table block as
//! metadata, the free block as free space and the gap before the
//! partition as outside any filesystem; the report is saved beside the
//! image, and nothing stays attached or mounted.
//!
//! `files_hit_maps_a_btrfs_guest_through_its_chunk_tree`: the same with a
//! btrfs guest partition (metadata DUP), where FIEMAP gives btrfs logical
//! addresses: the bad areas in a known file (placed with the
//! filesystem's own tree dump and `btrfs-map-logical`) come back as that
//! file's byte ranges, the one in unallocated space as free space.
//!
//! `files_hit_maps_an_ntfs_guest_with_fibmap`: the same with an NTFS guest
//! partition, mounted with ntfs-3g over FUSE (`fuseblk`), which has no
//! FIEMAP: the walk falls back to FIBMAP one block at a time. The file was
//! written on the host through ntfs-3g and placed with ntfs-3g's own tools
//! (`ntfsinfo` data runs, `ntfscluster`); its bad piece comes back as its
//! byte range, the bad cluster no file owns as "not in any file" (NTFS's
//! cluster bitmap is not read: metadata and free space are not told
//! apart).

use qemu_tests::guest::{gpt_disk, PART_START};
use qemu_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;
const BS: u64 = 4096;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes that do not repeat within a MiB.
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

fn debugfs(img: &Path, req: &str) -> String {
    run(Command::new("debugfs").args(["-R", req]).arg(img))
}

/// The guest's files under `root`: `docs/hello.txt` (a few bytes) and
/// `data/big.bin` holding `big`.
fn guest_files(root: &Path, big: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("data"))?;
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(root.join("docs/hello.txt"), "hello from the guest\n")?;
    std::fs::write(root.join("data/big.bin"), big)
}

/// An empty, sparse file of `len` bytes.
fn blank(path: &Path, len: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The store disk `d/store.raw` (ext4 labelled STORE, `size` bytes) with
/// the disk image `NAME.img` and its ddrescue mapfile `NAME.map`: all of
/// it rescued but the bad areas `bad` (disk offsets, lengths).
fn store_disk(d: &Path, name: &str, disk: &[u8], bad: &[(u64, u64)], size: u64) -> PathBuf {
    let len = disk.len() as u64;
    let mut map = ddmap::Map::new(len);
    map.set(0, len, ddmap::Status::Finished);
    for &(s, l) in bad {
        map.set(s, l, ddmap::Status::BadSector);
    }
    let store = d.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join(format!("{name}.img")), disk).unwrap();
    std::fs::write(
        store.join(format!("{name}.map")),
        ddmap::render(&map, &ddmap::Header::default()),
    )
    .unwrap();
    let store_disk = d.join("store.raw");
    blank(&store_disk, size);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "STORE", "-d"])
        .arg(&store)
        .arg(&store_disk));
    store_disk
}

/// Boots with `store` as the only disk (virtio, serial `serial`), mounts
/// it as a destination and runs `rescue files-hit` on its `NAME.img` with
/// `NAME.map`: the VM at its shell, what the command printed and its exit
/// code.
fn files_hit_in_guest(image: &Image, store: &Path, serial: &str, name: &str) -> (Vm, String, i32) {
    let disks = vec![Disk::new(store, Controller::VirtioBlk, serial)];
    let mut vm = Vm::start(image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell("rescue dest mount /dev/vda --yes", T);
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(
        &format!("rescue files-hit /mnt/dest/vda/{name}.img --map /mnt/dest/vda/{name}.map"),
        T,
    );
    (vm, out, code)
}

/// After files-hit: nothing stays attached or mounted, the kernel log has
/// no hung task or NBD timeout; then the destination is unmounted and the
/// VM powered off.
fn released_then_power_off(mut vm: Vm) {
    let (out, code) = vm.shell("rescue attach; grep -c nbd /proc/mounts", T);
    assert!(out.contains("nothing attached"), "{out}");
    assert_ne!(code, 0, "an nbd device is still mounted: {out}");
    let (out, _) = vm.shell(
        "dmesg | grep -iE 'hung_task|blocked for more|nbd.*timed out' ; true",
        T,
    );
    assert!(out.trim().is_empty(), "kernel log:\n{out}");
    let (out, code) = vm.shell("rescue dest umount /dev/vda", T);
    assert_eq!(code, 0, "{out}");
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
}

#[test]
fn files_hit_names_the_guest_file_its_ranges_and_free_space() {
    let image = Image::built();
    let dir = temp_dir("guest-files-hit");
    let d = dir.path();

    // The guest filesystem: 48 MiB ext4, 4 KiB blocks.
    let files = d.join("files");
    guest_files(&files, &pattern(MIB as usize, 7)).unwrap();
    let fs = d.join("fs.raw");
    blank(&fs, 48 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "GUESTFS", "-d"])
        .arg(&files)
        .arg(&fs));
    let big: Vec<u64> = debugfs(&fs, "blocks /data/big.bin")
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(big.len(), 256);
    let stats = debugfs(&fs, "stats");
    let itable: u64 = stats
        .split("inode table at ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("debugfs stats:\n{stats}"));
    let free: u64 = debugfs(&fs, "ffb 1 11000")
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a free block");

    // The physical disk: GPT, the filesystem at 1 MiB.
    let disk = gpt_disk(&std::fs::read(&fs).unwrap());

    // Bad areas (filesystem offsets): a whole block and part of another
    // of big.bin, an inode-table block no inode in use lies in (the
    // kernel never reads it), a free block; and on the disk, a sector in
    // the gap between the GPT and the partition.
    let fs_bad = [
        (big[10] * BS, BS),
        (big[20] * BS + 512, 1024),
        ((itable + 200) * BS, BS),
        (free * BS, BS),
    ];
    let mut bad: Vec<(u64, u64)> = fs_bad.iter().map(|&(s, l)| (PART_START + s, l)).collect();
    bad.push((100 * 512, 512));
    let store_disk = store_disk(d, "guest", &disk, &bad, 256 * MIB);

    let (mut vm, out, code) = files_hit_in_guest(&image, &store_disk, "STORE-0001", "guest");
    let sh = |vm: &mut Vm, c: &str| vm.shell(c, T);
    assert_eq!(code, 1, "bad areas were mapped: exit 1\n{out}");
    assert!(out.contains("attached as nbd0"), "{out}");
    assert!(out.contains("nbd0p1 ext4 \"GUESTFS\""), "{out}");
    assert!(
        out.contains("file /data/big.bin: 5120 of 1048576 bytes lost"),
        "{out}"
    );
    assert!(out.contains("bytes 40960..45056 (4096 bytes)"), "{out}");
    assert!(out.contains("bytes 82432..83456 (1024 bytes)"), "{out}");
    assert!(!out.contains("hello.txt"), "{out}");
    assert!(
        out.contains(&format!(
            "metadata: bytes {}..{} (4096 bytes) of nbd0p1: inode table of group 0",
            (itable + 200) * BS,
            (itable + 201) * BS
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "free space: bytes {}..{} (4096 bytes) of nbd0p1",
            free * BS,
            (free + 1) * BS
        )),
        "{out}"
    );
    assert!(
        out.contains("bytes 51200..51712 (512 bytes): on nbd0 outside its partitions"),
        "{out}"
    );
    assert!(out.contains("Totals: 1 file hit (5120 bytes)"), "{out}");

    let (out, code) = sh(&mut vm, "cat /mnt/dest/vda/guest.img.files-hit.txt");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("file /data/big.bin"),
        "the saved report:\n{out}"
    );
    let (out, code) = sh(
        &mut vm,
        "rescue files-hit /mnt/dest/vda/guest.img --map /mnt/dest/vda/guest.map --json | grep -c '\"path\": \"/data/big.bin\"'",
    );
    assert_eq!(code, 0, "{out}");
    released_then_power_off(vm);
}

/// The logical address of byte `off` of the file named `name` (unique in
/// the filesystem), from `dump-tree -t fs`: its INODE_REF gives the
/// inode, its EXTENT_DATA items the extents (disk byte, offset in it).
fn btrfs_logical_of(img: &Path, name: &str, off: u64) -> u64 {
    let text = run(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "fs"])
        .arg(img));
    let key = |l: &str| -> Option<(u64, String, u64)> {
        let k = l.split("key (").nth(1)?.split(')').next()?;
        let f: Vec<&str> = k.split_whitespace().collect();
        Some((f[0].parse().ok()?, f[1].to_string(), f[2].parse().ok()?))
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut ino = None;
    for (i, l) in lines.iter().enumerate() {
        if let Some((n, t, _)) = key(l) {
            if t == "INODE_REF" && lines[i + 1].trim().ends_with(&format!("name: {name}")) {
                ino = Some(n);
            }
        }
    }
    let ino = ino.unwrap_or_else(|| panic!("no {name} in dump-tree:\n{text}"));
    for (i, l) in lines.iter().enumerate() {
        let Some((n, t, file_off)) = key(l) else {
            continue;
        };
        if n != ino || t != "EXTENT_DATA" {
            continue;
        }
        let num = |s: &str, after: &str| -> u64 {
            s.split(after)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let disk = lines[i + 2..i + 5]
            .iter()
            .find(|x| x.contains("disk byte"))
            .unwrap();
        let inner = lines[i + 2..i + 6]
            .iter()
            .find(|x| x.contains("extent data offset"))
            .unwrap();
        let (d, o, len) = (
            num(disk, "disk byte "),
            num(inner, "offset "),
            num(inner, " nr "),
        );
        if file_off <= off && off < file_off + len {
            return d + o + (off - file_off);
        }
    }
    panic!("{name} byte {off}: in no extent:\n{text}");
}

/// The device byte of btrfs logical address `l` (single data): from
/// `btrfs-map-logical` on the filesystem image.
fn btrfs_physical(img: &Path, l: u64) -> u64 {
    let a = l & !(BS - 1);
    let out = run(Command::new("btrfs-map-logical")
        .args(["-l", &a.to_string(), "-b", "4096"])
        .arg(img));
    let line = out
        .lines()
        .find(|x| x.starts_with("mirror 1 "))
        .unwrap_or_else(|| panic!("{out}"));
    let p: u64 = line
        .split("physical ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    p + (l - a)
}

#[test]
fn files_hit_maps_a_btrfs_guest_through_its_chunk_tree() {
    let image = Image::built();
    let dir = temp_dir("guest-files-hit-btrfs");
    let d = dir.path();

    // The guest filesystem: 160 MiB btrfs, metadata DUP, data single.
    let files = d.join("files");
    guest_files(&files, &pattern(3 * MIB as usize, 7)).unwrap();
    let fs_len = 160 * MIB;
    let fs = d.join("fs.raw");
    blank(&fs, fs_len);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-m", "dup", "-L", "GUESTBTR", "--rootdir"])
        .arg(&files)
        .arg(&fs));
    let p1 = btrfs_physical(&fs, btrfs_logical_of(&fs, "big.bin", MIB + BS));
    let p2 = btrfs_physical(&fs, btrfs_logical_of(&fs, "big.bin", 2 * MIB + 512));
    // Unallocated: the filesystem's last MiB, in no chunk.
    let free = fs_len - MIB;
    {
        let dev = blockdev::Device::open(&fs).unwrap();
        let b = btrfs::open(&[&dev]).unwrap();
        assert!(b.map.chunks.iter().all(|c| c
            .stripes
            .iter()
            .all(|s| s.offset + c.device_extent_len() <= free)));
    }

    // The physical disk: GPT, the filesystem at 1 MiB.
    let disk = gpt_disk(&std::fs::read(&fs).unwrap());
    let bad = [(p1, BS), (p2, 1024), (free, BS)].map(|(s, l)| (PART_START + s, l));
    let store_disk = store_disk(d, "bguest", &disk, &bad, 512 * MIB);

    let (vm, out, code) = files_hit_in_guest(&image, &store_disk, "STORE-0002", "bguest");
    assert_eq!(code, 1, "bad areas were mapped: exit 1\n{out}");
    assert!(out.contains("nbd0p1 btrfs \"GUESTBTR\""), "{out}");
    assert!(
        out.contains("file /data/big.bin: 5120 of 3145728 bytes lost"),
        "{out}"
    );
    assert!(out.contains("bytes 1052672..1056768 (4096 bytes)"), "{out}");
    assert!(out.contains("bytes 2097664..2098688 (1024 bytes)"), "{out}");
    assert!(!out.contains("hello.txt"), "{out}");
    assert!(
        out.contains(&format!(
            "free space: bytes {}..{} (4096 bytes) of nbd0p1: unallocated (in no chunk)",
            free,
            free + BS
        )),
        "{out}"
    );
    assert!(!out.contains("not mapped"), "{out}");
    assert!(out.contains("Totals: 1 file hit (5120 bytes)"), "{out}");
    released_then_power_off(vm);
}

/// ntfs-3g on this host (Debian's `ntfs-3g` package).
fn ntfs_3g() -> PathBuf {
    ["/usr/bin/ntfs-3g", "/bin/ntfs-3g"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("ntfs-3g is needed (apt-get install ntfs-3g)")
}

/// The number `NAME: n` of `ntfsinfo -m` (the volume's facts) on the
/// unmounted volume `img`.
fn ntfsinfo_m(img: &Path, name: &str) -> u64 {
    let text = run(Command::new("ntfsinfo").arg("-m").arg(img));
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in ntfsinfo -m:\n{text}"))
}

/// One data run of an NTFS attribute, in clusters: its first VCN (in the
/// file), its first LCN (on the volume) and its length.
#[derive(Clone, Copy, Debug)]
struct Run {
    vcn: u64,
    lcn: u64,
    len: u64,
}

/// The data runs of the unnamed `$DATA` attribute of `path` on the
/// unmounted volume `img`: the runlist table of `ntfsinfo -v -F` (hex
/// VCN, LCN, length), checked to follow each other from VCN 0.
fn ntfs_data_runs(img: &Path, path: &str) -> Vec<Run> {
    let text = run(Command::new("ntfsinfo").args(["-v", "-F", path]).arg(img));
    let hex = |t: &str| {
        t.strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
    };
    let runs: Vec<Run> = text
        .split("Dumping attribute ")
        .find(|a| a.starts_with("$DATA"))
        .and_then(|a| a.split("Runlist:").nth(1))
        .unwrap_or_else(|| panic!("no non-resident $DATA for {path}:\n{text}"))
        .lines()
        .skip(1) // the rest of the heading: VCN LCN Length
        .map_while(|l| {
            let f: Vec<u64> = l.split_whitespace().map(hex).collect::<Option<_>>()?;
            (f.len() == 3).then(|| Run {
                vcn: f[0],
                lcn: f[1],
                len: f[2],
            })
        })
        .collect();
    let mut next = 0;
    for r in &runs {
        assert_eq!(r.vcn, next, "{path}: runs not in order:\n{text}");
        next += r.len;
    }
    assert!(next > 0, "{path}: no data runs:\n{text}");
    runs
}

/// The volume byte holding byte `off` of a file with data runs `runs`
/// (clusters of `cs` bytes).
fn ntfs_volume_byte(runs: &[Run], cs: u64, off: u64) -> u64 {
    let vcn = off / cs;
    let r = runs
        .iter()
        .find(|r| r.vcn <= vcn && vcn < r.vcn + r.len)
        .unwrap_or_else(|| panic!("file byte {off} in no data run: {runs:?}"));
    (r.lcn + vcn - r.vcn) * cs + off % cs
}

/// Which attributes hold cluster `c` of the unmounted volume `img`
/// (`ntfscluster -c`: `Inode N /path/$ATTR` lines, or `no inode found`).
fn ntfscluster(img: &Path, c: u64) -> String {
    run(Command::new("ntfscluster")
        .args(["-c", &c.to_string()])
        .arg(img))
}

#[test]
fn files_hit_maps_an_ntfs_guest_with_fibmap() {
    let image = Image::built();
    let dir = temp_dir("guest-files-hit-ntfs");
    let d = dir.path();

    // The guest filesystem: 32 MiB NTFS (mkntfs -F -Q), its files written
    // on the host through ntfs-3g on the image file; the unmount waits for
    // ntfs-3g to close the volume.
    let fs = d.join("fs.raw");
    testkit::ntfs::mkntfs(&fs, 32 * MIB, "GUESTNTFS");
    let big = pattern(600 << 10, 11);
    let mnt = d.join("mnt");
    let program = ntfs_3g();
    let m = blockdev::sys::NtfsMount {
        node: &fs,
        at: &mnt,
        read_only: false,
        options: &[],
        program: &program,
    };
    blockdev::sys::mount_ntfs3g(&m, None, &|_| Ok(()))
        .unwrap_or_else(|e| panic!("ntfs-3g on the host (needs /dev/fuse): {e}"));
    let written = guest_files(&mnt, &big);
    blockdev::sys::unmount_fuse(&mnt, &fs, blockdev::sys::FUSE_EXIT_WAIT).unwrap();
    written.unwrap();
    testkit::ntfs::ntfsfix_check(&fs).unwrap_or_else(|e| panic!("ntfsfix -n: {e}"));
    assert!(
        testkit::ntfs::ntfscat(&fs, "/data/big.bin") == big,
        "/data/big.bin as ntfscat reads it differs from what was written"
    );

    // Where big.bin lies: its data runs and the cluster size, read back
    // through the disk image (the partition at 1 MiB) as a whole.
    let cs = ntfsinfo_m(&fs, "Cluster Size");
    let clusters = ntfsinfo_m(&fs, "Volume Size in Clusters");
    let runs = ntfs_data_runs(&fs, "/data/big.bin");
    let disk = gpt_disk(&std::fs::read(&fs).unwrap());
    let mut through_runs = Vec::new();
    for r in &runs {
        let at = (PART_START + r.lcn * cs) as usize;
        through_runs.extend_from_slice(&disk[at..at + (r.len * cs) as usize]);
    }
    through_runs.truncate(big.len());
    assert_eq!(
        sha256_hex(&through_runs),
        sha256_hex(&big),
        "big.bin read from the disk image through its data runs {runs:?}"
    );

    // Bad areas: big.bin's bytes 8192..12288, in one piece on the volume
    // (ntfscluster agrees whose cluster that is), and a cluster in the
    // volume's last eighth, past big.bin, that no attribute holds (not the
    // MFT mirror, $LogFile or any other file); it reads as zeros.
    let (file_off, len) = (8192, BS);
    let in_file = ntfs_volume_byte(&runs, cs, file_off);
    assert_eq!(
        ntfs_volume_byte(&runs, cs, file_off + len - 1),
        in_file + len - 1,
        "big.bin's bytes {file_off}..{} in one piece: {runs:?}",
        file_off + len
    );
    let at = (PART_START + in_file) as usize;
    assert!(
        disk[at..at + len as usize] == big[file_off as usize..(file_off + len) as usize],
        "disk byte {at}: not big.bin's byte {file_off}"
    );
    let owner = ntfscluster(&fs, in_file / cs);
    assert!(owner.contains("/data/big.bin/$DATA"), "{owner}");
    let free_cluster = clusters - clusters / 8;
    assert!(
        runs.iter().all(|r| r.lcn + r.len <= free_cluster),
        "{runs:?}"
    );
    let owner = ntfscluster(&fs, free_cluster);
    assert!(
        owner.contains("no inode found") && !owner.contains("Inode "),
        "cluster {free_cluster}: {owner}"
    );
    let free = free_cluster * cs;
    let at = (PART_START + free) as usize;
    assert!(disk[at..at + len as usize].iter().all(|&b| b == 0));
    let bad = [(PART_START + in_file, len), (PART_START + free, len)];
    let store_disk = store_disk(d, "nguest", &disk, &bad, 128 * MIB);

    let (vm, out, code) = files_hit_in_guest(&image, &store_disk, "STORE-0003", "nguest");
    assert_eq!(code, 1, "bad areas were mapped: exit 1\n{out}");
    assert!(out.contains("attached as nbd0"), "{out}");
    assert!(out.contains("nbd0p1 NTFS \"GUESTNTFS\""), "{out}");
    assert!(
        out.contains("with FIBMAP (one call per block: slower)"),
        "ntfs-3g (fuseblk) has no FIEMAP: the walk uses FIBMAP and says so\n{out}"
    );
    // The file, with exactly that one range.
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let i = lines
        .iter()
        .position(|l| *l == "file /data/big.bin: 4096 of 614400 bytes lost")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        lines.get(i + 1),
        Some(&"bytes 8192..12288 (4096 bytes)"),
        "{out}"
    );
    assert!(
        lines.get(i + 2).is_none_or(|l| !l.starts_with("bytes ")),
        "{out}"
    );
    assert!(!out.contains("hello.txt"), "{out}");
    // NTFS's cluster bitmap is not read: the honest wording.
    assert!(
        out.contains(&format!(
            "not in any file: bytes {free}..{} (4096 bytes) of nbd0p1: not in any file: metadata or free space (not told apart for NTFS)",
            free + len
        )),
        "{out}"
    );
    assert!(out.contains("Totals: 1 file hit (4096 bytes)"), "{out}");
    assert!(out.contains("not told apart 4096 bytes"), "{out}");
    released_then_power_off(vm);
    // Last, so that everything above is known first: FIBMAP on an ntfs-3g
    // directory fails with EINVAL (FUSE gives directories no bmap; their
    // index blocks are NTFS metadata), which must not show as an error.
    assert!(
        !out.contains("mapping its blocks"),
        "a directory FIBMAP cannot map was reported as an error:\n{out}"
    );
}
