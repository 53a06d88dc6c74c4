//! Copies of one extent (a disk and its raw clone) are kept apart: on the
//! real ESXi-written two-device span, with a third device that is a byte
//! copy of one extent, the span is assembled from one copy per extent and
//! the choice is said; a one-extent volume found twice is two datastores;
//! naming both copies is an error that says so.

mod common;

use common::writer::{scratch_copy, Scratch};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use vmfs::datastores::{plan_paths, Candidate};
use vmfs::lvm::LVM_HEADER_OFFSET;

/// A sparse byte copy of a fixture (removed when dropped), its LVM header
/// generation raised by `bump` (as ESXi does when it rewrites the header).
fn copy_of(rel: &str, tag: &str, bump: u64) -> Scratch {
    let copy = scratch_copy(rel, tag);
    if bump > 0 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&copy.0)
            .unwrap();
        let at = LVM_HEADER_OFFSET + 0x72;
        let mut g = [0u8; 8];
        f.read_exact_at(&mut g, at).unwrap();
        let g = u64::from_le_bytes(g) + bump;
        f.write_all_at(&g.to_le_bytes(), at).unwrap();
    }
    copy
}

fn s(p: PathBuf) -> String {
    p.display().to_string()
}

#[test]
fn span_with_a_copy_of_one_extent_takes_one_copy_and_says_which() {
    let a = s(common::image("span/vmfs5-span-0.bin.gz"));
    let b = s(common::image("span/vmfs5-span-1.bin.gz"));
    // The same generation: the first found is taken.
    let same_copy = copy_of("span/vmfs5-span-1.bin.gz", "span-same", 0);
    let same = s(same_copy.0.clone());
    let (plans, failed) = plan_paths(&[same.clone(), a.clone(), b.clone()]);
    assert!(
        failed.is_empty(),
        "{:?}",
        failed.iter().map(|f| f.1.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(plans.len(), 1, "one span, not one datastore per device");
    let p = &plans[0];
    let members: Vec<&str> = p.members.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(
        members.contains(&a.as_str()) && members.contains(&same.as_str()),
        "{members:?}"
    );
    assert_eq!(p.choices.len(), 1, "{:?}", p.choices);
    assert!(
        p.choices[0].contains(&format!("took {same}")) && p.choices[0].contains("the first found"),
        "{}",
        p.choices[0]
    );
    assert!(p.choices[0].contains(&b), "{}", p.choices[0]);
    let d = plans.into_iter().next().unwrap().open();
    let v = d.volume.expect("the span opens");
    assert!(v.info().missing.is_empty());
    assert!(v.read_dir("/").unwrap().iter().any(|e| e.name == ".fdc.sf"));

    // A newer copy (header rewritten later) is taken over an older one.
    let newer_copy = copy_of("span/vmfs5-span-1.bin.gz", "span-newer", 3);
    let newer = s(newer_copy.0.clone());
    let (plans, _) = plan_paths(&[b.clone(), a.clone(), newer.clone()]);
    assert_eq!(plans.len(), 1);
    let members: Vec<&str> = plans[0].members.iter().map(|o| o.path.as_str()).collect();
    assert!(
        members.contains(&newer.as_str()) && !members.contains(&b.as_str()),
        "{members:?}"
    );
    assert!(
        plans[0].choices[0].contains("the newest"),
        "{}",
        plans[0].choices[0]
    );
    // The volume's start first: the datastore is named after span-0.
    assert_eq!(plans[0].source().0, a);
}

#[test]
fn naming_two_copies_of_one_extent_is_an_error_that_says_so() {
    let b = s(common::image("span/vmfs5-span-1.bin.gz"));
    let copy_file = copy_of("span/vmfs5-span-1.bin.gz", "named-copy", 0);
    let copy = s(copy_file.0.clone());
    let devs = [b.as_str(), copy.as_str()]
        .iter()
        .map(|p| Box::new(blockdev::Device::open(p).unwrap()) as Box<dyn blockdev::BlockDevice>)
        .collect();
    let e = vmfs::Volume::from_devices(devs).err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("copies of the same extent") && msg.contains("name only one"),
        "{msg}"
    );
}

#[test]
fn one_extent_volume_found_twice_is_two_browsable_datastores() {
    let orig = s(common::image("vmfs5.bin.gz"));
    let clone_file = copy_of("vmfs5.bin.gz", "clone", 0);
    let clone = s(clone_file.0.clone());
    let (plans, failed) = plan_paths(&[orig.clone(), clone.clone()]);
    assert!(failed.is_empty());
    assert_eq!(plans.len(), 2);
    let stores: Vec<_> = plans.into_iter().map(|p| p.open()).collect();
    assert_eq!(stores[0].source, orig);
    assert_eq!(
        stores[0].copy_note().unwrap(),
        format!("same volume as {clone} (a copy)")
    );
    assert_eq!(
        stores[1].copy_note().unwrap(),
        format!("same volume as {orig} (a copy)")
    );
    for d in &stores {
        let v = d.volume.as_ref().expect("each copy opens on its own");
        assert_eq!(v.info().label, "vmfs5");
        let names: Vec<String> = v
            .read_dir("/directory")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(names.iter().any(|n| n == "file100"), "{names:?}");
    }
    // The candidates' headers agree that these are copies.
    let c: Vec<Candidate> = [&orig, &clone]
        .iter()
        .flat_map(|p| vmfs::source::open_source(p, None, None).unwrap())
        .map(Candidate::new)
        .collect();
    assert!(c[0]
        .header
        .as_ref()
        .unwrap()
        .is_copy_of(c[1].header.as_ref().unwrap()));
}

#[test]
fn list_and_info_exit_codes_with_copies() {
    use vmfs::cli::{run, Action, InfoCommand, ListCommand, VmfsCommand};
    let orig = s(common::image("vmfs5.bin.gz"));
    let clone_file = copy_of("vmfs5.bin.gz", "cli-clone", 0);
    let clone = s(clone_file.0.clone());
    let blank_file = Scratch(clone_file.0.with_extension("blank"));
    let blank = blank_file.0.clone();
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let list = |src: Vec<String>| {
        run(VmfsCommand {
            action: Action::List(ListCommand { src, json: false }),
        })
    };
    assert_eq!(list(vec![orig.clone(), clone.clone()]), 0);
    assert_eq!(list(vec![s(blank)]), 1, "nothing found is exit 1");
    // Each copy alone opens; both named as one volume are refused.
    let info = |src: Vec<String>, extent: Vec<String>| {
        run(VmfsCommand {
            action: Action::Info(InfoCommand {
                src,
                extent,
                offset: None,
                json: true,
            }),
        })
    };
    assert_eq!(info(vec![clone.clone()], vec![]), 0);
    assert_eq!(info(vec![orig], vec![clone]), 2);
}
