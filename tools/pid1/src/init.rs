//! PID 1: mount the virtual filesystems, load drivers, make every disk
//! read-only, start the menu (or the unattended script) on every console,
//! reap orphans, and power off or reboot cleanly. It never returns: if PID 1
//! exits the kernel panics.

use crate::bootlog as blog;
use crate::cmdline::{self, Console};
use crate::modules::{self, LoadReport, Loader};
use crate::uevent::UeventSocket;
use blockdev::sys::Scope::Guarded;
use kmod::ModuleIndex;
use rustix::mount::{mount, MountFlags};
use rustix::process::{Pid, Signal};
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the device tree must be quiet before boot goes on when a USB
/// host controller is there: usb-storage waits 1 s (delay_use) before it
/// scans, so this must be longer.
const SETTLE_QUIET_USB: Duration = Duration::from_millis(1500);
/// The same without USB: disk controllers report their disks while their
/// driver loads or right after. A disk later than this still comes: the
/// hot-plug loop loads its driver and guards it, and the menu redraws its
/// overview when the set of disks changes.
const SETTLE_QUIET: Duration = Duration::from_millis(750);
/// USB host controller drivers: with one of them loaded, USB disks may
/// still be on their way.
const USB_HOST_DRIVERS: [&str; 5] = ["xhci_pci", "xhci_hcd", "ehci_pci", "ohci_pci", "uhci_hcd"];
/// Upper bound on waiting for devices at boot; late ones are handled by hotplug.
const SETTLE_MAX: Duration = Duration::from_secs(30);

pub const ENV_APPLIANCE: &str = "RESCUE_APPLIANCE";
pub const ENV_CONSOLES: &str = "RESCUE_CONSOLES";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Halt {
    PowerOff,
    Reboot,
}

/// Where a hook's progress lines go: the consoles and the kernel log.
pub type Say<'a> = &'a dyn Fn(&str);

/// What the appliance around PID 1 does at its start and end.
pub struct Hooks {
    /// Once the virtual filesystems and the boot log are there: start the
    /// action log.
    pub started: fn(),
    /// When every other process is gone, before the disks are unmounted:
    /// keep the action log beyond RAM. Returns lines for the console.
    pub saving: fn() -> Vec<String>,
    /// Processes that must outlive the others at shutdown: the servers of
    /// attached devices, which the mounts and arrays on those devices
    /// still read from until they are released.
    pub spared: fn() -> Vec<u32>,
    /// After the disk-backed mounts are gone: release what sits on
    /// attached devices and detach them, in order (arrays, device-mapper,
    /// then the devices). Returns lines for the console.
    pub detaching: fn() -> Vec<String>,
    /// After the drivers are loaded and the disks guarded: bring up the
    /// network the kernel command line asks for (`rescue.net=`, `BOOTIF=`),
    /// saying on the consoles what it does. May take the time of a DHCP
    /// exchange; does nothing without those options.
    pub network: fn(say: Say),
}

pub fn run(hooks: Hooks) -> ! {
    mount_virtual_filesystems();
    let opts = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let consoles = usable_consoles(&opts.consoles);
    blog::init(&consoles);
    // Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    block_signals();
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    blog::say(&format!(
        "rescue {} starting on Linux {release}",
        env!("CARGO_PKG_VERSION")
    ));
    (hooks.started)();
    log::info!(
        "boot: rescue {} on Linux {release}; every disk will be read-only",
        env!("CARGO_PKG_VERSION")
    );

    let uevents = UeventSocket::open()
        .map_err(|e| blog::say(&format!("uevent socket: {e} (no hotplug)")))
        .ok();
    let mut loader = match ModuleIndex::load(Path::new("/lib/modules").join(&release).as_path()) {
        Ok(idx) => Some(Loader::new(idx)),
        Err(e) => {
            blog::say(&format!(
                "module index unavailable: {e}; no drivers are loaded"
            ));
            None
        }
    };
    if let Some(l) = loader.as_mut() {
        coldplug(l, &opts, uevents.as_ref());
    }
    mount_efivars(loader.as_mut());
    let guarded = guard_all();
    blog::say(&format!(
        "{guarded} block devices set read-only; nothing is mounted, assembled or written"
    ));
    (hooks.network)(&|line| blog::say(line));
    if let Some(sock) = uevents {
        std::thread::spawn(move || hotplug_loop(sock, loader));
    }

    std::env::set_var(ENV_APPLIANCE, "1");
    std::env::set_var(
        ENV_CONSOLES,
        consoles
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(":"),
    );
    std::env::set_var("PATH", "/bin:/sbin:/usr/bin:/usr/sbin");
    std::env::set_var("HOME", "/root");

    let halt = if let Some(script) = &opts.script {
        run_script(script)
    } else {
        supervise_consoles(&consoles, opts.shell)
    };
    shutdown(halt, &hooks)
}

fn mount_virtual_filesystems() {
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mounts: [(&str, &str, &str, MountFlags, &CStr); 7] = [
        ("proc", "/proc", "proc", quiet, c""),
        ("sysfs", "/sys", "sysfs", quiet, c""),
        // Read-only: only for the kernel's lockdown mode, which the menu
        // shows next to the Secure Boot state.
        (
            "securityfs",
            "/sys/kernel/security",
            "securityfs",
            quiet | MountFlags::RDONLY,
            c"",
        ),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            c"mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            c"gid=5,mode=620,ptmxmode=666",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=1777",
        ),
    ];
    for (src, target, fstype, flags, data) in mounts {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(src, target, fstype, flags, data) {
            if e != rustix::io::Errno::BUSY {
                // No logger yet: the kernel's console is our stderr.
                eprintln!("rescue: mount {target}: {e}");
            }
        }
    }
    let _ = std::fs::create_dir_all("/mnt");
}

/// efivars (Secure Boot state, boot entries) on UEFI machines, read-only.
/// efivarfs is a module in Debian's kernel, so this comes after coldplug.
fn mount_efivars(loader: Option<&mut Loader>) {
    if !Path::new("/sys/firmware/efi").exists() {
        return;
    }
    if let Some(l) = loader {
        let mut report = LoadReport::default();
        l.load("efivarfs", &mut report);
    }
    let target = "/sys/firmware/efi/efivars";
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY;
    if let Err(e) = mount("efivarfs", target, "efivarfs", flags, c"") {
        blog::say(&format!("efivarfs: {e}"));
    }
}

fn usable_consoles(wanted: &[Console]) -> Vec<Console> {
    let mut out: Vec<Console> = wanted
        .iter()
        .filter(|c| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(&c.path)
                .is_ok()
        })
        .cloned()
        .collect();
    if out.is_empty() {
        out.push(Console {
            path: "/dev/console".into(),
            baud: None,
        });
    }
    out
}

/// Loads drivers for every device present, then keeps loading for devices
/// those drivers reveal until the device tree is quiet.
fn coldplug(loader: &mut Loader, opts: &cmdline::Options, uevents: Option<&UeventSocket>) {
    let start = Instant::now();
    let mut report = LoadReport::default();
    for m in &opts.extra_modules {
        loader.load(m, &mut report);
    }
    if opts.no_modules {
        blog::say("rescue.nomodules: automatic driver loading skipped");
    } else {
        for alias in modules::scan_modaliases(Path::new("/sys")) {
            loader.load_for_alias(&alias, &mut report);
        }
        let mut last_event = Instant::now();
        while let Some(sock) = uevents {
            let usb = report
                .loaded
                .iter()
                .any(|m| USB_HOST_DRIVERS.contains(&kmod::normalize(m).as_str()));
            let quiet = if usb { SETTLE_QUIET_USB } else { SETTLE_QUIET };
            if last_event.elapsed() >= quiet || start.elapsed() >= SETTLE_MAX {
                break;
            }
            // Wake up exactly when the quiet time would be over, not on
            // a fixed tick that could add most of a tick to every boot.
            let quiet_left = quiet.saturating_sub(last_event.elapsed());
            let max_left = SETTLE_MAX.saturating_sub(start.elapsed());
            let wait = quiet_left.min(max_left).max(Duration::from_millis(5));
            match sock.recv(Some(wait)) {
                Ok(Some(ev)) => {
                    last_event = Instant::now();
                    if ev.get("ACTION") == Some("add") {
                        if let Some(alias) = ev.get("MODALIAS") {
                            loader.load_for_alias(alias, &mut report);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    blog::say(&format!("uevent: {e}"));
                    break;
                }
            }
        }
        // A last sweep catches anything whose event we missed.
        for alias in modules::scan_modaliases(Path::new("/sys")) {
            loader.load_for_alias(&alias, &mut report);
        }
    }
    let loading: Duration = report.took.iter().map(|(_, d)| *d).sum();
    let slowest: Vec<String> = report
        .slowest(3)
        .iter()
        .map(|(m, d)| format!("{m} {:.2}", d.as_secs_f32()))
        .collect();
    blog::say(&format!(
        "drivers: {} modules loaded in {:.1} s ({:.2} s loading{}){}",
        report.loaded.len(),
        start.elapsed().as_secs_f32(),
        loading.as_secs_f32(),
        if slowest.is_empty() {
            String::new()
        } else {
            format!("; slowest: {}", slowest.join(", "))
        },
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed", report.failed.len())
        }
    ));
    for (m, e) in &report.failed {
        blog::say(&format!("module {m}: {e}"));
    }
    say_missing_firmware(&loader.index, &report.matched);
    if !report.unsupported.is_empty() {
        blog::say(&format!(
            "not for this machine (no such device or CPU feature): {}",
            report.unsupported.join(", ")
        ));
    }
}

/// Says on the consoles which of the drivers devices asked for lack
/// firmware in this image (its /lib/firmware/MISSING; an image without
/// the list says nothing).
fn say_missing_firmware(index: &ModuleIndex, matched: &[String]) {
    if matched.is_empty() {
        return;
    }
    let Ok(text) = std::fs::read_to_string(kmod::firmware::MISSING_PATH) else {
        return;
    };
    match kmod::firmware::parse_missing(&text) {
        Ok(list) => {
            for line in modules::missing_firmware_lines(&list, matched, index) {
                blog::say(&line);
            }
        }
        Err(e) => blog::say(&format!("{}: {e}", kmod::firmware::MISSING_PATH)),
    }
}

/// Sets BLKROSET on every disk and partition; returns how many are read-only.
fn guard_all() -> usize {
    let mut n = 0;
    for name in blockdev::sys::block_devices(Path::new("/sys"), Guarded).unwrap_or_default() {
        if guard_one(&name) {
            n += 1;
        }
    }
    n
}

fn guard_one(name: &str) -> bool {
    let path = format!("/dev/{name}");
    match blockdev::set_read_only(&path, true) {
        Ok(()) => true,
        // No medium (empty CD drive, card reader): nothing to protect yet.
        // blockdev's error carries the path and errno text, not the errno
        // itself, so ask the node again.
        Err(_) if no_medium(&path) => false,
        Err(e) => {
            blog::say(&format!("could not set {path} read-only: {e}"));
            false
        }
    }
}

/// Opening `path` fails with ENOMEDIUM: a drive that holds no medium.
fn no_medium(path: &str) -> bool {
    std::fs::File::open(path)
        .err()
        .and_then(|e| e.raw_os_error())
        == Some(rustix::io::Errno::NOMEDIUM.raw_os_error())
}

fn hotplug_loop(sock: UeventSocket, mut loader: Option<Loader>) {
    loop {
        let ev = match sock.recv(None) {
            Ok(Some(ev)) => ev,
            Ok(None) => continue,
            Err(e) => {
                blog::say(&format!("hotplug stopped: {e}"));
                return;
            }
        };
        if ev.get("ACTION") != Some("add") {
            continue;
        }
        if let (Some(l), Some(alias)) = (loader.as_mut(), ev.get("MODALIAS")) {
            let mut report = LoadReport::default();
            l.load_for_alias(alias, &mut report);
            if !report.loaded.is_empty() {
                blog::say(&format!("hotplug: loaded {}", report.loaded.join(", ")));
            }
            say_missing_firmware(&l.index, &report.matched);
        }
        if ev.get("SUBSYSTEM") == Some("block") {
            if let Some(name) = ev.get("DEVNAME") {
                if Guarded.counts(name) && guard_one(name) {
                    blog::say(&format!("hotplug: new block device {name} set read-only"));
                }
            }
        }
    }
}

const HANDLED_SIGNALS: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPWR,
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset takes valid numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Clears the signal mask: what PID 1 blocked must not stay blocked in a
/// program it starts (the mask survives exec). Async-signal-safe.
pub fn unblock_all_signals() {
    // SAFETY: sigemptyset initialises the zeroed set; sigprocmask with a
    // valid set and no old set is async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Blocks the signals PID 1 waits for, before any thread exists, so they are
/// taken only by sigtimedwait in the main loop. Children get a clear mask
/// ([`unblock_all_signals`]): std's Command does not reset it here.
fn block_signals() {
    let set = signal_set();
    // SAFETY: set is a valid, initialised sigset; no old set is requested.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits up to `timeout` for one of the handled signals.
fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; no siginfo is requested.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

fn halt_for_signal(sig: i32) -> Option<Halt> {
    match sig {
        libc::SIGINT | libc::SIGTERM => Some(Halt::Reboot),
        libc::SIGUSR1 | libc::SIGUSR2 | libc::SIGPWR => Some(Halt::PowerOff),
        _ => None,
    }
}

/// Reaps every exited child, whatever its process group (menus run in
/// sessions of their own; orphans are reparented to us); returns their pids.
fn reap() -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some((pid, _))) => out.push(pid.as_raw_nonzero().get()),
            _ => return out,
        }
    }
}

fn spawn_on_console(console: &Console, args: &[&str]) -> std::io::Result<Child> {
    // Non-blocking open: PID 1 must not hang on a line waiting for carrier.
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&console.path)?;
    // The menu reads with ordinary blocking I/O; CLOCAL ignores modem lines.
    rustix::fs::fcntl_setfl(&tty, rustix::fs::OFlags::RDWR)?;
    if let Ok(mut t) = rustix::termios::tcgetattr(&tty) {
        if let Some(baud) = console.baud {
            let _ = t.set_speed(baud);
        }
        if console.is_serial() {
            t.control_modes |= rustix::termios::ControlModes::CLOCAL;
        }
        let _ = rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Now, &t);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/bin/rescue".into());
    let mut cmd = if args.first() == Some(&"/bin/sh") {
        let mut c = Command::new("/bin/sh");
        c.args(&args[1..]);
        c
    } else {
        let mut c = Command::new(exe);
        c.args(args);
        c
    };
    cmd.env(
        "TERM",
        if console.is_serial() {
            "vt100"
        } else {
            "linux"
        },
    )
    .stdin(Stdio::from(tty.try_clone()?))
    .stdout(Stdio::from(tty.try_clone()?))
    .stderr(Stdio::from(tty));
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (sigprocmask, setsid, ioctl)
    // run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // PID 1 blocks the signals it waits for; a child inherits the
            // mask through exec (measured: every process started from a
            // menu's shell had SIGINT and SIGTERM blocked, so Ctrl-C and
            // kill did nothing).
            unblock_all_signals();
            rustix::process::setsid()?;
            // Steal the tty if a dead session still holds it (we are root).
            if libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A menu (or shell) on every console, restarted when it exits, until a
/// signal asks for power-off or reboot.
fn supervise_consoles(consoles: &[Console], shell: bool) -> Halt {
    let args: &[&str] = if shell { &["/bin/sh"] } else { &["menu"] };
    blog::say(&format!(
        "{} on {}",
        if shell { "shells" } else { "menus" },
        consoles
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let mut running: HashMap<i32, (usize, Instant)> = HashMap::new();
    let mut restart_at: Vec<Option<Instant>> = vec![Some(Instant::now()); consoles.len()];
    loop {
        for (i, c) in consoles.iter().enumerate() {
            if restart_at[i].is_some_and(|t| Instant::now() >= t) {
                restart_at[i] = None;
                match spawn_on_console(c, args) {
                    Ok(child) => {
                        running.insert(child.id() as i32, (i, Instant::now()));
                    }
                    Err(e) => {
                        blog::say(&format!("cannot start menu on {}: {e}", c.path));
                        restart_at[i] = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
        if let Some(halt) = wait_signal(Duration::from_secs(1)).and_then(halt_for_signal) {
            return halt;
        }
        for pid in reap() {
            if let Some((i, started)) = running.remove(&pid) {
                // A menu that dies at once must not spin: wait a little then.
                let delay = if started.elapsed() < Duration::from_secs(2) {
                    Duration::from_secs(2)
                } else {
                    Duration::from_millis(100)
                };
                restart_at[i] = Some(Instant::now() + delay);
            }
        }
    }
}

fn run_script(path: &str) -> Halt {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/bin/rescue".into());
    let child = Command::new(exe)
        .args(["run-script", path])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let pid = match child {
        Ok(c) => c.id() as i32,
        Err(e) => {
            blog::say(&format!("cannot run script {path}: {e}"));
            return Halt::PowerOff;
        }
    };
    loop {
        if let Some(halt) = wait_signal(Duration::from_secs(1)).and_then(halt_for_signal) {
            return halt;
        }
        if reap().contains(&pid) {
            return Halt::PowerOff;
        }
    }
}

fn shutdown(halt: Halt, hooks: &Hooks) -> ! {
    blog::say(match halt {
        Halt::PowerOff => "powering off",
        Halt::Reboot => "rebooting",
    });
    // FUSE daemons (ntfs-3g serving an NTFS destination) write their volume
    // until it is unmounted, and the servers of attached devices feed the
    // mounts and arrays on them until those are released: both stay.
    let proc = Path::new("/proc");
    let fuse = blockdev::sys::fuse_daemons(proc, None);
    let mut spared = fuse.clone();
    spared.extend((hooks.spared)());
    signal_all_but(&spared, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        reap();
        if user_processes_but(&spared).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_all_but(&spared, Signal::KILL);
    reap();
    // Network destinations first, while the network is still up, and
    // before any sync(): sync waits on every filesystem, and an NFS or SMB
    // server that is gone would hold it forever. Each unmount is bounded
    // and forced for a dead server.
    for line in unmount_network_destinations() {
        blog::say(&line);
    }
    log::info!(
        "{}",
        match halt {
            Halt::PowerOff => "power off",
            Halt::Reboot => "reboot",
        }
    );
    // Every other process is gone: the log is complete. Keep it beyond RAM.
    for line in (hooks.saving)() {
        blog::say(&line);
    }
    rustix::fs::sync();
    unmount_destinations();
    // Unmounted: each ntfs-3g closes its volume and exits.
    let left = blockdev::sys::wait_exited(proc, &fuse, blockdev::sys::FUSE_EXIT_WAIT);
    if !left.is_empty() {
        blog::say(&format!(
            "FUSE daemon(s) {left:?} still running after {} s; an NTFS destination may not be \
             fully written",
            blockdev::sys::FUSE_EXIT_WAIT.as_secs()
        ));
    }
    for line in (hooks.detaching)() {
        blog::say(&line);
    }
    // SAFETY: kill(-1, SIGKILL) signals every process but PID 1; no memory is touched.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    reap();
    rustix::fs::sync();
    let cmd = match halt {
        Halt::PowerOff => rustix::system::RebootCommand::PowerOff,
        Halt::Reboot => rustix::system::RebootCommand::Restart,
    };
    let e = rustix::system::reboot(cmd);
    blog::say(&format!("reboot syscall failed: {e:?}; halting here"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The processes other than PID 1, kernel threads and `but`, from /proc.
fn user_processes_but(but: &[u32]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != 1 && !but.contains(&pid))
        .filter(|&pid| {
            // /proc/PID/stat: field 9 (after "pid (comm) state") is the
            // flags word; PF_KTHREAD is 0x00200000. Zombies are left to reap().
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let kthread = fields
                .get(6)
                .and_then(|f| f.parse::<u64>().ok())
                .is_some_and(|flags| flags & 0x0020_0000 != 0);
            !kthread && fields.first() != Some(&"Z")
        })
        .collect()
}

/// Sends `sig` to every process but PID 1, kernel threads and `but`.
fn signal_all_but(but: &[u32], sig: Signal) {
    for pid in user_processes_but(but) {
        if let Some(p) = Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, sig);
        }
    }
}

/// Unmounts every disk-backed mount (destinations under /mnt), deepest first;
/// what cannot be unmounted is remounted read-only. An ntfs-3g mount's
/// unmount returns when ntfs-3g has closed the volume (fuseblk); each
/// unmount is given [`blockdev::sys::FUSE_EXIT_WAIT`], so a hung daemon
/// cannot stop the power-off.
fn unmount_destinations() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    // Escapes decoded: a mount point with a space is unmounted too.
    let mut targets: Vec<String> = blockdev::sys::parse_mounts(&mounts)
        .into_iter()
        .filter(|(src, _, _)| src.starts_with("/dev/"))
        .map(|(_, at, _)| at)
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let (tx, rx) = std::sync::mpsc::channel();
        let at = t.clone();
        std::thread::spawn(move || {
            let r = rustix::mount::unmount(at.as_str(), rustix::mount::UnmountFlags::empty());
            if r.is_err() {
                let _ = rustix::mount::mount_remount(at.as_str(), MountFlags::RDONLY, c"");
            }
            let _ = tx.send(());
        });
        if rx.recv_timeout(blockdev::sys::FUSE_EXIT_WAIT).is_err() {
            blog::say(&format!(
                "unmounting {t} did not finish within {} s; going on",
                blockdev::sys::FUSE_EXIT_WAIT.as_secs()
            ));
        }
    }
}

/// Unmounts the NFS and SMB mounts (any mount point), each within
/// [`blockdev::sys::NETWORK_UNMOUNT_WAIT`], then by force; what to say
/// about those that had to be forced or failed.
fn unmount_network_destinations() -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (_, at, fs) = (w.next()?, w.next()?, w.next()?);
            blockdev::sys::NETWORK_FSTYPES
                .contains(&fs)
                .then(|| blockdev::sys::unescape(at))
        })
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let mut said = Vec::new();
    for t in targets {
        match blockdev::sys::unmount_bounded(Path::new(&t), blockdev::sys::NETWORK_UNMOUNT_WAIT) {
            Ok(None) => log::info!("network destination {t} unmounted"),
            Ok(Some(note)) => said.push(note),
            Err(e) => said.push(e),
        }
    }
    said
}

/// Asks PID 1 to power off or reboot (from the menu).
pub fn request(poweroff: bool) -> std::io::Result<()> {
    let sig = if poweroff { Signal::USR2 } else { Signal::TERM };
    rustix::process::kill_process(Pid::INIT, sig).map_err(Into::into)
}

pub fn is_appliance() -> bool {
    std::env::var_os(ENV_APPLIANCE).is_some()
}

/// Console device nodes PID 1 found (for the script runner).
pub fn console_paths() -> Vec<String> {
    std::env::var(ENV_CONSOLES)
        .map(|s| {
            s.split(':')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
