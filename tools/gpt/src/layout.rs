//! Where the GPT's fields are on disk (UEFI 2.10 section 5.3.2 header,
//! 5.3.3 entries; the MBR of section 5.2.3): one place for the parser, the
//! repair planner and the test disk writer.

/// GPT header, byte offsets in its sector.
pub mod header {
    /// "EFI PART", 8 bytes.
    pub const SIGNATURE: usize = 0x00;
    pub const REVISION: usize = 0x08;
    pub const HEADER_SIZE: usize = 0x0C;
    /// CRC32 over `HEADER_SIZE` bytes with this field zeroed.
    pub const HEADER_CRC: usize = 0x10;
    pub const MY_LBA: usize = 0x18;
    pub const ALTERNATE_LBA: usize = 0x20;
    pub const FIRST_USABLE_LBA: usize = 0x28;
    pub const LAST_USABLE_LBA: usize = 0x30;
    /// 16 bytes.
    pub const DISK_GUID: usize = 0x38;
    pub const ENTRIES_LBA: usize = 0x48;
    pub const ENTRY_COUNT: usize = 0x50;
    pub const ENTRY_SIZE: usize = 0x54;
    /// CRC32 over `ENTRY_COUNT * ENTRY_SIZE` bytes of the array.
    pub const ENTRIES_CRC: usize = 0x58;
    /// The smallest valid header size (the fields above).
    pub const MIN_SIZE: usize = 92;
    /// The revision every writer uses: 1.0.
    pub const REVISION_1_0: u32 = 0x0001_0000;
}

/// One entry of the partition entry array, byte offsets in the entry.
pub mod entry {
    /// 16 bytes; all zero for an empty slot.
    pub const TYPE_GUID: usize = 0;
    /// 16 bytes.
    pub const UNIQUE_GUID: usize = 16;
    pub const FIRST_LBA: usize = 32;
    /// Inclusive.
    pub const LAST_LBA: usize = 40;
    pub const ATTRIBUTES: usize = 48;
    /// UTF-16LE, `NAME_UNITS` code units, NUL-padded.
    pub const NAME: usize = 56;
    pub const NAME_UNITS: usize = 36;
    /// The entry size every writer uses (the header may say 128 * 2^n).
    pub const SIZE: usize = 128;
}

/// The MBR in sector 0, byte offsets.
pub mod mbr {
    pub const DISK_SIGNATURE: usize = 440;
    /// Four 16-byte entries.
    pub const ENTRIES: usize = 446;
    pub const ENTRY_SIZE: usize = 16;
    /// In an entry: 0x80 for bootable.
    pub const ENTRY_BOOT_FLAG: usize = 0;
    pub const ENTRY_TYPE: usize = 4;
    pub const ENTRY_FIRST_LBA: usize = 8;
    pub const ENTRY_SECTORS: usize = 12;
    /// 0x55 0xAA.
    pub const BOOT_SIGNATURE: usize = 510;
    /// The partition type of the protective entry.
    pub const PROTECTIVE_TYPE: u8 = 0xEE;
}
