//! Disk health, read without writing anything: ATA disks through SG_IO ATA
//! PASS-THROUGH (IDENTIFY, SMART READ DATA/THRESHOLDS, RETURN STATUS), NVMe
//! through the admin Get Log Page (SMART / Health Information). A device that
//! cannot report health is "unknown"; no value is ever invented.

pub mod ata;
pub mod nvme;
mod passthrough;

use serde::Serialize;
use std::fs::File;
use std::path::Path;

/// The overall verdict shown in the overview.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The device says it is fine and no counter is worrying.
    Passed,
    /// Counters show damage (reallocated, pending, uncorrectable sectors,
    /// media errors, spare low): copy the data off first.
    Warning,
    /// The device itself reports failure (SMART status, an attribute below
    /// threshold, an NVMe critical warning).
    Failing,
    /// The device cannot report health (virtio, SCSI behind a RAID
    /// controller, no SMART), or asking failed.
    Unknown,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "ok",
            Verdict::Warning => "WARN",
            Verdict::Failing => "FAILING",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Everything health-related known about one disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub verdict: Verdict,
    /// "ata-smart", "nvme-smart-log", or "none".
    pub source: &'static str,
    pub reallocated_sectors: Option<u64>,
    pub pending_sectors: Option<u64>,
    pub uncorrectable_sectors: Option<u64>,
    pub power_on_hours: Option<u64>,
    pub temperature_c: Option<i32>,
    /// NVMe only.
    pub percentage_used: Option<u8>,
    pub available_spare: Option<u8>,
    pub media_errors: Option<u64>,
    pub critical_warning: Option<u8>,
    /// ATA only: the raw tables, for the detail view and scripts.
    pub identify: Option<ata::Identify>,
    pub attributes: Vec<ata::Attribute>,
    /// Plain-language findings, most important first.
    pub findings: Vec<String>,
}

impl Health {
    pub fn unknown(reason: impl Into<String>) -> Health {
        Health {
            verdict: Verdict::Unknown,
            source: "none",
            reallocated_sectors: None,
            pending_sectors: None,
            uncorrectable_sectors: None,
            power_on_hours: None,
            temperature_c: None,
            percentage_used: None,
            available_spare: None,
            media_errors: None,
            critical_warning: None,
            identify: None,
            attributes: Vec::new(),
            findings: vec![reason.into()],
        }
    }
}

/// How to ask a disk, decided from its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// SCSI disk node with an ATA device behind a SAT layer (libata, USB bridges).
    AtaPassThrough,
    /// An NVMe namespace or controller node.
    NvmeAdmin,
}

/// Queries the disk at `dev` (e.g. `/dev/sda`). Opens it read-only; the
/// commands sent only read device state.
pub fn query(dev: &Path, method: Method) -> Health {
    let file = match File::open(dev) {
        Ok(f) => f,
        Err(e) => return Health::unknown(format!("cannot open {}: {e}", dev.display())),
    };
    match method {
        Method::AtaPassThrough => query_ata(&file),
        Method::NvmeAdmin => query_nvme(&file),
    }
}

const TIMEOUT_MS: u32 = 10_000;

fn query_ata(file: &File) -> Health {
    let mut id_buf = vec![0u8; 512];
    let id = match passthrough::sg_io(file, &ata::identify_cdb(), Some(&mut id_buf), TIMEOUT_MS) {
        Ok(r) if !r.failed() => match ata::parse_identify(&id_buf) {
            Ok(id) => id,
            Err(e) => return Health::unknown(format!("IDENTIFY: {e}")),
        },
        Ok(_) => return Health::unknown("the device does not answer ATA PASS-THROUGH"),
        Err(e) => return Health::unknown(format!("ATA PASS-THROUGH not possible: {e}")),
    };
    if !id.smart_supported {
        let mut h = Health::unknown("the drive does not support SMART");
        h.identify = Some(id);
        return h;
    }
    let mut data = vec![0u8; 512];
    let mut thr = vec![0u8; 512];
    let data_ok = matches!(
        passthrough::sg_io(file, &ata::smart_cdb(ata::SMART_READ_DATA), Some(&mut data), TIMEOUT_MS),
        Ok(ref r) if !r.failed()
    );
    let thr_ok = matches!(
        passthrough::sg_io(file, &ata::smart_cdb(ata::SMART_READ_THRESHOLDS), Some(&mut thr), TIMEOUT_MS),
        Ok(ref r) if !r.failed()
    );
    let status = passthrough::sg_io(
        file,
        &ata::smart_cdb(ata::SMART_RETURN_STATUS),
        None,
        TIMEOUT_MS,
    )
    .ok()
    .and_then(|r| ata::smart_status_from_sense(&r.sense));
    let attributes = if data_ok {
        ata::parse_smart(&data, thr_ok.then_some(&thr[..])).unwrap_or_default()
    } else {
        Vec::new()
    };
    assess_ata(id, status, attributes)
}

/// The verdict from ATA data (pure, for tests).
pub fn assess_ata(
    id: ata::Identify,
    status: Option<bool>,
    attributes: Vec<ata::Attribute>,
) -> Health {
    let raw = |n: u8| attributes.iter().find(|a| a.id == n).map(|a| a.raw);
    let mut h = Health::unknown("");
    h.findings.clear();
    h.source = "ata-smart";
    h.reallocated_sectors = raw(5).map(|r| r & 0xFFFF_FFFF);
    h.pending_sectors = raw(197).map(|r| r & 0xFFFF_FFFF);
    h.uncorrectable_sectors = raw(198).map(|r| r & 0xFFFF_FFFF);
    h.power_on_hours = raw(9).map(|r| r & 0xFFFF_FFFF);
    // 194 (or 190) keeps the current temperature in its lowest raw byte.
    h.temperature_c = raw(194).or(raw(190)).map(|r| (r & 0xFF) as i32);
    let below: Vec<String> = attributes
        .iter()
        .filter(|a| a.prefailure && a.threshold.is_some_and(|t| t > 0 && a.current <= t))
        .map(|a| {
            format!(
                "attribute {} is at {} (threshold {})",
                a.id,
                a.current,
                a.threshold.unwrap_or(0)
            )
        })
        .collect();
    let mut verdict = match status {
        Some(true) => Verdict::Passed,
        Some(false) => {
            h.findings
                .push("the drive reports SMART failure: it expects to fail soon".into());
            Verdict::Failing
        }
        None if attributes.is_empty() => {
            h.findings
                .push("SMART status and data could not be read".into());
            Verdict::Unknown
        }
        None => Verdict::Passed,
    };
    if !below.is_empty() {
        verdict = Verdict::Failing;
        h.findings.extend(below);
    }
    for (name, v) in [
        ("reallocated", h.reallocated_sectors),
        ("pending (unreadable now)", h.pending_sectors),
        ("offline uncorrectable", h.uncorrectable_sectors),
    ] {
        if let Some(n) = v.filter(|&n| n > 0) {
            h.findings.push(format!("{n} {name} sectors"));
            if verdict == Verdict::Passed {
                verdict = Verdict::Warning;
            }
        }
    }
    if let Some(w) = capacity_mismatch(&id.model, id.sectors * u64::from(id.logical_sector_size)) {
        h.findings.push(w);
        if verdict == Verdict::Passed {
            verdict = Verdict::Warning;
        }
    }
    h.verdict = verdict;
    h.attributes = attributes;
    h.identify = Some(id);
    h
}

fn query_nvme(file: &File) -> Health {
    let mut buf = vec![0u8; nvme::LOG_SMART_HEALTH_LEN as usize];
    if let Err(e) = passthrough::nvme_get_log_page(file, nvme::LOG_SMART_HEALTH, &mut buf) {
        return Health::unknown(format!("NVMe Get Log Page failed: {e}"));
    }
    if buf.iter().all(|&b| b == 0) {
        return Health::unknown("the NVMe controller returned an empty SMART log");
    }
    match nvme::parse_smart_log(&buf) {
        Ok(s) => assess_nvme(&s),
        Err(e) => Health::unknown(e),
    }
}

/// The verdict from an NVMe SMART log (pure, for tests).
pub fn assess_nvme(s: &nvme::NvmeSmart) -> Health {
    let mut h = Health::unknown("");
    h.findings.clear();
    h.source = "nvme-smart-log";
    h.temperature_c = Some(s.temperature_c);
    h.power_on_hours = Some(s.power_on_hours);
    h.percentage_used = Some(s.percentage_used);
    h.available_spare = Some(s.available_spare);
    h.media_errors = Some(s.media_errors);
    h.critical_warning = Some(s.critical_warning);
    let mut verdict = Verdict::Passed;
    if s.critical_warning != 0 {
        verdict = Verdict::Failing;
        for w in nvme::critical_warning_text(s.critical_warning) {
            h.findings.push(format!("critical warning: {w}"));
        }
    }
    if s.media_errors > 0 {
        h.findings.push(format!(
            "{} media errors (unrecovered data)",
            s.media_errors
        ));
        if verdict == Verdict::Passed {
            verdict = Verdict::Warning;
        }
    }
    if s.percentage_used >= 100 {
        h.findings
            .push(format!("{}% of rated endurance used", s.percentage_used));
        if verdict == Verdict::Passed {
            verdict = Verdict::Warning;
        }
    }
    h.verdict = verdict;
    h
}

/// A capacity written in the model name ("128GB", "1TB", "240G") that the
/// drive does not have (the first incident's SSD: 120 GB sold as 128 GB).
/// Only a shortfall of more than 2% is reported.
pub fn capacity_mismatch(model: &str, bytes: u64) -> Option<String> {
    let claimed = claimed_capacity(model)?;
    (bytes > 0 && (bytes as f64) < claimed as f64 * 0.98).then(|| {
        format!(
            "the model name claims {} but the drive reports {:.1} GB: possibly a counterfeit with less capacity than sold",
            claimed_text(claimed),
            bytes as f64 / 1e9
        )
    })
}

fn claimed_text(bytes: u64) -> String {
    if bytes >= 1_000_000_000_000 {
        format!("{} TB", bytes as f64 / 1e12)
    } else {
        format!("{} GB", bytes / 1_000_000_000)
    }
}

/// The largest `<number>G[B]` / `<number>T[B]` token in a model string.
pub fn claimed_capacity(model: &str) -> Option<u64> {
    let up = model.to_ascii_uppercase();
    let b = up.as_bytes();
    let mut best = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let num: f64 = up[start..i].parse().unwrap_or(0.0);
            let unit = b.get(i).copied();
            let after = i + 1 + usize::from(b.get(i + 1) == Some(&b'B'));
            let ends = b.get(after).is_none_or(|c| !c.is_ascii_alphanumeric());
            let mult = match unit {
                Some(b'G') if ends => 1e9,
                Some(b'T') if ends => 1e12,
                _ => 0.0,
            };
            if mult > 0.0 && num > 0.0 {
                let v = (num * mult) as u64;
                best = Some(best.map_or(v, |b: u64| b.max(v)));
            }
        } else {
            i += 1;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_capacities() {
        assert_eq!(
            claimed_capacity("FASTDISK SSD 128GB"),
            Some(128_000_000_000)
        );
        assert_eq!(
            claimed_capacity("Samsung SSD 860 EVO 1TB"),
            Some(1_000_000_000_000)
        );
        assert_eq!(
            claimed_capacity("KINGSTON SA400S37240G"),
            None,
            "240G is glued to letters"
        );
        assert_eq!(claimed_capacity("SSD 240G"), Some(240_000_000_000));
        assert_eq!(claimed_capacity("WDC WD40EFRX-68N32N0"), None);
        assert_eq!(claimed_capacity("QEMU HARDDISK"), None);
        assert_eq!(claimed_capacity("X 1.92TB"), Some(1_920_000_000_000));
    }

    #[test]
    fn counterfeit_ssd_is_flagged() {
        let id = ata::parse_identify(&ata::tests::fake_ssd_identify()).unwrap();
        let h = assess_ata(id, Some(true), Vec::new());
        assert_eq!(h.verdict, Verdict::Warning);
        assert!(
            h.findings[0].contains("claims 128 GB") && h.findings[0].contains("120.0 GB"),
            "{:?}",
            h.findings
        );
        // A genuine 128 GB drive (250,069,680 sectors) is fine.
        assert!(capacity_mismatch("SSD 128GB", 250_069_680 * 512).is_none());
    }

    #[test]
    fn ata_verdicts() {
        let id = ata::parse_identify(&ata::tests::fake_ssd_identify()).unwrap();
        let attr = |id, current, threshold, raw| ata::Attribute {
            id,
            current,
            worst: current,
            threshold: Some(threshold),
            raw,
            prefailure: true,
        };
        let mut id2 = id.clone();
        id2.model = "QEMU HARDDISK".into();
        let h = assess_ata(
            id2.clone(),
            Some(true),
            vec![attr(5, 100, 36, 0), attr(9, 100, 0, 1234)],
        );
        assert_eq!(h.verdict, Verdict::Passed);
        assert_eq!(h.power_on_hours, Some(1234));
        let h = assess_ata(id2.clone(), Some(true), vec![attr(197, 100, 0, 8)]);
        assert_eq!(h.verdict, Verdict::Warning);
        assert_eq!(h.pending_sectors, Some(8));
        let h = assess_ata(id2.clone(), Some(true), vec![attr(5, 30, 36, 900)]);
        assert_eq!(h.verdict, Verdict::Failing);
        let h = assess_ata(id2.clone(), Some(false), vec![]);
        assert_eq!(h.verdict, Verdict::Failing);
        let h = assess_ata(id2, None, vec![]);
        assert_eq!(h.verdict, Verdict::Unknown);
    }

    #[test]
    fn nvme_verdicts() {
        let mut s = nvme::parse_smart_log(&[0u8; 512]).unwrap();
        assert_eq!(assess_nvme(&s).verdict, Verdict::Passed);
        s.media_errors = 3;
        assert_eq!(assess_nvme(&s).verdict, Verdict::Warning);
        s.critical_warning = 4;
        let h = assess_nvme(&s);
        assert_eq!(h.verdict, Verdict::Failing);
        assert!(h.findings[0].contains("reliability degraded"));
    }
}
