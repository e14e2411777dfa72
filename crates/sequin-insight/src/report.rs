//! Outcome linkage: how a segment's members fare on an outcome against everyone else in
//! the population (DESIGN §4).
//!
//! - Population: the members of a base segment, anchored at their base entry; without a
//!   base, the units active in the segment's window (`during last D`, else all history up to
//!   as-of), anchored at their first activity in it.
//! - Members: population ∩ segment, anchored at their segment entry. Non-members: the rest.
//! - The outcome is evaluated per unit after its anchor, on all data observed (which may
//!   run past as-of); units whose outcome horizon reaches past the data are pending and
//!   left out of the rates.
//! - With a value measure (e.g. `sum(purchase.amount)`, over the same post-anchor events):
//!   value at stake per quarter = members per quarter × (non-members' rate − members'
//!   rate) × mean value per unit that reached the outcome.

use rustc_hash::FxHashMap;
use sequin_core::time::{DAY, Micros};
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_engine::outcome::{Outcome, Verdict, evaluate_outcome};
use sequin_lang::SegFile;
use sequin_lang::ast::{Criterion, Expr, ItemKind, UnitKind};
use sequin_store::EventSource;
use serde::Serialize;

use crate::stats::{Comparison, compare};
use crate::{InsightError, definition, units};

/// A quarter: 365.25 / 4 days.
pub const QUARTER: Micros = 36_525 * DAY / 400;

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The segment.
    pub segment: String,
    /// The outcome.
    pub outcome: String,
    /// The base segment (the population); None = units active in the window.
    pub base: Option<String>,
    /// A value measure: `sum|avg|min|max(event.prop)` or `count(event)`.
    pub value: Option<String>,
    /// When membership is taken [default: the latest event time].
    pub as_of: Option<i64>,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
}

/// One group's counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Group {
    /// Units in the group.
    pub units: u64,
    /// Units whose outcome is not decidable yet (horizon past the data).
    pub pending: u64,
    /// Units with a decided outcome (the rate's denominator).
    pub decided: u64,
    /// Decided units that reached the outcome.
    pub reached: u64,
    /// Mean of the value measure over decided units, when a measure was given.
    pub mean_value: Option<f64>,
}

/// Value at stake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueAtStake {
    /// The measure.
    pub measure: String,
    /// Mean measure per decided unit that reached the outcome (both groups).
    pub value_per_outcome: f64,
    /// Members per quarter: members × quarter / period.
    pub members_per_quarter: f64,
    /// The period members were gathered over (µs): from the window's start (or the
    /// population's earliest anchor, if later) to as-of.
    pub period_micros: i64,
    /// Per quarter: members_per_quarter × (non-members' rate − members' rate) ×
    /// value_per_outcome. Positive: what members' lower rate costs.
    pub per_quarter: f64,
    /// The formula with its figures.
    pub formula: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Segment name.
    pub segment: String,
    /// Outcome name.
    pub outcome: String,
    /// What the population is: `base segment NAME` or `active users`.
    pub population: String,
    /// Unit kind.
    pub unit: String,
    /// As-of time (µs).
    pub as_of: i64,
    /// Data observed up to (µs).
    pub observed_until: i64,
    /// Outcome horizon (µs), when it has one.
    pub horizon_micros: Option<i64>,
    /// Population size.
    pub population_units: u64,
    /// Members / population.
    pub share_of_population: f64,
    /// Members.
    pub members: Group,
    /// Non-members.
    pub non_members: Group,
    /// Rates, relative risk, difference and p-value (over decided units).
    pub comparison: Comparison,
    /// With a value measure.
    pub value_at_stake: Option<ValueAtStake>,
}

/// A member's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberOutcome {
    /// Unit key.
    pub unit: String,
    /// When it entered the segment (its anchor).
    pub entered_at: i64,
    /// Reached (None: pending).
    pub reached: Option<bool>,
}

/// Computes the report.
pub fn report(
    source: &dyn EventSource,
    file: &SegFile,
    opts: &ReportOptions,
) -> Result<Report, InsightError> {
    Ok(report_detailed(source, file, opts)?.0)
}

/// The report, and each member's outcome.
pub fn report_detailed(
    source: &dyn EventSource,
    file: &SegFile,
    opts: &ReportOptions,
) -> Result<(Report, Vec<MemberOutcome>), InsightError> {
    let seg_item = definition(file, &opts.segment, "--segment")?;
    let out_item = definition(file, &opts.outcome, "--outcome")?;
    if seg_item.kind != ItemKind::Segment {
        return Err(InsightError::Input {
            place: format!("--segment {}", opts.segment),
            reason: "is an outcome; give a segment".into(),
        });
    }
    let unit = seg_item.unit;
    let mut same_unit = vec![(out_item, "--outcome")];
    let base_item = match &opts.base {
        Some(b) => {
            let it = definition(file, b, "--base")?;
            same_unit.push((it, "--base"));
            Some(it)
        }
        None => None,
    };
    for (it, flag) in same_unit {
        if it.unit != unit {
            return Err(InsightError::Input {
                place: format!("{flag} {}", it.name.name),
                reason: format!(
                    "groups {}, but segment `{}` groups {}; compare definitions of one unit kind",
                    it.unit.keyword(),
                    opts.segment,
                    unit.keyword()
                ),
            });
        }
    }
    let observed_until = source.latest_time().ok_or_else(|| InsightError::Input {
        place: "--store".into(),
        reason: "the store holds no events".into(),
    })?;
    let as_of = opts.as_of.unwrap_or(observed_until);

    let mut programs = vec![Program::compile(file, &opts.segment)?];
    if let Some(b) = &opts.base {
        programs.push(Program::compile(file, b)?);
    }
    let eval = evaluate(
        source,
        &programs,
        &EvalOptions {
            as_of: Some(as_of),
            session_gap: opts.session_gap,
        },
    )?;
    let member_entry: FxHashMap<&str, i64> = eval.segments[0]
        .members
        .iter()
        .map(|m| (m.unit.as_str(), m.entered_at))
        .collect();
    // Population and each unit's population anchor.
    let (population, population_label, window_start): (
        FxHashMap<String, i64>,
        String,
        Option<i64>,
    ) = match base_item {
        Some(b) => (
            eval.segments[1]
                .members
                .iter()
                .map(|m| (m.unit.clone(), m.entered_at))
                .collect(),
            format!("base segment {}", b.name.name),
            None,
        ),
        None => {
            let from = seg_item.window.map(|w| as_of - w.micros);
            (
                units::first_activity(source, unit, opts.session_gap, from, as_of)?,
                format!("active {}", unit.keyword()),
                from,
            )
        }
    };
    let mut anchors: FxHashMap<String, i64> = FxHashMap::default();
    anchors.reserve(population.len());
    for (u, &t) in &population {
        anchors.insert(
            u.clone(),
            member_entry.get(u.as_str()).copied().unwrap_or(t),
        );
    }
    let outcome = Outcome::compile(file, &opts.outcome)?;
    let measure = opts
        .value
        .as_deref()
        .map(|v| compile_measure(v, unit))
        .transpose()?;
    let verdicts = evaluate_outcome(
        source,
        &outcome,
        measure.as_ref(),
        &anchors,
        observed_until,
        opts.session_gap,
    )?;

    let mut groups = [GroupAcc::default(), GroupAcc::default()];
    let mut reached_value = (0.0, 0u64);
    let mut earliest_anchor = i64::MAX;
    let mut member_outcomes = Vec::new();
    for (u, &anchor) in &anchors {
        let is_member = member_entry.contains_key(u.as_str());
        earliest_anchor = earliest_anchor.min(anchor);
        let v = verdicts.get(u).copied().unwrap_or(Verdict {
            reached: Some(false),
            value: None,
        });
        if is_member {
            member_outcomes.push(MemberOutcome {
                unit: u.clone(),
                entered_at: anchor,
                reached: v.reached,
            });
        }
        let g = &mut groups[usize::from(!is_member)];
        g.units += 1;
        match v.reached {
            None => g.pending += 1,
            Some(r) => {
                g.decided += 1;
                g.reached += u64::from(r);
                let x = v.value.unwrap_or(0.0);
                g.value_sum += x;
                if r {
                    reached_value.0 += x;
                    reached_value.1 += 1;
                }
            }
        }
    }
    let [m, n] = groups;
    let comparison = compare(m.reached, m.decided, n.reached, n.decided);
    let value_at_stake = opts.value.as_ref().map(|measure| {
        let value_per_outcome = if reached_value.1 > 0 {
            reached_value.0 / reached_value.1 as f64
        } else {
            0.0
        };
        // The period members were gathered over: the window, but not before the data.
        let start = window_start.map_or(earliest_anchor, |w| w.max(earliest_anchor)).min(as_of);
        let period = (as_of - start).max(DAY);
        let members_per_quarter = m.decided as f64 * QUARTER as f64 / period as f64;
        let gap = comparison.non_members.rate - comparison.members.rate;
        let per_quarter = members_per_quarter * gap * value_per_outcome;
        ValueAtStake {
            measure: measure.clone(),
            value_per_outcome,
            members_per_quarter,
            period_micros: period,
            per_quarter,
            formula: format!(
                "{per_quarter:.2} per quarter = {:.1} members per quarter ({} decided members × 91.3 days / {:.1} days observed) × ({:.4} non-member rate − {:.4} member rate) × {value_per_outcome:.2} mean {measure} per unit that reached {}",
                members_per_quarter,
                m.decided,
                period as f64 / DAY as f64,
                comparison.non_members.rate,
                comparison.members.rate,
                opts.outcome
            ),
        }
    });
    let pop = (m.units + n.units).max(1);
    member_outcomes.sort_by(|a, b| a.unit.cmp(&b.unit));
    let report = Report {
        segment: opts.segment.clone(),
        outcome: opts.outcome.clone(),
        population: population_label,
        unit: unit.keyword().to_string(),
        as_of,
        observed_until,
        horizon_micros: outcome.horizon,
        population_units: m.units + n.units,
        share_of_population: m.units as f64 / pop as f64,
        members: m.group(opts.value.is_some()),
        non_members: n.group(opts.value.is_some()),
        comparison,
        value_at_stake,
    };
    Ok((report, member_outcomes))
}

#[derive(Default, Clone, Copy)]
struct GroupAcc {
    units: u64,
    pending: u64,
    decided: u64,
    reached: u64,
    value_sum: f64,
}

impl GroupAcc {
    fn group(self, valued: bool) -> Group {
        Group {
            units: self.units,
            pending: self.pending,
            decided: self.decided,
            reached: self.reached,
            mean_value: (valued && self.decided > 0).then(|| self.value_sum / self.decided as f64),
        }
    }
}

/// Compiles a value measure (`sum(purchase.amount)`, `count(purchase)`) into a program whose
/// [`Program::measure`] is its value.
pub fn compile_measure(text: &str, unit: UnitKind) -> Result<Program, InsightError> {
    // A threshold no real count reaches keeps `count` from saturating.
    let src = format!(
        "outcome value of {} {{ {text} > 1000000000000000 }}",
        unit.keyword()
    );
    let bad = |reason: String| InsightError::Input {
        place: format!("--value {text}"),
        reason,
    };
    let file = sequin_lang::parse(&src).map_err(|d| bad(d.render("--value", &src)))?;
    let ok = matches!(
        &file.items[0].body,
        Expr::Criterion(Criterion::Aggregate { .. } | Criterion::Count { .. })
    );
    if !ok {
        return Err(bad(
            "expected sum|avg|min|max(event.property) or count(event)".into(),
        ));
    }
    if let Some(d) = sequin_lang::check(&file, None)
        .into_iter()
        .find(|d| d.is_error())
    {
        return Err(bad(d.render("--value", &src)));
    }
    Ok(Program::compile(&file, "value")?)
}
