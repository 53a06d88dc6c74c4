//! The console menu: numbered choices in plain ASCII, one screen at a time,
//! usable over a serial line of unknown size. It only calls the same library
//! functions as the subcommands; it never writes to a disk by itself.

use argh::FromArgs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The interactive menu (PID 1 starts one on every console).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "menu",
    error_code(0, "done: the input ended or the user quit"),
    error_code(2, "error: usage error (unknown option, missing argument)")
)]
pub struct MenuCommand {
    /// read this sysfs tree instead of /sys (for tests)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    pub sysfs: PathBuf,
    /// device nodes directory (default /dev)
    #[argh(option, default = "PathBuf::from(\"/dev\")")]
    pub dev: PathBuf,
}

pub const SHELL: &str = "/bin/sh";

struct Actions {
    shell: bool,
    power: bool,
}

pub fn run(cmd: MenuCommand) -> i32 {
    let actions = Actions {
        shell: Path::new(SHELL).exists(),
        power: crate::init::is_appliance(),
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    loop {
        let (disks, problems) = probe::survey(&cmd.sysfs, &cmd.dev);
        let _ = write!(out, "\n{}", header(&cmd.sysfs));
        let _ = write!(out, "{}", probe::render::overview(&disks));
        let controllers = probe::list_storage_controllers(&cmd.sysfs);
        let _ = write!(out, "{}", probe::render::controllers(&controllers, &disks));
        for p in &problems {
            let _ = writeln!(out, "  ! {p}");
        }
        let mut choices = Vec::new();
        if disks.len() == 1 {
            choices.push("1 disk details".into());
        } else if !disks.is_empty() {
            choices.push(format!("1-{} disk details", disks.len()));
            choices.push("i image a disk".into());
        }
        let datastores = disks.iter().any(crate::vmfsmenu::has_vmfs);
        if datastores {
            choices.push("d VMFS datastores".into());
        }
        choices.push("m md RAID".into());
        choices.push("v open a VM disk file".into());
        choices.push("n network".into());
        choices.push("l log".into());
        choices.push("r refresh".into());
        if actions.shell {
            choices.push("s shell".into());
        }
        if actions.power {
            choices.push("b reboot".into());
            choices.push("p power off".into());
        } else {
            choices.push("q quit".into());
        }
        let _ = writeln!(out, "\n{}", choice_lines(&choices));
        let _ = write!(out, "Choose: ");
        let _ = out.flush();
        let shown = blockdev::sys::system_disks(&cmd.sysfs);
        let line = match read_line_or_new_disks(&mut input, &cmd.sysfs, &shown) {
            Waited::Line(l) => l,
            Waited::DisksChanged => {
                let _ = writeln!(out, "\n(the disks changed: a new overview)");
                continue;
            }
            Waited::Ended => return 0,
        };
        let answer = line.trim();
        if !answer.is_empty() && answer != "r" {
            log::info!("menu: '{answer}' chosen");
        }
        match answer {
            "" | "r" => continue,
            "l" => {
                let _ = write!(
                    out,
                    "\nAction log of this boot ({}; at power-off it is appended to\n{} on RESCUEDATA or on the mounted destinations):\n{}",
                    crate::actionlog::LOG_FILE,
                    crate::actionlog::SAVED_LOG,
                    crate::actionlog::tail(40)
                );
                let _ = write!(out, "Enter: back to the overview: ");
                let _ = out.flush();
                if read_line(&mut input).is_none() {
                    return 0;
                }
            }
            "s" if actions.shell => run_shell(&mut out),
            "i" if !disks.is_empty() => {
                if !crate::imagemenu::run(&disks, &mut input, &mut out) {
                    return 0;
                }
            }
            "d" if datastores => {
                if !crate::vmfsmenu::run(&disks, &mut input, &mut out) {
                    return 0;
                }
            }
            "m" => {
                if !crate::mdmenu::run(&mut input, &mut out) {
                    return 0;
                }
            }
            "n" => {
                if !crate::netmenu::run(&mut input, &mut out) {
                    return 0;
                }
            }
            "v" => {
                let mut kernel = crate::guestmenu::System;
                let mut flow = crate::guestmenu::Flow {
                    kernel: &mut kernel,
                    dest: &|| crate::guestmenu::system_destinations(),
                };
                if !crate::vmdisks::open_path(&mut flow, &mut input, &mut out) {
                    return 0;
                }
            }
            "q" if !actions.power => return 0,
            "b" | "p" if actions.power => {
                let poweroff = answer == "p";
                let what = if poweroff { "Power off" } else { "Reboot" };
                let _ = write!(out, "{what} now? Destinations are unmounted first. [y/N]: ");
                let _ = out.flush();
                if read_line(&mut input).is_some_and(|l| l.trim().eq_ignore_ascii_case("y")) {
                    log::info!("menu: {what} confirmed");
                    let _ = writeln!(out, "{what}: asking PID 1");
                    if let Err(e) = crate::init::request(poweroff) {
                        let _ = writeln!(out, "failed: {e}");
                    }
                    // Wait here until PID 1 ends us.
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
            }
            n => match n.parse::<usize>() {
                Ok(i) if i >= 1 && i <= disks.len() => {
                    let disk = &disks[i - 1];
                    let _ = write!(out, "\n{}", probe::render::detail(disk));
                    let has_gpt = disk
                        .partition_table
                        .as_ref()
                        .is_some_and(|t| t.table == "gpt");
                    if has_gpt {
                        let _ = write!(
                            out,
                            "\ng: GPT findings and repairs; Enter: back to the overview: "
                        );
                    } else {
                        let _ = write!(out, "\nEnter: back to the overview: ");
                    }
                    let _ = out.flush();
                    match read_line(&mut input) {
                        None => return 0,
                        Some(l) if has_gpt && l.trim() == "g" => {
                            if !crate::gptmenu::run(disk, &mut input, &mut out) {
                                return 0;
                            }
                        }
                        Some(_) => {}
                    }
                }
                _ => {
                    let _ = writeln!(out, "'{n}' is not one of the choices.");
                }
            },
        }
    }
}

enum Waited {
    Line(String),
    DisksChanged,
    Ended,
}

/// Reads the answer at the overview's prompt; while none has come, looks
/// twice a second whether disks appeared or went (a USB disk a second
/// after boot, a hot-plugged one), so the overview is redrawn without the
/// user asking. The console is in canonical mode: stdin becomes readable
/// only with a whole line, which read_line then takes.
fn read_line_or_new_disks(input: &mut impl BufRead, sysfs: &Path, shown: &[String]) -> Waited {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        let half_second = Timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        match poll(&mut fds, Some(&half_second)) {
            Ok(0) => {
                if blockdev::sys::system_disks(sysfs) != shown {
                    // PID 1 sets a new disk read-only as its event comes;
                    // give it (and the disk's partitions) a moment so the
                    // overview shows the disk as it will stay.
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    return Waited::DisksChanged;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            // Readable, hung up, or poll unusable: read as before.
            _ => {
                return match read_line(input) {
                    Some(l) => Waited::Line(l),
                    None => Waited::Ended,
                }
            }
        }
    }
}

/// The choices joined with ", ", broken into lines of at most 79 columns.
fn choice_lines(choices: &[String]) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for c in choices {
        let last = lines.last_mut().unwrap_or_else(|| unreachable!());
        if last.is_empty() {
            last.push_str(c);
        } else if last.len() + 2 + c.len() < 79 {
            last.push_str(", ");
            last.push_str(c);
        } else {
            last.push(',');
            lines.push(c.clone());
        }
    }
    lines.join("\n")
}

fn header(sysfs: &Path) -> String {
    let release = std::fs::read_to_string("/etc/rescue-release").unwrap_or_default();
    let release = release.lines().next().unwrap_or("").trim().to_string();
    // The build line (kernel, commit) on its own line: 80 columns. The
    // kernel runs with `quiet`: the Boot: line is the only place that says
    // whether Secure Boot and lockdown keep unsigned modules out.
    // The network line only once `net up` (or the kernel command line)
    // configured a link.
    // The SSH lines only while the server runs; an unused one-time password
    // only on the local consoles (not in a menu reached over SSH).
    let ssh: String = sshd::summary(std::env::var_os("SSH_CONNECTION").is_none())
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "=== rescue {} - disk rescue appliance ===\n{}Every disk is read-only; nothing is written unless you confirm it.\nBoot: {}\n{}{ssh}",
        env!("CARGO_PKG_VERSION"),
        if release.is_empty() {
            String::new()
        } else {
            probe::render::wrap_words(&format!("({release})"), probe::render::SCREEN_WIDTH, 1)
        },
        probe::boot::read(sysfs).line(),
        net::summary()
            .map(|n| format!("Network: {n}\n"))
            .unwrap_or_default()
    )
}

/// The item a 1-based number in `answer` names, if it names one.
pub fn pick<'a, T>(answer: &str, items: &'a [T]) -> Option<&'a T> {
    let n = answer.trim().parse::<usize>().ok()?;
    items.get(n.checked_sub(1)?)
}

pub fn read_line(input: &mut impl BufRead) -> Option<String> {
    let mut s = String::new();
    match input.read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s),
    }
}

fn run_shell(out: &mut impl Write) {
    let _ = writeln!(out, "Shell: type 'exit' to come back to the menu.");
    let _ = out.flush();
    match std::process::Command::new(SHELL).status() {
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(out, "cannot start {SHELL}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn choices_fit_the_console() {
        let c: Vec<String> = [
            "1-4 disk details",
            "i image a disk",
            "m md RAID",
            "r refresh",
            "s shell",
            "b reboot",
            "p power off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let text = super::choice_lines(&c);
        assert!(text.lines().all(|l| l.len() <= 79), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(text.replace(",\n", ", "), c.join(", "));
        assert_eq!(
            super::choice_lines(&c[..2]),
            "1-4 disk details, i image a disk"
        );
    }
}
