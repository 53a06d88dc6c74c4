//! ESXi boot disks: which ESXi build each boot bank holds, from `boot.cfg`
//! (`build=5.0.0-1489271`) on the FAT boot bank partitions (slots 5 and 6
//! in the ESXi 5.x-8.x layouts).

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EsxiBoot {
    /// `build=` of /bootbank (slot 5) and /altbootbank (slot 6).
    pub bootbank_build: Option<String>,
    pub altbootbank_build: Option<String>,
}

impl EsxiBoot {
    /// "5.0.0" from the newest readable build.
    pub fn version(&self) -> Option<&str> {
        let b = self
            .bootbank_build
            .as_deref()
            .or(self.altbootbank_build.as_deref())?;
        Some(b.split('-').next().unwrap_or(b))
    }
}

/// The `build=` line of a boot.cfg.
pub fn build_of(boot_cfg: &str) -> Option<String> {
    boot_cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("build="))
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

/// Reads both boot banks of an ESXi boot disk whose GPT slots are `entries`.
/// On a compacted table the banks are found where the layout puts them, not
/// in the (wrong) slots 5 and 6.
pub fn read(dev: &dyn blockdev::BlockDevice, sector_size: u64, entries: &[gpt::Entry]) -> EsxiBoot {
    let mapping = gpt::verify::esxi_layout(entries)
        .map(|l| l.mapping)
        .unwrap_or_default();
    let bank = |esxi_slot: u32| -> Option<String> {
        let slot = mapping
            .iter()
            .find(|(_, to)| *to == esxi_slot)
            .map(|(from, _)| *from)
            .unwrap_or(esxi_slot);
        let e = entries.iter().find(|e| e.slot == slot)?;
        let vol = fat::Volume::open(dev, e.first_lba.checked_mul(sector_size)?).ok()?;
        let cfg = vol.read_file("boot.cfg").ok()?;
        build_of(&String::from_utf8_lossy(&cfg))
    };
    EsxiBoot {
        bootbank_build: bank(5),
        altbootbank_build: bank(6),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_line() {
        assert_eq!(
            super::build_of("title=x\nbuild=5.0.0-1489271\nupdated=2\n").as_deref(),
            Some("5.0.0-1489271")
        );
        assert_eq!(super::build_of("build=\n"), None);
        assert_eq!(super::build_of(""), None);
        let b = super::EsxiBoot {
            bootbank_build: Some("6.7.0-8169922".into()),
            altbootbank_build: None,
        };
        assert_eq!(b.version(), Some("6.7.0"));
    }
}
