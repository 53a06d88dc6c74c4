//! Boot media: the USB stick image `out/rescue-usb.img` and the hybrid ISO
//! `out/rescue.iso`, built without mounting anything (mtools, sgdisk,
//! syslinux's mtools installer, xorriso), byte-reproducibly.
//!
//! USB layout (512-byte sectors): protective MBR carrying syslinux's
//! gptmbr.bin boot code + GPT; partition 1, the EFI system partition (FAT16,
//! label RESCUE, legacy-BIOS-bootable attribute, sized to its content plus
//! 1 MiB) from LBA 2048 holding Debian's signed shim and GRUB for UEFI
//! (Secure Boot may stay on) and syslinux for BIOS, the kernel, the
//! initramfs and the shared boot menu; optionally partition 2, RESCUEDATA
//! ([`add_data_partition`]).
//!
//! ISO layout: the kernel and initramfs once, as ISO9660 files read by
//! isolinux (BIOS) and by GRUB (UEFI, from a small FAT image holding only
//! shim, GRUB and a config that searches for the ISO9660 volume).

use crate::{fetch_package, pxe, run, Error};
use std::path::Path;
use std::process::Command;

const SECTOR: u64 = 512;
const ESP_FIRST_LBA: u64 = 2048;
/// Fixed GUIDs and volume id: the same inputs give the same image.
const DISK_GUID: &str = "52455343-5545-4200-8000-000000000001";
const ESP_GUID: &str = "52455343-5545-4200-8000-000000000002";
const FAT_VOLUME_ID: &str = "52455343";
/// Timestamp of every file and directory on the media (2000-01-01).
const FIXED_TIME: u64 = 946_684_800;
/// Boot code and loaders from Debian's syslinux-common and isolinux.
const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

pub struct UsbSummary {
    pub bytes: u64,
    pub esp_bytes: u64,
}

fn read(p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// A command that writes timestamps: give it the fixed time.
fn fixed_time(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("SOURCE_DATE_EPOCH", FIXED_TIME.to_string());
    c
}

/// FAT geometry of a boot image: its size and sectors per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatGeometry {
    pub bytes: u64,
    pub sectors_per_cluster: u32,
}

/// Clusters a FAT16 volume may have (Microsoft's FAT specification: fewer
/// than 4085 is FAT12, more than 65524 is FAT32), with room to spare for
/// mkfs.fat's rounding and alignment.
const FAT16_MIN_CLUSTERS: u64 = 4200;
const FAT16_MAX_CLUSTERS: u64 = 65_000;

/// Sizes a FAT16 image for files of `sizes` bytes in `dirs` directories
/// plus `margin` bytes free, rounded up to `align`: the smallest cluster
/// size that keeps the volume FAT16. FAT16 rather than FAT32, which needs
/// at least 65525 clusters (64 MiB at 512-byte clusters) whatever the
/// content: UEFI reads FAT12/16/32 on removable media, and syslinux
/// installs on FAT16. None when even 32 KiB clusters (FAT16's largest,
/// about 2 GiB) are too small.
pub fn fat16_geometry(sizes: &[u64], dirs: u64, margin: u64, align: u64) -> Option<FatGeometry> {
    for spc in [1u32, 2, 4, 8, 16, 32, 64] {
        let cluster = SECTOR * u64::from(spc);
        let data: u64 = sizes
            .iter()
            .map(|s| s.div_ceil(cluster).max(1) * cluster)
            .sum::<u64>()
            + dirs * cluster
            + margin;
        let clusters = data.div_ceil(cluster);
        // Boot sector and reserved sectors, two FATs of 2 bytes a cluster,
        // the 512-entry root directory, and up to a cluster of padding that
        // mkfs.fat puts before the data area to align it.
        let fats = 2 * ((clusters + 2) * 2).div_ceil(SECTOR) * SECTOR;
        let overhead = 4 * SECTOR + fats + 512 * 32 + cluster;
        let bytes = (data + overhead)
            .max(FAT16_MIN_CLUSTERS * cluster + overhead)
            .next_multiple_of(align);
        if (bytes - overhead) / cluster <= FAT16_MAX_CLUSTERS {
            return Some(FatGeometry {
                bytes,
                sectors_per_cluster: spc,
            });
        }
    }
    None
}

/// Directories every boot image has: shim and GRUB in EFI/BOOT, Debian's
/// signed GRUB's config in EFI/debian.
const ESP_DIRS: [&str; 3] = ["/EFI", "/EFI/BOOT", "/EFI/debian"];

/// Makes the FAT16 image `img` holding `copies` (path in the volume,
/// bytes) with `margin` bytes free, all with the fixed time; `syslinux`
/// also installs syslinux's boot sector and ldlinux.sys. Returns its size.
pub(crate) fn make_fat(
    img: &Path,
    files: &Path,
    copies: &[(&str, Vec<u8>)],
    margin: u64,
    align: u64,
    syslinux: bool,
) -> Result<u64, Error> {
    std::fs::create_dir_all(files).map_err(|e| format!("{}: {e}", files.display()))?;
    let mut sizes: Vec<u64> = copies.iter().map(|(_, b)| b.len() as u64).collect();
    if syslinux {
        // ldlinux.sys and ldlinux.c32: 175 KiB with syslinux 6.04.
        sizes.push(256 << 10);
    }
    let geo = fat16_geometry(&sizes, ESP_DIRS.len() as u64, margin, align).ok_or_else(|| {
        format!(
            "{}: boot files of {} bytes do not fit a FAT16 volume",
            img.display(),
            sizes.iter().sum::<u64>()
        )
    })?;
    std::fs::File::create(img)
        .and_then(|f| f.set_len(geo.bytes))
        .map_err(|e| format!("{}: {e}", img.display()))?;
    run(Command::new("mkfs.vfat")
        .args(["-F", "16", "-S", "512", "-s"])
        .arg(geo.sectors_per_cluster.to_string())
        .args(["-n", "RESCUE", "-i", FAT_VOLUME_ID, "--invariant"])
        .arg(img))
    .map_err(|e| format!("{e}\n(mkfs.vfat comes with dosfstools)"))?;
    for dir in ESP_DIRS {
        run(fixed_time("mmd").arg("-i").arg(img).arg(format!("::{dir}")))
            .map_err(|e| format!("{e}\n(mmd comes with mtools)"))?;
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FIXED_TIME);
    for (i, (dest, bytes)) in copies.iter().enumerate() {
        let src = files.join(format!("f{i}"));
        std::fs::write(&src, bytes).map_err(|e| e.to_string())?;
        std::fs::File::options()
            .write(true)
            .open(&src)
            .and_then(|f| f.set_modified(t))
            .map_err(|e| e.to_string())?;
        run(fixed_time("mcopy")
            .args(["-m", "-i"])
            .arg(img)
            .arg(&src)
            .arg(format!("::/{dest}")))?;
    }
    if syslinux {
        run(fixed_time("syslinux").arg("--install").arg(img))
            .map_err(|e| format!("{e}\n(syslinux comes with the syslinux package)"))?;
    }
    Ok(geo.bytes)
}

/// Shim and GRUB from Debian's shim-signed and grub-efi-amd64-signed
/// packages (downloaded into `cache`), as named on the ESP.
fn efi_loaders(cache: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, Error> {
    let shim = fetch_package(cache, "shim-signed")?.join("usr/lib/shim/shimx64.efi.signed");
    let grub = fetch_package(cache, "grub-efi-amd64-signed")?
        .join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed");
    Ok(vec![
        ("EFI/BOOT/BOOTX64.EFI", read(&shim)?),
        ("EFI/BOOT/grubx64.efi", read(&grub)?),
    ])
}

/// Free space left on the stick's ESP: room for a `rescue.script` or an
/// edited boot menu, not for data (that is RESCUEDATA's job).
const USB_ESP_MARGIN: u64 = 1 << 20;

/// Builds the stick's ESP image `esp` (FAT16 with shim, GRUB, syslinux,
/// kernel, initramfs and the menus, sized to them); returns its size.
fn build_esp(
    esp: &Path,
    files: &Path,
    cache: &Path,
    vmlinuz: &[u8],
    initramfs: &[u8],
) -> Result<u64, Error> {
    let grub_cfg = pxe::grub_cfg("/vmlinuz", "/initramfs.img");
    let mut copies = efi_loaders(cache)?;
    copies.extend([
        // Debian's signed GRUB reads its config from EFI/debian.
        ("EFI/debian/grub.cfg", grub_cfg.clone().into_bytes()),
        ("EFI/BOOT/grub.cfg", grub_cfg.into_bytes()),
        ("vmlinuz", vmlinuz.to_vec()),
        ("initramfs.img", initramfs.to_vec()),
        // Legacy BIOS: syslinux in this same FAT.
        (
            "syslinux.cfg",
            pxe::pxelinux_cfg("/vmlinuz", "/initramfs.img").into_bytes(),
        ),
    ]);
    make_fat(esp, files, &copies, USB_ESP_MARGIN, 1 << 20, true)
}

/// Builds the USB image at `path`. Shim and GRUB come from Debian's
/// shim-signed and grub-efi-amd64-signed packages (downloaded into `cache`).
pub fn build_usb(
    path: &Path,
    work: &Path,
    cache: &Path,
    vmlinuz: &[u8],
    initramfs: &[u8],
) -> Result<UsbSummary, Error> {
    let _ = std::fs::remove_dir_all(work);
    let esp = work.join("esp.img");
    let esp_bytes = build_esp(&esp, &work.join("files"), cache, vmlinuz, initramfs)?;
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
        // Attribute bit 2, legacy BIOS bootable: what gptmbr.bin starts.
        .args(["-A", "1:set:2"])
        .arg(&tmp))
    .map_err(|e| format!("{e}\n(sgdisk comes with gdisk)"))?;
    let esp_data = read(&esp)?;
    // gptmbr.bin's boot code in the protective MBR: its 440 code bytes; the
    // partition entries and signature stay sgdisk's.
    let mbr = read(Path::new(GPTMBR))
        .map_err(|e| format!("{e}\n(gptmbr.bin comes with syslinux-common)"))?;
    let code = mbr
        .get(..440)
        .ok_or("gptmbr.bin is shorter than 440 bytes")?;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::options()
            .write(true)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        f.write_all_at(&esp_data, ESP_FIRST_LBA * SECTOR)
            .map_err(|e| e.to_string())?;
        f.write_all_at(code, 0).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_dir_all(work);
    Ok(UsbSummary {
        bytes: total,
        esp_bytes,
    })
}

/// The file whose presence identifies this build's ISO to GRUB's `search`:
/// named after the payload's SHA-256, so another rescue or Debian medium in
/// the same machine (both have `/.disk/info`) is not taken for it.
pub fn iso_id_file(vmlinuz: &[u8], initramfs: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(vmlinuz);
    h.update(initramfs);
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("/.disk/id/{hex}")
}

/// The ISO's EFI boot image: shim, GRUB, and a GRUB config that finds the
/// ISO9660 filesystem (on a CD, or the whole stick when the hybrid ISO was
/// written to one) and reads `/boot/grub/grub.cfg` from there, so the
/// kernel and initramfs are stored once, in the ISO9660 tree. Debian's own
/// ISOs do the same (their efi.img holds no kernel). Debian's signed GRUB
/// reads `EFI/debian/grub.cfg` of the volume it was loaded from.
fn build_iso_efi_img(img: &Path, work: &Path, cache: &Path, id_file: &str) -> Result<u64, Error> {
    let stub = format!(
        "search --no-floppy --file --set=root {id_file}\nset prefix=($root)/boot/grub\nsource $prefix/grub.cfg\n"
    );
    let mut copies = efi_loaders(cache)?;
    copies.extend([
        ("EFI/debian/grub.cfg", stub.clone().into_bytes()),
        ("EFI/BOOT/grub.cfg", stub.into_bytes()),
    ]);
    // Read-only medium: no free space wanted beyond the FAT's own rounding.
    make_fat(img, &work.join("efi-files"), &copies, 0, 64 << 10, false)
}

/// The hybrid ISO at `path`: El Torito for BIOS (isolinux) and UEFI (a
/// small ESP image with shim first: Secure Boot works), also bootable
/// written to a stick (isohybrid MBR and GPT). The kernel and initramfs are
/// ISO9660 files that both loaders read. Returns its size.
pub fn build_iso(
    path: &Path,
    work: &Path,
    cache: &Path,
    vmlinuz: &[u8],
    initramfs: &[u8],
) -> Result<u64, Error> {
    let _ = std::fs::remove_dir_all(work);
    let root = work.join("iso");
    std::fs::create_dir_all(root.join("isolinux")).map_err(|e| e.to_string())?;
    let id_file = iso_id_file(vmlinuz, initramfs);
    let efi_img = work.join("efi.img");
    build_iso_efi_img(&efi_img, work, cache, &id_file)?;
    let put = |rel: &str, bytes: &[u8]| -> Result<(), Error> {
        std::fs::write(root.join(rel), bytes).map_err(|e| format!("{rel}: {e}"))
    };
    let isolinux = read(Path::new(ISOLINUX_BIN))
        .map_err(|e| format!("{e}\n(isolinux.bin comes with the isolinux package)"))?;
    put("isolinux/isolinux.bin", &isolinux)?;
    put("isolinux/ldlinux.c32", &read(Path::new(LDLINUX_C32))?)?;
    put(
        "isolinux/isolinux.cfg",
        pxe::pxelinux_cfg("/vmlinuz", "/initramfs.img").as_bytes(),
    )?;
    put("vmlinuz", vmlinuz)?;
    put("initramfs.img", initramfs)?;
    std::fs::create_dir_all(root.join("boot/grub")).map_err(|e| e.to_string())?;
    put("boot/grub/efi.img", &read(&efi_img)?)?;
    // `/.disk/info` as Debian's media have it (Debian's signed GRUB falls
    // back to searching for it), and this build's id file for our search.
    std::fs::create_dir_all(root.join(".disk/id")).map_err(|e| e.to_string())?;
    put(".disk/info", b"rescue disk-rescue appliance\n")?;
    let id_rel = id_file.trim_start_matches('/');
    put(id_rel, b"")?;
    put(
        "boot/grub/grub.cfg",
        pxe::grub_cfg("/vmlinuz", "/initramfs.img").as_bytes(),
    )?;
    // xorriso records file times: make them fixed too.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FIXED_TIME);
    for rel in [
        "isolinux/isolinux.bin",
        "isolinux/ldlinux.c32",
        "isolinux/isolinux.cfg",
        "vmlinuz",
        "initramfs.img",
        "boot/grub/efi.img",
        ".disk/info",
        id_rel,
        ".disk/id",
        ".disk",
        "boot/grub/grub.cfg",
        "boot/grub",
        "boot",
        "isolinux",
        ".",
    ] {
        std::fs::File::open(root.join(rel))
            .and_then(|f| f.set_modified(t))
            .map_err(|e| format!("{rel}: {e}"))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    run(fixed_time("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "RESCUE", "-R", "-J"])
        .args(["-isohybrid-mbr", ISOHDPFX])
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args([
            "-eltorito-alt-boot",
            "-e",
            "boot/grub/efi.img",
            "-no-emul-boot",
            "-isohybrid-gpt-basdat",
        ])
        .arg("-o")
        .arg(&tmp)
        .arg(&root))
    .map_err(|e| format!("{e}\n(xorriso comes with the xorriso package)"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_dir_all(work);
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

const DATA_GUID: &str = "52455343-5545-4200-8000-000000000003";
/// exFAT volume serial of the data partition: fixed, so the stick is
/// byte-reproducible (mkfs.exfat draws a random one).
const DATA_SERIAL: u32 = 0x5245_5343;
/// The label the appliance looks for (`dest::DATA_LABEL`).
pub const DATA_LABEL: &str = "RESCUEDATA";

/// exFAT boot region checksum (exFAT spec 3.4): over the first 11 sectors,
/// skipping VolumeFlags (106, 107) and PercentInUse (112).
pub fn exfat_boot_checksum(region: &[u8]) -> u32 {
    region.iter().enumerate().fold(0u32, |c, (i, &b)| {
        if matches!(i, 106 | 107 | 112) {
            c
        } else {
            c.rotate_right(1).wrapping_add(u32::from(b))
        }
    })
}

/// Makes an exFAT filesystem labelled RESCUEDATA of `size` bytes with
/// mkfs.exfat, then fixes its volume serial and the boot checksums of the
/// main and backup boot regions.
fn make_exfat(path: &Path, size: u64) -> Result<Vec<u8>, Error> {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    run(Command::new("mkfs.exfat")
        .args(["-L", DATA_LABEL])
        .arg(path))
    .map_err(|e| format!("{e}\n(mkfs.exfat comes with exfatprogs)"))?;
    let mut fs = read(path)?;
    let bps = 1usize << fs[108];
    for region in [0usize, 12] {
        let at = region * bps;
        fs[at + 100..at + 104].copy_from_slice(&DATA_SERIAL.to_le_bytes());
        let sum = exfat_boot_checksum(&fs[at..at + 11 * bps]);
        for w in fs[at + 11 * bps..at + 12 * bps].chunks_exact_mut(4) {
            w.copy_from_slice(&sum.to_le_bytes());
        }
    }
    Ok(fs)
}

/// Adds partition 2, exFAT labelled RESCUEDATA, of `size` bytes (rounded
/// up to MiB) after the ESP of a stick image made by [`build_usb`]: the
/// image grows, the backup GPT moves to the new end. All-zero 64 KiB
/// chunks stay holes. Returns the image's new size.
pub fn add_data_partition(img: &Path, work: &Path, size: u64) -> Result<u64, Error> {
    const MIB: u64 = 1 << 20;
    let size = size.div_ceil(MIB) * MIB;
    if size < 16 * MIB {
        return Err("--data-size: at least 16 MiB".into());
    }
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let old = std::fs::metadata(img)
        .map_err(|e| format!("{}: {e}", img.display()))?
        .len();
    // The data partition takes the place of the 1 MiB spare at the end.
    let start = old - MIB;
    let total = start + size + MIB;
    let f = std::fs::File::options()
        .write(true)
        .open(img)
        .map_err(|e| format!("{}: {e}", img.display()))?;
    f.set_len(total).map_err(|e| e.to_string())?;
    run(Command::new("sgdisk")
        .args(["-a", "1", "-e"])
        .arg(format!("-n2:{}:+{}", start / SECTOR, size / SECTOR - 1))
        .args(["-t2:0700", "-c2:RESCUEDATA", "-u"])
        .arg(format!("2:{DATA_GUID}"))
        .arg(img))?;
    let fs = make_exfat(&work.join("data.img"), size)?;
    use std::os::unix::fs::FileExt;
    for (i, chunk) in fs.chunks(64 * 1024).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, start + i as u64 * 64 * 1024)
                .map_err(|e| e.to_string())?;
        }
    }
    f.sync_all().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(work.join("data.img"));
    Ok(total)
}
