//! VM disks for tests and the demo: a guest disk image (GPT, one ext4
//! partition holding a folder's files) and a VMDK snapshot chain of it
//! made by qemu-img.

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

/// A 48 MiB guest disk: GPT with one partition (LBA 2048, 46 MiB, name
/// `guest`) holding ext4 labelled `label` with the files of `files`.
/// Gives the disk and the partition's bytes; scratch files go to `dir`.
pub fn guest_disk(dir: &Path, files: &Path, label: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let part = dir.join(format!("{label}.part"));
    std::fs::File::create(&part)
        .and_then(|f| f.set_len(46 * MIB as u64))
        .map_err(|e| format!("{}: {e}", part.display()))?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(files)
        .arg(&part))?;
    let bytes = std::fs::read(&part).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&part);
    let mut disk = testkit::gptdisk::disk(
        (48 * MIB / 512) as u64,
        512,
        &[testkit::gptdisk::Part {
            slot: 1,
            type_guid: testkit::gptdisk::BASIC,
            first: 2048,
            last: 2048 + (46 * MIB / 512) as u64 - 1,
            name: "guest",
        }],
    );
    disk[MIB..MIB + bytes.len()].copy_from_slice(&bytes);
    Ok((disk, bytes))
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
