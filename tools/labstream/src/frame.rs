//! The messages of a session and their encoding. Frames travel inside the
//! Noise channel ([`crate::channel`]), so they are authenticated, but the
//! parser still treats them as untrusted input: it never panics, and every
//! error names the field, the offset and what was expected.
//!
//! Frame layout (all integers big-endian):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 1    | type (see [`Frame`])                    |
//! | 1      | 4    | body length n (at most [`MAX_BODY`])    |
//! | 5      | n    | body                                    |
//!
//! Bodies by type:
//!
//! | type | frame      | body                                                     |
//! |------|------------|----------------------------------------------------------|
//! | 1    | Hello      | u16 version, u64 size, u32 sector, u8 flags (bit 0 sparse, bit 1 tree), u16 name length + name, u16 identity length + identity (UTF-8) |
//! | 2    | Welcome    | the receiver's mapfile text (empty: a new image)          |
//! | 3    | Refuse     | UTF-8 reason; the session ends                            |
//! | 4    | Data       | u64 offset, then the bytes                                |
//! | 5    | SaveMap    | mapfile text (GNU ddrescue format)                        |
//! | 6    | Ack        | empty                                                    |
//! | 7    | Finish     | u64 image size                                           |
//! | 8    | HashRequest| empty                                                    |
//! | 9    | Digest     | 32 bytes: SHA-256 of the image, bad areas as zeros        |
//! | 10   | Bye        | empty                                                    |
//! | 11   | Entry      | u8 kind (0 directory, 1 file, 2 symlink, 3 directory times), u32 mode, u64 size, u32 atime, u32 mtime, u16 length + relative path, u16 length + symlink target (UTF-8) |
//! | 12   | Accept     | u64: bytes of the file the receiver already has (0 for other kinds) |
//! | 13   | Skip       | UTF-8 reason: this entry is not taken; the session goes on |
//! | 14   | FileEnd    | 32 bytes SHA-256 of the file (holes and lost bytes as zeros), u32 n, n × (u64 start, u64 length) unreadable ranges |
//!
//! A tree session (Hello with the tree flag; `size` is the stored bytes
//! to send, for progress) is the stream of `rescue vmfs extract ...
//! rescue://HOST:PORT/NAME`: after Welcome, per item an Entry and the
//! receiver's Accept or Skip; for a file Accept(n) says the receiver has
//! its first n bytes (n = size: all of it), then Data frames (offsets in
//! the file) from n on, FileEnd, and the receiver's Digest of its copy.
//! Finish(files) and its Ack end the tree; Bye ends the session. See
//! [`crate::tree`].

use std::fmt;

/// Protocol version in Hello (the handshake's magic carries it too).
pub const VERSION: u16 = 1;
/// Largest body: a 16 MiB data chunk plus its offset.
pub const MAX_BODY: u32 = (16 << 20) + 8;
/// Longest image name.
pub const MAX_NAME: usize = 200;
/// Size of the frame header.
pub const HEADER: usize = 5;

#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Welcome(String),
    Refuse(String),
    Data {
        offset: u64,
        bytes: Vec<u8>,
    },
    SaveMap(String),
    Ack,
    Finish(u64),
    HashRequest,
    Digest([u8; 32]),
    Bye,
    Entry(Entry),
    Accept(u64),
    Skip(String),
    FileEnd {
        sha256: [u8; 32],
        lost: Vec<(u64, u64)>,
    },
}

/// What an [`Frame::Entry`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir = 0,
    File = 1,
    Symlink = 2,
    /// Sets an existing directory's times (after its entries).
    DirTimes = 3,
}

/// One item of a tree: its path relative to the tree's root ("/"
/// separated; "" is the root), and what the receiver needs to create it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Bytes (files).
    pub size: u64,
    pub atime: u32,
    pub mtime: u32,
    pub path: String,
    /// The link's target (symlinks; empty otherwise).
    pub target: String,
}

/// Most unreadable ranges in one FileEnd (the sender's report lists all).
pub const MAX_LOST_RANGES: usize = 100_000;

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Data { offset, bytes } => {
                write!(f, "Data {{ offset: {offset}, len: {} }}", bytes.len())
            }
            Frame::Hello(h) => write!(f, "Hello({h:?})"),
            Frame::Welcome(m) => write!(f, "Welcome({} bytes of map)", m.len()),
            Frame::Refuse(r) => write!(f, "Refuse({r:?})"),
            Frame::SaveMap(m) => write!(f, "SaveMap({} bytes)", m.len()),
            Frame::Ack => f.write_str("Ack"),
            Frame::Finish(s) => write!(f, "Finish({s})"),
            Frame::HashRequest => f.write_str("HashRequest"),
            Frame::Digest(_) => f.write_str("Digest(..)"),
            Frame::Bye => f.write_str("Bye"),
            Frame::Entry(e) => write!(f, "Entry({e:?})"),
            Frame::Accept(n) => write!(f, "Accept({n})"),
            Frame::Skip(r) => write!(f, "Skip({r:?})"),
            Frame::FileEnd { lost, .. } => write!(f, "FileEnd({} lost ranges)", lost.len()),
        }
    }
}

/// What the sender says about the image it is about to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// Source size in bytes.
    pub size: u64,
    /// Source logical sector size.
    pub sector: u32,
    /// Leave all-zero 4 KiB blocks of a new image as holes.
    pub sparse: bool,
    /// A tree of files (`vmfs extract`), not an image.
    pub tree: bool,
    /// The image's file name in the receiver's directory.
    pub name: String,
    /// Who the source is (device serial/WWID, or the file's path): a resume
    /// must come from the same source.
    pub identity: String,
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed (only from [`Frame::parse`] on a buffer).
    Incomplete {
        need: usize,
    },
    UnknownType {
        ty: u8,
    },
    TooLong {
        ty: u8,
        len: u32,
    },
    Bad {
        frame: &'static str,
        field: &'static str,
        offset: usize,
        detail: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete { need } => {
                write!(f, "frame cut short: {need} more bytes needed")
            }
            FrameError::UnknownType { ty } => {
                write!(f, "frame type at offset 0: unknown type {ty}")
            }
            FrameError::TooLong { ty, len } => write!(
                f,
                "frame type {ty}: body length at offset 1 is {len}, expected at most {MAX_BODY}"
            ),
            FrameError::Bad {
                frame,
                field,
                offset,
                detail,
            } => {
                write!(
                    f,
                    "{frame} frame, {field} at body offset {offset}: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    fn ty(&self) -> u8 {
        match self {
            Frame::Hello(_) => 1,
            Frame::Welcome(_) => 2,
            Frame::Refuse(_) => 3,
            Frame::Data { .. } => 4,
            Frame::SaveMap(_) => 5,
            Frame::Ack => 6,
            Frame::Finish(_) => 7,
            Frame::HashRequest => 8,
            Frame::Digest(_) => 9,
            Frame::Bye => 10,
            Frame::Entry(_) => 11,
            Frame::Accept(_) => 12,
            Frame::Skip(_) => 13,
            Frame::FileEnd { .. } => 14,
        }
    }

    /// Header and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.push(self.ty());
        b.extend_from_slice(&[0; 4]);
        match self {
            Frame::Hello(h) => {
                b.extend_from_slice(&h.version.to_be_bytes());
                b.extend_from_slice(&h.size.to_be_bytes());
                b.extend_from_slice(&h.sector.to_be_bytes());
                b.push(u8::from(h.sparse) | (u8::from(h.tree) << 1));
                for s in [&h.name, &h.identity] {
                    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
                    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    b.extend_from_slice(s);
                }
            }
            Frame::Entry(e) => {
                b.push(e.kind as u8);
                b.extend_from_slice(&e.mode.to_be_bytes());
                b.extend_from_slice(&e.size.to_be_bytes());
                b.extend_from_slice(&e.atime.to_be_bytes());
                b.extend_from_slice(&e.mtime.to_be_bytes());
                for s in [&e.path, &e.target] {
                    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
                    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    b.extend_from_slice(s);
                }
            }
            Frame::Accept(n) => b.extend_from_slice(&n.to_be_bytes()),
            Frame::FileEnd { sha256, lost } => {
                b.extend_from_slice(sha256);
                let lost = &lost[..lost.len().min(MAX_LOST_RANGES)];
                b.extend_from_slice(&(lost.len() as u32).to_be_bytes());
                for (s, n) in lost {
                    b.extend_from_slice(&s.to_be_bytes());
                    b.extend_from_slice(&n.to_be_bytes());
                }
            }
            Frame::Welcome(s) | Frame::Refuse(s) | Frame::SaveMap(s) | Frame::Skip(s) => {
                b.extend_from_slice(s.as_bytes())
            }
            Frame::Data { offset, bytes } => {
                b.extend_from_slice(&offset.to_be_bytes());
                b.extend_from_slice(bytes);
            }
            Frame::Finish(size) => b.extend_from_slice(&size.to_be_bytes()),
            Frame::Digest(d) => b.extend_from_slice(d),
            Frame::Ack | Frame::HashRequest | Frame::Bye => {}
        }
        let len = (b.len() - HEADER) as u32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// Checks a header: the type and the body length.
    pub fn check_header(h: &[u8; HEADER]) -> Result<(u8, u32), FrameError> {
        let ty = h[0];
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        if !(1..=14).contains(&ty) {
            return Err(FrameError::UnknownType { ty });
        }
        if len > MAX_BODY {
            return Err(FrameError::TooLong { ty, len });
        }
        Ok((ty, len))
    }

    /// One frame from the start of `buf`, and how many bytes it took.
    pub fn parse(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
        let Some(h) = buf.get(..HEADER) else {
            return Err(FrameError::Incomplete {
                need: HEADER - buf.len(),
            });
        };
        let h: [u8; HEADER] = h.try_into().expect("5 bytes");
        let (ty, len) = Frame::check_header(&h)?;
        let end = HEADER + len as usize;
        let Some(body) = buf.get(HEADER..end) else {
            return Err(FrameError::Incomplete {
                need: end - buf.len(),
            });
        };
        Ok((Frame::decode(ty, body.to_vec())?, end))
    }

    /// The frame of type `ty` (checked by [`Frame::check_header`]) with `body`.
    pub fn decode(ty: u8, body: Vec<u8>) -> Result<Frame, FrameError> {
        let name = frame_name(ty);
        let mut r = Reader {
            frame: name,
            body: &body,
            pos: 0,
        };
        let f = match ty {
            1 => {
                let version = u16::from_be_bytes(r.array("version")?);
                let size = u64::from_be_bytes(r.array("size")?);
                let sector = u32::from_be_bytes(r.array("sector")?);
                let [flags] = r.array("flags")?;
                if flags & !3 != 0 {
                    r.pos -= 1;
                    return Err(r.bad(
                        "flags",
                        format!("unknown flag bits {flags:#04x}, expected only bits 0 and 1"),
                    ));
                }
                let name_s = r.string16("name")?;
                let identity = r.string16("identity")?;
                Frame::Hello(Hello {
                    version,
                    size,
                    sector,
                    sparse: flags & 1 != 0,
                    tree: flags & 2 != 0,
                    name: name_s,
                    identity,
                })
            }
            2 => Frame::Welcome(r.rest_text("mapfile")?),
            3 => Frame::Refuse(r.rest_text("reason")?),
            4 => {
                let offset = u64::from_be_bytes(r.array("offset")?);
                let mut body = body;
                body.drain(..8);
                return Ok(Frame::Data {
                    offset,
                    bytes: body,
                });
            }
            5 => Frame::SaveMap(r.rest_text("mapfile")?),
            6 => Frame::Ack,
            7 => Frame::Finish(u64::from_be_bytes(r.array("size")?)),
            8 => Frame::HashRequest,
            9 => Frame::Digest(r.array("digest")?),
            10 => Frame::Bye,
            11 => {
                let [k] = r.array("kind")?;
                let kind = match k {
                    0 => EntryKind::Dir,
                    1 => EntryKind::File,
                    2 => EntryKind::Symlink,
                    3 => EntryKind::DirTimes,
                    _ => {
                        r.pos -= 1;
                        return Err(r.bad("kind", format!("{k}, expected 0 to 3")));
                    }
                };
                let mode = u32::from_be_bytes(r.array("mode")?);
                let size = u64::from_be_bytes(r.array("size")?);
                let atime = u32::from_be_bytes(r.array("atime")?);
                let mtime = u32::from_be_bytes(r.array("mtime")?);
                let path = r.string16("path")?;
                let target = r.string16("target")?;
                Frame::Entry(Entry {
                    kind,
                    mode,
                    size,
                    atime,
                    mtime,
                    path,
                    target,
                })
            }
            12 => Frame::Accept(u64::from_be_bytes(r.array("offset")?)),
            13 => Frame::Skip(r.rest_text("reason")?),
            14 => {
                let sha256 = r.array("sha256")?;
                let n = u32::from_be_bytes(r.array("count")?) as usize;
                let left = (r.body.len() - r.pos) / 16;
                if n > MAX_LOST_RANGES || n > left {
                    r.pos -= 4;
                    return Err(r.bad(
                        "count",
                        format!(
                            "{n} ranges, expected at most {} and room for {left}",
                            MAX_LOST_RANGES
                        ),
                    ));
                }
                let mut lost = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = u64::from_be_bytes(r.array("range start")?);
                    let l = u64::from_be_bytes(r.array("range length")?);
                    lost.push((s, l));
                }
                Frame::FileEnd { sha256, lost }
            }
            _ => return Err(FrameError::UnknownType { ty }),
        };
        r.end()?;
        Ok(f)
    }
}

fn frame_name(ty: u8) -> &'static str {
    match ty {
        1 => "Hello",
        2 => "Welcome",
        3 => "Refuse",
        4 => "Data",
        5 => "SaveMap",
        6 => "Ack",
        7 => "Finish",
        8 => "HashRequest",
        9 => "Digest",
        10 => "Bye",
        11 => "Entry",
        12 => "Accept",
        13 => "Skip",
        14 => "FileEnd",
        _ => "unknown",
    }
}

struct Reader<'a> {
    frame: &'static str,
    body: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn bad(&self, field: &'static str, detail: String) -> FrameError {
        FrameError::Bad {
            frame: self.frame,
            field,
            offset: self.pos,
            detail,
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let left = self.body.len() - self.pos;
        match self.body.get(self.pos..self.pos + N) {
            Some(s) => {
                self.pos += N;
                Ok(s.try_into().expect("N bytes"))
            }
            None => Err(self.bad(field, format!("expected {N} bytes, found {left}"))),
        }
    }

    fn string16(&mut self, field: &'static str) -> Result<String, FrameError> {
        let n = usize::from(u16::from_be_bytes(self.array(field)?));
        let left = self.body.len() - self.pos;
        let Some(s) = self.body.get(self.pos..self.pos + n) else {
            return Err(self.bad(field, format!("length {n}, only {left} bytes left")));
        };
        let s = std::str::from_utf8(s)
            .map_err(|e| self.bad(field, format!("not UTF-8 at byte {}", e.valid_up_to())))?
            .to_string();
        self.pos += n;
        Ok(s)
    }

    fn rest_text(&mut self, field: &'static str) -> Result<String, FrameError> {
        let s = std::str::from_utf8(&self.body[self.pos..])
            .map_err(|e| self.bad(field, format!("not UTF-8 at byte {}", e.valid_up_to())))?
            .to_string();
        self.pos = self.body.len();
        Ok(s)
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.pos == self.body.len() {
            Ok(())
        } else {
            Err(self.bad(
                "end",
                format!("{} bytes after the last field", self.body.len() - self.pos),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello {
                version: VERSION,
                size: 1 << 40,
                sector: 4096,
                sparse: true,
                tree: false,
                name: "disk0.img".into(),
                identity: "wwid naa.5000".into(),
            }),
            Frame::Welcome(String::new()),
            Frame::Welcome("0x0 ? 1\n".into()),
            Frame::Refuse("no".into()),
            Frame::Data {
                offset: 512,
                bytes: vec![1, 2, 3],
            },
            Frame::SaveMap("# map".into()),
            Frame::Ack,
            Frame::Finish(99),
            Frame::HashRequest,
            Frame::Digest([7; 32]),
            Frame::Bye,
            Frame::Hello(Hello {
                version: VERSION,
                size: 5,
                sector: 0,
                sparse: false,
                tree: true,
                name: "vms".into(),
                identity: "vmfs uuid".into(),
            }),
            Frame::Entry(Entry {
                kind: EntryKind::File,
                mode: 0o644,
                size: 1 << 33,
                atime: 1,
                mtime: 2,
                path: "vm1/disk-flat.vmdk".into(),
                target: String::new(),
            }),
            Frame::Entry(Entry {
                kind: EntryKind::Symlink,
                mode: 0,
                size: 0,
                atime: 1,
                mtime: 2,
                path: "link".into(),
                target: "../x".into(),
            }),
            Frame::Accept(77),
            Frame::Skip("in the way".into()),
            Frame::FileEnd {
                sha256: [3; 32],
                lost: vec![(0, 512), (4096, 1024)],
            },
            Frame::FileEnd {
                sha256: [3; 32],
                lost: vec![],
            },
        ]
    }

    #[test]
    fn frames_roundtrip() {
        for f in samples() {
            let b = f.encode();
            assert_eq!(Frame::parse(&b), Ok((f.clone(), b.len())), "{f:?}");
            // Every cut is incomplete, never a panic or a wrong frame.
            for cut in 0..b.len() {
                assert!(matches!(
                    Frame::parse(&b[..cut]),
                    Err(FrameError::Incomplete { .. })
                ));
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut b = Frame::Finish(1).encode();
        b.push(0);
        b[4] += 1;
        let e = Frame::parse(&b).unwrap_err().to_string();
        assert!(e.contains("Finish frame, end at body offset 8"), "{e}");
        let e = Frame::parse(&[0, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("unknown type 0"), "{e}");
        let e = Frame::parse(&[4, 0xff, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        let e = Frame::parse(&[9, 0, 0, 0, 3, 1, 2, 3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Digest frame, digest at body offset 0: expected 32 bytes, found 3"),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::parse(&bytes);
        }

        #[test]
        fn typed_garbage_never_panics(ty in 0u8..16, body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut b = vec![ty];
            b.extend_from_slice(&(body.len() as u32).to_be_bytes());
            b.extend_from_slice(&body);
            if let Ok((f, n)) = Frame::parse(&b) {
                prop_assert_eq!(n, b.len());
                // What parses re-encodes to the same bytes.
                prop_assert_eq!(f.encode(), b);
            }
        }

        #[test]
        fn mutated_frames_never_panic(i in any::<usize>(), pos in any::<usize>(), val in any::<u8>()) {
            let s = samples();
            let mut b = s[i % s.len()].encode();
            let p = pos % b.len();
            b[p] = val;
            let _ = Frame::parse(&b);
        }
    }
}
