//! The files dropbear reads, written under a root folder (`/` on the
//! appliance, a temporary folder in tests):
//!
//! - `etc/passwd`: `root:x:0:0:root:/root:/bin/rescue-login`, root's login
//!   shell being the menu ([`LOGIN_SHELL`], see `login`);
//! - `etc/shadow` (0600): root's password field, `*` (no password can
//!   match) or the `$6$` hash of a one-time password;
//! - `etc/group`: root and tty (devpts is mounted with gid=5: dropbear
//!   gives a session's pty to group tty);
//! - `etc/shells`: the login shell, which dropbear requires to be listed;
//! - `etc/nsswitch.conf`: passwd, group and shadow from the files;
//! - `root/.ssh/authorized_keys` (0600, folder 0700): the keys, or no file.

use crate::keys::PublicKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// root's login shell: `rescue` under another name (a link), which starts
/// the menu.
pub const LOGIN_SHELL: &str = "/bin/rescue-login";
/// The password field that no password matches.
pub const NO_PASSWORD: &str = "*";

/// Where the files go.
#[derive(Clone, Debug)]
pub struct Root(pub PathBuf);

impl Root {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }
    pub fn shadow(&self) -> PathBuf {
        self.path("etc/shadow")
    }
    pub fn authorized_keys(&self) -> PathBuf {
        self.path("root/.ssh/authorized_keys")
    }
}

impl Default for Root {
    fn default() -> Root {
        Root(PathBuf::from("/"))
    }
}

pub fn passwd_text() -> String {
    format!("root:x:0:0:root:/root:{LOGIN_SHELL}\n")
}

pub fn group_text() -> String {
    "root:x:0:\ntty:x:5:\n".into()
}

pub fn shells_text() -> String {
    format!("{LOGIN_SHELL}\n")
}

pub fn nsswitch_text() -> String {
    "passwd: files\ngroup: files\nshadow: files\n".into()
}

/// root's shadow line with `password_field` (`*` or a `$6$` hash). The
/// other fields are empty: no ageing, no expiry.
pub fn shadow_text(password_field: &str) -> Result<String, String> {
    if password_field.is_empty() || password_field.contains([':', '\n']) {
        return Err(format!(
            "password field {password_field:?}: must be non-empty without ':' or newlines"
        ));
    }
    Ok(format!("root:{password_field}:::::::\n"))
}

/// root's password field in the text of /etc/shadow, if it has a root line.
pub fn root_password_field(shadow: &str) -> Option<&str> {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .map(|rest| rest.split(':').next().unwrap_or(""))
}

pub fn authorized_keys_text(keys: &[PublicKey]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

/// Writes `text` to `path` with `mode` through a temporary file in the same
/// folder and a rename: a reader (dropbear) sees the old or the new file.
pub fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rescue-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    // The umask may have taken bits away; set exactly `mode`.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes every file for a server with `keys` and root's password field
/// `password_field`. With no keys, authorized_keys is removed.
pub fn write_all(root: &Root, keys: &[PublicKey], password_field: &str) -> Result<(), String> {
    let io = |p: PathBuf| move |e: std::io::Error| format!("{}: {e}", p.display());
    let shadow = shadow_text(password_field)?;
    for (rel, text, mode) in [
        ("etc/passwd", passwd_text(), 0o644),
        ("etc/group", group_text(), 0o644),
        ("etc/shells", shells_text(), 0o644),
        ("etc/nsswitch.conf", nsswitch_text(), 0o644),
        ("etc/shadow", shadow, 0o600),
    ] {
        let p = root.path(rel);
        write_file(&p, &text, mode).map_err(io(p.clone()))?;
    }
    let home = root.path("root");
    std::fs::create_dir_all(&home).map_err(io(home.clone()))?;
    let ssh = root.path("root/.ssh");
    std::fs::create_dir_all(&ssh).map_err(io(ssh.clone()))?;
    // dropbear refuses keys in a folder others could write to.
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(io(ssh.clone()))?;
    let ak = root.authorized_keys();
    if keys.is_empty() {
        match std::fs::remove_file(&ak) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(ak)(e)),
            _ => {}
        }
    } else {
        write_file(&ak, &authorized_keys_text(keys), 0o600).map_err(io(ak.clone()))?;
    }
    Ok(())
}

/// Replaces root's password in /etc/shadow by [`NO_PASSWORD`]; true when
/// there was one to remove (a one-time password, now used).
pub fn remove_password(root: &Root) -> Result<bool, String> {
    let p = root.shadow();
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    match root_password_field(&text) {
        Some(f) if f != NO_PASSWORD && !f.is_empty() => {
            write_file(&p, &shadow_text(NO_PASSWORD)?, 0o600)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn files_for_keys_and_for_a_password() {
        let dir = testkit::TempDir::new("sshd-files");
        let root = Root(dir.path().to_path_buf());
        let key = PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@desk",
        )
        .unwrap();
        write_all(&root, std::slice::from_ref(&key), NO_PASSWORD).unwrap();
        let read = |rel: &str| std::fs::read_to_string(root.path(rel)).unwrap();
        assert_eq!(
            read("etc/passwd"),
            "root:x:0:0:root:/root:/bin/rescue-login\n"
        );
        assert_eq!(read("etc/shadow"), "root:*:::::::\n");
        assert_eq!(read("etc/shells"), "/bin/rescue-login\n");
        assert!(read("etc/group").contains("tty:x:5:"));
        assert_eq!(read("root/.ssh/authorized_keys"), format!("{key}\n"));
        assert_eq!(mode(&root.shadow()), 0o600);
        assert_eq!(mode(&root.authorized_keys()), 0o600);
        assert_eq!(mode(&root.path("root/.ssh")), 0o700);
        assert_eq!(mode(&root.path("etc/passwd")), 0o644);
        assert!(!remove_password(&root).unwrap(), "nothing to remove");

        // A one-time password and no key: the keys file goes.
        let hash = crate::crypt::sha512_crypt(b"pw", "$6$salt").unwrap();
        write_all(&root, &[], &hash).unwrap();
        assert!(!root.authorized_keys().exists());
        assert_eq!(
            root_password_field(&read("etc/shadow")),
            Some(hash.as_str())
        );
        assert!(remove_password(&root).unwrap());
        assert_eq!(read("etc/shadow"), "root:*:::::::\n");
        assert_eq!(mode(&root.shadow()), 0o600);
        assert!(!remove_password(&root).unwrap());
        // No temporary files left behind.
        let names: Vec<String> = std::fs::read_dir(root.path("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("rescue-tmp")), "{names:?}");
    }

    #[test]
    fn shadow_fields_are_checked() {
        assert!(shadow_text("").is_err());
        assert!(shadow_text("a:b").is_err());
        assert!(shadow_text("a\nroot::").is_err());
        assert_eq!(
            root_password_field("daemon:*:1::\nroot:$6$x$y:::\n"),
            Some("$6$x$y")
        );
        assert_eq!(root_password_field("daemon:*:1::\n"), None);
        assert_eq!(root_password_field("root"), None);
        assert_eq!(root_password_field("root:"), Some(""));
    }
}
