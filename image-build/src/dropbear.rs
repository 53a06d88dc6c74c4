//! dropbear in the initramfs, for the remote console (`rescue ssh`):
//! `/usr/sbin/dropbear` and `/usr/bin/dropbearkey` (the host key is made
//! at the first start) from Debian's `dropbear-bin`, with their loader and
//! libraries (libtomcrypt, libtommath, libgmp, zlib, libcrypt from
//! libxcrypt, which checks the one-time password's `$6$` hash, and glibc,
//! shared with ntfs-3g), gathered by [`crate::debprog`]. root's login
//! shell `/bin/rescue-login` is a link to `rescue`, which starts the menu.

use crate::debprog::{self, Added};
use crate::{CpioEntry, Error};
use std::path::Path;

/// The server, where Debian puts it.
pub const SERVER: &str = "usr/sbin/dropbear";
/// The key maker.
pub const KEYGEN: &str = "usr/bin/dropbearkey";
/// root's login shell: `rescue` under this name starts the menu.
pub const LOGIN_SHELL: &str = "bin/rescue-login";

/// Downloads (once, into `cache`) `dropbear-bin` and the packages of what
/// it needs, and returns the entries for the initramfs with their sizes:
/// the two programs, the loader, the libraries and the login shell's
/// link.
pub fn entries(cache: &Path) -> Result<(Vec<CpioEntry>, Vec<Added>), Error> {
    let (mut entries, mut added) = debprog::fetch_closure(
        cache,
        "dropbear-bin",
        &[&format!("/{SERVER}"), &format!("/{KEYGEN}")],
    )?;
    entries.push(CpioEntry::symlink(LOGIN_SHELL, "rescue"));
    added.push(Added {
        path: LOGIN_SHELL.into(),
        bytes: 0,
        package: "(link to rescue)".into(),
    });
    Ok((entries, added))
}
