//! Choosing where rescued data goes, for the menu's imaging and extraction
//! flows: filesystems on other disks with their free space; one that is
//! not mounted yet is mounted read-write only after a typed `yes`.

use crate::menu::read_line;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Prints `q`, reads one answer (trimmed); None when the input ended.
pub fn ask(input: &mut impl BufRead, out: &mut impl Write, q: &str) -> Option<String> {
    let _ = write!(out, "{q}");
    let _ = out.flush();
    read_line(input).map(|l| l.trim().to_string())
}

pub enum Chosen {
    /// The input ended.
    Ended,
    /// The user went back, or there was nothing to choose.
    Back,
    /// Mounted at this directory, with this much free space if known.
    At(PathBuf, Option<u64>),
}

/// Lets the user pick a destination for `what` on any disk but
/// `source_disks`, and mounts it if needed.
pub fn choose(
    source_disks: &[String],
    what: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Chosen {
    let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let cands = dest::list(sys, dev, &mounts, source_disks);
    let usable: Vec<&dest::Candidate> = cands.iter().filter(|c| c.usable()).collect();
    let _ = writeln!(out, "\nDestination for {what}:");
    if usable.is_empty() {
        let _ = writeln!(
            out,
            "  no usable filesystem on another disk (attach one: ext4, xfs, btrfs, FAT, exFAT)"
        );
        let _ = write!(out, "{}", dest::render(&cands));
        return match ask(input, out, "Enter: back: ") {
            None => Chosen::Ended,
            Some(_) => Chosen::Back,
        };
    }
    for (i, c) in usable.iter().enumerate() {
        let row = format!(
            " {:>2}  {:<10} {:<6} {:<14} {:>10}  free {}  {}",
            i + 1,
            c.device,
            c.filesystem,
            c.label
                .as_deref()
                .map(|l| format!("\"{l}\""))
                .unwrap_or_default(),
            probe::render::human_size(c.size_bytes),
            c.free_bytes
                .map(|f| format!(
                    "{}{}",
                    if c.free_is_estimate { "~" } else { "" },
                    probe::render::human_size(f)
                ))
                .unwrap_or_else(|| "unknown".into()),
            c.mounted_at
                .as_deref()
                .map(|m| format!("mounted at {m}"))
                .unwrap_or_else(|| "not mounted".into())
        );
        let _ = write!(
            out,
            "{}",
            probe::render::wrap_words(&row, probe::render::SCREEN_WIDTH, 6)
        );
    }
    let _ = write!(out, "{}", dest::render_not_offered(&cands, 2));
    if cands.iter().any(|c| c.unsafe_reason.is_some()) {
        let _ = writeln!(
            out,
            "  (to write to a disk being rescued anyway: 'rescue dest mount DEVICE'\n   from the shell, which asks twice)"
        );
    }
    let Some(a) = ask(input, out, "Destination (Enter: back): ") else {
        return Chosen::Ended;
    };
    let Some(dst) = crate::menu::pick(&a, &usable).copied() else {
        if !a.is_empty() {
            let _ = writeln!(out, "'{a}' is not one of the destinations.");
        }
        return Chosen::Back;
    };
    if let Some(m) = &dst.mounted_at {
        return Chosen::At(PathBuf::from(m), dst.free_bytes);
    }
    let Some(yes) = ask(input, out, &dest::cli::question(dst)) else {
        return Chosen::Ended;
    };
    if yes != "yes" {
        let _ = writeln!(out, "Not mounted; nothing changed.");
        return Chosen::Back;
    }
    log::info!(
        "destination {} for {what}: mount confirmed by typing yes",
        dst.device
    );
    match dest::mount(dst, dev, &crate::modules::load_by_name, false) {
        Ok(at) => {
            let _ = writeln!(out, "{} mounted read-write at {}", dst.device, at.display());
            Chosen::At(at, dst.free_bytes)
        }
        Err(e) => {
            let _ = writeln!(out, "mount failed: {e}");
            Chosen::Back
        }
    }
}
