//! The menu's md RAID view: arrays found on the disks with their state and
//! whether the kernel runs them; per array a read-only verify, read-only
//! assembly with the filesystem mounted, stop, and the kernel's check
//! (which asks first and says what it writes).

use crate::menu::read_line;
use mdkernel::cli::{exit_code, AssembleCommand, CheckCommand};
use mdkernel::Md;
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;

/// Runs the md view; false when the input ended.
pub fn run(input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let md = Md::system();
    // Scanning and assembly need the driver's modules; loading them writes
    // nothing.
    let _ = crate::modules::load_by_name("md_mod");
    loop {
        let report = mdkernel::cli::scan_system();
        let _ = writeln!(out, "\nmd arrays (from the members' superblocks):");
        if report.arrays.is_empty() {
            let _ = writeln!(
                out,
                "  none found on {}",
                probe::render::plural(report.scanned as u64, "device", "devices")
            );
        }
        for (i, a) in report.arrays.iter().enumerate() {
            let running = md
                .running_for(a)
                .map(|r| format!("/dev/{} ({})", r.name, r.array_state))
                .unwrap_or_else(|| "not assembled".into());
            let members: Vec<&str> = a
                .members
                .iter()
                .map(|m| mdkernel::kernel_name(&m.device))
                .collect();
            let row = format!(
                // The identity, then the state, then the members: each
                // line short enough that no phrase is split.
                " {:>2}  {} {}\n      {} {}  {}  {}\n      members {}{}",
                i + 1,
                a.uuid,
                a.name.as_deref().unwrap_or("-"),
                a.level,
                a.state,
                a.contents.as_deref().unwrap_or(""),
                running,
                members.join(" "),
                if a.stale.is_empty() {
                    String::new()
                } else {
                    format!(", stale {}", a.stale.join(" "))
                }
            );
            let _ = write!(
                out,
                "{}",
                probe::render::wrap_text(&row, probe::render::SCREEN_WIDTH)
            );
        }
        if report.arrays.is_empty() {
            let _ = write!(out, "Enter: back: ");
        } else {
            let _ = write!(
                out,
                "Array 1-{} (Enter: back to the overview): ",
                report.arrays.len()
            );
        }
        let _ = out.flush();
        let Some(line) = read_line(input) else {
            return false;
        };
        let n = match line.trim() {
            "" => return true,
            s => match s.parse::<usize>() {
                Ok(n) if n >= 1 && n <= report.arrays.len() => n,
                _ => {
                    let _ = writeln!(out, "'{s}' is not one of the arrays.");
                    continue;
                }
            },
        };
        let a = &report.arrays[n - 1];
        let assembled = md.running_for(a);
        let prompt = probe::render::wrap_words(
            &format!(
                "Array {}: v verify (reads only), {}c kernel check (asks first), Enter: back:",
                a.name.as_deref().unwrap_or(&a.uuid),
                if assembled.is_some() {
                    "s stop, "
                } else {
                    "a assemble read-only and mount, "
                }
            ),
            probe::render::SCREEN_WIDTH,
            2,
        );
        let _ = write!(out, "\n{} ", prompt.trim_end());
        let _ = out.flush();
        let Some(choice) = read_line(input) else {
            return false;
        };
        let _ = out.flush();
        let code = match choice.trim() {
            "v" => mdraid::cli::run_verify(mdraid::cli::VerifyCommand {
                targets: vec![a.uuid.clone()],
                json: false,
                quiet: false,
                max_listed: 20,
                batch_mib: 4,
            }),
            "a" if assembled.is_none() => exit_code(mdkernel::cli::assemble(
                &md,
                &AssembleCommand {
                    array: a.uuid.clone(),
                    readonly: true,
                    mount: true,
                },
                &crate::modules::load_by_name,
            )),
            "s" if assembled.is_some() => exit_code(mdkernel::cli::stop_array(&md, &a.uuid)),
            "c" => {
                let _ = writeln!(out, "Kernel check of the whole array; Ctrl-C cancels it.");
                crate::stop_on_signals();
                crate::STOP.store(false, Ordering::SeqCst);
                let code = exit_code(mdkernel::cli::check(
                    &md,
                    &CheckCommand {
                        array: a.uuid.clone(),
                        start_sector: None,
                        end_sector: None,
                        repair: false,
                        yes: false,
                        yes_repair: false,
                        cancel: false,
                    },
                    &crate::modules::load_by_name,
                    &crate::STOP,
                    true,
                    input,
                ));
                crate::STOP.store(false, Ordering::SeqCst);
                code
            }
            _ => continue,
        };
        let _ = writeln!(out, "(exit {code})");
    }
}
