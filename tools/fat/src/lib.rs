//! A small read-only FAT12/16/32 reader: enough to find a file by its path
//! of short (8.3) names and read it, e.g. an ESXi bootbank's `boot.cfg`.
//! Every size and cluster number read from disk is bounds-checked; chains
//! are followed at most as many steps as the volume has clusters.
//!
//! Boot sector (BPB) offsets: 11 bytes per sector (u16), 13 sectors per
//! cluster, 14 reserved sectors (u16), 16 number of FATs, 17 root entries
//! (u16, 0 on FAT32), 19 total sectors (u16), 22 sectors per FAT (u16),
//! 32 total sectors (u32), FAT32: 36 sectors per FAT (u32), 44 root cluster.
//! Directory entry (32 bytes): 0 name (8+3), 11 attributes, 20 cluster high
//! (FAT32), 26 cluster low, 28 size; name[0] 0x00 ends the directory, 0xE5
//! marks a deleted entry; attribute 0x0F is a long-name entry.

use blockdev::BlockDevice;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

pub struct Volume<'a> {
    dev: &'a dyn BlockDevice,
    /// Byte offset of the volume on `dev`.
    base: u64,
    bytes_per_sector: u64,
    cluster_bytes: u64,
    fat_offset: u64,
    root_dir_offset: u64,
    root_dir_bytes: u64,
    root_cluster: u32,
    data_offset: u64,
    clusters: u32,
    pub kind: FatType,
}

fn field_error(e: le::OutOfRange) -> String {
    e.to_string()
}

/// Files larger than this are not read whole (boot.cfg is a few KiB).
pub const MAX_FILE: u64 = 16 << 20;

impl<'a> Volume<'a> {
    /// Opens the FAT volume starting at byte `base` of `dev`.
    pub fn open(dev: &'a dyn BlockDevice, base: u64) -> Result<Volume<'a>, String> {
        let mut bs = [0u8; 512];
        dev.read_exact_at(&mut bs, base)
            .map_err(|e| format!("boot sector: {e}"))?;
        let f = le::Fields::new(&bs, "FAT boot sector");
        if bs[510..512] != [0x55, 0xAA] {
            return Err("no boot sector signature 0x55AA".into());
        }
        let bps = u64::from(f.u16(11).map_err(field_error)?);
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(format!("bytes per sector is {bps}, expected 512..4096"));
        }
        let spc = u64::from(f.u8(13).map_err(field_error)?);
        if spc == 0 || !spc.is_power_of_two() {
            return Err(format!(
                "sectors per cluster is {spc}, expected a power of two"
            ));
        }
        let reserved = u64::from(f.u16(14).map_err(field_error)?);
        let fats = u64::from(f.u8(16).map_err(field_error)?);
        let root_entries = u64::from(f.u16(17).map_err(field_error)?);
        let total = match f.u16(19).map_err(field_error)? {
            0 => u64::from(f.u32(32).map_err(field_error)?),
            n => u64::from(n),
        };
        let fat_sectors = match f.u16(22).map_err(field_error)? {
            0 => u64::from(f.u32(36).map_err(field_error)?),
            n => u64::from(n),
        };
        if reserved == 0 || fats == 0 || fat_sectors == 0 || total == 0 {
            return Err(
                "reserved sectors, FAT count, FAT size and total sectors must be non-zero".into(),
            );
        }
        let root_dir_sectors = (root_entries * 32).div_ceil(bps);
        let data_sector = reserved + fats * fat_sectors + root_dir_sectors;
        if data_sector >= total || total * bps > dev.size().saturating_sub(base) + bps {
            return Err(format!(
                "the volume ({total} sectors) does not fit the device"
            ));
        }
        let clusters = ((total - data_sector) / spc).min(u64::from(u32::MAX - 16)) as u32;
        // The FAT type is decided by the cluster count alone (FAT spec 1.03).
        let kind = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        Ok(Volume {
            dev,
            base,
            bytes_per_sector: bps,
            cluster_bytes: spc * bps,
            fat_offset: base + reserved * bps,
            root_dir_offset: base + (reserved + fats * fat_sectors) * bps,
            root_dir_bytes: root_dir_sectors * bps,
            root_cluster: if kind == FatType::Fat32 {
                f.u32(44).map_err(field_error)?
            } else {
                0
            },
            data_offset: base + data_sector * bps,
            clusters,
            kind,
        })
    }

    fn next_cluster(&self, c: u32) -> Result<Option<u32>, String> {
        let (off, bytes) = match self.kind {
            FatType::Fat12 => (u64::from(c) * 3 / 2, 2),
            FatType::Fat16 => (u64::from(c) * 2, 2),
            FatType::Fat32 => (u64::from(c) * 4, 4),
        };
        let mut b = [0u8; 4];
        self.dev
            .read_exact_at(&mut b[..bytes], self.fat_offset + off)
            .map_err(|e| format!("FAT entry {c}: {e}"))?;
        let v = match self.kind {
            FatType::Fat12 => {
                let w = u32::from(u16::from_le_bytes([b[0], b[1]]));
                if c % 2 == 1 {
                    w >> 4
                } else {
                    w & 0xFFF
                }
            }
            FatType::Fat16 => u32::from(u16::from_le_bytes([b[0], b[1]])),
            FatType::Fat32 => u32::from_le_bytes(b) & 0x0FFF_FFFF,
        };
        let end = match self.kind {
            FatType::Fat12 => 0xFF8,
            FatType::Fat16 => 0xFFF8,
            FatType::Fat32 => 0x0FFF_FFF8,
        };
        Ok((v >= 2 && v < end && v < self.clusters + 2).then_some(v))
    }

    /// Reads a cluster chain, at most `limit` bytes.
    fn read_chain(&self, first: u32, limit: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut c = Some(first).filter(|&c| c >= 2 && c < self.clusters + 2);
        let mut steps = 0u64;
        while let Some(cl) = c {
            steps += 1;
            if steps > u64::from(self.clusters) {
                return Err(format!("cluster chain from {first} loops"));
            }
            let mut buf = vec![0u8; self.cluster_bytes as usize];
            let off = self.data_offset + u64::from(cl - 2) * self.cluster_bytes;
            self.dev
                .read_exact_at(&mut buf, off)
                .map_err(|e| format!("cluster {cl}: {e}"))?;
            out.extend_from_slice(&buf);
            if out.len() as u64 >= limit {
                break;
            }
            c = self.next_cluster(cl)?;
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    fn root_dir(&self) -> Result<Vec<u8>, String> {
        if self.kind == FatType::Fat32 {
            return self.read_chain(self.root_cluster, MAX_FILE);
        }
        let mut b = vec![0u8; self.root_dir_bytes as usize];
        self.dev
            .read_exact_at(&mut b, self.root_dir_offset)
            .map_err(|e| format!("root directory: {e}"))?;
        Ok(b)
    }

    /// The directory entry at `path` (short names, `/`-separated, any
    /// case): first cluster, size, whether it is a directory.
    fn lookup(&self, path: &str) -> Result<(u32, u64, bool), String> {
        let mut dir = self.root_dir()?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let want = short_name(part).ok_or_else(|| format!("{part}: not an 8.3 name"))?;
            let e = dir
                .chunks_exact(32)
                .take_while(|e| e[0] != 0)
                .find(|e| e[0] != 0xE5 && e[11] != 0x0F && e[11] & 0x08 == 0 && e[..11] == want)
                .ok_or_else(|| format!("{path}: {part} not found"))?;
            let f = le::Fields::new(e, "FAT directory entry");
            let cluster = (u32::from(f.u16(20).map_err(field_error)?) << 16)
                | u32::from(f.u16(26).map_err(field_error)?);
            let is_dir = e[11] & 0x10 != 0;
            if i + 1 == parts.len() {
                return Ok((cluster, u64::from(f.u32(28).map_err(field_error)?), is_dir));
            }
            if !is_dir {
                return Err(format!("{path}: {part} is not a directory"));
            }
            dir = self.read_chain(cluster, MAX_FILE)?;
        }
        Err(format!("{path}: is the root directory"))
    }

    /// Whether a file or directory exists at `path` (nothing is read but
    /// the directories on the way).
    pub fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_ok()
    }

    /// Reads the file at `path` (short names, `/`-separated, any case).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let (cluster, size, is_dir) = self.lookup(path)?;
        if is_dir {
            return Err(format!("{path}: is a directory"));
        }
        if size > MAX_FILE {
            return Err(format!("{path}: {size} bytes, larger than {MAX_FILE}"));
        }
        self.read_chain(cluster, size)
    }

    pub fn bytes_per_sector(&self) -> u64 {
        self.bytes_per_sector
    }
    pub fn base(&self) -> u64 {
        self.base
    }
}

/// `boot.cfg` -> `BOOT    CFG` (the 11 bytes of a directory entry).
pub fn short_name(name: &str) -> Option<[u8; 11]> {
    let up = name.to_ascii_uppercase();
    let (stem, ext) = up.split_once('.').unwrap_or((&up, ""));
    if stem.is_empty() || stem.len() > 8 || ext.len() > 3 || ext.contains('.') {
        return None;
    }
    let mut out = [b' '; 11];
    out[..stem.len()].copy_from_slice(stem.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::{Device, MemDevice};

    fn tool(cmd: &str, args: &[&str]) {
        let st = std::process::Command::new(cmd)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{cmd} is needed (dosfstools, mtools): {e}"));
        assert!(st.success(), "{cmd} {args:?}");
    }

    /// mkfs.vfat and mcopy (dosfstools, mtools) are the independent writers.
    #[test]
    fn reads_files_written_by_mtools_on_fat12_16_32() {
        let dir = std::env::temp_dir().join(format!("fat-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("boot.cfg");
        let text = "bootstate=0\ntitle=Loading VMware ESXi\nbuild=5.0.0-1489271\n".repeat(200);
        std::fs::write(&cfg, &text).unwrap();
        for (fat, size_mib, offset_sectors) in
            [("12", 4u64, 0u64), ("16", 64, 2048), ("32", 300, 64)]
        {
            let img = dir.join(format!("fat{fat}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len((size_mib << 20) + offset_sectors * 512)
                .unwrap();
            let off = offset_sectors.to_string();
            tool(
                "mkfs.vfat",
                &[
                    "-F",
                    fat,
                    "--offset",
                    &off,
                    "-n",
                    "BOOTBANK",
                    img.to_str().unwrap(),
                    &(size_mib * 1024).to_string(),
                ],
            );
            let target = format!("{}@@{}", img.display(), offset_sectors * 512);
            tool("mmd", &["-i", &target, "::/sub"]);
            tool(
                "mcopy",
                &["-i", &target, cfg.to_str().unwrap(), "::/BOOT.CFG"],
            );
            tool(
                "mcopy",
                &["-i", &target, cfg.to_str().unwrap(), "::/sub/x.cfg"],
            );
            let dev = Device::open(&img).unwrap();
            let v = Volume::open(&dev, offset_sectors * 512).unwrap();
            let want = match fat {
                "12" => FatType::Fat12,
                "16" => FatType::Fat16,
                _ => FatType::Fat32,
            };
            assert_eq!(v.kind, want);
            assert_eq!(v.read_file("boot.cfg").unwrap(), text.as_bytes());
            assert_eq!(v.read_file("/SUB/X.CFG").unwrap(), text.as_bytes());
            assert!(v
                .read_file("missing.cfg")
                .unwrap_err()
                .contains("not found"));
            assert!(v.read_file("sub").unwrap_err().contains("directory"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names() {
        assert_eq!(&short_name("boot.cfg").unwrap(), b"BOOT    CFG");
        assert_eq!(&short_name("A").unwrap(), b"A          ");
        assert!(short_name("toolongname.cfg").is_none());
        assert!(short_name("a.b.c").is_none());
    }

    proptest::proptest! {
        #[test]
        fn damaged_volumes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 512..8192), fix in proptest::bool::ANY) {
            let mut b = bytes;
            if fix { b[510] = 0x55; b[511] = 0xAA; b[11] = 0; b[12] = 2; b[13] = 1; b[14] = 1; b[16] = 1; b[22] = 1; }
            let dev = MemDevice::new(b, 512);
            if let Ok(v) = Volume::open(&dev, 0) {
                let _ = v.read_file("boot.cfg");
                let _ = v.read_file("a/b/c.cfg");
            }
        }
    }
}
