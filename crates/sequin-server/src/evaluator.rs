//! The evaluator thread: owns live evaluation, fed by the writer with every accepted event.
//!
//! - Commands arrive in one queue, so they apply in order: events, definition changes
//!   (backfilled from a store snapshot; ingest goes on meanwhile, and events already in the
//!   snapshot are recognised by sequence number), watermark moves, and barriers.
//! - Changes are appended to `live/changes.ndjson` in the store directory and broadcast to
//!   stream subscribers and webhook senders.
//! - While no events arrive, the watermark moves with the wall clock (measured with a
//!   monotonic clock from the last event), so deadlines and windows still expire.
//! - On start, the memberships recorded in the change log are assumed, and the rebuild from
//!   history emits only real differences.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use sequin_engine::live::{Change, ChangeKind, History, LiveEngine, LiveOptions, UserHistory};
use sequin_engine::{EngineError, Program};
use sequin_lang::SegFile;
use sequin_lang::ast::ItemKind;
use sequin_store::{Accepted, Store};
use tokio::sync::{broadcast, oneshot};

/// What the evaluator thread is asked to do.
pub enum Command {
    /// Accepted events, in arrival order.
    Events(Vec<Accepted>),
    /// Replace the definitions (already checked) and backfill.
    SetDefinitions {
        /// Canonical source of the whole set.
        source: String,
        /// Compiled segments.
        programs: Vec<Program>,
        /// Done (or why not).
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Move the watermark to at least this time.
    Advance(i64, oneshot::Sender<()>),
    /// Answered once every earlier command is applied.
    Barrier(oneshot::Sender<()>),
}

/// The change log: a file of NDJSON lines plus a broadcast to live subscribers.
pub struct ChangeLog {
    path: PathBuf,
    file: Mutex<File>,
    last: AtomicU64,
    /// New changes, as they are recorded.
    pub broadcast: broadcast::Sender<Change>,
}

impl ChangeLog {
    fn open(path: &Path) -> std::io::Result<(ChangeLog, Vec<Change>)> {
        let mut existing = Vec::new();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                // A torn last line after a crash is dropped; its change is re-derived.
                match serde_json::from_str::<Change>(&line) {
                    Ok(c) => existing.push(c),
                    Err(_) => break,
                }
            }
        }
        // Rewrite without a torn tail, so appends start on a line boundary.
        let mut text = String::new();
        for c in &existing {
            text.push_str(&serde_json::to_string(c).expect("changes serialize"));
            text.push('\n');
        }
        fs::write(path, text)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let (tx, _) = broadcast::channel(65_536);
        Ok((
            ChangeLog {
                path: path.to_path_buf(),
                file: Mutex::new(file),
                last: AtomicU64::new(existing.last().map_or(0, |c| c.seq)),
                broadcast: tx,
            },
            existing,
        ))
    }

    fn append(&self, changes: &[Change]) -> std::io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for c in changes {
            buf.push_str(&serde_json::to_string(c).expect("changes serialize"));
            buf.push('\n');
        }
        self.file
            .lock()
            .expect("log lock")
            .write_all(buf.as_bytes())?;
        for c in changes {
            self.last.store(c.seq, Ordering::Release);
            let _ = self.broadcast.send(c.clone());
        }
        Ok(())
    }

    /// The last change recorded.
    pub fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Recorded changes after `after`, up to `upto` inclusive.
    pub fn read_range(&self, after: u64, upto: u64) -> std::io::Result<Vec<Change>> {
        let f = File::open(&self.path)?;
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let Ok(c) = serde_json::from_str::<Change>(&line?) else {
                break;
            };
            if c.seq > upto {
                break;
            }
            if c.seq > after {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// Live evaluation as the handlers see it.
pub struct Live {
    /// The engine; the evaluator thread writes, handlers read.
    pub engine: RwLock<LiveEngine>,
    /// Canonical source of the live definitions.
    pub source: RwLock<String>,
    /// Recorded changes.
    pub changes: ChangeLog,
    /// Events accepted but not yet evaluated.
    pub backlog: AtomicU64,
    /// Intake waits while the backlog is at least this (0: never), see [`Live::wait_for_room`].
    max_backlog: u64,
    /// Signalled whenever the evaluator takes events off the backlog or stops.
    room: (Mutex<()>, Condvar),
    /// A backfill of new definitions is running, or the evaluator has stopped: intake
    /// does not wait then (a backfill must not pause ingest; a stopped evaluator never
    /// drains).
    unbounded: AtomicBool,
    /// Size of the last checkpoint written, and the users it held.
    pub checkpoint_bytes: AtomicU64,
    /// Users with live state at the last checkpoint.
    pub checkpoint_users: AtomicU64,
    queue: mpsc::Sender<Command>,
}

impl Live {
    /// Blocks while the evaluator is `max_backlog` events or more behind intake. The
    /// writer calls it before appending, so that sustained overload slows
    /// acknowledgements down instead of queueing accepted events in memory without bound
    /// (about 1.5 KB each), and live membership stays within a bounded delay of intake.
    pub fn wait_for_room(&self) {
        if self.max_backlog == 0 {
            return;
        }
        let mut guard = self.room.0.lock().expect("backlog lock");
        while self.backlog.load(Ordering::Acquire) >= self.max_backlog
            && !self.unbounded.load(Ordering::Acquire)
        {
            // The timeout only bounds a missed wake-up; the evaluator signals every drain.
            guard = self
                .room
                .1
                .wait_timeout(guard, Duration::from_millis(50))
                .expect("backlog lock")
                .0;
        }
    }

    /// Takes `n` evaluated events off the backlog and wakes a waiting writer.
    fn drained(&self, n: u64) {
        self.backlog.fetch_sub(n, Ordering::AcqRel);
        self.wake_writer();
    }

    fn wake_writer(&self) {
        // Taking the lock orders this signal after a waiter's check of the backlog.
        drop(self.room.0.lock().expect("backlog lock"));
        self.room.1.notify_all();
    }

    /// Sends a command to the evaluator thread.
    pub fn send(&self, c: Command) -> Result<(), String> {
        self.queue
            .send(c)
            .map_err(|_| "the evaluator has stopped".to_string())
    }
}

/// Reads one user's history through the shared store, locking it only for the read.
struct SharedHistory<'a>(&'a Mutex<Store>);

impl History for SharedHistory<'_> {
    fn user_events(&self, user: &str, before: u64) -> Result<UserHistory, EngineError> {
        let store = self.0.lock().expect("store lock");
        History::user_events(&*store, user, before)
    }
}

/// Where the live definitions are kept, inside the store directory.
pub fn definitions_path(store_dir: &Path) -> PathBuf {
    store_dir.join("live").join("segments.seg")
}

/// Compiles every segment of a checked file.
pub fn compile_segments(file: &SegFile) -> Result<Vec<Program>, EngineError> {
    file.items
        .iter()
        .filter(|i| i.kind == ItemKind::Segment)
        .map(|i| Program::compile(file, &i.name.name))
        .collect()
}

/// At most this many queued events are gathered into one evaluation.
const COALESCE_EVENTS: usize = 16_384;

/// Settings of the evaluator.
#[derive(Debug, Clone)]
pub struct EvaluatorOptions {
    /// Engine settings.
    pub live: LiveOptions,
    /// Move the watermark with the wall clock while idle.
    pub idle_advance: bool,
    /// How often live state is checkpointed (when it changed).
    pub checkpoint_every: Duration,
    /// Intake waits while this many accepted events are not evaluated yet (0: never).
    pub max_backlog: u64,
}

/// Starts the evaluator thread: assumes the memberships of the change log, backfills
/// `programs` from the store, and then applies commands.
pub fn start(
    store: Arc<Mutex<Store>>,
    source: String,
    programs: Vec<Program>,
    opts: EvaluatorOptions,
) -> Result<(Arc<Live>, mpsc::Sender<Command>), String> {
    let dir = store.lock().expect("store lock").dir().to_path_buf();
    fs::create_dir_all(dir.join("live")).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(definitions_path(&dir), &source).map_err(|e| e.to_string())?;
    let log_path = dir.join("live").join("changes.ndjson");
    let (changes, recorded) =
        ChangeLog::open(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut members = std::collections::BTreeMap::new();
    for c in &recorded {
        let key = (c.segment.clone(), c.unit.clone());
        match c.kind {
            ChangeKind::Enter => {
                members.insert(key, c.time);
            }
            ChangeKind::Exit => {
                members.remove(&key);
            }
        }
    }
    let announced: Vec<(String, String, i64)> =
        members.into_iter().map(|((s, u), t)| (s, u, t)).collect();
    let checkpoint_path = dir.join("live").join("checkpoint.bin");
    let restored = read_checkpoint(&checkpoint_path, &source, &programs, &opts.live);
    // The checkpoint and the log tail it does not cover; no tail if part of it was imported
    // in bulk since (history written without arrival numbers): then rebuild from history.
    let restored = match restored {
        Some(engine) => {
            let s = store.lock().expect("store lock");
            match s.events_since(engine.processed_seq()) {
                Ok(tail) => Some((engine, tail)),
                Err(e @ sequin_store::StoreError::TailUnavailable(_)) => {
                    eprintln!("live: {e}; rebuilding live state from history");
                    None
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        None => None,
    };
    let mut engine = match restored {
        Some((mut engine, tail)) => {
            let s = store.lock().expect("store lock");
            for chunk in tail.chunks(10_000) {
                engine.on_accepted(chunk, &*s).map_err(|e| e.to_string())?;
            }
            drop(s);
            engine.drain_changes();
            engine.announce_differences(announced);
            eprintln!(
                "live: restored the checkpoint and {} events of log after it",
                tail.len()
            );
            engine
        }
        None => {
            let mut engine = LiveEngine::new(opts.live.clone());
            engine.assume_members(announced);
            let s = store.lock().expect("store lock");
            let reader = s.reader();
            let next = s.next_seq();
            drop(s);
            engine
                .rebuild_all(programs, &reader, next)
                .map_err(|e| e.to_string())?;
            engine
        }
    };
    engine.set_next_change_seq(recorded.last().map_or(1, |c| c.seq + 1));
    changes
        .append(&engine.drain_changes())
        .map_err(|e| e.to_string())?;
    let written =
        write_checkpoint(&checkpoint_path, &source, &engine).map_err(|e| e.to_string())?;
    let users = engine.users() as u64;
    let (tx, rx) = mpsc::channel();
    let live = Arc::new(Live {
        engine: RwLock::new(engine),
        source: RwLock::new(source),
        changes,
        backlog: AtomicU64::new(0),
        max_backlog: opts.max_backlog,
        room: (Mutex::new(()), Condvar::new()),
        unbounded: AtomicBool::new(false),
        checkpoint_bytes: AtomicU64::new(written as u64),
        checkpoint_users: AtomicU64::new(users),
        queue: tx.clone(),
    });
    let shared = live.clone();
    std::thread::Builder::new()
        .name("sequin-evaluator".into())
        .spawn(move || run(shared, store, rx, opts, dir))
        .map_err(|e| e.to_string())?;
    Ok((live, tx))
}

fn run(
    live: Arc<Live>,
    store: Arc<Mutex<Store>>,
    rx: mpsc::Receiver<Command>,
    opts: EvaluatorOptions,
    dir: PathBuf,
) {
    // However this thread ends (even by a panic), intake stops waiting for it.
    struct Stopped<'a>(&'a Live);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.unbounded.store(true, Ordering::Release);
            self.0.wake_writer();
        }
    }
    let _stopped = Stopped(&live);
    let mut last_event = Instant::now();
    let mut wm_at_last_event: Option<i64> = None;
    let checkpoint_path = dir.join("live").join("checkpoint.bin");
    let mut last_checkpoint = Instant::now();
    let mut checkpointed_at = live.engine.read().expect("engine lock").processed_seq();
    let checkpoint = |live: &Live, checkpointed_at: &mut u64| {
        let engine = live.engine.read().expect("engine lock");
        let source = live.source.read().expect("source lock").clone();
        match write_checkpoint(&checkpoint_path, &source, &engine) {
            Ok(n) => {
                live.checkpoint_bytes.store(n as u64, Ordering::Relaxed);
                live.checkpoint_users
                    .store(engine.users() as u64, Ordering::Relaxed);
                *checkpointed_at = engine.processed_seq();
            }
            Err(e) => tracing_error(&format!("checkpoint: {e}")),
        }
    };
    // A command taken off the queue while gathering events, to apply next.
    let mut next: Option<Command> = None;
    loop {
        // Only this thread still holds the state: the server is gone, and so is the store
        // (dropping it here releases its lock).
        if Arc::strong_count(&live) == 1 {
            checkpoint(&live, &mut checkpointed_at);
            return;
        }
        if last_checkpoint.elapsed() >= opts.checkpoint_every {
            last_checkpoint = Instant::now();
            let processed = live.engine.read().expect("engine lock").processed_seq();
            if processed != checkpointed_at {
                checkpoint(&live, &mut checkpointed_at);
            }
        }
        let received = match next.take() {
            Some(c) => Ok(c),
            None => rx.recv_timeout(Duration::from_millis(100)),
        };
        let cmd = match received {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if opts.idle_advance
                    && let Some(base) = wm_at_last_event
                {
                    let idle = last_event.elapsed().as_micros() as i64;
                    let mut engine = live.engine.write().expect("engine lock");
                    engine.advance(base.saturating_add(idle));
                    record(&live, &mut engine);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match cmd {
            Command::Events(batch) => {
                // Events queued behind these are evaluated with them: the engine's cost
                // per event falls with the batch (one pass over the due timers, fewer
                // same-millisecond events split across batches and re-read).
                let mut n = batch.len();
                let mut batches = vec![batch];
                while n < COALESCE_EVENTS {
                    match rx.try_recv() {
                        Ok(Command::Events(more)) => {
                            n += more.len();
                            batches.push(more);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let n = n as u64;
                let mut engine = live.engine.write().expect("engine lock");
                if let Err(e) = engine.on_accepted_batches(&batches, &SharedHistory(&store)) {
                    tracing_error(&format!("live evaluation: {e}"));
                }
                record(&live, &mut engine);
                wm_at_last_event = engine.watermark();
                last_event = Instant::now();
                live.drained(n);
            }
            Command::SetDefinitions {
                source,
                programs,
                reply,
            } => {
                let (reader, next) = {
                    let s = store.lock().expect("store lock");
                    (s.reader(), s.next_seq())
                };
                // Ingest goes on during the backfill, however long the backlog grows.
                live.unbounded.store(true, Ordering::Release);
                live.wake_writer();
                let mut engine = live.engine.write().expect("engine lock");
                let r = engine
                    .rebuild_all(programs, &reader, next)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        fs::write(definitions_path(&dir), &source).map_err(|e| e.to_string())
                    });
                if r.is_ok() {
                    *live.source.write().expect("source lock") = source;
                }
                record(&live, &mut engine);
                drop(engine);
                if r.is_ok() {
                    checkpoint(&live, &mut checkpointed_at);
                }
                live.unbounded.store(false, Ordering::Release);
                let _ = reply.send(r);
            }
            Command::Advance(t, reply) => {
                let mut engine = live.engine.write().expect("engine lock");
                engine.advance(t);
                record(&live, &mut engine);
                let _ = reply.send(());
            }
            Command::Barrier(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// A checkpoint file: the hash of the definitions' source, then the engine's state.
fn read_checkpoint(
    path: &Path,
    source: &str,
    programs: &[Program],
    opts: &LiveOptions,
) -> Option<LiveEngine> {
    let bytes = fs::read(path).ok()?;
    let (hash, body) = bytes.split_at_checked(8)?;
    if hash != xxhash_rust::xxh3::xxh3_64(source.as_bytes()).to_le_bytes() {
        eprintln!("live: definitions changed since the checkpoint; rebuilding from history");
        return None;
    }
    match LiveEngine::restore(opts.clone(), programs.to_vec(), body) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("live: {e}; rebuilding from history");
            None
        }
    }
}

/// Writes a checkpoint atomically (temporary file, sync, rename, sync the directory).
fn write_checkpoint(path: &Path, source: &str, engine: &LiveEngine) -> std::io::Result<usize> {
    let mut bytes = xxhash_rust::xxh3::xxh3_64(source.as_bytes())
        .to_le_bytes()
        .to_vec();
    bytes.extend(engine.checkpoint());
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(bytes.len())
}

fn record(live: &Live, engine: &mut LiveEngine) {
    let changes = engine.drain_changes();
    if let Err(e) = live.changes.append(&changes) {
        tracing_error(&format!("change log: {e}"));
    }
}

fn tracing_error(msg: &str) {
    eprintln!("sequin serve: {msg}");
}
