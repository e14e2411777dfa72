//! The incremental matcher: one [`UnitState`] per unit, fed events in order and woken by
//! timers. Batch evaluation and the live server drive the same methods:
//!
//! 1. [`Program::begin_group`] before the events of a new timestamp `t` (fires timers < t),
//! 2. [`Program::on_event`] for each event at `t`, in arrival order,
//! 3. [`Program::end_group`] after them (timers at exactly `t` fire after events at `t`),
//! 4. [`Program::run_timers`] to move "now" forward without events.
//!
//! Membership is re-evaluated at each of those points; `member_since` is the start of the
//! current run of truth (the unit's entry time).
//!
//! Sequences keep partial matches per automaton state, pruned by dominance: of two partial
//! matches in the same state with the same bound property values, one whose every kept
//! time is at least as good (later start, later reference for `within`, earlier for `after`)
//! makes the other useless. For a plain funnel that leaves one partial match per state.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use sequin_core::Value;
use sequin_core::time::Micros;
use sequin_lang::ast::{AggFn, TimeFn, UnitKind};

use crate::compile::*;
use crate::val::{Val, compare, compare_number, hour, weekday};

/// Property lookup for one event, by the program's property slot.
pub trait Props {
    /// The value of property slot `id`, if the event has it.
    fn prop(&self, id: usize) -> Option<Val<'_>>;
}

/// An event with no properties (synthetic end events).
pub struct NoProps;

impl Props for NoProps {
    fn prop(&self, _: usize) -> Option<Val<'_>> {
        None
    }
}

/// One event as the matcher sees it.
pub struct Ev<'a> {
    /// Event time (µs).
    pub time: i64,
    /// Position among the unit's events (0-based).
    pub index: u64,
    /// Name bits from [`Program::name_bits`].
    pub bits: u64,
    /// Properties.
    pub props: &'a dyn Props,
}

#[derive(Debug, Clone, PartialEq)]
struct Partial {
    slots: [i64; 8],
    binds: Vec<Option<Value>>,
}

#[derive(Debug, Clone, Default)]
struct SeqState {
    /// `partials[k]`: partial matches that have matched k steps (k >= 1).
    partials: Vec<Vec<Partial>>,
    /// Best start among complete matches (i64::MAX when starts are not tracked).
    complete: Option<i64>,
    /// Matched all steps; waiting for trailing absences to be decided.
    pending: Vec<Partial>,
    /// Decided, but an untimed trailing absence can still break them (users).
    alive: Vec<Partial>,
    /// Reused buffer for the partial matches one event creates.
    scratch: Vec<(usize, Partial)>,
    /// Plain funnels: `best[k]` is the latest start of a partial match of k steps
    /// (i64::MIN: none).
    best: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    B(bool),
    I(i64),
    F(u64),
    S(String),
}

fn key_of(v: Val<'_>) -> Key {
    match v {
        Val::Bool(b) => Key::B(b),
        Val::Int(i) => Key::I(i),
        Val::Float(f) if f.fract() == 0.0 && f.abs() < 9e18 => Key::I(f as i64),
        Val::Float(f) => Key::F(f.to_bits()),
        Val::Str(s) => Key::S(s.to_string()),
    }
}

#[derive(Debug, Clone)]
enum LeafState {
    Seq(SeqState),
    /// Windowed: the latest `cap` times; else a saturating count in `n`.
    Count {
        times: VecDeque<i64>,
        n: usize,
    },
    Distinct(FxHashMap<Key, i64>),
    Agg {
        items: VecDeque<(i64, f64)>,
        sum: f64,
        count: u64,
        min: f64,
        max: f64,
    },
    First {
        times: VecDeque<i64>,
        first: Option<i64>,
    },
    Stopped {
        last: Option<i64>,
    },
    Restarted {
        last: Option<i64>,
        pair: Option<i64>,
    },
    /// (bucket, latest time in it), ascending.
    Regularly(VecDeque<(i64, i64)>),
    Attr(Option<Value>),
}

/// Everything the matcher keeps for one unit and one program.
#[derive(Debug, Clone)]
pub struct UnitState {
    leaves: Vec<LeafState>,
    /// Start of the current run of membership.
    pub member_since: Option<i64>,
    /// The last time membership was evaluated.
    pub now: i64,
    events: u64,
    last_time: Option<i64>,
    close_gap: Option<Micros>,
    closed: bool,
}

impl UnitState {
    /// Number of events fed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Has the unit (a session or conversation) closed for inactivity?
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Program {
    /// Fresh state for a unit. Sessions and conversations close after `close_gap` of
    /// inactivity (their end event is then fed).
    pub fn new_state(&self, close_gap: Micros) -> UnitState {
        let leaves = self
            .leaves
            .iter()
            .map(|l| match &l.kind {
                LeafKind::Seq(s) => LeafState::Seq(SeqState {
                    partials: vec![Vec::new(); s.steps.len()],
                    best: vec![i64::MIN; s.steps.len()],
                    ..Default::default()
                }),
                LeafKind::Count { .. } => LeafState::Count {
                    times: VecDeque::new(),
                    n: 0,
                },
                LeafKind::Distinct { .. } => LeafState::Distinct(FxHashMap::default()),
                LeafKind::Agg { .. } => LeafState::Agg {
                    items: VecDeque::new(),
                    sum: 0.0,
                    count: 0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                },
                LeafKind::First { .. } => LeafState::First {
                    times: VecDeque::new(),
                    first: None,
                },
                LeafKind::Stopped { .. } => LeafState::Stopped { last: None },
                LeafKind::Restarted { .. } => LeafState::Restarted {
                    last: None,
                    pair: None,
                },
                LeafKind::Regularly { .. } => LeafState::Regularly(VecDeque::new()),
                LeafKind::Attr { .. } => LeafState::Attr(None),
            })
            .collect();
        UnitState {
            leaves,
            member_since: None,
            now: i64::MIN,
            events: 0,
            last_time: None,
            close_gap: match self.unit {
                UnitKind::Users => None,
                _ => Some(close_gap),
            },
            closed: false,
        }
    }

    /// Call before the events of timestamp `t`: fires every timer before `t`.
    pub fn begin_group(&self, st: &mut UnitState, t: i64) {
        if self.has_timers {
            self.run_timers(st, t - 1);
        }
    }

    /// Is a unit that no event has touched a member? (`not did x` is; `did x` is not.)
    pub fn empty_is_member(&self) -> bool {
        self.empty_member
    }

    pub(crate) fn compute_empty_member(&self) -> bool {
        let st = self.new_state(0);
        self.node_truth(&self.root, &st, 0)
    }

    /// Empties a state for reuse by another unit (keeps its allocations).
    pub fn reset_state(&self, st: &mut UnitState) {
        for s in &mut st.leaves {
            match s {
                LeafState::Seq(q) => {
                    q.partials.iter_mut().for_each(Vec::clear);
                    q.best.iter_mut().for_each(|b| *b = i64::MIN);
                    q.complete = None;
                    q.pending.clear();
                    q.alive.clear();
                }
                LeafState::Count { times, n } => {
                    times.clear();
                    *n = 0;
                }
                LeafState::Distinct(m) => m.clear(),
                LeafState::Agg {
                    items,
                    sum,
                    count,
                    min,
                    max,
                } => {
                    items.clear();
                    *sum = 0.0;
                    *count = 0;
                    *min = f64::INFINITY;
                    *max = f64::NEG_INFINITY;
                }
                LeafState::First { times, first } => {
                    times.clear();
                    *first = None;
                }
                LeafState::Stopped { last } => *last = None,
                LeafState::Restarted { last, pair } => {
                    *last = None;
                    *pair = None;
                }
                LeafState::Regularly(b) => b.clear(),
                LeafState::Attr(v) => *v = None,
            }
        }
        st.member_since = None;
        st.now = i64::MIN;
        st.events = 0;
        st.last_time = None;
        st.closed = false;
    }

    /// The value of a measure: a program whose first criterion is an aggregate
    /// (`sum|avg|min|max(P.prop)`) or a count (compiled with a threshold above any real
    /// count, so it does not saturate). None when there is no value.
    pub fn measure(&self, st: &UnitState) -> Option<f64> {
        let leaf = self.leaves.first()?;
        match (&leaf.kind, st.leaves.first()?) {
            (LeafKind::Agg { func, .. }, agg) => aggregate(*func, leaf.window.is_some(), agg),
            (LeafKind::Count { .. }, LeafState::Count { times, n }) => {
                Some(if leaf.window.is_some() {
                    times.len()
                } else {
                    *n
                } as f64)
            }
            _ => None,
        }
    }

    /// The latest value of the attribute a program's first criterion reads (`device.type`),
    /// for a program whose first criterion is an attribute.
    pub fn attribute<'s>(&self, st: &'s UnitState) -> Option<&'s Value> {
        match st.leaves.first()? {
            LeafState::Attr(v) => v.as_ref(),
            _ => None,
        }
    }

    /// Feeds one event (in time, then arrival, order).
    pub fn on_event(&self, st: &mut UnitState, ev: &Ev<'_>) {
        let users = self.unit == UnitKind::Users;
        for (leaf, state) in self.leaves.iter().zip(st.leaves.iter_mut()) {
            if leaf.mask & ev.bits == 0 && !matches!(leaf.kind, LeafKind::Attr { .. }) {
                continue;
            }
            leaf_event(leaf, state, ev, users);
        }
        st.events += 1;
        st.last_time = Some(ev.time);
    }

    /// Call after the events of timestamp `t`.
    pub fn end_group(&self, st: &mut UnitState, t: i64) {
        self.settle(st, t);
    }

    /// Moves "now" to `until`, firing timers (absence deadlines, window expiry, unit close)
    /// in time order and re-evaluating membership at each.
    pub fn run_timers(&self, st: &mut UnitState, until: i64) {
        if !self.has_timers {
            return;
        }
        while let Some(t) = self.next_timer(st) {
            if t > until {
                break;
            }
            self.settle(st, t);
        }
    }

    /// The next time at which membership may change without a new event.
    pub fn next_timer(&self, st: &UnitState) -> Option<i64> {
        let now = st.now;
        let mut best: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > now && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        if let (Some(gap), Some(last), false) = (st.close_gap, st.last_time, st.closed) {
            consider(last.saturating_add(gap));
        }
        for (leaf, state) in self.leaves.iter().zip(&st.leaves) {
            leaf_timers(leaf, state, &mut consider);
        }
        best
    }

    /// Evaluates membership at `now` (after closing the unit if its gap has passed).
    fn settle(&self, st: &mut UnitState, now: i64) {
        if let (Some(gap), Some(last), false) = (st.close_gap, st.last_time, st.closed)
            && now >= last.saturating_add(gap)
        {
            let end = Ev {
                time: last,
                index: st.events,
                bits: self.end_bits(),
                props: &NoProps,
            };
            let users = self.unit == UnitKind::Users;
            for (leaf, state) in self.leaves.iter().zip(st.leaves.iter_mut()) {
                if leaf.mask & end.bits != 0 {
                    leaf_event(leaf, state, &end, users);
                }
            }
            st.closed = true;
        }
        for (leaf, state) in self.leaves.iter().zip(st.leaves.iter_mut()) {
            leaf_advance(leaf, state, now, st.closed, self.unit == UnitKind::Users);
        }
        let truth = self.node_truth(&self.root, st, now);
        st.now = now;
        if truth {
            if st.member_since.is_none() {
                st.member_since = Some(now);
            }
        } else {
            st.member_since = None;
        }
    }

    fn end_bits(&self) -> u64 {
        match self.unit {
            UnitKind::Users => 0,
            UnitKind::Sessions => self.name_bits("session_end", true),
            UnitKind::Conversations => self.name_bits("conversation_end", true),
        }
    }

    fn node_truth(&self, n: &Node, st: &UnitState, now: i64) -> bool {
        match n {
            Node::And(ps) => ps.iter().all(|p| self.node_truth(p, st, now)),
            Node::Or(ps) => ps.iter().any(|p| self.node_truth(p, st, now)),
            Node::Not(p) => !self.node_truth(p, st, now),
            Node::Leaf(i) => leaf_truth(&self.leaves[*i], &st.leaves[*i], now),
        }
    }
}

fn in_window(t: i64, now: i64, window: Option<Micros>) -> bool {
    window.is_none_or(|w| t > now.saturating_sub(w))
}

pub(crate) fn operand<'a>(
    o: &'a COperand,
    ev: &'a Ev<'a>,
    binds: &'a [Option<Value>],
) -> Option<Val<'a>> {
    match o {
        COperand::Prop(id) => ev.props.prop(*id),
        COperand::Bind(i) => binds[*i].as_ref().map(Val::of),
        COperand::Time(f) => Some(time_fn(*f, ev.time)),
        COperand::BindTime(f, i) => match binds[*i] {
            Some(Value::Int(t)) => Some(time_fn(*f, t)),
            _ => None,
        },
        COperand::Lit(v) => Some(Val::of(v)),
    }
}

fn time_fn(f: TimeFn, t: i64) -> Val<'static> {
    match f {
        TimeFn::Weekday => Val::Str(weekday(t)),
        TimeFn::Hour => Val::Int(hour(t)),
    }
}

pub(crate) fn eval_pred(p: &CPred, ev: &Ev<'_>, binds: &[Option<Value>]) -> bool {
    match p {
        CPred::And(ps) => ps.iter().all(|x| eval_pred(x, ev, binds)),
        CPred::Or(ps) => ps.iter().any(|x| eval_pred(x, ev, binds)),
        CPred::Not(x) => !eval_pred(x, ev, binds),
        CPred::Cmp(a, op, b) => match (operand(a, ev, binds), operand(b, ev, binds)) {
            (Some(x), Some(y)) => compare(x, *op, y),
            _ => false,
        },
        CPred::Truthy(a) => operand(a, ev, binds) == Some(Val::Bool(true)),
    }
}

fn matches(p: &CPattern, ev: &Ev<'_>, binds: &[Option<Value>]) -> bool {
    ev.bits & p.bit != 0 && p.pred.as_ref().is_none_or(|pr| eval_pred(pr, ev, binds))
}

fn any_match(ps: &[CPattern], ev: &Ev<'_>) -> bool {
    ps.iter().any(|p| matches(p, ev, &[]))
}

fn leaf_event(leaf: &Leaf, state: &mut LeafState, ev: &Ev<'_>, users: bool) {
    let t = ev.time;
    match (&leaf.kind, state) {
        (LeafKind::Seq(seq), LeafState::Seq(s)) => seq_event(seq, leaf.window, s, ev, users),
        (LeafKind::Count { pats, cap, .. }, LeafState::Count { times, n }) => {
            if any_match(pats, ev) {
                if leaf.window.is_some() {
                    times.push_back(t);
                    if times.len() > *cap {
                        times.pop_front();
                    }
                } else {
                    *n = (*n + 1).min(*cap);
                }
            }
        }
        (LeafKind::Distinct { prop, pats, .. }, LeafState::Distinct(map)) => {
            if any_match(pats, ev)
                && let Some(v) = ev.props.prop(*prop)
            {
                map.insert(key_of(v), t);
            }
        }
        (
            LeafKind::Agg { prop, pats, .. },
            LeafState::Agg {
                items,
                sum,
                count,
                min,
                max,
            },
        ) => {
            if any_match(pats, ev)
                && let Some(x) = ev.props.prop(*prop).and_then(Val::number)
            {
                if leaf.window.is_some() {
                    items.push_back((t, x));
                } else {
                    *sum += x;
                    *count += 1;
                    *min = min.min(x);
                    *max = max.max(x);
                }
            }
        }
        (LeafKind::First { pats, .. }, LeafState::First { times, first }) => {
            if any_match(pats, ev) {
                if leaf.window.is_some() {
                    times.push_back(t);
                } else if first.is_none() {
                    *first = Some(t);
                }
            }
        }
        (LeafKind::Stopped { pats, .. }, LeafState::Stopped { last }) => {
            if any_match(pats, ev) {
                *last = Some(t);
            }
        }
        (LeafKind::Restarted { pats, gap }, LeafState::Restarted { last, pair }) => {
            if any_match(pats, ev) {
                if let Some(l) = *last
                    && t - l >= *gap
                {
                    *pair = Some(l);
                }
                *last = Some(t);
            }
        }
        (
            LeafKind::Regularly {
                pats,
                bucket,
                offset,
                ..
            },
            LeafState::Regularly(buckets),
        ) => {
            if any_match(pats, ev) {
                let b = (t - offset).div_euclid(*bucket);
                match buckets.back_mut() {
                    Some(last) if last.0 == b => last.1 = t,
                    _ => buckets.push_back((b, t)),
                }
            }
        }
        (LeafKind::Attr { prop, .. }, LeafState::Attr(v)) => {
            if let Some(x) = ev.props.prop(*prop) {
                *v = Some(x.to_owned_value());
            }
        }
        _ => unreachable!("leaf state matches its kind"),
    }
}

/// Drops what fell out of the window and decides trailing absences whose time has come.
fn leaf_advance(leaf: &Leaf, state: &mut LeafState, now: i64, closed: bool, users: bool) {
    let keep = |t: i64| in_window(t, now, leaf.window);
    match (&leaf.kind, state) {
        (LeafKind::Seq(seq), LeafState::Seq(s)) => {
            seq_advance(seq, leaf.window, s, now, closed, users)
        }
        (_, LeafState::Count { times, .. }) => {
            while times.front().is_some_and(|&t| !keep(t)) {
                times.pop_front();
            }
        }
        (_, LeafState::Distinct(map)) if leaf.window.is_some() => map.retain(|_, t| keep(*t)),
        (_, LeafState::Agg { items, .. }) => {
            while items.front().is_some_and(|&(t, _)| !keep(t)) {
                items.pop_front();
            }
        }
        (_, LeafState::First { times, .. }) => {
            while times.front().is_some_and(|&t| !keep(t)) {
                times.pop_front();
            }
        }
        (
            LeafKind::Regularly {
                n, bucket, offset, ..
            },
            LeafState::Regularly(buckets),
        ) => {
            let current = (now - offset).div_euclid(*bucket);
            while buckets
                .front()
                .is_some_and(|&(b, t)| b <= current - *n as i64 || !keep(t))
            {
                buckets.pop_front();
            }
        }
        _ => {}
    }
}

fn leaf_truth(leaf: &Leaf, state: &LeafState, now: i64) -> bool {
    let w = leaf.window;
    match (&leaf.kind, state) {
        (LeafKind::Seq(_), LeafState::Seq(s)) => {
            s.complete
                .is_some_and(|t0| t0 == i64::MAX || in_window(t0, now, w))
                || !s.alive.is_empty()
        }
        (LeafKind::Count { op, threshold, .. }, LeafState::Count { times, n }) => {
            let c = if w.is_some() { times.len() } else { *n };
            compare_number(c as f64, *op, *threshold)
        }
        (LeafKind::Distinct { op, threshold, .. }, LeafState::Distinct(map)) => {
            compare_number(map.len() as f64, *op, *threshold)
        }
        (
            LeafKind::Agg {
                func,
                op,
                threshold,
                ..
            },
            agg @ LeafState::Agg { .. },
        ) => aggregate(*func, w.is_some(), agg).is_some_and(|v| compare_number(v, *op, *threshold)),
        (LeafKind::First { within, .. }, LeafState::First { times, first }) => {
            let f = if w.is_some() {
                times.front().copied()
            } else {
                *first
            };
            f.is_some_and(|f| f > now - within)
        }
        (LeafKind::Stopped { period, .. }, LeafState::Stopped { last }) => {
            last.is_some_and(|l| in_window(l, now, w) && l <= now - period)
        }
        (LeafKind::Restarted { .. }, LeafState::Restarted { pair, .. }) => {
            pair.is_some_and(|a| in_window(a, now, w))
        }
        (LeafKind::Regularly { k, .. }, LeafState::Regularly(buckets)) => {
            buckets.len() >= *k as usize
        }
        (LeafKind::Attr { cmp, .. }, LeafState::Attr(v)) => match (v, cmp) {
            (Some(v), Some((op, lit))) => compare(Val::of(v), *op, Val::of(lit)),
            (Some(v), None) => *v == Value::Bool(true),
            (None, _) => false,
        },
        _ => unreachable!("leaf state matches its kind"),
    }
}

/// An aggregate's current value (None: no value, as `avg` of nothing).
fn aggregate(func: AggFn, windowed: bool, state: &LeafState) -> Option<f64> {
    let LeafState::Agg {
        items,
        sum,
        count,
        min,
        max,
    } = state
    else {
        return None;
    };
    let (s, c, lo, hi) = if windowed {
        items.iter().fold(
            (0.0, 0u64, f64::INFINITY, f64::NEG_INFINITY),
            |(s, c, lo, hi), &(_, x)| (s + x, c + 1, lo.min(x), hi.max(x)),
        )
    } else {
        (*sum, *count, *min, *max)
    };
    match func {
        AggFn::Sum => Some(s),
        AggFn::Avg => (c > 0).then(|| s / c as f64),
        AggFn::Min => (c > 0).then_some(lo),
        AggFn::Max => (c > 0).then_some(hi),
    }
}

fn leaf_timers(leaf: &Leaf, state: &LeafState, consider: &mut impl FnMut(i64)) {
    let w = leaf.window;
    let expiry = |t: i64, consider: &mut dyn FnMut(i64)| {
        if let Some(w) = w {
            consider(t.saturating_add(w));
        }
    };
    match (&leaf.kind, state) {
        (LeafKind::Seq(seq), LeafState::Seq(s)) => {
            if let (Some(t0), Some(w)) = (s.complete, w)
                && t0 != i64::MAX
            {
                consider(t0.saturating_add(w));
            }
            let t0_slot = seq.t0_slot[seq.steps.len()];
            if let (Some(slot), Some(w)) = (t0_slot, w) {
                for p in &s.alive {
                    consider(p.slots[slot].saturating_add(w));
                }
            }
            for p in &s.pending {
                if let Some(d) = deadline(seq, p) {
                    consider(d);
                }
            }
        }
        (_, LeafState::Count { times, .. }) => {
            if let Some(&t) = times.front() {
                expiry(t, consider);
            }
        }
        (_, LeafState::Distinct(map)) => {
            if let Some(&t) = map.values().min() {
                expiry(t, consider);
            }
        }
        (_, LeafState::Agg { items, .. }) => {
            if let Some(&(t, _)) = items.front() {
                expiry(t, consider);
            }
        }
        (LeafKind::First { within, .. }, LeafState::First { times, first }) => {
            let f = if w.is_some() {
                times.front().copied()
            } else {
                *first
            };
            if let Some(f) = f {
                consider(f.saturating_add(*within));
                expiry(f, consider);
            }
        }
        (LeafKind::Stopped { period, .. }, LeafState::Stopped { last: Some(l) }) => {
            consider(l.saturating_add(*period));
            expiry(*l, consider);
        }
        (_, LeafState::Restarted { pair: Some(a), .. }) => expiry(*a, consider),
        (
            LeafKind::Regularly {
                n, bucket, offset, ..
            },
            LeafState::Regularly(buckets),
        ) => {
            if let Some(&(b, t)) = buckets.front() {
                // The oldest bucket leaves the last N at the start of bucket b + n.
                consider((b + *n as i64) * bucket + offset);
                expiry(t, consider);
            }
        }
        _ => {}
    }
}

fn deadline(seq: &SeqC, p: &Partial) -> Option<i64> {
    seq.trailing
        .iter()
        .filter_map(|t| t.within.map(|(d, slot)| p.slots[slot].saturating_add(d)))
        .max()
}

fn dominates(a: &Partial, b: &Partial, layout: &Layout) -> bool {
    a.binds == b.binds
        && layout
            .slots
            .iter()
            .enumerate()
            .all(|(i, &(_, dir))| match dir {
                Dir::Max => a.slots[i] >= b.slots[i],
                Dir::Min => a.slots[i] <= b.slots[i],
            })
}

fn pareto_insert(set: &mut Vec<Partial>, p: Partial, layout: &Layout) {
    if set.iter().any(|q| dominates(q, &p, layout)) {
        return;
    }
    set.retain(|q| !dominates(&p, q, layout));
    set.push(p);
}

fn gaps_ok(step: &StepC, p: &Partial, layout: &Layout, ev: &Ev<'_>) -> bool {
    step.gaps.iter().all(|g| match *g {
        GapC::Within(d, r) => ev.time - p.slots[layout.slot(Source::Time(r), Dir::Max)] <= d,
        GapC::After(d, r) => ev.time - p.slots[layout.slot(Source::Time(r), Dir::Min)] >= d,
        GapC::Events(n, r) => {
            ev.index as i64 - p.slots[layout.slot(Source::Index(r), Dir::Max)] <= n as i64
        }
    })
}

fn extend(seq: &SeqC, k: usize, p: Option<&Partial>, ev: &Ev<'_>) -> Partial {
    let from = &seq.layouts[k];
    let to = &seq.layouts[k + 1];
    let mut slots = [0i64; 8];
    for (i, &(src, dir)) in to.slots.iter().enumerate() {
        slots[i] = match src {
            Source::Time(r) if r == k => ev.time,
            Source::Index(r) if r == k => ev.index as i64,
            _ => p.expect("earlier steps exist").slots[from.slot(src, dir)],
        };
    }
    let binds = to
        .binds
        .iter()
        .map(|&(r, what)| {
            if r == k {
                match what {
                    BindWhat::Prop(id) => ev.props.prop(id).map(Val::to_owned_value),
                    BindWhat::Ts => Some(Value::Int(ev.time)),
                }
            } else {
                let i = from
                    .binds
                    .iter()
                    .position(|&b| b == (r, what))
                    .expect("bind kept");
                p.expect("earlier steps exist").binds[i].clone()
            }
        })
        .collect();
    Partial { slots, binds }
}

fn seq_event(seq: &SeqC, window: Option<Micros>, s: &mut SeqState, ev: &Ev<'_>, users: bool) {
    if seq.simple {
        return funnel_event(seq, window, s, ev);
    }
    let m = seq.steps.len();
    let now = ev.time;
    let mut incoming = std::mem::take(&mut s.scratch);
    incoming.clear();
    for k in (0..m).rev() {
        let step = &seq.steps[k];
        let layout = &seq.layouts[k];
        if let (true, Some(w), Some(slot)) = (k > 0, window, seq.t0_slot[k]) {
            s.partials[k].retain(|p| p.slots[slot] > now - w);
        }
        if ev.bits & step.pat.bit != 0 {
            if k == 0 {
                if matches(&step.pat, ev, &[]) {
                    incoming.push((1, extend(seq, 0, None, ev)));
                }
            } else {
                for p in &s.partials[k] {
                    if matches(&step.pat, ev, &p.binds)
                        && gaps_ok(step, p, layout, ev)
                        && seq.span.is_none_or(|d| {
                            ev.time - p.slots[seq.t0_slot[k].expect("span keeps t0")] <= d
                        })
                    {
                        incoming.push((k + 1, extend(seq, k, Some(p), ev)));
                    }
                }
            }
        }
        if k > 0 && !seq.neg_before[k].is_empty() {
            let negs = &seq.neg_before[k];
            s.partials[k].retain(|p| !negs.iter().any(|n| matches(n, ev, &p.binds)));
        }
    }
    if !seq.trailing.is_empty() {
        s.pending.retain(|p| {
            !seq.trailing.iter().any(|t| {
                matches(&t.pat, ev, &p.binds)
                    && t.within
                        .is_none_or(|(d, slot)| ev.time <= p.slots[slot].saturating_add(d))
            })
        });
        s.alive.retain(|p| {
            !seq.trailing
                .iter()
                .any(|t| t.within.is_none() && matches(&t.pat, ev, &p.binds))
        });
    }
    for (k, p) in incoming.drain(..) {
        if k == m {
            if seq.trailing.is_empty() {
                let t0 = seq.t0_slot[m].map_or(i64::MAX, |slot| p.slots[slot]);
                s.complete = Some(s.complete.map_or(t0, |c| c.max(t0)));
            } else {
                pareto_insert(&mut s.pending, p, &seq.layouts[m]);
            }
        } else {
            pareto_insert(&mut s.partials[k], p, &seq.layouts[k]);
        }
    }
    s.scratch = incoming;
    let _ = users;
}

/// [`seq_event`] for plain funnels: per state only the latest start matters.
fn funnel_event(seq: &SeqC, window: Option<Micros>, s: &mut SeqState, ev: &Ev<'_>) {
    let m = seq.steps.len();
    let tracks_start = seq.t0_slot[m].is_some();
    for k in (0..m).rev() {
        let step = &seq.steps[k];
        if ev.bits & step.pat.bit == 0 || !matches(&step.pat, ev, &[]) {
            continue;
        }
        let start = if k == 0 {
            ev.time
        } else {
            let b = s.best[k];
            if b == i64::MIN
                || window.is_some_and(|w| b <= ev.time - w)
                || seq.span.is_some_and(|d| ev.time - b > d)
            {
                continue;
            }
            b
        };
        let start = if tracks_start { start } else { i64::MAX };
        if k + 1 == m {
            s.complete = Some(s.complete.map_or(start, |c| c.max(start)));
        } else {
            s.best[k + 1] = s.best[k + 1].max(start);
        }
    }
}

fn seq_advance(
    seq: &SeqC,
    window: Option<Micros>,
    s: &mut SeqState,
    now: i64,
    closed: bool,
    users: bool,
) {
    let m = seq.steps.len();
    if !s.pending.is_empty() {
        let untimed = seq.trailing.iter().any(|t| t.within.is_none());
        let mut promoted = Vec::new();
        s.pending.retain(|p| {
            let due = deadline(seq, p).is_none_or(|d| d <= now) && (!untimed || users || closed);
            if due {
                promoted.push(p.clone());
            }
            !due
        });
        for p in promoted {
            if untimed && users {
                pareto_insert(&mut s.alive, p, &seq.layouts[m]);
            } else {
                let t0 = seq.t0_slot[m].map_or(i64::MAX, |slot| p.slots[slot]);
                s.complete = Some(s.complete.map_or(t0, |c| c.max(t0)));
            }
        }
    }
    if let (Some(w), Some(slot)) = (window, seq.t0_slot[m]) {
        s.alive.retain(|p| p.slots[slot] > now - w);
    }
}

// ---- checkpoints ------------------------------------------------------------------------

use crate::codec::{Dec, DecodeError, Enc};

fn enc_partial(w: &mut Enc, p: &Partial) {
    for s in p.slots {
        w.i(s);
    }
    w.u(p.binds.len() as u64);
    for b in &p.binds {
        match b {
            None => w.b(false),
            Some(v) => {
                w.b(true);
                w.value(v);
            }
        }
    }
}

fn dec_partial(r: &mut Dec<'_>) -> Result<Partial, DecodeError> {
    let mut slots = [0i64; 8];
    for s in &mut slots {
        *s = r.i()?;
    }
    let n = r.count()?;
    let mut binds = Vec::with_capacity(n);
    for _ in 0..n {
        binds.push(if r.b()? { Some(r.value()?) } else { None });
    }
    Ok(Partial { slots, binds })
}

fn enc_partials(w: &mut Enc, list: &[Partial]) {
    w.u(list.len() as u64);
    for p in list {
        enc_partial(w, p);
    }
}

fn dec_partials(r: &mut Dec<'_>) -> Result<Vec<Partial>, DecodeError> {
    let n = r.count()?;
    (0..n).map(|_| dec_partial(r)).collect()
}

fn enc_times(w: &mut Enc, times: &VecDeque<i64>) {
    w.u(times.len() as u64);
    for &t in times {
        w.i(t);
    }
}

fn dec_times(r: &mut Dec<'_>) -> Result<VecDeque<i64>, DecodeError> {
    let n = r.count()?;
    (0..n).map(|_| r.i()).collect()
}

fn enc_key(w: &mut Enc, k: &Key) {
    match k {
        Key::B(b) => {
            w.u(0);
            w.b(*b);
        }
        Key::I(i) => {
            w.u(1);
            w.i(*i);
        }
        Key::F(f) => {
            w.u(2);
            w.u(*f);
        }
        Key::S(s) => {
            w.u(3);
            w.s(s);
        }
    }
}

fn dec_key(r: &mut Dec<'_>) -> Result<Key, DecodeError> {
    Ok(match r.u()? {
        0 => Key::B(r.b()?),
        1 => Key::I(r.i()?),
        2 => Key::F(r.u()?),
        3 => Key::S(r.s()?),
        _ => return Err(DecodeError("unknown key tag")),
    })
}

impl UnitState {
    /// Appends this state to a checkpoint.
    pub fn encode(&self, w: &mut Enc) {
        w.oi(self.member_since);
        w.i(self.now);
        w.u(self.events);
        w.oi(self.last_time);
        w.oi(self.close_gap);
        w.b(self.closed);
        w.u(self.leaves.len() as u64);
        for leaf in &self.leaves {
            match leaf {
                LeafState::Seq(q) => {
                    w.u(0);
                    w.u(q.partials.len() as u64);
                    for list in &q.partials {
                        enc_partials(w, list);
                    }
                    w.oi(q.complete);
                    enc_partials(w, &q.pending);
                    enc_partials(w, &q.alive);
                    w.u(q.best.len() as u64);
                    for &b in &q.best {
                        w.i(b);
                    }
                }
                LeafState::Count { times, n } => {
                    w.u(1);
                    enc_times(w, times);
                    w.u(*n as u64);
                }
                LeafState::Distinct(m) => {
                    w.u(2);
                    w.u(m.len() as u64);
                    for (k, &t) in m {
                        enc_key(w, k);
                        w.i(t);
                    }
                }
                LeafState::Agg {
                    items,
                    sum,
                    count,
                    min,
                    max,
                } => {
                    w.u(3);
                    w.u(items.len() as u64);
                    for &(t, v) in items {
                        w.i(t);
                        w.f(v);
                    }
                    w.f(*sum);
                    w.u(*count);
                    w.f(*min);
                    w.f(*max);
                }
                LeafState::First { times, first } => {
                    w.u(4);
                    enc_times(w, times);
                    w.oi(*first);
                }
                LeafState::Stopped { last } => {
                    w.u(5);
                    w.oi(*last);
                }
                LeafState::Restarted { last, pair } => {
                    w.u(6);
                    w.oi(*last);
                    w.oi(*pair);
                }
                LeafState::Regularly(b) => {
                    w.u(7);
                    w.u(b.len() as u64);
                    for &(k, t) in b {
                        w.i(k);
                        w.i(t);
                    }
                }
                LeafState::Attr(v) => {
                    w.u(8);
                    match v {
                        None => w.b(false),
                        Some(v) => {
                            w.b(true);
                            w.value(v);
                        }
                    }
                }
            }
        }
    }
}

impl Program {
    /// Reads a state written by [`UnitState::encode`] for this program.
    pub fn decode_state(&self, r: &mut Dec<'_>) -> Result<UnitState, DecodeError> {
        let member_since = r.oi()?;
        let now = r.i()?;
        let events = r.u()?;
        let last_time = r.oi()?;
        let close_gap = r.oi()?;
        let closed = r.b()?;
        let n = r.count()?;
        if n != self.leaves.len() {
            return Err(DecodeError("state does not fit the definition"));
        }
        let mut leaves = Vec::with_capacity(n);
        for _ in 0..n {
            leaves.push(match r.u()? {
                0 => {
                    let k = r.count()?;
                    let mut partials = Vec::with_capacity(k);
                    for _ in 0..k {
                        partials.push(dec_partials(r)?);
                    }
                    let complete = r.oi()?;
                    let pending = dec_partials(r)?;
                    let alive = dec_partials(r)?;
                    let nb = r.count()?;
                    let best = (0..nb).map(|_| r.i()).collect::<Result<_, _>>()?;
                    LeafState::Seq(SeqState {
                        partials,
                        complete,
                        pending,
                        alive,
                        scratch: Vec::new(),
                        best,
                    })
                }
                1 => LeafState::Count {
                    times: dec_times(r)?,
                    n: r.u()? as usize,
                },
                2 => {
                    let k = r.count()?;
                    let mut m = FxHashMap::default();
                    for _ in 0..k {
                        let key = dec_key(r)?;
                        m.insert(key, r.i()?);
                    }
                    LeafState::Distinct(m)
                }
                3 => {
                    let k = r.count()?;
                    let mut items = VecDeque::with_capacity(k);
                    for _ in 0..k {
                        items.push_back((r.i()?, r.f()?));
                    }
                    LeafState::Agg {
                        items,
                        sum: r.f()?,
                        count: r.u()?,
                        min: r.f()?,
                        max: r.f()?,
                    }
                }
                4 => LeafState::First {
                    times: dec_times(r)?,
                    first: r.oi()?,
                },
                5 => LeafState::Stopped { last: r.oi()? },
                6 => LeafState::Restarted {
                    last: r.oi()?,
                    pair: r.oi()?,
                },
                7 => {
                    let k = r.count()?;
                    let mut b = VecDeque::with_capacity(k);
                    for _ in 0..k {
                        b.push_back((r.i()?, r.i()?));
                    }
                    LeafState::Regularly(b)
                }
                8 => LeafState::Attr(if r.b()? { Some(r.value()?) } else { None }),
                _ => return Err(DecodeError("unknown leaf tag")),
            });
        }
        Ok(UnitState {
            leaves,
            member_since,
            now,
            events,
            last_time,
            close_gap,
            closed,
        })
    }
}
