//! The two ioctls that ask a disk about itself without touching its data:
//! SG_IO (SCSI generic, carrying ATA PASS-THROUGH) and NVMe admin commands.

use std::fs::File;
use std::io;

/// `SG_IO` from <scsi/sg.h> (not in linux-raw-sys).
const SG_IO: u32 = 0x2285;
const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_FROM_DEV: i32 = -3;

/// `struct sg_io_hdr` (<scsi/sg.h>), x86_64 layout.
#[repr(C)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut u8,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut u8,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

/// What came back from one SG_IO command.
pub struct SgResult {
    pub sense: Vec<u8>,
    pub scsi_status: u8,
    pub host_status: u16,
    pub driver_status: u16,
}

impl SgResult {
    /// CHECK CONDITION with only the ATA registers we asked for (ck_cond) is
    /// not an error; anything else non-zero is.
    pub fn failed(&self) -> bool {
        let sense_key = match self.sense.first().map(|b| b & 0x7F) {
            Some(0x72) | Some(0x73) => self.sense.get(1).map(|b| b & 0x0F),
            Some(0x70) | Some(0x71) => self.sense.get(2).map(|b| b & 0x0F),
            _ => None,
        };
        let only_ata_registers = sense_key.is_none_or(|k| k == 0 || k == 1);
        self.host_status != 0
            || (self.driver_status & 0x0F) != 0 && !only_ata_registers
            || (self.scsi_status != 0 && !only_ata_registers)
    }
}

/// Sends a CDB; `data` receives the data-in phase (None: no data).
pub fn sg_io(
    dev: &File,
    cdb: &[u8],
    data: Option<&mut [u8]>,
    timeout_ms: u32,
) -> io::Result<SgResult> {
    let mut sense = vec![0u8; 64];
    let (dir, ptr, len) = match data {
        Some(d) => (SG_DXFER_FROM_DEV, d.as_mut_ptr(), d.len() as u32),
        None => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
    };
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: dir,
        cmd_len: cdb.len() as u8,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: ptr,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: hdr points at live buffers (cdb, sense, data) of the stated
    // lengths for the duration of the call; SG_IO reads and writes only those.
    unsafe { rustix::ioctl::ioctl(dev, rustix::ioctl::Updater::<SG_IO, SgIoHdr>::new(&mut hdr)) }?;
    sense.truncate(hdr.sb_len_wr as usize);
    Ok(SgResult {
        sense,
        scsi_status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
    })
}

/// `struct nvme_passthru_cmd` (<linux/nvme_ioctl.h>), 72 bytes.
#[repr(C)]
#[derive(Default)]
struct NvmePassthru {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// Get Log Page for the whole controller (NSID FFFFFFFFh) into `buf`
/// (a multiple of 4 bytes).
pub fn nvme_get_log_page(dev: &File, log_id: u8, buf: &mut [u8]) -> io::Result<()> {
    let dwords = (buf.len() / 4) as u32;
    let mut cmd = NvmePassthru {
        opcode: crate::nvme::ADMIN_GET_LOG_PAGE,
        nsid: 0xFFFF_FFFF,
        addr: buf.as_mut_ptr() as u64,
        data_len: buf.len() as u32,
        // CDW10: number of dwords minus one (lower 16 bits) in 31:16, log id in 7:0.
        cdw10: ((dwords - 1) << 16) | u32::from(log_id),
        timeout_ms: 10_000,
        ..Default::default()
    };
    // SAFETY: cmd.addr points at buf, valid for data_len bytes during the call.
    let status = unsafe { rustix::ioctl::ioctl(dev, AdminCommand(&mut cmd)) }?;
    if status != 0 {
        // A positive return is the NVMe completion status (SCT/SC).
        return Err(io::Error::other(format!(
            "the controller answered NVMe status {status:#x}"
        )));
    }
    Ok(())
}

/// NVME_IOCTL_ADMIN_CMD, returning the ioctl's value: the NVMe status.
struct AdminCommand<'a>(&'a mut NvmePassthru);

// SAFETY: the opcode is NVME_IOCTL_ADMIN_CMD and the pointer is to a live
// nvme_passthru_cmd, which the kernel reads and updates (result field).
unsafe impl rustix::ioctl::Ioctl for AdminCommand<'_> {
    type Output = i32;
    const IS_MUTATING: bool = true;
    fn opcode(&self) -> rustix::ioctl::Opcode {
        linux_raw_sys::ioctl::NVME_IOCTL_ADMIN_CMD as rustix::ioctl::Opcode
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        (self.0 as *mut NvmePassthru).cast()
    }
    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<super::SgIoHdr>(), 88);
        assert_eq!(std::mem::size_of::<super::NvmePassthru>(), 72);
    }
}
