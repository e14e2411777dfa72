//! Funnels: step-by-step conversion through a sequence segment.
//!
//! Step k's count is the membership of the segment with its sequence cut after the k-th
//! positive step (absences between kept steps stay; a trailing absence belongs to the last
//! step), evaluated by the engine exactly as `eval` would. So the last step's count is the
//! segment's own membership, and every count can be reproduced with `eval`.
//!
//! Time between steps: for a unit that reached step k + 1, its entry time into prefix k + 1
//! minus its entry time into prefix k (when each prefix first matched); the median over
//! those units.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate, for_each_state};
use sequin_lang::SegFile;
use sequin_lang::ast::{Criterion, Expr, Item, ItemKind, Sequence};
use sequin_store::EventSource;
use serde::Serialize;

use crate::InsightError;

/// What to compute.
#[derive(Debug, Clone)]
pub struct FunnelOptions {
    /// "Now" [default: the latest event time].
    pub as_of: Option<i64>,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
    /// Break down by this unit attribute (`device.type`).
    pub by: Option<String>,
    /// Attribute values shown (by units at step 1); the rest are summed as `(other)`.
    pub top_values: usize,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelStep {
    /// The step as written.
    pub step: String,
    /// Units that reached it.
    pub units: u64,
    /// units / the previous step's units (1 for the first step).
    pub conversion_from_previous: f64,
    /// units / the first step's units.
    pub conversion_from_start: f64,
    /// Median time from the previous step (µs); None for the first step or no units.
    pub median_from_previous_micros: Option<i64>,
}

/// The steps of one attribute value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// The attribute value (`(none)` when the unit has none, `(other)` for the rest).
    pub value: String,
    /// Its steps.
    pub steps: Vec<FunnelStep>,
}

/// A funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    /// Segment name.
    pub segment: String,
    /// Unit kind.
    pub unit: String,
    /// As-of time (µs).
    pub as_of: i64,
    /// All units.
    pub steps: Vec<FunnelStep>,
    /// The attribute broken down by.
    pub by: Option<String>,
    /// Per attribute value, largest first.
    pub breakdown: Vec<Breakdown>,
}

/// Does the definition have a sequence to draw as a funnel?
pub fn has_funnel(item: &sequin_lang::ast::Item) -> bool {
    funnel_sequence(&item.body).is_some()
}

/// The first sequence of a body, reachable through `and` and windows only (a funnel of a
/// negated or alternative sequence means nothing).
fn funnel_sequence(e: &Expr) -> Option<&Sequence> {
    match e {
        Expr::Criterion(Criterion::Sequence(s)) => Some(s),
        Expr::And(v) => v.iter().find_map(funnel_sequence),
        Expr::Windowed(x, _) => funnel_sequence(x),
        _ => None,
    }
}

fn replace_sequence(e: &Expr, with: &Sequence) -> (Expr, bool) {
    match e {
        Expr::Criterion(Criterion::Sequence(_)) => {
            (Expr::Criterion(Criterion::Sequence(with.clone())), true)
        }
        Expr::And(v) => {
            let mut done = false;
            let items = v
                .iter()
                .map(|x| {
                    if done {
                        x.clone()
                    } else {
                        let (y, d) = replace_sequence(x, with);
                        done = d;
                        y
                    }
                })
                .collect();
            (Expr::And(items), done)
        }
        Expr::Windowed(x, d) => {
            let (y, done) = replace_sequence(x, with);
            (Expr::Windowed(Box::new(y), *d), done)
        }
        other => (other.clone(), false),
    }
}

/// The segment cut after each positive step: (step text, program).
fn prefixes(file: &SegFile, item: &Item) -> Result<Vec<(String, Program)>, InsightError> {
    let seq = funnel_sequence(&item.body).ok_or_else(|| InsightError::Input {
        place: format!("segment {}", item.name.name),
        reason: "has no sequence (outside `not` and `or`) to make a funnel of".into(),
    })?;
    let positive: Vec<usize> = (0..seq.steps.len())
        .filter(|&i| !seq.steps[i].negated)
        .collect();
    let mut out = Vec::new();
    for (k, &i) in positive.iter().enumerate() {
        let last = k + 1 == positive.len();
        let cut = if last { seq.steps.len() } else { i + 1 };
        let prefix = Sequence {
            span_within: seq.span_within,
            steps: seq.steps[..cut].to_vec(),
            span: seq.span,
        };
        let (body, _) = replace_sequence(&item.body, &prefix);
        let mut f = file.clone();
        let name = format!("{}#{}", item.name.name, k + 1);
        let mut it = item.clone();
        it.name.name = name.clone();
        it.body = body;
        it.kind = ItemKind::Segment;
        f.items.push(it);
        // A step's label carries the absences before it (and, for the last, after it).
        let from = if k == 0 { 0 } else { positive[k - 1] + 1 };
        let label = seq.steps[from..cut]
            .iter()
            .map(sequin_lang::fmt::step)
            .collect::<Vec<_>>()
            .join("; ");
        out.push((label, Program::compile(&f, &name)?));
    }
    Ok(out)
}

/// Computes the funnel of segment `name`.
pub fn funnel(
    source: &dyn EventSource,
    file: &SegFile,
    name: &str,
    opts: &FunnelOptions,
) -> Result<Funnel, InsightError> {
    let item = file
        .items
        .iter()
        .find(|i| i.name.name == name)
        .ok_or_else(|| InsightError::Input {
            place: format!("--segment {name}"),
            reason: "no such segment".into(),
        })?;
    let steps = prefixes(file, item)?;
    let labels: Vec<String> = steps.iter().map(|(l, _)| l.clone()).collect();
    let programs: Vec<Program> = steps.into_iter().map(|(_, p)| p).collect();
    let eval = evaluate(
        source,
        &programs,
        &EvalOptions {
            as_of: opts.as_of,
            session_gap: opts.session_gap,
        },
    )?;
    let as_of = eval.as_of.unwrap_or(0);
    // Per unit: entry time into each prefix it reached. A unit counts for step k only if it
    // reached every step before (a prefix can match without its own prefix matching only
    // through windows; the funnel stays monotone).
    let entries: Vec<FxHashMap<&str, i64>> = eval
        .segments
        .iter()
        .map(|s| {
            s.members
                .iter()
                .map(|m| (m.unit.as_str(), m.entered_at))
                .collect()
        })
        .collect();
    let mut reached: FxHashMap<&str, Vec<i64>> = FxHashMap::default();
    for (&u, &t0) in &entries[0] {
        let mut times = vec![t0];
        for step in &entries[1..] {
            match step.get(u) {
                Some(&t) => times.push(t),
                None => break,
            }
        }
        reached.insert(u, times);
    }
    let values = match &opts.by {
        Some(path) => Some(attribute_values(
            source,
            path,
            item.unit,
            as_of,
            opts.session_gap,
        )?),
        None => None,
    };
    let n = labels.len();
    let all: Vec<&Vec<i64>> = reached.values().collect();
    let steps_all = summarize(&labels, &all);
    let mut breakdown = Vec::new();
    if let Some(values) = &values {
        let mut groups: FxHashMap<&str, Vec<&Vec<i64>>> = FxHashMap::default();
        for (u, times) in &reached {
            let v = values.get(*u).map_or("(none)", String::as_str);
            groups.entry(v).or_default().push(times);
        }
        let mut ordered: Vec<(&str, Vec<&Vec<i64>>)> = groups.into_iter().collect();
        ordered.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        let mut other: Vec<&Vec<i64>> = Vec::new();
        for (k, (v, g)) in ordered.into_iter().enumerate() {
            if k < opts.top_values {
                breakdown.push(Breakdown {
                    value: v.to_string(),
                    steps: summarize(&labels, &g),
                });
            } else {
                other.extend(g);
            }
        }
        if !other.is_empty() {
            breakdown.push(Breakdown {
                value: "(other)".into(),
                steps: summarize(&labels, &other),
            });
        }
    }
    debug_assert_eq!(steps_all.len(), n);
    Ok(Funnel {
        segment: name.to_string(),
        unit: item.unit.keyword().to_string(),
        as_of,
        steps: steps_all,
        by: opts.by.clone(),
        breakdown,
    })
}

fn summarize(labels: &[String], units: &[&Vec<i64>]) -> Vec<FunnelStep> {
    let first = units.len() as u64;
    let mut prev = first;
    labels
        .iter()
        .enumerate()
        .map(|(k, label)| {
            let count = units.iter().filter(|t| t.len() > k).count() as u64;
            let median = (k > 0).then(|| {
                let mut gaps: Vec<i64> = units
                    .iter()
                    .filter(|t| t.len() > k)
                    .map(|t| t[k] - t[k - 1])
                    .collect();
                median(&mut gaps)
            });
            let step = FunnelStep {
                step: label.clone(),
                units: count,
                conversion_from_previous: ratio(count, prev),
                conversion_from_start: ratio(count, first),
                median_from_previous_micros: median.flatten(),
            };
            prev = count;
            step
        })
        .collect()
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The median (lower of the two middle values for an even count).
fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let mid = (v.len() - 1) / 2;
    Some(*v.select_nth_unstable(mid).1)
}

/// Each unit's latest value of attribute `path` as of `as_of`, as the language's attribute
/// criterion reads it (traits, then context, then properties).
pub fn attribute_values(
    source: &dyn EventSource,
    path: &str,
    unit: sequin_lang::ast::UnitKind,
    as_of: i64,
    gap: Micros,
) -> Result<FxHashMap<String, String>, InsightError> {
    let src = format!("segment attr of {} {{ {path} }}", unit.keyword());
    let bad = |reason: String| InsightError::Input {
        place: format!("--by {path}"),
        reason,
    };
    let file = sequin_lang::parse(&src).map_err(|d| bad(d.render("--by", &src)))?;
    if !matches!(
        file.items[0].body,
        Expr::Criterion(Criterion::Attribute { .. })
    ) {
        return Err(bad("expected an attribute path such as device.type".into()));
    }
    let prog = Program::compile(&file, "attr")?;
    let proj = sequin_engine::batch::projection(std::slice::from_ref(&prog));
    let parts: Vec<Result<Vec<(String, String)>, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            let mut out = Vec::new();
            for_each_state(&prog, &data, as_of, gap, |unit, st| {
                if let Some(v) = prog.attribute(st) {
                    out.push((unit.to_string(), v.to_string()));
                }
            });
            Ok(out)
        })
        .collect();
    let mut all = FxHashMap::default();
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}
