//! Which guest files the bad sectors hit (issue 20, item 4).
//!
//! A ddrescue mapfile says which bytes of an imaged disk could not be
//! read. `vmfs files-hit` carries them into the VM disks of a datastore
//! (`<disk>.badmap`, virtual-disk offsets); this crate goes the last
//! layers up: virtual disk or physical disk -> partition -> md -> LVM ->
//! guest filesystem -> guest files.
//!
//! - [`layers`]: pure translations of bad ranges up one layer each;
//! - [`fiemap`]: where a file's bytes lie on its device (FIEMAP, or FIBMAP
//!   per block where FIEMAP is not supported, as on ntfs-3g's fuseblk);
//! - [`walk`]: every file and directory of a mounted filesystem, its
//!   extents intersected with the bad ranges;
//! - [`extmap`]: ext2/3/4 block bitmaps read from the device, telling the
//!   bad bytes no file holds apart as metadata or free space;
//! - [`report`]: the report, as text and JSON;
//! - [`run`]: the whole walk over an image, with attaching, assembling,
//!   activating and mounting injected ([`run::System`]) so the pure parts
//!   are tested on the host;
//! - [`cli`]: `rescue files-hit`.

pub mod btrfsmap;
pub mod cli;
pub mod extmap;
pub mod fiemap;
pub mod layers;
pub mod report;
pub mod run;
pub mod walk;

pub use blockdev::Ranges;
