//! Files hit, end to end through every layer: the real ESXi-written VMFS5
//! fixture is made to hold a VM whose disk has a guest filesystem, without
//! a VMFS writer: the file `bigger` (128 MiB, allocated) gets the bytes of
//! a guest disk (GPT, ext4 holding `victim.bin` and others), and the
//! descriptor `normal.vmdk` (resident, edited in place at its length) now
//! names `bigger` as its flat extent. QEMU's blkdebug fails reads of one
//! 4 KiB block under `victim.bin` and one in the guest's free space. In
//! the guest the disk is imaged, and `rescue files-hit` names the guest
//! file with its byte range and the free-space hit.

use qemu_tests::*;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;
use testkit::gptdisk::{self, Part};

const T: Duration = Duration::from_secs(900);
const MIB: u64 = 1 << 20;

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
fn files_hit_names_a_guest_file_inside_a_vm_disk_inside_the_datastore() {
    if fixture("vmfs/vmfs5.bin.gz").is_none() {
        return; // missing, and RESCUE_ALLOW_MISSING_FIXTURES=1 allows skipping
    }
    let image = Image::built();
    let dir = temp_dir("files-hit-vmfs");
    let d = dir.path();
    let ds = d.join("vmfs5.img");
    fixture_disk("vmfs5.bin.gz", &ds);

    // The guest disk: 128 MiB, GPT, ext4 (4 KiB blocks) on 1..127 MiB.
    let files = d.join("files");
    std::fs::create_dir_all(files.join("docs")).unwrap();
    let mut victim = vec![0u8; 256 * 1024];
    testkit::mdwriter::pattern(21, 0, &mut victim);
    std::fs::write(files.join("docs/victim.bin"), &victim).unwrap();
    std::fs::write(files.join("hello.txt"), "hello\n").unwrap();
    let part = d.join("part.ext4");
    std::fs::File::create(&part)
        .unwrap()
        .set_len(126 * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "GUEST", "-d"])
        .arg(&files)
        .arg(&part));
    // The block of victim.bin's 11th 4 KiB (file bytes 40960..45056).
    let blocks = run(Command::new("debugfs")
        .args(["-R", "blocks /docs/victim.bin"])
        .arg(&part));
    let block: u64 = blocks.split_whitespace().nth(10).unwrap().parse().unwrap();
    let mut guest = gptdisk::disk(
        128 * MIB / 512,
        512,
        &[Part {
            slot: 1,
            type_guid: gptdisk::BASIC,
            first: 2048,
            last: 2048 + 126 * MIB / 512 - 1,
            name: "guest",
        }],
    );
    let p = std::fs::read(&part).unwrap();
    guest[MIB as usize..(MIB as usize + p.len())].copy_from_slice(&p);
    // Guest-disk offsets of the two bad blocks: in the file, and 100 MiB
    // into the partition (free: the files and all metadata are near the
    // start with flex_bg).
    let in_file = MIB + block * 4096;
    let in_free = MIB + 100 * MIB;

    // `bigger` gets the guest disk; its device offsets give the sectors.
    let (in_file_sector, in_free_sector) = {
        let sources = [ds.display().to_string()];
        let opened = vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: &sources,
            ..Default::default()
        })
        .unwrap();
        let ino = opened.volume.lookup("/bigger").unwrap();
        assert_eq!(ino.size, guest.len() as u64);
        let out = std::fs::OpenOptions::new().write(true).open(&ds).unwrap();
        let mut sectors = (0, 0);
        for x in opened.volume.device_extents(&ino).unwrap() {
            let at = opened.origins[x.device].1 + x.device_offset;
            let piece = &guest[x.file_offset as usize..(x.file_offset + x.len) as usize];
            out.write_all_at(piece, at).unwrap();
            for (want, slot) in [(in_file, &mut sectors.0), (in_free, &mut sectors.1)] {
                if (x.file_offset..x.file_offset + x.len).contains(&want) {
                    *slot = (at + want - x.file_offset) / 512;
                }
            }
        }
        assert!(sectors.0 > 0 && sectors.1 > 0, "{sectors:?}");
        sectors
    };
    // normal.vmdk (resident in its file descriptor) names `bigger` now.
    {
        let old = br#"RW 144703488 VMFS "normal-flat.vmdk""#;
        let mut new = br#"RW 262144 VMFS "bigger""#.to_vec();
        new.extend(b"\n#");
        new.resize(old.len(), b'#');
        let mut img = std::fs::read(&ds).unwrap();
        let mut found = 0;
        let mut i = 0;
        while let Some(k) = img[i..].windows(old.len()).position(|w| w == old) {
            img[i + k..i + k + old.len()].copy_from_slice(&new);
            found += 1;
            i += k + old.len();
        }
        assert!(found >= 1, "normal.vmdk's extent line not found");
        std::fs::write(&ds, &img).unwrap();
    }
    let conf: String = [in_file_sector, in_free_sector]
        .into_iter()
        .flat_map(|s| s..s + 8)
        .map(|s| {
            format!(
                "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{s}\"\nonce = \"off\"\n\n"
            )
        })
        .collect();
    std::fs::write(d.join("ds.blkdebug"), conf).unwrap();
    let ds_hash = sha256_file(&ds);
    let dest = d.join("dest.img");
    std::fs::File::create(&dest)
        .unwrap()
        .set_len(4096 * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "RESCUEDEST"])
        .arg(&dest));

    let mut ds_disk = Disk::new(&ds, Controller::VirtioBlk, "DATASTORE-1");
    ds_disk.drive_override = Some(format!(
        "format=raw,file.driver=blkdebug,file.config={},file.image.filename={}",
        d.join("ds.blkdebug").display(),
        ds.display()
    ));
    let disks = vec![
        ds_disk,
        Disk::new(&dest, Controller::VirtioBlk, "DEST-0009"),
    ];
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    let (out, code) = vm.shell(
        "rescue dest mount /dev/vdb --yes && rescue image /dev/vda /mnt/dest/vdb/ds.img --map /mnt/dest/vdb/ds.map",
        T,
    );
    assert_eq!(code, 1, "bad areas remain: exit 1\n{out}");
    let (out, code) = vm.shell(
        "rescue files-hit /mnt/dest/vdb/ds.img --map /mnt/dest/vdb/ds.map",
        T,
    );
    assert_eq!(code, 1, "{out}");
    // The 11th block of the file: file bytes 40960..45056.
    let from = 10 * 4096;
    assert!(out.contains("/docs/victim.bin"), "{out}");
    assert!(
        out.contains(&format!("bytes {from}..{} (4096 bytes)", from + 4096)),
        "{out}"
    );
    assert!(out.contains("normal.vmdk"), "{out}");
    assert!(!out.contains("hello.txt"), "{out}");
    assert!(out.to_lowercase().contains("free space"), "{out}");
    let (out, code) = vm.shell(
        "rescue attach; cat /mnt/dest/vdb/ds.img.files-hit.txt | head -5",
        T,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing attached"), "{out}");
    vm.power_off_from_shell();
    vm.wait_exit_ok(T);
    assert_eq!(sha256_file(&ds), ds_hash, "the datastore disk was written");
}
