//! Kernel module autoloading in PID 1: modalias -> modules.alias ->
//! modules.dep closure -> finit_module, each module once, dependencies first.

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
