//! For bench/vmfs.sh: scatters the 128 blocks of `bigger` in a copy of the
//! real VMFS5 fixture (block i moves to where block i * 45 mod 128 was),
//! with the test-only writer, so that reading the file is no longer
//! sequential on the disk. Usage: fragment_bigger IMAGE

#[path = "../tests/common/mod.rs"]
mod common;

use common::writer::{scatter, Writer};

fn main() {
    let Some(img) = std::env::args().nth(1) else {
        eprintln!("usage: fragment_bigger IMAGE");
        std::process::exit(2);
    };
    let w = Writer::open(std::path::Path::new(&img));
    let bigger = w.lookup("bigger");
    w.permute_blocks(&bigger, &scatter(128, 45));
}
