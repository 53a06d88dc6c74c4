//! The incident-003 scenarios on sparse image files: verify's findings, the
//! repair's sectors byte for byte, sgdisk's opinion afterwards, partition
//! data still where the entries point, and undo back to the input.
//!
//! The fixtures come from a GPT writer in this file (independent of the
//! crate's code): an ESXi 5.x-style boot disk with slot 4 empty and slots
//! 5-8 in the array's second 512-byte sector.

use blockdev::{BlockDevice, Device, WriteAccess};
use gpt::plan::{self, Mode, Plan};
use gpt::verify::{self, Severity};
use gpt::{apply, undofile::UndoFile};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const EFI: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BASIC: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
const VMFS: &str = "AA31E02A-400F-11DB-9590-000C2911D1B8";
const DIAG: &str = "9D275380-40AD-11DB-BF97-000C2911D1B8";

/// Mixed-endian GUID bytes from text, written here independently of the crate.
fn guid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for i in 0..16 {
        b[i] = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

#[derive(Clone)]
struct Part {
    id: u8,
    type_guid: &'static str,
    first: u64,
    last: u64,
    attrs: u64,
    name: &'static str,
}

impl Part {
    fn unique(&self) -> [u8; 16] {
        let mut g = [0u8; 16];
        for (i, x) in g.iter_mut().enumerate() {
            *x = self.id.wrapping_mul(37).wrapping_add(i as u8 * 11) ^ 0x5a;
        }
        g
    }
}

/// The ESXi 5.x layout in slot order (1,2,3,5,6,7,8; disk order
/// 1,5,6,7,8,2,3), scaled to a 64 MiB disk; LBAs divided by `ss / 512`.
fn esxi5(ss: u64, total: u64) -> Vec<(u32, Part)> {
    let k = ss / 512;
    let last_usable = total - 1 - 16384 / ss - 1;
    let p = |id, t, first: u64, last: u64, attrs, name| Part {
        id,
        type_guid: t,
        first: first / k,
        last: (last + 1) / k - 1,
        attrs,
        name,
    };
    vec![
        (1, p(1, EFI, 64, 8191, 0x4, "")),
        (2, p(2, BASIC, 40960, 57343, 0, "scratch")),
        (
            3,
            Part {
                last: last_usable,
                ..p(3, VMFS, 57344, 57344 + k * 2 - 1, 0, "datastore1")
            },
        ),
        (5, p(5, BASIC, 8224, 16383, 0, "bootbank")),
        (6, p(6, BASIC, 16416, 24575, 0, "altbootbank")),
        (7, p(7, DIAG, 24608, 32767, 0, "")),
        (8, p(8, BASIC, 32800, 40959, 0, "store")),
    ]
}

/// Renumbered 1..N in slot order: what the raw-copy path of incident 003 did.
fn compacted(parts: &[(u32, Part)]) -> Vec<(u32, Part)> {
    parts
        .iter()
        .enumerate()
        .map(|(i, (_, p))| (i as u32 + 1, p.clone()))
        .collect()
}

fn array(parts: &[(u32, Part)]) -> Vec<u8> {
    let mut a = vec![0u8; 128 * 128];
    for (slot, p) in parts {
        let e = &mut a[(*slot as usize - 1) * 128..*slot as usize * 128];
        e[0..16].copy_from_slice(&guid(p.type_guid));
        e[16..32].copy_from_slice(&p.unique());
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attrs.to_le_bytes());
        for (i, u) in p.name.encode_utf16().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    a
}

fn header(
    ss: u64,
    my: u64,
    alt: u64,
    first_usable: u64,
    last_usable: u64,
    entries: u64,
    arr: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; ss as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alt.to_le_bytes());
    h[40..48].copy_from_slice(&first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&guid("6B0E2F51-3C1D-4F6A-9E2B-0A0B0C0D0001"));
    h[72..80].copy_from_slice(&entries.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32fast::hash(arr).to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Protective MBR and both GPT copies for a disk of `total` sectors, as
/// (byte offset, bytes) pieces.
fn gpt_pieces(ss: u64, total: u64, parts: &[(u32, Part)]) -> Vec<(u64, Vec<u8>)> {
    let mut mbr = vec![0u8; ss as usize];
    mbr[446 + 1..446 + 4].copy_from_slice(&[0, 2, 0]);
    mbr[446 + 4] = 0xEE;
    mbr[446 + 5..446 + 8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    mbr[446 + 12..446 + 16]
        .copy_from_slice(&((total - 1).min(u32::MAX as u64) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let arr = array(parts);
    let n = arr.len() as u64 / ss;
    let last = total - 1;
    let (fu, lu) = (2 + n, last - n - 1);
    vec![
        (0, mbr),
        (ss, header(ss, 1, last, fu, lu, 2, &arr)),
        (2 * ss, arr.clone()),
        ((last - n) * ss, arr.clone()),
        (last * ss, header(ss, last, 1, fu, lu, last - n, &arr)),
    ]
}

/// Writes the GPT pieces into the image file (which must already have the
/// disk's size).
fn write_gpt(img: &Path, ss: u64, total: u64, parts: &[(u32, Part)]) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    assert_eq!(f.metadata().unwrap().len(), total * ss);
    for (at, b) in gpt_pieces(ss, total, parts) {
        f.write_all_at(&b, at).unwrap();
    }
}

/// Marks each partition's first sector with its unique GUID.
fn write_markers(img: &Path, ss: u64, parts: &[(u32, Part)]) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    for (_, p) in parts {
        let mut m = b"PARTDATA".to_vec();
        m.extend_from_slice(&p.unique());
        f.write_all_at(&m, p.first * ss).unwrap();
    }
}

use testkit::TempDir;

/// A scratch directory for one test.
fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("gpt-repair-{tag}"))
}

fn sparse(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// A raw copy of `src` onto a new (sparse) file of `bytes`, nothing else.
fn raw_copy(src: &Path, dst: &Path, bytes: u64) {
    std::fs::copy(src, dst).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

/// The original ESXi 5.x boot disk: 64 MiB.
fn original(dir: &TempDir, ss: u64) -> PathBuf {
    let p = dir.join("original.img");
    let total = 64 * MIB / ss;
    sparse(&p, 64 * MIB);
    let parts = esxi5(ss, total);
    write_gpt(&p, ss, total, &parts);
    write_markers(&p, ss, &parts);
    p
}

/// Every finding's code, info level included, sorted: the tests expect
/// exactly these.
fn finding_codes(img: &Path) -> Vec<&'static str> {
    let dev = Device::open(img).unwrap();
    let v = gpt::read(&dev);
    let mut c: Vec<&'static str> = verify::verify(&v).into_iter().map(|f| f.code).collect();
    c.sort();
    c
}

fn make_plan(img: &Path, mode: Mode) -> Plan {
    let dev = Device::open(img).unwrap();
    let v = gpt::read(&dev);
    plan::plan(&dev, &v, &mode).unwrap_or_else(|e| panic!("plan {mode:?}: {e}"))
}

fn repair(img: &Path, mode: Mode, undo: &Path) -> Plan {
    let plan = make_plan(img, mode);
    let dev = Device::open_writable(img, &WriteAccess::confirmed_by_user(img)).unwrap();
    apply::apply(&dev, &plan, undo).unwrap();
    plan
}

fn undo(img: &Path, undo: &Path) {
    let u = UndoFile::decode(&std::fs::read(undo).unwrap()).unwrap();
    let dev = Device::open_writable(img, &WriteAccess::confirmed_by_user(img)).unwrap();
    let p = apply::undo_plan(&dev, u.sector_size, &u).unwrap();
    apply::apply_undo(&dev, &p).unwrap();
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// sgdisk -v on an image (512-byte sectors) or, for 4096, through a loop
/// device with 4096-byte logical sectors (needs root).
fn sgdisk_verify(img: &Path, ss: u64) -> String {
    let run = |target: &Path| {
        let out = Command::new("sgdisk")
            .arg("-v")
            .arg(target)
            .output()
            .expect("sgdisk is needed for these tests (Debian package gdisk)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if ss == 512 {
        return run(img);
    }
    let out = Command::new("losetup")
        .args(["-f", "--show", "--sector-size", &ss.to_string()])
        .arg(img)
        .output()
        .expect("losetup (util-linux) is needed for the 4096-byte-sector sgdisk check");
    assert!(
        out.status.success(),
        "losetup --sector-size {ss} failed (needs root and loop devices): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loopdev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let text = run(&loopdev);
    let _ = Command::new("losetup").arg("-d").arg(&loopdev).status();
    text
}

fn assert_sgdisk_clean(img: &Path, ss: u64) {
    let out = sgdisk_verify(img, ss);
    assert!(
        out.contains("No problems found"),
        "sgdisk -v {}:\n{out}",
        img.display()
    );
}

/// Every used entry's first sector holds the marker of its unique GUID.
fn assert_partitions_point_at_their_data(img: &Path) {
    let dev = Device::open(img).unwrap();
    let v = gpt::read(&dev);
    let ss = u64::from(v.sector_size);
    for c in [&v.primary, &v.backup] {
        let c = c.as_ref().unwrap();
        assert_eq!(c.entries.len(), 7);
        for e in &c.entries {
            let mut m = [0u8; 24];
            dev.read_exact_at(&mut m, e.first_lba * ss).unwrap();
            assert_eq!(&m[..8], b"PARTDATA");
            assert_eq!(
                m[8..24],
                e.unique_guid.0,
                "slot {} points at another partition's data",
                e.slot
            );
        }
    }
}

fn read_range(img: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    std::fs::File::open(img)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b
}

#[test]
fn original_esxi5_disk_is_clean_for_us_and_sgdisk() {
    let d = temp_dir("orig");
    let img = original(&d, 512);
    assert_eq!(finding_codes(&img), ["esxi-layout"]);
    assert_sgdisk_clean(&img, 512);
    // The last four entries sit in the array's second sector (LBA 3), slot 4 is zero.
    let a = read_range(&img, 1024, 16384);
    assert!(a[3 * 128..4 * 128].iter().all(|&b| b == 0));
    assert!(a[512..1024].chunks(128).all(|e| e[..16] != [0; 16]));
    assert!(a[1024..].iter().all(|&b| b == 0));
    assert_partitions_point_at_their_data(&img);
}

/// Grown 1.5x and both GPTs rewritten compacted (all CRCs valid).
fn compacted_copy(d: &TempDir, orig: &Path, ss: u64) -> PathBuf {
    let img = d.join("compacted.img");
    let total = 96 * MIB / ss;
    raw_copy(orig, &img, 96 * MIB);
    write_gpt(&img, ss, total, &compacted(&esxi5(ss, 64 * MIB / ss)));
    img
}

/// What the compacted copy should become: the same raw copy with an
/// uncompacted GPT written for the new size.
fn expected_grown(d: &TempDir, base: &Path, ss: u64) -> PathBuf {
    let exp = d.join("expected.img");
    std::fs::copy(base, &exp).unwrap();
    write_gpt(&exp, ss, 96 * MIB / ss, &esxi5(ss, 64 * MIB / ss));
    exp
}

fn compacted_scenario(ss: u64, mode: impl Fn(&Path) -> Mode) {
    let d = temp_dir(&format!("compacted-{ss}"));
    let orig = original(&d, ss);
    let img = compacted_copy(&d, &orig, ss);
    let input = d.join("input.img");
    std::fs::copy(&img, &input).unwrap();
    let exp = expected_grown(&d, &img, ss);
    assert_eq!(finding_codes(&img), ["esxi-compacted"]);
    if ss == 512 {
        // sgdisk sees nothing wrong: that is the incident.
        assert_sgdisk_clean(&img, ss);
    }
    let dev = Device::open(&img).unwrap();
    let offered: Vec<String> = plan::suggestions(&dev, &gpt::read(&dev))
        .iter()
        .map(|(m, _)| m.describe())
        .collect();
    assert_eq!(offered, ["--esxi-slots"]);
    let undo_path = d.join("undo");
    let plan = repair(&img, mode(&orig), &undo_path);
    assert!(
        plan.steps
            .iter()
            .any(|s| s.contains("move the entry in slot 4 to slot 5")),
        "{}",
        plan.render()
    );
    assert!(
        same_file(&img, &exp),
        "repaired image differs from the expected one"
    );
    // The primary array equals the original disk's array byte for byte.
    assert_eq!(
        read_range(&img, 2 * ss, 16384),
        read_range(&orig, 2 * ss, 16384)
    );
    assert_eq!(finding_codes(&img), ["esxi-layout"]);
    assert_sgdisk_clean(&img, ss);
    assert_partitions_point_at_their_data(&img);
    // Only GPT sectors changed: primary header + array sectors 1 and 2 (slots
    // 1-8), the same in the backup.
    let lbas: Vec<u64> = plan.changes.iter().map(|c| c.lba).collect();
    let total = 96 * MIB / ss;
    let n = 16384 / ss;
    if ss == 512 {
        assert_eq!(lbas, [total - 1 - n, total - n, total - 1, 2, 3, 1]);
    } else {
        assert_eq!(lbas, [total - 1 - n, total - 1, 2, 1]);
    }
    undo(&img, &undo_path);
    assert!(
        same_file(&img, &input),
        "undo did not restore the input byte for byte"
    );
}

#[test]
fn compacted_copy_restored_from_the_original_image() {
    compacted_scenario(512, |orig| Mode::RestoreSlots {
        reference: gpt::repair_cli::reference_entries(orig.to_str().unwrap()).unwrap(),
        label: orig.display().to_string(),
    });
}

#[test]
fn compacted_copy_restored_from_an_sgdisk_backup_file() {
    compacted_scenario(512, |orig| {
        let sgb = orig.with_extension("sgb");
        let out = Command::new("sgdisk")
            .arg("-b")
            .arg(&sgb)
            .arg(orig)
            .output()
            .expect("sgdisk is needed for these tests (Debian package gdisk)");
        assert!(out.status.success(), "{out:?}");
        Mode::RestoreSlots {
            reference: gpt::repair_cli::reference_entries(sgb.to_str().unwrap()).unwrap(),
            label: sgb.display().to_string(),
        }
    });
}

#[test]
fn compacted_copy_restored_from_esxi_layout_knowledge() {
    compacted_scenario(512, |_| Mode::EsxiSlots);
}

#[test]
fn compacted_copy_4096_byte_sectors() {
    compacted_scenario(4096, |_| Mode::EsxiSlots);
}

#[test]
fn raw_copy_without_rewrite_relocates_the_backup() {
    let d = temp_dir("stranded");
    let orig = original(&d, 512);
    let img = d.join("grown.img");
    raw_copy(&orig, &img, 96 * MIB);
    let input = d.join("input.img");
    std::fs::copy(&img, &input).unwrap();
    assert_eq!(
        finding_codes(&img),
        [
            "backup-not-at-end",
            "backup-stranded",
            "esxi-layout",
            "pmbr-size"
        ]
    );
    // A slot repair here must say it relocates the backup too.
    let p = make_plan(&img, Mode::EsxiSlots);
    assert!(
        p.steps.iter().any(|s| s.contains("also relocates")),
        "{}",
        p.render()
    );
    let undo_path = d.join("undo");
    let plan = repair(&img, Mode::RelocateBackup, &undo_path);
    let text = plan.render();
    assert!(text.contains("left as it is (not zeroed)"), "{text}");
    assert!(text.contains("protective MBR"), "{text}");
    // Expected: the new GPT for 96 MiB, and the old backup still in place.
    let exp = expected_grown(&d, &input, 512);
    assert!(
        same_file(&img, &exp),
        "relocated image differs from the expected one"
    );
    assert_eq!(finding_codes(&img), ["esxi-layout"]);
    assert_sgdisk_clean(&img, 512);
    assert_partitions_point_at_their_data(&img);
    undo(&img, &undo_path);
    assert!(same_file(&img, &input));
}

/// Raw copy to a larger disk and then the primary header destroyed: the
/// backup is found at the old end (the protective MBR remembers the old
/// size), --from-backup says a second run is needed, and --relocate-backup
/// alone rebuilds both copies at the right places.
#[test]
fn grown_disk_with_destroyed_primary_finds_the_stranded_backup() {
    let d = temp_dir("grown-noprimary");
    let orig = original(&d, 512);
    let img = d.join("grown.img");
    raw_copy(&orig, &img, 96 * MIB);
    let grown = d.join("grown-intact.img");
    std::fs::copy(&img, &grown).unwrap();
    patch(&img, 512, &[0u8; 512]);
    let input = d.join("input.img");
    std::fs::copy(&img, &input).unwrap();
    let old_last = 64 * MIB / 512 - 1;
    let dev = Device::open(&img).unwrap();
    let v = gpt::read(&dev);
    assert_eq!(v.backup.as_ref().unwrap().header_lba, old_last);
    assert_eq!(
        finding_codes(&img),
        [
            "backup-stranded",
            "esxi-layout",
            "pmbr-size",
            "primary-missing"
        ]
    );
    let offered: Vec<String> = plan::suggestions(&dev, &v)
        .iter()
        .map(|(m, _)| m.describe())
        .collect();
    assert_eq!(offered, ["--from-backup", "--relocate-backup"]);
    let p = make_plan(&img, Mode::FromBackup);
    assert!(
        p.steps.iter().any(|s| s.contains("run --relocate-backup")),
        "{}",
        p.render()
    );
    let undo_path = d.join("undo");
    let plan = repair(&img, Mode::RelocateBackup, &undo_path);
    assert!(
        plan.steps
            .iter()
            .any(|s| s.contains("rebuilt from the backup")),
        "{}",
        plan.render()
    );
    // The same as relocating on the undamaged grown copy.
    let exp = expected_grown(&d, &grown, 512);
    assert!(same_file(&img, &exp), "{}", plan.render());
    assert_eq!(finding_codes(&img), ["esxi-layout"]);
    assert_sgdisk_clean(&img, 512);
    assert_partitions_point_at_their_data(&img);
    undo(&img, &undo_path);
    assert!(same_file(&img, &input));
}

fn damaged_scenario(tag: &str, damage: impl Fn(&Path), codes: &[&str], mode: Mode) {
    let d = temp_dir(tag);
    let orig = original(&d, 512);
    let img = d.join("damaged.img");
    std::fs::copy(&orig, &img).unwrap();
    damage(&img);
    let input = d.join("input.img");
    std::fs::copy(&img, &input).unwrap();
    let mut expected = codes.to_vec();
    expected.push("esxi-layout");
    expected.sort();
    assert_eq!(finding_codes(&img), expected);
    let dev = Device::open(&img).unwrap();
    let offered: Vec<String> = plan::suggestions(&dev, &gpt::read(&dev))
        .iter()
        .map(|(m, _)| m.describe())
        .collect();
    assert_eq!(offered, [mode.describe()]);
    let undo_path = d.join("undo");
    repair(&img, mode, &undo_path);
    assert!(
        same_file(&img, &orig),
        "{tag}: repair did not give the original back byte for byte"
    );
    assert_eq!(finding_codes(&img), ["esxi-layout"]);
    assert_sgdisk_clean(&img, 512);
    assert_partitions_point_at_their_data(&img);
    undo(&img, &undo_path);
    assert!(same_file(&img, &input));
}

fn patch(img: &Path, offset: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

#[test]
fn zeroed_primary_header_rebuilt_from_backup() {
    damaged_scenario(
        "zeroed-primary",
        |img| patch(img, 512, &[0u8; 512]),
        &["primary-missing"],
        Mode::FromBackup,
    );
}

#[test]
fn corrupt_primary_header_rebuilt_from_backup() {
    // Garbage over the disk GUID: the header CRC no longer fits.
    damaged_scenario(
        "corrupt-primary",
        |img| patch(img, 512 + 0x38, &[0xA5; 16]),
        &["header-crc"],
        Mode::FromBackup,
    );
}

#[test]
fn missing_backup_rebuilt_from_primary() {
    let last = 64 * MIB / 512 - 1;
    damaged_scenario(
        "zeroed-backup",
        |img| patch(img, last * 512, &[0u8; 512]),
        &["backup-missing"],
        Mode::FromPrimary,
    );
}

#[test]
fn both_array_crcs_bad_fixed_by_fix_crc() {
    // Stored array CRCs wrong in both headers (header CRCs made to match),
    // as after a hand edit that forgot step 5 of the manual procedure.
    let damage = |img: &Path| {
        let last = 64 * MIB / 512 - 1;
        for lba in [1, last] {
            let mut h = read_range(img, lba * 512, 512);
            h[0x58] ^= 0xFF;
            h[0x10..0x14].fill(0);
            let c = crc32fast::hash(&h[..92]);
            h[0x10..0x14].copy_from_slice(&c.to_le_bytes());
            patch(img, lba * 512, &h);
        }
    };
    damaged_scenario(
        "array-crcs",
        damage,
        &["array-crc", "array-crc"],
        Mode::FixCrc,
    );
}

#[test]
fn refusals_explain_themselves() {
    let d = temp_dir("refuse");
    let img = original(&d, 512);
    let dev = Device::open(&img).unwrap();
    let v = gpt::read(&dev);
    let e = plan::plan(&dev, &v, &Mode::MoveSlot { from: 5, to: 6 }).unwrap_err();
    assert!(e.message.contains("slot 6 is in use"), "{e}");
    let e = plan::plan(&dev, &v, &Mode::MoveSlot { from: 4, to: 9 }).unwrap_err();
    assert!(e.message.contains("slot 4 is empty"), "{e}");
    let e = plan::plan(&dev, &v, &Mode::MoveSlot { from: 5, to: 129 }).unwrap_err();
    assert!(e.message.contains("does not exist"), "{e}");
    // Healthy disk: nothing to change.
    assert!(plan::plan(&dev, &v, &Mode::FixCrc).unwrap().is_empty());
    assert!(plan::plan(&dev, &v, &Mode::EsxiSlots).unwrap().is_empty());
    assert!(plan::plan(&dev, &v, &Mode::RelocateBackup)
        .unwrap()
        .is_empty());
    // A plain Linux disk is no ESXi layout.
    let linux = d.join("linux.img");
    sparse(&linux, 8 * MIB);
    let lp = vec![(
        1,
        Part {
            id: 9,
            type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            first: 2048,
            last: 8191,
            attrs: 0,
            name: "root",
        },
    )];
    write_gpt(&linux, 512, 16384, &lp);
    let dev = Device::open(&linux).unwrap();
    let v = gpt::read(&dev);
    let e = plan::plan(&dev, &v, &Mode::EsxiSlots).unwrap_err();
    assert!(e.message.contains("known ESXi boot disk layout"), "{e}");
    // Expert move works and keeps the bytes of the entry.
    let p = plan::plan(&dev, &v, &Mode::MoveSlot { from: 1, to: 4 }).unwrap();
    assert!(p.render().contains("move the entry in slot 1 to slot 4"));
}

#[test]
fn cli_dry_run_writes_nothing_and_write_needs_undo() {
    use argh::FromArgs;
    let d = temp_dir("cli");
    let orig = original(&d, 512);
    let img = compacted_copy(&d, &orig, 512);
    let before = std::fs::read(&img).unwrap();
    let s = img.to_str().unwrap();
    let cmd = |args: &[&str]| gpt::cli::GptCommand::from_args(&["gpt"], args).unwrap();
    assert_eq!(gpt::cli::run(cmd(&["verify", s])), 1);
    assert_eq!(gpt::cli::run(cmd(&["verify", orig.to_str().unwrap()])), 0);
    assert_eq!(gpt::cli::run(cmd(&["repair", s, "--esxi-slots"])), 0);
    assert_eq!(
        gpt::cli::run(cmd(&["repair", s, "--esxi-slots", "--write"])),
        2
    );
    assert_eq!(gpt::cli::run(cmd(&["repair", s])), 2);
    assert_eq!(
        gpt::cli::run(cmd(&["repair", s, "--fix-crc", "--esxi-slots"])),
        2
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
    let undo_path = d.join("cli.undo");
    let u = undo_path.to_str().unwrap();
    assert_eq!(
        gpt::cli::run(cmd(&[
            "repair",
            s,
            "--restore-slots-from",
            orig.to_str().unwrap(),
            "--write",
            "--undo",
            u
        ])),
        0
    );
    assert_eq!(gpt::cli::run(cmd(&["verify", s])), 0);
    // The undo file is never overwritten.
    assert_eq!(
        gpt::cli::run(cmd(&[
            "repair",
            s,
            "--move-slot",
            "8:9",
            "--write",
            "--undo",
            u
        ])),
        2
    );
    assert_eq!(gpt::cli::run(cmd(&["undo", s, u])), 0);
    assert_eq!(gpt::cli::run(cmd(&["undo", s, u, "--write"])), 0);
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn summary_for_the_overview() {
    let d = temp_dir("summary");
    let orig = original(&d, 512);
    let s = gpt::summarize_checked(&Device::open(&orig).unwrap()).unwrap();
    assert_eq!(
        (s.table, s.primary_ok, s.backup_ok, s.problems),
        ("gpt", true, true, 0)
    );
    assert_eq!(
        s.entries.iter().map(|e| e.slot).collect::<Vec<_>>(),
        [1, 2, 3, 5, 6, 7, 8]
    );
    assert_eq!(s.layout.as_deref(), Some("ESXi 5.x/6.x boot disk"));
    let img = compacted_copy(&d, &orig, 512);
    let s = gpt::summarize(&Device::open(&img).unwrap());
    assert_eq!((s.problems, s.worst), (1, Some("esxi-compacted")));
    assert_eq!(
        s.layout.as_deref(),
        Some("ESXi 5.x/6.x boot disk (entries compacted)")
    );
    // An MBR-only disk and an empty one.
    let mut mbr = vec![0u8; 1 << 20];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8] = 8;
    mbr[446 + 12] = 100;
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let s = gpt::summarize(&blockdev::MemDevice::new(mbr, 512));
    assert_eq!((s.table, s.problems), ("mbr", 0));
    let s = gpt::summarize(&blockdev::MemDevice::new(vec![0; 1 << 20], 512));
    assert_eq!(s.table, "none");
}

/// A small disk (4 MiB) in memory with an ESXi-7-like layout for the
/// property test: slots 1, 5, 6, 7.
fn small_disk() -> (Vec<u8>, Vec<(u32, Part)>) {
    let total = 8192u64;
    let parts = vec![
        (
            1,
            Part {
                id: 1,
                type_guid: EFI,
                first: 64,
                last: 1023,
                attrs: 0,
                name: "BOOT",
            },
        ),
        (
            5,
            Part {
                id: 5,
                type_guid: BASIC,
                first: 1024,
                last: 2047,
                attrs: 0,
                name: "BOOTBANK1",
            },
        ),
        (
            6,
            Part {
                id: 6,
                type_guid: BASIC,
                first: 2048,
                last: 3071,
                attrs: 0,
                name: "BOOTBANK2",
            },
        ),
        (
            7,
            Part {
                id: 7,
                type_guid: "4EB2EA39-7855-4790-A79E-FAE495E21F8D",
                first: 3072,
                last: 8150,
                attrs: 0,
                name: "OSDATA",
            },
        ),
    ];
    let mut d = vec![0u8; (total * 512) as usize];
    for (at, b) in gpt_pieces(512, total, &parts) {
        d[at as usize..at as usize + b.len()].copy_from_slice(&b);
    }
    (d, parts)
}

#[test]
fn esxi7_layout_is_recognised_and_its_compaction_repaired() {
    let (d, parts) = small_disk();
    let v = gpt::read(&blockdev::MemDevice::new(d.clone(), 512));
    assert!(
        verify::verify(&v)
            .iter()
            .all(|f| f.severity < Severity::Warning),
        "{:?}",
        verify::verify(&v)
    );
    let mut c = vec![0u8; d.len()];
    for (at, b) in gpt_pieces(512, 8192, &compacted(&parts)) {
        c[at as usize..at as usize + b.len()].copy_from_slice(&b);
    }
    let dev = blockdev::MemDevice::new(c, 512);
    let v = gpt::read(&dev);
    let f = verify::verify(&v);
    assert!(
        f.iter()
            .any(|f| f.code == "esxi-compacted" && f.message.contains("ESXi 7")),
        "{f:?}"
    );
    let p = plan::plan(&dev, &v, &Mode::EsxiSlots).unwrap();
    let mut fixed = dev.data.clone();
    for ch in &p.changes {
        let at = (ch.lba * 512) as usize;
        fixed[at..at + 512].copy_from_slice(&ch.new);
    }
    assert_eq!(&fixed[..34 * 512], &d[..34 * 512]);
    assert_eq!(&fixed[fixed.len() - 33 * 512..], &d[d.len() - 33 * 512..]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Random damage near both ends and random truncation: reading,
    /// verifying, showing and planning every repair never panic, and a plan
    /// that is made only lists whole sectors inside the disk.
    #[test]
    fn damaged_disks_never_panic_the_repair_planner(
        edits in proptest::collection::vec((0usize..(40 * 512), proptest::num::u8::ANY, proptest::bool::ANY), 0..24),
        cut in proptest::option::of(0usize..(8192 * 512)),
        sector4k in proptest::bool::ANY,
    ) {
        let (mut d, parts) = small_disk();
        let reference: Vec<gpt::Entry> = gpt::best_entries(&gpt::read(&blockdev::MemDevice::new(d.clone(), 512))).to_vec();
        let n = d.len();
        for (at, v, end) in edits {
            let i = if end { n - 1 - at } else { at };
            d[i] = v;
        }
        if let Some(c) = cut {
            d.truncate(c);
        }
        let dev = blockdev::MemDevice::new(d, if sector4k { 4096 } else { 512 });
        let v = gpt::read(&dev);
        let _ = verify::verify(&v);
        let _ = gpt::cli::render_show(&v);
        let _ = gpt::summarize(&dev);
        let _ = parts;
        for mode in [
            Mode::FixCrc,
            Mode::FromBackup,
            Mode::FromPrimary,
            Mode::RelocateBackup,
            Mode::EsxiSlots,
            Mode::MoveSlot { from: 1, to: 4 },
            Mode::RestoreSlots { reference: reference.clone(), label: "ref".into() },
        ] {
            if let Ok(p) = plan::plan(&dev, &v, &mode) {
                let _ = p.render();
                for c in &p.changes {
                    proptest::prop_assert_eq!(c.new.len(), v.sector_size as usize);
                    proptest::prop_assert!((c.lba + 1) * u64::from(v.sector_size) <= dev.size());
                }
            }
        }
    }
}

#[test]
fn esxi6_layout_with_second_diagnostic_partition() {
    // ESXi 6.0 on a disk over ~8 GB: 1,5,6,7,8,9,2,3 in disk order (partedUtil
    // output published by vinfrastructure.it), scaled down.
    let total = 32768u64;
    let p = |id, t, first, last| Part {
        id,
        type_guid: t,
        first,
        last,
        attrs: 0,
        name: "",
    };
    let parts = vec![
        (1, p(1, EFI, 64, 511)),
        (2, p(2, BASIC, 4096, 8191)),
        (3, p(3, VMFS, 8192, 32000)),
        (5, p(5, BASIC, 512, 1023)),
        (6, p(6, BASIC, 1024, 1535)),
        (7, p(7, DIAG, 1536, 2047)),
        (8, p(8, BASIC, 2048, 2559)),
        (9, p(9, DIAG, 2560, 4095)),
    ];
    let mut d = vec![0u8; (total * 512) as usize];
    for (at, b) in gpt_pieces(512, total, &compacted(&parts)) {
        d[at as usize..at as usize + b.len()].copy_from_slice(&b);
    }
    let v = gpt::read(&blockdev::MemDevice::new(d, 512));
    let l = verify::esxi_layout(gpt::best_entries(&v)).unwrap();
    assert_eq!(
        l.mapping,
        [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 5),
            (5, 6),
            (6, 7),
            (7, 8),
            (8, 9)
        ]
    );
    assert!(!l.ambiguous);
}

#[test]
fn crash_between_the_two_writes_is_explained_and_fixed_by_a_second_run() {
    let d = temp_dir("crash");
    let orig = original(&d, 512);
    let img = compacted_copy(&d, &orig, 512);
    let input = d.join("input.img");
    std::fs::copy(&img, &input).unwrap();
    let exp = expected_grown(&d, &img, 512);
    let plan = make_plan(&img, Mode::EsxiSlots);
    // Power lost after the backup phase: undo file and backup written only.
    let undo_path = d.join("undo");
    let ss = u64::from(plan.sector_size);
    apply::write_undo(
        &undo_path,
        &UndoFile {
            sector_size: plan.sector_size,
            device_size: plan.device_size,
            device_name: plan.device.clone(),
            records: plan
                .changes
                .iter()
                .map(|c| gpt::undofile::UndoRecord {
                    offset: c.lba * ss,
                    old: c.old.clone(),
                })
                .collect(),
        },
    )
    .unwrap();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.phase == plan::Phase::Backup)
    {
        patch(&img, c.lba * ss, &c.new);
    }
    let dev = Device::open(&img).unwrap();
    let v = gpt::read(&dev);
    let f = verify::verify(&v);
    let diff = f
        .iter()
        .find(|f| f.code == "arrays-differ")
        .expect("verify explains the half-done repair");
    assert!(
        diff.message.contains("slots 4, 5, 6, 7, 8"),
        "{}",
        diff.message
    );
    let show = gpt::cli::render_show(&v);
    assert!(
        show.contains("slot 4: primary Microsoft basic data 8224-16383, backup empty"),
        "{show}"
    );
    // Undo brings back the input; a second run of the same repair finishes it.
    undo(&img, &undo_path);
    assert!(same_file(&img, &input));
    for c in plan
        .changes
        .iter()
        .filter(|c| c.phase == plan::Phase::Backup)
    {
        patch(&img, c.lba * ss, &c.new);
    }
    repair(&img, Mode::EsxiSlots, &d.join("undo2"));
    assert!(same_file(&img, &exp));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
    /// Headers with odd field values but right CRCs (so they count as
    /// intact): planning and showing never panic.
    #[test]
    fn odd_but_consistent_headers_never_panic(
        fields in proptest::collection::vec((0usize..9, proptest::num::u64::ANY, proptest::bool::ANY), 1..4),
    ) {
        let (mut d, _) = small_disk();
        let offsets = [0x0C, 0x18, 0x20, 0x28, 0x30, 0x48, 0x50, 0x54, 0x58];
        let last = 8191usize;
        for (f, value, backup) in fields {
            let at = offsets[f];
            let base = if backup { last * 512 } else { 512 };
            let h = &mut d[base..base + 512];
            let width = if matches!(at, 0x0C | 0x50 | 0x54 | 0x58) { 4 } else { 8 };
            h[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            let size = (u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize).clamp(92, 512);
            h[16..20].fill(0);
            let c = crc32fast::hash(&h[..size]);
            h[16..20].copy_from_slice(&c.to_le_bytes());
        }
        let dev = blockdev::MemDevice::new(d, 512);
        let v = gpt::read(&dev);
        let _ = verify::verify(&v);
        let _ = gpt::cli::render_show(&v);
        let _ = plan::suggestions(&dev, &v);
        for mode in [Mode::FixCrc, Mode::FromBackup, Mode::FromPrimary, Mode::RelocateBackup, Mode::EsxiSlots, Mode::MoveSlot { from: 5, to: 2 }] {
            if let Ok(p) = plan::plan(&dev, &v, &mode) {
                let _ = p.render();
            }
        }
    }
}
