//! Checked little-endian field reads for every on-disk parser (GPT, md,
//! FAT, filesystem signatures, NVMe logs, VMFS). A parser names the
//! structure it reads once; every field read past the end of the bytes it
//! has is then an [`OutOfRange`] error that says which structure, at which
//! offset and how long it was, never a panic.

use std::fmt;

/// Little-endian fields of one on-disk structure held in `buf`.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    what: &'a str,
}

/// A field that lies (partly) past the end of the bytes read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// The structure, as the parser named it ("GPT header", "md superblock").
    pub what: String,
    /// Offset of the field in the structure.
    pub offset: usize,
    /// Length of the field.
    pub len: usize,
    /// Bytes the structure had.
    pub size: usize,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: field at +{:#x} ({} bytes) is past the end ({} bytes)",
            self.what, self.offset, self.len, self.size
        )
    }
}

impl std::error::Error for OutOfRange {}

impl<'a> Fields<'a> {
    /// The fields of `what` (named in errors), stored in `buf`.
    pub fn new(buf: &'a [u8], what: &'a str) -> Fields<'a> {
        Fields { buf, what }
    }

    /// The structure's bytes.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// `len` bytes at `offset`.
    pub fn bytes(&self, offset: usize, len: usize) -> Result<&'a [u8], OutOfRange> {
        offset
            .checked_add(len)
            .and_then(|end| self.buf.get(offset..end))
            .ok_or_else(|| OutOfRange {
                what: self.what.to_string(),
                offset,
                len,
                size: self.buf.len(),
            })
    }

    /// `N` bytes at `offset`, as an array (GUIDs, UUIDs, magic numbers).
    pub fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N], OutOfRange> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(offset, N)?);
        Ok(a)
    }

    pub fn u8(&self, offset: usize) -> Result<u8, OutOfRange> {
        Ok(self.bytes(offset, 1)?[0])
    }

    pub fn u16(&self, offset: usize) -> Result<u16, OutOfRange> {
        self.array(offset).map(u16::from_le_bytes)
    }

    pub fn u32(&self, offset: usize) -> Result<u32, OutOfRange> {
        self.array(offset).map(u32::from_le_bytes)
    }

    pub fn u64(&self, offset: usize) -> Result<u64, OutOfRange> {
        self.array(offset).map(u64::from_le_bytes)
    }

    /// A big-endian u32 (md 0.90 superblocks written on big-endian hosts).
    pub fn u32_be(&self, offset: usize) -> Result<u32, OutOfRange> {
        self.array(offset).map(u32::from_be_bytes)
    }

    /// A big-endian u64 (XFS superblocks).
    pub fn u64_be(&self, offset: usize) -> Result<u64, OutOfRange> {
        self.array(offset).map(u64::from_be_bytes)
    }

    /// A NUL-padded text field of `len` bytes, as lossy UTF-8.
    pub fn cstr(&self, offset: usize, len: usize) -> Result<String, OutOfRange> {
        let b = self.bytes(offset, len)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(&b[..end]).into_owned())
    }
}

/// Writes `v` little-endian at `offset` of `buf`, for writers that built
/// `buf` to the structure's size (a planner's header sector, a test image):
/// an offset outside it is a bug in the writer and panics.
pub fn put_u32(buf: &mut [u8], offset: usize, v: u32) {
    buf[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

/// As [`put_u32`], for a u64.
pub fn put_u64(buf: &mut [u8], offset: usize, v: u64) {
    buf[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_fields_and_names_what_is_missing() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, b'a', b'b', 0, b'z'];
        let f = Fields::new(&b, "test header");
        assert_eq!(f.u8(0), Ok(1));
        assert_eq!(f.u16(0), Ok(0x0201));
        assert_eq!(f.u32(0), Ok(0x0403_0201));
        assert_eq!(f.u32_be(0), Ok(0x0102_0304));
        assert_eq!(f.u64(0), Ok(0x0807_0605_0403_0201));
        assert_eq!(f.u64_be(0), Ok(0x0102_0304_0506_0708));
        assert_eq!(f.array::<2>(8), Ok(*b"ab"));
        assert_eq!(f.cstr(8, 4).as_deref(), Ok("ab"));
        let e = f.u64(8).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test header: field at +0x8 (8 bytes) is past the end (12 bytes)"
        );
        assert!(f.bytes(usize::MAX, 2).is_err(), "no overflow");
        let mut w = [0u8; 12];
        put_u32(&mut w, 0, 0x0403_0201);
        put_u64(&mut w, 4, 0x0807_0605_0403_0201);
        assert_eq!(w, [1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64),
                        offset in any::<usize>(), len in 0usize..80) {
            let f = Fields::new(&buf, "x");
            let ok = offset.checked_add(len).is_some_and(|e| e <= buf.len());
            prop_assert_eq!(f.bytes(offset, len).is_ok(), ok);
            let _ = (f.u16(offset), f.u32(offset), f.u64(offset), f.cstr(offset, len));
        }
    }
}
