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

/// depmod's btrfs: one softdep line per MODULE_SOFTDEP; all must count.
const BTRFS_DEP: &str =
    "kernel/fs/btrfs/btrfs.ko: kernel/lib/libcrc32c.ko kernel/lib/zstd/zstd_compress.ko\n\
     kernel/lib/libcrc32c.ko:\n\
     kernel/lib/zstd/zstd_compress.ko:\n\
     kernel/crypto/blake2b_generic.ko:\n\
     kernel/crypto/xxhash_generic.ko:\n\
     kernel/crypto/crc32c_generic.ko:\n\
     kernel/arch/x86/crypto/crc32c-intel.ko:\n\
     kernel/drivers/usb/storage/usb-storage.ko:\n\
     kernel/drivers/usb/storage/uas.ko: kernel/drivers/usb/storage/usb-storage.ko\n\
     kernel/drivers/nvme/host/nvme-core.ko: kernel/block/t10-pi.ko\n\
     kernel/block/t10-pi.ko:\n";
const BTRFS_ALIAS: &str =
    "alias crypto-blake2b-256 blake2b_generic\nalias blake2b-256 blake2b_generic\n\
     alias crypto-xxhash64 xxhash_generic\nalias xxhash64 xxhash_generic\n\
     alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
     alias usb:v*d*dc*dsc*dp*ic08isc06ip62in* uas\n";
const BTRFS_SOFTDEP: &str = "softdep btrfs pre: blake2b-256\nsoftdep btrfs pre: sha256\n\
     softdep btrfs pre: xxhash64\nsoftdep btrfs pre: crypto-crc32c\nsoftdep uas post: nosuch\n";

#[test]
fn closure_merges_every_softdep_line_and_normalises_names() {
    let (mods, warnings) = module_closure(
        BTRFS_DEP,
        BTRFS_ALIAS,
        BTRFS_SOFTDEP,
        "kernel/crypto/sha256_generic.ko\n",
        &wanted(&["btrfs", "usb_storage", "UAS", "nvme_core", "t10_pi"]),
    );
    assert_eq!(
        mods,
        [
            "blake2b_generic",
            "xxhash_generic",
            "crc32c_intel",
            "crc32c_generic",
            "zstd_compress",
            "libcrc32c",
            "btrfs",
            "usb_storage",
            "t10_pi",
            "nvme_core",
        ],
        "{warnings:?}"
    );
    // "UAS" is no module name (names are case-sensitive), so it is reported.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("UAS"), "{warnings:?}");
    let (mods, warnings) =
        module_closure(BTRFS_DEP, BTRFS_ALIAS, BTRFS_SOFTDEP, "", &wanted(&["uas"]));
    assert_eq!(mods, ["usb_storage", "uas"]);
    assert!(warnings.is_empty());
}

#[test]
fn merged_softdeps_keep_depmod_format() {
    let merged = merge_softdeps(
        "softdep btrfs pre: a\nsoftdep x post: p\nsoftdep btrfs pre: b a post: c\n# comment\nsoftdep x pre: q\n",
    );
    assert_eq!(
        merged,
        "softdep btrfs pre: a b post: c\nsoftdep x pre: q post: p\n"
    );
    // kmod's parser reads the merged line whole.
    let idx = ModuleIndex::parse(Path::new("/"), "a.ko:\nb.ko:\nbtrfs.ko:\n", "", &merged, "");
    assert_eq!(
        idx.load_order("btrfs", &mut HashSet::new()),
        ["a", "b", "btrfs"]
    );
}

#[test]
fn shipped_softdep_file_is_merged_and_filtered() {
    let t = Tmp::new("softdep");
    let tree = fake_tree(&t);
    std::fs::write(
        tree.modules_dir.join("modules.softdep"),
        "softdep ext4 pre: crc32c\nsoftdep unused pre: x\nsoftdep ext4 pre: jbd2\n",
    )
    .unwrap();
    let idx = load_index(&tree.modules_dir).unwrap();
    let (mods, _) = select_modules(&idx, &wanted(&["ext4"]));
    std::fs::write(t.0.join("rescue"), "r").unwrap();
    std::fs::write(t.0.join("busybox"), "b").unwrap();
    let payload = Payload {
        rescue_bin: t.0.join("rescue"),
        busybox: t.0.join("busybox"),
        release: String::new(),
    };
    let entries = initramfs_entries(&payload, &[], &tree, &idx, &mods).unwrap();
    let softdep = entries
        .iter()
        .find(|e| e.path.ends_with("/modules.softdep"))
        .unwrap();
    assert_eq!(
        softdep.kind,
        EntryKind::File(b"softdep ext4 pre: crc32c jbd2\n".to_vec())
    );
}

/// Copies `from` into `to` recursively, every file with its own new mtime.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (s, d) = (e.path(), to.join(e.file_name()));
        if s.is_dir() {
            copy_tree(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
            std::fs::File::options()
                .write(true)
                .open(&d)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
}

/// Two builds from copies of the inputs in different places, with different
/// file times, give the same bytes: nothing of the host leaks in.
#[test]
fn reproducible_across_trees_and_timestamps() {
    let t1 = Tmp::new("repro1");
    let t2 = Tmp::new("repro2");
    let tree1 = fake_tree(&t1);
    copy_tree(&t1.0, &t2.0.join("elsewhere"));
    let tree2 = KernelTree {
        vmlinuz: t2.0.join("elsewhere/vmlinuz"),
        modules_dir: t2.0.join("elsewhere/lib/modules/6.1.0-test-amd64"),
        ..tree1.clone()
    };
    let build = |t: &Tmp, tree: &KernelTree| {
        std::fs::write(t.0.join("rescue"), "rescue-binary").unwrap();
        std::fs::write(t.0.join("busybox"), "busybox-binary").unwrap();
        let payload = Payload {
            rescue_bin: t.0.join("rescue"),
            busybox: t.0.join("busybox"),
            release: "rescue test\n".into(),
        };
        let idx = load_index(&tree.modules_dir).unwrap();
        let (mods, _) = select_modules(&idx, &wanted(&["ahci", "ext4", "usb-storage"]));
        let entries =
            initramfs_entries(&payload, &wanted(&["sh", "ls"]), tree, &idx, &mods).unwrap();
        compress(&cpio_newc(&entries)).unwrap()
    };
    let a = build(&t1, &tree1);
    let b = build(&t2, &tree2);
    assert!(a == b, "builds differ ({} vs {} bytes)", a.len(), b.len());
    // And every header says uid 0, gid 0, mtime 0.
    let raw = zstd::bulk::decompress(&a, 64 << 20).unwrap();
    let mut off = 0;
    while off + 110 <= raw.len() {
        let field = |i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&raw[off + 6 + i * 8..off + 14 + i * 8]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!((field(2), field(3), field(5)), (0, 0, 0), "at {off}");
        let name_end = off + 110 + field(11) as usize;
        let name = std::str::from_utf8(&raw[off + 110..name_end - 1])
            .unwrap()
            .to_string();
        if name == "TRAILER!!!" {
            break;
        }
        off = (name_end.div_ceil(4) * 4 + field(6) as usize).div_ceil(4) * 4;
    }
}

#[test]
fn given_tree_without_index_is_indexed_in_a_copy() {
    assert!(
        std::process::Command::new("depmod")
            .arg("--version")
            .output()
            .is_ok(),
        "depmod is needed (apt-get install kmod)"
    );
    let t = Tmp::new("depmodcopy");
    let given = t.0.join("mods/9.9.9-test");
    std::fs::create_dir_all(given.join("kernel/drivers/x")).unwrap();
    std::fs::write(given.join("kernel/drivers/x/a-b.ko"), "not really ELF").unwrap();
    std::fs::write(given.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    // Like /lib/modules/<ver>/build: a link to a headers tree, not copied.
    std::fs::create_dir_all(t.0.join("headers/big")).unwrap();
    std::os::unix::fs::symlink(t.0.join("headers"), given.join("build")).unwrap();
    let tree = KernelTree {
        vmlinuz: t.0.join("vmlinuz"),
        modules_dir: given.clone(),
        version: "9.9.9-test".into(),
        package: None,
    };
    let scratch = t.0.join("scratch");
    let indexed = prepare_module_tree(tree, &scratch).unwrap();
    assert_eq!(indexed.modules_dir, scratch.join("lib/modules/9.9.9-test"));
    assert!(
        !given.join("modules.dep").exists(),
        "depmod wrote into the given tree"
    );
    let dep = std::fs::read_to_string(indexed.modules_dir.join("modules.dep")).unwrap();
    assert_eq!(dep, "kernel/drivers/x/a-b.ko:\n");
    let idx = load_index(&indexed.modules_dir).unwrap();
    assert_eq!(idx.relative_path_of("a_b"), Some("kernel/drivers/x/a-b.ko"));
    assert!(idx.is_builtin("ext4"));
    assert!(!indexed.modules_dir.join("build").exists());
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&given.join("kernel/drivers/x/a-b.ko")),
        ino(&indexed.modules_dir.join("kernel/drivers/x/a-b.ko")),
        "modules are hard-linked, not copied"
    );
    // A tree that has its index is used where it is.
    let again = prepare_module_tree(indexed.clone(), &t.0.join("other")).unwrap();
    assert_eq!(again.modules_dir, indexed.modules_dir);
}

#[test]
fn dynamic_executables_are_refused() {
    // A minimal ELF64 header with one PT_INTERP program header.
    let mut elf = vec![0u8; 0x40 + 56 + 16];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
    elf[0x48..0x50].copy_from_slice(&(0x40u64 + 56).to_le_bytes());
    elf[0x60..0x68].copy_from_slice(&11u64.to_le_bytes());
    elf[0x40 + 56..0x40 + 56 + 11].copy_from_slice(b"/lib/ld.so\0");
    assert_eq!(elf_interpreter(&elf).as_deref(), Some("/lib/ld.so"));
    // The same with a PT_LOAD instead: static.
    elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(elf_interpreter(&elf), None);
    // Truncated or foreign input is no ELF to judge, never a panic.
    elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
    for n in 0..elf.len() {
        let _ = elf_interpreter(&elf[..n]);
    }
    assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
    // This test program is dynamically linked (gnu target): refused as /init.
    let t = Tmp::new("dynamic");
    let tree = fake_tree(&t);
    let idx = load_index(&tree.modules_dir).unwrap();
    std::fs::write(t.0.join("busybox"), "b").unwrap();
    let payload = Payload {
        rescue_bin: std::env::current_exe().unwrap(),
        busybox: t.0.join("busybox"),
        release: String::new(),
    };
    let e = initramfs_entries(&payload, &[], &tree, &idx, &[]).unwrap_err();
    assert!(
        e.contains("dynamically linked") && e.contains("musl"),
        "{e}"
    );
}

#[test]
fn appended_archive_starts_aligned_after_the_zstd_image() {
    let main = compress(&cpio_newc(&[CpioEntry::file(
        "a",
        0o644,
        b"x".repeat(1001),
    )]))
    .unwrap();
    let extra = extra_initrd(&[("etc/s", b"echo hi\n", 0o755)]);
    for cut in 0..4 {
        // Images of every length modulo 4 (a zstd frame plus zero padding
        // would be the kernel's view; here only the offsets matter).
        let base = &main[..main.len() - cut];
        let joined = append_initrd(base, &extra);
        let at = base.len().div_ceil(4) * 4;
        assert!(joined[base.len()..at].iter().all(|&b| b == 0));
        assert_eq!(&joined[at..], &extra[..]);
        assert_eq!(at % 4, 0);
    }
    let joined = append_initrd(&main, &extra);
    // The first frame decodes to the main archive; the tail parses.
    let mut dec = zstd::stream::read::Decoder::new(&joined[..])
        .unwrap()
        .single_frame();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut dec, &mut raw).unwrap();
    assert_eq!(parse_newc(&raw).unwrap()[0].0, "a");
    let tail = &joined[main.len().div_ceil(4) * 4..];
    let files = parse_newc(tail).unwrap();
    assert_eq!(
        files.last().unwrap(),
        &("etc/s".to_string(), 0o100755, b"echo hi\n".to_vec())
    );
}

/// The RESCUEDATA partition: same bytes every build, a valid exFAT
/// (fsck.exfat from exfatprogs agrees, checksums included) with its label,
/// partition 2 after the first, backup GPT at the new end.
#[test]
fn data_partition_is_reproducible_valid_exfat() {
    let t = Tmp::new("data");
    let mut sums = Vec::new();
    for n in 0..2 {
        let img = t.0.join(format!("stick{n}.img"));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let ok = Command::new("sgdisk")
            .args(["-a", "1", "-U", "52455343-5545-4200-8000-000000000001"])
            .args([
                "-n1:2048:+4095",
                "-t1:EF00",
                "-u",
                "1:52455343-5545-4200-8000-000000000002",
            ])
            .arg(&img)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok);
        let total = media::add_data_partition(&img, &t.0.join(format!("w{n}")), 20 << 20).unwrap();
        assert_eq!(total, (3 << 20) + (20 << 20) + (1 << 20));
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(bytes.len() as u64, total);
        sums.push(bytes);
    }
    assert!(sums[0] == sums[1], "two builds differ");
    let img = t.0.join("stick0.img");
    let out = Command::new("sgdisk")
        .args(["-v"])
        .arg(&img)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains("No problems found"), "{v}");
    let out = Command::new("sgdisk")
        .args(["-i", "2"])
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("First sector: 6144") && info.contains("'RESCUEDATA'"),
        "{info}"
    );
    let part = t.0.join("part.img");
    std::fs::write(&part, &sums[0][3 << 20..(23 << 20)]).unwrap();
    let fsck = Command::new("fsck.exfat")
        .arg("-n")
        .arg(&part)
        .output()
        .expect("fsck.exfat (exfatprogs)");
    assert!(
        fsck.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let label = Command::new("exfatlabel").arg(&part).output().unwrap();
    assert!(String::from_utf8_lossy(&label.stdout).contains("RESCUEDATA"));
    assert_eq!(
        &sums[0][(3 << 20) + 100..(3 << 20) + 104],
        &0x5245_5343u32.to_le_bytes()
    );
}

/// The FAT16 sizing: for the real payload's sizes (kernel, initramfs,
/// shim, GRUB) the volume is the content plus the margin plus less than
/// 1 MiB of FAT overhead and rounding, with 512-byte clusters; a payload
/// too big for 512-byte clusters gets larger ones and stays FAT16.
#[test]
fn fat16_geometry_fits_content_plus_margin() {
    let sizes = [8_247_232u64, 7_121_138, 1_048_504, 4_183_488, 700, 700, 754];
    let content: u64 = sizes.iter().sum();
    let g = media::fat16_geometry(&sizes, 3, 1 << 20, 1 << 20).unwrap();
    assert_eq!(g.sectors_per_cluster, 1);
    assert!(g.bytes >= content + (1 << 20), "{g:?}");
    assert!(g.bytes < content + (2 << 20) + (1 << 20), "{g:?}");
    assert_eq!(g.bytes % (1 << 20), 0);
    let big = media::fat16_geometry(&[100 << 20], 3, 0, 1 << 20).unwrap();
    assert!(big.sectors_per_cluster >= 4, "{big:?}");
    let clusters = big.bytes / (512 * u64::from(big.sectors_per_cluster));
    assert!((4085..=65524).contains(&clusters), "{big:?}");
    // Tiny content still makes a valid FAT16 (at least 4085 clusters).
    let tiny = media::fat16_geometry(&[1000], 3, 0, 64 << 10).unwrap();
    assert!(tiny.bytes / 512 > 4085, "{tiny:?}");
    assert_eq!(media::fat16_geometry(&[3 << 30], 3, 0, 1 << 20), None);
}

/// An ESP made by make_fat from files the size of the real payload holds
/// them all, passes fsck.fat, is FAT16, carries syslinux, and leaves about
/// the margin free (not the tens of MiB the FAT32 minimum used to).
#[test]
fn esp_holds_its_files_with_a_small_margin() {
    let t = Tmp::new("esp");
    // Incompressible-looking bytes, distinct per file.
    let fill = |n: usize, seed: u32| -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    let copies: Vec<(&str, Vec<u8>)> = vec![
        ("EFI/BOOT/BOOTX64.EFI", fill(1_048_504, 1)),
        ("EFI/BOOT/grubx64.efi", fill(4_183_488, 2)),
        ("EFI/debian/grub.cfg", b"set timeout=5\n".to_vec()),
        ("vmlinuz", fill(8_247_232, 3)),
        ("initramfs.img", fill(7_121_138, 4)),
        ("syslinux.cfg", b"DEFAULT rescue\n".to_vec()),
    ];
    let img = t.0.join("esp.img");
    let size = media::make_fat(&img, &t.0.join("files"), &copies, 1 << 20, 1 << 20, true)
        .expect("make_fat (dosfstools, mtools, syslinux)");
    let content: u64 = copies.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(size <= content + (3 << 20), "{size} for {content} bytes");
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(&img)
        .output()
        .expect("fsck.fat (dosfstools)");
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let file = Command::new("file")
        .arg("-b")
        .arg(&img)
        .output()
        .expect("file");
    let desc = String::from_utf8_lossy(&file.stdout);
    assert!(desc.contains("FAT (16 bit)"), "{desc}");
    for (name, bytes) in &copies {
        let out = Command::new("mtype")
            .args(["-i"])
            .arg(&img)
            .arg(format!("::/{name}"))
            .output()
            .expect("mtype (mtools)");
        assert!(out.stdout == *bytes, "{name} differs on the FAT");
    }
    // -a: ldlinux.sys is a hidden system file.
    let dir = Command::new("mdir")
        .args(["-a", "-i"])
        .arg(&img)
        .arg("::/")
        .output()
        .expect("mdir (mtools)");
    let listing = String::from_utf8_lossy(&dir.stdout);
    assert!(listing.contains("ldlinux"), "no syslinux:\n{listing}");
    let free: u64 = listing
        .lines()
        .find(|l| l.contains("bytes free"))
        .and_then(|l| l.split("bytes").next())
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no free space line:\n{listing}"));
    assert!(
        ((1 << 20)..(3 << 20)).contains(&free),
        "{free} bytes free:\n{listing}"
    );
}

/// SHA256SUMS is in the format GNU sha256sum -c checks: it accepts the
/// file as written and rejects it once an artifact changes.
#[test]
fn sha256sums_are_checked_by_sha256sum() {
    let t = Tmp::new("sums");
    std::fs::write(t.0.join("a.img"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(t.0.join("b.iso"), b"").unwrap();
    let sums = sums::write_sha256sums(&t.0, &["a.img", "b.iso"]).unwrap();
    assert_eq!(
        sums[1].1,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let check = || {
        Command::new("sha256sum")
            .args(["-c", sums::SUMS_FILE])
            .current_dir(&t.0)
            .output()
            .expect("sha256sum (coreutils)")
    };
    let ok = check();
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "a.img: OK\nb.iso: OK\n"
    );
    std::fs::write(t.0.join("b.iso"), b"x").unwrap();
    assert!(!check().status.success());
}

/// A minimal dynamic ELF64: one PT_LOAD mapping the whole file at vaddr
/// 0x400000, a PT_DYNAMIC with DT_NEEDED entries for `libs`.
fn tiny_dynamic_elf(libs: &[&str]) -> Vec<u8> {
    tiny_elf(libs, None)
}

/// [`tiny_dynamic_elf`], with a PT_INTERP naming `interp` when given (a
/// program rather than a library).
fn tiny_elf(libs: &[&str], interp: Option<&str>) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut offs = Vec::new();
    for l in libs {
        offs.push(strtab.len() as u64);
        strtab.extend_from_slice(l.as_bytes());
        strtab.push(0);
    }
    let phnum = if interp.is_some() { 3 } else { 2 };
    let phoff = 0x40usize;
    let dyn_off = phoff + phnum * 56;
    let dyn_len = (libs.len() + 3) * 16;
    let str_off = dyn_off + dyn_len;
    let interp_off = str_off + strtab.len();
    let interp_bytes: Vec<u8> = interp
        .map(|i| {
            let mut v = i.as_bytes().to_vec();
            v.push(0);
            v
        })
        .unwrap_or_default();
    let mut b = vec![0u8; interp_off + interp_bytes.len()];
    b[..6].copy_from_slice(b"\x7fELF\x02\x01");
    b[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
    let total = b.len() as u64;
    let ph = |b: &mut Vec<u8>, at: usize, ty: u32, off: u64, vaddr: u64, size: u64| {
        b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        b[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
        b[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
    };
    ph(&mut b, phoff, 1, 0, 0x40_0000, total);
    ph(
        &mut b,
        phoff + 56,
        2,
        dyn_off as u64,
        0x40_0000 + dyn_off as u64,
        dyn_len as u64,
    );
    if interp.is_some() {
        ph(
            &mut b,
            phoff + 112,
            3,
            interp_off as u64,
            0x40_0000 + interp_off as u64,
            interp_bytes.len() as u64,
        );
    }
    let mut at = dyn_off;
    let mut put = |b: &mut Vec<u8>, tag: u64, val: u64| {
        b[at..at + 8].copy_from_slice(&tag.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&val.to_le_bytes());
        at += 16;
    };
    for o in &offs {
        put(&mut b, 1, *o);
    }
    put(&mut b, 5, 0x40_0000 + str_off as u64);
    put(&mut b, 10, strtab.len() as u64);
    b[str_off..interp_off].copy_from_slice(&strtab);
    b[interp_off..].copy_from_slice(&interp_bytes);
    b
}

#[test]
fn elf_needed_reads_dt_needed_and_never_panics() {
    let elf = tiny_dynamic_elf(&["libntfs-3g.so.89", "libc.so.6"]);
    assert_eq!(
        debprog::elf_needed(&elf).unwrap(),
        ["libntfs-3g.so.89", "libc.so.6"]
    );
    for n in 0..elf.len() {
        let _ = debprog::elf_needed(&elf[..n]);
    }
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..5000 {
        let mut b = elf.clone();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x as usize) % b.len();
        b[at] = (x >> 32) as u8;
        let _ = debprog::elf_needed(&b);
    }
    assert!(debprog::elf_needed(b"#!/bin/sh\n")
        .unwrap_err()
        .contains("not a 64-bit"));
    // The host's own programs against readelf, an independent reader.
    for prog in [
        std::env::current_exe().unwrap(),
        PathBuf::from("/bin/ntfs-3g"),
    ] {
        let bytes = std::fs::read(&prog)
            .unwrap_or_else(|e| panic!("{}: {e} (apt-get install ntfs-3g)", prog.display()));
        let out = Command::new("readelf")
            .arg("-d")
            .arg(&prog)
            .output()
            .expect("readelf (binutils) is needed");
        let want: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(
            debprog::elf_needed(&bytes).unwrap(),
            want,
            "{}",
            prog.display()
        );
    }
}

#[test]
fn added_files_get_their_parent_directories_and_keep_existing_entries() {
    let base = vec![
        CpioEntry::dir("bin"),
        CpioEntry::file("bin/rescue", 0o755, b"r".to_vec()),
        CpioEntry::dir("etc"),
    ];
    let merged = with_files(
        base,
        vec![
            CpioEntry::file("lib/x86_64-linux-gnu/libc.so.6", 0o755, b"c".to_vec()),
            CpioEntry::symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld"),
            CpioEntry::file("bin/rescue", 0o755, b"other".to_vec()),
        ],
    );
    let paths: Vec<&str> = merged.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "bin",
            "bin/rescue",
            "etc",
            "lib",
            "lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib64",
            "lib64/ld-linux-x86-64.so.2"
        ]
    );
    assert_eq!(merged[1].kind, EntryKind::File(b"r".to_vec()));
}

/// Follows symlinks inside an archive listing (path -> (mode, data)) to a
/// regular file's path; None when the chain leaves the listing.
fn follow(
    listing: &std::collections::BTreeMap<String, (u32, Vec<u8>)>,
    path: &str,
) -> Option<String> {
    let mut cur = path.trim_start_matches('/').to_string();
    for _ in 0..16 {
        let (mode, data) = listing.get(&cur)?;
        if mode & 0o170000 != 0o120000 {
            return Some(cur);
        }
        let target = String::from_utf8_lossy(data).into_owned();
        cur = if let Some(abs) = target.strip_prefix('/') {
            abs.to_string()
        } else {
            let parent = cur.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let mut parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
            for t in target.split('/') {
                match t {
                    ".." => {
                        parts.pop();
                    }
                    "." | "" => {}
                    t => parts.push(t),
                }
            }
            parts.join("/")
        };
    }
    None
}

/// Unpacks `extra` (a program's closure) alone into a folder and checks
/// it: every ELF file's loader and DT_NEEDED libraries are in the archive
/// (in the loader's directories); then runs `program args` in a chroot of
/// it, so nothing of the host is needed, and returns its stdout and
/// stderr with whether it exited 0. The listing is returned too.
/// An archive's entries by path: (mode, data or link target).
type Listing = std::collections::BTreeMap<String, (u32, Vec<u8>)>;

fn closure_runs_alone(
    extra: Vec<CpioEntry>,
    program: &str,
    args: &[&str],
) -> (Listing, Vec<String>, bool, String) {
    let entries = with_files(vec![CpioEntry::dir("bin"), CpioEntry::dir("etc")], extra);
    let archive = cpio_newc(&entries);
    let listing: Listing = parse_newc(&archive)
        .unwrap()
        .into_iter()
        .map(|(p, m, d)| (p, (m, d)))
        .collect();
    let target = follow(&listing, program).unwrap_or_else(|| panic!("{program} in the archive"));
    let mut checked = Vec::new();
    for (path, (mode, data)) in &listing {
        if mode & 0o170000 != 0o100000 || !data.starts_with(b"\x7fELF") {
            continue;
        }
        if let Some(interp) = elf_interpreter(data) {
            assert!(
                follow(&listing, &interp).is_some(),
                "{path}: loader {interp} missing"
            );
        }
        for lib in debprog::elf_needed(data).unwrap() {
            let found = debprog::LIBRARY_DIRS
                .iter()
                .find_map(|d| follow(&listing, &format!("{d}/{lib}")));
            assert!(found.is_some(), "{path}: needs {lib}, not in the archive");
        }
        checked.push(path.clone());
    }
    assert!(checked.contains(&target));
    // Unpack and run it where only the archive's files exist.
    let t = Tmp::new("closure-chroot");
    for (path, (mode, data)) in &listing {
        let p = t.0.join(path);
        match mode & 0o170000 {
            0o040000 => std::fs::create_dir_all(&p).unwrap(),
            0o120000 => {
                std::os::unix::fs::symlink(String::from_utf8_lossy(data).as_ref(), &p).unwrap()
            }
            _ => {
                std::fs::write(&p, data).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
                    .unwrap();
            }
        }
    }
    let chroot = ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils) is needed");
    let out = Command::new(chroot)
        .arg(&t.0)
        .arg(format!("/{program}"))
        .args(args)
        .env_clear()
        .output()
        .expect("chroot (coreutils) is needed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (listing, checked, out.status.success(), text)
}

/// Debian's real packages (apt-get download, cached in target/): the
/// archive holds /bin/ntfs-3g, its loader and every library it needs;
/// /etc/mtab links to the mount table; ntfs-3g runs in a chroot of the
/// archive alone.
#[test]
fn ntfs3g_with_its_loader_and_every_needed_library_runs_in_a_chroot() {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/image-build-test-cache");
    let (extra, added) = ntfs3g::entries(&cache)
        .expect("Debian's ntfs-3g, libntfs-3g and libc6 packages (apt-get download)");
    assert!(added
        .iter()
        .any(|a| a.path == ntfs3g::PROGRAM && a.bytes > 50_000));
    let (listing, checked, ok, text) = closure_runs_alone(extra, ntfs3g::PROGRAM, &["--version"]);
    assert_eq!(
        listing.get("etc/mtab").map(|(_, d)| d.as_slice()),
        Some(&b"/proc/self/mounts"[..])
    );
    assert!(
        checked.iter().any(|p| p.ends_with("libc.so.6"))
            && checked.iter().any(|p| p.contains("libntfs-3g.so"))
            && checked.iter().any(|p| p.contains("ld-linux-x86-64.so.2")),
        "{checked:?}"
    );
    assert!(ok && text.contains("ntfs-3g 20"), "{text}");
}

/// The same for dropbear (Debian's dropbear-bin and the library packages
/// found through its dependencies): both programs and every library they
/// need (libcrypt among them, which checks `$6$` hashes), the login
/// shell's link to rescue; dropbear and dropbearkey run in a chroot of the
/// archive alone, and dropbearkey makes a key there.
#[test]
fn dropbear_with_its_loader_and_every_needed_library_runs_in_a_chroot() {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/image-build-test-cache");
    let (extra, added) = dropbear::entries(&cache)
        .expect("Debian's dropbear-bin and its library packages (apt-get download)");
    for p in [dropbear::SERVER, dropbear::KEYGEN] {
        assert!(added.iter().any(|a| a.path == p && a.bytes > 50_000), "{p}");
    }
    let packages: std::collections::BTreeSet<&str> =
        added.iter().map(|a| a.package.as_str()).collect();
    for p in [
        "dropbear-bin",
        "libc6",
        "libcrypt1",
        "libtomcrypt1",
        "libtommath1",
        "libgmp10",
        "zlib1g",
    ] {
        assert!(packages.contains(p), "{p} not used: {packages:?}");
    }
    let (listing, checked, ok, text) = closure_runs_alone(extra.clone(), dropbear::SERVER, &["-V"]);
    assert_eq!(
        listing
            .get(dropbear::LOGIN_SHELL)
            .map(|(_, d)| d.as_slice()),
        Some(&b"rescue"[..])
    );
    assert!(
        checked.iter().any(|p| p.contains("libcrypt.so")),
        "{checked:?}"
    );
    assert!(text.contains("Dropbear v2022"), "{ok} {text}");
    let (_, _, ok, text) = closure_runs_alone(
        extra,
        dropbear::KEYGEN,
        &["-t", "ed25519", "-f", "/etc/hostkey"],
    );
    assert!(ok && text.contains("ssh-ed25519 AAAA"), "{text}");
}

/// The package search of debprog over local trees: a library is looked
/// for first in the package its soname names, then in the dependencies in
/// order; packages that hold nothing needed are not fetched.
#[test]
fn closure_fetches_the_packages_that_hold_what_is_missing() {
    let t = Tmp::new("debprog-search");
    let elf = |needed: &[&str], program: bool| {
        tiny_elf(needed, program.then_some("/lib64/ld-linux-x86-64.so.2"))
    };
    let put = |pkg: &str, path: &str, bytes: &[u8]| {
        let p = t.0.join(pkg).join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put(
        "prog",
        "usr/bin/prog",
        &elf(&["libfoo.so.1", "libz.so.1"], true),
    );
    put(
        "libfoo1",
        "usr/lib/x86_64-linux-gnu/libfoo.so.1",
        &elf(&["libc.so.6"], false),
    );
    put("zlib1g", "lib/x86_64-linux-gnu/libz.so.1", &elf(&[], false));
    put("libc6", "lib/x86_64-linux-gnu/libc.so.6", &elf(&[], false));
    put("libc6", "lib64/ld-linux-x86-64.so.2", b"loader");
    put("unrelated", "usr/share/doc/x", b"x");
    let mut fetched = Vec::new();
    let depends = |p: &str| -> Result<Vec<String>, Error> {
        Ok(match p {
            "prog" => vec![
                "unrelated".into(),
                "libc6".into(),
                "zlib1g".into(),
                "libfoo1".into(),
            ],
            _ => vec![],
        })
    };
    let result = debprog::fetch_closure_with(
        &["/usr/bin/prog"],
        "prog",
        &mut |p| {
            fetched.push(p.to_string());
            Ok(t.0.join(p))
        },
        &mut { depends },
    );
    let (entries, added) = result.unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"lib/x86_64-linux-gnu/libz.so.1"),
        "{paths:?}"
    );
    assert!(paths.contains(&"lib64/ld-linux-x86-64.so.2"), "{paths:?}");
    assert_eq!(added.len(), entries.len());
    // The loader is looked for in order (unrelated first, it does not hold
    // it), libfoo1 by its soname, zlib1g by order.
    assert_eq!(fetched[0], "prog");
    assert!(fetched.contains(&"libfoo1".to_string()), "{fetched:?}");
    let missing = debprog::Missing::Library {
        name: "libtomcrypt.so.1".into(),
        by: "x".into(),
    };
    assert_eq!(missing.likely_packages(), ["libtomcrypt1"]);
    let missing = debprog::Missing::Library {
        name: "libntfs-3g.so.89".into(),
        by: "x".into(),
    };
    assert_eq!(missing.likely_packages(), ["libntfs-3g89"]);
    let missing = debprog::Missing::Library {
        name: "libfuse3.so.3".into(),
        by: "x".into(),
    };
    assert_eq!(missing.likely_packages(), ["libfuse3-3"]);
    // Nothing holds it: the error names the library and who needs it.
    put("lonely", "usr/bin/prog", &elf(&["libnowhere.so.2"], true));
    put("lonely", "lib64/ld-linux-x86-64.so.2", b"loader");
    let e = debprog::fetch_closure_with(
        &["/usr/bin/prog"],
        "lonely",
        &mut |p| Ok(t.0.join(p)),
        &mut |_| Ok(vec![]),
    )
    .unwrap_err();
    assert!(
        e.contains("libnowhere.so.2 (needed by /usr/bin/prog)"),
        "{e}"
    );
    assert_eq!(
        debprog::parse_depends("dropbear-bin\n  Depends: libc6\n  Depends: <virt>\n |Depends: a\n  Depends: b\n  Breaks: c\n  Depends: libc6\n"),
        ["libc6", "a", "b"]
    );
}
