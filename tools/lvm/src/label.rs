//! The on-disk part of an LVM2 physical volume: the label, the PV header
//! and the text metadata areas (lvm2's `lib/label/label.h` and
//! `lib/format_text/layout.h`). Every integer is little-endian.
//!
//! Label sector: one of the device's first four 512-byte sectors (sector 1
//! as pvcreate writes it).
//!
//! | offset | size | field (`label_header`) |
//! |---|---|---|
//! | 0 | 8 | id, `LABELONE` |
//! | 8 | 8 | sector_xl: the number of this sector |
//! | 16 | 4 | crc_xl: [`lvm_crc`] of bytes 20..512 of the sector |
//! | 20 | 4 | offset_xl: where the `pv_header` starts in the sector (32) |
//! | 24 | 8 | type, `LVM2 001` |
//!
//! `pv_header` at offset_xl: the PV UUID (32 characters, no dashes) at +0,
//! device_size_xl (bytes) at +32, then two lists of `disk_locn` (offset
//! u64, size u64, both bytes from the start of the device), each ended by an
//! all-zero entry: the data areas (where the extents are; size 0: to the end
//! of the device), then the metadata areas. A `pv_header_extension`
//! (version, flags, bootloader areas) follows; nothing here needs it.
//!
//! Metadata area: starts with a 512-byte `mda_header`:
//!
//! | offset | size | field (`mda_header`) |
//! |---|---|---|
//! | 0 | 4 | checksum_xl: [`lvm_crc`] of bytes 4..512 |
//! | 4 | 16 | magic, ` LVM2 x[5A%r0N*>` |
//! | 20 | 4 | version, 1 |
//! | 24 | 8 | start: the header's own byte offset on the device |
//! | 32 | 8 | size: of the whole area, header included |
//! | 40 | 24 each | `raw_locn` list, ended by an all-zero entry |
//!
//! `raw_locn`: offset u64 (bytes from the area's start), size u64 (bytes,
//! the terminating NUL included), checksum u32 ([`lvm_crc`] of those
//! bytes), flags u32 (1: ignored, the area is not kept up to date). Slot 0
//! is the committed metadata. The text area after the header is a ring:
//! text that runs past the end of the area continues right after the
//! header (`offset + size > area size`; lvm2's `_vg_read_raw_area`).

use blockdev::BlockDevice;

/// `LABELONE`.
pub const LABEL_ID: &[u8; 8] = b"LABELONE";
/// `LVM2 001`.
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
/// The metadata area header's magic (lvm2's FMTT_MAGIC).
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// The only metadata area header version there is.
pub const MDA_VERSION: u32 = 1;
/// Size of the metadata area header; the text ring starts after it.
pub const MDA_HEADER_SIZE: u64 = 512;
/// The sectors a label may be in.
pub const LABEL_SCAN_SECTORS: u64 = 4;
/// lvm2's CRC seed (`INITIAL_CRC` in lib/misc/crc.h).
pub const INITIAL_CRC: u32 = 0xf597_a6cf;
/// `raw_locn` flag: this metadata area is ignored (not kept current).
pub const RAW_LOCN_IGNORED: u32 = 1;
/// Metadata text larger than this is refused (lvm2's own limit is the
/// area size; real VGs hold a few KiB to a few MiB).
pub const MAX_METADATA: u64 = 128 << 20;

// label_header field offsets.
const LH_SECTOR: usize = 8;
const LH_CRC: usize = 16;
const LH_OFFSET: usize = 20;
const LH_TYPE: usize = 24;
const LH_SIZE: usize = 32;
// pv_header field offsets.
const PVH_UUID: usize = 0;
const PVH_DEVICE_SIZE: usize = 32;
const PVH_AREAS: usize = 40;
// mda_header field offsets.
const MDAH_MAGIC: usize = 4;
const MDAH_VERSION: usize = 20;
const MDAH_START: usize = 24;
const MDAH_SIZE: usize = 32;
const MDAH_LOCNS: usize = 40;
const RAW_LOCN_SIZE: usize = 24;

/// lvm2's CRC-32 (`calc_crc`): the reflected polynomial 0xedb88320 of
/// zlib, but started from `initial` (normally [`INITIAL_CRC`]) with no
/// inversion before or after. crc32fast inverts on both ends, so the seed
/// and the result are inverted around it.
pub fn lvm_crc(initial: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!initial);
    h.update(data);
    !h.finalize()
}

/// A byte range of the device: `disk_locn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Area {
    pub offset: u64,
    /// Bytes; 0 for a data area means "to the end of the device".
    pub size: u64,
}

/// The PV label and header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PvHeader {
    /// Which of the first four sectors the label is in.
    pub label_sector: u64,
    /// The PV UUID as LVM shows it (`xxxxxx-xxxx-...-xxxxxx`).
    pub uuid: String,
    /// The device size pvcreate saw, bytes.
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

/// One `raw_locn` of a metadata area header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RawLocn {
    pub offset: u64,
    pub size: u64,
    pub checksum: u32,
    pub flags: u32,
}

/// A metadata area's header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MdaHeader {
    pub start: u64,
    pub size: u64,
    pub version: u32,
    pub raw_locns: Vec<RawLocn>,
}

/// The committed metadata text of one metadata area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataText {
    /// Byte offset of the area on the device.
    pub area_start: u64,
    /// Where the text starts, from the area's start.
    pub offset: u64,
    /// Bytes, the NUL included.
    pub size: u64,
    /// The text ran past the end of the ring and continued after the header.
    pub wrapped: bool,
    /// The area is flagged as ignored (its copy may be old).
    pub ignored: bool,
    /// The text, up to its NUL.
    pub text: String,
}

/// What one metadata area gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdaRead {
    /// An area that holds no metadata yet (an orphan PV).
    Empty,
    Text(MetadataText),
}

/// A physical volume as read from its device: the header and, per metadata
/// area, its text or why it could not be read.
#[derive(Clone, Debug)]
pub struct PvOnDisk {
    pub header: PvHeader,
    pub metadata: Vec<Result<MdaRead, String>>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    // Callers check lengths; a short slice reads as zeros rather than panic.
    let mut v = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// LVM's UUID form: 32 characters in groups of 6-4-4-4-4-4-6.
pub fn format_uuid(raw: &[u8]) -> String {
    let s: String = raw.iter().map(|&c| c as char).collect();
    let mut out = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(s.get(at..at + n).unwrap_or(""));
        at += n;
    }
    out
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("{what} at byte {offset}: {e}"))?;
    Ok(buf)
}

/// Finds the label in the first four sectors and parses the PV header.
/// `Ok(None)`: no `LABELONE` (not a PV). An error: a label that is there but
/// broken, naming the byte offset and the field.
pub fn read_header(dev: &dyn BlockDevice) -> Result<Option<PvHeader>, String> {
    let len = (LABEL_SCAN_SECTORS * 512).min(dev.size()) as usize;
    let head = read(dev, 0, len, "label scan")?;
    for sector in 0..LABEL_SCAN_SECTORS {
        let base = (sector * 512) as usize;
        let Some(s) = head.get(base..base + 512) else {
            break;
        };
        if &s[..8] != LABEL_ID {
            continue;
        }
        return parse_label_sector(s, sector).map(Some);
    }
    Ok(None)
}

/// Parses the 512-byte label sector found at `sector`.
pub fn parse_label_sector(s: &[u8], sector: u64) -> Result<PvHeader, String> {
    let at = sector * 512;
    if s.len() < 512 {
        return Err(format!(
            "label at byte {at}: sector is {} bytes, expected 512",
            s.len()
        ));
    }
    let recorded = u64_at(s, LH_SECTOR);
    if recorded != sector {
        return Err(format!(
            "label at byte {at}: field sector_xl (+{LH_SECTOR}) is {recorded}, expected {sector}"
        ));
    }
    if &s[LH_TYPE..LH_TYPE + 8] != LABEL_TYPE {
        return Err(format!(
            "label at byte {at}: field type (+{LH_TYPE}) is {:?}, expected \"LVM2 001\"",
            String::from_utf8_lossy(&s[LH_TYPE..LH_TYPE + 8])
        ));
    }
    let crc = u32_at(s, LH_CRC);
    let computed = lvm_crc(INITIAL_CRC, &s[LH_OFFSET..512]);
    if crc != computed {
        return Err(format!(
            "label at byte {at}: field crc_xl (+{LH_CRC}) is {crc:#010x}, computed {computed:#010x}"
        ));
    }
    let off = u32_at(s, LH_OFFSET) as usize;
    if !(LH_SIZE..=512 - PVH_AREAS - 16).contains(&off) {
        return Err(format!(
            "label at byte {at}: field offset_xl (+{LH_OFFSET}) is {off}, expected 32..{}",
            512 - PVH_AREAS - 16
        ));
    }
    let pvh = &s[off..];
    let uuid_raw = &pvh[PVH_UUID..PVH_UUID + 32];
    if !uuid_raw.iter().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "PV header at byte {}: field pv_uuid (+0) is not 32 letters and digits",
            at + off as u64
        ));
    }
    let device_size = u64_at(pvh, PVH_DEVICE_SIZE);
    let mut lists: [Vec<Area>; 2] = [Vec::new(), Vec::new()];
    let mut pos = PVH_AREAS;
    for (which, list) in lists.iter_mut().enumerate() {
        loop {
            if pos + 16 > pvh.len() {
                return Err(format!(
                    "PV header at byte {}: the {} area list (+{pos}) runs past the label sector",
                    at + off as u64,
                    ["data", "metadata"][which]
                ));
            }
            let a = Area {
                offset: u64_at(pvh, pos),
                size: u64_at(pvh, pos + 8),
            };
            pos += 16;
            if a.offset == 0 {
                break;
            }
            list.push(a);
        }
    }
    let [data_areas, metadata_areas] = lists;
    Ok(PvHeader {
        label_sector: sector,
        uuid: format_uuid(uuid_raw),
        device_size,
        data_areas,
        metadata_areas,
    })
}

/// Parses a 512-byte metadata area header read at byte `start`.
pub fn parse_mda_header(b: &[u8], start: u64) -> Result<MdaHeader, String> {
    if b.len() < MDA_HEADER_SIZE as usize {
        return Err(format!(
            "metadata area header at byte {start}: {} bytes, expected 512",
            b.len()
        ));
    }
    let b = &b[..MDA_HEADER_SIZE as usize];
    if &b[MDAH_MAGIC..MDAH_MAGIC + 16] != MDA_MAGIC {
        return Err(format!(
            "metadata area header at byte {start}: field magic (+{MDAH_MAGIC}) is {:?}, expected {:?}",
            String::from_utf8_lossy(&b[MDAH_MAGIC..MDAH_MAGIC + 16]),
            String::from_utf8_lossy(MDA_MAGIC)
        ));
    }
    let crc = u32_at(b, 0);
    let computed = lvm_crc(INITIAL_CRC, &b[MDAH_MAGIC..]);
    if crc != computed {
        return Err(format!(
            "metadata area header at byte {start}: field checksum_xl (+0) is {crc:#010x}, computed {computed:#010x}"
        ));
    }
    let version = u32_at(b, MDAH_VERSION);
    if version != MDA_VERSION {
        return Err(format!(
            "metadata area header at byte {start}: field version (+{MDAH_VERSION}) is {version}, expected {MDA_VERSION}"
        ));
    }
    let recorded = u64_at(b, MDAH_START);
    if recorded != start {
        return Err(format!(
            "metadata area header at byte {start}: field start (+{MDAH_START}) is {recorded}, expected {start}"
        ));
    }
    let size = u64_at(b, MDAH_SIZE);
    let mut raw_locns = Vec::new();
    let mut pos = MDAH_LOCNS;
    while pos + RAW_LOCN_SIZE <= b.len() {
        let l = RawLocn {
            offset: u64_at(b, pos),
            size: u64_at(b, pos + 8),
            checksum: u32_at(b, pos + 16),
            flags: u32_at(b, pos + 20),
        };
        if l.offset == 0 {
            break;
        }
        raw_locns.push(l);
        pos += RAW_LOCN_SIZE;
    }
    Ok(MdaHeader {
        start,
        size,
        version,
        raw_locns,
    })
}

/// Reads the committed metadata (slot 0) of the area at `area`, following
/// the ring past its end, and checks its checksum.
pub fn read_metadata(dev: &dyn BlockDevice, area: Area) -> Result<MdaRead, String> {
    let start = area.offset;
    let hb = read(dev, start, MDA_HEADER_SIZE as usize, "metadata area header")?;
    let h = parse_mda_header(&hb, start)?;
    if h.size <= MDA_HEADER_SIZE || (area.size != 0 && h.size > area.size) {
        return Err(format!(
            "metadata area header at byte {start}: field size (+{MDAH_SIZE}) is {}, expected 513..={} (the PV header's area size)",
            h.size, area.size
        ));
    }
    if start.checked_add(h.size).is_none_or(|end| end > dev.size()) {
        return Err(format!(
            "metadata area header at byte {start}: field size (+{MDAH_SIZE}) is {}, past the end of the device ({} bytes)",
            h.size,
            dev.size()
        ));
    }
    let Some(l) = h.raw_locns.first().copied() else {
        return Ok(MdaRead::Empty);
    };
    if l.size == 0 {
        return Ok(MdaRead::Empty);
    }
    let ring = h.size - MDA_HEADER_SIZE;
    let slot = MDAH_LOCNS;
    if l.offset < MDA_HEADER_SIZE || l.offset >= h.size {
        return Err(format!(
            "metadata area header at byte {start}: raw_locn 0 (+{slot}) offset is {}, expected {MDA_HEADER_SIZE}..{}",
            l.offset, h.size
        ));
    }
    if l.size > ring || l.size > MAX_METADATA {
        return Err(format!(
            "metadata area header at byte {start}: raw_locn 0 (+{}) size is {}, larger than the ring ({ring} bytes)",
            slot + 8,
            l.size
        ));
    }
    let first = l.size.min(h.size - l.offset);
    let wrap = l.size - first;
    let mut text = read(dev, start + l.offset, first as usize, "metadata text")?;
    if wrap > 0 {
        text.extend(read(
            dev,
            start + MDA_HEADER_SIZE,
            wrap as usize,
            "metadata text (wrapped part)",
        )?);
    }
    let computed = lvm_crc(INITIAL_CRC, &text);
    if computed != l.checksum {
        return Err(format!(
            "metadata text at byte {} ({} bytes{}): checksum in raw_locn 0 is {:#010x}, computed {computed:#010x}",
            start + l.offset,
            l.size,
            if wrap > 0 {
                format!(", {wrap} of them wrapped to byte {}", start + MDA_HEADER_SIZE)
            } else {
                String::new()
            },
            l.checksum
        ));
    }
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    Ok(MdaRead::Text(MetadataText {
        area_start: start,
        offset: l.offset,
        size: l.size,
        wrapped: wrap > 0,
        ignored: l.flags & RAW_LOCN_IGNORED != 0,
        text: String::from_utf8_lossy(&text[..end]).into_owned(),
    }))
}

/// Reads a PV: `Ok(None)` when the device has no LVM2 label; else the
/// header and what each metadata area holds.
pub fn read_pv(dev: &dyn BlockDevice) -> Result<Option<PvOnDisk>, String> {
    let Some(header) = read_header(dev)? else {
        return Ok(None);
    };
    let metadata = header
        .metadata_areas
        .iter()
        .map(|&a| read_metadata(dev, a))
        .collect();
    Ok(Some(PvOnDisk { header, metadata }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_lvm2_for_known_input() {
        // Against a bit-by-bit rendering of lvm2's calc_crc (the table-free
        // _calc_crc_old form: reflected 0xedb88320, no inversions).
        fn slow(mut crc: u32, data: &[u8]) -> u32 {
            for &b in data {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
        for data in [&b""[..], b"a", b"LVM2 metadata text\n", &[0xffu8; 509][..]] {
            assert_eq!(lvm_crc(INITIAL_CRC, data), slow(INITIAL_CRC, data));
        }
        assert_eq!(lvm_crc(INITIAL_CRC, b""), INITIAL_CRC);
    }

    #[test]
    fn uuid_is_grouped_like_lvm() {
        assert_eq!(
            format_uuid(b"tu5UaOPodmQtGdlsENph2N3fkiV1bAeA"),
            "tu5UaO-Podm-QtGd-lsEN-ph2N-3fki-V1bAeA"
        );
    }
}
