//! Property tests of the on-disk parsers on arbitrary bytes: errors, never
//! panics.

use crate::fs::Superblock;
use crate::inode::{FdLayout, Inode, RdmTarget};
use crate::lvm::{LvmHeader, LVM_MAGIC};
use proptest::prelude::*;

fn layouts() -> [FdLayout; 2] {
    let mut sb = vec![0u8; 0x200];
    sb[0..4].copy_from_slice(&crate::fs::FS_MAGIC.to_le_bytes());
    sb[4..8].copy_from_slice(&14u32.to_le_bytes());
    sb[0xA1..0xA9].copy_from_slice(&(1u64 << 20).to_le_bytes());
    sb[0xD5..0xD9].copy_from_slice(&64u32.to_le_bytes());
    let v5 = Superblock::parse(&sb).unwrap();
    sb[4..8].copy_from_slice(&24u32.to_le_bytes());
    sb[0x134..0x138].copy_from_slice(&4096u32.to_le_bytes());
    sb[0x13E..0x140].copy_from_slice(&16u16.to_le_bytes());
    let v6 = Superblock::parse(&sb).unwrap();
    [FdLayout::of(&v5), FdLayout::of(&v6)]
}

proptest! {
    #[test]
    fn lvm_header_parse_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..0x9000), major in 0u32..8, mda in any::<u32>()) {
        if b.len() >= 0xD0 {
            b[0..4].copy_from_slice(&LVM_MAGIC.to_le_bytes());
            b[4..8].copy_from_slice(&major.to_le_bytes());
            b[0xCA..0xCE].copy_from_slice(&mda.to_le_bytes());
        }
        let _ = LvmHeader::parse(&b);
    }

    #[test]
    fn superblock_parse_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..0x200), major in 0u32..40) {
        if b.len() >= 8 {
            b[0..4].copy_from_slice(&crate::fs::FS_MAGIC.to_le_bytes());
            b[4..8].copy_from_slice(&major.to_le_bytes());
        }
        if let Ok(sb) = Superblock::parse(&b) {
            prop_assert!(sb.block_size.is_power_of_two());
            let l = FdLayout::of(&sb);
            prop_assert!(l.ptrs + l.nptrs * 8 <= l.fd_size);
        }
    }

    #[test]
    fn inode_and_rdm_parse_never_panic(b in proptest::collection::vec(any::<u8>(), 0..0x2100), addr in any::<u32>()) {
        for l in layouts() {
            if let Ok(i) = Inode::parse(&b, addr, &l) {
                prop_assert_eq!(i.ptrs.len(), l.nptrs);
                let _ = RdmTarget::parse(&i.data);
            }
        }
        let _ = RdmTarget::parse(&b);
    }

    #[test]
    fn mapfile_parse_never_panics(s in "[0-9a-fx+\\-*/? #\\n]{0,200}") {
        let _ = crate::damage::parse_mapfile(&s);
    }
}

#[test]
fn inode_rejects_wrong_descaddr() {
    let l = layouts()[0];
    let mut b = vec![0u8; 2048];
    b[0x200..0x204].copy_from_slice(&0x104u32.to_le_bytes());
    assert!(Inode::parse(&b, 0x104, &l).is_ok());
    let e = Inode::parse(&b, 0x400104, &l).unwrap_err().to_string();
    assert!(e.contains("descAddr"), "{e}");
}
