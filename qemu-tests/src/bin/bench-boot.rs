//! Boot-time benchmark: QEMU start to the rescue menu, against the same
//! kernel booting a busybox-only initramfs to a shell marker, in one run.
//! Usage: bench-boot [RUNS]. Prints a table and the ratio of medians.

use image_build::{compress, cpio_newc, CpioEntry};
use qemu_tests::*;
use std::time::{Duration, Instant};

fn busybox_initramfs(dir: &std::path::Path) -> std::path::PathBuf {
    let init = "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho BUSYBOX-SHELL-READY\nexec /bin/busybox sh\n";
    let entries = vec![
        CpioEntry::dir("bin"),
        CpioEntry::file(
            "bin/busybox",
            0o755,
            std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)"),
        ),
        CpioEntry::symlink("bin/sh", "busybox"),
        CpioEntry::dir("dev"),
        CpioEntry::char_device("dev/console", 0o600, 5, 1),
        CpioEntry::file("init", 0o755, init.as_bytes().to_vec()),
        CpioEntry::dir("proc"),
    ];
    let p = dir.join("busybox-initramfs.img");
    std::fs::write(&p, compress(&cpio_newc(&entries)).unwrap()).unwrap();
    p
}

fn time_to(image: &Image, disk: &std::path::Path, marker: &str) -> Duration {
    let cfg = VmConfig::new(vec![Disk::new(disk, Controller::VirtioBlk, "BENCH")]);
    let start = Instant::now();
    let mut vm = Vm::start(image, &cfg);
    vm.wait_for(marker, BOOT_TIMEOUT);
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let image = Image::built();
    let dir = temp_dir("bench-boot");
    let disk = make_disk(&dir.path().join("d.img"), 64 << 20, "bench");
    let bb = Image {
        kernel: image.kernel.clone(),
        initramfs: busybox_initramfs(dir.path()),
    };
    let mut rescue = Vec::new();
    let mut busybox = Vec::new();
    for i in 0..runs {
        let r = time_to(&image, &disk, "Choose: ");
        let b = time_to(&bb, &disk, "BUSYBOX-SHELL-READY");
        println!(
            "run {}: rescue menu {:.2} s, busybox shell {:.2} s",
            i + 1,
            r.as_secs_f64(),
            b.as_secs_f64()
        );
        rescue.push(r);
        busybox.push(b);
    }
    let (r, b) = (median(rescue), median(busybox));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "median: rescue {:.2} s, busybox-only {:.2} s, ratio {:.2}x",
        r.as_secs_f64(),
        b.as_secs_f64(),
        r.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "initramfs: rescue {} bytes, busybox-only {} bytes; kernel {} bytes",
        size(&image.initramfs),
        size(&bb.initramfs),
        size(&image.kernel)
    );
    let bin = workspace_root().join("target/x86_64-unknown-linux-musl/release/rescue");
    println!("rescue binary: {} bytes", size(&bin));
}
