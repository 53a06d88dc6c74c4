//! Which filesystem or volume format a disk or partition holds, from the
//! magic numbers at their documented superblock offsets. Reads at most a few
//! small blocks; never more than the first 68 KiB.
//!
//! | format | where | what |
//! |---|---|---|
//! | ext2/3/4 | superblock at 1024 | magic 0xEF53 (LE) at +56, UUID +104, label +120 (16), compat +92, incompat +96 |
//! | XFS | 0 | "XFSB", UUID at 32, label at 108 (12) |
//! | btrfs | superblock at 65536 | "_BHRfS_M" at +64, fsid +32, label +299 (256) |
//! | NTFS | boot sector | "NTFS    " at 3 |
//! | exFAT | boot sector | "EXFAT   " at 3 |
//! | FAT12/16 | boot sector | 0x55AA at 510, "FAT1" at 54, label at 43 (11) |
//! | FAT32 | boot sector | 0x55AA at 510, "FAT32   " at 82, label at 71 (11) |
//! | swap | 4096-byte page | "SWAPSPACE2" at 4086, UUID at 1036, label at 1052 (16) |
//! | LVM2 PV | one of sectors 0-3 | "LABELONE" at 0, "LVM2 001" at 24 |
//! | ISO 9660 | 32768 | type 1, "CD001" at 32769, volume id at 32808 (32) |

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
    /// Filesystems the appliance can mount read-write as an imaging
    /// destination (Debian's 6.1 kernel has no in-kernel NTFS).
    pub fn mountable_destination(self) -> bool {
        matches!(
            self,
            Kind::Ext2
                | Kind::Ext3
                | Kind::Ext4
                | Kind::Xfs
                | Kind::Btrfs
                | Kind::Exfat
                | Kind::Fat16
                | Kind::Fat32
        )
    }
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

/// Looks for every known signature; returns the first that matches, probing
/// in an order where no format's magic can sit inside another's header.
pub fn detect(dev: &dyn BlockDevice) -> Option<Signature> {
    let head = read(dev, 0, 4096).or_else(|| read(dev, 0, 512))?;
    if let Some(s) = detect_in_head(&head) {
        return Some(s);
    }
    if let Some(sb) = read(dev, 1024, 1024) {
        if u16::from_le_bytes([sb[56], sb[57]]) == 0xEF53 {
            let compat = u32::from_le_bytes(sb[92..96].try_into().ok()?);
            let incompat = u32::from_le_bytes(sb[96..100].try_into().ok()?);
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
                    label: text(&head[71..82]),
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
                    label: text(&head[43..54]),
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

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..70000)) {
            let _ = detect(&dev(data));
        }
    }
}
