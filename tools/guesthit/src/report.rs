//! The report: per VM disk (or the imaged disk itself), per filesystem,
//! the files and directories hit with their byte ranges, metadata and
//! free space hit, and what lies in no filesystem; totals. Text for the
//! screen and the file saved beside the image; JSON through cliconv.

use crate::extmap::Area;
use crate::walk::{Hit, Method};
use serde::Serialize;
use std::fmt::Write;

/// `--json` schema version.
pub const SCHEMA: u32 = 1;

/// How a filesystem's walk went.
#[derive(Clone, Debug, Serialize)]
pub struct WalkStats {
    pub method: Method,
    pub files: u64,
    pub directories: u64,
    /// Directories counted but not mapped (FIBMAP maps files only).
    pub unmapped_directories: u64,
    pub others: u64,
    pub seconds: f64,
    /// Files and directories mapped per second.
    pub per_second: f64,
    pub not_entered: Vec<String>,
}

/// One filesystem with bad bytes (or checked and clean).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsReport {
    /// Its block device, `nbd0p1`, `md127`, `dm-0`.
    pub device: String,
    /// How that device lies on the attached one, top down.
    pub chain: Vec<String>,
    pub kind: String,
    pub label: Option<String>,
    pub size: u64,
    /// Bytes of it in bad areas, and where (device offsets).
    pub bad_bytes: u64,
    pub bad: Vec<(u64, u64)>,
    pub mounted: bool,
    pub files: Vec<Hit>,
    pub directories: Vec<Hit>,
    pub metadata: Vec<Area>,
    pub free: Vec<Area>,
    /// Bad bytes in no file that could not be told apart, with why.
    pub not_told_apart: Vec<Area>,
    /// Bad bytes nothing is lost by: another copy of them is good (btrfs
    /// DUP and RAID1 chunks).
    pub redundant: Vec<Area>,
    pub walk: Option<WalkStats>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// One attached disk: a VM disk, or the imaged disk itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskReport {
    /// `VM disk /vm1/vm1.vmdk` or `image /mnt/dest/sdb.img`.
    pub source: String,
    /// The device it was attached as (`nbd0`).
    pub device: Option<String>,
    pub size: u64,
    pub bad_bytes: u64,
    /// The VM disk's map of bad virtual bytes.
    pub badmap: Option<String>,
    pub filesystems: Vec<FsReport>,
    /// Bad bytes in no filesystem: partition tables and gaps, swap, md
    /// and LVM metadata, what could not be mapped; `what` says which.
    pub elsewhere: Vec<Area>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// The files of the datastore (VMFS) hit.
#[derive(Debug, Serialize)]
pub struct VmfsPart {
    pub hits: Vec<vmfs::files_hit::Hit>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub files_hit: u64,
    pub file_bytes: u64,
    pub directories_hit: u64,
    pub directory_bytes: u64,
    pub metadata_bytes: u64,
    pub free_bytes: u64,
    pub not_told_apart_bytes: u64,
    /// Bad, but another copy is good.
    pub redundant_bytes: u64,
    pub elsewhere_bytes: u64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub image: String,
    pub map: String,
    /// Bytes the mapfile leaves unrescued.
    pub bad_bytes: u64,
    /// The datastore's files hit, when the image holds VMFS.
    pub vmfs: Option<VmfsPart>,
    pub disks: Vec<DiskReport>,
    pub totals: Totals,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

fn sum(a: &[Area]) -> u64 {
    a.iter().map(|x| x.len).sum()
}

impl Report {
    /// Fills in the totals.
    pub fn total(&mut self) {
        let mut t = Totals::default();
        for d in &self.disks {
            t.elsewhere_bytes += sum(&d.elsewhere);
            for f in &d.filesystems {
                t.files_hit += f.files.len() as u64;
                t.file_bytes += f.files.iter().map(|h| h.bytes).sum::<u64>();
                t.directories_hit += f.directories.len() as u64;
                t.directory_bytes += f.directories.iter().map(|h| h.bytes).sum::<u64>();
                t.metadata_bytes += sum(&f.metadata);
                t.free_bytes += sum(&f.free);
                t.not_told_apart_bytes += sum(&f.not_told_apart);
                t.redundant_bytes += sum(&f.redundant);
            }
        }
        self.totals = t;
    }

    /// Anything lost or not known: exit 1.
    pub fn findings(&self) -> bool {
        self.bad_bytes > 0 || !self.errors.is_empty()
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Guest files hit by the bad areas of {}", self.image);
        let _ = writeln!(
            s,
            "mapfile {}: {} bytes unreadable",
            self.map, self.bad_bytes
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if let Some(v) = &self.vmfs {
            let _ = writeln!(s, "\nDatastore (VMFS) files hit: {}", v.hits.len());
            for h in &v.hits {
                let n: u64 = h.ranges.iter().map(|r| r.1).sum();
                let _ = writeln!(s, "  {}: {n} bytes in {} ranges", h.path, h.ranges.len());
            }
            for e in &v.errors {
                let _ = writeln!(s, "  unreadable metadata: {e}");
            }
        }
        for d in &self.disks {
            let _ = writeln!(
                s,
                "\n{}{}: {} bytes in bad areas",
                d.source,
                d.device
                    .as_deref()
                    .map(|x| format!(" (attached as {x})"))
                    .unwrap_or_default(),
                d.bad_bytes
            );
            if let Some(b) = &d.badmap {
                let _ = writeln!(s, "  bad-area map: {b}");
            }
            for n in &d.notes {
                let _ = writeln!(s, "  note: {n}");
            }
            for f in &d.filesystems {
                render_fs(&mut s, f);
            }
            if !d.elsewhere.is_empty() {
                let _ = writeln!(s, "  not in any filesystem:");
                for a in &d.elsewhere {
                    // Offsets in the device `what` names.
                    let _ = writeln!(s, "    {}: {}", range(a.start, a.len), a.what);
                }
            }
            for e in &d.errors {
                let _ = writeln!(s, "  error: {e}");
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            s,
            "\nTotals: {} hit ({} bytes), {} hit ({} bytes), metadata {} bytes, free space {} bytes, not told apart {} bytes, another copy good {} bytes, outside filesystems {} bytes",
            screen::plural(t.files_hit, "file", "files"),
            t.file_bytes,
            screen::plural(t.directories_hit, "directory", "directories"),
            t.directory_bytes,
            t.metadata_bytes,
            t.free_bytes,
            t.not_told_apart_bytes,
            t.redundant_bytes,
            t.elsewhere_bytes
        );
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }
}

fn range(start: u64, len: u64) -> String {
    format!("bytes {start}..{} ({len} bytes)", start + len)
}

fn render_fs(s: &mut String, f: &FsReport) {
    let _ = writeln!(
        s,
        "  {} {}{}: {} bytes in bad areas",
        f.device,
        f.kind,
        f.label
            .as_deref()
            .map(|l| format!(" \"{l}\""))
            .unwrap_or_default(),
        f.bad_bytes
    );
    for c in &f.chain {
        let _ = writeln!(s, "    on {c}");
    }
    if let Some(w) = &f.walk {
        let _ = writeln!(
            s,
            "    walked {} files and {} directories in {:.2} s ({:.0}/s) with {}",
            w.files,
            w.directories,
            w.seconds,
            w.per_second,
            match w.method {
                Method::Fiemap => "FIEMAP",
                Method::Fibmap => "FIBMAP (one call per block: slower)",
            }
        );
        if w.unmapped_directories > 0 {
            let _ = writeln!(
                s,
                "    {} not mapped (FIBMAP maps files only): their blocks count as metadata",
                screen::plural(w.unmapped_directories, "directory", "directories")
            );
        }
        for n in &w.not_entered {
            let _ = writeln!(s, "    not entered (another filesystem): {n}");
        }
    }
    for (label, hits) in [("file", &f.files), ("directory", &f.directories)] {
        for h in hits {
            let _ = writeln!(
                s,
                "    {label} {}: {} of {} bytes lost",
                h.path, h.bytes, h.size
            );
            for (a, l) in &h.ranges {
                let _ = writeln!(s, "      {}", range(*a, *l));
            }
            for o in &h.other_names {
                let _ = writeln!(s, "      also named {o}");
            }
            for n in &h.notes {
                let _ = writeln!(s, "      note: {n}");
            }
        }
    }
    // Offsets in the filesystem's own device.
    for (label, areas) in [
        ("metadata", &f.metadata),
        ("free space", &f.free),
        ("not in any file", &f.not_told_apart),
        ("still readable", &f.redundant),
    ] {
        for a in areas {
            let at = format!("{} of {}", range(a.start, a.len), f.device);
            if label == "free space" && a.what == "free space" {
                let _ = writeln!(s, "    free space: {at}");
            } else {
                let _ = writeln!(s, "    {label}: {at}: {}", a.what);
            }
        }
    }
    for n in &f.notes {
        let _ = writeln!(s, "    note: {n}");
    }
    for e in &f.errors {
        let _ = writeln!(s, "    error: {e}");
    }
}
