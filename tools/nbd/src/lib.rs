//! A read-only NBD server over any [`BlockDevice`]: what turns a VM disk
//! read through its snapshot chain, a file inside a datastore or an image
//! into a kernel block device (the kernel's NBD client speaks the
//! transmission phase over a socket pair) or a disk for a network client.
//!
//! The protocol (NetworkBlockDevice/nbd `doc/proto.md`), all integers
//! big-endian:
//! - handshake, fixed newstyle: the server sends `NBDMAGIC`, `IHAVEOPT`
//!   and its handshake flags (u16); the client its flags (u32); then options
//!   (`IHAVEOPT`, option u32, length u32, data), each answered with
//!   `0x3e889045565a9`, the option, a reply type u32, length u32, data;
//!   `NBD_OPT_EXPORT_NAME` ends it with the size (u64) and transmission
//!   flags (u16), `NBD_OPT_GO` with `NBD_REP_INFO` (export info) and
//!   `NBD_REP_ACK`;
//! - transmission: requests (magic `0x25609513`, flags u16, type u16,
//!   cookie u64, offset u64, length u32; a write's data follows) answered
//!   by simple replies (magic `0x67446698`, error u32, cookie u64; a read's
//!   data follows when the error is 0).
//!
//! The export is read-only: `NBD_FLAG_READ_ONLY` is set and writes, trims
//! and zeroing are refused with EPERM. A read the device fails is answered
//! with EIO, and the connection goes on.
//!
//! There is one export, and its name is checked: `NBD_OPT_GO`/`INFO` for
//! another name are answered `NBD_REP_ERR_UNKNOWN`, `NBD_OPT_EXPORT_NAME`
//! (which has no error reply) ends the connection, and after
//! [`MAX_WRONG_NAMES`] wrong names the connection is closed. A server
//! whose name is its secret (`rescue export`'s token) does not list it
//! ([`Offer::listed`]): `NBD_OPT_LIST` is then answered
//! `NBD_REP_ERR_POLICY`.

use blockdev::BlockDevice;
use std::io::{self, Read, Write};

pub mod parallel;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const CLIENT_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags: has flags, read-only, flush accepted (a no-op),
/// several connections may read at once.
pub const TRANSMISSION_FLAGS: u16 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 8);

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_POLICY: u32 = (1 << 31) + 2;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// Option data larger than this is refused (the protocol's strings are at
/// most 4 KiB).
const MAX_OPTION: u32 = 64 << 10;
/// The largest read answered (clients ask for at most 32 MiB).
pub const MAX_READ: u32 = 32 << 20;

/// Wrong export names one connection may ask for before it is closed.
pub const MAX_WRONG_NAMES: u32 = 3;

/// How a client's session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client disconnected (NBD_CMD_DISC, or closed the connection).
    Disconnected,
    /// The client gave up during the handshake (NBD_OPT_ABORT).
    Aborted,
    /// The client asked for an export of another name (the last one it
    /// asked for, lossily as text, at most 64 characters) with
    /// `NBD_OPT_EXPORT_NAME`, or [`MAX_WRONG_NAMES`] times: the
    /// connection is to be closed.
    Refused { asked: String },
}

/// What the handshake offers a client: one export.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// The export's name; a client asking for another is refused.
    pub name: &'a str,
    /// Whether `NBD_OPT_LIST` names the export. When the name is the
    /// secret that lets a client in, it must not: the list is then refused
    /// with `NBD_REP_ERR_POLICY`.
    pub listed: bool,
}

/// What the server counted, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub reads: u64,
    pub bytes: u64,
    /// Reads answered with EIO.
    pub read_errors: u64,
    /// Writes, trims and other requests refused.
    pub refused: u64,
}

/// A connection whose reading and writing halves can be used from two
/// threads (the parallel transmission reads requests on one and replies
/// from the workers on the other).
pub trait Duplex: Read + Write + Send + Sized + 'static {
    fn other_half(&self) -> io::Result<Self>;
}

impl Duplex for std::os::unix::net::UnixStream {
    fn other_half(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

impl Duplex for std::net::TcpStream {
    fn other_half(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

/// Serves `dev` read-only as export `name` on `conn`: the handshake, then
/// requests until the client disconnects ([`parallel::transmission`]).
/// Errors are the connection's (and a client that breaks the protocol).
pub fn serve<S: Duplex>(
    dev: std::sync::Arc<dyn BlockDevice>,
    name: &str,
    mut conn: S,
    opts: &parallel::Options,
) -> io::Result<(End, Counts)> {
    let end = handshake(dev.as_ref(), name, &mut conn)?;
    if end != End::Disconnected {
        return Ok((end, Counts::default()));
    }
    let writer = conn.other_half()?;
    parallel::transmission(dev, conn, writer, opts)
}

/// The fixed-newstyle handshake for export `name` (listed by
/// `NBD_OPT_LIST`); `Disconnected` when it reached the transmission phase.
pub fn handshake(
    dev: &dyn BlockDevice,
    name: &str,
    conn: &mut (impl Read + Write),
) -> io::Result<End> {
    handshake_offer(dev, Offer { name, listed: true }, conn)
}

/// The fixed-newstyle handshake for the export `offer` describes:
/// `Disconnected` when it reached the transmission phase, `Aborted` when
/// the client gave up (NBD_OPT_ABORT, or closed the connection between
/// options), `Refused` when it asked for other names and did not get in
/// (close the connection then).
pub fn handshake_offer(
    dev: &dyn BlockDevice,
    offer: Offer<'_>,
    conn: &mut (impl Read + Write),
) -> io::Result<End> {
    let mut asked = None;
    match options(dev, offer, conn, &mut asked) {
        Ok(End::Aborted) | Err(Left) => Ok(match asked {
            Some(asked) => End::Refused { asked },
            None => End::Aborted,
        }),
        Ok(end) => Ok(end),
        Err(Failed(e)) => Err(e),
    }
}

/// Why the option loop stopped short.
enum Short {
    /// The connection ended between options.
    Left,
    Failed(io::Error),
}
use Short::{Failed, Left};

impl From<io::Error> for Short {
    fn from(e: io::Error) -> Short {
        Failed(e)
    }
}

/// The handshake's exchange; `asked`: the last wrong name asked for.
fn options(
    dev: &dyn BlockDevice,
    offer: Offer<'_>,
    conn: &mut (impl Read + Write),
    asked: &mut Option<String>,
) -> Result<End, Short> {
    let name = offer.name;
    let mut wrong = 0u32;
    let mut hello = Vec::with_capacity(18);
    hello.extend(NBDMAGIC.to_be_bytes());
    hello.extend(IHAVEOPT.to_be_bytes());
    hello.extend((FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    conn.write_all(&hello)?;
    conn.flush()?;
    let client_flags = read_u32(conn)?;
    loop {
        let magic = match read_u64(conn) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Left),
            Err(e) => return Err(Failed(e)),
        };
        if magic != IHAVEOPT {
            return Err(Failed(protocol(format!(
                "option magic {magic:#x}, expected IHAVEOPT"
            ))));
        }
        let option = read_u32(conn)?;
        let len = read_u32(conn)?;
        if len > MAX_OPTION {
            return Err(Failed(protocol(format!(
                "option {option} with {len} bytes of data"
            ))));
        }
        let mut data = vec![0u8; len as usize];
        conn.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                if !same_name(&data, name.as_bytes()) {
                    // This option has no error reply: the connection ends.
                    return Ok(End::Refused {
                        asked: shown_name(&data),
                    });
                }
                // No reply header: the export's size and flags, then data.
                let mut r = Vec::with_capacity(10 + 124);
                r.extend(dev.size().to_be_bytes());
                r.extend(TRANSMISSION_FLAGS.to_be_bytes());
                if client_flags & CLIENT_NO_ZEROES == 0 {
                    r.extend([0u8; 124]);
                }
                conn.write_all(&r)?;
                conn.flush()?;
                return Ok(End::Disconnected);
            }
            OPT_GO | OPT_INFO => {
                let Some(requested) = parse_info_request(&data) else {
                    reply(conn, option, REP_ERR_INVALID, b"malformed request")?;
                    continue;
                };
                if !same_name(requested, name.as_bytes()) {
                    wrong += 1;
                    *asked = Some(shown_name(requested));
                    if wrong >= MAX_WRONG_NAMES {
                        return Ok(End::Refused {
                            asked: shown_name(requested),
                        });
                    }
                    reply(conn, option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                *asked = None;
                let mut export = Vec::with_capacity(12);
                export.extend(INFO_EXPORT.to_be_bytes());
                export.extend(dev.size().to_be_bytes());
                export.extend(TRANSMISSION_FLAGS.to_be_bytes());
                reply(conn, option, REP_INFO, &export)?;
                let mut sizes = Vec::with_capacity(14);
                sizes.extend(INFO_BLOCK_SIZE.to_be_bytes());
                sizes.extend(1u32.to_be_bytes());
                sizes.extend(dev.logical_sector_size().max(512).to_be_bytes());
                sizes.extend(MAX_READ.to_be_bytes());
                reply(conn, option, REP_INFO, &sizes)?;
                reply(conn, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return Ok(End::Disconnected);
                }
            }
            OPT_LIST if !offer.listed => {
                reply(conn, option, REP_ERR_POLICY, b"exports are not listed")?;
            }
            OPT_LIST => {
                let mut server = Vec::with_capacity(4 + name.len());
                server.extend((name.len() as u32).to_be_bytes());
                server.extend(name.as_bytes());
                reply(conn, option, REP_SERVER, &server)?;
                reply(conn, option, REP_ACK, &[])?;
            }
            OPT_ABORT => {
                let _ = reply(conn, option, REP_ACK, &[]);
                return Ok(End::Aborted);
            }
            // Structured replies, metadata contexts, TLS: not offered.
            _ => reply(conn, option, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// `NBD_OPT_GO`/`INFO` data: name length u32, name, count u16, that many
/// u16 info types. The name; None when it does not add up.
fn parse_info_request(data: &[u8]) -> Option<&[u8]> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(name_len)?;
    let asked = data.get(4..end)?;
    let rest = data.get(end..)?;
    let n = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    (rest.len() == 2 + 2 * n).then_some(asked)
}

/// Whether the client asked for `ours`, in time that depends only on the
/// lengths (the name may be a secret).
fn same_name(asked: &[u8], ours: &[u8]) -> bool {
    asked.len() == ours.len() && asked.iter().zip(ours).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// A name a client asked for, for the log: lossy text, control characters
/// dropped, at most 64 characters.
fn shown_name(asked: &[u8]) -> String {
    String::from_utf8_lossy(asked)
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn reply(conn: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut r = Vec::with_capacity(20 + data.len());
    r.extend(OPT_REPLY_MAGIC.to_be_bytes());
    r.extend(option.to_be_bytes());
    r.extend(kind.to_be_bytes());
    r.extend((data.len() as u32).to_be_bytes());
    r.extend(data);
    conn.write_all(&r)?;
    conn.flush()
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("NBD client: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;
    use proptest::prelude::*;

    /// A client's whole side of the handshake, given at once; what the
    /// server answers is kept.
    struct Scripted {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn option(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend(IHAVEOPT.to_be_bytes());
        o.extend(kind.to_be_bytes());
        o.extend((data.len() as u32).to_be_bytes());
        o.extend(data);
        o
    }

    fn go(kind: u32, name: &str) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend((name.len() as u32).to_be_bytes());
        d.extend(name.as_bytes());
        d.extend(0u16.to_be_bytes());
        option(kind, &d)
    }

    /// One option reply: option, reply type, data.
    type OptionReply = (u32, u32, Vec<u8>);

    /// Runs the handshake on `options`; the end and the option replies.
    fn run(offer: Offer<'_>, options: &[Vec<u8>]) -> (io::Result<End>, Vec<OptionReply>) {
        let dev = MemDevice::new(vec![0; 4096], 512);
        let mut input = CLIENT_NO_ZEROES.to_be_bytes().to_vec();
        for o in options {
            input.extend(o);
        }
        let mut conn = Scripted {
            input: io::Cursor::new(input),
            output: Vec::new(),
        };
        let end = handshake_offer(&dev, offer, &mut conn);
        let out = conn.output;
        assert_eq!(&out[..16], b"NBDMAGICIHAVEOPT");
        let mut replies = Vec::new();
        let mut at = 18;
        while out.len() >= at + 20 && out[at..at + 8] == OPT_REPLY_MAGIC.to_be_bytes() {
            let option = u32::from_be_bytes(out[at + 8..at + 12].try_into().unwrap());
            let kind = u32::from_be_bytes(out[at + 12..at + 16].try_into().unwrap());
            let len = u32::from_be_bytes(out[at + 16..at + 20].try_into().unwrap()) as usize;
            replies.push((option, kind, out[at + 20..at + 20 + len].to_vec()));
            at += 20 + len;
        }
        (end, replies)
    }

    const SECRET: Offer<'static> = Offer {
        name: "token",
        listed: false,
    };

    #[test]
    fn the_right_name_goes_and_a_wrong_one_is_unknown() {
        let (end, replies) = run(SECRET, &[go(OPT_GO, "tokem"), go(OPT_GO, "token")]);
        assert_eq!(end.unwrap(), End::Disconnected);
        let kinds: Vec<u32> = replies.iter().map(|r| r.1).collect();
        assert_eq!(kinds, [REP_ERR_UNKNOWN, REP_INFO, REP_INFO, REP_ACK]);
        let (end, replies) = run(SECRET, &[go(OPT_INFO, ""), go(OPT_INFO, "token")]);
        assert_eq!(end.unwrap(), End::Aborted, "left after INFO");
        let kinds: Vec<u32> = replies.iter().map(|r| r.1).collect();
        assert_eq!(kinds, [REP_ERR_UNKNOWN, REP_INFO, REP_INFO, REP_ACK]);
    }

    #[test]
    fn a_client_that_leaves_after_a_wrong_name_was_refused() {
        let (end, _) = run(SECRET, &[go(OPT_GO, "guess")]);
        let refused = End::Refused {
            asked: "guess".into(),
        };
        assert_eq!(end.unwrap(), refused);
        let (end, _) = run(SECRET, &[go(OPT_GO, "guess"), option(OPT_ABORT, &[])]);
        assert_eq!(end.unwrap(), refused);
        let (end, _) = run(SECRET, &[option(OPT_LIST, &[])]);
        assert_eq!(end.unwrap(), End::Aborted);
        // Cut in the middle of an option: an error.
        let (end, _) = run(SECRET, &[go(OPT_GO, "guess")[..10].to_vec()]);
        assert!(end.is_err());
    }

    #[test]
    fn wrong_names_end_the_connection() {
        let (end, _) = run(SECRET, &[option(OPT_EXPORT_NAME, b"guess")]);
        assert_eq!(
            end.unwrap(),
            End::Refused {
                asked: "guess".into()
            }
        );
        let tries: Vec<Vec<u8>> = (0..MAX_WRONG_NAMES + 2)
            .map(|i| go(OPT_GO, &format!("guess{i}")))
            .chain([go(OPT_GO, "token")])
            .collect();
        let (end, replies) = run(SECRET, &tries);
        assert_eq!(
            end.unwrap(),
            End::Refused {
                asked: format!("guess{}", MAX_WRONG_NAMES - 1)
            }
        );
        assert_eq!(replies.len() as u32, MAX_WRONG_NAMES - 1);
        assert!(replies.iter().all(|r| r.1 == REP_ERR_UNKNOWN));
    }

    #[test]
    fn a_secret_name_is_not_listed() {
        let (_, replies) = run(SECRET, &[option(OPT_LIST, &[])]);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].1, REP_ERR_POLICY);
        assert!(!replies[0].2.windows(5).any(|w| w == b"token"));
        let listed = Offer {
            name: "disk",
            listed: true,
        };
        let (_, replies) = run(listed, &[option(OPT_LIST, &[])]);
        assert_eq!(replies[0].1, REP_SERVER);
        assert_eq!(&replies[0].2[4..], b"disk");
    }

    proptest! {
        /// Whatever a client sends, the handshake answers or fails; it
        /// never panics, and never goes on without the right name.
        #[test]
        fn random_clients_never_panic(
            chunks in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..40),
                    (0u32..10, proptest::collection::vec(any::<u8>(), 0..24))
                        .prop_map(|(k, d)| option(k, &d)),
                    (6u32..8, "[a-z]{0,6}").prop_map(|(k, n)| go(k, &n)),
                ],
                0..8,
            )
        ) {
            let (end, _) = run(SECRET, &chunks);
            if let Ok(End::Disconnected) = end {
                let all: Vec<u8> = chunks.concat();
                prop_assert!(all.windows(5).any(|w| w == b"token"));
            }
        }
    }
}
