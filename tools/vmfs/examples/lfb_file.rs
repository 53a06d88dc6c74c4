//! For bench/vmfs.sh: in a copy of the real VMFS6 fixture, makes `bigger` a
//! file of the whole volume's size in large file blocks (LFB 0, 1, ...),
//! with the test-only writer: a multi-GiB file whose bytes are the volume's
//! (metadata, the other files' data and free space).
//! Usage: lfb_file IMAGE

#[path = "../tests/common/mod.rs"]
mod common;

use common::writer::Writer;

fn main() {
    let Some(img) = std::env::args().nth(1) else {
        eprintln!("usage: lfb_file IMAGE");
        std::process::exit(2);
    };
    let w = Writer::open(std::path::Path::new(&img));
    let bigger = w.lookup("bigger");
    let volume = vmfs::Volume::from_devices(vec![Box::new(
        blockdev::Device::open(&img).expect("open image"),
    )])
    .expect("open volume")
    .info()
    .capacity;
    w.readdress_as_lfb(&bigger, 0, volume);
}
