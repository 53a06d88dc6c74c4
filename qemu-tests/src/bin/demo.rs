//! Boots the appliance on the demo disk set with its serial console on this
//! terminal. `--fresh` remakes the disks; extra words go to the kernel
//! command line.

use qemu_tests::{demo, workspace_root, Image, VmConfig};

fn main() {
    let mut fresh = false;
    let mut append_extra = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--fresh" => fresh = true,
            "-h" | "--help" => {
                println!("usage: demo [--fresh] [KERNEL-ARG...]\n\nBoots out/vmlinuz + out/initramfs.img in QEMU on the demo disks in out/demo/.\nQuit with the menu's 'p' (power off) or Ctrl-A then X.");
                return;
            }
            other => append_extra.push(other.to_string()),
        }
    }
    let image = Image::built();
    let dir = workspace_root().join("out/demo");
    let disks = match demo::demo_disks(&dir, fresh) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: making the demo disks failed: {e}");
            std::process::exit(2);
        }
    };
    if demo::vmfs5_fixture().is_none() {
        eprintln!("demo: ../shared/fixtures/vmfs not found: the datastore partition is empty");
    }
    println!("demo disks in {}:", dir.display());
    for d in &disks {
        println!(
            "  {:<16} {:?} serial {}",
            d.path.file_name().unwrap().to_string_lossy(),
            d.controller,
            d.serial
        );
    }
    println!("Booting (TCG, takes ~10 s). Quit: menu 'p', or Ctrl-A then X.\n");
    let mut cfg = VmConfig::new(disks);
    for a in append_extra {
        cfg = cfg.append(&a);
    }
    let status = cfg
        .qemu_command(&image.kernel, &image.initramfs, &cfg.append)
        .args(["-serial", "mon:stdio"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("demo: qemu exited with {s}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("demo: cannot start qemu: {e}");
            std::process::exit(2);
        }
    }
}
