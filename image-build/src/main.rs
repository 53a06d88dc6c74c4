//! `cargo run --release -p image-build`: builds `out/vmlinuz` and
//! `out/initramfs.img` from Debian's current 6.1 kernel package and the
//! `rescue` binary, the PXE bundle, the stick image and the ISO, and prints
//! the SHA-256 of each artifact (also written to `out/SHA256SUMS`).

use argh::FromArgs;
use image_build::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Build the rescue appliance's kernel and initramfs.
#[derive(FromArgs)]
struct Args {
    /// output directory (default: <workspace>/out)
    #[argh(option)]
    out: Option<PathBuf>,
    /// kernel image to use instead of Debian's package (with --modules)
    #[argh(option)]
    kernel: Option<PathBuf>,
    /// its lib/modules/<version> directory (without a modules.dep it is
    /// indexed by depmod in a hard-linked copy under cache/depmod)
    #[argh(option)]
    modules: Option<PathBuf>,
    /// use this rescue binary instead of building it
    #[argh(option)]
    rescue_bin: Option<PathBuf>,
    /// busybox binary (default /bin/busybox from busybox-static)
    #[argh(option, default = "PathBuf::from(\"/bin/busybox\")")]
    busybox: PathBuf,
    /// another module to ship (repeatable)
    #[argh(option)]
    extra_module: Vec<String>,
    /// add an exFAT partition labelled RESCUEDATA of this size (e.g. 512M,
    /// 8G) to out/rescue-usb.img: the appliance offers it first as a
    /// destination for images and extracted files
    #[argh(option, from_str_fn(parse_size))]
    data_size: Option<u64>,
    /// leave ntfs-3g out (no NTFS destinations; to measure what it costs)
    #[argh(switch)]
    without_ntfs_3g: bool,
    /// leave dropbear out (no remote console, rescue ssh; to measure what
    /// it costs)
    #[argh(switch)]
    without_dropbear: bool,
    /// fetch no firmware packages: every firmware file the modules name is
    /// listed as missing (in the image and below)
    #[argh(switch)]
    without_firmware: bool,
}

/// `512M`, `8G`, `1T` (binary units) or plain bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}': expected a size such as 512M or 8G"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn main() {
    let args: Args = argh::from_env();
    if let Err(e) = build(args) {
        eprintln!("image-build: {e}");
        std::process::exit(2);
    }
}

fn build_rescue(ws: &Path) -> Result<PathBuf, Error> {
    eprintln!(
        "image-build: cargo build --release --target x86_64-unknown-linux-musl -p rescue-init"
    );
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "rescue-init",
        ])
        .current_dir(ws)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err("building rescue failed (is the target installed? rustup target add x86_64-unknown-linux-musl)".into());
    }
    // A relative CARGO_TARGET_DIR is relative to where cargo ran: `ws`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| ws.join(t))
        .unwrap_or_else(|| ws.join("target"));
    Ok(target.join("x86_64-unknown-linux-musl/release/rescue"))
}

fn build(args: Args) -> Result<(), Error> {
    let start = Instant::now();
    let ws = workspace();
    let out = args.out.unwrap_or_else(|| ws.join("out"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let rescue_bin = match args.rescue_bin {
        Some(p) => p,
        None => build_rescue(&ws)?,
    };
    let tree = match (args.kernel, args.modules) {
        (Some(k), Some(m)) => {
            let version = m
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("--modules must name a lib/modules/<version> directory")?
                .to_string();
            let t = KernelTree {
                vmlinuz: k,
                modules_dir: m,
                version,
                package: None,
            };
            prepare_module_tree(t, &ws.join("cache/depmod"))?
        }
        (None, None) => fetch_debian_kernel(&ws.join("cache/kernel"))?,
        _ => return Err("--kernel and --modules go together".into()),
    };
    let index = load_index(&tree.modules_dir)?;
    let mut wanted: Vec<String> = DEFAULT_MODULES.iter().map(|s| s.to_string()).collect();
    wanted.extend(args.extra_module);
    let (modules, warnings) = select_modules(&index, &wanted);
    for w in &warnings {
        eprintln!("image-build: {w}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&ws)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let payload = Payload {
        rescue_bin: rescue_bin.clone(),
        busybox: args.busybox.clone(),
        release: format!(
            "rescue {} kernel {} commit {commit}\n",
            env!("CARGO_PKG_VERSION"),
            tree.version
        ),
    };
    let applets = busybox_applets(&args.busybox)?;
    let entries = initramfs_entries(&payload, &applets, &tree, &index, &modules)?;
    // One cache of Debian's userland packages: glibc is fetched once for
    // both programs and is in the image once.
    let debs = ws.join("cache/debs");
    let (entries, ntfs) = if args.without_ntfs_3g {
        (entries, Vec::new())
    } else {
        let (extra, added) = ntfs3g::entries(&debs)?;
        (with_files(entries, extra), added)
    };
    let (entries, ssh) = if args.without_dropbear {
        (entries, Vec::new())
    } else {
        let (extra, added) = dropbear::entries(&debs)?;
        // What dropbear adds: the files ntfs-3g does not bring already.
        let added: Vec<debprog::Added> = added
            .into_iter()
            .filter(|a| !ntfs.iter().any(|n| n.path == a.path))
            .collect();
        (with_files(entries, extra), added)
    };
    let wanted_fw = firmware::firmware_names(&tree, &index, &modules)?;
    let mut fw_warnings = Vec::new();
    let roots = if args.without_firmware {
        Vec::new()
    } else {
        firmware::fetch_roots(&ws.join("cache/firmware"), &mut fw_warnings)
    };
    let fw = firmware::select(&wanted_fw, &roots, &mut fw_warnings);
    for w in &fw_warnings {
        eprintln!("image-build: warning: {w}");
    }
    // What the firmware adds to the compressed image, measured alone.
    let fw_zstd = compress(&cpio_newc(&fw.entries))
        .map(|c| c.len())
        .unwrap_or(0);
    let entries = with_files(entries, fw.entries.clone());
    let archive = cpio_newc(&entries);
    let compressed = compress(&archive)?;
    write_atomically(&out.join("initramfs.img"), &compressed)?;
    let kernel =
        std::fs::read(&tree.vmlinuz).map_err(|e| format!("{}: {e}", tree.vmlinuz.display()))?;
    write_atomically(&out.join("vmlinuz"), &kernel)?;
    let pxe_dir = out.join("pxe");
    for w in pxe::write_bundle(&pxe_dir, &kernel, &compressed)? {
        eprintln!("image-build: {w}");
    }
    let usb = media::build_usb(
        &out.join("rescue-usb.img"),
        &out.join("work-usb"),
        &ws.join("cache/boot"),
        &kernel,
        &compressed,
    )?;
    let usb_bytes = match args.data_size {
        Some(size) => {
            media::add_data_partition(&out.join("rescue-usb.img"), &out.join("work-data"), size)?
        }
        None => usb.bytes,
    };
    let iso_bytes = media::build_iso(
        &out.join("rescue.iso"),
        &out.join("work-iso"),
        &ws.join("cache/boot"),
        &kernel,
        &compressed,
    )?;
    // Earlier builds kept the stick's ESP here for the ISO; the ISO now has
    // its own small one, and a stale copy would look like an artifact.
    let _ = std::fs::remove_file(out.join("efi.img"));
    let sums = sums::write_sha256sums(
        &out,
        &["rescue-usb.img", "rescue.iso", "vmlinuz", "initramfs.img"],
    )?;
    let bin_size = std::fs::metadata(&rescue_bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "kernel:     {} ({})",
        tree.version,
        tree.package.as_deref().unwrap_or("given with --kernel")
    );
    println!(
        "modules:    {} ({} requested, {} warnings)",
        modules.len(),
        wanted.len(),
        warnings.len()
    );
    println!("rescue:     {} bytes", bin_size);
    print_program(
        "ntfs-3g:   ",
        &ntfs,
        &entries,
        "left out (--without-ntfs-3g)",
        "",
    );
    print_program(
        "dropbear:  ",
        &ssh,
        &entries,
        "left out (--without-dropbear)",
        if ntfs.is_empty() {
            ""
        } else {
            " besides ntfs-3g's (glibc is shared)"
        },
    );
    print_firmware(&fw, fw_zstd, args.without_firmware, &fw_warnings);
    println!(
        "initramfs:  {} bytes cpio, {} bytes zstd -> {}",
        archive.len(),
        compressed.len(),
        out.join("initramfs.img").display()
    );
    println!(
        "vmlinuz:    {} bytes -> {}",
        kernel.len(),
        out.join("vmlinuz").display()
    );
    println!(
        "pxe:        {} (boot.ipxe, pxelinux.cfg/default, grub/grub.cfg)",
        pxe_dir.display()
    );
    println!(
        "usb image:  {} bytes (EFI system partition {} bytes{}) -> {}",
        usb_bytes,
        usb.esp_bytes,
        match args.data_size {
            Some(_) => format!(", RESCUEDATA exFAT {} bytes", usb_bytes - usb.bytes),
            None => String::new(),
        },
        out.join("rescue-usb.img").display()
    );
    println!(
        "iso:        {iso_bytes} bytes -> {}",
        out.join("rescue.iso").display()
    );
    println!("SHA-256 (also in {}):", out.join(sums::SUMS_FILE).display());
    for (name, hex) in &sums {
        println!("  {hex}  {name}");
    }
    println!("built in {:.1} s", start.elapsed().as_secs_f32());
    Ok(())
}

/// A Debian program's files with what each costs, and what they add to
/// the compressed image measured alone.
fn print_program(
    label: &str,
    added: &[debprog::Added],
    entries: &[CpioEntry],
    left_out: &str,
    note: &str,
) {
    if added.is_empty() {
        println!("{label} {left_out}");
        return;
    }
    let total: u64 = added.iter().map(|a| a.bytes).sum();
    let alone: Vec<CpioEntry> = entries
        .iter()
        .filter(|e| added.iter().any(|a| a.path == e.path))
        .cloned()
        .collect();
    let zstd = compress(&cpio_newc(&alone)).map(|c| c.len()).unwrap_or(0);
    println!(
        "{label} {total} bytes in {} files{note}, about {zstd} bytes zstd:",
        added.len()
    );
    for a in added {
        println!("  {:>9}  /{}  ({})", a.bytes, a.path, a.package);
    }
}

fn print_firmware(fw: &firmware::Selection, zstd: usize, without: bool, warnings: &[String]) {
    let files = fw.added.iter().filter(|a| a.bytes > 0).count();
    let total: u64 = fw.added.iter().map(|a| a.bytes).sum();
    if without {
        println!("firmware:   left out (--without-firmware)");
    } else {
        println!(
            "firmware:   {total} bytes in {files} files and {} links, about {zstd} bytes zstd{}",
            fw.added.len() - files,
            if warnings.is_empty() {
                String::new()
            } else {
                format!(" ({} warnings above)", warnings.len())
            }
        );
        let packages: std::collections::BTreeSet<&str> =
            fw.added.iter().map(|a| a.package.as_str()).collect();
        for p in packages {
            let of = fw.added.iter().filter(|a| a.package == p);
            let bytes: u64 = of.clone().map(|a| a.bytes).sum();
            println!("  {bytes:>9}  {p} ({} entries)", of.count());
        }
        if !fw.other_versions.is_empty() {
            println!(
                "  other versions left out (the driver loads the shipped one): {}",
                fw.other_versions
                    .iter()
                    .map(|w| w.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if fw.missing.is_empty() {
        println!("  missing:  none");
    } else {
        println!(
            "  missing:  {} files, listed in /{}:",
            fw.missing.len(),
            firmware::MISSING_FILE
        );
        for m in &fw.missing {
            println!("    {} {}", m.module, m.file);
        }
    }
}
