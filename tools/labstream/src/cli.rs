//! `rescue receive` (the lab host's end) and the sending side of
//! `rescue image SRC rescue://HOST:PORT/NAME` (the appliance's end).

use crate::code::PairingCode;
use crate::receiver::{ReceiveOptions, Receiver, Say};
use crate::sender::{self, SendJob, SendReport, Target};
use argh::FromArgs;
use blockdev::{BlockDevice, Device, DeviceKind, OpenOptionsRo};
use cliconv::Exit;
use ddmap::Status;
use imaging::cli::ImageCommand;
use imaging::progress::ConsoleRenderer;
use imaging::{FaultDevice, Options};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(FromArgs, Debug, Clone, PartialEq)]
/// Receive images streamed by `rescue image SRC rescue://HOST:PORT/NAME`
/// into DIR (run this on a lab host: the same static binary runs on any
/// x86-64 Linux). Prints a pairing code that each sender must give; the
/// stream is encrypted and authenticated with it (Noise NNpsk0). Each image
/// NAME is kept as DIR/NAME with its GNU ddrescue mapfile DIR/NAME.map; a
/// sender that comes back (dropped link, reboot) resumes from it. At the
/// end both ends compare SHA-256 digests; a verified image gets
/// DIR/NAME.sha256.
#[argh(
    subcommand,
    name = "receive",
    error_code(0, "done: stopped by SIGINT/SIGTERM, or with --once: the image is complete and verified"),
    error_code(1, "partial: with --once: the image is complete and verified, bad areas remain"),
    error_code(2, "error: usage error (unknown option, missing argument), cannot listen or open DIR, too many wrong pairing codes (the code is retired), or with --once: a digest mismatch")
)]
pub struct ReceiveCommand {
    /// directory the images are kept in (must exist)
    #[argh(positional)]
    pub dir: String,
    /// address to listen on: [ADDR:]PORT (PORT alone: every IPv4 address;
    /// port 0 picks a free port, printed)
    #[argh(option)]
    pub listen: String,
    /// senders served at once (default 2); more are refused as busy
    #[argh(option, default = "2")]
    pub max_senders: usize,
    /// overwrite an image of another source (or a file not written by
    /// rescue receive) instead of refusing
    #[argh(switch)]
    pub force: bool,
    /// exit after the first image that is complete (verified or not)
    #[argh(switch)]
    pub once: bool,
    /// also write the pairing code to FILE (created, mode 0600), for scripts
    #[argh(option)]
    pub code_out: Option<String>,
}

/// The receive command's name in messages.
pub const NAME: &str = "receive";

pub fn run_receive(cmd: ReceiveCommand, stop: &AtomicBool) -> i32 {
    if cmd.max_senders == 0 {
        return cliconv::fail(NAME, "--max-senders must be at least 1").code();
    }
    let code = match PairingCode::generate() {
        Ok(c) => c,
        Err(e) => return cliconv::fail(NAME, format!("getrandom: {e}")).code(),
    };
    let say: Say = Arc::new(|line: String| {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{}", cliconv::message_line(NAME, line));
        let _ = out.flush();
    });
    let opts = ReceiveOptions {
        dir: PathBuf::from(&cmd.dir),
        max_senders: cmd.max_senders,
        force: cmd.force,
        once: cmd.once,
    };
    let rx = match Receiver::bind(&cmd.listen, opts, code, say.clone()) {
        Ok(r) => r,
        Err(e) => return cliconv::fail(NAME, e).code(),
    };
    if let Some(f) = &cmd.code_out {
        if let Err(e) = write_secret(Path::new(f), &rx.code().display()) {
            return cliconv::fail(NAME, format!("--code-out {f}: {e}")).code();
        }
    }
    let addr = rx.local_addr().map(|a| a.to_string()).unwrap_or_default();
    say(format!("listening on {addr}, images go to {}", cmd.dir));
    say(format!("pairing code: {}", rx.code().display()));
    say(format!(
        "on the appliance: rescue image SRC rescue://THIS-HOST:{}/NAME",
        addr.rsplit(':').next().unwrap_or("PORT")
    ));
    let report = rx.serve(stop);
    report.exit_code()
}

/// Creates `path` with mode 0600 and writes `text` and a newline.
fn write_secret(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{text}")?;
    f.sync_all()
}

/// Version of the `--json` result of a streamed `rescue image`.
pub const JSON_SCHEMA: u32 = 1;

/// `rescue image SRC rescue://HOST:PORT/NAME`: the code from --code-file,
/// $RESCUE_PAIRING_CODE or the terminal; the source opened read-only as
/// `rescue image` opens it; progress and the summary as `rescue image`.
pub fn run_image(cmd: ImageCommand, stop: &AtomicBool) -> i32 {
    let n = imaging::cli::NAME;
    match prepare(&cmd) {
        Ok((target, src, opts)) => {
            let code = match read_code(cmd.code_file.as_deref()) {
                Ok(c) => c,
                Err(e) => return cliconv::fail(n, e).code(),
            };
            stream(&cmd, &target, src.as_ref(), opts, &code, stop)
        }
        Err(e) => cliconv::fail(n, e).code(),
    }
}

/// [`run_image`] with the pairing code already in memory (the menu asked
/// for it): `rescue image SRC rescue://HOST:PORT/NAME --sparse`, printing
/// as that command does. The code is never on a command line or in a log.
pub fn image_with_code(src: &str, target: &Target, code: &PairingCode, stop: &AtomicBool) -> i32 {
    let n = imaging::cli::NAME;
    let url = target.url();
    let cmd = match ImageCommand::from_args(&["image"], &[src, url.as_str(), "--sparse"]) {
        Ok(c) => c,
        Err(e) => return cliconv::fail(n, e.output).code(),
    };
    match prepare(&cmd) {
        Ok((target, src, opts)) => stream(&cmd, &target, src.as_ref(), opts, code, stop),
        Err(e) => cliconv::fail(n, e).code(),
    }
}

/// The checks before anything is sent: options that only fit a local
/// DST, the URL, the source.
fn prepare(cmd: &ImageCommand) -> Result<(Target, Box<dyn BlockDevice>, Options), String> {
    for (set, opt) in [
        (cmd.map.is_some(), "--map (the receiver keeps the mapfile)"),
        (cmd.write.is_some(), "--write"),
        (cmd.preallocate, "--preallocate"),
        (
            cmd.hash_file,
            "--hash-file (the receiver writes NAME.sha256)",
        ),
    ] {
        if set {
            return Err(format!("{opt} does not go with a rescue:// DST"));
        }
    }
    if let Some(h) = &cmd.hash {
        if h != "sha256" {
            return Err(format!(
                "--hash: unsupported algorithm '{h}' (supported: sha256)"
            ));
        }
    }
    if let Some(c) = cmd.cluster_size {
        if c == 0 || c > 16 << 20 {
            return Err(format!(
                "--cluster-size {c}: must be between 1 and 16 MiB for a rescue:// DST"
            ));
        }
    }
    let target = Target::parse(&cmd.dst).map_err(|e| format!("DST {e}"))?;
    let dev = Device::open_with(
        &cmd.src,
        OpenOptionsRo {
            direct: !cmd.no_direct,
        },
    )
    .map_err(|e| format!("SRC: {e}"))?;
    let direct = dev.kind() == DeviceKind::BlockDevice && !cmd.no_direct;
    let src: Box<dyn BlockDevice> = match &cmd.simulate_bad {
        None => Box::new(dev),
        Some(f) => {
            let (m, _) = ddmap::load(Path::new(f))
                .map_err(|e| format!("--simulate-bad: {e}"))?
                .ok_or_else(|| format!("--simulate-bad: {f}: no such file or no status line"))?;
            Box::new(FaultDevice::from_test_mapfile(dev, &m))
        }
    };
    let opts = Options {
        reverse: cmd.reverse,
        retry_passes: cmd.retry_passes,
        min_read_rate: cmd.min_read_rate,
        cluster_size: cmd
            .cluster_size
            .unwrap_or(if direct { 1 << 20 } else { 64 << 10 }) as usize,
        ..Options::default()
    };
    Ok((target, src, opts))
}

/// The pairing code: from `file`, else $RESCUE_PAIRING_CODE, else asked
/// for on the terminal without echo. It is never put in a log.
pub fn read_code(file: Option<&str>) -> Result<PairingCode, String> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f).map_err(|e| format!("--code-file {f}: {e}"))?;
        return PairingCode::parse(&t).map_err(|e| format!("--code-file {f}: {e}"));
    }
    if let Ok(t) = std::env::var("RESCUE_PAIRING_CODE") {
        return PairingCode::parse(&t).map_err(|e| format!("$RESCUE_PAIRING_CODE: {e}"));
    }
    let t = prompt_no_echo("Pairing code shown by rescue receive: ").map_err(|e| {
        format!("no --code-file or $RESCUE_PAIRING_CODE, and the terminal cannot be asked: {e}")
    })?;
    PairingCode::parse(&t)
}

/// Asks on /dev/tty with echo off.
fn prompt_no_echo(prompt: &str) -> io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    use std::io::BufRead;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let old = tcgetattr(&tty)?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Flush, &quiet)?;
    let mut w = &tty;
    let _ = write!(w, "{prompt}");
    let _ = w.flush();
    let mut line = String::new();
    let r = io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Flush, &old);
    r?;
    Ok(line)
}

fn stream(
    cmd: &ImageCommand,
    target: &Target,
    src: &dyn BlockDevice,
    options: Options,
    code: &PairingCode,
    stop: &AtomicBool,
) -> i32 {
    let n = imaging::cli::NAME;
    let text = !cmd.json;
    let tty = text && io::stdout().is_terminal();
    let out: Box<dyn Write> = if text {
        Box::new(io::stdout())
    } else {
        Box::new(io::stderr())
    };
    let mut render = ConsoleRenderer::new(out, tty, Duration::from_secs(10));
    let say = |line: String| {
        if text {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    let plan = format!(
        "{}: {} ({} bytes, {}-byte sectors) -> {}",
        imaging::job::COMMAND,
        src.name(),
        src.size(),
        src.logical_sector_size(),
        target.url()
    );
    say(plan.clone());
    log::info!("{plan}");
    let job = SendJob {
        source: src,
        identity: sender::source_identity(&cmd.src),
        sparse: cmd.sparse,
        options,
        command_line: format!("{} {} {}", imaging::job::COMMAND, cmd.src, target.url()),
    };
    let r = sender::send(
        &job,
        target,
        code,
        stop,
        &mut |p| render.update(p),
        &mut |l| say(l),
    );
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            log::info!("{plan}: {e}");
            return cliconv::fail(n, format!("{}: {e}", target.url())).code();
        }
    };
    if let Some(e) = imaging::job::outcome_error(&r.report.outcome) {
        cliconv::eprint(
            n,
            format!("{e}; run the same command again to resume from the receiver's mapfile"),
        );
    }
    if let Some(e) = &r.verify_error {
        cliconv::eprint(n, format!("verification failed: {e}"));
    }
    if text {
        render.finish(&r.report);
    }
    drop(render);
    if let (Some(a), Some(b)) = (r.sha256, r.receiver_sha256) {
        if a == b {
            if text {
                print!("{}", imaging::hash::sha256sum_line(&a, &target.url()));
                println!("verified: the receiver's image has the same SHA-256");
            }
        } else {
            cliconv::eprint(
                n,
                format!(
                    "SHA-256 MISMATCH: the source reads {}, the receiver's image {}",
                    imaging::hash::hex(&a),
                    imaging::hash::hex(&b)
                ),
            );
        }
    }
    log::info!("{}", log_line(&plan, &r));
    let code = r.exit_code();
    if cmd.json {
        let printed = cliconv::print_json(n, JSON_SCHEMA, &json_result(target, &r));
        if printed == Exit::Error {
            return printed.code();
        }
    }
    code
}

fn log_line(plan: &str, r: &SendReport) -> String {
    let t = &r.report.totals;
    format!(
        "{plan}: {}; {} of {} bytes rescued ({} this run), {} bytes bad; verified: {}",
        outcome_name(&r.report.outcome),
        t.bytes(Status::Finished),
        r.report.size,
        r.report.rescued_this_run,
        t.bytes(Status::BadSector),
        r.verified()
    )
}

fn outcome_name(o: &imaging::Outcome) -> &'static str {
    use imaging::Outcome::*;
    match o {
        Completed => "completed",
        Interrupted => "interrupted",
        SourceVanished(_) => "source_vanished",
        WriteFailed(_) => "link_failed",
        MapfileFailed(_) => "mapfile_failed",
        ReadFailed(_) => "read_failed",
    }
}

fn json_result(target: &Target, r: &SendReport) -> serde_json::Value {
    let t = &r.report.totals;
    serde_json::json!({
        "destination": target.url(),
        "outcome": outcome_name(&r.report.outcome),
        "error": imaging::job::outcome_error(&r.report.outcome).or_else(|| r.verify_error.clone()),
        "size": r.report.size,
        "resumed_from": r.resumed_from,
        "rescued": t.bytes(Status::Finished),
        "non_tried": t.bytes(Status::NonTried),
        "non_trimmed": t.bytes(Status::NonTrimmed),
        "non_scraped": t.bytes(Status::NonScraped),
        "bad_sector": t.bytes(Status::BadSector),
        "bad_sector_areas": t.areas(Status::BadSector),
        "rescued_this_run": r.report.rescued_this_run,
        "reads": r.report.reads,
        "read_errors": r.report.read_errors,
        "elapsed_seconds": r.report.elapsed.as_secs_f64(),
        "sha256": r.sha256.map(|d| imaging::hash::hex(&d)),
        "receiver_sha256": r.receiver_sha256.map(|d| imaging::hash::hex(&d)),
        "verified": r.verified(),
        "exit_code": r.exit_code(),
    })
}

/// `rescue vmfs extract SRC... PATH... rescue://HOST:PORT/NAME`: the
/// volume opened as for a local extraction, the code as for `rescue
/// image`, progress and the summary as a local extraction prints them.
pub fn run_vmfs_extract(cmd: vmfs::cli::ExtractCommand, stop: &AtomicBool) -> i32 {
    let n = vmfs::cli::EXTRACT_NAME;
    let (opened, paths, dest) = match cmd.open() {
        Ok(x) => x,
        Err(e) => return cliconv::fail(n, e).code(),
    };
    let target = match Target::parse(&dest) {
        Ok(t) => t,
        Err(e) => return cliconv::fail(n, format!("DEST_DIR {e}")).code(),
    };
    let code = match read_code(cmd.code_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return cliconv::fail(n, e).code(),
    };
    let mut progress: Box<dyn FnMut(&vmfs::extract::Progress)> = if cmd.quiet {
        Box::new(|_: &vmfs::extract::Progress| {})
    } else {
        Box::new(vmfs::cli::progress_printer(io::stderr()))
    };
    let r = send_extract(&opened.volume, &paths, &target, &code, stop, &mut progress);
    drop(progress);
    match r {
        Ok(r) => {
            print_tree_end(&r, &mut io::stdout().lock());
            r.exit_code()
        }
        Err(e) => cliconv::fail(n, format!("{}: {e}", target.url())).code(),
    }
}

/// The library call behind `vmfs extract ... rescue://` and the menu:
/// streams `paths` of `volume` to `target`, logged; [`print_tree_end`]
/// shows the result.
pub fn send_extract(
    volume: &vmfs::Volume,
    paths: &[String],
    target: &Target,
    code: &PairingCode,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&vmfs::extract::Progress),
) -> Result<crate::treesend::TreeReport, sender::SendError> {
    let job = crate::treesend::TreeJob {
        volume,
        paths,
        identity: crate::treesend::volume_identity(volume),
    };
    log::info!("vmfs extract {} -> {}", paths.join(" "), target.url());
    let r = crate::treesend::send_tree(&job, target, code, stop, progress);
    match &r {
        Ok(r) => log::info!(
            "vmfs extract to {}: {} files verified ({} already there, {} continued), {} bytes sent, {} mismatched, exit {}",
            target.url(),
            r.stats.verified,
            r.stats.already,
            r.stats.continued,
            r.stats.sent,
            r.stats.mismatched.len(),
            r.exit_code()
        ),
        Err(e) => log::info!("vmfs extract to {}: {e}", target.url()),
    }
    r
}

/// The end of a streamed extraction: the local summary, then what the
/// receiver confirmed.
pub fn print_tree_end(r: &crate::treesend::TreeReport, out: &mut dyn Write) {
    vmfs::cli::print_extract_summary(&r.extract, out);
    let s = &r.stats;
    let _ = writeln!(
        out,
        "the receiver verified {} files by SHA-256 ({} it already had, {} continued from a partial copy); {} sent",
        s.verified,
        s.already,
        s.continued,
        screen::human_size(s.sent)
    );
    for m in &s.mismatched {
        let _ = writeln!(
            out,
            "MISMATCH: {m} (run the same command again to send it anew)"
        );
    }
    for l in &r.extract.losses {
        let _ = writeln!(out, "lost: {} ({} ranges)", l.path, l.ranges.len());
    }
    match &r.report_sent {
        Some(Ok(())) => {
            let _ = writeln!(out, "report: {}", vmfs::extract::REPORT_NAME);
        }
        Some(Err(e)) => {
            let _ = write!(
                out,
                "report not sent: {e}; here it is:\n{}",
                r.extract.text()
            );
        }
        None => {}
    }
    if r.extract.stopped.is_some() && !r.extract.cancelled {
        let _ = writeln!(out, "run the same command again to continue: files the receiver has whole are checked, not sent again");
    } else if !r.finished && r.extract.stopped.is_none() {
        let _ = writeln!(
            out,
            "the receiver did not confirm the end; run the same command again"
        );
    }
}
