//! The menu's datastore browser: VMFS volumes found on the disks, their
//! folders and files with sizes; the user marks VM folders or files and
//! extracts them to a destination with the library's extraction on the
//! volume already open (as `rescue vmfs extract`: sizes and times kept,
//! holes kept, unreadable bytes zero-filled and reported).

use crate::destmenu::{ask, Chosen};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// One datastore: where it is and the opened volume.
struct Datastore {
    /// The disk (or partition) path the volume starts on.
    source: String,
    /// Byte offset of the VMFS partition on `source`.
    offset: u64,
    /// Every disk holding a part of the volume (never a destination).
    disks: Vec<String>,
    /// Every source the volume is read from (for attaching its VM disks).
    devices: Vec<String>,
    /// "same volume as /dev/sdb (a copy)" and choices between copies.
    notes: Vec<String>,
    vol: std::sync::Arc<vmfs::Volume>,
}

/// Whether the probe saw a VMFS signature on the disk or a partition.
pub fn has_vmfs(d: &probe::Disk) -> bool {
    d.contents.as_ref().is_some_and(|c| c.vmfs.is_some())
        || d.partitions
            .iter()
            .any(|p| p.contents.as_ref().is_some_and(|c| c.vmfs.is_some()))
}

/// The datastores on `paths` (disks, partitions or images), as the library
/// plans them: a volume spanning several disks opened whole, copies of one
/// volume (a disk and its raw clone) each on its own. Failures are listed
/// to `out`.
fn find_datastores(paths: &[String], out: &mut impl Write) -> Vec<Datastore> {
    let (plans, failed) = vmfs::datastores::plan_paths(paths);
    for (path, e) in failed {
        let _ = writeln!(out, "  ! {path}: {e}");
    }
    let mut found = Vec::new();
    for plan in plans {
        let d = plan.open();
        let place = d.place();
        let notes = d.notes();
        match d.volume {
            Ok(vol) => found.push(Datastore {
                disks: d
                    .devices
                    .iter()
                    .map(|(p, _)| p.trim_start_matches("/dev/").to_string())
                    .collect(),
                devices: d.devices.iter().map(|(p, _)| p.clone()).collect(),
                source: d.source,
                offset: d.offset,
                notes,
                vol: std::sync::Arc::new(vol),
            }),
            Err(e) => {
                let _ = writeln!(out, "  ! {place}: {e}");
            }
        }
    }
    found
}

/// Runs the browser on the disks where the probe saw VMFS; false when the
/// input ended.
pub fn run(disks: &[probe::Disk], input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let paths: Vec<String> = disks
        .iter()
        .filter(|d| has_vmfs(d))
        .map(|d| d.path.clone())
        .collect();
    run_on(&paths, input, out)
}

/// The browser over the datastores on `paths`.
fn run_on(paths: &[String], input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let _ = writeln!(out, "\nVMFS datastores:");
    let stores = find_datastores(paths, out);
    if stores.is_empty() {
        let _ = writeln!(out, "  none found on the disks");
        return ask(input, out, "Enter: back: ").is_some();
    }
    for (i, s) in stores.iter().enumerate() {
        let info = s.vol.info();
        let free = match vmfs::free_space(&s.vol) {
            Ok(sp) => format!("{} free", probe::render::human_size(sp.free_bytes)),
            Err(_) => "free space unknown".into(),
        };
        let row = format!(
            " {:>2}  VMFS{} \"{}\"  {}, {free}  on {} at byte {}",
            i + 1,
            info.vmfs_version,
            info.label,
            probe::render::human_size(info.capacity),
            s.source,
            s.offset
        );
        let _ = write!(
            out,
            "{}",
            probe::render::wrap_words(&row, probe::render::SCREEN_WIDTH, 6)
        );
        for n in &s.notes {
            let _ = write!(
                out,
                "{}",
                probe::render::wrap_words(&format!("      {n}"), probe::render::SCREEN_WIDTH, 8)
            );
        }
    }
    let Some(a) = ask(input, out, "Datastore (Enter: back): ") else {
        return false;
    };
    let Some(store) = crate::menu::pick(&a, &stores) else {
        return true;
    };
    browse(store, input, out)
}

struct Entry {
    name: String,
    path: String,
    is_dir: bool,
    size: Option<u64>,
    note: String,
}

fn list(vol: &vmfs::Volume, dir: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = vol
        .read_dir(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| {
            let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
            let st = vol.inode(e.addr).and_then(|i| vol.stat_inode(&i));
            let (size, note) = match &st {
                Ok(s) => (
                    Some(s.size),
                    if let Some(l) = &s.link {
                        format!("-> {l}")
                    } else if s.rdm.is_some() {
                        "raw device mapping (no data here)".into()
                    } else {
                        String::new()
                    },
                ),
                Err(err) => (None, format!("unreadable: {err}")),
            };
            Entry {
                is_dir: e.file_type.is_dir(),
                name: e.name,
                path,
                size,
                note,
            }
        })
        .collect();
    entries.sort_by(|a, b| (!a.is_dir, &a.name).cmp(&(!b.is_dir, &b.name)));
    Ok(entries)
}

fn browse(store: &Datastore, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let label = store.vol.info().label;
    let mut dir = String::from("/");
    let mut marked: Vec<String> = Vec::new();
    loop {
        let entries = match list(&store.vol, &dir) {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(out, "{dir}: {e}");
                dir = parent(&dir);
                if dir == "/" && marked.is_empty() {
                    return ask(input, out, "Enter: back: ").is_some();
                }
                continue;
            }
        };
        let _ = writeln!(
            out,
            "\n{label}:{dir}  on {}  ({} marked)",
            store.source,
            marked.len()
        );
        for (i, e) in entries.iter().enumerate() {
            let row = format!(
                " {:>3} {} {:<32} {:>10}  {}",
                i + 1,
                if marked.contains(&e.path) { '*' } else { ' ' },
                if e.is_dir {
                    format!("{}/", e.name)
                } else {
                    e.name.clone()
                },
                e.size
                    .filter(|_| !e.is_dir)
                    .map(probe::render::human_size)
                    .unwrap_or_default(),
                e.note
            );
            let _ = write!(
                out,
                "{}",
                probe::render::wrap_words(row.trim_end(), probe::render::SCREEN_WIDTH, 8)
            );
        }
        let vm_disks = entries
            .iter()
            .filter(|e| !e.is_dir && crate::vmdisks::is_descriptor_name(&e.name))
            .count();
        if vm_disks > 0 {
            let _ = writeln!(
                out,
                "  This folder holds {}: v lists them, to attach one and look inside.",
                screen::plural(vm_disks as u64, "VM disk", "VM disks")
            );
        }
        let Some(a) = ask(
            input,
            out,
            "N: open folder, m N: mark/unmark, x: extract marked, u: up, Enter: back: ",
        ) else {
            return false;
        };
        let pick = |s: &str| crate::menu::pick(s, &entries);
        match a.as_str() {
            "" => return true,
            "u" => dir = parent(&dir),
            "v" if vm_disks > 0 => {
                let folder = crate::vmdisks::Folder::Vmfs {
                    volume: store.vol.clone(),
                    path: dir.clone(),
                    devices: store.devices.clone(),
                    label: label.clone(),
                };
                let mut kernel = crate::guestmenu::System;
                let mut flow = crate::guestmenu::Flow {
                    kernel: &mut kernel,
                    dest: &|| crate::guestmenu::system_destinations(),
                };
                if !crate::vmdisks::choose(&mut flow, &folder, &store.disks, input, out) {
                    return false;
                }
            }
            "x" if !marked.is_empty() => {
                if !extract(store, &label, &marked, input, out) {
                    return false;
                }
                marked.clear();
            }
            "x" => {
                let _ = writeln!(out, "Nothing is marked: 'm N' marks entry N.");
            }
            s if s.starts_with('m') => match pick(&s[1..]) {
                Some(e) => {
                    if let Some(i) = marked.iter().position(|p| p == &e.path) {
                        marked.remove(i);
                    } else {
                        marked.push(e.path.clone());
                    }
                }
                None => {
                    let _ = writeln!(out, "'{s}': give an entry number after m");
                }
            },
            s => match pick(s) {
                Some(e) if e.is_dir => dir = e.path.clone(),
                Some(e) => {
                    let _ = writeln!(out, "{} is a file: 'm N' marks it for extraction.", e.name);
                }
                None => {
                    let _ = writeln!(out, "'{s}' is not one of the choices.");
                }
            },
        }
    }
}

fn parent(dir: &str) -> String {
    match dir.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.to_string(),
    }
}

/// File-name-safe directory name for a datastore's label.
fn folder_for(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("vmfs-{}", if s.is_empty() { "volume".into() } else { s })
}

fn extract(
    store: &Datastore,
    label: &str,
    marked: &[String],
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let what = format!("{} item(s) from datastore \"{label}\"", marked.len());
    let at = match crate::destmenu::choose_or_lab(&store.disks, &what, input, out) {
        Chosen::Ended => return false,
        Chosen::Back => return true,
        Chosen::Lab => {
            return match crate::labmenu::ask_lab(&folder_for(label), input, out) {
                crate::labmenu::Asked::Ended => false,
                crate::labmenu::Asked::Back => true,
                crate::labmenu::Asked::Lab(lab) => {
                    extract_to_lab(store, label, marked, &lab, input, out)
                }
            }
        }
        Chosen::At(at, _) => at,
    };
    let target = at.join(folder_for(label));
    let Some(a) = ask(
        input,
        out,
        &format!(
            "Extract {} to {}?\n  Nothing is written to {}. [y/N]: ",
            marked.join(" "),
            target.display(),
            store.source
        ),
    ) else {
        return false;
    };
    if !a.eq_ignore_ascii_case("y") {
        let _ = writeln!(out, "Cancelled; nothing was written.");
        return true;
    }
    log::info!(
        "vmfs extract of {} from \"{label}\" on {} to {} confirmed",
        marked.join(" "),
        store.source,
        target.display()
    );
    let _ = writeln!(
        out,
        "Extracting; Ctrl-C stops (the file being copied is kept as NAME.incomplete)."
    );
    crate::stop_on_signals();
    crate::STOP.store(false, Ordering::SeqCst);
    let said = extract_to(&store.vol, marked, &target, &crate::STOP, out);
    crate::STOP.store(false, Ordering::SeqCst);
    let _ = writeln!(out, "{said}");
    ask(input, out, "Enter: back to the folder: ").is_some()
}

/// The extraction to a lab host: confirm, stream (`rescue vmfs extract
/// ... rescue://HOST:PORT/NAME`'s library call) with progress lines, the
/// summary.
fn extract_to_lab(
    store: &Datastore,
    label: &str,
    marked: &[String],
    lab: &crate::labmenu::Lab,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let url = lab.target.url();
    let Some(a) = ask(
        input,
        out,
        &format!(
            "Extract {} to {url}?\n  Files the lab host has whole are checked, not sent again.\n  Nothing is written to {}. [y/N]: ",
            marked.join(" "),
            store.source
        ),
    ) else {
        return false;
    };
    if !a.eq_ignore_ascii_case("y") {
        let _ = writeln!(out, "Cancelled; nothing was sent.");
        return true;
    }
    log::info!(
        "vmfs extract of {} from \"{label}\" on {} to {url} confirmed",
        marked.join(" "),
        store.source
    );
    let _ = writeln!(
        out,
        "Extracting to the lab host; Ctrl-C stops (the same choice later continues)."
    );
    crate::stop_on_signals();
    crate::STOP.store(false, Ordering::SeqCst);
    let said = send_to_lab(&store.vol, marked, lab, &crate::STOP, out);
    crate::STOP.store(false, Ordering::SeqCst);
    let _ = writeln!(out, "{said}");
    ask(input, out, "Enter: back to the folder: ").is_some()
}

/// Streams `marked` of `vol` to the lab host with progress lines and the
/// summary to `out`; the sentence that tells the user how it went.
fn send_to_lab(
    vol: &vmfs::Volume,
    marked: &[String],
    lab: &crate::labmenu::Lab,
    cancel: &AtomicBool,
    out: &mut impl Write,
) -> &'static str {
    let result = {
        let mut progress = vmfs::cli::progress_printer(&mut *out);
        labstream::cli::send_extract(vol, marked, &lab.target, &lab.code, cancel, &mut progress)
    };
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "vmfs extract: {}: {e}", lab.target.url());
            return "Nothing was sent (see the message above).";
        }
    };
    labstream::cli::print_tree_end(&r, out);
    let _ = out.flush();
    match r.exit_code() {
        _ if r.extract.cancelled => "Stopped as asked; the same choice later continues.",
        0 => "Done: every file was sent and verified by the lab host.",
        1 => "Done, with bytes lost or items skipped (see the report above).",
        _ => "Stopped: the link or the lab host failed; the same choice later continues.",
    }
}

/// Extracts `marked` of `vol` into `target`, with progress lines, the
/// summary and the report as `rescue vmfs extract` prints them, to `out`;
/// `cancel` stops it. Returns the sentence that tells the user how it went.
fn extract_to(
    vol: &vmfs::Volume,
    marked: &[String],
    target: &Path,
    cancel: &AtomicBool,
    out: &mut impl Write,
) -> &'static str {
    let result = {
        let mut progress = vmfs::cli::progress_printer(&mut *out);
        vmfs::extract::extract(vol, marked, target, &mut progress, cancel)
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "vmfs: {e}");
            return "Extraction failed or stopped early (see the message above).";
        }
    };
    vmfs::cli::print_extract_end(&report, out);
    let _ = out.flush();
    use vmfs::extract::Outcome;
    match report.outcome() {
        _ if report.cancelled => {
            "Stopped as asked: what was extracted so far is kept; the file being copied is \
             kept as NAME.incomplete."
        }
        Outcome::Clean => "Extracted: every byte was read.",
        Outcome::LostOrSkipped => {
            "Extracted, with unreadable bytes or items left out: see \
             vmfs-extract-report.txt in the target folder."
        }
        Outcome::Stopped => "Extraction failed or stopped early (see the message above).",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn paths_and_folders() {
        assert_eq!(parent("/vm1/disks"), "/vm1");
        assert_eq!(parent("/vm1"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(folder_for("datastore 1"), "vmfs-datastore_1");
        assert_eq!(folder_for(""), "vmfs-volume");
    }

    /// The real ESXi-written vmfs5 image from `<workspace>/../shared`,
    /// unpacked once by testkit.
    fn fixture_image() -> PathBuf {
        testkit::fixtures::unpacked("vmfs/vmfs5.bin.gz", None)
            .expect("the VMFS menu tests need the vmfs5 fixture")
    }

    fn fixture_store() -> Datastore {
        let img = fixture_image().display().to_string();
        let mut out = Vec::new();
        let mut stores = find_datastores(&[img], &mut out);
        assert_eq!(stores.len(), 1, "{}", String::from_utf8_lossy(&out));
        stores.remove(0)
    }

    /// Runs the menu on the fixture with scripted answers; returns whether
    /// it went on (the input did not end) and what it printed.
    fn scripted(script: &str) -> (bool, String) {
        let img = fixture_image().display().to_string();
        let mut input = std::io::Cursor::new(script.as_bytes().to_vec());
        let mut out = Vec::new();
        let went_on = run_on(&[img], &mut input, &mut out);
        (went_on, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn browsing_lists_opens_marks_and_says_when_nothing_is_marked() {
        let (went_on, out) = scripted("1\nx\nm 2\nm 2\nm 2\n2\nu\n99\n\n");
        assert!(went_on, "{out}");
        assert!(out.contains("VMFS5 \"vmfs5\""), "{out}");
        assert!(
            out.contains("Nothing is marked: 'm N' marks entry N."),
            "{out}"
        );
        // Folders first, by name: entry 2 is `directory/`; marked,
        // unmarked, marked again.
        assert!(out.contains("  1   collision/"), "{out}");
        assert!(out.contains("  2   directory/"), "{out}");
        assert!(out.contains("  2 * directory/"), "{out}");
        for n in ["(0 marked)", "(1 marked)"] {
            assert!(out.contains(n), "{n}: {out}");
        }
        assert!(out.contains("vmfs5:/directory  on"), "{out}");
        assert!(out.contains("file100"), "{out}");
        assert!(out.contains("'99' is not one of the choices."), "{out}");
        for name in ["big ", "small ", "symlink", "raw device mapping"] {
            assert!(out.contains(name), "{name}: {out}");
        }
    }

    #[test]
    fn the_browser_ends_with_its_input() {
        let (went_on, out) = scripted("1\nm 1\n");
        assert!(!went_on, "{out}");
        assert!(out.contains("(1 marked)"), "{out}");
    }

    #[test]
    fn extraction_to_a_lab_host_streams_the_same_files() {
        use std::sync::{Arc, Mutex};
        let store = fixture_store();
        let scratch = testkit::TempDir::new("vmfsmenu-lab");
        let recv = scratch.join("recv");
        std::fs::create_dir(&recv).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = Arc::clone(&lines);
        let rx = labstream::Receiver::bind(
            "127.0.0.1:0",
            labstream::ReceiveOptions {
                dir: recv.clone(),
                max_senders: 1,
                force: false,
                once: true,
            },
            labstream::PairingCode::generate().unwrap(),
            Arc::new(move |s: String| l2.lock().unwrap().push(s)),
        )
        .unwrap();
        let addr = rx.local_addr().unwrap();
        let code = rx.code().display();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let serving = std::thread::spawn(move || rx.serve(&s2));
        // The menu's questions, answered as a user would.
        let script = format!("{addr}\n\n{code}\ny\n\n");
        let mut input = std::io::Cursor::new(script.into_bytes());
        let mut out = Vec::new();
        let lab = match crate::labmenu::ask_lab("vmfs-test", &mut input, &mut out) {
            crate::labmenu::Asked::Lab(l) => l,
            _ => panic!("{}", String::from_utf8_lossy(&out)),
        };
        let marked = ["/directory".to_string(), "/small".to_string()];
        let said = send_to_lab(&store.vol, &marked, &lab, &AtomicBool::new(false), &mut out);
        let out = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(
            said, "Done: every file was sent and verified by the lab host.",
            "{out}"
        );
        assert!(out.contains("extracted 101 files"), "{out}");
        assert!(out.contains("the receiver verified 101 files"), "{out}");
        assert!(!out.contains(&code), "the code is never shown: {out}");
        let report = serving.join().unwrap();
        assert_eq!(report.exit_code(), 0, "{:?}", lines.lock().unwrap());
        assert_eq!(
            std::fs::read(recv.join("vmfs-test/directory/file42")).unwrap(),
            b"File 42\n"
        );
        assert_eq!(
            std::fs::read(recv.join("vmfs-test/small")).unwrap(),
            b"tiny\n"
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn extraction_on_the_open_volume_prints_the_summary_and_the_verdict() {
        let store = fixture_store();
        let scratch = testkit::TempDir::new("vmfsmenu-extract");
        let dest = scratch.join("out");
        let mut out = Vec::new();
        let marked = ["/directory".to_string(), "/small".to_string()];
        let said = extract_to(
            &store.vol,
            &marked,
            &dest,
            &AtomicBool::new(false),
            &mut out,
        );
        let out = String::from_utf8_lossy(&out);
        assert_eq!(said, "Extracted: every byte was read.", "{out}");
        assert!(out.contains("extracted 101 files"), "{out}");
        // The last progress line, in the CLI's words.
        assert!(
            out.contains("vmfs: ") && out.contains("stored data (100%)"),
            "{out}"
        );
        assert_eq!(std::fs::read(dest.join("small")).unwrap(), b"tiny\n");
        assert_eq!(
            std::fs::read(dest.join("directory/file42")).unwrap(),
            b"File 42\n"
        );
        assert!(!dest.join("vmfs-extract-report.txt").exists());
    }

    #[test]
    fn a_cancelled_extraction_says_so_and_reports_it() {
        let store = fixture_store();
        let scratch = testkit::TempDir::new("vmfsmenu-cancel");
        let dest = scratch.join("out");
        let mut out = Vec::new();
        let marked = ["/small".to_string()];
        let said = extract_to(&store.vol, &marked, &dest, &AtomicBool::new(true), &mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(said.starts_with("Stopped as asked"), "{said}\n{out}");
        assert!(
            out.contains("STOPPED, as asked: cancelled before /small"),
            "{out}"
        );
        let report = std::fs::read_to_string(dest.join("vmfs-extract-report.txt")).unwrap();
        assert!(
            report.contains("STOPPED cancelled before /small"),
            "{report}"
        );
        assert!(!dest.join("small").exists());
    }
}
