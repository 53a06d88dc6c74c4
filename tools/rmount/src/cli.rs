//! `rescue mount DEV [DIR]` and `rescue umount DIR|DEV`: thin fronts over
//! [`crate::mount`] and [`crate::umount`].

use crate::{AttemptReport, Failure, Mounted, Request, WriteCount};
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use fsmagic::Kind;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(FromArgs, Debug, PartialEq)]
/// Mount a filesystem being rescued read-only, at DIR (default
/// /mnt/NAME). The device and its disk are set read-only in the block layer
/// first, then the filesystem's recovery options are tried in order, each
/// reported with the kernel's messages: ext2/3/4 ro,noload then backup
/// superblocks (sb=); XFS ro,norecovery (nouuid when a copy is visible);
/// btrfs ro, ro,rescue=usebackuproot, ro,rescue=all (refused while a copy of
/// the device is visible); FAT and exFAT ro; NTFS through ntfs-3g -o ro. The
/// device's write counter is compared before and after. Unmount with rescue
/// umount.
#[argh(
    subcommand,
    name = "mount",
    error_code(0, "done: mounted read-only"),
    error_code(
        1,
        "findings: mounted, but the device's write counter changed during the mount"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), not a block device, already \
         mounted, DIR is a mount point, no filesystem found, refused (a btrfs copy visible, no \
         ntfs-3g), or no option set mounted it"
    )
)]
pub struct MountCommand {
    /// device, e.g. /dev/sdb1, sdb1 or nbd0p1
    #[argh(positional)]
    pub device: String,
    /// mount point (default /mnt/NAME; created, and removed by umount)
    #[argh(positional)]
    pub dir: Option<PathBuf>,
    /// the filesystem when its signature is damaged: ext2, ext3, ext4, xfs,
    /// btrfs, ntfs, exfat, fat12, fat16, fat32
    #[argh(option, short = 't', long = "type")]
    pub kind: Option<String>,
    /// JSON output: the attempts (options, result, kernel messages), the
    /// mount point, the filesystem kind
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
/// Unmount what rescue mount mounted (by mount point or device): for
/// ntfs-3g waits for its process to exit; removes the directory the mount
/// created. The device stays read-only.
#[argh(
    subcommand,
    name = "umount",
    error_code(0, "done: unmounted"),
    error_code(
        1,
        "findings: unmounted, but the write counter moved while mounted or ntfs-3g did not exit"
    ),
    error_code(
        2,
        "error: usage error (unknown option, missing argument), not mounted by rescue mount, or \
         the unmount failed (busy)"
    )
)]
pub struct UmountCommand {
    /// mount point or device
    #[argh(positional)]
    pub target: String,
}

const MOUNT: &str = "mount";
const UMOUNT: &str = "umount";

/// Version of the `mount --json` document ([`MountDocument`]).
pub const MOUNT_JSON_SCHEMA: u32 = 1;

/// The `mount --json` document, for a mount that worked or not.
#[derive(Serialize)]
pub struct MountDocument<'a> {
    pub device: &'a str,
    pub kind: Option<Kind>,
    pub mounted: bool,
    pub mount_point: Option<&'a Path>,
    /// The options that mounted it.
    pub options: Option<&'a str>,
    pub attempts: &'a [AttemptReport],
    pub writes: &'a [WriteCount],
    pub writes_changed: bool,
    pub notes: &'a [String],
    /// Why nothing was mounted.
    pub error: Option<&'a str>,
    /// A file-level recovery that would still work.
    pub recovery: Option<&'a str>,
}

impl<'a> MountDocument<'a> {
    pub fn of(result: &'a Result<Mounted, Box<Failure>>) -> MountDocument<'a> {
        match result {
            Ok(m) => MountDocument {
                device: &m.device,
                kind: Some(m.kind),
                mounted: true,
                mount_point: Some(&m.mount_point),
                options: Some(&m.options),
                attempts: &m.attempts,
                writes: &m.writes,
                writes_changed: m.writes_changed(),
                notes: &m.notes,
                error: None,
                recovery: None,
            },
            Err(f) => MountDocument {
                device: &f.device,
                kind: f.kind,
                mounted: false,
                mount_point: None,
                options: None,
                attempts: &f.attempts,
                writes: &f.writes,
                writes_changed: f.writes.iter().any(WriteCount::changed),
                notes: &f.notes,
                error: Some(&f.reason),
                recovery: f.recovery,
            },
        }
    }
}

/// The kinds `--type` names, case-insensitively.
pub fn parse_kind(name: &str) -> Option<Kind> {
    [
        Kind::Ext2,
        Kind::Ext3,
        Kind::Ext4,
        Kind::Xfs,
        Kind::Btrfs,
        Kind::Ntfs,
        Kind::Exfat,
        Kind::Fat12,
        Kind::Fat16,
        Kind::Fat32,
    ]
    .into_iter()
    .find(|k| k.name().eq_ignore_ascii_case(name))
}

fn writes_line(w: &[WriteCount]) -> String {
    w.iter()
        .map(|w| {
            format!(
                "{} {} -> {}{}",
                w.device,
                w.before,
                w.after,
                if w.changed() {
                    " CHANGED"
                } else {
                    " (unchanged)"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rescue mount`.
pub fn run_mount(cmd: MountCommand, load: ModuleLoader<'_>) -> i32 {
    let mut req = Request::new(cmd.device);
    req.dir = cmd.dir;
    if let Some(t) = &cmd.kind {
        match parse_kind(t) {
            Some(k) => req.kind = Some(k),
            None => {
                return cliconv::fail(
                    MOUNT,
                    format_args!(
                        "--type {t}: expected ext2, ext3, ext4, xfs, btrfs, ntfs, exfat, fat12, \
                         fat16 or fat32"
                    ),
                )
                .code()
            }
        }
    }
    let result = if cmd.json {
        crate::mount(&req, load, &mut std::io::sink())
    } else {
        crate::mount(&req, load, &mut std::io::stdout())
    };
    let exit = match &result {
        Ok(m) if m.writes_changed() => Exit::Findings,
        Ok(_) => Exit::Done,
        Err(_) => Exit::Error,
    };
    if cmd.json {
        let printed = cliconv::print_json(MOUNT, MOUNT_JSON_SCHEMA, &MountDocument::of(&result));
        return exit.max(printed).code();
    }
    match &result {
        Ok(m) => {
            println!(
                "{} ({}) mounted read-only at {} with {}",
                m.device,
                m.kind.name(),
                m.mount_point.display(),
                m.options
            );
            for n in &m.notes {
                println!("  {n}");
            }
            println!("  write counters: {}", writes_line(&m.writes));
        }
        Err(f) => {
            for n in &f.notes {
                println!("  {n}");
            }
            if !f.writes.is_empty() {
                println!("  write counters: {}", writes_line(&f.writes));
            }
            cliconv::eprint(MOUNT, &f.reason);
            if let Some(r) = f.recovery {
                cliconv::eprint(MOUNT, format_args!("what would still work: {r}"));
            }
        }
    }
    exit.code()
}

/// `rescue umount`.
pub fn run_umount(cmd: UmountCommand) -> i32 {
    match crate::umount(&crate::Paths::default(), &cmd.target) {
        Ok(u) => {
            println!(
                "{} unmounted from {}{}",
                u.device,
                u.dir.display(),
                if u.removed_dir {
                    "; directory removed"
                } else {
                    ""
                }
            );
            for n in &u.notes {
                println!("  {n}");
            }
            if let Some(w) = &u.writes {
                println!("  write counter: {}", writes_line(std::slice::from_ref(w)));
            }
            Exit::findings_if(u.problems()).code()
        }
        Err(e) => cliconv::fail(UMOUNT, e).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_case_insensitively() {
        assert_eq!(parse_kind("ext4"), Some(Kind::Ext4));
        assert_eq!(parse_kind("NTFS"), Some(Kind::Ntfs));
        assert_eq!(parse_kind("ntfs"), Some(Kind::Ntfs));
        assert_eq!(parse_kind("exfat"), Some(Kind::Exfat));
        assert_eq!(parse_kind("swap"), None);
    }

    #[test]
    fn json_document_of_a_failure_has_schema_first_and_the_attempts() {
        let f: Result<Mounted, Box<Failure>> = Err(Box::new(Failure {
            device: "/dev/sdb1".into(),
            kind: Some(Kind::Btrfs),
            reason: "did not mount".into(),
            attempts: vec![AttemptReport {
                options: "ro".into(),
                by: "kernel",
                fstype: "btrfs",
                meaning: "read-only",
                result: "failed",
                error: Some("Invalid argument".into()),
                kernel: vec!["BTRFS error (device sdb1): bad tree block".into()],
            }],
            recovery: crate::ladder::file_level_recovery(Kind::Btrfs),
            writes: vec![WriteCount {
                device: "sdb1".into(),
                before: 3,
                after: 3,
            }],
            notes: vec![],
        }));
        let text = cliconv::json_text(MOUNT_JSON_SCHEMA, &MountDocument::of(&f)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            text.trim_start().starts_with("{\n  \"schema\": 1"),
            "{text}"
        );
        assert_eq!(v["kind"], "btrfs");
        assert_eq!(v["mounted"], false);
        assert_eq!(v["attempts"][0]["options"], "ro");
        assert_eq!(v["attempts"][0]["result"], "failed");
        assert_eq!(
            v["attempts"][0]["kernel"][0],
            "BTRFS error (device sdb1): bad tree block"
        );
        assert_eq!(v["writes_changed"], false);
        assert!(v["recovery"].as_str().unwrap().contains("btrfs restore"));
        assert_eq!(v["mount_point"], serde_json::Value::Null);
    }
}
