//! Probe speed with 16 emulated disks (AHCI, NVMe, virtio-blk, virtio-scsi),
//! measured inside the guest by `probe --timing`: identity from sysfs plus
//! health queries and signature reads, concurrently per disk.

use qemu_tests::*;

fn main() {
    let image = Image::built();
    let dir = temp_dir("bench-probe");
    let kinds = [
        Controller::Ahci,
        Controller::Nvme,
        Controller::VirtioBlk,
        Controller::VirtioScsi,
    ];
    let disks: Vec<Disk> = (0..16)
        .map(|i| {
            let p = make_disk(
                &dir.path().join(format!("d{i}.img")),
                64 << 20,
                &format!("d{i}"),
            );
            Disk::new(p, kinds[i % 4], &format!("BENCH{i:02}"))
        })
        .collect();
    let script = "probe --timing --no-io\nprobe --timing\nprobe --timing\nprobe --timing\n";
    let (sections, transcript) = run_script(&image, VmConfig::new(disks), script);
    for s in &sections {
        let line = s
            .output
            .lines()
            .find(|l| l.contains("surveyed in"))
            .unwrap_or_else(|| panic!("{transcript}"));
        println!("{:<24} {}", s.command, line.trim());
    }
}
