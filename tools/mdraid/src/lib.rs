//! Linux md RAID metadata and data, read-only: superblock readers (versions
//! 0.90, 1.0, 1.1, 1.2), grouping members into arrays (`scan`), one
//! member's superblock in full (`examine`), the data layouts (`layout`),
//! GF(2^8) for RAID-6 (`gf`), a user-space consistency check (`verify`),
//! one whole array verified as the command and the menu do it
//! (`array_verify`), opening the devices to read (`devices`), progress
//! units (`units`) and the `rescue md` command line (`cli`: arguments and
//! rendering only).

pub mod array_verify;
pub mod cli;
pub mod devices;
pub mod examine;
pub mod gf;
pub mod layout;
pub mod scan;
pub mod superblock;
pub mod verify;

pub use superblock::{find_superblock, Superblock, SuperblockError};

#[cfg(test)]
mod tests;
