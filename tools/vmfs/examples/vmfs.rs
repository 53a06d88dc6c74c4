//! Runs the `vmfs` subcommand on its own, for trying it on images on a
//! host: `cargo run --release --example vmfs -- vmfs info IMAGE`.

use argh::FromArgs;

/// VMFS tool (the same code as `rescue vmfs`).
#[derive(FromArgs)]
struct Top {
    #[argh(subcommand)]
    cmd: vmfs::cli::VmfsCommand,
}

fn main() {
    let top: Top = argh::from_env();
    std::process::exit(vmfs::cli::run(top.cmd));
}
