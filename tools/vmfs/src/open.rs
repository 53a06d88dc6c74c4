//! Opening one volume from the sources a user named: VMFS devices found on
//! them (GPT/MBR or a given offset), the other extents of a spanned volume
//! discovered on this machine's disks, one copy chosen per extent. What was
//! found or decided on the way comes back as notes for the caller to show:
//! the library prints nothing.

use crate::damage::Ranges;
use crate::datastores::{pick_copies, Candidate, DatastorePlan};
use crate::source::{find_extents, open_source, Opened};
use crate::Volume;
use std::fmt;
use std::path::Path;

/// Where and how to look for the volume.
#[derive(Debug, Default, Clone)]
pub struct OpenRequest<'a> {
    /// Disks, partitions or images holding the volume, any order.
    pub sources: &'a [String],
    /// Further devices of a spanned volume, named explicitly; when given,
    /// no others are looked for.
    pub extents: &'a [String],
    /// Byte offset of the VMFS partition on the first source (skips the
    /// GPT/MBR search).
    pub offset: Option<u64>,
    /// Bad areas of the first source (a ddrescue mapfile): reads there
    /// fail as on a failing disk. With a map, no extents are discovered:
    /// the map describes the named image only.
    pub bad: Option<&'a Ranges>,
}

/// A volume opened from sources.
pub struct OpenedVolume {
    pub volume: Volume,
    /// Per volume device (the indexes of `FileExtent::device` and of the
    /// volume's segments): the source path and the byte offset of the
    /// device on it.
    pub origins: Vec<(String, u64)>,
    /// Extents found on other disks and choices made between copies, one
    /// sentence each, in the order they happened. The volume's metadata
    /// warnings are in `volume.warnings`.
    pub notes: Vec<String>,
}

/// Opening failed; `notes` says what had been found or decided before.
#[derive(Debug)]
pub struct OpenError {
    pub message: String,
    pub notes: Vec<String>,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpenError {}

/// Opens the volume on `req.sources` (and `req.extents`). A spanned volume
/// with only some of its devices named is completed from the disks under
/// /sys and /dev (the appliance's disks), unless extents or a bad-area map
/// were given.
pub fn open_volume(req: &OpenRequest<'_>) -> Result<OpenedVolume, OpenError> {
    open_volume_on(req, Path::new("/sys"), Path::new("/dev"))
}

/// [`open_volume`], discovering extents on the disks under `sys`/block
/// through the nodes in `dev_dir`.
pub fn open_volume_on(
    req: &OpenRequest<'_>,
    sys: &Path,
    dev_dir: &Path,
) -> Result<OpenedVolume, OpenError> {
    let mut notes = Vec::new();
    let fail = |message: String, notes: Vec<String>| OpenError { message, notes };
    if req.sources.is_empty() {
        return Err(fail(
            "no source given (a disk, partition or image)".into(),
            notes,
        ));
    }
    let mut cands = Vec::new();
    for (i, s) in req.sources.iter().chain(req.extents).enumerate() {
        // The offset and mapfile apply to the first source only.
        let first = i == 0;
        let found: Vec<Opened> =
            open_source(s, req.offset.filter(|_| first), req.bad.filter(|_| first))
                .map_err(|e| fail(e.to_string(), Vec::new()))?;
        cands.extend(found.into_iter().map(Candidate::new));
    }
    let named = cands.len();
    // A spanned volume with only some of its devices named: on a machine
    // with its disks (the appliance), find the others by volume UUID.
    if req.extents.is_empty() && req.bad.is_none() {
        let wanted = cands[0]
            .header
            .as_ref()
            .filter(|h| h.num_devs as usize > named)
            .map(|h| h.lv_uuid.to_string());
        if let Some(uuid) = wanted {
            let known: Vec<(String, u64)> = cands
                .iter()
                .map(|c| (c.opened.path.clone(), c.opened.offset))
                .collect();
            for o in find_extents(sys, dev_dir, &uuid, &known) {
                notes.push(format!(
                    "extent of volume {uuid} found on {} at byte {}",
                    o.path, o.offset
                ));
                cands.push(Candidate::new(o));
            }
        }
    }
    // Copies of one extent (a disk and its raw clone): the named one, or
    // the newest discovered, and say which.
    let (members, choices) = pick_copies(cands, named);
    notes.extend(choices);
    let store = DatastorePlan {
        members,
        copies: Vec::new(),
        choices: Vec::new(),
    }
    .open();
    match store.volume {
        Ok(volume) => Ok(OpenedVolume {
            volume,
            origins: store.devices,
            notes,
        }),
        Err(e) => Err(fail(e.to_string(), notes)),
    }
}
