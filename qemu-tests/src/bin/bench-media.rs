//! Boot-media benchmark (issue 8): time from QEMU start to the rescue menu
//! for every boot path, in one run, with the media's sizes.
//! Usage: bench-media [RUNS]. Each path boots RUNS times; prints the median.

use qemu_tests::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct BootPath {
    name: &'static str,
    configure: fn(&mut VmConfig, &Path, &Path),
}

fn out_file(image: &Image, name: &str) -> PathBuf {
    let p = image.kernel.parent().unwrap().join(name);
    assert!(p.exists(), "{} missing: run image-build first", p.display());
    p
}

const PATHS: &[BootPath] = &[
    BootPath {
        name: "kernel + initramfs (QEMU -kernel, no firmware loader)",
        configure: |_, _, _| {},
    },
    BootPath {
        name: "ISO as CD, BIOS",
        configure: |c, out, _| c.cdrom = Some(out.join("rescue.iso")),
    },
    BootPath {
        name: "ISO as CD, UEFI",
        configure: |c, out, tmp| {
            c.cdrom = Some(out.join("rescue.iso"));
            c.uefi = Some((false, tmp.join("vars.fd")));
        },
    },
    BootPath {
        name: "USB stick image, BIOS",
        configure: |c, out, _| c.usb_stick = Some(out.join("rescue-usb.img")),
    },
    BootPath {
        name: "USB stick image, UEFI",
        configure: |c, out, tmp| {
            c.usb_stick = Some(out.join("rescue-usb.img"));
            c.uefi = Some((false, tmp.join("vars.fd")));
        },
    },
    BootPath {
        name: "USB stick image, UEFI Secure Boot",
        configure: |c, out, tmp| {
            c.usb_stick = Some(out.join("rescue-usb.img"));
            c.uefi = Some((true, tmp.join("vars.fd")));
        },
    },
    BootPath {
        name: "ISO on a USB stick (hybrid), UEFI Secure Boot",
        configure: |c, out, tmp| {
            c.usb_stick = Some(out.join("rescue.iso"));
            c.uefi = Some((true, tmp.join("vars.fd")));
        },
    },
    BootPath {
        name: "PXE (iPXE ROM, QEMU TFTP)",
        configure: |c, out, _| c.pxe_dir = Some(out.join("pxe")),
    },
];

fn boot_once(image: &Image, path: &BootPath, disk: &Path, tmp: &Path) -> Duration {
    let mut cfg = VmConfig::new(vec![Disk::new(disk, Controller::VirtioBlk, "BENCH")]);
    (path.configure)(&mut cfg, image.kernel.parent().unwrap(), tmp);
    let start = Instant::now();
    let mut vm = Vm::start(image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let elapsed = start.elapsed();
    vm.send("p\n");
    vm.wait_for("[y/N]", Duration::from_secs(30));
    vm.send("y\n");
    vm.wait_exit(Duration::from_secs(60));
    elapsed
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let image = Image::built();
    let dir = temp_dir("bench-media");
    let disk = make_disk(&dir.path().join("d.img"), 16 << 20, "bench");
    for f in ["rescue.iso", "rescue-usb.img", "vmlinuz", "initramfs.img"] {
        let p = out_file(&image, f);
        println!("{f}: {} bytes", std::fs::metadata(&p).unwrap().len());
    }
    println!("| boot path | QEMU start to menu (median of {runs}) |\n|---|---|");
    for path in PATHS {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| boot_once(&image, path, &disk, dir.path()))
            .collect();
        times.sort();
        println!(
            "| {} | {:.1} s |",
            path.name,
            times[times.len() / 2].as_secs_f64()
        );
    }
}
