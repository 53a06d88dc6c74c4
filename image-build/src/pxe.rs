//! Boot menus shared by every medium, and the PXE bundle (`out/pxe/`):
//! kernel, initramfs, an iPXE script, a pxelinux config and a GRUB netboot
//! config, all offering the same entries.

use std::path::Path;

/// One boot menu entry: the same list on every medium.
pub struct BootEntry {
    pub id: &'static str,
    pub title: &'static str,
    pub args: &'static str,
}

/// Default first. Every entry keeps the serial console on ttyS0 at 115200.
pub const BOOT_ENTRIES: &[BootEntry] = &[
    BootEntry {
        id: "rescue",
        title: "Rescue appliance (screen and serial console)",
        args: "console=tty0 console=ttyS0,115200 quiet",
    },
    BootEntry {
        id: "serial",
        title: "Rescue appliance, serial console only",
        args: "console=ttyS0,115200 quiet",
    },
    BootEntry {
        id: "nomodules",
        title: "Rescue appliance, no automatic driver loading",
        args: "console=tty0 console=ttyS0,115200 quiet rescue.nomodules",
    },
    BootEntry {
        id: "shell",
        title: "Rescue appliance, shell only",
        args: "console=tty0 console=ttyS0,115200 rescue.shell",
    },
];

/// Seconds before the default entry boots.
pub const MENU_TIMEOUT_S: u32 = 5;

/// iPXE script; paths are relative to the script's own URL, so the bundle
/// works from TFTP and HTTP alike. `initrd=` names the initramfs on the
/// command line: Debian's iPXE under UEFI hands it over only then.
/// `BOOTIF=01-${netX/mac:hexhyp}` (the MAC of the interface iPXE last
/// opened, as pxelinux writes it) makes the appliance bring up that link.
pub fn ipxe_script(kernel: &str, initrd: &str) -> String {
    let mut s = String::from("#!ipxe\n\nmenu Rescue appliance\n");
    for e in BOOT_ENTRIES {
        s += &format!("item {} {}\n", e.id, e.title);
    }
    s += &format!(
        "choose --default {} --timeout {} target || goto {}\ngoto ${{target}}\n",
        BOOT_ENTRIES[0].id,
        MENU_TIMEOUT_S * 1000,
        BOOT_ENTRIES[0].id
    );
    for e in BOOT_ENTRIES {
        s += &format!(
            "\n:{}\nkernel {kernel} initrd={initrd} {} BOOTIF=01-${{netX/mac:hexhyp}}\ninitrd {initrd}\nboot\n",
            e.id, e.args
        );
    }
    s
}

/// pxelinux.cfg/default (no menu module needed: a prompt with labels).
/// `IPAPPEND 2` adds `BOOTIF=01-aa-bb-cc-dd-ee-ff` (the booting NIC's
/// MAC) to the command line: the appliance brings up that link.
pub fn pxelinux_cfg(kernel: &str, initrd: &str) -> String {
    let mut s = format!(
        "SERIAL 0 115200\nDEFAULT {}\nPROMPT 1\nTIMEOUT {}\nSAY Rescue appliance: type {} or wait\n",
        BOOT_ENTRIES[0].id,
        MENU_TIMEOUT_S * 10,
        BOOT_ENTRIES.iter().map(|e| e.id).collect::<Vec<_>>().join(", ")
    );
    for e in BOOT_ENTRIES {
        s += &format!(
            "\nLABEL {}\n  MENU LABEL {}\n  KERNEL {kernel}\n  APPEND initrd={initrd} {}\n  IPAPPEND 2\n",
            e.id, e.title, e.args
        );
    }
    s
}

/// GRUB config (network boot here; USB and ISO use the same entries).
/// Booted from the network, GRUB sets `net_default_mac` (read-only, the
/// boot interface's MAC as `aa:bb:cc:dd:ee:ff`): then `BOOTIF=01-` and
/// that MAC go on the command line (the appliance takes `:` as well as
/// `-`). From a stick or CD the variable is empty and nothing is added.
pub fn grub_cfg(kernel: &str, initrd: &str) -> String {
    let mut s = format!(
        "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\nset timeout={MENU_TIMEOUT_S}\nset default=0\nset bootif=\nif [ -n \"$net_default_mac\" ]; then set bootif=\"BOOTIF=01-$net_default_mac\"; fi\n"
    );
    for e in BOOT_ENTRIES {
        s += &format!(
            "\nmenuentry '{}' {{\n  linux {kernel} {} $bootif\n  initrd {initrd}\n}}\n",
            e.title, e.args
        );
    }
    s
}

/// pxelinux.0 and its one required module, from Debian's pxelinux and
/// syslinux-common packages.
const PXELINUX: &[(&str, &str)] = &[
    ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux.0"),
    ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "ldlinux.c32"),
];

/// Writes `out/pxe/`. Returns warnings (e.g. pxelinux not installed).
pub fn write_bundle(dir: &Path, vmlinuz: &[u8], initramfs: &[u8]) -> Result<Vec<String>, String> {
    let w = |rel: &str, bytes: &[u8]| -> Result<(), String> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        crate::write_atomically(&p, bytes)
    };
    w("vmlinuz", vmlinuz)?;
    w("initramfs.img", initramfs)?;
    w(
        "boot.ipxe",
        ipxe_script("vmlinuz", "initramfs.img").as_bytes(),
    )?;
    w(
        "pxelinux.cfg/default",
        pxelinux_cfg("vmlinuz", "initramfs.img").as_bytes(),
    )?;
    w(
        "grub/grub.cfg",
        grub_cfg("(tftp)/vmlinuz", "(tftp)/initramfs.img").as_bytes(),
    )?;
    let mut warnings = Vec::new();
    for (src, name) in PXELINUX {
        match std::fs::read(src) {
            Ok(b) => w(name, &b)?,
            Err(e) => warnings.push(format!(
                "{src}: {e}: pxelinux boot files left out (apt-get install pxelinux syslinux-common)"
            )),
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_medium_offers_every_entry() {
        let texts = [
            ipxe_script("vmlinuz", "initramfs.img"),
            pxelinux_cfg("vmlinuz", "initramfs.img"),
            grub_cfg("/vmlinuz", "/initramfs.img"),
        ];
        for t in &texts {
            for e in BOOT_ENTRIES {
                assert!(t.contains(e.args), "{} missing in:\n{t}", e.id);
            }
        }
        let ipxe = &texts[0];
        assert!(ipxe.starts_with("#!ipxe\n"));
        assert!(ipxe.contains("choose --default rescue --timeout 5000"));
        assert!(ipxe.contains("kernel vmlinuz initrd=initramfs.img console=tty0"));
        assert!(texts[1].contains("DEFAULT rescue") && texts[1].contains("TIMEOUT 50"));
        assert!(texts[2].contains("set timeout=5"));
    }

    /// The booting NIC's MAC reaches the kernel command line as BOOTIF on
    /// every entry of every network loader.
    #[test]
    fn network_loaders_pass_the_boot_interface() {
        let ipxe = ipxe_script("vmlinuz", "initramfs.img");
        let kernels: Vec<&str> = ipxe.lines().filter(|l| l.starts_with("kernel ")).collect();
        assert_eq!(kernels.len(), BOOT_ENTRIES.len());
        for k in &kernels {
            assert!(k.ends_with(" BOOTIF=01-${netX/mac:hexhyp}"), "{k}");
        }
        let pxelinux = pxelinux_cfg("vmlinuz", "initramfs.img");
        assert_eq!(
            pxelinux.matches("\n  IPAPPEND 2\n").count(),
            BOOT_ENTRIES.len()
        );
        for block in pxelinux.split("\nLABEL ").skip(1) {
            assert!(
                block.contains("APPEND initrd=") && block.contains("IPAPPEND 2"),
                "{block}"
            );
        }
        let grub = grub_cfg("(tftp)/vmlinuz", "(tftp)/initramfs.img");
        assert!(grub.contains(
            "set bootif=\nif [ -n \"$net_default_mac\" ]; then set bootif=\"BOOTIF=01-$net_default_mac\"; fi\n"
        ));
        let linux: Vec<&str> = grub
            .lines()
            .filter(|l| l.trim_start().starts_with("linux "))
            .collect();
        assert_eq!(linux.len(), BOOT_ENTRIES.len());
        for l in &linux {
            assert!(l.ends_with(" $bootif"), "{l}");
        }
    }
}
