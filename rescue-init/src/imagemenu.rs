//! The menu's imaging flow: choose the source disk (health shown), choose a
//! destination filesystem (free space shown; mounted read-write only after
//! a typed yes), confirm, watch `rescue image`'s progress, see its summary.
//! An earlier run's mapfile on the destination is offered for resuming.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use imaging::console::ConsoleOutput;

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
    let (m, _) = ddmap::load(map).ok()??;
    use ddmap::Status;
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
    let stem = image_stem(&src.name, src.serial.as_deref(), src.model.as_deref());
    let (at, free) =
        match crate::destmenu::choose_or_lab(std::slice::from_ref(&src.name), &what, input, out) {
            crate::destmenu::Chosen::Ended => return false,
            crate::destmenu::Chosen::Back => return true,
            crate::destmenu::Chosen::Lab => {
                return image_to_lab(&src.path, src.size_bytes, &stem, input, out)
            }
            crate::destmenu::Chosen::At(at, free) => (at, free),
        };
    image_to(&src.path, src.size_bytes, &at, &stem, free, input, out)
}

/// The flow for a lab host: its address, the name there (`<stem>.img`),
/// the code; confirm; `rescue image SRC rescue://HOST:PORT/NAME`'s
/// library call, printing its progress as that command does. The
/// receiver keeps the mapfile: choosing the same lab host and name
/// resumes.
fn image_to_lab(
    src_path: &str,
    src_size: u64,
    stem: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let lab = match crate::labmenu::ask_lab(&format!("{stem}.img"), input, out) {
        crate::labmenu::Asked::Ended => return false,
        crate::labmenu::Asked::Back => return true,
        crate::labmenu::Asked::Lab(l) => l,
    };
    let url = lab.target.url();
    let Some(a) = ask(
        input,
        out,
        &format!(
            "Image {} ({}) to {url}\n  the lab host keeps the image, its mapfile and SHA-256; an earlier\n  run there resumes. Nothing is written to {}. Start? [y/N]: ",
            src_path,
            probe::render::human_size(src_size),
            src_path
        ),
    ) else {
        return false;
    };
    if !a.eq_ignore_ascii_case("y") {
        let _ = writeln!(out, "Cancelled; nothing was sent.");
        return true;
    }
    log::info!("imaging of {src_path} to {url} confirmed");
    let _ = writeln!(
        out,
        "Imaging to the lab host; Ctrl-C stops cleanly (the lab host keeps the mapfile; resume from here later)."
    );
    let _ = out.flush();
    crate::stop_on_signals();
    crate::STOP.store(false, Ordering::SeqCst);
    let code = labstream::cli::image_with_code(src_path, &lab.target, &lab.code, &crate::STOP);
    let stopped = crate::STOP.swap(false, Ordering::SeqCst);
    let _ = writeln!(
        out,
        "{}",
        match (code, stopped) {
            (_, true) =>
                "Stopped: the lab host keeps the mapfile; choose the same lab host and name to resume.",
            (0, _) => "Done: every sector was read, and the lab host's image is verified.",
            (1, _) =>
                "Done: some areas could not be read (see the mapfile on the lab host); the image is verified.",
            _ => "Imaging failed (see the message above); choose the same lab host and name to resume.",
        }
    );
    ask(input, out, "Enter: back to the overview: ").is_some()
}

/// The flow once the destination is mounted at `at`: `<stem>.img` and
/// `<stem>.map` there are the image and its mapfile; resume or confirm,
/// image, summary.
fn image_to(
    src_path: &str,
    src_size: u64,
    at: &Path,
    stem: &str,
    free: Option<u64>,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
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
        if let Some(free) = free.filter(|&f| f < src_size) {
            let _ = writeln!(
                out,
                "Warning: {} free, the image needs up to {} (all-zero blocks are left as holes, so it may fit).",
                probe::render::human_size(free),
                probe::render::human_size(src_size)
            );
        }
        let Some(a) = ask(
            input,
            out,
            &format!(
                "Image {} ({}) to {}\n  mapfile {}, SHA-256 written beside it.\n  Nothing is written to {}. Start? [y/N]: ",
                src_path,
                probe::render::human_size(src_size),
                img.display(),
                map.display(),
                src_path
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
        src_path,
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
    // The job `rescue image SRC IMG --map MAP --sparse --hash sha256
    // --hash-file` runs, printing on the console as that command does.
    let mut job = imaging::Job::new(
        src_path,
        img.display().to_string(),
        map.display().to_string(),
    );
    job.sparse = true;
    job.hash = Some(imaging::HashAlgorithm::Sha256);
    job.hash_file = true;
    let code = match imaging::console::run(&job, ConsoleOutput::Text, &crate::STOP) {
        Ok(report) => report.exit_code(),
        // Already printed on the console.
        Err(_) => 2,
    };
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
    if code == 1 && !stopped {
        return bad_areas_left(&img, &map, input, out);
    }
    ask(input, out, "Enter: back to the overview: ").is_some()
}

/// After an imaging run that left bad areas: what they cost. For a VMFS
/// datastore in the image, `f` lists the files they hit (as `rescue vmfs
/// files-hit IMG --map MAP`); `g` the guest files, once
/// [`guest_files_hit`] gives an action. False when the input ended.
pub fn bad_areas_left(
    img: &Path,
    map: &Path,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    let img_s = img.display().to_string();
    let (plans, _) = vmfs::datastores::plan_paths(std::slice::from_ref(&img_s));
    let datastore = !plans.is_empty();
    let mut guest = guest_files_hit(img, map);
    loop {
        let mut offers = Vec::new();
        if datastore {
            offers.push("f: which datastore files the bad areas hit");
        }
        if guest.is_some() {
            offers.push("g: which guest files the bad areas hit");
        }
        if offers.is_empty() {
            return ask(input, out, "Enter: back to the overview: ").is_some();
        }
        let q = format!("{}, Enter: back to the overview: ", offers.join(", "));
        let Some(a) = ask(
            input,
            out,
            &format!(
                "{} ",
                screen::wrap_words(&q, screen::SCREEN_WIDTH, 0).trim_end()
            ),
        ) else {
            return false;
        };
        match a.as_str() {
            "" => return true,
            "f" if datastore => {
                log::info!("menu: vmfs files-hit of {img_s} with {}", map.display());
                datastore_files_hit(img, map, out);
            }
            "g" if guest.is_some() => {
                if let Some(run) = guest.take() {
                    run(out);
                }
            }
            _ => {
                let _ = writeln!(out, "'{a}' is not one of the choices.");
            }
        }
    }
}

/// An offered action, printing on the menu's screen.
pub type GuestHit = Box<dyn FnOnce(&mut dyn Write)>;

/// The guest-level `files-hit`: which files inside the image's guest
/// filesystems (partitions, md, LVM, and the VM disks of a datastore in
/// it) the mapfile's bad areas hit, as `rescue files-hit IMAGE --map MAP`
/// says; the report is saved beside the image too.
pub fn guest_files_hit(img: &Path, map: &Path) -> Option<GuestHit> {
    let req = guesthit::run::Request {
        badmap_dir: guesthit::run::badmap_dir(img),
        image: img.to_path_buf(),
        map: map.to_path_buf(),
        vmfs: true,
    };
    Some(Box::new(move |out: &mut dyn Write| {
        let (report, saved) = {
            // Each step as it happens: attaching, mounting, walking.
            let mut say = |s: &str| {
                let _ = writeln!(out, "  {s}");
            };
            guesthit::cli::run_on_appliance(&req, &pid1::modules::load_by_name, &mut say)
        };
        let _ = write!(out, "{}", report.text());
        let _ = match saved {
            Ok(p) => writeln!(out, "Report saved as {}", p.display()),
            Err(e) => writeln!(out, "The report could not be saved: {e}"),
        };
    }))
}

/// Files of the VMFS datastore in `img` that `map`'s bad areas hit, as
/// `rescue vmfs files-hit IMG --map MAP` finds them (the volume opened
/// from the image alone; its metadata read without the bad areas applied
/// if it cannot be read with them).
pub fn datastore_files_hit(img: &Path, map: &Path, out: &mut impl Write) {
    let _ = write!(
        out,
        "{}",
        screen::wrap_words(
            &format!(
                "Files hit (as: rescue vmfs files-hit {} --map {}):",
                img.display(),
                map.display()
            ),
            screen::SCREEN_WIDTH,
            2
        )
    );
    let bad = match vmfs::damage::read_mapfile(&map.display().to_string()) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(out, "  the mapfile: {e}");
            return;
        }
    };
    let sources = [img.display().to_string()];
    let open = |bad| {
        vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: &sources,
            bad,
            ..Default::default()
        })
    };
    let opened = match open(Some(&bad)).or_else(|_| open(None)) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(out, "  the datastore: {}", e.message);
            return;
        }
    };
    let (hits, errors) = vmfs::files_hit::files_hit_in(&opened.volume, &opened.origins, &bad);
    const SHOWN: usize = 30;
    for h in hits.iter().take(SHOWN) {
        let n: u64 = h.ranges.iter().map(|r| r.1).sum();
        let _ = write!(
            out,
            "{}",
            screen::wrap_words(
                &format!(
                    "  {}: {} in {}",
                    h.path,
                    screen::human_size(n),
                    screen::plural(h.ranges.len() as u64, "range", "ranges")
                ),
                screen::SCREEN_WIDTH,
                4
            )
        );
    }
    if hits.len() > SHOWN {
        let _ = writeln!(out, "  ... and {} more", hits.len() - SHOWN);
    }
    for e in errors.iter().take(SHOWN) {
        let _ = write!(
            out,
            "{}",
            screen::wrap_words(
                &format!("  unreadable metadata: {e}"),
                screen::SCREEN_WIDTH,
                4
            )
        );
    }
    if hits.is_empty() && errors.is_empty() {
        let _ = writeln!(out, "  no file overlaps a bad area");
    } else {
        let _ = writeln!(
            out,
            "(byte ranges, and each VM disk's own map with --badmap-dir DIR: from the shell)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::image_to;
    use testkit::TempDir;

    fn menu(src: &str, size: u64, at: &std::path::Path, stem: &str, answers: &str) -> String {
        let mut input = answers.as_bytes();
        let mut out = Vec::new();
        assert!(image_to(src, size, at, stem, None, &mut input, &mut out));
        String::from_utf8(out).unwrap()
    }

    /// The flow after the destination is chosen, on an image file source:
    /// confirm and image, resume the finished map, refuse a lone image,
    /// cancel.
    #[test]
    fn images_a_file_source_resumes_and_refuses_overwrites() {
        let dir = TempDir::new("imagemenu");
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let src = dir.join("disk.raw");
        std::fs::write(&src, &data).unwrap();
        let src = src.display().to_string();
        let size = data.len() as u64;

        let out = menu(&src, size, dir.path(), "vdb-S1", "y\n\n");
        assert!(out.contains("Start? [y/N]: "), "{out}");
        assert!(out.contains("Done: every sector was read."), "{out}");
        assert_eq!(std::fs::read(dir.join("vdb-S1.img")).unwrap(), data);
        let sum = std::fs::read_to_string(dir.join("vdb-S1.img.sha256")).unwrap();
        assert!(sum.ends_with("  vdb-S1.img\n"), "{sum}");

        let out = menu(&src, size, dir.path(), "vdb-S1", "r\n\n");
        assert!(
            out.contains("An earlier run's mapfile is there:")
                && out.contains("(100.0% rescued, 0 bad area(s), 0 B not tried)"),
            "{out}"
        );
        assert!(out.contains("Done: every sector was read."), "{out}");

        std::fs::remove_file(dir.join("vdb-S1.map")).unwrap();
        let out = menu(&src, size, dir.path(), "vdb-S1", "\n");
        assert!(out.contains("exists without a mapfile"), "{out}");

        let out = menu(&src, size, dir.path(), "vdc", "n\n");
        assert!(out.contains("Cancelled; nothing was written."), "{out}");
        assert!(!dir.join("vdc.img").exists() && !dir.join("vdc.map").exists());
    }

    /// After imaging with bad areas: the datastore files they hit, on the
    /// real vmfs5 volume with a mapfile marking 512 bytes of `/big` bad;
    /// an image without a datastore is offered nothing.
    #[test]
    fn bad_areas_left_offer_the_datastore_files_they_hit() {
        let img = testkit::fixtures::unpacked("vmfs/vmfs5.bin.gz", None)
            .expect("this test needs the vmfs5 fixture");
        let sources = [img.display().to_string()];
        let opened = vmfs::open::open_volume(&vmfs::open::OpenRequest {
            sources: &sources,
            ..Default::default()
        })
        .unwrap();
        let ino = opened.volume.lookup("/big").unwrap();
        let x = &opened.volume.device_extents(&ino).unwrap()[0];
        let at = opened.origins[x.device].1 + x.device_offset;
        let size = std::fs::metadata(&img).unwrap().len();
        let dir = TempDir::new("imagemenu-hit");
        let map = dir.join("vmfs5.map");
        std::fs::write(
            &map,
            format!(
                "# Mapfile. Created by GNU ddrescue\n0x0 + 1\n{:#x} {:#x} +\n{:#x} {:#x} -\n{:#x} {:#x} +\n",
                0,
                at,
                at,
                512,
                at + 512,
                size - at - 512
            ),
        )
        .unwrap();
        let mut out = Vec::new();
        assert!(super::bad_areas_left(
            &img,
            &map,
            &mut "x\nf\n\n".as_bytes(),
            &mut out
        ));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("f: which datastore files the bad areas hit, g: which guest files"),
            "{out}"
        );
        assert!(out.contains("'x' is not one of the choices."), "{out}");
        assert!(out.contains("rescue vmfs files-hit"), "{out}");
        assert!(out.contains("  /big: 512 B in 1 range"), "{out}");
        // The console echoes the answer and its newline after a prompt.
        let screen = out.replace("overview: ", "overview: x\n");
        assert!(screen.lines().all(|l| l.len() <= 79), "{screen}");

        let plain = dir.join("plain.img");
        std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
        let mut out = Vec::new();
        assert!(super::bad_areas_left(
            &plain,
            &map,
            &mut "\n".as_bytes(),
            &mut out
        ));
        // No datastore: the guest files only.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "g: which guest files the bad areas hit, Enter: back to the overview: "
        );
    }

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
