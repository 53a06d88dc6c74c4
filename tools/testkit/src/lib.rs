//! Test-only helpers shared by the workspace's tests (never part of the
//! appliance: a dev-dependency of libraries and a dependency of the
//! host-only qemu-tests, never of rescue-init or a library's
//! `[dependencies]`):
//!
//! - [`TempDir`]: scratch directories removed on drop;
//! - [`fixtures`]: the shared fixtures beside the checkout, failing loudly
//!   when one is missing (unless `RESCUE_ALLOW_MISSING_FIXTURES=1`);
//! - [`btrfsimg`]: a btrfs whose current tree root is destroyed;
//! - [`gptdisk`]: GPT disks with a protective MBR, to be damaged on purpose;
//! - [`mdwriter`]: md superblocks and whole member images of arrays;
//! - [`lvm2`]: LVM2 PVs written by lvm2's own tools on loop devices;
//! - [`ntfs`]: NTFS volumes made and read by ntfs-3g's tools;
//! - [`vmdkdelta`]: COWD and SESparse snapshot deltas and VMDK descriptors;
//! - [`vmfswriter`]: changes to scratch copies of the real VMFS fixtures,
//!   down to new folders and files on VMFS5;
//! - [`scriptmark`]: the unattended-mode markers (the same crate
//!   rescue-init prints them with).

pub mod btrfsimg;
pub mod fixtures;
pub mod gptdisk;
pub mod lvm2;
pub mod mdwriter;
pub mod ntfs;
pub mod tempdir;
pub mod vmdkdelta;
pub mod vmfswriter;

pub use fixtures::{fixture, workspace_root};
pub use scriptmark;
pub use tempdir::TempDir;
