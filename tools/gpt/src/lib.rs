//! The GUID partition table exactly as it is on disk: protective MBR, both
//! headers field by field with stored and computed CRCs, both entry arrays
//! with their slot numbers (slot N is partition N; empty slots are kept),
//! and findings that explain what is wrong, including entry arrays that look
//! compacted compared with the slot layouts ESXi writes.
//!
//! Header (UEFI 2.10 section 5.3.2), byte offsets: 0 "EFI PART", 8 revision,
//! 12 header size, 16 header CRC32 (computed over header-size bytes with this
//! field zeroed), 24 my LBA, 32 alternate LBA, 40 first usable LBA, 48 last
//! usable LBA, 56 disk GUID, 72 entry array LBA, 80 number of entries, 84
//! entry size, 88 entry array CRC32 (over count * size bytes).
//! Entry: 0 type GUID, 16 unique GUID, 32 first LBA, 40 last LBA,
//! 48 attributes, 56 name (UTF-16LE, 36 code units).
//!
//! Reading: [`read`] (sector size from the device; for an image file of a
//! 4Kn disk, 4096 when "EFI PART" sits at byte 4096), the backup where the
//! primary says, else at the last LBA. [`verify::verify`] lists findings
//! with stable codes: header-crc, array-crc, array-unreadable, my-lba,
//! primary-missing, backup-missing, backup-not-at-end, backup-stranded,
//! last-usable-beyond-disk, usable-range, array-overlaps-usable,
//! array-location, arrays-differ, headers-differ, out-of-range, overlap,
//! esxi-compacted, no-protective-mbr, no-gpt (warnings and errors);
//! esxi-layout, hybrid-mbr, pmbr-size, backup-alternate, revision (info).
//!
//! Repair: [`plan::plan`] computes whole sectors to rewrite for one
//! [`plan::Mode`] (never compacting, sorting or relocating unless the mode
//! says so; extra steps are listed in the plan), [`apply::apply`] writes the
//! undo file ([`undofile`]) first, then the backup copy, then the primary,
//! each synced, and reads everything back; [`apply::undo_plan`] restores.
//! [`inuse::check_not_in_use`] refuses mounted or held disks.
//! [`plan::suggestions`] names the repairs that fix what a disk shows.

pub mod apply;
pub mod cli;
pub mod guid;
pub mod inuse;
pub mod layout;
pub mod mbr;
pub mod plan;
pub mod repair_cli;
pub mod undofile;
pub mod verify;

use blockdev::BlockDevice;
pub use guid::{Guid, TypeClass};
use serde::Serialize;
use std::fmt;

pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Entry arrays larger than this are refused as damaged (128 entries of 128
/// bytes is 16 KiB; the spec's minimum array is 16 KiB).
pub const MAX_ARRAY_BYTES: u64 = 4 << 20;

/// A problem reading or parsing, with where and what. Parse errors about
/// one on-disk field also name the field and give the expected and found
/// values (for scripts reading `--json`); `message` says it all in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GptError {
    /// Byte offset on the disk (or in the undo file) the problem is at.
    pub offset: u64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl GptError {
    /// An error at `offset` that is not about one field.
    pub fn new(offset: u64, message: impl Into<String>) -> GptError {
        GptError {
            offset,
            message: message.into(),
            field: None,
            expected: None,
            found: None,
        }
    }

    /// A field at `offset` holds `found` where `expected` was required;
    /// `why` (may be empty) is added to the message.
    pub fn field(
        offset: u64,
        field: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
        why: &str,
    ) -> GptError {
        let (expected, found) = (expected.into(), found.into());
        let mut message = format!("{field}: expected {expected}, found {found}");
        if !why.is_empty() {
            message.push_str(": ");
            message.push_str(why);
        }
        GptError {
            offset,
            message,
            field: Some(field),
            expected: Some(expected),
            found: Some(found),
        }
    }
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for GptError {}

fn err(offset: u64, message: impl Into<String>) -> GptError {
    GptError::new(offset, message)
}

/// Bytes as text for messages: printable ASCII kept, others as `\xNN`.
fn printable(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &x in b {
        if (0x20..0x7f).contains(&x) && x != b'"' && x != b'\\' {
            s.push(x as char);
        } else {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s.push('"');
    s
}

/// A field read past the end of a header or entry: the parser checked the
/// length first, so this names a bug or a truncated read.
fn out_of_range(at: u64) -> impl Fn(le::OutOfRange) -> GptError {
    move |e| GptError::new(at + e.offset as u64, e.to_string())
}

/// A GPT header's fields as stored, and the CRCs as computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Header {
    pub revision: u32,
    pub header_size: u32,
    pub header_crc_stored: u32,
    pub header_crc_computed: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc_stored: u32,
}

impl Header {
    pub fn header_crc_ok(&self) -> bool {
        self.header_crc_stored == self.header_crc_computed
    }
    pub fn array_bytes(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }
}

/// Parses a header sector read at LBA `lba`. Field values that make the
/// array unreadable are errors; others are left for [`verify`].
pub fn parse_header(sector: &[u8], lba: u64, sector_size: u32) -> Result<Header, GptError> {
    use layout::header as h;
    let at = lba * u64::from(sector_size);
    let f = le::Fields::new(sector, "GPT header");
    let range = out_of_range(at);
    if sector.len() < h::MIN_SIZE {
        return Err(GptError::field(
            at,
            "header sector",
            format!("at least {} bytes", h::MIN_SIZE),
            format!("{} bytes", sector.len()),
            "the disk ends inside the header",
        ));
    }
    let signature = f.bytes(h::SIGNATURE, 8).map_err(&range)?;
    if signature != SIGNATURE {
        return Err(GptError::field(
            at,
            "signature (0x00)",
            "\"EFI PART\"",
            printable(signature),
            "no GPT header here",
        ));
    }
    let header_size = f.u32(h::HEADER_SIZE).map_err(&range)?;
    if (header_size as usize) < h::MIN_SIZE || header_size as usize > sector.len() {
        return Err(GptError::field(
            at + h::HEADER_SIZE as u64,
            "header size (0x0C)",
            format!("{} to {} (the sector size)", h::MIN_SIZE, sector.len()),
            header_size.to_string(),
            "the header CRC cannot be checked",
        ));
    }
    let entry_size = f.u32(h::ENTRY_SIZE).map_err(&range)?;
    if entry_size < 128 || !entry_size.is_multiple_of(128) {
        return Err(GptError::field(
            at + h::ENTRY_SIZE as u64,
            "entry size (0x54)",
            "a multiple of 128 (128 * 2^n)",
            entry_size.to_string(),
            "the entry array cannot be cut into entries",
        ));
    }
    let entry_count = f.u32(h::ENTRY_COUNT).map_err(&range)?;
    let array = u64::from(entry_count) * u64::from(entry_size);
    if array > MAX_ARRAY_BYTES {
        return Err(GptError::field(
            at + h::ENTRY_COUNT as u64,
            "entry count (0x50)",
            format!(
                "at most {} entries of {entry_size} bytes ({MAX_ARRAY_BYTES} bytes)",
                MAX_ARRAY_BYTES / u64::from(entry_size)
            ),
            entry_count.to_string(),
            &format!(
                "{entry_count} entries of {entry_size} bytes is {array} bytes: a damaged header"
            ),
        ));
    }
    let mut copy = sector[..header_size as usize].to_vec();
    copy[h::HEADER_CRC..h::HEADER_CRC + 4].fill(0);
    Ok(Header {
        revision: f.u32(h::REVISION).map_err(&range)?,
        header_size,
        header_crc_stored: f.u32(h::HEADER_CRC).map_err(&range)?,
        header_crc_computed: crc32fast::hash(&copy),
        my_lba: f.u64(h::MY_LBA).map_err(&range)?,
        alternate_lba: f.u64(h::ALTERNATE_LBA).map_err(&range)?,
        first_usable_lba: f.u64(h::FIRST_USABLE_LBA).map_err(&range)?,
        last_usable_lba: f.u64(h::LAST_USABLE_LBA).map_err(&range)?,
        disk_guid: Guid(f.array(h::DISK_GUID).map_err(&range)?),
        entries_lba: f.u64(h::ENTRIES_LBA).map_err(&range)?,
        entry_count,
        entry_size,
        entries_crc_stored: f.u32(h::ENTRIES_CRC).map_err(&range)?,
    })
}

/// One used slot of an entry array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// 1-based: the partition number the kernel and partition tools use.
    pub slot: u32,
    pub type_guid: Guid,
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Entry {
    pub fn sectors(&self) -> u64 {
        self.last_lba
            .saturating_add(1)
            .saturating_sub(self.first_lba)
    }
    pub fn class(&self) -> TypeClass {
        guid::type_info(&self.type_guid)
            .map(|t| t.1)
            .unwrap_or(TypeClass::Other)
    }
}

/// Parses the used slots of an entry array. Entries shorter than the
/// fields (an entry size below 128 that [`parse_header`] would refuse) are
/// left out.
pub fn parse_entries(array: &[u8], entry_size: u32) -> Vec<Entry> {
    use layout::entry as e;
    array
        .chunks_exact(entry_size.max(1) as usize)
        .enumerate()
        .filter_map(|(i, bytes)| {
            let f = le::Fields::new(bytes, "GPT entry");
            let type_guid = Guid(f.array(e::TYPE_GUID).ok()?);
            if type_guid.is_zero() {
                return None;
            }
            let units: Vec<u16> = f
                .bytes(e::NAME, 2 * e::NAME_UNITS)
                .ok()?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            Some(Entry {
                slot: i as u32 + 1,
                type_guid,
                type_name: guid::type_info(&type_guid).map(|t| t.0),
                unique_guid: Guid(f.array(e::UNIQUE_GUID).ok()?),
                first_lba: f.u64(e::FIRST_LBA).ok()?,
                last_lba: f.u64(e::LAST_LBA).ok()?,
                attributes: f.u64(e::ATTRIBUTES).ok()?,
                name: String::from_utf16_lossy(&units),
            })
        })
        .collect()
}

/// One copy of the table (primary or backup).
#[derive(Clone, Debug, Serialize)]
pub struct TableCopy {
    /// Where its header was read.
    pub header_lba: u64,
    pub header: Header,
    /// None when the array could not be read.
    pub entries_crc_computed: Option<u32>,
    pub entries: Vec<Entry>,
    pub array_error: Option<String>,
    #[serde(skip)]
    pub raw_array: Vec<u8>,
}

impl TableCopy {
    pub fn array_crc_ok(&self) -> bool {
        self.entries_crc_computed == Some(self.header.entries_crc_stored)
    }
}

/// Everything about a disk's GPT.
#[derive(Clone, Debug, Serialize)]
pub struct GptView {
    pub sector_size: u32,
    /// Size of the disk in logical sectors.
    pub disk_sectors: u64,
    pub mbr: mbr::Mbr,
    pub primary: Result<TableCopy, GptError>,
    pub backup: Result<TableCopy, GptError>,
}

fn read_at(dev: &dyn BlockDevice, offset: u64, len: u64) -> Result<Vec<u8>, GptError> {
    if offset.checked_add(len).is_none_or(|end| end > dev.size()) {
        return Err(err(
            offset,
            format!(
                "{len} bytes at byte {offset} lie beyond the end of the disk ({} bytes)",
                dev.size()
            ),
        ));
    }
    let mut b = vec![0u8; len as usize];
    dev.read_exact_at(&mut b, offset)
        .map_err(|e| err(offset, format!("read failed: {e}")))?;
    Ok(b)
}

/// Reads a header at `lba` and its entry array.
pub fn read_copy(dev: &dyn BlockDevice, lba: u64, sector_size: u32) -> Result<TableCopy, GptError> {
    let ss = u64::from(sector_size);
    let sector = read_at(dev, lba * ss, ss)?;
    let header = parse_header(&sector, lba, sector_size)?;
    let (entries_crc_computed, entries, array_error, raw_array) = match read_at(
        dev,
        header.entries_lba.saturating_mul(ss),
        header.array_bytes(),
    ) {
        Ok(a) => (
            Some(crc32fast::hash(&a)),
            parse_entries(&a, header.entry_size),
            None,
            a,
        ),
        Err(e) => (
            None,
            Vec::new(),
            Some(format!("entry array at LBA {}: {e}", header.entries_lba)),
            Vec::new(),
        ),
    };
    Ok(TableCopy {
        header_lba: lba,
        header,
        entries_crc_computed,
        entries,
        array_error,
        raw_array,
    })
}

/// The logical sector size of the GPT on `dev`: the device's, or for an
/// image file of a 4Kn disk, 4096 when "EFI PART" sits at byte 4096.
pub fn detect_sector_size(dev: &dyn BlockDevice) -> u32 {
    let ss = dev.logical_sector_size();
    if ss == 512 {
        let at_512 = read_at(dev, 512, 8).is_ok_and(|b| b == SIGNATURE);
        let at_4k = read_at(dev, 4096, 8).is_ok_and(|b| b == SIGNATURE);
        if !at_512 && at_4k {
            return 4096;
        }
    }
    ss
}

/// Reads both copies: the primary at LBA 1, the backup where the primary
/// says (alternate LBA), else at the last LBA.
pub fn read(dev: &dyn BlockDevice) -> GptView {
    let sector_size = detect_sector_size(dev);
    let ss = u64::from(sector_size);
    let disk_sectors = dev.size() / ss;
    let last = disk_sectors.saturating_sub(1);
    let mbr = mbr::read(dev);
    let primary = read_copy(dev, 1, sector_size);
    let at_end = || {
        read_copy(dev, last, sector_size).or_else(|e| {
            // A disk that grew with its primary damaged: the backup is still
            // at the old end, which the protective MBR's size remembers.
            match pmbr_backup_hint(&mbr, last) {
                Some(lba) => read_copy(dev, lba, sector_size).map_err(|_| e),
                None => Err(e),
            }
        })
    };
    let backup = match &primary {
        Ok(p)
            if p.header.alternate_lba != last
                && p.header.alternate_lba > 1
                && p.header.alternate_lba < disk_sectors =>
        {
            read_copy(dev, p.header.alternate_lba, sector_size).or_else(|_| at_end())
        }
        _ => at_end(),
    };
    GptView {
        sector_size,
        disk_sectors,
        mbr,
        primary,
        backup,
    }
}

/// Where the backup header of a disk of the size the protective MBR covers
/// would be (its 0xEE entry spans LBA 1 to the old last LBA), when that is
/// before the current last LBA.
fn pmbr_backup_hint(m: &mbr::Mbr, last: u64) -> Option<u64> {
    if m.kind != mbr::MbrKind::Protective {
        return None;
    }
    let e = m.entries.iter().find(|e| e.kind == 0xEE)?;
    if e.first_lba != 1 || e.sectors == u32::MAX {
        return None;
    }
    let lba = u64::from(e.sectors);
    (lba > 2 && lba < last).then_some(lba)
}

/// The table's used slots: the primary's if readable, else the backup's.
pub fn best_entries(v: &GptView) -> &[Entry] {
    match (&v.primary, &v.backup) {
        (Ok(p), _) if p.array_crc_ok() || v.backup.is_err() => &p.entries,
        (_, Ok(b)) => &b.entries,
        (Ok(p), _) => &p.entries,
        _ => &[],
    }
}

/// The state of one GPT header copy, for the overview.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyState {
    /// Header and array CRCs right, header where it says it is.
    Ok,
    /// A header is there but a CRC is wrong or it names another LBA.
    Damaged,
    /// The entry array could not be read.
    ArrayUnreadable,
    /// No header (no signature, or fields that make it unusable).
    Missing,
}

fn copy_state(c: &Result<TableCopy, GptError>) -> CopyState {
    match c {
        Err(_) => CopyState::Missing,
        Ok(c) if c.array_error.is_some() => CopyState::ArrayUnreadable,
        Ok(c) if plan::intact(c) => CopyState::Ok,
        Ok(_) => CopyState::Damaged,
    }
}

/// A partition table summary for the disk overview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GptSummary {
    /// "gpt", "mbr", or "none".
    pub table: &'static str,
    /// Header and array CRCs right and the header where it says it is.
    pub primary_ok: bool,
    pub backup_ok: bool,
    pub primary_state: CopyState,
    pub backup_state: CopyState,
    /// Used entries (slot = partition number, LBAs, type name) of the
    /// primary, or of the backup when the primary is damaged.
    pub entries: Vec<Entry>,
    /// Findings at warning level or worse (see `rescue gpt verify`).
    pub problems: usize,
    /// The most severe finding's code, e.g. "esxi-compacted".
    pub worst: Option<&'static str>,
    /// The ESXi layout recognised, e.g. "ESXi 5.x/6.x boot disk".
    pub layout: Option<String>,
}

/// Older name of [`GptSummary`].
pub type Summary = GptSummary;

/// The partition table in brief, for the disk overview; see
/// [`summarize_checked`] for what is read. A disk whose sector 0 cannot be
/// read gives table "none".
pub fn summarize(dev: &dyn BlockDevice) -> GptSummary {
    summarize_checked(dev).unwrap_or(GptSummary {
        table: "none",
        primary_ok: false,
        backup_ok: false,
        primary_state: CopyState::Missing,
        backup_state: CopyState::Missing,
        entries: Vec::new(),
        problems: 0,
        worst: None,
        layout: None,
    })
}

/// How much of each end of the disk [`summarize_checked`] reads.
pub const SUMMARY_WINDOW: u64 = 1 << 20;

/// A device that only lets reads through inside given byte ranges: the
/// overview must not send a slow or dying disk seeking to places a damaged
/// header names.
struct Window<'a> {
    dev: &'a dyn BlockDevice,
    ranges: Vec<(u64, u64)>,
}

impl BlockDevice for Window<'_> {
    fn size(&self) -> u64 {
        self.dev.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.dev.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.dev.physical_sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let end = offset.saturating_add(buf.len() as u64);
        if buf.is_empty() || self.ranges.iter().any(|&(a, b)| a <= offset && end <= b) {
            self.dev.read_at(buf, offset)
        } else {
            Err(std::io::Error::other(format!(
                "bytes {offset}-{end} are outside what the overview reads (first and last MiB, the backup the primary names)"
            )))
        }
    }
    fn name(&self) -> &str {
        self.dev.name()
    }
}

/// Like [`summarize`], but an error when sector 0 cannot be read at all.
/// Reads only the first and the last MiB of the disk, plus the MiB that
/// ends at the backup header the primary names (when the primary header's
/// CRC is right) or, with a damaged primary, at the old last LBA the
/// protective MBR covers: where the backup of a disk that grew is stranded.
pub fn summarize_checked(dev: &dyn BlockDevice) -> Result<GptSummary, GptError> {
    read_at(dev, 0, dev.size().min(512))?;
    let size = dev.size();
    let mut w = Window {
        dev,
        ranges: vec![
            (0, size.min(SUMMARY_WINDOW)),
            (size.saturating_sub(SUMMARY_WINDOW), size),
        ],
    };
    let ss = u64::from(detect_sector_size(&w));
    let named = read_at(&w, ss, ss)
        .ok()
        .and_then(|sector| parse_header(&sector, 1, ss as u32).ok())
        .filter(Header::header_crc_ok)
        .map(|h| h.alternate_lba)
        .or_else(|| pmbr_backup_hint(&mbr::read(&w), (size / ss).saturating_sub(1)));
    if let Some(lba) = named {
        let at = lba.saturating_mul(ss);
        if at.saturating_add(ss) <= size {
            w.ranges
                .push((at.saturating_sub(SUMMARY_WINDOW - ss), at + ss));
        }
    }
    let v = read(&w);
    let findings = verify::verify(&v);
    let serious: Vec<&verify::Finding> = findings
        .iter()
        .filter(|f| f.severity >= verify::Severity::Warning)
        .collect();
    let layout = verify::esxi_layout(best_entries(&v)).map(|l| l.description());
    let table = if v.primary.is_ok() || v.backup.is_ok() {
        "gpt"
    } else if v.mbr.kind != mbr::MbrKind::None {
        "mbr"
    } else {
        "none"
    };
    let is_gpt = table == "gpt";
    Ok(GptSummary {
        table,
        primary_ok: v.primary.as_ref().is_ok_and(plan::intact),
        backup_ok: v.backup.as_ref().is_ok_and(plan::intact),
        primary_state: copy_state(&v.primary),
        backup_state: copy_state(&v.backup),
        entries: best_entries(&v).to_vec(),
        problems: if is_gpt { serious.len() } else { 0 },
        worst: if is_gpt {
            serious.first().map(|f| f.code)
        } else {
            None
        },
        layout,
    })
}

#[cfg(test)]
mod tests;
