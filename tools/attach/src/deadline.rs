//! A per-read deadline: the NBD device runs with the kernel's timeout
//! off (a timeout tears the device down), so the server bounds each read
//! itself. A read that outlives the deadline is answered as an error, its
//! thread is left to finish on its own, and the next read goes to a fresh
//! worker, so one stuck sector does not stall the device.

use blockdev::BlockDevice;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads given up on but still running; past this many, reads fail at
/// once instead of starting more threads against a source that hangs.
pub const MAX_STUCK: usize = 8;

type Job = (u64, usize);
type Done = io::Result<Vec<u8>>;

struct Worker {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
}

/// `inner` with every read bounded by a deadline.
pub struct DeadlineDevice {
    inner: Arc<dyn BlockDevice>,
    deadline: Duration,
    worker: Mutex<Option<Worker>>,
    stuck: Arc<AtomicUsize>,
}

impl DeadlineDevice {
    pub fn new(inner: Arc<dyn BlockDevice>, deadline: Duration) -> DeadlineDevice {
        DeadlineDevice {
            inner,
            deadline,
            worker: Mutex::new(None),
            stuck: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reads given up on that have not finished yet.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    fn spawn(&self) -> io::Result<Worker> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("attach-read".into())
            .spawn(move || {
                for (offset, len) in job_rx {
                    let mut buf = vec![0u8; len];
                    let r = inner.read_exact_at(&mut buf, offset).map(|()| buf);
                    if done_tx.send(r).is_err() {
                        // Given up on: the reader moved to a new worker.
                        break;
                    }
                }
            })?;
        Ok(Worker { jobs, done })
    }
}

impl BlockDevice for DeadlineDevice {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
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

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(size - offset) as usize;
        let mut slot = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            if self.stuck() >= MAX_STUCK {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: {MAX_STUCK} reads still stuck in the source; not starting another",
                        self.name()
                    ),
                ));
            }
            *slot = Some(self.spawn()?);
        }
        let w = slot.as_ref().expect("set above");
        if w.jobs.send((offset, len)).is_err() {
            *slot = None;
            return Err(io::Error::other(format!(
                "{}: read worker ended",
                self.name()
            )));
        }
        match w.done.recv_timeout(self.deadline) {
            Ok(Ok(data)) => {
                buf[..len].copy_from_slice(&data);
                Ok(len)
            }
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Leave the stuck worker behind; count it until it ends.
                let old = slot.take().expect("set above");
                let stuck = Arc::clone(&self.stuck);
                stuck.fetch_add(1, Ordering::SeqCst);
                std::thread::Builder::new()
                    .name("attach-stuck".into())
                    .spawn(move || {
                        // Its answer (or its end) arrives some day.
                        let _ = old.done.recv();
                        stuck.fetch_sub(1, Ordering::SeqCst);
                    })
                    .ok();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: no answer within {} s at byte {offset}",
                        self.name(),
                        self.deadline.as_secs_f64()
                    ),
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                *slot = None;
                Err(io::Error::other(format!(
                    "{}: read worker ended",
                    self.name()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDevice;
    use std::sync::atomic::AtomicBool;

    /// Reads hang while `hold` is set (a sector the drive retries on).
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
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            self.inner.read_at(buf, offset)
        }
    }

    #[test]
    fn a_stuck_read_fails_at_the_deadline_and_the_next_read_goes_on() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        let hold = Arc::new(AtomicBool::new(true));
        let dev = DeadlineDevice::new(
            Arc::new(Hanging {
                inner: MemDevice::new(data.clone(), 512),
                hold: Arc::clone(&hold),
                slow_from: 4096,
            }),
            Duration::from_millis(100),
        );
        let mut buf = vec![0u8; 512];
        dev.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, data[..512]);
        let e = dev.read_exact_at(&mut buf, 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            e.to_string()
                .contains("no answer within 0.1 s at byte 4096"),
            "{e}"
        );
        assert_eq!(dev.stuck(), 1);
        // The good area still reads while the stuck read hangs.
        dev.read_exact_at(&mut buf, 512).unwrap();
        assert_eq!(buf, data[512..1024]);
        // Once the drive answers, the stuck read ends and is not counted.
        hold.store(false, Ordering::SeqCst);
        for _ in 0..200 {
            if dev.stuck() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(dev.stuck(), 0);
        dev.read_exact_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, data[4096..4608]);
    }

    #[test]
    fn too_many_stuck_reads_fail_at_once() {
        let hold = Arc::new(AtomicBool::new(true));
        let dev = DeadlineDevice::new(
            Arc::new(Hanging {
                inner: MemDevice::new(vec![0; 4096], 512),
                hold: Arc::clone(&hold),
                slow_from: 0,
            }),
            Duration::from_millis(20),
        );
        let mut buf = [0u8; 512];
        for _ in 0..MAX_STUCK {
            assert!(dev.read_exact_at(&mut buf, 0).is_err());
        }
        let began = std::time::Instant::now();
        let e = dev.read_exact_at(&mut buf, 0).unwrap_err();
        assert!(e.to_string().contains("still stuck"), "{e}");
        assert!(began.elapsed() < Duration::from_millis(20));
        hold.store(false, Ordering::SeqCst);
    }

    #[test]
    fn errors_and_short_ends_pass_through() {
        let dev = DeadlineDevice::new(
            Arc::new(MemDevice::new(vec![1; 1000], 512)),
            Duration::from_secs(5),
        );
        let mut buf = vec![0u8; 512];
        assert_eq!(dev.read_at(&mut buf, 800).unwrap(), 200);
        assert_eq!(dev.read_at(&mut buf, 1000).unwrap(), 0);
    }
}
