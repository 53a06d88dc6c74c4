//! Kernel module autoloading in PID 1: modalias -> modules.alias ->
//! modules.dep closure -> finit_module, each module once, dependencies first.

use kmod::firmware::Missing;
use kmod::{normalize, ModuleIndex};
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

/// What a loading run did, for the boot log.
#[derive(Default, Debug)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Modules the kernel refused with ENODEV: made for hardware or CPU
    /// features this machine lacks (e.g. crct10dif_pclmul without PCLMUL).
    pub unsupported: Vec<String>,
    /// How long each loaded module took to load (its init, which for a
    /// driver includes probing its devices unless that is asynchronous).
    pub took: Vec<(String, std::time::Duration)>,
    /// Modules a device's modalias asked for (not their dependencies),
    /// each once, whether or not this run loaded them.
    pub matched: Vec<String>,
}

impl LoadReport {
    /// The `n` modules that took longest, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, std::time::Duration)> {
        let mut t = self.took.clone();
        t.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        t.truncate(n);
        t
    }
}

/// Loads modules and remembers what it did, so each is tried once.
pub struct Loader {
    pub index: ModuleIndex,
    tried: HashSet<String>,
    seen_aliases: HashSet<String>,
}

impl Loader {
    pub fn new(index: ModuleIndex) -> Loader {
        let tried = loaded_modules();
        Loader {
            index,
            tried,
            seen_aliases: HashSet::new(),
        }
    }

    /// Loads whatever matches `modalias` (once per distinct modalias).
    pub fn load_for_alias(&mut self, modalias: &str, report: &mut LoadReport) {
        if !self.seen_aliases.insert(modalias.to_string()) {
            return;
        }
        for m in self.index.match_alias(modalias) {
            if !report.matched.contains(&m) {
                report.matched.push(m.clone());
            }
            self.load(&m, report);
        }
    }

    /// Loads `name` (a module name or alias) with its dependencies.
    pub fn load(&mut self, name: &str, report: &mut LoadReport) {
        self.load_with(name, "", report)
    }

    /// Loads `name` with its dependencies, passing `params` (modprobe's
    /// `key=value ...`) to the named module itself, not to its
    /// dependencies.
    pub fn load_with(&mut self, name: &str, params: &str, report: &mut LoadReport) {
        let resolved = self.index.resolve(name);
        if resolved.is_empty() {
            report
                .failed
                .push((name.to_string(), "no such module in this kernel".into()));
        }
        for m in resolved {
            for step in self.index.load_order(&m, &mut self.tried) {
                let Some(path) = self.index.path_of(&step) else {
                    continue;
                };
                let began = std::time::Instant::now();
                let own = if step == normalize(&m) { params } else { "" };
                match finit(&path, own) {
                    Ok(()) => {
                        report.took.push((step.clone(), began.elapsed()));
                        report.loaded.push(step);
                    }
                    Err(FinitError::NoDevice) => report.unsupported.push(step),
                    Err(FinitError::Other(e)) => report.failed.push((step, e)),
                }
            }
        }
    }
}

enum FinitError {
    NoDevice,
    Other(String),
}

fn finit(path: &Path, params: &str) -> Result<(), FinitError> {
    let f = File::open(path).map_err(|e| FinitError::Other(format!("{}: {e}", path.display())))?;
    let params = std::ffi::CString::new(params)
        .map_err(|_| FinitError::Other(format!("{}: parameters hold a NUL", path.display())))?;
    match rustix::system::finit_module(&f, &params, 0) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(rustix::io::Errno::NODEV) => Err(FinitError::NoDevice),
        Err(e) => Err(FinitError::Other(format!(
            "{}: {}",
            path.display(),
            std::io::Error::from(e)
        ))),
    }
}

/// Names of the modules the kernel has loaded now (`/proc/modules`).
pub fn loaded_modules() -> HashSet<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(normalize))
        .collect()
}

/// One line per module in `matched` (asked for by a device present) that
/// may ask for firmware the image lacks (`missing`, the image's
/// [`kmod::firmware::MISSING_PATH`]): `firmware F for M is not in this
/// image; that NIC may not work` (a module under kernel/drivers/net is a
/// NIC driver; others say "device"). Several files are shortened.
pub fn missing_firmware_lines(
    missing: &[Missing],
    matched: &[String],
    index: &ModuleIndex,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in matched {
        let files = kmod::firmware::missing_for(missing, m);
        if files.is_empty() {
            continue;
        }
        let what = match index.relative_path_of(m) {
            Some(p) if p.starts_with("kernel/drivers/net/") => "NIC",
            _ => "device",
        };
        out.push(format!(
            "firmware {} for {} {} not in this image; that {what} may not work",
            kmod::firmware::short_list(&files),
            normalize(m),
            if files.len() == 1 { "is" } else { "are" }
        ));
    }
    out
}

/// Every `modalias` under `sysfs/devices`, without following symlinks.
pub fn scan_modaliases(sysfs: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![sysfs.join("devices")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == "modalias" {
                if let Ok(s) = std::fs::read_to_string(e.path()) {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.push(s.to_string());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Loads one module (with its dependencies) by name for a subcommand, e.g.
/// a filesystem before mounting a destination. Already loaded or built in
/// is success. `spec` is a name, optionally followed by the module's
/// parameters as modprobe takes them: `nbd max_part=16`.
pub fn load_by_name(spec: &str) -> Result<(), String> {
    let (name, params) = spec.trim().split_once(' ').unwrap_or((spec.trim(), ""));
    // Loaded already (or built in with parameters): nothing to do, and no
    // need to read the module index (10-16 ms under TCG, paid by every
    // `rescue attach` of a files-hit run over many VM disks).
    if Path::new("/sys/module")
        .join(name.replace('-', "_"))
        .is_dir()
    {
        return Ok(());
    }
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let root = Path::new("/lib/modules").join(&release);
    let index = ModuleIndex::load(&root)?;
    if index.is_builtin(name) {
        return Ok(());
    }
    let mut loader = Loader::new(index);
    let mut report = LoadReport::default();
    loader.load_with(name, params.trim(), &mut report);
    match report.failed.first() {
        Some((m, e)) => Err(format!("{m}: {e}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_matched_drivers_that_lack_firmware() {
        let index = ModuleIndex::parse(
            Path::new("/"),
            "kernel/drivers/net/ethernet/broadcom/bnx2x/bnx2x.ko: kernel/lib/libcrc32c.ko\n\
             kernel/drivers/net/ethernet/realtek/r8169.ko:\n\
             kernel/drivers/usb/host/xhci-pci-renesas.ko:\n\
             kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n\
             kernel/lib/libcrc32c.ko:\n",
            "",
            "",
            "",
        );
        let list = kmod::firmware::parse_missing(
            "bnx2x bnx2x/bnx2x-e2-7.13.21.0.fw\n\
             r8169 rtl_nic/a.fw\nr8169 rtl_nic/b.fw\nr8169 rtl_nic/c.fw\n\
             xhci-pci-renesas renesas_usb_fw.mem\n\
             libcrc32c x.fw\n",
        )
        .unwrap();
        let matched: Vec<String> = ["e1000", "bnx2x", "r8169", "xhci_pci_renesas"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            missing_firmware_lines(&list, &matched, &index),
            [
                "firmware bnx2x/bnx2x-e2-7.13.21.0.fw for bnx2x is not in this image; that NIC may not work",
                "firmware rtl_nic/a.fw, rtl_nic/b.fw and 1 more for r8169 are not in this image; that NIC may not work",
                "firmware renesas_usb_fw.mem for xhci_pci_renesas is not in this image; that device may not work",
            ]
        );
        // A dependency (libcrc32c) was not asked for by a device: silent.
        assert!(missing_firmware_lines(&list, &["e1000".into()], &index).is_empty());
    }

    #[test]
    fn matched_modules_are_recorded_once_per_alias_match() {
        let index = ModuleIndex::parse(
            Path::new("/nonexistent"),
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n",
            "alias pci:v00001234d* a\n",
            "",
            "",
        );
        let mut loader = Loader::new(index);
        let mut report = LoadReport::default();
        loader.load_for_alias("pci:v00001234d00000001", &mut report);
        loader.load_for_alias("pci:v00001234d00000002", &mut report);
        loader.load_for_alias("pci:v00009999d00000001", &mut report);
        assert_eq!(report.matched, ["a"]);
    }
}
