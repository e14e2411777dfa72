//! Live evaluation: segments kept current as accepted events arrive, with the matcher of
//! [`crate::batch`].
//!
//! - Each user has a [`UserLive`]: one [`UnitState`] per user-level program, and the open
//!   sessions / conversations it splits into (named exactly as [`crate::units::split`]
//!   names them), each with its own states.
//! - Events of one user are fed in (time, arrival) order. An event not later than
//!   everything the user's states have already seen (a later event, or a timer that fired)
//!   is *late*: the user is re-evaluated from history (the store holds it by then) and the
//!   difference in membership is emitted as corrective changes. So live membership equals
//!   batch membership whatever the delivery order.
//! - "Now" is the watermark: the largest event time seen minus the allowed lateness, moved
//!   forward by [`LiveEngine::advance`] (the server calls it with the wall clock while idle).
//!   Timers (absence deadlines, window expiry, session close) fire when it passes them.
//! - Every membership change is a [`Change`] with a sequence number, drained by the caller.
//! - A new or changed set of definitions is backfilled from history with
//!   [`LiveEngine::rebuild_all`]; memberships that differ come out as changes.
//!
//! Events carry their log sequence number, so an event already included by a rebuild from
//! history (which reads everything accepted so far) is not fed twice.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rustc_hash::FxHashMap;
use sequin_core::time::{MINUTE, Micros};
use sequin_core::{Event, Text};
use sequin_lang::ast::UnitKind;
use sequin_store::{Accepted, EventSource, PartitionData, PropColumn, Store};

use crate::EngineError;
use crate::codec::{Dec, DecodeError, Enc};
use crate::compile::{PropRef, PropRole};
use crate::matcher::{Ev, Props, UnitState};
use crate::signals::{EventInput, InputColumns, RowInput, signal_prop};
use crate::val::Val;
use crate::{Program, batch};
use sequin_signals::{DetectorState, Input, Plan, Signal};

const CHECKPOINT_MAGIC: &[u8] = b"SEQUIN-LIVE-1\n";

/// Live evaluation settings.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
    /// How far behind the largest event time seen the watermark trails.
    pub lateness: Micros,
}

impl Default for LiveOptions {
    fn default() -> LiveOptions {
        LiveOptions {
            session_gap: 30 * MINUTE,
            lateness: 0,
        }
    }
}

/// Entered or exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The unit became a member.
    Enter,
    /// The unit stopped being a member.
    Exit,
}

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Position in the change log (1-based, increasing).
    pub seq: u64,
    /// Segment name.
    pub segment: String,
    /// Unit key.
    pub unit: String,
    /// Enter or exit.
    pub kind: ChangeKind,
    /// Event time of the change (µs): the entry time for an enter.
    pub time: i64,
}

/// One user's events as history holds them now.
#[derive(Debug, Clone)]
pub struct UserHistory {
    /// Sorted by (time, arrival).
    pub events: Vec<Event>,
    /// Every event below this arrival number is included.
    pub next_seq: u64,
    /// The user the asked-for id belongs to now: itself, or the user a link (possibly one
    /// live evaluation has not reached yet) moved it to.
    pub canonical: String,
}

/// Where live evaluation re-reads one user's events (after a late event or an identity
/// link).
pub trait History {
    /// The events of `user` (of its canonical user, when it has been linked) with an
    /// arrival number below `before`: live evaluation re-reads only what it has reached in
    /// the stream, whatever the store has accepted since.
    fn user_events(&self, user: &str, before: u64) -> Result<UserHistory, EngineError>;
}

impl History for Store {
    fn user_events(&self, user: &str, before: u64) -> Result<UserHistory, EngineError> {
        let (events, next_seq) = Store::user_events(self, user, before)?;
        Ok(UserHistory {
            events,
            next_seq,
            canonical: self.identity().resolve(user).to_string(),
        })
    }
}

/// A session or conversation in progress (or closed, with timers still to fire).
#[derive(Debug, Clone)]
struct SubLive {
    kind: UnitKind,
    id: Option<String>,
    key: String,
    last: i64,
    events: u64,
    /// Still takes events (a later run of the same id replaced it otherwise).
    open: bool,
    states: Vec<Option<UnitState>>,
}

/// Everything live evaluation keeps for one user.
#[derive(Debug, Clone, Default)]
struct UserLive {
    /// The latest time any of this user's states has seen (event group or timer).
    clock: i64,
    /// Events with a lower sequence number are already included (rebuilt from history).
    skip_below: u64,
    /// Events fed so far (the next event's position).
    events: u64,
    /// Earliest pending timer (i64::MAX: none).
    wake: i64,
    /// User-level programs, by slot.
    states: Vec<Option<UnitState>>,
    subs: Vec<SubLive>,
    /// Runs started per (kind, id), to name later runs of the same id.
    runs: FxHashMap<(bool, Option<String>), u32>,
    /// Memberships of this user's sessions and conversations: (slot, unit).
    sub_members: Vec<(usize, String)>,
    /// Signal detectors of the programs that read signals, by slot.
    detectors: Vec<Option<DetectorState>>,
}

/// One event as live evaluation feeds it.
trait Item {
    fn time(&self) -> i64;
    fn name(&self) -> &str;
    fn session_id(&self) -> Option<&str>;
    fn conversation_id(&self) -> Option<&str>;
    fn prop(&self, slot: usize, id: usize) -> Option<Val<'_>>;
    /// The event as signal detectors read it (None for a derived signal).
    fn input(&self) -> Option<&dyn Input>;
}

struct EventItem<'a> {
    event: &'a Event,
    refs: &'a [Vec<PropRef>],
    input: EventInput<'a>,
}

impl Item for EventItem<'_> {
    fn time(&self) -> i64 {
        self.event.time
    }
    fn name(&self) -> &str {
        &self.event.name
    }
    fn session_id(&self) -> Option<&str> {
        self.event.session_id.as_deref()
    }
    fn conversation_id(&self) -> Option<&str> {
        self.event.conversation_id.as_deref()
    }
    fn prop(&self, slot: usize, id: usize) -> Option<Val<'_>> {
        let r = &self.refs[slot][id];
        if !self.input.may_have(&r.path) {
            return None;
        }
        let e = self.event;
        let order = match r.role {
            PropRole::Event => [&e.properties, &e.context, &e.traits],
            PropRole::Attribute => [&e.traits, &e.context, &e.properties],
        };
        order
            .into_iter()
            .find_map(|list| list.iter().find(|(k, _)| *k == r.path))
            .map(|(_, v)| Val::of(v))
    }
    fn input(&self) -> Option<&dyn Input> {
        Some(&self.input)
    }
}

struct RowItem<'a> {
    data: &'a PartitionData,
    row: usize,
    /// Per slot, per property id: the candidate columns in lookup order.
    cols: &'a [Vec<Vec<&'a PropColumn>>],
    input: RowInput<'a>,
}

impl Item for RowItem<'_> {
    fn time(&self) -> i64 {
        self.data.time[self.row]
    }
    fn name(&self) -> &str {
        &self.data.names[self.data.name[self.row] as usize]
    }
    fn session_id(&self) -> Option<&str> {
        self.data.id("session_id", self.row)
    }
    fn conversation_id(&self) -> Option<&str> {
        self.data.id("conversation_id", self.row)
    }
    fn prop(&self, slot: usize, id: usize) -> Option<Val<'_>> {
        self.cols[slot][id]
            .iter()
            .find_map(|c| batch::column_value(c, self.row))
    }
    fn input(&self) -> Option<&dyn Input> {
        Some(&self.input)
    }
}

/// A derived signal fed to one program.
struct SignalItem<'a> {
    signal: &'a Signal,
    refs: &'a [Vec<PropRef>],
}

impl Item for SignalItem<'_> {
    fn time(&self) -> i64 {
        self.signal.time
    }
    fn name(&self) -> &str {
        self.signal.kind.event_name()
    }
    fn session_id(&self) -> Option<&str> {
        self.signal.session_id.as_deref()
    }
    fn conversation_id(&self) -> Option<&str> {
        self.signal.conversation_id.as_deref()
    }
    fn prop(&self, slot: usize, id: usize) -> Option<Val<'_>> {
        signal_prop(self.signal, &self.refs[slot][id])
    }
    fn input(&self) -> Option<&dyn Input> {
        None
    }
}

struct ItemProps<'a> {
    item: &'a dyn Item,
    slot: usize,
}

impl Props for ItemProps<'_> {
    fn prop(&self, id: usize) -> Option<Val<'_>> {
        self.item.prop(self.slot, id)
    }
}

/// The live evaluator.
pub struct LiveEngine {
    opts: LiveOptions,
    /// Programs by slot; a deleted definition leaves `None` (slots are never reused).
    programs: Vec<Option<Program>>,
    refs: std::sync::Arc<Vec<Vec<PropRef>>>,
    /// Each user's state, encoded (see [`LiveEngine::encode_user`]): a few hundred bytes
    /// a user instead of the several kilobytes of the working form, decoded while the
    /// user's events or timers are processed.
    users: FxHashMap<Text, Box<[u8]>>,
    timers: BinaryHeap<Reverse<(i64, String)>>,
    /// Memberships and the changes not yet drained.
    ledger: Ledger,
    watermark: i64,
    max_time: i64,
    /// Events below this sequence number are included in the states (the last backfill).
    base_seq: u64,
    bits: FxHashMap<String, Vec<u64>>,
    /// Memberships recorded before a restart, compared against by the next rebuild.
    assumed: Vec<(String, String, i64)>,
    /// Every event below this arrival number has been fed.
    processed: u64,
    /// Ids found linked to another user while re-reading history, before their link event
    /// came through: their events go to that user.
    moved: FxHashMap<String, String>,
    /// Users re-read from history since start, and the events re-fed doing so.
    rebuilds: RebuildCounts,
}

/// How often live evaluation fell back to re-reading a user from history (an event older
/// than the user's latest, or two linked histories), and what that cost in events re-fed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebuildCounts {
    /// Users re-read.
    pub users: u64,
    /// Events re-fed.
    pub events: u64,
}

impl LiveEngine {
    /// An engine with no programs and no state.
    pub fn new(opts: LiveOptions) -> LiveEngine {
        LiveEngine {
            opts,
            programs: Vec::new(),
            refs: Default::default(),
            users: FxHashMap::default(),
            timers: BinaryHeap::new(),
            ledger: Ledger {
                members: Vec::new(),
                changes: Vec::new(),
                next_change: 1,
            },
            watermark: i64::MIN,
            max_time: i64::MIN,
            base_seq: 0,
            bits: FxHashMap::default(),
            assumed: Vec::new(),
            processed: 0,
            moved: FxHashMap::default(),
            rebuilds: RebuildCounts::default(),
        }
    }

    /// Users re-read from history since start, and the events re-fed doing so.
    pub fn rebuilds(&self) -> RebuildCounts {
        self.rebuilds
    }

    /// Every event with a lower arrival number has been evaluated.
    pub fn processed_seq(&self) -> u64 {
        self.processed
    }

    /// Emits the changes that turn `announced` — `(segment, unit, entered_at)`, e.g. replayed
    /// from a change log — into the current memberships (after a recovery).
    pub fn announce_differences(&mut self, announced: Vec<(String, String, i64)>) {
        let now = self.current_memberships();
        self.emit_diff(announced, now);
    }

    /// Takes `(segment, unit, entered_at)` as the memberships already announced (from a
    /// change log, after a restart): the next [`LiveEngine::rebuild_all`] emits only the
    /// differences from them.
    pub fn assume_members(&mut self, members: Vec<(String, String, i64)>) {
        self.assumed = members;
    }

    /// The current watermark ("now"), if any event or advance has set it.
    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// The largest event time seen.
    pub fn max_time(&self) -> Option<i64> {
        (self.max_time != i64::MIN).then_some(self.max_time)
    }

    /// Sequence number the next change will get.
    pub fn next_change_seq(&self) -> u64 {
        self.ledger.next_change
    }

    /// Makes change numbering continue after `seq` (after a restart).
    pub fn set_next_change_seq(&mut self, seq: u64) {
        self.ledger.next_change = self.ledger.next_change.max(seq);
    }

    /// Live definitions, by name.
    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        self.programs.iter().flatten()
    }

    /// Units that are members of `segment` now, with their entry times, sorted by unit.
    pub fn members(&self, segment: &str) -> Option<&BTreeMap<String, i64>> {
        let slot = self.slot_of(segment)?;
        Some(self.ledger.members[slot].sorted())
    }

    /// The segments `unit` is a member of now, with entry times.
    pub fn segments_of(&self, unit: &str) -> Vec<(&str, i64)> {
        self.programs
            .iter()
            .enumerate()
            .filter_map(|(s, p)| {
                let p = p.as_ref()?;
                self.ledger.members[s]
                    .get(unit)
                    .map(|t| (p.name.as_str(), t))
            })
            .collect()
    }

    /// Users with live state.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Takes the changes produced since the last call.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.ledger.changes)
    }

    fn slot_of(&self, segment: &str) -> Option<usize> {
        self.programs
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == segment))
    }

    /// Replaces the whole set of definitions and re-evaluates every user from `history`
    /// (a snapshot holding every event below `next_seq`). Memberships that differ from
    /// before — all of a new definition's, none of an unchanged one's — come out as
    /// changes; a removed definition's members exit.
    pub fn rebuild_all(
        &mut self,
        programs: Vec<Program>,
        history: &dyn EventSource,
        next_seq: u64,
    ) -> Result<(), EngineError> {
        let mut old = self.take_all_memberships();
        old.append(&mut self.assumed);
        self.programs.clear();
        self.ledger.members.clear();
        self.bits.clear();
        self.refs = std::sync::Arc::new(programs.iter().map(|p| p.props.clone()).collect());
        for p in programs {
            self.programs.push(Some(p));
            self.ledger.members.push(Members::default());
        }
        self.users.clear();
        self.timers.clear();
        self.base_seq = next_seq;
        self.processed = self.processed.max(next_seq);
        self.max_time = self.max_time.max(history.latest_time().unwrap_or(i64::MIN));
        self.watermark = self
            .watermark
            .max(self.max_time.saturating_sub(self.opts.lateness));
        let live: Vec<Program> = self.programs.iter().flatten().cloned().collect();
        let proj = batch::projection(&live);
        for part in 0..history.partitions() {
            let data = history.read_partition(part, &proj)?;
            let inputs = InputColumns::resolve(&data);
            let cols: Vec<Vec<Vec<&PropColumn>>> = self
                .programs
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map(|p| batch::resolve_columns(p, &data).slots)
                        .unwrap_or_default()
                })
                .collect();
            for (unit, rows) in data.unit_rows() {
                let items: Vec<RowItem<'_>> = rows
                    .map(|row| RowItem {
                        data: &data,
                        row,
                        cols: &cols,
                        input: RowInput {
                            data: &data,
                            cols: &inputs,
                            row,
                        },
                    })
                    .collect();
                let refs: Vec<&dyn Item> = items.iter().map(|i| i as &dyn Item).collect();
                let mut user = self.fresh_user(next_seq);
                self.feed_sorted(unit, &mut user, &refs, false);
                self.fire_timers(unit, &mut user, false);
                self.store_user(unit, user);
            }
        }
        let new = self.current_memberships();
        self.emit_diff(old, new);
        Ok(())
    }

    /// Feeds accepted events (in arrival order, as [`Store::append_logged`] returns them),
    /// then fires the timers the new watermark passes.
    pub fn on_accepted(
        &mut self,
        batch: &[Accepted],
        history: &dyn History,
    ) -> Result<(), EngineError> {
        self.on_accepted_in(batch.iter(), history)
    }

    /// [`LiveEngine::on_accepted`] for consecutive batches at once, each as it came: a
    /// server coalescing what queued up need not copy the events into one vector.
    pub fn on_accepted_batches(
        &mut self,
        batches: &[Vec<Accepted>],
        history: &dyn History,
    ) -> Result<(), EngineError> {
        self.on_accepted_in(batches.iter().flatten(), history)
    }

    fn on_accepted_in<'b>(
        &mut self,
        batch: impl Iterator<Item = &'b Accepted> + Clone,
        history: &dyn History,
    ) -> Result<(), EngineError> {
        // Links first: an id linked to a user moves its events (and state) there.
        let mut alias: FxHashMap<&str, &str> = FxHashMap::default();
        let mut rebuild: Vec<&str> = Vec::new();
        let first_seq = batch.clone().next().map_or(0, |a| a.seq);
        let last_seq = batch.clone().last().map(|a| a.seq);
        // Re-reads stop at the end of this batch. The store may hold later events already
        // (evaluation trails intake); taking them here would move this user, and the
        // watermark with it, ahead of the stream, and make every user behind it look late.
        // Never below what a backfill already covers: a batch from before the backfill's
        // snapshot can still arrive, and a re-read marks everything below that as included.
        let before = last_seq
            .map_or(self.processed, |seq| seq + 1)
            .max(self.processed);
        for a in batch.clone() {
            if a.linked
                && let Some((from, _)) = a.event.identity_link()
            {
                let to = a.unit.as_str();
                alias.insert(from, to);
                self.moved.remove(from);
                let Some(from_user) = self.users.get(from).map(|b| {
                    self.decode_user(b)
                        .expect("live state encoded by this engine decodes")
                }) else {
                    continue; // nothing of `from` seen yet: nothing to move
                };
                // `from`'s state may hold events up to its last re-read; the move is exact
                // only if that is behind this batch.
                let from_ahead = from_user.skip_below > first_seq;
                let to_seen = self.users.contains_key(to)
                    || !self.memberships_of(to, &UserLive::default()).is_empty();
                if to_seen || from_ahead {
                    // Two histories interleave: re-read the user whole.
                    let user = self.take_user(from).unwrap_or_default();
                    let old = self.memberships_of(from, &user);
                    self.forget(&old);
                    self.emit_diff(old, Vec::<(usize, String, i64)>::new());
                    rebuild.push(to);
                } else {
                    self.rename_user(from, to);
                }
            }
        }
        let mut order: Vec<&str> = Vec::new();
        let mut by_unit: FxHashMap<&str, Vec<&Accepted>> = FxHashMap::default();
        for a in batch {
            self.max_time = self.max_time.max(a.event.time);
            let unit = alias
                .get(a.unit.as_str())
                .copied()
                .unwrap_or(a.unit.as_str());
            by_unit
                .entry(unit)
                .or_insert_with(|| {
                    order.push(unit);
                    Vec::new()
                })
                .push(a);
        }
        for unit in order {
            if rebuild.contains(&unit) {
                self.rebuild_user(unit, history, before)?;
                continue;
            }
            let mut user = self
                .take_user(unit)
                .unwrap_or_else(|| self.fresh_user(self.base_seq));
            let mut evs: Vec<&Accepted> = by_unit[unit]
                .iter()
                .copied()
                .filter(|a| a.seq >= user.skip_below)
                .collect();
            if evs.is_empty() {
                self.store_user(unit, user);
                continue;
            }
            evs.sort_by_key(|a| a.event.time);
            if user.events > 0 && evs[0].event.time <= user.clock {
                self.store_user(unit, user);
                self.rebuild_user(unit, history, before)?;
                continue;
            }
            let prop_refs = self.refs.clone();
            let items: Vec<EventItem<'_>> = evs
                .iter()
                .map(|a| EventItem {
                    event: &a.event,
                    refs: &prop_refs,
                    input: EventInput::new(&a.event),
                })
                .collect();
            let refs: Vec<&dyn Item> = items.iter().map(|i| i as &dyn Item).collect();
            self.feed_sorted(unit, &mut user, &refs, true);
            self.store_user(unit, user);
        }
        if let Some(last) = last_seq {
            self.processed = self.processed.max(last + 1);
        }
        let wm = self.max_time.saturating_sub(self.opts.lateness);
        self.advance(wm);
        Ok(())
    }

    /// Moves the watermark to at least `until` and fires every timer it passes.
    pub fn advance(&mut self, until: i64) {
        self.watermark = self.watermark.max(until);
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > self.watermark {
                break;
            }
            let Reverse((t, unit)) = self.timers.pop().expect("peeked");
            match self.users.get(unit.as_str()) {
                Some(bytes) if peek_wake(bytes) == t => {}
                _ => continue, // stale entry
            }
            let mut user = self.take_user(&unit).expect("present");
            self.fire_timers(&unit, &mut user, true);
            self.store_user(&unit, user);
        }
    }

    /// Moves the state of `from` to `to`, which has none: `from` was linked to `to` before
    /// `to` had any event. Unit keys derived from `from` are renamed (exit, enter).
    fn rename_user(&mut self, from: &str, to: &str) {
        let Some(mut user) = self.take_user(from) else {
            return;
        };
        let old = self.memberships_of(from, &user);
        self.forget(&old);
        let prefix = format!("{from}@");
        let rekey = |k: &str| -> String {
            if k == from {
                to.to_string()
            } else if let Some(rest) = k.strip_prefix(&prefix) {
                format!("{to}@{rest}")
            } else {
                k.to_string()
            }
        };
        for sub in &mut user.subs {
            sub.key = rekey(&sub.key);
        }
        for (_, k) in &mut user.sub_members {
            *k = rekey(k);
        }
        let new: Vec<(usize, String, i64)> =
            old.iter().map(|(s, u, t)| (*s, rekey(u), *t)).collect();
        for (s, u, t) in &new {
            self.ledger.members[*s].insert(u.clone(), *t);
        }
        self.emit_diff(old, new);
        user.wake = i64::MAX; // re-register its timer under the new key
        self.store_user(to, user);
    }

    /// Re-evaluates one user from history and emits the corrections.
    pub fn rebuild_user(
        &mut self,
        unit: &str,
        history: &dyn History,
        before: u64,
    ) -> Result<(), EngineError> {
        let h = history.user_events(unit, before)?;
        if h.canonical != unit {
            // The store already links `unit` to another user (the link is still ahead of
            // us in the stream): its events are part of that user now.
            let before = self.take_user(unit).unwrap_or_default();
            let old = self.memberships_of(unit, &before);
            self.forget(&old);
            self.emit_diff(old, Vec::<(usize, String, i64)>::new());
            self.moved.insert(unit.to_string(), h.canonical.clone());
            let canonical = h.canonical.clone();
            self.rebuild_from(&canonical, h);
            return Ok(());
        }
        self.rebuild_from(unit, h);
        Ok(())
    }

    fn rebuild_from(&mut self, unit: &str, h: UserHistory) {
        self.rebuilds.users += 1;
        self.rebuilds.events += h.events.len() as u64;
        let before = self.take_user(unit).unwrap_or_default();
        let old = self.memberships_of(unit, &before);
        self.forget(&old);
        let (events, next_seq) = (h.events, h.next_seq);
        let mut user = self.fresh_user(next_seq.max(self.base_seq));
        for e in &events {
            self.max_time = self.max_time.max(e.time);
        }
        let prop_refs = self.refs.clone();
        let items: Vec<EventItem<'_>> = events
            .iter()
            .map(|event| EventItem {
                event,
                refs: &prop_refs,
                input: EventInput::new(event),
            })
            .collect();
        let refs: Vec<&dyn Item> = items.iter().map(|i| i as &dyn Item).collect();
        self.feed_sorted(unit, &mut user, &refs, false);
        self.fire_timers(unit, &mut user, false);
        let new = self.memberships_of(unit, &user);
        self.store_user(unit, user);
        self.emit_diff(old, new);
    }

    /// The whole live state, encoded: restored by [`LiveEngine::restore`] with the same
    /// definitions, it continues exactly where this one stands.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut w = Enc::default();
        w.buf.extend_from_slice(CHECKPOINT_MAGIC);
        w.u(self.processed);
        w.u(self.ledger.next_change);
        w.i(self.watermark);
        w.i(self.max_time);
        w.u(self.base_seq);
        w.u(self.programs.len() as u64);
        for (p, members) in self.programs.iter().zip(&self.ledger.members) {
            w.os(p.as_ref().map(|p| p.name.as_str()));
            w.u(members.len() as u64);
            for (unit, &t) in members.sorted() {
                w.s(unit);
                w.i(t);
            }
        }
        w.u(self.users.len() as u64);
        for (key, bytes) in &self.users {
            w.s(key);
            w.u(bytes.len() as u64);
            w.buf.extend_from_slice(bytes);
        }
        w.u(self.moved.len() as u64);
        for (from, to) in &self.moved {
            w.s(from);
            w.s(to);
        }
        w.buf
    }

    /// An engine continuing from a [`LiveEngine::checkpoint`] taken with the same
    /// definitions, in the same order.
    pub fn restore(
        opts: LiveOptions,
        programs: Vec<Program>,
        bytes: &[u8],
    ) -> Result<LiveEngine, DecodeError> {
        let body = bytes
            .strip_prefix(CHECKPOINT_MAGIC)
            .ok_or(DecodeError("not a live checkpoint"))?;
        let mut r = Dec::new(body);
        let mut e = LiveEngine::new(opts);
        e.processed = r.u()?;
        e.ledger.next_change = r.u()?;
        e.watermark = r.i()?;
        e.max_time = r.i()?;
        e.base_seq = r.u()?;
        let n = r.count()?;
        if n != programs.len() {
            return Err(DecodeError("the definitions changed since the checkpoint"));
        }
        e.refs = std::sync::Arc::new(programs.iter().map(|p| p.props.clone()).collect());
        for p in programs {
            if r.os()?.as_deref() != Some(p.name.as_str()) {
                return Err(DecodeError("the definitions changed since the checkpoint"));
            }
            let k = r.count()?;
            let mut members = Members::default();
            for _ in 0..k {
                let unit = r.s()?;
                members.insert(unit, r.i()?);
            }
            e.ledger.members.push(members);
            e.programs.push(Some(p));
        }
        let users = r.count()?;
        for _ in 0..users {
            let key = r.s()?;
            let bytes: Box<[u8]> = r.bytes()?.into();
            // Check it decodes, and register its timer.
            let user = e.decode_user(&bytes)?;
            if user.wake != i64::MAX {
                e.timers.push(Reverse((user.wake, key.clone())));
            }
            e.users.insert(key.into(), bytes);
        }
        let moved = r.count()?;
        for _ in 0..moved {
            let from = r.s()?;
            e.moved.insert(from, r.s()?);
        }
        if !r.done() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(e)
    }

    fn fresh_user(&self, skip_below: u64) -> UserLive {
        UserLive {
            clock: i64::MIN,
            skip_below,
            events: 0,
            wake: i64::MAX,
            states: vec![None; self.programs.len()],
            detectors: vec![None; self.programs.len()],
            ..UserLive::default()
        }
    }

    fn store_user(&mut self, unit: &str, mut user: UserLive) {
        user.subs.retain(|s| {
            s.open
                || s.states
                    .iter()
                    .zip(&self.programs)
                    .any(|(st, p)| match (st, p) {
                        (Some(st), Some(p)) => p.next_timer(st).is_some(),
                        _ => false,
                    })
        });
        let wake = self.next_wake(&user);
        if wake != user.wake {
            user.wake = wake;
            if wake != i64::MAX {
                self.timers.push(Reverse((wake, unit.to_string())));
            }
        }
        let bytes = self.encode_user(&user);
        self.users.insert(unit.into(), bytes);
    }

    /// Takes a user's state out of the map, decoded.
    fn take_user(&mut self, unit: &str) -> Option<UserLive> {
        let bytes = self.users.remove(unit)?;
        Some(
            self.decode_user(&bytes)
                .expect("live state encoded by this engine decodes"),
        )
    }

    /// A user's state in its compact form.
    fn encode_user(&self, u: &UserLive) -> Box<[u8]> {
        let mut w = Enc::default();
        w.i(u.clock);
        w.u(u.skip_below);
        w.u(u.events);
        w.i(u.wake);
        let enc_states = |w: &mut Enc, states: &[Option<UnitState>]| {
            for st in states {
                match st {
                    None => w.b(false),
                    Some(st) => {
                        w.b(true);
                        st.encode(w);
                    }
                }
            }
        };
        enc_states(&mut w, &u.states);
        w.u(u.subs.len() as u64);
        for sub in &u.subs {
            w.b(sub.kind == UnitKind::Sessions);
            w.os(sub.id.as_deref());
            w.s(&sub.key);
            w.i(sub.last);
            w.u(sub.events);
            w.b(sub.open);
            enc_states(&mut w, &sub.states);
        }
        w.u(u.runs.len() as u64);
        for ((sessions, id), &n) in &u.runs {
            w.b(*sessions);
            w.os(id.as_deref());
            w.u(n as u64);
        }
        w.u(u.sub_members.len() as u64);
        for (slot, unit) in &u.sub_members {
            w.u(*slot as u64);
            w.s(unit);
        }
        for d in &u.detectors {
            match d.as_ref().filter(|d| !d.is_empty()) {
                None => w.b(false),
                Some(d) => {
                    w.b(true);
                    let json = serde_json::to_vec(d).expect("detector state serializes");
                    w.u(json.len() as u64);
                    w.buf.extend_from_slice(&json);
                }
            }
        }
        w.buf.into_boxed_slice()
    }

    fn decode_user(&self, bytes: &[u8]) -> Result<UserLive, DecodeError> {
        let mut r = Dec::new(bytes);
        let programs = &self.programs;
        let dec_states = |r: &mut Dec<'_>| -> Result<Vec<Option<UnitState>>, DecodeError> {
            programs
                .iter()
                .map(|p| {
                    if r.b()? {
                        let p = p
                            .as_ref()
                            .ok_or(DecodeError("state of a deleted definition"))?;
                        Ok(Some(p.decode_state(r)?))
                    } else {
                        Ok(None)
                    }
                })
                .collect()
        };
        let mut u = UserLive {
            clock: r.i()?,
            skip_below: r.u()?,
            events: r.u()?,
            wake: r.i()?,
            ..UserLive::default()
        };
        u.states = dec_states(&mut r)?;
        let subs = r.count()?;
        for _ in 0..subs {
            u.subs.push(SubLive {
                kind: if r.b()? {
                    UnitKind::Sessions
                } else {
                    UnitKind::Conversations
                },
                id: r.os()?,
                key: r.s()?,
                last: r.i()?,
                events: r.u()?,
                open: r.b()?,
                states: dec_states(&mut r)?,
            });
        }
        let runs = r.count()?;
        for _ in 0..runs {
            let sessions = r.b()?;
            let id = r.os()?;
            u.runs.insert((sessions, id), r.u()? as u32);
        }
        let subm = r.count()?;
        for _ in 0..subm {
            let slot = r.u()? as usize;
            u.sub_members.push((slot, r.s()?));
        }
        for _ in 0..programs.len() {
            u.detectors.push(if r.b()? {
                let bytes = r.bytes()?;
                Some(
                    serde_json::from_slice(bytes)
                        .map_err(|_| DecodeError("bad signal detector state"))?,
                )
            } else {
                None
            });
        }
        if !r.done() {
            return Err(DecodeError("trailing bytes in a user's state"));
        }
        Ok(u)
    }

    /// Bytes of live state: the encoded users and their keys.
    pub fn state_bytes(&self) -> usize {
        self.users.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    fn next_wake(&self, user: &UserLive) -> i64 {
        let mut wake = i64::MAX;
        let lists = std::iter::once(&user.states).chain(user.subs.iter().map(|s| &s.states));
        for states in lists {
            for (st, p) in states.iter().zip(&self.programs) {
                if let (Some(st), Some(p)) = (st, p)
                    && let Some(t) = p.next_timer(st)
                {
                    wake = wake.min(t);
                }
            }
        }
        for d in user.detectors.iter().flatten() {
            if let Some(t) = d.next_deadline() {
                wake = wake.min(t);
            }
        }
        wake
    }

    /// Feeds one user's events, sorted by time (ties in arrival order), group by group.
    fn feed_sorted(&mut self, unit: &str, user: &mut UserLive, items: &[&dyn Item], emit: bool) {
        let mut i = 0;
        let mut found = Vec::new();
        while i < items.len() {
            let t = items[i].time();
            let mut j = i;
            while j < items.len() && items[j].time() == t {
                j += 1;
            }
            // Signals whose deadline passed before `t` come first, each a group of its own;
            // then the group, with the signals its events complete.
            self.fire_signals(unit, user, |plan, st, out| plan.before(st, t, out), emit);
            let mut extra: Vec<(usize, Signal)> = Vec::new();
            for (slot, prog) in self.programs.iter().enumerate() {
                let Some(plan) = prog.as_ref().and_then(|p| p.signals.as_ref()) else {
                    continue;
                };
                let st = user.detectors[slot].get_or_insert_with(DetectorState::default);
                for item in &items[i..j] {
                    if let Some(input) = item.input() {
                        plan.on_event(st, input, &mut found);
                    }
                }
                extra.extend(found.drain(..).map(|s| (slot, s)));
            }
            self.feed_group(unit, user, &items[i..j], &extra, emit);
            i = j;
        }
    }

    /// Emits the signals `due` releases from every slot's detector, each fed to its
    /// program as a group of its own.
    fn fire_signals(
        &mut self,
        unit: &str,
        user: &mut UserLive,
        due: impl Fn(&Plan, &mut DetectorState, &mut Vec<Signal>),
        emit: bool,
    ) {
        let mut fired: Vec<(usize, Signal)> = Vec::new();
        let mut out = Vec::new();
        for (slot, prog) in self.programs.iter().enumerate() {
            let (Some(plan), Some(st)) = (
                prog.as_ref().and_then(|p| p.signals.as_ref()),
                user.detectors[slot].as_mut(),
            ) else {
                continue;
            };
            due(plan, st, &mut out);
            fired.extend(out.drain(..).map(|s| (slot, s)));
        }
        for one in fired {
            self.feed_group(unit, user, &[], std::slice::from_ref(&one), emit);
        }
    }

    /// Appends, for each program slot, the pattern bits an event called `name` sets.
    fn push_bits_of(&mut self, name: &str, out: &mut Vec<u64>) {
        if let Some(b) = self.bits.get(name) {
            out.extend_from_slice(b);
            return;
        }
        let b: Vec<u64> = self
            .programs
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.name_bits(name, false)))
            .collect();
        out.extend_from_slice(&b);
        self.bits.insert(name.to_string(), b);
    }

    /// Feeds the events of one timestamp to every state they concern, then settles.
    /// `extra` holds derived signals (slot, signal) at the same time, fed after the events
    /// to their own program only; with no events, `extra` is a deadline group of its own.
    fn feed_group(
        &mut self,
        unit: &str,
        user: &mut UserLive,
        group: &[&dyn Item],
        extra: &[(usize, Signal)],
        emit: bool,
    ) {
        let Some(t) = group
            .first()
            .map(|i| i.time())
            .or_else(|| extra.first().map(|(_, s)| s.time))
        else {
            return;
        };
        let gap = self.opts.session_gap;
        let refs = self.refs.clone();
        let signals: Vec<SignalItem<'_>> = extra
            .iter()
            .map(|(_, signal)| SignalItem {
                signal,
                refs: &refs,
            })
            .collect();
        // User-level programs: the matcher sees the user's whole event list; an event no
        // pattern names is skipped (except the first, when an untouched state is a member).
        // Pattern bits of item k for slot s at [k * slots + s]: one table for the group.
        let slots = self.programs.len();
        let mut bits = Vec::with_capacity(group.len() * slots);
        for it in group {
            self.push_bits_of(it.name(), &mut bits);
        }
        let mut sig_bits = Vec::with_capacity(signals.len() * slots);
        for it in &signals {
            self.push_bits_of(it.name(), &mut sig_bits);
        }
        // A signal takes the index of the raw event before it.
        let sig_index = (user.events + group.len() as u64).saturating_sub(1);
        for (slot, prog) in self.programs.iter().enumerate() {
            let Some(prog) = prog else { continue };
            if prog.unit != UnitKind::Users {
                continue;
            }
            let feed_all = prog.needs_all_events();
            let skip_irrelevant = !feed_all && !prog.empty_is_member();
            let mut begun = false;
            let raw = group.iter().enumerate().map(|(k, item)| {
                let index = user.events + k as u64;
                let b = bits[k * slots + slot];
                let skip = b == 0 && !feed_all && (index > 0 || skip_irrelevant);
                (*item, index, b, skip)
            });
            let derived = signals.iter().enumerate().map(|(k, item)| {
                let b = sig_bits[k * slots + slot];
                (
                    item as &dyn Item,
                    sig_index,
                    b,
                    extra[k].0 != slot || b == 0,
                )
            });
            for (item, index, b, skip) in raw.chain(derived) {
                if skip {
                    continue;
                }
                let st = user.states[slot].get_or_insert_with(|| prog.new_state(gap));
                if !begun {
                    prog.begin_group(st, t);
                    begun = true;
                }
                prog.on_event(
                    st,
                    &Ev {
                        time: t,
                        index,
                        bits: b,
                        props: &ItemProps { item, slot },
                    },
                );
            }
            if begun {
                let st = user.states[slot].as_mut().expect("fed");
                prog.end_group(st, t);
                let since = st.member_since;
                self.ledger.sync(slot, &prog.name, unit, since, t, emit);
            }
        }
        // Sessions and conversations: route each event to its run, then feed every run.
        let has_sub = |kind: UnitKind| self.programs.iter().flatten().any(|p| p.unit == kind);
        for kind in [UnitKind::Sessions, UnitKind::Conversations] {
            if !has_sub(kind) {
                continue;
            }
            fn id_of(kind: UnitKind, item: &dyn Item) -> Option<&str> {
                match kind {
                    UnitKind::Sessions => item.session_id(),
                    _ => item.conversation_id(),
                }
            }
            let mut routed: Vec<(usize, usize)> = Vec::new(); // (sub index, item index)
            for (k, item) in group.iter().enumerate() {
                let id = id_of(kind, *item);
                if kind == UnitKind::Conversations && id.is_none() {
                    continue;
                }
                let found = user.subs.iter().position(|s| {
                    s.open && s.kind == kind && s.id.as_deref() == id && t - s.last <= gap
                });
                let sub = match found {
                    Some(s) => s,
                    None => {
                        for s in user.subs.iter_mut() {
                            if s.kind == kind && s.id.as_deref() == id {
                                s.open = false;
                            }
                        }
                        let id = id.map(str::to_string);
                        let n = user
                            .runs
                            .entry((kind == UnitKind::Sessions, id.clone()))
                            .or_insert(0);
                        let key = match id.as_deref() {
                            Some(id) if *n == 0 => id.to_string(),
                            Some(id) => format!("{id}@{}", t.div_euclid(1000)),
                            None => format!("{unit}@{}", t.div_euclid(1000)),
                        };
                        *n += 1;
                        user.subs.push(SubLive {
                            kind,
                            id,
                            key,
                            last: t,
                            events: 0,
                            open: true,
                            states: vec![None; self.programs.len()],
                        });
                        user.subs.len() - 1
                    }
                };
                user.subs[sub].last = t;
                routed.push((sub, k));
            }
            // A signal joins the open run of its id; it never opens or extends one.
            let mut sig_routed: Vec<(usize, usize)> = Vec::new(); // (sub index, signal index)
            for (k, item) in signals.iter().enumerate() {
                let slot = extra[k].0;
                if self.programs[slot].as_ref().map(|p| p.unit) != Some(kind) {
                    continue;
                }
                let id = id_of(kind, item);
                if let Some(s) = user.subs.iter().position(|s| {
                    s.open && s.kind == kind && s.id.as_deref() == id && t - s.last <= gap
                }) {
                    sig_routed.push((s, k));
                }
            }
            let mut subs_touched: Vec<usize> =
                routed.iter().chain(&sig_routed).map(|&(s, _)| s).collect();
            subs_touched.sort_unstable();
            subs_touched.dedup();
            for s in subs_touched {
                let sub = &mut user.subs[s];
                let items: Vec<usize> = routed
                    .iter()
                    .filter(|&&(x, _)| x == s)
                    .map(|&(_, k)| k)
                    .collect();
                let sig_index = (sub.events + items.len() as u64).saturating_sub(1);
                for (slot, prog) in self.programs.iter().enumerate() {
                    let Some(prog) = prog else { continue };
                    if prog.unit != kind {
                        continue;
                    }
                    let sigs: Vec<usize> = sig_routed
                        .iter()
                        .filter(|&&(x, k)| {
                            x == s && extra[k].0 == slot && sig_bits[k * slots + slot] != 0
                        })
                        .map(|&(_, k)| k)
                        .collect();
                    if items.is_empty() && sigs.is_empty() {
                        continue;
                    }
                    let st = sub.states[slot].get_or_insert_with(|| prog.new_state(gap));
                    prog.begin_group(st, t);
                    for (n, &k) in items.iter().enumerate() {
                        prog.on_event(
                            st,
                            &Ev {
                                time: t,
                                index: sub.events + n as u64,
                                bits: bits[k * slots + slot],
                                props: &ItemProps {
                                    item: group[k],
                                    slot,
                                },
                            },
                        );
                    }
                    for &k in &sigs {
                        prog.on_event(
                            st,
                            &Ev {
                                time: t,
                                index: sig_index,
                                bits: sig_bits[k * slots + slot],
                                props: &ItemProps {
                                    item: &signals[k],
                                    slot,
                                },
                            },
                        );
                    }
                    prog.end_group(st, t);
                    let since = st.member_since;
                    self.ledger.sync_sub(
                        &mut user.sub_members,
                        slot,
                        &prog.name,
                        &sub.key,
                        since,
                        t,
                        emit,
                    );
                }
                sub.events += items.len() as u64;
            }
        }
        user.events += group.len() as u64;
        user.clock = user.clock.max(t);
    }

    /// Fires the user's timers up to the watermark, one at a time, syncing membership.
    fn fire_timers(&mut self, unit: &str, user: &mut UserLive, emit: bool) {
        let wm = self.watermark;
        self.fire_signals(unit, user, |plan, st, out| plan.settle(st, wm, out), emit);
        for (slot, prog) in self.programs.iter().enumerate() {
            let Some(prog) = prog else { continue };
            if prog.unit == UnitKind::Users {
                let Some(st) = user.states[slot].as_mut() else {
                    continue;
                };
                while let Some(t) = prog.next_timer(st).filter(|&t| t <= wm) {
                    prog.run_timers(st, t);
                    user.clock = user.clock.max(t);
                    let since = st.member_since;
                    self.ledger.sync(slot, &prog.name, unit, since, t, emit);
                }
            } else {
                for sub in user.subs.iter_mut() {
                    let Some(st) = sub.states[slot].as_mut() else {
                        continue;
                    };
                    while let Some(t) = prog.next_timer(st).filter(|&t| t <= wm) {
                        prog.run_timers(st, t);
                        user.clock = user.clock.max(t);
                        if st.is_closed() {
                            sub.open = false;
                        }
                        let since = st.member_since;
                        self.ledger.sync_sub(
                            &mut user.sub_members,
                            slot,
                            &prog.name,
                            &sub.key,
                            since,
                            t,
                            emit,
                        );
                    }
                }
            }
        }
    }

    /// (slot, unit, entry time) of every membership of this user and its sub-units.
    fn memberships_of(&self, unit: &str, user: &UserLive) -> Vec<(usize, String, i64)> {
        let mut out = Vec::new();
        for (slot, m) in self.ledger.members.iter().enumerate() {
            if let Some(t) = m.get(unit) {
                out.push((slot, unit.to_string(), t));
            }
        }
        for (slot, key) in &user.sub_members {
            if let Some(t) = self.ledger.members[*slot].get(key) {
                out.push((*slot, key.clone(), t));
            }
        }
        out
    }

    fn forget(&mut self, list: &[(usize, String, i64)]) {
        for (slot, unit, _) in list {
            self.ledger.members[*slot].remove(unit);
        }
    }

    fn take_all_memberships(&mut self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for (slot, m) in self.ledger.members.iter_mut().enumerate() {
            let Some(p) = &self.programs[slot] else {
                continue;
            };
            for (unit, t) in std::mem::take(m).into_sorted() {
                out.push((p.name.clone(), unit, t));
            }
        }
        out
    }

    fn current_memberships(&self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for (slot, m) in self.ledger.members.iter().enumerate() {
            let Some(p) = &self.programs[slot] else {
                continue;
            };
            for (unit, &t) in m.sorted() {
                out.push((p.name.clone(), unit.clone(), t));
            }
        }
        out
    }

    /// Emits exits for memberships that went away or changed entry time, then enters for
    /// new ones. Inputs may be keyed by slot or by name; they are compared by name.
    fn emit_diff<K: SegmentKey>(&mut self, old: Vec<(K, String, i64)>, new: Vec<(K, String, i64)>) {
        let name = |this: &LiveEngine, k: &K| k.segment(this).to_string();
        let old: BTreeMap<(String, String), i64> = old
            .into_iter()
            .map(|(k, u, t)| ((name(self, &k), u), t))
            .collect();
        let new: BTreeMap<(String, String), i64> = new
            .into_iter()
            .map(|(k, u, t)| ((name(self, &k), u), t))
            .collect();
        let now = self.watermark.max(self.max_time);
        for ((segment, unit), t) in &old {
            if new.get(&(segment.clone(), unit.clone())) != Some(t) {
                self.ledger.push(segment, unit, ChangeKind::Exit, now);
            }
        }
        for ((segment, unit), t) in &new {
            if old.get(&(segment.clone(), unit.clone())) != Some(t) {
                self.ledger.push(segment, unit, ChangeKind::Enter, *t);
            }
        }
    }
}

/// The wake time stored in an encoded user (its fourth field).
fn peek_wake(bytes: &[u8]) -> i64 {
    let mut r = Dec::new(bytes);
    let _ = r.i();
    let _ = r.u();
    let _ = r.u();
    r.i().unwrap_or(i64::MIN)
}

/// Membership records name their segment by slot (live) or by name (across a rebuild).
trait SegmentKey {
    fn segment<'a>(&'a self, engine: &'a LiveEngine) -> &'a str;
}

impl SegmentKey for usize {
    fn segment<'a>(&'a self, engine: &'a LiveEngine) -> &'a str {
        engine.programs[*self]
            .as_ref()
            .map_or("", |p| p.name.as_str())
    }
}

impl SegmentKey for String {
    fn segment<'a>(&'a self, _: &'a LiveEngine) -> &'a str {
        self
    }
}

/// Who is a member of what, and the changes recorded since the last drain.
#[derive(Debug, Default)]
struct Ledger {
    /// Per slot: unit → entry time.
    members: Vec<Members>,
    changes: Vec<Change>,
    next_change: u64,
}

/// One segment's members now, sorted by unit (the API pages them in that order), with a
/// hash index in front: nearly every lookup, one per unit and segment on each event, is of
/// a non-member, which the index answers without the tree's string comparisons.
#[derive(Debug, Default)]
struct Members {
    sorted: BTreeMap<String, i64>,
    /// Unit hash → how many members have it (a collision only costs a tree lookup).
    hashes: FxHashMap<u64, u32>,
}

impl Members {
    fn hash(unit: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(unit)
    }

    fn get(&self, unit: &str) -> Option<i64> {
        if !self.hashes.contains_key(&Self::hash(unit)) {
            return None;
        }
        self.sorted.get(unit).copied()
    }

    fn insert(&mut self, unit: String, t: i64) {
        let h = Self::hash(&unit);
        if self.sorted.insert(unit, t).is_none() {
            *self.hashes.entry(h).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, unit: &str) {
        if self.sorted.remove(unit).is_some() {
            let h = Self::hash(unit);
            if let Some(n) = self.hashes.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.hashes.remove(&h);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.sorted.len()
    }

    fn sorted(&self) -> &BTreeMap<String, i64> {
        &self.sorted
    }

    fn into_sorted(self) -> BTreeMap<String, i64> {
        self.sorted
    }
}

impl Ledger {
    fn push(&mut self, segment: &str, unit: &str, kind: ChangeKind, time: i64) {
        self.changes.push(Change {
            seq: self.next_change,
            segment: segment.to_string(),
            unit: unit.to_string(),
            kind,
            time,
        });
        self.next_change += 1;
    }

    /// Records a unit's membership after its state settled at `t`, emitting the change.
    /// Returns whether it changed.
    fn sync(
        &mut self,
        slot: usize,
        segment: &str,
        unit: &str,
        since: Option<i64>,
        t: i64,
        emit: bool,
    ) -> bool {
        let old = self.members[slot].get(unit);
        if old == since {
            return false;
        }
        if old.is_some() {
            self.members[slot].remove(unit);
            if emit {
                self.push(segment, unit, ChangeKind::Exit, t);
            }
        }
        if let Some(s) = since {
            self.members[slot].insert(unit.to_string(), s);
            if emit {
                self.push(segment, unit, ChangeKind::Enter, s);
            }
        }
        true
    }

    /// [`Ledger::sync`] for a session or conversation, also keeping its user's list of
    /// sub-unit memberships.
    #[allow(clippy::too_many_arguments)]
    fn sync_sub(
        &mut self,
        sub_members: &mut Vec<(usize, String)>,
        slot: usize,
        segment: &str,
        unit: &str,
        since: Option<i64>,
        t: i64,
        emit: bool,
    ) {
        if !self.sync(slot, segment, unit, since, t, emit) {
            return;
        }
        let pos = sub_members
            .iter()
            .position(|(s, u)| *s == slot && u == unit);
        match (since, pos) {
            (Some(_), None) => sub_members.push((slot, unit.to_string())),
            (None, Some(i)) => {
                sub_members.swap_remove(i);
            }
            _ => {}
        }
    }
}

/// Reads every partition of a store snapshot: what [`LiveEngine::rebuild_all`] consumes.
pub fn snapshot(store: &Store) -> (sequin_store::StoreReader, u64) {
    (store.reader(), store.next_seq())
}
