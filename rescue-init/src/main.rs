//! `rescue`: the appliance's multicall binary. As PID 1 it is the init; else
//! it runs the subcommand named on its command line.

mod actionlog;
mod bootlog;
mod cmdline;
mod destmenu;
mod gptmenu;
mod imagemenu;
mod init;
mod mdmenu;
mod menu;
mod modules;
mod script;
mod uevent;
mod vmfsmenu;

use argh::FromArgs;
use std::sync::atomic::{AtomicBool, Ordering};

/// Disk-rescue toolbox: probe disks, image dying disks, browse VMFS, inspect
/// and repair GPT, check md RAID. Nothing is written to a disk unless a
/// command is told to with --write naming the target.
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
    Vmfs(vmfs::cli::VmfsCommand),
    Md(mdkernel::cli::MdCommand),
    Dest(dest::cli::DestCommand),
    Menu(menu::MenuCommand),
    RunScript(RunScriptCommand),
    Poweroff(PoweroffCommand),
    Reboot(RebootCommand),
}

/// Run a script of rescue subcommands, framing each output with markers
/// (the unattended mode's contract; see the README).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run-script")]
struct RunScriptCommand {
    /// the script file
    #[argh(positional)]
    path: String,
}

/// Power the appliance off (unmounts destinations first).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "poweroff")]
struct PoweroffCommand {}

/// Reboot the appliance (unmounts destinations first).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "reboot")]
struct RebootCommand {}

fn main() {
    if rustix::process::getpid().is_init() {
        init::run();
    }
    // Rust ignores SIGPIPE, so `rescue md scan | head` would panic on the
    // closed pipe; a command-line tool should end quietly like cat does.
    // SAFETY: restoring the default disposition of one signal, no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().collect();
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
            std::process::exit(if ok { 0 } else { 2 });
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
        Subcommand::Image(c) => {
            stop_on_signals();
            imaging::cli::run_with_stop(c, &STOP)
        }
        Subcommand::Vmfs(c) => vmfs::cli::run(c),
        Subcommand::Md(c) => {
            stop_on_signals();
            mdkernel::cli::run(c, &modules::load_by_name, &STOP)
        }
        Subcommand::Dest(c) => dest::cli::run(c, &modules::load_by_name),
        Subcommand::Menu(c) => menu::run(c),
        Subcommand::RunScript(c) => script::run_script(&c.path, &init::console_paths()),
        Subcommand::Poweroff(_) | Subcommand::Reboot(_) if !init::is_appliance() => {
            eprintln!("rescue: not running as the appliance's init; refusing to halt this machine");
            2
        }
        Subcommand::Poweroff(_) => halt(true),
        Subcommand::Reboot(_) => halt(false),
    };
    if logged {
        log::info!("exit {code}: {}", actionlog::command_line());
    }
    std::process::exit(code);
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
    match init::request(poweroff) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rescue: {e}");
            2
        }
    }
}
