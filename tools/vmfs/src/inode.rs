//! File descriptors (inodes) and block addresses.

use crate::error::{Error, Result};
use crate::fs::Superblock;
use serde::Serialize;

/// FD address of the root directory (cluster 0, resource 0).
pub const ROOT_ADDR: u32 = 0x0000_0004;
pub const FBB_ADDR: u32 = 0x0040_0004;
pub const FDC_ADDR: u32 = 0x0080_0004;
pub const PBC_ADDR: u32 = 0x00C0_0004;
pub const SBC_ADDR: u32 = 0x0100_0004;
pub const PB2_ADDR: u32 = 0x0180_0004;

/// Address types (low 3 bits of every address).
pub const ADDR_FB: u64 = 1;
pub const ADDR_SB: u64 = 2;
pub const ADDR_PB: u64 = 3;
pub const ADDR_FD: u64 = 4;
pub const ADDR_PB2: u64 = 5;
pub const ADDR_LFB: u64 = 7;

/// Zero-level address types: what the FD's pointer array means.
pub const ZLA_FB: u32 = 1;
pub const ZLA_SB: u32 = 2;
pub const ZLA_PB: u32 = 3;
pub const ZLA_PB2: u32 = 5;
pub const ZLA_DOUBLE: u32 = 4304;
pub const ZLA_RESIDENT: u32 = 4305;

/// File types (metadata +0x0C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Volume,
    Directory,
    File,
    Symlink,
    System,
    Rdm,
    Unknown(u32),
}

impl FileType {
    pub fn from_raw(v: u32) -> FileType {
        match v {
            1 => FileType::Volume,
            2 => FileType::Directory,
            3 => FileType::File,
            4 => FileType::Symlink,
            5 => FileType::System,
            6 => FileType::Rdm,
            o => FileType::Unknown(o),
        }
    }
    pub fn is_dir(self) -> bool {
        self == FileType::Directory
    }
    /// One letter for `ls -l`.
    pub fn letter(self) -> char {
        match self {
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::Rdm => 'r',
            FileType::System => 's',
            FileType::File => '-',
            _ => '?',
        }
    }
}

/// Cluster and resource of an FD address (same on all versions):
/// bits 6..21 cluster, bits 22..31 resource.
pub fn fd_cluster_resource(addr: u32) -> (u64, u64) {
    (((addr >> 6) & 0xFFFF) as u64, (addr >> 22) as u64)
}

/// A file descriptor, parsed.
///
/// VMFS3/5 FD (2048 bytes): 0x000 lock header (magic 0x10C00001), 0x200
/// metadata, 0x400 data area (1024 bytes: 256 u32 pointers or resident
/// data or an RDM mapping). VMFS6 FD (2 x mdAlignment): lock block, then
/// metadata (512 bytes) + data area to the end; the 64-bit pointer array
/// (320 entries) is aligned to the end of the FD.
///
/// Metadata (offsets from its start):
///
/// | off  | size | field |
/// |------|------|-------|
/// | 0x00 | 4 | descAddr (the FD's own address) |
/// | 0x04 | 4 | generation |
/// | 0x08 | 4 | linkCount |
/// | 0x0C | 4 | type (1 volume, 2 dir, 3 file, 4 symlink, 5 system, 6 RDM) |
/// | 0x10 | 4 | flags |
/// | 0x14 | 8 | length in bytes |
/// | 0x1C | 8 | blockSize (bytes per pointer-array unit) |
/// | 0x24 | 8 | numBlocks |
/// | 0x2C | 4 | mtime |
/// | 0x30 | 4 | ctime |
/// | 0x34 | 4 | atime |
/// | 0x38 | 4 | uid |
/// | 0x3C | 4 | gid |
/// | 0x40 | 4 | mode |
/// | 0x44 | 4 | zeroLevelAddrType |
#[derive(Clone, Debug)]
pub struct Inode {
    pub addr: u32,
    pub generation: u32,
    pub nlink: u32,
    pub ftype: FileType,
    pub flags: u32,
    pub size: u64,
    pub block_size: u64,
    pub num_blocks: u64,
    pub mtime: u32,
    pub ctime: u32,
    pub atime: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub zla: u32,
    /// The pointer array (u32 widened on VMFS3/5).
    pub ptrs: Vec<u64>,
    /// The data area (resident data, RDM mapping).
    pub data: Vec<u8>,
}

/// FD geometry of a volume.
#[derive(Clone, Copy, Debug)]
pub struct FdLayout {
    pub fd_size: usize,
    pub meta: usize,
    pub data: usize,
    pub ptrs: usize,
    pub nptrs: usize,
    pub wide: bool,
}

impl FdLayout {
    pub fn of(sb: &Superblock) -> FdLayout {
        if sb.is_vmfs6() {
            let a = sb.md_alignment as usize;
            // 320 pointers when mdAlignment is 4096; the array always ends
            // the FD and spans (mdAlignment - 512) * 5 / 7 bytes there.
            let nptrs = 320 * a / 4096;
            FdLayout {
                fd_size: 2 * a,
                meta: a,
                data: a + 512,
                ptrs: 2 * a - nptrs * 8,
                nptrs,
                wide: true,
            }
        } else {
            FdLayout {
                fd_size: 2048,
                meta: 0x200,
                data: 0x400,
                ptrs: 0x400,
                nptrs: 256,
                wide: false,
            }
        }
    }
}

impl Inode {
    /// Parses an FD read from disk; `addr` is the address it was read for.
    pub fn parse(buf: &[u8], addr: u32, lay: &FdLayout) -> Result<Inode> {
        let what = format!("FD {addr:#010x}");
        let b = le::Fields::new(buf, &what);
        let m = le::Fields::new(b.bytes(lay.meta, 0x90)?, &what);
        let desc = m.u32(0)?;
        if desc != addr {
            return Err(Error::corrupt(format!(
                "FD {addr:#010x}: descAddr at metadata+0x0 is {desc:#010x} (free or misplaced FD)"
            )));
        }
        let data = b.bytes(lay.data, lay.fd_size - lay.data)?.to_vec();
        let pb = b.bytes(lay.ptrs, lay.nptrs * if lay.wide { 8 } else { 4 })?;
        let ptrs = if lay.wide {
            pb.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        } else {
            pb.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64)
                .collect()
        };
        let mode = m.u32(0x40)?;
        let mut ftype = FileType::from_raw(m.u32(0xC)?);
        // A system file whose mode has the directory bit is a directory:
        // `.sdd.sf`, the system-file directory of VMFS5/6 volumes.
        if ftype == FileType::System && mode & 0o170000 == 0o040000 {
            ftype = FileType::Directory;
        }
        Ok(Inode {
            addr,
            generation: m.u32(4)?,
            nlink: m.u32(8)?,
            ftype,
            flags: m.u32(0x10)?,
            size: m.u64(0x14)?,
            block_size: m.u64(0x1C)?,
            num_blocks: m.u64(0x24)?,
            mtime: m.u32(0x2C)?,
            ctime: m.u32(0x30)?,
            atime: m.u32(0x34)?,
            uid: m.u32(0x38)?,
            gid: m.u32(0x3C)?,
            mode,
            zla: m.u32(0x44)?,
            ptrs,
            data,
        })
    }
}

/// An RDM mapping file's target: the SCSI disk id stored in its data area
/// (type u8, len u8, lun u16, devtype u8, level u8, vendor[8], model[16],
/// rev[4], id[44]).
#[derive(Clone, Debug, Serialize)]
pub struct RdmTarget {
    pub id_type: u8,
    pub id_len: u8,
    pub lun: u16,
    pub vendor: String,
    pub model: String,
    pub revision: String,
    /// The first `id_len` bytes of the id field, as text.
    pub id: String,
}

impl RdmTarget {
    pub fn parse(data: &[u8]) -> Result<RdmTarget> {
        let d = le::Fields::new(data, "RDM mapping");
        let id_len = d.u8(1)?;
        let idb = d.bytes(0x22, 44)?;
        let n = (id_len as usize).min(44);
        Ok(RdmTarget {
            id_type: d.u8(0)?,
            id_len,
            lun: d.u16(2)?,
            vendor: d.cstr(6, 8)?.trim().to_string(),
            model: d.cstr(14, 16)?.trim().to_string(),
            revision: d.cstr(30, 4)?.trim().to_string(),
            id: String::from_utf8_lossy(&idb[..n]).into_owned(),
        })
    }
}
