//! The whole-array verify as a library call on member image files, as the
//! command and the menu make it.

use super::common::*;
use crate::array_verify::{verify_array, ArrayVerifyError, ArrayVerifyOptions, Notice};
use testkit::mdwriter::build_members;

fn run(
    targets: Vec<String>,
) -> (
    Result<crate::array_verify::ArrayVerified, ArrayVerifyError>,
    Vec<Notice>,
) {
    let mut notices = Vec::new();
    let mut calls = 0;
    let r = verify_array(
        &ArrayVerifyOptions {
            batch_mib: 1,
            ..ArrayVerifyOptions::new(targets)
        },
        &mut |n| notices.push(n.clone()),
        &mut |_| calls += 1,
    );
    if r.is_ok() {
        assert!(calls > 0, "progress was reported");
    }
    (r, notices)
}

#[test]
fn clean_raid5_image_files_verify_consistent() {
    let dir = temp_dir("av-clean");
    let s = spec("1.2", 5, 4);
    let paths = write_images(&dir, &names(4, ".img"), &build_members(&s));
    let (r, notices) = run(paths.clone());
    let v = r.unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(v.exit_code(), 0);
    assert_eq!(v.report.mismatch_count, 0);
    assert_eq!(v.report.checked_array_bytes, s.array_bytes());
    assert_eq!(v.array.name.as_deref(), Some("DiskStation:2"));
    let text = crate::array_verify::render_verify(&v.array, &v.report);
    assert!(text.contains("Result: 0 mismatches"), "{text}");
    for p in &paths {
        assert!(text.contains(p.as_str()), "{p} named in {text}");
    }
}

#[test]
fn a_changed_byte_is_a_mismatch_with_exit_code_1() {
    let dir = temp_dir("av-bad");
    let s = spec("1.2", 1, 2);
    let mut imgs = build_members(&s);
    let (_, _, data_off) = s.placement();
    imgs[1][data_off as usize + 4096] ^= 0x5a;
    let paths = write_images(&dir, &names(2, ".img"), &imgs);
    let v = run(paths).0.unwrap();
    assert_eq!(v.report.mismatch_count, 1);
    assert_eq!(v.exit_code(), 1);
}

#[test]
fn refusals_are_typed_with_their_exit_codes() {
    assert_eq!(run(Vec::new()).0.unwrap_err(), ArrayVerifyError::NoTargets);

    let dir = temp_dir("av-refuse");
    let mut paths = write_images(&dir, &names(2, ".img"), &build_members(&spec("1.2", 1, 2)));
    let missing = std::path::Path::new(&paths[0])
        .with_file_name("gone.img")
        .display()
        .to_string();
    paths.push(missing.clone());
    let (r, notices) = run(paths);
    let e = r.unwrap_err();
    assert_eq!(e, ArrayVerifyError::MembersUnopened);
    assert_eq!(e.exit_code(), 2);
    assert!(
        matches!(&notices[..], [Notice::OpenFailed(m)] if m.contains("gone.img")),
        "{notices:?}"
    );

    // Members of two different arrays.
    let mut other = spec("1.2", 1, 2);
    other.uuid[0] ^= 1;
    let a = write_images(
        &dir,
        &names(2, "-a.img"),
        &build_members(&spec("1.2", 1, 2)),
    );
    let b = write_images(&dir, &names(2, "-b.img"), &build_members(&other));
    let e = run([a, b].concat()).0.unwrap_err();
    assert!(
        matches!(&e, ArrayVerifyError::SeveralArrays(u) if u.len() == 2),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("the devices belong to 2 arrays"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);

    // A degraded RAID-5 cannot be compared: exit code 1, as the command.
    let imgs = build_members(&spec("1.2", 5, 3));
    let three = write_images(&dir, &names(3, "-r5.img"), &imgs);
    let e = run(three[..2].to_vec()).0.unwrap_err();
    assert!(matches!(e, ArrayVerifyError::NotVerifiable { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);
}
