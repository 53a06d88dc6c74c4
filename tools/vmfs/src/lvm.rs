//! The VMFS logical volume manager layer: device headers, the volume table,
//! the physical-extent (PE) table, and volumes assembled from one or more
//! devices by LV UUID.

use crate::error::{read_exact, Error, Result, Uuid, UuidField};
use blockdev::BlockDevice;
use serde::Serialize;

/// Byte offset of the LVM device header inside a VMFS partition.
pub const LVM_HEADER_OFFSET: u64 = 0x10_0000;
/// `LVM_DevMetadata.magic`.
pub const LVM_MAGIC: u32 = 0xC001_D00D;
/// Size of the PE unit the volume table counts in (firstPE/lastPE).
pub const PE_UNIT: u64 = 256 << 20;
/// PE table slot size; slot = `used` byte + PE descriptor.
const PE_SLOT: usize = 128;
/// How many header bytes we read: covers the PE table of 8192 slots.
const HEADER_READ: usize = 0x10_0000;

/// One physical extent: `len` bytes at device offset `p_off` hold volume
/// bytes `l_off..l_off+len`.
///
/// PE table slot (128 bytes; LVM3-5 at header+0x80600, LVM6 at
/// header+0x82000 with mdAlignment 4096, both observed):
///
/// | off  | size | field                                   |
/// |------|------|-----------------------------------------|
/// | 0x00 | 1    | used (1)                                |
/// | 0x01 | 4    | peID                                    |
/// | 0x05 | 4    | volumeID                                |
/// | 0x09 | 8    | pOffset: byte offset on this device     |
/// | 0x11 | 8    | lOffset: byte offset in the volume      |
/// | 0x19 | 8    | length in bytes                         |
/// | 0x21 | 4    | version                                 |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PhysExtent {
    pub pe_id: u32,
    pub volume_id: u32,
    pub p_off: u64,
    pub l_off: u64,
    pub len: u64,
}

/// The LVM header of one device (partition).
///
/// `LVM_DevMetadata` at device offset 0x100000:
///
/// | off  | size | field |
/// |------|------|-------|
/// | 0x00 | 4  | magic 0xC001D00D |
/// | 0x04 | 4  | majorVersion (3, 4, 5; 6 = VMFS6 era) |
/// | 0x08 | 4  | minorVersion |
/// | 0x0C | 78 | SCSI disk id (type, len, lun u16, devtype, level, vendor[8], model[16], rev[4], id[44]) |
/// | 0x5A | 4  | diskBlockSize |
/// | 0x5E | 8  | totalBytes (device size) |
/// | 0x66 | 4  | numVolumes |
/// | 0x6A | 4  | numPEs: used PE table slots |
/// | 0x6E | 4  | lastPEIndex |
/// | 0x72 | 8  | generation |
/// | 0x7A | 8  | dataOffset: device offset of PE data |
/// | 0x82 | 16 | device UUID |
/// | 0xBE | 4  | numPEMaps |
/// | 0xC2 | 8  | extDevMetadataOffset |
/// | 0xCA | 4  | mdAlignment (0 on LVM3-5, 4096 on LVM6) |
/// | 0xCE | 4  | LVM6: volume size in 256 MiB units |
/// | 0xD2 | 4  | flags (1 = VMFS-L) |
///
/// Volume table entry (LVM3-5 at header+0x200, LVM6 at header+mdAlignment):
///
/// | off  | size | field |
/// |------|------|-------|
/// | 0x00 | 8  | logicalSize (bytes of the whole volume) |
/// | 0x08 | 8  | generation |
/// | 0x10 | 4  | state |
/// | 0x14 | 64 | name (a UUID string) |
/// | 0x54 | 16 | LV UUID (the key that joins extents) |
/// | 0x64 | 4  | snapID |
/// | 0x74 | 4  | numPEs (in 256 MiB units) |
/// | 0x78 | 8  | firstPE (of this device, in 256 MiB units) |
/// | 0x80 | 8  | lastPE |
/// | 0x90 | 4  | numDevs (devices the volume spans) |
#[derive(Clone, Debug, Serialize)]
pub struct LvmHeader {
    pub major: u32,
    pub minor: u32,
    /// Disk model/vendor/id from the SCSI id, for messages.
    pub disk_id: String,
    pub device_size: u64,
    pub data_offset: u64,
    pub device_uuid: Uuid,
    /// The device header's generation (0x72): ESXi raises it when it
    /// rewrites the header, so of two copies of one extent the higher is
    /// the later.
    pub generation: u64,
    /// The volume table entry's generation (+0x08).
    pub lv_generation: u64,
    pub md_alignment: u32,
    pub flags: u32,
    pub lv_size: u64,
    pub lv_name: String,
    pub lv_uuid: Uuid,
    pub lv_num_pes: u32,
    pub first_pe: u64,
    pub last_pe: u64,
    pub num_devs: u32,
    /// The PE table entries used by this device.
    pub extents: Vec<PhysExtent>,
}

impl LvmHeader {
    /// Whether `other` is a copy of the same extent: the same LVM device
    /// (device UUID) of the same volume holding the same volume bytes. A
    /// raw clone of a disk carries exactly this; two parts of a span never
    /// do (each extent has its own device UUID and PE range).
    pub fn is_copy_of(&self, other: &LvmHeader) -> bool {
        let ranges = |h: &LvmHeader| {
            let mut r: Vec<(u64, u64)> = h.extents.iter().map(|e| (e.l_off, e.len)).collect();
            r.sort_unstable();
            r
        };
        self.lv_uuid == other.lv_uuid
            && self.device_uuid == other.device_uuid
            && ranges(self) == ranges(other)
    }

    /// Orders copies of one extent: the later header generation, then the
    /// later volume table generation.
    pub fn recency(&self) -> (u64, u64) {
        (self.generation, self.lv_generation)
    }
}

/// True if `dev` carries an LVM header magic at 1 MiB.
pub fn has_lvm_header(dev: &dyn BlockDevice) -> bool {
    let mut b = [0u8; 4];
    dev.read_exact_at(&mut b, LVM_HEADER_OFFSET).is_ok() && u32::from_le_bytes(b) == LVM_MAGIC
}

impl LvmHeader {
    /// Reads and checks the LVM header of `dev`.
    pub fn read(dev: &dyn BlockDevice) -> Result<LvmHeader> {
        let len = HEADER_READ.min(dev.size().saturating_sub(LVM_HEADER_OFFSET) as usize);
        let mut buf = vec![0u8; len];
        read_exact(dev, &mut buf, LVM_HEADER_OFFSET, "LVM header")?;
        Self::parse(&buf)
    }

    /// Parses the header from the bytes at device offset 0x100000 onward.
    pub fn parse(buf: &[u8]) -> Result<LvmHeader> {
        let h = le::Fields::new(buf, "LVM header");
        let magic = h.u32(0)?;
        if magic != LVM_MAGIC {
            return Err(Error::corrupt(format!(
                "LVM header magic at +0x0: expected {LVM_MAGIC:#x}, found {magic:#x}"
            )));
        }
        let major = h.u32(4)?;
        if !(3..=6).contains(&major) {
            return Err(Error::Unsupported(format!("LVM major version {major}")));
        }
        let md_alignment = h.u32(0xCA)?;
        let vt = if major >= 6 {
            if md_alignment == 0 || md_alignment % 512 != 0 || md_alignment > 0x1_0000 {
                return Err(Error::corrupt(format!(
                    "LVM6 mdAlignment at +0xca: {md_alignment} is not a multiple of 512 up to 64 KiB"
                )));
            }
            md_alignment as usize
        } else {
            0x200
        };
        let v = le::Fields::new(h.bytes(vt, 0x200)?, "LVM volume table entry");
        let disk_id = {
            let vendor = h.cstr(0x0C + 6, 8)?;
            let model = h.cstr(0x0C + 14, 16)?;
            let id = h.cstr(0x0C + 34, 44)?;
            format!("{} {} {}", vendor.trim(), model.trim(), id.trim())
                .trim()
                .to_string()
        };
        let mut hdr = LvmHeader {
            major,
            minor: h.u32(8)?,
            disk_id,
            device_size: h.u64(0x5E)?,
            data_offset: h.u64(0x7A)?,
            device_uuid: h.uuid(0x82)?,
            generation: h.u64(0x72)?,
            lv_generation: v.u64(0x08)?,
            md_alignment,
            flags: h.u32(0xD2)?,
            lv_size: v.u64(0)?,
            lv_name: v.cstr(0x14, 64)?,
            lv_uuid: v.uuid(0x54)?,
            lv_num_pes: v.u32(0x74)?,
            first_pe: v.u64(0x78)?,
            last_pe: v.u64(0x80)?,
            num_devs: v.u32(0x90)?,
            extents: Vec::new(),
        };
        // PE table. Its position follows the volume table, SD names and PE
        // bitmap, whose sizes depend on the version; these are the observed
        // positions on ESXi-written LVM3..6 headers.
        let pe_table = if major >= 6 {
            0x80000 + 2 * md_alignment as usize
        } else {
            0x80600
        };
        // Slot count: 0x6A counts used slots on every version and
        // lastPEIndex + 1 agrees; LVM6's 0xCE is the size in 256 MiB units.
        // Scan the largest of them; the `used` byte decides.
        let num_pes = h
            .u32(0x6A)?
            .max(h.u32(0x6E)?.saturating_add(1))
            .max(if major >= 6 { h.u32(0xCE)? } else { 0 });
        let slots = (num_pes as usize).clamp(1, 8192);
        for i in 0..slots {
            let off = pe_table + i * PE_SLOT;
            let Ok(slot) = h.bytes(off, PE_SLOT) else {
                break;
            };
            let s = le::Fields::new(slot, "PE table slot");
            if s.u8(0)? != 1 {
                continue;
            }
            let pe = PhysExtent {
                pe_id: s.u32(1)?,
                volume_id: s.u32(5)?,
                p_off: s.u64(9)?,
                l_off: s.u64(0x11)?,
                len: s.u64(0x19)?,
            };
            if pe.len == 0
                || pe.p_off.checked_add(pe.len).is_none()
                || pe.l_off.checked_add(pe.len).is_none()
            {
                continue;
            }
            hdr.extents.push(pe);
        }
        if hdr.extents.is_empty() {
            // No PE table (or unreadable): the volume table's PE range,
            // contiguous from dataOffset, is what the PE table would say.
            let count = hdr
                .last_pe
                .checked_sub(hdr.first_pe)
                .map(|n| n + 1)
                .unwrap_or(0);
            if let (Some(l_off), Some(len)) = (
                hdr.first_pe.checked_mul(PE_UNIT),
                count.checked_mul(PE_UNIT),
            ) {
                if len > 0 {
                    hdr.extents.push(PhysExtent {
                        pe_id: 0,
                        volume_id: 0,
                        p_off: hdr.data_offset,
                        l_off,
                        len,
                    });
                }
            }
        }
        Ok(hdr)
    }
}

/// One contiguous run of volume bytes on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub l_off: u64,
    pub len: u64,
    /// Index into [`LogicalVolume::devices`].
    pub dev: usize,
    pub p_off: u64,
}

/// Where a run of volume bytes lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DevRange {
    pub dev: usize,
    pub offset: u64,
    pub len: u64,
}

/// A VMFS volume's byte space: either one device read as is (no LVM
/// layer), or the PEs of one or more LVM devices joined by lOffset.
pub struct LogicalVolume {
    pub devices: Vec<Box<dyn BlockDevice>>,
    pub segments: Vec<Segment>,
    pub size: u64,
    /// LVM headers of the devices (same order), if the volume has the layer.
    pub lvm: Vec<LvmHeader>,
    /// Volume byte ranges no given device holds (a missing extent).
    pub missing: Vec<(u64, u64)>,
}

impl LogicalVolume {
    /// A device that is the volume itself (no LVM header).
    pub fn bare(dev: Box<dyn BlockDevice>) -> LogicalVolume {
        let size = dev.size();
        LogicalVolume {
            devices: vec![dev],
            segments: vec![Segment {
                l_off: 0,
                len: size,
                dev: 0,
                p_off: 0,
            }],
            size,
            lvm: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Joins LVM devices. Devices of other volumes than the first one's LV
    /// UUID are returned in the error; order does not matter.
    pub fn assemble(devs: Vec<Box<dyn BlockDevice>>) -> Result<LogicalVolume> {
        let mut hdrs = Vec::new();
        for d in &devs {
            hdrs.push(LvmHeader::read(d.as_ref())?);
        }
        let Some(first) = hdrs.first() else {
            return Err(Error::NotFound("no device given".into()));
        };
        let uuid = first.lv_uuid;
        for (d, h) in devs.iter().zip(&hdrs) {
            if h.lv_uuid != uuid {
                return Err(Error::corrupt(format!(
                    "{} belongs to LVM volume {} ({}), not {} ({})",
                    d.name(),
                    h.lv_uuid,
                    h.lv_name,
                    uuid,
                    first.lv_name
                )));
            }
        }
        // Two copies of one extent (a disk and its raw clone) are not two
        // parts of a span: which one to read is the user's choice, or
        // `crate::copies`' when it discovers the devices itself.
        for (i, a) in hdrs.iter().enumerate() {
            for (j, b) in hdrs.iter().enumerate().skip(i + 1) {
                if a.is_copy_of(b) {
                    return Err(Error::Copies(format!(
                        "{} and {} are copies of the same extent (LVM device {}, generation {} and {}); \
                         name only one of them",
                        devs[i].name(),
                        devs[j].name(),
                        a.device_uuid,
                        a.generation,
                        b.generation
                    )));
                }
            }
        }
        let size = hdrs.iter().map(|h| h.lv_size).max().unwrap_or(0);
        let mut segments = Vec::new();
        for (i, (d, h)) in devs.iter().zip(&hdrs).enumerate() {
            for pe in &h.extents {
                if pe.l_off >= size {
                    continue;
                }
                let len = pe.len.min(size - pe.l_off);
                // An extent past the device end is kept: reads there fail
                // with the device's own error, which names the offset.
                let _ = d;
                segments.push(Segment {
                    l_off: pe.l_off,
                    len,
                    dev: i,
                    p_off: pe.p_off,
                });
            }
        }
        segments.sort_by_key(|s| s.l_off);
        // Overlapping PEs would make reads ambiguous: keep the first.
        let mut clean: Vec<Segment> = Vec::new();
        for s in segments {
            if let Some(last) = clean.last() {
                if s.l_off < last.l_off + last.len {
                    return Err(Error::corrupt(format!(
                        "PE at volume offset {:#x} on device {} overlaps the PE at {:#x}",
                        s.l_off, s.dev, last.l_off
                    )));
                }
            }
            clean.push(s);
        }
        let mut missing = Vec::new();
        let mut pos = 0;
        for s in &clean {
            if s.l_off > pos {
                missing.push((pos, s.l_off - pos));
            }
            pos = s.l_off + s.len;
        }
        if pos < size {
            missing.push((pos, size - pos));
        }
        Ok(LogicalVolume {
            devices: devs,
            segments: clean,
            size,
            lvm: hdrs,
            missing,
        })
    }

    /// Device ranges holding volume bytes `off..off+len`; an error names a
    /// range no device holds.
    pub fn map(&self, off: u64, len: u64) -> Result<Vec<DevRange>> {
        let mut out = Vec::new();
        let mut pos = off;
        let end = off.saturating_add(len);
        while pos < end {
            let idx = self.segments.partition_point(|s| s.l_off + s.len <= pos);
            let s = self.segments.get(idx).filter(|s| s.l_off <= pos).ok_or_else(|| {
                Error::corrupt(format!(
                    "volume offset {pos:#x} is on no given device (volume size {:#x}; a missing extent?)",
                    self.size
                ))
            })?;
            let n = (s.l_off + s.len - pos).min(end - pos);
            out.push(DevRange {
                dev: s.dev,
                offset: s.p_off + (pos - s.l_off),
                len: n,
            });
            pos += n;
        }
        Ok(out)
    }

    /// Reads volume bytes; `what` names the structure for error messages.
    pub fn read(&self, buf: &mut [u8], off: u64, what: &str) -> Result<()> {
        let mut done = 0usize;
        for r in self.map(off, buf.len() as u64)? {
            let dev = &self.devices[r.dev];
            let n = r.len as usize;
            dev.read_exact_at(&mut buf[done..done + n], r.offset)
                .map_err(|e| {
                    Error::io(
                        format!(
                            "{what} (volume {:#x}) at {}:{:#x}",
                            off + done as u64,
                            dev.name(),
                            r.offset
                        ),
                        e,
                    )
                })?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(major: u32, mda: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x90000];
        b[0..4].copy_from_slice(&LVM_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&major.to_le_bytes());
        b[0x7A..0x82].copy_from_slice(&0x110_0000u64.to_le_bytes());
        b[0xCA..0xCE].copy_from_slice(&mda.to_le_bytes());
        let vt = if major >= 6 { mda as usize } else { 0x200 };
        b[vt..vt + 8].copy_from_slice(&(512u64 << 20).to_le_bytes());
        b[vt + 0x80..vt + 0x88].copy_from_slice(&1u64.to_le_bytes());
        b
    }

    #[test]
    fn falls_back_to_volume_table_range_without_pe_table() {
        let h = LvmHeader::parse(&header(5, 0)).unwrap();
        assert_eq!(
            h.extents,
            vec![PhysExtent {
                pe_id: 0,
                volume_id: 0,
                p_off: 0x110_0000,
                l_off: 0,
                len: 512 << 20
            }]
        );
    }

    #[test]
    fn bad_magic_and_alignment_are_errors() {
        let mut b = header(5, 0);
        b[0] = 0;
        assert!(LvmHeader::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let b = header(6, 100);
        assert!(LvmHeader::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("mdAlignment"));
        assert!(LvmHeader::parse(&[0u8; 10]).is_err());
    }
}
