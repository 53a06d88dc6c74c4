//! Test-only VMFS image writer: modifies a scratch copy of a real
//! ESXi-written volume the way ESXi itself would (data written into the
//! blocks a file owns, to-be-zeroed flags cleared on first write, a file's
//! blocks moved around, a descriptor rewritten inside its sub-block), and
//! wraps volumes in GPT disks of 512- or 4096-byte sectors.
//!
//! It is a second, independent implementation of VMFS addressing: it never
//! asks the `vmfs` crate where anything is. It finds `.fdc.sf`'s own file
//! descriptor by scanning for its lock magic and address, and derives every
//! other location from the on-disk structures (documented below with their
//! offsets), so a shared misreading of the format shows up as a test failure
//! instead of agreeing with itself.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// LVM device header at partition offset 1 MiB (`LVM_DevMetadata`):
/// +0x00 magic, +0x04 majorVersion, +0xCA mdAlignment (LVM6).
const LVM_HEADER: u64 = 0x10_0000;
const LVM_MAGIC: u32 = 0xC001_D00D;
/// PE table: LVM3..5 at header + 0x80600, LVM6 at header + 0x80000 +
/// 2 x mdAlignment; 128-byte slots: +0x00 used (1), +0x09 pOffset (device
/// byte), +0x11 lOffset (volume byte), +0x19 length.
const PE_SLOT: u64 = 128;

/// FS descriptor at volume offset 2 MiB: +0x04 majorVersion (3/4, 14, 24),
/// +0x19 config (0x4 = dense sub-block addresses), +0xA1 fileBlockSize u64,
/// +0xD9 subBlockSize, +0x134 mdAlignment, +0x138 sfbToLfbShift u16,
/// +0x13E ptrBlockShift u16 (the last three VMFS6 only).
const FS_DESC: u64 = 0x20_0000;
const FS_MAGIC: u32 = 0x2FAB_F15E;

/// Every FD starts with an on-disk lock whose magic is this.
const LOCK_MAGIC: u32 = 0x10C0_0001;
/// FD address of `.fdc.sf` (cluster 0, resource 2) and of the root (0/0).
const FDC_ADDR: u32 = 0x0080_0004;
const ROOT_ADDR: u32 = 0x0000_0004;
/// How far into the volume `.fdc.sf`'s FD is looked for (it is in the
/// first cluster group, a few MiB in, on every version).
const FDC_SCAN: u64 = 32 << 20;

/// Zero-level address types (FD metadata +0x44).
const ZLA_FILE_BLOCK: u32 = 1;
const ZLA_SUB_BLOCK: u32 = 2;
const ZLA_POINTER_BLOCK: u32 = 3;
const ZLA_POINTER_BLOCK2: u32 = 5;
const ZLA_DOUBLE_INDIRECT: u32 = 4304;
const ZLA_RESIDENT: u32 = 4305;

/// A scratch file removed when the test is done with it.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch_path(tag: &str) -> PathBuf {
    let dir = crate::workspace_root().join("target/vmfs-written");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}-{}.img", std::process::id()))
}

/// A private, sparse copy of fixture `rel` (the decompressed cache stays
/// pristine).
pub fn scratch_copy(rel: &str, tag: &str) -> Scratch {
    let src = crate::fixtures::unpacked(&format!("vmfs/{rel}"), None)
        .unwrap_or_else(|| panic!("VMFS fixture {rel} is missing"));
    let dst = scratch_path(tag);
    let st = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&src)
        .arg(&dst)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp {} {}", src.display(), dst.display());
    Scratch(dst)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Device offset of volume bytes `vol..vol+len` (inside one PE).
fn dev_offset(runs: &[(u64, u64, u64)], vol: u64, len: u64) -> u64 {
    let &(l, p, _) = runs
        .iter()
        .find(|&&(l, _, n)| l <= vol && vol + len <= l + n)
        .unwrap_or_else(|| panic!("writer: volume {vol:#x}+{len:#x} not in one PE"));
    p + (vol - l)
}

fn read_at(file: &File, runs: &[(u64, u64, u64)], vol: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    file.read_exact_at(&mut b, dev_offset(runs, vol, len))
        .unwrap();
    b
}

/// A file descriptor as the writer needs it.
///
/// VMFS3/5 FD, 2048 bytes: lock at 0, metadata at 0x200, pointer array of
/// 256 u32 (or resident data) at 0x400. VMFS6 FD, 2 x mdAlignment bytes:
/// lock, metadata at mdAlignment, data area at mdAlignment + 0x200, and
/// 320 x mdAlignment/4096 u64 pointers ending the FD.
/// Metadata: +0x00 descAddr, +0x0C type, +0x14 length u64, +0x1C
/// blockSize u64, +0x44 zeroLevelAddrType.
#[derive(Clone, Debug, Default)]
pub struct Fd {
    pub addr: u32,
    /// Volume offset of the FD.
    pub at: u64,
    pub file_type: u32,
    pub size: u64,
    pub unit: u64,
    pub zla: u32,
    pub ptrs: Vec<u64>,
}

/// A resource file (`.fdc.sf`, `.sbc.sf`, `.pbc.sf`, `.pb2.sf`): header at
/// file offset 0: +0x00 resources per cluster, +0x04 clusters per group,
/// +0x08 offset of the first cluster group, +0x0C resource size, +0x10
/// cluster group size. A group is its cluster headers (1 KiB each on
/// VMFS3/5, 2 x mdAlignment on VMFS6) and then the resources, cluster by
/// cluster.
#[derive(Clone, Debug, Default)]
struct ResourceFile {
    fd: Fd,
    per_cluster: u64,
    clusters_per_group: u64,
    first_group: u64,
    res_size: u64,
    group_size: u64,
}

/// What a block address points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Null,
    /// `len` volume bytes at `vol`; `tbz`: reads as zeros until written.
    Blocks {
        vol: u64,
        len: u64,
        tbz: bool,
    },
    /// A sub-block, pointer block or PB2 resource (type 2, 3, 5).
    Resource {
        kind: u64,
        cluster: u64,
        res: u64,
    },
}

/// Where one data pointer of a file is stored and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// File block index it maps.
    pub index: u64,
    /// Volume offset of the pointer itself.
    pub at: u64,
    pub ptr: u64,
}

/// An open scratch volume.
pub struct Writer {
    file: File,
    /// (volume offset, device offset, length) runs; one run for a bare
    /// volume.
    runs: Vec<(u64, u64, u64)>,
    pub version: u8,
    pub block: u64,
    sub_block: u64,
    dense_sub_blocks: bool,
    pub sfb_per_lfb: u64,
    fd_size: u64,
    meta: u64,
    ptr_off: u64,
    nptrs: usize,
    wide: bool,
    pb_bytes: u64,
    group_header: u64,
    fdc: ResourceFile,
    sbc: Option<ResourceFile>,
    pbc: Option<ResourceFile>,
    pb2: Option<ResourceFile>,
}

impl Writer {
    pub fn open(path: &Path) -> Writer {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut hdr = vec![0u8; 0x10_0000];
        file.read_exact_at(&mut hdr, LVM_HEADER).unwrap();
        let runs = if u32_at(&hdr, 0) == LVM_MAGIC {
            let major = u32_at(&hdr, 4);
            let table = if major >= 6 {
                0x80000 + 2 * u32_at(&hdr, 0xCA) as usize
            } else {
                0x80600
            };
            let mut runs = Vec::new();
            for i in 0..64 {
                let s = table + i * PE_SLOT as usize;
                if hdr[s] == 1 {
                    runs.push((
                        u64_at(&hdr, s + 0x11),
                        u64_at(&hdr, s + 9),
                        u64_at(&hdr, s + 0x19),
                    ));
                }
            }
            runs
        } else {
            vec![(0, 0, file.metadata().unwrap().len())]
        };
        let d = read_at(&file, &runs, FS_DESC, 0x200);
        assert_eq!(u32_at(&d, 0), FS_MAGIC, "FS descriptor magic");
        let version = match u32_at(&d, 4) {
            3 | 4 => 3,
            14 => 5,
            24 => 6,
            m => panic!("writer: unknown VMFS major {m}"),
        };
        let md_alignment = u32_at(&d, 0x134) as u64;
        let v6 = version == 6;
        let nptrs = if v6 { 320 * md_alignment / 4096 } else { 256 };
        let mut w = Writer {
            file,
            runs,
            version,
            block: u64_at(&d, 0xA1),
            sub_block: u32_at(&d, 0xD9) as u64,
            dense_sub_blocks: u32_at(&d, 0x19) & 4 != 0,
            sfb_per_lfb: if v6 { 1 << u16_at(&d, 0x138) } else { 1 },
            fd_size: if v6 { 2 * md_alignment } else { 2048 },
            meta: if v6 { md_alignment } else { 0x200 },
            ptr_off: if v6 {
                2 * md_alignment - nptrs * 8
            } else {
                0x400
            },
            nptrs: nptrs as usize,
            wide: v6,
            pb_bytes: if v6 { 1 << u16_at(&d, 0x13E) } else { 4096 },
            group_header: if v6 { 2 * md_alignment } else { 1024 },
            // Found next, by scanning.
            fdc: ResourceFile::default(),
            sbc: None,
            pbc: None,
            pb2: None,
        };
        let fdc_at = w.find_fdc_fd();
        let fdc_fd = w.fd_at(fdc_at, FDC_ADDR);
        w.fdc = w.resource_file(fdc_fd);
        // System files' FD addresses: .pbc.sf 0x00C00004, .sbc.sf
        // 0x01000004, .pb2.sf 0x01800004 (cluster 0, resources 3, 4, 6).
        // .pb2.sf first: VMFS6 addresses .sbc.sf's blocks through it.
        w.pb2 = w.try_resource(0x0180_0004);
        w.pbc = w.try_resource(0x00C0_0004);
        w.sbc = w.try_resource(0x0100_0004);
        w
    }

    fn try_resource(&self, addr: u32) -> Option<ResourceFile> {
        let fd = self.try_fd(addr)?;
        let rf = self.resource_file(fd);
        (rf.per_cluster > 0 && rf.res_size > 0).then_some(rf)
    }

    fn resource_file(&self, fd: Fd) -> ResourceFile {
        let h = self.read_file(&fd, 0, 0x20);
        ResourceFile {
            per_cluster: u32_at(&h, 0) as u64,
            clusters_per_group: u32_at(&h, 4) as u64,
            first_group: u32_at(&h, 8) as u64,
            res_size: u32_at(&h, 0xC) as u64,
            group_size: u32_at(&h, 0x10) as u64,
            fd,
        }
    }

    /// The one FD in the first `FDC_SCAN` bytes with a lock magic and
    /// descAddr 0x00800004.
    fn find_fdc_fd(&self) -> u64 {
        let chunk = 1 << 20;
        let mut found = Vec::new();
        let mut pos = 0;
        while pos < FDC_SCAN {
            let b = self.read_vol(pos, chunk);
            for o in (0..chunk as usize).step_by(self.fd_size as usize) {
                if u32_at(&b, o) == LOCK_MAGIC && u32_at(&b, o + self.meta as usize) == FDC_ADDR {
                    found.push(pos + o as u64);
                }
            }
            pos += chunk;
        }
        assert_eq!(found.len(), 1, "writer: .fdc.sf FD candidates {found:x?}");
        found[0]
    }

    // ---- raw I/O ---------------------------------------------------

    fn dev_of(&self, vol: u64, len: u64) -> u64 {
        dev_offset(&self.runs, vol, len)
    }

    pub fn read_vol(&self, vol: u64, len: u64) -> Vec<u8> {
        read_at(&self.file, &self.runs, vol, len)
    }

    pub fn write_vol(&self, vol: u64, data: &[u8]) {
        self.file
            .write_all_at(data, self.dev_of(vol, data.len() as u64))
            .unwrap();
    }

    // ---- FDs and addresses ----------------------------------------

    fn fd_at(&self, at: u64, addr: u32) -> Fd {
        let b = self.read_vol(at, self.fd_size);
        let m = self.meta as usize;
        assert_eq!(u32_at(&b, 0), LOCK_MAGIC, "FD {addr:#x} lock magic");
        assert_eq!(u32_at(&b, m), addr, "FD at {at:#x}: descAddr");
        let p = self.ptr_off as usize;
        let ptrs = (0..self.nptrs)
            .map(|i| {
                if self.wide {
                    u64_at(&b, p + 8 * i)
                } else {
                    u32_at(&b, p + 4 * i) as u64
                }
            })
            .collect();
        Fd {
            addr,
            at,
            file_type: u32_at(&b, m + 0xC),
            size: u64_at(&b, m + 0x14),
            unit: u64_at(&b, m + 0x1C),
            zla: u32_at(&b, m + 0x44),
            ptrs,
        }
    }

    /// The FD at `addr` (bits 6..21 cluster, 22..31 resource) in .fdc.sf.
    pub fn fd(&self, addr: u32) -> Fd {
        self.try_fd(addr)
            .unwrap_or_else(|| panic!("writer: no FD {addr:#010x}"))
    }

    /// The FD at `addr`, if the slot holds one (lock magic, descAddr).
    fn try_fd(&self, addr: u32) -> Option<Fd> {
        let (cluster, res) = (((addr >> 6) & 0xFFFF) as u64, (addr >> 22) as u64);
        let off = self.resource_offset(&self.fdc, cluster, res);
        let at = self.file_vol(&self.fdc.fd, off);
        let b = self.read_vol(at, self.fd_size);
        (u32_at(&b, 0) == LOCK_MAGIC && u32_at(&b, self.meta as usize) == addr)
            .then(|| self.fd_at(at, addr))
    }

    fn resource_offset(&self, rf: &ResourceFile, cluster: u64, res: u64) -> u64 {
        assert!(res < rf.per_cluster, "resource {res} >= {}", rf.per_cluster);
        let (group, c) = (
            cluster / rf.clusters_per_group,
            cluster % rf.clusters_per_group,
        );
        rf.first_group
            + group * rf.group_size
            + rf.clusters_per_group * self.group_header
            + (c * rf.per_cluster + res) * rf.res_size
    }

    /// Decodes a block address (low 3 bits: type).
    ///
    /// VMFS3/5: file block (1) = block number in bits 6..31, bit 5
    /// to-be-zeroed; sub-block (2) and pointer block (3) = cluster in bits
    /// 6..27, resource in bits 28..31 (+ bits 3..4 as resource bits 4..5
    /// for sub-blocks on dense volumes). VMFS6: small file block (1) =
    /// cluster (bits 15..45) x sfbPerLfb + resource (bits 51..63), large
    /// file block (7) = LFB number in bits 15..45, TBZ bits 7..14 for
    /// both; resources (2, 3, 5) = cluster in bits 6..41, resource in bits
    /// 56..63.
    pub fn decode(&self, ptr: u64) -> Target {
        if ptr == 0 {
            return Target::Null;
        }
        let kind = ptr & 7;
        if self.version == 6 {
            let tbz = (ptr >> 7) & 0xFF != 0;
            match kind {
                1 => {
                    let n = ((ptr >> 15) & 0x7FFF_FFFF) * self.sfb_per_lfb + (ptr >> 51);
                    Target::Blocks {
                        vol: n * self.block,
                        len: self.block,
                        tbz,
                    }
                }
                7 => {
                    let lfb = self.block * self.sfb_per_lfb;
                    let n = (ptr >> 15) & 0x7FFF_FFFF;
                    Target::Blocks {
                        vol: n * lfb,
                        len: lfb,
                        tbz,
                    }
                }
                2 | 3 | 5 => Target::Resource {
                    kind,
                    cluster: (ptr >> 6) & 0xF_FFFF_FFFF,
                    res: (ptr >> 56) & 0xFF,
                },
                k => panic!("writer: VMFS6 address {ptr:#x} of type {k}"),
            }
        } else {
            match kind {
                1 => Target::Blocks {
                    vol: ((ptr >> 6) & 0x3FF_FFFF) * self.block,
                    len: self.block,
                    tbz: ptr & 0x20 != 0,
                },
                2 | 3 => {
                    let mut res = (ptr >> 28) & 0xF;
                    if kind == 2 && self.dense_sub_blocks {
                        res |= ((ptr >> 3) & 3) << 4;
                    }
                    Target::Resource {
                        kind,
                        cluster: (ptr >> 6) & 0x3F_FFFF,
                        res,
                    }
                }
                k => panic!("writer: VMFS3/5 address {ptr:#x} of type {k}"),
            }
        }
    }

    /// The same address with its to-be-zeroed flag(s) cleared.
    fn without_tbz(&self, ptr: u64) -> u64 {
        if self.version == 6 {
            ptr & !(0xFF << 7)
        } else {
            ptr & !0x20
        }
    }

    fn resource_file_of(&self, kind: u64) -> &ResourceFile {
        match kind {
            2 => self.sbc.as_ref(),
            3 => self.pbc.as_ref(),
            5 => self.pb2.as_ref(),
            _ => None,
        }
        .unwrap_or_else(|| panic!("writer: no resource file for address type {kind}"))
    }

    /// Volume offset of a resource (sub-block or pointer block).
    fn resource_vol(&self, kind: u64, cluster: u64, res: u64) -> u64 {
        let rf = self.resource_file_of(kind);
        let off = self.resource_offset(rf, cluster, res);
        assert!(
            off + rf.res_size <= rf.fd.size,
            "resource {cluster}/{res} of type {kind} past the end of its file"
        );
        self.file_vol(&rf.fd, off)
    }

    fn put_ptr(&self, at: u64, ptr: u64) {
        if self.wide {
            self.write_vol(at, &ptr.to_le_bytes());
        } else {
            self.write_vol(at, &u32::try_from(ptr).unwrap().to_le_bytes());
        }
    }

    fn ptr_width(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    /// The pointer block at `ptr`: (volume offset, its pointers).
    fn pointer_block(&self, ptr: u64) -> (u64, Vec<u64>) {
        let at = match self.decode(ptr) {
            // VMFS6 also keeps pointer blocks in (64 KiB) sub-blocks.
            Target::Resource {
                kind: kind @ (2 | 3 | 5),
                cluster,
                res,
            } => {
                if kind == 2 {
                    assert!(
                        self.sub_block >= self.pb_bytes,
                        "pointer block in a smaller sub-block"
                    );
                }
                self.resource_vol(kind, cluster, res)
            }
            // VMFS6 pointer blocks may also be plain file blocks.
            Target::Blocks {
                vol, tbz: false, ..
            } => vol,
            t => panic!("writer: {ptr:#x} is no pointer block ({t:?})"),
        };
        let b = self.read_vol(at, self.pb_bytes);
        let w = self.ptr_width() as usize;
        let ptrs = b
            .chunks_exact(w)
            .map(|c| {
                if w == 8 {
                    u64_at(c, 0)
                } else {
                    u32_at(c, 0) as u64
                }
            })
            .collect();
        (at, ptrs)
    }

    /// Where the pointer for file block `index` is stored; None in a hole
    /// above the data level (a missing pointer block).
    pub fn slot(&self, fd: &Fd, index: u64) -> Option<Slot> {
        let w = self.ptr_width();
        let per_pb = self.pb_bytes / w;
        let in_fd = |i: u64| -> Slot {
            Slot {
                index,
                at: fd.at + self.ptr_off + i * w,
                ptr: fd.ptrs[i as usize],
            }
        };
        let in_pb = |pb: u64, i: u64| -> Slot {
            let (at, ptrs) = self.pointer_block(pb);
            Slot {
                index,
                at: at + i * w,
                ptr: ptrs[i as usize],
            }
        };
        match fd.zla {
            ZLA_FILE_BLOCK | ZLA_SUB_BLOCK => Some(in_fd(index)),
            ZLA_POINTER_BLOCK | ZLA_POINTER_BLOCK2 => {
                let top = fd.ptrs[(index / per_pb) as usize];
                (top != 0).then(|| in_pb(top, index % per_pb))
            }
            ZLA_DOUBLE_INDIRECT => {
                let top = fd.ptrs[(index / (per_pb * per_pb)) as usize];
                if top == 0 {
                    return None;
                }
                let (_, mids) = self.pointer_block(top);
                let mid = mids[((index / per_pb) % per_pb) as usize];
                (mid != 0).then(|| in_pb(mid, index % per_pb))
            }
            z => panic!("writer: FD {:#x} has ZLA {z}", fd.addr),
        }
    }

    /// Every non-null data pointer of a file, in block order; null
    /// pointer blocks are skipped whole (thin files).
    pub fn data_slots(&self, fd: &Fd) -> Vec<Slot> {
        let w = self.ptr_width();
        let per_pb = self.pb_bytes / w;
        let blocks = fd.size.div_ceil(fd.unit);
        let mut out = Vec::new();
        // Pointers of one pointer block at `at`, block indices from `first`.
        let leaf = |at: u64, ptrs: &[u64], first: u64, out: &mut Vec<Slot>| {
            for (j, &ptr) in ptrs.iter().enumerate() {
                let index = first + j as u64;
                if index < blocks && ptr != 0 {
                    out.push(Slot {
                        index,
                        at: at + j as u64 * w,
                        ptr,
                    });
                }
            }
        };
        match fd.zla {
            ZLA_FILE_BLOCK | ZLA_SUB_BLOCK => leaf(fd.at + self.ptr_off, &fd.ptrs, 0, &mut out),
            ZLA_POINTER_BLOCK | ZLA_POINTER_BLOCK2 => {
                for (t, &top) in fd.ptrs.iter().enumerate().filter(|(_, &p)| p != 0) {
                    let (at, ptrs) = self.pointer_block(top);
                    leaf(at, &ptrs, t as u64 * per_pb, &mut out);
                }
            }
            ZLA_DOUBLE_INDIRECT => {
                for (t, &top) in fd.ptrs.iter().enumerate().filter(|(_, &p)| p != 0) {
                    let (_, mids) = self.pointer_block(top);
                    for (m, &mid) in mids.iter().enumerate().filter(|(_, &p)| p != 0) {
                        let (at, ptrs) = self.pointer_block(mid);
                        let first = (t as u64 * per_pb + m as u64) * per_pb;
                        leaf(at, &ptrs, first, &mut out);
                    }
                }
            }
            ZLA_RESIDENT => {}
            z => panic!("writer: FD {:#x} has ZLA {z}", fd.addr),
        }
        out
    }

    /// Volume offset of byte `off` of a file stored in blocks (resource
    /// files, directories, data files); panics on holes.
    pub fn file_vol(&self, fd: &Fd, off: u64) -> u64 {
        let s = self
            .slot(fd, off / fd.unit)
            .unwrap_or_else(|| panic!("writer: FD {:#x} offset {off:#x} in a hole", fd.addr));
        let in_blk = off % fd.unit;
        match self.decode(s.ptr) {
            Target::Blocks { vol, len, .. } => {
                assert!(in_blk < len);
                vol + in_blk
            }
            Target::Resource {
                kind: 2,
                cluster,
                res,
            } => self.resource_vol(2, cluster, res) + in_blk,
            t => panic!("writer: FD {:#x} offset {off:#x}: {t:?}", fd.addr),
        }
    }

    /// Reads file bytes (resident files, holes and TBZ blocks as zeros).
    pub fn read_file(&self, fd: &Fd, off: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        if fd.zla == ZLA_RESIDENT {
            let b = self.read_vol(fd.at + self.meta + 0x200, self.fd_size - self.meta - 0x200);
            let end = (off + len).min(fd.size) as usize;
            return b[off as usize..end].to_vec();
        }
        let end = (off + len).min(fd.size);
        let mut pos = off;
        while pos < end {
            let n = (fd.unit - pos % fd.unit).min(end - pos);
            let slot = self.slot(fd, pos / fd.unit);
            let zero = match slot.map(|s| self.decode(s.ptr)) {
                None | Some(Target::Null) => true,
                Some(Target::Blocks { tbz, .. }) => tbz,
                Some(_) => false,
            };
            if zero {
                out.resize(out.len() + n as usize, 0);
            } else {
                out.extend(self.read_vol(self.file_vol(fd, pos), n));
            }
            pos += n;
        }
        out
    }

    /// Writes file bytes into the blocks the file already owns, as ESXi
    /// does on a guest write: a to-be-zeroed block is zeroed and its flag
    /// cleared first. Holes are not allocated (panics).
    pub fn write_file(&self, fd: &Fd, off: u64, data: &[u8]) {
        assert!(off + data.len() as u64 <= fd.size, "write past the end");
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let n = ((fd.unit - pos % fd.unit) as usize).min(data.len() - done);
            // Re-read: an earlier chunk may have cleared a TBZ flag.
            let cur = self.fd(fd.addr);
            let s = self
                .slot(&cur, pos / fd.unit)
                .unwrap_or_else(|| panic!("writer: hole at {pos:#x}"));
            if let Target::Blocks {
                vol,
                len,
                tbz: true,
            } = self.decode(s.ptr)
            {
                self.write_vol(vol, &vec![0u8; len as usize]);
                self.put_ptr(s.at, self.without_tbz(s.ptr));
            }
            self.write_vol(self.file_vol(&cur, pos), &data[done..done + n]);
            done += n;
        }
    }

    /// Sets the file length (metadata +0x14), e.g. after rewriting a
    /// descriptor inside its sub-block.
    pub fn set_size(&self, fd: &Fd, size: u64) {
        self.write_vol(fd.at + self.meta + 0x14, &size.to_le_bytes());
    }

    /// Moves a file's blocks: block i afterwards lives where block
    /// `order[i]` lived. The logical content is kept (read first, written
    /// back through the new pointers). Pointer targets stay the file's
    /// own, so the allocation bitmaps stay right.
    pub fn permute_blocks(&self, fd: &Fd, order: &[usize]) {
        let slots = self.data_slots(fd);
        assert_eq!(slots.len(), order.len(), "one order entry per block");
        let content = self.read_file(fd, 0, fd.size);
        for (s, &from) in slots.iter().zip(order) {
            self.put_ptr(s.at, slots[from].ptr);
        }
        let fresh = self.fd(fd.addr);
        self.write_file(&fresh, 0, &content);
    }

    /// Data pointers per pointer block.
    pub fn pointers_per_block(&self) -> u64 {
        self.pb_bytes / self.ptr_width()
    }

    /// Moves the pointer of file block `from` to block `to` (both under
    /// existing pointer blocks; `to` unallocated): the data now appears
    /// at the other file offset, as if the guest had written there.
    pub fn move_block(&self, fd: &Fd, from: u64, to: u64) {
        let src = self.slot(fd, from).expect("source block mapped");
        let dst = self.slot(fd, to).expect("target under a pointer block");
        assert!(src.ptr != 0 && dst.ptr == 0, "{src:x?} -> {dst:x?}");
        self.put_ptr(dst.at, src.ptr);
        self.put_ptr(src.at, 0);
    }

    // ---- directories ----------------------------------------------

    /// Entries of directory `dir`: (name, FD address).
    ///
    /// VMFS3/5: the directory is an array of 140-byte entries: +0x00 type,
    /// +0x04 FD address, +0x08 generation, +0x0C name[128]. VMFS6: 288-byte
    /// entries at 32-byte aligned places in the directory's blocks: +0x04
    /// FD address, +0x10 the entry's own offset in the directory file,
    /// +0x18 name (NUL terminated); an entry is recognized by that
    /// self-offset. ("." and ".." of VMFS6 sit in the header block without
    /// it and are not returned.)
    pub fn entries(&self, dir: &Fd) -> Vec<(String, u32)> {
        let b = self.read_file(dir, 0, dir.size);
        let name_at = |o: usize, max: usize| -> String {
            let n = &b[o..o + max];
            String::from_utf8_lossy(&n[..n.iter().position(|&c| c == 0).unwrap_or(max)])
                .into_owned()
        };
        if self.version == 6 {
            (0..b.len().saturating_sub(288))
                .step_by(32)
                .filter(|&o| u64_at(&b, o + 0x10) == o as u64 && u32_at(&b, o + 4) & 7 == 4)
                .map(|o| (name_at(o + 0x18, 264), u32_at(&b, o + 4)))
                .collect()
        } else {
            (0..b.len() / 140)
                .map(|i| i * 140)
                .filter(|&o| u32_at(&b, o + 4) != 0)
                .map(|o| (name_at(o + 0xC, 128), u32_at(&b, o + 4)))
                .collect()
        }
    }

    /// FD address of `name` in directory `dir`.
    pub fn entry(&self, dir: &Fd, name: &str) -> u32 {
        let hits: Vec<u32> = self
            .entries(dir)
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| a)
            .collect();
        assert_eq!(hits.len(), 1, "writer: entries named {name:?}: {hits:x?}");
        hits[0]
    }

    /// Every FD reachable from the root.
    pub fn all_fds(&self) -> Vec<Fd> {
        let mut seen = std::collections::BTreeMap::new();
        let mut todo = vec![ROOT_ADDR];
        while let Some(a) = todo.pop() {
            if seen.contains_key(&a) {
                continue;
            }
            let fd = self.fd(a);
            if fd.file_type == 2 {
                todo.extend(self.entries(&fd).into_iter().map(|(_, a)| a));
            }
            seen.insert(a, fd);
        }
        seen.into_values().collect()
    }

    /// Whether any FD reachable from the root holds `addr` in its pointer
    /// array or in one of its pointer blocks (any level).
    fn address_in_use(&self, addr: u64) -> bool {
        let in_pb = |p: u64| p == addr || self.pointer_block(p).1.contains(&addr);
        self.all_fds().iter().any(|fd| {
            let used = fd.ptrs.iter().filter(|&&p| p != 0);
            match fd.zla {
                ZLA_FILE_BLOCK | ZLA_SUB_BLOCK => fd.ptrs.contains(&addr),
                ZLA_POINTER_BLOCK | ZLA_POINTER_BLOCK2 => used.copied().any(in_pb),
                ZLA_DOUBLE_INDIRECT => used.copied().any(|top| {
                    in_pb(top)
                        || self
                            .pointer_block(top)
                            .1
                            .into_iter()
                            .filter(|&m| m != 0)
                            .any(in_pb)
                }),
                _ => false,
            }
        })
    }

    /// An unused, zeroed resource in the same cluster as resource address
    /// `near` (a pointer block or sub-block in use), for a new pointer
    /// block or sub-block. Highest resource first.
    pub fn free_resource_near(&self, near: u64) -> u64 {
        let Target::Resource { kind, cluster, .. } = self.decode(near) else {
            panic!("{near:#x} is no resource address")
        };
        self.free_resource(kind, cluster)
    }

    /// An unused, zeroed resource of type `kind` in `cluster`, highest
    /// resource first.
    pub fn free_resource(&self, kind: u64, cluster: u64) -> u64 {
        let rf = self.resource_file_of(kind);
        (0..rf.per_cluster)
            .rev()
            .map(|r| (r, self.resource_addr(kind, cluster, r)))
            // Only resources inside the resource file (a young .pbc.sf is
            // shorter than its first cluster).
            .filter(|&(r, _)| self.resource_offset(rf, cluster, r) + rf.res_size <= rf.fd.size)
            .find(|&(r, a)| {
                let at = self.resource_vol(kind, cluster, r);
                self.read_vol(at, rf.res_size).iter().all(|&b| b == 0) && !self.address_in_use(a)
            })
            .unwrap_or_else(|| panic!("no free resource in cluster {cluster} of type {kind}"))
            .1
    }

    /// Moves the sub-block holding file block `index` of `fd` to the
    /// sub-block `to` (unused): contents copied, pointer rewritten.
    pub fn move_sub_block(&self, fd: &Fd, index: u64, to: u64) {
        let s = self.slot(fd, index).expect("mapped block");
        let (
            Target::Resource {
                kind: 2,
                cluster: c0,
                res: r0,
            },
            Target::Resource {
                kind: 2,
                cluster: c1,
                res: r1,
            },
        ) = (self.decode(s.ptr), self.decode(to))
        else {
            panic!("{:#x} -> {to:#x}: not sub-blocks", s.ptr)
        };
        let size = self.resource_file_of(2).res_size;
        let data = self.read_vol(self.resource_vol(2, c0, r0), size);
        self.write_vol(self.resource_vol(2, c1, r1), &data);
        self.put_ptr(s.at, to);
    }

    /// Encodes a resource address (see [`Writer::decode`]).
    pub fn resource_addr(&self, kind: u64, cluster: u64, res: u64) -> u64 {
        if self.version == 6 {
            kind | cluster << 6 | res << 56
        } else if kind == 2 && self.dense_sub_blocks {
            assert!(res < 64);
            kind | cluster << 6 | (res & 0xF) << 28 | (res >> 4) << 3
        } else {
            assert!(res < 16);
            kind | cluster << 6 | res << 28
        }
    }

    /// Readdresses a file of direct block pointers (ZLA 1) through one
    /// pointer block, as a file that had outgrown the FD's pointer array
    /// is addressed: `pb` (an unused, zeroed pointer-block resource) gets
    /// the block pointers, the FD points to `pb` and has ZLA 3. The
    /// resource's allocation bit in its cluster header is not set (no
    /// reader consults it).
    pub fn through_pointer_block(&self, fd: &Fd, pb: u64) {
        assert_eq!(fd.zla, ZLA_FILE_BLOCK, "FD {:#x}", fd.addr);
        let blocks = fd.size.div_ceil(fd.unit);
        assert!(blocks <= self.pointers_per_block());
        let (at, old) = self.pointer_block(pb);
        assert!(
            old.iter().all(|&p| p == 0),
            "pointer block {pb:#x} not empty"
        );
        assert!(!self.address_in_use(pb), "pointer block {pb:#x} in use");
        for (i, &p) in fd.ptrs.iter().enumerate().take(blocks as usize) {
            self.put_ptr(at + i as u64 * self.ptr_width(), p);
        }
        for i in 0..self.nptrs as u64 {
            let p = if i == 0 { pb } else { 0 };
            self.put_ptr(fd.at + self.ptr_off + i * self.ptr_width(), p);
        }
        self.write_vol(fd.at + self.meta + 0x44, &ZLA_POINTER_BLOCK.to_le_bytes());
    }

    /// VMFS6: makes `fd` a file of `size` bytes in large file blocks
    /// (type 7 addresses, 2^sfbToLfbShift file blocks each): FD block size
    /// the LFB size, pointer i LFB number `first_lfb + i` (bits 15..45) for
    /// as many LFBs as `size` needs, the other pointers null. The file then
    /// reads the volume's bytes from `first_lfb` x LFB size on. Nothing but
    /// the FD changes.
    pub fn readdress_as_lfb(&self, fd: &Fd, first_lfb: u64, size: u64) {
        assert_eq!(self.version, 6, "large file blocks are VMFS6 only");
        assert_eq!(fd.zla, ZLA_FILE_BLOCK, "FD {:#x}", fd.addr);
        let lfb_size = self.block * self.sfb_per_lfb;
        let count = size.div_ceil(lfb_size);
        assert!(count <= self.nptrs as u64, "direct pointers only");
        for i in 0..self.nptrs as u64 {
            let p = if i < count {
                ((first_lfb + i) << 15) | 7
            } else {
                0
            };
            self.put_ptr(fd.at + self.ptr_off + i * self.ptr_width(), p);
        }
        self.write_vol(fd.at + self.meta + 0x1C, &lfb_size.to_le_bytes());
        self.set_size(fd, size);
    }

    // ---- new folders and files (VMFS5) ------------------------------

    /// File offset of cluster `cluster`'s record in resource file `rf`.
    ///
    /// VMFS3/5 cluster header, 1 KiB at `firstGroup + group x groupSize +
    /// (cluster in group) x 1 KiB` of the resource file; its second half:
    /// +0x200 cluster number, +0x204 resources in it, +0x208 free ones,
    /// +0x20C first free, +0x210 bitmap (one bit per resource, set =
    /// free). `.fbb.sf` has the same headers and no payload (a file block's
    /// address is its place on the volume).
    fn cluster_record(&self, rf: &ResourceFile, cluster: u64) -> u64 {
        assert_ne!(self.version, 6, "VMFS6 cluster records differ");
        rf.first_group
            + (cluster / rf.clusters_per_group) * rf.group_size
            + (cluster % rf.clusters_per_group) * self.group_header
            + 0x200
    }

    /// The record of `cluster`: (resources, free, bitmap bytes), None past
    /// the resource file's end or where the record names another cluster.
    fn read_cluster_record(&self, rf: &ResourceFile, cluster: u64) -> Option<(u64, u64, Vec<u8>)> {
        let off = self.cluster_record(rf, cluster);
        if off + 0x200 > rf.fd.size {
            return None;
        }
        let r = self.read_file(&rf.fd, off, 0x200);
        if u32_at(&r, 0) as u64 != cluster {
            return None;
        }
        let total = u32_at(&r, 4) as u64;
        let free = u32_at(&r, 8) as u64;
        Some((
            total,
            free,
            r[0x10..0x10 + total.div_ceil(8) as usize].to_vec(),
        ))
    }

    /// Whether resource `res` of `cluster` is marked free in `rf`.
    fn resource_free(&self, rf: &ResourceFile, cluster: u64, res: u64) -> Option<bool> {
        let (total, _, bits) = self.read_cluster_record(rf, cluster)?;
        (res < total).then(|| bits[(res / 8) as usize] & (1 << (res % 8)) != 0)
    }

    /// Takes the first resource the cluster bitmaps of `rf` mark free
    /// (for which `usable` holds): its bit cleared, the free count and
    /// the first-free hint updated. Returns (cluster, resource).
    fn take_resource(&self, rf: &ResourceFile, usable: impl Fn(u64, u64) -> bool) -> (u64, u64) {
        let mut cluster = 0;
        while let Some((total, free, mut bits)) = self.read_cluster_record(rf, cluster) {
            let found = (free > 0)
                .then(|| {
                    (0..total).find(|&r| {
                        bits[(r / 8) as usize] & (1 << (r % 8)) != 0 && usable(cluster, r)
                    })
                })
                .flatten();
            if let Some(res) = found {
                bits[(res / 8) as usize] &= !(1 << (res % 8));
                let next_free = (0..total)
                    .find(|&r| bits[(r / 8) as usize] & (1 << (r % 8)) != 0)
                    .unwrap_or(total);
                let off = self.cluster_record(rf, cluster);
                let mut head = Vec::new();
                head.extend((free as u32 - 1).to_le_bytes());
                head.extend((next_free as u32).to_le_bytes());
                head.extend(&bits);
                self.write_vol(self.file_vol(&rf.fd, off + 8), &head);
                return (cluster, res);
            }
            cluster += 1;
        }
        panic!(
            "writer: no free resource left in FD {:#x}'s clusters",
            rf.fd.addr
        )
    }

    /// `.fbb.sf`, the file block bitmap.
    fn fbb(&self) -> ResourceFile {
        self.resource_file(self.fd(0x0040_0004))
    }

    /// Whether the FD at `addr` and the file block `block` are marked in
    /// use, as the checks of a written volume need.
    pub fn fd_marked_used(&self, addr: u32) -> bool {
        let (cluster, res) = (((addr >> 6) & 0xFFFF) as u64, (addr >> 22) as u64);
        self.resource_free(&self.fdc, cluster, res) == Some(false)
    }

    /// Whether file block `block` (volume offset / block size) is marked
    /// in use in `.fbb.sf`.
    pub fn block_marked_used(&self, block: u64) -> bool {
        let fbb = self.fbb();
        self.resource_free(&fbb, block / fbb.per_cluster, block % fbb.per_cluster) == Some(false)
    }

    /// Takes a free, zeroed file block; returns its number.
    fn take_block(&self) -> u64 {
        let fbb = self.fbb();
        let (c, r) = self.take_resource(&fbb, |c, r| {
            let vol = (c * fbb.per_cluster + r) * self.block;
            // Stale data in a free block would show through holes of a
            // thin file's first write; only take blocks reading as zeros.
            self.runs
                .iter()
                .any(|&(l, _, n)| l <= vol && vol + self.block <= l + n)
                && self.read_vol(vol, self.block).iter().all(|&b| b == 0)
        });
        c * fbb.per_cluster + r
    }

    /// Writes a new FD of `file_type` (2 dir, 3 file) in a free `.fdc.sf`
    /// slot, modelled on the existing FD `template` (lock and times kept):
    /// its own address and lock position, generation 1, one link, the
    /// length, unit, block count, ZLA and the data area. Returns it.
    fn new_fd(
        &self,
        template: &Fd,
        file_type: u32,
        size: u64,
        unit: u64,
        zla: u32,
        area: &[u8],
    ) -> Fd {
        let (c, r) = self.take_resource(&self.fdc, |c, r| {
            let at = self.file_vol(&self.fdc.fd, self.resource_offset(&self.fdc, c, r));
            u32_at(&self.read_vol(at, 8), 0) != LOCK_MAGIC
        });
        let addr = u32::try_from(4 | c << 6 | r << 22).unwrap();
        let at = self.file_vol(&self.fdc.fd, self.resource_offset(&self.fdc, c, r));
        let mut fd = self.read_vol(template.at, self.fd_size);
        let m = self.meta as usize;
        fd[4..12].copy_from_slice(&at.to_le_bytes());
        fd[m..m + 4].copy_from_slice(&addr.to_le_bytes());
        fd[m + 4..m + 8].copy_from_slice(&1u32.to_le_bytes());
        fd[m + 8..m + 12].copy_from_slice(&1u32.to_le_bytes());
        fd[m + 0xC..m + 0x10].copy_from_slice(&file_type.to_le_bytes());
        fd[m + 0x14..m + 0x1C].copy_from_slice(&size.to_le_bytes());
        fd[m + 0x1C..m + 0x24].copy_from_slice(&unit.to_le_bytes());
        // numBlocks counts the blocks held (a thin file's nulls are not).
        let blocks = match zla {
            ZLA_FILE_BLOCK => area.chunks(4).filter(|p| p.iter().any(|&b| b != 0)).count() as u64,
            _ => 0,
        };
        fd[m + 0x24..m + 0x2C].copy_from_slice(&blocks.to_le_bytes());
        fd[m + 0x44..m + 0x48].copy_from_slice(&zla.to_le_bytes());
        let p = self.ptr_off as usize;
        fd[p..].fill(0);
        fd[p..p + area.len()].copy_from_slice(area);
        self.write_vol(at, &fd);
        self.fd(addr)
    }

    /// Adds the entry `name` -> `addr` (of `file_type`) to directory
    /// `dir`: in the first free slot, else appended (a new file block
    /// when the last one is full).
    fn add_entry(&self, dir: &Fd, name: &str, addr: u32, file_type: u32) {
        assert_eq!(self.version, 5, "new entries are written on VMFS5 only");
        assert!(
            name.len() < 128 && !name.contains('/') && !name.is_empty(),
            "name {name:?}"
        );
        assert!(
            self.entries(dir).iter().all(|(n, _)| n != name),
            "writer: {name:?} exists already"
        );
        let raw = self.read_file(dir, 0, dir.size);
        let slot = (0..raw.len() / 140).find(|&i| u32_at(&raw, i * 140 + 4) == 0);
        let off = match slot {
            Some(i) => i as u64 * 140,
            None => {
                assert_eq!(
                    dir.zla, ZLA_FILE_BLOCK,
                    "directory {:#x} not in file blocks",
                    dir.addr
                );
                let end = dir.size + 140;
                let last = (end - 1) / dir.unit;
                if dir.ptrs[last as usize] == 0 {
                    let b = self.take_block();
                    self.put_ptr(dir.at + self.ptr_off + last * 4, b << 6 | 1);
                    self.write_vol(dir.at + self.meta + 0x24, &(last + 1).to_le_bytes());
                }
                self.set_size(dir, end);
                dir.size
            }
        };
        let mut e = vec![0u8; 140];
        e[0..4].copy_from_slice(&file_type.to_le_bytes());
        e[4..8].copy_from_slice(&addr.to_le_bytes());
        e[8..12].copy_from_slice(&1u32.to_le_bytes());
        e[12..12 + name.len()].copy_from_slice(name.as_bytes());
        self.write_file(&self.fd(dir.addr), off, &e);
    }

    /// Creates the folder `parent/name` (VMFS5): one file block holding
    /// its "." and ".." entries, as the root's.
    pub fn mkdir(&self, parent: &str, name: &str) -> Fd {
        let up = self.lookup(parent);
        assert_eq!(up.file_type, 2, "{parent} is no directory");
        let b = self.take_block();
        let mut area = vec![0u8; 4];
        area[..4].copy_from_slice(&u32::try_from(b << 6 | 1).unwrap().to_le_bytes());
        let root = self.fd(ROOT_ADDR);
        let dir = self.new_fd(&root, 2, 0, self.block, ZLA_FILE_BLOCK, &area);
        for (n, a) in [(".", dir.addr), ("..", up.addr)] {
            self.add_entry(&self.fd(dir.addr), n, a, 2);
        }
        self.add_entry(&up, name, dir.addr, 2);
        self.fd(dir.addr)
    }

    /// Creates the file `parent/name` holding `data` (VMFS5): resident in
    /// its FD up to 1 KiB (as ESXi stores descriptors), else in file
    /// blocks with all-zero blocks left thin (null pointers), up to the
    /// FD's 256 direct pointers.
    pub fn create_file(&self, parent: &str, name: &str, data: &[u8]) -> Fd {
        let up = self.lookup(parent);
        assert_eq!(up.file_type, 2, "{parent} is no directory");
        let size = data.len() as u64;
        let fd = if size <= 1024 {
            let template = self
                .all_fds()
                .into_iter()
                .find(|f| f.zla == ZLA_RESIDENT && f.file_type == 3);
            let template = template.expect("a resident file to model the FD on");
            self.new_fd(&template, 3, size, template.unit, ZLA_RESIDENT, data)
        } else {
            let blocks = size.div_ceil(self.block);
            assert!(
                blocks <= self.nptrs as u64,
                "files over 256 blocks need pointer blocks"
            );
            let mut area = Vec::new();
            let mut stored = Vec::new();
            for (i, chunk) in data.chunks(self.block as usize).enumerate() {
                let ptr = if chunk.iter().all(|&b| b == 0) {
                    0
                } else {
                    let b = self.take_block();
                    stored.push((b, i));
                    u32::try_from(b << 6 | 1).unwrap()
                };
                area.extend(ptr.to_le_bytes());
            }
            let root = self.fd(ROOT_ADDR);
            let fd = self.new_fd(&root, 3, size, self.block, ZLA_FILE_BLOCK, &area);
            for (b, i) in stored {
                let chunk =
                    &data[i * self.block as usize..((i + 1) * self.block as usize).min(data.len())];
                self.write_vol(b * self.block, chunk);
            }
            fd
        };
        self.add_entry(&up, name, fd.addr, 3);
        self.fd(fd.addr)
    }

    /// The FD of `path` (components separated by '/').
    pub fn lookup(&self, path: &str) -> Fd {
        let mut cur = self.fd(ROOT_ADDR);
        for c in path.split('/').filter(|c| !c.is_empty()) {
            assert_eq!(cur.file_type, 2, "{path}: {c} is under a non-directory");
            cur = self.fd(self.entry(&cur, c));
        }
        cur
    }
}

/// A byte pattern that names its file and position: every 512-byte
/// sector starts with "<tag> @<offset in hex>" and is filled with a byte
/// derived from the sector number, so a misplaced, swapped or missing
/// sector changes the content.
pub fn stamp(tag: &str, off: u64, len: usize) -> Vec<u8> {
    assert_eq!(off % 512, 0);
    let mut out = vec![0u8; len];
    for (i, sector) in out.chunks_mut(512).enumerate() {
        let at = off + 512 * i as u64;
        let n = at / 512;
        sector.fill((n.wrapping_mul(151) % 251) as u8 + 1);
        let head = format!("{tag} @{at:#x}\n");
        let k = head.len().min(sector.len());
        sector[..k].copy_from_slice(&head.as_bytes()[..k]);
    }
    out
}

/// The bijection i -> i * step mod n (step odd and coprime to n): spreads
/// neighbouring blocks far apart and out of order.
pub fn scatter(n: usize, step: usize) -> Vec<usize> {
    let order: Vec<usize> = (0..n).map(|i| i * step % n).collect();
    let mut seen = order.clone();
    seen.sort();
    assert!(
        seen.iter().copied().eq(0..n),
        "step {step} not coprime to {n}"
    );
    order
}

// ---- GPT disks ---------------------------------------------------------

/// GPT partition type "VMware VMFS", AA31E02A-400F-11DB-9590-000C2911D1B8.
const VMFS_TYPE: &str = "AA31E02A-400F-11DB-9590-000C2911D1B8";

/// A GUID string in GPT's on-disk byte order (first three fields
/// little-endian, the rest as written).
fn guid_bytes(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for (i, v) in b.iter_mut().enumerate() {
        *v = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// Writes a disk image: protective MBR, GPT in `sector`-byte sectors (128
/// entries of 128 bytes, primary at LBA 1..., backup at the end), one VMFS
/// partition at `first_lba` holding a copy of the volume image `volume`
/// (copied sparsely).
///
/// GPT header (92 bytes): +0x00 "EFI PART", +0x08 revision 0x00010000,
/// +0x0C header size, +0x10 header CRC32 (computed with this field 0),
/// +0x18 this LBA, +0x20 other header's LBA, +0x28 first usable LBA, +0x30
/// last usable LBA, +0x38 disk GUID, +0x48 entries LBA, +0x50 entry count,
/// +0x54 entry size, +0x58 entries CRC32. Entry: +0x00 type GUID, +0x10
/// unique GUID, +0x20 first LBA, +0x28 last LBA (inclusive), +0x30
/// attributes, +0x38 name (UTF-16LE).
pub fn gpt_disk(volume: &Path, sector: u64, first_lba: u64, tag: &str) -> Scratch {
    let dst = scratch_path(tag);
    let vol_len = std::fs::metadata(volume).unwrap().len();
    let part_lbas = vol_len.div_ceil(sector);
    let entry_lbas = (128 * 128u64).div_ceil(sector);
    let last_lba = first_lba + part_lbas + entry_lbas + 8;
    let disk_len = (last_lba + 1) * sector;
    let out = File::create(&dst).unwrap();
    out.set_len(disk_len).unwrap();

    let mut mbr = vec![0u8; 512];
    mbr[446 + 4] = 0xEE;
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_len = u32::try_from(last_lba).unwrap_or(u32::MAX);
    mbr[446 + 12..446 + 16].copy_from_slice(&mbr_len.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    out.write_all_at(&mbr, 0).unwrap();

    let mut entries = vec![0u8; 128 * 128];
    entries[0..16].copy_from_slice(&guid_bytes(VMFS_TYPE));
    entries[16..32].copy_from_slice(&guid_bytes("5EC70A11-0000-4000-8000-00000000F00D"));
    entries[0x20..0x28].copy_from_slice(&first_lba.to_le_bytes());
    entries[0x28..0x30].copy_from_slice(&(first_lba + part_lbas - 1).to_le_bytes());
    for (i, c) in "vmfs".encode_utf16().enumerate() {
        entries[0x38 + 2 * i..0x3A + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |this: u64, other: u64, entries_at: u64| -> Vec<u8> {
        let mut h = vec![0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&this.to_le_bytes());
        h[0x20..0x28].copy_from_slice(&other.to_le_bytes());
        h[0x28..0x30].copy_from_slice(&(2 + entry_lbas).to_le_bytes());
        h[0x30..0x38].copy_from_slice(&(last_lba - 1 - entry_lbas).to_le_bytes());
        h[0x38..0x48].copy_from_slice(&guid_bytes("D15C0000-4B4E-4000-8000-000000000001"));
        h[0x48..0x50].copy_from_slice(&entries_at.to_le_bytes());
        h[0x50..0x54].copy_from_slice(&128u32.to_le_bytes());
        h[0x54..0x58].copy_from_slice(&128u32.to_le_bytes());
        h[0x58..0x5C].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[0x10..0x14].copy_from_slice(&crc.to_le_bytes());
        h
    };
    out.write_all_at(&header(1, last_lba, 2), sector).unwrap();
    out.write_all_at(&entries, 2 * sector).unwrap();
    let backup_entries = last_lba - entry_lbas;
    out.write_all_at(&entries, backup_entries * sector).unwrap();
    out.write_all_at(&header(last_lba, 1, backup_entries), last_lba * sector)
        .unwrap();

    // The volume, sparsely: only its non-zero chunks are written.
    crate::fixtures::copy_sparse(
        &mut File::open(volume).unwrap(),
        &out,
        first_lba * sector,
        None,
    );
    Scratch(dst)
}
