//! Batch evaluation: every unit of a store, as of a time, in parallel over unit partitions.
//! Each partition's columns are read once (only the columns the programs need) and every
//! program's matcher is driven over each unit's events, exactly as the live path drives it.

use std::time::Instant;

use rayon::prelude::*;
use sequin_core::time::{MINUTE, Micros};
use sequin_lang::ast::UnitKind;
use sequin_store::{EventSource, PartitionData, Projection, PropColumn};

use crate::EngineError;
use crate::compile::Program;
use crate::matcher::{Ev, Props, UnitState};
use crate::val::Val;

/// Options for [`evaluate`].
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// "Now". Default: the latest event time in the source.
    pub as_of: Option<i64>,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
}

impl Default for EvalOptions {
    fn default() -> EvalOptions {
        EvalOptions {
            as_of: None,
            session_gap: 30 * MINUTE,
        }
    }
}

/// A member: unit key and the time it entered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Unit key.
    pub unit: String,
    /// Entry time (µs).
    pub entered_at: i64,
}

/// One program's result.
#[derive(Debug, Clone)]
pub struct SegmentResult {
    /// Definition name.
    pub name: String,
    /// Members sorted by unit.
    pub members: Vec<Member>,
    /// Units evaluated.
    pub units: u64,
    /// Processor seconds spent on this program (summed over threads).
    pub cpu_seconds: f64,
}

/// All results and the time they are as of.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The as-of time used (None when the source is empty and none was given).
    pub as_of: Option<i64>,
    /// Per program, in the order given.
    pub segments: Vec<SegmentResult>,
}

/// The columns a set of programs reads.
pub fn projection(programs: &[Program]) -> Projection {
    let mut cols = Vec::new();
    for p in programs {
        for prop in &p.props {
            cols.extend(prop.role.columns(&prop.path));
        }
        if p.signals.is_some() {
            cols.extend(crate::signals::input_columns());
        }
        match p.unit {
            UnitKind::Users => {}
            UnitKind::Sessions => cols.push("session_id".to_string()),
            UnitKind::Conversations => cols.push("conversation_id".to_string()),
        }
    }
    cols.sort();
    cols.dedup();
    Projection::Columns(cols)
}

/// Evaluates `programs` over every unit of `source`.
pub fn evaluate(
    source: &dyn EventSource,
    programs: &[Program],
    opts: &EvalOptions,
) -> Result<Evaluation, EngineError> {
    let as_of = opts.as_of.or_else(|| source.latest_time());
    let empty = || -> Vec<SegmentResult> {
        programs
            .iter()
            .map(|p| SegmentResult {
                name: p.name.clone(),
                members: Vec::new(),
                units: 0,
                cpu_seconds: 0.0,
            })
            .collect()
    };
    let Some(as_of) = as_of else {
        return Ok(Evaluation {
            as_of: None,
            segments: empty(),
        });
    };
    let proj = projection(programs);
    let parts: Vec<Result<Vec<PartResult>, EngineError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            Ok(programs
                .iter()
                .map(|prog| evaluate_partition(prog, &data, as_of, opts.session_gap))
                .collect())
        })
        .collect();
    let mut segments = empty();
    for part in parts {
        for (seg, r) in segments.iter_mut().zip(part?) {
            seg.members.extend(r.members);
            seg.units += r.units;
            seg.cpu_seconds += r.seconds;
        }
    }
    for seg in &mut segments {
        seg.members.par_sort_unstable();
    }
    Ok(Evaluation {
        as_of: Some(as_of),
        segments,
    })
}

struct PartResult {
    members: Vec<Member>,
    units: u64,
    seconds: f64,
}

/// Property columns resolved for one partition: per slot, the candidate columns in order.
pub(crate) struct Columns<'a> {
    pub(crate) slots: Vec<Vec<&'a PropColumn>>,
}

/// One row's properties, read from the resolved columns.
pub(crate) struct RowProps<'a> {
    pub(crate) cols: &'a Columns<'a>,
    pub(crate) row: usize,
}

pub(crate) fn column_value(c: &PropColumn, row: usize) -> Option<Val<'_>> {
    match c {
        PropColumn::Int(v) => v[row].map(Val::Int),
        PropColumn::Float(v) => v[row].map(Val::Float),
        PropColumn::Bool(v) => v[row].map(Val::Bool),
        PropColumn::Str(c) => c.get(row).map(Val::Str),
        PropColumn::Mixed(v) => v[row].as_ref().map(Val::of),
    }
}

impl Props for RowProps<'_> {
    fn prop(&self, id: usize) -> Option<Val<'_>> {
        self.cols.slots[id]
            .iter()
            .find_map(|c| column_value(c, self.row))
    }
}

pub(crate) fn resolve_columns<'a>(prog: &Program, data: &'a PartitionData) -> Columns<'a> {
    Columns {
        slots: prog
            .props
            .iter()
            .map(|p| {
                p.role
                    .columns(&p.path)
                    .iter()
                    .filter_map(|k| data.props.get(k))
                    .collect()
            })
            .collect(),
    }
}

fn evaluate_partition(prog: &Program, data: &PartitionData, as_of: i64, gap: Micros) -> PartResult {
    let started = Instant::now();
    let mut members = Vec::new();
    let units = for_each_state(prog, data, as_of, gap, |unit, st| {
        if let Some(t) = st.member_since {
            members.push(Member {
                unit: unit.to_string(),
                entered_at: t,
            });
        }
    });
    PartResult {
        members,
        units,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Drives `prog` over every unit of `data` with an event at or before `as_of`, calling
/// `f(unit, state)` with the unit's state as of `as_of` (units whose events the program
/// can skip entirely, and which are not members untouched, are not visited). Returns the
/// units evaluated.
pub fn for_each_state(
    prog: &Program,
    data: &PartitionData,
    as_of: i64,
    gap: Micros,
    mut f: impl FnMut(&str, &UnitState),
) -> u64 {
    let bits_of: Vec<u64> = data
        .names
        .iter()
        .map(|n| prog.name_bits(n, false))
        .collect();
    let cols = resolve_columns(prog, data);
    // Sessions and conversations feed every event (their close depends on it).
    let feed_all = prog.needs_all_events() || prog.unit != UnitKind::Users;
    let mut units = 0;
    let mut st = prog.new_state(gap);
    crate::signals::for_each_unit(
        data,
        prog.unit,
        gap,
        as_of,
        prog.signals.as_ref(),
        |unit, rows, signals| {
            units += 1;
            let sigs: Vec<LocalSignal<'_>> = signals
                .iter()
                .map(|s| LocalSignal {
                    pos: s.pos,
                    own_group: s.own_group,
                    bits: prog.name_bits(s.signal.kind.event_name(), false),
                    signal: s.signal,
                })
                .collect();
            if run_rows(
                prog,
                &mut st,
                data,
                &bits_of,
                &cols,
                rows.iter().copied(),
                &sigs,
                feed_all,
                as_of,
            ) {
                f(unit, &st);
            }
        },
    );
    units
}

/// A derived signal among one unit's rows.
struct LocalSignal<'a> {
    /// Raw rows of the unit before it.
    pos: usize,
    own_group: bool,
    bits: u64,
    signal: &'a sequin_signals::Signal,
}

/// Drives the matcher over one unit's rows (and its signals) up to `as_of`; false when the
/// unit was skipped (nothing touched the program, and an untouched state is not a member).
#[allow(clippy::too_many_arguments)]
fn run_rows(
    prog: &Program,
    st: &mut UnitState,
    data: &PartitionData,
    bits_of: &[u64],
    cols: &Columns<'_>,
    rows: impl Iterator<Item = usize>,
    signals: &[LocalSignal<'_>],
    feed_all: bool,
    as_of: i64,
) -> bool {
    // A unit whose events all leave the program's state untouched is a member only if the
    // untouched state is one; otherwise it can be skipped without touching the state at all.
    let skip_irrelevant = !feed_all && !prog.empty_is_member();
    let mut started = false;
    let mut current: Option<i64> = None;
    let mut next_signal = 0;
    let mut feed_signals =
        |st: &mut UnitState, started: &mut bool, current: &mut Option<i64>, upto: usize| {
            while let Some(s) = signals.get(next_signal).filter(|s| s.pos <= upto) {
                next_signal += 1;
                if s.bits == 0 {
                    continue;
                }
                if !*started {
                    prog.reset_state(st);
                    *started = true;
                }
                let t = s.signal.time;
                if s.own_group || *current != Some(t) {
                    if let Some(c) = current.take() {
                        prog.end_group(st, c);
                    }
                    prog.begin_group(st, t);
                    *current = Some(t);
                }
                let props = crate::signals::SignalProps {
                    signal: s.signal,
                    refs: &prog.props,
                };
                prog.on_event(
                    st,
                    &Ev {
                        time: t,
                        index: s.pos.saturating_sub(1) as u64,
                        bits: s.bits,
                        props: &props,
                    },
                );
                if s.own_group {
                    prog.end_group(st, t);
                    *current = None;
                }
            }
        };
    let mut fed = 0;
    for (index, row) in rows.enumerate() {
        feed_signals(st, &mut started, &mut current, index);
        fed = index + 1;
        let bits = bits_of[data.name[row] as usize];
        if bits == 0 && !feed_all && (index > 0 || skip_irrelevant) {
            continue;
        }
        if !started {
            prog.reset_state(st);
            started = true;
        }
        let t = data.time[row];
        if current != Some(t) {
            if let Some(c) = current {
                prog.end_group(st, c);
            }
            prog.begin_group(st, t);
            current = Some(t);
        }
        let props = RowProps { cols, row };
        prog.on_event(
            st,
            &Ev {
                time: t,
                index: index as u64,
                bits,
                props: &props,
            },
        );
    }
    feed_signals(st, &mut started, &mut current, usize::MAX);
    let _ = fed;
    if !started {
        return false;
    }
    if let Some(c) = current {
        prog.end_group(st, c);
    }
    prog.run_timers(st, as_of);
    true
}
