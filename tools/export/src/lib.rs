//! `rescue export`: a disk, an image, a VM disk (read through its chain)
//! or a file inside a datastore served read-only over NBD on TCP, so that
//! a lab host reads it with the tools it has: `qemu-img convert
//! nbd://HOST:PORT/TOKEN`, `nbdcopy`, `nbd-client`, guestfish.
//!
//! - The source is opened as `rescue attach` opens it (the front passes
//!   the opener, [`attach::SourceOpener`]), and `--map` makes the
//!   mapfile's unrescued areas read as EIO ([`attach::served_device`]).
//! - The NBD server is [`nbd`]'s: the fixed-newstyle handshake, then the
//!   parallel transmission phase (a pool of readers per client, replies in
//!   any order, each read bounded by a deadline that answers EIO). The
//!   export is read-only: its flags say so and writes, trims and zeroing
//!   are refused with EPERM.
//! - Only while the command runs: a TCP listener on `[ADDR:]PORT`
//!   (IPv4). Clients whose address is not in the allow list are closed
//!   at accept and logged; there is no allow-all default.
//! - The export name is a random token ([`new_token`], 130 bits from
//!   getrandom(2)); a client that asks for another name is refused and
//!   `NBD_OPT_LIST` does not reveal it ([`nbd::Offer::listed`]). The
//!   traffic itself is plain NBD, neither encrypted nor authenticated: the
//!   token keeps out whoever does not have it, on a network the lab
//!   trusts.
//! - Up to [`Options::max_clients`] clients at once, each on a thread of
//!   its own, sharing the source.

pub mod allow;
pub mod cli;

use allow::AllowList;
use blockdev::BlockDevice;
use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Where progress and events go: one line each.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

/// Clients served at once by default.
pub const DEFAULT_MAX_CLIENTS: usize = 4;

/// How to serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// `[ADDR:]PORT`: PORT alone listens on every IPv4 address; port 0
    /// picks a free one.
    pub listen: String,
    pub allow: AllowList,
    pub max_clients: usize,
    /// Per-client reader threads.
    pub readers: usize,
    /// How long one read may take before it is answered with EIO.
    pub deadline: Duration,
    /// How long a client may take over its handshake.
    pub handshake_timeout: Duration,
    /// How often a progress line is shown while bytes are being served.
    pub progress_every: Duration,
}

impl Options {
    pub fn new(listen: &str, allow: AllowList) -> Options {
        Options {
            listen: listen.to_string(),
            allow,
            max_clients: DEFAULT_MAX_CLIENTS,
            readers: attach::READERS,
            deadline: attach::DEFAULT_DEADLINE,
            handshake_timeout: Duration::from_secs(30),
            progress_every: Duration::from_secs(10),
        }
    }
}

/// Characters of the token: RFC 4648 base32, lower case (URLs, typing).
const TOKEN_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters in a token: 26 x 5 = 130 bits.
pub const TOKEN_CHARS: usize = 26;

/// A fresh export name from the kernel's random generator (getrandom(2)).
pub fn new_token() -> io::Result<String> {
    let mut raw = [0u8; TOKEN_CHARS];
    let mut filled = 0;
    while filled < raw.len() {
        filled +=
            rustix::rand::getrandom(&mut raw[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(io::Error::from)?;
    }
    // 256 is a multiple of 32: masking keeps the characters uniform.
    Ok(raw
        .iter()
        .map(|b| TOKEN_ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

/// `[ADDR:]PORT` as a socket address: PORT alone is every IPv4 address.
/// Only IPv4 is served (the allow list is IPv4).
pub fn parse_listen(text: &str) -> Result<SocketAddrV4, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    }
    text.parse::<SocketAddrV4>().map_err(|_| {
        format!("--nbd {text:?}: expected [ADDR:]PORT with an IPv4 address, e.g. 10809 or 192.168.1.5:10809")
    })
}

/// A device that counts what is read from it, for the progress lines.
struct Counting {
    inner: Arc<dyn BlockDevice>,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl BlockDevice for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let r = self.inner.read_at(buf, offset);
        match &r {
            Ok(n) => self.bytes.fetch_add(*n as u64, Ordering::Relaxed),
            Err(_) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        r
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let r = self.inner.read_exact_at(buf, offset);
        match &r {
            Ok(()) => self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed),
            Err(_) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        r
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn is_gone(&self) -> bool {
        self.inner.is_gone()
    }
    fn stored_at(&self, offset: u64) -> Option<(bool, u64)> {
        self.inner.stored_at(offset)
    }
}

/// What the export served, over all clients, when it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Clients that reached the transmission phase.
    pub clients: u64,
    /// Connections closed at accept: address not allowed.
    pub not_allowed: u64,
    /// Connections closed at accept: already serving the most clients.
    pub busy: u64,
    /// Connections that asked for another export name.
    pub wrong_name: u64,
    pub reads: u64,
    pub bytes: u64,
    /// Reads answered with EIO (bad areas, unreadable sectors, deadline).
    pub read_errors: u64,
    /// Writes, trims and other requests refused.
    pub writes_refused: u64,
    /// Connections that failed (broken link, a client breaking the
    /// protocol, a handshake that timed out).
    pub connection_errors: u64,
}

/// How one connection ended, sent from its thread to the accept loop.
enum SessionEnd {
    Served(nbd::Counts),
    WrongName,
    Other,
    Failed,
}

/// The listener with what it serves. [`Exporter::bind`] then
/// [`Exporter::serve`].
pub struct Exporter {
    listener: TcpListener,
    bound: SocketAddrV4,
    token: String,
    device: Arc<Counting>,
    opts: Options,
}

impl Exporter {
    /// Listens on `opts.listen` for `device` (already the served one: with
    /// a mapfile, [`attach::served_device`]'s) under export name `token`.
    pub fn bind(
        device: Arc<dyn BlockDevice>,
        token: String,
        opts: Options,
    ) -> Result<Exporter, String> {
        if opts.max_clients == 0 {
            return Err("--max-clients must be at least 1".into());
        }
        let addr = parse_listen(&opts.listen)?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("--nbd {}: listening: {e}", opts.listen))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--nbd {}: {e}", opts.listen))?;
        let bound = match listener.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            Ok(other) => return Err(format!("--nbd {}: bound {other}, not IPv4", opts.listen)),
            Err(e) => return Err(format!("--nbd {}: {e}", opts.listen)),
        };
        Ok(Exporter {
            listener,
            bound,
            token,
            device: Arc::new(Counting {
                inner: device,
                bytes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
            opts,
        })
    }

    /// The address listened on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.bound
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URLs a client can use: one per address of this machine when
    /// listening on all of them (`addresses`: this machine's IPv4
    /// addresses, loopback left out unless it is all there is), else the
    /// one listened on.
    pub fn urls(&self, addresses: &[Ipv4Addr]) -> Vec<String> {
        urls(self.bound, &self.token, addresses)
    }

    /// Serves clients until `stop` is set; then cuts the connections and
    /// waits a little for their threads. Events and progress go to `say`.
    pub fn serve(self, stop: &AtomicBool, say: &Say) -> Report {
        let (tx, rx) = mpsc::channel::<SessionEnd>();
        let active = Arc::new(AtomicUsize::new(0));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let mut report = Report::default();
        let mut next_id = 0u64;
        let mut last_progress = Instant::now();
        let mut last_bytes = 0u64;
        let mut last_errors = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let ip = match peer {
                        SocketAddr::V4(a) => Some(*a.ip()),
                        SocketAddr::V6(a) => a.ip().to_ipv4_mapped(),
                    };
                    if !ip.is_some_and(|ip| self.opts.allow.allows(ip)) {
                        report.not_allowed += 1;
                        say(format!("refused {peer}: not in --allow"));
                        log::warn!("export: refused {peer}: not in --allow");
                        drop(stream);
                        continue;
                    }
                    if active.load(Ordering::SeqCst) >= self.opts.max_clients {
                        report.busy += 1;
                        say(format!(
                            "refused {peer}: already serving {} (--max-clients)",
                            screen::plural(self.opts.max_clients as u64, "client", "clients")
                        ));
                        drop(stream);
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    if let Ok(c) = stream.try_clone() {
                        lock(&conns).insert(id, c);
                    }
                    active.fetch_add(1, Ordering::SeqCst);
                    let session = Session {
                        device: Arc::clone(&self.device),
                        token: self.token.clone(),
                        opts: self.opts.clone(),
                        say: Arc::clone(say),
                        peer,
                        active: Arc::clone(&active),
                    };
                    let (tx2, conns2, active2) =
                        (tx.clone(), Arc::clone(&conns), Arc::clone(&active));
                    let spawned = std::thread::Builder::new()
                        .name("export-client".into())
                        .spawn(move || {
                            let end = session.run(stream);
                            lock(&conns2).remove(&id);
                            active2.fetch_sub(1, Ordering::SeqCst);
                            let _ = tx2.send(end);
                        });
                    if let Err(e) = spawned {
                        say(format!("{peer}: starting its thread: {e}"));
                        if let Some(c) = lock(&conns).remove(&id) {
                            let _ = c.shutdown(std::net::Shutdown::Both);
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                        report.connection_errors += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    say(format!("accept: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            while let Ok(end) = rx.try_recv() {
                tally(&mut report, end);
            }
            if last_progress.elapsed() >= self.opts.progress_every {
                last_progress = Instant::now();
                let bytes = self.device.bytes.load(Ordering::Relaxed);
                let errors = self.device.errors.load(Ordering::Relaxed);
                if bytes != last_bytes || errors != last_errors {
                    let rate = (bytes - last_bytes) as f64 / self.opts.progress_every.as_secs_f64();
                    say(format!(
                        "{} read from the source ({}/s), {}, {} connected",
                        screen::human_size(bytes),
                        screen::human_size(rate as u64),
                        screen::plural(errors, "read error", "read errors"),
                        screen::plural(active.load(Ordering::SeqCst) as u64, "client", "clients"),
                    ));
                    last_bytes = bytes;
                    last_errors = errors;
                }
            }
        }
        // Stopping: cut every connection; their threads then end.
        let open: Vec<TcpStream> = lock(&conns).drain().map(|(_, c)| c).collect();
        if !open.is_empty() {
            say(format!(
                "stopping: closing {}",
                screen::plural(open.len() as u64, "connection", "connections")
            ));
        }
        for c in open {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        drop(tx);
        let began = Instant::now();
        while active.load(Ordering::SeqCst) > 0 && began.elapsed() < Duration::from_secs(5) {
            while let Ok(end) = rx.try_recv() {
                tally(&mut report, end);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Ok(end) = rx.try_recv() {
            tally(&mut report, end);
        }
        report
    }
}

fn tally(report: &mut Report, end: SessionEnd) {
    match end {
        SessionEnd::Served(c) => {
            report.clients += 1;
            report.reads += c.reads;
            report.bytes += c.bytes;
            report.read_errors += c.read_errors;
            report.writes_refused += c.refused;
        }
        SessionEnd::WrongName => report.wrong_name += 1,
        SessionEnd::Failed => report.connection_errors += 1,
        SessionEnd::Other => {}
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// See [`Exporter::urls`].
pub fn urls(bound: SocketAddrV4, token: &str, addresses: &[Ipv4Addr]) -> Vec<String> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![format!("nbd://{}:{port}/{token}", bound.ip())];
    }
    let mut hosts: Vec<Ipv4Addr> = addresses
        .iter()
        .copied()
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .collect();
    if hosts.is_empty() {
        hosts = addresses
            .iter()
            .copied()
            .filter(|a| a.is_loopback())
            .collect();
    }
    hosts.dedup();
    hosts
        .into_iter()
        .map(|h| format!("nbd://{h}:{port}/{token}"))
        .collect()
}

/// This machine's IPv4 addresses, over rtnetlink; empty when they cannot
/// be read.
pub fn local_addresses() -> Vec<Ipv4Addr> {
    net::netlink::Rtnl::open()
        .and_then(|mut r| r.ipv4_addresses())
        .map(|all| all.into_iter().filter_map(|a| a.address).collect())
        .unwrap_or_default()
}

/// Notices a client that is gone (its host crashed, the link dropped)
/// within about a minute, so that it does not hold its place: keepalive
/// probes on an idle connection (an NBD client may be idle for long, and
/// its kernel answers them), and a limit on unacknowledged replies.
fn keepalive(s: &TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(s, true);
    let _ = sockopt::set_tcp_keepidle(s, Duration::from_secs(15));
    let _ = sockopt::set_tcp_keepintvl(s, Duration::from_secs(5));
    let _ = sockopt::set_tcp_keepcnt(s, 4);
    let _ = sockopt::set_tcp_user_timeout(s, 60_000);
}

/// One client's connection.
struct Session {
    device: Arc<Counting>,
    token: String,
    opts: Options,
    say: Say,
    peer: SocketAddr,
    active: Arc<AtomicUsize>,
}

impl Session {
    fn run(self, stream: TcpStream) -> SessionEnd {
        let peer = self.peer;
        let say = &self.say;
        match self.serve(stream) {
            Ok((nbd::End::Disconnected, counts, took)) => {
                let secs = took.as_secs_f64().max(0.001);
                let mut line = format!(
                    "{peer} disconnected: {} in {}, {:.1} s ({}/s)",
                    screen::human_size(counts.bytes),
                    screen::plural(counts.reads, "read", "reads"),
                    secs,
                    screen::human_size((counts.bytes as f64 / secs) as u64),
                );
                if counts.read_errors > 0 {
                    line.push_str(&format!(
                        ", {} answered with an I/O error",
                        screen::plural(counts.read_errors, "read", "reads")
                    ));
                }
                if counts.refused > 0 {
                    line.push_str(&format!(
                        ", {} refused (read-only)",
                        screen::plural(counts.refused, "write", "writes")
                    ));
                }
                log::info!("export: {line}");
                say(line);
                SessionEnd::Served(counts)
            }
            Ok((nbd::End::Refused { asked }, _, _)) => {
                let line = format!("refused {peer}: asked for export {asked:?}, not the token");
                log::warn!("export: {line}");
                say(line);
                SessionEnd::WrongName
            }
            Ok((nbd::End::Aborted, _, _)) => {
                say(format!("{peer} left during the handshake (no transfer)"));
                SessionEnd::Other
            }
            Err(e) => {
                let line = format!("{peer}: {e}");
                log::warn!("export: {line}");
                say(line);
                SessionEnd::Failed
            }
        }
    }

    fn serve(&self, mut stream: TcpStream) -> io::Result<(nbd::End, nbd::Counts, Duration)> {
        stream.set_nonblocking(false)?;
        // Replies are a header and the data in two writes: no Nagle delay.
        stream.set_nodelay(true)?;
        keepalive(&stream);
        stream.set_read_timeout(Some(self.opts.handshake_timeout))?;
        let offer = nbd::Offer {
            name: &self.token,
            listed: false,
        };
        let end = nbd::handshake_offer(self.device.as_ref(), offer, &mut stream).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                io::Error::new(e.kind(), "the handshake timed out")
            } else {
                io::Error::new(e.kind(), format!("handshake: {e}"))
            }
        })?;
        if end != nbd::End::Disconnected {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok((end, nbd::Counts::default(), Duration::ZERO));
        }
        stream.set_read_timeout(None)?;
        let line = format!(
            "{} connected ({} of at most {})",
            self.peer,
            self.active.load(Ordering::SeqCst),
            screen::plural(self.opts.max_clients as u64, "client", "clients")
        );
        log::info!("export: {line}");
        (self.say)(line);
        let began = Instant::now();
        let writer = stream.try_clone()?;
        let closer = stream.try_clone()?;
        let reader = BufReader::with_capacity(64 << 10, stream);
        let device: Arc<dyn BlockDevice> = Arc::clone(&self.device) as Arc<dyn BlockDevice>;
        let opts = nbd::parallel::Options {
            workers: self.opts.readers.max(1),
            deadline: self.opts.deadline,
            ..Default::default()
        };
        let served = nbd::parallel::transmission(device, reader, writer, &opts);
        // A reader stuck on a bad sector keeps the writing half open:
        // close the connection now, whatever ended it.
        let _ = closer.shutdown(std::net::Shutdown::Both);
        let (end, counts) = served?;
        Ok((end, counts, began.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_plain() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), TOKEN_CHARS);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| TOKEN_ALPHABET.contains(&c)), "{a}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("10809").unwrap(),
            "0.0.0.0:10809".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        for bad in ["", "host:10809", "[::1]:10809", "10.0.0.1", "70000"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_name_each_address_or_the_one_bound() {
        let all: SocketAddrV4 = "0.0.0.0:10809".parse().unwrap();
        let addrs: Vec<Ipv4Addr> = ["127.0.0.1", "192.168.1.5", "10.0.0.7"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            urls(all, "tok", &addrs),
            ["nbd://192.168.1.5:10809/tok", "nbd://10.0.0.7:10809/tok"]
        );
        assert_eq!(urls(all, "tok", &addrs[..1]), ["nbd://127.0.0.1:10809/tok"]);
        assert!(urls(all, "tok", &[]).is_empty());
        let one: SocketAddrV4 = "10.0.0.7:5000".parse().unwrap();
        assert_eq!(urls(one, "tok", &addrs), ["nbd://10.0.0.7:5000/tok"]);
    }
}
