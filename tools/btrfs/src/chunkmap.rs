//! The chunk map: every chunk of the filesystem, read from the chunk tree
//! whose nodes are found through the SYSTEM chunks of the superblock.
//! Each node is read from one of its copies on the devices at hand (the
//! next copy when one cannot be read or fails its checks).

use crate::chunk::{self, Chunk, CHUNK_ITEM_KEY, DEV_ITEM_KEY, FIRST_CHUNK_TREE_OBJECTID};
use crate::superblock::Super;
use crate::tree::{self, Expect, CHUNK_TREE_OBJECTID};
use blockdev::BlockDevice;
use std::collections::BTreeSet;

/// Nodes read at most: far more than any chunk tree has; a bound against
/// a corrupt tree that points around in circles.
const MAX_NODES: usize = 1 << 20;
/// The objectid of DEV_ITEM keys.
const DEV_ITEMS_OBJECTID: u64 = 1;

/// The devices of one filesystem that can be read, by devid.
#[derive(Clone, Copy)]
pub struct Devices<'a> {
    pub list: &'a [(u64, &'a dyn BlockDevice)],
}

impl<'a> Devices<'a> {
    pub fn get(&self, devid: u64) -> Option<&'a dyn BlockDevice> {
        self.list.iter().find(|d| d.0 == devid).map(|d| d.1)
    }
}

/// Every chunk, sorted by logical address, none overlapping.
#[derive(Clone, Debug, Default)]
pub struct ChunkMap {
    pub chunks: Vec<Chunk>,
    /// The devices the chunk tree lists (DEV_ITEMs).
    pub devids: Vec<u64>,
    /// Chunk tree nodes read.
    pub nodes_read: usize,
    /// Copies that could not be used (another one was), checksums not
    /// checked.
    pub notes: Vec<String>,
}

/// Finds the chunk holding `logical` in chunks sorted by logical address.
pub fn find(chunks: &[Chunk], logical: u64) -> Option<&Chunk> {
    let i = chunks.partition_point(|c| c.end() <= logical);
    chunks.get(i).filter(|c| c.logical <= logical)
}

/// Reads `len` bytes at `logical` through `chunks` from one copy: the
/// first whose devices are at hand, can be read and whose bytes `accept`
/// takes. Notes copies skipped when another was used.
fn read_logical(
    chunks: &[Chunk],
    devs: Devices<'_>,
    logical: u64,
    len: usize,
    accept: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    notes: &mut Vec<String>,
) -> Result<Vec<u8>, String> {
    let c = find(chunks, logical).ok_or_else(|| format!("logical {logical}: in no chunk"))?;
    let group = c.group_of(logical).ok_or_else(|| {
        format!(
            "logical {logical}: in a {} chunk with no stripes to map it",
            c.profile.name()
        )
    })?;
    let mut failed = Vec::new();
    for m in 0..group.len() {
        let mut buf = vec![0u8; len];
        let mut at = 0usize;
        let mut err = None;
        let mut first = None;
        while at < len {
            let l = logical + at as u64;
            let Some((copies, run)) = find(chunks, l).and_then(|c| c.copies(l)) else {
                err = Some(format!("logical {l}: in no mapped chunk"));
                break;
            };
            let Some(&(devid, phys)) = copies.get(m) else {
                err = Some(format!("logical {l}: no copy {}", m + 1));
                break;
            };
            first.get_or_insert((devid, phys));
            let n = (run.min((len - at) as u64)) as usize;
            let Some(dev) = devs.get(devid) else {
                err = Some(format!("on devid {devid}, which is not at hand"));
                break;
            };
            if let Err(e) = crate::read_into(dev, phys, &mut buf[at..at + n]) {
                err = Some(e);
                break;
            }
            at += n;
        }
        let r = match err {
            Some(e) => Err(e),
            None => accept(&buf),
        };
        let (devid, phys) = first.unwrap_or((0, 0));
        match r {
            Ok(()) => {
                if !failed.is_empty() {
                    notes.push(format!(
                        "logical {logical}: {}; copy {} (devid {devid} byte {phys}) used",
                        failed.join("; "),
                        m + 1
                    ));
                }
                return Ok(buf);
            }
            Err(e) => failed.push(format!("copy {} (devid {devid} byte {phys}): {e}", m + 1)),
        }
    }
    Err(format!("logical {logical}: {}", failed.join("; ")))
}

impl ChunkMap {
    /// Reads the chunk tree of the filesystem whose superblock is `sb`.
    pub fn read(sb: &Super, devs: Devices<'_>) -> Result<ChunkMap, String> {
        let mut sys = chunk::parse_sys_chunk_array(&sb.sys_chunk_array)?;
        sys.sort_by_key(|c| c.logical);
        check_overlaps(&sys, "sys_chunk_array")?;
        let mut map = ChunkMap::default();
        if sb.csum_type != 0 {
            map.notes.push(format!(
                "tree node checksums are {}: not checked here (fsid, bytenr, level and generation are)",
                crate::superblock::csum_name(sb.csum_type)
            ));
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![Expect {
            logical: sb.chunk_root,
            level: sb.chunk_root_level,
            generation: Some(sb.chunk_root_generation),
            owner: CHUNK_TREE_OBJECTID,
        }];
        let nodesize = sb.nodesize as usize;
        while let Some(x) = stack.pop() {
            if !seen.insert(x.logical) {
                return Err(format!(
                    "chunk tree: node at logical {} is referenced twice",
                    x.logical
                ));
            }
            if seen.len() > MAX_NODES {
                return Err(format!("chunk tree: more than {MAX_NODES} nodes"));
            }
            let mut accept = |b: &[u8]| tree::check(b, sb, &x).map(|_| ());
            let buf = read_logical(&sys, devs, x.logical, nodesize, &mut accept, &mut map.notes)
                .map_err(|e| format!("chunk tree node at level {}: {e}", x.level))?;
            map.nodes_read += 1;
            let node = tree::check(&buf, sb, &x)?;
            if node.level > 0 {
                for i in (0..node.nritems).rev() {
                    let p = node.key_ptr(i, x.logical)?;
                    stack.push(Expect {
                        logical: p.blockptr,
                        level: node.level - 1,
                        generation: Some(p.generation),
                        owner: CHUNK_TREE_OBJECTID,
                    });
                }
                continue;
            }
            for i in 0..node.nritems {
                let ((objectid, kind, offset), data) = node.item(i, x.logical)?;
                let what = format!("leaf at logical {}: item {i}", x.logical);
                if kind == CHUNK_ITEM_KEY && objectid == FIRST_CHUNK_TREE_OBJECTID {
                    let c = Chunk::parse(data, offset, &what)?;
                    if Chunk::item_size(c.stripes.len()) > data.len() {
                        return Err(format!(
                            "{what}: size {}: expected at least {} for {} stripes",
                            data.len(),
                            Chunk::item_size(c.stripes.len()),
                            c.stripes.len()
                        ));
                    }
                    map.chunks.push(c);
                } else if kind == DEV_ITEM_KEY && objectid == DEV_ITEMS_OBJECTID {
                    map.devids.push(offset);
                }
            }
        }
        map.chunks.sort_by_key(|c| c.logical);
        check_overlaps(&map.chunks, "chunk tree")?;
        if map.chunks.is_empty() {
            return Err("chunk tree: expected chunks, found none".into());
        }
        map.devids.sort_unstable();
        map.devids.dedup();
        Ok(map)
    }

    pub fn find(&self, logical: u64) -> Option<&Chunk> {
        find(&self.chunks, logical)
    }

    /// Reads `len` bytes at `logical` from the first good copy (no checks
    /// beyond the read itself).
    pub fn read_logical(
        &self,
        devs: Devices<'_>,
        logical: u64,
        len: usize,
    ) -> Result<Vec<u8>, String> {
        read_logical(
            &self.chunks,
            devs,
            logical,
            len,
            &mut |_| Ok(()),
            &mut Vec::new(),
        )
    }
}

fn check_overlaps(chunks: &[Chunk], what: &str) -> Result<(), String> {
    for w in chunks.windows(2) {
        if w[1].logical < w[0].end() {
            return Err(format!(
                "{what}: chunk at logical {} (length {}) overlaps the chunk at logical {}",
                w[0].logical, w[0].length, w[1].logical
            ));
        }
    }
    Ok(())
}
