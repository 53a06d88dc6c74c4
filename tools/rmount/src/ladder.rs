//! The attempt ladder: for a filesystem kind and what else is visible on
//! the machine, the read-only mounts to try, in order, each one giving up
//! a little more consistency to get the files back without writing.
//! A pure function, so every rung is unit-tested.

use fsmagic::Kind;
use serde::Serialize;
use std::path::PathBuf;

/// What the machine shows besides the device to mount, as far as the
/// ladder cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visible {
    /// XFS: other block devices with the same filesystem UUID (kernel
    /// names). The kernel refuses a second XFS with a UUID it has mounted
    /// unless `nouuid` is given.
    pub same_uuid: Vec<String>,
    /// btrfs: other devices with the same fsid and device id, i.e. copies
    /// of this device (a raw copy, an md mirror leg). The kernel tracks
    /// btrfs devices by fsid and devid, so it may read the wrong copy.
    pub btrfs_copies: Vec<String>,
    /// btrfs: device nodes of the other members (same fsid, other devid)
    /// of a multi-device filesystem, passed as `device=`.
    pub btrfs_members: Vec<PathBuf>,
    /// ext2/3/4: the backup superblocks to try, in 1 KiB units (the unit
    /// of the `sb=` mount option whatever the block size).
    pub ext_backups: Vec<u64>,
    /// The ntfs-3g program, when found.
    pub ntfs3g: Option<PathBuf>,
}

/// How an attempt mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum Method {
    /// mount(2) with the kernel's driver.
    Kernel {
        fstype: &'static str,
        #[serde(skip)]
        modules: &'static [&'static str],
    },
    /// The ntfs-3g FUSE driver, run as `ntfs-3g -o OPTIONS DEV DIR`.
    Ntfs3g { program: PathBuf },
}

/// One rung of the ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The options as mount(8) would show them, `ro` first. The `ro` is
    /// MS_RDONLY, not part of mount(2)'s data (see [`Attempt::data`]).
    pub options: String,
    pub method: Method,
    /// What this rung gives up, for the report.
    pub meaning: &'static str,
}

impl Attempt {
    /// mount(2)'s data string: the options without `ro` (which is the
    /// MS_RDONLY flag; btrfs's legacy parser in 6.1 does not know it as
    /// an option). None when nothing is left.
    pub fn data(&self) -> Option<String> {
        let rest: Vec<&str> = self.options.split(',').filter(|o| *o != "ro").collect();
        (!rest.is_empty()).then(|| rest.join(","))
    }
}

/// Why nothing is tried at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The kernel's mount for `kind` on the appliance. FAT12 mounts with the
/// same vfat driver and options as FAT16 (fsmagic lists only FAT16/32 as
/// destinations, which FAT12 never is).
fn kernel(kind: Kind) -> Option<fsmagic::KernelMount> {
    match kind {
        Kind::Fat12 => Kind::Fat16.kernel_mount(),
        k => k.kernel_mount(),
    }
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

/// The attempts for `kind`, in order, or why none is made.
///
/// - ext2/3/4: `ro,noload` (no journal replay), then `ro,noload,sb=N` for
///   each backup superblock in `visible.ext_backups`;
/// - XFS: `ro,norecovery` (no log replay), with `nouuid` when another
///   device shows the same UUID;
/// - btrfs: `ro`, `ro,rescue=usebackuproot`, `ro,rescue=all`; refused when
///   a copy of the device is visible; other members as `device=`;
/// - FAT, exFAT: `ro` with the charset options destinations use;
/// - NTFS: `ntfs-3g -o ro` (refused without ntfs-3g);
/// - anything else (swap, LVM PV, ISO9660): refused, saying why.
pub fn ladder(kind: Kind, visible: &Visible) -> Result<Vec<Attempt>, Refusal> {
    let mut out = Vec::new();
    match kind {
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => {
            let m = kernel(kind).expect("ext mounts with ext4");
            let method = Method::Kernel {
                fstype: m.fstype,
                modules: m.modules,
            };
            out.push(Attempt {
                options: "ro,noload".into(),
                method: method.clone(),
                meaning: "read-only, journal not replayed: the last transactions may be missing",
            });
            for sb in &visible.ext_backups {
                out.push(Attempt {
                    options: format!("ro,noload,sb={sb}"),
                    method: method.clone(),
                    meaning: "backup superblock and group descriptors (sb= counts 1 KiB units): \
                              counters and the newest metadata may be stale",
                });
            }
        }
        Kind::Xfs => {
            let m = kernel(kind).expect("xfs mounts");
            let nouuid = if visible.same_uuid.is_empty() {
                ""
            } else {
                "nouuid"
            };
            out.push(Attempt {
                options: join(&["ro", "norecovery", nouuid]),
                method: Method::Kernel {
                    fstype: m.fstype,
                    modules: m.modules,
                },
                meaning: "read-only, log not replayed: recent changes may be missing or \
                          inconsistent",
            });
        }
        Kind::Btrfs => {
            if !visible.btrfs_copies.is_empty() {
                return Err(Refusal(format!(
                    "another device shows the same btrfs filesystem and device id ({}): the \
                     kernel tracks btrfs devices by fsid and may read the other copy; detach \
                     or unplug the copy first",
                    visible.btrfs_copies.join(", ")
                )));
            }
            let m = kernel(kind).expect("btrfs mounts");
            let method = Method::Kernel {
                fstype: m.fstype,
                modules: m.modules,
            };
            let devices: Vec<String> = visible
                .btrfs_members
                .iter()
                .map(|p| format!("device={}", p.display()))
                .collect();
            let devices = devices.join(",");
            for (opt, meaning) in [
                ("", "read-only"),
                (
                    "rescue=usebackuproot",
                    "read-only from an older tree root if the newest is damaged",
                ),
                (
                    "rescue=all",
                    "read-only, no log replay, damaged roots skipped, checksums not verified: \
                     files may hold wrong data without an error",
                ),
            ] {
                out.push(Attempt {
                    options: join(&["ro", opt, &devices]),
                    method: method.clone(),
                    meaning,
                });
            }
        }
        Kind::Fat12 | Kind::Fat16 | Kind::Fat32 | Kind::Exfat => {
            let m = kernel(kind).expect("FAT and exFAT mount");
            out.push(Attempt {
                options: join(&["ro", m.options.unwrap_or("")]),
                method: Method::Kernel {
                    fstype: m.fstype,
                    modules: m.modules,
                },
                meaning: "read-only",
            });
        }
        Kind::Ntfs => {
            let program = visible.ntfs3g.clone().ok_or_else(|| {
                Refusal(
                    "NTFS needs ntfs-3g (the kernel has no NTFS driver), and no ntfs-3g was \
                     found on PATH or at /usr/bin/ntfs-3g"
                        .into(),
                )
            })?;
            out.push(Attempt {
                options: "ro".into(),
                method: Method::Ntfs3g { program },
                meaning: "read-only through ntfs-3g (FUSE)",
            });
        }
        Kind::Swap | Kind::LvmPv | Kind::Iso9660 => {
            return Err(Refusal(format!(
                "{} is not a filesystem this command mounts{}",
                kind.name(),
                match kind {
                    Kind::LvmPv =>
                        " (an LVM physical volume: its logical volumes are not \
                                    activated here yet)",
                    Kind::Iso9660 => " (optical media are not rescued here)",
                    _ => "",
                }
            )))
        }
    }
    Ok(out)
}

/// The modules an attempt needs before it can run.
pub fn modules(a: &Attempt) -> &'static [&'static str] {
    match &a.method {
        Method::Kernel { modules, .. } => modules,
        Method::Ntfs3g { .. } => &["fuse"],
    }
}

/// What could still get files off `kind` when no mount works: a tool that
/// reads the unmounted device, where one exists.
pub fn file_level_recovery(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Btrfs => Some(
            "a `btrfs restore`-style copy (reads the unmounted device, tries older tree roots \
             and superblock mirrors, never writes) could still get files back; it is not in \
             this appliance yet",
        ),
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => Some(
            "a `debugfs rdump`-style copy (reads inodes and directories of the unmounted \
             device, from a backup superblock if need be, never writes) could still get files \
             back; it is not in this appliance yet",
        ),
        Kind::Ntfs => Some(
            "an `ntfscat`/`ntfsls`-style copy (ntfsprogs: reads the unmounted volume's MFT) \
             could still get files back; it is not in this appliance yet",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kind: Kind, v: &Visible) -> Vec<String> {
        ladder(kind, v)
            .unwrap()
            .into_iter()
            .map(|a| a.options)
            .collect()
    }

    #[test]
    fn ext_noload_then_each_backup_superblock() {
        let v = Visible {
            ext_backups: vec![131072, 393216],
            ..Visible::default()
        };
        for k in [Kind::Ext2, Kind::Ext3, Kind::Ext4] {
            assert_eq!(
                opts(k, &v),
                ["ro,noload", "ro,noload,sb=131072", "ro,noload,sb=393216"]
            );
            let a = &ladder(k, &v).unwrap()[0];
            assert!(matches!(a.method, Method::Kernel { fstype: "ext4", .. }));
            assert_eq!(a.data().as_deref(), Some("noload"));
        }
        assert_eq!(opts(Kind::Ext4, &Visible::default()), ["ro,noload"]);
    }

    #[test]
    fn xfs_norecovery_and_nouuid_only_with_a_twin() {
        assert_eq!(opts(Kind::Xfs, &Visible::default()), ["ro,norecovery"]);
        let twin = Visible {
            same_uuid: vec!["sdc1".into()],
            ..Visible::default()
        };
        assert_eq!(opts(Kind::Xfs, &twin), ["ro,norecovery,nouuid"]);
    }

    #[test]
    fn btrfs_three_rungs_refused_with_a_copy_members_as_devices() {
        assert_eq!(
            opts(Kind::Btrfs, &Visible::default()),
            ["ro", "ro,rescue=usebackuproot", "ro,rescue=all"]
        );
        let first = &ladder(Kind::Btrfs, &Visible::default()).unwrap()[0];
        assert_eq!(first.data(), None, "ro alone is only the flag");
        let copy = Visible {
            btrfs_copies: vec!["sdb".into(), "nbd0p2".into()],
            ..Visible::default()
        };
        let why = ladder(Kind::Btrfs, &copy).unwrap_err().0;
        assert!(why.contains("sdb, nbd0p2") && why.contains("fsid"), "{why}");
        let members = Visible {
            btrfs_members: vec!["/dev/sdc".into()],
            ..Visible::default()
        };
        assert_eq!(
            opts(Kind::Btrfs, &members),
            [
                "ro,device=/dev/sdc",
                "ro,rescue=usebackuproot,device=/dev/sdc",
                "ro,rescue=all,device=/dev/sdc"
            ]
        );
    }

    #[test]
    fn fat_and_exfat_read_only_with_charsets() {
        for k in [Kind::Fat12, Kind::Fat16, Kind::Fat32] {
            let a = ladder(k, &Visible::default()).unwrap();
            assert_eq!(a.len(), 1);
            assert!(
                a[0].options.starts_with("ro,utf8=1,iocharset=ascii"),
                "{a:?}"
            );
            assert!(matches!(a[0].method, Method::Kernel { fstype: "vfat", .. }));
            assert!(modules(&a[0]).contains(&"nls_cp437"));
        }
        let a = ladder(Kind::Exfat, &Visible::default()).unwrap();
        assert_eq!(a[0].options, "ro,iocharset=utf8,errors=remount-ro");
        assert_eq!(
            a[0].data().as_deref(),
            Some("iocharset=utf8,errors=remount-ro")
        );
    }

    #[test]
    fn ntfs_through_ntfs3g_or_refused() {
        let why = ladder(Kind::Ntfs, &Visible::default()).unwrap_err().0;
        assert!(why.contains("ntfs-3g"), "{why}");
        let v = Visible {
            ntfs3g: Some("/usr/bin/ntfs-3g".into()),
            ..Visible::default()
        };
        let a = ladder(Kind::Ntfs, &v).unwrap();
        assert_eq!(a[0].options, "ro");
        assert_eq!(modules(&a[0]), ["fuse"]);
        assert!(matches!(&a[0].method, Method::Ntfs3g { program } if program.ends_with("ntfs-3g")));
    }

    #[test]
    fn non_filesystems_refused_and_recovery_hints() {
        for k in [Kind::Swap, Kind::LvmPv, Kind::Iso9660] {
            let why = ladder(k, &Visible::default()).unwrap_err().0;
            assert!(why.contains(k.name()), "{why}");
        }
        assert!(file_level_recovery(Kind::Btrfs)
            .unwrap()
            .contains("btrfs restore"));
        assert!(file_level_recovery(Kind::Ext4).unwrap().contains("debugfs"));
        assert_eq!(file_level_recovery(Kind::Xfs), None);
    }
}
