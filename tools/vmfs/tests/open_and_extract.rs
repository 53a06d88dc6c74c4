//! The library's opening and extraction APIs over the real images: what
//! the CLI and the menu build on (progress, cancellation, the report and
//! its classification, extents discovered and said).

mod common;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use vmfs::extract::{extract, stored_size, ExtractReport, Outcome, Progress};
use vmfs::open::{open_volume, open_volume_on, OpenRequest};
use vmfs::Volume;

/// A scratch directory under target/ (extraction writes sparse files too
/// large for a small /tmp), removed when the test ends.
fn scratch(name: &str) -> testkit::TempDir {
    testkit::TempDir::new_in(&common::workspace().join("target/vmfs-test-scratch"), name)
}

fn vmfs5() -> Volume {
    Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap()
}

fn paths(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

/// Extracts with a progress log and the given cancel flag.
fn run(
    v: &Volume,
    p: &[&str],
    dest: &Path,
    cancel: &AtomicBool,
    on_progress: &dyn Fn(&Progress),
) -> (ExtractReport, Vec<Progress>) {
    let mut seen = Vec::new();
    let mut progress = |p: &Progress| {
        seen.push(*p);
        on_progress(p);
    };
    let r = extract(v, &paths(p), dest, &mut progress, cancel).unwrap();
    (r, seen)
}

#[test]
fn a_clean_extraction_reports_every_file_and_calls_progress_to_the_end() {
    let v = vmfs5();
    let dest = scratch("clean");
    let (r, seen) = run(
        &v,
        &["big", "small", "symlink"],
        &dest,
        &AtomicBool::new(false),
        &|_| {},
    );
    assert_eq!(r.outcome(), Outcome::Clean, "{r:?}");
    assert_eq!(r.outcome().exit_code(), 0);
    assert_eq!((r.files, r.written), (2, 1_048_577 + 5));
    assert!(!r.cancelled && r.stopped.is_none() && r.skipped.is_empty());
    assert_eq!(r.total, stored_size(&v, "big") + stored_size(&v, "small"));
    assert_eq!(r.done, r.total);
    assert_eq!(
        r.text(),
        "# vmfs extract report: bytes that could not be read were written as zeros\n"
    );
    // After every chunk, then once more at the end.
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done), "{seen:?}");
    let last = seen.last().unwrap();
    assert!(last.finished && seen.iter().filter(|p| p.finished).count() == 1);
    assert_eq!((last.done, last.total, last.files), (r.total, r.total, 2));
    assert_eq!(std::fs::read(dest.join("small")).unwrap(), b"tiny\n");
    assert_eq!(
        std::fs::read_link(dest.join("symlink")).unwrap(),
        PathBuf::from("/vmfs/volumes/vmfs5/small")
    );
}

#[test]
fn cancelling_mid_file_keeps_it_as_incomplete_and_stops() {
    let v = vmfs5();
    let dest = scratch("cancel");
    let cancel = AtomicBool::new(false);
    // Cancelled once the first MiB of `bigger` (128 MiB) is copied.
    let (r, seen) = run(&v, &["bigger", "small"], &dest, &cancel, &|p| {
        if p.done >= 1 << 20 {
            cancel.store(true, Ordering::SeqCst);
        }
    });
    assert!(r.cancelled, "{r:?}");
    assert_eq!(r.outcome(), Outcome::Stopped);
    assert_eq!(r.outcome().exit_code(), 2);
    let partial = dest.join("bigger.incomplete");
    let why = r.stopped.as_deref().unwrap();
    assert_eq!(
        why,
        format!(
            "bigger: cancelled (what was written is in {})",
            partial.display()
        )
    );
    assert!(r.done < r.total && r.files == 0, "{r:?}");
    assert!(seen.last().unwrap().finished);
    // What was written is kept under the name that says it is partial;
    // nothing after it was tried.
    assert!(!dest.join("bigger").exists() && !dest.join("small").exists());
    let kept = std::fs::read(&partial).unwrap();
    assert!(kept.len() >= 1 << 20, "{} bytes kept", kept.len());
    let mut want = vec![0u8; 1 << 20];
    v.open("bigger").unwrap().read_at(&mut want, 0).unwrap();
    assert!(kept[..1 << 20] == want[..], "the kept part differs");
    let written = r.write_report().unwrap();
    assert_eq!(written, dest.join("vmfs-extract-report.txt"));
    let text = std::fs::read_to_string(written).unwrap();
    assert!(text.ends_with(&format!("STOPPED {why}\n")), "{text}");
}

#[test]
fn cancelled_before_the_start_nothing_is_copied() {
    let v = vmfs5();
    let dest = scratch("cancel-first");
    let (r, seen) = run(&v, &["small"], &dest, &AtomicBool::new(true), &|_| {});
    assert!(r.cancelled);
    assert_eq!(r.stopped.as_deref(), Some("cancelled before small"));
    assert_eq!((r.files, r.done), (0, 0));
    assert_eq!(seen.len(), 1, "only the final call: {seen:?}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
}

#[test]
fn bad_areas_are_lost_bytes_and_skips_are_counted() {
    let img = common::image("vmfs5.bin.gz").display().to_string();
    let v = vmfs5();
    let (bad_at, file_bad) = common::bad_area_in_big(&v);
    let bad = vmfs::damage::Ranges(vec![(bad_at, 4096)]);
    let sources = [img.clone()];
    let o = open_volume(&OpenRequest {
        sources: &sources,
        bad: Some(&bad),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(o.origins, vec![(img, 0)]);
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    let dest = scratch("lost");
    let (r, _) = run(
        &o.volume,
        &["big", "no-such-file"],
        &dest,
        &AtomicBool::new(false),
        &|_| {},
    );
    assert_eq!(r.outcome(), Outcome::LostOrSkipped, "{r:?}");
    assert_eq!(r.outcome().exit_code(), 1);
    assert_eq!(r.lost_bytes(), 4096);
    assert_eq!(r.losses.len(), 1);
    assert_eq!(r.losses[0].path, "big");
    assert_eq!(r.losses[0].ranges, vec![(file_bad, 4096)]);
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0].starts_with("no-such-file: "),
        "{:?}",
        r.skipped
    );
    let text = r.text();
    assert!(text.contains("LOST big: "), "{text}");
    assert!(
        text.contains(&format!(
            "  bytes {file_bad}..{} (4096 bytes)\n",
            file_bad + 4096
        )),
        "{text}"
    );
    assert!(text.contains("SKIPPED no-such-file: "), "{text}");
    assert_eq!(r.files, 1, "a file with lost bytes is still extracted");
}

/// A span with one device named: the other is found on the machine's
/// disks (a /sys and /dev made here), and the library says so as a note.
#[test]
fn opening_finds_the_other_extent_of_a_span_and_says_so() {
    let first = common::image("span/vmfs5-span-0.bin.gz");
    let second = common::image("span/vmfs5-span-1.bin.gz");
    let root = scratch("span-sys");
    let (sys, dev) = (root.join("sys"), root.join("dev"));
    for name in ["sdx", "sdy"] {
        std::fs::create_dir_all(sys.join("block").join(name)).unwrap();
    }
    std::fs::create_dir_all(&dev).unwrap();
    std::os::unix::fs::symlink(&first, dev.join("sdx")).unwrap();
    std::os::unix::fs::symlink(&second, dev.join("sdy")).unwrap();
    let sources = [first.display().to_string()];
    let o = open_volume_on(
        &OpenRequest {
            sources: &sources,
            ..Default::default()
        },
        &sys,
        &dev,
    )
    .unwrap();
    let found = dev.join("sdy").display().to_string();
    assert_eq!(o.origins, vec![(sources[0].clone(), 0), (found.clone(), 0)]);
    assert_eq!(o.notes.len(), 1, "{:?}", o.notes);
    assert!(
        o.notes[0].starts_with("extent of volume ")
            && o.notes[0].ends_with(&format!(" found on {found} at byte 0")),
        "{:?}",
        o.notes
    );
    assert!(o.volume.info().missing.is_empty());
    assert_eq!(o.volume.info().label, "vmfs5-span");
    // Named extents: nothing is looked for.
    let extents = [second.display().to_string()];
    let o = open_volume_on(
        &OpenRequest {
            sources: &sources,
            extents: &extents,
            ..Default::default()
        },
        &sys,
        &dev,
    )
    .unwrap();
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    assert_eq!(o.origins.len(), 2);
}

#[test]
fn opening_without_a_source_or_volume_fails_with_a_message() {
    let e = open_volume(&OpenRequest::default()).err().unwrap();
    assert_eq!(e.message, "no source given (a disk, partition or image)");
    let dir = scratch("no-vmfs");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("zeros.img");
    std::fs::File::create(&empty)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let sources = [empty.display().to_string()];
    let e = open_volume(&OpenRequest {
        sources: &sources,
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(!e.to_string().is_empty() && e.notes.is_empty(), "{e:?}");
}
