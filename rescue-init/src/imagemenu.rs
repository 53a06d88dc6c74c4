//! The menu's imaging flow: choose the source disk (health shown), choose a
//! destination filesystem (free space shown; mounted read-write only after
//! a typed yes), confirm, watch `rescue image`'s progress, see its summary.
//! An earlier run's mapfile on the destination is offered for resuming.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

/// File name stem for a disk's image: kernel name plus serial (or model),
/// so images of different disks never collide and a resume finds its map.
pub fn image_stem(name: &str, serial: Option<&str>, model: Option<&str>) -> String {
    let tag = serial.or(model).unwrap_or("");
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tag = tag.trim_matches('_');
    if tag.is_empty() {
        name.to_string()
    } else {
        format!("{name}-{tag}")
    }
}

/// What an earlier run's mapfile says, for the resume question.
fn map_summary(map: &Path) -> Option<String> {
    let (m, _) = imaging::mapfile::load(map).ok()??;
    use imaging::mapfile::Status;
    let size = m.size().max(1);
    let done = m.bytes(Status::Finished);
    Some(format!(
        "{:.1}% rescued, {} bad area(s), {} not tried",
        done as f64 * 100.0 / size as f64,
        m.areas(Status::BadSector),
        probe::render::human_size(m.bytes(Status::NonTried))
    ))
}

use crate::destmenu::ask;

/// Runs the imaging flow; false when the input ended.
pub fn run(disks: &[probe::Disk], input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let _ = writeln!(
        out,
        "\nImage a disk: which disk is the source? (it is only read)"
    );
    for (i, d) in disks.iter().enumerate() {
        let _ = writeln!(
            out,
            " {:>2}  {:<8} {:>10}  {:<24} health {}",
            i + 1,
            d.name,
            probe::render::human_size(d.size_bytes),
            d.model.as_deref().unwrap_or("-"),
            d.health
                .as_ref()
                .map(|h| h.verdict.label())
                .unwrap_or("unknown")
        );
    }
    let Some(a) = ask(input, out, "Source (Enter: back): ") else {
        return false;
    };
    let Some(src) = crate::menu::pick(&a, disks) else {
        if !a.is_empty() {
            let _ = writeln!(out, "'{a}' is not one of the disks.");
        }
        return true;
    };
    let what = format!(
        "the image of {} ({})",
        src.path,
        probe::render::human_size(src.size_bytes)
    );
    let (at, free) =
        match crate::destmenu::choose(std::slice::from_ref(&src.name), &what, input, out) {
            crate::destmenu::Chosen::Ended => return false,
            crate::destmenu::Chosen::Back => return true,
            crate::destmenu::Chosen::At(at, free) => (at, free),
        };
    let stem = image_stem(&src.name, src.serial.as_deref(), src.model.as_deref());
    let img = at.join(format!("{stem}.img"));
    let map = at.join(format!("{stem}.map"));
    let resume = map.exists();
    if resume {
        let summary = map_summary(&map).unwrap_or_else(|| "unreadable".into());
        let _ = writeln!(
            out,
            "An earlier run's mapfile is there: {} ({summary}).",
            map.display()
        );
        let Some(a) = ask(
            input,
            out,
            "r: resume it (finished areas are not read again), Enter: back: ",
        ) else {
            return false;
        };
        if a != "r" {
            return true;
        }
    } else {
        if img.exists() {
            let _ = writeln!(
                out,
                "{} exists without a mapfile; move it away first (it is never overwritten here).",
                img.display()
            );
            return ask(input, out, "Enter: back: ").is_some();
        }
        if let Some(free) = free.filter(|&f| f < src.size_bytes) {
            let _ = writeln!(
                out,
                "Warning: {} free, the image needs up to {} (all-zero blocks are left as holes, so it may fit).",
                probe::render::human_size(free),
                probe::render::human_size(src.size_bytes)
            );
        }
        let Some(a) = ask(
            input,
            out,
            &format!(
                "Image {} ({}) to {}\n  mapfile {}, SHA-256 written beside it.\n  Nothing is written to {}. Start? [y/N]: ",
                src.path,
                probe::render::human_size(src.size_bytes),
                img.display(),
                map.display(),
                src.path
            ),
        ) else {
            return false;
        };
        if !a.eq_ignore_ascii_case("y") {
            let _ = writeln!(out, "Cancelled; nothing was written.");
            return true;
        }
    }
    log::info!(
        "imaging of {} to {} confirmed{}",
        src.path,
        img.display(),
        if resume { " (resume)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Imaging; Ctrl-C stops cleanly (the mapfile is saved; resume from here later)."
    );
    let _ = out.flush();
    crate::stop_on_signals();
    crate::STOP.store(false, Ordering::SeqCst);
    let cmd = imaging::cli::ImageCommand {
        src: src.path.clone(),
        dst: img.display().to_string(),
        map: map.display().to_string(),
        write: None,
        reverse: false,
        retry_passes: 0,
        min_read_rate: None,
        sparse: true,
        preallocate: false,
        hash: Some("sha256".into()),
        hash_file: true,
        simulate_bad: None,
        no_direct: false,
        cluster_size: None,
        json: false,
    };
    let code = imaging::cli::run_with_stop(cmd, &crate::STOP);
    let stopped = crate::STOP.swap(false, Ordering::SeqCst);
    let _ = writeln!(
        out,
        "{}",
        match (code, stopped) {
            (_, true) =>
                "Stopped: the mapfile is saved; choose the same source and destination to resume.",
            (0, _) => "Done: every sector was read.",
            (1, _) =>
                "Done: some areas could not be read (see the mapfile); the rest is in the image.",
            _ => "Imaging failed (see the message above); the mapfile, if any, is kept.",
        }
    );
    ask(input, out, "Enter: back to the overview: ").is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stems_are_file_name_safe() {
        use super::image_stem;
        assert_eq!(
            image_stem("sda", Some("WD-ABC 123/x"), None),
            "sda-WD-ABC_123_x"
        );
        assert_eq!(
            image_stem("sdb", None, Some("QEMU HARDDISK")),
            "sdb-QEMU_HARDDISK"
        );
        assert_eq!(image_stem("vda", None, None), "vda");
        assert_eq!(image_stem("vda", Some("  "), None), "vda");
    }
}
