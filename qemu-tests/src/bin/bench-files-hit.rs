//! `rescue files-hit` on a datastore holding many VMs (issue 20's second
//! benchmark: 100 VMs' worth of small disks, under 10 s in TCG wanted).
//!
//! The real ESXi-written VMFS5 fixture gets VM folders from the test
//! writer: `vmNNN/vmNNN.vmdk` (descriptor) and `vmNNN-flat.vmdk` (8 MiB:
//! GPT, ext4 with `docs/vmNNN.bin`). One 4 KiB block under each VM's file
//! is made unreadable: the image has zeros there and its ddrescue mapfile
//! marks it bad, as `rescue image` would have left it. In the guest,
//! `rescue files-hit` maps every bad area through VMFS, the VMDK, GPT and
//! ext4 (attach, mount, FIEMAP walk, release, per VM) and must name each
//! VM's file. No other tool does this walk, so there is no reference time
//! to divide by: the wall time is printed with the time per VM disk.
//! Usage: bench-files-hit [VMS] (default 100); with BENCH_STEPS set, the
//! guest times the single steps (attach, mount, umount, detach) too.

use qemu_tests::*;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;
use testkit::vmfswriter::Writer;

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(1800);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let vms: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let image = Image::built();
    let dir = temp_dir("bench-files-hit");
    let d = dir.path();
    let store = d.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let ds = store.join("ds.img");
    fixture_disk("vmfs5.bin.gz", &ds);

    // Each VM's guest disk, and the guest-disk offset of its bad block.
    let mut bad_in_disk = Vec::new();
    {
        let w = Writer::open(&ds);
        for i in 0..vms {
            let name = format!("vm{i:03}");
            let files = d.join("files");
            let _ = std::fs::remove_dir_all(&files);
            std::fs::create_dir_all(files.join("docs")).unwrap();
            let mut data = vec![0u8; 64 << 10];
            testkit::mdwriter::pattern(i as u64, 0, &mut data);
            std::fs::write(files.join(format!("docs/{name}.bin")), &data).unwrap();
            std::fs::write(files.join("hello.txt"), format!("{name}\n")).unwrap();
            let part = d.join("part.ext4");
            qemu_tests::guest::ext4_of(&files, &part, 6 * MIB, Some(&name)).unwrap();
            let blocks = run(Command::new("debugfs")
                .args(["-R", &format!("blocks /docs/{name}.bin")])
                .arg(&part));
            let stats = run(Command::new("debugfs").args(["-R", "stats"]).arg(&part));
            let bs: u64 = stats
                .lines()
                .find_map(|l| l.strip_prefix("Block size:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("block size");
            // The file's block holding byte 40960, rounded to 4 KiB.
            let b: u64 = blocks
                .split_whitespace()
                .nth((40960 / bs) as usize)
                .unwrap()
                .parse()
                .unwrap();
            bad_in_disk.push((qemu_tests::guest::PART_START + b * bs) / 4096 * 4096);
            let disk = qemu_tests::guest::gpt_disk(&std::fs::read(&part).unwrap());
            let sectors = disk.len() / 512;
            let desc = testkit::vmdkdelta::descriptor(
                "vmfs",
                0x100 + i as u32,
                None,
                &[&format!("RW {sectors} VMFS \"{name}-flat.vmdk\"")],
            );
            w.mkdir("", &name);
            w.create_file(&name, &format!("{name}.vmdk"), desc.as_bytes());
            w.create_file(&name, &format!("{name}-flat.vmdk"), &disk);
        }
    }
    // Where each bad block is on the datastore's disk; zeroed there, and
    // marked bad in the map.
    let size = std::fs::metadata(&ds).unwrap().len();
    let mut map = ddmap::Map::new(size);
    map.set(0, size, ddmap::Status::Finished);
    {
        let sources = [ds.display().to_string()];
        let opened = vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: &sources,
            ..Default::default()
        })
        .unwrap();
        let out = std::fs::OpenOptions::new().write(true).open(&ds).unwrap();
        for (i, &bad) in bad_in_disk.iter().enumerate() {
            let name = format!("vm{i:03}");
            let ino = opened
                .volume
                .lookup(&format!("/{name}/{name}-flat.vmdk"))
                .unwrap();
            let x = opened
                .volume
                .device_extents(&ino)
                .unwrap()
                .into_iter()
                .find(|x| (x.file_offset..x.file_offset + x.len).contains(&bad))
                .expect("bad block stored");
            let at = opened.origins[x.device].1 + x.device_offset + bad - x.file_offset;
            out.write_all_at(&[0u8; 4096], at).unwrap();
            map.set(at, 4096, ddmap::Status::BadSector);
        }
    }
    std::fs::write(
        store.join("ds.map"),
        ddmap::render(
            &map,
            &ddmap::Header {
                command_line: "bench-files-hit".into(),
                start_time: String::new(),
                phase_message: "Finished".into(),
            },
        ),
    )
    .unwrap();
    let store_disk = d.join("store.img");
    std::fs::File::create(&store_disk)
        .unwrap()
        .set_len(size + 512 * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "RESCUEDEST", "-d"])
        .arg(&store)
        .arg(&store_disk));

    let mut vm = Vm::start(
        &image,
        &VmConfig::new(vec![Disk::new(
            &store_disk,
            Controller::VirtioBlk,
            "BENCH-STORE",
        )]),
    );
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell("rescue dest mount /dev/vda --yes", T);
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(
        "a=$(cut -d' ' -f1 /proc/uptime); rescue files-hit /mnt/dest/vda/ds.img --map /mnt/dest/vda/ds.map > /tmp/fh.out 2>&1; c=$?; b=$(cut -d' ' -f1 /proc/uptime); echo \"took $a $b exit $c\"",
        T,
    );
    assert_eq!(code, 0, "{out}");
    let took = out
        .lines()
        .find(|l| l.starts_with("took "))
        .expect("timing line");
    let w: Vec<&str> = took.split_whitespace().collect();
    let secs = w[2].parse::<f64>().unwrap() - w[1].parse::<f64>().unwrap();
    assert_eq!(w[4], "1", "files-hit exit code (1 = findings): {took}");
    if std::env::var_os("BENCH_STEPS").is_some() {
        let (out, _) = vm.shell(
            "t(){ a=$(cut -d' ' -f1 /proc/uptime); \"$@\" >/dev/null 2>&1; b=$(cut -d' ' -f1 /proc/uptime); echo \"T $a $b $*\"; }; \
             t rescue help; t rescue vmfs ls /mnt/dest/vda/ds.img vm001; t rescue vmfs cat /mnt/dest/vda/ds.img vm001/vm001.vmdk; t rescue attach /mnt/dest/vda/ds.map; t rescue detach nbd0; t rescue attach vm001/vm001.vmdk --vmfs /mnt/dest/vda/ds.img; t rescue mount /dev/nbd0p1 /mnt/x; \
             t rescue umount /mnt/x; t rescue detach nbd0; t rescue attach vm001/vm001.vmdk --vmfs /mnt/dest/vda/ds.img; t rescue detach nbd0",
            T,
        );
        println!("{out}");
    }
    let (report, _) = vm.shell("cat /mnt/dest/vda/ds.img.files-hit.txt", T);
    let (tail, _) = vm.shell("tail -5 /tmp/fh.out", T);
    vm.power_off_from_shell();
    let missing: Vec<String> = (0..vms)
        .map(|i| format!("/docs/vm{i:03}.bin"))
        .filter(|f| !report.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "files-hit did not name {missing:?}\n{tail}\n{report}"
    );
    println!("VMs: {vms}, one 4 KiB bad block under a guest file in each; all {vms} files named");
    println!(
        "files-hit wall time (guest, TCG): {secs:.2} s, {:.3} s per VM disk (under 10 s wanted)",
        secs / vms as f64
    );
}
