//! The engine over the fault-injecting device: exact bad-sector maps, resume
//! after interruption, reverse mode, ENOSPC, vanishing and slow sources.

use blockdev::{BlockDevice, MemDevice};
use ddmap::{parse, render, Header, Map, Status};
use imaging::engine::errno;
use imaging::progress::Progress;
use imaging::{rescue, FaultDevice, MapStore, Options, Outcome, Report, Sink};
use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An in-memory image; optionally fails with ENOSPC once `limit` bytes were written.
struct VecSink {
    data: Vec<u8>,
    written: u64,
    limit: Option<u64>,
}

impl VecSink {
    fn new() -> VecSink {
        VecSink {
            data: Vec::new(),
            written: 0,
            limit: None,
        }
    }
}

impl Sink for VecSink {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(l) = self.limit {
            if self.written + buf.len() as u64 > l {
                return Err(io::Error::from_raw_os_error(errno::ENOSPC));
            }
        }
        let end = offset as usize + buf.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(buf);
        self.written += buf.len() as u64;
        Ok(())
    }
    fn finish(&mut self, size: u64) -> io::Result<()> {
        if (self.data.len() as u64) < size {
            self.data.resize(size as usize, 0);
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn source(size: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v: Vec<u8> = (0..size).map(|_| r.next() as u8).collect();
    // Some all-zero stretches, as real disks have.
    v[size / 3..size / 3 + 70_000].fill(0);
    v
}

fn bad_set(size: u64, sector: u64, seed: u64, scattered: usize) -> BTreeSet<u64> {
    let mut r = Rng(seed | 1);
    let n = size / sector;
    let mut s = BTreeSet::new();
    for _ in 0..scattered {
        s.insert(r.below(n));
    }
    // A bad run (a scratch) and the very first and last sectors.
    let run = r.below(n - 300);
    for x in run..run + 200 {
        s.insert(x);
    }
    s.insert(0);
    s.insert(n - 1);
    s
}

fn small_opts() -> Options {
    Options {
        cluster_size: 64 << 10,
        initial_skip: Some(64 << 10),
        max_skip: Some(1 << 20),
        progress_interval: Duration::from_secs(3600),
        mapfile_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

fn run(dev: &dyn BlockDevice, sink: &mut VecSink, map: &mut Map, opts: &Options) -> Report {
    let stop = AtomicBool::new(false);
    rescue(
        dev,
        sink,
        map,
        &MapStore::default(),
        opts,
        &stop,
        &mut |_| {},
    )
}

/// The map must hold exactly `bad` as bad-sector and everything else finished;
/// the image must equal the source except for zeros in bad sectors.
fn assert_exact(map: &Map, img: &[u8], src: &[u8], bad: &BTreeSet<u64>, sector: u64) {
    assert_eq!(map.size(), src.len() as u64);
    let mut got = BTreeSet::new();
    for e in map.extents() {
        match e.status {
            Status::Finished => {}
            Status::BadSector => {
                assert_eq!(e.pos % sector, 0);
                assert_eq!(e.size % sector, 0);
                for s in e.pos / sector..e.end() / sector {
                    got.insert(s);
                }
            }
            other => panic!("area {:#x}+{:#x} left {other:?}", e.pos, e.size),
        }
    }
    assert_eq!(
        &got, bad,
        "bad sectors in the map differ from the injected ones"
    );
    assert_eq!(img.len(), src.len());
    for (i, (a, b)) in img.iter().zip(src).enumerate() {
        let s = i as u64 / sector;
        if bad.contains(&s) {
            assert_eq!(*a, 0, "byte {i} in bad sector {s} was written");
        } else {
            assert_eq!(a, b, "byte {i} differs from the source");
        }
    }
}

#[test]
fn bad_sectors_are_mapped_exactly_512_and_4096() {
    for (sector, seed) in [(512u64, 7u64), (4096, 11)] {
        let src = source(3 << 20, seed);
        let bad = bad_set(src.len() as u64, sector, seed, 60);
        let dev = FaultDevice::new(MemDevice::new(src.clone(), sector as u32))
            .with_bad_sectors(bad.iter().copied());
        let mut map = Map::new(src.len() as u64);
        let mut sink = VecSink::new();
        let r = run(&dev, &mut sink, &mut map, &small_opts());
        assert!(matches!(r.outcome, Outcome::Completed), "{:?}", r.outcome);
        assert!(!r.all_rescued());
        assert_exact(&map, &sink.data, &src, &bad, sector);
        assert_eq!(r.totals.bytes(Status::BadSector), bad.len() as u64 * sector);
        // Each bad sector is read at most twice before retries: once in a large
        // read, once alone (ddrescue's rule) -- checked via the total error count.
        assert!(
            r.read_errors <= 2 * bad.len() as u64 + 64,
            "{} read errors for {} bad sectors",
            r.read_errors,
            bad.len()
        );
    }
}

#[test]
fn nvme_enodata_and_eilseq_count_as_media_errors() {
    for e in [errno::ENODATA, errno::EILSEQ, errno::EIO] {
        let src = source(1 << 20, 3);
        let bad: BTreeSet<u64> = [5u64, 6, 1000].into_iter().collect();
        let dev = FaultDevice::new(MemDevice::new(src.clone(), 512))
            .with_bad_sectors(bad.iter().copied())
            .with_errno(e);
        let mut map = Map::new(src.len() as u64);
        let mut sink = VecSink::new();
        let r = run(&dev, &mut sink, &mut map, &small_opts());
        assert!(matches!(r.outcome, Outcome::Completed));
        assert_exact(&map, &sink.data, &src, &bad, 512);
    }
}

#[test]
fn reverse_mode_gives_the_same_result() {
    let src = source(2 << 20, 21);
    let bad = bad_set(src.len() as u64, 512, 21, 40);
    let dev =
        FaultDevice::new(MemDevice::new(src.clone(), 512)).with_bad_sectors(bad.iter().copied());
    let opts = Options {
        reverse: true,
        ..small_opts()
    };
    let mut map = Map::new(src.len() as u64);
    let mut sink = VecSink::new();
    let r = run(&dev, &mut sink, &mut map, &opts);
    assert!(matches!(r.outcome, Outcome::Completed));
    assert_exact(&map, &sink.data, &src, &bad, 512);
}

#[test]
fn retry_passes_read_bad_sectors_again_and_keep_them_bad() {
    let src = source(1 << 20, 5);
    let bad: BTreeSet<u64> = [100u64, 101, 1500].into_iter().collect();
    let dev =
        FaultDevice::new(MemDevice::new(src.clone(), 512)).with_bad_sectors(bad.iter().copied());
    let mut map = Map::new(src.len() as u64);
    let mut sink = VecSink::new();
    let r0 = run(&dev, &mut sink, &mut map, &small_opts());
    let errors_without = r0.read_errors;
    let opts = Options {
        retry_passes: 2,
        ..small_opts()
    };
    let r = run(&dev, &mut sink, &mut map, &opts);
    assert!(matches!(r.outcome, Outcome::Completed));
    assert_eq!(
        r.read_errors,
        2 * bad.len() as u64,
        "each bad sector once per retry pass"
    );
    assert!(errors_without > 0);
    assert_exact(&map, &sink.data, &src, &bad, 512);
}

/// Interrupts after a random number of reads, round-trips the map through its
/// text form, resumes with a fresh device, until done. The result must equal
/// an uninterrupted run, and no resumed run may read a finished area.
#[test]
fn resume_after_random_interruptions_gives_the_same_image_and_map() {
    let src = source(2 << 20, 99);
    let size = src.len() as u64;
    let bad = bad_set(size, 512, 99, 30);
    let mut rng = Rng(0x5eed);
    for round in 0..12 {
        let reverse = round % 3 == 2;
        let opts = Options {
            reverse,
            retry_passes: (round % 2) as u32,
            progress_interval: Duration::ZERO,
            ..small_opts()
        };
        let mut map = Map::new(size);
        let mut sink = VecSink::new();
        let mut segments = 0;
        loop {
            segments += 1;
            assert!(segments < 400, "no progress");
            let dev = FaultDevice::new(MemDevice::new(src.clone(), 512))
                .with_bad_sectors(bad.iter().copied())
                .with_log();
            let finished_before: Vec<(u64, u64)> = map
                .extents()
                .filter(|e| e.status == Status::Finished)
                .map(|e| (e.pos, e.end()))
                .collect();
            let stop = AtomicBool::new(false);
            let k = 1 + rng.below(400);
            let mut cb = |p: &Progress| {
                if p.reads >= k {
                    stop.store(true, Ordering::Relaxed);
                }
            };
            let r = rescue(
                &dev,
                &mut sink,
                &mut map,
                &MapStore::default(),
                &opts,
                &stop,
                &mut cb,
            );
            for (off, len) in dev.log() {
                let end = off + len as u64;
                for &(s, e) in &finished_before {
                    assert!(
                        end <= s || off >= e,
                        "resumed run re-read finished area {s:#x}..{e:#x} at {off:#x}+{len:#x}"
                    );
                }
            }
            // Carry the map over as text, exactly as a crash + restart would.
            map = parse(&render(&map, &Header::default()))
                .unwrap()
                .map
                .unwrap();
            match r.outcome {
                Outcome::Completed => break,
                Outcome::Interrupted => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(segments > 1, "round {round} was never interrupted");
        assert_exact(&map, &sink.data, &src, &bad, 512);
    }
}

#[test]
fn enospc_stops_cleanly_and_the_saved_map_resumes() {
    let dir = tempdir("enospc");
    let map_path = dir.join("map");
    let src = source(2 << 20, 42);
    let size = src.len() as u64;
    let bad: BTreeSet<u64> = [10u64, 2000, 3000].into_iter().collect();
    let dev =
        FaultDevice::new(MemDevice::new(src.clone(), 512)).with_bad_sectors(bad.iter().copied());
    let store = MapStore {
        path: Some(map_path.clone()),
        header: Header::default(),
    };
    let mut map = Map::new(size);
    let mut sink = VecSink::new();
    sink.limit = Some(700_000);
    let stop = AtomicBool::new(false);
    let r = rescue(
        &dev,
        &mut sink,
        &mut map,
        &store,
        &small_opts(),
        &stop,
        &mut |_| {},
    );
    match &r.outcome {
        Outcome::WriteFailed(e) => assert!(e.to_string().contains("No space left"), "{e}"),
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    // The saved map is valid and claims only what was written.
    let (saved, _) = ddmap::load(&map_path).unwrap().unwrap();
    assert!(saved.bytes(Status::Finished) <= 700_000);
    assert!(saved.bytes(Status::Finished) > 0);
    for e in saved.extents().filter(|e| e.status == Status::Finished) {
        assert_eq!(
            &sink.data[e.pos as usize..e.end() as usize],
            &src[e.pos as usize..e.end() as usize]
        );
    }
    // Space freed: resume from the file.
    sink.limit = None;
    let mut map = saved;
    let r = rescue(
        &dev,
        &mut sink,
        &mut map,
        &store,
        &small_opts(),
        &stop,
        &mut |_| {},
    );
    assert!(matches!(r.outcome, Outcome::Completed), "{:?}", r.outcome);
    assert_exact(&map, &sink.data, &src, &bad, 512);
    let (saved, _) = ddmap::load(&map_path).unwrap().unwrap();
    assert_eq!(
        saved.extents().collect::<Vec<_>>(),
        map.extents().collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn vanishing_source_stops_with_a_valid_map() {
    let dir = tempdir("vanish");
    let map_path = dir.join("map");
    let src = source(2 << 20, 8);
    let size = src.len() as u64;
    let dev = FaultDevice::new(MemDevice::new(src.clone(), 512))
        .with_bad_sectors([20u64])
        .with_vanish_at(1 << 20);
    let store = MapStore {
        path: Some(map_path.clone()),
        header: Header::default(),
    };
    let mut map = Map::new(size);
    let mut sink = VecSink::new();
    let stop = AtomicBool::new(false);
    let r = rescue(
        &dev,
        &mut sink,
        &mut map,
        &store,
        &small_opts(),
        &stop,
        &mut |_| {},
    );
    assert!(
        matches!(r.outcome, Outcome::SourceVanished(_)),
        "{:?}",
        r.outcome
    );
    let (saved, _) = ddmap::load(&map_path).unwrap().unwrap();
    assert_eq!(saved.size(), size);
    // Nothing after the vanishing point is marked bad: the device was gone, not the media.
    for e in saved.extents() {
        if e.end() > 1 << 20 {
            assert!(
                matches!(e.status, Status::NonTried | Status::Finished),
                "{e:?}"
            );
        }
    }
    assert!(saved.bytes(Status::Finished) > 0);
    assert!(saved.bytes(Status::Finished) < 1 << 20);
    let _ = std::fs::remove_dir_all(dir);
}

/// A read that fails with EINVAL (a misaligned O_DIRECT read) is a bug, not a
/// bad area: the run stops and marks nothing.
#[test]
fn einval_stops_without_marking_bad() {
    let src = source(1 << 20, 1);
    let dev = FaultDevice::new(MemDevice::new(src, 512))
        .with_bad_sectors([300u64])
        .with_errno(errno::EINVAL);
    let mut map = Map::new(1 << 20);
    let mut sink = VecSink::new();
    let r = run(&dev, &mut sink, &mut map, &small_opts());
    assert!(
        matches!(r.outcome, Outcome::ReadFailed(_)),
        "{:?}",
        r.outcome
    );
    assert_eq!(
        map.bytes(Status::BadSector) + map.bytes(Status::NonTrimmed),
        0
    );
}

/// With --min-read-rate a slow area is read once, then skipped; what follows
/// it is read first and the skipped part later. Nothing is lost.
#[test]
fn slow_area_is_skipped_then_read_later() {
    let src = source(4 << 20, 77);
    let slow_at = 1u64 << 20;
    let dev = FaultDevice::new(MemDevice::new(src.clone(), 512))
        .with_slow(slow_at, 64 << 10, Duration::from_millis(30))
        .with_log();
    let opts = Options {
        min_read_rate: Some(100 << 20),
        ..small_opts()
    };
    let mut map = Map::new(src.len() as u64);
    let mut sink = VecSink::new();
    let r = run(&dev, &mut sink, &mut map, &opts);
    assert!(matches!(r.outcome, Outcome::Completed));
    assert!(r.all_rescued());
    assert_eq!(sink.data, src);
    let log = dev.log();
    let skipped = slow_at + (64 << 10)..slow_at + (128 << 10);
    let first_skipped = log.iter().position(|(o, _)| skipped.contains(o)).unwrap();
    let first_beyond = log.iter().position(|&(o, _)| o >= skipped.end).unwrap();
    assert!(
        first_beyond < first_skipped,
        "after the slow read the engine should skip ahead: log {:?}",
        &log[..log.len().min(40)]
    );
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("imaging-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn a_map_of_another_size_is_refused_without_io() {
    let dev = FaultDevice::new(MemDevice::new(vec![1; 8192], 512)).with_log();
    let mut map = Map::new(4096);
    let mut sink = VecSink::new();
    let r = run(&dev, &mut sink, &mut map, &small_opts());
    assert!(
        matches!(r.outcome, Outcome::MapfileFailed(_)),
        "{:?}",
        r.outcome
    );
    assert!(dev.log().is_empty());
    assert!(sink.data.is_empty());
}
