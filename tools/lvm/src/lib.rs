//! LVM2 for the rescue appliance: volume groups found from the PVs' own
//! text metadata, and their logical volumes made available read-only
//! through device-mapper, without lvm2's tools.
//!
//! - [`label`]: the PV label, PV header and metadata areas on disk (with
//!   lvm2's CRC and the metadata ring that wraps around);
//! - [`text`], [`vg`]: the text metadata format and the VG it describes;
//! - [`plan`]: each LV's device-mapper table (`linear`, `striped`, `error`,
//!   `zero`), or why it cannot be activated (thin, snapshot, RAID, cache...
//!   are named as not supported; missing PVs are named);
//! - [`scan`]: VGs from the PVs found, the newest metadata copy chosen;
//! - [`dm`]: the device-mapper ioctls; [`system`]: the machine's devices,
//!   activation and deactivation; [`cli`]: `rescue lvm`.
//!
//! Nothing is written to a PV: devices are opened read-only and the dm
//! tables are loaded read-only.

#![deny(unsafe_code)]

/// `rescue lvm`: arguments and rendering only.
pub mod cli;
#[allow(unsafe_code)]
pub mod dm;
pub mod label;
pub mod plan;
pub mod scan;
pub mod system;
pub mod text;
pub mod vg;

#[cfg(test)]
mod tests;
