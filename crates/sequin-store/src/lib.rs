//! Sequin's durable store.
//!
//! The data path inside the store:
//!
//! ```text
//! append(events) ─▶ write-ahead log (fsync) ─▶ memtable ─flush─▶ Parquet runs ─compact─▶ one run per partition
//! ```
//!
//! - [`wal`]: an event is accepted only once its block is in the log and the log is synced
//!   (one sync covers a whole appended batch: group commit).
//! - [`memtable`]: accepted events not yet flushed, column by column.
//! - [`history`]: Parquet files, partitioned by unit hash, sorted by (unit, time, arrival).
//! - [`manifest`]: which files are live and how far the log is flushed; replaced atomically,
//!   so a `kill -9` at any point leaves a store that reopens with every accepted event
//!   exactly once (log records already flushed are skipped by sequence number).
//! - [`identity`]: identify/alias links; events of a linked id move to its user, also those
//!   already in history (their partitions are rewritten at the next compaction).
//! - [`data`]: [`PartitionData`], the in-memory columnar form readers consume.
//!
//! Readers go through the [`EventSource`] trait; [`MemorySource`] implements it over a plain
//! list of events for tests.

pub mod codec;
pub mod data;
pub mod error;
pub mod history;
pub mod identity;
pub mod manifest;
pub mod memtable;
mod recent;
pub mod stats;
pub mod wal;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sequin_core::{Event, unit_hash};

pub use data::{PartitionData, PropColumn, StrColumn};
pub use error::StoreError;
pub use history::Projection;
pub use identity::Identity;
pub use manifest::{Manifest, Run};

use error::IoContext;
use memtable::Memtable;
use recent::RecentIds;
use wal::Wal;

/// Anything that can hand out sorted partitions of events.
pub trait EventSource: Sync {
    /// Number of partitions.
    fn partitions(&self) -> usize;
    /// One partition's events, sorted by (unit, time, arrival), with the projected columns.
    fn read_partition(
        &self,
        partition: usize,
        projection: &Projection,
    ) -> Result<PartitionData, StoreError>;
    /// The latest event time held, if any.
    fn latest_time(&self) -> Option<i64>;
    /// Event names and namespaced property columns (`p.…`, `c.…`, `t.…`) present.
    fn catalog(&self) -> Result<Catalog, StoreError> {
        let mut cat = Catalog::default();
        for p in 0..self.partitions() {
            let data = self.read_partition(p, &Projection::All)?;
            cat.names.extend(data.names.iter().cloned());
            cat.columns.extend(data.props.keys().cloned());
        }
        Ok(cat)
    }
}

/// What a store holds, by name (for "did you mean" in the checker).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Event names.
    pub names: std::collections::BTreeSet<String>,
    /// Namespaced property columns.
    pub columns: std::collections::BTreeSet<String>,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Partitions of a new store (ignored for an existing one).
    pub partitions: usize,
    /// Flush the memtable to history once it holds about this many bytes.
    pub memtable_bytes: usize,
    /// Create the store if it does not exist.
    pub create: bool,
    /// Open for reading only: share the lock with other readers (a writer excludes them).
    pub read_only: bool,
    /// Write each event's arrival number into the history files this store writes, so that
    /// a live checkpoint's log tail can be read back from history ([`Store::events_since`]).
    /// A bulk import turns it off: arrival numbers are a permutation that does not compress
    /// (~2.7 bytes an event, more than the rest of the event), and a server whose checkpoint
    /// precedes such files rebuilds its live state from history instead.
    pub keep_arrival: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            partitions: 16,
            memtable_bytes: 2 << 30,
            create: true,
            read_only: false,
            keep_arrival: true,
        }
    }
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events accepted (durable).
    pub accepted: u64,
    /// Events dropped as duplicates of an accepted message id.
    pub duplicates: u64,
}

/// An accepted event as [`Store::append_logged`] hands it back.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its sequence number in the log.
    pub seq: u64,
    /// Its unit (user), after identity stitching.
    pub unit: sequin_core::Text,
    /// It linked another id to its user for the first time (that id's events moved here).
    pub linked: bool,
    /// The event.
    pub event: Event,
}

/// A store directory, open for reading and writing. Holds an exclusive lock on the
/// directory while open.
pub struct Store {
    dir: PathBuf,
    manifest: Manifest,
    wal: Wal,
    memtable: Memtable,
    /// A memtable taken out of intake to be written to history (see [`FlushJob`]). Reads
    /// still see its events until its runs are in the manifest.
    frozen: Option<Frozen>,
    /// Memtables already written to history, oldest first (see [`Retained`]).
    retained: std::collections::VecDeque<Retained>,
    identity: Identity,
    /// Links made since the last flush (persisted to the identity file at flush).
    new_links: Vec<(String, String)>,
    memtable_bytes: usize,
    keep_arrival: bool,
    /// Message ids accepted recently, also across flushes (see [`RecentIds`]).
    recent: RecentIds,
    /// History files decoded for reading one user back (see [`RunCache`]).
    run_cache: std::sync::Mutex<RunCache>,
    /// Which units each history file holds (see [`RunUnits`]).
    run_units: std::sync::Mutex<RunUnits>,
    _lock: File,
}

/// The history files most recently decoded to read one user's events back, up to
/// [`RunCache::MAX_ROWS`] rows in all. The live evaluator reads a user back for every event
/// that arrives behind the watermark; decoding a whole partition file each time made
/// sustained ingest of out-of-order data 5× slower once the memtable had flushed. Files
/// never change once written (compaction writes new ones), so entries are keyed by path.
#[derive(Default)]
struct RunCache {
    /// Most recently used last.
    entries: Vec<(PathBuf, std::sync::Arc<PartitionData>)>,
    rows: usize,
}

impl RunCache {
    const MAX_ROWS: usize = 2_000_000;

    fn get(&mut self, path: &Path) -> Result<std::sync::Arc<PartitionData>, StoreError> {
        if let Some(i) = self.entries.iter().position(|(p, _)| p == path) {
            let entry = self.entries.remove(i);
            let data = entry.1.clone();
            self.entries.push(entry);
            return Ok(data);
        }
        let data = std::sync::Arc::new(history::read_run(path, &Projection::All)?);
        self.rows += data.len();
        self.entries.push((path.to_path_buf(), data.clone()));
        while self.rows > Self::MAX_ROWS && self.entries.len() > 1 {
            let (_, old) = self.entries.remove(0);
            self.rows -= old.len();
        }
        Ok(data)
    }
}

/// The units (as hashes) of each history file, so that reading one user back decodes only
/// the files that hold one of its ids. Events that arrive behind the watermark read their
/// user back; when users arrive one after another (a replayed export), almost none of them
/// is in the older files, and decoding those files anyway made the live evaluator the
/// bottleneck of sustained ingest once a few flushes had happened. Filled at flush for new
/// files, and on first use (units column only) for files older than this process.
#[derive(Default)]
struct RunUnits {
    by_path: rustc_hash::FxHashMap<PathBuf, std::sync::Arc<rustc_hash::FxHashSet<u64>>>,
}

impl RunUnits {
    fn of_units<'a>(units: impl IntoIterator<Item = &'a String>) -> rustc_hash::FxHashSet<u64> {
        units.into_iter().map(|u| unit_hash(u)).collect()
    }

    /// Might the file at `path` hold one of `ids`? (False positives only cost a decode.)
    fn may_hold(&mut self, path: &Path, ids: &[&str]) -> Result<bool, StoreError> {
        let units = match self.by_path.get(path) {
            Some(units) => units.clone(),
            None => {
                let data = history::read_run(path, &Projection::Columns(Vec::new()))?;
                let units = std::sync::Arc::new(Self::of_units(&data.units));
                self.by_path.insert(path.to_path_buf(), units.clone());
                units
            }
        };
        Ok(ids.iter().any(|id| units.contains(&unit_hash(id))))
    }
}

const IDENTITY: &str = "identity.jsonl";

/// The error for a store's shared read structure left poisoned by a panic in another thread.
fn poisoned(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        path: dir.to_path_buf(),
        reason: format!("{what} poisoned by a panic"),
    }
}

/// A memtable frozen for flushing, and what installing its runs needs.
struct Frozen {
    memtable: std::sync::Arc<Memtable>,
    /// Every event below this sequence number is in it or already in history.
    flushed_to: u64,
    /// The identity links its events made (persisted with its runs).
    links: Vec<(String, String)>,
    /// A [`FlushJob`] for it is out; none other may start.
    in_flight: bool,
}

/// A memtable whose runs are in history, kept in memory a while longer. The live evaluator
/// reads a user back whenever one of its events arrives out of order, and such users are
/// mostly active ones, whose earlier events were often just flushed: following the
/// memtable's per-id chains costs microseconds where decoding the history file that holds
/// them costs milliseconds. Reads of one user skip its runs and take its rows instead.
/// Compaction rewrites runs, so it drops every retained memtable.
struct Retained {
    memtable: std::sync::Arc<Memtable>,
    /// Its runs (paths relative to the store directory).
    files: rustc_hash::FxHashSet<String>,
}

impl Retained {
    /// How many flushed memtables stay readable (each is about `memtable_bytes`).
    const KEEP: usize = 2;
}

/// Writing a frozen memtable to history runs: the slow part of a flush, which needs no
/// access to the [`Store`], so that a server keeps accepting events meanwhile. Made by
/// [`Store::start_flush`]; its result goes back to [`Store::finish_flush`].
pub struct FlushJob {
    memtable: std::sync::Arc<Memtable>,
    units: memtable::UnitMap,
    links: Vec<(String, String)>,
    dir: PathBuf,
    partitions: usize,
    keep_arrival: bool,
    run: u64,
}

/// The runs a [`FlushJob`] wrote, with the units of each.
pub struct FlushedRuns {
    runs: Vec<(Run, rustc_hash::FxHashSet<u64>)>,
}

impl FlushJob {
    /// Writes the runs (one per partition with events), syncs them, and persists the
    /// identity links. Nothing is visible to readers until [`Store::finish_flush`].
    /// Parallel work runs on the ambient rayon pool.
    pub fn write(self) -> Result<FlushedRuns, StoreError> {
        let trace = std::env::var_os("SEQUIN_TRACE").is_some();
        let t0 = std::time::Instant::now();
        let parts = self.memtable.to_partitions(&self.units, self.partitions);
        if trace {
            eprintln!(
                "flush: sorted {} events in {:?}",
                self.memtable.len(),
                t0.elapsed()
            );
        }
        let (dir, run, keep_arrival) = (&self.dir, self.run, self.keep_arrival);
        let runs: Vec<(Run, _)> = parts
            .into_par_iter()
            .map(|(p, data)| {
                let file = format!("history/p{p:03}/r{run:08}.parquet");
                history::write_run(&dir.join(&file), &data, keep_arrival)?;
                let run = Run {
                    partition: p,
                    file,
                    rows: data.len() as u64,
                    min_time: data.time.iter().copied().min().unwrap_or(0),
                    max_time: data.time.iter().copied().max().unwrap_or(0),
                    max_seq: data.seq.iter().copied().max(),
                };
                Ok((run, RunUnits::of_units(&data.units)))
            })
            .collect::<Result<_, StoreError>>()?;
        if trace {
            eprintln!("flush: wrote runs at {:?}", t0.elapsed());
        }
        for p in runs
            .iter()
            .map(|(r, _)| r.partition)
            .collect::<std::collections::BTreeSet<_>>()
        {
            wal::sync_dir(&dir.join(format!("history/p{p:03}")))?;
        }
        // A retried job appends its links again: reloading ignores a repeated link.
        if !self.links.is_empty() {
            let path = dir.join(IDENTITY);
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .at(&path)?;
            let mut buf = Vec::new();
            for link in &self.links {
                serde_json::to_writer(&mut buf, link).expect("strings serialize");
                buf.push(b'\n');
            }
            f.write_all(&buf).at(&path)?;
            f.sync_all().at(&path)?;
        }
        Ok(FlushedRuns { runs })
    }
}

impl Store {
    /// Opens the store in `dir`, replaying its log.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        if !dir.join(manifest::MANIFEST).exists() && !opts.create {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).at(dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        let locked = if opts.read_only {
            lock.try_lock_shared()
        } else {
            lock.try_lock()
        };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(lock_path, e)),
        }
        let mut manifest = match Manifest::load(dir)? {
            Some(m) => m,
            None => {
                let m = Manifest::new(opts.partitions.max(1));
                m.save(dir)?;
                m
            }
        };
        let mut identity = Identity::default();
        let id_path = dir.join(IDENTITY);
        if let Ok(f) = File::open(&id_path) {
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.at(&id_path)?;
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_str::<(String, String)>(&line) {
                    Ok((from, to)) => {
                        identity.link(&from, &to);
                    }
                    // A torn last line from a crash mid-flush: its events are still in the log.
                    Err(_) => {
                        let _ = i;
                        break;
                    }
                }
            }
        }
        let (wal, recovered) = Wal::open(&dir.join("wal"), manifest.next_seq)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            manifest: manifest.clone(),
            wal,
            memtable: Memtable::default(),
            frozen: None,
            retained: Default::default(),
            identity,
            new_links: Vec::new(),
            memtable_bytes: opts.memtable_bytes,
            keep_arrival: opts.keep_arrival,
            recent: RecentIds::default(),
            run_cache: Default::default(),
            run_units: Default::default(),
            _lock: lock,
        };
        if !opts.read_only {
            store.load_recent_ids()?;
        }
        for block in recovered {
            for (i, e) in block.events.iter().enumerate() {
                let seq = block.first_seq + i as u64;
                if seq < store.manifest.flushed_seq {
                    continue; // already in history
                }
                store.accept(e, seq);
                manifest.next_seq = manifest.next_seq.max(seq + 1);
            }
        }
        store.manifest.next_seq = manifest.next_seq;
        Ok(store)
    }

    /// Fills the duplicate window with the message ids of the newest history runs, so that
    /// a retry is still recognised after a restart.
    fn load_recent_ids(&mut self) -> Result<(), StoreError> {
        let mut runs: Vec<&Run> = self.manifest.runs.iter().collect();
        runs.sort_by(|a, b| b.file.rsplit('/').next().cmp(&a.file.rsplit('/').next()));
        let mut loaded = 0u64;
        let projection = Projection::Columns(vec!["message_id".to_string()]);
        let mut batches = Vec::new();
        for run in runs {
            if loaded >= RecentIds::CAPACITY as u64 {
                break;
            }
            let data = history::read_run(&self.dir.join(&run.file), &projection)?;
            loaded += run.rows;
            if let Some(ids) = data.ids.get("message_id") {
                batches.push(ids.dict.clone());
            }
        }
        // Oldest first, so the window evicts them first.
        for dict in batches.into_iter().rev() {
            for id in &dict {
                self.recent.insert(RecentIds::hash(id), 0);
            }
        }
        Ok(())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The identity map.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Events accepted but not yet flushed to history.
    pub fn unflushed(&self) -> usize {
        self.memtable.len() + self.frozen.as_ref().map_or(0, |f| f.memtable.len())
    }

    /// Adds an event replayed from the log to the memtable and the identity map, unless
    /// its message id was accepted already.
    fn accept(&mut self, e: &Event, seq: u64) {
        if let Some(m) = &e.message_id
            && !self.recent.insert(RecentIds::hash(m), self.unflushed() + 1)
        {
            return;
        }
        self.memtable.push(e, seq);
        self.link_identity(e);
    }

    /// Makes the identity link an accepted event states, if any. Returns whether the link
    /// is new.
    fn link_identity(&mut self, e: &Event) -> bool {
        if let Some((from, to)) = e.identity_link()
            && self.identity.link(from, to)
        {
            self.new_links.push((from.to_string(), to.to_string()));
            return true;
        }
        false
    }

    /// Appends events; when this returns `Ok`, they are durable (in the synced log).
    /// Events whose message id is in the duplicate window (the last 4M accepted, see
    /// [`RecentIds`]) are dropped here; older duplicates are dropped when history is
    /// compacted.
    pub fn append(&mut self, events: Vec<Event>) -> Result<AppendOutcome, StoreError> {
        let outcomes = self.append_inner(vec![events], false)?.0;
        self.flush_if_full()?;
        Ok(outcomes[0])
    }

    /// [`Store::append`] for several requests at once (group commit), each request's
    /// events in a group of their own, also handing back every accepted event that has a
    /// unit (a user or anonymous id) with its sequence number and its unit (after identity
    /// stitching, including links made by this very batch), in arrival order: what a live
    /// evaluator consumes. One log write and one sync for all; the outcome of each request
    /// in order. Does not flush: call [`Store::flush_if_full`] after.
    pub fn append_logged(
        &mut self,
        groups: Vec<Vec<Event>>,
    ) -> Result<(Vec<AppendOutcome>, Vec<Accepted>), StoreError> {
        self.append_inner(groups, true)
    }

    /// Appends; hands the accepted events back only when `hand_back` (a bulk import has no
    /// use for them, and building them costs a unit string per event). The groups are
    /// never concatenated: copying every event once more cost more than the log write.
    fn append_inner(
        &mut self,
        mut groups: Vec<Vec<Event>>,
        hand_back: bool,
    ) -> Result<(Vec<AppendOutcome>, Vec<Accepted>), StoreError> {
        let total: usize = groups.iter().map(Vec::len).sum();
        let mut outcomes = vec![AppendOutcome::default(); groups.len()];
        // Duplicates of accepted messages, and repeats inside this batch, are dropped
        // before they are logged (in place: nothing moves unless one is). The window takes
        // the new ids now (hashed once), and gives them back if the log write fails.
        let mut new_ids = 0;
        let unflushed = self.unflushed() + total;
        let hashes: Vec<u128> = groups
            .iter()
            .flatten()
            .filter_map(|e| e.message_id.as_deref().map(RecentIds::hash))
            .collect();
        self.recent.warm(&hashes, unflushed);
        let mut hashes = hashes.into_iter();
        for (group, outcome) in groups.iter_mut().zip(&mut outcomes) {
            let sent = group.len() as u64;
            group.retain(|e| {
                if e.message_id.is_none() {
                    return true;
                }
                let h = hashes.next().expect("one hash per message id");
                let new = self.recent.insert(h, unflushed);
                new_ids += usize::from(new);
                new
            });
            outcome.accepted = group.len() as u64;
            outcome.duplicates = sent - outcome.accepted;
        }
        let kept = || groups.iter().flatten();
        let kept_len: usize = groups.iter().map(Vec::len).sum();
        let first = self.manifest.next_seq;
        // The log write and sync run beside the memtable's intake (two cores at work on
        // one batch). Nothing reads the memtable meanwhile (`&mut self`), and if the log
        // fails the intake is rolled back, so only durable events are ever visible.
        let rows_before = self.memtable.len();
        let bytes_before = self.memtable.approx_bytes();
        let (wal, memtable) = (&mut self.wal, &mut self.memtable);
        let (logged, ()) = rayon::join(
            || {
                if kept_len == 0 {
                    return Ok(());
                }
                wal.append(first, kept())?;
                wal.sync()
            },
            || {
                for (i, e) in kept().enumerate() {
                    memtable.push(e, first + i as u64);
                }
            },
        );
        if let Err(e) = logged {
            self.memtable.truncate(rows_before, bytes_before);
            self.recent.forget_newest(new_ids);
            return Err(e);
        }
        self.manifest.next_seq += kept_len as u64;
        let mut accepted = Vec::with_capacity(if hand_back { kept_len } else { 0 });
        for (i, e) in groups.into_iter().flatten().enumerate() {
            let linked = self.link_identity(&e);
            if !hand_back {
                continue;
            }
            if let Some(key) = e.unit_key() {
                let unit = self.identity.resolve(key).into();
                accepted.push(Accepted {
                    seq: first + i as u64,
                    unit,
                    linked,
                    event: e,
                });
            }
        }
        Ok((outcomes, accepted))
    }

    /// Flushes when the memtable has reached its size. Separate from appending: a failed
    /// flush must not make durable, accepted events look refused.
    pub fn flush_if_full(&mut self) -> Result<bool, StoreError> {
        if self.memtable_full() {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Has the memtable reached the size at which it should be flushed?
    pub fn memtable_full(&self) -> bool {
        self.memtable.approx_bytes() >= self.memtable_bytes
    }

    /// Every accepted event with an arrival number of at least `from`, in arrival order,
    /// with its unit as identity stitching resolves it now: the log tail a live checkpoint
    /// does not cover. `linked` is set on every event that states an identity link.
    pub fn events_since(&self, from: u64) -> Result<Vec<Accepted>, StoreError> {
        let mut out: Vec<Accepted> = Vec::new();
        for run in &self.manifest.runs {
            if run.max_seq.is_some_and(|m| m < from) {
                continue;
            }
            let data = history::read_run(&self.dir.join(&run.file), &Projection::All)?;
            if data.seq.len() != data.len() {
                match run.max_seq {
                    // Written before arrival numbers were kept: older than any checkpoint.
                    None => continue,
                    // Written without them (bulk import) and possibly after `from`.
                    Some(_) => return Err(StoreError::TailUnavailable(run.file.clone())),
                }
            }
            for r in 0..data.len() {
                if data.seq[r] >= from {
                    out.extend(self.accepted(data.seq[r], data.event(r)));
                }
            }
        }
        let frozen = self.frozen.as_ref().map(|f| &*f.memtable);
        for memtable in frozen.into_iter().chain([&self.memtable]) {
            for (seq, event) in memtable.events_from(from) {
                out.extend(self.accepted(seq, event));
            }
        }
        out.sort_by_key(|a| a.seq);
        Ok(out)
    }

    fn accepted(&self, seq: u64, event: Event) -> Option<Accepted> {
        let unit = self.identity.resolve(event.unit_key()?).into();
        Some(Accepted {
            seq,
            unit,
            linked: event.identity_link().is_some(),
            event,
        })
    }

    /// The next sequence number to be assigned: every event below it is accepted.
    pub fn next_seq(&self) -> u64 {
        self.manifest.next_seq
    }

    /// Every event of one user (after identity stitching: also those of ids linked to it)
    /// with an arrival number below `before`, from history and the memtables, sorted by time
    /// then arrival — and the sequence number they are complete up to. For re-evaluating
    /// one unit after a late event or a link.
    pub fn user_events(&self, user: &str, before: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let user = self.identity.resolve(user);
        let ids = self.identity.ids_of(user);
        let n = self.manifest.partitions as u64;
        let partitions: std::collections::BTreeSet<usize> =
            ids.iter().map(|k| (unit_hash(k) % n) as usize).collect();
        let mut events: Vec<(u64, Event)> = Vec::new();
        let retained = |file: &str| self.retained.iter().any(|r| r.files.contains(file));
        for p in partitions {
            for run in self.manifest.runs_of(p) {
                if retained(&run.file) {
                    continue;
                }
                let path = self.dir.join(&run.file);
                let may_hold = self
                    .run_units
                    .lock()
                    .map_err(|_| poisoned(&self.dir, "history unit index"))?
                    .may_hold(&path, &ids)?;
                if !may_hold {
                    continue;
                }
                let data = self
                    .run_cache
                    .lock()
                    .map_err(|_| poisoned(&self.dir, "history cache"))?
                    .get(&path)?;
                // Units are filed sorted under their id at the time: find each of the user's.
                for id in &ids {
                    let Ok(i) = data.units.binary_search_by(|u| u.as_str().cmp(id)) else {
                        continue;
                    };
                    let rows = data.unit_start[i] as usize..data.unit_start[i + 1] as usize;
                    {
                        for r in rows {
                            // A run without arrival numbers (written before they were kept,
                            // or by a bulk import) stands at its largest one, after every
                            // earlier run; the stable sort below keeps its rows in file
                            // order, which is arrival order within a unit.
                            let seq = data.seq.get(r).copied().or(run.max_seq).unwrap_or(0);
                            if seq < before {
                                events.push((seq, data.event(r)));
                            }
                        }
                    }
                }
            }
        }
        let memtables = self.retained.iter().map(|r| &*r.memtable);
        let frozen = self.frozen.as_ref().map(|f| &*f.memtable);
        for m in memtables.chain(frozen).chain([&self.memtable]) {
            events.extend(
                m.events_of(&ids)
                    .into_iter()
                    .filter(|(seq, _)| *seq < before),
            );
        }
        events.sort_by_key(|(seq, e)| (e.time, *seq));
        Ok((
            events.into_iter().map(|(_, e)| e).collect(),
            self.manifest.next_seq.min(before),
        ))
    }

    /// Writes the memtable to new history runs and drops the log it covered (first a
    /// memtable left frozen by a failed [`FlushJob`], if any).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.frozen.as_ref().is_some_and(|f| f.in_flight) {
            return Err(StoreError::FlushRunning);
        }
        while let Some(job) = self.start_flush()? {
            let written = job.write();
            self.finish_flush(written)?;
        }
        Ok(())
    }

    /// Freezes the memtable for flushing and hands back the job that writes it; intake
    /// goes on into a fresh memtable. `None` when there is nothing to flush or a job is
    /// already out. A memtable whose job failed is frozen still: the next call retries it.
    pub fn start_flush(&mut self) -> Result<Option<FlushJob>, StoreError> {
        match &self.frozen {
            Some(f) if f.in_flight => return Ok(None),
            Some(_) => {}
            None if self.memtable.is_empty() => return Ok(None),
            None => {
                let flushed_to = self.manifest.next_seq;
                // The log from here on goes to a segment of its own, which outlives the
                // flush; the older ones are deleted once its runs are installed.
                self.wal.rotate(flushed_to)?;
                self.frozen = Some(Frozen {
                    memtable: std::sync::Arc::new(std::mem::take(&mut self.memtable)),
                    flushed_to,
                    links: std::mem::take(&mut self.new_links),
                    in_flight: false,
                });
            }
        }
        let frozen = self.frozen.as_mut().expect("frozen above");
        frozen.in_flight = true;
        Ok(Some(FlushJob {
            memtable: frozen.memtable.clone(),
            units: frozen.memtable.unit_map(&self.identity),
            links: frozen.links.clone(),
            dir: self.dir.clone(),
            partitions: self.manifest.partitions,
            keep_arrival: self.keep_arrival,
            run: self.manifest.next_run,
        }))
    }

    /// Installs what a [`FlushJob`] wrote: its runs join the manifest, the frozen memtable
    /// and the log it covered are dropped. A failed job leaves the memtable frozen (its
    /// events stay readable and in the log) for the next [`Store::start_flush`].
    pub fn finish_flush(
        &mut self,
        written: Result<FlushedRuns, StoreError>,
    ) -> Result<(), StoreError> {
        let frozen = self.frozen.as_mut().expect("a flush job is out");
        frozen.in_flight = false;
        let runs = written?.runs;
        let mut next = self.manifest.clone();
        // Runs flushed before this one may hold events of ids linked just now.
        let had_history: std::collections::BTreeSet<usize> =
            next.runs.iter().map(|r| r.partition).collect();
        for (from, _) in &frozen.links {
            let p = (unit_hash(from) % next.partitions as u64) as usize;
            if had_history.contains(&p) {
                next.rekey.push(from.clone());
            }
        }
        next.identity_links += frozen.links.len() as u64;
        let mut known = self
            .run_units
            .lock()
            .map_err(|_| poisoned(&self.dir, "history unit index"))?;
        let files = runs.iter().map(|(run, _)| run.file.clone()).collect();
        for (run, units) in runs {
            known
                .by_path
                .insert(self.dir.join(&run.file), std::sync::Arc::new(units));
            next.runs.push(run);
        }
        drop(known);
        next.next_run += 1;
        next.flushed_seq = frozen.flushed_to;
        next.save(&self.dir)?;
        self.manifest = next;
        let frozen = self.frozen.take().expect("frozen above");
        self.retained.push_back(Retained {
            memtable: frozen.memtable,
            files,
        });
        if self.retained.len() > Retained::KEEP {
            let oldest = self.retained.pop_front();
            // Freeing millions of values takes a while: not on the writer's path.
            std::thread::spawn(move || drop(oldest));
        }
        self.wal.remove_below(self.manifest.flushed_seq)?;
        Ok(())
    }

    /// Flushes, then merges every partition that has several runs (or holds events of ids
    /// linked since they were written) into a single run, dropping duplicate message ids.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let n = self.manifest.partitions;
        let mut dirty: std::collections::BTreeSet<usize> = (0..n)
            .filter(|&p| self.manifest.runs_of(p).count() > 1)
            .collect();
        for from in &self.manifest.rekey {
            dirty.insert((unit_hash(from) % n as u64) as usize);
            dirty.insert((unit_hash(self.identity.resolve(from)) % n as u64) as usize);
        }
        if dirty.is_empty() {
            return Ok(());
        }
        let reader = self.reader();
        // Read, re-resolve units, and scatter rows to the partition of their (new) unit.
        let pieces: Vec<Vec<(usize, PartitionData)>> = dirty
            .par_iter()
            .map(|&p| {
                // Each partition's files are read once here and their rows scattered below
                // (reading through the view would re-read every partition a linked id
                // came from, once per partition).
                let data = reader.read_runs(p, &Projection::All)?;
                let new_units: Vec<String> = data
                    .units
                    .iter()
                    .map(|u| self.identity.resolve(u).to_string())
                    .collect();
                if new_units == data.units {
                    return Ok(vec![(p, data)]);
                }
                Ok(data.regroup(&new_units, n))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut by_partition: std::collections::BTreeMap<usize, Vec<PartitionData>> =
            Default::default();
        for (p, piece) in pieces.into_iter().flatten() {
            by_partition.entry(p).or_default().push(piece);
        }
        for &p in &dirty {
            by_partition.entry(p).or_default();
        }
        let run_id = self.manifest.next_run;
        let dir = self.dir.clone();
        let keep_arrival = self.keep_arrival;
        // Files read without arrival numbers still bound them: the merged run's bound is the
        // largest of the runs it replaces (an over-estimate is safe, see `events_since`).
        let inputs_max_seq = self
            .manifest
            .runs
            .iter()
            .filter(|r| dirty.contains(&r.partition))
            .filter_map(|r| r.max_seq)
            .max();
        let new_runs: Vec<Option<Run>> = by_partition
            .into_par_iter()
            .map(|(p, pieces)| {
                let merged = dedup_messages(PartitionData::merge(pieces));
                if merged.is_empty() {
                    return Ok(None);
                }
                let file = format!("history/p{p:03}/r{run_id:08}.parquet");
                history::write_run(&dir.join(&file), &merged, keep_arrival)?;
                Ok(Some(Run {
                    partition: p,
                    file,
                    rows: merged.len() as u64,
                    min_time: merged.time.iter().copied().min().unwrap_or(0),
                    max_time: merged.time.iter().copied().max().unwrap_or(0),
                    max_seq: merged.seq.iter().copied().max().or(inputs_max_seq),
                }))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut next = self.manifest.clone();
        let old: Vec<Run> = next
            .runs
            .iter()
            .filter(|r| dirty.contains(&r.partition))
            .cloned()
            .collect();
        next.runs.retain(|r| !dirty.contains(&r.partition));
        next.runs.extend(new_runs.into_iter().flatten());
        next.runs.sort_by_key(|r| r.partition);
        next.next_run += 1;
        next.rekey.clear();
        next.save(&self.dir)?;
        self.manifest = next;
        let retained = std::mem::take(&mut self.retained);
        std::thread::spawn(move || drop(retained));
        for r in old {
            let path = self.dir.join(&r.file);
            fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }

    /// A consistent view for reading: history runs plus the memtable as of now.
    pub fn reader(&self) -> StoreReader {
        let n = self.manifest.partitions;
        let mut memtable: Vec<Option<PartitionData>> = vec![None; n];
        let frozen = self.frozen.as_ref().map(|f| &*f.memtable);
        // The frozen memtable's events arrived before the live one's: merged in that order.
        for m in frozen.into_iter().chain([&self.memtable]) {
            for (p, d) in m.to_partitions(&m.unit_map(&self.identity), n) {
                memtable[p] = Some(match memtable[p].take() {
                    Some(earlier) => PartitionData::merge(vec![earlier, d]),
                    None => d,
                });
            }
        }
        let mut pending: Vec<String> = self.manifest.rekey.clone();
        let frozen_links = self.frozen.iter().flat_map(|f| &f.links);
        pending.extend(
            frozen_links
                .chain(&self.new_links)
                .map(|(from, _)| from.clone()),
        );
        StoreReader {
            dir: self.dir.clone(),
            manifest: self.manifest.clone(),
            memtable,
            identity: if pending.is_empty() {
                Identity::default()
            } else {
                self.identity.clone()
            },
            pending,
        }
    }
}

/// Drops rows whose message id repeats an earlier row of the same unit.
fn dedup_messages(data: PartitionData) -> PartitionData {
    let Some(ids) = data.ids.get("message_id") else {
        return data;
    };
    let mut keep = Vec::with_capacity(data.len());
    let mut dropped = false;
    for (_, range) in data.unit_rows() {
        let mut seen = std::collections::HashSet::new();
        for r in range {
            match ids.keys[r] {
                data::NULL_KEY => keep.push(true),
                k => {
                    let fresh = seen.insert(k);
                    dropped |= !fresh;
                    keep.push(fresh);
                }
            }
        }
    }
    if !dropped {
        return data;
    }
    let mut order = Vec::new();
    let mut units = Vec::new();
    let mut unit_start = Vec::new();
    for (u, range) in data.unit_rows() {
        let start = order.len() as u32;
        order.extend(range.filter(|&r| keep[r]).map(|r| r as u32));
        units.push(u.to_string());
        unit_start.push(start);
    }
    unit_start.push(order.len() as u32);
    let mut out = data.take_rows(&order);
    out.units = units;
    out.unit_start = unit_start;
    out
}

/// A read view of a store (see [`Store::reader`]).
pub struct StoreReader {
    dir: PathBuf,
    manifest: Manifest,
    memtable: Vec<Option<PartitionData>>,
    /// Ids linked to a user after their history was written (compaction moves them; until
    /// then reads move them).
    pending: Vec<String>,
    identity: Identity,
}

impl StoreReader {
    /// Opens a read view without taking the writer's lock: history as of the manifest, plus
    /// whatever the log holds beyond it.
    pub fn open(dir: &Path) -> Result<StoreReader, StoreError> {
        let store = Store::open(
            dir,
            &StoreOptions {
                create: false,
                read_only: true,
                ..Default::default()
            },
        )?;
        Ok(store.reader())
    }

    /// The manifest this view reads.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A partition's history files merged, units as they were filed (no relabelling of
    /// linked ids, no memtable).
    fn read_runs(&self, p: usize, projection: &Projection) -> Result<PartitionData, StoreError> {
        let mut parts = Vec::new();
        for run in self.manifest.runs_of(p) {
            parts.push(history::read_run(&self.dir.join(&run.file), projection)?);
        }
        Ok(PartitionData::merge(parts))
    }
}

fn project(mut data: PartitionData, projection: &Projection) -> PartitionData {
    match projection {
        Projection::All => {}
        Projection::Columns(cols) => {
            data.props.retain(|k, _| cols.iter().any(|c| c == k));
            data.ids.retain(|k, _| cols.iter().any(|c| c == k));
        }
        Projection::Except(cols) => {
            data.props.retain(|k, _| !cols.iter().any(|c| c == k));
            data.ids.retain(|k, _| !cols.iter().any(|c| c == k));
        }
    }
    data
}

impl EventSource for StoreReader {
    fn partitions(&self) -> usize {
        self.manifest.partitions
    }

    fn read_partition(
        &self,
        partition: usize,
        projection: &Projection,
    ) -> Result<PartitionData, StoreError> {
        // Stitching needs arrival numbers to order equal times from different ids.
        let with_seq = match projection {
            Projection::Columns(cols) if !self.pending.is_empty() => {
                let mut cols = cols.clone();
                cols.push("seq".to_string());
                Projection::Columns(cols)
            }
            other => other.clone(),
        };
        let runs = |p: usize| self.read_runs(p, &with_seq);
        let mut parts = Vec::new();
        if self.pending.is_empty() {
            parts.push(runs(partition)?);
        } else {
            // History written before a link still files the linked id's events under it:
            // relabel them to their user, here and in the partitions they sit in.
            let n = self.manifest.partitions as u64;
            let part_of = |k: &str| (unit_hash(k) % n) as usize;
            let mut sources: std::collections::BTreeSet<usize> = self
                .pending
                .iter()
                .filter(|f| part_of(self.identity.resolve(f)) == partition)
                .map(|f| part_of(f))
                .collect();
            sources.insert(partition);
            for q in sources {
                let data = runs(q)?;
                let new_units: Vec<String> = data
                    .units
                    .iter()
                    .map(|u| self.identity.resolve(u).to_string())
                    .collect();
                if new_units == data.units {
                    if q == partition {
                        parts.push(data);
                    }
                    continue;
                }
                parts.extend(
                    data.regroup(&new_units, n as usize)
                        .into_iter()
                        .filter(|(p, _)| *p == partition)
                        .map(|(_, d)| d),
                );
            }
        }
        if let Some(m) = &self.memtable[partition] {
            parts.push(project(m.clone(), projection));
        }
        Ok(PartitionData::merge(parts))
    }

    fn catalog(&self) -> Result<Catalog, StoreError> {
        let mut cat = Catalog::default();
        for run in &self.manifest.runs {
            cat.columns.extend(
                history::run_columns(&self.dir.join(&run.file))?
                    .into_iter()
                    .filter(|c| c.starts_with("p.") || c.starts_with("c.") || c.starts_with("t.")),
            );
        }
        for m in self.memtable.iter().flatten() {
            cat.columns.extend(m.props.keys().cloned());
        }
        for p in 0..self.partitions() {
            let data = self.read_partition(p, &Projection::Columns(Vec::new()))?;
            cat.names.extend(data.names.iter().cloned());
        }
        Ok(cat)
    }

    fn latest_time(&self) -> Option<i64> {
        let runs = self.manifest.runs.iter().map(|r| r.max_time);
        let mem = self
            .memtable
            .iter()
            .flatten()
            .filter_map(|m| m.time.iter().max().copied());
        runs.chain(mem).max()
    }
}

/// An in-memory [`EventSource`] over a list of events (arrival order = list order), for
/// tests and small tools. Identity links in the events are applied like the store does.
pub struct MemorySource {
    parts: Vec<PartitionData>,
}

impl MemorySource {
    /// Partitions `events` into `partitions` sorted partitions.
    pub fn new(events: &[Event], partitions: usize) -> MemorySource {
        let mut identity = Identity::default();
        for e in events {
            if let Some((from, to)) = e.identity_link() {
                identity.link(from, to);
            }
        }
        let mut buckets: Vec<(Vec<Event>, Vec<String>)> = vec![Default::default(); partitions];
        for e in events {
            let Some(key) = e.unit_key() else { continue };
            let unit = identity.resolve(key).to_string();
            let p = (unit_hash(&unit) % partitions as u64) as usize;
            buckets[p].0.push(e.clone());
            buckets[p].1.push(unit);
        }
        let parts = buckets
            .into_iter()
            .map(|(evs, units)| {
                let refs: Vec<&str> = units.iter().map(String::as_str).collect();
                PartitionData::from_events(&evs, &refs)
            })
            .collect();
        MemorySource { parts }
    }
}

impl EventSource for MemorySource {
    fn partitions(&self) -> usize {
        self.parts.len()
    }

    fn read_partition(
        &self,
        partition: usize,
        projection: &Projection,
    ) -> Result<PartitionData, StoreError> {
        Ok(project(self.parts[partition].clone(), projection))
    }

    fn latest_time(&self) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|p| p.time.iter().max().copied())
            .max()
    }
}
