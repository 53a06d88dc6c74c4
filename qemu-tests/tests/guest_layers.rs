//! The Synology DSM case four layers down, in the guest: two VM disks
//! (VMDKs on a store disk) each hold a partition that is a member of an md
//! RAID-1 (1.2 superblocks, `DiskStation:2`) holding an LVM2 PV written by
//! lvm2 itself (VG `vg1000`), whose linear LV holds ext4. Both disks are
//! attached, the array assembled read-only, the LV activated read-only
//! through device-mapper, the filesystem mounted read-only, and its files
//! hash as on the host. Detach refuses while the array holds a disk;
//! power-off with everything up releases it in order.

use qemu_tests::*;
use std::process::Command;
use std::time::Duration;
use testkit::gptdisk::{self, Part};
use testkit::lvm2::LvmImages;
use testkit::mdwriter::{build_members, ArraySpec};

const T: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 48 MiB PV written by lvm2 (VG vg1000, linear LV `lv` of 16 MiB) with
/// an ext4 holding `files` in the LV's extents.
fn dsm_pv(dir: &std::path::Path, files: &std::path::Path) -> Vec<u8> {
    let t = LvmImages::new("guest-layers-pv", &[48]);
    t.lvm(&["pvcreate", "-y", &t.loops[0]]);
    t.lvm(&["vgcreate", "-s", "4m", "vg1000", &t.loops[0]]);
    t.lvm(&["lvcreate", "-an", "-Zn", "-L", "16m", "-n", "lv", "vg1000"]);
    let field = |cmd: &str, f: &str| {
        t.lvm(&[cmd, "--noheadings", "--units", "b", "--nosuffix", "-o", f])
            .trim()
            .to_string()
    };
    let pe_start: usize = field("pvs", "pe_start").parse().unwrap();
    let ranges = field("lvs", "seg_pe_ranges");
    // "/dev/loopN:FIRST-LAST"
    let first: usize = ranges
        .rsplit(':')
        .next()
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("seg_pe_ranges {ranges:?}"));
    let fs = dir.join("lv.ext4");
    qemu_tests::guest::ext4_of(files, &fs, 16 * MIB as u64, Some("DSMVOL")).unwrap();
    let fs = std::fs::read(&fs).unwrap();
    let mut pv = t.read(0);
    let at = pe_start + first * 4 * MIB;
    pv[at..at + fs.len()].copy_from_slice(&fs);
    pv
}

#[test]
fn dsm_pair_in_vm_disks_assembles_activates_and_mounts_read_only() {
    let image = Image::built();
    let dir = temp_dir("guest-layers");
    let d = dir.path();
    let files = d.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from the DSM volume\n").unwrap();
    let mut big = vec![0u8; 4 * MIB];
    testkit::mdwriter::pattern(99, 0, &mut big);
    std::fs::write(files.join("big.bin"), &big).unwrap();

    let pv = dsm_pv(d, &files);
    let mut spec = ArraySpec::new("1.2", 1, 2);
    spec.component_bytes = pv.len() as u64;
    spec.head = pv;
    let members = build_members(&spec);
    let store = d.join("store");
    std::fs::create_dir_all(store.join("dsm")).unwrap();
    for (i, m) in members.iter().enumerate() {
        let sectors = (m.len() / 512) as u64;
        let mut disk = gptdisk::disk(
            2048 + sectors + 2048,
            512,
            &[Part {
                slot: 1,
                type_guid: gptdisk::BASIC,
                first: 2048,
                last: 2048 + sectors - 1,
                name: "dsm-data",
            }],
        );
        disk[MIB..MIB + m.len()].copy_from_slice(m);
        let raw = d.join(format!("dsm-{}.raw", i + 1));
        std::fs::write(&raw, &disk).unwrap();
        run(Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "vmdk"])
            .arg(&raw)
            .arg(store.join(format!("dsm/dsm-{}.vmdk", i + 1))));
    }
    let store_disk = d.join("store.raw");
    qemu_tests::guest::ext4_of(&store, &store_disk, 256 * MIB as u64, Some("STORE")).unwrap();
    let store_hash = sha256_file(&store_disk);

    let disks = vec![Disk::new(&store_disk, Controller::VirtioBlk, "STORE-0002")];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let mut sh = |c: &str| vm.shell(c, T);

    let (out, code) = sh("mkdir -p /mnt/store && mount -o ro -t ext4 /dev/vda /mnt/store");
    assert_eq!(code, 0, "{out}");
    for i in 1..=2 {
        let (out, code) = sh(&format!(
            "rescue attach /mnt/store/dsm/dsm-{i}.vmdk --name dsm{i}"
        ));
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("/dev/nbd{}p1", i - 1)), "{out}");
    }
    let (out, code) = sh("rescue md scan");
    assert!(code <= 1, "{out}");
    assert!(
        out.contains("DiskStation:2") && out.contains("nbd0p1") && out.contains("nbd1p1"),
        "{out}"
    );
    let (out, code) = sh("rescue md assemble DiskStation:2 --readonly");
    assert_eq!(code, 0, "{out}");
    let (out, code) = sh("rescue lvm scan");
    assert!(code <= 1, "{out}");
    assert!(out.contains("vg1000") && out.contains("lv"), "{out}");
    let (out, code) = sh("rescue lvm activate vg1000");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/dev/mapper/vg1000-lv"), "{out}");
    let (out, _) = sh("cat /sys/block/dm-0/ro /sys/block/dm-0/dm/name");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1", "vg1000-lv"]
    );
    let (out, code) = sh("rescue mount /dev/mapper/vg1000-lv");
    assert_eq!(code, 0, "{out}");
    let at = out
        .split("mounted read-only at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no mount point in:\n{out}"))
        .to_string();
    let (out, code) = sh(&format!("sha256sum {at}/big.bin {at}/hello.txt"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&sha256_hex(&big)), "{out}");
    assert!(
        out.contains(&sha256_hex(b"hello from the DSM volume\n")),
        "{out}"
    );
    let (out, code) = sh("rescue detach dsm1");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nbd0p1 is in use by md"), "{out}");

    // Power-off with everything up: unmount, LV, array, then the disks.
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
    let transcript = vm.transcript();
    let order: Vec<usize> = [
        "vg1000/lv deactivated",
        "(on attached devices)",
        "detached nbd0",
        "detached nbd1",
    ]
    .iter()
    .map(|m| {
        transcript
            .rfind(m)
            .unwrap_or_else(|| panic!("{m:?} not in the transcript:\n{transcript}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "order {order:?}:\n{transcript}"
    );
    assert_eq!(
        sha256_file(&store_disk),
        store_hash,
        "the store disk was written"
    );
}
