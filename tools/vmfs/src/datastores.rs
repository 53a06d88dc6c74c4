//! Datastores on a set of disks: VMFS devices of one LVM volume are joined
//! into one datastore, and copies of one extent are kept apart.
//!
//! A raw clone of a disk (the second incident: a boot disk restored onto a
//! RAID drive while the original is still attached) carries the same LVM
//! device (device UUID, PE range) as the original. Joining the two would be
//! reading one extent twice; ESXi calls such a device a snapshot LUN and
//! keeps it apart. So do we: a one-extent volume found several times is
//! listed once per copy, and a span whose extents have copies takes, per
//! extent, the copy with the newer LVM generation and says so.

use crate::lvm::LvmHeader;
use crate::source::{open_source, Opened};
use crate::{Error, Result, Volume};

/// One VMFS device found on a disk, with its LVM header if it has one.
pub struct Candidate {
    pub opened: Opened,
    pub header: Option<LvmHeader>,
}

impl Candidate {
    pub fn new(opened: Opened) -> Candidate {
        let header = LvmHeader::read(opened.dev.as_ref()).ok();
        Candidate { opened, header }
    }

    /// "PATH at byte N" (or just PATH for a device that is the volume).
    pub fn place(&self) -> String {
        place(&self.opened.path, self.opened.offset)
    }
}

fn copy_note(copies: &[String]) -> Option<String> {
    (!copies.is_empty()).then(|| format!("same volume as {} (a copy)", copies.join(", ")))
}

fn place(path: &str, offset: u64) -> String {
    if offset == 0 {
        path.to_string()
    } else {
        format!("{path} at byte {offset}")
    }
}

/// What to open as one datastore.
pub struct DatastorePlan {
    /// The devices of the volume, the first one holding its start when
    /// known (the order does not matter for opening).
    pub members: Vec<Opened>,
    /// Other places holding a copy of this very volume, each listed as a
    /// datastore of its own: "/dev/sdb at byte 1212153856".
    pub copies: Vec<String>,
    /// Choices made between copies of an extent, to be shown.
    pub choices: Vec<String>,
}

impl DatastorePlan {
    /// The first member's source path and VMFS offset.
    pub fn source(&self) -> (&str, u64) {
        let o = &self.members[0];
        (&o.path, o.offset)
    }

    /// The note shown beside a datastore that has copies.
    pub fn copy_note(&self) -> Option<String> {
        copy_note(&self.copies)
    }

    /// Opens the volume from the planned devices.
    pub fn open(self) -> Datastore {
        let (source, offset) = {
            let (p, o) = self.source();
            (p.to_string(), o)
        };
        let devices = self
            .members
            .iter()
            .map(|o| (o.path.clone(), o.offset))
            .collect();
        Datastore {
            source,
            offset,
            devices,
            copies: self.copies,
            choices: self.choices,
            volume: Volume::from_devices(self.members.into_iter().map(|o| o.dev).collect()),
        }
    }
}

/// A planned datastore, opened.
pub struct Datastore {
    /// Where the volume starts: the first device's source and VMFS offset.
    pub source: String,
    pub offset: u64,
    /// Every (source, offset) the volume is read from.
    pub devices: Vec<(String, u64)>,
    /// Other places holding a copy of this very volume.
    pub copies: Vec<String>,
    /// Choices made between copies of an extent.
    pub choices: Vec<String>,
    pub volume: Result<Volume>,
}

impl Datastore {
    /// The note shown beside a datastore that has copies.
    pub fn copy_note(&self) -> Option<String> {
        copy_note(&self.copies)
    }

    /// "/dev/sda at byte 1048576".
    pub fn place(&self) -> String {
        place(&self.source, self.offset)
    }

    /// What to show beside the datastore: the copy note, then the choices
    /// made between copies of its extents.
    pub fn notes(&self) -> Vec<String> {
        self.copy_note()
            .into_iter()
            .chain(self.choices.iter().cloned())
            .collect()
    }
}

/// Groups of candidates that are copies of one extent, in the order met.
fn copy_groups(cands: &[Candidate]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let Some(h) = &c.header else {
            groups.push(vec![i]);
            continue;
        };
        let same = groups.iter_mut().find(|g| {
            cands[g[0]]
                .header
                .as_ref()
                .is_some_and(|first| first.is_copy_of(h))
        });
        match same {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Of the copies `group` (indexes into `cands`), the one to read: one the
/// caller fixed (named by the user) if any, else the newest by LVM
/// generation, else the first. Returns it and the sentence that says so
/// (None when there was no choice).
fn choose(cands: &[Candidate], group: &[usize], fixed: usize) -> (usize, Option<String>) {
    if group.len() == 1 {
        return (group[0], None);
    }
    let gen = |i: usize| {
        cands[i]
            .header
            .as_ref()
            .map(|h| h.recency())
            .unwrap_or_default()
    };
    let others = |pick: usize| {
        group
            .iter()
            .filter(|&&i| i != pick)
            .map(|&i| format!("{} (generation {})", cands[i].place(), gen(i).0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let uuid = cands[group[0]]
        .header
        .as_ref()
        .map(|h| h.device_uuid.to_string())
        .unwrap_or_default();
    if let Some(&named) = group.iter().find(|&&i| i < fixed) {
        let why = format!(
            "extent {uuid}: reading {} as named; copies not used: {}",
            cands[named].place(),
            others(named)
        );
        return (named, Some(why));
    }
    let newest = group
        .iter()
        .copied()
        .max_by_key(|&i| gen(i))
        .unwrap_or(group[0]);
    let tie = group.iter().filter(|&&i| gen(i) == gen(newest)).count() > 1;
    // max_by_key returns the last of equals: prefer the first met instead.
    let pick = if tie {
        group
            .iter()
            .copied()
            .find(|&i| gen(i) == gen(newest))
            .unwrap_or(newest)
    } else {
        newest
    };
    let why = format!(
        "extent {uuid}: copies on {} (generation {}) and {}; took {} ({}); \
         name the devices to read another copy",
        cands[pick].place(),
        gen(pick).0,
        others(pick),
        cands[pick].place(),
        if tie {
            "same generation, the first found"
        } else {
            "the newest"
        }
    );
    (pick, Some(why))
}

/// Picks one copy per extent: `cands[..fixed]` are the devices the user
/// named (always kept), the rest were discovered. Returns the devices to
/// assemble and what was decided, one sentence per extent with copies.
pub fn pick_copies(cands: Vec<Candidate>, fixed: usize) -> (Vec<Opened>, Vec<String>) {
    let (kept, said) = pick(cands, fixed);
    (kept.into_iter().map(|c| c.opened).collect(), said)
}

/// [`pick_copies`], keeping the candidates (with their headers).
fn pick(cands: Vec<Candidate>, fixed: usize) -> (Vec<Candidate>, Vec<String>) {
    let groups = copy_groups(&cands);
    let mut keep = Vec::new();
    let mut said = Vec::new();
    for g in &groups {
        // Two copies the user named both stay: assembling them is an error
        // that tells the user to name one.
        let named: Vec<usize> = g.iter().copied().filter(|&i| i < fixed).collect();
        if named.len() > 1 {
            keep.extend(named);
            continue;
        }
        let (pick, why) = choose(&cands, g, fixed);
        keep.push(pick);
        said.extend(why);
    }
    let kept = cands
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, c)| c)
        .collect();
    (kept, said)
}

/// Plans the datastores held by `cands`: devices grouped by LVM volume
/// UUID (a device without LVM header is a volume of its own). A volume
/// with one extent found in several places gives one datastore per copy;
/// a span gives one datastore, with one copy per extent chosen.
pub fn plan(cands: Vec<Candidate>) -> Vec<DatastorePlan> {
    // Volumes in the order met: (LV UUID or none, candidate indexes).
    let mut volumes: Vec<(Option<crate::Uuid>, Vec<usize>)> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let lv = c.header.as_ref().map(|h| h.lv_uuid);
        match volumes.iter_mut().find(|(u, _)| lv.is_some() && *u == lv) {
            Some((_, v)) => v.push(i),
            None => volumes.push((lv, vec![i])),
        }
    }
    let mut slots: Vec<Option<Candidate>> = cands.into_iter().map(Some).collect();
    let mut plans = Vec::new();
    for (_, idx) in volumes {
        let group: Vec<Candidate> = idx.iter().filter_map(|&i| slots[i].take()).collect();
        let extents = copy_groups(&group);
        if extents.len() == 1 {
            // One extent: every copy is a datastore of its own.
            let places: Vec<String> = group.iter().map(Candidate::place).collect();
            for (i, c) in group.into_iter().enumerate() {
                let copies = places
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p.clone())
                    .collect();
                plans.push(DatastorePlan {
                    members: vec![c.opened],
                    copies,
                    choices: Vec::new(),
                });
            }
        } else {
            let (members, choices) = pick(group, 0);
            plans.push(DatastorePlan {
                members: start_first(members),
                copies: Vec::new(),
                choices,
            });
        }
    }
    plans
}

/// Puts the device whose PEs start the volume first, so that the
/// datastore is named after the disk holding its descriptor (from the
/// headers already read, not read again).
fn start_first(mut members: Vec<Candidate>) -> Vec<Opened> {
    if let Some(i) = members.iter().position(|c| {
        c.header
            .as_ref()
            .is_some_and(|h| h.extents.iter().any(|e| e.l_off == 0))
    }) {
        members.swap(0, i);
    }
    members.into_iter().map(|c| c.opened).collect()
}

/// Opens the VMFS devices on `paths` (disks, partitions or images) and
/// plans their datastores; sources without VMFS are passed over, sources
/// that fail otherwise are returned with their error.
pub fn plan_paths(paths: &[String]) -> (Vec<DatastorePlan>, Vec<(String, Error)>) {
    let mut cands = Vec::new();
    let mut failed = Vec::new();
    for p in paths {
        match open_source(p, None, None) {
            Ok(found) => cands.extend(found.into_iter().map(Candidate::new)),
            Err(Error::NotFound(_)) => {}
            Err(e) => failed.push((p.clone(), e)),
        }
    }
    (plan(cands), failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::{PhysExtent, PE_UNIT};
    use crate::Uuid;
    use blockdev::MemDevice;

    fn header(lv: u8, dev: u8, first_pe: u64, gen: u64) -> LvmHeader {
        LvmHeader {
            major: 5,
            minor: 0,
            disk_id: String::new(),
            device_size: 0,
            data_offset: 0,
            device_uuid: Uuid([dev; 16]),
            generation: gen,
            lv_generation: 0,
            md_alignment: 0,
            flags: 0,
            lv_size: 2 * PE_UNIT,
            lv_name: String::new(),
            lv_uuid: Uuid([lv; 16]),
            lv_num_pes: 2,
            first_pe,
            last_pe: first_pe,
            num_devs: 2,
            extents: vec![PhysExtent {
                pe_id: 0,
                volume_id: 0,
                p_off: 0,
                l_off: first_pe * PE_UNIT,
                len: PE_UNIT,
            }],
        }
    }

    fn cand(name: &str, h: LvmHeader) -> Candidate {
        Candidate {
            opened: Opened {
                dev: Box::new(MemDevice::new(vec![0; 512], 512)),
                path: name.into(),
                offset: 0,
            },
            header: Some(h),
        }
    }

    #[test]
    fn one_extent_in_two_places_is_two_datastores() {
        let mut a = header(1, 7, 0, 5);
        a.num_devs = 1;
        let plans = plan(vec![cand("/dev/sda", a.clone()), cand("/dev/sdb", a)]);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].source().0, "/dev/sda");
        assert_eq!(
            plans[0].copy_note().as_deref(),
            Some("same volume as /dev/sdb (a copy)")
        );
        assert_eq!(
            plans[1].copy_note().as_deref(),
            Some("same volume as /dev/sda (a copy)")
        );
    }

    #[test]
    fn a_span_takes_the_newer_copy_of_each_extent_and_says_so() {
        let first = header(1, 1, 0, 3);
        let second_old = header(1, 2, 1, 3);
        let second_new = header(1, 2, 1, 9);
        let plans = plan(vec![
            cand("/dev/sdc", second_old),
            cand("/dev/sda", first),
            cand("/dev/sdb", second_new),
        ]);
        assert_eq!(plans.len(), 1);
        let names: Vec<&str> = plans[0].members.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"/dev/sda") && names.contains(&"/dev/sdb"));
        assert_eq!(plans[0].choices.len(), 1);
        let said = &plans[0].choices[0];
        assert!(
            said.contains("took /dev/sdb") && said.contains("the newest"),
            "{said}"
        );
        assert!(said.contains("/dev/sdc (generation 3)"), "{said}");
    }

    #[test]
    fn same_generation_takes_the_first_found_and_says_so() {
        let plans = plan(vec![
            cand("/dev/sda", header(1, 1, 0, 3)),
            cand("/dev/sdb", header(1, 2, 1, 3)),
            cand("/dev/sdc", header(1, 2, 1, 3)),
        ]);
        let said = &plans[0].choices[0];
        assert!(
            said.contains("took /dev/sdb") && said.contains("the first found"),
            "{said}"
        );
    }

    #[test]
    fn named_devices_win_over_newer_discovered_copies() {
        let (keep, said) = pick_copies(
            vec![
                cand("/dev/sdc", header(1, 2, 1, 1)),
                cand("/dev/sda", header(1, 1, 0, 1)),
                cand("/dev/sdb", header(1, 2, 1, 9)),
            ],
            1,
        );
        let names: Vec<&str> = keep.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(names, ["/dev/sdc", "/dev/sda"]);
        assert!(said[0].contains("reading /dev/sdc as named"), "{}", said[0]);
    }

    #[test]
    fn different_volumes_and_extents_are_not_copies() {
        let a = header(1, 1, 0, 1);
        assert!(!a.is_copy_of(&header(2, 1, 0, 1)));
        assert!(!a.is_copy_of(&header(1, 2, 0, 1)));
        assert!(!a.is_copy_of(&header(1, 1, 1, 1)));
        assert!(a.is_copy_of(&header(1, 1, 0, 8)));
    }
}
