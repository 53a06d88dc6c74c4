//! The VMDK descriptor: a small text file (or text embedded in a hosted
//! sparse file) that says what the disk is made of.
//!
//! ```text
//! # Disk DescriptorFile
//! version=1
//! CID=fffffffe
//! parentCID=ffffffff
//! createType="vmfs"
//! parentFileNameHint="base.vmdk"        (snapshots only)
//!
//! # Extent description
//! RW 41943040 VMFS "disk-flat.vmdk"
//! RW 8388608 FLAT "disk-f001.vmdk" 0
//! RW 1024 ZERO
//!
//! # The Disk Data Base
//! ddb.adapterType = "lsilogic"
//! ddb.geometry.cylinders = "2610"
//! ```
//!
//! Extent lines: access (`RW`, `RDONLY`, `NOACCESS`), size in 512-byte
//! sectors, type (`FLAT`, `VMFS`, `SPARSE`, `VMFSSPARSE`, `SESPARSE`,
//! `ZERO`, `VMFSRDM`, `VMFSRAW`, ...), the file in quotes, and for flat
//! extents an offset in sectors into that file. Sources: VMware's "Virtual
//! Disk Format 5.0" technote; QEMU's block/vmdk.c.

use crate::error::{Error, Result};

/// One extent line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentLine {
    /// `RW`, `RDONLY` or `NOACCESS`.
    pub access: String,
    /// Size in 512-byte sectors of the virtual disk this extent covers.
    pub sectors: u64,
    pub kind: ExtentKind,
    /// The extent file, as written (None for `ZERO`).
    pub file: Option<String>,
    /// Start of the data in the file, in sectors (flat extents).
    pub offset: u64,
}

/// An extent's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// Raw bytes in a file (`FLAT` hosted, `VMFS` on ESXi, thick or thin).
    Flat,
    /// A hosted sparse file ("KDMV"; also streamOptimized).
    Sparse,
    /// An ESX snapshot delta ("COWD", `-delta.vmdk`).
    VmfsSparse,
    /// An ESXi 6.5+ snapshot delta (`-sesparse.vmdk`).
    SeSparse,
    /// Reads as zeros; no file.
    Zero,
    /// A raw device mapping: the data is on a LUN, not in a file.
    RawDeviceMap,
    /// A type this reader does not know, as written.
    Other(String),
}

impl ExtentKind {
    fn parse(s: &str) -> ExtentKind {
        match s {
            "FLAT" | "VMFS" => ExtentKind::Flat,
            "SPARSE" => ExtentKind::Sparse,
            "VMFSSPARSE" => ExtentKind::VmfsSparse,
            "SESPARSE" => ExtentKind::SeSparse,
            "ZERO" => ExtentKind::Zero,
            "VMFSRDM" | "VMFSRAW" => ExtentKind::RawDeviceMap,
            other => ExtentKind::Other(other.to_string()),
        }
    }
}

/// A parsed descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub version: Option<u32>,
    /// Content ID: changes when the disk is written.
    pub cid: Option<u32>,
    /// The parent's CID when this level was made; `ffffffff` for none.
    pub parent_cid: Option<u32>,
    /// `monolithicSparse`, `vmfs`, `seSparse`, `streamOptimized`, ...
    pub create_type: String,
    /// The parent's descriptor, relative to this one's folder.
    pub parent_hint: Option<String>,
    pub extents: Vec<ExtentLine>,
    /// `ddb.*` entries (geometry, adapter type, UUID, thin provisioning).
    pub ddb: Vec<(String, String)>,
}

/// The CID a base disk gives as its parent's: none.
pub const NO_PARENT_CID: u32 = 0xffff_ffff;

/// Descriptors are small; a larger text file is not one.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;

impl Descriptor {
    /// Whether `bytes` (the start of a file) look like a descriptor.
    pub fn looks_like(bytes: &[u8]) -> bool {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
        head.contains("# Disk DescriptorFile") || head.contains("createType")
    }

    /// Parses descriptor text; `file` names it in errors. Unknown keys are
    /// kept out; a line that is neither a key, an extent nor a comment is an
    /// error naming its number.
    pub fn parse(text: &str, file: &str) -> Result<Descriptor> {
        let mut d = Descriptor::default();
        let mut offset = 0u64;
        for (i, raw) in text.split('\n').enumerate() {
            let line_at = offset;
            offset += raw.len() as u64 + 1;
            // Embedded descriptors are padded with NULs to their sectors.
            let line = raw.trim_end_matches(['\r', '\0']).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| Error::corrupt(file, line_at, format!("line {}: {why}", i + 1));
            if let Some(extent) = parse_extent(line).map_err(&bad)? {
                d.extents.push(extent);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(format!(
                    "neither `key = value` nor an extent: {line:?}"
                )));
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            match key {
                "version" => d.version = value.parse().ok(),
                "CID" => d.cid = Some(parse_cid(value).map_err(&bad)?),
                "parentCID" => d.parent_cid = Some(parse_cid(value).map_err(&bad)?),
                "createType" => d.create_type = value.to_string(),
                "parentFileNameHint" => d.parent_hint = Some(value.to_string()),
                k if k.starts_with("ddb.") => d.ddb.push((k.to_string(), value.to_string())),
                _ => {}
            }
        }
        if d.extents.is_empty() {
            return Err(Error::corrupt(file, 0, "the descriptor names no extent"));
        }
        Ok(d)
    }

    /// Whether this level has a parent to read unallocated grains from.
    pub fn has_parent(&self) -> bool {
        self.parent_hint.is_some() && self.parent_cid != Some(NO_PARENT_CID)
    }

    /// Virtual size in bytes: the extents' sectors added up.
    pub fn capacity(&self) -> u64 {
        self.extents
            .iter()
            .fold(0u64, |n, e| n.saturating_add(e.sectors.saturating_mul(512)))
    }

    /// A `ddb.*` value.
    pub fn ddb(&self, key: &str) -> Option<&str> {
        self.ddb
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

fn parse_cid(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s, 16).map_err(|_| format!("CID {s:?} is not 8 hex digits"))
}

/// An extent line, or None when `line` is not one (it does not start with
/// an access word).
fn parse_extent(line: &str) -> std::result::Result<Option<ExtentLine>, String> {
    let mut words = line.splitn(3, char::is_whitespace);
    let access = words.next().unwrap_or_default();
    if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
        return Ok(None);
    }
    let sectors = words
        .next()
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| format!("extent {line:?}: no size in sectors"))?;
    let rest = words.next().unwrap_or_default().trim();
    let (kind, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if kind.is_empty() {
        return Err(format!("extent {line:?}: no type"));
    }
    let kind = ExtentKind::parse(kind);
    let rest = rest.trim();
    let (file, rest) = match rest.strip_prefix('"') {
        Some(r) => {
            let end = r
                .find('"')
                .ok_or_else(|| format!("extent {line:?}: file name without closing quote"))?;
            (Some(r[..end].to_string()), r[end + 1..].trim())
        }
        None => (None, rest),
    };
    let offset = match rest.split_whitespace().next() {
        Some(w) => w
            .parse::<u64>()
            .map_err(|_| format!("extent {line:?}: offset {w:?} is not a number"))?,
        None => 0,
    };
    if file.is_none() && kind != ExtentKind::Zero {
        return Err(format!("extent {line:?}: no file named"));
    }
    Ok(Some(ExtentLine {
        access: access.to_string(),
        sectors,
        kind,
        file,
        offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ESXI: &str = "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=6a6a4bc2\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n# Extent description\nRW 41943040 VMFS \"web01-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.geometry.cylinders = \"2610\"\nddb.thinProvisioned = \"1\"\n";

    #[test]
    fn an_esxi_descriptor() {
        let d = Descriptor::parse(ESXI, "web01.vmdk").unwrap();
        assert_eq!(d.cid, Some(0x6a6a4bc2));
        assert_eq!(d.parent_cid, Some(NO_PARENT_CID));
        assert!(!d.has_parent());
        assert_eq!(d.create_type, "vmfs");
        assert_eq!(
            d.extents,
            vec![ExtentLine {
                access: "RW".into(),
                sectors: 41943040,
                kind: ExtentKind::Flat,
                file: Some("web01-flat.vmdk".into()),
                offset: 0,
            }]
        );
        assert_eq!(d.capacity(), 41943040 * 512);
        assert_eq!(d.ddb("ddb.thinProvisioned"), Some("1"));
        assert!(Descriptor::looks_like(ESXI.as_bytes()));
    }

    #[test]
    fn a_snapshot_and_several_extents() {
        let text = "CID=00000002\r\nparentCID=6a6a4bc2\r\ncreateType=\"seSparse\"\r\nparentFileNameHint=\"web01.vmdk\"\r\nRW 41943040 SESPARSE \"web01-000001-sesparse.vmdk\"\r\nRW 100 FLAT \"a b.vmdk\" 2048\r\nRW 8 ZERO\r\n\0\0\0";
        let d = Descriptor::parse(text, "web01-000001.vmdk").unwrap();
        assert!(d.has_parent());
        assert_eq!(d.parent_hint.as_deref(), Some("web01.vmdk"));
        assert_eq!(d.extents[0].kind, ExtentKind::SeSparse);
        assert_eq!(d.extents[1].file.as_deref(), Some("a b.vmdk"));
        assert_eq!(d.extents[1].offset, 2048);
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
        assert_eq!(d.extents[2].file, None);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = Descriptor::parse("CID=xyz\nRW 8 ZERO\n", "d.vmdk").unwrap_err();
        assert!(
            e.to_string().contains("line 1") && e.to_string().contains("xyz"),
            "{e}"
        );
        let e = Descriptor::parse("RW 8 FLAT\n", "d.vmdk").unwrap_err();
        assert!(e.to_string().contains("no file named"), "{e}");
        let e = Descriptor::parse("CID=1\n", "d.vmdk").unwrap_err();
        assert!(e.to_string().contains("no extent"), "{e}");
        let e = Descriptor::parse("RW 8 FLAT \"x\" 1\ngarbage\n", "d.vmdk").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(text in "[ -~\\n\\r\"=#]{0,400}") {
            let _ = Descriptor::parse(&text, "x");
        }

        #[test]
        fn extent_lines_round_trip(sectors in 0u64..u64::MAX / 1024, offset in 0u64..1 << 40,
                                   name in "[a-z0-9 _.-]{1,30}") {
            let text = format!("RW {sectors} FLAT \"{name}\" {offset}\n");
            let d = Descriptor::parse(&text, "x").unwrap();
            prop_assert_eq!(d.extents[0].sectors, sectors);
            prop_assert_eq!(d.extents[0].offset, offset);
            prop_assert_eq!(d.extents[0].file.as_deref(), Some(name.as_str()));
        }
    }
}
