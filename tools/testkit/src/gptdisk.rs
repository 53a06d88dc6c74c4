//! A test-only GPT writer: disks with chosen slots, both copies and CRCs
//! right (and a protective MBR), to be damaged on purpose by the tests.
//! Every offset is the production crate's named one (`gpt::layout`).

use gpt::layout::{entry, header as h, mbr};
use gpt::Guid;
use le::{put_u32, put_u64};

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
    let mut a = vec![0u8; count as usize * entry::SIZE];
    for p in parts {
        let e = &mut a[(p.slot as usize - 1) * entry::SIZE..p.slot as usize * entry::SIZE];
        e[entry::TYPE_GUID..entry::TYPE_GUID + 16]
            .copy_from_slice(&Guid::parse(p.type_guid).unwrap().0);
        e[entry::UNIQUE_GUID..entry::UNIQUE_GUID + 16].copy_from_slice(&[p.slot as u8; 16]);
        put_u64(e, entry::FIRST_LBA, p.first);
        put_u64(e, entry::LAST_LBA, p.last);
        for (i, u) in p.name.encode_utf16().enumerate() {
            e[entry::NAME + 2 * i..entry::NAME + 2 * i + 2].copy_from_slice(&u.to_le_bytes());
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
    let mut b = vec![0u8; ss as usize];
    b[h::SIGNATURE..h::SIGNATURE + 8].copy_from_slice(gpt::SIGNATURE);
    put_u32(&mut b, h::REVISION, h::REVISION_1_0);
    put_u32(&mut b, h::HEADER_SIZE, h::MIN_SIZE as u32);
    put_u64(&mut b, h::MY_LBA, my);
    put_u64(&mut b, h::ALTERNATE_LBA, alt);
    put_u64(&mut b, h::FIRST_USABLE_LBA, first_usable);
    put_u64(&mut b, h::LAST_USABLE_LBA, last_usable);
    b[h::DISK_GUID..h::DISK_GUID + 16].copy_from_slice(&[0x42; 16]);
    put_u64(&mut b, h::ENTRIES_LBA, entries_lba);
    put_u32(&mut b, h::ENTRY_COUNT, (array.len() / entry::SIZE) as u32);
    put_u32(&mut b, h::ENTRY_SIZE, entry::SIZE as u32);
    put_u32(&mut b, h::ENTRIES_CRC, crc32fast::hash(array));
    let crc = crc32fast::hash(&b[..h::MIN_SIZE]);
    put_u32(&mut b, h::HEADER_CRC, crc);
    b
}

/// A whole disk image of `sectors` sectors of `ss` bytes with both tables.
pub fn disk(sectors: u64, ss: u32, parts: &[Part]) -> Vec<u8> {
    let s = ss as usize;
    let mut d = vec![0u8; sectors as usize * s];
    // Protective MBR: one 0xEE entry from LBA 1 over the disk.
    d[mbr::ENTRIES + mbr::ENTRY_TYPE] = mbr::PROTECTIVE_TYPE;
    put_u32(&mut d, mbr::ENTRIES + mbr::ENTRY_FIRST_LBA, 1);
    let covered = (sectors - 1).min(u32::MAX as u64) as u32;
    put_u32(&mut d, mbr::ENTRIES + mbr::ENTRY_SECTORS, covered);
    d[mbr::BOOT_SIGNATURE..mbr::BOOT_SIGNATURE + 2].copy_from_slice(&[0x55, 0xAA]);
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
