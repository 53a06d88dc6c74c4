//! The CLI front: extract (sparse, damage report), files-hit, over the real
//! images.

mod common;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use vmfs::cli::*;
use vmfs::files_hit::files_hit_in;

/// A scratch directory under target/ (extraction writes sparse files too
/// large for a small /tmp), removed when the test ends.
fn scratch(name: &str) -> testkit::TempDir {
    testkit::TempDir::new_in(&common::workspace().join("target/vmfs-test-scratch"), name)
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn extract_keeps_content_sizes_and_holes() {
    let img = common::image("vmfs5.bin.gz");
    let dest = scratch("extract");
    let code = run(VmfsCommand {
        action: Action::Extract(ExtractCommand {
            args: vec![
                s(&img),
                "directory".into(),
                "/big".into(),
                "normal-flat.vmdk".into(),
                "symlink".into(),
                s(&dest),
            ],
            extent: vec![],
            offset: None,
            map: None,
            quiet: true,
            code_file: None,
        }),
    });
    assert_eq!(code, 0);
    // Access and modification times of files, folders and links are the
    // FDs' (checked before anything here reads them, which sets atimes).
    let v = vmfs::Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap();
    for (vmfs_path, local) in [
        ("normal-flat.vmdk", "normal-flat.vmdk"),
        ("directory", "directory"),
        ("directory/file42", "directory/file42"),
        ("symlink", "symlink"),
    ] {
        let ino = v.lookup(vmfs_path).unwrap();
        let m = std::fs::symlink_metadata(dest.join(local)).unwrap();
        assert_eq!(
            (m.mtime() as u32, m.atime() as u32),
            (ino.mtime, ino.atime),
            "{vmfs_path}"
        );
    }
    assert_eq!(
        std::fs::read(dest.join("directory/file42")).unwrap(),
        b"File 42\n"
    );
    assert_eq!(
        std::fs::read_dir(dest.join("directory")).unwrap().count(),
        100
    );
    let big = std::fs::read(dest.join("big")).unwrap();
    assert_eq!(big.len(), 1_048_577);
    assert_eq!(&big[..16], b"Kusjes van SRT<3");
    let m = std::fs::metadata(dest.join("normal-flat.vmdk")).unwrap();
    assert_eq!(m.len(), 69 << 30);
    assert!(
        m.blocks() * 512 < 64 << 20,
        "thin file written sparse: {} blocks",
        m.blocks()
    );
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dest.join("normal-flat.vmdk")).unwrap();
    let mut b = [0u8; 512];
    f.read_exact_at(&mut b, 42 << 30).unwrap();
    assert!(b.iter().all(|&x| x == 0x42));
    assert_eq!(
        std::fs::read_link(dest.join("symlink")).unwrap(),
        PathBuf::from("/vmfs/volumes/vmfs5/small")
    );
    assert!(!dest.join("vmfs-extract-report.txt").exists());
}

#[test]
fn mapfile_bad_area_is_reported_per_file_and_extraction_completes() {
    let img = common::image("vmfs5.bin.gz");
    let v = vmfs::Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap();
    let (bad_at, file_bad) = common::bad_area_in_big(&v);
    let dest = scratch("damage");
    let map = dest.join("map.txt");
    std::fs::write(
        &map,
        format!(
            "# test\n0x0 +\n0x0 {bad_at:#x} +\n{bad_at:#x} 0x1000 -\n{:#x} 0x100000000000 +\n",
            bad_at + 0x1000
        ),
    )
    .unwrap();

    let (hits, errors) = files_hit_in(
        &v,
        &[(s(&img), 0)],
        &vmfs::damage::parse_mapfile(&std::fs::read_to_string(&map).unwrap()).unwrap(),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].path, "/big");
    assert_eq!(hits[0].ranges, vec![(file_bad, 4096)]);

    let out = dest.join("out");
    let code = run(VmfsCommand {
        action: Action::Extract(ExtractCommand {
            args: vec![
                s(&img),
                "big".into(),
                "bigger".into(),
                "small".into(),
                s(&out),
            ],
            extent: vec![],
            offset: None,
            map: Some(s(&map)),
            quiet: true,
            code_file: None,
        }),
    });
    assert_eq!(code, 1, "lost bytes make exit code 1");
    let big = std::fs::read(out.join("big")).unwrap();
    assert_eq!(big.len(), 1_048_577);
    let want: Vec<u8> = {
        let mut w = b"Kusjes van SRT<3".repeat(65536);
        w.push(b'\n');
        w
    };
    let fb = file_bad as usize;
    assert!(
        big[fb..fb + 4096].iter().all(|&x| x == 0),
        "lost range zero-filled"
    );
    assert_eq!(&big[..fb], &want[..fb]);
    assert_eq!(&big[fb + 4096..], &want[fb + 4096..]);
    assert_eq!(
        std::fs::metadata(out.join("bigger")).unwrap().len(),
        128 << 20
    );
    assert_eq!(std::fs::read(out.join("small")).unwrap(), b"tiny\n");
    let report = std::fs::read_to_string(out.join("vmfs-extract-report.txt")).unwrap();
    assert!(report.contains("LOST big"), "{report}");
    assert!(
        report.contains(&format!(
            "bytes {file_bad}..{} (4096 bytes)",
            file_bad + 4096
        )),
        "{report}"
    );
    assert!(!report.contains("bigger"), "{report}");
}

#[test]
fn info_ls_cat_exit_codes() {
    let img = s(&common::image("vmfs6.bin.gz"));
    let ok = |a: Action| run(VmfsCommand { action: a });
    assert_eq!(
        ok(Action::Info(InfoCommand {
            src: vec![img.clone()],
            extent: vec![],
            offset: None,
            json: true
        })),
        0
    );
    assert_eq!(
        ok(Action::Ls(LsCommand {
            args: vec![img.clone(), "/directory".into()],
            extent: vec![],
            offset: None,
            long: true,
            scan: false,
            json: false
        })),
        0
    );
    assert_eq!(
        ok(Action::Cat(CatCommand {
            args: vec![img.clone(), "small".into()],
            extent: vec![],
            offset: None,
            length: None,
            vmfs_offset: None
        })),
        0
    );
    assert_eq!(
        ok(Action::Cat(CatCommand {
            args: vec![img.clone(), "nonexistent".into()],
            extent: vec![],
            offset: None,
            length: None,
            vmfs_offset: None
        })),
        2
    );
    assert_eq!(
        ok(Action::Info(InfoCommand {
            src: vec!["/nonexistent/disk".into()],
            extent: vec![],
            offset: None,
            json: false
        })),
        2
    );
    assert_eq!(
        ok(Action::Tree(TreeCommand {
            args: vec![img.clone()],
            extent: vec![],
            offset: None,
            all: true
        })),
        0
    );
    assert_eq!(
        ok(Action::Scan(ScanCommand {
            src: vec![img.clone()],
            extent: vec![],
            offset: None,
            json: true
        })),
        0
    );
    assert_eq!(
        ok(Action::Stat(StatCommand {
            args: vec![img.clone(), "large-flat.vmdk".into()],
            extent: vec![],
            offset: None,
            extents: true,
            json: true
        })),
        0
    );
    // A spanned volume: second device as --extent; one device alone says
    // what is missing (exit 1).
    let a = s(&common::image("span/vmfs6-span-0.bin.gz"));
    let b = s(&common::image("span/vmfs6-span-1.bin.gz"));
    assert_eq!(
        ok(Action::Info(InfoCommand {
            src: vec![a.clone()],
            extent: vec![b],
            offset: None,
            json: false
        })),
        0
    );
    assert_eq!(
        ok(Action::Info(InfoCommand {
            src: vec![a],
            extent: vec![],
            offset: None,
            json: false
        })),
        1
    );
}

/// After directory damage, `scan` lists the orphans and `extract` takes
/// them by FD address (`fd:ADDR`), naming the copy `orphan-fd-ADDR`.
#[test]
fn orphans_are_extracted_by_fd_address() {
    use std::os::unix::fs::FileExt;
    let dir = scratch("orphans");
    let img = dir.join("vmfs5-lost-dir.img");
    {
        let mut src = std::fs::File::open(common::image("vmfs5.bin.gz")).unwrap();
        let out = std::fs::File::create(&img).unwrap();
        let n = common::copy_sparse(&mut src, &out, 0, None);
        out.set_len(n).unwrap();
        // Wipe /directory's data: its 100 files become orphans.
        let v = vmfs::Volume::from_devices(vec![common::dev("vmfs5.bin.gz")]).unwrap();
        let d = v.lookup("directory").unwrap();
        for e in v.device_extents(&d).unwrap() {
            out.write_all_at(&vec![0u8; e.len as usize], e.device_offset)
                .unwrap();
        }
    }
    let v =
        vmfs::Volume::from_devices(vec![Box::new(blockdev::Device::open(&img).unwrap())]).unwrap();
    let (orphans, _) = v.orphans();
    assert_eq!(orphans.len(), 100);
    let file42 = orphans
        .iter()
        .find(|i| i.data.starts_with(b"File 42\n"))
        .expect("file42 among the orphans")
        .addr;
    let fd = format!("fd:{file42:#010x}");
    assert_eq!(v.lookup(&fd).unwrap().addr, file42);
    // The root by its FD address, then a name; a bad address says so.
    assert_eq!(v.lookup("fd:0x00000004/big").unwrap().size, 1_048_577);
    let e = v.lookup("fd:xyz").unwrap_err().to_string();
    assert!(e.contains("hexadecimal FD address"), "{e}");
    assert!(v.lookup("/fd:0x00000004").is_err(), "a name, not an FD");

    let dest = dir.join("out");
    let code = run(VmfsCommand {
        action: Action::Extract(ExtractCommand {
            args: vec![s(&img), fd.clone(), s(&dest)],
            extent: vec![],
            offset: None,
            map: None,
            quiet: true,
            code_file: None,
        }),
    });
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read(dest.join(format!("orphan-fd-{file42:#010x}"))).unwrap(),
        b"File 42\n"
    );
    let scan = |ls: bool| {
        run(VmfsCommand {
            action: if ls {
                Action::Ls(LsCommand {
                    args: vec![s(&img)],
                    extent: vec![],
                    offset: None,
                    long: false,
                    scan: true,
                    json: true,
                })
            } else {
                Action::Scan(ScanCommand {
                    src: vec![s(&img)],
                    extent: vec![],
                    offset: None,
                    json: false,
                })
            },
        })
    };
    assert_eq!((scan(true), scan(false)), (1, 1), "orphans found: exit 1");
}

/// Extracting the whole datastore leaves the volume's metadata files
/// (`.*.sf`) out; named, they are copied.
#[test]
fn metadata_files_are_copied_only_when_named() {
    let img = s(&common::image("vmfs6.bin.gz"));
    let dest = scratch("system-files");
    let extract = |paths: &[&str]| {
        let mut args = vec![img.clone()];
        args.extend(paths.iter().map(|p| p.to_string()));
        args.push(s(&dest));
        run(VmfsCommand {
            action: Action::Extract(ExtractCommand {
                args,
                extent: vec![],
                offset: None,
                map: None,
                quiet: true,
                code_file: None,
            }),
        })
    };
    // `directory` and `collision` are whole volume content without the
    // 42 TiB thin file, which an ext4 scratch directory cannot hold.
    assert_eq!(extract(&["/directory", "/collision", "/small"]), 0);
    assert!(dest.join("directory/file100").exists());
    let v = vmfs::Volume::from_devices(vec![common::dev("vmfs6.bin.gz")]).unwrap();
    let root: Vec<String> = v
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.ends_with(".sf"))
        .collect();
    assert!(root.len() >= 7, "{root:?}");
    // The root: its .sf files stay out, the rest comes (exit 1: the 42 TiB
    // file does not fit, the RDM has no data).
    let whole = dest.join("whole");
    let code = run(VmfsCommand {
        action: Action::Extract(ExtractCommand {
            args: vec![img.clone(), "/".into(), s(&whole)],
            extent: vec![],
            offset: None,
            map: None,
            quiet: true,
            code_file: None,
        }),
    });
    assert_eq!(code, 1);
    assert!(whole.join("bigger").exists() && whole.join("directory/file1").exists());
    for n in &root {
        assert!(!whole.join(n).exists(), "{n} copied");
    }
    assert_eq!(extract(&["/.fbb.sf"]), 0);
    assert_eq!(
        std::fs::metadata(dest.join(".fbb.sf")).unwrap().len(),
        v.stat("/.fbb.sf").unwrap().size
    );
}
