//! Reading a large guest file through `rescue attach` (a hosted sparse
//! VMDK served by the rescue process over NBD) and a read-only mount,
//! against the kernel reading the same bytes from the flattened raw
//! export of that disk (a read-only loop device at the partition's
//! offset, no userspace in the path), and against attaching the raw
//! export itself (NBD without the VMDK reader): in one guest, page cache
//! dropped before each read, ROUNDS alternating rounds, medians.
//! Usage: bench-attach [MIB] [ROUNDS] (default 256 3).

use qemu_tests::*;
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(1200);

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let image = Image::built();
    let dir = temp_dir("bench-attach");
    let d = dir.path();
    // The guest disk: a partition at 1 MiB holding ext4 with one big file
    // of pseudo-random bytes.
    let files = d.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut big = vec![0u8; (mib * MIB) as usize];
    testkit::mdwriter::pattern(3, 0, &mut big);
    std::fs::write(files.join("big.bin"), &big).unwrap();
    drop(big);
    let part_mib = mib + mib / 8 + 16;
    let part = d.join("part.raw");
    std::fs::File::create(&part)
        .unwrap()
        .set_len(part_mib * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&files)
        .arg(&part));
    let store = d.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let raw = store.join("guest.raw");
    {
        let sectors = (part_mib + 2) * MIB / 512;
        let disk = testkit::gptdisk::disk(
            sectors,
            512,
            &[testkit::gptdisk::Part {
                slot: 1,
                type_guid: testkit::gptdisk::BASIC,
                first: 2048,
                last: 2048 + part_mib * MIB / 512 - 1,
                name: "guest",
            }],
        );
        std::fs::write(&raw, disk).unwrap();
        let script = format!(
            "dd if='{}' of='{}' bs=1M seek=1 conv=notrunc,sparse status=none",
            part.display(),
            raw.display()
        );
        run(Command::new("sh").arg("-c").arg(script));
    }
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "vmdk"])
        .arg(&raw)
        .arg(store.join("guest.vmdk")));
    let store_disk = d.join("store.img");
    std::fs::File::create(&store_disk)
        .unwrap()
        .set_len((part_mib * 3 + 256) * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
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
    let mut sh = |c: &str| {
        let (out, code) = vm.shell(c, T);
        assert_eq!(code, 0, "{c}:\n{out}");
        out
    };
    sh("mkdir -p /mnt/store /mnt/v /mnt/r /mnt/l && mount -o ro -t ext4 /dev/vda /mnt/store");
    sh("rescue attach /mnt/store/guest.vmdk && rescue attach /mnt/store/guest.raw");
    sh("mount -o ro,noload -t ext4 /dev/nbd0p1 /mnt/v && mount -o ro,noload -t ext4 /dev/nbd1p1 /mnt/r");
    sh("modprobe loop; losetup -r -o 1048576 /dev/loop0 /mnt/store/guest.raw && mount -o ro,noload -t ext4 /dev/loop0 /mnt/l");
    let timed = |sh: &mut dyn FnMut(&str) -> String, at: &str| -> f64 {
        let out = sh(&format!(
            "echo 3 > /proc/sys/vm/drop_caches; a=$(cut -d' ' -f1 /proc/uptime); cat {at}/big.bin > /dev/null; b=$(cut -d' ' -f1 /proc/uptime); echo \"took $a $b\""
        ));
        let l = out
            .lines()
            .find(|l| l.starts_with("took "))
            .expect("timing line");
        let w: Vec<f64> = l
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        w[1] - w[0]
    };
    let (mut vmdk, mut nbd_raw, mut loop_raw) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        loop_raw.push(timed(&mut sh, "/mnt/l"));
        vmdk.push(timed(&mut sh, "/mnt/v"));
        nbd_raw.push(timed(&mut sh, "/mnt/r"));
    }
    vm.power_off_from_shell();
    let (v, r, l) = (
        median(vmdk.clone()),
        median(nbd_raw.clone()),
        median(loop_raw.clone()),
    );
    println!("file: {mib} MiB, rounds: {rounds}, guest seconds (page cache dropped before each)");
    println!(
        "  loop over the raw export : {l:.2} s  {:.0} MiB/s  {loop_raw:?}",
        mib as f64 / l
    );
    println!(
        "  attach of the raw export : {r:.2} s  {:.0} MiB/s  {nbd_raw:?}",
        mib as f64 / r
    );
    println!(
        "  attach of the VMDK       : {v:.2} s  {:.0} MiB/s  {vmdk:?}",
        mib as f64 / v
    );
    println!(
        "ratio (loop time / attach VMDK time; at least 0.8 wanted): {:.2}",
        l / v
    );
    println!("ratio (loop time / attach raw time): {:.2}", l / r);
}
