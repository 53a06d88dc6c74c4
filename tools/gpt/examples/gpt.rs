//! The `gpt` subcommand as a stand-alone program for trying it on image
//! files without building the appliance: `cargo run -p gpt --example gpt --
//! gpt show disk.img`.

use argh::FromArgs;

/// GPT tools (the `rescue gpt` subcommand).
#[derive(FromArgs)]
struct Top {
    #[argh(subcommand)]
    gpt: gpt::cli::GptCommand,
}

fn main() {
    let top: Top = argh::from_env();
    std::process::exit(gpt::cli::run(top.gpt));
}
