//! Choosing where rescued data goes, for the menu's imaging and extraction
//! flows: filesystems on other disks with their free space; one that is
//! not mounted yet is mounted read-write only after a typed `yes`.

use crate::menu::read_line;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Prints `q`, reads one answer (trimmed); None when the input ended.
pub fn ask(input: &mut impl BufRead, out: &mut impl Write, q: &str) -> Option<String> {
    let _ = write!(out, "{q}");
    let _ = out.flush();
    read_line(input).map(|l| l.trim().to_string())
}

pub enum Chosen {
    /// The input ended.
    Ended,
    /// The user went back, or there was nothing to choose.
    Back,
    /// Mounted at this directory, with this much free space if known.
    At(PathBuf, Option<u64>),
    /// To a lab host (`rescue receive`): offered only by [`choose_or_lab`].
    Lab,
}

/// The entry that streams to a lab host instead.
pub const LAB_ENTRY: &str = "  l   to a lab host (rescue receive, over the network)";

/// The entry that mounts a network share by URL.
pub const NET_ENTRY: &str = "  n   a network share: nfs://HOST/EXPORT or smb://[USER@]HOST/SHARE";

/// Asks for a network share's URL (and an SMB password, echo off; empty
/// for a guest), confirms and mounts it.
fn network_share(
    load: blockdev::sys::ModuleLoader<'_>,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    use dest::network::{Login, NetUrl, Scheme, Secret};
    let Some(text) = ask(input, out, "URL (Enter: back): ") else {
        return Chosen::Ended;
    };
    if text.is_empty() {
        return Chosen::Back;
    }
    let url = match NetUrl::parse(&text) {
        Ok(u) => u,
        Err(e) => {
            let _ = writeln!(out, "{e}");
            return Chosen::Back;
        }
    };
    let login = if url.scheme == Scheme::Smb {
        let _ = write!(
            out,
            "Password for {}@{} (not shown; Enter alone: as a guest): ",
            url.user.as_deref().unwrap_or("guest"),
            url.host
        );
        let _ = out.flush();
        let quiet = screen::EchoOff::stdin();
        let line = crate::menu::read_line(input);
        drop(quiet);
        if !std::io::stdin().is_terminal() {
            let _ = writeln!(out);
        }
        match line {
            None => return Chosen::Ended,
            Some(l) => {
                let pw = Secret::from_file_text(l.into_bytes());
                if pw.is_empty() {
                    Login::Guest
                } else {
                    Login::Password(pw)
                }
            }
        }
    } else {
        Login::Guest
    };
    let Some(yes) = ask(input, out, &dest::network::question(&url)) else {
        return Chosen::Ended;
    };
    if yes != "yes" {
        let _ = writeln!(out, "Not mounted; nothing changed.");
        return Chosen::Back;
    }
    let _ = writeln!(out, "Mounting {} ...", url.text());
    match dest::network::mount(&url, &login, load, &net::dns::Files::system()) {
        Ok(m) => {
            let _ = writeln!(
                out,
                "{} mounted read-write at {} ({})",
                url.text(),
                m.at.display(),
                m.label
            );
            let free = rustix::fs::statvfs(&m.at)
                .ok()
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
            Chosen::At(m.at, free)
        }
        Err(e) => {
            let _ = writeln!(out, "mount failed: {e}");
            Chosen::Back
        }
    }
}

/// Lets the user pick a destination for `what` on any disk but
/// `source_disks`, and mounts it if needed.
pub fn choose(
    source_disks: &[String],
    what: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    let machine = Machine {
        sys: Path::new("/sys"),
        dev: Path::new("/dev"),
        mounts: std::fs::read_to_string("/proc/mounts").unwrap_or_default(),
        load: &crate::modules::load_by_name,
    };
    choose_on(&machine, source_disks, what, input, out)
}

/// [`choose`], with "to a lab host" offered too ([`Chosen::Lab`]), also
/// when no local filesystem is usable.
pub fn choose_or_lab(
    source_disks: &[String],
    what: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    let machine = Machine {
        sys: Path::new("/sys"),
        dev: Path::new("/dev"),
        mounts: std::fs::read_to_string("/proc/mounts").unwrap_or_default(),
        load: &crate::modules::load_by_name,
    };
    choose_on_with(&machine, source_disks, what, true, input, out)
}

/// Where [`choose_on`] finds disks and mounts: the machine's own in the
/// appliance, a fake tree in tests.
pub struct Machine<'a> {
    pub sys: &'a Path,
    pub dev: &'a Path,
    /// The text of /proc/mounts.
    pub mounts: String,
    pub load: blockdev::sys::ModuleLoader<'a>,
}

/// [`choose`] on `machine`.
pub fn choose_on(
    machine: &Machine<'_>,
    source_disks: &[String],
    what: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    choose_on_with(machine, source_disks, what, false, input, out)
}

/// [`choose_on`], offering the lab host too when `lab`.
pub fn choose_on_with(
    machine: &Machine<'_>,
    source_disks: &[String],
    what: &str,
    lab: bool,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    let dev = machine.dev;
    let cands = dest::list(machine.sys, dev, &machine.mounts, source_disks);
    let usable: Vec<&dest::Candidate> = cands.iter().filter(|c| c.usable()).collect();
    let _ = writeln!(out, "\nDestination for {what}:");
    if usable.is_empty() {
        let _ = writeln!(
            out,
            "  no usable filesystem on another disk (attach one: ext4, xfs, btrfs, FAT, exFAT)"
        );
        let _ = write!(out, "{}", dest::render(&cands));
        let _ = writeln!(out, "{NET_ENTRY}");
        if lab {
            let _ = writeln!(out, "{LAB_ENTRY}");
        }
        return match ask(
            input,
            out,
            if lab {
                "n: a network share, l: to a lab host, Enter: back: "
            } else {
                "n: a network share, Enter: back: "
            },
        ) {
            None => Chosen::Ended,
            Some(a) if lab && a == "l" => Chosen::Lab,
            Some(a) if a == "n" => network_share(machine.load, input, out),
            Some(_) => Chosen::Back,
        };
    }
    for (i, c) in usable.iter().enumerate() {
        let row = format!(
            " {:>2}  {:<10} {:<6} {:<14} {:>10}  free {}  {}",
            i + 1,
            c.device,
            c.filesystem,
            c.label
                .as_deref()
                .map(|l| format!("\"{l}\""))
                .unwrap_or_default(),
            probe::render::human_size(c.size_bytes),
            c.free_bytes
                .map(|f| format!(
                    "{}{}",
                    if c.free_is_estimate { "~" } else { "" },
                    probe::render::human_size(f)
                ))
                .unwrap_or_else(|| "unknown".into()),
            c.mounted_at
                .as_deref()
                .map(|m| format!("mounted at {m}"))
                .unwrap_or_else(|| "not mounted".into())
        );
        let _ = write!(
            out,
            "{}",
            probe::render::wrap_words(&row, probe::render::SCREEN_WIDTH, 6)
        );
    }
    let _ = writeln!(out, "{NET_ENTRY}");
    if lab {
        let _ = writeln!(out, "{LAB_ENTRY}");
    }
    let _ = write!(out, "{}", dest::render_not_offered(&cands, 2));
    if cands.iter().any(|c| c.unsafe_reason.is_some()) {
        let _ = writeln!(
            out,
            "  (to write to a disk being rescued anyway: 'rescue dest mount DEVICE'\n   from the shell, which asks twice)"
        );
    }
    let Some(a) = ask(input, out, "Destination (Enter: back): ") else {
        return Chosen::Ended;
    };
    if lab && a == "l" {
        return Chosen::Lab;
    }
    if a == "n" {
        return network_share(machine.load, input, out);
    }
    let Some(dst) = crate::menu::pick(&a, &usable).copied() else {
        if !a.is_empty() {
            let _ = writeln!(out, "'{a}' is not one of the destinations.");
        }
        return Chosen::Back;
    };
    if let Some(m) = &dst.mounted_at {
        return Chosen::At(PathBuf::from(m), dst.free_bytes);
    }
    let Some(yes) = ask(input, out, &dest::cli::question(dst)) else {
        return Chosen::Ended;
    };
    if yes != "yes" {
        let _ = writeln!(out, "Not mounted; nothing changed.");
        return Chosen::Back;
    }
    log::info!(
        "destination {} for {what}: mount confirmed by typing yes",
        dst.device
    );
    match dest::mount(dst, dev, machine.load, false) {
        Ok(at) => {
            let _ = writeln!(out, "{} mounted read-write at {}", dst.device, at.display());
            Chosen::At(at, dst.free_bytes)
        }
        Err(e) => {
            let _ = writeln!(out, "mount failed: {e}");
            Chosen::Back
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A fake machine: disk `sdb` with partition `sdb1` holding ext4 (an
    /// image file standing in for the node), mounted at `at` if given.
    pub(crate) fn machine_with_ext4(
        t: &testkit::TempDir,
        mounted_at: Option<&str>,
    ) -> (PathBuf, PathBuf, String) {
        let sys = t.join("sys");
        let dev = t.join("dev");
        let disk = sys.join("devices/virtual/block/sdb");
        std::fs::create_dir_all(disk.join("sdb1")).unwrap();
        std::fs::create_dir_all(sys.join("class/block")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(disk.join("sdb1/partition"), "1\n").unwrap();
        std::os::unix::fs::symlink(&disk, sys.join("class/block/sdb")).unwrap();
        std::os::unix::fs::symlink(disk.join("sdb1"), sys.join("class/block/sdb1")).unwrap();
        let img = dev.join("sdb1");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(48 << 20)
            .unwrap();
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "BACKUP"])
            .arg(&img)
            .status()
            .unwrap_or_else(|e| panic!("mkfs.ext4 is needed for this test: {e}"));
        assert!(made.success());
        let mounts = mounted_at
            .map(|at| format!("/dev/sdb1 {at} ext4 rw 0 0\n"))
            .unwrap_or_default();
        (sys, dev, mounts)
    }

    pub(crate) fn no_modules(_: &str) -> Result<(), String> {
        Err("no module loading in tests".into())
    }

    /// Runs the chooser on the fake machine with `source` as the disk being
    /// rescued and `input` as what the user types: the choice and the screen.
    fn choose_with(
        (sys, dev, mounts): &(PathBuf, PathBuf, String),
        source: &str,
        input: &str,
    ) -> (Chosen, String) {
        let m = Machine {
            sys,
            dev,
            mounts: mounts.clone(),
            load: &no_modules,
        };
        let mut out = Vec::new();
        let got = choose_on(
            &m,
            &[source.into()],
            "the image",
            &mut Cursor::new(input.to_string()),
            &mut out,
        );
        (got, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn the_lab_host_is_offered_only_when_asked_for() {
        let t = testkit::TempDir::new("destmenu-lab");
        let machine = machine_with_ext4(&t, Some("/mnt/dest/sdb1"));
        let (sys, dev, mounts) = &machine;
        let m = Machine {
            sys,
            dev,
            mounts: mounts.clone(),
            load: &no_modules,
        };
        let mut out = Vec::new();
        let got = choose_on_with(
            &m,
            &["sda".into()],
            "the image",
            true,
            &mut Cursor::new("l\n".to_string()),
            &mut out,
        );
        let out = String::from_utf8_lossy(&out);
        assert!(matches!(got, Chosen::Lab), "{out}");
        assert!(out.contains(LAB_ENTRY), "{out}");
        // Not offered: 'l' is no destination.
        let (got, out) = choose_with(&machine, "sda", "l\n");
        assert!(matches!(got, Chosen::Back), "{out}");
        assert!(!out.contains(LAB_ENTRY), "{out}");
        // Offered even when no local filesystem is usable.
        let t2 = testkit::TempDir::new("destmenu-lab-empty");
        let empty = machine_with_ext4(&t2, None);
        let m = Machine {
            sys: &empty.0,
            dev: &empty.1,
            mounts: String::new(),
            load: &no_modules,
        };
        let mut out = Vec::new();
        let got = choose_on_with(
            &m,
            &["sdb".into()],
            "the image",
            true,
            &mut Cursor::new("l\n".to_string()),
            &mut out,
        );
        assert!(
            matches!(got, Chosen::Lab),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn a_network_share_is_offered_and_a_bad_url_goes_back() {
        let t = testkit::TempDir::new("destmenu-net");
        let machine = machine_with_ext4(&t, Some("/mnt/dest/sdb1"));
        let (got, out) = choose_with(&machine, "sda", "n\nsmb://u:pw@host/share\n");
        assert!(out.contains(NET_ENTRY), "{out}");
        assert!(out.contains("no password in the URL"), "{out}");
        assert!(matches!(got, Chosen::Back), "{out}");
        // Not confirmed: nothing is mounted, and the password is not shown.
        let (got, out) = choose_with(&machine, "sda", "n\nsmb://u@host/share\nsecret\nno\n");
        assert!(out.contains("Type yes to mount"), "{out}");
        assert!(out.contains("Not mounted; nothing changed."), "{out}");
        assert!(!out.contains("secret"), "{out}");
        assert!(matches!(got, Chosen::Back), "{out}");
        // Offered also when no local filesystem is usable.
        let (_, out) = choose_with(&machine, "sdb", "\n");
        assert!(out.contains(NET_ENTRY), "{out}");
    }

    #[test]
    fn a_mounted_destination_is_chosen_without_mounting_anything() {
        let t = testkit::TempDir::new("destmenu-mounted");
        let machine = machine_with_ext4(&t, Some("/mnt/dest/sdb1"));
        let (got, out) = choose_with(&machine, "sda", "1\n");
        assert!(out.contains("Destination for the image:"), "{out}");
        assert!(
            out.contains("/dev/sdb1") && out.contains("\"BACKUP\""),
            "{out}"
        );
        // Wrapped at 79 columns.
        assert!(out.contains("mounted at\n      /mnt/dest/sdb1"), "{out}");
        match got {
            Chosen::At(at, _) => assert_eq!(at, Path::new("/mnt/dest/sdb1")),
            _ => panic!("expected the mounted destination\n{out}"),
        }
    }

    #[test]
    fn mounting_needs_a_typed_yes_and_the_source_disk_is_not_offered() {
        let t = testkit::TempDir::new("destmenu-unmounted");
        let machine = machine_with_ext4(&t, None);
        let (got, out) = choose_with(&machine, "sda", "1\ny\n");
        assert!(out.contains("not mounted"), "{out}");
        assert!(out.contains("Not mounted; nothing changed."), "{out}");
        assert!(matches!(got, Chosen::Back), "{out}");

        // The same filesystem on the disk being rescued is not offered.
        let (got, out) = choose_with(&machine, "sdb", "\n");
        assert!(
            out.contains("no usable filesystem on another disk"),
            "{out}"
        );
        assert!(matches!(got, Chosen::Back), "{out}");
        let (got, _) = choose_with(&machine, "sdb", "");
        assert!(matches!(got, Chosen::Ended));
    }
}
