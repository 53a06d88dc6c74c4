//! The filesystem descriptor ("FS3 descriptor", superblock) and detection.

use crate::error::{Error, Result, Uuid, UuidField};
use crate::lvm::{LvmHeader, LVM_HEADER_OFFSET, LVM_MAGIC};
use blockdev::BlockDevice;
use serde::Serialize;

/// Volume offset of the filesystem descriptor.
pub const FS_DESC_OFFSET: u64 = 0x20_0000;
/// Descriptor magic of a VMFS volume.
pub const FS_MAGIC: u32 = 0x2FAB_F15E;
/// Descriptor magic of a VMFS-L (ESXi local/OSDATA) volume: same layout.
pub const FS_MAGIC_LOCAL: u32 = 0x2FAB_F15F;
/// Config flag: sub-block addresses carry 2 extra resource bits.
pub const CONFIG_DENSE_SBPC: u32 = 0x4;

/// The filesystem descriptor at volume offset 0x200000. All little-endian,
/// packed.
///
/// | off   | size | field |
/// |-------|------|-------|
/// | 0x00  | 4   | magic 0x2FABF15E (VMFS) / 0x2FABF15F (VMFS-L) |
/// | 0x04  | 4   | majorVersion: 3/4 = VMFS3, 14 = VMFS5, 24 = VMFS6 |
/// | 0x08  | 1   | minorVersion |
/// | 0x09  | 16  | FS UUID |
/// | 0x19  | 4   | config flags (0x4 DENSE_SBPC) |
/// | 0x1D  | 128 | label, NUL padded |
/// | 0x9D  | 4   | diskBlockSize |
/// | 0xA1  | 8   | fileBlockSize |
/// | 0xA9  | 4   | creation time (unix s) |
/// | 0xB1  | 16  | LVM volume UUID |
/// | 0xD1  | 4   | fdcClusterGroupOffset |
/// | 0xD5  | 4   | fdcClustersPerGroup |
/// | 0xD9  | 4   | subBlockSize |
/// | 0xE1  | 8   | pb2VolAddr (volume offset of the .pb2.sf FD) |
/// | 0xE9  | 4   | pb2FDAddr |
/// | 0x105 | 8   | sddVolAddr |
/// | 0x130 | 4   | physDiskBlockSize (VMFS6) |
/// | 0x134 | 4   | mdAlignment (VMFS6; 0 before) |
/// | 0x138 | 2   | sfbToLfbShift (VMFS6) |
/// | 0x13E | 2   | ptrBlockShift (VMFS6) |
#[derive(Clone, Debug, Serialize)]
pub struct Superblock {
    pub magic: u32,
    pub major: u32,
    pub minor: u8,
    pub uuid: Uuid,
    pub config: u32,
    pub label: String,
    pub disk_block_size: u32,
    pub block_size: u64,
    pub ctime: u32,
    pub lvm_uuid: Uuid,
    pub fdc_group_offset: u32,
    pub fdc_clusters_per_group: u32,
    pub sub_block_size: u32,
    pub pb2_vol_addr: u64,
    pub pb2_fd_addr: u32,
    pub phys_block_size: u32,
    pub md_alignment: u32,
    pub sfb_to_lfb_shift: u16,
    pub ptr_block_shift: u16,
}

impl Superblock {
    /// Parses and checks the descriptor bytes (at least 0x150 bytes).
    pub fn parse(buf: &[u8]) -> Result<Superblock> {
        let d = le::Fields::new(buf, "FS descriptor");
        let magic = d.u32(0)?;
        if magic != FS_MAGIC && magic != FS_MAGIC_LOCAL {
            return Err(Error::corrupt(format!(
                "FS descriptor magic at +0x0: expected {FS_MAGIC:#x} or {FS_MAGIC_LOCAL:#x}, found {magic:#x}"
            )));
        }
        let sb = Superblock {
            magic,
            major: d.u32(4)?,
            minor: d.u8(8)?,
            uuid: d.uuid(9)?,
            config: d.u32(0x19)?,
            label: d.cstr(0x1D, 128)?,
            disk_block_size: d.u32(0x9D)?,
            block_size: d.u64(0xA1)?,
            ctime: d.u32(0xA9)?,
            lvm_uuid: d.uuid(0xB1)?,
            fdc_group_offset: d.u32(0xD1)?,
            fdc_clusters_per_group: d.u32(0xD5)?,
            sub_block_size: d.u32(0xD9)?,
            pb2_vol_addr: d.u64(0xE1)?,
            pb2_fd_addr: d.u32(0xE9)?,
            phys_block_size: d.u32(0x130)?,
            md_alignment: d.u32(0x134)?,
            sfb_to_lfb_shift: d.u16(0x138)?,
            ptr_block_shift: d.u16(0x13E)?,
        };
        if !(3..=40).contains(&sb.major) {
            return Err(Error::Unsupported(format!(
                "FS descriptor majorVersion at +0x4: {} (known: 3, 4, 14, 24)",
                sb.major
            )));
        }
        let bs = sb.block_size;
        if !bs.is_power_of_two() || !(64 << 10..=1 << 30).contains(&bs) {
            return Err(Error::corrupt(format!(
                "FS descriptor fileBlockSize at +0xa1: {bs} is not a power of two in 64 KiB..1 GiB"
            )));
        }
        let sbs = sb.sub_block_size as u64;
        if sbs != 0 && (!sbs.is_power_of_two() || sbs > bs || sbs < 512) {
            return Err(Error::corrupt(format!(
                "FS descriptor subBlockSize at +0xd9: {sbs} (file block size {bs})"
            )));
        }
        if sb.is_vmfs6() {
            let a = sb.md_alignment;
            if !a.is_power_of_two() || !(512..=1 << 16).contains(&a) {
                return Err(Error::corrupt(format!(
                    "FS descriptor mdAlignment at +0x134: {a} is not a power of two in 512..64 KiB"
                )));
            }
            if !(10..=20).contains(&sb.ptr_block_shift) || sb.sfb_to_lfb_shift > 16 {
                return Err(Error::corrupt(format!(
                    "FS descriptor ptrBlockShift {} / sfbToLfbShift {} out of range",
                    sb.ptr_block_shift, sb.sfb_to_lfb_shift
                )));
            }
        }
        if sb.fdc_clusters_per_group == 0 || sb.fdc_clusters_per_group > 1 << 16 {
            return Err(Error::corrupt(format!(
                "FS descriptor fdcClustersPerGroup at +0xd5: {}",
                sb.fdc_clusters_per_group
            )));
        }
        if sb.fdc_group_offset > 1 << 24 {
            return Err(Error::corrupt(format!(
                "FS descriptor fdcClusterGroupOffset at +0xd1: {:#x}",
                sb.fdc_group_offset
            )));
        }
        Ok(sb)
    }

    /// VMFS generation: 3, 5 or 6.
    pub fn vmfs_version(&self) -> u8 {
        version_of_major(self.major)
    }
    pub fn is_vmfs6(&self) -> bool {
        self.major >= 24
    }
    /// VMFS-L (ESXi system/OSDATA volume).
    pub fn is_local(&self) -> bool {
        self.magic == FS_MAGIC_LOCAL
    }
}

/// Maps the descriptor majorVersion to the VMFS generation.
pub fn version_of_major(major: u32) -> u8 {
    match major {
        0..=4 => 3,
        5..=23 => 5,
        _ => 6,
    }
}

/// What the probe crate reports about a device carrying VMFS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmfsSignature {
    /// VMFS generation 3, 5 or 6 (from the FS descriptor, or from the LVM
    /// version when this device is a secondary extent without descriptor).
    pub version: u8,
    /// Filesystem label ("" on a secondary extent).
    pub label: String,
    /// Filesystem UUID, if this device holds the descriptor.
    pub fs_uuid: Option<String>,
    /// File block size in bytes (0 on a secondary extent).
    pub block_size: u64,
    /// VMFS-L (local/OSDATA) volume.
    pub local: bool,
    /// LVM layer: volume UUID, name, this device's first PE and the
    /// number of devices the volume spans.
    pub lvm: Option<LvmSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LvmSignature {
    pub lvm_version: u32,
    pub volume_uuid: String,
    pub volume_name: String,
    pub volume_size: u64,
    pub first_pe: u64,
    pub num_devices: u32,
}

/// Looks for VMFS on `dev` (a partition or an image of one): the LVM header
/// at 1 MiB and the descriptor at dataOffset + 2 MiB, or a bare descriptor at
/// 2 MiB. Reads only those places.
pub fn detect(dev: &dyn BlockDevice) -> Option<VmfsSignature> {
    let mut m = [0u8; 4];
    if dev.read_exact_at(&mut m, LVM_HEADER_OFFSET).is_ok() && u32::from_le_bytes(m) == LVM_MAGIC {
        let h = LvmHeader::read(dev).ok()?;
        let lvm = LvmSignature {
            lvm_version: h.major,
            volume_uuid: h.lv_uuid.to_string(),
            volume_name: h.lv_name.clone(),
            volume_size: h.lv_size,
            first_pe: h.first_pe,
            num_devices: h.num_devs,
        };
        // The descriptor is at volume offset 2 MiB: on the device holding
        // the PE that starts the volume.
        let sb = h
            .extents
            .iter()
            .find(|pe| pe.l_off <= FS_DESC_OFFSET && FS_DESC_OFFSET < pe.l_off + pe.len)
            .and_then(|pe| read_sb(dev, pe.p_off + (FS_DESC_OFFSET - pe.l_off)));
        let version = match h.major {
            3 | 4 => 3,
            5 => 5,
            _ => 6,
        };
        return Some(signature(sb, version, Some(lvm)));
    }
    let sb = read_sb(dev, FS_DESC_OFFSET)?;
    Some(signature(Some(sb), 0, None))
}

fn read_sb(dev: &dyn BlockDevice, off: u64) -> Option<Superblock> {
    let mut b = vec![0u8; 0x200];
    dev.read_exact_at(&mut b, off).ok()?;
    Superblock::parse(&b).ok()
}

fn signature(sb: Option<Superblock>, lvm_version: u8, lvm: Option<LvmSignature>) -> VmfsSignature {
    match sb {
        Some(sb) => VmfsSignature {
            version: sb.vmfs_version(),
            label: sb.label.clone(),
            fs_uuid: Some(sb.uuid.to_string()),
            block_size: sb.block_size,
            local: sb.is_local(),
            lvm,
        },
        None => VmfsSignature {
            version: lvm_version,
            label: String::new(),
            fs_uuid: None,
            block_size: 0,
            local: false,
            lvm,
        },
    }
}
