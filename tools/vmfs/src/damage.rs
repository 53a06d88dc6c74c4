//! Bad areas: ddrescue mapfiles, a device wrapper that fails reads in them,
//! and range arithmetic for reporting which file bytes are lost.

// The range arithmetic and the failing device live in the block layer,
// where vmdk's export (and other readers of damaged sources) use them too.
pub use blockdev::{BadAreaDevice, Ranges};

/// The bad areas of the ddrescue mapfile at `path` ([`ddmap::unrescued`]);
/// errors name the file.
pub fn read_mapfile(path: &str) -> Result<Ranges, String> {
    ddmap::read_unrescued(std::path::Path::new(path)).map(Ranges::from_unsorted)
}

/// The bad areas of a GNU ddrescue mapfile's text ([`ddmap::unrescued`]).
pub fn parse_mapfile(text: &str) -> Result<Ranges, String> {
    ddmap::unrescued(text).map(Ranges::from_unsorted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::BlockDevice;
    use std::sync::Arc;

    #[test]
    fn mapfile_bad_areas() {
        let m = "# Mapfile. Created by GNU ddrescue\n# current_pos  current_status  current_pass\n0x00120000     +               1\n#      pos        size  status\n0x00000000  0x00100000  +\n0x00100000  0x00000200  -\n0x00100200  0x00000400  *\n0x00100600  0x10000000  +\n0x10100600  0x00001000  ?\n";
        let r = parse_mapfile(m).unwrap();
        assert_eq!(r.0, vec![(0x100000, 0x600), (0x10100600, 0x1000)]);
        assert_eq!(r.intersect(0x1005ff, 10), vec![(0x1005ff, 1)]);
        assert!(r.intersect(0, 0x100000).is_empty());
        assert!(parse_mapfile("garbage").is_err());
        assert!(parse_mapfile("0 +\n0 10 x\n").is_err());
    }

    #[test]
    fn bad_area_device_fails_reads_there_only() {
        let m = blockdev::MemDevice::new(vec![7u8; 8192], 512);
        let d = BadAreaDevice::new(Arc::new(m), Ranges(vec![(4096, 512)]));
        let mut b = [0u8; 512];
        assert!(d.read_exact_at(&mut b, 0).is_ok());
        assert!(d.read_exact_at(&mut b, 4000).is_err());
        assert!(d.read_exact_at(&mut b, 4608).is_ok());
    }
}
