//! The menu's datastore browser: VMFS volumes found on the disks, their
//! folders and files with sizes; the user marks VM folders or files and
//! extracts them to a destination (the same code as `rescue vmfs extract`:
//! sizes and times kept, holes kept, unreadable bytes zero-filled and
//! reported).

use crate::destmenu::{ask, Chosen};
use std::io::{BufRead, Write};

/// One datastore: where it is and the opened volume.
struct Datastore {
    /// The disk (or partition) path the volume starts on.
    source: String,
    /// Byte offset of the VMFS partition on `source`.
    offset: u64,
    /// Every disk holding a part of the volume (never a destination).
    disks: Vec<String>,
    /// The other sources of a spanned volume (passed on as --extent).
    extents: Vec<String>,
    /// "same volume as /dev/sdb (a copy)" and choices between copies.
    notes: Vec<String>,
    vol: vmfs::Volume,
}

/// Whether the probe saw a VMFS signature on the disk or a partition.
pub fn has_vmfs(d: &probe::Disk) -> bool {
    d.contents.as_ref().is_some_and(|c| c.vmfs.is_some())
        || d.partitions
            .iter()
            .any(|p| p.contents.as_ref().is_some_and(|c| c.vmfs.is_some()))
}

/// The datastores on the disks: VMFS devices grouped by LVM volume UUID,
/// so a volume spanning several disks is opened whole; copies of one
/// volume (a disk and its raw clone) are listed each on its own.
fn find_datastores(disks: &[probe::Disk], out: &mut impl Write) -> Vec<Datastore> {
    let paths: Vec<String> = disks
        .iter()
        .filter(|d| has_vmfs(d))
        .map(|d| d.path.clone())
        .collect();
    let (plans, failed) = vmfs::datastores::plan_paths(&paths);
    for (path, e) in failed {
        let _ = writeln!(out, "  ! {path}: {e}");
    }
    let mut found = Vec::new();
    for plan in plans {
        let d = plan.open();
        let place = d.place();
        let notes: Vec<String> = d.copy_note().into_iter().chain(d.choices).collect();
        match d.volume {
            Ok(vol) => found.push(Datastore {
                disks: d
                    .devices
                    .iter()
                    .map(|(p, _)| p.trim_start_matches("/dev/").to_string())
                    .collect(),
                extents: d.devices.iter().skip(1).map(|(p, _)| p.clone()).collect(),
                source: d.source,
                offset: d.offset,
                notes,
                vol,
            }),
            Err(e) => {
                let _ = writeln!(out, "  ! {place}: {e}");
            }
        }
    }
    found
}

/// Runs the browser; false when the input ended.
pub fn run(disks: &[probe::Disk], input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let _ = writeln!(out, "\nVMFS datastores:");
    let stores = find_datastores(disks, out);
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
    let at = match crate::destmenu::choose(&store.disks, &what, input, out) {
        Chosen::Ended => return false,
        Chosen::Back => return true,
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
    let mut args = vec![store.source.clone()];
    args.extend(marked.iter().cloned());
    args.push(target.display().to_string());
    let _ = out.flush();
    let code = vmfs::cli::run(vmfs::cli::VmfsCommand {
        action: vmfs::cli::Action::Extract(vmfs::cli::ExtractCommand {
            args,
            extent: store.extents.clone(),
            offset: Some(store.offset),
            map: None,
            quiet: false,
        }),
    });
    let _ = writeln!(
        out,
        "{}",
        match code {
            0 => "Extracted: every byte was read.",
            1 =>
                "Extracted, with unreadable bytes or items left out: see \
                  vmfs-extract-report.txt in the target folder.",
            _ => "Extraction failed or stopped early (see the message above).",
        }
    );
    ask(input, out, "Enter: back to the folder: ").is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_and_folders() {
        assert_eq!(super::parent("/vm1/disks"), "/vm1");
        assert_eq!(super::parent("/vm1"), "/");
        assert_eq!(super::parent("/"), "/");
        assert_eq!(super::folder_for("datastore 1"), "vmfs-datastore_1");
        assert_eq!(super::folder_for(""), "vmfs-volume");
    }
}
