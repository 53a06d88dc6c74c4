//! A VM with a snapshot, inside the real ESXi-written VMFS5 fixture, read
//! in place: the test writer adds the folder `web/` holding the base disk
//! (`web.vmdk`, a descriptor naming the flat extent `web-flat.vmdk`: GPT
//! and ext4 with known files) and a snapshot over it (`web-000001.vmdk`
//! naming the COWD delta `web-000001-delta.vmdk`, which holds the grains
//! where one guest file was rewritten). In the guest, both levels are
//! attached from inside the datastore and mounted read-only; the files are
//! copied to a destination disk and checked on the host by SHA-256; the
//! datastore's disk is unchanged.

use qemu_tests::*;
use std::process::Command;
use std::time::Duration;
use testkit::vmdkdelta::{cowd_delta, descriptor};
use testkit::vmfswriter::Writer;

const T: Duration = Duration::from_secs(600);
const MIB: usize = 1 << 20;
/// COWD grains of 64 KiB.
const GRAIN: usize = 64 << 10;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn snapshot_chain_inside_the_datastore_mounts_and_copies_out() {
    if fixture("vmfs/vmfs5.bin.gz").is_none() {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("vmfs-chain");
    let d = dir.path();

    // The guest's files; `report.txt` is rewritten after the snapshot.
    let files = d.join("files");
    std::fs::create_dir_all(files.join("data")).unwrap();
    let mut blob = vec![0u8; 300 * 1024];
    testkit::mdwriter::pattern(31, 0, &mut blob);
    std::fs::write(files.join("data/blob.bin"), &blob).unwrap();
    let old_report = "quarterly report, draft\n".repeat(2000).into_bytes();
    std::fs::write(files.join("report.txt"), &old_report).unwrap();
    let part = d.join("part.ext4");
    qemu_tests::guest::ext4_of(&files, &part, 30 * MIB as u64, Some("WEB")).unwrap();
    let base = qemu_tests::guest::gpt_disk(&std::fs::read(&part).unwrap());

    // The snapshot's view: report.txt's blocks rewritten in place (same
    // length, so the ext4 metadata stays as it was).
    let new_report: Vec<u8> = "quarterly report, FINAL\n"
        .repeat(2000)
        .into_bytes()
        .into_iter()
        .take(old_report.len())
        .collect();
    let blocks = run(Command::new("debugfs")
        .args(["-R", "blocks /report.txt"])
        .arg(&part));
    let stats = run(Command::new("debugfs").args(["-R", "stats"]).arg(&part));
    let bs: usize = stats
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no block size in {stats}"));
    let mut child = base.clone();
    for (i, b) in blocks.split_whitespace().enumerate() {
        let b: usize = b.parse().unwrap();
        let at = qemu_tests::guest::PART_START as usize + b * bs;
        let src = &new_report[i * bs..((i + 1) * bs).min(new_report.len())];
        child[at..at + src.len()].copy_from_slice(src);
    }
    let grains: Vec<(u64, Option<Vec<u8>>)> = child
        .chunks(GRAIN)
        .zip(base.chunks(GRAIN))
        .enumerate()
        .filter(|(_, (c, b))| c != b)
        .map(|(g, (c, _))| (g as u64, Some(c.to_vec())))
        .collect();
    assert!(
        !grains.is_empty() && grains.len() < 8,
        "{} grains",
        grains.len()
    );
    let sectors = (base.len() / 512) as u32;
    let delta = cowd_delta(sectors, (GRAIN / 512) as u32, &grains);

    // The datastore: the fixture with the VM folder written into it.
    let ds = d.join("vmfs5.img");
    fixture_disk("vmfs5.bin.gz", &ds);
    {
        let w = Writer::open(&ds);
        w.mkdir("", "web");
        let flat = format!("RW {sectors} VMFS \"web-flat.vmdk\"");
        let snap = format!("RW {sectors} VMFSSPARSE \"web-000001-delta.vmdk\"");
        w.create_file(
            "web",
            "web.vmdk",
            descriptor("vmfs", 0x1234, None, &[&flat]).as_bytes(),
        );
        w.create_file("web", "web-flat.vmdk", &base);
        w.create_file(
            "web",
            "web-000001.vmdk",
            descriptor("vmfsSparse", 0x5678, Some(("web.vmdk", 0x1234)), &[&snap]).as_bytes(),
        );
        w.create_file("web", "web-000001-delta.vmdk", &delta.bytes);
    }
    let ds_hash = sha256_file(&ds);
    let dest = d.join("dest.img");
    std::fs::File::create(&dest)
        .unwrap()
        .set_len(256 * MIB as u64)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "RESCUEDEST"])
        .arg(&dest));

    let disks = vec![
        Disk::new(&ds, Controller::VirtioBlk, "VMFS5-0001"),
        Disk::new(&dest, Controller::VirtioBlk, "DEST-0002"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();

    let (out, code) = vm.shell("rescue attach web/web-000001.vmdk --vmfs /dev/vda", T);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("attached nbd0") && out.contains("(2 levels)"),
        "{out}"
    );
    let (out, code) = vm.shell("rescue attach web/web.vmdk --vmfs /dev/vda", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("attached nbd1"), "{out}");
    let (out, code) = vm.shell(
        "rescue mount /dev/nbd0p1 /mnt/snap && rescue mount /dev/nbd1p1 /mnt/base",
        T,
    );
    assert_eq!(code, 0, "{out}");
    let (out, code) = vm.shell(
        "rescue dest mount /dev/vdb --yes && \
         mkdir /mnt/dest/vdb/snap /mnt/dest/vdb/base && \
         cp -r /mnt/snap/data /mnt/snap/report.txt /mnt/dest/vdb/snap/ && \
         cp /mnt/base/report.txt /mnt/dest/vdb/base/ && rescue dest umount /dev/vdb && \
         rescue umount /mnt/snap && rescue umount /mnt/base && \
         rescue detach nbd0 && rescue detach nbd1",
        T,
    );
    assert_eq!(code, 0, "{out}");
    vm.power_off_from_shell();

    let scratch = d.join("got");
    for (path, want) in [
        ("/snap/data/blob.bin", &blob),
        ("/snap/report.txt", &new_report),
        ("/base/report.txt", &old_report),
    ] {
        let got = ext4_file(&dest, path, &scratch);
        assert_eq!(sha256_hex(&got), sha256_hex(want), "{path}");
    }
    assert_eq!(
        sha256_file(&ds),
        ds_hash,
        "the datastore's disk was written"
    );
}
