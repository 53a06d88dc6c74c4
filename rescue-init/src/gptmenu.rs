//! The menu's GPT view: findings, the repairs that fix them, each repair's
//! plan and byte diff, and a typed confirmation before anything is written.

use crate::menu::read_line;
use std::io::{BufRead, Write};

/// Where undo files go when there is no RESCUEDATA partition and the user
/// picks no destination (tmpfs: the user is told to copy them).
const UNDO_DIR: &str = "/run/rescue";

/// Where the undo file of a repair of `disk` goes, so that it outlives the
/// reboot the repair asks for: the boot stick's RESCUEDATA partition
/// (mounted for this if needed, and said so), else a destination the user
/// picks now, else RAM with a warning. None when the input ended.
fn undo_dir(
    disk: &probe::Disk,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Option<(std::path::PathBuf, bool)> {
    match crate::actionlog::rescue_data_dir() {
        Ok(Some(at)) => {
            let _ = writeln!(
                out,
                "The undo file goes to the boot stick's RESCUEDATA partition ({}).",
                at.display()
            );
            return Some((at.join("gpt-undo"), true));
        }
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(out, "RESCUEDATA could not be mounted: {e}");
        }
    }
    let _ = writeln!(
        out,
        "No RESCUEDATA partition: choose where the undo file is kept (it must\noutlive the reboot)."
    );
    match crate::destmenu::choose(
        std::slice::from_ref(&disk.name),
        "the undo file",
        input,
        out,
    ) {
        crate::destmenu::Chosen::Ended => None,
        crate::destmenu::Chosen::At(at, _) => Some((at.join("gpt-undo"), true)),
        crate::destmenu::Chosen::Back | crate::destmenu::Chosen::Lab => {
            Some((std::path::PathBuf::from(UNDO_DIR), false))
        }
    }
}

/// After a repair: re-read the partition table when nothing on the disk is
/// in use, if the user wants, so the repaired slots show without a reboot.
fn offer_reread(disk: &probe::Disk, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    if let Err(why) = gpt::inuse::check_not_in_use(std::path::Path::new(&disk.path)) {
        let _ = writeln!(
            out,
            "The kernel still shows the old partitions ({why}): reboot to see the change."
        );
        return true;
    }
    let _ = write!(
        out,
        "Make the kernel re-read the partition table of {} now (nothing on it\nis in use; nothing is written)? [y/N]: ",
        disk.path
    );
    let _ = out.flush();
    let Some(a) = read_line(input) else {
        return false;
    };
    if !a.trim().eq_ignore_ascii_case("y") {
        let _ = writeln!(out, "Not re-read: reboot to see the change.");
        return true;
    }
    match blockdev::reread_partitions(&disk.path) {
        Ok(()) => {
            log::info!(
                "gpt: partition table of {} re-read by the kernel",
                disk.path
            );
            let _ = writeln!(
                out,
                "Re-read: the kernel now shows the repaired partitions (r in the overview)."
            );
        }
        Err(e) => {
            let _ = writeln!(out, "Re-read failed: {e}; reboot to see the change.");
        }
    }
    true
}

/// The undo file's name part for `disk`: its serial when it has one (the
/// kernel name may differ after a reboot), else its kernel name.
fn undo_stem(disk: &probe::Disk) -> String {
    disk.serial
        .as_deref()
        .unwrap_or(&disk.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the GPT view of `disk`; false when the input ended.
pub fn run(disk: &probe::Disk, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    loop {
        let dev = match blockdev::Device::open(&disk.path) {
            Ok(d) => d,
            Err(e) => {
                let _ = writeln!(out, "cannot open {}: {e}", disk.path);
                return true;
            }
        };
        let view = gpt::read(&dev);
        let findings = gpt::verify::verify(&view);
        let _ = writeln!(out, "\nGPT of {}:", disk.path);
        let _ = write!(out, "{}", gpt::cli::render_findings(&findings));
        let suggestions = gpt::plan::suggestions(&dev, &view);
        if suggestions.is_empty() && gpt::cli::outcome(&findings).0 == "no-gpt" {
            // The overview offers this view for GPT disks only, but the table
            // may have gone since (wiped from the shell, another disk now).
            let _ = writeln!(
                out,
                "No repair is possible: neither GPT header is on this disk."
            );
        } else if suggestions.is_empty() {
            let _ = writeln!(
                out,
                "No repair is needed or possible from what is on this disk."
            );
        } else {
            let _ = writeln!(
                out,
                "Repairs that fix this (a plan is shown before anything is written):"
            );
            for (i, (mode, why)) in suggestions.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}",
                    probe::render::wrap_words(
                        &format!("  {}  {}: {why}", i + 1, mode.describe()),
                        probe::render::SCREEN_WIDTH,
                        5
                    )
                );
            }
        }
        let _ = write!(out, "Repair choice (Enter: back): ");
        let _ = out.flush();
        let Some(line) = read_line(input) else {
            return false;
        };
        let Ok(n) = line.trim().parse::<usize>() else {
            return true;
        };
        let Some((mode, _)) = suggestions.get(n.wrapping_sub(1)) else {
            let _ = writeln!(out, "'{}' is not one of the choices.", line.trim());
            continue;
        };
        let plan = match gpt::plan::plan(&dev, &view, mode) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(out, "no plan: {e}");
                continue;
            }
        };
        let _ = write!(out, "\n{}", plan.render());
        if plan.is_empty() {
            continue;
        }
        // Confirmation: the serial shown on screen, or the exact size.
        let (what, token) = match &disk.serial {
            Some(s) => ("serial number", s.clone()),
            None => ("size in bytes", disk.size_bytes.to_string()),
        };
        let _ = write!(
            out,
            "\nThis writes {} to {}.\nType its {what} ({token}) to write; anything else cancels: ",
            probe::render::plural(plan.changes.len() as u64, "sector", "sectors"),
            disk.path
        );
        let _ = out.flush();
        let Some(answer) = read_line(input) else {
            return false;
        };
        if answer.trim() != token {
            log::info!(
                "gpt repair of {} ({}) cancelled: confirmation not typed",
                disk.path,
                mode.describe()
            );
            let _ = writeln!(out, "Cancelled: nothing was written.");
            continue;
        }
        log::info!(
            "gpt repair of {} ({}) confirmed by typing its {what} {token}",
            disk.path,
            mode.describe()
        );
        let Some((dir, kept)) = undo_dir(disk, input, out) else {
            return false;
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let _ = writeln!(out, "{}: {e}; nothing was written.", dir.display());
            continue;
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let undo = dir.join(format!("gpt-undo-{}-{stamp}.bin", undo_stem(disk)));
        let _ = writeln!(
            out,
            "Undo file: {}{}",
            undo.display(),
            if kept {
                ""
            } else {
                " (in RAM: copy it to a destination before powering off)"
            }
        );
        let _ = out.flush();
        match gpt::apply::write_plan(&disk.path, &plan, &undo) {
            Ok(written) => {
                let _ = write!(out, "{}", gpt::repair_cli::render_written(&written));
                let _ = writeln!(out, "Repair written and verified.");
                let _ = writeln!(
                    out,
                    "To undo, even after a reboot: rescue gpt undo {} {} --write",
                    disk.path,
                    undo.display()
                );
                if !offer_reread(disk, input, out) {
                    return false;
                }
            }
            Err(e) => {
                let _ = writeln!(out, "Repair failed: {e}");
                let _ = writeln!(
                    out,
                    "Restore with: rescue gpt undo {} {} --write",
                    disk.path,
                    undo.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use testkit::gptdisk;

    /// An ESXi 5 boot disk image whose GPT entries were compacted (the
    /// restore-onto-a-RAID incident), as a probed disk with a serial.
    fn compacted_disk(t: &testkit::TempDir) -> probe::Disk {
        let sectors = 65536;
        let img = t.join("disk.img");
        let bytes = gptdisk::disk(sectors, 512, &gptdisk::compact(gptdisk::esxi5_parts()));
        std::fs::write(&img, bytes).unwrap();
        probe::Disk {
            name: "sdz".into(),
            path: img.display().to_string(),
            size_bytes: sectors * 512,
            serial: Some("SERIAL42".into()),
            ..Default::default()
        }
    }

    #[test]
    fn findings_repairs_and_plan_are_shown_and_a_wrong_confirmation_writes_nothing() {
        let t = testkit::TempDir::new("gptmenu-cancel");
        let disk = compacted_disk(&t);
        let before = std::fs::read(&disk.path).unwrap();
        let mut out = Vec::new();
        // Repair 1, then a wrong confirmation, then Enter: back.
        let more = run(&disk, &mut Cursor::new("1\nnot-the-serial\n\n"), &mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(more, "{out}");
        assert!(out.contains(&format!("GPT of {}:", disk.path)), "{out}");
        assert!(out.contains("esxi-compacted"), "{out}");
        assert!(out.contains("Repairs that fix this"), "{out}");
        assert!(out.contains("Type its serial number (SERIAL42)"), "{out}");
        assert!(out.contains("Cancelled: nothing was written."), "{out}");
        assert_eq!(
            std::fs::read(&disk.path).unwrap(),
            before,
            "the disk changed"
        );
    }

    #[test]
    fn a_choice_that_is_not_offered_is_said_and_the_input_end_ends() {
        let t = testkit::TempDir::new("gptmenu-choices");
        let disk = compacted_disk(&t);
        let mut out = Vec::new();
        let more = run(&disk, &mut Cursor::new("99\n"), &mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("'99' is not one of the choices."), "{out}");
        assert!(!more, "the input ended: {out}");
    }
}
