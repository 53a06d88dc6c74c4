//! The encrypted, authenticated channel: Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s
//! over one TCP connection, keyed by the pairing code.
//!
//! Why NNpsk0: neither end has a long-term key, the pairing code is the only
//! shared secret. NN gives each session fresh ephemeral keys (forward
//! secrecy); psk0 mixes the code in before the first message, so the
//! receiver rejects a wrong code on the very first message, before it
//! sends anything encrypted, and the sender rejects a receiver that does
//! not know the code on the second. XXpsk3 would add static keys that
//! nobody could verify.
//!
//! Wire format (integers big-endian):
//!
//! | who      | bytes                                                            |
//! |----------|------------------------------------------------------------------|
//! | sender   | magic `RSQ1` (4), u16 n, Noise message 1 (n bytes: e, psk)        |
//! | receiver | u8 status: 0 accepted, 1 wrong code, 2 busy, 3 unknown magic      |
//! | receiver | if accepted: u16 n, Noise message 2 (n bytes: e, ee)              |
//! | both     | then transport messages: u16 n, n bytes of ChaChaPoly ciphertext  |
//!
//! The transport messages carry a byte stream of [`Frame`]s. Each message's
//! nonce is implicit and counts up, so a flipped, dropped, repeated or
//! reordered byte fails authentication and ends the session. The refusal
//! statuses are plaintext: someone on the path could forge one, which
//! stops the session, as cutting the cable would.

use crate::code::PairingCode;
use crate::frame::{Frame, FrameError, HEADER};
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"rescue labstream 1";
const MAGIC: &[u8; 4] = b"RSQ1";
const NOISE_MAX: usize = 65535;
const TAG: usize = 16;
/// Plaintext per transport message.
const CHUNK: usize = NOISE_MAX - TAG;

const ACCEPTED: u8 = 0;
const WRONG_CODE: u8 = 1;
const BUSY: u8 = 2;
const BAD_MAGIC: u8 = 3;

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// Sender side: the receiver says the code is wrong. Receiver side: the
    /// sender's first message does not authenticate with our code.
    WrongCode,
    /// Sender side: the receiver's answer does not authenticate with our
    /// code (not the receiver we paired with).
    ReceiverWrongCode,
    /// The receiver has as many senders as it takes.
    Busy,
    /// Not our protocol (or another version of it).
    Protocol(String),
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::WrongCode => f.write_str("wrong pairing code: the receiver refused it"),
            HandshakeError::ReceiverWrongCode => f.write_str(
                "the receiver's answer does not match the pairing code: wrong code, or not the receiver you paired with",
            ),
            HandshakeError::Busy => {
                f.write_str("the receiver is busy: it already has as many senders as it takes (--max-senders)")
            }
            HandshakeError::Protocol(m) => write!(f, "not a rescue receive handshake: {m}"),
            HandshakeError::Io(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn builder(psk: &[u8; 32]) -> snow::Builder<'_> {
    let params = PATTERN.parse().expect("a valid Noise pattern");
    snow::Builder::new(params)
        .prologue(PROLOGUE)
        .expect("prologue set once")
        .psk(0, psk)
        .expect("psk set once")
}

/// Reports dead peers within about a minute: keepalive probes on an idle
/// link, and a limit on unacknowledged data.
fn keepalive(s: &TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(s, true);
    let _ = sockopt::set_tcp_keepidle(s, Duration::from_secs(15));
    let _ = sockopt::set_tcp_keepintvl(s, Duration::from_secs(5));
    let _ = sockopt::set_tcp_keepcnt(s, 4);
    let _ = sockopt::set_tcp_user_timeout(s, 60_000);
    let _ = s.set_nodelay(true);
}

fn write_msg(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    w.write_all(&(msg.len() as u16).to_be_bytes())?;
    w.write_all(msg)
}

fn read_msg(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut n = [0u8; 2];
    r.read_exact(&mut n)?;
    buf.resize(usize::from(u16::from_be_bytes(n)), 0);
    r.read_exact(buf)
}

/// Sender side: pairs with the receiver on `stream`.
pub fn connect(stream: TcpStream, code: &PairingCode) -> Result<Channel, HandshakeError> {
    keepalive(&stream);
    let psk = code.psk();
    let mut hs = builder(&psk).build_initiator().map_err(noise_err)?;
    let mut buf = vec![0u8; NOISE_MAX];
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    let mut w = BufWriter::new(stream.try_clone()?);
    w.write_all(MAGIC)?;
    write_msg(&mut w, &buf[..n])?;
    w.flush()?;
    let mut r = BufReader::with_capacity(1 << 17, stream.try_clone()?);
    let mut status = [0u8];
    r.read_exact(&mut status).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HandshakeError::Protocol("the receiver closed the connection without an answer".into())
        } else {
            HandshakeError::Io(e)
        }
    })?;
    match status[0] {
        ACCEPTED => {}
        WRONG_CODE => return Err(HandshakeError::WrongCode),
        BUSY => return Err(HandshakeError::Busy),
        BAD_MAGIC => {
            return Err(HandshakeError::Protocol(
                "the receiver speaks another version".into(),
            ))
        }
        s => {
            return Err(HandshakeError::Protocol(format!(
                "unknown handshake status {s}"
            )))
        }
    }
    let mut msg = Vec::new();
    read_msg(&mut r, &mut msg)?;
    hs.read_message(&msg, &mut buf)
        .map_err(|_| HandshakeError::ReceiverWrongCode)?;
    let noise = hs.into_transport_mode().map_err(noise_err)?;
    Ok(Channel::new(stream, r, noise)?)
}

/// Receiver side: checks the sender's first message against `psk`, or
/// refuses it as `busy` (the code is then not checked, and a wrong one
/// is not counted).
pub fn accept(stream: TcpStream, psk: &[u8; 32], busy: bool) -> Result<Channel, HandshakeError> {
    keepalive(&stream);
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::with_capacity(1 << 17, stream.try_clone()?);
    let mut w = BufWriter::new(stream.try_clone()?);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        refuse(&stream, &mut w, BAD_MAGIC);
        return Err(HandshakeError::Protocol(format!(
            "unknown magic {:02x?}",
            magic
        )));
    }
    let mut msg = Vec::new();
    read_msg(&mut r, &mut msg)?;
    if busy {
        refuse(&stream, &mut w, BUSY);
        return Err(HandshakeError::Busy);
    }
    let mut hs = builder(psk).build_responder().map_err(noise_err)?;
    let mut buf = vec![0u8; NOISE_MAX];
    if hs.read_message(&msg, &mut buf).is_err() {
        refuse(&stream, &mut w, WRONG_CODE);
        return Err(HandshakeError::WrongCode);
    }
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    w.write_all(&[ACCEPTED])?;
    write_msg(&mut w, &buf[..n])?;
    w.flush()?;
    stream.set_read_timeout(None)?;
    let noise = hs.into_transport_mode().map_err(noise_err)?;
    Ok(Channel::new(stream, r, noise)?)
}

/// Sends a refusal status and closes gently (so the status is not lost to a reset).
fn refuse(stream: &TcpStream, w: &mut BufWriter<TcpStream>, status: u8) {
    let _ = w.write_all(&[status]);
    let _ = w.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

fn noise_err(e: snow::Error) -> HandshakeError {
    HandshakeError::Protocol(format!("noise: {e}"))
}

/// One paired connection: frames in and out, encrypted.
pub struct Channel {
    stream: TcpStream,
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    noise: snow::TransportState,
    /// Decrypted bytes not yet consumed: `plain[pos..]`.
    plain: Vec<u8>,
    pos: usize,
    /// Plaintext waiting to be sealed into a transport message.
    out: Vec<u8>,
    cipher: Vec<u8>,
    /// Set once receiving failed authentication: nothing after it is trusted.
    broken: bool,
}

impl Channel {
    fn new(
        stream: TcpStream,
        r: BufReader<TcpStream>,
        noise: snow::TransportState,
    ) -> io::Result<Channel> {
        let w = BufWriter::with_capacity(1 << 18, stream.try_clone()?);
        Ok(Channel {
            stream,
            r,
            w,
            noise,
            plain: Vec::new(),
            pos: 0,
            out: Vec::with_capacity(CHUNK),
            cipher: vec![0u8; NOISE_MAX],
            broken: false,
        })
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Sends one frame.
    pub fn send(&mut self, f: &Frame) -> io::Result<()> {
        let b = f.encode();
        self.send_parts(&[&b])
    }

    /// Sends a Data frame without copying `bytes` into a frame first.
    pub fn send_data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len() + 8)
            .ok()
            .filter(|&l| l <= crate::frame::MAX_BODY)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "data chunk too large"))?;
        let mut head = [0u8; HEADER + 8];
        head[0] = 4;
        head[1..5].copy_from_slice(&len.to_be_bytes());
        head[5..].copy_from_slice(&offset.to_be_bytes());
        self.send_parts(&[&head, bytes])
    }

    fn send_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            let mut p: &[u8] = part;
            while !p.is_empty() {
                let take = (CHUNK - self.out.len()).min(p.len());
                self.out.extend_from_slice(&p[..take]);
                p = &p[take..];
                if self.out.len() == CHUNK {
                    self.seal()?;
                }
            }
        }
        if !self.out.is_empty() {
            self.seal()?;
        }
        self.w.flush()
    }

    fn seal(&mut self) -> io::Result<()> {
        let n = self
            .noise
            .write_message(&self.out, &mut self.cipher)
            .map_err(|e| io::Error::other(format!("encrypting: {e}")))?;
        self.out.clear();
        self.w.write_all(&(n as u16).to_be_bytes())?;
        self.w.write_all(&self.cipher[..n])
    }

    /// Receives one frame. A failed authentication is an `InvalidData`
    /// error saying the stream was altered; a closed connection is
    /// `UnexpectedEof`.
    pub fn recv(&mut self) -> io::Result<Frame> {
        let mut head = [0u8; HEADER];
        self.read_plain(&mut head)?;
        let (ty, len) = Frame::check_header(&head).map_err(invalid)?;
        let mut body = vec![0u8; len as usize];
        self.read_plain(&mut body)?;
        Frame::decode(ty, body).map_err(invalid)
    }

    fn read_plain(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.pos == self.plain.len() {
                self.open()?;
                continue;
            }
            let n = buf.len().min(self.plain.len() - self.pos);
            buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
            self.pos += n;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Reads and decrypts the next transport message.
    fn open(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(altered());
        }
        let mut n = [0u8; 2];
        self.r.read_exact(&mut n).map_err(closed)?;
        let n = usize::from(u16::from_be_bytes(n));
        self.cipher.resize(NOISE_MAX, 0);
        self.r.read_exact(&mut self.cipher[..n]).map_err(closed)?;
        self.plain.resize(NOISE_MAX, 0);
        match self.noise.read_message(&self.cipher[..n], &mut self.plain) {
            Ok(m) => {
                self.plain.truncate(m);
                self.pos = 0;
                Ok(())
            }
            Err(_) => {
                self.broken = true;
                self.plain.clear();
                self.pos = 0;
                Err(altered())
            }
        }
    }

    /// Closes both directions.
    pub fn close(&mut self) {
        let _ = self.w.flush();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn invalid(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("protocol error: {e}"))
}

fn altered() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "authentication failed: the stream was altered or corrupted in transit",
    )
}

fn closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, "the connection was closed")
    } else {
        e
    }
}

/// Whether `e` is [`Channel::recv`]'s authentication failure.
pub fn is_altered(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData && e.to_string().starts_with("authentication failed")
}
