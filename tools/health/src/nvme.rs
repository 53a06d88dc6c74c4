//! NVMe SMART / Health Information log page (log identifier 02h, NVMe Base
//! Specification 2.0, Figure 207), fetched with the admin Get Log Page command.

use serde::Serialize;

pub const ADMIN_GET_LOG_PAGE: u8 = 0x02;
pub const LOG_SMART_HEALTH: u8 = 0x02;
pub const LOG_SMART_HEALTH_LEN: u32 = 512;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NvmeSmart {
    /// Byte 0: bit 0 spare below threshold, 1 temperature, 2 reliability
    /// degraded, 3 read-only, 4 volatile backup failed, 5 PMR read-only.
    pub critical_warning: u8,
    /// Bytes 1-2: composite temperature in kelvins, shown in Celsius.
    pub temperature_c: i32,
    /// Byte 3: available spare, percent.
    pub available_spare: u8,
    /// Byte 4: available spare threshold, percent.
    pub available_spare_threshold: u8,
    /// Byte 5: percentage of rated endurance used (may exceed 100).
    pub percentage_used: u8,
    /// Bytes 128-143 (we keep the low 64 bits).
    pub power_on_hours: u64,
    /// Bytes 160-175: unrecovered data integrity errors.
    pub media_errors: u64,
    /// Bytes 176-191.
    pub error_log_entries: u64,
    /// Bytes 48-63: units of 1000 512-byte sectors.
    pub data_units_written: u64,
}

pub fn parse_smart_log(d: &[u8]) -> Result<NvmeSmart, String> {
    if d.len() < 192 {
        return Err(format!("SMART log is {} bytes, expected 512", d.len()));
    }
    let f = le::Fields::new(d, "NVMe SMART log");
    let field = |e: le::OutOfRange| e.to_string();
    let kelvin = i32::from(f.u16(1).map_err(field)?);
    Ok(NvmeSmart {
        critical_warning: f.u8(0).map_err(field)?,
        temperature_c: if kelvin == 0 { 0 } else { kelvin - 273 },
        available_spare: f.u8(3).map_err(field)?,
        available_spare_threshold: f.u8(4).map_err(field)?,
        percentage_used: f.u8(5).map_err(field)?,
        power_on_hours: f.u64(128).map_err(field)?,
        media_errors: f.u64(160).map_err(field)?,
        error_log_entries: f.u64(176).map_err(field)?,
        data_units_written: f.u64(48).map_err(field)?,
    })
}

/// The critical warning bits in words.
pub fn critical_warning_text(bits: u8) -> Vec<&'static str> {
    const NAMES: [&str; 6] = [
        "available spare below threshold",
        "temperature out of range",
        "reliability degraded by media or internal errors",
        "media placed in read-only mode",
        "volatile memory backup failed",
        "persistent memory region read-only",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn fields() {
        let mut d = vec![0u8; 512];
        d[0] = 0b101;
        d[1..3].copy_from_slice(&323u16.to_le_bytes());
        d[3] = 100;
        d[4] = 10;
        d[5] = 3;
        d[128..136].copy_from_slice(&1234u64.to_le_bytes());
        d[160..168].copy_from_slice(&7u64.to_le_bytes());
        let s = parse_smart_log(&d).unwrap();
        assert_eq!(s.temperature_c, 50);
        assert_eq!(s.power_on_hours, 1234);
        assert_eq!(s.media_errors, 7);
        assert_eq!(
            critical_warning_text(s.critical_warning),
            [
                "available spare below threshold",
                "reliability degraded by media or internal errors"
            ]
        );
        assert!(parse_smart_log(&d[..100]).is_err());
    }
}
