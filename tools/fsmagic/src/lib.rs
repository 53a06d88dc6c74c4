//! Which filesystem or volume format a disk or partition holds, from the
//! magic numbers at their documented superblock offsets. Reads at most a few
//! small blocks; never more than the first 68 KiB.
//!
//! | format | where | what |
//! |---|---|---|
//! | ext2/3/4 | superblock at 1024 | magic 0xEF53 (LE) at +56, UUID +104, label +120 (16), compat +92, incompat +96 |
//! | XFS | 0 | "XFSB", UUID at 32, label at 108 (12) |
//! | btrfs | superblock at 65536 | "_BHRfS_M" at +64, fsid +32, label +299 (256) |
//! | NTFS | boot sector | "NTFS    " at 3, serial (the UUID blkid shows) at 72; label from `$Volume` ([`ntfs`]) |
//! | exFAT | boot sector | "EXFAT   " at 3 |
//! | FAT12/16 | boot sector | 0x55AA at 510, "FAT1" at 54, label at 43 (11) |
//! | FAT32 | boot sector | 0x55AA at 510, "FAT32   " at 82, label at 71 (11) |
//! | swap | 4096-byte page | "SWAPSPACE2" at 4086, UUID at 1036, label at 1052 (16) |
//! | LVM2 PV | one of sectors 0-3 | "LABELONE" at 0, "LVM2 001" at 24 |
//! | ISO 9660 | 32768 | type 1, "CD001" at 32769, volume id at 32808 (32) |

pub mod ntfs;

use blockdev::BlockDevice;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Ntfs,
    Exfat,
    Fat12,
    Fat16,
    Fat32,
    Swap,
    LvmPv,
    Iso9660,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ext2 => "ext2",
            Kind::Ext3 => "ext3",
            Kind::Ext4 => "ext4",
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
            Kind::Ntfs => "NTFS",
            Kind::Exfat => "exFAT",
            Kind::Fat12 => "FAT12",
            Kind::Fat16 => "FAT16",
            Kind::Fat32 => "FAT32",
            Kind::Swap => "swap",
            Kind::LvmPv => "LVM2 PV",
            Kind::Iso9660 => "ISO9660",
        }
    }

    /// The kind whose [`Kind::name`] is `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.name() == name)
    }

    /// How the appliance's kernel mounts this filesystem (as an imaging
    /// destination, or read-only to look inside an array); None for what it
    /// does not mount (Debian's 6.1 kernel has no in-kernel NTFS).
    pub fn kernel_mount(self) -> Option<KernelMount> {
        let (fstype, modules): (_, &'static [&'static str]) = match self {
            // ext2/3 mount with the ext4 driver.
            Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => ("ext4", &["ext4"]),
            Kind::Xfs => ("xfs", &["xfs"]),
            Kind::Btrfs => ("btrfs", &["btrfs"]),
            Kind::Fat16 | Kind::Fat32 => ("vfat", &["vfat", "nls_cp437", "nls_ascii", "nls_utf8"]),
            Kind::Exfat => ("exfat", &["exfat", "nls_utf8"]),
            _ => return None,
        };
        // FAT: long names are UTF-16 on disk and shown as UTF-8 (`utf8=1`);
        // the I/O charset is only used for case folding then, and `ascii`
        // (Debian's default, whose module must be there or the mount fails
        // with "IO charset ascii not found") folds A-Z only.
        // `iocharset=utf8` would do the same job, but the kernel warns that
        // it makes FAT case-sensitive. Short names keep their case as
        // Windows shows it (`shortname=mixed`), in code page 437. On-disk
        // errors make the mount read-only instead of spreading.
        let options = match self {
            Kind::Fat16 | Kind::Fat32 => {
                Some("utf8=1,iocharset=ascii,codepage=437,shortname=mixed,errors=remount-ro")
            }
            Kind::Exfat => Some("iocharset=utf8,errors=remount-ro"),
            _ => None,
        };
        Some(KernelMount {
            fstype,
            modules,
            options,
        })
    }
}

const ALL_KINDS: [Kind; 13] = [
    Kind::Ext2,
    Kind::Ext3,
    Kind::Ext4,
    Kind::Xfs,
    Kind::Btrfs,
    Kind::Ntfs,
    Kind::Exfat,
    Kind::Fat12,
    Kind::Fat16,
    Kind::Fat32,
    Kind::Swap,
    Kind::LvmPv,
    Kind::Iso9660,
];

/// What mount(2) needs for a filesystem kind on the appliance's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelMount {
    /// The kernel's filesystem type.
    pub fstype: &'static str,
    /// Modules to load first (a built-in one fails to load harmlessly).
    pub modules: &'static [&'static str],
    /// mount(2)'s data, so that names come out right whatever the
    /// kernel's defaults are.
    pub options: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub kind: Kind,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Option<Vec<u8>> {
    if offset.checked_add(len as u64)? > dev.size() {
        return None;
    }
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

fn text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A FAT boot sector's label; "NO NAME" is what formatters write for none.
fn fat_label(b: &[u8]) -> Option<String> {
    text(b).filter(|l| l != "NO NAME")
}

// Field reads for detection and free space: a field past the bytes read
// means "not this format" or "unknown", so None, never a panic.
fn le16(b: &[u8], at: usize) -> Option<u16> {
    le::Fields::new(b, "superblock").u16(at).ok()
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    le::Fields::new(b, "superblock").u32(at).ok()
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    le::Fields::new(b, "superblock").u64(at).ok()
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    le::Fields::new(b, "superblock").u32_be(at).ok()
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    le::Fields::new(b, "superblock").u64_be(at).ok()
}

/// exFAT's label lives in the root directory, not the boot sector: a
/// volume label entry (type 0x83: count at +1, UTF-16LE at +2, up to 11
/// characters). Boot sector: cluster heap offset (sectors) at 88, root
/// directory cluster at 96, bytes-per-sector shift at 108,
/// sectors-per-cluster shift at 109. Only the root's first cluster is read.
fn exfat_label(dev: &dyn BlockDevice, boot: &[u8]) -> Option<String> {
    let (bps_shift, spc_shift) = (u32::from(boot[108]), u32::from(boot[109]));
    if !(9..=12).contains(&bps_shift) || bps_shift + spc_shift > 25 {
        return None;
    }
    let cluster = 1u64 << (bps_shift + spc_shift);
    let heap = u64::from(le32(boot, 88)?) << bps_shift;
    let root = u64::from(le32(boot, 96)?).checked_sub(2)?;
    let dir = read(dev, heap + root * cluster, cluster.min(64 * 1024) as usize)?;
    for e in dir.chunks_exact(32) {
        match e[0] {
            0x00 => return None,
            0x83 => {
                let n = usize::from(e[1]).min(11);
                let units: Vec<u16> = (0..n)
                    .map(|i| u16::from_le_bytes([e[2 + 2 * i], e[3 + 2 * i]]))
                    .collect();
                let s = String::from_utf16_lossy(&units);
                return (!s.trim().is_empty()).then(|| s.trim().to_string());
            }
            _ => {}
        }
    }
    None
}

/// Size and free space of a filesystem as its superblock records them,
/// for choosing a destination before mounting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Space {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// The superblock's count may lag behind (XFS lazy counters, btrfs
    /// allocation, exFAT's percent-in-use): take it as an estimate.
    pub estimate: bool,
}

/// Free space from the superblock, where the format records it:
///
/// | format | fields |
/// |---|---|
/// | ext2/3/4 (at 1024) | blocks lo +4 / hi +0x150, free blocks lo +12 / hi +0x158 (hi only with 64BIT, incompat 0x80), log block size +24 |
/// | XFS (at 0, big-endian) | block size +4, data blocks +8, free data blocks +144 |
/// | btrfs (at 65536) | total bytes +0x70, bytes used +0x78 |
/// | FAT32 | FSInfo sector number +48, free cluster count at FSInfo +488 (0xFFFFFFFF: unknown) |
/// | exFAT | cluster count +92, percent in use +112 (0xFF: unknown) |
pub fn space(dev: &dyn BlockDevice, kind: Kind) -> Option<Space> {
    match kind {
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => {
            let sb = read(dev, 1024, 1024)?;
            let log = le32(&sb, 24)?;
            if log > 6 {
                return None;
            }
            let block = 1024u64 << log;
            let wide = le32(&sb, 96)? & 0x80 != 0;
            let hi = |at: usize| match wide {
                true => le32(&sb, at).map(|h| u64::from(h) << 32),
                false => Some(0),
            };
            let blocks = u64::from(le32(&sb, 4)?) | hi(0x150)?;
            let free = u64::from(le32(&sb, 12)?) | hi(0x158)?;
            Some(Space {
                total_bytes: blocks.checked_mul(block)?,
                free_bytes: free.min(blocks) * block,
                estimate: false,
            })
        }
        Kind::Xfs => {
            let sb = read(dev, 0, 512)?;
            let block = u64::from(be32(&sb, 4)?);
            if !(512..=65536).contains(&block) {
                return None;
            }
            let blocks = be64(&sb, 8)?;
            Some(Space {
                total_bytes: blocks.checked_mul(block)?,
                free_bytes: be64(&sb, 144)?.min(blocks) * block,
                estimate: true,
            })
        }
        Kind::Btrfs => {
            let sb = read(dev, 65536, 4096)?;
            let (total, used) = (le64(&sb, 0x70)?, le64(&sb, 0x78)?);
            Some(Space {
                total_bytes: total,
                free_bytes: total.saturating_sub(used),
                estimate: true,
            })
        }
        Kind::Fat32 => {
            let b = read(dev, 0, 512)?;
            let bps = u64::from(le16(&b, 11)?);
            let spc = u64::from(b[13]);
            let sectors = u64::from(le32(&b, 32)?);
            let fsinfo = read(dev, u64::from(le16(&b, 48)?) * bps, 512)?;
            let free = le32(&fsinfo, 488)?;
            if bps == 0 || spc == 0 || &fsinfo[0..4] != b"RRaA" || free == u32::MAX {
                return None;
            }
            Some(Space {
                total_bytes: sectors * bps,
                free_bytes: (u64::from(free) * spc * bps).min(sectors * bps),
                estimate: true,
            })
        }
        Kind::Exfat => {
            let b = read(dev, 0, 512)?;
            let (bps_shift, spc_shift) = (u32::from(b[108]), u32::from(b[109]));
            let pct = u64::from(b[112]);
            if !(9..=12).contains(&bps_shift) || bps_shift + spc_shift > 25 || pct > 100 {
                return None;
            }
            let heap = u64::from(le32(&b, 92)?) << (bps_shift + spc_shift);
            Some(Space {
                total_bytes: heap,
                free_bytes: heap / 100 * (100 - pct),
                estimate: true,
            })
        }
        _ => None,
    }
}

fn uuid(b: &[u8]) -> Option<String> {
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

/// One device of a btrfs filesystem, from its superblock at 65536: the
/// filesystem's fsid is shared by all its devices (and by a copy of one),
/// the device id and device UUID tell the devices apart.
///
/// | offset | field |
/// |---|---|
/// | +0x20 | fsid (16) |
/// | +0x40 | magic "_BHRfS_M" |
/// | +0x88 | num_devices (u64) |
/// | +0xC9 | dev_item: devid (u64) at +0, uuid (16) at +0x42 |
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BtrfsDevice {
    pub fsid: String,
    pub devid: u64,
    pub device_uuid: String,
    pub num_devices: u64,
}

/// The btrfs device identity of `dev`, or None when it holds no btrfs
/// superblock (or one whose fields cannot be read).
pub fn btrfs_device(dev: &dyn BlockDevice) -> Option<BtrfsDevice> {
    let b = read(dev, 65536, 4096)?;
    let f = le::Fields::new(&b, "btrfs superblock");
    if f.bytes(0x40, 8).ok()? != b"_BHRfS_M" {
        return None;
    }
    Some(BtrfsDevice {
        fsid: uuid(f.bytes(0x20, 16).ok()?)?,
        devid: f.u64(0xC9).ok()?,
        device_uuid: uuid(f.bytes(0xC9 + 0x42, 16).ok()?)?,
        num_devices: f.u64(0x88).ok()?,
    })
}

/// Looks for every known signature; returns the first that matches, probing
/// in an order where no format's magic can sit inside another's header.
pub fn detect(dev: &dyn BlockDevice) -> Option<Signature> {
    let head = read(dev, 0, 4096).or_else(|| read(dev, 0, 512))?;
    if let Some(mut s) = detect_in_head(&head) {
        if s.kind == Kind::Exfat {
            s.label = exfat_label(dev, &head);
        }
        if s.kind == Kind::Ntfs {
            // A volume too damaged to read its label is still NTFS.
            s.label = ntfs::label(dev).ok().flatten();
            s.uuid = le64(&head, 72)
                .filter(|&n| n != 0)
                .map(|n| format!("{n:016X}"));
        }
        return Some(s);
    }
    if let Some(sb) = read(dev, 1024, 1024) {
        if le16(&sb, 56) == Some(0xEF53) {
            let compat = le32(&sb, 92)?;
            let incompat = le32(&sb, 96)?;
            // EXTENTS, 64BIT, FLEX_BG are ext4 features; HAS_JOURNAL makes ext3.
            let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 {
                Kind::Ext4
            } else if compat & 0x4 != 0 {
                Kind::Ext3
            } else {
                Kind::Ext2
            };
            return Some(Signature {
                kind,
                label: text(&sb[120..136]),
                uuid: uuid(&sb[104..120]),
            });
        }
    }
    if head.len() >= 4096 && &head[4086..4096] == b"SWAPSPACE2" {
        return Some(Signature {
            kind: Kind::Swap,
            label: text(&head[1052..1068]),
            uuid: uuid(&head[1036..1052]),
        });
    }
    if let Some(iso) = read(dev, 32768, 2048) {
        if iso[0] == 1 && &iso[1..6] == b"CD001" {
            return Some(Signature {
                kind: Kind::Iso9660,
                label: text(&iso[40..72]),
                uuid: None,
            });
        }
    }
    if let Some(b) = read(dev, 65536, 4096) {
        if &b[64..72] == b"_BHRfS_M" {
            return Some(Signature {
                kind: Kind::Btrfs,
                label: text(&b[299..555]),
                uuid: uuid(&b[32..48]),
            });
        }
    }
    None
}

/// Signatures found in the first 4 KiB alone.
fn detect_in_head(head: &[u8]) -> Option<Signature> {
    if head.len() >= 120 && &head[0..4] == b"XFSB" {
        return Some(Signature {
            kind: Kind::Xfs,
            label: text(&head[108..120]),
            uuid: uuid(&head[32..48]),
        });
    }
    if head.len() >= 512 {
        if &head[3..11] == b"NTFS    " {
            return Some(Signature {
                kind: Kind::Ntfs,
                label: None,
                uuid: None,
            });
        }
        if &head[3..11] == b"EXFAT   " {
            return Some(Signature {
                kind: Kind::Exfat,
                label: None,
                uuid: None,
            });
        }
        if head[510] == 0x55 && head[511] == 0xAA {
            if &head[82..90] == b"FAT32   " {
                return Some(Signature {
                    kind: Kind::Fat32,
                    label: fat_label(&head[71..82]),
                    uuid: None,
                });
            }
            if &head[54..58] == b"FAT1" {
                let kind = if &head[54..59] == b"FAT12" {
                    Kind::Fat12
                } else {
                    Kind::Fat16
                };
                return Some(Signature {
                    kind,
                    label: fat_label(&head[43..54]),
                    uuid: None,
                });
            }
        }
    }
    for sector in 0..4 {
        let at = sector * 512;
        if head.len() >= at + 32
            && &head[at..at + 8] == b"LABELONE"
            && &head[at + 24..at + 32] == b"LVM2 001"
        {
            return Some(Signature {
                kind: Kind::LvmPv,
                label: None,
                uuid: None,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    #[test]
    fn names_map_back_to_kinds_and_mounts_are_known() {
        for k in ALL_KINDS {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("ntfs"), None, "names are exact");
        assert_eq!(Kind::Ext3.kernel_mount().unwrap().fstype, "ext4");
        assert!(Kind::Ntfs.kernel_mount().is_none(), "no in-kernel NTFS");
        let fat = Kind::Fat32.kernel_mount().unwrap();
        assert!(
            fat.modules.contains(&"nls_ascii"),
            "iocharset=ascii needs it"
        );
        assert!(fat.options.unwrap().contains("iocharset=ascii"));
    }

    fn dev(bytes: Vec<u8>) -> MemDevice {
        MemDevice::new(bytes, 512)
    }

    #[test]
    fn ext4_label_uuid() {
        let mut b = vec![0u8; 1 << 20];
        b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[1024 + 96..1024 + 100].copy_from_slice(&0x2c2u32.to_le_bytes());
        b[1024 + 104] = 0xab;
        b[1024 + 120..1024 + 126].copy_from_slice(b"rootfs");
        let s = detect(&dev(b)).unwrap();
        assert_eq!(s.kind, Kind::Ext4);
        assert_eq!(s.label.as_deref(), Some("rootfs"));
        assert_eq!(
            s.uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
    }

    #[test]
    fn fat_swap_lvm_iso_btrfs_xfs() {
        let mut fat = vec![0u8; 1 << 20];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[54..59].copy_from_slice(b"FAT16");
        fat[43..52].copy_from_slice(b"BOOTBANK1");
        let s = detect(&dev(fat)).unwrap();
        assert_eq!(
            (s.kind, s.label.as_deref()),
            (Kind::Fat16, Some("BOOTBANK1"))
        );

        let mut swap = vec![0u8; 1 << 20];
        swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(detect(&dev(swap)).unwrap().kind, Kind::Swap);

        let mut lvm = vec![0u8; 1 << 20];
        lvm[512..520].copy_from_slice(b"LABELONE");
        lvm[536..544].copy_from_slice(b"LVM2 001");
        assert_eq!(detect(&dev(lvm)).unwrap().kind, Kind::LvmPv);

        let mut iso = vec![0u8; 1 << 20];
        iso[32768] = 1;
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[32808..32814].copy_from_slice(b"RESCUE");
        let s = detect(&dev(iso)).unwrap();
        assert_eq!(
            (s.kind, s.label.as_deref()),
            (Kind::Iso9660, Some("RESCUE"))
        );

        let mut btrfs = vec![0u8; 1 << 20];
        btrfs[65536 + 64..65536 + 72].copy_from_slice(b"_BHRfS_M");
        assert_eq!(detect(&dev(btrfs)).unwrap().kind, Kind::Btrfs);

        let mut xfs = vec![0u8; 1 << 20];
        xfs[0..4].copy_from_slice(b"XFSB");
        xfs[108..112].copy_from_slice(b"data");
        assert_eq!(detect(&dev(xfs)).unwrap().label.as_deref(), Some("data"));

        assert_eq!(detect(&dev(vec![0u8; 1 << 20])), None);
        assert_eq!(detect(&dev(vec![0u8; 100])), None, "tiny device");
    }

    /// The real mkfs tools as independent references, where installed.
    #[test]
    fn real_mkfs_ext4_and_vfat() {
        let dir = std::env::temp_dir().join(format!("fsmagic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("e.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RESCUEDEST"])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 (e2fsprogs) is needed")
            .success();
        assert!(ok);
        let d = blockdev::Device::open(&img).unwrap();
        let s = detect(&d).unwrap();
        assert_eq!(
            (s.kind, s.label.as_deref()),
            (Kind::Ext4, Some("RESCUEDEST"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn mkfs(dir: &std::path::Path, name: &str, size: u64, cmd: &[&str]) -> blockdev::Device {
        let img = dir.join(name);
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let ok = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(&img)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{} is needed: {e}", cmd[0]))
            .success();
        assert!(ok, "{cmd:?}");
        blockdev::Device::open(&img).unwrap()
    }

    /// Labels and free space of freshly made filesystems, against the
    /// sizes the mkfs tools were given (a new filesystem is nearly empty).
    #[test]
    fn real_mkfs_labels_and_free_space() {
        let dir = std::env::temp_dir().join(format!("fsmagic-space-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 64u64 << 20;
        let ex = mkfs(&dir, "x.img", size, &["mkfs.exfat", "-L", "RESCUEDATA"]);
        let s = detect(&ex).unwrap();
        assert_eq!(
            (s.kind, s.label.as_deref()),
            (Kind::Exfat, Some("RESCUEDATA"))
        );
        let sp = space(&ex, Kind::Exfat).unwrap();
        assert!(
            sp.total_bytes > size * 9 / 10 && sp.total_bytes <= size,
            "{sp:?}"
        );
        assert!(sp.free_bytes >= sp.total_bytes * 98 / 100, "{sp:?}");
        let nolabel = mkfs(&dir, "y.img", size, &["mkfs.exfat"]);
        assert_eq!(detect(&nolabel).unwrap().label, None);
        let v = mkfs(&dir, "v.img", size, &["mkfs.vfat", "-F", "32"]);
        let s = detect(&v).unwrap();
        assert_eq!(
            (s.kind, s.label),
            (Kind::Fat32, None),
            "NO NAME is no label"
        );
        let sp = space(&v, Kind::Fat32).unwrap();
        assert!(
            sp.free_bytes > size * 9 / 10 && sp.free_bytes < size,
            "{sp:?}"
        );
        let e = mkfs(&dir, "e.img", size, &["mkfs.ext4", "-q", "-F"]);
        let sp = space(&e, Kind::Ext4).unwrap();
        assert_eq!(sp.total_bytes, size);
        assert!(
            sp.free_bytes > size * 8 / 10 && sp.free_bytes < size,
            "{sp:?}"
        );
        assert!(!sp.estimate);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The btrfs device fields against btrfs-progs' own dump of the
    /// superblock it wrote.
    #[test]
    fn real_mkfs_btrfs_device_identity() {
        let dir = std::env::temp_dir().join(format!("fsmagic-btrfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = mkfs(&dir, "b.img", 128 << 20, &["mkfs.btrfs", "-q", "-f"]);
        let got = btrfs_device(&d).expect("a btrfs device");
        let dump = std::process::Command::new("btrfs")
            .args(["inspect-internal", "dump-super"])
            .arg(dir.join("b.img"))
            .output()
            .expect("btrfs (btrfs-progs) is needed");
        let text = String::from_utf8_lossy(&dump.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(name)).then(|| w.next().unwrap_or("").to_string())
                })
                .unwrap_or_else(|| panic!("{name} not in dump-super:\n{text}"))
        };
        assert_eq!(got.fsid, field("fsid"));
        assert_eq!(got.device_uuid, field("dev_item.uuid"));
        assert_eq!(got.devid.to_string(), field("dev_item.devid"));
        assert_eq!(got.num_devices.to_string(), field("num_devices"));
        assert_eq!(detect(&d).unwrap().uuid.as_deref(), Some(got.fsid.as_str()));
        assert_eq!(btrfs_device(&dev(vec![0u8; 1 << 20])), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..70000)) {
            let d = dev(data);
            let _ = btrfs_device(&d);
            if let Some(s) = detect(&d) {
                let _ = space(&d, s.kind);
            }
            for k in [Kind::Ext4, Kind::Xfs, Kind::Btrfs, Kind::Fat32, Kind::Exfat] {
                let _ = space(&d, k);
            }
        }

        /// An exFAT boot sector with arbitrary geometry fields.
        #[test]
        fn exfat_fields_never_panic(bps in 0u8..=255, spc in 0u8..=255, root in proptest::num::u32::ANY, heap in proptest::num::u32::ANY) {
            let mut b = vec![0u8; 1 << 20];
            b[3..11].copy_from_slice(b"EXFAT   ");
            b[88..92].copy_from_slice(&heap.to_le_bytes());
            b[96..100].copy_from_slice(&root.to_le_bytes());
            b[108] = bps;
            b[109] = spc;
            let d = dev(b);
            let _ = detect(&d);
            let _ = space(&d, Kind::Exfat);
        }
    }
}
