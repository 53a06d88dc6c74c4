//! SHA-256 of a rescued image, with every area not finished in the map
//! counted as zeros (what the image holds there is not the source's data).

use blockdev::BlockDevice;
use ddmap::{Map, Status};
use sha2::{Digest, Sha256};
use std::io;

/// Hashes the first `map.size()` bytes of `image`. The buffer is aligned
/// for O_DIRECT: `rescue image ... rescue://` verifies by re-reading the
/// source through its direct handle (an unaligned buffer gave EINVAL).
pub fn image_sha256(image: &dyn BlockDevice, map: &Map) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = blockdev::AlignedBuf::new(1 << 20);
    let zeros = vec![0u8; 1 << 20];
    for b in map.extents() {
        let mut pos = b.pos;
        while pos < b.end() {
            let n = (b.end() - pos).min(buf.len() as u64) as usize;
            if b.status == Status::Finished {
                image.read_exact_at(&mut buf[..n], pos)?;
                h.update(&buf[..n]);
            } else {
                h.update(&zeros[..n]);
            }
            pos += n as u64;
        }
    }
    Ok(h.finalize().into())
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `sha256sum`-format line: hash, two spaces, file name.
pub fn sha256sum_line(digest: &[u8; 32], name: &str) -> String {
    format!("{}  {name}\n", hex(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;

    #[test]
    fn unfinished_areas_hash_as_zeros() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8 + 1).collect();
        let mut map = Map::new(4096);
        map.set(0, 4096, Status::Finished);
        map.set(1024, 512, Status::BadSector);
        let got = image_sha256(&MemDevice::new(data.clone(), 512), &map).unwrap();
        let mut expect = data;
        expect[1024..1536].fill(0);
        assert_eq!(got, <[u8; 32]>::from(Sha256::digest(&expect)));
        // Known vector: SHA-256 of "abc".
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A device that fails unaligned buffers with EINVAL, as an O_DIRECT
    /// handle does.
    struct DirectOnly(MemDevice);

    impl BlockDevice for DirectOnly {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn logical_sector_size(&self) -> u32 {
            512
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if !(buf.as_ptr() as usize).is_multiple_of(blockdev::DIRECT_IO_ALIGN) {
                return Err(io::Error::from_raw_os_error(22));
            }
            self.0.read_at(buf, offset)
        }
        fn name(&self) -> &str {
            "direct"
        }
    }

    #[test]
    fn hashes_through_a_direct_handle() {
        let data = vec![7u8; 3 << 20];
        let mut map = Map::new(data.len() as u64);
        map.set(0, data.len() as u64, Status::Finished);
        let got = image_sha256(&DirectOnly(MemDevice::new(data.clone(), 512)), &map).unwrap();
        assert_eq!(got, <[u8; 32]>::from(Sha256::digest(&data)));
    }
}
