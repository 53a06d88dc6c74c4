//! The library's whole-file copy and folder tree on the real ESXi-written
//! VMFS5 image: what `vmfs cat` and `vmfs tree` print.

mod common;
use vmfs::walk::{copy_range, tree, CopyError, TreeItem};
use vmfs::Volume;

fn vmfs5() -> Volume {
    Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap()
}

/// The file's bytes read one `read_at` at a time: the reference.
fn read_whole(v: &Volume, path: &str) -> Vec<u8> {
    let f = v.open(path).unwrap();
    let mut all = vec![0u8; f.size() as usize];
    let mut at = 0;
    while at < all.len() {
        let n = f.read_at(&mut all[at..], at as u64).unwrap();
        assert!(n > 0, "{path} ended early at {at}");
        at += n;
    }
    all
}

#[test]
fn copy_range_gives_the_file_and_any_part_of_it() {
    let v = vmfs5();
    let want = read_whole(&v, "/bigger");
    let f = v.open("/bigger").unwrap();
    let mut got = Vec::new();
    copy_range(&f, 0, u64::MAX, &mut got).unwrap();
    assert!(got == want, "whole file differs ({} bytes)", got.len());
    // A range across chunk boundaries, and one past the end (clamped).
    let (a, b) = ((1 << 20) - 7, (3 << 20) + 11);
    let mut part = Vec::new();
    copy_range(&f, a, b, &mut part).unwrap();
    assert!(part == want[a as usize..b as usize]);
    let mut tail = Vec::new();
    copy_range(&f, want.len() as u64 - 5, u64::MAX, &mut tail).unwrap();
    assert_eq!(tail, want[want.len() - 5..]);
    let mut none = Vec::new();
    copy_range(&f, u64::MAX - 1, u64::MAX, &mut none).unwrap();
    assert!(none.is_empty());
}

struct Closed;
impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_stops_the_copy_with_its_error() {
    let v = vmfs5();
    let f = v.open("/bigger").unwrap();
    match copy_range(&f, 0, u64::MAX, &mut Closed) {
        Err(CopyError::Write(e)) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
        other => panic!("expected a write error, got {other:?}"),
    }
}

#[test]
fn the_tree_lists_folders_before_their_contents_and_hides_metadata() {
    let v = vmfs5();
    let root = v.lookup("/").unwrap();
    let items = tree(&v, &root, false);
    assert!(!items.iter().any(TreeItem::is_problem), "{items:?}");
    let folder = items
        .iter()
        .position(|i| matches!(i, TreeItem::Folder { depth: 1, name } if name == "directory"))
        .expect("the folder `directory`");
    assert!(
        matches!(&items[folder + 1], TreeItem::File { depth: 2, .. }),
        "its contents follow it one level down: {:?}",
        &items[folder + 1]
    );
    assert!(items
        .iter()
        .any(|i| matches!(i, TreeItem::File { depth: 1, name, size: 5, .. } if name == "small")));
    let hidden = |items: &[TreeItem]| {
        items
            .iter()
            .any(|i| matches!(i, TreeItem::File { name, .. } if name.ends_with(".sf")))
    };
    assert!(!hidden(&items), "metadata files only with `all`");
    assert!(hidden(&tree(&v, &root, true)));
}
