use super::*;
use crate::EntryKind;
use proptest::prelude::*;

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("image-build-fw-{tag}-{}", std::process::id()));
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

/// A minimal ELF64 relocatable as a `.ko` is: header, the section-name
/// table, a `.modinfo` section, and three section headers (null,
/// .shstrtab, .modinfo) at the end.
fn fake_ko(modinfo: &[&str]) -> Vec<u8> {
    let names = b"\0.shstrtab\0.modinfo\0";
    let mut info = Vec::new();
    for kv in modinfo {
        info.extend_from_slice(kv.as_bytes());
        info.push(0);
    }
    let names_off = 64usize;
    let info_off = names_off + names.len();
    let mut shoff = info_off + info.len();
    shoff += (8 - shoff % 8) % 8;
    let mut b = vec![0u8; shoff];
    b[..6].copy_from_slice(b"\x7fELF\x02\x01");
    b[6] = 1; // EV_CURRENT
    b[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    b[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    b[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    b[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
    b[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
    b[names_off..info_off].copy_from_slice(names);
    b[info_off..info_off + info.len()].copy_from_slice(&info);
    let header = |name: u32, typ: u32, off: usize, size: usize| {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&typ.to_le_bytes());
        h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        h
    };
    b.extend(header(0, 0, 0, 0));
    b.extend(header(1, 3, names_off, names.len())); // SHT_STRTAB
    b.extend(header(11, 1, info_off, info.len())); // SHT_PROGBITS
    b
}

#[test]
fn reads_firmware_from_modinfo() {
    let ko = fake_ko(&[
        "license=GPL",
        "firmware=bnx2/bnx2-mips-09-6.2.1b.fw",
        "depends=",
        "firmware=bnx2/bnx2-rv2p-09-6.0.17.fw",
    ]);
    let s = modinfo_section(&ko).unwrap();
    assert_eq!(
        modinfo_values(s, "firmware"),
        ["bnx2/bnx2-mips-09-6.2.1b.fw", "bnx2/bnx2-rv2p-09-6.0.17.fw"]
    );
    assert!(modinfo_values(s, "depends").is_empty());
    assert_eq!(modinfo_values(s, "license"), ["GPL"]);
}

#[test]
fn bad_elf_is_named() {
    assert!(modinfo_section(b"ahci")
        .unwrap_err()
        .contains("not a 64-bit"));
    let ko = fake_ko(&["firmware=a"]);
    let e = modinfo_section(&ko[..ko.len() - 30]).unwrap_err();
    assert!(e.contains("past the end"), "{e}");
    let mut no_info = ko.clone();
    let at = 64 + b"\0.shstrtab\0.".len();
    no_info[at] = b'X'; // ".Xodinfo"
    assert_eq!(
        modinfo_section(&no_info).unwrap_err(),
        "ELF: no .modinfo section"
    );
    let mut small = ko.clone();
    small[0x3A] = 40;
    assert!(modinfo_section(&small).unwrap_err().contains("e_shentsize"));
}

proptest! {
    #[test]
    fn corrupted_modules_never_panic(
        cut in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..8),
    ) {
        let mut ko = fake_ko(&["firmware=x/y.fw", "license=GPL"]);
        for (at, v) in flips {
            if at < ko.len() {
                ko[at] = v;
            }
        }
        ko.truncate(cut.min(ko.len()));
        if let Ok(s) = modinfo_section(&ko) {
            let _ = modinfo_values(s, "firmware");
        }
    }
}

#[test]
fn versions_split() {
    assert_eq!(
        split_version("bnx2x/bnx2x-e1h-7.13.21.0.fw"),
        Some(("bnx2x/bnx2x-e1h-".into(), vec![7, 13, 21, 0], ".fw".into()))
    );
    assert_eq!(
        split_version("a/b-10.2"),
        Some(("a/b-".into(), vec![10, 2], "".into()))
    );
    assert_eq!(split_version("tigon/tg3.bin"), None);
    assert_eq!(split_version("x/y-abc.fw"), None);
    assert_eq!(split_version("x/y-.fw"), None);
}

#[test]
fn suite_and_mirror() {
    assert_eq!(
        suite_of("NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").as_deref(),
        Some("bookworm")
    );
    assert_eq!(suite_of("ID=debian\n"), None);
    let deb822 = "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
    assert_eq!(
        mirror_of(deb822, "bookworm").as_deref(),
        Some("http://m.example/debian")
    );
    assert_eq!(mirror_of(deb822, "trixie"), None);
    let one_line =
        "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main\n";
    assert_eq!(
        mirror_of(one_line, "bookworm").as_deref(),
        Some("http://ftp.example/debian")
    );
}

#[test]
fn private_apt_configuration() {
    let t = Tmp::new("apt");
    let a = AptConfig::new(&t.0, "http://deb.debian.org/debian", "bookworm").unwrap();
    assert_eq!(
        std::fs::read_to_string(t.0.join("sources.list")).unwrap(),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm non-free-firmware\n"
    );
    assert!(t.0.join("lists/partial").is_dir() && t.0.join("cache/archives/partial").is_dir());
    let joined = a.options.join(" ");
    for want in [
        format!("-o Dir::Etc::SourceList={}/sources.list", t.0.display()),
        "-o Dir::Etc::SourceParts=/nonexistent".to_string(),
        format!("-o Dir::State::Lists={}/lists", t.0.display()),
        format!("-o Dir::Cache={}/cache", t.0.display()),
        "-o Dir::State::status=/dev/null".to_string(),
    ] {
        assert!(joined.contains(&want), "{want} not in {joined}");
    }
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn want(module: &str, file: &str) -> Wanted {
    Wanted {
        module: module.into(),
        file: file.into(),
    }
}

/// A fake kernel tree with four NIC modules, and fake extracted firmware
/// packages (one laid out as Debian 12 does, one as Debian 13).
#[test]
fn selects_named_files_links_newest_and_lists_the_missing() {
    let t = Tmp::new("select");
    let version = "6.1.0-test-amd64";
    let mdir = t.0.join("lib/modules").join(version);
    let kos = [
        (
            "kernel/drivers/net/ethernet/broadcom/bnx2x/bnx2x.ko",
            vec![
                "firmware=bnx2x/bnx2x-e2-7.13.15.0.fw",
                "firmware=bnx2x/bnx2x-e1-7.13.15.0.fw",
                "firmware=bnx2x/bnx2x-e2-7.13.21.0.fw",
                "firmware=bnx2x/bnx2x-e1-7.13.21.0.fw",
                "firmware=bnx2x/bnx2x-e1h-7.13.21.0.fw",
                "firmware=bnx2x/bnx2x-e1h-7.13.15.0.fw",
            ],
        ),
        (
            "kernel/drivers/net/ethernet/intel/ice/ice.ko",
            vec!["firmware=intel/ice/ddp/ice.pkg"],
        ),
        (
            "kernel/drivers/net/ethernet/broadcom/tg3.ko",
            vec!["firmware=tigon/tg3.bin", "firmware=tigon/tg3_tso.bin"],
        ),
        (
            "kernel/drivers/net/ethernet/realtek/r8169.ko",
            vec!["firmware=rtl_nic/rtl8168d-1.fw"],
        ),
        ("kernel/drivers/net/mdio.ko", vec!["license=GPL"]),
    ];
    let mut dep = String::new();
    for (rel, info) in &kos {
        put(&mdir, rel, &fake_ko(info));
        dep.push_str(&format!("{rel}:\n"));
    }
    let tree = KernelTree {
        vmlinuz: t.0.join("vmlinuz"),
        modules_dir: mdir.clone(),
        version: version.into(),
        package: None,
    };
    let index = ModuleIndex::parse(&mdir, &dep, "", "", "");
    let modules: Vec<String> = ["bnx2x", "ice", "tg3", "r8169", "mdio"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let wanted = firmware_names(&tree, &index, &modules).unwrap();
    assert_eq!(wanted.len(), 10);
    assert_eq!(wanted[0], want("bnx2x", "bnx2x/bnx2x-e1-7.13.15.0.fw"));
    assert!(!wanted.iter().any(|w| w.module == "mdio"));

    // firmware-bnx2x (Debian 12 layout): e2 in both versions, e1 only in
    // the older, e1h in none.
    let bnx2x = t.0.join("pkg/firmware-bnx2x");
    put(
        &bnx2x,
        "lib/firmware/bnx2x/bnx2x-e2-7.13.15.0.fw",
        b"e2 old",
    );
    put(
        &bnx2x,
        "lib/firmware/bnx2x/bnx2x-e2-7.13.21.0.fw",
        b"e2 new",
    );
    put(
        &bnx2x,
        "lib/firmware/bnx2x/bnx2x-e1-7.13.15.0.fw",
        b"e1 old",
    );
    put(
        &bnx2x,
        "lib/firmware/bnx2x/bnx2x-e1h-6.0.0.0.fw",
        b"not named",
    );
    // firmware-misc-nonfree (Debian 13 layout): a link two deep, one to
    // the other package, one out of the firmware directory.
    let misc = t.0.join("pkg/firmware-misc-nonfree");
    put(
        &misc,
        "usr/lib/firmware/intel/ice/ddp/ice-1.3.30.0.pkg",
        b"ddp",
    );
    link(
        &misc,
        "usr/lib/firmware/intel/ice/ddp/ice.pkg",
        "ice-1.3.pkg",
    );
    link(
        &misc,
        "usr/lib/firmware/intel/ice/ddp/ice-1.3.pkg",
        "./ice-1.3.30.0.pkg",
    );
    put(&misc, "usr/lib/firmware/tigon/tg3.bin", b"tg3");
    put(&misc, "usr/lib/firmware/tigon/unnamed.bin", b"left out");
    link(
        &misc,
        "usr/lib/firmware/tigon/tg3_tso.bin",
        "../../../../../etc/passwd",
    );
    let roots: Vec<Root> = [("firmware-bnx2x", &bnx2x), ("firmware-misc-nonfree", &misc)]
        .iter()
        .map(|(p, r)| Root {
            package: p.to_string(),
            dir: firmware_dir(r),
        })
        .collect();
    let mut warnings = Vec::new();
    let sel = select(&wanted, &roots, &mut warnings);

    let files: BTreeMap<&str, &EntryKind> = sel
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.kind))
        .collect();
    let as_file = |p: &str| match files.get(p) {
        Some(EntryKind::File(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{p}: {other:?}"),
    };
    let as_link = |p: &str| match files.get(p) {
        Some(EntryKind::Symlink(t)) => t.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(
        as_file("lib/firmware/bnx2x/bnx2x-e2-7.13.21.0.fw"),
        "e2 new"
    );
    assert_eq!(
        as_file("lib/firmware/bnx2x/bnx2x-e1-7.13.15.0.fw"),
        "e1 old"
    );
    assert_eq!(as_link("lib/firmware/intel/ice/ddp/ice.pkg"), "ice-1.3.pkg");
    assert_eq!(
        as_link("lib/firmware/intel/ice/ddp/ice-1.3.pkg"),
        "./ice-1.3.30.0.pkg"
    );
    assert_eq!(
        as_file("lib/firmware/intel/ice/ddp/ice-1.3.30.0.pkg"),
        "ddp"
    );
    assert_eq!(as_file("lib/firmware/tigon/tg3.bin"), "tg3");
    assert_eq!(files.len(), 7, "{:?}", files.keys());

    assert_eq!(
        sel.other_versions,
        [
            // Not held: the driver falls back to 7.13.15.0, which is.
            want("bnx2x", "bnx2x/bnx2x-e1-7.13.21.0.fw"),
            want("bnx2x", "bnx2x/bnx2x-e2-7.13.15.0.fw")
        ]
    );
    let missing: Vec<(&str, &str)> = sel
        .missing
        .iter()
        .map(|m| (m.module.as_str(), m.file.as_str()))
        .collect();
    assert_eq!(
        missing,
        [
            ("bnx2x", "bnx2x/bnx2x-e1h-7.13.15.0.fw"),
            ("bnx2x", "bnx2x/bnx2x-e1h-7.13.21.0.fw"),
            ("r8169", "rtl_nic/rtl8168d-1.fw"),
            ("tg3", "tigon/tg3_tso.bin"),
        ]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("tigon/tg3_tso.bin")
            && warnings[0].contains("leaves the firmware directory"),
        "{warnings:?}"
    );
    let list = kmod::firmware::parse_missing(&as_file(MISSING_FILE)).unwrap();
    assert_eq!(list, sel.missing);

    let by_package = |p: &str| -> u64 {
        sel.added
            .iter()
            .filter(|a| a.package == p)
            .map(|a| a.bytes)
            .sum()
    };
    assert_eq!(by_package("firmware-bnx2x"), 12);
    assert_eq!(by_package("firmware-misc-nonfree"), 6);
    assert_eq!(sel.added.len(), 6);

    // Nothing fetched (offline, or --without-firmware): all missing, but
    // no version of bnx2x's is left out as another's.
    let none = select(&wanted, &[], &mut warnings);
    assert_eq!(none.missing.len(), wanted.len());
    assert!(none.other_versions.is_empty() && none.added.is_empty());
    assert_eq!(none.entries.len(), 1);
}

#[test]
fn a_link_across_packages_is_followed() {
    let t = Tmp::new("cross");
    let a = t.0.join("a");
    let b = t.0.join("b");
    link(&a, "lib/firmware/x/fw.bin", "/lib/firmware/y/real.bin");
    put(&b, "lib/firmware/y/real.bin", b"real");
    let roots = vec![
        Root {
            package: "a".into(),
            dir: firmware_dir(&a),
        },
        Root {
            package: "b".into(),
            dir: firmware_dir(&b),
        },
    ];
    let mut warnings = Vec::new();
    let sel = select(&[want("m", "x/fw.bin")], &roots, &mut warnings);
    assert!(
        warnings.is_empty() && sel.missing.is_empty(),
        "{warnings:?}"
    );
    let got: Vec<(String, &str)> = sel
        .added
        .iter()
        .map(|a| (a.path.clone(), a.package.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("lib/firmware/x/fw.bin".to_string(), "a"),
            ("lib/firmware/y/real.bin".to_string(), "b")
        ]
    );
    assert!(
        matches!(&sel.entries[0].kind, EntryKind::Symlink(t) if t == "/lib/firmware/y/real.bin")
    );
}

#[test]
fn link_loops_are_missing_not_endless() {
    let t = Tmp::new("loop");
    link(&t.0, "lib/firmware/a", "b");
    link(&t.0, "lib/firmware/b", "a");
    let roots = vec![Root {
        package: "p".into(),
        dir: firmware_dir(&t.0),
    }];
    let mut warnings = Vec::new();
    let sel = select(&[want("m", "a")], &roots, &mut warnings);
    assert_eq!(sel.missing.len(), 1);
    assert!(warnings[0].contains("more than 8 links"), "{warnings:?}");
}
