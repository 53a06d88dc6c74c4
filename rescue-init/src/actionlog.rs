//! The action log: what the appliance did in this boot, for a support
//! engineer or the admin's later self. Every `rescue` process (PID 1, the
//! menus, each subcommand) appends to one file in RAM through `simplelog`;
//! the libraries record their writes, mounts and md actions with `log`'s
//! macros. At reboot and power-off PID 1 appends the file to the boot
//! stick's RESCUEDATA partition or to the mounted destinations, where it
//! outlives the boot.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log of this boot (tmpfs).
pub const LOG_FILE: &str = "/run/rescue/log";
/// Where the log is kept on a destination or RESCUEDATA, appended to at
/// every shutdown.
pub const SAVED_LOG: &str = "rescue-logs/rescue.log";
/// A host run logs only where this names a file.
const ENV_LOG: &str = "RESCUE_LOG";

/// Starts logging for this process: on the appliance to [`LOG_FILE`],
/// elsewhere to `$RESCUE_LOG` if set, else not at all. One line per
/// record, written with one write(2) so that lines of processes that run
/// at the same time do not mix.
pub fn start() {
    let path = match std::env::var_os(ENV_LOG) {
        Some(p) => PathBuf::from(p),
        None if crate::init::is_appliance() || is_pid1() => PathBuf::from(LOG_FILE),
        None => return,
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = OpenOptions::new().create(true).append(true).open(&path) else {
        return;
    };
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(simplelog::LevelFilter::Off)
        .set_target_level(simplelog::LevelFilter::Off)
        .set_location_level(simplelog::LevelFilter::Off)
        .build();
    let _ = simplelog::WriteLogger::init(
        simplelog::LevelFilter::Info,
        config,
        std::io::LineWriter::new(file),
    );
}

fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// The command line of this process, as the log records it.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("rescue {}", args.join(" "))
}

/// Appends `log` (the text of this boot's log) to [`SAVED_LOG`] under each
/// of `dirs`, each copy headed by the boot's id, and syncs it. Returns one
/// line per directory saying where it went or why it did not.
pub fn save(log: &str, boot_id: &str, dirs: &[PathBuf]) -> Vec<String> {
    let mut said = Vec::new();
    for dir in dirs {
        let path = dir.join(SAVED_LOG);
        let r = (|| -> std::io::Result<()> {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            let mut text = format!("=== rescue boot {boot_id} ===\n{log}");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })();
        said.push(match r {
            Ok(()) => format!("action log appended to {}", path.display()),
            Err(e) => format!("action log not saved to {}: {e}", path.display()),
        });
    }
    said
}

/// Where the log goes at shutdown: every mounted destination under
/// `/mnt/dest`; with none mounted, the boot stick's RESCUEDATA partition,
/// mounted for this (it is the appliance's own).
pub fn save_at_shutdown() -> Vec<String> {
    let Ok(log) = std::fs::read_to_string(LOG_FILE) else {
        return Vec::new();
    };
    if log.is_empty() {
        return Vec::new();
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = blockdev::sys::parse_mounts(&mounts)
        .into_iter()
        .filter(|(dev, at, _)| {
            dev.starts_with("/dev/") && Path::new(at).starts_with(dest::MOUNT_ROOT)
        })
        .map(|(_, at, _)| PathBuf::from(at))
        .collect();
    let mut said = Vec::new();
    if dirs.is_empty() {
        match rescue_data_dir() {
            Ok(Some(at)) => dirs.push(at),
            Ok(None) => said.push(
                "action log not saved: no destination mounted and no RESCUEDATA partition".into(),
            ),
            Err(e) => said.push(format!("action log not saved to RESCUEDATA: {e}")),
        }
    }
    said.extend(save(&log, &boot_id, &dirs));
    said
}

/// The boot stick's RESCUEDATA partition, mounted if it is not yet.
pub fn rescue_data_dir() -> Result<Option<PathBuf>, String> {
    dest::data_partition_dir(
        Path::new("/sys"),
        Path::new("/dev"),
        &crate::modules::load_by_name,
    )
}

/// The last `n` lines of this boot's log, for the menu.
pub fn tail(n: usize) -> String {
    match std::fs::read_to_string(LOG_FILE) {
        Ok(s) if !s.is_empty() => {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(n);
            let mut out = String::new();
            if from > 0 {
                out.push_str(&format!("({from} earlier lines in {LOG_FILE})\n"));
            }
            for l in &lines[from..] {
                out.push_str(&screen::wrap_words(l, screen::SCREEN_WIDTH, 4));
            }
            out
        }
        Ok(_) => "The action log is empty.\n".into(),
        Err(e) => format!("No action log ({LOG_FILE}: {e}).\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_appends_each_boot_with_its_header() {
        let dir = std::env::temp_dir().join(format!("actionlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let said = save("a\nb\n", "boot-1", std::slice::from_ref(&dir));
        assert!(said[0].contains("appended to"), "{said:?}");
        let said = save("c", "boot-2", std::slice::from_ref(&dir));
        assert!(said[0].contains("appended to"), "{said:?}");
        let text = std::fs::read_to_string(dir.join(SAVED_LOG)).unwrap();
        assert_eq!(
            text,
            "=== rescue boot boot-1 ===\na\nb\n=== rescue boot boot-2 ===\nc\n"
        );
        // A directory that cannot take it says so.
        let said = save("x", "boot-3", &[dir.join(SAVED_LOG)]);
        assert!(said[0].contains("not saved"), "{said:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
