//! Writes member images for the verify benchmark (bench/md-verify.sh):
//! `bench_members DIR MIB` makes a 2-disk RAID-1 (raid1-0.img, raid1-1.img)
//! and a 3-disk RAID-5 (raid5-0..2.img) of MIB MiB of data per member,
//! 1.2 superblocks, random data, consistent (for three disks every member
//! is the XOR of the other two whatever the layout puts where).

use std::io::Write;
use testkit::mdwriter::{superblock_for, ArraySpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, mib) = match (args.get(1), args.get(2).and_then(|m| m.parse::<u64>().ok())) {
        (Some(d), Some(m)) if m > 0 => (std::path::PathBuf::from(d), m),
        _ => {
            eprintln!("usage: bench_members DIR MIB");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let component = mib << 20;
    let mut raid1 = ArraySpec::new("1.2", 1, 2);
    raid1.component_bytes = component;
    raid1.uuid[0] = 0x11;
    let mut raid5 = ArraySpec::new("1.2", 5, 3);
    raid5.component_bytes = component;
    let open = |name: String, spec: &ArraySpec, role: u32| {
        let (_, sb_off, data_off) = spec.placement();
        let mut head = vec![0u8; data_off as usize];
        head[sb_off as usize..sb_off as usize + 4096].copy_from_slice(&superblock_for(
            spec,
            Some(role),
            spec.events,
            &[],
        ));
        let mut f = std::io::BufWriter::with_capacity(
            8 << 20,
            std::fs::File::create(dir.join(name)).unwrap(),
        );
        f.write_all(&head).unwrap();
        f
    };
    let mut r1: Vec<_> = (0..2)
        .map(|i| open(format!("raid1-{i}.img"), &raid1, i))
        .collect();
    let mut r5: Vec<_> = (0..3)
        .map(|i| open(format!("raid5-{i}.img"), &raid5, i))
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    let mut x = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for buf in [&mut a, &mut b] {
            for chunk in buf.chunks_exact_mut(8) {
                // xorshift64: fast, incompressible enough for a read benchmark
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes());
            }
        }
        for ((o, p), q) in x.iter_mut().zip(&a).zip(&b) {
            *o = p ^ q;
        }
        r1[0].write_all(&a).unwrap();
        r1[1].write_all(&a).unwrap();
        r5[0].write_all(&a).unwrap();
        r5[1].write_all(&b).unwrap();
        r5[2].write_all(&x).unwrap();
    }
    for mut f in r1.into_iter().chain(r5) {
        f.flush().unwrap();
    }
}
