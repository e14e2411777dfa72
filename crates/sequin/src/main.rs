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
    tune_allocator();
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Allocator settings for bulk work. Import and flush allocate and free hundreds of MB at a
/// time:
/// - freed memory goes back to the OS after 1 s instead of 10 ms, so it is not handed back
///   and zeroed again by the kernel between one batch and the next;
/// - no transparent huge pages: with THP on request ("madvise", this machine's setting), a
///   fault in a fragmented memory can stall in the kernel's compaction, and each fault zeroes
///   2 MB. Together these took 20-30% of a 10M-event import's time.
#[allow(unsafe_code)]
fn tune_allocator() {
    // Option numbers of mimalloc v3's mimalloc.h (libmimalloc-sys builds v3 unless its
    // `v2` feature is on; it exports no constants for these).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const ALLOW_THP: libmimalloc_sys::mi_option_t = 43;
    // SAFETY: sets process-wide allocator options; called first thing in `main`, before
    // any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
        libmimalloc_sys::mi_option_set(ALLOW_THP, 0);
    }
}
