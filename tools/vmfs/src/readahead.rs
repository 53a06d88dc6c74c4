//! Reading a file's chunks ahead of their consumer: `cat` and `extract`
//! write one chunk while the next ones are being read. Two reader threads
//! take alternate chunks, so two reads are in flight: on a fragmented file
//! (thin VMDKs are) the kernel's read-ahead cannot guess the next block,
//! and a single reader would wait for the disk on every block. Reused
//! buffers bound the memory to `READERS * BUFFERS_PER_READER` chunks.

use std::ops::ControlFlow;
use std::sync::mpsc::{channel, sync_channel};

/// Reader threads, i.e. reads in flight.
pub const READERS: usize = 2;
/// Buffers per reader: one filled or being written out, one being read.
const BUFFERS_PER_READER: usize = 2;

/// Reads every `(offset, len)` of `chunks` with `read` (which fills the
/// whole buffer or fails) and hands them, in order, to `consume` with the
/// chunk's offset, length and the read's outcome; `consume` may stop early with `ControlFlow::Break`.
pub fn for_each_chunk<E, Read, Consume>(chunks: &[(u64, usize)], read: &Read, consume: &mut Consume)
where
    E: Send,
    Read: Fn(&mut [u8], u64) -> Result<(), E> + Sync,
    Consume: FnMut(u64, usize, Result<&[u8], E>) -> ControlFlow<()>,
{
    std::thread::scope(|sc| {
        let mut full = Vec::new();
        let mut free = Vec::new();
        for r in 0..READERS.min(chunks.len()) {
            let (full_tx, full_rx) = sync_channel::<(Vec<u8>, Result<(), E>)>(BUFFERS_PER_READER);
            let (free_tx, free_rx) = channel::<Vec<u8>>();
            for _ in 0..BUFFERS_PER_READER {
                let _ = free_tx.send(Vec::new());
            }
            sc.spawn(move || {
                for &(off, len) in chunks.iter().skip(r).step_by(READERS) {
                    // The consumer hung up: it is done.
                    let Ok(mut buf) = free_rx.recv() else { return };
                    buf.resize(len, 0);
                    let res = read(&mut buf, off);
                    if full_tx.send((buf, res)).is_err() {
                        return;
                    }
                }
            });
            full.push(full_rx);
            free.push(free_tx);
        }
        for (i, &(off, len)) in chunks.iter().enumerate() {
            let r = i % READERS;
            // A reader ends early only if it panicked; stop there too.
            let Ok((buf, res)) = full[r].recv() else {
                break;
            };
            let flow = consume(off, len, res.map(|()| &buf[..]));
            let _ = free[r].send(buf);
            if flow.is_break() {
                break;
            }
        }
        // Dropping the channels ends the readers at their next step.
        drop(free);
        drop(full);
    });
}

/// `start..end` in chunks of at most `chunk` bytes.
pub fn chunks_of(start: u64, end: u64, chunk: usize) -> Vec<(u64, usize)> {
    let mut v = Vec::new();
    let mut pos = start;
    while pos < end {
        let n = ((end - pos) as usize).min(chunk);
        v.push((pos, n));
        pos += n as u64;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_with_their_errors_and_stop_early() {
        let chunks = chunks_of(0, 10 * 1000 + 7, 1000);
        assert_eq!(chunks.len(), 11);
        assert_eq!(chunks[10], (10_000, 7));
        let read = |buf: &mut [u8], off: u64| -> Result<(), String> {
            if off == 3000 {
                return Err("bad".into());
            }
            buf.fill((off / 1000) as u8);
            Ok(())
        };
        let mut seen = Vec::new();
        for_each_chunk(&chunks, &read, &mut |off, len, r| {
            match r {
                Ok(b) => {
                    assert!(b.iter().all(|&x| x == (off / 1000) as u8));
                    seen.push((off, b.len(), true));
                }
                Err(_) => seen.push((off, len, false)),
            }
            ControlFlow::Continue(())
        });
        assert_eq!(seen.len(), 11);
        assert!(seen.iter().enumerate().all(|(i, s)| s.0 == i as u64 * 1000));
        assert!(!seen[3].2 && seen[4].2);
        assert_eq!(seen[3].1, 1000);
        assert_eq!(seen[10].1, 7);
        let mut n = 0;
        for_each_chunk(&chunks, &read, &mut |_, _, _| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(n, 2);
        for_each_chunk(&[], &read, &mut |_, _, _| -> ControlFlow<()> {
            panic!("no chunks")
        });
    }
}
