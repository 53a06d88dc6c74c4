//! Free space: the file block bitmap `.fbb.sf`, counted per cluster.
//!
//! `.fbb.sf` is a resource file with no payload (a file block's address
//! is its place on the volume); what it holds is one metadata record per
//! cluster of blocks with the cluster's total and free counts. The header at
//! file offset 0 is the one of every resource file ([`crate::volume::ResFile`]).
//!
//! **VMFS3/5.** Cluster `c` (group `g = c / clustersPerGroup`, `r = c %
//! clustersPerGroup`) has a 1024-byte header at `firstClusterGroupOffset + g
//! * clusterGroupSize + r * 1024`; its second half (+0x200) is:
//!
//! | off   | size | field |
//! |-------|------|-------|
//! | 0x200 | 4    | cluster number (= `c`) |
//! | 0x204 | 4    | blocks in this cluster (`resourcesPerCluster`, fewer in the last) |
//! | 0x208 | 4    | free blocks |
//! | 0x20C | 4    | first free block |
//! | 0x210 | ...  | bitmap, one bit per block, set = free |
//!
//! **VMFS6.** The header's parent part describes large file blocks (LFBs,
//! `resourcesPerCluster` LFBs a cluster); at `childMetaOffset` (+0x34)
//! follows a second header for the small file blocks (SFBs), whose cluster
//! is one LFB's worth of SFBs (`2^sfbToLfbShift`). Cluster headers are
//! `2 x mdAlignment` bytes with the record in the second half:
//!
//! | off (from the record)  | size | field |
//! |------|------|-------|
//! | 0x10 | 4    | signature "dmcr" (0x72636d64) |
//! | 0x18 | 4    | cluster number |
//! | 0x20 | 2    | resources in this cluster |
//! | 0x22 | 2    | free resources |
//!
//! LFB cluster headers sit at the start of each parent cluster group as on
//! VMFS5. Each LFB's parent resource (`resourceSize` = `2 x mdAlignment`
//! bytes, after the group's cluster headers) is the header of its SFB
//! cluster, valid (signature and number) once ESXi has split that LFB into
//! SFBs. A split LFB counts as allocated among the LFBs, so free space is
//! the free SFBs of split LFBs plus the free LFBs. Measured on the ESXi-
//! written fixtures: this equals the volume's blocks minus those its files
//! use (tests/space.rs); vmfs6-tools' `df` counts only the LFB records.

use crate::error::{Error, Result};
use crate::inode::{Inode, FBB_ADDR};
use crate::volume::{ResFile, Volume};
use serde::Serialize;

/// Cluster header size on VMFS3/5, its record at half of it.
const V5_HEADER: u64 = 1024;
/// "dmcr" as a little-endian u32: the VMFS6 cluster record signature.
const V6_RECORD_SIGNATURE: u32 = 0x7263_6d64;
/// More clusters than this means a corrupt header (a 64 TiB volume of 1 MiB
/// blocks has 335,545 clusters of 200 blocks).
const MAX_CLUSTERS: u64 = 1 << 22;

/// How much of a volume's file block space is free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Space {
    /// File block size (VMFS6: the small file block).
    pub block_size: u64,
    /// Blocks the bitmap covers, and bytes.
    pub total_blocks: u64,
    pub total_bytes: u64,
    /// Free bytes (VMFS6: free SFBs plus free whole LFBs).
    pub free_bytes: u64,
}

/// Reads `.fbb.sf` of `vol` and counts its free blocks.
pub fn free_space(vol: &Volume) -> Result<Space> {
    let ino = vol.inode(FBB_ADDR)?;
    let read = |off: u64, len: usize, what: &str| -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        let n = vol.read_inode(&ino, &mut b, off, 1)?;
        if n < len {
            return Err(Error::corrupt(format!(
                ".fbb.sf: {what} at offset {off:#x} is past the end of the file ({} bytes)",
                ino.size
            )));
        }
        Ok(b)
    };
    let hdr = read(0, 0x60, "header")?;
    let half = if vol.sb.is_vmfs6() {
        vol.sb.md_alignment as u64
    } else {
        V5_HEADER / 2
    };
    let h = header(".fbb.sf", &ino, &hdr, 2 * half)?;
    let bs = vol.sb.block_size;
    if !vol.sb.is_vmfs6() {
        let (total, free) = count_v5(&h, &read)?;
        return Ok(Space {
            block_size: bs,
            total_blocks: total,
            total_bytes: total.saturating_mul(bs),
            free_bytes: free.saturating_mul(bs),
        });
    }
    let child_at = le::Fields::new(&hdr, ".fbb.sf header").u32(0x34)? as usize;
    let child_hdr = read(child_at as u64, 0x40, "SFB header")?;
    let sfb = header(".fbb.sf SFB", &ino, &child_hdr, 2 * half)?;
    let sfb_per_lfb = 1u64 << vol.sb.sfb_to_lfb_shift;
    if sfb.per_cluster != sfb_per_lfb {
        return Err(Error::corrupt(format!(
            ".fbb.sf SFB header at {child_at:#x}: {} SFBs per cluster, the descriptor says {sfb_per_lfb} per LFB",
            sfb.per_cluster
        )));
    }
    let (free_lfbs, free_sfbs) = count_v6(&h, half, sfb_per_lfb, &read)?;
    let lfb_size = sfb_per_lfb.saturating_mul(bs);
    Ok(Space {
        block_size: bs,
        total_blocks: sfb.total,
        total_bytes: sfb.total.saturating_mul(bs),
        free_bytes: free_sfbs
            .saturating_mul(bs)
            .saturating_add(free_lfbs.saturating_mul(lfb_size)),
    })
}

/// The resource file header at the start of `hdr`, checked for what
/// counting needs: non-zero cluster sizes, a bounded number of clusters.
fn header(name: &'static str, ino: &Inode, hdr: &[u8], header_size: u64) -> Result<ResFile> {
    let h = ResFile::parse_fields(name, ino.clone(), hdr, header_size)?;
    if h.per_cluster == 0 || h.clusters_per_group == 0 {
        return Err(Error::corrupt(format!(
            "{name} header: {} resources per cluster, {} clusters per group (zero)",
            h.per_cluster, h.clusters_per_group
        )));
    }
    if clusters(&h) > MAX_CLUSTERS {
        return Err(Error::corrupt(format!(
            "{name} header: {} resources of {} per cluster is over {MAX_CLUSTERS} clusters",
            h.total, h.per_cluster
        )));
    }
    Ok(h)
}

fn clusters(h: &ResFile) -> u64 {
    h.total.div_ceil(h.per_cluster)
}

type Reader<'a> = dyn Fn(u64, usize, &str) -> Result<Vec<u8>> + 'a;

/// Checks a cluster's counts: the number it says it is, no more blocks than
/// a cluster holds, no more free than it has. Returns (total, free).
fn checked(
    c: u64,
    at: u64,
    id: u64,
    total: u64,
    free: u64,
    per_cluster: u64,
) -> Result<(u64, u64)> {
    if id != c || total > per_cluster || free > total {
        return Err(Error::corrupt(format!(
            ".fbb.sf cluster record at offset {at:#x}: number {id} (expected {c}), {total} blocks \
             (at most {per_cluster}), {free} free"
        )));
    }
    Ok((total, free))
}

/// VMFS3/5: (total blocks, free blocks) summed over the cluster records.
fn count_v5(h: &ResFile, read: &Reader<'_>) -> Result<(u64, u64)> {
    let (mut total, mut free) = (0u64, 0u64);
    for c in 0..clusters(h) {
        let at = h
            .cluster_header(c)
            .and_then(|o| o.checked_add(V5_HEADER / 2))
            .ok_or_else(|| Error::corrupt(format!(".fbb.sf: offset of cluster {c} overflows")))?;
        let b = read(at, 16, "cluster record")?;
        let l = le::Fields::new(&b, ".fbb.sf cluster record");
        let (t, f) = checked(
            c,
            at,
            l.u32(0)? as u64,
            l.u32(4)? as u64,
            l.u32(8)? as u64,
            h.per_cluster,
        )?;
        total += t;
        free += f;
    }
    if total != h.total {
        return Err(Error::corrupt(format!(
            ".fbb.sf: cluster records add up to {total} blocks, the header says {}",
            h.total
        )));
    }
    Ok((total, free))
}

/// VMFS6: (free LFBs, free SFBs of split LFBs). `half` is mdAlignment:
/// cluster headers are two of it, the record in the second.
fn count_v6(h: &ResFile, half: u64, sfb_per_lfb: u64, read: &Reader<'_>) -> Result<(u64, u64)> {
    let record = |at: u64| -> Result<Option<(u64, u64, u64)>> {
        let b = read(at.saturating_add(0x10), 0x14, "cluster record")?;
        let l = le::Fields::new(&b, ".fbb.sf cluster record");
        if l.u32(0)? != V6_RECORD_SIGNATURE {
            return Ok(None);
        }
        Ok(Some((
            l.u32(8)? as u64,
            l.u16(0x10)? as u64,
            l.u16(0x12)? as u64,
        )))
    };
    let (mut lfbs, mut free_lfbs) = (0u64, 0u64);
    for c in 0..clusters(h) {
        let at = h
            .cluster_header(c)
            .and_then(|o| o.checked_add(half))
            .ok_or_else(|| {
                Error::corrupt(format!(".fbb.sf: offset of LFB cluster {c} overflows"))
            })?;
        let (id, t, f) = record(at)?.ok_or_else(|| {
            Error::corrupt(format!(
                ".fbb.sf LFB cluster record at offset {at:#x}: no \"dmcr\" signature"
            ))
        })?;
        let (t, f) = checked(c, at, id, t, f, h.per_cluster)?;
        lfbs += t;
        free_lfbs += f;
    }
    if lfbs != h.total {
        return Err(Error::corrupt(format!(
            ".fbb.sf: LFB cluster records add up to {lfbs} LFBs, the header says {}",
            h.total
        )));
    }
    // LFB i's resource (resource i % per_cluster of cluster
    // i / per_cluster) is the header of its SFB cluster.
    let mut free_sfbs = 0u64;
    for lfb in 0..h.total {
        let at = h
            .offset(lfb / h.per_cluster, lfb % h.per_cluster)?
            .checked_add(half)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    ".fbb.sf: offset of LFB {lfb}'s SFB record overflows"
                ))
            })?;
        // Not split into SFBs: free or allocated whole, as the LFB records
        // above counted it.
        let Some((id, t, f)) = record(at)? else {
            continue;
        };
        let (_, f) = checked(lfb, at, id, t, f, sfb_per_lfb)?;
        free_sfbs += f;
    }
    Ok((free_lfbs, free_sfbs))
}
