//! Outcomes: a definition evaluated per unit after an anchor time (a member's entry, a
//! non-member's first activity), by the same matcher as segments.
//!
//! A unit is fed a synthetic anchor event at its anchor time, then its events strictly after
//! it. `did P within D` becomes `sequence { anchor; P within D }`, so it looks at
//! (anchor, anchor + D]; every other criterion sees only the events after the anchor.
//! When every `did` has a `within`, the outcome has a horizon H (the largest D): it is
//! decided at anchor + H, and a unit whose anchor + H lies beyond the data observed is
//! *pending* (not yet decidable) rather than counted as a miss.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_lang::ast::{
    Criterion, Expr, Gap, Ident, ItemKind, NameSet, Pattern, SegFile, Sequence, Step,
};
use sequin_store::{EventSource, PartitionData, Projection};

use crate::EngineError;
use crate::batch::{Columns, RowProps, projection, resolve_columns};
use crate::compile::Program;
use crate::matcher::{Ev, NoProps, UnitState};
use crate::units::split;

/// The synthetic event that marks a unit's anchor (no real event can carry this name: it
/// is not matched by `any`, and `$` does not start a name the language can write).
pub const ANCHOR_EVENT: &str = "$anchor";

/// An outcome compiled for anchored evaluation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The matcher program (with `did … within` rewritten against the anchor).
    pub program: Program,
    /// Decided this long after the anchor, when every `did` has a `within`.
    pub horizon: Option<Micros>,
}

impl Outcome {
    /// Compiles the outcome (or segment, read as an outcome) `name` of a checked file.
    pub fn compile(file: &SegFile, name: &str) -> Result<Outcome, EngineError> {
        let item = file
            .items
            .iter()
            .find(|i| i.name.name == name)
            .ok_or_else(|| EngineError::UnknownDefinition(name.to_string()))?;
        let mut horizon = Some(0);
        let body = anchored(&item.body, &mut horizon);
        let mut rewritten = file.clone();
        for it in &mut rewritten.items {
            if it.name.name == name {
                it.body = body.clone();
                it.kind = ItemKind::Outcome;
            }
        }
        Ok(Outcome {
            program: Program::compile(&rewritten, name)?,
            horizon: horizon.filter(|&h| h > 0),
        })
    }
}

/// Rewrites `did P within D` to a sequence from the anchor; tracks the horizon (None once
/// some criterion has none).
fn anchored(e: &Expr, horizon: &mut Option<Micros>) -> Expr {
    match e {
        Expr::And(v) => Expr::And(v.iter().map(|x| anchored(x, horizon)).collect()),
        Expr::Or(v) => Expr::Or(v.iter().map(|x| anchored(x, horizon)).collect()),
        Expr::Not(x) => Expr::Not(Box::new(anchored(x, horizon))),
        Expr::Windowed(x, d) => Expr::Windowed(Box::new(anchored(x, horizon)), *d),
        Expr::Criterion(Criterion::Did {
            pattern,
            within: Some(d),
            span,
        }) => {
            *horizon = horizon.map(|h| h.max(d.micros));
            let anchor = Step {
                negated: false,
                next: false,
                pattern: Pattern {
                    names: NameSet::Names(vec![Ident {
                        name: ANCHOR_EVENT.to_string(),
                        span: *span,
                    }]),
                    predicate: None,
                    alias: None,
                    span: *span,
                },
                gaps: Vec::new(),
                span: *span,
            };
            let step = Step {
                negated: false,
                next: false,
                pattern: pattern.clone(),
                gaps: vec![Gap::Within(*d, None)],
                span: *span,
            };
            Expr::Criterion(Criterion::Sequence(Sequence {
                span_within: None,
                steps: vec![anchor, step],
                span: *span,
            }))
        }
        Expr::Criterion(c) => {
            *horizon = None;
            Expr::Criterion(c.clone())
        }
    }
}

/// One unit's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Reached the outcome (None: pending, its horizon lies beyond the data).
    pub reached: Option<bool>,
    /// The measure's value over the same events, when one was given.
    pub value: Option<f64>,
}

/// Evaluates `outcome` for every unit in `anchors` (unit key → anchor time), with data
/// observed up to `observed_until`; `measure`, if given, over the same events.
pub fn evaluate_outcome(
    source: &dyn EventSource,
    outcome: &Outcome,
    measure: Option<&Program>,
    anchors: &FxHashMap<String, i64>,
    observed_until: i64,
    gap: Micros,
) -> Result<FxHashMap<String, Verdict>, EngineError> {
    let mut programs = vec![outcome.program.clone()];
    programs.extend(measure.cloned());
    let proj = match projection(&programs) {
        Projection::Columns(mut c) => {
            c.extend(["session_id".to_string(), "conversation_id".to_string()]);
            c.sort();
            c.dedup();
            Projection::Columns(c)
        }
        p => p,
    };
    let parts: Vec<Result<Vec<(String, Verdict)>, EngineError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            Ok(evaluate_partition(
                &data,
                outcome,
                measure,
                anchors,
                observed_until,
                gap,
            ))
        })
        .collect();
    let mut out = FxHashMap::default();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

struct Driver<'a> {
    program: &'a Program,
    bits_of: Vec<u64>,
    anchor_bits: u64,
    cols: Columns<'a>,
    state: UnitState,
}

impl<'a> Driver<'a> {
    fn new(program: &'a Program, data: &'a PartitionData, gap: Micros) -> Driver<'a> {
        Driver {
            program,
            bits_of: data
                .names
                .iter()
                .map(|n| program.name_bits(n, false))
                .collect(),
            anchor_bits: program.name_bits(ANCHOR_EVENT, true),
            cols: resolve_columns(program, data),
            state: program.new_state(gap),
        }
    }

    /// Feeds the anchor and `rows` (all after it), then moves "now" to `now`.
    fn run(&mut self, data: &PartitionData, anchor: i64, rows: &[usize], now: i64) -> &UnitState {
        let prog = self.program;
        let st = &mut self.state;
        prog.reset_state(st);
        prog.begin_group(st, anchor);
        prog.on_event(
            st,
            &Ev {
                time: anchor,
                index: 0,
                bits: self.anchor_bits,
                props: &NoProps,
            },
        );
        prog.end_group(st, anchor);
        let mut current = anchor;
        for (i, &row) in rows.iter().enumerate() {
            let t = data.time[row];
            if t != current {
                prog.end_group(st, current);
                prog.begin_group(st, t);
                current = t;
            }
            let props = RowProps {
                cols: &self.cols,
                row,
            };
            prog.on_event(
                st,
                &Ev {
                    time: t,
                    index: i as u64 + 1,
                    bits: self.bits_of[data.name[row] as usize],
                    props: &props,
                },
            );
        }
        prog.end_group(st, current);
        prog.run_timers(st, now);
        st
    }
}

fn evaluate_partition(
    data: &PartitionData,
    outcome: &Outcome,
    measure: Option<&Program>,
    anchors: &FxHashMap<String, i64>,
    observed_until: i64,
    gap: Micros,
) -> Vec<(String, Verdict)> {
    let unit = outcome.program.unit;
    let id_col = match unit {
        sequin_lang::ast::UnitKind::Users => None,
        sequin_lang::ast::UnitKind::Sessions => data.ids.get("session_id"),
        sequin_lang::ast::UnitKind::Conversations => data.ids.get("conversation_id"),
    };
    let mut main = Driver::new(&outcome.program, data, gap);
    let mut value = measure.map(|m| Driver::new(m, data, gap));
    let mut out = Vec::new();
    let mut rows = Vec::new();
    let mut judge = |key: &str, all_rows: &mut dyn Iterator<Item = usize>| {
        let Some(&anchor) = anchors.get(key) else {
            return;
        };
        let (until, reached_known) = match outcome.horizon {
            Some(h) if anchor.saturating_add(h) > observed_until => (observed_until, false),
            Some(h) => (anchor + h, true),
            None => (observed_until, true),
        };
        rows.clear();
        rows.extend(all_rows.filter(|&r| data.time[r] > anchor && data.time[r] <= until));
        let reached = main.run(data, anchor, &rows, until).member_since.is_some();
        let v = value.as_mut().and_then(|d| {
            let program = d.program;
            program.measure(d.run(data, anchor, &rows, until))
        });
        out.push((
            key.to_string(),
            Verdict {
                reached: reached_known.then_some(reached),
                value: v,
            },
        ));
    };
    for (user, range) in data.unit_rows() {
        if unit == sequin_lang::ast::UnitKind::Users {
            judge(user, &mut range.clone());
            continue;
        }
        let start = range.start;
        for sub in split(
            unit,
            user,
            &data.time[range.clone()],
            |i| id_col.and_then(|c| c.get(start + i)),
            gap,
        ) {
            judge(&sub.key, &mut sub.rows.iter().map(|&i| start + i));
        }
    }
    out
}
