//! Real ESXi-written fixtures: `<workspace>/../shared/fixtures/vmfs/*.gz`,
//! decompressed sparsely once into `<workspace>/target/fixtures/` (testkit).
#![allow(dead_code, unused_imports)]

pub mod oracle;
pub use testkit::vmfswriter as writer;

use std::path::PathBuf;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_dir() -> PathBuf {
    testkit::fixtures::fixture_path("vmfs")
}

/// Path of the decompressed image for `rel` (e.g. "span/vmfs5-span-0.bin.gz",
/// under `../shared/fixtures/vmfs`), unpacked once by testkit. `limit` stops
/// after that many bytes (headers-only copies of the big non-sparse LVM
/// images). A missing fixture fails the test with instructions.
pub fn image_limited(rel: &str, limit: Option<u64>) -> PathBuf {
    testkit::fixtures::unpacked(&format!("vmfs/{rel}"), limit).unwrap_or_else(|| {
        panic!("VMFS fixture {rel} is missing; the vmfs tests cannot run without it")
    })
}

pub use testkit::fixtures::copy_sparse;

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

/// A 4 KiB bad area in the middle of vmfs5's file `big`, where the file's
/// block sits on the image: (byte on the image, byte in the file).
pub fn bad_area_in_big(v: &vmfs::Volume) -> (u64, u64) {
    let ext = v.open("big").unwrap().device_extents().unwrap();
    let e = ext
        .iter()
        .find(|e| e.file_offset <= 500_000 && 500_000 < e.file_offset + e.len)
        .unwrap();
    let bad_at = e.device_offset + (500_000 - e.file_offset) / 4096 * 4096;
    (bad_at, e.file_offset + (bad_at - e.device_offset))
}
