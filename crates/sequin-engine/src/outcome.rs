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
    let proj = outcome.projection(measure);
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

/// Decides one outcome for units of one partition, at any anchor: the building block of
/// [`evaluate_outcome`], and of discovery, which asks for many anchors per unit.
pub struct OutcomeJudge<'a> {
    outcome: &'a Outcome,
    driver: Driver<'a>,
    rows: Vec<usize>,
}

impl<'a> OutcomeJudge<'a> {
    /// A judge over `data` (read with at least [`Outcome::projection`]'s columns).
    pub fn new(outcome: &'a Outcome, data: &'a PartitionData, gap: Micros) -> OutcomeJudge<'a> {
        OutcomeJudge {
            outcome,
            driver: Driver::new(&outcome.program, data, gap),
            rows: Vec::new(),
        }
    }

    /// The outcome of the unit whose events are `rows` (ascending), anchored at `anchor`,
    /// with data observed up to `observed_until`: None when its horizon reaches past it.
    pub fn judge(
        &mut self,
        data: &PartitionData,
        rows: &[usize],
        anchor: i64,
        observed_until: i64,
    ) -> Option<bool> {
        self.judge_when(data, rows, anchor, observed_until).0
    }

    /// As [`judge`](Self::judge), with the time the outcome was reached (when it was).
    pub fn judge_when(
        &mut self,
        data: &PartitionData,
        rows: &[usize],
        anchor: i64,
        observed_until: i64,
    ) -> (Option<bool>, Option<i64>) {
        let (until, known) = self.window(anchor, observed_until);
        self.rows.clear();
        // Rows are in time order: the ones after the anchor form a contiguous run.
        let from = rows.partition_point(|&r| data.time[r] <= anchor);
        self.rows.extend(
            rows[from..]
                .iter()
                .copied()
                .take_while(|&r| data.time[r] <= until),
        );
        let since = self
            .driver
            .run(data, anchor, &self.rows, until)
            .member_since;
        (known.then_some(since.is_some()), since)
    }

    /// Events up to when are looked at, and is the verdict final?
    fn window(&self, anchor: i64, observed_until: i64) -> (i64, bool) {
        match self.outcome.horizon {
            Some(h) if anchor.saturating_add(h) > observed_until => (observed_until, false),
            Some(h) => (anchor + h, true),
            None => (observed_until, true),
        }
    }
}

impl Outcome {
    /// The columns an outcome (and a measure) read, plus the unit id columns.
    pub fn projection(&self, measure: Option<&Program>) -> Projection {
        let mut programs = vec![self.program.clone()];
        programs.extend(measure.cloned());
        match projection(&programs) {
            Projection::Columns(mut c) => {
                c.extend(["session_id".to_string(), "conversation_id".to_string()]);
                c.sort();
                c.dedup();
                Projection::Columns(c)
            }
            p => p,
        }
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
    let mut judge = OutcomeJudge::new(outcome, data, gap);
    let mut value = measure.map(|m| Driver::new(m, data, gap));
    let mut out = Vec::new();
    let mut rows = Vec::new();
    let mut decide = |key: &str, unit_rows: &[usize]| {
        let Some(&anchor) = anchors.get(key) else {
            return;
        };
        let reached = judge.judge(data, unit_rows, anchor, observed_until);
        let v = value.as_mut().and_then(|d| {
            let (until, _) = judge.window(anchor, observed_until);
            rows.clear();
            rows.extend(
                unit_rows
                    .iter()
                    .copied()
                    .filter(|&r| data.time[r] > anchor && data.time[r] <= until),
            );
            let program = d.program;
            program.measure(d.run(data, anchor, &rows, until))
        });
        out.push((key.to_string(), Verdict { reached, value: v }));
    };
    let mut buf = Vec::new();
    for (user, range) in data.unit_rows() {
        if unit == sequin_lang::ast::UnitKind::Users {
            buf.clear();
            buf.extend(range);
            decide(user, &buf);
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
            buf.clear();
            buf.extend(sub.rows.iter().map(|&i| start + i));
            decide(&sub.key, &buf);
        }
    }
    out
}
