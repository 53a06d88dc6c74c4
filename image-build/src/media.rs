//! The USB stick image `out/rescue-usb.img`: GPT with an EFI system
//! partition that boots through Debian's signed shim and signed GRUB (so
//! Secure Boot may stay on), holding the kernel, the initramfs and the
//! shared boot menu. Built without mounting anything (mtools, sgdisk).
//!
//! Layout (512-byte sectors): protective MBR + GPT; partition 1, the ESP
//! (FAT32, label RESCUE) from LBA 2048. Not yet: legacy BIOS boot and the
//! optional RESCUEDATA partition (see the README's status).

use crate::{fetch_package, pxe, run, Error};
use std::path::Path;
use std::process::Command;

const SECTOR: u64 = 512;
const ESP_FIRST_LBA: u64 = 2048;
/// Fixed GUIDs and volume id: the same inputs give the same image.
const DISK_GUID: &str = "52455343-5545-4200-8000-000000000001";
const ESP_GUID: &str = "52455343-5545-4200-8000-000000000002";
const FAT_VOLUME_ID: &str = "52455343";
/// Timestamp of every file and directory on the ESP (2000-01-01).
const FIXED_TIME: u64 = 946_684_800;

pub struct UsbSummary {
    pub bytes: u64,
    pub esp_bytes: u64,
}

/// Builds the image at `path` from `vmlinuz` and `initramfs`, taking shim and
/// GRUB from Debian's shim-signed and grub-efi-amd64-signed packages
/// (downloaded into `cache`).
pub fn build_usb(
    path: &Path,
    work: &Path,
    cache: &Path,
    vmlinuz: &[u8],
    initramfs: &[u8],
) -> Result<UsbSummary, Error> {
    let shim = fetch_package(cache, "shim-signed")?.join("usr/lib/shim/shimx64.efi.signed");
    let grub = fetch_package(cache, "grub-efi-amd64-signed")?
        .join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed");
    let _ = std::fs::remove_dir_all(work);
    let files = work.join("files");
    std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
    let grub_cfg = pxe::grub_cfg("/vmlinuz", "/initramfs.img");
    let copies: Vec<(&str, Vec<u8>)> = vec![
        ("EFI/BOOT/BOOTX64.EFI", read(&shim)?),
        ("EFI/BOOT/grubx64.efi", read(&grub)?),
        // Debian's signed GRUB reads its config from EFI/debian.
        ("EFI/debian/grub.cfg", grub_cfg.clone().into_bytes()),
        ("EFI/BOOT/grub.cfg", grub_cfg.into_bytes()),
        ("vmlinuz", vmlinuz.to_vec()),
        ("initramfs.img", initramfs.to_vec()),
    ];
    let payload: u64 = copies.iter().map(|(_, b)| b.len() as u64).sum();
    // FAT32 wants at least 65525 clusters; 64 MiB with 512-byte clusters is
    // enough headroom for a kernel and initramfs of today's size.
    let esp_bytes = (payload + (16 << 20))
        .max(64 << 20)
        .next_multiple_of(1 << 20);
    let esp = work.join("esp.img");
    std::fs::File::create(&esp)
        .and_then(|f| f.set_len(esp_bytes))
        .map_err(|e| format!("{}: {e}", esp.display()))?;
    run(Command::new("mkfs.vfat")
        .args([
            "-F",
            "32",
            "-S",
            "512",
            "-s",
            "1",
            "-n",
            "RESCUE",
            "-i",
            FAT_VOLUME_ID,
            "--invariant",
        ])
        .arg(&esp))
    .map_err(|e| format!("{e}\n(mkfs.vfat comes with dosfstools)"))?;
    for dir in ["/EFI", "/EFI/BOOT", "/EFI/debian"] {
        run(Command::new("mmd")
            .env("SOURCE_DATE_EPOCH", FIXED_TIME.to_string())
            .arg("-i")
            .arg(esp.display().to_string())
            .arg(format!("::{dir}")))
        .map_err(|e| format!("{e}\n(mmd comes with mtools)"))?;
    }
    for (i, (dest, bytes)) in copies.iter().enumerate() {
        let src = files.join(format!("f{i}"));
        std::fs::write(&src, bytes).map_err(|e| e.to_string())?;
        // A fixed timestamp (mcopy -m keeps it) for reproducible images.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FIXED_TIME);
        std::fs::File::options()
            .write(true)
            .open(&src)
            .and_then(|f| f.set_modified(t))
            .map_err(|e| e.to_string())?;
        run(Command::new("mcopy")
            .env("SOURCE_DATE_EPOCH", FIXED_TIME.to_string())
            .args(["-m", "-i"])
            .arg(&esp)
            .arg(&src)
            .arg(format!("::/{dest}")))?;
    }
    // The disk: GPT, the ESP from LBA 2048, 1 MiB spare at the end.
    let total = ESP_FIRST_LBA * SECTOR + esp_bytes + (1 << 20);
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)
        .and_then(|f| f.set_len(total))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    run(Command::new("sgdisk")
        .args(["-a", "1", "-U", DISK_GUID])
        .arg(format!("-n1:{ESP_FIRST_LBA}:+{}", esp_bytes / SECTOR - 1))
        .args(["-t1:EF00", "-c1:EFI system", "-u"])
        .arg(format!("1:{ESP_GUID}"))
        .arg(&tmp))
    .map_err(|e| format!("{e}\n(sgdisk comes with gdisk)"))?;
    let esp_data = read(&esp)?;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::options()
            .write(true)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        f.write_all_at(&esp_data, ESP_FIRST_LBA * SECTOR)
            .map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_dir_all(work);
    Ok(UsbSummary {
        bytes: total,
        esp_bytes,
    })
}

fn read(p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}
