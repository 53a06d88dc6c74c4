//! A volume group as its text metadata describes it (lvm2's
//! `lib/format_text/import_vsn1.c` reads the same fields):
//!
//! ```text
//! vg1 {
//!     id = "..."  seqno = 7  extent_size = 8192   # sectors
//!     physical_volumes {
//!         pv0 { id = "..." device = "/dev/md2" dev_size = ... pe_start = 2048 pe_count = 100 }
//!     }
//!     logical_volumes {
//!         lv1 {
//!             id = "..." status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
//!             segment1 { start_extent = 0 extent_count = 50 type = "striped"
//!                        stripe_count = 2 stripe_size = 128 stripes = ["pv0", 0, "pv1", 0] }
//!         }
//!     }
//! }
//! ```
//!
//! Sizes are in 512-byte sectors (`extent_size`, `pe_start`, `dev_size`,
//! `stripe_size`); `pe_count`, `start_extent`, `extent_count` and the
//! numbers in `stripes` count extents. Errors name the VG, the section path
//! and the field, and the text line.

use crate::text::{Section, Value};
use serde::Serialize;

/// A physical volume of the VG (`physical_volumes/pvN`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PvMeta {
    /// The section name the LV segments refer to (`pv0`).
    pub key: String,
    pub id: String,
    /// The device the PV was last seen on (a hint only).
    pub device: Option<String>,
    /// Sectors.
    pub dev_size: u64,
    /// First extent, sectors from the start of the PV.
    pub pe_start: u64,
    pub pe_count: u64,
    pub status: Vec<String>,
    pub flags: Vec<String>,
}

/// One stripe of a segment: a PV (or, for stacked LVs, another LV) and its
/// first extent there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stripe {
    pub target: String,
    pub extent: u64,
}

/// `segmentN` of an LV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// `striped` (also linear, with one stripe), `thin-pool`, `raid1`...
    #[serde(rename = "type")]
    pub seg_type: String,
    pub stripe_count: u64,
    /// Sectors; only for more than one stripe.
    pub stripe_size: Option<u64>,
    /// For `striped`.
    pub stripes: Vec<Stripe>,
    /// LVs this segment uses, by name: a snapshot's `cow_store` and
    /// `origin`, a pool's `metadata` and `pool`, a thin LV's `thin_pool`,
    /// mirror and raid images...
    pub uses: Vec<String>,
}

/// A logical volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lv {
    pub name: String,
    pub id: String,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    /// `VISIBLE` in status: an LV of its own, not a part of another one.
    pub visible: bool,
    pub segments: Vec<Segment>,
}

impl Lv {
    /// Extents the LV spans.
    pub fn extents(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.start_extent.saturating_add(s.extent_count))
            .max()
            .unwrap_or(0)
    }
}

/// A volume group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vg {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// Sectors.
    pub extent_size: u64,
    pub status: Vec<String>,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<Lv>,
}

impl Vg {
    pub fn pv(&self, key: &str) -> Option<&PvMeta> {
        self.pvs.iter().find(|p| p.key == key)
    }
    pub fn lv(&self, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.name == name)
    }
}

struct Ctx<'a> {
    vg: &'a str,
    path: String,
}

impl Ctx<'_> {
    fn err(&self, s: &Section, key: &str, what: String) -> String {
        format!(
            "VG {}: {}{}field '{key}' (line {}): {what}",
            self.vg,
            self.path,
            if self.path.is_empty() { "" } else { ": " },
            s.line_of(key)
        )
    }

    fn int(&self, s: &Section, key: &str) -> Result<u64, String> {
        match s.get(key) {
            Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
            Some(Value::Int(n)) => Err(self.err(s, key, format!("{n} is negative"))),
            Some(v) => Err(self.err(s, key, format!("expected an integer, found {}", v.kind()))),
            None => Err(self.err(s, key, "missing".into())),
        }
    }

    fn opt_int(&self, s: &Section, key: &str) -> Result<Option<u64>, String> {
        if s.get(key).is_none() {
            return Ok(None);
        }
        self.int(s, key).map(Some)
    }

    fn string(&self, s: &Section, key: &str) -> Result<String, String> {
        match s.get(key) {
            Some(Value::Str(v)) => Ok(v.clone()),
            Some(v) => Err(self.err(s, key, format!("expected a string, found {}", v.kind()))),
            None => Err(self.err(s, key, "missing".into())),
        }
    }

    fn opt_string(&self, s: &Section, key: &str) -> Result<Option<String>, String> {
        if s.get(key).is_none() {
            return Ok(None);
        }
        self.string(s, key).map(Some)
    }

    fn strings(&self, s: &Section, key: &str) -> Result<Vec<String>, String> {
        match s.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(l)) => l
                .iter()
                .map(|v| match v {
                    Value::Str(x) => Ok(x.clone()),
                    v => Err(self.err(
                        s,
                        key,
                        format!("expected a list of strings, found {} in it", v.kind()),
                    )),
                })
                .collect(),
            Some(v) => Err(self.err(s, key, format!("expected a list, found {}", v.kind()))),
        }
    }

    fn list<'v>(&self, s: &'v Section, key: &str) -> Result<Option<&'v [Value]>, String> {
        match s.get(key) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(v) => Err(self.err(s, key, format!("expected a list, found {}", v.kind()))),
        }
    }
}

/// Reads the VG from the parsed metadata text: the one top-level section.
pub fn from_text(top: &Section) -> Result<Vg, String> {
    let mut sections = top.sections();
    let vg = sections
        .next()
        .ok_or("metadata text: no volume group section (expected 'name { ... }')")?;
    if let Some(other) = sections.next() {
        return Err(format!(
            "metadata text: a second top-level section '{}' (line {}) after VG {}",
            other.name, other.line, vg.name
        ));
    }
    let mut c = Ctx {
        vg: &vg.name,
        path: String::new(),
    };
    let id = c.string(vg, "id")?;
    let seqno = c.int(vg, "seqno")?;
    let extent_size = c.int(vg, "extent_size")?;
    if extent_size == 0 {
        return Err(c.err(vg, "extent_size", "is 0".into()));
    }
    let status = c.strings(vg, "status")?;
    let mut pvs = Vec::new();
    if let Some(list) = vg.section("physical_volumes") {
        for p in list.sections() {
            c.path = format!("physical_volumes/{}", p.name);
            pvs.push(PvMeta {
                key: p.name.clone(),
                id: c.string(p, "id")?,
                device: c.opt_string(p, "device")?,
                dev_size: c.opt_int(p, "dev_size")?.unwrap_or(0),
                pe_start: c.int(p, "pe_start")?,
                pe_count: c.int(p, "pe_count")?,
                status: c.strings(p, "status")?,
                flags: c.strings(p, "flags")?,
            });
        }
    }
    let mut lvs = Vec::new();
    if let Some(list) = vg.section("logical_volumes") {
        for l in list.sections() {
            c.path = format!("logical_volumes/{}", l.name);
            let status = c.strings(l, "status")?;
            let mut segments = Vec::new();
            let count = c.int(l, "segment_count")?;
            for n in 1..=count {
                let name = format!("segment{n}");
                let s = l.section(&name).ok_or_else(|| {
                    c.err(
                        l,
                        "segment_count",
                        format!("is {count}, but there is no section {name}"),
                    )
                })?;
                c.path = format!("logical_volumes/{}/{name}", l.name);
                segments.push(segment(&c, s, extent_size)?);
                c.path = format!("logical_volumes/{}", l.name);
            }
            lvs.push(Lv {
                name: l.name.clone(),
                id: c.string(l, "id")?,
                visible: status.iter().any(|s| s == "VISIBLE"),
                flags: c.strings(l, "flags")?,
                status,
                segments,
            });
        }
    }
    Ok(Vg {
        name: vg.name.clone(),
        id,
        seqno,
        extent_size,
        status,
        pvs,
        lvs,
    })
}

fn segment(c: &Ctx<'_>, s: &Section, extent_size: u64) -> Result<Segment, String> {
    let start_extent = c.int(s, "start_extent")?;
    let extent_count = c.int(s, "extent_count")?;
    if start_extent
        .checked_add(extent_count)
        .and_then(|e| e.checked_mul(extent_size))
        .is_none()
    {
        return Err(c.err(
            s,
            "extent_count",
            format!("{start_extent} + {extent_count} extents overflow 64 bits of sectors"),
        ));
    }
    let seg_type = c.string(s, "type")?;
    let mut seg = Segment {
        start_extent,
        extent_count,
        seg_type,
        stripe_count: 0,
        stripe_size: None,
        stripes: Vec::new(),
        uses: Vec::new(),
    };
    if seg.seg_type == "striped" {
        seg.stripe_count = c.int(s, "stripe_count")?;
        if seg.stripe_count == 0 {
            return Err(c.err(s, "stripe_count", "is 0".into()));
        }
        seg.stripe_size = c.opt_int(s, "stripe_size")?;
        if seg.stripe_count > 1 && seg.stripe_size.unwrap_or(0) == 0 {
            return Err(c.err(
                s,
                "stripe_size",
                format!(
                    "missing or 0 with {} stripes (expected the chunk size in sectors)",
                    seg.stripe_count
                ),
            ));
        }
        if extent_count % seg.stripe_count != 0 {
            return Err(c.err(
                s,
                "extent_count",
                format!(
                    "{extent_count} is not a multiple of stripe_count {}",
                    seg.stripe_count
                ),
            ));
        }
        let list = c
            .list(s, "stripes")?
            .ok_or_else(|| c.err(s, "stripes", "missing".into()))?;
        seg.stripes = pairs(c, s, "stripes", list)?;
        if seg.stripes.len() as u64 != seg.stripe_count {
            return Err(c.err(
                s,
                "stripes",
                format!(
                    "has {} entries, stripe_count says {}",
                    seg.stripes.len(),
                    seg.stripe_count
                ),
            ));
        }
        return Ok(seg);
    }
    // Other types: only which LVs they use, for the report.
    for key in [
        "cow_store",
        "origin",
        "merging_store",
        "metadata",
        "pool",
        "thin_pool",
        "external_origin",
        "cache_pool",
        "mirror_log",
        "vdo_pool",
        "data",
        "writecache",
        "integrity_meta",
    ] {
        if let Some(Value::Str(v)) = s.get(key) {
            seg.uses.push(v.clone());
        }
    }
    for key in ["mirrors", "raids", "stripes"] {
        if let Some(list) = c.list(s, key)? {
            for v in list {
                if let Value::Str(name) = v {
                    seg.uses.push(name.clone());
                }
            }
        }
    }
    Ok(seg)
}

/// `["pv0", 0, "pv1", 12]` into stripes.
fn pairs(c: &Ctx<'_>, s: &Section, key: &str, list: &[Value]) -> Result<Vec<Stripe>, String> {
    if !list.len().is_multiple_of(2) {
        return Err(c.err(
            s,
            key,
            format!(
                "has {} entries, expected pairs of name and extent",
                list.len()
            ),
        ));
    }
    list.chunks(2)
        .enumerate()
        .map(|(i, p)| match (&p[0], &p[1]) {
            (Value::Str(t), Value::Int(e)) if *e >= 0 => Ok(Stripe {
                target: t.clone(),
                extent: *e as u64,
            }),
            (a, b) => Err(c.err(
                s,
                key,
                format!(
                    "entry {i}: expected a name and a non-negative extent, found {} and {}",
                    a.kind(),
                    b.kind()
                ),
            )),
        })
        .collect()
}

/// Parses metadata text into the VG it describes.
pub fn parse_vg(text: &str) -> Result<Vg, String> {
    let top = crate::text::parse(text).map_err(|e| e.to_string())?;
    from_text(&top)
}
