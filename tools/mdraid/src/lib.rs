//! Linux md RAID metadata. This crate starts with the superblock readers
//! (versions 0.90, 1.0, 1.1, 1.2) that the probe uses to recognise array
//! members; examining, grouping and verifying arrays build on it.

pub mod superblock;
pub mod testwriter;

pub use superblock::{find_superblock, Superblock, SuperblockError};
