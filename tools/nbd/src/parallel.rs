//! The transmission phase served by a pool of reader threads, for the
//! kernel's NBD client: it sends the requests of a readahead window at
//! once, and replies may come in any order (matched by cookie), so the
//! source's reads overlap each other and the socket's transfers. Each
//! worker reads into its own buffer and writes its reply itself (one lock
//! around the socket's writing half), with no copy between threads.
//!
//! Every read is bounded by a deadline: a watchdog answers a read that
//! outlives it (or waited that long in the queue) with EIO, and starts a
//! replacement worker, so one stuck sector does not stall the device. The
//! stuck worker's late result is dropped, and it ends. At most
//! [`Options::max_stuck`] stuck reads are left behind; past that, reads
//! wait in the queue until the deadline answers them.

use crate::{protocol, Counts, End, CMD_DISC, CMD_FLUSH, CMD_READ, CMD_WRITE};
use crate::{EINVAL, EIO, EPERM, MAX_READ, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC};
use blockdev::BlockDevice;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How to serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reader threads.
    pub workers: usize,
    /// How long a read may take (queued or reading) before it is answered
    /// with EIO.
    pub deadline: Duration,
    /// Stuck reads left behind before no replacement is started.
    pub max_stuck: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: 4,
            deadline: Duration::from_secs(90),
            max_stuck: 8,
        }
    }
}

struct Job {
    id: u64,
    cookie: [u8; 8],
    offset: u64,
    len: u32,
    queued: Instant,
}

struct State {
    queue: VecDeque<Job>,
    /// Reads being done: id -> (started, cookie).
    reading: HashMap<u64, (Instant, [u8; 8])>,
    closed: bool,
    counts: Counts,
}

struct Shared<W> {
    writer: Mutex<W>,
    state: Mutex<State>,
    /// Workers wait here for jobs (notify_one per job).
    wake: Condvar,
    /// The watchdog waits here between rounds, so that a job's
    /// notify_one always reaches a worker.
    closing: Condvar,
    /// The socket failed: stop serving.
    broken: AtomicBool,
    stuck: AtomicUsize,
    workers: AtomicUsize,
    /// Workers wanted (not counting stuck ones).
    target: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<W: Write> Shared<W> {
    fn reply(&self, cookie: &[u8; 8], error: u32, data: &[u8]) {
        let mut head = [0u8; 16];
        head[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        head[4..8].copy_from_slice(&error.to_be_bytes());
        head[8..16].copy_from_slice(cookie);
        let mut w = lock(&self.writer);
        let r = w
            .write_all(&head)
            .and_then(|()| {
                if error == 0 {
                    w.write_all(data)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| w.flush());
        if r.is_err() {
            self.broken.store(true, Ordering::SeqCst);
            self.wake.notify_all();
            self.closing.notify_all();
        }
    }
}

/// Serves requests from `reader` until the client disconnects, with
/// replies on `writer` (two halves of one connection, e.g. a
/// `UnixStream` and its `try_clone`). Errors are the connection's.
pub fn transmission<R, W>(
    dev: Arc<dyn BlockDevice>,
    mut reader: R,
    writer: W,
    opts: &Options,
) -> io::Result<(End, Counts)>
where
    R: Read,
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        writer: Mutex::new(writer),
        state: Mutex::new(State {
            queue: VecDeque::new(),
            reading: HashMap::new(),
            closed: false,
            counts: Counts::default(),
        }),
        wake: Condvar::new(),
        closing: Condvar::new(),
        broken: AtomicBool::new(false),
        stuck: AtomicUsize::new(0),
        workers: AtomicUsize::new(0),
        target: opts.workers.max(1),
    });
    for _ in 0..opts.workers.max(1) {
        spawn_worker(&shared, &dev)?;
    }
    let watchdog = {
        let (shared, dev, opts) = (Arc::clone(&shared), Arc::clone(&dev), opts.clone());
        std::thread::Builder::new()
            .name("nbd-watchdog".into())
            .spawn(move || watch(&shared, &dev, &opts))?
    };
    let result = read_requests(&dev, &mut reader, &shared);
    {
        let mut st = lock(&shared.state);
        st.closed = true;
    }
    shared.wake.notify_all();
    shared.closing.notify_all();
    let _ = watchdog.join();
    // Wait for the workers that are not stuck to finish their replies.
    let began = Instant::now();
    while shared.workers.load(Ordering::SeqCst) > shared.stuck.load(Ordering::SeqCst)
        && began.elapsed() < opts.deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let counts = std::mem::take(&mut lock(&shared.state).counts);
    result.map(|end| (end, counts))
}

fn read_requests<R: Read, W: Write + Send + 'static>(
    dev: &Arc<dyn BlockDevice>,
    reader: &mut R,
    shared: &Arc<Shared<W>>,
) -> io::Result<End> {
    let mut next_id = 0u64;
    loop {
        if shared.broken.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "NBD client: replies could not be written",
            ));
        }
        let mut head = [0u8; 28];
        match reader.read_exact(&mut head) {
            Ok(()) => {}
            // A client that closes without NBD_CMD_DISC is gone all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(End::Disconnected),
            Err(e) => return Err(e),
        }
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if magic != REQUEST_MAGIC {
            return Err(protocol(format!("request magic {magic:#x}")));
        }
        let kind = u16::from_be_bytes([head[6], head[7]]);
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&head[8..16]);
        let offset = u64::from_be_bytes(head[16..24].try_into().unwrap_or_default());
        let len = u32::from_be_bytes([head[24], head[25], head[26], head[27]]);
        match kind {
            CMD_READ => {
                let end = offset.checked_add(u64::from(len));
                if len > MAX_READ || end.is_none_or(|e| e > dev.size()) {
                    shared.reply(&cookie, EINVAL, &[]);
                    continue;
                }
                next_id += 1;
                lock(&shared.state).queue.push_back(Job {
                    id: next_id,
                    cookie,
                    offset,
                    len,
                    queued: Instant::now(),
                });
                shared.wake.notify_one();
            }
            CMD_DISC => return Ok(End::Disconnected),
            CMD_FLUSH => shared.reply(&cookie, 0, &[]),
            other => {
                // A write's data follows its header: read it past.
                if other == CMD_WRITE {
                    io::copy(&mut reader.take(u64::from(len)), &mut io::sink())?;
                }
                lock(&shared.state).counts.refused += 1;
                shared.reply(&cookie, EPERM, &[]);
            }
        }
    }
}

fn spawn_worker<W: Write + Send + 'static>(
    shared: &Arc<Shared<W>>,
    dev: &Arc<dyn BlockDevice>,
) -> io::Result<()> {
    let (shared, dev) = (Arc::clone(shared), Arc::clone(dev));
    shared.workers.fetch_add(1, Ordering::SeqCst);
    let counter = Arc::clone(&shared);
    let r = std::thread::Builder::new()
        .name("nbd-read".into())
        .spawn(move || {
            work(&shared, dev.as_ref());
            shared.workers.fetch_sub(1, Ordering::SeqCst);
        });
    if r.is_err() {
        counter.workers.fetch_sub(1, Ordering::SeqCst);
    }
    r.map(|_| ())
}

fn work<W: Write>(shared: &Shared<W>, dev: &dyn BlockDevice) {
    let mut buf = Vec::new();
    loop {
        let job = {
            let mut st = lock(&shared.state);
            loop {
                if st.closed || shared.broken.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(j) = st.queue.pop_front() {
                    st.reading.insert(j.id, (Instant::now(), j.cookie));
                    break j;
                }
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        buf.resize(job.len as usize, 0);
        let r = dev.read_exact_at(&mut buf, job.offset);
        let mine = {
            let mut st = lock(&shared.state);
            let mine = st.reading.remove(&job.id).is_some();
            if mine {
                st.counts.reads += 1;
                match &r {
                    Ok(()) => st.counts.bytes += u64::from(job.len),
                    Err(_) => st.counts.read_errors += 1,
                }
            }
            mine
        };
        if !mine {
            // The watchdog answered it (and started a replacement if it
            // could): this worker was counted stuck. It goes on serving
            // only if the pool is short of workers.
            let stuck = shared.stuck.fetch_sub(1, Ordering::SeqCst) - 1;
            let live = shared.workers.load(Ordering::SeqCst) - stuck;
            if live > shared.target {
                return;
            }
            continue;
        }
        match r {
            Ok(()) => shared.reply(&job.cookie, 0, &buf),
            Err(_) => shared.reply(&job.cookie, EIO, &[]),
        }
    }
}

/// Answers reads older than the deadline with EIO, queued or reading.
fn watch<W: Write + Send + 'static>(
    shared: &Arc<Shared<W>>,
    dev: &Arc<dyn BlockDevice>,
    opts: &Options,
) {
    let tick = (opts.deadline / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    loop {
        let (late_reads, late_queued) = {
            let st = lock(&shared.state);
            let mut st = shared
                .closing
                .wait_timeout(st, tick)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            if st.closed || shared.broken.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            let late_reads: Vec<(u64, [u8; 8])> = st
                .reading
                .iter()
                .filter(|(_, (t, _))| now.duration_since(*t) >= opts.deadline)
                .map(|(id, (_, c))| (*id, *c))
                .collect();
            for (id, _) in &late_reads {
                st.reading.remove(id);
                st.counts.reads += 1;
                st.counts.read_errors += 1;
            }
            let mut late_queued = Vec::new();
            while st
                .queue
                .front()
                .is_some_and(|j| now.duration_since(j.queued) >= opts.deadline)
            {
                let j = st.queue.pop_front().expect("checked");
                st.counts.reads += 1;
                st.counts.read_errors += 1;
                late_queued.push(j.cookie);
            }
            (late_reads, late_queued)
        };
        for (_, cookie) in &late_reads {
            shared.reply(cookie, EIO, &[]);
            let stuck = shared.stuck.fetch_add(1, Ordering::SeqCst) + 1;
            if stuck <= opts.max_stuck {
                let _ = spawn_worker(shared, dev);
            }
        }
        for cookie in &late_queued {
            shared.reply(cookie, EIO, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;
    use std::os::unix::net::UnixStream;

    /// Reads at or past `slow_from` hang while `hold` is set.
    struct Hanging {
        inner: MemDevice,
        hold: Arc<AtomicBool>,
        slow_from: u64,
    }

    impl BlockDevice for Hanging {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn logical_sector_size(&self) -> u32 {
            512
        }
        fn name(&self) -> &str {
            "hanging"
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if offset >= self.slow_from {
                while self.hold.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            self.inner.read_at(buf, offset)
        }
    }

    fn request(c: &mut UnixStream, kind: u16, cookie: u64, offset: u64, len: u32) {
        let mut r = Vec::with_capacity(28);
        r.extend(REQUEST_MAGIC.to_be_bytes());
        r.extend(0u16.to_be_bytes());
        r.extend(kind.to_be_bytes());
        r.extend(cookie.to_be_bytes());
        r.extend(offset.to_be_bytes());
        r.extend(len.to_be_bytes());
        c.write_all(&r).unwrap();
    }

    /// One reply: (cookie, error); a read's data is read into `data`.
    fn reply(
        c: &mut UnixStream,
        lens: &HashMap<u64, usize>,
        data: &mut HashMap<u64, Vec<u8>>,
    ) -> (u64, u32) {
        let mut h = [0u8; 16];
        c.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
        if err == 0 {
            let mut d = vec![0u8; lens.get(&cookie).copied().unwrap_or(0)];
            c.read_exact(&mut d).unwrap();
            data.insert(cookie, d);
        }
        (cookie, err)
    }

    #[test]
    fn a_stuck_read_is_answered_at_the_deadline_and_the_others_go_on() {
        let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
        let hold = Arc::new(AtomicBool::new(true));
        let dev: Arc<dyn BlockDevice> = Arc::new(Hanging {
            inner: MemDevice::new(bytes.clone(), 512),
            hold: Arc::clone(&hold),
            slow_from: 60 * 1024,
        });
        let (mut client, server) = UnixStream::pair().unwrap();
        let writer = server.try_clone().unwrap();
        let opts = Options {
            workers: 2,
            deadline: Duration::from_millis(400),
            max_stuck: 8,
        };
        let served = std::thread::spawn(move || transmission(dev, server, writer, &opts));
        let began = Instant::now();
        let lens: HashMap<u64, usize> = [(1, 4096), (2, 4096), (3, 4096), (4, 8192)].into();
        // The stuck read first: the others are answered before it.
        request(&mut client, CMD_READ, 1, 60 * 1024, 4096);
        request(&mut client, CMD_READ, 2, 0, 4096);
        request(&mut client, CMD_READ, 3, 4096, 4096);
        request(&mut client, CMD_READ, 4, 32 * 1024, 8192);
        let mut data = HashMap::new();
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(reply(&mut client, &lens, &mut data));
        }
        let took = began.elapsed();
        assert_eq!(order.last(), Some(&(1, EIO)), "{order:?}");
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert_eq!(data[&2], bytes[..4096]);
        assert_eq!(data[&3], bytes[4096..8192]);
        assert_eq!(data[&4], bytes[32 * 1024..40 * 1024]);
        // The pool still serves after the stuck read; then the drive answers.
        request(&mut client, CMD_READ, 5, 8192, 512);
        let lens5: HashMap<u64, usize> = [(5, 512)].into();
        assert_eq!(reply(&mut client, &lens5, &mut data), (5, 0));
        assert_eq!(data[&5], bytes[8192..8704]);
        hold.store(false, Ordering::SeqCst);
        request(&mut client, CMD_READ, 6, 60 * 1024, 512);
        let lens6: HashMap<u64, usize> = [(6, 512)].into();
        assert_eq!(reply(&mut client, &lens6, &mut data), (6, 0));
        assert_eq!(data[&6], bytes[60 * 1024..60 * 1024 + 512]);
        request(&mut client, CMD_DISC, 7, 0, 0);
        let (end, counts) = served.join().unwrap().unwrap();
        assert_eq!(end, End::Disconnected);
        assert_eq!(counts.reads, 6);
        assert_eq!(counts.read_errors, 1);
        assert_eq!(counts.bytes, 4096 * 2 + 8192 + 512 * 2);
    }

    #[test]
    fn writes_are_refused_past_the_end_is_invalid_and_eof_ends() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(vec![7; 8192], 512));
        let (mut client, server) = UnixStream::pair().unwrap();
        let writer = server.try_clone().unwrap();
        let served =
            std::thread::spawn(move || transmission(dev, server, writer, &Options::default()));
        request(&mut client, CMD_WRITE, 1, 0, 512);
        client.write_all(&[0u8; 512]).unwrap();
        let none = HashMap::new();
        let mut data = HashMap::new();
        assert_eq!(reply(&mut client, &none, &mut data), (1, EPERM));
        request(&mut client, CMD_READ, 2, 8000, 512);
        assert_eq!(reply(&mut client, &none, &mut data), (2, EINVAL));
        request(&mut client, CMD_FLUSH, 3, 0, 0);
        assert_eq!(reply(&mut client, &none, &mut data), (3, 0));
        drop(client);
        let (end, counts) = served.join().unwrap().unwrap();
        assert_eq!(end, End::Disconnected);
        assert_eq!(counts.refused, 1);
        assert_eq!(counts.reads, 0);
    }
}
