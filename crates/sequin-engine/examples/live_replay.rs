//! Times live evaluation alone: replays a Segment NDJSON file through a scratch store (as
//! the server's writer does) and feeds each accepted batch to a [`LiveEngine`], measuring
//! only the engine. One thread, no HTTP, no other work competing: a steadier figure than
//! the evaluator thread's CPU in a full `bench/live.sh` run, for comparing changes to the
//! engine side by side.
//!
//! ```text
//! cargo run --release -p sequin-engine --example live_replay -- \
//!     EVENTS.ndjson SEGMENTS.seg [--limit N] [--batch N] [--order time|file] [--lateness SECS]
//! ```

// A measuring tool over files its user names: reading a segment file whole is fine here.
#![allow(clippy::disallowed_methods)]

use std::io::BufRead;
use std::time::{Duration, Instant};

use sequin_engine::Program;
use sequin_engine::live::{LiveEngine, LiveOptions};
use sequin_store::{Store, StoreOptions};

// The server's allocator: allocation is a good part of the engine's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(events_path), Some(segments_path)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: live_replay EVENTS.ndjson SEGMENTS.seg [--limit N] [--batch N] [--order time|file] [--lateness SECS]"
        );
        std::process::exit(2);
    };
    let limit: usize = flag("--limit").map_or(usize::MAX, |v| v.parse().expect("--limit"));
    let batch: usize = flag("--batch").map_or(800, |v| v.parse().expect("--batch"));
    let time_order = flag("--order").is_none_or(|o| o == "time");
    let lateness: i64 = flag("--lateness").map_or(7200, |v| v.parse().expect("--lateness"));

    let src = std::fs::read_to_string(segments_path).expect("segments file");
    let file = sequin_lang::parse(&src).expect("segments parse");
    let programs: Vec<Program> = file
        .items
        .iter()
        .filter(|i| i.kind == sequin_lang::ast::ItemKind::Segment)
        .map(|i| Program::compile(&file, &i.name.name).expect("segment compiles"))
        .collect();

    let reader = std::io::BufReader::new(std::fs::File::open(events_path).expect("events file"));
    let mut events = Vec::new();
    for line in reader.lines() {
        let line = line.expect("readable line");
        if let Some(Ok(e)) = sequin_core::segment::map_line_text(&line) {
            events.push(e);
            if events.len() == limit {
                break;
            }
        }
    }
    if time_order {
        events.sort_by_key(|e| e.time);
    }
    let n = events.len();

    let dir = tempfile::tempdir().expect("scratch dir");
    let mut store = Store::open(
        dir.path(),
        &StoreOptions {
            create: true,
            memtable_bytes: 256 << 20,
            ..StoreOptions::default()
        },
    )
    .expect("scratch store");
    let mut live = LiveEngine::new(LiveOptions {
        lateness: lateness * 1_000_000,
        ..LiveOptions::default()
    });
    live.rebuild_all(programs, &store.reader(), store.next_seq())
        .expect("empty backfill");

    let mut engine = Duration::ZERO;
    let mut rest = events.into_iter();
    loop {
        let chunk: Vec<_> = rest.by_ref().take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        let (_, accepted) = store.append_logged(vec![chunk]).expect("append");
        let t0 = Instant::now();
        live.on_accepted(&accepted, &store).expect("evaluate");
        let _ = live.drain_changes();
        engine += t0.elapsed();
        store.flush_if_full().expect("flush");
    }
    let rebuilds = live.rebuilds();
    println!(
        "{n} events ({} order, batches of {batch}): engine {:.2} s, {:.2} µs/event; {} users; rebuilds {} users / {} events",
        if time_order { "time" } else { "file" },
        engine.as_secs_f64(),
        engine.as_secs_f64() * 1e6 / n.max(1) as f64,
        live.users(),
        rebuilds.users,
        rebuilds.events,
    );
}
