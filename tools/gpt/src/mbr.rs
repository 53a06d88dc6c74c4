//! The MBR in sector 0: protective (one 0xEE entry), hybrid (0xEE plus
//! others), a plain MBR partition table, or nothing. Entries at 446, 16 bytes
//! each: 0 boot flag, 4 type, 8 first LBA, 12 sector count; 0x55AA at 510.

use blockdev::BlockDevice;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MbrKind {
    Protective,
    Hybrid,
    Classic,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MbrEntry {
    pub index: u8,
    pub bootable: bool,
    pub kind: u8,
    pub first_lba: u32,
    pub sectors: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mbr {
    pub kind: MbrKind,
    /// 0x55AA at byte 510.
    pub boot_signature: bool,
    /// The 32-bit disk signature at byte 440.
    pub disk_signature: u32,
    pub entries: Vec<MbrEntry>,
}

pub fn parse(sector: &[u8]) -> Mbr {
    use crate::layout::mbr as m;
    let f = le::Fields::new(sector, "MBR");
    if f.array(m::BOOT_SIGNATURE) != Ok([0x55, 0xAA]) {
        return Mbr {
            kind: MbrKind::None,
            boot_signature: false,
            disk_signature: 0,
            entries: Vec::new(),
        };
    }
    let entries: Vec<MbrEntry> = (0..4)
        .filter_map(|i| {
            let at = m::ENTRIES + m::ENTRY_SIZE * i;
            let kind = f.u8(at + m::ENTRY_TYPE).ok()?;
            (kind != 0).then_some(())?;
            Some(MbrEntry {
                index: i as u8 + 1,
                bootable: f.u8(at + m::ENTRY_BOOT_FLAG).ok()? == 0x80,
                kind,
                first_lba: f.u32(at + m::ENTRY_FIRST_LBA).ok()?,
                sectors: f.u32(at + m::ENTRY_SECTORS).ok()?,
            })
        })
        .collect();
    let disk_signature = f.u32(m::DISK_SIGNATURE).unwrap_or(0);
    let ee = entries.iter().filter(|e| e.kind == 0xEE).count();
    let kind = match (ee, entries.len()) {
        (0, 0) => MbrKind::None,
        (0, _) => MbrKind::Classic,
        (_, n) if n == ee => MbrKind::Protective,
        _ => MbrKind::Hybrid,
    };
    Mbr {
        kind,
        boot_signature: true,
        disk_signature,
        entries,
    }
}

pub fn read(dev: &dyn BlockDevice) -> Mbr {
    let mut b = vec![0u8; 512];
    if dev.size() < 512 || dev.read_exact_at(&mut b, 0).is_err() {
        return Mbr {
            kind: MbrKind::None,
            boot_signature: false,
            disk_signature: 0,
            entries: Vec::new(),
        };
    }
    parse(&b)
}
