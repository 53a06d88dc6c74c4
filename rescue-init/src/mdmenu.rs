//! The menu's md RAID view: arrays found on the disks with their state and
//! whether the kernel runs them; per array a read-only verify, read-only
//! assembly with the filesystem mounted, stop, and the kernel's check
//! (which asks first and says what it writes).

use crate::menu::read_line;
use cliconv::Exit;
use mdkernel::check::CheckOptions;
use mdkernel::cli::exit_code;
use mdkernel::Md;
use mdraid::array_verify::{render_verify, stderr_progress, verify_array, ArrayVerifyOptions};
use mdraid::scan::ScanReport;
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;

/// Runs the md view; false when the input ended.
pub fn run(input: &mut impl BufRead, out: &mut impl Write) -> bool {
    // Scanning and assembly need the driver's modules; loading them writes
    // nothing.
    let _ = crate::modules::load_by_name("md_mod");
    run_on(&Md::system(), &mdkernel::arrays::scan_system, input, out)
}

/// Verifies an array read-only as `rescue md verify` does, its output on
/// the console where the command prints it.
fn verify(uuid: &str) -> i32 {
    let opts = ArrayVerifyOptions {
        max_listed: 20,
        batch_mib: 4,
        ..ArrayVerifyOptions::new(vec![uuid.to_string()])
    };
    let verified = verify_array(
        &opts,
        &mut |n| cliconv::eprint(mdraid::cli::VERIFY, n),
        &mut stderr_progress(false),
    );
    match verified {
        Ok(v) => {
            print!("{}", render_verify(&v.array, &v.report));
            v.exit_code()
        }
        // Each unopened member was already named.
        Err(mdraid::array_verify::ArrayVerifyError::MembersUnopened) => Exit::Error.code(),
        Err(e) => {
            cliconv::eprint(mdraid::cli::VERIFY, &e);
            e.exit_code()
        }
    }
}

/// The md view over the kernel interface `md` and the arrays `scan` finds
/// (a parameter so that the listing can be tried on image files).
fn run_on(
    md: &Md,
    scan: &dyn Fn() -> ScanReport,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    loop {
        let report = scan();
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
            "v" => verify(&a.uuid),
            // Errors on stderr as `rescue md <action>` prints them.
            "a" if assembled.is_none() => exit_code(
                mdkernel::cli::ASSEMBLE,
                mdkernel::arrays::assemble(
                    md,
                    &a.uuid,
                    true,
                    &crate::modules::load_by_name,
                    &mut mdkernel::Output {
                        out: &mut *out,
                        err: &mut std::io::stderr(),
                    },
                )
                .map(|_| Exit::Done.code()),
            ),
            "s" if assembled.is_some() => exit_code(
                mdkernel::cli::STOP,
                mdkernel::arrays::stop_array(md, &a.uuid, &mut *out).map(|()| Exit::Done.code()),
            ),
            "c" => {
                let _ = writeln!(out, "Kernel check of the whole array; Ctrl-C cancels it.");
                crate::stop_on_signals();
                crate::STOP.store(false, Ordering::SeqCst);
                let code = exit_code(
                    mdkernel::cli::CHECK,
                    mdkernel::check::check(
                        md,
                        &CheckOptions::whole_array(a.uuid.clone()),
                        &crate::modules::load_by_name,
                        &crate::STOP,
                        true,
                        input,
                        &mut mdkernel::Output {
                            out: &mut *out,
                            err: &mut std::io::stderr(),
                        },
                    )
                    .map(|end| end.exit_code()),
                );
                crate::STOP.store(false, Ordering::SeqCst);
                code
            }
            _ => continue,
        };
        let _ = writeln!(out, "(exit {code})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::mdwriter::{build_members, ArraySpec};

    /// The listing and the per-array prompt on member image files; the
    /// actions themselves need the kernel's md driver (qemu-tests).
    #[test]
    fn lists_arrays_from_image_files_and_offers_assembly() {
        let dir = testkit::TempDir::new("mdmenu");
        std::fs::create_dir_all(dir.join("sys/block")).unwrap();
        let spec = ArraySpec::new("1.2", 5, 3);
        let paths: Vec<String> = build_members(&spec)
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let p = dir.join(format!("member{i}.img"));
                std::fs::write(&p, img).unwrap();
                p.display().to_string()
            })
            .collect();
        let scan = || {
            let opened = mdraid::devices::open_all(&paths);
            assert!(opened.errors.is_empty(), "{:?}", opened.errors);
            mdraid::scan::scan(&opened.inputs())
        };
        // No md device runs: an empty sysfs.
        let md = Md {
            sys: dir.join("sys"),
            dev: dir.join("dev"),
        };
        // The array, then back to its listing, then back to the overview.
        let mut input: &[u8] = b"1\n\n\n";
        let mut out = Vec::new();
        assert!(run_on(&md, &scan, &mut input, &mut out));
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out.matches("md arrays (from the members' superblocks):")
                .count(),
            2
        );
        assert!(
            out.contains("  1  5eed0001:a1b2c3d4:10203040:99887766 DiskStation:2"),
            "{out}"
        );
        assert!(out.contains("raid5 ok"), "{out}");
        assert!(out.contains("not assembled"), "{out}");
        assert!(
            out.contains("members member0.img member1.img member2.img"),
            "{out}"
        );
        assert!(
            out.contains("a assemble read-only and mount") && !out.contains("s stop"),
            "{out}"
        );

        // The input ends at the first prompt: the view says so.
        let mut none: &[u8] = b"";
        assert!(!run_on(&md, &scan, &mut none, &mut Vec::new()));

        // A choice that is not an array is named and the listing shown again.
        let mut input: &[u8] = b"7\n\n";
        let mut out = Vec::new();
        assert!(run_on(&md, &scan, &mut input, &mut out));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("'7' is not one of the arrays."));
    }
}
