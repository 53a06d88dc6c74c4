use super::*;
use std::os::unix::fs::MetadataExt;
use testkit::TempDir;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A source tree: `tree/a.txt`, `tree/sub/big.bin` (2.5 MiB),
/// `tree/sub/empty`, a link `tree/link -> a.txt`.
fn tree(t: &TempDir) -> PathBuf {
    let src = t.join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "hello\n").unwrap();
    std::fs::write(src.join("sub/big.bin"), pattern(5 << 19, 7)).unwrap();
    std::fs::write(src.join("sub/empty"), "").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    File::options()
        .write(true)
        .open(src.join("a.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    src
}

fn never(_: &Path) -> Conflict {
    panic!("nothing exists at the destination")
}

#[test]
fn a_folder_is_copied_with_links_modes_times_and_progress() {
    let t = TempDir::new("treecopy-tree");
    let src = tree(&t);
    let dest = t.join("dest");
    let mut lines = Vec::new();
    let r = copy(
        &src,
        &dest,
        &open_file,
        &mut never,
        &mut |p| lines.push((p.line(), p.done)),
        &AtomicBool::new(false),
    );
    assert_eq!(
        (r.files, r.bytes, r.folders, r.links),
        (3, 6 + (5 << 19), 2, 1),
        "{r:?}"
    );
    assert!(!r.problems(), "{r:?}");
    let out = dest.join("tree");
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read(out.join("sub/big.bin")).unwrap(),
        pattern(5 << 19, 7)
    );
    assert_eq!(std::fs::read(out.join("sub/empty")).unwrap(), b"");
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a.txt")
    );
    let md = std::fs::metadata(out.join("a.txt")).unwrap();
    assert_eq!(md.mode() & 0o777, 0o640);
    assert_eq!(md.mtime(), 1_500_000_000);
    let (last, done) = lines.last().unwrap();
    assert!(done, "{lines:?}");
    assert!(
        last.starts_with("copy: 3 files, 2.5 MiB of 2.5 MiB (100%)"),
        "{last}"
    );
    assert!(lines.len() >= 4, "a line per chunk: {lines:?}");
    assert_eq!(r.render(5), "copied 3 files (2.5 MiB), 2 folders, 1 link\n");
    // One file on its own, into a folder that exists.
    let r = copy(
        &src.join("a.txt"),
        &t.join("one"),
        &open_file,
        &mut never,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert_eq!((r.files, r.folders), (1, 0));
    assert_eq!(std::fs::read(t.join("one/a.txt")).unwrap(), b"hello\n");
}

/// Reads of `name` fail in `bad` (offset, length) ranges, as a disk's bad
/// sectors under a file do.
struct Failing {
    file: File,
    bad: Vec<(u64, u64)>,
}

impl Reader for Failing {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let end = offset + buf.len() as u64;
        if self.bad.iter().any(|&(o, l)| offset < o + l && o < end) {
            return Err(io::Error::from_raw_os_error(5));
        }
        FileExt::read_at(&self.file, buf, offset)
    }
}

#[test]
fn unreadable_blocks_are_zero_filled_listed_and_the_copy_goes_on() {
    let t = TempDir::new("treecopy-bad");
    let src = tree(&t);
    std::fs::write(src.join("gone.txt"), "x").unwrap();
    let dest = t.join("dest");
    let bad = vec![(1 << 20, 8192), ((1 << 20) + 3 * 4096, 100)];
    let open = |p: &Path| -> io::Result<Box<dyn Reader>> {
        match p.file_name().and_then(|n| n.to_str()) {
            Some("big.bin") => Ok(Box::new(Failing {
                file: File::open(p)?,
                bad: bad.clone(),
            })),
            Some("gone.txt") => Err(io::Error::from_raw_os_error(5)),
            _ => open_file(p),
        }
    };
    let r = copy(
        &src,
        &dest,
        &open,
        &mut never,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert_eq!(r.files, 3, "{r:?}");
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    let d = &r.damaged[0];
    assert_eq!(d.path, Path::new("tree/sub/big.bin"));
    // Whole 4 KiB blocks: 8 KiB, then the block holding the 100 bytes.
    assert_eq!(d.lost, [(1 << 20, 8192), ((1 << 20) + 3 * 4096, 4096)]);
    assert!(d.error.contains("Input/output error"), "{}", d.error);
    let mut want = pattern(5 << 19, 7);
    want[1 << 20..(1 << 20) + 8192].fill(0);
    want[(1 << 20) + 3 * 4096..(1 << 20) + 4 * 4096].fill(0);
    assert!(std::fs::read(dest.join("tree/sub/big.bin")).unwrap() == want);
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].0, Path::new("tree/gone.txt"));
    assert!(!dest.join("tree/gone.txt").exists());
    assert!(r.problems());
    let text = r.render(5);
    assert!(
        text.contains("1 file with unreadable blocks (12.0 KiB zero-filled), 1 error, 0 skipped\n"),
        "{text}"
    );
    assert!(
        text.contains("  damaged tree/sub/big.bin: 12.0 KiB zero-filled in 2 ranges"),
        "{text}"
    );
    assert!(
        text.contains("  not copied tree/gone.txt: Input/output error"),
        "{text}"
    );
    let full = r.full_text(&src, &dest);
    assert!(
        full.contains("  zero-filled bytes 1048576..1056768\n"),
        "{full}"
    );
}

#[test]
fn existing_files_are_overwritten_only_when_the_answer_says_so() {
    let t = TempDir::new("treecopy-conflict");
    let src = tree(&t);
    let dest = t.join("dest");
    std::fs::create_dir_all(dest.join("tree/sub")).unwrap();
    std::fs::write(dest.join("tree/a.txt"), "mine").unwrap();
    std::fs::write(dest.join("tree/sub/empty"), "mine too").unwrap();
    let copy_with = |answer: Conflict| {
        let mut asked = Vec::new();
        let r = copy(
            &src,
            &dest,
            &open_file,
            &mut |p| {
                asked.push(p.to_path_buf());
                answer
            },
            &mut |_| {},
            &AtomicBool::new(false),
        );
        (r, asked)
    };
    let (r, asked) = copy_with(Conflict::Skip);
    assert_eq!(
        asked,
        [Path::new("tree/a.txt"), Path::new("tree/sub/empty")]
    );
    assert_eq!(r.skipped.len(), 2, "{r:?}");
    assert_eq!(r.links, 1, "{r:?}");
    assert_eq!(std::fs::read(dest.join("tree/a.txt")).unwrap(), b"mine");
    assert_eq!(r.files, 1, "big.bin only: {r:?}");

    let (r, asked) = copy_with(Conflict::SkipAll);
    assert_eq!(asked.len(), 1, "asked once: {asked:?}");
    // The link and big.bin are there now too.
    assert_eq!(r.skipped.len(), 4, "{r:?}");

    let (r, _) = copy_with(Conflict::Stop);
    assert!(
        r.stopped
            .as_deref()
            .unwrap()
            .contains("stopped as asked at tree/a.txt"),
        "{r:?}"
    );
    assert_eq!(std::fs::read(dest.join("tree/a.txt")).unwrap(), b"mine");

    let (r, asked) = copy_with(Conflict::OverwriteAll);
    assert_eq!(asked.len(), 1);
    assert_eq!(r.files, 3, "{r:?}");
    assert_eq!(std::fs::read(dest.join("tree/a.txt")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(dest.join("tree/sub/empty")).unwrap(), b"");
}

#[test]
fn cancel_removes_the_partial_file_and_odd_sources_are_refused() {
    let t = TempDir::new("treecopy-cancel");
    let src = tree(&t);
    let dest = t.join("dest");
    let cancel = AtomicBool::new(false);
    let r = copy(
        &src.join("sub/big.bin"),
        &dest,
        &open_file,
        &mut never,
        &mut |p| {
            if p.bytes >= CHUNK as u64 {
                cancel.store(true, Ordering::SeqCst);
            }
        },
        &cancel,
    );
    assert!(
        r.stopped
            .as_deref()
            .unwrap()
            .starts_with("cancelled during big.bin"),
        "{r:?}"
    );
    assert!(!dest.join("big.bin").exists());

    // Into itself.
    let r = copy(
        &src,
        &src.join("sub"),
        &open_file,
        &mut never,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(r.stopped.as_deref().unwrap().contains("is inside"), "{r:?}");

    // A FIFO is named, not read (which would block).
    let fifo = t.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo is needed for this test")
        .success());
    let r = copy(
        &fifo,
        &t.join("d2"),
        &open_file,
        &mut never,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(r.errors[0].1.contains("FIFO"), "{r:?}");
    assert_eq!(measure(&src), (3, 6 + (5 << 19)));
}
