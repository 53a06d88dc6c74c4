//! Damaged PVs: a bad label, header or text is an error naming the offset
//! and field, never a panic; random damage anywhere in the label and
//! metadata area never panics the reader or the scan.

use crate::label::{lvm_crc, read_pv, MdaRead, INITIAL_CRC};
use crate::scan::build;
use crate::system::read_device;
use blockdev::MemDevice;
use proptest::prelude::*;
use std::sync::OnceLock;

/// The first 2 MiB of an lvm2-written PV (label, 1 MiB metadata area and
/// the first extents) with a VG of one linear and one striped LV, made once.
fn pristine() -> &'static (Vec<u8>, u64, u64) {
    static PV: OnceLock<(Vec<u8>, u64, u64)> = OnceLock::new();
    PV.get_or_init(|| {
        let (t, vg) = super::lvm2::two_pv_vg("lvm-corrupt");
        t.lvm(&["lvcreate", "-an", "-Zn", "-L", "8m", "-n", "lin", &vg]);
        t.lvm(&[
            "lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "8m", "-n", "str", &vg,
        ]);
        let mut img = t.read(0);
        img.truncate(2 << 20);
        let pv = read_pv(&MemDevice::new(img.clone(), 512)).unwrap().unwrap();
        let mda = pv.header.metadata_areas[0].offset;
        let Ok(MdaRead::Text(m)) = &pv.metadata[0] else {
            panic!("{:?}", pv.metadata[0]);
        };
        (img, mda, mda + m.offset)
    })
}

fn errors_of(img: Vec<u8>) -> String {
    match read_pv(&MemDevice::new(img, 512)) {
        Err(e) => e,
        Ok(None) => "no label".into(),
        Ok(Some(pv)) => pv
            .metadata
            .iter()
            .map(|m| match m {
                Err(e) => e.clone(),
                Ok(MdaRead::Text(t)) => match crate::vg::parse_vg(&t.text) {
                    Err(e) => e,
                    Ok(_) => "ok".into(),
                },
                Ok(MdaRead::Empty) => "empty".into(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[test]
fn the_pristine_pv_reads() {
    let (img, _, _) = pristine();
    assert_eq!(errors_of(img.clone()), "ok");
}

#[test]
fn a_bad_label_crc_names_the_field() {
    let mut img = pristine().0.clone();
    img[512 + 40] ^= 1; // in the PV UUID, covered by the label's CRC
    let e = errors_of(img);
    assert!(e.contains("label at byte 512: field crc_xl (+16)"), "{e}");
}

#[test]
fn a_label_in_the_wrong_sector_or_of_the_wrong_type_is_refused() {
    let mut img = pristine().0.clone();
    img[512 + 8] = 3;
    assert!(errors_of(img).contains("field sector_xl (+8) is 3, expected 1"));
    let mut img = pristine().0.clone();
    img[512 + 24..512 + 32].copy_from_slice(b"LVM1 001");
    assert!(errors_of(img).contains("field type (+24)"));
    let mut img = pristine().0.clone();
    img[512..520].copy_from_slice(b"NOTLABEL");
    assert_eq!(errors_of(img), "no label");
}

#[test]
fn a_bad_metadata_area_header_names_the_field() {
    let (img0, mda, _) = pristine();
    let mda = *mda as usize;
    let mut img = img0.clone();
    img[mda + 5] = b'X';
    let e = errors_of(img);
    assert!(
        e.contains(&format!(
            "metadata area header at byte {mda}: field magic (+4)"
        )),
        "{e}"
    );
    let mut img = img0.clone();
    img[mda + 44] ^= 0x80; // raw_locn 0's offset
    let e = errors_of(img);
    assert!(e.contains("field checksum_xl (+0)"), "{e}");
}

#[test]
fn a_bad_text_checksum_and_a_truncated_text_are_errors() {
    let (img0, mda, text) = pristine();
    let (mda, text) = (*mda as usize, *text as usize);
    let mut img = img0.clone();
    img[text + 10] ^= 0x20;
    let e = errors_of(img);
    assert!(e.contains(&format!("metadata text at byte {text}")), "{e}");
    assert!(e.contains("checksum in raw_locn 0"), "{e}");

    // A text cut short whose checksum matches: the parser says where the
    // text ended and what it expected.
    let mut img = img0.clone();
    let size = u64::from_le_bytes(img[mda + 48..mda + 56].try_into().unwrap()) as usize;
    let cut = size / 2;
    img[text + cut - 1] = 0;
    img[mda + 48..mda + 56].copy_from_slice(&(cut as u64).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &img[text..text + cut]);
    img[mda + 56..mda + 60].copy_from_slice(&crc.to_le_bytes());
    let hcrc = lvm_crc(INITIAL_CRC, &img[mda + 4..mda + 512]);
    img[mda..mda + 4].copy_from_slice(&hcrc.to_le_bytes());
    let e = errors_of(img);
    assert!(e.starts_with("metadata text line "), "{e}");
    assert!(e.contains("found the end of the text"), "{e}");

    // A raw_locn pointing outside the area.
    let mut img = img0.clone();
    img[mda + 40..mda + 48].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let hcrc = lvm_crc(INITIAL_CRC, &img[mda + 4..mda + 512]);
    img[mda..mda + 4].copy_from_slice(&hcrc.to_le_bytes());
    let e = errors_of(img);
    assert!(e.contains("raw_locn 0 (+40) offset is"), "{e}");
}

#[test]
fn a_pv_cut_off_before_its_metadata_area_is_an_error() {
    let mut img = pristine().0.clone();
    img.truncate(8192);
    let e = errors_of(img);
    assert!(
        e.contains("past the end of the device") || e.contains("short read"),
        "{e}"
    );
}

/// Byte positions worth damaging: the label sector, the metadata area
/// header, and the text.
fn position() -> impl Strategy<Value = usize> {
    let (_, mda, text) = pristine();
    let (mda, text) = (*mda as usize, *text as usize);
    prop_oneof![512usize..1024, mda..mda + 512, text..text + 4096]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_damage_never_panics(
        flips in prop::collection::vec((position(), any::<u8>()), 1..12),
        fix_crcs in any::<bool>(),
    ) {
        let (img0, mda, text) = pristine();
        let (mda, text) = (*mda as usize, *text as usize);
        let mut img = img0.clone();
        for (pos, v) in flips {
            img[pos] = v;
        }
        if fix_crcs {
            // Past the checksums, into the parsers behind them.
            let c = lvm_crc(INITIAL_CRC, &img[512 + 20..1024]);
            img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
            let size = u64::from_le_bytes(img[mda + 48..mda + 56].try_into().unwrap());
            if let Some(end) = text.checked_add(size as usize).filter(|&e| e <= img.len()) {
                let c = lvm_crc(INITIAL_CRC, &img[text..end]);
                img[mda + 56..mda + 60].copy_from_slice(&c.to_le_bytes());
            }
            let c = lvm_crc(INITIAL_CRC, &img[mda + 4..mda + 512]);
            img[mda..mda + 4].copy_from_slice(&c.to_le_bytes());
        }
        let dev = MemDevice::new(img, 512);
        let seen: Vec<_> = read_device("damaged", &dev, Some("7:0".into()))
            .ok()
            .flatten()
            .into_iter()
            .collect();
        let r = build(&seen, Vec::new(), true);
        let _ = crate::cli::render(&r, true);
    }

    #[test]
    fn random_metadata_text_never_panics(text in "[a-z0-9_{}\\[\\]=,\"# \n-]{0,400}") {
        let _ = crate::vg::parse_vg(&text);
    }
}
