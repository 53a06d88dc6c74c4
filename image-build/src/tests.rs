use super::*;

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("image-build-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A kernel tree with a handful of fake modules and a real-format index.
fn fake_tree(t: &Tmp) -> KernelTree {
    let mdir = t.0.join("lib/modules/6.1.0-test-amd64");
    for (rel, body) in [
        ("kernel/drivers/ata/ahci.ko", "ahci"),
        ("kernel/drivers/ata/libahci.ko", "libahci"),
        ("kernel/drivers/ata/libata.ko", "libata"),
        ("kernel/drivers/scsi/scsi_mod.ko", "scsi"),
        ("kernel/fs/ext4/ext4.ko", "ext4"),
        ("kernel/fs/jbd2/jbd2.ko", "jbd2"),
        ("kernel/crypto/crc32c_generic.ko", "crc"),
        ("kernel/drivers/net/unused.ko", "unused"),
        ("kernel/drivers/usb/storage/usb-storage.ko", "usbs"),
    ] {
        let p = mdir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(
        mdir.join("modules.dep"),
        "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko\n\
         kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko\n\
         kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko\n\
         kernel/drivers/scsi/scsi_mod.ko:\n\
         kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n\
         kernel/fs/jbd2/jbd2.ko:\n\
         kernel/crypto/crc32c_generic.ko:\n\
         kernel/drivers/net/unused.ko:\n\
         kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko\n",
    )
    .unwrap();
    std::fs::write(
        mdir.join("modules.alias"),
        "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias crc32c crc32c_generic\nalias pci:v00008086d0000100Esv* unused\nalias usb:v*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n",
    )
    .unwrap();
    std::fs::write(
        mdir.join("modules.softdep"),
        "softdep ext4 pre: crc32c\nsoftdep unused pre: x\n",
    )
    .unwrap();
    std::fs::write(
        mdir.join("modules.builtin"),
        "kernel/drivers/block/loop.ko\n",
    )
    .unwrap();
    std::fs::write(t.0.join("vmlinuz"), "kernel").unwrap();
    KernelTree {
        vmlinuz: t.0.join("vmlinuz"),
        modules_dir: mdir,
        version: "6.1.0-test-amd64".into(),
        package: None,
    }
}

fn wanted(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn closure_softdeps_and_warnings() {
    let t = Tmp::new("closure");
    let tree = fake_tree(&t);
    let idx = ModuleIndex::load(&tree.modules_dir).unwrap();
    let (mods, warnings) = select_modules(
        &idx,
        &wanted(&["ahci", "ext4", "usb-storage", "ntfs3", "loop"]),
    );
    assert_eq!(
        mods,
        [
            "scsi_mod",
            "libata",
            "libahci",
            "ahci",
            "crc32c_generic",
            "jbd2",
            "ext4",
            "usb_storage"
        ]
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("ntfs3") && warnings[0].contains("not in this kernel"));
    assert!(warnings[1].contains("loop") && warnings[1].contains("built into"));
}

#[test]
fn initramfs_layout_index_filtering_and_reproducibility() {
    let t = Tmp::new("layout");
    let tree = fake_tree(&t);
    let idx = ModuleIndex::load(&tree.modules_dir).unwrap();
    let (mods, _) = select_modules(&idx, &wanted(&["ahci", "ext4"]));
    std::fs::write(t.0.join("rescue"), "rescue-binary").unwrap();
    std::fs::write(t.0.join("busybox"), "busybox-binary").unwrap();
    let payload = Payload {
        rescue_bin: t.0.join("rescue"),
        busybox: t.0.join("busybox"),
        release: "rescue test\n".into(),
    };
    let applets = wanted(&["sh", "ls"]);
    let build = || {
        let e = initramfs_entries(&payload, &applets, &tree, &idx, &mods).unwrap();
        compress(&cpio_newc(&e)).unwrap()
    };
    let a = build();
    assert_eq!(a, build(), "same inputs, same bytes");
    let entries = initramfs_entries(&payload, &applets, &tree, &idx, &mods).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    // Parents before children.
    for (i, p) in paths.iter().enumerate() {
        if let Some((parent, _)) = p.rsplit_once('/') {
            let pi = paths.iter().position(|x| *x == parent);
            assert!(pi.is_some_and(|pi| pi < i), "{parent} must precede {p}");
        }
    }
    let get = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} missing"))
    };
    assert_eq!(get("init").kind, EntryKind::Symlink("bin/rescue".into()));
    assert_eq!(get("bin/sh").kind, EntryKind::Symlink("busybox".into()));
    assert_eq!(
        get("dev/console").kind,
        EntryKind::CharDevice { major: 5, minor: 1 }
    );
    let kdir = "lib/modules/6.1.0-test-amd64";
    assert_eq!(
        get(&format!("{kdir}/kernel/fs/ext4/ext4.ko")).kind,
        EntryKind::File(b"ext4".to_vec())
    );
    assert!(
        !paths.iter().any(|p| p.contains("unused")),
        "unused module shipped"
    );
    let text = |p: &str| match &get(&format!("{kdir}/{p}")).kind {
        EntryKind::File(d) => String::from_utf8(d.clone()).unwrap(),
        k => panic!("{p}: {k:?}"),
    };
    assert!(!text("modules.alias").contains("unused"));
    assert!(text("modules.alias").contains(" ahci\n"));
    assert!(!text("modules.alias").contains("usb_storage"));
    assert_eq!(text("modules.softdep"), "softdep ext4 pre: crc32c\n");
    assert_eq!(text("modules.dep").lines().count(), mods.len());
    // The shipped index loads and resolves the same closure.
    let back = ModuleIndex::parse(
        Path::new("/"),
        &text("modules.dep"),
        &text("modules.alias"),
        &text("modules.softdep"),
        "",
    );
    assert_eq!(
        back.load_order("ext4", &mut HashSet::new()),
        ["crc32c_generic", "jbd2", "ext4"]
    );
    // The zstd stream decompresses to a valid archive.
    let raw = zstd::bulk::decompress(&a, 64 << 20).unwrap();
    assert_eq!(parse_newc(&raw).unwrap().len(), entries.len());
}

#[test]
fn missing_index_without_depmod_layout_is_explained() {
    let t = Tmp::new("nodep");
    let tree = KernelTree {
        vmlinuz: t.0.join("vmlinuz"),
        modules_dir: t.0.join("mods"),
        version: "x".into(),
        package: None,
    };
    std::fs::create_dir_all(&tree.modules_dir).unwrap();
    let e = ensure_module_index(&tree).unwrap_err();
    assert!(e.contains("no modules.dep"), "{e}");
}
