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
    keep_freed_memory_briefly();
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Freed memory goes back to the OS after 1 s instead of mimalloc's 10 ms. Import and flush
/// free and reallocate hundreds of MB at a time, and memory handed back is zeroed again by
/// the kernel when next touched: that zeroing was ~15% of a 10M-event import.
#[allow(unsafe_code)]
fn keep_freed_memory_briefly() {
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3); libmimalloc-sys has no constant.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide allocator option; called first thing in `main`, before
    // any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
    }
}
