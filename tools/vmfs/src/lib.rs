//! Read-only VMFS 3/5/6: the LVM layer (volumes spanning devices), the
//! filesystem descriptor, file descriptors, directories and file data
//! through every address type, for browsing and extracting datastores from
//! disks, partitions and images, including damaged ones.

pub mod cli;
pub mod damage;
pub mod datastores;
pub mod dir;
pub mod error;
pub mod extract;
pub mod files_hit;
pub mod fs;
pub mod inode;
pub mod lvm;
pub mod open;
pub mod readahead;
pub mod source;
pub mod space;
pub mod vmdkfiles;
pub mod volume;
pub mod walk;

pub use dir::DirEntry;
pub use error::{Error, Result, Uuid};
pub use fs::{detect, LvmSignature, Superblock, VmfsSignature};
pub use inode::{FileType, Inode, RdmTarget};
pub use lvm::{LogicalVolume, LvmHeader};
pub use space::{free_space, Space};
pub use volume::{FileExtent, FileReader, Piece, Stat, Volume, VolumeInfo};

#[cfg(test)]
mod tests;
