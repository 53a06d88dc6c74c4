//! The appliance's end: `rescue image SRC rescue://HOST:PORT/NAME`. The
//! imaging engine runs as for a local image, writing through
//! [`RemoteSink`]: data goes out as it is read, and every mapfile save is
//! a round trip in which the receiver fsyncs the image and then replaces
//! its mapfile, so the receiver's map never claims data it does not have.

use crate::channel::{self, Channel, HandshakeError};
use crate::code::PairingCode;
use crate::frame::{Frame, Hello, VERSION};
use blockdev::BlockDevice;
use ddmap::{Header, Map};
use imaging::progress::Progress;
use imaging::{MapStore, Options, Outcome, Report, Sink};
use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// `rescue://HOST:PORT/NAME`, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `HOST:PORT` (`[v6]:PORT` for IPv6).
    pub addr: String,
    pub name: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("rescue://")
            .ok_or_else(|| format!("'{url}': expected rescue://HOST:PORT/NAME"))?;
        let (addr, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("'{url}': no /NAME after HOST:PORT"))?;
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if port.is_none_or(|p| p.parse::<u16>().is_err()) || addr.starts_with(':') {
            return Err(format!(
                "'{url}': expected HOST:PORT before /NAME, found '{addr}'"
            ));
        }
        crate::store::check_name(name).map_err(|e| format!("'{url}': {e}"))?;
        Ok(Target {
            addr: addr.to_string(),
            name: name.to_string(),
        })
    }

    pub fn url(&self) -> String {
        format!("rescue://{}/{}", self.addr, self.name)
    }
}

/// What to send.
pub struct SendJob<'a> {
    pub source: &'a dyn BlockDevice,
    /// Names the source for the receiver's overwrite check ([`source_identity`]).
    pub identity: String,
    pub sparse: bool,
    pub options: Options,
    /// For the mapfile's heading.
    pub command_line: String,
}

/// Why sending failed before or around the copy.
#[derive(Debug)]
pub enum SendError {
    Connect(String),
    Handshake(HandshakeError),
    /// The receiver said no (its reason).
    Refused(String),
    /// The receiver's answer makes no sense.
    Protocol(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "{e}"),
            SendError::Handshake(e) => write!(f, "{e}"),
            SendError::Refused(e) => write!(f, "the receiver refused: {e}"),
            SendError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// How a send ended.
#[derive(Debug)]
pub struct SendReport {
    pub report: Report,
    /// Bytes the receiver already had when this run started.
    pub resumed_from: Option<u64>,
    /// The source's digest (bad areas as zeros), when the copy completed.
    pub sha256: Option<[u8; 32]>,
    /// The receiver's digest.
    pub receiver_sha256: Option<[u8; 32]>,
    /// Set when verification could not run (re-reading the source failed, the link dropped).
    pub verify_error: Option<String>,
}

impl SendReport {
    /// Both digests are there and equal.
    pub fn verified(&self) -> bool {
        self.sha256.is_some() && self.sha256 == self.receiver_sha256
    }

    /// 0 all rescued and verified; 1 bad areas remain (verified) or
    /// interrupted; 2 the link or the receiver failed, or a mismatch.
    pub fn exit_code(&self) -> i32 {
        match self.report.outcome {
            Outcome::Completed if self.verified() && self.report.all_rescued() => 0,
            Outcome::Completed if self.verified() => 1,
            Outcome::Interrupted => 1,
            _ => 2,
        }
    }
}

/// The sink that streams to the receiver.
pub struct RemoteSink<'a> {
    ch: &'a mut Channel,
}

impl RemoteSink<'_> {
    /// Waits for the receiver's Ack; its refusal becomes the error.
    fn ack(&mut self) -> io::Result<()> {
        match self.ch.recv()? {
            Frame::Ack => Ok(()),
            Frame::Refuse(why) => Err(io::Error::other(format!("the receiver: {why}"))),
            f => Err(io::Error::other(format!(
                "the receiver sent {f:?} instead of Ack"
            ))),
        }
    }
}

impl Sink for RemoteSink<'_> {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        // 1 MiB frames at most (the engine's reads are at most a cluster).
        for (i, c) in buf.chunks(1 << 20).enumerate() {
            self.ch.send_data(offset + (i as u64) * (1 << 20), c)?;
        }
        Ok(())
    }
    fn finish(&mut self, size: u64) -> io::Result<()> {
        self.ch.send(&Frame::Finish(size))?;
        self.ack()
    }
    fn sync(&mut self) -> io::Result<()> {
        // The receiver fsyncs the image before it saves each map.
        Ok(())
    }
    fn keeps_map(&self) -> bool {
        true
    }
    fn save_map(&mut self, text: &str) -> io::Result<()> {
        self.ch.send(&Frame::SaveMap(text.to_string()))?;
        self.ack()
    }
}

/// Connects to `addr`, trying each address it resolves to (10 s each).
pub fn connect(addr: &str) -> Result<TcpStream, SendError> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| SendError::Connect(format!("{addr}: {e}")))?;
    let mut last = format!("{addr}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(SendError::Connect(last))
}

/// Pairs with the receiver at `target`, gets its map, runs the engine
/// from it, and at the end compares the source's digest with the image's.
/// `note` gets the human lines (resume, verification).
pub fn send(
    job: &SendJob,
    target: &Target,
    code: &PairingCode,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(&Progress),
    note: &mut dyn FnMut(String),
) -> Result<SendReport, SendError> {
    let stream = connect(&target.addr)?;
    let mut ch = channel::connect(stream, code).map_err(SendError::Handshake)?;
    let size = job.source.size();
    ch.send(&Frame::Hello(Hello {
        version: VERSION,
        size,
        sector: job.source.logical_sector_size(),
        sparse: job.sparse,
        tree: false,
        name: target.name.clone(),
        identity: job.identity.clone(),
    }))
    .map_err(|e| SendError::Connect(e.to_string()))?;
    let text = match ch.recv() {
        Ok(Frame::Welcome(t)) => t,
        Ok(Frame::Refuse(why)) => return Err(SendError::Refused(why)),
        Ok(f) => {
            return Err(SendError::Protocol(format!(
                "the receiver sent {f:?} instead of Welcome"
            )))
        }
        Err(e) => return Err(SendError::Protocol(format!("the receiver: {e}"))),
    };
    let mut map = if text.is_empty() {
        Map::new(size)
    } else {
        let parsed = ddmap::parse(&text)
            .map_err(|e| SendError::Protocol(format!("the receiver's mapfile: {e}")))?;
        let m = parsed.map.unwrap_or_else(|| Map::new(size));
        m.check_size(size, Some(&parsed.block_lines))
            .map_err(|e| SendError::Protocol(format!("the receiver's mapfile: {e}")))?;
        m
    };
    let resumed_from = (!text.is_empty()).then(|| map.bytes(ddmap::Status::Finished));
    if let Some(b) = resumed_from {
        note(format!(
            "resuming from the receiver's mapfile: {b} bytes already rescued"
        ));
    }
    let store = MapStore {
        path: None,
        header: Header {
            command_line: job.command_line.clone(),
            start_time: ddmap::utc_now(),
            phase_message: String::new(),
        },
    };
    let report = {
        let mut sink = RemoteSink { ch: &mut ch };
        imaging::rescue(
            job.source,
            &mut sink,
            &mut map,
            &store,
            &job.options,
            stop,
            on_progress,
        )
    };
    let mut out = SendReport {
        report,
        resumed_from,
        sha256: None,
        receiver_sha256: None,
        verify_error: None,
    };
    match out.report.outcome {
        Outcome::Completed => {
            if let Err(e) = verify(&mut ch, job.source, &map, &mut out) {
                out.verify_error = Some(e);
            }
        }
        Outcome::Interrupted => {
            let _ = ch.send(&Frame::Bye);
        }
        _ => {}
    }
    ch.close();
    Ok(out)
}

/// The digest exchange: the receiver hashes its image while we hash the
/// source (re-reading only the finished areas), then each compares.
fn verify(
    ch: &mut Channel,
    src: &dyn BlockDevice,
    map: &Map,
    out: &mut SendReport,
) -> Result<(), String> {
    ch.send(&Frame::HashRequest)
        .map_err(|e| format!("asking for the receiver's digest: {e}"))?;
    let ours = imaging::hash::image_sha256(src, map).map_err(|e| {
        let _ = ch.send(&Frame::Bye);
        format!("re-reading the source to verify the image failed: {e}")
    })?;
    out.sha256 = Some(ours);
    let theirs = match ch.recv() {
        Ok(Frame::Digest(d)) => d,
        Ok(Frame::Refuse(why)) => return Err(format!("the receiver: {why}")),
        Ok(f) => return Err(format!("the receiver sent {f:?} instead of its digest")),
        Err(e) => return Err(format!("waiting for the receiver's digest: {e}")),
    };
    out.receiver_sha256 = Some(theirs);
    ch.send(&Frame::Digest(ours))
        .map_err(|e| format!("sending our digest: {e}"))?;
    // The receiver's verdict (it says the same as our own comparison).
    let _ = ch.recv();
    let _ = ch.send(&Frame::Bye);
    Ok(())
}

/// Names the source for the receiver: for a disk or partition its WWID or
/// serial from sysfs (the same disk after a reboot, whatever its /dev
/// name), else the canonical path.
pub fn source_identity(path: &str) -> String {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
    let base = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = std::path::Path::new("/sys/class/block").join(&base);
    let is_part = sys.join("partition").exists();
    let part = if is_part {
        std::fs::read_to_string(sys.join("partition"))
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        String::new()
    };
    let disk = if is_part { sys.join("..") } else { sys.clone() };
    for f in ["wwid", "device/wwid", "device/serial", "serial"] {
        if let Ok(s) = std::fs::read_to_string(disk.join(f)) {
            let s = s.trim();
            if !s.is_empty() {
                let kind = f.rsplit('/').next().unwrap_or(f);
                return if is_part {
                    format!("{kind} {s} partition {part}")
                } else {
                    format!("{kind} {s}")
                };
            }
        }
    }
    format!("path {}", canon.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("rescue://lab.example:7000/disk0.img").unwrap();
        assert_eq!(
            t,
            Target {
                addr: "lab.example:7000".into(),
                name: "disk0.img".into()
            }
        );
        assert_eq!(t.url(), "rescue://lab.example:7000/disk0.img");
        assert_eq!(
            Target::parse("rescue://[::1]:7000/d").unwrap().addr,
            "[::1]:7000"
        );
        for bad in [
            "nfs://h/x",
            "rescue://host/x",
            "rescue://host:x/y",
            "rescue://host:7000",
            "rescue://host:7000/../x",
            "rescue://host:7000/a/b",
            "rescue://host:7000/",
            "rescue://:7000/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
