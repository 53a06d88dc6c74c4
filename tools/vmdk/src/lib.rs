//! VM disks read where they lie: VMDK descriptors and every extent format
//! ESXi and the hosted VMware products write (flat, hosted sparse,
//! streamOptimized, COWD, SESparse), and snapshot chains read as one
//! virtual disk, from a host folder or (through an adapter) a VMFS volume.
//! Read-only; nothing here writes.
//!
//! - [`descriptor`]: the text descriptor;
//! - [`extent`]: one extent's format behind [`extent::ExtentReader`];
//! - [`sparse`], [`stream`]: hosted sparse and streamOptimized extents;
//! - [`chain`]: levels and parents as one [`chain::VirtualDisk`];
//! - [`files`]: where the files are ([`files::Files`]);
//! - [`device`]: the virtual disk as a `BlockDevice`; [`parts`]: the
//!   partitions inside; [`export`]: to a raw image with a bad-area map;
//! - [`cli`]: `rescue vmdk`.

pub mod chain;
pub mod cli;
pub mod cowd;
pub mod descriptor;
pub mod device;
pub mod error;
pub mod export;
pub mod extent;
pub mod files;
mod grains;
pub mod parts;
pub mod sesparse;
pub mod sparse;
pub mod stream;

pub use chain::{Level, Located, VirtualDisk};
pub use descriptor::Descriptor;
pub use device::DiskDevice;
pub use error::{Error, Result};
pub use extent::{ExtentReader, Held, Run};
pub use files::{Files, HostDir};
