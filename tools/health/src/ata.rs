//! ATA IDENTIFY DEVICE and SMART data (ACS-3 7.12 and the SMART attribute
//! table as drives have used it since ATA-3), and the ATA PASS-THROUGH(16)
//! command blocks that fetch them through a SCSI-ATA translation layer (SAT-3
//! 12.2.2). Everything here is a parser or a CDB builder; no I/O.

use serde::Serialize;

pub const ATA_IDENTIFY_DEVICE: u8 = 0xEC;
pub const ATA_SMART: u8 = 0xB0;
pub const SMART_READ_DATA: u8 = 0xD0;
pub const SMART_READ_THRESHOLDS: u8 = 0xD1;
pub const SMART_RETURN_STATUS: u8 = 0xDA;
/// LBA mid/high signature every SMART command carries (ACS-3 7.44).
pub const SMART_LBA_MID: u8 = 0x4F;
pub const SMART_LBA_HIGH: u8 = 0xC2;

/// ATA PASS-THROUGH(16) (opcode 0x85).
///
/// Byte 1: protocol << 1 (4 = PIO data-in, 3 = non-data). Byte 2: ck_cond
/// (bit 5, return the ATA registers in sense data), t_dir (bit 3, from the
/// device), byte_block (bit 2, count in blocks), t_length (bits 0-1, 2 = the
/// count is in the sector-count field). Bytes 4/6/8/10/12: features, count,
/// LBA low, mid, high (low halves); 13 device; 14 command.
pub fn pass_through_16(
    command: u8,
    features: u8,
    count: u8,
    lba: [u8; 3],
    data_in: bool,
) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x85;
    if data_in {
        cdb[1] = 4 << 1;
        cdb[2] = 0x08 | 0x04 | 0x02;
    } else {
        cdb[1] = 3 << 1;
        cdb[2] = 0x20;
    }
    cdb[4] = features;
    cdb[6] = count;
    cdb[8] = lba[0];
    cdb[10] = lba[1];
    cdb[12] = lba[2];
    cdb[13] = 0xA0 | 0x40; // obsolete bits set as drives expect, LBA mode
    cdb[14] = command;
    cdb
}

pub fn identify_cdb() -> [u8; 16] {
    pass_through_16(ATA_IDENTIFY_DEVICE, 0, 1, [0, 0, 0], true)
}

pub fn smart_cdb(feature: u8) -> [u8; 16] {
    let data_in = feature != SMART_RETURN_STATUS;
    pass_through_16(
        ATA_SMART,
        feature,
        u8::from(data_in),
        [0, SMART_LBA_MID, SMART_LBA_HIGH],
        data_in,
    )
}

/// The fields of IDENTIFY DEVICE data we use (word numbers per ACS-3 Table 45).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identify {
    /// Words 27-46, ATA string (byte pairs swapped).
    pub model: String,
    /// Words 10-19.
    pub serial: String,
    /// Words 23-26.
    pub firmware: String,
    /// User-addressable sectors: words 100-103 when 48-bit addressing is
    /// supported (word 83 bit 10), else words 60-61.
    pub sectors: u64,
    /// Logical sector size in bytes (word 106 bit 12 -> words 117-118 in words).
    pub logical_sector_size: u32,
    /// Word 82 bit 0 / word 85 bit 0.
    pub smart_supported: bool,
    pub smart_enabled: bool,
    /// Word 217: 1 = non-rotating (SSD), else RPM when 0x0401..=0xFFFE.
    pub rotation_rate: Option<u16>,
    /// Words 108-111 (NAA 5 world wide name), when word 84 bit 8 says valid.
    pub wwn: Option<String>,
}

/// IDENTIFY word `w`; the callers checked the 512 bytes are there, so a
/// missing word (never) reads as 0 rather than panicking.
fn word(d: &[u8], w: usize) -> u16 {
    le::Fields::new(d, "ATA IDENTIFY data")
        .u16(2 * w)
        .unwrap_or(0)
}

/// ATA strings store two characters per word, the first in the high byte.
fn ata_string(d: &[u8], first: usize, last: usize) -> String {
    let mut s = Vec::new();
    for w in first..=last {
        let v = word(d, w);
        s.push((v >> 8) as u8);
        s.push(v as u8);
    }
    String::from_utf8_lossy(&s)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

pub fn parse_identify(d: &[u8]) -> Result<Identify, String> {
    if d.len() < 512 {
        return Err(format!("IDENTIFY data is {} bytes, expected 512", d.len()));
    }
    if d.iter().all(|&b| b == 0) {
        return Err("IDENTIFY data is all zeros (the command was not translated)".into());
    }
    let lba48 = word(d, 83) & (1 << 10) != 0;
    let sectors = if lba48 {
        (0..4).fold(0u64, |acc, i| {
            acc | (u64::from(word(d, 100 + i)) << (16 * i))
        })
    } else {
        u64::from(word(d, 60)) | (u64::from(word(d, 61)) << 16)
    };
    let w106 = word(d, 106);
    let valid106 = w106 & 0xC000 == 0x4000;
    let logical = if valid106 && w106 & (1 << 12) != 0 {
        let words = u32::from(word(d, 117)) | (u32::from(word(d, 118)) << 16);
        words.saturating_mul(2)
    } else {
        512
    };
    let rot = word(d, 217);
    let rotation_rate = match rot {
        1 => Some(1),
        0x0401..=0xFFFE => Some(rot),
        _ => None,
    };
    let w84 = word(d, 84);
    let wwn = (w84 & 0xC000 == 0x4000 && w84 & (1 << 8) != 0).then(|| {
        (108..112)
            .map(|w| format!("{:04x}", word(d, w)))
            .collect::<String>()
    });
    Ok(Identify {
        model: ata_string(d, 27, 46),
        serial: ata_string(d, 10, 19),
        firmware: ata_string(d, 23, 26),
        sectors,
        logical_sector_size: logical.max(512),
        smart_supported: word(d, 82) & 1 != 0,
        smart_enabled: word(d, 85) & 1 != 0,
        rotation_rate,
        wwn: wwn.filter(|w| w != "0000000000000000"),
    })
}

/// One SMART attribute: 12 bytes at offset 2 + 12*i of the SMART data
/// sector (id, flags u16, normalized current, worst, raw 6 bytes LE, reserved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attribute {
    pub id: u8,
    pub current: u8,
    pub worst: u8,
    /// From READ THRESHOLDS (same layout: id, threshold, 10 reserved).
    pub threshold: Option<u8>,
    pub raw: u64,
    /// Flags bit 0: a pre-failure attribute (below threshold = failing).
    pub prefailure: bool,
}

/// Parses the attribute table of a SMART READ DATA sector and joins the
/// thresholds sector when given.
pub fn parse_smart(data: &[u8], thresholds: Option<&[u8]>) -> Result<Vec<Attribute>, String> {
    if data.len() < 362 {
        return Err(format!("SMART data is {} bytes, expected 512", data.len()));
    }
    let mut out = Vec::new();
    for i in 0..30 {
        let e = &data[2 + 12 * i..14 + 12 * i];
        if e[0] == 0 {
            continue;
        }
        let threshold = thresholds.filter(|t| t.len() >= 362).and_then(|t| {
            (0..30)
                .map(|j| &t[2 + 12 * j..14 + 12 * j])
                .find(|te| te[0] == e[0])
                .map(|te| te[1])
        });
        let mut raw = [0u8; 8];
        raw[..6].copy_from_slice(&e[5..11]);
        out.push(Attribute {
            id: e[0],
            current: e[3],
            worst: e[4],
            threshold,
            raw: u64::from_le_bytes(raw),
            prefailure: e[1] & 1 != 0,
        });
    }
    Ok(out)
}

/// SMART RETURN STATUS result from the ATA registers returned in sense data:
/// LBA mid/high 4F/C2 = good, F4/2C = a threshold was exceeded.
pub fn smart_status_from_sense(sense: &[u8]) -> Option<bool> {
    let (mid, high) = ata_lba_mid_high_from_sense(sense)?;
    match (mid, high) {
        (0x4F, 0xC2) => Some(true),
        (0xF4, 0x2C) => Some(false),
        _ => None,
    }
}

/// Finds the ATA Status Return descriptor (type 0x09, SAT-3 12.2.2.6) in
/// descriptor-format sense data, or the fixed-format equivalent.
fn ata_lba_mid_high_from_sense(sense: &[u8]) -> Option<(u8, u8)> {
    let code = *sense.first()? & 0x7F;
    if code == 0x72 || code == 0x73 {
        let add_len = *sense.get(7)? as usize;
        let end = (8 + add_len).min(sense.len());
        let mut i = 8;
        while i + 1 < end {
            let kind = sense[i];
            let len = sense[i + 1] as usize;
            if kind == 0x09 && i + 13 <= sense.len() {
                // Descriptor: 2 ext, 3 error, 4-5 count, 6-7 lba low, 8-9 mid, 10-11 high.
                return Some((sense[i + 9], sense[i + 11]));
            }
            i += 2 + len;
        }
        None
    } else if code == 0x70 || code == 0x71 {
        // Fixed format (SAT-3 12.2.2.7): information bytes 3-6 hold error,
        // status, device, count; command-specific bytes 8-11 hold ... LBA.
        Some((*sense.get(10)?, *sense.get(11)?))
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn put_string(d: &mut [u8], first: usize, last: usize, s: &str) {
        let mut bytes: Vec<u8> = s.bytes().collect();
        bytes.resize((last - first + 1) * 2, b' ');
        for (i, pair) in bytes.chunks(2).enumerate() {
            let w = first + i;
            d[2 * w] = pair[1];
            d[2 * w + 1] = pair[0];
        }
    }

    pub fn put_word(d: &mut [u8], w: usize, v: u16) {
        d[2 * w..2 * w + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// IDENTIFY data of a fake "128GB" SSD that holds 120 GB.
    pub fn fake_ssd_identify() -> Vec<u8> {
        let mut d = vec![0u8; 512];
        put_string(&mut d, 27, 46, "FASTDISK SSD 128GB");
        put_string(&mut d, 10, 19, "AA000000000000001234");
        put_string(&mut d, 23, 26, "SBFM61.3");
        put_word(&mut d, 82, 1);
        put_word(&mut d, 85, 1);
        put_word(&mut d, 83, 1 << 10);
        let sectors: u64 = 234_441_648; // 120.0 GB
        for i in 0..4 {
            put_word(&mut d, 100 + i, (sectors >> (16 * i)) as u16);
        }
        put_word(&mut d, 217, 1);
        d
    }

    #[test]
    fn identify_fields() {
        let id = parse_identify(&fake_ssd_identify()).unwrap();
        assert_eq!(id.model, "FASTDISK SSD 128GB");
        assert_eq!(id.serial, "AA000000000000001234");
        assert_eq!(id.firmware, "SBFM61.3");
        assert_eq!(id.sectors, 234_441_648);
        assert_eq!(id.logical_sector_size, 512);
        assert!(id.smart_supported && id.smart_enabled);
        assert_eq!(id.rotation_rate, Some(1));
        assert!(parse_identify(&[0u8; 512]).is_err());
        assert!(parse_identify(&[1u8; 100]).is_err());
    }

    #[test]
    fn smart_table_and_thresholds() {
        let mut data = vec![0u8; 512];
        let mut thr = vec![0u8; 512];
        // id 5 reallocated: current 100, worst 100, raw 8; threshold 36.
        data[2..14].copy_from_slice(&[5, 0x33, 0, 100, 100, 8, 0, 0, 0, 0, 0, 0]);
        thr[2..4].copy_from_slice(&[5, 36]);
        // id 194 temperature raw 0x28 = 40 C.
        data[14..26].copy_from_slice(&[194, 0x22, 0, 60, 50, 40, 0, 0, 0, 0, 0, 0]);
        let attrs = parse_smart(&data, Some(&thr)).unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].raw, 8);
        assert_eq!(attrs[0].threshold, Some(36));
        assert!(attrs[0].prefailure);
        assert_eq!(attrs[1].threshold, None);
        assert!(!attrs[1].prefailure);
    }

    #[test]
    fn status_from_descriptor_sense() {
        let mut s = vec![0u8; 22];
        s[0] = 0x72;
        s[7] = 14;
        s[8] = 0x09;
        s[9] = 12;
        s[17] = 0x4F;
        s[19] = 0xC2;
        assert_eq!(smart_status_from_sense(&s), Some(true));
        s[17] = 0xF4;
        s[19] = 0x2C;
        assert_eq!(smart_status_from_sense(&s), Some(false));
        assert_eq!(smart_status_from_sense(&[]), None);
        assert_eq!(
            smart_status_from_sense(&[0x72, 0, 0, 0, 0, 0, 0, 200]),
            None
        );
    }

    #[test]
    fn cdbs() {
        let c = identify_cdb();
        assert_eq!((c[0], c[1], c[2], c[6], c[14]), (0x85, 0x08, 0x0e, 1, 0xEC));
        let s = smart_cdb(SMART_RETURN_STATUS);
        assert_eq!(
            (s[1], s[2], s[4], s[6], s[10], s[12]),
            (0x06, 0x20, 0xDA, 0, 0x4F, 0xC2)
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            let _ = parse_identify(&data);
            let _ = parse_smart(&data, Some(&data));
            let _ = smart_status_from_sense(&data);
        }
    }
}
