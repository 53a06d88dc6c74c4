//! Scratch directories for tests, removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory `<base>/<tag>-<pid>-<n>`, removed with its contents
/// on drop, unless the environment variable `RESCUE_KEEP_TMP` is set (to
/// look at what a failed test left).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory under the system's temporary directory (`$TMPDIR`
    /// or /tmp).
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// A new directory under `base` (created if needed). A directory of the
    /// same name left by an earlier run is removed first.
    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// `name` inside the directory, as a string (for APIs and command lines
    /// that take paths as text).
    pub fn join_str(&self, name: impl AsRef<Path>) -> String {
        self.join(name).display().to_string()
    }
}

// A TempDir stands where a path is taken: `&dir` for `&Path`, `dir.display()`.
impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RESCUE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_distinct_and_removed_on_drop() {
        let a = TempDir::new("testkit");
        let b = TempDir::new("testkit");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir() && b.path().is_dir());
        std::fs::write(a.join("f"), b"x").unwrap();
        assert_eq!(a.join_str("f"), a.path().join("f").display().to_string());
        let p = a.path().to_path_buf();
        drop(a);
        if std::env::var_os("RESCUE_KEEP_TMP").is_none() {
            assert!(!p.exists());
        }
    }
}
