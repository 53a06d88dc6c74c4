//! md RAID with the guest's kernel driver (the host has none): a RAID-5 of
//! three member disks written by mdraid's test writer, holding an ext4
//! filesystem, with one byte of one member changed.
//! - Boot 1: scan and verify find the array and the mismatch; assembly
//!   without --readonly is refused; read-only assembly and mount show the
//!   files; stop. The member disks are unchanged afterwards (host SHA-256).
//! - Boot 2: the kernel's check is refused without confirmation; a window
//!   before the damage finds nothing; the full check's mismatch_cnt equals
//!   verify's kernel-unit count; the check wrote only superblocks.
//! - A check that another process cancels is reported as interrupted.

use qemu_tests::*;
use std::process::Command;
use std::time::Duration;
use testkit::mdwriter::{build_members, ArraySpec};

const UUID: &str = "5eed0001:a1b2c3d4:10203040:99887766";
const COMPONENT: u64 = 4 << 20;
/// Member 1's changed byte: 3.5 MiB into its data area (beyond the ext4
/// filesystem's used blocks, so the mount is not affected).
const DAMAGE_IN_DATA: u64 = (7 << 19) + 100;

fn ext4_image(dir: &std::path::Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from the DSM volume\n").unwrap();
    let img = dir.join("fs.img");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "MDDATA", "-b", "1024", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("3M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(st.success());
    std::fs::read(img).unwrap()
}

fn members(dir: &TempDir) -> (Vec<std::path::PathBuf>, u64, Vec<Vec<u8>>) {
    let mut spec = ArraySpec::new("1.2", 5, 3);
    spec.component_bytes = COMPONENT;
    spec.head = ext4_image(dir.path());
    let (_, _, data_off) = spec.placement();
    let mut imgs = build_members(&spec);
    imgs[1][(data_off + DAMAGE_IN_DATA) as usize] ^= 0x5a;
    let paths: Vec<_> = imgs
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let p = dir.path().join(format!("member{i}.img"));
            std::fs::write(&p, img).unwrap();
            p
        })
        .collect();
    (paths, data_off, imgs)
}

fn cfg(paths: &[std::path::PathBuf]) -> VmConfig {
    VmConfig::new(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| Disk::new(p, Controller::VirtioBlk, &format!("MDMEMBER{i}")))
            .collect(),
    )
}

const T: Duration = Duration::from_secs(120);

#[test]
fn raid5_assembled_read_only_and_checked_by_the_kernel() {
    let image = Image::built();
    let dir = temp_dir("md-kernel");
    let (paths, data_off, originals) = members(&dir);
    let hashes: Vec<String> = paths.iter().map(|p| sha256_file(p)).collect();

    // Boot 1: read-only work.
    let mut vm = Vm::start(&image, &cfg(&paths));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    // The menu's md view: the array with its state; verify from there;
    // assemble read-only and mount; stop.
    vm.send("m\n");
    let list = vm.wait_for("(Enter: back to the overview): ", T);
    assert!(
        list.contains(UUID) && list.contains("DiskStation:2") && list.contains("not assembled"),
        "{list}"
    );
    vm.send("1\n");
    vm.wait_for("Enter: back: ", T);
    vm.send("v\n");
    let verified = vm.wait_for("(exit ", T);
    assert!(verified.contains("Result: 1 mismatch;"), "{verified}");
    vm.wait_for("(Enter: back to the overview): ", T);
    vm.send("1\n");
    vm.wait_for("Enter: back: ", T);
    vm.send("a\n");
    let assembled = vm.wait_for("(exit ", T);
    assert!(
        assembled.contains("mounted read-only at /mnt/md/md127"),
        "{assembled}"
    );
    let list = vm.wait_for("(Enter: back to the overview): ", T);
    assert!(list.contains("/dev/md127 (readonly)"), "{list}");
    vm.send("1\n");
    vm.wait_for("s stop", T);
    vm.wait_for("Enter: back: ", T);
    vm.send("s\n");
    let stopped = vm.wait_for("(exit 0)", T);
    assert!(stopped.contains("/dev/md127 stopped"), "{stopped}");
    vm.wait_for("(Enter: back to the overview): ", T);
    vm.send("\n");
    vm.wait_for("Choose: ", T);
    vm.enter_shell();
    let (scan, code) = vm.shell("rescue md scan", T);
    assert!(
        scan.contains(UUID) && scan.contains("DiskStation:2"),
        "{scan}"
    );
    assert_eq!(code, 0, "{scan}");
    let (verify, code) = vm.shell(&format!("rescue md verify {UUID} --json --quiet"), T);
    assert_eq!(code, 1, "{verify}");
    let v: serde_json::Value = serde_json::from_str(&verify[verify.find('{').unwrap()..])
        .unwrap_or_else(|e| panic!("{e}: {verify}"));
    let expected = v["kernel_mismatch_sectors"].as_u64().unwrap();
    assert_eq!(v["mismatch_count"], 1, "{verify}");
    assert_eq!(expected, 8, "{verify}");
    let (refused, code) = vm.shell(&format!("rescue md assemble {UUID}"), T);
    assert_eq!(code, 2, "{refused}");
    assert!(refused.contains("--readonly"), "{refused}");
    let (asm, code) = vm.shell("rescue md assemble DiskStation:2 --readonly --mount", T);
    assert_eq!(code, 0, "{asm}");
    assert!(
        asm.contains("/dev/md127") && asm.contains("assembled read-only"),
        "{asm}"
    );
    assert!(asm.contains("contents: ext4"), "{asm}");
    assert!(asm.contains("mounted read-only at /mnt/md/md127"), "{asm}");
    let (state, _) = vm.shell(
        "cat /proc/mdstat /sys/block/md127/md/array_state; cat /mnt/md/md127/hello.txt",
        T,
    );
    assert!(
        state.contains("md127 : active (read-only) raid5"),
        "{state}"
    );
    assert!(state.contains("readonly"), "{state}");
    assert!(state.contains("hello from the DSM volume"), "{state}");
    let (again, code) = vm.shell(&format!("rescue md assemble {UUID} --readonly"), T);
    assert_eq!(code, 2, "{again}");
    assert!(again.contains("already assembled as /dev/md127"), "{again}");
    let (stopped, code) = vm.shell("rescue md stop md127", T);
    assert_eq!(code, 0, "{stopped}");
    assert!(stopped.contains("unmounted /mnt/md/md127"), "{stopped}");
    let (gone, _) = vm.shell("ls /sys/block", T);
    assert!(!gone.contains("md127"), "{gone}");
    vm.power_off_from_shell();
    drop(vm);
    for (p, h) in paths.iter().zip(&hashes) {
        assert_eq!(
            &sha256_file(p),
            h,
            "{} changed by a read-only assembly",
            p.display()
        );
    }

    // Boot 2: the kernel's check.
    let mut vm = Vm::start(&image, &cfg(&paths));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (refused, code) = vm.shell(&format!("rescue md check {UUID} </dev/null"), T);
    assert_eq!(code, 2, "{refused}");
    assert!(refused.contains("--yes"), "{refused}");
    let (ls, _) = vm.shell("ls /sys/block", T);
    assert!(
        !ls.contains("md"),
        "refused check assembled something: {ls}"
    );
    // A window before the damage (member sector 7168): nothing found.
    let (window, code) = vm.shell(
        &format!("rescue md check {UUID} --yes --start-sector 0 --end-sector 2048"),
        T,
    );
    assert_eq!(code, 0, "{window}");
    assert!(
        window.contains("check finished: mismatch_cnt 0"),
        "{window}"
    );
    assert!(window.contains("member sectors 0..2048"), "{window}");
    let (full, code) = vm.shell(&format!("rescue md check {UUID} --yes"), T);
    assert_eq!(code, 1, "{full}");
    assert!(
        full.contains(&format!(
            "check finished: mismatch_cnt {expected} (512-byte sectors"
        )),
        "{full}"
    );
    assert!(full.contains("stopped again"), "{full}");
    let (ro, _) = vm.shell("cat /sys/block/vdb/ro; ls /sys/block", T);
    assert!(
        ro.lines().any(|l| l.trim() == "1"),
        "member not read-only again: {ro}"
    );
    vm.power_off_from_shell();
    drop(vm);
    // The check wrote the superblocks (4 KiB at 4096; the kernel's write
    // covers the superblock and its bad-block log area before the data)
    // and nothing in the data area.
    for (p, orig) in paths.iter().zip(&originals) {
        let now = std::fs::read(p).unwrap();
        assert_ne!(
            now[4096..8192],
            orig[4096..8192],
            "{}: superblock not updated",
            p.display()
        );
        assert!(
            now[data_off as usize..] == orig[data_off as usize..],
            "{}: the check changed data",
            p.display()
        );
        assert_eq!(now[..4096], orig[..4096], "{}", p.display());
    }
}

/// A check that another process stops (`md check --cancel` writes idle) is
/// reported by the running `md check` as interrupted, with exit status 2 and
/// the part checked, not as finished. The members are throttled to 256 KiB/s
/// so that the pass (16 s) is still running when it is cancelled.
#[test]
fn check_cancelled_by_another_process_is_reported_as_interrupted() {
    let image = Image::built();
    let dir = temp_dir("md-interrupted");
    let (paths, _, _) = members(&dir);
    let mut cfg = cfg(&paths);
    for d in &mut cfg.disks {
        d.drive_override = Some(format!(
            "format=raw,file={},throttling.bps-read=262144",
            d.path.display()
        ));
    }
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    // The check runs in the background; the loop waits until the kernel
    // runs the pass (or the check has ended early, which fails below).
    let (started, code) = vm.shell(
        &format!(
            "(rescue md check {UUID} --yes >/tmp/check.log 2>&1; echo $? >/tmp/check.rc) & \
             while [ ! -e /tmp/check.rc ] && \
             [ \"$(cat /sys/block/md127/md/sync_action 2>/dev/null)\" != check ]; do sleep 0.2; done; \
             cat /sys/block/md127/md/sync_completed /tmp/check.log"
        ),
        T,
    );
    assert_eq!(code, 0, "{started}");
    assert!(
        started.contains(" / "),
        "the pass was not running: {started}"
    );
    let (cancel, code) = vm.shell("rescue md check md127 --cancel", T);
    assert_eq!(code, 0, "{cancel}");
    assert!(cancel.contains("cancelled (idle)"), "{cancel}");
    let (log, code) = vm.shell(
        "while [ ! -e /tmp/check.rc ]; do sleep 0.2; done; cat /tmp/check.log; (exit $(cat /tmp/check.rc))",
        T,
    );
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("check interrupted: mismatch_cnt"), "{log}");
    assert!(log.contains("not at our request"), "{log}");
    assert!(!log.contains("check finished"), "{log}");
    assert!(log.contains("stopped again"), "{log}");
    vm.power_off_from_shell();
}
