//! Writes a two-level SESparse chain for bench/vmdk.sh: `bench_chain DIR
//! MIB` makes `base.vmdk` + `base-flat.vmdk` (MIB MiB of pseudo-random
//! data) and `top.vmdk` + `top-sesparse.vmdk`, a SESparse snapshot in
//! which every fourth 4 KiB grain was rewritten and every sixteenth
//! zeroed, as ESXi 6.5+ and VMFS6 keep snapshots.

use std::io::Write;
use testkit::vmdkdelta::{descriptor, sesparse_with, GrainState, SeSparseOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, mib) = match (args.get(1), args.get(2).and_then(|m| m.parse::<u64>().ok())) {
        (Some(d), Some(m)) if m > 0 => (std::path::PathBuf::from(d), m),
        _ => {
            eprintln!("usage: bench_chain DIR MIB");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = mib << 20;
    let sectors = bytes / 512;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut flat =
        std::io::BufWriter::new(std::fs::File::create(dir.join("base-flat.vmdk")).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for c in block.chunks_exact_mut(8) {
            c.copy_from_slice(&next().to_le_bytes());
        }
        flat.write_all(&block).unwrap();
    }
    flat.flush().unwrap();
    std::fs::write(
        dir.join("base.vmdk"),
        descriptor(
            "vmfs",
            1,
            None,
            &[&format!("RW {sectors} VMFS \"base-flat.vmdk\"")],
        ),
    )
    .unwrap();
    let grains: Vec<(u64, GrainState)> = (0..bytes / 4096)
        .filter_map(|g| match g % 16 {
            0 => Some((g, GrainState::Zero)),
            4 | 8 | 12 => {
                let mut d = vec![0u8; 4096];
                for c in d.chunks_exact_mut(8) {
                    c.copy_from_slice(&next().to_le_bytes());
                }
                Some((g, GrainState::Data(d)))
            }
            _ => None,
        })
        .collect();
    // The compact layout: the usual one has room for 32 grain tables
    // (512 MiB) only; the format read is the same.
    let opts = SeSparseOptions {
        compact: true,
        ..Default::default()
    };
    let delta = sesparse_with(sectors, &grains, &opts);
    std::fs::write(dir.join("top-sesparse.vmdk"), &delta.bytes).unwrap();
    std::fs::write(
        dir.join("top.vmdk"),
        descriptor(
            "seSparse",
            2,
            Some(("base.vmdk", 1)),
            &[&format!("RW {sectors} SESPARSE \"top-sesparse.vmdk\"")],
        ),
    )
    .unwrap();
}
