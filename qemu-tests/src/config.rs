//! What to boot: the disks on their controllers and the QEMU command line.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a disk is attached to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// `ich9-ahci` + `ide-hd`
    Ahci,
    Nvme,
    /// LSI MegaRAID SAS 2108 (`megasas-gen2`) + `scsi-hd`
    MegasasGen2,
    /// LSI SAS 1068 (`mptsas1068`) + `scsi-hd`; Linux 6.1 shows no disks on it
    Mptsas1068,
    /// LSI 53C895A (`lsi53c895a`) + `scsi-hd`
    Lsi53c895a,
    VirtioScsi,
    VirtioBlk,
    /// `qemu-xhci` + `usb-storage`
    Usb,
}

impl Controller {
    pub const ALL: [Controller; 8] = [
        Controller::Ahci,
        Controller::Nvme,
        Controller::MegasasGen2,
        Controller::Mptsas1068,
        Controller::Lsi53c895a,
        Controller::VirtioScsi,
        Controller::VirtioBlk,
        Controller::Usb,
    ];
}

/// One disk of a VM.
#[derive(Clone, Debug)]
pub struct Disk {
    pub path: PathBuf,
    pub controller: Controller,
    pub serial: String,
    pub model: Option<String>,
    pub logical_block_size: Option<u32>,
    /// Raw `-drive` options replacing the default `format=raw,file=PATH`
    /// (e.g. blkdebug layering).
    pub drive_override: Option<String>,
    /// Appended to the disk's `-device` options (e.g. `,smart_critical_warning=4`).
    pub device_extra: Option<String>,
}

impl Disk {
    pub fn new(path: impl Into<PathBuf>, controller: Controller, serial: &str) -> Disk {
        Disk {
            path: path.into(),
            controller,
            serial: serial.into(),
            model: None,
            logical_block_size: None,
            drive_override: None,
            device_extra: None,
        }
    }
    pub fn model(mut self, m: &str) -> Disk {
        self.model = Some(m.into());
        self
    }
    pub fn logical_block_size(mut self, n: u32) -> Disk {
        self.logical_block_size = Some(n);
        self
    }

    fn qemu_args(&self, i: usize) -> Vec<String> {
        let drive = format!("d{i}");
        let file = match &self.drive_override {
            Some(o) => format!("if=none,id={drive},{o}"),
            None => format!("if=none,id={drive},format=raw,file={}", self.path.display()),
        };
        let mut args = vec!["-drive".to_string(), file];
        let bs = self
            .logical_block_size
            .map(|n| format!(",logical_block_size={n},physical_block_size={n}"))
            .unwrap_or_default()
            + self.device_extra.as_deref().unwrap_or("");
        let serial = &self.serial;
        let scsi = |hba: &str, args: &mut Vec<String>| {
            args.push("-device".into());
            args.push(format!("{hba},id=h{i}"));
            args.push("-device".into());
            let product = self
                .model
                .as_ref()
                .map(|m| format!(",product={m}"))
                .unwrap_or_default();
            args.push(format!(
                "scsi-hd,drive={drive},bus=h{i}.0,serial={serial}{product}{bs}"
            ));
        };
        match self.controller {
            Controller::Ahci => {
                args.push("-device".into());
                args.push(format!("ich9-ahci,id=h{i}"));
                args.push("-device".into());
                let model = self
                    .model
                    .as_ref()
                    .map(|m| format!(",model={m}"))
                    .unwrap_or_default();
                args.push(format!(
                    "ide-hd,drive={drive},bus=h{i}.0,serial={serial}{model}{bs}"
                ));
            }
            Controller::Nvme => {
                args.push("-device".into());
                args.push(format!("nvme,drive={drive},serial={serial}{bs}"));
            }
            Controller::MegasasGen2 => scsi("megasas-gen2", &mut args),
            Controller::Mptsas1068 => scsi("mptsas1068", &mut args),
            Controller::Lsi53c895a => scsi("lsi53c895a", &mut args),
            Controller::VirtioScsi => scsi("virtio-scsi-pci", &mut args),
            Controller::VirtioBlk => {
                args.push("-device".into());
                args.push(format!("virtio-blk-pci,drive={drive},serial={serial}{bs}"));
            }
            Controller::Usb => {
                args.push("-device".into());
                args.push(format!("qemu-xhci,id=h{i}"));
                args.push("-device".into());
                args.push(format!(
                    "usb-storage,drive={drive},bus=h{i}.0,serial={serial}"
                ));
            }
        }
        args
    }
}

/// What to boot.
pub struct VmConfig {
    pub disks: Vec<Disk>,
    /// Kernel command line (without `rescue.script`, added by [`VmConfig::script`]).
    pub append: String,
    /// A script to run unattended, packed into a cpio appended to the initramfs.
    pub script: Option<String>,
    pub memory_mb: u32,
    pub extra_args: Vec<String>,
    /// Start a QMP monitor (see [`Vm::qmp`]).
    pub qmp: bool,
    /// Boot from this directory over the network (QEMU's TFTP server and
    /// the NIC's iPXE ROM) instead of passing the kernel directly.
    pub pxe_dir: Option<PathBuf>,
    /// Boot this USB stick image (attached with snapshot=on: the file is
    /// never written) instead of passing the kernel directly.
    pub usb_stick: Option<PathBuf>,
    /// Keep what the guest writes to the stick (default: snapshot=on).
    pub usb_stick_persistent: bool,
    /// Boot this ISO from a CD drive on the q35 AHCI controller.
    pub cdrom: Option<PathBuf>,
    /// UEFI firmware (OVMF, package ovmf) instead of SeaBIOS: `(true, _)`
    /// with Secure Boot enforced and Microsoft's keys enrolled. The
    /// variables file is copied to the given path.
    pub uefi: Option<(bool, PathBuf)>,
}

impl VmConfig {
    pub fn new(disks: Vec<Disk>) -> VmConfig {
        VmConfig {
            disks,
            append: "console=ttyS0,115200 quiet".into(),
            script: None,
            memory_mb: 1024,
            extra_args: Vec::new(),
            qmp: false,
            pxe_dir: None,
            usb_stick: None,
            usb_stick_persistent: false,
            cdrom: None,
            uefi: None,
        }
    }
    pub fn script(mut self, s: &str) -> VmConfig {
        self.script = Some(s.into());
        self
    }
    /// A virtio NIC on QEMU's restricted user network (nothing leaves the
    /// host) whose guest connections to 10.0.2.100:GUEST_PORT reach
    /// 127.0.0.1:HOST_PORT, one `(GUEST_PORT, HOST_PORT)` per forward.
    /// Each guest connection runs its own `socat`: a forward to a chardev
    /// (`-tcp:127.0.0.1:P`) connects once when QEMU starts, serves one
    /// connection for the VM's life and never passes a close to the guest
    /// (a sender then waits forever). QEMU names a forward by its guest
    /// port, so those must differ.
    pub fn user_net(&mut self, forwards: &[(u16, u16)]) {
        self.user_net_both(forwards, &[]);
    }

    /// [`VmConfig::user_net`] plus forwards the other way: connections
    /// to 127.0.0.1:HOST_PORT on the host reach the guest's GUEST_PORT,
    /// one `(HOST_PORT, GUEST_PORT)` each (they arrive from 10.0.2.2).
    pub fn user_net_both(&mut self, forwards: &[(u16, u16)], host_forwards: &[(u16, u16)]) {
        let mut netdev = "user,id=n0,restrict=on".to_string();
        for (guest, host) in forwards {
            netdev.push_str(&format!(
                ",guestfwd=tcp:10.0.2.100:{guest}-cmd:socat - TCP:127.0.0.1:{host}"
            ));
        }
        for (host, guest) in host_forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        self.extra_args.extend([
            "-netdev".to_string(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]);
    }
    pub fn append(mut self, extra: &str) -> VmConfig {
        self.append.push(' ');
        self.append.push_str(extra);
        self
    }
}

impl VmConfig {
    /// QEMU with TCG, q35, no default devices, the kernel, initrd, command
    /// line and disks; the caller adds the serial console.
    pub fn qemu_command(&self, kernel: &Path, initrd: &Path, append: &str) -> Command {
        let mut cmd = Command::new(qemu_binary());
        let secure = self.uefi.as_ref().is_some_and(|u| u.0);
        cmd.args(["-accel", "tcg", "-nodefaults", "-no-reboot"])
            .args(["-machine", if secure { "q35,smm=on" } else { "q35" }])
            .args(["-display", "none", "-vga", "none"])
            .args(["-m", &self.memory_mb.to_string()]);
        if let Some((secure, vars_copy)) = &self.uefi {
            let (code, vars) = if *secure {
                (
                    "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                    "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
                )
            } else {
                (
                    "/usr/share/OVMF/OVMF_CODE_4M.fd",
                    "/usr/share/OVMF/OVMF_VARS_4M.fd",
                )
            };
            std::fs::copy(vars, vars_copy).expect("copy the OVMF variables (package ovmf)");
            if *secure {
                cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,file={code},readonly=on"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars_copy.display()
                ));
        }
        if let Some(iso) = &self.cdrom {
            cmd.arg("-drive")
                .arg(format!(
                    "if=none,id=cd,media=cdrom,readonly=on,file={}",
                    iso.display()
                ))
                .args(["-device", "ide-cd,drive=cd,bus=ide.0,bootindex=0"]);
        }
        match (&self.pxe_dir, &self.usb_stick) {
            _ if self.cdrom.is_some() => {}
            (_, Some(stick)) => {
                cmd.arg("-drive")
                    .arg(format!(
                        "if=none,id=stick,format=raw,snapshot={},file={}",
                        if self.usb_stick_persistent {
                            "off"
                        } else {
                            "on"
                        },
                        stick.display()
                    ))
                    .args(["-device", "qemu-xhci,id=stickbus"])
                    .args([
                        "-device",
                        "usb-storage,drive=stick,bus=stickbus.0,bootindex=0",
                    ]);
            }
            (Some(dir), None) => {
                cmd.arg("-netdev")
                    .arg(format!(
                        "user,id=n0,tftp={},bootfile=boot.ipxe",
                        dir.display()
                    ))
                    .args(["-device", "e1000,netdev=n0", "-boot", "n"]);
            }
            (None, None) => {
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(append);
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            cmd.args(d.qemu_args(i));
        }
        cmd
    }
}

/// A TCP port free on 127.0.0.1 now (for a server or a host forward).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub fn qemu_binary() -> String {
    std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}
