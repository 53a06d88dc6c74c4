//! An open VMFS volume: system files, address resolution, files and
//! directories.

use crate::dir::{self, DirEntry};
use crate::error::{Error, Result};
use crate::fs::{Superblock, CONFIG_DENSE_SBPC, FS_DESC_OFFSET};
use crate::inode::*;
use crate::lvm::{has_lvm_header, DevRange, LogicalVolume};
use blockdev::BlockDevice;
use serde::Serialize;
use std::sync::Mutex;

/// How deep reads may nest: file -> .sbc.sf/.pbc.sf -> their own blocks.
/// Deeper means a resource file addresses itself (corrupt).
const MAX_DEPTH: u32 = 3;

/// A resource (cluster) file: .fdc.sf, .sbc.sf, .pbc.sf, .pb2.sf.
///
/// Header at file offset 0 (u32 each):
///
/// | off  | field |
/// |------|-------|
/// | 0x00 | resourcesPerCluster |
/// | 0x04 | clustersPerGroup |
/// | 0x08 | firstClusterGroupOffset |
/// | 0x0C | resourceSize |
/// | 0x10 | clusterGroupSize |
/// | 0x14 | numResourcesLo |
/// | 0x18 | numClusterGroups |
/// | 0x1C | numResourcesHi |
/// | 0x20 | signature (VMFS6 "rfmd" 0x72666D64) |
///
/// A cluster group is `clustersPerGroup` cluster headers (1024 bytes on
/// VMFS3/5, 2 x mdAlignment on VMFS6) followed by the resources of its
/// clusters, cluster after cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ResFile {
    pub name: &'static str,
    #[serde(skip)]
    pub inode: Inode,
    pub per_cluster: u64,
    pub clusters_per_group: u64,
    pub first_group: u64,
    pub res_size: u64,
    pub group_size: u64,
    pub groups: u64,
    pub total: u64,
    pub header_size: u64,
}

impl ResFile {
    fn parse(name: &'static str, inode: Inode, hdr: &[u8], header_size: u64) -> Result<ResFile> {
        let r = Self::parse_fields(name, inode, hdr, header_size)?;
        if r.per_cluster == 0 || r.clusters_per_group == 0 || r.res_size == 0 || r.group_size == 0 {
            return Err(Error::corrupt(format!(
                "{name} resource header: zero field (per cluster {}, clusters/group {}, size {}, group size {})",
                r.per_cluster, r.clusters_per_group, r.res_size, r.group_size
            )));
        }
        Ok(r)
    }

    /// The header's fields, unchecked: also for `.fbb.sf`, a bitmap whose
    /// resources have no size on VMFS3/5 (callers check what they use).
    pub(crate) fn parse_fields(
        name: &'static str,
        inode: Inode,
        hdr: &[u8],
        header_size: u64,
    ) -> Result<ResFile> {
        let what = format!("{name} resource header");
        let h = le::Fields::new(hdr, &what);
        Ok(ResFile {
            name,
            per_cluster: h.u32(0)? as u64,
            clusters_per_group: h.u32(4)? as u64,
            first_group: h.u32(8)? as u64,
            res_size: h.u32(0xC)? as u64,
            group_size: h.u32(0x10)? as u64,
            total: h.u32(0x14)? as u64 | (h.u32(0x1C)? as u64) << 32,
            groups: h.u32(0x18)? as u64,
            header_size,
            inode,
        })
    }

    /// File offset of cluster `c`'s header (its metadata record is in the
    /// second half).
    pub(crate) fn cluster_header(&self, c: u64) -> Option<u64> {
        let (g, r) = (c / self.clusters_per_group, c % self.clusters_per_group);
        self.first_group
            .checked_add(g.checked_mul(self.group_size)?)?
            .checked_add(r.checked_mul(self.header_size)?)
    }

    /// File offset of resource (`cluster`, `res`).
    pub fn offset(&self, cluster: u64, res: u64) -> Result<u64> {
        if res >= self.per_cluster
            || cluster >= self.clusters_per_group.saturating_mul(self.groups.max(1))
        {
            return Err(Error::corrupt(format!(
                "{}: resource c{cluster} r{res} out of range ({} groups x {} clusters x {} resources)",
                self.name, self.groups, self.clusters_per_group, self.per_cluster
            )));
        }
        let (g, c) = (
            cluster / self.clusters_per_group,
            cluster % self.clusters_per_group,
        );
        let off = (|| {
            self.first_group
                .checked_add(g.checked_mul(self.group_size)?)?
                .checked_add(self.clusters_per_group.checked_mul(self.header_size)?)?
                .checked_add(
                    c.checked_mul(self.per_cluster)?
                        .checked_mul(self.res_size)?,
                )?
                .checked_add(res.checked_mul(self.res_size)?)
        })()
        .ok_or_else(|| {
            Error::corrupt(format!(
                "{}: offset of c{cluster} r{res} overflows",
                self.name
            ))
        })?;
        Ok(off)
    }
}

/// Where a run of file bytes comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Piece {
    /// Not allocated (thin) or to-be-zeroed: reads as zeros.
    Zero,
    /// Volume bytes at this offset.
    Volume { offset: u64 },
    /// Bytes inside the FD (resident data) from this data-area offset.
    Resident { offset: u64 },
}

/// File metadata.
#[derive(Clone, Debug, Serialize)]
pub struct Stat {
    pub addr: u32,
    pub file_type: FileType,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub ctime: u32,
    pub atime: u32,
    pub block_size: u64,
    pub zla: u32,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Raw device mapping target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdm: Option<RdmTarget>,
}

/// Volume facts for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeInfo {
    pub vmfs_version: u8,
    pub major: u32,
    pub minor: u8,
    pub local: bool,
    pub label: String,
    pub uuid: String,
    pub block_size: u64,
    pub sub_block_size: u32,
    pub md_alignment: u32,
    pub capacity: u64,
    pub lvm: Option<LvmInfo>,
    pub devices: Vec<String>,
    pub segments: Vec<crate::lvm::Segment>,
    pub missing: Vec<(u64, u64)>,
    pub resources: Vec<ResFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LvmInfo {
    pub version: u32,
    pub volume_uuid: String,
    pub volume_name: String,
    pub volume_size: u64,
    pub num_devices: u32,
}

/// An open, read-only VMFS volume.
pub struct Volume {
    pub lv: LogicalVolume,
    pub sb: Superblock,
    pub layout: FdLayout,
    fdc: ResFile,
    sbc: Option<ResFile>,
    pbc: Option<ResFile>,
    pb2: Option<ResFile>,
    /// Small-file blocks per cluster (VMFS6 SFB addresses).
    sfb_per_cluster: u64,
    /// Pointers per pointer block.
    ptrs_per_pb: u64,
    /// Problems met while opening (a missing optional system file...).
    pub warnings: Vec<String>,
    pb_cache: Mutex<Vec<(u64, std::sync::Arc<Vec<u64>>)>>,
}

impl Volume {
    /// Opens a volume from its devices: one bare volume (no LVM header), or
    /// one or more LVM devices of the same volume in any order.
    pub fn from_devices(devs: Vec<Box<dyn BlockDevice>>) -> Result<Volume> {
        if devs.is_empty() {
            return Err(Error::NotFound("no device given".into()));
        }
        let lvm: Vec<bool> = devs.iter().map(|d| has_lvm_header(d.as_ref())).collect();
        let lv = if lvm.iter().all(|&x| x) {
            LogicalVolume::assemble(devs)?
        } else if devs.len() == 1 {
            LogicalVolume::bare(devs.into_iter().next().expect("one device"))
        } else {
            let names: Vec<&str> = devs
                .iter()
                .zip(&lvm)
                .filter(|(_, &l)| !l)
                .map(|(d, _)| d.name())
                .collect();
            return Err(Error::corrupt(format!(
                "several devices given but {} has no LVM header at 1 MiB",
                names.join(", ")
            )));
        };
        Self::from_lv(lv)
    }

    /// Opens the filesystem on an assembled logical volume.
    pub fn from_lv(lv: LogicalVolume) -> Result<Volume> {
        let mut d = vec![0u8; 0x200];
        lv.read(&mut d, FS_DESC_OFFSET, "FS descriptor")?;
        let sb = Superblock::parse(&d)?;
        let layout = FdLayout::of(&sb);
        let mut warnings = Vec::new();
        if let Some(h) = lv.lvm.first() {
            if h.num_devs as usize > lv.devices.len() {
                warnings.push(format!(
                    "volume spans {} devices, {} given; bytes on the others read as errors",
                    h.num_devs,
                    lv.devices.len()
                ));
            }
        }
        let ptrs_per_pb = if sb.is_vmfs6() {
            (1u64 << sb.ptr_block_shift) / 8
        } else {
            1024
        };
        // VMFS6 SFB addresses are (cluster, resource) with 2^sfbToLfbShift
        // SFBs per cluster (one cluster = one LFB: 512 SFBs of 1 MiB).
        let sfb_per_cluster = if sb.is_vmfs6() {
            1u64 << sb.sfb_to_lfb_shift
        } else {
            1
        };
        let header_size = if sb.is_vmfs6() {
            2 * sb.md_alignment as u64
        } else {
            1024
        };
        // Bootstrap: .fdc.sf's own FD sits in the first cluster group of
        // .fdc.sf, whose start is fixed relative to the volume.
        let cg = if sb.is_vmfs6() {
            (sb.md_alignment as u64 * 1024 + (4 << 20) - 1) / (1 << 20) * (1 << 20)
        } else {
            (4u64 << 20).div_ceil(sb.block_size) * sb.block_size
        };
        let fd_size = layout.fd_size as u64;
        let fdc_first =
            cg + sb.fdc_group_offset as u64 + sb.fdc_clusters_per_group as u64 * header_size;
        let boot_fd = |res: u64| fdc_first + res * fd_size;
        let mut vol = Volume {
            fdc: ResFile {
                name: ".fdc.sf",
                inode: Inode {
                    addr: 0,
                    generation: 0,
                    nlink: 0,
                    ftype: FileType::System,
                    flags: 0,
                    size: 0,
                    block_size: 0,
                    num_blocks: 0,
                    mtime: 0,
                    ctime: 0,
                    atime: 0,
                    uid: 0,
                    gid: 0,
                    mode: 0,
                    zla: 0,
                    ptrs: Vec::new(),
                    data: Vec::new(),
                },
                per_cluster: 1,
                clusters_per_group: 1,
                first_group: 0,
                res_size: 1,
                group_size: 1,
                groups: 1,
                total: 1,
                header_size,
            },
            lv,
            sb,
            layout,
            sbc: None,
            pbc: None,
            pb2: None,
            sfb_per_cluster,
            ptrs_per_pb,
            warnings,
            pb_cache: Mutex::new(Vec::new()),
        };
        // The system FDs sit in cluster 0 of .fdc.sf, at the bootstrap
        // location; read them there, because .fdc.sf itself may be
        // addressed through pointer blocks in .pbc.sf (large volumes).
        // .pb2.sf first: VMFS6 addresses .sbc.sf through it.
        for (name, addr) in [
            (".pb2.sf", PB2_ADDR),
            (".pbc.sf", PBC_ADDR),
            (".sbc.sf", SBC_ADDR),
        ] {
            let (_, res) = fd_cluster_resource(addr);
            let ino = match vol.read_fd_at(boot_fd(res), addr) {
                Ok(i) => Ok(i),
                // Without DENSE_SBPC, .pb2.sf's FD lives outside .fdc.sf at
                // the descriptor's pb2VolAddr.
                Err(e) if addr == PB2_ADDR && vol.sb.pb2_vol_addr != 0 => vol
                    .read_fd_at(vol.sb.pb2_vol_addr, vol.sb.pb2_fd_addr)
                    .map_err(|_| e),
                Err(e) => Err(e),
            };
            let rf = ino.and_then(|i| {
                if i.size == 0 {
                    Err(Error::corrupt(format!("{name} is empty")))
                } else {
                    vol.res_file(name, i, header_size)
                }
            });
            match rf {
                Ok(r) => match name {
                    ".sbc.sf" => vol.sbc = Some(r),
                    ".pbc.sf" => vol.pbc = Some(r),
                    _ => vol.pb2 = Some(r),
                },
                Err(e) => {
                    // VMFS3 has no .pb2.sf; VMFS6's .pbc.sf is a bare
                    // bitmap (no resources): both are expected.
                    let expected = (name == ".pb2.sf" && vol.sb.vmfs_version() == 3)
                        || (name == ".pbc.sf" && vol.sb.is_vmfs6());
                    if !expected {
                        vol.warnings.push(format!("{name} unusable: {e}"));
                    }
                }
            }
        }
        let (_, fdc_res) = fd_cluster_resource(FDC_ADDR);
        let fdc_inode = vol.read_fd_at(boot_fd(fdc_res), FDC_ADDR)?;
        vol.fdc = vol.res_file(".fdc.sf", fdc_inode, header_size)?;
        if vol.fdc.res_size < fd_size {
            return Err(Error::corrupt(format!(
                ".fdc.sf resource size {} is smaller than an FD ({fd_size})",
                vol.fdc.res_size
            )));
        }
        // The root must be readable for the volume to be of any use.
        let root = vol.inode(ROOT_ADDR).map_err(|e| {
            if vol.warnings.is_empty() {
                e
            } else {
                Error::corrupt(format!("root directory: {e} ({})", vol.warnings.join("; ")))
            }
        })?;
        if !root.ftype.is_dir() {
            return Err(Error::corrupt(format!(
                "root FD {ROOT_ADDR:#x} has type {:?}, not a directory",
                root.ftype
            )));
        }
        Ok(vol)
    }

    fn res_file(&self, name: &'static str, inode: Inode, header_size: u64) -> Result<ResFile> {
        let mut hdr = vec![0u8; 0x40];
        let n = self.read_inode(&inode, &mut hdr, 0, 1)?;
        if n < 0x24 {
            return Err(Error::corrupt(format!(
                "{name}: file too short for its header ({n} bytes)"
            )));
        }
        ResFile::parse(name, inode, &hdr, header_size)
    }

    fn read_fd_at(&self, vol_off: u64, addr: u32) -> Result<Inode> {
        let mut b = vec![0u8; self.layout.fd_size];
        self.lv.read(&mut b, vol_off, &format!("FD {addr:#010x}"))?;
        Inode::parse(&b, addr, &self.layout)
    }

    /// Reads the FD at `addr` (type 4 address) through .fdc.sf.
    pub fn inode(&self, addr: u32) -> Result<Inode> {
        if addr as u64 & 7 != ADDR_FD {
            return Err(Error::corrupt(format!("{addr:#010x} is not an FD address")));
        }
        let (c, r) = fd_cluster_resource(addr);
        let off = self.fdc.offset(c, r)?;
        let mut b = vec![0u8; self.layout.fd_size];
        let n = self.read_inode(&self.fdc.inode, &mut b, off, 1)?;
        if n < b.len() {
            return Err(Error::corrupt(format!(
                "FD {addr:#010x} at .fdc.sf offset {off:#x} is past the end of .fdc.sf"
            )));
        }
        Inode::parse(&b, addr, &self.layout)
    }

    /// Volume byte offset of the FD at `addr` (for damage reports and
    /// tests that corrupt metadata on purpose).
    pub fn fd_volume_offset(&self, addr: u32) -> Result<u64> {
        let (c, r) = fd_cluster_resource(addr);
        let off = self.fdc.offset(c, r)?;
        match self.map(&self.fdc.inode, off, 1)? {
            (Piece::Volume { offset }, _) => Ok(offset),
            _ => Err(Error::corrupt(format!(
                "FD {addr:#010x} is not stored on the volume"
            ))),
        }
    }

    /// Every valid FD found by scanning .fdc.sf (for finding files whose
    /// directories are lost): slots whose descAddr matches their address.
    pub fn scan_fds(&self) -> Vec<Inode> {
        let clusters = self.fdc.clusters_per_group.saturating_mul(self.fdc.groups);
        let mut out = Vec::new();
        for c in 0..clusters.min(1 << 16) {
            for r in 0..self.fdc.per_cluster.min(1 << 10) {
                let addr = ((r as u32) << 22) | ((c as u32) << 6) | ADDR_FD as u32;
                if let Ok(i) = self.inode(addr) {
                    out.push(i);
                }
            }
        }
        out
    }

    /// FDs no directory reaches from the root: `(FD, error)` pairs come
    /// back for directories that could not be read on the way.
    pub fn orphans(&self) -> (Vec<Inode>, Vec<String>) {
        let mut reached = std::collections::HashSet::new();
        let mut errors = Vec::new();
        let mut stack = vec![ROOT_ADDR];
        while let Some(a) = stack.pop() {
            if !reached.insert(a) {
                continue;
            }
            match self.inode(a) {
                Ok(i) if i.ftype.is_dir() => match self.dir_entries(&i) {
                    Ok(es) => stack.extend(es.iter().map(|e| e.addr)),
                    Err(e) => errors.push(format!("directory FD {a:#010x}: {e}")),
                },
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        let orphans = self
            .scan_fds()
            .into_iter()
            .filter(|i| !reached.contains(&i.addr))
            .collect();
        (orphans, errors)
    }

    /// Volume facts.
    pub fn info(&self) -> VolumeInfo {
        let mut resources = vec![self.fdc.clone()];
        resources.extend(self.sbc.iter().cloned());
        resources.extend(self.pbc.iter().cloned());
        resources.extend(self.pb2.iter().cloned());
        VolumeInfo {
            vmfs_version: self.sb.vmfs_version(),
            major: self.sb.major,
            minor: self.sb.minor,
            local: self.sb.is_local(),
            label: self.sb.label.clone(),
            uuid: self.sb.uuid.to_string(),
            block_size: self.sb.block_size,
            sub_block_size: self.sb.sub_block_size,
            md_alignment: self.sb.md_alignment,
            capacity: self.lv.size,
            lvm: self.lv.lvm.first().map(|h| LvmInfo {
                version: h.major,
                volume_uuid: h.lv_uuid.to_string(),
                volume_name: h.lv_name.clone(),
                volume_size: h.lv_size,
                num_devices: h.num_devs,
            }),
            devices: self
                .lv
                .devices
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
            segments: self.lv.segments.clone(),
            missing: self.lv.missing.clone(),
            resources,
        }
    }

    // ---- address resolution ------------------------------------------

    fn resource_for(&self, addr: u64) -> Result<(&ResFile, u64, u64)> {
        let t = addr & 7;
        let v6 = self.sb.is_vmfs6();
        let (cluster, res) = if v6 {
            ((addr >> 6) & 0xF_FFFF_FFFF, (addr >> 56) & 0xFF)
        } else {
            let mut r = (addr >> 28) & 0xF;
            if t == ADDR_SB && self.sb.config & CONFIG_DENSE_SBPC != 0 {
                r |= ((addr >> 3) & 3) << 4;
            }
            ((addr >> 6) & 0x3F_FFFF, r)
        };
        let file = match t {
            ADDR_SB => self.sbc.as_ref(),
            ADDR_PB => self.pbc.as_ref(),
            ADDR_PB2 => self.pb2.as_ref(),
            _ => None,
        }
        .ok_or_else(|| {
            Error::corrupt(format!(
                "address {addr:#x} (type {t}) needs a resource file this volume could not open"
            ))
        })?;
        Ok((file, cluster, res))
    }

    /// Resolves a data pointer: `(piece, bytes left in the block)`; `unit`
    /// is the pointer's block size from the FD.
    fn resolve_data(&self, ptr: u64, in_blk: u64, unit: u64, depth: u32) -> Result<(Piece, u64)> {
        let t = ptr & 7;
        let left = unit - in_blk;
        if ptr == 0 {
            return Ok((Piece::Zero, left));
        }
        let v6 = self.sb.is_vmfs6();
        let vol_at = |base: u64, blk_size: u64| -> Result<(Piece, u64)> {
            if in_blk >= blk_size {
                return Err(Error::corrupt(format!(
                    "pointer {ptr:#x}: FD block size {unit} exceeds the addressed block ({blk_size})"
                )));
            }
            let off = base
                .checked_add(in_blk)
                .filter(|&o| o < self.lv.size)
                .ok_or_else(|| {
                    Error::corrupt(format!(
                    "pointer {ptr:#x} addresses volume offset {base:#x}, past the volume end {:#x}",
                    self.lv.size
                ))
                })?;
            Ok((Piece::Volume { offset: off }, left.min(blk_size - in_blk)))
        };
        match t {
            ADDR_FB if !v6 => {
                if ptr & 0x20 != 0 {
                    return Ok((Piece::Zero, left));
                }
                let blk = (ptr >> 6) & 0x3FF_FFFF;
                vol_at(blk * self.sb.block_size, self.sb.block_size)
            }
            ADDR_FB => {
                if (ptr >> 7) & 0xFF != 0 {
                    return Ok((Piece::Zero, left));
                }
                let cluster = (ptr >> 15) & 0x7FFF_FFFF;
                let res = ptr >> 51;
                let blk = cluster * self.sfb_per_cluster + res;
                vol_at(blk.saturating_mul(self.sb.block_size), self.sb.block_size)
            }
            ADDR_LFB if v6 => {
                if (ptr >> 7) & 0xFF != 0 {
                    return Ok((Piece::Zero, left));
                }
                let n = (ptr >> 15) & 0x7FFF_FFFF;
                let lfb = self.sb.block_size << self.sb.sfb_to_lfb_shift;
                vol_at(n.saturating_mul(lfb), lfb)
            }
            ADDR_SB => {
                let (file, c, r) = self.resource_for(ptr)?;
                if in_blk >= file.res_size {
                    return Err(Error::corrupt(format!(
                        "sub-block pointer {ptr:#x}: FD block size {unit} exceeds the sub-block size {}",
                        file.res_size
                    )));
                }
                let foff = file.offset(c, r)? + in_blk;
                let (piece, n) = self.map(&file.inode, foff, depth + 1)?;
                Ok((piece, n.min(file.res_size - in_blk).min(left)))
            }
            _ => Err(Error::corrupt(format!(
                "pointer {ptr:#x} has address type {t}, not a data block type"
            ))),
        }
    }

    /// Reads the pointer block at `addr` (PB, PB2, SB or FB addressed).
    fn pointer_block(&self, addr: u64, depth: u32) -> Result<std::sync::Arc<Vec<u64>>> {
        if let Ok(c) = self.pb_cache.lock() {
            if let Some((_, v)) = c.iter().find(|(a, _)| *a == addr) {
                return Ok(v.clone());
            }
        }
        let width = if self.sb.is_vmfs6() { 8 } else { 4 };
        let len = (self.ptrs_per_pb * width) as usize;
        let mut buf = vec![0u8; len];
        let t = addr & 7;
        match t {
            ADDR_PB | ADDR_PB2 | ADDR_SB => {
                let (file, c, r) = self.resource_for(addr)?;
                if file.res_size < len as u64 {
                    return Err(Error::corrupt(format!(
                        "pointer block {addr:#x} in {}: resource size {} < {len}",
                        file.name, file.res_size
                    )));
                }
                let off = file.offset(c, r)?;
                let n = self.read_inode(&file.inode, &mut buf, off, depth + 1)?;
                if n < len {
                    return Err(Error::corrupt(format!(
                        "pointer block {addr:#x} at {} offset {off:#x} is past its end",
                        file.name
                    )));
                }
            }
            ADDR_FB | ADDR_LFB => {
                let (piece, n) = self.resolve_data(addr, 0, len as u64, depth + 1)?;
                match piece {
                    Piece::Volume { offset } if n >= len as u64 => {
                        self.lv
                            .read(&mut buf, offset, &format!("pointer block {addr:#x}"))?
                    }
                    Piece::Zero => {}
                    _ => {
                        return Err(Error::corrupt(format!(
                            "pointer block {addr:#x} unreadable"
                        )))
                    }
                }
            }
            _ => {
                return Err(Error::corrupt(format!(
                    "pointer {addr:#x} has address type {t}, not a pointer block type"
                )))
            }
        }
        let v: Vec<u64> = if width == 8 {
            buf.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        } else {
            buf.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64)
                .collect()
        };
        let v = std::sync::Arc::new(v);
        if let Ok(mut c) = self.pb_cache.lock() {
            if c.len() >= 16 {
                c.remove(0);
            }
            c.push((addr, v.clone()));
        }
        Ok(v)
    }

    /// Maps file offset `off` (< size) of `ino` to a piece and how many bytes
    /// from there it covers.
    pub fn map(&self, ino: &Inode, off: u64, depth: u32) -> Result<(Piece, u64)> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(format!(
                "FD {:#010x}: addressing nests deeper than {MAX_DEPTH} levels (a resource file addressing itself?)",
                ino.addr
            )));
        }
        let rest = ino.size.saturating_sub(off).max(1);
        if ino.zla == ZLA_RESIDENT {
            let len = (ino.data.len() as u64).min(ino.size);
            return Ok(if off < len {
                (Piece::Resident { offset: off }, len - off)
            } else {
                (Piece::Zero, rest)
            });
        }
        let unit = ino.block_size;
        if unit == 0 || unit > 1 << 40 {
            return Err(Error::corrupt(format!(
                "FD {:#010x}: blockSize {unit} out of range",
                ino.addr
            )));
        }
        let n = off / unit;
        let in_blk = off % unit;
        let p = self.ptrs_per_pb;
        let top = |idx: u64| -> Result<u64> {
            ino.ptrs.get(idx as usize).copied().ok_or_else(|| {
                Error::corrupt(format!(
                    "FD {:#010x}: offset {off:#x} needs pointer {idx}, past the {} in the FD (size {})",
                    ino.addr,
                    ino.ptrs.len(),
                    ino.size
                ))
            })
        };
        // Bytes from `off` to the end of a run of `blocks` blocks starting
        // at block index `first`: what a null pointer covers.
        let hole = |first: u64, blocks: u64| -> (Piece, u64) {
            let end = first.saturating_add(blocks).saturating_mul(unit);
            (Piece::Zero, end.saturating_sub(off).max(1))
        };
        let ptr = match ino.zla {
            ZLA_FB | ZLA_SB => top(n)?,
            ZLA_PB | ZLA_PB2 => {
                let pb = top(n / p)?;
                if pb == 0 {
                    return Ok(hole(n / p * p, p));
                }
                self.pointer_block(pb, depth)?[(n % p) as usize]
            }
            ZLA_DOUBLE => {
                let pp = p * p;
                let pb = top(n / pp)?;
                if pb == 0 {
                    return Ok(hole(n / pp * pp, pp));
                }
                let mid = self.pointer_block(pb, depth)?[((n / p) % p) as usize];
                if mid == 0 {
                    return Ok(hole(n / p * p, p));
                }
                self.pointer_block(mid, depth)?[(n % p) as usize]
            }
            z => {
                return Err(Error::Unsupported(format!(
                    "FD {:#010x}: zero-level address type {z}",
                    ino.addr
                )))
            }
        };
        self.resolve_data(ptr, in_blk, unit, depth)
    }

    /// Reads file bytes at `off`; returns how many (0 at or past the end).
    pub fn read_inode(&self, ino: &Inode, buf: &mut [u8], off: u64, depth: u32) -> Result<usize> {
        if off >= ino.size {
            return Ok(0);
        }
        let total = (buf.len() as u64).min(ino.size - off) as usize;
        let mut done = 0usize;
        while done < total {
            let pos = off + done as u64;
            let (piece, n) = self.map(ino, pos, depth)?;
            let n = (n.max(1)).min((total - done) as u64) as usize;
            let dst = &mut buf[done..done + n];
            match piece {
                Piece::Zero => dst.fill(0),
                Piece::Volume { offset } => self.lv.read(
                    dst,
                    offset,
                    &format!("data of FD {:#010x} at file offset {pos:#x}", ino.addr),
                )?,
                Piece::Resident { offset } => {
                    let s = offset as usize;
                    dst.copy_from_slice(&ino.data[s..s + n]);
                }
            }
            done += n;
        }
        Ok(total)
    }

    /// Runs of a file: `(file offset, length, piece)` with adjacent runs of
    /// one kind merged. Thin holes are skipped in one step per null pointer.
    pub fn pieces(&self, ino: &Inode) -> Result<Vec<(u64, u64, Piece)>> {
        let mut out: Vec<(u64, u64, Piece)> = Vec::new();
        let mut pos = 0u64;
        while pos < ino.size {
            let (piece, n) = self.map(ino, pos, 0)?;
            let n = n.max(1).min(ino.size - pos);
            if let Some(last) = out.last_mut() {
                let contiguous = match (last.2, piece) {
                    (Piece::Zero, Piece::Zero) => true,
                    (Piece::Volume { offset: a }, Piece::Volume { offset: b }) => a + last.1 == b,
                    (Piece::Resident { offset: a }, Piece::Resident { offset: b }) => {
                        a + last.1 == b
                    }
                    _ => false,
                };
                if contiguous {
                    last.1 += n;
                    pos += n;
                    continue;
                }
            }
            out.push((pos, n, piece));
            pos += n;
        }
        Ok(out)
    }

    /// Device ranges of a file's data, for matching against bad areas:
    /// `(file offset, device ranges)` per piece stored on the volume.
    pub fn device_extents(&self, ino: &Inode) -> Result<Vec<FileExtent>> {
        let mut out = Vec::new();
        for (off, len, piece) in self.pieces(ino)? {
            if let Piece::Volume { offset } = piece {
                let mut foff = off;
                for r in self.lv.map(offset, len)? {
                    out.push(FileExtent {
                        file_offset: foff,
                        device: r.dev,
                        device_name: self.lv.devices[r.dev].name().to_string(),
                        device_offset: r.offset,
                        len: r.len,
                    });
                    foff += r.len;
                }
            }
        }
        Ok(out)
    }

    /// Where volume bytes are on the devices.
    pub fn volume_to_devices(&self, off: u64, len: u64) -> Result<Vec<DevRange>> {
        self.lv.map(off, len)
    }

    // ---- paths --------------------------------------------------------

    /// Entries of the directory FD `ino`.
    pub fn dir_entries(&self, ino: &Inode) -> Result<Vec<DirEntry>> {
        if !ino.ftype.is_dir() {
            return Err(Error::NotADirectory(format!("FD {:#010x}", ino.addr)));
        }
        dir::read(self, ino)
    }

    /// Resolves a path ("/" or "" is the root; "." and ".." work). A path
    /// that starts `fd:ADDR` (hex FD address, as `scan` lists orphans)
    /// starts at that file descriptor instead of the root, so files no
    /// directory reaches can still be named: `fd:0x01000104/file42`. A name
    /// that really is `fd:...` in the root is `/fd:...`.
    pub fn lookup(&self, path: &str) -> Result<Inode> {
        let (mut cur, mut walked, rest) = match path.strip_prefix("fd:") {
            Some(fd) => {
                let (first, rest) = fd.split_once('/').unwrap_or((fd, ""));
                let hex = first.trim_start_matches("0x").trim_start_matches("0X");
                let addr = u32::from_str_radix(hex, 16).map_err(|_| {
                    Error::NotFound(format!(
                        "{path}: fd:ADDR takes a hexadecimal FD address, not {first:?}"
                    ))
                })?;
                (self.inode(addr)?, format!("fd:{addr:#010x}"), rest)
            }
            None => (self.inode(ROOT_ADDR)?, String::new(), path),
        };
        for comp in rest.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if !cur.ftype.is_dir() {
                return Err(Error::NotADirectory(if walked.is_empty() {
                    "/".into()
                } else {
                    walked
                }));
            }
            let entries = self.dir_entries(&cur)?;
            let e = entries
                .iter()
                .find(|e| e.name == comp)
                .ok_or_else(|| Error::NotFound(format!("{walked}/{comp}")))?;
            walked.push('/');
            walked.push_str(comp);
            cur = self.inode(e.addr)?;
        }
        Ok(cur)
    }

    /// Entries of the directory at `path`, without "." and "..".
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let ino = self.lookup(path)?;
        if !ino.ftype.is_dir() {
            return Err(Error::NotADirectory(path.to_string()));
        }
        Ok(self
            .dir_entries(&ino)?
            .into_iter()
            .filter(|e| e.name != "." && e.name != "..")
            .collect())
    }

    pub fn stat(&self, path: &str) -> Result<Stat> {
        let ino = self.lookup(path)?;
        self.stat_inode(&ino)
    }

    pub fn stat_inode(&self, ino: &Inode) -> Result<Stat> {
        let link = if ino.ftype == FileType::Symlink {
            Some(self.read_link_inode(ino)?)
        } else {
            None
        };
        let rdm = if ino.ftype == FileType::Rdm {
            RdmTarget::parse(&ino.data).ok()
        } else {
            None
        };
        Ok(Stat {
            addr: ino.addr,
            file_type: ino.ftype,
            size: ino.size,
            mode: ino.mode,
            uid: ino.uid,
            gid: ino.gid,
            nlink: ino.nlink,
            mtime: ino.mtime,
            ctime: ino.ctime,
            atime: ino.atime,
            block_size: ino.block_size,
            zla: ino.zla,
            link,
            rdm,
        })
    }

    fn read_link_inode(&self, ino: &Inode) -> Result<String> {
        if ino.size > 4096 {
            return Err(Error::corrupt(format!(
                "symlink FD {:#010x}: target length {} > 4096",
                ino.addr, ino.size
            )));
        }
        let mut b = vec![0u8; ino.size as usize];
        let n = self.read_inode(ino, &mut b, 0, 0)?;
        b.truncate(n);
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Target of the symlink at `path`.
    pub fn read_link(&self, path: &str) -> Result<String> {
        let ino = self.lookup(path)?;
        if ino.ftype != FileType::Symlink {
            return Err(Error::corrupt(format!("{path} is not a symlink")));
        }
        self.read_link_inode(&ino)
    }

    /// Opens a file for reading. RDM mapping files have no data on the
    /// volume: opening one is an error naming the mapped disk.
    pub fn open(&self, path: &str) -> Result<FileReader<'_>> {
        let ino = self.lookup(path)?;
        self.open_inode(ino)
    }

    pub fn open_inode(&self, ino: Inode) -> Result<FileReader<'_>> {
        match ino.ftype {
            FileType::Directory => Err(Error::corrupt(format!(
                "FD {:#010x} is a directory",
                ino.addr
            ))),
            FileType::Rdm => {
                let t = RdmTarget::parse(&ino.data)?;
                Err(Error::Unsupported(format!(
                    "raw device mapping to disk {} {} (id {}): its data is on that disk, not on the volume",
                    t.vendor, t.model, t.id
                )))
            }
            _ => Ok(FileReader { vol: self, ino }),
        }
    }
}

/// One run of a file's bytes on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileExtent {
    pub file_offset: u64,
    pub device: usize,
    pub device_name: String,
    pub device_offset: u64,
    pub len: u64,
}

/// Reads one file's bytes.
pub struct FileReader<'v> {
    vol: &'v Volume,
    ino: Inode,
}

impl FileReader<'_> {
    pub fn size(&self) -> u64 {
        self.ino.size
    }
    pub fn inode(&self) -> &Inode {
        &self.ino
    }
    /// Reads up to `buf.len()` bytes at `off`; 0 at the end.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.vol.read_inode(&self.ino, buf, off, 0)
    }
    /// Runs of the file (zero, volume, resident).
    pub fn pieces(&self) -> Result<Vec<(u64, u64, Piece)>> {
        self.vol.pieces(&self.ino)
    }
    /// Where the file's stored bytes are on the devices.
    pub fn device_extents(&self) -> Result<Vec<FileExtent>> {
        self.vol.device_extents(&self.ino)
    }
}
