//! `sequin`: the command-line front of Sequin. Each subcommand is a thin layer over the
//! library crates (`sequin-import`, `sequin-store`, `sequin-gen`, …).

mod cli;
mod commands;
mod insight;
mod load;
mod segments;
mod serve;

use clap::Parser;

// Import and flush allocate and free many small values; mimalloc keeps that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
