//! VM disks for tests and the demo: a guest disk image (GPT, one ext4
//! partition holding a folder's files, or any filesystem image as that
//! partition) and a VMDK snapshot chain of it made by qemu-img.

use std::path::Path;
use std::process::Command;

const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// An ext4 filesystem image of `bytes` bytes at `out` holding the files
/// of `files` (`mkfs.ext4 -d`), labelled `label` if given.
pub fn ext4_of(files: &Path, out: &Path, bytes: u64, label: Option<&str>) -> Result<(), String> {
    std::fs::File::create(out)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F"]);
    if let Some(l) = label {
        cmd.args(["-L", l]);
    }
    run(cmd.arg("-d").arg(files).arg(out))
}

/// A 48 MiB guest disk: GPT with one partition (LBA 2048, 46 MiB, name
/// `guest`) holding ext4 labelled `label` with the files of `files`.
/// Gives the disk and the partition's bytes; scratch files go to `dir`.
pub fn guest_disk(dir: &Path, files: &Path, label: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let part = dir.join(format!("{label}.part"));
    ext4_of(files, &part, 46 * MIB as u64, Some(label))?;
    let bytes = std::fs::read(&part).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&part);
    Ok((gpt_disk(&bytes), bytes))
}

/// Where [`gpt_disk`] puts its partition: 1 MiB (LBA 2048).
pub const PART_START: u64 = MIB as u64;

/// A physical disk of 512-byte sectors for a filesystem image `part` (a
/// whole number of sectors): GPT with one partition (slot 1, basic data,
/// name `guest`) holding exactly `part` at [`PART_START`], and 1 MiB after
/// it for the backup GPT.
pub fn gpt_disk(part: &[u8]) -> Vec<u8> {
    let len = part.len() as u64;
    assert_eq!(len % 512, 0, "a partition of whole sectors");
    let mut disk = testkit::gptdisk::disk(
        (PART_START + len + MIB as u64) / 512,
        512,
        &[testkit::gptdisk::Part {
            slot: 1,
            type_guid: testkit::gptdisk::BASIC,
            first: PART_START / 512,
            last: (PART_START + len) / 512 - 1,
            name: "guest",
        }],
    );
    disk[PART_START as usize..(PART_START + len) as usize].copy_from_slice(part);
    disk
}

/// `folder/NAME.vmdk`, a hosted sparse VMDK of the raw disk `raw`, and
/// `folder/NAME-000001.vmdk`, a snapshot over it (qemu-img).
pub fn vmdk_chain(raw: &Path, folder: &Path, name: &str) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "vmdk"])
        .arg(raw)
        .arg(folder.join(format!("{name}.vmdk"))))?;
    run(Command::new("qemu-img").current_dir(folder).args([
        "create",
        "-q",
        "-f",
        "vmdk",
        "-b",
        &format!("{name}.vmdk"),
        "-F",
        "vmdk",
        &format!("{name}-000001.vmdk"),
    ]))
}
