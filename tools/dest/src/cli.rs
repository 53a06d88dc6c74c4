//! `rescue dest`: list, mount and unmount imaging destinations.

use crate::{list, mount, render, unmount, Candidate};
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

#[derive(FromArgs, Debug, PartialEq)]
/// Destinations for images and extracted files: filesystems (ext2/3/4, xfs,
/// btrfs, FAT, exFAT, NTFS through ntfs-3g) on disks other than the source. The boot stick's
/// RESCUEDATA partition is listed first. Filesystems on a disk that holds
/// what is being rescued (an ESXi system, VMFS, an md member) are not
/// offered: they are listed apart with the reason. Mounting one read-write
/// is the only thing here that writes, and it asks first.
#[argh(
    subcommand,
    name = "dest",
    error_code(0, "done: see the action's --help"),
    error_code(1, "partial: see the action's --help"),
    error_code(
        2,
        "error: usage error (unknown option, missing argument, no action), or the action failed"
    )
)]
pub struct DestCommand {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Action {
    List(ListCommand),
    Mount(MountCommand),
    Umount(UmountCommand),
}

#[derive(FromArgs, Debug, PartialEq)]
/// List usable filesystems with size and free space (from statvfs when
/// mounted, else from the superblock; "~" marks an estimate, "?" unknown
/// until mounted), then those not offered and why ("unsafe" in JSON: the
/// disk holds an ESXi system, VMFS or an md member; "unusable": the
/// source, held by md/dm, a format not written here such as ISO9660 or
/// swap, or NTFS left by Windows hibernated, in fast startup or
/// unclean). Mounted network shares (nfs://, smb://) are listed with
/// "network": true. Exit 0.
#[argh(
    subcommand,
    name = "list",
    error_code(
        0,
        "done: the list was printed (unusable filesystems are listed as such)"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), or the output could not be written"
    )
)]
pub struct ListCommand {
    /// the source disk or partition: filesystems on its disk are shown as
    /// unusable
    #[argh(option)]
    pub exclude: Vec<String>,
    /// JSON output
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
/// Mount a destination read-write at /mnt/dest/NAME after confirmation: its
/// block-layer read-only flag (and its disk's) is turned off for this device
/// only. Without a terminal to ask on, --yes is required. A filesystem on a
/// disk being rescued (an ESXi system, VMFS, an md member) asks a second
/// time, naming what the disk holds; without a terminal it needs
/// --on-rescued-disk too. A network share (nfs://, smb://) is mounted at
/// /mnt/dest/nfs-HOST-EXPORT or /mnt/dest/smb-HOST-SHARE by the kernel's
/// client; an SMB password is asked with echo off, or read with
/// --password-file, and never shown or logged. Exit 0 mounted, 1 not
/// confirmed, 2 refused or failed.
#[argh(
    subcommand,
    name = "mount",
    error_code(0, "done: mounted read-write (or already mounted)"),
    error_code(1, "partial: not confirmed, nothing changed"),
    error_code(2, "error: usage error (unknown option, missing argument), no mountable filesystem on DEV, no terminal to ask on without --yes (and --on-rescued-disk for a disk being rescued), or the mount failed")
)]
pub struct MountCommand {
    /// device, e.g. /dev/vda or sdb2; or a network share:
    /// nfs://HOST[:PORT]/EXPORT[?mountport=N] (NFS v4, then v3 without
    /// locks) or smb://[USER@]HOST[:PORT]/SHARE (SMB 3.1.1, 3.0, 2.1; the
    /// password is asked with echo off)
    #[argh(positional)]
    pub device: String,
    /// smb://: read the password from the first line of FILE instead of
    /// asking
    #[argh(option)]
    pub password_file: Option<String>,
    /// smb://: log in anonymously as a guest, without a password
    #[argh(switch)]
    pub guest: bool,
    /// confirm without asking
    #[argh(switch)]
    pub yes: bool,
    /// confirm that the device is on a disk holding what is being rescued
    /// and may be written anyway
    #[argh(switch)]
    pub on_rescued_disk: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
/// Unmount a destination (device, mount point, or a network share's URL)
/// and make a disk read-only again. A network server that does not answer
/// within 20 s is unmounted by force. Exit 0 unmounted, 2 not a
/// destination mount or failed.
#[argh(
    subcommand,
    name = "umount",
    error_code(0, "done: unmounted and read-only again"),
    error_code(2, "error: usage error (unknown option, missing argument), not a mounted destination, or the unmount failed")
)]
pub struct UmountCommand {
    /// device or mount point
    #[argh(positional)]
    pub target: String,
}

fn mounts() -> String {
    std::fs::read_to_string("/proc/mounts").unwrap_or_default()
}

fn short(dev: &str) -> String {
    dev.trim_start_matches("/dev/").to_string()
}

/// Finds `device` among the candidates (by node or kernel name).
pub fn find<'a>(cands: &'a [Candidate], device: &str) -> Option<&'a Candidate> {
    let n = short(device);
    cands.iter().find(|c| c.name == n)
}

/// The commands' names in their messages (`rescue dest mount: ...`).
const LIST: &str = "dest list";
const MOUNT: &str = "dest mount";
const UMOUNT: &str = "dest umount";

/// Version of the `dest list --json` document ([`ListDocument`]).
pub const LIST_JSON_SCHEMA: u32 = 1;

/// The `dest list --json` document: the candidates under a name, so that
/// the document is an object with its `schema` like every other.
#[derive(Serialize)]
pub struct ListDocument<'a> {
    pub candidates: &'a [Candidate],
}

pub fn run(cmd: DestCommand, load: ModuleLoader<'_>) -> i32 {
    let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
    match cmd.action {
        Action::List(l) => {
            let ex: Vec<String> = l
                .exclude
                .iter()
                .map(|e| blockdev::sys::disk_of(sys, &short(e)))
                .collect();
            let c = list(sys, dev, &mounts(), &ex);
            if l.json {
                return cliconv::print_json(
                    LIST,
                    LIST_JSON_SCHEMA,
                    &ListDocument { candidates: &c },
                )
                .code();
            }
            print!("{}", render(&c));
            Exit::Done.code()
        }
        Action::Mount(m) if m.device.contains("://") => mount_network(&m, load),
        Action::Mount(m) => {
            if m.password_file.is_some() || m.guest {
                return cliconv::fail(MOUNT, "--password-file and --guest are for smb:// shares")
                    .code();
            }
            let c = list(sys, dev, &mounts(), &[]);
            let Some(c) = find(&c, &m.device) else {
                return cliconv::fail(
                    MOUNT,
                    format_args!(
                        "{}: no mountable filesystem there (see rescue dest list)",
                        m.device
                    ),
                )
                .code();
            };
            let mut asks: Vec<(String, String)> = Vec::new();
            if c.mounted_at.is_none() && !m.yes {
                asks.push((question(c), "yes".into()));
            }
            if c.mounted_at.is_none() && c.unsafe_reason.is_some() && !m.on_rescued_disk {
                asks.push((second_question(c), c.disk.clone()));
            }
            for (q, want) in &asks {
                match confirm(q, want) {
                    Ok(true) => {}
                    Ok(false) => {
                        cliconv::eprint(MOUNT, "not confirmed; nothing changed");
                        return Exit::Findings.code();
                    }
                    Err(e) => {
                        let why = format!(
                            "{e}{}",
                            if c.unsafe_reason.is_some() {
                                " (and --on-rescued-disk: this disk holds what is being rescued)"
                            } else {
                                ""
                            }
                        );
                        return cliconv::fail(MOUNT, why).code();
                    }
                }
            }
            match mount(c, dev, load, c.unsafe_reason.is_some()) {
                Ok(at) => {
                    println!("{} mounted read-write at {}", c.device, at.display());
                    Exit::Done.code()
                }
                Err(e) => cliconv::fail(MOUNT, e).code(),
            }
        }
        Action::Umount(u) => match unmount(sys, dev, &mounts(), &u.target) {
            Ok(s) => {
                println!("{s}");
                Exit::Done.code()
            }
            Err(e) => cliconv::fail(UMOUNT, e).code(),
        },
    }
}

/// `dest mount nfs://...` or `smb://...`: the URL checked, the password
/// read (file, prompt with echo off, or none for a guest), confirmed, and
/// mounted.
fn mount_network(m: &MountCommand, load: ModuleLoader<'_>) -> i32 {
    use crate::network::{Login, NetUrl, Scheme, Secret};
    let url = match NetUrl::parse(&m.device) {
        Ok(u) => u,
        Err(e) => return cliconv::fail(MOUNT, e).code(),
    };
    if url.scheme == Scheme::Nfs && (m.password_file.is_some() || m.guest) {
        return cliconv::fail(
            MOUNT,
            "--password-file and --guest are for smb:// shares (NFS has no login)",
        )
        .code();
    }
    if m.guest && m.password_file.is_some() {
        return cliconv::fail(MOUNT, "--guest or --password-file, not both").code();
    }
    let already = crate::network::entries(&mounts())
        .iter()
        .any(|(_, at, _)| Path::new(at) == crate::mount_point(&url.mount_name()));
    if !already && !m.yes {
        match confirm(&crate::network::question(&url), "yes") {
            Ok(true) => {}
            Ok(false) => {
                cliconv::eprint(MOUNT, "not confirmed; nothing changed");
                return Exit::Findings.code();
            }
            Err(e) => return cliconv::fail(MOUNT, e).code(),
        }
    }
    let login = if url.scheme == Scheme::Nfs || m.guest {
        Login::Guest
    } else if let Some(f) = &m.password_file {
        match std::fs::read(f) {
            Ok(t) => Login::Password(Secret::from_file_text(t)),
            Err(e) => return cliconv::fail(MOUNT, format_args!("{f}: {e}")).code(),
        }
    } else if already {
        Login::Guest
    } else {
        match ask_password(&url) {
            Ok(s) => Login::Password(s),
            Err(e) => return cliconv::fail(MOUNT, e).code(),
        }
    };
    match crate::network::mount(&url, &login, load, &net::dns::Files::system()) {
        Ok(done) => {
            for r in &done.refused {
                cliconv::eprint(MOUNT, format_args!("{} refused: {r}", url.text()));
            }
            println!(
                "{} mounted read-write at {} ({})",
                url.text(),
                done.at.display(),
                done.label
            );
            Exit::Done.code()
        }
        Err(e) => cliconv::fail(MOUNT, e).code(),
    }
}

/// Asks for an SMB password on the terminal, echo off.
fn ask_password(url: &crate::network::NetUrl) -> Result<crate::network::Secret, String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for the password on: use --password-file FILE (or --guest)".into(),
        );
    }
    eprint!(
        "Password for {}@{}: ",
        url.user.as_deref().unwrap_or("guest"),
        url.host
    );
    let _ = std::io::stderr().flush();
    let _quiet = screen::EchoOff::stdin();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(crate::network::Secret::from_file_text(line.into_bytes()))
}

/// The question asked before the write: what, where, and what it means.
pub fn question(c: &Candidate) -> String {
    format!(
        "Mount {} ({} {}, {}) read-write at {}?\nFiles written there change that disk; nothing else is touched.\nType yes to mount: ",
        c.device,
        c.filesystem,
        c.label.as_deref().map(|l| format!("\"{l}\"")).unwrap_or_else(|| "without label".into()),
        screen::human_size(c.size_bytes),
        crate::mount_point(&c.name).display()
    )
}

/// The second question for a filesystem on a disk being rescued: what the
/// disk holds, and the disk's name to type.
pub fn second_question(c: &Candidate) -> String {
    format!(
        "{} is not offered as a destination: {}.\nWriting there can destroy what you came \
         to rescue.\nType the disk's name ({}) to mount it anyway: ",
        c.device,
        c.unsafe_reason
            .as_deref()
            .unwrap_or("its disk holds data being rescued"),
        c.disk
    )
}

/// Asks `q` on the terminal; true when the answer is `want`.
fn confirm(q: &str, want: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask on: add --yes to confirm".into());
    }
    print!("{q}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim() == want)
}
