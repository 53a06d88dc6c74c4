//! Progress snapshots and the console renderer.

use crate::engine::{Outcome, Phase, Report, Totals};
use ddmap::Status;
use std::io::Write;
use std::time::{Duration, Instant};

/// A snapshot the engine hands to its callback (about once a second).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub pass: u32,
    pub backwards: bool,
    /// ddrescue-style phase line, e.g. "Copying non-tried blocks... Pass 1 (forwards)".
    pub phase_text: String,
    pub pos: u64,
    pub size: u64,
    pub rescued: u64,
    pub non_tried: u64,
    pub non_trimmed: u64,
    pub non_scraped: u64,
    pub bad_sector: u64,
    /// Areas that failed so far (non-trimmed, non-scraped and bad-sector).
    pub bad_areas: u64,
    /// Bytes in those areas.
    pub bad_bytes: u64,
    pub reads: u64,
    pub read_errors: u64,
    /// Bytes/s over the last second or so.
    pub current_rate: f64,
    /// Bytes/s rescued by this run since it started.
    pub average_rate: f64,
    pub elapsed: Duration,
    pub since_last_good_read: Duration,
    /// Time to try the rest at the average rate (None before any data).
    pub eta: Option<Duration>,
    pub percent_rescued: f64,
}

impl Progress {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        phase: Phase,
        pass: u32,
        backwards: bool,
        pos: u64,
        size: u64,
        t: &Totals,
        reads: u64,
        read_errors: u64,
        current_rate: f64,
        average_rate: f64,
        elapsed: Duration,
        since_last_good_read: Duration,
    ) -> Progress {
        let failed = [Status::NonTrimmed, Status::NonScraped, Status::BadSector];
        let remaining =
            t.bytes(Status::NonTried) + t.bytes(Status::NonTrimmed) + t.bytes(Status::NonScraped);
        let eta = (average_rate > 0.0 && phase != Phase::Finished)
            .then(|| Duration::from_secs_f64(remaining as f64 / average_rate));
        Progress {
            phase,
            pass,
            backwards,
            phase_text: phase.describe(pass, backwards),
            pos,
            size,
            rescued: t.bytes(Status::Finished),
            non_tried: t.bytes(Status::NonTried),
            non_trimmed: t.bytes(Status::NonTrimmed),
            non_scraped: t.bytes(Status::NonScraped),
            bad_sector: t.bytes(Status::BadSector),
            bad_areas: failed.iter().map(|&s| t.areas(s)).sum(),
            bad_bytes: failed.iter().map(|&s| t.bytes(s)).sum(),
            reads,
            read_errors,
            current_rate,
            average_rate,
            elapsed,
            since_last_good_read,
            eta,
            percent_rescued: if size == 0 {
                100.0
            } else {
                t.bytes(Status::Finished) as f64 * 100.0 / size as f64
            },
        }
    }

    /// One status line: "12.3% 1.2 GB rescued, 3 bad areas (1.5 kB), 95 MB/s ...".
    pub fn line(&self) -> String {
        format!(
            "{:6.2}% {} rescued, {} bad areas ({}), {}/s now, {}/s avg, last good read {} ago, ETA {} | {}",
            self.percent_rescued,
            screen::decimal_size(self.rescued),
            self.bad_areas,
            screen::decimal_size(self.bad_bytes),
            screen::decimal_size(self.current_rate as u64),
            screen::decimal_size(self.average_rate as u64),
            human_duration(self.since_last_good_read),
            self.eta.map_or_else(|| "n/a".into(), human_duration),
            self.phase_text
        )
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Prints progress: one line rewritten in place (`\r`) on a terminal, a new
/// line every `every` otherwise (serial consoles, logs).
pub struct ConsoleRenderer<W: Write> {
    out: W,
    tty: bool,
    every: Duration,
    last: Option<Instant>,
    width: usize,
}

impl<W: Write> ConsoleRenderer<W> {
    pub fn new(out: W, tty: bool, every: Duration) -> Self {
        ConsoleRenderer {
            out,
            tty,
            every,
            last: None,
            width: 0,
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let line = p.line();
        if self.tty {
            let pad = self.width.saturating_sub(line.len());
            let _ = write!(self.out, "\r{line}{}", " ".repeat(pad));
            self.width = line.len();
            let _ = self.out.flush();
        } else if !matches!(self.last, Some(t) if t.elapsed() < self.every) {
            self.last = Some(Instant::now());
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// Ends the in-place line and prints the summary.
    pub fn finish(&mut self, r: &Report) {
        if self.tty && self.width > 0 {
            let _ = writeln!(self.out);
        }
        let _ = write!(self.out, "{}", summary(r));
        let _ = self.out.flush();
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The end-of-run summary.
pub fn summary(r: &Report) -> String {
    let t = &r.totals;
    let pct = |n: u64| {
        if r.size == 0 {
            0.0
        } else {
            n as f64 * 100.0 / r.size as f64
        }
    };
    let mut s = String::new();
    let how = match &r.outcome {
        Outcome::Completed if r.all_rescued() => "finished: everything rescued".to_string(),
        Outcome::Completed => "finished with bad areas".to_string(),
        Outcome::Interrupted => "interrupted; run the same command again to resume".to_string(),
        Outcome::SourceVanished(e) => format!("stopped: source vanished ({e}); mapfile saved"),
        Outcome::WriteFailed(e) => {
            format!("stopped: writing the image failed ({e}); free space and rerun to resume")
        }
        Outcome::MapfileFailed(e) => format!("stopped: {e}"),
        Outcome::ReadFailed(e) => format!("stopped: {e}"),
    };
    s.push_str(&format!("Result: {how}\n"));
    for (label, st) in [
        ("rescued", Status::Finished),
        ("non-tried", Status::NonTried),
        ("non-trimmed", Status::NonTrimmed),
        ("non-scraped", Status::NonScraped),
        ("bad-sector", Status::BadSector),
    ] {
        s.push_str(&format!(
            "  {label:>11}: {:>10} ({} bytes) in {} area(s), {:.4}%\n",
            screen::decimal_size(t.bytes(st)),
            t.bytes(st),
            t.areas(st),
            pct(t.bytes(st))
        ));
    }
    let secs = r.elapsed.as_secs_f64();
    s.push_str(&format!(
        "  this run: {} rescued in {} ({}/s), {} reads, {} read errors\n",
        screen::decimal_size(r.rescued_this_run),
        human_duration(r.elapsed),
        screen::decimal_size(if secs > 0.0 {
            (r.rescued_this_run as f64 / secs) as u64
        } else {
            0
        }),
        r.reads,
        r.read_errors
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddmap::Map;

    fn snap(rescued: u64) -> Progress {
        let mut m = Map::new(1_000_000);
        m.set(0, rescued, Status::Finished);
        m.set(600_000, 512, Status::BadSector);
        m.set(700_000, 4096, Status::NonTrimmed);
        Progress::new(
            Phase::Copying,
            1,
            false,
            rescued,
            1_000_000,
            &Totals::of(&m),
            10,
            2,
            1e6,
            5e5,
            Duration::from_secs(3),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn snapshot_numbers() {
        let p = snap(500_000);
        assert_eq!(p.rescued, 500_000);
        assert_eq!(p.bad_areas, 2);
        assert_eq!(p.bad_bytes, 4608);
        assert!((p.percent_rescued - 50.0).abs() < 1e-9);
        // remaining = non-tried + non-trimmed = 1e6 - 5e5 - 512 bytes at 5e5 B/s
        assert!(
            (p.eta.unwrap().as_secs_f64() - 0.998976).abs() < 1e-6,
            "{:?}",
            p.eta
        );
        assert!(
            p.line()
                .contains("50.00% 500.0 kB rescued, 2 bad areas (4.6 kB)"),
            "{}",
            p.line()
        );
    }

    #[test]
    fn tty_rewrites_one_line_and_log_mode_throttles() {
        let mut r = ConsoleRenderer::new(Vec::new(), true, Duration::from_secs(10));
        r.update(&snap(500_000));
        r.update(&snap(600_000));
        let out = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(out.matches('\r').count(), 2);
        assert!(!out.contains('\n'));

        let mut r = ConsoleRenderer::new(Vec::new(), false, Duration::from_secs(10));
        r.update(&snap(500_000));
        r.update(&snap(600_000));
        let out = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            out.lines().count(),
            1,
            "second update within 10 s is not printed"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m");
    }
}
