//! A VM disk as qemu-img writes it (monolithicFlat) from a raw GPT disk
//! with an ext4 partition: its partitions are found, the disk and the
//! partition export byte for byte, and unreadable areas are zero-filled and
//! listed in a mapfile that GNU ddrescuelog reads.

use blockdev::BlockDevice;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use testkit::gptdisk::{disk, Part, BASIC};
use testkit::TempDir;
use vmdk::export::{export, ExportJob};
use vmdk::{DiskDevice, Files, HostDir, VirtualDisk};

const SECTORS: u64 = 32768; // 16 MiB
const PART_FIRST: u64 = 2048;
const PART_LAST: u64 = 30719;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (qemu-utils, e2fsprogs and gddrescue are needed)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `raw.img`: a GPT disk whose partition 1 holds ext4 "vmroot" with a
/// known file; and `x.vmdk` + `x-flat.vmdk` made from it by qemu-img.
fn make_disk(t: &TempDir) -> Vec<u8> {
    let part_bytes = (PART_LAST - PART_FIRST + 1) * 512;
    let fs = t.join("fs.img");
    std::fs::File::create(&fs)
        .unwrap()
        .set_len(part_bytes)
        .unwrap();
    let content = t.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), b"inside the VM\n").unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmroot", "-d"])
        .arg(&content)
        .arg(&fs));
    let parts = [Part {
        slot: 1,
        type_guid: BASIC,
        first: PART_FIRST,
        last: PART_LAST,
        name: "root",
    }];
    let mut raw = disk(SECTORS, 512, &parts);
    let at = (PART_FIRST * 512) as usize;
    raw[at..at + part_bytes as usize].copy_from_slice(&std::fs::read(&fs).unwrap());
    std::fs::write(t.join("raw.img"), &raw).unwrap();
    run(Command::new("qemu-img")
        .args([
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
        ])
        .arg(t.join("raw.img"))
        .arg(t.join("x.vmdk")));
    raw
}

#[test]
fn partitions_are_found_and_disk_and_partition_export_exactly() {
    let t = TempDir::new("vmdk-export");
    let raw = make_disk(&t);
    let disk = Arc::new(VirtualDisk::open(&HostDir::new(t.path()), "x.vmdk").unwrap());
    assert_eq!(disk.capacity(), raw.len() as u64);
    let dev = Arc::new(DiskDevice::new(disk.clone(), disk.top(), "x.vmdk".into()));
    let p = vmdk::parts::partitions(dev);
    assert_eq!(p.table, "gpt");
    assert_eq!(p.partitions.len(), 1, "{p:?}");
    let part = &p.partitions[0];
    assert_eq!((part.number, part.start), (1, PART_FIRST * 512));
    assert_eq!(part.contents.as_deref(), Some("ext4 \"vmroot\""), "{p:?}");

    let whole = t.join("whole.raw");
    let job = ExportJob {
        disk: &disk,
        level: disk.top(),
        start: 0,
        len: disk.capacity(),
        dest: &whole,
        sparse: true,
    };
    let mut calls = 0;
    let r = export(&job, &mut |_| calls += 1, &AtomicBool::new(false)).unwrap();
    assert!(calls > 0);
    assert!(r.bad.is_empty() && r.badmap.is_none() && !r.cancelled);
    assert!(std::fs::read(&whole).unwrap() == raw, "the export differs");
    // The same as qemu-img's own conversion back to raw.
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "vmdk", "-O", "raw"])
        .arg(t.join("x.vmdk"))
        .arg(t.join("qemu.raw")));
    assert!(std::fs::read(t.join("qemu.raw")).unwrap() == raw);

    let one = t.join("part1.raw");
    let job = ExportJob {
        start: part.start,
        len: part.size,
        dest: &one,
        ..job
    };
    export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let got = std::fs::read(&one).unwrap();
    assert!(got == raw[part.start as usize..(part.start + part.size) as usize]);
    // An export never overwrites.
    let e = export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(e.contains("never overwrites"), "{e}");
}

/// The disk's files, with reads of one file failing in one byte range.
struct Failing {
    inner: HostDir,
    file: &'static str,
    bad: (u64, u64),
}

struct FailingDevice {
    inner: Arc<dyn BlockDevice>,
    bad: (u64, u64),
}

impl BlockDevice for FailingDevice {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.0 + self.bad.1 && self.bad.0 < end {
            return Err(std::io::Error::other("injected read error"));
        }
        self.inner.read_at(buf, offset)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

impl Files for Failing {
    fn open(&self, name: &str) -> vmdk::Result<Arc<dyn BlockDevice>> {
        let dev = self.inner.open(name)?;
        Ok(if name == self.file {
            Arc::new(FailingDevice {
                inner: dev,
                bad: self.bad,
            })
        } else {
            dev
        })
    }
    fn show(&self, name: &str) -> String {
        self.inner.show(name)
    }
}

fn ddrescuelog_bad(map: &Path) -> String {
    let out = Command::new("ddrescuelog")
        .args(["--list-blocks=-", "--block-size=4096"])
        .arg(map)
        .output()
        .expect("ddrescuelog (gddrescue) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn unreadable_areas_are_zero_filled_and_mapped_for_ddrescuelog() {
    let t = TempDir::new("vmdk-badmap");
    let raw = make_disk(&t);
    let files = Failing {
        inner: HostDir::new(t.path()),
        file: "x-flat.vmdk",
        bad: (5 << 20, 10_000),
    };
    let disk = VirtualDisk::open(&files, "x.vmdk").unwrap();
    let dest: PathBuf = t.join("out.raw");
    let job = ExportJob {
        disk: &disk,
        level: disk.top(),
        start: 0,
        len: disk.capacity(),
        dest: &dest,
        sparse: false,
    };
    let r = export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    // The 4 KiB pieces that overlap the bad bytes: 5 MiB to 5 MiB + 12 KiB.
    assert_eq!(r.bad, vec![(5 << 20, 12288)]);
    assert!(r.first_error.as_deref().unwrap().contains("injected"));
    let got = std::fs::read(&dest).unwrap();
    let (a, b) = (5 << 20, (5 << 20) + 12288);
    assert!(got[a..b].iter().all(|&x| x == 0));
    assert!(got[..a] == raw[..a] && got[b..] == raw[b..]);
    let map = r.badmap.expect("a badmap");
    assert_eq!(map, t.join("out.raw.badmap"));
    let blocks: Vec<u64> = ddrescuelog_bad(&map)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(blocks, vec![1280, 1281, 1282]);
}

#[test]
fn a_cancelled_export_stops_and_says_so() {
    let t = TempDir::new("vmdk-cancel");
    make_disk(&t);
    let disk = VirtualDisk::open(&HostDir::new(t.path()), "x.vmdk").unwrap();
    let dest = t.join("out.raw");
    let job = ExportJob {
        disk: &disk,
        level: 0,
        start: 0,
        len: disk.capacity(),
        dest: &dest,
        sparse: false,
    };
    let r = export(&job, &mut |_| {}, &AtomicBool::new(true)).unwrap();
    assert!(r.cancelled);
    assert_eq!(r.written, 0);
}

/// The same GPT disk converted by qemu-img to monolithicSparse and
/// streamOptimized: each export equals the raw disk (and so qemu-img's own
/// conversion back to raw), and its ext4 partition is found.
#[test]
fn sparse_and_stream_exports_equal_the_raw_disk() {
    let t = TempDir::new("vmdk-export-sparse");
    let raw = make_disk(&t);
    for sub in ["monolithicSparse", "streamOptimized"] {
        let name = format!("{sub}.vmdk");
        run(Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "vmdk", "-o"])
            .arg(format!("subformat={sub}"))
            .arg(t.join("raw.img"))
            .arg(t.join(&name)));
        let disk = Arc::new(VirtualDisk::open(&HostDir::new(t.path()), &name).unwrap());
        let dev = Arc::new(DiskDevice::new(disk.clone(), disk.top(), name.clone()));
        let p = vmdk::parts::partitions(dev);
        assert_eq!(
            p.partitions[0].contents.as_deref(),
            Some("ext4 \"vmroot\""),
            "{sub}"
        );
        let dest = t.join(format!("{sub}.raw"));
        let job = ExportJob {
            disk: &disk,
            level: disk.top(),
            start: 0,
            len: disk.capacity(),
            dest: &dest,
            sparse: false,
        };
        let r = export(&job, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        assert!(r.bad.is_empty(), "{sub}: {:?}", r.first_error);
        assert!(r.holes > 0, "{sub}: unallocated grains are holes");
        assert!(
            std::fs::read(&dest).unwrap() == raw,
            "{sub}: the export differs"
        );
    }
}
