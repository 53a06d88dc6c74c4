//! Real ESXi-written fixtures: `<workspace>/../shared/fixtures/vmfs/*.gz`,
//! decompressed sparsely once into `<workspace>/target/vmfs-fixtures/`.
#![allow(dead_code)]

pub mod oracle;
pub mod writer;

use std::fs::{self, File};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_dir() -> PathBuf {
    workspace().join("../shared/fixtures/vmfs")
}

static LOCK: Mutex<()> = Mutex::new(());

/// Path of the decompressed image for `rel` (e.g. "span/vmfs5-span-0.bin.gz").
/// `limit` stops after that many bytes (headers-only copies of the big
/// non-sparse LVM images). Panics with instructions if fixtures are absent.
pub fn image_limited(rel: &str, limit: Option<u64>) -> PathBuf {
    let mut src = fixture_dir().join(rel);
    if !src.exists() {
        // The images ../shared lacks, fetched by qemu-tests/setup.sh.
        src = workspace().join("target/vmfs-pypi").join(rel);
    }
    if !src.exists() {
        panic!(
            "VMFS fixture {} is missing. These tests need the real ESXi images: put them in \
             <workspace>/../shared/fixtures/vmfs/ (they are dissect.vmfs 3.13's tests/_data/: \
             `pip download --no-deps --no-binary :all: dissect.vmfs==3.13`, unpack \
             dissect_vmfs-3.13.tar.gz and copy tests/_data/vmfs/*, tests/_data/lvm and \
             vmfs3-toto.img.gz there; see the fixture README; qemu-tests/setup.sh fetches the \
             VMFS-L and other images that ../shared lacks into target/vmfs-pypi/)",
            src.display()
        );
    }
    let mut name = rel.trim_end_matches(".gz").replace('/', "_");
    if let Some(l) = limit {
        name = format!("{name}.head{}M", l >> 20);
    }
    let cache = workspace().join("target/vmfs-fixtures");
    let dst = cache.join(&name);
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if dst.exists() {
        return dst;
    }
    fs::create_dir_all(&cache).expect("create fixture cache dir");
    let tmp = cache.join(format!("{name}.tmp{}", std::process::id()));
    let mut dec = flate2::read::GzDecoder::new(std::io::BufReader::new(
        File::open(&src).expect("open fixture"),
    ));
    let out = File::create(&tmp).expect("create cache file");
    let pos = copy_sparse(&mut dec, &out, 0, limit);
    out.set_len(pos).unwrap();
    drop(out);
    fs::rename(&tmp, &dst).expect("rename cache file");
    dst
}

/// Copies `src` into `out` from byte `at` on, writing only the non-zero
/// 64 KiB chunks (the rest stays a hole), up to `limit` bytes if given.
/// Returns the bytes copied.
pub fn copy_sparse(src: &mut dyn Read, out: &File, at: u64, limit: Option<u64>) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = src.read(&mut buf[n..]).expect("read source");
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.write_all_at(&buf[..n], at + pos).unwrap();
        }
        pos += n as u64;
        if limit.is_some_and(|l| pos >= l) {
            break;
        }
    }
    pos
}

pub fn image(rel: &str) -> PathBuf {
    image_limited(rel, None)
}

pub fn dev(rel: &str) -> Box<dyn blockdev::BlockDevice> {
    Box::new(blockdev::Device::open(image(rel)).expect("open image"))
}

/// A device that reads through to an image, with some bytes replaced.
pub struct Overlay {
    pub inner: std::sync::Arc<dyn blockdev::BlockDevice>,
    pub patch: std::collections::BTreeMap<u64, u8>,
}

impl blockdev::BlockDevice for Overlay {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        for (&o, &b) in self.patch.range(offset..offset + n as u64) {
            buf[(o - offset) as usize] = b;
        }
        Ok(n)
    }
    fn name(&self) -> &str {
        "overlay"
    }
}
