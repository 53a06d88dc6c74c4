//! NTFS, read only as far as choosing a destination needs: the volume label,
//! and whether ntfs-3g would refuse to write to the volume (Windows left it
//! hibernated, in fast startup, or did not unmount it cleanly). ntfs-3g then
//! falls back to a read-only mount; listing the volume with the reason tells
//! the user before anything is tried.
//!
//! Only what these checks need is read: the boot sector, a few MFT records
//! (`$MFT` 0, `$LogFile` 2, `$Volume` 3, the root directory 5, and
//! `hiberfil.sys`), the root directory's index and the first pages of
//! `$LogFile` and `hiberfil.sys`. Every field is range-checked: a damaged
//! volume is an error naming the structure and offset, never a panic.
//!
//! Boot sector:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 3 | 8 | "NTFS    " |
//! | 11 | 2 | bytes per sector (256..4096) |
//! | 13 | 1 | sectors per cluster (a value above 0x80 is 2^(256 - value)) |
//! | 48 | 8 | LCN of `$MFT` |
//! | 64 | 1 | clusters per MFT record (signed; negative n: 2^-n bytes) |
//! | 72 | 8 | volume serial number |
//!
//! MFT record ("FILE"): update sequence array offset u16 at 4 and count u16
//! at 6, sequence number u16 at 16, first attribute offset u16 at 20, flags
//! u16 at 22 (1 = in use), bytes in use u32 at 24. The last two bytes of
//! every 512-byte stride hold the update sequence number; the real bytes are
//! in the array (the "fixups"), as in index blocks ("INDX") and `$LogFile`
//! restart pages ("RSTR").
//!
//! Attribute: type u32 at 0 (0xFFFFFFFF ends the list), length u32 at 4,
//! non-resident u8 at 8, name length (UTF-16 units) u8 at 9, name offset u16
//! at 10. Resident: value length u32 at 16, value offset u16 at 20.
//! Non-resident: lowest VCN u64 at 16, runlist offset u16 at 32, data size
//! u64 at 48, initialized size u64 at 56. Runlist: a header byte (low
//! nibble: bytes of the length, high nibble: bytes of the signed LCN delta,
//! 0 for a sparse run), then those fields little-endian; a 0 header ends it.
//!
//! Index (`$INDEX_ROOT` 0x90 value: index header at 16; `INDX` block: index
//! header at 24): entries offset u32 at 0 relative to the header. Entry: MFT
//! reference u64 at 0 (record number in the low 48 bits, sequence in the
//! high 16), length u16 at 8, key length u16 at 10, flags u16 at 12 (2 =
//! last entry); the key at 16 is a `$FILE_NAME` value: name length u8 at 64,
//! UTF-16 name at 66.
//!
//! `$LogFile` restart page: "RSTR" (or "CHKD"), system page size u32 at 16,
//! restart area offset u16 at 24, minor version i16 at 26, major version
//! i16 at 28. Restart area: current LSN u64 at 0, client-in-use list u16 at
//! 12 (0xFFFF: none), flags u16 at 14 (2 = volume is clean).
//!
//! The checks follow ntfs-3g's (libntfs-3g `volume.c`): a `hiberfil.sys` in
//! the root whose first bytes are "hibr"/"HIBR", or shorter than 4096 bytes,
//! means Windows is hibernated; an unclean `$LogFile` whose newest restart
//! page has version 2.0 means Windows keeps the volume's metadata cached
//! (fast startup, or the disk was pulled while Windows used it); any other
//! unclean `$LogFile` means it was not unmounted cleanly.

use blockdev::BlockDevice;
use le::Fields;

/// Why ntfs-3g would not write to the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteBlocker {
    /// `hiberfil.sys` holds a hibernation image.
    Hibernated,
    /// `$LogFile` is unclean with a version 2.0 restart page: Windows keeps
    /// metadata cached (fast startup, or unplugged without "eject").
    FastStartup,
    /// `$LogFile` is unclean: Windows did not unmount the volume cleanly.
    Unclean,
}

impl WriteBlocker {
    /// The reason, as the destination list shows it.
    pub fn reason(self) -> &'static str {
        match self {
            WriteBlocker::Hibernated => {
                "Windows hibernated/fast startup: hiberfil.sys holds a saved session \
                 (resume Windows and shut it down fully, or run 'powercfg /h off' there)"
            }
            WriteBlocker::FastStartup => {
                "Windows hibernated/fast startup: Windows keeps this volume's metadata \
                 cached (shut Windows down fully, or eject the disk there first)"
            }
            WriteBlocker::Unclean => {
                "NTFS not cleanly unmounted: its journal was not closed (connect it to \
                 Windows and eject it safely, or run chkdsk there)"
            }
        }
    }
}

const BOOT: &str = "NTFS boot sector";
const RECORD: &str = "NTFS MFT record";
const ATTR: &str = "NTFS attribute";
const INDEX: &str = "NTFS index entry";
const RESTART: &str = "NTFS $LogFile restart page";

/// MFT record numbers of the system files read here.
const MFT_MFT: u64 = 0;
const MFT_LOGFILE: u64 = 2;
const MFT_VOLUME: u64 = 3;
const MFT_ROOT: u64 = 5;

const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_VOLUME_NAME: u32 = 0x60;
const AT_DATA: u32 = 0x80;
const AT_INDEX_ROOT: u32 = 0x90;
const AT_INDEX_ALLOCATION: u32 = 0xA0;

/// Bound on index bytes scanned for `hiberfil.sys` (a root directory's
/// index is a few KiB to a few hundred KiB).
const MAX_INDEX_BYTES: u64 = 32 << 20;

fn e(err: le::OutOfRange) -> String {
    err.to_string()
}

/// One run of a non-resident attribute: `len` clusters from `vcn`, at `lcn`
/// on the volume (None: sparse, reads as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    vcn: u64,
    lcn: Option<u64>,
    len: u64,
}

/// An attribute of an MFT record, fixups applied.
struct Attr<'a> {
    kind: u32,
    name: Vec<u16>,
    /// The whole attribute record.
    raw: &'a [u8],
    non_resident: bool,
}

impl Attr<'_> {
    fn value(&self) -> Result<&[u8], String> {
        if self.non_resident {
            return Err(format!(
                "{ATTR} 0x{:x}: non-resident where resident was expected",
                self.kind
            ));
        }
        let f = Fields::new(self.raw, ATTR);
        let len = f.u32(16).map_err(e)? as usize;
        let off = usize::from(f.u16(20).map_err(e)?);
        f.bytes(off, len).map_err(e)
    }

    /// (data size, initialized size, runs) of a non-resident attribute.
    fn runs(&self) -> Result<(u64, u64, Vec<Run>), String> {
        if !self.non_resident {
            return Err(format!(
                "{ATTR} 0x{:x}: resident where non-resident was expected",
                self.kind
            ));
        }
        let f = Fields::new(self.raw, ATTR);
        let vcn = f.u64(16).map_err(e)?;
        let at = usize::from(f.u16(32).map_err(e)?);
        let size = f.u64(48).map_err(e)?;
        let init = f.u64(56).map_err(e)?;
        Ok((size, init.min(size), decode_runs(self.raw, at, vcn)?))
    }
}

/// Decodes a runlist starting at `at` in `raw`, the first run at `vcn`.
fn decode_runs(raw: &[u8], mut at: usize, mut vcn: u64) -> Result<Vec<Run>, String> {
    let f = Fields::new(raw, "NTFS runlist");
    let mut runs = Vec::new();
    let mut lcn: i64 = 0;
    loop {
        let head = f.u8(at).map_err(e)?;
        if head == 0 {
            return Ok(runs);
        }
        let (len_size, off_size) = (usize::from(head & 0xF), usize::from(head >> 4));
        if !(1..=8).contains(&len_size) || off_size > 8 {
            return Err(format!(
                "NTFS runlist: header 0x{head:02x} at +{at}: expected 1-8 length bytes and 0-8 offset bytes"
            ));
        }
        let len_bytes = f.bytes(at + 1, len_size).map_err(e)?;
        let len = len_bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let off_bytes = f.bytes(at + 1 + len_size, off_size).map_err(e)?;
        let run_lcn = if off_size == 0 {
            None
        } else {
            let mut delta = off_bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // Sign-extend from off_size bytes.
            if off_size < 8 && off_bytes[off_size - 1] & 0x80 != 0 {
                delta |= u64::MAX << (8 * off_size);
            }
            lcn = lcn
                .checked_add(delta as i64)
                .filter(|l| *l >= 0)
                .ok_or_else(|| format!("NTFS runlist: run at +{at} points before the volume"))?;
            Some(lcn as u64)
        };
        if len == 0 {
            return Err(format!("NTFS runlist: run at +{at} has length 0"));
        }
        runs.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| format!("NTFS runlist: run at +{at} overflows"))?;
        at += 1 + len_size + off_size;
    }
}

/// Applies the update sequence array of a multi-sector record in place.
fn fixups(buf: &mut [u8], what: &str) -> Result<(), String> {
    let f = Fields::new(buf, what);
    let usa_ofs = usize::from(f.u16(4).map_err(e)?);
    let usa_count = usize::from(f.u16(6).map_err(e)?);
    let strides = buf.len() / 512;
    if usa_count == 0 || usa_count - 1 != strides {
        return Err(format!(
            "{what}: update sequence count {usa_count}, expected {} for {} bytes",
            strides + 1,
            buf.len()
        ));
    }
    let usa = f.bytes(usa_ofs, usa_count * 2).map_err(e)?.to_vec();
    for i in 1..usa_count {
        let end = i * 512;
        if buf[end - 2..end] != usa[..2] {
            return Err(format!(
                "{what}: sector {} of the record does not end in its update sequence number (torn write)",
                i - 1
            ));
        }
        buf[end - 2..end].copy_from_slice(&usa[2 * i..2 * i + 2]);
    }
    Ok(())
}

/// The attributes of a record (fixups already applied).
fn attributes(rec: &[u8]) -> Result<Vec<Attr<'_>>, String> {
    let f = Fields::new(rec, RECORD);
    let mut at = usize::from(f.u16(20).map_err(e)?);
    let used = (f.u32(24).map_err(e)? as usize).min(rec.len());
    let mut out = Vec::new();
    while at + 4 <= used {
        let kind = f.u32(at).map_err(e)?;
        if kind == 0xFFFF_FFFF {
            break;
        }
        let len = f.u32(at + 4).map_err(e)? as usize;
        if len < 24 || at + len > used {
            return Err(format!(
                "{RECORD}: attribute 0x{kind:x} at +{at} has length {len}, past the {used} bytes in use"
            ));
        }
        let raw = &rec[at..at + len];
        let a = Fields::new(raw, ATTR);
        let non_resident = a.u8(8).map_err(e)? != 0;
        let name_len = usize::from(a.u8(9).map_err(e)?);
        let name_off = usize::from(a.u16(10).map_err(e)?);
        let name = a
            .bytes(name_off, name_len * 2)
            .map_err(e)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        out.push(Attr {
            kind,
            name,
            raw,
            non_resident,
        });
        at += len;
    }
    Ok(out)
}

fn name_is(name: &[u16], want: &str) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want.bytes())
            .all(|(&u, b)| u < 0x80 && (u as u8).eq_ignore_ascii_case(&b))
}

struct Volume<'a> {
    dev: &'a dyn BlockDevice,
    cluster: u64,
    record: usize,
    index_block: usize,
    /// Where `$MFT`'s records lie (its first extent, from record 0).
    mft: Vec<Run>,
}

impl<'a> Volume<'a> {
    fn open(dev: &'a dyn BlockDevice) -> Result<Volume<'a>, String> {
        let mut boot = [0u8; 512];
        dev.read_exact_at(&mut boot, 0)
            .map_err(|err| format!("{BOOT}: {err}"))?;
        let f = Fields::new(&boot, BOOT);
        if f.bytes(3, 8).map_err(e)? != b"NTFS    " {
            return Err(format!("{BOOT}: no \"NTFS    \" at 3"));
        }
        let bps = u64::from(f.u16(11).map_err(e)?);
        if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
            return Err(format!(
                "{BOOT}: bytes per sector {bps} at 11, expected a power of two 256-4096"
            ));
        }
        let spc_raw = f.u8(13).map_err(e)?;
        let spc = if spc_raw <= 0x80 {
            u64::from(spc_raw)
        } else {
            1u64.checked_shl(256 - u32::from(spc_raw)).unwrap_or(0)
        };
        let cluster = bps * spc;
        if cluster == 0 || cluster > (2 << 20) {
            return Err(format!(
                "{BOOT}: sectors per cluster 0x{spc_raw:02x} at 13 gives a cluster of {cluster} bytes"
            ));
        }
        let size_of = |raw: u8, at: usize| -> Result<usize, String> {
            let v = raw as i8;
            let bytes = if v > 0 {
                cluster * u64::from(v as u8)
            } else {
                1u64.checked_shl(u32::from(v.unsigned_abs())).unwrap_or(0)
            };
            if !(512..=65536).contains(&bytes) || !bytes.is_power_of_two() {
                return Err(format!(
                    "{BOOT}: record size field 0x{raw:02x} at {at} gives {bytes} bytes, expected 512-65536"
                ));
            }
            Ok(bytes as usize)
        };
        let record = size_of(f.u8(64).map_err(e)?, 64)?;
        let index_block = size_of(f.u8(68).map_err(e)?, 68)?;
        let mft_lcn = f.u64(48).map_err(e)?;
        let mut vol = Volume {
            dev,
            cluster,
            record,
            index_block,
            mft: Vec::new(),
        };
        let first = mft_lcn
            .checked_mul(cluster)
            .ok_or_else(|| format!("{BOOT}: $MFT cluster {mft_lcn} at 48 is past any disk"))?;
        let rec0 = vol.record_at(first, MFT_MFT)?;
        let data = attributes(&rec0)?
            .into_iter()
            .find(|a| a.kind == AT_DATA && a.name.is_empty())
            .ok_or_else(|| format!("{RECORD} 0 ($MFT): no $DATA attribute"))?
            .runs()?;
        vol.mft = data.2;
        Ok(vol)
    }

    /// Reads the record at byte `offset` and checks it is record `number`.
    fn record_at(&self, offset: u64, number: u64) -> Result<Vec<u8>, String> {
        let mut rec = vec![0u8; self.record];
        self.dev
            .read_exact_at(&mut rec, offset)
            .map_err(|err| format!("{RECORD} {number} at byte {offset}: {err}"))?;
        self.check_record(rec, number)
    }

    fn check_record(&self, mut rec: Vec<u8>, number: u64) -> Result<Vec<u8>, String> {
        if &rec[..4] != b"FILE" {
            return Err(format!(
                "{RECORD} {number}: magic {:?}, expected \"FILE\"",
                String::from_utf8_lossy(&rec[..4])
            ));
        }
        fixups(&mut rec, RECORD)?;
        Ok(rec)
    }

    /// Bytes `[pos, pos + buf.len())` of a non-resident stream.
    fn read_stream(&self, runs: &[Run], pos: u64, buf: &mut [u8]) -> Result<(), String> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let vcn = at / self.cluster;
            let run = runs
                .iter()
                .find(|r| r.vcn <= vcn && vcn - r.vcn < r.len)
                .ok_or_else(|| format!("NTFS stream: byte {at} is in no run"))?;
            let run_end = (run.vcn + run.len) * self.cluster;
            let n = ((run_end - at) as usize).min(buf.len() - done);
            match run.lcn {
                None => buf[done..done + n].fill(0),
                Some(lcn) => {
                    let off = lcn
                        .checked_mul(self.cluster)
                        .and_then(|b| b.checked_add(at - run.vcn * self.cluster))
                        .ok_or_else(|| format!("NTFS stream: cluster {lcn} is past any disk"))?;
                    self.dev
                        .read_exact_at(&mut buf[done..done + n], off)
                        .map_err(|err| format!("NTFS stream at byte {off}: {err}"))?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// MFT record `number`, fixups applied.
    fn record(&self, number: u64) -> Result<Vec<u8>, String> {
        let mut rec = vec![0u8; self.record];
        let pos = number
            .checked_mul(self.record as u64)
            .ok_or_else(|| format!("{RECORD} {number}: past any $MFT"))?;
        self.read_stream(&self.mft, pos, &mut rec)
            .map_err(|err| format!("{RECORD} {number}: {err}"))?;
        self.check_record(rec, number)
    }

    /// The first `len` bytes of the unnamed `$DATA` of record `number`
    /// (fewer when the stream is shorter), following an attribute list to
    /// the extent that starts at VCN 0.
    fn data_head(&self, number: u64, len: usize) -> Result<Vec<u8>, String> {
        let rec = self.record(number)?;
        let attrs = attributes(&rec)?;
        if let Some(a) = attrs
            .iter()
            .find(|a| a.kind == AT_DATA && a.name.is_empty())
        {
            return self.head_of(a, len);
        }
        let list = attrs
            .iter()
            .find(|a| a.kind == AT_ATTRIBUTE_LIST)
            .ok_or_else(|| format!("{RECORD} {number}: no $DATA attribute"))?;
        let list = list.value()?;
        let f = Fields::new(list, "NTFS attribute list");
        let mut at = 0;
        while at + 26 <= list.len() {
            let kind = f.u32(at).map_err(e)?;
            let entry_len = usize::from(f.u16(at + 4).map_err(e)?);
            let name_len = f.u8(at + 6).map_err(e)?;
            let lowest = f.u64(at + 8).map_err(e)?;
            let reference = f.u64(at + 16).map_err(e)?;
            if kind == AT_DATA && name_len == 0 && lowest == 0 {
                let ext = self.record(reference & 0xFFFF_FFFF_FFFF)?;
                let attrs = attributes(&ext)?;
                let a = attrs
                    .iter()
                    .find(|a| a.kind == AT_DATA && a.name.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "{RECORD} {number}: the attribute list's $DATA is not in its record"
                        )
                    })?;
                return self.head_of(a, len);
            }
            if entry_len < 26 {
                break;
            }
            at += entry_len;
        }
        Err(format!("{RECORD} {number}: no $DATA attribute"))
    }

    fn head_of(&self, a: &Attr<'_>, len: usize) -> Result<Vec<u8>, String> {
        if !a.non_resident {
            let v = a.value()?;
            return Ok(v[..v.len().min(len)].to_vec());
        }
        let (size, init, runs) = a.runs()?;
        let n = (size.min(len as u64)) as usize;
        let mut buf = vec![0u8; n];
        let readable = (init.min(n as u64)) as usize;
        self.read_stream(&runs, 0, &mut buf[..readable])?;
        Ok(buf)
    }

    /// The MFT reference of `name` in the root directory, if it is there
    /// (ASCII names, compared without case as Windows does).
    fn lookup_root(&self, name: &str) -> Result<Option<u64>, String> {
        let rec = self.record(MFT_ROOT)?;
        let attrs = attributes(&rec)?;
        let i30: Vec<u16> = "$I30".encode_utf16().collect();
        let root = attrs
            .iter()
            .find(|a| a.kind == AT_INDEX_ROOT && a.name == i30)
            .ok_or_else(|| format!("{RECORD} 5 (root): no $INDEX_ROOT $I30"))?;
        let value = root.value()?;
        if let Some(r) = find_entry(value, 16, name)? {
            return Ok(Some(r));
        }
        let Some(alloc) = attrs
            .iter()
            .find(|a| a.kind == AT_INDEX_ALLOCATION && a.name == i30)
        else {
            return Ok(None);
        };
        let (size, _, runs) = alloc.runs()?;
        let size = size.min(MAX_INDEX_BYTES);
        let block = self.index_block as u64;
        let mut pos = 0;
        while pos + block <= size {
            let mut b = vec![0u8; self.index_block];
            self.read_stream(&runs, pos, &mut b)?;
            pos += block;
            // Blocks not in use may hold anything: only "INDX" blocks whose
            // fixups hold are read, and a hit is checked against its record.
            if &b[..4] != b"INDX" || fixups(&mut b, "NTFS index block").is_err() {
                continue;
            }
            if let Some(r) = find_entry(&b, 24, name)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

/// Looks for `name` among the entries of the index whose header is at
/// `header` in `buf`.
fn find_entry(buf: &[u8], header: usize, name: &str) -> Result<Option<u64>, String> {
    let f = Fields::new(buf, INDEX);
    let mut at = header + f.u32(header).map_err(e)? as usize;
    let end = (header + f.u32(header + 4).map_err(e)? as usize).min(buf.len());
    while at + 16 <= end {
        let reference = f.u64(at).map_err(e)?;
        let len = usize::from(f.u16(at + 8).map_err(e)?);
        let key_len = usize::from(f.u16(at + 10).map_err(e)?);
        let flags = f.u16(at + 12).map_err(e)?;
        if flags & 2 != 0 {
            break;
        }
        if key_len >= 66 {
            let n = usize::from(f.u8(at + 16 + 64).map_err(e)?);
            let units: Vec<u16> = f
                .bytes(at + 16 + 66, n * 2)
                .map_err(e)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            if name_is(&units, name) {
                return Ok(Some(reference));
            }
        }
        if len < 16 {
            return Err(format!(
                "{INDEX} at +{at}: length {len}, expected at least 16"
            ));
        }
        at += len;
    }
    Ok(None)
}

/// The volume label (`$VOLUME_NAME` of `$Volume`); None when it has none.
pub fn label(dev: &dyn BlockDevice) -> Result<Option<String>, String> {
    let vol = Volume::open(dev)?;
    let rec = vol.record(MFT_VOLUME)?;
    let attrs = attributes(&rec)?;
    let Some(a) = attrs.iter().find(|a| a.kind == AT_VOLUME_NAME) else {
        return Ok(None);
    };
    let units: Vec<u16> = a
        .value()?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units).trim().to_string();
    Ok((!s.is_empty()).then_some(s))
}

/// Whether ntfs-3g would refuse to write to this volume, and why; None when
/// it would not. An error means the volume could not be read far enough to
/// tell.
pub fn write_blocker(dev: &dyn BlockDevice) -> Result<Option<WriteBlocker>, String> {
    let vol = Volume::open(dev)?;
    if let Some(reference) = vol.lookup_root("hiberfil.sys")? {
        let number = reference & 0xFFFF_FFFF_FFFF;
        let rec = vol.record(number)?;
        let f = Fields::new(&rec, RECORD);
        let in_use = f.u16(22).map_err(e)? & 1 != 0;
        let seq = f.u16(16).map_err(e)?;
        // A stale index entry (the file was deleted) is no hibernation file.
        if in_use && (reference >> 48 == 0 || reference >> 48 == u64::from(seq)) {
            let head = vol.data_head(number, 4096)?;
            if head.len() < 4096 || &head[..4] == b"hibr" || &head[..4] == b"HIBR" {
                return Ok(Some(WriteBlocker::Hibernated));
            }
        }
    }
    logfile_blocker(&vol)
}

fn logfile_blocker(vol: &Volume<'_>) -> Result<Option<WriteBlocker>, String> {
    let first = vol.data_head(MFT_LOGFILE, 4096)?;
    if first.len() < 512 {
        return Err(format!(
            "{RESTART}: $LogFile has only {} bytes",
            first.len()
        ));
    }
    if first.iter().all(|&b| b == 0xFF) {
        // Emptied (mkntfs, chkdsk, ntfs-3g after a reset): clean.
        return Ok(None);
    }
    let page_size = |p: &[u8]| -> Option<usize> {
        let s = Fields::new(p, RESTART).u32(16).ok()? as usize;
        (s.is_power_of_two() && (512..=65536).contains(&s)).then_some(s)
    };
    if &first[..4] != b"RSTR" {
        if &first[..4] == b"CHKD" {
            // chkdsk rewrote the log: ntfs-3g's own check decides at mount.
            return Ok(None);
        }
        return Ok(Some(WriteBlocker::Unclean));
    }
    let size = page_size(&first).ok_or_else(|| {
        format!("{RESTART}: system page size at 16 is not a power of two 512-65536")
    })?;
    let pages = vol.data_head(MFT_LOGFILE, 2 * size)?;
    // The newest of the two restart pages is the one in force.
    let mut best: Option<(u64, Vec<u8>)> = None;
    for i in 0..2 {
        let Some(raw) = pages.get(i * size..(i + 1) * size) else {
            continue;
        };
        let mut page = raw.to_vec();
        if &page[..4] != b"RSTR" || fixups(&mut page, RESTART).is_err() {
            continue;
        }
        let f = Fields::new(&page, RESTART);
        let Ok(ra) = f.u16(24) else { continue };
        let Ok(lsn) = f.u64(usize::from(ra)) else {
            continue;
        };
        if best.as_ref().is_none_or(|(l, _)| lsn > *l) {
            best = Some((lsn, page));
        }
    }
    let Some((_, page)) = best else {
        return Ok(Some(WriteBlocker::Unclean));
    };
    let f = Fields::new(&page, RESTART);
    let ra = usize::from(f.u16(24).map_err(e)?);
    let (minor, major) = (f.u16(26).map_err(e)?, f.u16(28).map_err(e)?);
    let in_use = f.u16(ra + 12).map_err(e)?;
    let flags = f.u16(ra + 14).map_err(e)?;
    if in_use == 0xFFFF || flags & 2 != 0 {
        return Ok(None);
    }
    Ok(Some(if (major, minor) == (2, 0) {
        WriteBlocker::FastStartup
    } else {
        WriteBlocker::Unclean
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runlists_decode_with_negative_and_sparse_runs() {
        // 0x21: 1 length byte, 2 offset bytes: 0x18 clusters at 0x5634.
        // 0x11: 0x10 clusters at -0x10 relative (0xF0 sign-extends).
        // 0x01: 5 sparse clusters. 0x00 ends.
        let raw = [0x21, 0x18, 0x34, 0x56, 0x11, 0x10, 0xF0, 0x01, 0x05, 0x00];
        let runs = decode_runs(&raw, 0, 0).unwrap();
        assert_eq!(
            runs,
            [
                Run {
                    vcn: 0,
                    lcn: Some(0x5634),
                    len: 0x18
                },
                Run {
                    vcn: 0x18,
                    lcn: Some(0x5624),
                    len: 0x10
                },
                Run {
                    vcn: 0x28,
                    lcn: None,
                    len: 5
                },
            ]
        );
        assert!(
            decode_runs(&[0x11, 0x01, 0xF0, 0], 0, 0).is_err(),
            "before LCN 0"
        );
        assert!(decode_runs(&[0x09, 0], 0, 0).is_err(), "9 length bytes");
        assert!(decode_runs(&[0x21, 0x18], 0, 0).is_err(), "truncated");
    }

    #[test]
    fn fixups_restore_and_detect_torn_sectors() {
        let mut rec = vec![0u8; 1024];
        rec[..4].copy_from_slice(b"FILE");
        rec[4..6].copy_from_slice(&48u16.to_le_bytes());
        rec[6..8].copy_from_slice(&3u16.to_le_bytes());
        rec[48..54].copy_from_slice(&[7, 0, 0xAA, 0xBB, 0xCC, 0xDD]);
        rec[510..512].copy_from_slice(&[7, 0]);
        rec[1022..1024].copy_from_slice(&[7, 0]);
        let mut ok = rec.clone();
        fixups(&mut ok, RECORD).unwrap();
        assert_eq!(
            (&ok[510..512], &ok[1022..1024]),
            (&[0xAA, 0xBB][..], &[0xCC, 0xDD][..])
        );
        rec[1023] = 1;
        let err = fixups(&mut rec, RECORD).unwrap_err();
        assert!(err.contains("sector 1") && err.contains("torn"), "{err}");
    }

    /// An mkntfs image file of `size` bytes with a label, in `dir`.
    pub(crate) fn mkntfs(dir: &std::path::Path, name: &str, size: u64) -> std::path::PathBuf {
        let img = dir.join(name);
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let out = std::process::Command::new("mkntfs")
            .args(["-F", "-Q", "-L", "Backup Disk"])
            .arg(&img)
            .output()
            .expect("mkntfs (apt-get install ntfs-3g) is needed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        img
    }

    /// Copies `bytes` into the unmounted volume as `/name` with ntfscp.
    pub(crate) fn ntfscp(img: &std::path::Path, name: &str, bytes: &[u8]) {
        let src = img.with_extension(format!("src-{}", name.replace('/', "_")));
        std::fs::write(&src, bytes).unwrap();
        let out = std::process::Command::new("ntfscp")
            .arg(img)
            .arg(&src)
            .arg(name)
            .output()
            .expect("ntfscp (apt-get install ntfs-3g) is needed");
        assert!(
            out.status.success(),
            "ntfscp {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&src).unwrap();
    }

    /// Writes a version `major.minor` restart page pair whose restart area
    /// has a client in use and no "clean" flag (what Windows leaves while it
    /// has the volume) over the start of `$LogFile`, with its fixups.
    pub(crate) fn make_log_unclean(img: &std::path::Path, major: u16, minor: u16) {
        use std::os::unix::fs::FileExt;
        let dev = blockdev::Device::open(img).unwrap();
        let vol = Volume::open(&dev).unwrap();
        let rec = vol.record(MFT_LOGFILE).unwrap();
        let attrs = attributes(&rec).unwrap();
        let data = attrs.iter().find(|a| a.kind == AT_DATA).unwrap();
        let (size, _, runs) = data.runs().unwrap();
        let at = runs[0].lcn.unwrap() * vol.cluster;
        assert!(runs[0].len * vol.cluster >= 8192);
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        for (i, lsn) in [(0u64, 0x1000u64), (1, 0x2000)] {
            let mut p = vec![0u8; 4096];
            p[..4].copy_from_slice(b"RSTR");
            p[4..6].copy_from_slice(&0x1Eu16.to_le_bytes()); // usa offset
            p[6..8].copy_from_slice(&9u16.to_le_bytes()); // 8 strides + 1
            p[16..20].copy_from_slice(&4096u32.to_le_bytes()); // system page
            p[20..24].copy_from_slice(&4096u32.to_le_bytes()); // log page
            p[24..26].copy_from_slice(&0x30u16.to_le_bytes()); // restart area
            p[26..28].copy_from_slice(&minor.to_le_bytes());
            p[28..30].copy_from_slice(&major.to_le_bytes());
            let ra = 0x30;
            p[ra..ra + 8].copy_from_slice(&lsn.to_le_bytes()); // current LSN
            p[ra + 8..ra + 10].copy_from_slice(&1u16.to_le_bytes()); // clients
            p[ra + 10..ra + 12].copy_from_slice(&0xFFFFu16.to_le_bytes()); // free list
            p[ra + 12..ra + 14].copy_from_slice(&0u16.to_le_bytes()); // in use: client 0
            p[ra + 14..ra + 16].copy_from_slice(&0u16.to_le_bytes()); // not clean
            p[ra + 16..ra + 20].copy_from_slice(&44u32.to_le_bytes()); // seq number bits
            p[ra + 20..ra + 22].copy_from_slice(&(0x40u16 + 0xA0).to_le_bytes()); // area length
            p[ra + 22..ra + 24].copy_from_slice(&0x40u16.to_le_bytes()); // client array
            p[ra + 24..ra + 32].copy_from_slice(&size.to_le_bytes()); // file size
            p[ra + 36..ra + 38].copy_from_slice(&0x30u16.to_le_bytes()); // record header
            p[ra + 38..ra + 40].copy_from_slice(&0x40u16.to_le_bytes()); // page data
            let c = ra + 0x40;
            p[c + 16..c + 18].copy_from_slice(&0xFFFFu16.to_le_bytes()); // prev
            p[c + 18..c + 20].copy_from_slice(&0xFFFFu16.to_le_bytes()); // next
            p[c + 28..c + 32].copy_from_slice(&8u32.to_le_bytes()); // name bytes
            for (k, u) in "NTFS".encode_utf16().enumerate() {
                p[c + 32 + 2 * k..c + 34 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
            // Fixups: usn 1 at the end of each 512-byte stride.
            p[0x1E..0x20].copy_from_slice(&1u16.to_le_bytes());
            for s in 1..=8 {
                let end = s * 512;
                let orig = [p[end - 2], p[end - 1]];
                p[0x1E + 2 * s..0x20 + 2 * s].copy_from_slice(&orig);
                p[end - 2..end].copy_from_slice(&1u16.to_le_bytes());
            }
            f.write_all_at(&p, at + i * 4096).unwrap();
        }
    }

    /// The oracle: whether ntfs-3g mounts the image read-write when asked
    /// to (it falls back to read-only for a volume it will not write).
    fn ntfs3g_mounts_rw(img: &std::path::Path) -> bool {
        let mnt = img.with_extension("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = std::process::Command::new("ntfs-3g")
            .arg("-o")
            .arg("rw,norecover")
            .arg(img)
            .arg(&mnt)
            .output()
            .expect("ntfs-3g (apt-get install ntfs-3g) is needed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == mnt.to_str())
            .unwrap_or_else(|| panic!("{} not mounted", mnt.display()))
            .to_string();
        let ok = std::process::Command::new("umount")
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::remove_dir(&mnt).unwrap();
        line.split(' ')
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "rw")
    }

    /// Real mkntfs volumes: the label, a clean new volume, a hibernation
    /// file (in a root whose index has grown into index blocks), an awake
    /// or deleted one, a short one, and unclean journals of both versions.
    #[test]
    fn real_volumes_label_hibernation_and_journal() {
        let dir = std::env::temp_dir().join(format!("fsmagic-ntfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = mkntfs(&dir, "clean.img", 48 << 20);
        let dev = blockdev::Device::open(&img).unwrap();
        assert_eq!(label(&dev).unwrap().as_deref(), Some("Backup Disk"));
        assert_eq!(write_blocker(&dev).unwrap(), None);
        assert!(ntfs3g_mounts_rw(&img));
        let sig = crate::detect(&dev).unwrap();
        assert_eq!(sig.kind, crate::Kind::Ntfs);
        assert_eq!(sig.label.as_deref(), Some("Backup Disk"));
        assert_eq!(sig.uuid.as_ref().map(String::len), Some(16));

        // Many names push the root's entries into INDX blocks.
        let img = mkntfs(&dir, "hib.img", 48 << 20);
        for i in 0..60 {
            ntfscp(
                &img,
                &format!("some file with a long name {i:03}.txt"),
                b"x",
            );
        }
        let mut hib = b"HIBR".to_vec();
        hib.resize(64 << 10, 0);
        ntfscp(&img, "hiberfil.sys", &hib);
        let dev = blockdev::Device::open(&img).unwrap();
        let vol = Volume::open(&dev).unwrap();
        let root = vol.record(MFT_ROOT).unwrap();
        assert!(
            attributes(&root)
                .unwrap()
                .iter()
                .any(|a| a.kind == AT_INDEX_ALLOCATION),
            "the test wants a root index with INDX blocks"
        );
        assert_eq!(write_blocker(&dev).unwrap(), Some(WriteBlocker::Hibernated));
        assert!(!ntfs3g_mounts_rw(&img));

        let img = mkntfs(&dir, "awake.img", 48 << 20);
        ntfscp(&img, "HiberFil.sys", &vec![0u8; 64 << 10]);
        let dev = blockdev::Device::open(&img).unwrap();
        assert_eq!(
            write_blocker(&dev).unwrap(),
            None,
            "zeroed: resumed and shut down"
        );
        assert!(ntfs3g_mounts_rw(&img));

        let img = mkntfs(&dir, "short.img", 48 << 20);
        ntfscp(&img, "hiberfil.sys", b"wake");
        let dev = blockdev::Device::open(&img).unwrap();
        assert_eq!(
            write_blocker(&dev).unwrap(),
            Some(WriteBlocker::Hibernated),
            "ntfs-3g refuses a hiberfil.sys shorter than 4096 bytes"
        );
        assert!(!ntfs3g_mounts_rw(&img));

        let img = mkntfs(&dir, "fast.img", 48 << 20);
        make_log_unclean(&img, 2, 0);
        let dev = blockdev::Device::open(&img).unwrap();
        assert_eq!(
            write_blocker(&dev).unwrap(),
            Some(WriteBlocker::FastStartup)
        );
        assert!(!ntfs3g_mounts_rw(&img));
        let img = mkntfs(&dir, "unclean.img", 48 << 20);
        make_log_unclean(&img, 1, 1);
        let dev = blockdev::Device::open(&img).unwrap();
        assert_eq!(write_blocker(&dev).unwrap(), Some(WriteBlocker::Unclean));
        assert!(!ntfs3g_mounts_rw(&img), "norecover: not reset, not written");
        assert!(WriteBlocker::Hibernated
            .reason()
            .starts_with("Windows hibernated/fast startup"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Corrupted real volumes (bytes of the boot sector, the first MFT
    /// records, the root index and the journal overwritten at random):
    /// errors or answers, never a panic.
    #[test]
    fn corrupted_volumes_never_panic() {
        let dir = std::env::temp_dir().join(format!("fsmagic-ntfs-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = mkntfs(&dir, "base.img", 16 << 20);
        for i in 0..40 {
            ntfscp(&img, &format!("name {i:03}"), b"x");
        }
        let base = std::fs::read(&img).unwrap();
        let dev = blockdev::MemDevice::new(base.clone(), 512);
        let vol = Volume::open(&dev).unwrap();
        let mft = vol.mft[0].lcn.unwrap() * vol.cluster;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 8 {
                let region = match next() % 3 {
                    0 => 0,
                    1 => mft,
                    _ => mft + 2 * vol.record as u64,
                };
                let span = if region == 0 {
                    512
                } else {
                    8 * vol.record as u64
                };
                let at = (region + next() % span) as usize;
                b[at] = next() as u8;
            }
            let d = blockdev::MemDevice::new(b, 512);
            let _ = label(&d);
            let _ = write_blocker(&d);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
