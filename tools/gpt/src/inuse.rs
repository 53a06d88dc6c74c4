//! Refuse to write to a disk that something is using: a mounted filesystem
//! or active swap on it or one of its partitions, or a holder (md array,
//! device-mapper, LVM) stacked on it. Regular files (images) are not checked.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Checks `path` against the live system (`/sys`, `/proc/mounts`,
/// `/proc/swaps`). Ok for regular files.
pub fn check_not_in_use(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_block_device() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_with(
        &canonical,
        Path::new("/sys/class/block"),
        &format!("{mounts}\n{swaps}"),
    )
}

/// The check on given inputs: `dev` a canonical device path (`/dev/sdb`),
/// `sys_class_block` the directory with one entry per block device,
/// `mounts` the text of /proc/mounts (and /proc/swaps): first field per line.
pub fn check_with(dev: &Path, sys_class_block: &Path, mounts: &str) -> Result<(), String> {
    let name = dev
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no device name", dev.display()))?;
    let mut names = vec![name.to_string()];
    // Partitions are subdirectories of the disk's sysfs directory that have
    // a `partition` file.
    if let Ok(rd) = std::fs::read_dir(sys_class_block.join(name)) {
        for e in rd.flatten() {
            if e.path().join("partition").exists() {
                if let Some(n) = e.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
        }
    }
    let mut problems = Vec::new();
    for n in &names {
        let holders = sys_class_block.join(n).join("holders");
        if let Ok(rd) = std::fs::read_dir(&holders) {
            let h: Vec<String> = rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect();
            if !h.is_empty() {
                problems.push(format!(
                    "{n} is held by {} (md array, device-mapper or LVM)",
                    h.join(", ")
                ));
            }
        }
        let dev_path = format!("/dev/{n}");
        // /proc/swaps lines have the same leading fields (path, type...).
        for (src, at, _) in blockdev::sys::parse_mounts(mounts) {
            let canon = std::fs::canonicalize(&src)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| src.clone());
            if canon == dev_path {
                problems.push(format!("{n} is in use: {src} at {at}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refusing to write to {}: {}. Unmount, swapoff or stop what uses it first",
            dev.display(),
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "gpt-inuse-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(d.join("sdx/holders")).unwrap();
        std::fs::create_dir_all(d.join("sdx/sdx1")).unwrap();
        std::fs::write(d.join("sdx/sdx1/partition"), "1\n").unwrap();
        std::fs::create_dir_all(d.join("sdx1/holders")).unwrap();
        d
    }

    #[test]
    fn idle_disk_passes() {
        let sys = fake_sys();
        assert_eq!(
            check_with(Path::new("/dev/sdx"), &sys, "/dev/sda1 / ext4 rw 0 0\n"),
            Ok(())
        );
        let _ = std::fs::remove_dir_all(sys);
    }

    #[test]
    fn mounted_partition_or_holder_refuses() {
        let sys = fake_sys();
        let e =
            check_with(Path::new("/dev/sdx"), &sys, "/dev/sdx1 /mnt vfat rw 0 0\n").unwrap_err();
        assert!(e.contains("sdx1 is in use"), "{e}");
        std::fs::create_dir_all(sys.join("sdx/holders/md0")).unwrap();
        let e = check_with(Path::new("/dev/sdx"), &sys, "").unwrap_err();
        assert!(e.contains("held by md0"), "{e}");
        let _ = std::fs::remove_dir_all(sys);
    }

    #[test]
    fn regular_files_are_not_checked() {
        let p = std::env::temp_dir().join(format!("gpt-inuse-file-{}", std::process::id()));
        std::fs::write(&p, b"x").unwrap();
        assert_eq!(check_not_in_use(&p), Ok(()));
        let _ = std::fs::remove_file(p);
    }
}
