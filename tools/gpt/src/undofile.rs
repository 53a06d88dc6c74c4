//! The undo file written before any repair touches the disk: the old bytes
//! of every sector the repair changes.
//!
//! Format (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `GPTUNDO1` |
//! | 8 | 4 | format version, 1 |
//! | 12 | 4 | logical sector size the repair used |
//! | 16 | 8 | device size in bytes |
//! | 24 | 4 | record count N |
//! | 28 | 2 | length L of the device name |
//! | 30 | L | device name (UTF-8, for messages only) |
//! | .. | | N records: u64 byte offset, u32 length, then `length` old bytes |
//! | end-4 | 4 | CRC32 (IEEE) of every byte before it |

use crate::GptError;

pub const MAGIC: &[u8; 8] = b"GPTUNDO1";
/// Undo files larger than this are refused (a GPT repair changes well under
/// 1 MiB; a bigger file is not ours or is damaged).
pub const MAX_UNDO_BYTES: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoRecord {
    pub offset: u64,
    pub old: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoFile {
    pub sector_size: u32,
    pub device_size: u64,
    pub device_name: String,
    pub records: Vec<UndoRecord>,
}

fn bad(offset: u64, message: String) -> GptError {
    GptError::new(offset, format!("undo file: {message}"))
}

impl UndoFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&self.sector_size.to_le_bytes());
        b.extend_from_slice(&self.device_size.to_le_bytes());
        b.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        let name = self.device_name.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(name);
        for r in &self.records {
            b.extend_from_slice(&r.offset.to_le_bytes());
            b.extend_from_slice(&(r.old.len() as u32).to_le_bytes());
            b.extend_from_slice(&r.old);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks an undo file; errors name the byte offset and field.
    pub fn decode(b: &[u8]) -> Result<UndoFile, GptError> {
        if b.len() > MAX_UNDO_BYTES {
            return Err(bad(
                0,
                format!("{} bytes, more than the {MAX_UNDO_BYTES} accepted", b.len()),
            ));
        }
        if b.len() < 34 {
            return Err(bad(
                0,
                format!("{} bytes, shorter than the 34-byte minimum", b.len()),
            ));
        }
        if &b[0..8] != MAGIC {
            return Err(bad(
                0,
                format!("magic is {:02x?}, expected \"GPTUNDO1\"", &b[0..8]),
            ));
        }
        let body = &b[..b.len() - 4];
        let range = |e: le::OutOfRange| bad(e.offset as u64, e.to_string());
        let stored = le::Fields::new(b, "undo file")
            .u32(b.len() - 4)
            .map_err(range)?;
        let f = le::Fields::new(body, "undo file");
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(bad(
                b.len() as u64 - 4,
                format!("CRC32 is {stored:08x} but the file computes to {computed:08x}: the file is damaged or truncated"),
            ));
        }
        let version = f.u32(8).map_err(range)?;
        if version != 1 {
            return Err(bad(8, format!("version is {version}, expected 1")));
        }
        let sector_size = f.u32(12).map_err(range)?;
        let device_size = f.u64(16).map_err(range)?;
        let count = f.u32(24).map_err(range)?;
        let name_len = f.u16(28).map_err(range)? as usize;
        let mut at = 30usize;
        let name = body.get(at..at + name_len).ok_or_else(|| {
            bad(
                28,
                format!("device name of {name_len} bytes runs past the end"),
            )
        })?;
        let device_name = String::from_utf8_lossy(name).into_owned();
        at += name_len;
        let mut records = Vec::new();
        for i in 0..count {
            let past_end = |_| {
                bad(
                    at as u64,
                    format!("record {i} of {count} runs past the end"),
                )
            };
            let offset = f.u64(at).map_err(past_end)?;
            let len = f.u32(at + 8).map_err(past_end)? as usize;
            let old = body.get(at + 12..at + 12 + len).ok_or_else(|| {
                bad(
                    at as u64 + 8,
                    format!("record {i}: {len} bytes run past the end"),
                )
            })?;
            if offset
                .checked_add(len as u64)
                .is_none_or(|end| end > device_size)
            {
                return Err(bad(
                    at as u64,
                    format!(
                        "record {i}: bytes {offset}+{len} lie beyond the device size {device_size}"
                    ),
                ));
            }
            records.push(UndoRecord {
                offset,
                old: old.to_vec(),
            });
            at += 12 + len;
        }
        if at != body.len() {
            return Err(bad(
                at as u64,
                format!("{} bytes after the last record", body.len() - at),
            ));
        }
        Ok(UndoFile {
            sector_size,
            device_size,
            device_name,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UndoFile {
        UndoFile {
            sector_size: 512,
            device_size: 1 << 20,
            device_name: "/dev/sdb".into(),
            records: vec![
                UndoRecord {
                    offset: 512,
                    old: vec![1; 512],
                },
                UndoRecord {
                    offset: 4096,
                    old: vec![2; 512],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let u = sample();
        assert_eq!(UndoFile::decode(&u.encode()).unwrap(), u);
    }

    #[test]
    fn damage_is_detected() {
        let b = sample().encode();
        let mut c = b.clone();
        c[40] ^= 1;
        assert!(UndoFile::decode(&c).unwrap_err().message.contains("CRC32"));
        assert!(UndoFile::decode(&b[..b.len() - 1]).is_err());
        assert!(UndoFile::decode(b"GPTUNDO1").is_err());
        let mut m = b.clone();
        m[0] = b'X';
        assert!(UndoFile::decode(&m).unwrap_err().message.contains("magic"));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), fix_crc: bool, magic: bool) {
            let mut d = data;
            if magic && d.len() >= 8 {
                d[..8].copy_from_slice(MAGIC);
            }
            if fix_crc && d.len() >= 4 {
                let n = d.len() - 4;
                let c = crc32fast::hash(&d[..n]);
                d[n..].copy_from_slice(&c.to_le_bytes());
            }
            let _ = UndoFile::decode(&d);
        }
    }
}
