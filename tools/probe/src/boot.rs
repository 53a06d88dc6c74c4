//! How the machine booted, as far as it decides what the kernel accepts:
//! UEFI or BIOS, the firmware's Secure Boot state and the kernel's lockdown
//! mode (under Secure Boot, Debian's kernel locks down to `integrity` and
//! loads only signed modules).

use serde::Serialize;
use std::path::Path;

/// The EFI global variable that holds the Secure Boot state: 4 bytes of
/// attributes, then 1 byte, 1 when the firmware enforces Secure Boot (UEFI
/// 2.10 section 3.3, EFI_GLOBAL_VARIABLE 8BE4DF61-93CA-11D2-AA0D-00E098032B8C).
const SECURE_BOOT_VAR: &str =
    "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootSecurity {
    /// `uefi` when `/sys/firmware/efi` exists, else `bios`.
    pub firmware: &'static str,
    /// The SecureBoot variable; false on BIOS; None when UEFI but the
    /// variable cannot be read (efivarfs not mounted).
    pub secure_boot: Option<bool>,
    /// `none`, `integrity` or `confidentiality` from
    /// `/sys/kernel/security/lockdown`; None when securityfs is not mounted
    /// or the kernel has no lockdown LSM.
    pub lockdown: Option<String>,
}

/// Reads the state under `sysfs` (normally `/sys`; tests pass fake trees).
pub fn read(sysfs: &Path) -> BootSecurity {
    let uefi = sysfs.join("firmware/efi").is_dir();
    let secure_boot = if uefi {
        match std::fs::read(sysfs.join(SECURE_BOOT_VAR)) {
            Ok(b) => b.get(4).map(|&v| v == 1),
            // Firmware without Secure Boot support (OVMF's plain build)
            // has no such variable; an empty or unmounted efivarfs says
            // nothing either way.
            Err(_) => efivars_readable(sysfs).then_some(false),
        }
    } else {
        Some(false)
    };
    // "none [integrity] confidentiality": the bracketed word is the mode.
    let lockdown = std::fs::read_to_string(sysfs.join("kernel/security/lockdown"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix('[')?.strip_suffix(']').map(String::from))
        });
    BootSecurity {
        firmware: if uefi { "uefi" } else { "bios" },
        secure_boot,
        lockdown,
    }
}

/// efivarfs is mounted and lists variables (every UEFI firmware has some,
/// e.g. BootOrder).
fn efivars_readable(sysfs: &Path) -> bool {
    std::fs::read_dir(sysfs.join("firmware/efi/efivars")).is_ok_and(|mut rd| rd.next().is_some())
}

impl BootSecurity {
    /// One line for the overview, e.g. `UEFI, Secure Boot on (lockdown:
    /// integrity): signed modules only`.
    pub fn line(&self) -> String {
        let sb = match (self.firmware, self.secure_boot) {
            ("bios", _) => "BIOS (not UEFI), no Secure Boot",
            (_, Some(true)) => "UEFI, Secure Boot on",
            (_, Some(false)) => "UEFI, Secure Boot off",
            (_, None) => "UEFI, Secure Boot unknown (efivars not readable)",
        };
        let lockdown = self.lockdown.as_deref().unwrap_or("unknown");
        let consequence = match self.lockdown.as_deref() {
            Some("integrity") | Some("confidentiality") => ": signed modules only",
            _ => "",
        };
        format!("{sb} (lockdown: {lockdown}){consequence}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("probe-boot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn secure_boot_on_with_lockdown() {
        let root = tree("sb");
        write(&root, SECURE_BOOT_VAR, &[6, 0, 0, 0, 1]);
        write(
            &root,
            "kernel/security/lockdown",
            b"none [integrity] confidentiality\n",
        );
        let s = read(&root);
        assert_eq!(s.firmware, "uefi");
        assert_eq!(s.secure_boot, Some(true));
        assert_eq!(s.lockdown.as_deref(), Some("integrity"));
        assert_eq!(
            s.line(),
            "UEFI, Secure Boot on (lockdown: integrity): signed modules only"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["secure_boot"], true);
        assert_eq!(json["lockdown"], "integrity");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn uefi_without_secure_boot_and_bios() {
        let root = tree("uefi");
        write(&root, SECURE_BOOT_VAR, &[6, 0, 0, 0, 0]);
        write(
            &root,
            "kernel/security/lockdown",
            b"[none] integrity confidentiality\n",
        );
        assert_eq!(read(&root).line(), "UEFI, Secure Boot off (lockdown: none)");
        // Firmware without Secure Boot support: no variable among others.
        std::fs::remove_file(root.join(SECURE_BOOT_VAR)).unwrap();
        write(
            &root,
            "firmware/efi/efivars/BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            &[7, 0, 0, 0, 1, 0],
        );
        assert_eq!(read(&root).secure_boot, Some(false));
        // efivarfs not mounted: the state is unknown, not "off".
        std::fs::remove_dir_all(root.join("firmware/efi/efivars")).unwrap();
        std::fs::create_dir_all(root.join("firmware/efi/efivars")).unwrap();
        assert_eq!(read(&root).secure_boot, None);
        assert!(read(&root).line().contains("Secure Boot unknown"));
        let _ = std::fs::remove_dir_all(&root);

        let root = tree("bios");
        let s = read(&root);
        assert_eq!(
            (s.firmware, s.secure_boot, s.lockdown.as_deref()),
            ("bios", Some(false), None)
        );
        assert_eq!(
            s.line(),
            "BIOS (not UEFI), no Secure Boot (lockdown: unknown)"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
