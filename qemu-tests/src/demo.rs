//! The demo disk set: one disk for each thing the appliance does, so a
//! newcomer can try every function from the menu. It grows with each
//! capability.
//!
//! | disk | controller | what it is |
//! |---|---|---|
//! | `esxi-boot.img` | AHCI, model `ESXi BOOT SSD` | ESXi 5.0-style boot disk: GPT with slot 4 empty, FAT16 boot banks with `boot.cfg` (builds 5.0.0-1489271 / -1311175), vmkDiagnostic, scratch, and a VMFS5 datastore in slot 3 (the real ESXi-written fixture when `../shared/fixtures/vmfs` is there) |
//! | `raid-ld.img` | MegaRAID (`megasas-gen2`) | the same boot disk after a raw copy to a 1.5x larger logical drive whose GPT was rewritten and compacted (incident 003) |
//! | `dying-ssd.img` | NVMe | a disk with unreadable sectors (QEMU blkdebug) to image |
//! | `dest.img` | virtio-blk | an ext4 destination labelled `RESCUEDEST`, holding a VM's disk to attach (`vms/demo-vm/demo-vm-000001.vmdk`: a qemu-img snapshot over a hosted sparse base, GPT, ext4) |
//! | `dsm-disk1.img`, `dsm-disk2.img` | virtio-blk | a Synology DSM VM's two disks: RAID-1 system (md0) and swap (md1) arrays with 0.90 superblocks on partitions 1 and 2, the data array `DiskStation:2` (RAID-1, 1.2) on partition 3 holding an ext4 volume; one byte differs between the data mirrors |

use crate::{Controller, Disk};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// Sectors of the NVMe demo disk that read as I/O errors.
pub const DYING_BAD_SECTORS: &[u64] = &[20480, 20481, 65536, 131072, 131073, 131074, 200000];

/// ESXi 5.x boot disk layout (slot, first LBA, last LBA or 0 = to the end,
/// sgdisk type code, name) in slot order. Disk order differs from slot order
/// and slot 4 stays empty, as ESXi writes it.
const ESXI5_LAYOUT: &[(u32, u64, u64, &str)] = &[
    (1, 64, 8191, "EF00"),
    (2, 1_843_200, 2_367_487, "0700"),
    (3, 2_367_488, 0, "FB00"),
    (5, 8_224, 520_191, "0700"),
    (6, 520_224, 1_032_191, "0700"),
    (7, 1_032_224, 1_257_471, "FC00"),
    (8, 1_257_504, 1_843_199, "0700"),
];

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?}: {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn sparse_file(path: &Path, size: u64) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(size)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a GPT with the ESXi slots; `compact` numbers the partitions 1..7
/// in slot order with no gap, as the raw-copy tool of incident 003 did.
fn esxi_gpt(path: &Path, compact: bool) -> Result<(), String> {
    let mut cmd = Command::new("sgdisk");
    // Alignment 1: ESXi's partitions start at LBA 64 and 8224.
    cmd.arg("-a").arg("1");
    for (i, (slot, first, last, code)) in ESXI5_LAYOUT.iter().enumerate() {
        let n = if compact { i as u32 + 1 } else { *slot };
        let last = if *last == 0 {
            String::from("0")
        } else {
            last.to_string()
        };
        cmd.arg(format!("-n{n}:{first}:{last}"))
            .arg(format!("-t{n}:{code}"));
    }
    cmd.arg(path);
    run(&mut cmd)
}

/// Builds of the demo's boot banks: ESXi 5.0 Update 3 (the second
/// incident's version) and the build before it in the alternate bank.
pub const BOOTBANK_BUILD: &str = "5.0.0-1489271";
pub const ALTBOOTBANK_BUILD: &str = "5.0.0-1311175";

/// FAT16 boot banks in slots 5 and 6 with a `boot.cfg` each, as ESXi has.
fn bootbanks(disk: &Path, dir: &Path) -> Result<(), String> {
    for (slot, label, build) in [
        (5u32, "BOOTBANK1", BOOTBANK_BUILD),
        (6, "BOOTBANK2", ALTBOOTBANK_BUILD),
    ] {
        let (_, first, last, _) = ESXI5_LAYOUT
            .iter()
            .find(|l| l.0 == slot)
            .copied()
            .ok_or("layout")?;
        let sectors = last + 1 - first;
        let kib = sectors * SECTOR / 1024;
        run(Command::new("mkfs.vfat")
            .args(["-F", "16", "-n", label, "--offset", &first.to_string()])
            .arg(disk)
            .arg(kib.to_string()))?;
        let cfg = dir.join(format!("boot{slot}.cfg"));
        std::fs::write(
            &cfg,
            format!("bootstate=0\ntitle=Loading VMware ESXi\nkernel=tboot.b00\nbuild={build}\nupdated=1\n"),
        )
        .map_err(|e| e.to_string())?;
        run(Command::new("mcopy")
            .arg("-i")
            .arg(format!("{}@@{}", disk.display(), first * SECTOR))
            .arg(&cfg)
            .arg("::/BOOT.CFG"))?;
        let _ = std::fs::remove_file(&cfg);
    }
    Ok(())
}

/// The real VMFS5 volume written by ESXi (LVM header + volume), if the
/// shared fixtures are beside the checkout.
pub fn vmfs5_fixture() -> Option<PathBuf> {
    // Optional here (the demo runs without it); tests use `fixture`, which
    // fails when it is missing.
    let p = testkit::fixtures::fixture_path("vmfs/vmfs5.bin.gz");
    p.exists().then_some(p)
}

/// Unpacks a gzip image into `disk` at byte `offset`, keeping zeros sparse.
fn write_gz_at(gz: &Path, disk: &Path, offset: u64) -> Result<(), String> {
    let script = format!(
        "gzip -dc '{}' | dd of='{}' bs=1M seek={} oflag=seek_bytes conv=sparse,notrunc status=none",
        gz.display(),
        disk.display(),
        offset
    );
    run(Command::new("sh").arg("-c").arg(&script))
}

/// Creates the demo disks in `dir` (kept between runs; `fresh` remakes them)
/// and returns them attached to their controllers.
/// The arrays of the demo's Synology DSM pair, as on a DSM 7 VM's disks
/// (GPT): partition 1 the system RAID-1 (md0, 0.90 superblock), 2 the swap
/// RAID-1 (md1, 0.90), 3 the data array (RAID-1, 1.2, `DiskStation:2`)
/// holding an ext4 volume.
fn dsm_arrays(ext4: Vec<u8>) -> [testkit::mdwriter::ArraySpec; 3] {
    use testkit::mdwriter::ArraySpec;
    let mut system = ArraySpec::new("0.90", 1, 2);
    system.component_bytes = 32 * MIB;
    system.uuid[0] = 0xd0;
    system.seed = 10;
    let mut swap = ArraySpec::new("0.90", 1, 2);
    swap.component_bytes = 16 * MIB;
    swap.uuid[0] = 0xd1;
    swap.md_minor = 1;
    swap.seed = 11;
    let mut data = ArraySpec::new("1.2", 1, 2);
    data.component_bytes = 48 * MIB;
    data.uuid[0] = 0xd2;
    data.seed = 12;
    data.head = ext4;
    [system, swap, data]
}

/// Where the demo's DSM data mirrors differ: one byte of the second disk,
/// 40 MiB into the data array (beyond the ext4 volume's 8 MiB), so that
/// `md verify` and the kernel's check have something to find.
pub const DSM_MISMATCH_IN_DATA: u64 = 40 * MIB + 4242;

/// Writes the two DSM disks `disks` (see [`dsm_arrays`]).
fn dsm_pair(dir: &Path, disks: [&Path; 2]) -> Result<(), String> {
    let src = dir.join("dsm-volume");
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    std::fs::write(
        src.join("README.txt"),
        "The volume of the demo's Synology DSM VM (md RAID-1 DiskStation:2, ext4).\n\
         `rescue md assemble DiskStation:2 --readonly --mount` shows it read-only.\n",
    )
    .map_err(|e| e.to_string())?;
    let fs = dir.join("dsm-volume.ext4");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "DSMVOLUME", "-b", "1024", "-d"])
        .arg(&src)
        .arg(&fs)
        .arg("8M"))?;
    let ext4 = std::fs::read(&fs).map_err(|e| e.to_string())?;
    let arrays = dsm_arrays(ext4);
    // Partitions exactly as large as the members (a 0.90 superblock sits
    // at a place that depends on the device's size), 1 MiB aligned starts.
    let mut parts = Vec::new();
    let mut first = 2048u64;
    for a in &arrays {
        let (bytes, _, _) = a.placement();
        let sectors = bytes / SECTOR;
        parts.push((first, sectors));
        first = (first + sectors).div_ceil(2048) * 2048;
    }
    let disk_bytes = first * SECTOR + MIB;
    let mut files = Vec::new();
    for disk in disks {
        sparse_file(disk, disk_bytes)?;
        let mut cmd = Command::new("sgdisk");
        cmd.arg("-a").arg("1");
        for (i, (start, sectors)) in parts.iter().enumerate() {
            let n = i + 1;
            cmd.arg(format!("-n{n}:{start}:{}", start + sectors - 1))
                .arg(format!("-t{n}:fd00"));
        }
        run(cmd.arg(disk))?;
        files.push(
            std::fs::OpenOptions::new()
                .write(true)
                .open(disk)
                .map_err(|e| e.to_string())?,
        );
    }
    use std::os::unix::fs::FileExt;
    for (a, (start, _)) in arrays.iter().zip(&parts) {
        for (d, mut member) in testkit::mdwriter::build_members(a).into_iter().enumerate() {
            if d == 1 && a.version == "1.2" {
                let (_, _, data_off) = a.placement();
                member[(data_off + DSM_MISMATCH_IN_DATA) as usize] ^= 0x5a;
            }
            files[d]
                .write_all_at(&member, start * SECTOR)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The demo VM, for `rescue attach` and the menu's `v`: a guest disk
/// (GPT, ext4 `DEMOVM` with a README) as a VMDK snapshot chain in
/// `vms/demo-vm/` of a folder that goes onto the destination disk.
fn demo_vm(dir: &Path) -> Result<std::path::PathBuf, String> {
    let top = dir.join("dest-files");
    let _ = std::fs::remove_dir_all(&top);
    let files = dir.join("demo-vm-files");
    std::fs::create_dir_all(files.join("home/admin")).map_err(|e| e.to_string())?;
    std::fs::write(
        files.join("home/admin/README.txt"),
        "A file inside the demo VM's disk (ext4 in partition 1 of a VMDK snapshot chain).\n\
         Attach it read-only: rescue attach /mnt/dest/vda/vms/demo-vm/demo-vm-000001.vmdk\n\
         then: rescue mount /dev/nbd0p1 (or the menu's v).\n",
    )
    .map_err(|e| e.to_string())?;
    let (disk, _) = crate::guest::guest_disk(dir, &files, "DEMOVM")?;
    let raw = dir.join("demo-vm.raw");
    std::fs::write(&raw, disk).map_err(|e| e.to_string())?;
    crate::guest::vmdk_chain(&raw, &top.join("vms/demo-vm"), "demo-vm")?;
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_dir_all(&files);
    Ok(top)
}

pub fn demo_disks(dir: &Path, fresh: bool) -> Result<Vec<Disk>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let boot = dir.join("esxi-boot.img");
    let raid = dir.join("raid-ld.img");
    let dying = dir.join("dying-ssd.img");
    let dest = dir.join("dest.img");
    let dsm = [dir.join("dsm-disk1.img"), dir.join("dsm-disk2.img")];
    let stamp = dir.join(".complete");
    // Bumped whenever the disk set changes, so old demo disks are remade.
    const STAMP: &str = "demo disks v4\n";
    if fresh || std::fs::read_to_string(&stamp).ok().as_deref() != Some(STAMP) {
        let _ = std::fs::remove_file(&stamp);
        let boot_size = 3584 * MIB;
        sparse_file(&boot, boot_size)?;
        esxi_gpt(&boot, false)?;
        bootbanks(&boot, dir)?;
        if let Some(fx) = vmfs5_fixture() {
            write_gz_at(&fx, &boot, 2_367_488 * SECTOR)?;
        }
        // The raid copy: the same bytes on a 1.5x larger drive, GPT rewritten
        // for the new size and compacted.
        let raid_size = boot_size / 2 * 3;
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&boot)
            .arg(&raid))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&raid)
            .and_then(|f| f.set_len(raid_size))
            .map_err(|e| format!("{}: {e}", raid.display()))?;
        run(Command::new("sgdisk").arg("-Z").arg(&raid))?;
        esxi_gpt(&raid, true)?;
        // A dying SSD with something worth rescuing on it.
        sparse_file(&dying, 128 * MIB)?;
        let mut pattern = Vec::with_capacity(MIB as usize);
        for i in 0..(MIB / 8) {
            pattern.extend_from_slice(&(i * 2654435761).to_le_bytes());
        }
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&dying)
            .map_err(|e| e.to_string())?;
        for m in (0..128).step_by(4) {
            f.write_all_at(&pattern, m * MIB)
                .map_err(|e| e.to_string())?;
        }
        let conf: String = DYING_BAD_SECTORS
            .iter()
            .map(|s| {
                format!(
                    "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{s}\"\nonce = \"off\"\n\n"
                )
            })
            .collect();
        std::fs::write(dir.join("dying-ssd.blkdebug"), conf).map_err(|e| e.to_string())?;
        sparse_file(&dest, 4096 * MIB)?;
        let dest_files = demo_vm(dir)?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RESCUEDEST", "-d"])
            .arg(&dest_files)
            .arg(&dest))?;
        let _ = std::fs::remove_dir_all(&dest_files);
        dsm_pair(dir, [&dsm[0], &dsm[1]])?;
        std::fs::write(&stamp, STAMP).map_err(|e| e.to_string())?;
    }
    let mut dying_disk = Disk::new(&dying, Controller::Nvme, "DYING-SSD-0001");
    dying_disk.drive_override = Some(format!(
        "format=raw,file.driver=blkdebug,file.config={},file.image.filename={}",
        dir.join("dying-ssd.blkdebug").display(),
        dying.display()
    ));
    Ok(vec![
        Disk::new(&boot, Controller::Ahci, "ESXI-BOOT-0001").model("ESXi BOOT SSD"),
        Disk::new(&raid, Controller::MegasasGen2, "RAID-LD-0001").model("RAID LD"),
        dying_disk,
        // After the destination, so that it stays /dev/vda.
        Disk::new(&dest, Controller::VirtioBlk, "DEST-0001"),
        Disk::new(&dsm[0], Controller::VirtioBlk, "DSM-DISK-1"),
        Disk::new(&dsm[1], Controller::VirtioBlk, "DSM-DISK-2"),
    ])
}
