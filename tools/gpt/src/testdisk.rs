//! A test-only GPT writer: disks with chosen slots, both copies and CRCs
//! right, to be damaged on purpose by the tests.

use crate::guid::Guid;

pub struct Part {
    pub slot: u32,
    pub type_guid: &'static str,
    pub first: u64,
    pub last: u64,
    pub name: &'static str,
}

pub const EFI: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const BASIC: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
pub const VMFS: &str = "AA31E02A-400F-11DB-9590-000C2911D1B8";
pub const VMKDIAG: &str = "9D275380-40AD-11DB-BF97-000C2911D1B8";

/// ESXi 5.x-style layout on a small disk (LBAs of 512-byte sectors): slot
/// order 1,2,3,5,6,7,8, disk order 1,5,6,7,8,2,3, slot 4 empty.
pub fn esxi5_parts() -> Vec<Part> {
    vec![
        Part {
            slot: 1,
            type_guid: EFI,
            first: 64,
            last: 8191,
            name: "",
        },
        Part {
            slot: 2,
            type_guid: BASIC,
            first: 40960,
            last: 57343,
            name: "",
        },
        Part {
            slot: 3,
            type_guid: VMFS,
            first: 57344,
            last: 131000,
            name: "",
        },
        Part {
            slot: 5,
            type_guid: BASIC,
            first: 8224,
            last: 16383,
            name: "",
        },
        Part {
            slot: 6,
            type_guid: BASIC,
            first: 16416,
            last: 24575,
            name: "",
        },
        Part {
            slot: 7,
            type_guid: VMKDIAG,
            first: 24608,
            last: 32767,
            name: "",
        },
        Part {
            slot: 8,
            type_guid: BASIC,
            first: 32800,
            last: 40959,
            name: "",
        },
    ]
}

/// The same entries renumbered 1..N in slot order, as the copy tool of
/// incident 003 left them.
pub fn compact(parts: Vec<Part>) -> Vec<Part> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| Part {
            slot: i as u32 + 1,
            ..p
        })
        .collect()
}

pub fn entry_array(parts: &[Part], count: u32) -> Vec<u8> {
    let mut a = vec![0u8; count as usize * 128];
    for p in parts {
        let e = &mut a[(p.slot as usize - 1) * 128..p.slot as usize * 128];
        e[0..16].copy_from_slice(&Guid::parse(p.type_guid).unwrap().0);
        e[16..32].copy_from_slice(&[p.slot as u8; 16]);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        for (i, u) in p.name.encode_utf16().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    a
}

pub fn header(
    my: u64,
    alt: u64,
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    array: &[u8],
    ss: u32,
) -> Vec<u8> {
    let mut h = vec![0u8; ss as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alt.to_le_bytes());
    h[40..48].copy_from_slice(&first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&[0x42; 16]);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&((array.len() / 128) as u32).to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32fast::hash(array).to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A whole disk image of `sectors` sectors of `ss` bytes with both tables.
pub fn disk(sectors: u64, ss: u32, parts: &[Part]) -> Vec<u8> {
    let s = ss as usize;
    let mut d = vec![0u8; sectors as usize * s];
    // Protective MBR: one 0xEE entry from LBA 1 over the disk.
    d[446 + 4] = 0xEE;
    d[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    d[446 + 12..446 + 16]
        .copy_from_slice(&((sectors - 1).min(u32::MAX as u64) as u32).to_le_bytes());
    d[510] = 0x55;
    d[511] = 0xAA;
    let array = entry_array(parts, 128);
    let array_sectors = (array.len() / s) as u64;
    let last = sectors - 1;
    let first_usable = 2 + array_sectors;
    let last_usable = last - array_sectors - 1;
    d[s..2 * s].copy_from_slice(&header(1, last, first_usable, last_usable, 2, &array, ss));
    d[2 * s..2 * s + array.len()].copy_from_slice(&array);
    let backup_array = last - array_sectors;
    d[backup_array as usize * s..backup_array as usize * s + array.len()].copy_from_slice(&array);
    d[last as usize * s..].copy_from_slice(&header(
        last,
        1,
        first_usable,
        last_usable,
        backup_array,
        &array,
        ss,
    ));
    d
}
