//! GNU ddrescue mapfiles: the rescue map in memory, its text format, atomic saving.
//!
//! Text layout (ddrescue manual, chapter "Mapfile structure"):
//!
//! ```text
//! # comment lines (a '#' at line start or after whitespace starts a comment)
//! 0x00120000     ?               1          <- status line: current_pos current_status [current_pass]
//! 0x00000000  0x00117000  +                 <- block lines: pos size status, contiguous
//! 0x00117000  0x00000200  -
//! ```
//!
//! Numbers use C++ integer syntax (decimal, `0x` hex, leading-`0` octal) except
//! `current_pass`, which is decimal. ddrescue writes `0x%08llX`; so do we, so
//! that ddrescuelog, ddrescueview and ddrescue itself read our files unchanged.
//!
//! In memory the map is a sorted list of extents, always merged (no two
//! neighbours share a status), packed into one `u64` each so that even a disk
//! with millions of scattered bad areas stays well under 64 MiB.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Status of one block in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Status {
    /// `?` never read.
    NonTried,
    /// `*` a large read failed here; edges not trimmed yet.
    NonTrimmed,
    /// `/` between trimmed edges; not read sector by sector yet.
    NonScraped,
    /// `-` at least one sector failed a single-sector read.
    BadSector,
    /// `+` read and written.
    Finished,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::NonTried,
        Status::NonTrimmed,
        Status::NonScraped,
        Status::BadSector,
        Status::Finished,
    ];
    pub fn as_char(self) -> char {
        match self {
            Status::NonTried => '?',
            Status::NonTrimmed => '*',
            Status::NonScraped => '/',
            Status::BadSector => '-',
            Status::Finished => '+',
        }
    }
    pub fn from_char(c: char) -> Option<Status> {
        Some(match c {
            '?' => Status::NonTried,
            '*' => Status::NonTrimmed,
            '/' => Status::NonScraped,
            '-' => Status::BadSector,
            '+' => Status::Finished,
            _ => return None,
        })
    }
    fn code(self) -> u64 {
        self as u64
    }
    fn from_code(c: u64) -> Status {
        Status::ALL[c as usize]
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::NonTried => "non-tried",
            Status::NonTrimmed => "non-trimmed",
            Status::NonScraped => "non-scraped",
            Status::BadSector => "bad-sector",
            Status::Finished => "finished",
        }
    }
}

/// The status line's phase character (`current_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PhaseChar {
    Copying,
    Trimming,
    Scraping,
    Retrying,
    Filling,
    Generating,
    Finished,
}

impl PhaseChar {
    pub fn as_char(self) -> char {
        match self {
            PhaseChar::Copying => '?',
            PhaseChar::Trimming => '*',
            PhaseChar::Scraping => '/',
            PhaseChar::Retrying => '-',
            PhaseChar::Filling => 'F',
            PhaseChar::Generating => 'G',
            PhaseChar::Finished => '+',
        }
    }
    pub fn from_char(c: char) -> Option<PhaseChar> {
        Some(match c {
            '?' => PhaseChar::Copying,
            '*' => PhaseChar::Trimming,
            '/' => PhaseChar::Scraping,
            '-' => PhaseChar::Retrying,
            'F' => PhaseChar::Filling,
            'G' => PhaseChar::Generating,
            '+' => PhaseChar::Finished,
            _ => return None,
        })
    }
}

/// One contiguous block of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub pos: u64,
    pub size: u64,
    pub status: Status,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.pos + self.size
    }
}

const STATUS_SHIFT: u32 = 61;
const POS_MASK: u64 = (1 << STATUS_SHIFT) - 1;
/// Largest position the packed representation holds (2 EiB).
pub const MAX_POS: u64 = POS_MASK;

/// The rescue map: extents covering `[start, end)` plus the status line.
#[derive(Clone, PartialEq, Eq)]
pub struct Map {
    /// Packed extents: `pos | status << 61`, sorted, merged. An extent ends where
    /// the next begins (the last at `end`).
    entries: Vec<u64>,
    end: u64,
    pub current_pos: u64,
    pub current_status: PhaseChar,
    pub current_pass: u32,
    bytes: [u64; 5],
    areas: [u64; 5],
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Map(end={:#x}, {:#x} {} {})",
            self.end,
            self.current_pos,
            self.current_status.as_char(),
            self.current_pass
        )?;
        for e in self.extents() {
            writeln!(f, "  {:#x} {:#x} {}", e.pos, e.size, e.status.as_char())?;
        }
        Ok(())
    }
}

fn pack(pos: u64, st: Status) -> u64 {
    pos | (st.code() << STATUS_SHIFT)
}
fn unpack(v: u64) -> (u64, Status) {
    (v & POS_MASK, Status::from_code(v >> STATUS_SHIFT))
}

impl Map {
    /// A map of `size` bytes, all non-tried.
    pub fn new(size: u64) -> Map {
        assert!(size <= MAX_POS, "map size beyond 2 EiB");
        let mut m = Map {
            entries: Vec::new(),
            end: size,
            current_pos: 0,
            current_status: PhaseChar::Copying,
            current_pass: 1,
            bytes: [0; 5],
            areas: [0; 5],
        };
        if size > 0 {
            m.entries.push(pack(0, Status::NonTried));
            m.bytes[0] = size;
            m.areas[0] = 1;
        }
        m
    }

    /// Builds a map from contiguous extents (merging neighbours of equal status).
    pub fn from_extents(extents: &[Extent]) -> Result<Map, String> {
        let start = extents.first().map(|e| e.pos).unwrap_or(0);
        if start != 0 {
            return Err(format!("first block starts at {start:#x}, not 0"));
        }
        let mut m = Map::new(0);
        let mut at = 0u64;
        for e in extents {
            if e.pos != at {
                return Err(format!(
                    "block at {:#x} is not contiguous with the previous end {at:#x}",
                    e.pos
                ));
            }
            if e.size == 0 {
                continue;
            }
            at = e
                .pos
                .checked_add(e.size)
                .filter(|&x| x <= MAX_POS)
                .ok_or_else(|| format!("block at {:#x} ends beyond 2 EiB", e.pos))?;
            m.push_back(e.pos, e.status);
        }
        m.end = at;
        m.recount();
        Ok(m)
    }

    fn push_back(&mut self, pos: u64, st: Status) {
        if let Some(&last) = self.entries.last() {
            if unpack(last).1 == st {
                return;
            }
        }
        self.entries.push(pack(pos, st));
    }

    fn recount(&mut self) {
        let (mut bytes, mut areas) = ([0u64; 5], [0u64; 5]);
        for e in self.extents() {
            bytes[e.status as usize] += e.size;
            areas[e.status as usize] += 1;
        }
        self.bytes = bytes;
        self.areas = areas;
    }

    /// Size covered (end of the last block).
    pub fn size(&self) -> u64 {
        self.end
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Total bytes with `st`.
    pub fn bytes(&self, st: Status) -> u64 {
        self.bytes[st as usize]
    }
    /// Number of (merged) areas with `st`.
    pub fn areas(&self, st: Status) -> u64 {
        self.areas[st as usize]
    }

    /// Memory used by the extent list, for the bounded-memory claim.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * 8
    }

    pub fn extent(&self, i: usize) -> Extent {
        let (pos, status) = unpack(self.entries[i]);
        let end = self
            .entries
            .get(i + 1)
            .map(|&v| unpack(v).0)
            .unwrap_or(self.end);
        Extent {
            pos,
            size: end - pos,
            status,
        }
    }

    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        (0..self.entries.len()).map(move |i| self.extent(i))
    }

    /// Index of the extent containing `pos` (`pos < size`).
    pub fn index_of(&self, pos: u64) -> usize {
        debug_assert!(pos < self.end);
        match self.entries.binary_search_by(|&v| unpack(v).0.cmp(&pos)) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// Status of the byte at `pos`.
    pub fn status_at(&self, pos: u64) -> Status {
        self.extent(self.index_of(pos)).status
    }

    /// First extent with status `st` that ends after `from`, clipped to start at `from`.
    pub fn next_forward(&self, from: u64, st: Status) -> Option<Extent> {
        if from >= self.end {
            return None;
        }
        let mut i = self.index_of(from);
        while i < self.entries.len() {
            let e = self.extent(i);
            if e.status == st {
                let pos = e.pos.max(from);
                return Some(Extent {
                    pos,
                    size: e.end() - pos,
                    status: st,
                });
            }
            i += 1;
        }
        None
    }

    /// Last extent with status `st` that starts before `to`, clipped to end at `to`.
    pub fn next_backward(&self, to: u64, st: Status) -> Option<Extent> {
        if to == 0 || self.entries.is_empty() {
            return None;
        }
        let mut i = self.index_of(to.min(self.end) - 1);
        loop {
            let e = self.extent(i);
            if e.status == st {
                let end = e.end().min(to);
                return Some(Extent {
                    pos: e.pos,
                    size: end - e.pos,
                    status: st,
                });
            }
            if i == 0 {
                return None;
            }
            i -= 1;
        }
    }

    /// Marks `[pos, pos+len)` with `st`, splitting and merging extents.
    /// Allocation-free: the replacement is at most five extents (left
    /// neighbour, left remainder, the new extent, right remainder, right
    /// neighbour), built on the stack and spliced in.
    pub fn set(&mut self, pos: u64, len: u64, st: Status) {
        if len == 0 {
            return;
        }
        let end = pos + len;
        assert!(end <= self.end, "set beyond map end");
        let ip = self.index_of(pos);
        let il = self.index_of(end - 1);
        // The window of extents replaced, widened by one on each side for merging.
        let first = ip.saturating_sub(1);
        let last = (il + 1).min(self.entries.len() - 1);
        for i in first..=last {
            let e = self.extent(i);
            self.bytes[e.status as usize] -= e.size;
            self.areas[e.status as usize] -= 1;
        }
        let mut pieces = Pieces::default();
        if first < ip {
            pieces.add(self.extent(first));
        }
        let e = self.extent(ip);
        if e.pos < pos {
            pieces.add(Extent {
                pos: e.pos,
                size: pos - e.pos,
                status: e.status,
            });
        }
        pieces.add(Extent {
            pos,
            size: len,
            status: st,
        });
        let e = self.extent(il);
        if e.end() > end {
            pieces.add(Extent {
                pos: end,
                size: e.end() - end,
                status: e.status,
            });
        }
        if last > il {
            pieces.add(self.extent(last));
        }
        for p in pieces.as_slice() {
            self.bytes[p.status as usize] += p.size;
            self.areas[p.status as usize] += 1;
        }
        self.entries.splice(
            first..=last,
            pieces.as_slice().iter().map(|p| pack(p.pos, p.status)),
        );
    }

    /// Changes every extent of status `from` to `to`.
    pub fn change_all(&mut self, from: Status, to: Status) {
        let ex: Vec<Extent> = self.extents().filter(|e| e.status == from).collect();
        for e in ex {
            self.set(e.pos, e.size, to);
        }
    }

    /// Checks the map against a source of `size` bytes; the error names the
    /// mapfile line that disagrees when known.
    pub fn check_size(&self, size: u64, lines: Option<&[usize]>) -> Result<(), String> {
        if self.end == size {
            return Ok(());
        }
        let line = lines
            .and_then(|l| l.last())
            .map(|n| format!("line {n}: "))
            .unwrap_or_default();
        Err(format!(
            "{line}last block ends at {:#x} ({} bytes) but the source has {size:#x} ({size} bytes): \
             this mapfile belongs to a source of a different size",
            self.end, self.end
        ))
    }
}

/// Up to five extents, merged as they are added (see [`Map::set`]).
struct Pieces {
    n: usize,
    buf: [Extent; 5],
}

impl Default for Pieces {
    fn default() -> Self {
        let z = Extent {
            pos: 0,
            size: 0,
            status: Status::NonTried,
        };
        Pieces { n: 0, buf: [z; 5] }
    }
}

impl Pieces {
    fn add(&mut self, p: Extent) {
        if p.size == 0 {
            return;
        }
        if self.n > 0 && self.buf[self.n - 1].status == p.status {
            self.buf[self.n - 1].size += p.size;
            return;
        }
        self.buf[self.n] = p;
        self.n += 1;
    }
    fn as_slice(&self) -> &[Extent] {
        &self.buf[..self.n]
    }
}

/// A parse error with the 1-based line and the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.message)
    }
}
impl std::error::Error for ParseError {}

/// A parsed mapfile: the map (None when the file holds no status line, which
/// ddrescue treats as a new rescue) and the line number of each block.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub map: Option<Map>,
    pub block_lines: Vec<usize>,
}

/// Parses a C++-style unsigned integer: decimal, `0x` hex, leading-`0` octal.
pub fn parse_cpp_u64(s: &str) -> Result<u64, String> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "expected a number (decimal, 0x hex or 0 octal), found {s:?}"
        ));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("number {s:?} is too large"))
}

/// Strips a comment: `#` at line start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Parses mapfile text. Never panics; errors name line and field.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut status: Option<(u64, PhaseChar, u32)> = None;
    let mut extents: Vec<Extent> = Vec::new();
    let mut block_lines = Vec::new();
    let mut at = 0u64;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |field: &'static str, message: String| ParseError {
            line: line_no,
            field,
            message,
        };
        let body = strip_comment(raw);
        let fields: Vec<&str> = body.split_ascii_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if status.is_none() {
            if fields.len() < 2 || fields.len() > 3 {
                return Err(err(
                    "status line",
                    format!(
                        "expected 'current_pos current_status [current_pass]', found {} fields",
                        fields.len()
                    ),
                ));
            }
            let pos = parse_cpp_u64(fields[0]).map_err(|m| err("current_pos", m))?;
            let mut chars = fields[1].chars();
            let ph = match (chars.next(), chars.next()) {
                (Some(c), None) => PhaseChar::from_char(c),
                _ => None,
            }
            .ok_or_else(|| {
                err(
                    "current_status",
                    format!("expected one of ? * / - F G +, found {:?}", fields[1]),
                )
            })?;
            let pass = match fields.get(2) {
                None => 1,
                Some(p) => {
                    let v: u32 = if p.chars().all(|c| c.is_ascii_digit()) {
                        p.parse().ok()
                    } else {
                        None
                    }
                    .filter(|&v| v >= 1)
                    .ok_or_else(|| {
                        err(
                            "current_pass",
                            format!("expected a positive decimal integer, found {p:?}"),
                        )
                    })?;
                    v
                }
            };
            status = Some((pos, ph, pass));
            continue;
        }
        if fields.len() != 3 {
            return Err(err(
                "block line",
                format!("expected 'pos size status', found {} fields", fields.len()),
            ));
        }
        let pos = parse_cpp_u64(fields[0]).map_err(|m| err("pos", m))?;
        let size = parse_cpp_u64(fields[1]).map_err(|m| err("size", m))?;
        let mut chars = fields[2].chars();
        let st = match (chars.next(), chars.next()) {
            (Some(c), None) => Status::from_char(c),
            _ => None,
        }
        .ok_or_else(|| {
            err(
                "status",
                format!("expected one of ? * / - +, found {:?}", fields[2]),
            )
        })?;
        if extents.is_empty() && pos != 0 {
            return Err(err(
                "pos",
                format!("first block starts at {pos:#x}, expected 0"),
            ));
        }
        if pos != at {
            return Err(err(
                "pos",
                format!("block at {pos:#x} is not contiguous: previous block ended at {at:#x}"),
            ));
        }
        if size == 0 {
            return Err(err("size", "block of size 0".into()));
        }
        at = pos
            .checked_add(size)
            .filter(|&e| e <= MAX_POS)
            .ok_or_else(|| {
                err(
                    "size",
                    format!("block ends beyond 2 EiB ({pos:#x} + {size:#x})"),
                )
            })?;
        extents.push(Extent {
            pos,
            size,
            status: st,
        });
        block_lines.push(line_no);
    }
    let Some((pos, ph, pass)) = status else {
        return Ok(Parsed {
            map: None,
            block_lines,
        });
    };
    let mut map = Map::from_extents(&extents).map_err(|m| ParseError {
        line: 0,
        field: "blocks",
        message: m,
    })?;
    map.current_pos = pos;
    map.current_status = ph;
    map.current_pass = pass;
    Ok(Parsed {
        map: Some(map),
        block_lines,
    })
}

/// Heading comments written above the status line.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub command_line: String,
    pub start_time: String,
    pub phase_message: String,
}

/// Renders the map in ddrescue's exact layout.
pub fn render(map: &Map, header: &Header) -> String {
    let mut s = String::with_capacity(256 + map.len() * 32);
    let _ = writeln!(
        s,
        "# Mapfile. Created by rescue image (imaging {})",
        env!("CARGO_PKG_VERSION")
    );
    if !header.command_line.is_empty() {
        let _ = writeln!(s, "# Command line: {}", header.command_line);
    }
    if !header.start_time.is_empty() {
        let _ = writeln!(s, "# Start time:   {}", header.start_time);
    }
    let _ = writeln!(s, "# Current time: {}", utc_now());
    if !header.phase_message.is_empty() {
        let _ = writeln!(s, "# {}", header.phase_message);
    }
    s.push_str("# current_pos  current_status  current_pass\n");
    let _ = writeln!(
        s,
        "0x{:08X}     {}               {}",
        map.current_pos,
        map.current_status.as_char(),
        map.current_pass
    );
    s.push_str("#      pos        size  status\n");
    for e in map.extents() {
        let _ = writeln!(
            s,
            "0x{:08X}  0x{:08X}  {}",
            e.pos,
            e.size,
            e.status.as_char()
        );
    }
    s
}

pub use civiltime::{format_utc, utc_now};

/// The areas a GNU ddrescue mapfile's text marks as not rescued, as
/// `(pos, size)` in mapfile order: every block whose status is not `+`
/// (finished): `-` bad sector, `*` non-trimmed, `/` non-scraped, `?`
/// non-tried. A mapfile without a status line is refused: it maps nothing.
pub fn unrescued(text: &str) -> Result<Vec<(u64, u64)>, String> {
    let parsed = parse(text).map_err(|e| format!("mapfile {e}"))?;
    let map = parsed
        .map
        .ok_or_else(|| "mapfile has no status line".to_string())?;
    Ok(map
        .extents()
        .filter(|e| e.status != Status::Finished)
        .map(|e| (e.pos, e.size))
        .collect())
}

/// [`unrescued`] of the mapfile at `path`; errors name the file.
pub fn read_unrescued(path: &Path) -> Result<Vec<(u64, u64)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading mapfile {}: {e}", path.display()))?;
    unrescued(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads and parses a mapfile; `Ok(None)` when it does not exist or holds no
/// status line (a new rescue, as in ddrescue).
pub fn load(path: &Path) -> Result<Option<(Map, Vec<usize>)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read mapfile: {e}", path.display())),
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        format!(
            "{}: mapfile is not text (invalid UTF-8 at byte {})",
            path.display(),
            e.valid_up_to()
        )
    })?;
    let parsed = parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(parsed.map.map(|m| (m, parsed.block_lines)))
}

/// Writes `text` to `path` atomically: a temporary file beside it, fsync,
/// rename over, fsync of the directory. A crash leaves the old or the new file.
pub fn save_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "mapfile path has no file name")
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue -d -c18 /dev/fd0 fdimage mapfile
# current_pos  current_status  current_pass
0x00120000     ?               1
#      pos        size  status
0x00000000  0x00117000  +
0x00117000  0x00000200  -
0x00117200  0x00001000  /
0x00118200  0x00007E00  *
0x00120000  0x00048000  ?
";

    #[test]
    fn parses_manual_example() {
        let p = parse(SAMPLE).unwrap();
        let m = p.map.unwrap();
        assert_eq!(m.size(), 0x168000);
        assert_eq!(m.current_pos, 0x120000);
        assert_eq!(m.current_status, PhaseChar::Copying);
        assert_eq!(m.len(), 5);
        assert_eq!(m.bytes(Status::BadSector), 0x200);
        assert_eq!(p.block_lines, vec![6, 7, 8, 9, 10]);
        let text = render(&m, &Header::default());
        let again = parse(&text).unwrap().map.unwrap();
        assert_eq!(again, m);
        assert!(text.contains("0x00117000  0x00000200  -\n"), "{text}");
        assert!(
            text.contains("0x00120000     ?               1\n"),
            "{text}"
        );
    }

    #[test]
    fn numbers_and_comments() {
        assert_eq!(parse_cpp_u64("0x10").unwrap(), 16);
        assert_eq!(parse_cpp_u64("010").unwrap(), 8);
        assert_eq!(parse_cpp_u64("0").unwrap(), 0);
        assert_eq!(parse_cpp_u64("12").unwrap(), 12);
        assert!(parse_cpp_u64("09").is_err());
        assert!(parse_cpp_u64("0x").is_err());
        assert!(parse_cpp_u64("-1").is_err());
        let p = parse("0 + # trailing\n0 512 +   # c\n0x200 01000 -\n").unwrap();
        let m = p.map.unwrap();
        assert_eq!(m.size(), 512 + 512);
        // Old two-column status line.
        assert_eq!(m.current_pass, 1);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse("0 + 1\n0 512 +\n0x300 512 -\n").unwrap_err();
        assert_eq!((e.line, e.field), (3, "pos"));
        let e = parse("# x\n0 Q 1\n").unwrap_err();
        assert_eq!((e.line, e.field), (2, "current_status"));
        let e = parse("0 + 0\n").unwrap_err();
        assert_eq!(e.field, "current_pass");
        let e = parse("0 + 1\n0 512 x\n").unwrap_err();
        assert_eq!((e.line, e.field), (2, "status"));
        let e = parse("0 + 1\n0 zz +\n").unwrap_err();
        assert_eq!(e.field, "size");
        let e = parse("0 + 1\n512 512 +\n").unwrap_err();
        assert_eq!(e.field, "pos");
        assert!(parse("# only comments\n\n").unwrap().map.is_none());
    }

    #[test]
    fn set_splits_and_merges() {
        let mut m = Map::new(10_000);
        m.set(1000, 500, Status::Finished);
        m.set(1500, 500, Status::Finished);
        assert_eq!(m.len(), 3);
        m.set(0, 1000, Status::Finished);
        assert_eq!(m.len(), 2);
        m.set(1200, 10, Status::BadSector);
        assert_eq!(m.areas(Status::BadSector), 1);
        assert_eq!(m.areas(Status::Finished), 2);
        m.set(1200, 10, Status::Finished);
        assert_eq!(m.len(), 2);
        m.set(0, 10_000, Status::Finished);
        assert_eq!(m.len(), 1);
        assert_eq!(m.bytes(Status::Finished), 10_000);
        assert_eq!(m.next_forward(0, Status::NonTried), None);
        m.set(9000, 1000, Status::NonTrimmed);
        assert_eq!(
            m.next_backward(10_000, Status::NonTrimmed),
            Some(Extent {
                pos: 9000,
                size: 1000,
                status: Status::NonTrimmed
            })
        );
        assert_eq!(
            m.next_forward(9500, Status::NonTrimmed)
                .map(|e| (e.pos, e.size)),
            Some((9500, 500))
        );
    }

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    fn model_check(m: &Map, model: &[Status]) {
        let mut expect = Vec::new();
        for (i, &s) in model.iter().enumerate() {
            match expect.last_mut() {
                Some((_, n, st)) if *st == s => *n += 1,
                _ => expect.push((i as u64, 1u64, s)),
            }
        }
        let got: Vec<_> = m.extents().map(|e| (e.pos, e.size, e.status)).collect();
        assert_eq!(got, expect);
        for st in Status::ALL {
            assert_eq!(
                m.bytes(st),
                model.iter().filter(|&&s| s == st).count() as u64
            );
            assert_eq!(
                m.areas(st),
                expect.iter().filter(|e| e.2 == st).count() as u64
            );
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "(?s).{0,400}") {
            let _ = parse(&s);
        }

        #[test]
        fn parser_never_panics_on_mapfile_like(lines in proptest::collection::vec(
            "(0x[0-9A-F]{1,17}|[0-9]{1,21}|#.*|[?*/+FG-])( +(0x[0-9A-F]{1,17}|[0-9]{1,4}|[?*/+-]|#x)){0,3}", 0..12)) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn set_matches_a_byte_model(ops in proptest::collection::vec((0u64..200, 1u64..60, 0usize..5), 1..40)) {
            let mut m = Map::new(200);
            let mut model = vec![Status::NonTried; 200];
            for (pos, len, st) in ops {
                let len = len.min(200 - pos);
                if len == 0 { continue; }
                let st = Status::ALL[st];
                m.set(pos, len, st);
                for s in &mut model[pos as usize..(pos + len) as usize] { *s = st; }
                model_check(&m, &model);
            }
            let text = render(&m, &Header::default());
            let back = parse(&text).unwrap().map.unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
