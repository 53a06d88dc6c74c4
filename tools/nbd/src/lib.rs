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
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
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

/// How a client's session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client disconnected (NBD_CMD_DISC, or closed the connection).
    Disconnected,
    /// The client gave up during the handshake (NBD_OPT_ABORT).
    Aborted,
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
    if handshake(dev.as_ref(), name, &mut conn)? == End::Aborted {
        return Ok((End::Aborted, Counts::default()));
    }
    let writer = conn.other_half()?;
    parallel::transmission(dev, conn, writer, opts)
}

/// The fixed-newstyle handshake for one export; `Disconnected` when it
/// reached the transmission phase.
pub fn handshake(
    dev: &dyn BlockDevice,
    name: &str,
    conn: &mut (impl Read + Write),
) -> io::Result<End> {
    let mut hello = Vec::with_capacity(18);
    hello.extend(NBDMAGIC.to_be_bytes());
    hello.extend(IHAVEOPT.to_be_bytes());
    hello.extend((FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    conn.write_all(&hello)?;
    conn.flush()?;
    let client_flags = read_u32(conn)?;
    loop {
        let magic = read_u64(conn)?;
        if magic != IHAVEOPT {
            return Err(protocol(format!(
                "option magic {magic:#x}, expected IHAVEOPT"
            )));
        }
        let option = read_u32(conn)?;
        let len = read_u32(conn)?;
        if len > MAX_OPTION {
            return Err(protocol(format!(
                "option {option} with {len} bytes of data"
            )));
        }
        let mut data = vec![0u8; len as usize];
        conn.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
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
                if parse_info_request(&data).is_none() {
                    reply(conn, option, REP_ERR_INVALID, b"malformed request")?;
                    continue;
                }
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
/// u16 info types. None when it does not add up.
fn parse_info_request(data: &[u8]) -> Option<()> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let rest = data.get(4usize.checked_add(name_len)?..)?;
    let n = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    (rest.len() == 2 + 2 * n).then_some(())
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
