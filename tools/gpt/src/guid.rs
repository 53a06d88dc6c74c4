//! GUIDs as stored in GPT structures, and the names of known partition types.
//!
//! On disk a GUID is 16 bytes in the "mixed-endian" EFI layout: the first three
//! groups (4, 2 and 2 bytes) are little-endian, the last two (2 and 6 bytes)
//! are stored in text order. `C12A7328-F81F-11D2-BA4B-00A0C93EC93B` is stored
//! as `28 73 2A C1 1F F8 D2 11 BA 4B 00 A0 C9 3E C9 3B`.

use serde::{Serialize, Serializer};
use std::fmt;

/// A GUID in its on-disk byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses the text form (`XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, any case;
    /// the 32-digit form without dashes, as partedUtil prints it, too).
    pub fn parse(s: &str) -> Option<Guid> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || (s.len() != 32 && s.len() != 36) {
            return None;
        }
        if s.len() == 36 && [8, 13, 18, 23].iter().any(|&i| s.as_bytes()[i] != b'-') {
            return None;
        }
        let mut text = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            text[i] = (hi * 16 + lo) as u8;
        }
        // Text order to on-disk order: reverse the first three groups.
        let mut d = text;
        d[0..4].reverse();
        d[4..6].reverse();
        d[6..8].reverse();
        Some(Guid(d))
    }

    /// Like [`Guid::parse`] for compile-time tables; panics on a typo (only
    /// used with literals checked by the tests).
    pub fn from_text(s: &str) -> Guid {
        match Guid::parse(s) {
            Some(g) => g,
            None => panic!("bad GUID literal {s}"),
        }
    }

    /// The name of a partition type GUID, if known.
    pub fn type_name(&self) -> Option<&'static str> {
        type_name(self)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..16] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const MS_BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
pub const VMWARE_VMFS: &str = "AA31E02A-400F-11DB-9590-000C2911D1B8";
pub const VMWARE_DIAGNOSTIC: &str = "9D275380-40AD-11DB-BF97-000C2911D1B8";
pub const VMWARE_RESERVED: &str = "9198EFFC-31C0-11DB-8F78-000C2911D1B8";
pub const VMWARE_VSAN: &str = "381CFCCC-7288-11E0-92EE-000C2911D0B2";
pub const VMWARE_VIRSTO: &str = "77719A0C-A4A0-11E3-A47E-000C29745A24";
/// VMFS-L, used by ESXi 7/8 for the ESX-OSData partition. Not in the UEFI
/// spec nor in gdisk's table; seen as the type of the "OSDATA" partition
/// (slot 7) of a real ESXi 7 boot disk in the dissect.volume test fixtures.
pub const VMWARE_VMFSL: &str = "4EB2EA39-7855-4790-A79E-FAE495E21F8D";

/// Known partition type GUIDs (UEFI spec, gdisk/util-linux tables, VMware).
pub const KNOWN_TYPES: &[(&str, &str)] = &[
    (EFI_SYSTEM, "EFI system partition"),
    (
        "21686148-6449-6E6F-744E-656564454649",
        "BIOS boot partition",
    ),
    (
        "024DEE41-33E7-11D3-9D69-0008C781F39F",
        "MBR partition scheme",
    ),
    // VMware
    (VMWARE_VMFS, "VMware VMFS"),
    (VMWARE_DIAGNOSTIC, "VMware vmkDiagnostic"),
    (VMWARE_RESERVED, "VMware reserved"),
    (VMWARE_VSAN, "VMware vSAN"),
    (VMWARE_VIRSTO, "VMware Virsto"),
    (VMWARE_VMFSL, "VMware VMFS-L (ESX-OSData)"),
    // Microsoft
    (MS_BASIC_DATA, "Microsoft basic data"),
    ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved"),
    ("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows recovery"),
    (
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3",
        "Windows LDM metadata",
    ),
    ("AF9B60A0-1431-4F62-BC68-3311714A69AD", "Windows LDM data"),
    (
        "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D",
        "Windows Storage Spaces",
    ),
    // Linux
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
    ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
    ("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
    ("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
    (
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "Linux root (x86-64)",
    ),
    ("44479540-F297-41B2-9AF7-D131D5F0458A", "Linux root (x86)"),
    ("B921B045-1DF0-41C3-AF44-4C6F280D3FAE", "Linux root (ARM64)"),
    ("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux /home"),
    ("3B8F8425-20E0-4F3B-907F-1A25A76F98E8", "Linux /srv"),
    (
        "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "Linux extended boot",
    ),
    ("CA7D7CCB-63ED-4C53-861C-1742536059CC", "Linux LUKS"),
    ("8DA63339-0007-60C0-C436-083AC8230908", "Linux reserved"),
    // Apple
    ("48465300-0000-11AA-AA11-00306543ECAC", "Apple HFS+"),
    ("7C3457EF-0000-11AA-AA11-00306543ECAC", "Apple APFS"),
    ("55465300-0000-11AA-AA11-00306543ECAC", "Apple UFS"),
    ("52414944-0000-11AA-AA11-00306543ECAC", "Apple RAID"),
    ("52414944-5F4F-11AA-AA11-00306543ECAC", "Apple RAID offline"),
    (
        "426F6F74-0000-11AA-AA11-00306543ECAC",
        "Apple boot (Recovery HD)",
    ),
    ("4C616265-6C00-11AA-AA11-00306543ECAC", "Apple label"),
    ("53746F72-6167-11AA-AA11-00306543ECAC", "Apple Core Storage"),
    // BSD, Solaris, others
    ("516E7CB4-6ECF-11D6-8FF8-00022D09712B", "FreeBSD data"),
    ("83BD6B9D-7F41-11DC-BE0B-001560B84F0F", "FreeBSD boot"),
    ("516E7CB5-6ECF-11D6-8FF8-00022D09712B", "FreeBSD swap"),
    ("516E7CB6-6ECF-11D6-8FF8-00022D09712B", "FreeBSD UFS"),
    ("516E7CBA-6ECF-11D6-8FF8-00022D09712B", "FreeBSD ZFS"),
    (
        "6A898CC3-1DD2-11B2-99A6-080020736631",
        "Solaris /usr or Apple ZFS",
    ),
    ("6A85CF4D-1DD2-11B2-99A6-080020736631", "Solaris root"),
    ("824CC7A0-36A8-11E3-890A-952519AD3F61", "OpenBSD data"),
    ("4FBD7E29-9D25-41B8-AFD0-062C0CEFF05D", "Ceph OSD"),
];

pub fn type_name(g: &Guid) -> Option<&'static str> {
    if g.is_zero() {
        return Some("unused");
    }
    KNOWN_TYPES
        .iter()
        .find(|(text, _)| Guid::parse(text).as_ref() == Some(g))
        .map(|(_, name)| *name)
}

/// The partition kinds the ESXi layout templates are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeClass {
    EfiSystem,
    BasicData,
    Vmfs,
    VmfsL,
    VmkDiagnostic,
    Other,
}

/// Name and class of a known partition type (None for unknown GUIDs and for
/// the all-zero GUID of an empty slot).
pub fn type_info(g: &Guid) -> Option<(&'static str, TypeClass)> {
    if g.is_zero() {
        return None;
    }
    let name = type_name(g)?;
    let text = g.to_string();
    let class = match text.as_str() {
        EFI_SYSTEM => TypeClass::EfiSystem,
        MS_BASIC_DATA => TypeClass::BasicData,
        VMWARE_VMFS => TypeClass::Vmfs,
        VMWARE_VMFSL => TypeClass::VmfsL,
        VMWARE_DIAGNOSTIC => TypeClass::VmkDiagnostic,
        _ => TypeClass::Other,
    };
    Some((name, class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_endian_round_trip() {
        let g = Guid::parse(EFI_SYSTEM).unwrap();
        assert_eq!(
            g.0,
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(g.to_string(), EFI_SYSTEM);
        // partedUtil's form without dashes
        assert_eq!(
            Guid::parse("AA31E02A400F11DB9590000C2911D1B8").unwrap(),
            Guid::parse(VMWARE_VMFS).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_text() {
        for s in [
            "",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93",
            "C12A7328F-81F-11D2-BA4B-00A0C93EC93B",
            "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93BB",
        ] {
            assert!(Guid::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn every_table_entry_parses_and_names_resolve() {
        for (text, name) in KNOWN_TYPES {
            let g = Guid::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(type_name(&g), Some(*name));
        }
        assert_eq!(
            Guid::parse(VMWARE_DIAGNOSTIC).unwrap().type_name(),
            Some("VMware vmkDiagnostic")
        );
        assert_eq!(Guid::ZERO.type_name(), Some("unused"));
    }
}
