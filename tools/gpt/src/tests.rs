use crate::verify::{verify, Severity};
use crate::*;
use blockdev::MemDevice;
use testkit::gptdisk::*;

const SECTORS: u64 = 131072; // 64 MiB

fn codes(v: &GptView) -> Vec<&'static str> {
    verify(v)
        .into_iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| f.code)
        .collect()
}

fn view(d: Vec<u8>) -> GptView {
    read(&MemDevice::new(d, 512))
}

#[test]
fn esxi5_intact_is_clean_and_recognised() {
    let v = view(disk(SECTORS, 512, &esxi5_parts()));
    assert_eq!(codes(&v), Vec::<&str>::new());
    let p = v.primary.as_ref().unwrap();
    let slots: Vec<u32> = p.entries.iter().map(|e| e.slot).collect();
    assert_eq!(slots, [1, 2, 3, 5, 6, 7, 8]);
    assert_eq!(p.entries[2].type_name, Some("VMware VMFS"));
    assert!(verify(&v).iter().any(|f| f.code == "esxi-layout"));
    let text = cli::render_show(&v);
    assert!(text.contains("     4  (empty)"), "{text}");
}

#[test]
fn compacted_copy_on_a_larger_disk_is_flagged_with_the_slot_moves() {
    // The copy tool rewrote both tables for the new size: all CRCs valid.
    let v = view(disk(SECTORS * 3 / 2, 512, &compact(esxi5_parts())));
    let findings = verify(&v);
    assert_eq!(codes(&v), ["esxi-compacted"], "{findings:?}");
    let msg = &findings[0].message;
    assert!(msg.contains("4->5, 5->6, 6->7, 7->8"), "{msg}");
    let l = verify::esxi_layout(best_entries(&v)).unwrap();
    assert!(!l.ambiguous);
}

#[test]
fn raw_copy_without_rewrite_strands_the_backup() {
    let mut d = disk(SECTORS, 512, &esxi5_parts());
    d.resize(SECTORS as usize * 512 * 3 / 2, 0);
    let v = view(d);
    assert_eq!(codes(&v), ["backup-not-at-end", "backup-stranded"]);
    assert_eq!(v.backup.as_ref().unwrap().header_lba, SECTORS - 1);
}

#[test]
fn corrupt_primary_header_and_bad_array_crcs() {
    let mut d = disk(SECTORS, 512, &esxi5_parts());
    d[512 + 40] ^= 0xFF; // first usable LBA changed, CRC not updated
    let v = view(d);
    assert!(codes(&v).contains(&"header-crc"), "{:?}", verify(&v));
    let mut d = disk(SECTORS, 512, &esxi5_parts());
    // The same byte changed in both arrays: arrays equal, both CRCs wrong.
    let backup_array = (SECTORS - 1 - 32) as usize * 512;
    d[1024 + 6 * 128 + 60] ^= 1;
    d[backup_array + 6 * 128 + 60] ^= 1;
    let v = view(d);
    assert_eq!(codes(&v), ["array-crc", "array-crc"]);
    // Primary header gone: the backup still gives the partitions.
    let mut d = disk(SECTORS, 512, &esxi5_parts());
    d[512..520].copy_from_slice(b"NOTAGPT!");
    let v = view(d);
    assert_eq!(codes(&v), ["primary-missing"]);
    assert_eq!(best_entries(&v).len(), 7);
}

#[test]
fn sector_size_4096_image() {
    let v = read(&MemDevice::new(
        disk(
            SECTORS / 8,
            4096,
            &[Part {
                slot: 1,
                type_guid: VMFS,
                first: 256,
                last: 16000,
                name: "datastore1",
            }],
        ),
        512,
    ));
    assert_eq!(v.sector_size, 4096);
    assert_eq!(codes(&v), Vec::<&str>::new());
    let e = &v.primary.as_ref().unwrap().entries[0];
    assert_eq!((e.first_lba, e.name.as_str()), (256, "datastore1"));
}

#[test]
fn malformed_headers_give_clear_errors() {
    let good = disk(SECTORS, 512, &esxi5_parts());
    let set = |d: &mut Vec<u8>, at: usize, v: u32| {
        d[512 + at..512 + at + 4].copy_from_slice(&v.to_le_bytes())
    };
    let mut d = good.clone();
    set(&mut d, 12, 600);
    let e = view(d).primary.unwrap_err();
    assert_eq!(
        (e.offset, e.field, e.expected.as_deref(), e.found.as_deref()),
        (
            512 + 12,
            Some("header size (0x0C)"),
            Some("92 to 512 (the sector size)"),
            Some("600")
        )
    );
    assert!(
        e.to_string()
            .starts_with("byte 524: header size (0x0C): expected 92 to 512"),
        "{e}"
    );
    let mut d = good.clone();
    set(&mut d, 12, 91);
    assert_eq!(view(d).primary.unwrap_err().found.as_deref(), Some("91"));
    let mut d = good.clone();
    d[512..520].copy_from_slice(b"EFI\0PAR\"");
    let e = view(d).primary.unwrap_err();
    assert!(e.message.contains(r#"found "EFI\x00PAR\x22""#), "{e}");
    let mut d = good.clone();
    set(&mut d, 80, u32::MAX);
    assert!(view(d)
        .primary
        .unwrap_err()
        .message
        .contains("4294967295 entries"));
    let mut d = good.clone();
    set(&mut d, 84, 100);
    assert!(view(d)
        .primary
        .unwrap_err()
        .message
        .contains("multiple of 128"));
    let mut d = good.clone();
    d[512 + 72..512 + 80].copy_from_slice(&(SECTORS * 2).to_le_bytes());
    let v = view(d);
    assert!(v
        .primary
        .as_ref()
        .unwrap()
        .array_error
        .as_ref()
        .unwrap()
        .contains("beyond the end"));
    let truncated = good[..4096].to_vec();
    let v = view(truncated);
    assert!(v.primary.is_ok() && v.backup.is_err());
    let v = view(vec![]);
    assert!(v.primary.is_err() && v.backup.is_err());
    assert_eq!(codes(&v), ["no-gpt"]);
}

fn sgdisk(args: &[&str], img: &std::path::Path) -> String {
    let out = std::process::Command::new("sgdisk")
        .args(args)
        .arg(img)
        .output()
        .expect("sgdisk is needed (apt-get install gdisk)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// sgdisk, the independent reference: it reads our test disks as valid,
/// sees no problem in the compacted copy (that is the incident), and the
/// partitions it writes are read back slot for slot.
#[test]
fn sgdisk_agrees() {
    let dir = std::env::temp_dir().join(format!("gpt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("esxi.img");
    std::fs::write(&img, disk(SECTORS, 512, &esxi5_parts())).unwrap();
    assert!(
        sgdisk(&["-v"], &img).contains("No problems found"),
        "{}",
        sgdisk(&["-v"], &img)
    );
    std::fs::write(&img, disk(SECTORS * 3 / 2, 512, &compact(esxi5_parts()))).unwrap();
    assert!(sgdisk(&["-v"], &img).contains("No problems found"));
    // sgdisk writes an ESXi layout; we read its slots and LBAs.
    let img2 = dir.join("sg.img");
    std::fs::File::create(&img2)
        .unwrap()
        .set_len(SECTORS * 512)
        .unwrap();
    let mut args: Vec<String> = vec!["-a".into(), "1".into()];
    for p in esxi5_parts() {
        let code = match p.type_guid {
            EFI => "EF00",
            VMFS => "FB00",
            VMKDIAG => "FC00",
            _ => "0700",
        };
        args.push(format!("-n{}:{}:{}", p.slot, p.first, p.last));
        args.push(format!("-t{}:{code}", p.slot));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    sgdisk(&a, &img2);
    let dev = blockdev::Device::open(&img2).unwrap();
    let v = read(&dev);
    assert_eq!(codes(&v), Vec::<&str>::new(), "{:?}", verify(&v));
    let got: Vec<(u32, u64, u64, TypeClass)> = v
        .primary
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|e| (e.slot, e.first_lba, e.last_lba, e.class()))
        .collect();
    let want: Vec<(u32, u64, u64, TypeClass)> = esxi5_parts()
        .iter()
        .map(|p| {
            (
                p.slot,
                p.first,
                p.last,
                guid::type_info(&Guid::parse(p.type_guid).unwrap())
                    .unwrap()
                    .1,
            )
        })
        .collect();
    let mut want = want;
    want.sort_by_key(|w| w.0);
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn corrupted_tables_never_panic(edits in proptest::collection::vec((0usize..(40 * 512), proptest::num::u8::ANY), 1..20), cut in 0usize..(SECTORS as usize * 512)) {
        let mut d = disk(SECTORS / 16, 512, &esxi5_parts().into_iter().filter(|p| p.last < 8000).collect::<Vec<_>>());
        let n = d.len();
        for (at, v) in edits {
            d[at % n] = v;
            let back = n - 1 - (at % (40 * 512)).min(n - 1);
            d[back] = v;
        }
        d.truncate(cut % (n + 1));
        let v = view(d);
        let _ = verify(&v);
        let _ = cli::render_show(&v);
        let _ = summarize(&MemDevice::new(vec![0u8; 4096], 512));
    }
}

/// Rewrites a header field of the primary (`backup` false) or backup copy
/// and fixes the header CRC, so only the field's meaning is wrong.
fn set_field(d: &mut [u8], backup: bool, at: usize, bytes: &[u8]) {
    let base = if backup { d.len() - 512 } else { 512 };
    let h = &mut d[base..base + 512];
    h[at..at + bytes.len()].copy_from_slice(bytes);
    h[16..20].fill(0);
    let c = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
}

fn all_codes(v: &GptView) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = verify(v).into_iter().map(|f| f.code).collect();
    c.sort();
    c
}

#[test]
fn lbas_out_of_range_are_explained() {
    let good = disk(SECTORS, 512, &esxi5_parts());
    // First usable after last usable (both copies, so they still agree).
    let mut d = good.clone();
    set_field(&mut d, false, 40, &200_000u64.to_le_bytes());
    set_field(&mut d, true, 40, &200_000u64.to_le_bytes());
    let c = all_codes(&view(d));
    assert!(c.contains(&"usable-range"), "{c:?}");
    // Primary array moved into the usable area (LBA 100); first usable kept.
    let mut d = good.clone();
    let arr = d[1024..1024 + 16384].to_vec();
    d[100 * 512..100 * 512 + 16384].copy_from_slice(&arr);
    set_field(&mut d, false, 72, &100u64.to_le_bytes());
    let v = view(d);
    let f = verify(&v);
    assert_eq!(codes(&v), ["array-overlaps-usable"], "{f:?}");
    assert!(f[0].message.contains("LBA 100-131"), "{}", f[0].message);
    // Array LBA 1: covers its own header.
    let mut d = good.clone();
    set_field(&mut d, false, 72, &1u64.to_le_bytes());
    let c = all_codes(&view(d));
    assert!(c.contains(&"array-location"), "{c:?}");
    // Backup's backup LBA not 1: info only.
    let mut d = good.clone();
    set_field(&mut d, true, 32, &7u64.to_le_bytes());
    let v = view(d);
    assert_eq!(codes(&v), Vec::<&str>::new());
    assert!(all_codes(&v).contains(&"backup-alternate"));
    // A partition past the end of a shrunk disk (image cut to 48 MiB, the
    // stale backup gone): explained as beyond the end of the disk.
    let mut d = good.clone();
    d.truncate(48 << 20);
    let v = view(d);
    let f = verify(&v);
    assert!(
        f.iter().any(|f| f.code == "out-of-range"
            && f.message.contains("partition 3")
            && f.message.contains("beyond the end of the disk")),
        "{f:?}"
    );
    assert!(f.iter().any(|f| f.code == "last-usable-beyond-disk"));
    // Overlap names both ranges.
    let mut parts = esxi5_parts();
    parts[1].first = 8000;
    let v = view(disk(SECTORS, 512, &parts));
    let f = verify(&v);
    let o = f
        .iter()
        .find(|f| f.code == "overlap")
        .expect("overlap found");
    assert!(
        o.message
            .contains("partitions 1 (LBA 64-8191) and 2 (LBA 8000-57343)"),
        "{}",
        o.message
    );
}

/// Records every byte range read.
struct Recorder {
    inner: MemDevice,
    reads: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl blockdev::BlockDevice for Recorder {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.reads
            .lock()
            .unwrap()
            .push((offset, offset + buf.len() as u64));
        self.inner.read_at(buf, offset)
    }
    fn name(&self) -> &str {
        "recorder"
    }
}

fn summary_reads(d: Vec<u8>) -> (GptSummary, Vec<(u64, u64)>) {
    let r = Recorder {
        inner: MemDevice::new(d, 512),
        reads: Default::default(),
    };
    let s = summarize_checked(&r).unwrap();
    let reads = r.reads.into_inner().unwrap();
    (s, reads)
}

#[test]
fn summary_reads_only_the_ends_and_the_named_backup() {
    const MIB: u64 = 1 << 20;
    let size = SECTORS * 512;
    let within = |reads: &[(u64, u64)], extra: Option<(u64, u64)>| {
        reads.iter().all(|&(a, b)| {
            b <= MIB || a >= size * 3 / 2 - MIB || extra.is_some_and(|(x, y)| x <= a && b <= y)
        })
    };
    // Grown disk, backup stranded at the old end: read there too.
    let mut d = disk(SECTORS, 512, &esxi5_parts());
    d.resize(size as usize * 3 / 2, 0);
    let (s, reads) = summary_reads(d.clone());
    assert_eq!(
        (s.primary_state, s.backup_state, s.worst),
        (CopyState::Ok, CopyState::Ok, Some("backup-not-at-end"))
    );
    assert!(within(&reads, Some((size - MIB, size))), "{reads:?}");
    assert!(reads.iter().any(|&(a, _)| a == size - 512));
    // A damaged primary naming the array mid-disk: that is not read.
    let mut d2 = d.clone();
    d2[512 + 72..512 + 80].copy_from_slice(&(SECTORS / 2).to_le_bytes());
    let (s, reads) = summary_reads(d2);
    assert_eq!(s.primary_state, CopyState::ArrayUnreadable);
    let mid = SECTORS / 2 * 512;
    assert!(
        reads.iter().all(|&(a, b)| b <= mid || a >= mid + 16384),
        "{reads:?}"
    );
    assert!(within(&reads, Some((size - MIB, size))), "{reads:?}");
    // Grown and the primary header destroyed: the backup at the old end is
    // found through the protective MBR's size.
    let mut d3 = d.clone();
    d3[512..1024].fill(0);
    let (s, reads) = summary_reads(d3);
    assert_eq!(
        (s.primary_state, s.backup_state, s.entries.len()),
        (CopyState::Missing, CopyState::Ok, 7)
    );
    assert!(within(&reads, Some((size - MIB, size))), "{reads:?}");
    // Healthy disk: ends only; everything fine.
    let (s, reads) = summary_reads(disk(SECTORS, 512, &esxi5_parts()));
    assert_eq!((s.problems, s.backup_state), (0, CopyState::Ok));
    assert!(reads.iter().all(|&(a, b)| b <= MIB || a >= size - MIB));
}

#[test]
fn attributes_in_words() {
    use crate::cli::attr_text;
    assert_eq!(attr_text(0, TypeClass::Other), "");
    assert_eq!(
        attr_text(0x4, TypeClass::EfiSystem),
        "0x4 (legacy-bios-bootable)"
    );
    assert_eq!(
        attr_text(0xC000_0000_0000_0001, TypeClass::BasicData),
        "0xc000000000000001 (required, hidden, no-drive-letter)"
    );
    assert_eq!(
        attr_text(0x8000_0000_0000_0100, TypeClass::Other),
        "0x8000000000000100 (type-specific bits 48-63 = 0x8000, reserved bits 0x100)"
    );
}

/// Writes `bytes` to a fresh file under the temp dir for the CLI's report.
fn temp_image(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("gpt-test-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `gpt verify` on 1 MiB of random bytes: no GPT is a finding (exit 1 and
/// outcome `no-gpt`), never "Findings: none" with exit 0 as for a clean GPT.
#[test]
fn verify_without_gpt_exits_1_and_says_no_gpt() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let blank = vec![0u8; 1 << 20];
    for (name, bytes) in [("random", &random), ("blank", &blank)] {
        let p = temp_image(name, bytes);
        let target = p.to_str().unwrap();
        let (text, code) = cli::report(target, false, false).unwrap();
        assert_eq!(code, 1, "{name}: {text}");
        assert!(text.starts_with("Findings: 1\n"), "{name}: {text}");
        assert!(
            text.contains("WARN  [no-gpt] no GPT on this disk"),
            "{name}: {text}"
        );
        let (json, code) = cli::report(target, true, false).unwrap();
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["outcome"], "no-gpt", "{json}");
        assert_eq!(v["findings"][0]["severity"], "warning", "{json}");
        let _ = std::fs::remove_file(&p);
    }
    // A GPT that was found and is clean keeps exit 0.
    let p = temp_image("clean", &disk(SECTORS, 512, &esxi5_parts()));
    let (json, code) = cli::report(p.to_str().unwrap(), true, false).unwrap();
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["outcome"], "clean", "{json}");
    let (text, _) = cli::report(p.to_str().unwrap(), false, false).unwrap();
    assert!(text.starts_with("Findings: none\n"), "{text}");
    // An MBR-only disk: the finding says what sector 0 holds instead.
    let mut mbr = vec![0u8; 1 << 20];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8] = 0x08;
    mbr[446 + 12] = 0x00;
    mbr[446 + 13] = 0x08;
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    std::fs::write(&p, &mbr).unwrap();
    let (text, code) = cli::report(p.to_str().unwrap(), false, false).unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("MBR partition table"), "{text}");
    let _ = std::fs::remove_file(&p);
    // A missing file is an I/O error (exit 2 in the CLI).
    assert!(cli::report("/nonexistent/gpt-test", false, false).is_err());
}
