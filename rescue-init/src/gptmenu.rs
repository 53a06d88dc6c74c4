//! The menu's GPT view: findings, the repairs that fix them, each repair's
//! plan and byte diff, and a typed confirmation before anything is written.

use crate::menu::read_line;
use std::io::{BufRead, Write};

/// Where undo files go in the appliance (tmpfs: the user is told to copy
/// them to a destination).
const UNDO_DIR: &str = "/run/rescue";

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
        if suggestions.is_empty() {
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
                let _ = writeln!(out, "  {}  {}: {why}", i + 1, mode.describe());
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
            "\nThis writes {} sectors to {}. Type its {what} ({token}) to write; anything else cancels: ",
            plan.changes.len(),
            disk.path
        );
        let _ = out.flush();
        let Some(answer) = read_line(input) else {
            return false;
        };
        if answer.trim() != token {
            let _ = writeln!(out, "Cancelled: nothing was written.");
            continue;
        }
        let _ = std::fs::create_dir_all(UNDO_DIR);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let undo =
            std::path::PathBuf::from(format!("{UNDO_DIR}/gpt-undo-{}-{stamp}.bin", disk.name));
        let _ = writeln!(
            out,
            "Undo file: {} (in RAM: copy it to a destination before powering off)",
            undo.display()
        );
        let _ = out.flush();
        match gpt::repair_cli::write_plan(&disk.path, &plan, &undo) {
            Ok(()) => {
                let _ = writeln!(out, "Repair written and verified.");
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
