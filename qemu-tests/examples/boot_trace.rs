//! Where the boot time goes: seconds from QEMU start to each of PID 1's
//! boot messages and the menu, with one virtio disk (as bench/boot.sh
//! boots), then the console transcript.
//! `cargo run --release -p qemu-tests --example boot_trace`;
//! `TRACE_INITRAMFS=FILE` boots another initramfs with the same kernel.

use qemu_tests::*;
use std::time::Instant;
fn main() {
    let mut image = Image::built();
    if let Some(p) = std::env::var_os("TRACE_INITRAMFS") {
        image.initramfs = p.into();
    }
    let dir = temp_dir("trace");
    let disk = make_disk(&dir.path().join("d.img"), 64 << 20, "bench");
    let cfg = VmConfig::new(vec![Disk::new(&disk, Controller::VirtioBlk, "BENCH")]);
    let start = Instant::now();
    let mut vm = Vm::start(&image, &cfg);
    for m in [
        "rescue 0.1.0 starting",
        "drivers:",
        "block devices set read-only",
        "menus on",
        "Choose: ",
    ] {
        vm.wait_for(m, BOOT_TIMEOUT);
        println!("{:6.2} s  {m}", start.elapsed().as_secs_f64());
    }
    println!("{}", vm.transcript());
}
