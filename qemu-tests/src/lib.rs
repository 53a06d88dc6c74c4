//! A harness that boots the built appliance (`out/vmlinuz`, `out/initramfs.img`)
//! under QEMU with TCG, attaches disks on chosen controllers, talks to the
//! serial console over a Unix socket and checks disks' SHA-256 afterwards.
//!
//! Modules: [`fixtures`] (images and scratch directories on the host),
//! [`config`] (the disks, controllers and QEMU command line), [`vm`] (the
//! running VM: serial console, markers, QMP) and [`output`] (parsing what
//! the guest printed); everything is re-exported here.
//!
//! Robustness rules: every wait has a timeout and looks for an exact marker;
//! nothing sleeps to guess; the whole console log is kept in a file for the
//! failure message.

pub mod config;
pub mod demo;
pub mod fixtures;
pub mod guest;
pub mod output;
pub mod vm;

pub use config::{free_port, qemu_binary, Controller, Disk, VmConfig};
pub use fixtures::{
    ext4_file, fixture, fixture_disk, make_disk, sha256_file, sha256_hex, temp_dir, workspace_root,
    Image, TempDir,
};
pub use output::{
    disk_named, esxi_repair_choice, json_of, menu_number, parse_sections, probe_json, run_script,
    ScriptSection,
};
pub use vm::{Vm, BOOT_TIMEOUT};
