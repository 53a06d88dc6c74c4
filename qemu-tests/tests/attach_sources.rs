//! `rescue attach` of what lives inside a datastore and of damaged disks:
//! a file inside the real ESXi-written VMFS5 fixture and a thin VMDK
//! (descriptor + flat file) in it read through the kernel exactly as the
//! fixture's known content; a read the server needs longer than the
//! kernel's 30 s request timer for (the datastore's disk throttled through
//! QMP) completes without an NBD timeout or disconnect; a hosted sparse
//! VMDK whose grains were cut off mid-file gives I/O errors there, reads
//! elsewhere, and detaches cleanly with no hung task.

use qemu_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(300);
const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

#[test]
fn datastore_files_slow_reads_and_damaged_disks_attach() {
    if fixture("vmfs/vmfs5.bin.gz").is_none() {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("attach-sources");
    let d = dir.path();
    let vmfs = d.join("vmfs5.img");
    fixture_disk("vmfs5.bin.gz", &vmfs);
    let vmfs_hash = sha256_file(&vmfs);

    // A hosted sparse VMDK of 8 MiB of data whose file lost its last MiB.
    let store = d.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let mut data = vec![0u8; 8 * MIB];
    testkit::mdwriter::pattern(5, 0, &mut data);
    std::fs::write(d.join("data.raw"), &data).unwrap();
    let cut = store.join("cut.vmdk");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "vmdk"])
        .arg(d.join("data.raw"))
        .arg(&cut));
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - MIB as u64)
        .unwrap();
    let store_disk = d.join("store.raw");
    qemu_tests::guest::ext4_of(&store, &store_disk, 64 * MIB as u64, None).unwrap();

    let disks = vec![
        Disk::new(&vmfs, Controller::VirtioBlk, "VMFS5-0001"),
        Disk::new(&store_disk, Controller::VirtioBlk, "STORE-0003"),
    ];
    let mut cfg = VmConfig::new(disks);
    cfg.qmp = true;
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();

    // A file inside the datastore: 128 runs of 1 MiB, run i of byte i.
    let bigger: Vec<u8> = (0..128 * MIB).map(|i| (i / MIB) as u8).collect();
    let (out, code) = vm.shell("rescue attach bigger --vmfs /dev/vda --deadline 600", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("file bigger in the datastore on /dev/vda"),
        "{out}"
    );
    let (out, code) = vm.shell("sha256sum /dev/nbd0", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&sha256_hex(&bigger)), "{out}");

    // A thin VM disk inside the datastore: 0x42 at 42 GiB, zeros around.
    let (out, code) = vm.shell("rescue attach normal.vmdk --vmfs /dev/vda", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("attached nbd1") && out.contains("VMDK normal.vmdk (1 level)"),
        "{out}"
    );
    let sector = 42u64 << 21;
    let (out, code) = vm.shell(
        &format!(
            "dd if=/dev/nbd1 bs=512 skip={sector} count=1 2>/dev/null | tr -d B | wc -c; \
             dd if=/dev/nbd1 bs=512 skip={} count=1 2>/dev/null | tr -d '\\000' | wc -c",
            sector - 1
        ),
        T,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "{out}"
    );

    // A read slower than the kernel's 30 s request timer: the datastore's
    // disk throttled to 1.5 KiB/s with no burst allowance, one fresh 64 KiB
    // direct read of `bigger`. QEMU's leaky bucket lets the first request
    // through at once and makes the next ones wait for it to drain, so a
    // direct read of the disk itself goes first.
    vm.qmp(
        r#"{"execute":"block_set_io_throttle","arguments":{"device":"d0","bps":0,"bps_rd":1536,"bps_rd_max":1536,"bps_rd_max_length":1,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}}"#,
    );
    let began = Instant::now();
    let (out, code) = vm.shell(
        "dd if=/dev/vda of=/dev/null bs=64k skip=20000 count=1 iflag=direct; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/nbd0 of=/tmp/slow bs=64k skip=1000 count=1 iflag=direct 2>&1; od -An -tu1 -N4 /tmp/slow",
        Duration::from_secs(600),
    );
    let took = began.elapsed();
    vm.qmp(
        r#"{"execute":"block_set_io_throttle","arguments":{"device":"d0","bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}}"#,
    );
    eprintln!("throttled 64 KiB read took {took:?}");
    assert_eq!(code, 0, "{out}");
    // 64 KiB at 1000 * 64 KiB = 62.5 MiB: run 62.
    let last: Vec<&str> = out
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(last, ["62", "62", "62", "62"], "{out}");
    let (log, _) = vm.shell("dmesg | grep -i nbd; true", T);
    assert!(
        log.contains("Possible stuck request"),
        "the read did not outlast the kernel's request timer ({took:?}):\n{log}"
    );
    for bad in [
        "timed out",
        "Connection timed out",
        "shutting down",
        "Disconnected",
        "Dead connection",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the kernel log:\n{log}");
    }

    // Grains cut off: I/O errors in the last MiB only, then a clean detach.
    let (out, code) = vm.shell(
        "mkdir -p /mnt/s && mount -o ro -t ext4 /dev/vdb /mnt/s && rescue attach /mnt/s/cut.vmdk --name cut",
        T,
    );
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell("dd if=/dev/nbd2 bs=1M count=7 2>/dev/null | sha256sum", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&sha256_hex(&data[..7 * MIB])), "{out}");
    let (out, code) = vm.shell(
        "dd if=/dev/nbd2 of=/dev/null bs=4k skip=2047 count=1 iflag=direct",
        T,
    );
    assert_ne!(code, 0, "reading lost grains succeeded: {out}");
    let (out, code) = vm.shell(
        "rescue detach cut && rescue detach nbd0 && rescue detach nbd1",
        T,
    );
    assert_eq!(code, 0, "{out}");
    let (out, _) = vm.shell("dmesg | grep -iE 'hung_task|blocked for more'; true", T);
    assert!(out.trim().is_empty(), "{out}");
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
    assert_eq!(
        sha256_file(&vmfs),
        vmfs_hash,
        "the datastore disk was written"
    );
}
