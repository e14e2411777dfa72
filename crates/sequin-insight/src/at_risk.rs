//! Predictive churn: the segments whose members go on to reach an outcome (churn,
//! escalation, cancellation) more often than everyone else, and the units in them now whose
//! outcome is still open.
//!
//! Each segment of the outcome's unit kind is reported against the outcome (as `report`
//! does, population = active units or a base). A segment *precedes* the outcome when its
//! members reach it more often (relative risk above 1) and the difference survives
//! Benjamini–Hochberg at the given false-discovery rate over all segments tried. Its
//! members whose outcome is still open are at risk: pending (the outcome's horizon has not
//! passed) or, for an outcome without a horizon, not reached yet. A unit's risk is the
//! highest member rate among the preceding segments it is in.

use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_lang::SegFile;
use sequin_lang::ast::ItemKind;
use sequin_store::EventSource;
use serde::Serialize;

use crate::InsightError;
use crate::report::{Report, ReportOptions, report_detailed};
use crate::stats::benjamini_hochberg;

/// What to look for.
#[derive(Debug, Clone)]
pub struct AtRiskOptions {
    /// The outcome.
    pub outcome: String,
    /// Base segment (population) [default: active units].
    pub base: Option<String>,
    /// Units to list.
    pub top: usize,
    /// False-discovery rate over the segments tried.
    pub fdr: f64,
    /// "Now" [default: the latest event].
    pub as_of: Option<i64>,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
}

/// A segment that precedes the outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preceding {
    /// Segment name.
    pub segment: String,
    /// Benjamini–Hochberg adjusted p-value.
    pub q_value: f64,
    /// Members whose outcome is open now.
    pub at_risk_now: u64,
    /// The segment's report.
    pub report: Report,
}

/// A unit at risk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRiskUnit {
    /// Unit key.
    pub unit: String,
    /// Highest member outcome rate among its preceding segments.
    pub risk: f64,
    /// The preceding segments it is in, riskiest first.
    pub segments: Vec<String>,
    /// Its latest entry into one of them (µs).
    pub entered_at: i64,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRisk {
    /// Outcome name.
    pub outcome: String,
    /// Segments tried.
    pub segments_tried: usize,
    /// Those that precede the outcome, by relative risk.
    pub preceding: Vec<Preceding>,
    /// Units at risk now (all of them counted here).
    pub units_at_risk: u64,
    /// The riskiest units, at most `top`.
    pub units: Vec<AtRiskUnit>,
}

/// Finds the preceding segments and their units at risk.
pub fn at_risk(
    source: &dyn EventSource,
    file: &SegFile,
    opts: &AtRiskOptions,
) -> Result<AtRisk, InsightError> {
    let item = crate::definition(file, &opts.outcome, "--outcome")?;
    let segments: Vec<String> = file
        .items
        .iter()
        .filter(|i| {
            i.kind == ItemKind::Segment
                && i.unit == item.unit
                && Some(&i.name.name) != opts.base.as_ref()
        })
        .map(|i| i.name.name.clone())
        .collect();
    if segments.is_empty() {
        return Err(InsightError::Input {
            place: "--segments".into(),
            reason: format!(
                "no segment of {} to try against `{}`",
                item.unit.keyword(),
                opts.outcome
            ),
        });
    }
    let mut tried = Vec::new();
    for s in &segments {
        let (r, members) = report_detailed(
            source,
            file,
            &ReportOptions {
                segment: s.clone(),
                outcome: opts.outcome.clone(),
                base: opts.base.clone(),
                value: None,
                as_of: opts.as_of,
                session_gap: opts.session_gap,
            },
        )?;
        tried.push((s.clone(), r, members));
    }
    // Benjamini–Hochberg over every segment tried.
    let m = tried.len() as f64;
    let p: Vec<f64> = tried.iter().map(|t| t.1.comparison.p_value).collect();
    let q = benjamini_hochberg(&p, m);
    let mut preceding = Vec::new();
    let mut units: FxHashMap<String, AtRiskUnit> = FxHashMap::default();
    for (i, (name, r, members)) in tried.into_iter().enumerate() {
        let rr = r.comparison.relative_risk.map_or(0.0, |x| x.value);
        if rr <= 1.0 || q[i] > opts.fdr {
            continue;
        }
        let bounded = r.horizon_micros.is_some();
        let open: Vec<_> = members
            .into_iter()
            .filter(|m| {
                if bounded {
                    m.reached.is_none()
                } else {
                    m.reached != Some(true)
                }
            })
            .collect();
        let risk = r.comparison.members.rate;
        for m in &open {
            let u = units.entry(m.unit.clone()).or_insert_with(|| AtRiskUnit {
                unit: m.unit.clone(),
                risk,
                segments: Vec::new(),
                entered_at: m.entered_at,
            });
            u.risk = u.risk.max(risk);
            u.entered_at = u.entered_at.max(m.entered_at);
            u.segments.push(name.clone());
        }
        preceding.push((
            rr,
            Preceding {
                segment: name,
                q_value: q[i],
                at_risk_now: open.len() as u64,
                report: r,
            },
        ));
    }
    preceding.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.segment.cmp(&b.1.segment))
    });
    let rate_of: FxHashMap<String, f64> = preceding
        .iter()
        .map(|(_, p)| (p.segment.clone(), p.report.comparison.members.rate))
        .collect();
    let mut list: Vec<AtRiskUnit> = units.into_values().collect();
    for u in &mut list {
        u.segments
            .sort_by(|a, b| rate_of[b].total_cmp(&rate_of[a]).then_with(|| a.cmp(b)));
    }
    list.sort_by(|a, b| {
        b.risk
            .total_cmp(&a.risk)
            .then(b.entered_at.cmp(&a.entered_at))
            .then_with(|| a.unit.cmp(&b.unit))
    });
    let total = list.len() as u64;
    list.truncate(opts.top);
    Ok(AtRisk {
        outcome: opts.outcome.clone(),
        segments_tried: segments.len(),
        preceding: preceding.into_iter().map(|(_, p)| p).collect(),
        units_at_risk: total,
        units: list,
    })
}
