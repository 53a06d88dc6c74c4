//! Imaging that does not end normally, in the guest:
//! - from the menu, QEMU is killed mid-copy (source read-throttled so the
//!   copy takes a while); after a new boot the menu offers the mapfile,
//!   resumes, reads only what was left, and the image equals the source;
//! - the source is hot-unplugged (QMP device_del) mid-copy: a clear error,
//!   exit 2, and a mapfile that parses and resumes.

use qemu_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const SRC_BYTES: u64 = 96 * MIB;
const T: Duration = Duration::from_secs(120);

fn source(dir: &Path) -> PathBuf {
    let p = dir.join("source.img");
    let mut data = vec![0u8; SRC_BYTES as usize];
    testkit::mdwriter::pattern(7, 0, &mut data);
    // Some all-zero stretches, which the sparse image leaves as holes.
    data[(8 * MIB) as usize..(12 * MIB) as usize].fill(0);
    std::fs::write(&p, data).unwrap();
    p
}

fn ext4_dest(dir: &Path) -> PathBuf {
    let p = dir.join("dest.img");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(512 * MIB)
        .unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "IMGDEST"])
        .arg(&p)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(st.success());
    p
}

/// The destination on virtio (vda), the source behind a PCIe root port
/// (vdb) so it can be unplugged, read-throttled to `bps` bytes/s if given.
fn cfg(dest: &Path, src: &Path, bps: Option<u64>) -> VmConfig {
    let mut cfg = VmConfig::new(vec![Disk::new(dest, Controller::VirtioBlk, "IMGDEST")]);
    cfg.qmp = true;
    let throttle = bps
        .map(|b| format!(",throttling.bps-read={b}"))
        .unwrap_or_default();
    cfg.extra_args = [
        "-drive".to_string(),
        format!("if=none,id=src,format=raw,file={}{throttle}", src.display()),
        "-device".into(),
        "pcie-root-port,id=rp1,chassis=1,slot=1".into(),
        "-device".into(),
        "virtio-blk-pci,drive=src,id=srcdev,bus=rp1,serial=SRCDISK".into(),
    ]
    .to_vec();
    cfg
}

#[test]
fn killed_mid_copy_then_resumed_from_the_menu() {
    let image = Image::built();
    let dir = temp_dir("img-kill");
    let src = source(dir.path());
    let dest = ext4_dest(dir.path());
    let src_hash = sha256_file(&src);

    // Boot 1: the menu's imaging flow, killed at about half way.
    let mut vm = Vm::start(&image, &cfg(&dest, &src, Some(4 << 20)));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.send("i\n");
    let sources = vm.wait_for("Source (Enter: back): ", T);
    assert!(sources.contains("health"), "{sources}");
    vm.send(&format!("{}\n", menu_number(&sources, "96.0 MiB")));
    let dests = vm.wait_for("Destination (Enter: back): ", T);
    assert!(
        dests.contains("\"IMGDEST\"") && dests.contains("free"),
        "{dests}"
    );
    assert!(
        !dests
            .lines()
            .any(|l| l.trim_start().starts_with(char::is_numeric) && l.contains("/dev/vdb")),
        "source offered as destination: {dests}"
    );
    vm.send(&format!("{}\n", menu_number(&dests, "IMGDEST")));
    vm.wait_for("Type yes to mount: ", T);
    vm.send("yes\n");
    let confirm = vm.wait_for("Start? [y/N]: ", T);
    assert!(
        confirm.contains("mounted read-write at /mnt/dest/vda"),
        "{confirm}"
    );
    assert!(
        confirm.contains("Nothing is written to /dev/vdb"),
        "{confirm}"
    );
    vm.send("y\n");
    vm.wait_for_progress(50.0, Duration::from_secs(300));
    drop(vm); // kills QEMU: no unmount, no final mapfile save
    assert_eq!(sha256_file(&src), src_hash);

    // Boot 2, unthrottled: the menu finds the mapfile and resumes.
    let mut vm = Vm::start(&image, &cfg(&dest, &src, None));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.send("i\n");
    let sources = vm.wait_for("Source (Enter: back): ", T);
    vm.send(&format!("{}\n", menu_number(&sources, "96.0 MiB")));
    let dests = vm.wait_for("Destination (Enter: back): ", T);
    vm.send(&format!("{}\n", menu_number(&dests, "IMGDEST")));
    vm.wait_for("Type yes to mount: ", T);
    vm.send("yes\n");
    let offer = vm.wait_for("Enter: back: ", T);
    let pct: f64 = offer
        .split("mapfile is there: ")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume offer: {offer}"));
    assert!(pct > 5.0 && pct < 100.0, "{offer}");
    vm.send("r\n");
    let done = vm.wait_for("Enter: back to the overview: ", Duration::from_secs(300));
    assert!(done.contains("Done: every sector was read."), "{done}");
    vm.send("\n");
    vm.wait_for("Choose: ", T);
    vm.enter_shell();
    // Sectors read from the source during this boot: the resume read what
    // the first run had not finished (plus probe's small reads), not all.
    let (stat, _) = vm.shell("cat /sys/block/vdb/stat", T);
    let read_sectors: u64 = stat
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stat}"));
    let left = (SRC_BYTES as f64 * (1.0 - pct / 100.0)) as u64 / 512;
    assert!(
        read_sectors < left + 4096,
        "resume read {read_sectors} sectors; {left} were left: {stat}"
    );
    let (umount, code) = vm.shell("rescue dest umount /dev/vda", T);
    assert_eq!(code, 0, "{umount}");
    vm.power_off_from_shell();
    assert_eq!(sha256_file(&src), src_hash);
    let stem = "vdb-SRCDISK";
    let img = ext4_file(&dest, &format!("/{stem}.img"), &dir.path().join("out.img"));
    assert!(
        img == std::fs::read(&src).unwrap(),
        "resumed image differs from the source"
    );
    let map = ext4_file(&dest, &format!("/{stem}.map"), &dir.path().join("out.map"));
    let parsed = ddmap::parse(&String::from_utf8_lossy(&map)).expect("mapfile");
    let m = parsed.map.expect("mapfile with block lines");
    assert_eq!(m.bytes(ddmap::Status::Finished), SRC_BYTES);
    // The hash file beside the image: plain SHA-256 of the source's bytes.
    use sha2::Digest;
    let plain: String = sha2::Sha256::digest(std::fs::read(&src).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sum = ext4_file(
        &dest,
        &format!("/{stem}.img.sha256"),
        &dir.path().join("out.sha"),
    );
    let sum = String::from_utf8_lossy(&sum);
    assert_eq!(sum, format!("{plain}  {stem}.img\n"));
}

#[test]
fn source_unplugged_mid_copy_stops_with_a_valid_mapfile() {
    let image = Image::built();
    let dir = temp_dir("img-unplug");
    let src = source(dir.path());
    let dest = ext4_dest(dir.path());
    let src_hash = sha256_file(&src);
    let mut vm = Vm::start(&image, &cfg(&dest, &src, Some(4 << 20)));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (m, code) = vm.shell("rescue dest mount /dev/vda --yes", T);
    assert_eq!(code, 0, "{m}");
    vm.send("rescue image /dev/vdb /mnt/dest/vda/u.img --map /mnt/dest/vda/u.map; echo \"SH\"\"-EXIT=$?\"\n");
    vm.wait_for_progress(20.0, Duration::from_secs(300));
    vm.qmp(r#"{"execute":"device_del","arguments":{"id":"srcdev"}}"#);
    let out = vm.wait_for("SH-EXIT=", Duration::from_secs(120));
    let code = vm.wait_for("\n", Duration::from_secs(10));
    assert_eq!(code.trim(), "2", "{out}");
    assert!(out.contains("vanished"), "no clear error: {out}");
    let (map, code) = vm.shell("cat /mnt/dest/vda/u.map", T);
    assert_eq!(code, 0, "{map}");
    let parsed = ddmap::parse(&map).unwrap_or_else(|e| panic!("{e:?}: {map}"));
    let m = parsed.map.expect("mapfile with block lines");
    assert_eq!(m.size(), SRC_BYTES, "{map}");
    let done = m.bytes(ddmap::Status::Finished);
    assert!(done > 0 && done < SRC_BYTES, "{map}");
    // Nothing after the unplug was marked bad: the unread rest is untried.
    assert_eq!(m.bytes(ddmap::Status::BadSector), 0, "{map}");
    let (u, code) = vm.shell("rescue dest umount /dev/vda", T);
    assert_eq!(code, 0, "{u}");
    vm.power_off_from_shell();
    assert_eq!(sha256_file(&src), src_hash);
    // The image holds exactly what the mapfile says was finished.
    let img = ext4_file(&dest, "/u.img", &dir.path().join("u.img"));
    let src_data = std::fs::read(&src).unwrap();
    for e in m.extents() {
        if e.status == ddmap::Status::Finished {
            let (a, b) = (e.pos as usize, (e.pos + e.size) as usize);
            assert!(
                img.len() >= b && img[a..b] == src_data[a..b],
                "finished area {a}..{b} differs"
            );
        }
    }
}
