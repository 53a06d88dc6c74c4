//! A kernel's module index (`/lib/modules/<release>/modules.*`), shared by
//! the image builder (which modules to ship) and PID 1 (which to load for a
//! device): modules.dep closure in load order, softdeps, modules.alias
//! wildcard matching as modprobe does it.

pub mod firmware;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The parsed module index of one kernel (`/lib/modules/<release>`).
#[derive(Default, Debug)]
pub struct ModuleIndex {
    root: PathBuf,
    /// module name -> (path relative to root, dependency names)
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// (pattern, module) in file order
    aliases: Vec<(String, String)>,
    /// module -> modules to load first
    softdeps_pre: BTreeMap<String, Vec<String>>,
    builtin: HashSet<String>,
}

/// Module names use `_` and `-` interchangeably; the kernel reports `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/drivers/usb/storage/usb-storage.ko` -> `usb_storage`.
pub fn module_name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

impl ModuleIndex {
    /// Reads modules.dep, modules.alias, modules.softdep and modules.builtin
    /// under `root`. A missing modules.dep is an error (nothing can be loaded);
    /// the others are optional.
    pub fn load(root: &Path) -> Result<ModuleIndex, String> {
        let read = |name: &str| std::fs::read_to_string(root.join(name));
        let dep = read("modules.dep")
            .map_err(|e| format!("{}: {e}", root.join("modules.dep").display()))?;
        let alias = read("modules.alias").unwrap_or_default();
        let softdep = read("modules.softdep").unwrap_or_default();
        let builtin = read("modules.builtin").unwrap_or_default();
        Ok(Self::parse(root, &dep, &alias, &softdep, &builtin))
    }

    pub fn parse(root: &Path, dep: &str, alias: &str, softdep: &str, builtin: &str) -> Self {
        let mut idx = ModuleIndex {
            root: root.to_path_buf(),
            ..Default::default()
        };
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let deps = rest.split_whitespace().map(module_name_of).collect();
            idx.deps
                .insert(module_name_of(path), (path.trim().to_string(), deps));
        }
        for line in alias.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(pat), Some(m)) = (w.next(), w.next(), w.next()) {
                idx.aliases.push((pat.to_string(), normalize(m)));
            }
        }
        for line in softdep.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("softdep") {
                continue;
            }
            let Some(m) = w.next() else { continue };
            let mut pre = Vec::new();
            let mut in_pre = false;
            for word in w {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    x if in_pre => pre.push(x.to_string()),
                    _ => {}
                }
            }
            idx.softdeps_pre.insert(normalize(m), pre);
        }
        idx.builtin = builtin.lines().map(module_name_of).collect();
        idx
    }

    /// Modules whose alias pattern matches `modalias`.
    pub fn match_alias(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (pat, m) in &self.aliases {
            if glob_match(pat.as_bytes(), modalias.as_bytes()) && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// A module name, or failing that an alias, resolved to module names.
    pub fn resolve(&self, name: &str) -> Vec<String> {
        let n = normalize(name);
        if self.deps.contains_key(&n) || self.builtin.contains(&n) {
            return vec![n];
        }
        self.match_alias(name)
    }

    /// The load order for `module`: soft pre-dependencies and hard
    /// dependencies first, each once, `module` last. Names not in the index
    /// (built-in or unknown) are left out.
    pub fn load_order(&self, module: &str, done: &mut HashSet<String>) -> Vec<String> {
        let mut order = Vec::new();
        self.visit(&normalize(module), done, &mut order, 0);
        order
    }

    fn visit(&self, m: &str, done: &mut HashSet<String>, order: &mut Vec<String>, depth: u32) {
        // modules.dep has no cycles, but a damaged index must not recurse forever.
        if depth > 64 || done.contains(m) || self.builtin.contains(m) {
            return;
        }
        let Some((_, deps)) = self.deps.get(m) else {
            return;
        };
        done.insert(m.to_string());
        if let Some(pre) = self.softdeps_pre.get(m) {
            for p in pre {
                for r in self.resolve(p) {
                    self.visit(&r, done, order, depth + 1);
                }
            }
        }
        // modules.dep lists the whole closure; the deepest dependency comes last.
        for d in deps.iter().rev() {
            self.visit(d, done, order, depth + 1);
        }
        order.push(m.to_string());
    }

    pub fn path_of(&self, module: &str) -> Option<PathBuf> {
        self.deps.get(module).map(|(p, _)| self.root.join(p))
    }

    /// The path of `module` relative to the index root, as in modules.dep.
    pub fn relative_path_of(&self, module: &str) -> Option<&str> {
        self.deps.get(module).map(|(p, _)| p.as_str())
    }

    pub fn is_builtin(&self, module: &str) -> bool {
        self.builtin.contains(&normalize(module))
    }

    /// Module names in modules.dep, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(|k| k.as_str())
    }

    pub fn is_known(&self, module: &str) -> bool {
        let n = normalize(module);
        self.deps.contains_key(&n) || self.builtin.contains(&n)
    }
}

/// Shell-style wildcard match as modprobe does it: `*`, `?`, `[abc]`,
/// `[a-z]`, `[!x]` / `[^x]`.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        // Unterminated class: a literal '['.
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[start] == b'['`; returns
/// (matched, index after the class), or None if the class is unterminated.
fn class_match(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = start + 1;
    let negate = matches!(pat.get(j), Some(b'!') | Some(b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() {
        if pat[j] == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_modprobe() {
        assert!(glob_match(
            b"pci:v00008086d*sv*",
            b"pci:v00008086d00002922sv0000"
        ));
        assert!(!glob_match(
            b"pci:v00008086d*sv*",
            b"pci:v00001AF4d00001001sv0000"
        ));
        assert!(glob_match(b"scsi:t-0x0[07e]*", b"scsi:t-0x00"));
        assert!(glob_match(b"scsi:t-0x0[07e]*", b"scsi:t-0x0e"));
        assert!(!glob_match(b"scsi:t-0x0[07e]*", b"scsi:t-0x05"));
        assert!(glob_match(b"a[0-9]c", b"a5c"));
        assert!(!glob_match(b"a[!0-9]c", b"a5c"));
        assert!(glob_match(b"a[!0-9]c", b"abc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"a", b""));
        assert!(glob_match(b"a[b", b"a[b"));
        assert!(glob_match(b"**x*", b"yyxyy"));
    }

    fn sample() -> ModuleIndex {
        ModuleIndex::parse(
            Path::new("/lib/modules/v"),
            "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko\n\
             kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko\n\
             kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko\n\
             kernel/drivers/scsi/scsi_mod.ko:\n\
             kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/jbd2/jbd2.ko:\n\
             kernel/crypto/crc32c_generic.ko:\n\
             kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko\n",
            "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias usb:v*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n",
            "softdep ext4 pre: crc32c\n",
            "kernel/drivers/block/loop.ko\n",
        )
    }

    #[test]
    fn closure_loads_dependencies_first_once() {
        let idx = sample();
        let mut done = HashSet::new();
        let order = idx.load_order("ahci", &mut done);
        assert_eq!(order, ["scsi_mod", "libata", "libahci", "ahci"]);
        // Loaded already: nothing again.
        assert!(idx.load_order("libata", &mut done).is_empty());
        let order = idx.load_order("ext4", &mut done);
        assert_eq!(order, ["crc32c_generic", "jbd2", "ext4"]);
        // '-' and '_' are the same name.
        let order = idx.load_order("usb-storage", &mut done);
        assert_eq!(order, ["usb_storage"]);
        assert!(idx.is_known("loop") && idx.load_order("loop", &mut done).is_empty());
    }

    #[test]
    fn alias_resolution() {
        let idx = sample();
        assert_eq!(
            idx.match_alias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            ["ahci"]
        );
        assert_eq!(idx.resolve("crc32c"), ["crc32c_generic"]);
        assert!(idx.resolve("nosuch").is_empty());
    }

    #[test]
    fn damaged_index_does_not_loop() {
        let idx = ModuleIndex::parse(Path::new("/x"), "a.ko: b.ko\nb.ko: a.ko\n", "", "", "");
        let order = idx.load_order("a", &mut HashSet::new());
        assert_eq!(order, ["b", "a"]);
    }
}
