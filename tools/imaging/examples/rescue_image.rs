//! Stand-alone `rescue image` for benchmarks and manual runs on the host:
//! `cargo run --release -p imaging --example rescue_image -- image SRC DST --map MAP`.

use argh::FromArgs;

#[derive(FromArgs)]
/// Host wrapper around `rescue image`.
struct Top {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Image(imaging::cli::ImageCommand),
}

fn main() {
    let top: Top = argh::from_env();
    let code = match top.cmd {
        Sub::Image(c) => imaging::cli::run(c),
    };
    std::process::exit(code);
}
