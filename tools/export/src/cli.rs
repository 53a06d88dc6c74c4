//! `rescue export`: a thin front over [`crate::Exporter`].

use crate::allow::AllowList;
use crate::{Exporter, Options, Report, Say};
use argh::FromArgs;
use attach::SourceOpener;
use cliconv::Exit;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The command's name in messages.
pub const NAME: &str = "export";

/// Serve a disk, an image file, a VM disk (read through its snapshot
/// chain) or a file inside a VMFS datastore (--vmfs) read-only over NBD on
/// TCP, for a lab host to copy or inspect: `qemu-img convert -f raw
/// nbd://HOST:PORT/TOKEN disk.raw`, `nbdcopy`, `nbd-client`, guestfish.
/// The export name TOKEN is random and printed here with the URLs; a
/// client asking for another name is refused and the name is never
/// listed. Only the addresses in --allow are served; there is no default.
/// Nothing can be written: the export is read-only and every write is
/// refused. The traffic is plain NBD (not encrypted): use it on a network
/// you trust. Serves until Ctrl-C or SIGTERM.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "export",
    error_code(0, "done: stopped by SIGINT/SIGTERM, no read was answered with an I/O error"),
    error_code(1, "findings: stopped; some reads were answered with I/O errors (bad areas of --map, unreadable sectors)"),
    error_code(2, "error: usage error (unknown option, missing argument, no --allow), the source or mapfile could not be opened, or the address could not be listened on")
)]
pub struct ExportCommand {
    /// what to serve: a device, an image file, a .vmdk (with its chain), or with --vmfs a path inside the datastore
    #[argh(positional)]
    pub source: String,
    /// where to listen: [ADDR:]PORT, IPv4 (PORT alone: every address of this machine; 10809 is NBD's port; 0 picks a free port, printed)
    #[argh(option)]
    pub nbd: String,
    /// client addresses served, A.B.C.D or A.B.C.D/N, comma-separated or repeated (required: nobody is allowed by default; 0.0.0.0/0 allows everyone)
    #[argh(option)]
    pub allow: Vec<String>,
    /// a source of the VMFS datastore holding SOURCE (repeat for a spanned volume)
    #[argh(option)]
    pub vmfs: Vec<String>,
    /// a ddrescue mapfile of SOURCE (an image): its unrescued areas read as I/O errors, not as the zeros the image holds there
    #[argh(option)]
    pub map: Option<String>,
    /// clients served at once (default 4); more are refused
    #[argh(option, default = "crate::DEFAULT_MAX_CLIENTS")]
    pub max_clients: usize,
    /// seconds one read may take before it is answered with an I/O error (default 90)
    #[argh(option, default = "attach::DEFAULT_DEADLINE.as_secs()")]
    pub deadline: u64,
    /// print one JSON line when ready (URLs, token, port) on stdout; events go to stderr
    #[argh(switch)]
    pub json: bool,
}

/// The `--json` ready line.
#[derive(Serialize)]
struct Ready<'a> {
    schema: u32,
    event: &'static str,
    /// The first of `urls`, or null when no address is known.
    url: Option<&'a str>,
    urls: &'a [String],
    token: &'a str,
    address: String,
    port: u16,
    source: &'a str,
    what: &'a str,
    size: u64,
    map: Option<&'a str>,
    bad_bytes: u64,
    allow: Vec<String>,
    max_clients: usize,
    notes: &'a [String],
}

/// Runs `rescue export`; the caller sets `stop` on SIGINT/SIGTERM.
pub fn run(c: ExportCommand, open: SourceOpener<'_>, stop: &AtomicBool) -> i32 {
    match export(&c, open, stop) {
        Ok(exit) => exit.code(),
        Err(e) => cliconv::fail(NAME, e).code(),
    }
}

fn export(c: &ExportCommand, open: SourceOpener<'_>, stop: &AtomicBool) -> Result<Exit, String> {
    let allow = AllowList::parse(&c.allow)?;
    if c.deadline == 0 {
        return Err("--deadline must be at least 1 second".into());
    }
    if c.max_clients == 0 {
        return Err("--max-clients must be at least 1".into());
    }
    crate::parse_listen(&c.nbd)?;
    let src = open(&c.source, &c.vmfs)?;
    let attach_opts = attach::Options {
        map: c.map.as_ref().map(PathBuf::from),
        ..Default::default()
    };
    let (device, bad_bytes) = attach::served_device(Arc::clone(&src.device), &attach_opts)?;
    let token = crate::new_token().map_err(|e| format!("getrandom: {e}"))?;
    let mut opts = Options::new(&c.nbd, allow.clone());
    opts.max_clients = c.max_clients;
    opts.deadline = Duration::from_secs(c.deadline);
    let size = device.size();
    let exporter = Exporter::bind(device, token, opts)?;
    let bound = exporter.local_addr();
    let urls = exporter.urls(&crate::local_addresses());

    let json = c.json;
    let say: Say = Arc::new(move |line: String| {
        let text = cliconv::message_line(NAME, line);
        if json {
            eprintln!("{text}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    });
    for n in &src.notes {
        cliconv::eprint(NAME, n);
    }
    log::info!(
        "export: serving {} read-only on {bound}, allowed: {}",
        src.what,
        allow.text().join(", ")
    );
    if json {
        let ready = Ready {
            schema: 1,
            event: "ready",
            url: urls.first().map(String::as_str),
            urls: &urls,
            token: exporter.token(),
            address: bound.ip().to_string(),
            port: bound.port(),
            source: &src.source,
            what: &src.what,
            size,
            map: c.map.as_deref(),
            bad_bytes,
            allow: allow.text(),
            max_clients: c.max_clients,
            notes: &src.notes,
        };
        let text = serde_json::to_string(&ready).map_err(|e| format!("JSON: {e}"))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    } else {
        for line in ready_lines(
            &src.what,
            size,
            c.map.as_deref(),
            bad_bytes,
            &allow,
            bound,
            exporter.token(),
            &urls,
        ) {
            say(line);
        }
    }
    let report = exporter.serve(stop, &say);
    say(summary(&report));
    log::info!("export: stopped: {}", summary(&report));
    Ok(Exit::findings_if(report.read_errors > 0))
}

#[allow(clippy::too_many_arguments)]
fn ready_lines(
    what: &str,
    size: u64,
    map: Option<&str>,
    bad_bytes: u64,
    allow: &AllowList,
    bound: std::net::SocketAddrV4,
    token: &str,
    urls: &[String],
) -> Vec<String> {
    let mut lines = vec![format!(
        "serving {what} ({}) read-only{}",
        screen::human_size(size),
        map.map(|m| format!(
            "; {} unrescued per {m} read as I/O errors",
            screen::human_size(bad_bytes)
        ))
        .unwrap_or_default()
    )];
    lines.push(format!(
        "listening on {bound}; clients allowed: {}{}",
        allow.text().join(", "),
        if allow.allows_everyone() {
            " (everyone: anybody with the token can read this disk)"
        } else {
            ""
        }
    ));
    lines.push(format!("export name (token): {token}"));
    match urls.first() {
        Some(first) => {
            lines.push(format!(
                "on the lab host: qemu-img convert -p -f raw -O raw {first} disk.raw"
            ));
            for u in &urls[1..] {
                lines.push(format!("  or: {u}"));
            }
        }
        None => lines.push(format!(
            "on the lab host: qemu-img convert -p -f raw -O raw nbd://HOST:{}/{token} disk.raw \
             (HOST: this machine's address; it has no IPv4 address yet: rescue net up)",
            bound.port()
        )),
    }
    lines.push("serving until Ctrl-C (or SIGTERM)".into());
    lines
}

fn summary(r: &Report) -> String {
    let mut s = format!(
        "stopped: {} served, {} to {}, {}, {}",
        screen::plural(r.reads, "read", "reads"),
        screen::human_size(r.bytes),
        screen::plural(r.clients, "client", "clients"),
        screen::plural(
            r.read_errors,
            "read answered with an I/O error",
            "reads answered with an I/O error"
        ),
        screen::plural(r.writes_refused, "write refused", "writes refused"),
    );
    let refused = [
        (r.not_allowed, "not in --allow"),
        (r.wrong_name, "wrong export name"),
        (r.busy, "too many clients"),
        (r.connection_errors, "failed"),
    ];
    let parts: Vec<String> = refused
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    if !parts.is_empty() {
        s.push_str(&format!("; connections: {}", parts.join(", ")));
    }
    s
}
