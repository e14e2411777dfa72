//! Derived signals in the engine: the detectors of `sequin-signals` read stored rows (batch)
//! or accepted events (live), and their signals are fed to the matcher as events of the unit.
//!
//! Placement is the same in both paths, which is what makes live equal batch:
//! - a signal completed by an event comes right after that event, in the same timestamp
//!   group;
//! - a signal whose deadline passed (dead click, premature exit) is a group of its own at the
//!   deadline, before the first event later than the deadline, or when "now" passes it;
//! - a signal takes the event index of the raw event before it (`within N events` counts raw
//!   events), and wildcards never match it;
//! - for sessions and conversations a signal goes to the run of its source's session or
//!   conversation id that is open at its time (the run whose last event is at most the gap
//!   before it); with none open, it is dropped. It never opens or extends a run.

use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_core::{Event, MessageKind, Value};
use sequin_lang::ast::UnitKind;
use sequin_signals::{Field, Input, Plan, Signal};
use sequin_store::{PartitionData, PropColumn, StrColumn};

use crate::units::split;

use crate::compile::{PropRef, PropRole};
use crate::matcher::Props;
use crate::val::Val;

/// The columns the detectors read, resolved for one partition (detectors ask for several
/// fields per event, most of them absent: each lookup is one hash probe).
pub(crate) struct InputColumns<'a> {
    fields: FxHashMap<&'static str, Vec<&'a PropColumn>>,
    session: Option<&'a StrColumn>,
    conversation: Option<&'a StrColumn>,
    /// Per event name code: is it a view?
    view_names: Vec<bool>,
}

impl<'a> InputColumns<'a> {
    pub(crate) fn resolve(data: &'a PartitionData) -> InputColumns<'a> {
        InputColumns {
            fields: sequin_signals::input_fields()
                .into_iter()
                .map(|k| {
                    let cols: Vec<&PropColumn> = PropRole::Event
                        .columns(k)
                        .iter()
                        .filter_map(|c| data.props.get(c))
                        .collect();
                    (k, cols)
                })
                // Only the fields this partition has.
                .filter(|(_, cols)| !cols.is_empty())
                .collect(),
            session: data.ids.get("session_id"),
            conversation: data.ids.get("conversation_id"),
            view_names: data.names.iter().map(|n| is_view_name(n)).collect(),
        }
    }
}

/// The column keys the detectors read (add them to a projection for [`for_each_unit`]).
pub fn input_columns() -> Vec<String> {
    let mut out: Vec<String> = sequin_signals::input_fields()
        .into_iter()
        .flat_map(|k| PropRole::Event.columns(k))
        .collect();
    out.push("session_id".to_string());
    out.push("conversation_id".to_string());
    out
}

fn is_view_name(name: &str) -> bool {
    matches!(
        name,
        "page_view"
            | "screen_view"
            | "pageview"
            | "$pageview"
            | "$screen"
            | "$mp_web_page_view"
            | "[Amplitude] Page Viewed"
            | "[Amplitude] Screen Viewed"
    )
}

fn field_of(v: Val<'_>) -> Option<Field<'_>> {
    match v {
        Val::Int(i) => Some(Field::Num(i as f64)),
        Val::Float(x) => Some(Field::Num(x)),
        Val::Bool(b) => Some(Field::Bool(b)),
        Val::Str(s) => Some(Field::Str(s)),
    }
}

/// A stored row as detector input.
pub(crate) struct RowInput<'a> {
    pub(crate) data: &'a PartitionData,
    pub(crate) cols: &'a InputColumns<'a>,
    pub(crate) row: usize,
}

impl Input for RowInput<'_> {
    fn time(&self) -> i64 {
        self.data.time[self.row]
    }
    fn name(&self) -> &str {
        &self.data.names[self.data.name[self.row] as usize]
    }
    fn is_view(&self) -> bool {
        let kind = self
            .data
            .kind
            .get(self.row)
            .copied()
            .map(MessageKind::from_u8);
        matches!(kind, Some(MessageKind::Page | MessageKind::Screen))
            || self.cols.view_names[self.data.name[self.row] as usize]
    }
    fn field(&self, key: &str) -> Option<Field<'_>> {
        let cols = self.cols.fields.get(key)?;
        cols.iter()
            .find_map(|c| crate::batch::column_value(c, self.row))
            .and_then(field_of)
    }
    fn session_id(&self) -> Option<&str> {
        self.cols.session.and_then(|c| c.get(self.row))
    }
    fn conversation_id(&self) -> Option<&str> {
        self.cols.conversation.and_then(|c| c.get(self.row))
    }
}

/// Which keys an event may have, one bit per key's length and end bytes: most keys the
/// detectors and definitions ask for are absent from a given event, and the filter answers
/// those without scanning its properties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyFilter(u128);

impl KeyFilter {
    fn bit(key: &str) -> u128 {
        let b = key.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        let mix = (b.len() as u64) << 16
            | u64::from(first.unwrap_or(0)) << 8
            | u64::from(last.unwrap_or(0));
        1 << (mix.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57)
    }

    pub(crate) fn of(e: &Event) -> KeyFilter {
        let keys = [&e.properties, &e.context, &e.traits]
            .into_iter()
            .flatten()
            .fold(0, |bits, (k, _)| bits | KeyFilter::bit(k));
        KeyFilter(keys)
    }

    /// False only when the event has no such key.
    pub(crate) fn may_have(self, key: &str) -> bool {
        self.0 & KeyFilter::bit(key) != 0
    }
}

/// An accepted event as detector input.
pub(crate) struct EventInput<'a> {
    event: &'a Event,
    keys: KeyFilter,
}

impl<'a> EventInput<'a> {
    pub(crate) fn new(event: &'a Event) -> EventInput<'a> {
        EventInput {
            event,
            keys: KeyFilter::of(event),
        }
    }

    pub(crate) fn may_have(&self, key: &str) -> bool {
        self.keys.may_have(key)
    }
}

impl Input for EventInput<'_> {
    fn time(&self) -> i64 {
        self.event.time
    }
    fn name(&self) -> &str {
        &self.event.name
    }
    fn is_view(&self) -> bool {
        matches!(self.event.kind, MessageKind::Page | MessageKind::Screen)
            || is_view_name(&self.event.name)
    }
    fn field(&self, key: &str) -> Option<Field<'_>> {
        if !self.may_have(key) {
            return None;
        }
        let e = self.event;
        [&e.properties, &e.context, &e.traits]
            .into_iter()
            .find_map(|list| list.iter().find(|(k, _)| k == key))
            .and_then(|(_, v)| field_of(Val::of(v)))
    }
    fn session_id(&self) -> Option<&str> {
        self.event.session_id.as_deref()
    }
    fn conversation_id(&self) -> Option<&str> {
        self.event.conversation_id.as_deref()
    }
}

/// A signal's properties, looked up by the program's property slots.
pub(crate) struct SignalProps<'a> {
    pub(crate) signal: &'a Signal,
    pub(crate) refs: &'a [PropRef],
}

impl Props for SignalProps<'_> {
    fn prop(&self, id: usize) -> Option<Val<'_>> {
        signal_prop(self.signal, &self.refs[id])
    }
}

/// A signal's property by reference (its own properties only).
pub(crate) fn signal_prop<'a>(signal: &'a Signal, r: &PropRef) -> Option<Val<'a>> {
    signal.prop(&r.path).map(|v: &Value| Val::of(v))
}

/// A signal placed in a unit's event list.
pub(crate) struct Placed {
    /// Raw events before it.
    pub(crate) pos: usize,
    /// A deadline signal: a timestamp group of its own.
    pub(crate) own_group: bool,
    pub(crate) signal: Signal,
}

/// Runs the plan over one user's ordered events and settles at `as_of`.
pub(crate) fn detect(plan: &Plan, events: &[&dyn Input], as_of: i64) -> Vec<Placed> {
    let mut st = sequin_signals::DetectorState::default();
    let mut out = Vec::new();
    let mut placed = Vec::new();
    let mut i = 0;
    while i < events.len() {
        // One timestamp group at a time: signals it completes follow its last event.
        let t = events[i].time();
        let end = i + events[i..].iter().take_while(|e| e.time() == t).count();
        plan.before(&mut st, t, &mut out);
        placed.extend(out.drain(..).map(|signal| Placed {
            pos: i,
            own_group: true,
            signal,
        }));
        for ev in &events[i..end] {
            plan.on_event(&mut st, *ev, &mut out);
        }
        placed.extend(out.drain(..).map(|signal| Placed {
            pos: end,
            own_group: false,
            signal,
        }));
        i = end;
    }
    plan.settle(&mut st, as_of, &mut out);
    placed.extend(out.drain(..).map(|signal| Placed {
        pos: events.len(),
        own_group: true,
        signal,
    }));
    placed
}

/// A derived signal among one unit's rows, as [`for_each_unit`] gives it.
#[derive(Debug, Clone, Copy)]
pub struct UnitSignal<'a> {
    /// The unit's rows before it.
    pub pos: usize,
    /// A deadline signal: a timestamp group of its own.
    pub own_group: bool,
    /// The signal.
    pub signal: &'a Signal,
}

/// Calls `f(unit key, rows, signals)` for every unit of `data` (users, sessions or
/// conversations) with an event at or before `as_of`: its rows (ascending partition rows, in
/// event order) and, with a plan, the signals placed among them exactly as evaluation places
/// them (see the module docs). The one place where signals meet units, for batch
/// evaluation and for insights alike.
pub fn for_each_unit(
    data: &PartitionData,
    unit: UnitKind,
    gap: Micros,
    as_of: i64,
    plan: Option<&Plan>,
    mut f: impl FnMut(&str, &[usize], &[UnitSignal<'_>]),
) {
    let inputs = plan.map(|_| InputColumns::resolve(data));
    let id_col = match unit {
        UnitKind::Users => None,
        UnitKind::Sessions => data.ids.get("session_id"),
        UnitKind::Conversations => data.ids.get("conversation_id"),
    };
    let mut rows: Vec<usize> = Vec::new();
    for (user, range) in data.unit_rows() {
        // Events after "now" do not exist yet.
        let end = range.start + data.time[range.clone()].partition_point(|&t| t <= as_of);
        if end == range.start {
            continue;
        }
        let start = range.start;
        let times = &data.time[start..end];
        let placed = match (plan, &inputs) {
            (Some(plan), Some(cols)) => {
                let evs: Vec<RowInput<'_>> = (start..end)
                    .map(|row| RowInput { data, cols, row })
                    .collect();
                let refs: Vec<&dyn Input> = evs.iter().map(|e| e as &dyn Input).collect();
                detect(plan, &refs, as_of)
            }
            _ => Vec::new(),
        };
        if unit == UnitKind::Users {
            rows.clear();
            rows.extend(start..end);
            let sigs: Vec<UnitSignal<'_>> = placed
                .iter()
                .map(|p| UnitSignal {
                    pos: p.pos,
                    own_group: p.own_group,
                    signal: &p.signal,
                })
                .collect();
            f(user, &rows, &sigs);
            continue;
        }
        let id_at = |i: usize| id_col.and_then(|c| c.get(start + i));
        let subs = split(unit, user, times, id_at, gap);
        let mut sub_of = vec![usize::MAX; times.len()];
        for (s, sub) in subs.iter().enumerate() {
            for &i in &sub.rows {
                sub_of[i] = s;
            }
        }
        // A signal joins the run of its id whose last event before it is within the gap.
        let mut routed: Vec<Vec<UnitSignal<'_>>> = subs.iter().map(|_| Vec::new()).collect();
        for p in &placed {
            let id = match unit {
                UnitKind::Sessions => p.signal.session_id.as_deref(),
                _ => p.signal.conversation_id.as_deref(),
            };
            let Some(last) = (0..p.pos)
                .rev()
                .find(|&i| id_at(i) == id && sub_of[i] != usize::MAX)
            else {
                continue;
            };
            if p.signal.time - times[last] > gap {
                continue;
            }
            let s = sub_of[last];
            routed[s].push(UnitSignal {
                pos: subs[s].rows.partition_point(|&i| i < p.pos),
                own_group: p.own_group,
                signal: &p.signal,
            });
        }
        for (sub, sigs) in subs.iter().zip(&routed) {
            rows.clear();
            rows.extend(sub.rows.iter().map(|&i| start + i));
            f(&sub.key, &rows, sigs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The filter may say yes to an absent key, never no to a present one.
        #[test]
        fn the_key_filter_never_hides_a_present_key(
            keys in proptest::collection::vec("[a-c.$_]{0,6}", 0..40),
            probes in proptest::collection::vec("[a-c.$_]{0,6}", 0..40),
        ) {
            let mut e = Event::new("u", 0, "e");
            for (i, k) in keys.iter().enumerate() {
                let list = [&mut e.properties, &mut e.context, &mut e.traits];
                list.into_iter().nth(i % 3).expect("three lists").push((k.into(), Value::Int(1)));
            }
            let input = EventInput::new(&e);
            for k in keys.iter().chain(&probes) {
                let present = keys.contains(k);
                prop_assert!(!present || input.may_have(k), "{} hidden", k);
                prop_assert_eq!(input.field(k).is_some(), present, "{}", k);
            }
        }
    }
}
