//! ESXi-written images beyond ../shared/fixtures/vmfs, from the same public
//! source (dissect.vmfs 3.13 on PyPI; qemu-tests/setup.sh fetches them into
//! target/vmfs-pypi/): VMFS-L, the format of ESXi 7+'s OSDATA volume, as
//! VMFS5 and VMFS6, with the LVM layer and without ("d"); VMFS5 and VMFS6
//! made "resource-optimized"; VMFS5 without dense sub-block addresses
//! (config flag 0x4 clear, 32 KiB sub-blocks). Their known content, from
//! that project's tests: the label is the image's name, VMFS-L volumes are
//! flagged local, and the root holds the system files (`.sdd.sf` a
//! directory). Every system file is read to its end; debugvmfs and
//! debugvmfs6 must give the same bytes for the non-local ones (they refuse
//! VMFS-L: "invalid magic number 0x2fabf15f", measured).

mod common;
use common::oracle::{oracle, ours};
use vmfs::{FileType, Volume};

struct Case {
    name: &'static str,
    version: u8,
    local: bool,
    /// debugvmfs or debugvmfs6, where the tool reads the volume.
    oracle: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "vmfs5l",
        version: 5,
        local: true,
        oracle: None,
    },
    Case {
        name: "vmfs5ld",
        version: 5,
        local: true,
        oracle: None,
    },
    Case {
        name: "vmfs6l",
        version: 6,
        local: true,
        oracle: None,
    },
    Case {
        name: "vmfs6ld",
        version: 6,
        local: true,
        oracle: None,
    },
    Case {
        name: "vmfs5-resource-optimized",
        version: 5,
        local: false,
        oracle: Some("debugvmfs"),
    },
    Case {
        name: "vmfs6-resource-optimized",
        version: 6,
        local: false,
        oracle: Some("debugvmfs6"),
    },
    Case {
        name: "vmfs5-no-dense-sbpc",
        version: 5,
        local: false,
        oracle: Some("debugvmfs"),
    },
];

fn check(c: &Case) {
    let rel = format!("{}.bin.gz", c.name);
    let v =
        Volume::from_devices(vec![common::dev(&rel)]).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let info = v.info();
    assert_eq!(info.label, c.name);
    assert_eq!(info.vmfs_version, c.version, "{}", c.name);
    assert_eq!(info.local, c.local, "{}: VMFS-L flag", c.name);
    // "d" images are the bare filesystem, the others carry the LVM layer.
    assert_eq!(
        info.lvm.is_some(),
        !c.name.ends_with("ld"),
        "{}: LVM",
        c.name
    );
    if c.name == "vmfs5-no-dense-sbpc" {
        assert_eq!(info.sub_block_size, 32 << 10);
    }
    let mut system = vec![
        ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf",
    ];
    if c.version == 6 {
        system.push(".jbc.sf");
    }
    let names: Vec<String> = v
        .read_dir("/")
        .unwrap_or_else(|e| panic!("{}: /: {e}", c.name))
        .into_iter()
        .map(|e| e.name)
        .collect();
    for want in system.iter().chain([&".sdd.sf"]) {
        assert!(
            names.iter().any(|n| n == want),
            "{}: {want} missing in {names:?}",
            c.name
        );
    }
    // A system file with the directory bit in its mode (0o40700).
    assert_eq!(v.stat("/.sdd.sf").unwrap().file_type, FileType::Directory);
    v.read_dir("/.sdd.sf")
        .unwrap_or_else(|e| panic!("{}: /.sdd.sf: {e}", c.name));
    let img = common::image(&rel);
    for f in system {
        let path = format!("/{f}");
        let st = v.stat(&path).unwrap();
        assert!(st.size > 0, "{}: {f} empty", c.name);
        let data = ours(&v, &path);
        assert_eq!(data.len() as u64, st.size);
        assert!(
            data.iter().any(|&b| b != 0),
            "{}: {f} reads as zeros",
            c.name
        );
        if let Some(tool) = c.oracle {
            assert!(
                oracle(tool, &img, &["cat", &path]) == data,
                "{}: {f} differs from {tool}",
                c.name
            );
        }
    }
}

#[test]
fn vmfs_l_volumes_with_and_without_lvm() {
    for c in CASES.iter().filter(|c| c.local) {
        check(c);
    }
}

#[test]
fn resource_optimized_and_sparse_sub_block_volumes() {
    for c in CASES.iter().filter(|c| !c.local) {
        check(c);
    }
}
