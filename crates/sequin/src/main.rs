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
    tune_memory();
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Memory settings for bulk work. Import, flush and ingest allocate and free hundreds of
/// MB at a time:
/// - freed memory goes back to the OS after 1 s instead of 10 ms, so it is not handed back
///   and zeroed again by the kernel between one batch and the next (unless the environment
///   sets `MIMALLOC_PURGE_DELAY`, for measuring other settings);
/// - no transparent huge pages for this process: mimalloc asks for them ("madvise", this
///   machine's setting), each fault then zeroes 2 MB, and in a fragmented memory it stalls
///   in the kernel's compaction. Measured: 10M-event import ~1 s faster, live ingest
///   117k → 149k events/s.
#[allow(unsafe_code)]
fn tune_memory() {
    // Option number of mimalloc v3's mimalloc.h (libmimalloc-sys builds v3 unless its `v2`
    // feature is on; it exports no constant for it).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide allocator option and a process flag; called first thing
    // in `main`, before any other thread exists. The prctl takes plain integers; failing
    // (an old kernel) only leaves huge pages on.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
        }
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
