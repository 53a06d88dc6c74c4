//! The menu's browser of a mounted guest filesystem: a folder's entries
//! with sizes, into folders and up, a shell in the folder, and copying a
//! file or folder to a destination with progress and a final report
//! (`treecopy`: unreadable blocks zero-filled and listed, nothing at the
//! destination overwritten without asking).

use crate::destmenu::{ask, Chosen};
use crate::guestmenu::Flow;
use std::cell::RefCell;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// What is browsed.
pub struct Place {
    /// The mount point.
    pub root: PathBuf,
    /// `/dev/nbd0p1 ext4 "root"`, for the header.
    pub what: String,
    /// Where copies go under the destination: `vm1/p1`.
    pub folder: String,
    /// Disks holding the source (never offered as destinations).
    pub source_disks: Vec<String>,
}

/// Entries shown at once; `n`/`p` page through a larger folder.
pub const PAGE: usize = 40;

/// The report file written beside copies that lost something.
pub const REPORT: &str = "rescue-copy-report.txt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// Size of a file; what a link points to; why it could not be read.
    pub size: Option<u64>,
    pub note: String,
}

/// A folder's entries, folders first, by name; links are not followed.
pub fn list(dir: &Path) -> Result<Vec<Entry>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries: Vec<Entry> = rd
        .map(|e| match e {
            Ok(e) => {
                let name = e.file_name().to_string_lossy().into_owned();
                match std::fs::symlink_metadata(e.path()) {
                    Ok(md) if md.file_type().is_symlink() => Entry {
                        note: std::fs::read_link(e.path())
                            .map(|t| format!("-> {}", t.display()))
                            .unwrap_or_else(|_| "link".into()),
                        name,
                        is_dir: false,
                        size: None,
                    },
                    Ok(md) => Entry {
                        is_dir: md.is_dir(),
                        size: md.is_file().then_some(md.len()),
                        note: if md.is_dir() || md.is_file() {
                            String::new()
                        } else {
                            "special file".into()
                        },
                        name,
                    },
                    Err(err) => Entry {
                        name,
                        is_dir: false,
                        size: None,
                        note: format!("unreadable: {err}"),
                    },
                }
            }
            Err(err) => Entry {
                name: "?".into(),
                is_dir: false,
                size: None,
                note: format!("unreadable entry: {err}"),
            },
        })
        .collect();
    entries.sort_by(|a, b| (!a.is_dir, &a.name).cmp(&(!b.is_dir, &b.name)));
    Ok(entries)
}

/// `dir` shown from the mount's root: `/home/user`.
fn inside(place: &Place, dir: &Path) -> String {
    let rel = dir.strip_prefix(&place.root).unwrap_or(dir);
    format!("/{}", rel.display())
}

/// Browses `place` from its root; false when the input ended.
pub fn browse(
    flow: &mut Flow<'_>,
    place: &Place,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let mut dir = place.root.clone();
    let mut first = 0usize;
    loop {
        let entries = match list(&dir) {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                if dir == place.root {
                    return ask(input, out, "Enter: back: ").is_some();
                }
                dir.pop();
                continue;
            }
        };
        if first >= entries.len() {
            first = 0;
        }
        let _ = write!(
            out,
            "\n{}",
            screen::wrap_words(
                &format!(
                    "{}  ({}, read-only at {})",
                    inside(place, &dir),
                    place.what,
                    place.root.display()
                ),
                screen::SCREEN_WIDTH,
                4
            )
        );
        if entries.is_empty() {
            let _ = writeln!(out, "  (empty)");
        }
        let shown = &entries[first..entries.len().min(first + PAGE)];
        for (i, e) in shown.iter().enumerate() {
            let row = format!(
                " {:>4}  {:<40} {:>10}  {}",
                first + i + 1,
                if e.is_dir {
                    format!("{}/", e.name)
                } else {
                    e.name.clone()
                },
                e.size.map(screen::human_size).unwrap_or_default(),
                e.note
            );
            let _ = write!(
                out,
                "{}",
                screen::wrap_words(row.trim_end(), screen::SCREEN_WIDTH, 8)
            );
        }
        let paged = entries.len() > PAGE;
        if paged {
            let _ = writeln!(
                out,
                "  entries {}-{} of {} (n: next page, p: previous)",
                first + 1,
                first + shown.len(),
                entries.len()
            );
        }
        let Some(a) = ask(
            input,
            out,
            "N: open folder, c N: copy N, c: copy this folder, s: shell here,\n\
             u: up, Enter: back to the disk: ",
        ) else {
            return false;
        };
        let pick = |s: &str| crate::menu::pick(s, &entries);
        match a.as_str() {
            "" => return true,
            "u" => {
                if dir != place.root {
                    dir.pop();
                    first = 0;
                }
            }
            "n" if paged => first = (first + PAGE).min(entries.len().saturating_sub(1)),
            "p" if paged => first = first.saturating_sub(PAGE),
            "s" => {
                log::info!("guest: shell in {}", dir.display());
                flow.kernel.shell(&dir, out);
            }
            "c" => {
                if !copy(flow, place, &dir, input, out) {
                    return false;
                }
            }
            s if s.starts_with('c') => match pick(&s[1..]) {
                Some(e) => {
                    if !copy(flow, place, &dir.join(&e.name), input, out) {
                        return false;
                    }
                }
                None => {
                    let _ = writeln!(out, "'{s}': give an entry number after c");
                }
            },
            s => match pick(s) {
                Some(e) if e.is_dir => {
                    dir.push(&e.name);
                    first = 0;
                }
                Some(e) => {
                    let _ = writeln!(out, "{} is not a folder: 'c N' copies it.", e.name);
                }
                None => {
                    let _ = writeln!(out, "'{s}' is not one of the choices.");
                }
            },
        }
    }
}

/// Copies `what` (a file or folder under the mount) to a destination the
/// user chooses: `<destination>/<place.folder>/<name>`. False when the
/// input ended.
fn copy(
    flow: &mut Flow<'_>,
    place: &Place,
    what: &Path,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let shown = inside(place, what);
    let (files, bytes) = treecopy::measure(what);
    let desc = format!(
        "{shown} ({}, {})",
        screen::plural(files, "file", "files"),
        screen::human_size(bytes)
    );
    let machine = (flow.dest)();
    let at = match crate::destmenu::choose_on(&machine, &place.source_disks, &desc, input, out) {
        Chosen::Ended => return false,
        Chosen::Back | Chosen::Lab => return true,
        Chosen::At(at, free) => {
            if let Some(free) = free.filter(|&f| f < bytes) {
                let _ = writeln!(
                    out,
                    "Warning: {} free, the copy needs {}.",
                    screen::human_size(free),
                    screen::human_size(bytes)
                );
            }
            at
        }
    };
    let target = at.join(&place.folder);
    let Some(a) = ask(
        input,
        out,
        &format!(
            "Copy {shown} to {}?\n  Files there are not overwritten without asking. [y/N]: ",
            target.display()
        ),
    ) else {
        return false;
    };
    if !a.eq_ignore_ascii_case("y") {
        let _ = writeln!(out, "Cancelled; nothing was written.");
        return true;
    }
    log::info!(
        "guest: copy of {} ({}) to {} confirmed",
        what.display(),
        place.what,
        target.display()
    );
    let _ = writeln!(
        out,
        "Copying; Ctrl-C stops (the file being copied is removed)."
    );
    crate::stop_on_signals();
    crate::STOP.store(false, Ordering::SeqCst);
    let (report, ended) = copy_to(what, &target, input, out);
    crate::STOP.store(false, Ordering::SeqCst);
    if ended {
        return false;
    }
    log::info!(
        "guest: copy of {} to {}: {}",
        what.display(),
        target.display(),
        report.render(0).lines().next().unwrap_or("")
    );
    ask(input, out, "Enter: back to the folder: ").is_some()
}

/// Copies with progress lines and the conflict question on `out`, the
/// answers from `input`; prints the report and writes the report file
/// when something was lost. Gives the report and whether the input ended.
pub fn copy_to(
    what: &Path,
    target: &Path,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> (treecopy::Report, bool) {
    let screen_out = RefCell::new(&mut *out);
    let mut ended = false;
    let mut throttle = screen::Throttle::after(std::time::Duration::from_secs(1));
    let report = treecopy::copy(
        what,
        target,
        &treecopy::open_file,
        &mut |rel| {
            let mut o = screen_out.borrow_mut();
            let q = format!(
                "{} exists at the destination: o overwrite, O overwrite all, s skip,\n\
                 S skip all, q stop [s]: ",
                rel.display()
            );
            let a = ask(input, &mut *o, &q);
            use treecopy::Conflict;
            match a.as_deref() {
                None => {
                    ended = true;
                    Conflict::Stop
                }
                Some("o") => Conflict::Overwrite,
                Some("O") => Conflict::OverwriteAll,
                Some("S") => Conflict::SkipAll,
                Some("q") => Conflict::Stop,
                Some(_) => Conflict::Skip,
            }
        },
        &mut |p| {
            if throttle.ready(p.done) {
                let _ = writeln!(screen_out.borrow_mut(), "{}", p.line());
            }
        },
        &crate::STOP,
    );
    let _ = write!(out, "{}", report.render(10));
    if report.problems() {
        let file = target.join(REPORT);
        let text = report.full_text(what, target);
        let saved = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        match saved {
            Ok(()) => {
                let _ = writeln!(out, "The full list is in {}.", file.display());
            }
            Err(e) => {
                let _ = writeln!(out, "(the report file {}: {e})", file.display());
            }
        }
    }
    let verdict = match &report {
        r if r.stopped.is_some() => "The copy stopped early (see above); what was copied is kept.",
        r if r.problems() => "Copied, with unreadable blocks or items left out (see above).",
        r if !r.skipped.is_empty() => {
            "Copied what was not at the destination yet: every byte was read."
        }
        _ => "Copied: every byte was read.",
    };
    let _ = writeln!(out, "{verdict}");
    (report, ended)
}
