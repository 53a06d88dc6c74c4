//! Writers of ESX snapshot deltas for tests: COWD (vmfsSparse,
//! `-delta.vmdk`) and SESparse (`-sesparse.vmdk`) data files, and the text
//! descriptors that name them. Written from the formats as QEMU's
//! block/vmdk.c and the libvmdk notes describe them, not from the vmdk
//! crate's reader, so that the two check each other (and qemu-img checks
//! both).
//!
//! Each writer returns a [`DeltaImage`]: the file's bytes and where its
//! structures went, so that a test can damage one entry on purpose.

use le::{put_u32, put_u64};

const SECTOR: usize = 512;
/// Entries of a grain table, in both formats.
pub const GT_ENTRIES: u64 = 4096;

/// A delta file and where its structures are.
#[derive(Clone, Debug)]
pub struct DeltaImage {
    pub bytes: Vec<u8>,
    /// Byte offset of the grain directory.
    pub gd_offset: u64,
    /// Bytes per directory or table entry (COWD 4, SESparse 8).
    pub entry_size: u64,
    /// Each grain table written: `(directory index, byte offset)`.
    pub tables: Vec<(u64, u64)>,
    /// Each grain stored: `(virtual grain index, byte offset of its data)`.
    pub grains: Vec<(u64, u64)>,
}

impl DeltaImage {
    /// Byte offset of the table entry of virtual grain `grain` (None when
    /// no table covers it).
    pub fn table_entry(&self, grain: u64) -> Option<u64> {
        let (gi, ei) = (grain / GT_ENTRIES, grain % GT_ENTRIES);
        self.tables
            .iter()
            .find(|(i, _)| *i == gi)
            .map(|(_, t)| t + ei * self.entry_size)
    }

    /// Byte offset of directory entry `index`.
    pub fn directory_entry(&self, index: u64) -> u64 {
        self.gd_offset + index * self.entry_size
    }
}

fn sectors_for(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

/// A COWD delta of `capacity_sectors` with grains of `grain_sectors`.
/// `grains`: `(virtual grain index, Some(data))` stores `data` (at most a
/// grain, zero-padded) in the grain, in the order given (so neighbours in
/// the disk need not be neighbours in the file); `(index, None)` writes
/// the grain table covering the grain but leaves its entry 0 (not in this
/// delta). Grains not listed are not in the delta either.
///
/// Layout: the 2048-byte header (version 1, flags 3, the child variant
/// with an empty parent name), the directory at sector 4 (one entry per
/// 4096 grains of the capacity), then each table needed (32 sectors, in
/// order of directory index), then the grains.
pub fn cowd_delta(
    capacity_sectors: u32,
    grain_sectors: u32,
    grains: &[(u64, Option<Vec<u8>>)],
) -> DeltaImage {
    assert!(grain_sectors > 0, "grain size 0");
    let grain = u64::from(grain_sectors) * SECTOR as u64;
    let cover = u64::from(grain_sectors) * GT_ENTRIES;
    let gd_entries = u64::from(capacity_sectors).div_ceil(cover);
    let gd_sector = 4u64;
    let mut next = gd_sector + sectors_for(gd_entries * 4);
    let mut tables: Vec<(u64, u64)> = Vec::new();
    let mut dirs: Vec<u64> = grains.iter().map(|(g, _)| g / GT_ENTRIES).collect();
    dirs.sort_unstable();
    dirs.dedup();
    for gi in dirs {
        assert!(gi < gd_entries, "grain past the capacity");
        tables.push((gi, next * SECTOR as u64));
        next += GT_ENTRIES * 4 / SECTOR as u64;
    }
    let mut stored = Vec::new();
    for (g, data) in grains {
        if data.is_some() {
            stored.push((*g, next * SECTOR as u64));
            next += u64::from(grain_sectors);
        }
    }
    let mut b = vec![0u8; next as usize * SECTOR];
    b[0..4].copy_from_slice(b"COWD");
    put_u32(&mut b, 4, 1);
    put_u32(&mut b, 8, 3);
    put_u32(&mut b, 12, capacity_sectors);
    put_u32(&mut b, 16, grain_sectors);
    put_u32(&mut b, 20, gd_sector as u32);
    put_u32(&mut b, 24, gd_entries as u32);
    put_u32(&mut b, 28, next as u32);
    // Child variant: parentFileName[1024] at 32 (empty), parentGeneration
    // at 1056; generation 1060, name[60] 1064, description[512] 1124,
    // uncleanShutdown 1648.
    put_u32(&mut b, 1060, 1);
    b[1064..1064 + 7].copy_from_slice(b"testkit");
    for &(gi, t) in &tables {
        put_u32(
            &mut b,
            (gd_sector as usize * SECTOR) + gi as usize * 4,
            (t / 512) as u32,
        );
    }
    let image = DeltaImage {
        bytes: Vec::new(),
        gd_offset: gd_sector * SECTOR as u64,
        entry_size: 4,
        tables,
        grains: stored,
    };
    for (g, data) in grains {
        let Some(data) = data else { continue };
        assert!(data.len() as u64 <= grain, "grain data larger than a grain");
        let at = image.grains.iter().find(|(i, _)| i == g).expect("stored").1;
        let entry = image.table_entry(*g).expect("table") as usize;
        put_u32(&mut b, entry, (at / 512) as u32);
        b[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    DeltaImage { bytes: b, ..image }
}

/// A SESparse grain's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrainState {
    /// Stored (at most 4096 bytes, zero-padded).
    Data(Vec<u8>),
    /// Zeroed (table entry type 2).
    Zero,
    /// Unmapped by the guest (type 1; reads as zeros).
    Unmapped,
}

/// How [`sesparse_with`] lays a file out.
#[derive(Clone, Debug, Default)]
pub struct SeSparseOptions {
    /// Small areas right after the headers instead of ESXi's usual layout
    /// (volatile header at 1, directory at 4096, tables at 6144, free
    /// bitmap 8192, backmap 10240, grains 12288): files of a few
    /// sectors, for property tests.
    pub compact: bool,
    /// Cluster number of the first grain stored (the ones before are left
    /// as a hole of zeros): above 4095 it exercises the split encoding of
    /// the cluster number.
    pub first_cluster: u64,
    /// Sets `replay_journal` in the volatile header.
    pub dirty: bool,
}

/// A SESparse delta of `capacity_sectors` with the usual layout; see
/// [`sesparse_with`].
pub fn sesparse(capacity_sectors: u64, grains: &[(u64, GrainState)]) -> DeltaImage {
    sesparse_with(capacity_sectors, grains, &SeSparseOptions::default())
}

/// A SESparse delta: grains of 8 sectors, tables of 64 sectors (4096 u64
/// entries, 16 MiB each). `grains`: `(virtual grain index, state)`; grains
/// not listed are not in the delta. Tables are numbered in the order their
/// first grain is listed (so table numbers need not follow directory
/// order); stored grains take clusters from `first_cluster` on, in the
/// order listed. The journal, free bitmap and backmap areas are left
/// zero (no reader of a clean delta needs them).
pub fn sesparse_with(
    capacity_sectors: u64,
    grains: &[(u64, GrainState)],
    opts: &SeSparseOptions,
) -> DeltaImage {
    const GRAIN: u64 = 8 * SECTOR as u64;
    const GT_SECTORS: u64 = 64;
    let gd_entries = capacity_sectors.div_ceil(8 * GT_ENTRIES);
    let mut order: Vec<u64> = Vec::new();
    for (g, _) in grains {
        assert!(g * 8 < capacity_sectors, "grain past the capacity");
        if !order.contains(&(g / GT_ENTRIES)) {
            order.push(g / GT_ENTRIES);
        }
    }
    let stored_count = grains
        .iter()
        .filter(|(_, s)| matches!(s, GrainState::Data(_)))
        .count() as u64;
    // (offset, size) in sectors of: volatile header, journal header,
    // journal, directory, tables, free bitmap, backmap, grains.
    let gd_sectors = sectors_for(gd_entries * 8).max(1);
    let area: [(u64, u64); 8] = if opts.compact {
        let gd = 4;
        let gt = gd + gd_sectors;
        let bitmap = gt + order.len() as u64 * GT_SECTORS;
        [
            (1, 1),
            (2, 1),
            (3, 1),
            (gd, gd_sectors),
            (gt, order.len() as u64 * GT_SECTORS),
            (bitmap, 1),
            (bitmap + 1, 1),
            (bitmap + 2, (opts.first_cluster + stored_count) * 8),
        ]
    } else {
        assert!(
            gd_sectors <= 2048 && order.len() <= 32,
            "too big for the usual layout"
        );
        [
            (1, 1),
            (2, 2),
            (2048, 2048),
            (4096, 2048),
            (6144, 2048),
            (8192, 2048),
            (10240, 2048),
            (12288, (opts.first_cluster + stored_count) * 8),
        ]
    };
    let end = area[7].0 + area[7].1;
    let mut b = vec![0u8; end as usize * SECTOR];
    put_u64(&mut b, 0, 0xCAFE_BABE);
    put_u64(&mut b, 8, 0x0000_0002_0000_0001);
    put_u64(&mut b, 16, capacity_sectors);
    put_u64(&mut b, 24, 8);
    put_u64(&mut b, 32, GT_SECTORS);
    put_u64(&mut b, 40, 0);
    for (i, (o, s)) in area.iter().enumerate() {
        put_u64(&mut b, 80 + i * 16, *o);
        put_u64(&mut b, 88 + i * 16, *s);
    }
    let vol = area[0].0 as usize * SECTOR;
    put_u64(&mut b, vol, 0xCAFE_CAFE);
    put_u64(&mut b, vol + 8, order.len() as u64);
    put_u64(&mut b, vol + 16, 1);
    put_u64(&mut b, vol + 24, u64::from(opts.dirty));

    let gd_offset = area[3].0 * SECTOR as u64;
    let mut tables = Vec::new();
    for (n, &gi) in order.iter().enumerate() {
        put_u64(
            &mut b,
            (gd_offset + gi * 8) as usize,
            0x1000_0000_0000_0000 | n as u64,
        );
        tables.push((gi, (area[4].0 + n as u64 * GT_SECTORS) * SECTOR as u64));
    }
    let mut image = DeltaImage {
        bytes: Vec::new(),
        gd_offset,
        entry_size: 8,
        tables,
        grains: Vec::new(),
    };
    let grains_offset = area[7].0 * SECTOR as u64;
    let mut cluster = opts.first_cluster;
    for (g, state) in grains {
        let entry = image.table_entry(*g).expect("table") as usize;
        let value = match state {
            GrainState::Unmapped => 0x1000_0000_0000_0000,
            GrainState::Zero => 0x2000_0000_0000_0000,
            GrainState::Data(data) => {
                assert!(data.len() as u64 <= GRAIN, "grain data larger than a grain");
                assert!(cluster >> 60 == 0, "cluster number too large");
                let at = grains_offset + cluster * GRAIN;
                b[at as usize..at as usize + data.len()].copy_from_slice(data);
                image.grains.push((*g, at));
                let v = 0x3000_0000_0000_0000 | ((cluster & 0xFFF) << 48) | (cluster >> 12);
                cluster += 1;
                v
            }
        };
        put_u64(&mut b, entry, value);
    }
    image.bytes = b;
    image
}

/// A text descriptor: `createType`, CID, the parent (`(hint, its CID)`)
/// if any, and the extent lines (`RW 2048 VMFSSPARSE "x-delta.vmdk"`).
pub fn descriptor(
    create_type: &str,
    cid: u32,
    parent: Option<(&str, u32)>,
    extents: &[&str],
) -> String {
    let mut d = format!("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID={cid:08x}\n");
    match parent {
        Some((hint, pcid)) => d.push_str(&format!(
            "parentCID={pcid:08x}\nparentFileNameHint=\"{hint}\"\n"
        )),
        None => d.push_str("parentCID=ffffffff\n"),
    }
    d.push_str(&format!(
        "createType=\"{create_type}\"\n\n# Extent description\n"
    ));
    for e in extents {
        d.push_str(e);
        d.push('\n');
    }
    d.push_str("\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"14\"\n");
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cowd_layout_and_entries() {
        let img = cowd_delta(8192 + 100, 1, &[(4097, Some(vec![7u8; 512])), (3, None)]);
        let b = &img.bytes;
        assert_eq!(&b[0..4], b"COWD");
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 3);
        assert_eq!(img.tables.len(), 2);
        let e = img.table_entry(4097).unwrap() as usize;
        let sector = u32::from_le_bytes(b[e..e + 4].try_into().unwrap()) as usize;
        assert_eq!(&b[sector * 512..sector * 512 + 512], &[7u8; 512][..]);
        let e3 = img.table_entry(3).unwrap() as usize;
        assert_eq!(&b[e3..e3 + 4], &[0; 4]);
    }

    #[test]
    fn sesparse_splits_the_cluster_number() {
        let opts = SeSparseOptions {
            compact: true,
            first_cluster: 0x1234,
            dirty: false,
        };
        let img = sesparse_with(64, &[(2, GrainState::Data(vec![1]))], &opts);
        let e = img.table_entry(2).unwrap() as usize;
        let v = u64::from_le_bytes(img.bytes[e..e + 8].try_into().unwrap());
        assert_eq!(v, 0x3000_0000_0000_0000 | (0x234 << 48) | 0x1);
    }
}
