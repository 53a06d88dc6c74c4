//! `rescue`: the appliance's multicall binary. As PID 1 it is the init; else
//! it runs the subcommand named on its command line.

mod actionlog;
mod destmenu;
mod detachall;
mod filebrowser;
mod gptmenu;
mod guestmenu;
mod imagemenu;
mod labmenu;
mod mdmenu;
mod menu;
mod netmenu;
mod script;
mod sources;
mod vmdisks;
mod vmfsmenu;

use argh::FromArgs;
use cliconv::Exit;
use pid1::{init, modules};
use std::sync::atomic::{AtomicBool, Ordering};

/// Disk-rescue toolbox: probe disks, image dying disks, browse VMFS, inspect
/// and repair GPT, check md RAID, activate LVM volumes read-only. Nothing is
/// written to a disk unless a command is told to with --write naming the
/// target.
#[derive(FromArgs, Debug)]
struct Rescue {
    #[argh(subcommand)]
    command: Subcommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Subcommand {
    Probe(probe::cli::ProbeCommand),
    Gpt(gpt::cli::GptCommand),
    Image(imaging::cli::ImageCommand),
    Receive(labstream::cli::ReceiveCommand),
    Vmfs(vmfs::cli::VmfsCommand),
    Vmdk(vmdk::cli::VmdkCommand),
    Md(mdkernel::cli::MdCommand),
    Lvm(lvm::cli::LvmCommand),
    Dest(dest::cli::DestCommand),
    Attach(attach::cli::AttachCommand),
    Detach(attach::cli::DetachCommand),
    Export(export::cli::ExportCommand),
    Mount(rmount::cli::MountCommand),
    Umount(rmount::cli::UmountCommand),
    FilesHit(guesthit::cli::FilesHitCommand),
    Net(net::cli::NetCommand),
    Ssh(sshd::cli::SshCommand),
    Menu(menu::MenuCommand),
    RunScript(RunScriptCommand),
    Poweroff(PoweroffCommand),
    Reboot(RebootCommand),
}

/// Run a script of rescue subcommands, framing each output with markers
/// (the unattended mode's contract; see the README).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "run-script",
    error_code(0, "done: every command exited 0"),
    error_code(1, "findings: the worst command exited 1 (the highest exit code of all commands is returned)"),
    error_code(2, "error: usage error (unknown option, missing argument), the script cannot be read, a line cannot be parsed, or a command exited 2")
)]
struct RunScriptCommand {
    /// the script file
    #[argh(positional)]
    path: String,
}

/// Power the appliance off (unmounts destinations first).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "poweroff",
    error_code(0, "done: PID 1 was asked to power off"),
    error_code(2, "error: usage error (unknown option, missing argument), not running as the appliance, or the request failed")
)]
struct PoweroffCommand {}

/// Reboot the appliance (unmounts destinations first).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "reboot",
    error_code(0, "done: PID 1 was asked to reboot"),
    error_code(2, "error: usage error (unknown option, missing argument), not running as the appliance, or the request failed")
)]
struct RebootCommand {}

fn main() {
    if rustix::process::getpid().is_init() {
        init::run(init::Hooks {
            started: actionlog::start,
            saving: actionlog::save_at_shutdown,
            spared: detachall::servers,
            detaching: detachall::detach_all,
            network: network_from_cmdline,
        });
    }
    // Whatever started us (PID 1 blocks the signals it waits for), Ctrl-C
    // and SIGTERM must reach this program and what it starts.
    init::unblock_all_signals();
    // Rust ignores SIGPIPE, so `rescue md scan | head` would panic on the
    // closed pipe; a command-line tool should end quietly like cat does.
    // SAFETY: restoring the default disposition of one signal, no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().collect();
    // root's login shell over SSH (/bin/rescue-login): the menu.
    if args.first().is_some_and(|a| sshd::login::is_login_name(a)) {
        actionlog::start();
        let code = sshd::login::run(
            &args[1..],
            &sshd::Paths::default(),
            std::path::Path::new("/bin/rescue"),
        );
        std::process::exit(code);
    }
    let cmd_name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "rescue".into());
    let strs: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let parsed = match Rescue::from_args(&[&cmd_name], &strs) {
        Ok(p) => p,
        Err(early) => {
            let ok = early.status.is_ok();
            if ok {
                print!("{}", early.output);
            } else {
                eprint!("{}", early.output);
            }
            std::process::exit(if ok { Exit::Done } else { Exit::Error }.code());
        }
    };
    actionlog::start();
    // The menu logs its own actions; every other command is logged with
    // its exit status.
    let logged = !matches!(parsed.command, Subcommand::Menu(_));
    if logged {
        log::info!("command: {}", actionlog::command_line());
    }
    let code = match parsed.command {
        Subcommand::Probe(c) => probe::cli::run(c),
        Subcommand::Gpt(c) => gpt::cli::run(c),
        Subcommand::Image(c) if imaging::cli::is_remote(&c.dst) => {
            stop_on_signals();
            labstream::cli::run_image(c, &STOP)
        }
        Subcommand::Image(c) => {
            stop_on_signals();
            imaging::cli::run_with_stop(c, &STOP)
        }
        Subcommand::Receive(c) => {
            stop_on_signals();
            labstream::cli::run_receive(c, &STOP)
        }
        Subcommand::Vmfs(c) if c.is_remote_extract() => {
            stop_on_signals();
            match c.into_extract() {
                Some(e) => labstream::cli::run_vmfs_extract(e, &STOP),
                None => 2,
            }
        }
        Subcommand::Vmfs(c) => vmfs::cli::run(c),
        Subcommand::Vmdk(c) => {
            stop_on_signals();
            vmdk::cli::run(c, &vmdk_in_vmfs, &STOP)
        }
        Subcommand::Md(c) => {
            stop_on_signals();
            mdkernel::cli::run(c, &modules::load_by_name, &STOP)
        }
        Subcommand::Lvm(c) => lvm::cli::run(c, &modules::load_by_name),
        Subcommand::Dest(c) => dest::cli::run(c, &modules::load_by_name),
        Subcommand::Attach(c) => attach::cli::run_attach(c, &sources::open, &modules::load_by_name),
        Subcommand::Detach(c) => attach::cli::run_detach(c),
        Subcommand::Export(c) => {
            stop_on_signals();
            export::cli::run(c, &sources::open, &STOP)
        }
        Subcommand::Mount(c) => rmount::cli::run_mount(c, &modules::load_by_name),
        Subcommand::Umount(c) => rmount::cli::run_umount(c),
        Subcommand::FilesHit(c) => guesthit::cli::run(c, &modules::load_by_name),
        Subcommand::Net(c) => net::cli::run(c),
        Subcommand::Ssh(c) => sshd::cli::run(c, init::is_appliance(), &local_consoles()),
        Subcommand::Menu(c) => menu::run(c),
        Subcommand::RunScript(c) => script::run_script(&c.path, &init::console_paths()),
        Subcommand::Poweroff(_) | Subcommand::Reboot(_) if !init::is_appliance() => {
            let command = if matches!(parsed.command, Subcommand::Poweroff(_)) {
                "poweroff"
            } else {
                "reboot"
            };
            cliconv::fail(
                command,
                "not running as the appliance's init; refusing to halt this machine",
            )
            .code()
        }
        Subcommand::Poweroff(_) => halt(true),
        Subcommand::Reboot(_) => halt(false),
    };
    if logged {
        log::info!("exit {code}: {}", actionlog::command_line());
    }
    std::process::exit(code);
}

/// PID 1's network hook: `rescue.net=` and `BOOTIF=` from /proc/cmdline,
/// once the NIC drivers are loaded; then the SSH server `rescue.ssh=` asks
/// for (whether or not a link came up: one may be brought up later).
fn network_from_cmdline(say: &dyn Fn(&str)) {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(state) = net::bring_up_from_cmdline(&cmdline, &net::Paths::default(), say) {
        log::info!("network: {}", state.line());
    }
    match sshd::cmdline::parse(&cmdline) {
        None => {}
        Some(Err(e)) => {
            log::info!("ssh: not started: {e}");
            say(&format!("ssh: not started: {e}"));
        }
        Some(Ok(req)) => {
            // The supervisor PID 1 starts logs to the action log and runs
            // as part of the appliance: PID 1 sets this for the menus
            // only after the hooks.
            std::env::set_var(init::ENV_APPLIANCE, "1");
            // The host key line and a one-time password go to the
            // consoles from sshd itself (the password never to the
            // kernel log, as `say` would).
            if let Err(e) = sshd::start(&req, &sshd::Paths::default(), &local_consoles(), say) {
                log::info!("ssh: not started: {e}");
                say(&format!("ssh: not started: {e}"));
            }
        }
    }
}

/// The local consoles (console= on the kernel command line, else
/// /dev/console): where a one-time password may be shown.
pub fn local_consoles() -> Vec<std::path::PathBuf> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut out: Vec<std::path::PathBuf> = pid1::cmdline::parse(&cmdline)
        .consoles
        .into_iter()
        .map(|c| c.path.into())
        .collect();
    if out.is_empty() {
        out.push("/dev/console".into());
    }
    out
}

/// `rescue vmdk --vmfs SRC... PATH`: the disk's folder in the VMFS volume on
/// SRC, saying on stderr what opening the volume noticed.
fn vmdk_in_vmfs(sources: &[String], path: &str) -> Result<(Box<dyn vmdk::Files>, String), String> {
    let (folder, name, notes) = vmfs::vmdkfiles::disk_in_volume(sources, path)?;
    for n in notes {
        cliconv::eprint("vmdk", n);
    }
    Ok((Box::new(folder), name))
}

/// Set by SIGINT/SIGTERM for commands that save their state and stop
/// cleanly (imaging saves its mapfile and can be resumed; md check
/// cancels the kernel's pass).
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set [`STOP`] instead of killing the process.
pub fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a plain handler that only stores an
        // atomic is valid; no old action is requested.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn halt(poweroff: bool) -> i32 {
    let command = if poweroff { "poweroff" } else { "reboot" };
    match init::request(poweroff) {
        Ok(()) => Exit::Done.code(),
        Err(e) => cliconv::fail(command, e).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf subcommand, as typed after `rescue`.
    const LEAVES: &[&[&str]] = &[
        &["probe"],
        &["gpt"],
        &["gpt", "show"],
        &["gpt", "verify"],
        &["gpt", "repair"],
        &["gpt", "undo"],
        &["image"],
        &["receive"],
        &["vmfs"],
        &["vmfs", "list"],
        &["vmfs", "info"],
        &["vmfs", "ls"],
        &["vmfs", "stat"],
        &["vmfs", "tree"],
        &["vmfs", "cat"],
        &["vmfs", "extract"],
        &["vmfs", "files-hit"],
        &["vmfs", "scan"],
        &["vmdk"],
        &["vmdk", "info"],
        &["vmdk", "parts"],
        &["vmdk", "export"],
        &["vmdk", "cat"],
        &["vmdk", "map"],
        &["md"],
        &["md", "scan"],
        &["md", "examine"],
        &["md", "verify"],
        &["md", "assemble"],
        &["md", "stop"],
        &["md", "check"],
        &["lvm"],
        &["lvm", "scan"],
        &["lvm", "activate"],
        &["lvm", "deactivate"],
        &["dest"],
        &["dest", "list"],
        &["dest", "mount"],
        &["dest", "umount"],
        &["attach"],
        &["detach"],
        &["export"],
        &["mount"],
        &["files-hit"],
        &["net"],
        &["net", "list"],
        &["net", "up"],
        &["net", "down"],
        &["ssh"],
        &["ssh", "on"],
        &["ssh", "off"],
        &["ssh", "status"],
        &["ssh", "serve"],
        &["umount"],
        &["menu"],
        &["run-script"],
        &["poweroff"],
        &["reboot"],
    ];

    /// `rescue CMD --help` documents the exit codes: 0 and 2 always (argh's
    /// usage errors exit 2 in main), 1 where the command reports problems;
    /// each worded from [`Exit`]'s meaning: `done:`, `findings:` or
    /// `partial:`, `error:`.
    #[test]
    fn every_subcommand_documents_its_exit_codes() {
        let top = Rescue::from_args(&["rescue"], &["--help"])
            .unwrap_err()
            .output;
        for line in top
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
        {
            if line.trim().is_empty() {
                break;
            }
            // Wrapped descriptions continue on lines indented further.
            if line.starts_with("   ") {
                continue;
            }
            let name = line.split_whitespace().next().unwrap();
            assert!(
                LEAVES.iter().any(|l| l[0] == name),
                "{name} is not in LEAVES"
            );
        }
        for leaf in LEAVES {
            let mut args = leaf.to_vec();
            args.push("--help");
            let help = Rescue::from_args(&["rescue"], &args).unwrap_err().output;
            let codes = help
                .split_once("Error codes:")
                .unwrap_or_else(|| panic!("rescue {}: no exit codes:\n{help}", leaf.join(" ")))
                .1;
            for code in ["0", "2"] {
                assert!(
                    codes
                        .lines()
                        .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                    "rescue {}: exit {code} missing:\n{help}",
                    leaf.join(" ")
                );
            }
            // A code's line: the number, spaces, its description.
            for line in codes
                .lines()
                .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            {
                let (code, what) = line.trim_start().split_once(' ').unwrap();
                let label = match code {
                    "0" => vec!["done: "],
                    "1" => vec!["findings: ", "partial: "],
                    "2" => vec!["error: usage error "],
                    other => panic!("rescue {}: exit {other}:\n{help}", leaf.join(" ")),
                };
                assert!(
                    label.iter().any(|l| what.trim_start().starts_with(l)),
                    "rescue {}: exit {code} not worded as {label:?}:\n{help}",
                    leaf.join(" ")
                );
            }
        }
        let verify = Rescue::from_args(&["rescue"], &["gpt", "verify", "--help"])
            .unwrap_err()
            .output;
        assert!(verify.contains("no-gpt"), "{verify}");
    }
}
