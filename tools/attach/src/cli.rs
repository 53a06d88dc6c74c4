//! `rescue attach` and `rescue detach`: thin fronts over [`crate::serve`]
//! and [`crate::detach`].
//!
//! `rescue attach SOURCE` starts a serving process ([`crate::spawn`]) and
//! says what was attached; `--foreground` is that serving process. It
//! lives until the device is detached.

use crate::{Paths, Record, SourceOpener};
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Attach a VM disk (read through its snapshot chain), a file inside a
/// datastore or an image file as a read-only kernel block device,
/// /dev/nbdN with its partitions, for md, LVM and read-only mounts.
/// SOURCE is a .vmdk (a descriptor or a hosted sparse disk), another file
/// or a device: a path here, or with --vmfs SRC a path inside the VMFS
/// datastore on SRC. The device is read-only in the kernel; nothing is
/// ever written to the source. Without SOURCE, lists attached devices.
/// `rescue detach` undoes it; power-off and reboot detach everything.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "attach",
    error_code(0, "done: attached (or listed)"),
    error_code(1, "findings: attached, with notes (a chain warning, a partial last block), or a listed device whose server is gone"),
    error_code(2, "error: usage error (unknown option, missing argument), the source could not be opened, or the kernel refused the device")
)]
pub struct AttachCommand {
    /// what to attach (see above); none: list attached devices
    #[argh(positional)]
    pub source: Option<String>,
    /// a source of the VMFS datastore holding SOURCE (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// a ddrescue mapfile of SOURCE (an image): its unrescued areas read as I/O errors, not as the zeros the image holds there
    #[argh(option)]
    pub map: Option<String>,
    /// a name for the device, usable with `rescue detach`
    #[argh(option)]
    pub name: Option<String>,
    /// seconds one read may take before it is answered with an I/O error (default 90)
    #[argh(option, default = "crate::DEFAULT_DEADLINE.as_secs()")]
    pub deadline: u64,
    /// serve in this process until detached, instead of starting a serving process
    #[argh(switch)]
    pub foreground: bool,
    /// print JSON (with --foreground: one line, once the device is ready)
    #[argh(switch)]
    pub json: bool,
}

/// Detach a device made by `rescue attach`: refused while a partition is
/// mounted or an md array or LVM volume uses it (the message says which
/// and how to release it).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "detach",
    error_code(0, "done: detached"),
    error_code(2, "error: usage error (unknown option, missing argument), not attached, in use, or the kernel refused")
)]
pub struct DetachCommand {
    /// the device (nbd0, /dev/nbd0) or the name given with --name
    #[argh(positional)]
    pub device: Option<String>,
    /// detach every attached device that nothing uses
    #[argh(switch)]
    pub all: bool,
}

#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    record: Record,
    /// The serving process is gone: the device fails every read; detach it.
    stale: bool,
}

#[derive(Serialize)]
struct Listing {
    attached: Vec<Listed>,
}

/// Runs `rescue attach`.
pub fn run_attach(c: AttachCommand, open: SourceOpener<'_>, load: ModuleLoader<'_>) -> i32 {
    let paths = Paths::system();
    let Some(source) = c.source.clone() else {
        return list(&paths, c.json).code();
    };
    if c.deadline == 0 {
        return cliconv::fail("attach", "--deadline must be at least 1 second").code();
    }
    if c.foreground {
        let opts = crate::Options {
            map: c.map.as_ref().map(PathBuf::from),
            name: c.name.clone(),
            deadline: Duration::from_secs(c.deadline),
        };
        return foreground(&source, &c, &opts, &paths, open, load).code();
    }
    // The serving process opens the source, checks the name and reads the
    // mapfile itself (a second open here would read a dying disk's
    // datastore twice); what it refuses comes back as the error.
    let spawned = crate::spawn(
        &source,
        &c.vmfs,
        c.map.as_deref(),
        c.name.as_deref(),
        Duration::from_secs(c.deadline),
    );
    match spawned {
        Ok(r) => if c.json {
            cliconv::print_json("attach", 1, &r)
        } else {
            print_attached(&r);
            Exit::findings_if(!r.notes.is_empty())
        }
        .code(),
        Err(e) => cliconv::fail("attach", e).code(),
    }
}

fn print_attached(r: &Record) {
    println!("attached {}", r.line());
    if r.partitions.is_empty() {
        println!("  no partitions");
    }
    for p in &r.partitions {
        println!("  /dev/{p}");
    }
    for n in &r.notes {
        cliconv::eprint("attach", n);
    }
    println!(
        "  detach with: rescue detach {}",
        r.name.as_deref().unwrap_or(&r.device)
    );
}

/// `--foreground`: serve here until detached.
fn foreground(
    source: &str,
    c: &AttachCommand,
    opts: &crate::Options,
    paths: &Paths,
    open: SourceOpener<'_>,
    load: ModuleLoader<'_>,
) -> Exit {
    let src = match open(source, &c.vmfs) {
        Ok(s) => s,
        Err(e) => return cliconv::fail("attach", e),
    };
    let json = c.json;
    let mut ready = |r: &Record| {
        // Once ready, the starting command may be gone: never fail (or
        // die of SIGPIPE) writing to its pipe.
        ignore_sigpipe();
        let mut out = std::io::stdout().lock();
        if json {
            let _ = serde_json::to_string(r).map(|t| writeln!(out, "{t}"));
        } else {
            let _ = writeln!(out, "attached {} (serving until detached)", r.line());
            for p in &r.partitions {
                let _ = writeln!(out, "  /dev/{p}");
            }
        }
        let _ = out.flush();
        drop(out);
        if json {
            leave_the_pipes();
        }
        log::info!("attach: serving {} as {}", r.what, r.node);
    };
    match crate::serve(src, opts, paths, load, &mut ready) {
        Ok(s) => {
            log::info!(
                "attach: {} ended: {} reads, {} bytes, {} read errors, {} writes refused{}",
                s.record.device,
                s.counts.reads,
                s.counts.bytes,
                s.counts.read_errors,
                s.counts.refused,
                s.error
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            );
            if s.error.is_some() {
                Exit::Error
            } else {
                Exit::Done
            }
        }
        Err(e) => cliconv::fail("attach", e),
    }
}

fn ignore_sigpipe() {
    // SAFETY: setting one signal's disposition to SIG_IGN installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Points stdout and stderr at /dev/null: the starting command has read
/// the record and closed its pipes; nothing may be written there any more
/// (Rust's eprintln panics on a closed pipe).
fn leave_the_pipes() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in [1, 2] {
            // SAFETY: dup2 onto the standard descriptors with an open file;
            // no Rust object owns fds 1 and 2 in a way this invalidates.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

fn list(paths: &Paths, json: bool) -> Exit {
    let recs = crate::records(paths);
    let stale = recs.iter().any(|(_, s)| *s);
    if json {
        let doc = Listing {
            attached: recs
                .into_iter()
                .map(|(record, stale)| Listed { record, stale })
                .collect(),
        };
        return cliconv::print_json("attach", 1, &doc).max(Exit::findings_if(stale));
    }
    if recs.is_empty() {
        println!("nothing attached");
    }
    for (r, s) in &recs {
        println!(
            "{}{}",
            r.line(),
            if *s { "  (server gone: detach it)" } else { "" }
        );
        for p in &r.partitions {
            println!("  /dev/{p}");
        }
    }
    Exit::findings_if(stale)
}

/// Runs `rescue detach`.
pub fn run_detach(c: DetachCommand) -> i32 {
    let paths = Paths::system();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let wait = Duration::from_secs(15);
    let targets: Vec<String> = match (&c.device, c.all) {
        (Some(_), true) => {
            return cliconv::fail("detach", "give a device or --all, not both").code()
        }
        (None, false) => {
            return cliconv::fail("detach", "which device? (see rescue attach; or --all)").code()
        }
        (None, true) => crate::records(&paths)
            .into_iter()
            .map(|(r, _)| r.device)
            .collect(),
        (Some(d), false) => match crate::resolve(&paths, d) {
            Ok(d) => vec![d],
            Err(e) => return cliconv::fail("detach", e).code(),
        },
    };
    let mut exit = Exit::Done;
    for d in targets {
        match crate::detach(&paths, &mounts, &d, wait) {
            Ok(m) => println!("{m}"),
            Err(e) => exit = exit.max(cliconv::fail("detach", e)),
        }
    }
    exit.code()
}
