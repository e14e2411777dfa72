//! Root cause: which segments and attribute values explain most of the change in an
//! outcome rate between two periods, in the style of Adtributor (Bhagwan et al., NSDI
//! 2014) and ThirdEye.
//!
//! Each period's population is the units with behaviour in it, anchored at their first
//! event in the period; the outcome is judged after the anchor (as `report` does, pending
//! units left out). A dimension partitions the population: an attribute's values (as of
//! the period's end), a segment's members and non-members, or a pair of those. For element
//! e of a dimension, with r reached of n decided and R = r/n overall:
//!
//! - contribution C_e = (r_cur,e − R_base·n_cur,e)/n_cur − (r_base,e − R_base·n_base,e)/n_base.
//!   Within a dimension the contributions add up exactly to R_cur − R_base; share = C_e / Δ.
//! - surprise S_e = JS(p_num, q_num) + JS(p_den, q_den): the Jensen–Shannon terms of how
//!   e's share of the reached units and of the decided units moved (Adtributor's
//!   surprise for a derived measure).
//!
//! Elements that carry at least 10% of the change (in its direction) are ranked by
//! surprise, most surprising first.

use rustc_hash::{FxHashMap, FxHashSet};
use sequin_core::time::Micros;
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_engine::outcome::{Outcome, evaluate_outcome};
use sequin_lang::SegFile;
use sequin_lang::ast::ItemKind;
use sequin_store::EventSource;
use serde::Serialize;

use crate::funnel::attribute_values;
use crate::{InsightError, units};

/// What to explain.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// The outcome.
    pub outcome: String,
    /// Baseline period [start, end) (µs).
    pub baseline: (i64, i64),
    /// Current period [start, end) (µs).
    pub current: (i64, i64),
    /// Attribute paths to break down by [default: every attribute with 2–30 values].
    pub by: Vec<String>,
    /// Elements to print.
    pub top: usize,
    /// Smallest element (units in either period) considered.
    pub min_units: u64,
    /// Smallest share of the change an element must carry to be listed (0.1 = 10%).
    pub min_share: f64,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
}

/// One period's counts for an element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Units with a decided outcome.
    pub decided: u64,
    /// Of which reached.
    pub reached: u64,
    /// reached / decided.
    pub rate: f64,
}

/// One element of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Element {
    /// Dimension: `os.name`, `segment slow_payment`, `os.name × app.version`.
    pub dimension: String,
    /// Value: `iOS`, `member`, `Android × 5.3.0`.
    pub value: String,
    /// Baseline counts.
    pub baseline: Counts,
    /// Current counts.
    pub current: Counts,
    /// Contribution to the change in rate (rate points, as a fraction).
    pub contribution: f64,
    /// Contribution / total change.
    pub share: f64,
    /// Adtributor surprise.
    pub surprise: f64,
}

/// The explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// Outcome name.
    pub outcome: String,
    /// Unit kind.
    pub unit: String,
    /// Baseline totals.
    pub baseline: Counts,
    /// Current totals.
    pub current: Counts,
    /// current.rate − baseline.rate.
    pub change: f64,
    /// Dimensions looked at.
    pub dimensions: Vec<String>,
    /// The elements explaining most of the change, best first.
    pub elements: Vec<Element>,
}

/// Per unit of one period: outcome (None = pending) and dimension values.
struct Period {
    outcome: FxHashMap<String, Option<bool>>,
    values: Vec<FxHashMap<String, String>>,
    totals: Counts,
}

fn counts(decided: u64, reached: u64) -> Counts {
    Counts {
        decided,
        reached,
        rate: if decided == 0 {
            0.0
        } else {
            reached as f64 / decided as f64
        },
    }
}

/// Explains the change.
pub fn explain(
    source: &dyn EventSource,
    file: &SegFile,
    opts: &ExplainOptions,
) -> Result<Explanation, InsightError> {
    let item = crate::definition(file, &opts.outcome, "--outcome")?;
    let unit = item.unit;
    for (flag, (a, b)) in [("--baseline", opts.baseline), ("--current", opts.current)] {
        if a >= b {
            return Err(InsightError::Input {
                place: flag.into(),
                reason: "the period's start is not before its end".into(),
            });
        }
    }
    let observed_until = source.latest_time().ok_or_else(|| InsightError::Input {
        place: "--store".into(),
        reason: "the store holds no events".into(),
    })?;
    let outcome = Outcome::compile(file, &opts.outcome)?;
    let segments: Vec<&str> = file
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Segment && i.unit == unit)
        .map(|i| i.name.name.as_str())
        .collect();
    let programs: Vec<Program> = segments
        .iter()
        .map(|s| Program::compile(file, s))
        .collect::<Result<_, _>>()?;
    let by: Vec<String> = if opts.by.is_empty() {
        let cat = source.catalog()?;
        let mut paths: Vec<String> = cat
            .columns
            .iter()
            .filter_map(|c| c.strip_prefix("c.").or_else(|| c.strip_prefix("t.")))
            .map(str::to_string)
            .collect();
        paths.sort();
        paths.dedup();
        paths
    } else {
        opts.by.clone()
    };
    let period = |(start, end): (i64, i64)| -> Result<(Period, Vec<String>), InsightError> {
        let anchors =
            units::first_activity(source, unit, opts.session_gap, Some(start - 1), end - 1)?;
        let verdicts = evaluate_outcome(
            source,
            &outcome,
            None,
            &anchors,
            observed_until,
            opts.session_gap,
        )?;
        let outcome: FxHashMap<String, Option<bool>> = anchors
            .keys()
            .map(|u| (u.clone(), verdicts.get(u).and_then(|v| v.reached)))
            .collect();
        let mut values = Vec::new();
        let mut names = Vec::new();
        for path in &by {
            values.push(attribute_values(
                source,
                path,
                unit,
                end - 1,
                opts.session_gap,
            )?);
            names.push(path.clone());
        }
        if !programs.is_empty() {
            let eval = evaluate(
                source,
                &programs,
                &EvalOptions {
                    as_of: Some(end - 1),
                    session_gap: opts.session_gap,
                },
            )?;
            for seg in eval.segments {
                let members: FxHashSet<&str> =
                    seg.members.iter().map(|m| m.unit.as_str()).collect();
                values.push(
                    outcome
                        .keys()
                        .map(|u| {
                            (
                                u.clone(),
                                if members.contains(u.as_str()) {
                                    "member"
                                } else {
                                    "non-member"
                                }
                                .to_string(),
                            )
                        })
                        .collect(),
                );
                names.push(format!("segment {}", seg.name));
            }
        }
        let decided = outcome.values().filter(|o| o.is_some()).count() as u64;
        let reached = outcome.values().filter(|o| **o == Some(true)).count() as u64;
        Ok((
            Period {
                outcome,
                values,
                totals: counts(decided, reached),
            },
            names,
        ))
    };
    let (base, names) = period(opts.baseline)?;
    let (cur, _) = period(opts.current)?;
    // Attributes with one value, or too many to read, say nothing here.
    let mut dims: Vec<usize> = (0..names.len())
        .filter(|&d| {
            let distinct: FxHashSet<&String> = base.values[d]
                .values()
                .chain(cur.values[d].values())
                .collect();
            (2..=30).contains(&distinct.len())
        })
        .collect();
    dims.sort();
    let mut dimensions: Vec<(String, Vec<usize>)> =
        dims.iter().map(|&d| (names[d].clone(), vec![d])).collect();
    for (i, &a) in dims.iter().enumerate() {
        for &b in &dims[i + 1..] {
            dimensions.push((format!("{} × {}", names[a], names[b]), vec![a, b]));
        }
    }
    let delta = cur.totals.rate - base.totals.rate;
    let value_of = |p: &Period, dims: &[usize], u: &str| -> String {
        dims.iter()
            .map(|&d| p.values[d].get(u).map_or("(none)", String::as_str))
            .collect::<Vec<_>>()
            .join(" × ")
    };
    let tally = |p: &Period, dims: &[usize]| -> FxHashMap<String, (u64, u64)> {
        let mut m: FxHashMap<String, (u64, u64)> = FxHashMap::default();
        for (u, o) in &p.outcome {
            if let Some(r) = o {
                let e = m.entry(value_of(p, dims, u)).or_default();
                e.0 += 1;
                e.1 += u64::from(*r);
            }
        }
        m
    };
    let js = |p: f64, q: f64| -> f64 {
        let term = |x: f64, m: f64| if x > 0.0 { x * (x / m).log2() } else { 0.0 };
        let m = (p + q) / 2.0;
        if m == 0.0 {
            0.0
        } else {
            0.5 * (term(p, m) + term(q, m))
        }
    };
    let mut elements = Vec::new();
    for (dim_name, dims) in &dimensions {
        let b = tally(&base, dims);
        let c = tally(&cur, dims);
        let keys: FxHashSet<&String> = b.keys().chain(c.keys()).collect();
        for k in keys {
            let (nb, rb) = b.get(k).copied().unwrap_or_default();
            let (nc, rc) = c.get(k).copied().unwrap_or_default();
            if nb.max(nc) < opts.min_units {
                continue;
            }
            let rate_b = base.totals.rate;
            let contribution = (rc as f64 - rate_b * nc as f64) / cur.totals.decided.max(1) as f64
                - (rb as f64 - rate_b * nb as f64) / base.totals.decided.max(1) as f64;
            let share = if delta == 0.0 {
                0.0
            } else {
                contribution / delta
            };
            let frac = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
            let surprise = js(frac(rb, base.totals.reached), frac(rc, cur.totals.reached))
                + js(frac(nb, base.totals.decided), frac(nc, cur.totals.decided));
            elements.push(Element {
                dimension: dim_name.clone(),
                value: k.clone(),
                baseline: counts(nb, rb),
                current: counts(nc, rc),
                contribution,
                share,
                surprise,
            });
        }
    }
    // Adtributor: an element explains the change if it carries a real part of it
    // (`min_share`, 10% by default, in its direction); among those, the most surprising first (a small element
    // that moved a lot beats a large one that merely moved with everything).
    elements.retain(|e| e.share >= opts.min_share);
    elements.sort_by(|a, b| {
        b.surprise
            .total_cmp(&a.surprise)
            .then(
                a.dimension
                    .matches(" × ")
                    .count()
                    .cmp(&b.dimension.matches(" × ").count()),
            )
            .then(a.dimension.cmp(&b.dimension))
            .then(a.value.cmp(&b.value))
    });
    // The same units under another name (a pair with a value every unit shares): keep the
    // simplest statement.
    let mut seen: FxHashSet<(u64, u64, u64, u64)> = FxHashSet::default();
    elements.retain(|e| {
        seen.insert((
            e.baseline.decided,
            e.baseline.reached,
            e.current.decided,
            e.current.reached,
        ))
    });
    elements.truncate(opts.top);
    Ok(Explanation {
        outcome: opts.outcome.clone(),
        unit: unit.keyword().to_string(),
        baseline: base.totals,
        current: cur.totals,
        change: delta,
        dimensions: dimensions.into_iter().map(|(n, _)| n).collect(),
        elements,
    })
}
