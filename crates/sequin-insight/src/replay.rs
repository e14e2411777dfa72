//! Cohort Replay: a segment's journeys as a flow of steps, for the UI's player.
//!
//! Every member's journey starts at a common point — the start of the session in which it
//! entered the segment, or the entry itself — and runs to the end of that session (for
//! session and conversation segments: the unit itself). A step is an event (pages and
//! screens by their name); consecutive repeats fold into one step. Nodes are (step number,
//! step), so the flow is acyclic; at each depth the rarer steps fold into `(other)`, and
//! steps past the limit into `(more)`. Friction signals are counted at the step where the
//! member stood when they were detected, and `ended` counts the journeys that stop at a node
//! (the drop-off). A deterministic sample of journeys, with their timings, drives the player.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sequin_core::event::MessageKind;
use sequin_core::time::Micros;
use sequin_engine::signals::{UnitSignal, for_each_unit, input_columns};
use sequin_lang::ast::UnitKind;
use sequin_signals::{Config, Plan};
use sequin_store::{EventSource, PartitionData, PropColumn};
use serde::Serialize;
use std::sync::Arc;

use crate::{InsightError, units};

/// Where journeys start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStart {
    /// The first event of the session (or conversation) in which the member entered.
    Session,
    /// The event at which the member entered.
    Entry,
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Where journeys start.
    pub start: ReplayStart,
    /// Steps per journey; later steps fold into `(more)`.
    pub steps: usize,
    /// Journeys sent for the player.
    pub sample: usize,
    /// Distinct steps kept per depth; the rest fold into `(other)`.
    pub width: usize,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
    /// "Now" [default: the latest event].
    pub as_of: Option<i64>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            start: ReplayStart::Session,
            steps: 10,
            sample: 400,
            width: 6,
            session_gap: 30 * sequin_core::time::MINUTE,
            as_of: None,
        }
    }
}

/// One node of the flow: a step at a depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowNode {
    /// Index in `nodes`.
    pub id: usize,
    /// Step number (0 = the start).
    pub depth: usize,
    /// The step: an event name, `page NAME`, `screen NAME`, `(other)` or `(more)`.
    pub name: String,
    /// Journeys that pass through it.
    pub units: u64,
    /// Journeys that stop here (the drop-off).
    pub ended: u64,
    /// Members that hit each signal (friction or agent) while they stood here.
    pub signals: std::collections::BTreeMap<String, u64>,
    /// Median time from arriving here to the next step (journeys that go on).
    pub median_dwell_seconds: Option<f64>,
}

/// A transition between steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowLink {
    /// From node id.
    pub source: usize,
    /// To node id.
    pub target: usize,
    /// Journeys that take it.
    pub units: u64,
    /// Median time it takes.
    pub median_seconds: f64,
}

/// A sampled journey step: seconds since the start, node id, signals detected there.
pub type JourneyStep = (f64, usize, Vec<String>);

/// The replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    /// Segment name.
    pub segment: String,
    /// Unit kind.
    pub unit: String,
    /// `session` or `entry`.
    pub start: String,
    /// Members replayed (members with events before as-of).
    pub units: u64,
    /// The player's time axis: 0 ..= this, in seconds (the 95th percentile of the sampled
    /// journeys' ends, so a few very long ones do not flatten the rest).
    pub horizon_seconds: f64,
    /// The flow's nodes.
    pub nodes: Vec<FlowNode>,
    /// The flow's links.
    pub links: Vec<FlowLink>,
    /// Sampled journeys, in the order of a hash of the unit key (stable across calls).
    pub journeys: Vec<Vec<JourneyStep>>,
    /// Per sampled journey, the seconds to its last event: until then the member stands at
    /// its last step (the stall before a drop-off); after it, it has left.
    pub journey_ends: Vec<f64>,
}

/// One member's journey before the flow is built.
struct Journey {
    key_hash: u64,
    /// (offset µs, step label, signal names)
    steps: Vec<(i64, String, Vec<String>)>,
    /// Offset of its last event (µs): it stands at its last step until then.
    end: i64,
}

/// The label of a row: pages and screens by their name, other events by theirs.
fn step_label(data: &PartitionData, row: usize) -> String {
    let name = &data.names[data.name[row] as usize];
    let named = |col: &str, what: &str| -> Option<String> {
        match data.props.get(col) {
            Some(PropColumn::Str(c)) => c.get(row).map(|v| format!("{what} {v}")),
            _ => None,
        }
    };
    // Page and screen messages, and tracks named like them (flat imports), by their name.
    match (MessageKind::from_u8(data.kind[row]), name.as_str()) {
        (MessageKind::Page, _) | (_, "page_view") => named("p.page", "page"),
        (MessageKind::Screen, _) | (_, "screen_view") => named("p.screen", "screen"),
        _ => None,
    }
    .unwrap_or_else(|| name.clone())
}

fn fx(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// The rows of a member's journey: from the start to the end of the session (users), or
/// the whole unit (sessions, conversations).
fn journey_rows(
    data: &PartitionData,
    rows: &[usize],
    unit: UnitKind,
    entered_at: i64,
    opts: &ReplayOptions,
) -> std::ops::Range<usize> {
    // Index (into `rows`) of the entry event: the last event at or before entry.
    let entry = rows
        .partition_point(|&r| data.time[r] <= entered_at)
        .saturating_sub(1);
    // An entry by a timer (an absence, a window) has no event of its own: a journey from the
    // entry starts at the first event after it.
    let first_after = rows.partition_point(|&r| data.time[r] < entered_at);
    let gap_before =
        |i: usize| i > 0 && data.time[rows[i]] - data.time[rows[i - 1]] > opts.session_gap;
    let (mut start, mut end) = (0, rows.len());
    if unit == UnitKind::Users {
        start = entry;
        while start > 0 && !gap_before(start) {
            start -= 1;
        }
        end = entry + 1;
        while end < rows.len() && !gap_before(end) {
            end += 1;
        }
    }
    if opts.start == ReplayStart::Entry {
        if data.time[rows[entry]] == entered_at {
            start = entry;
        } else {
            start = first_after;
            end = rows.len();
            if unit == UnitKind::Users {
                end = (start + 1).min(rows.len());
                while end < rows.len() && !gap_before(end) {
                    end += 1;
                }
            }
        }
    }
    start..end.max(start)
}

fn journey_of(
    data: &PartitionData,
    key: &str,
    rows: &[usize],
    signals: &[UnitSignal<'_>],
    unit: UnitKind,
    entered_at: i64,
    opts: &ReplayOptions,
) -> Option<Journey> {
    let range = journey_rows(data, rows, unit, entered_at, opts);
    if range.is_empty() {
        return None;
    }
    let t0 = data.time[rows[range.start]];
    let end = data.time[rows[range.end - 1]] - t0;
    let mut steps: Vec<(i64, String, Vec<String>)> = Vec::new();
    // Which step each row of the range belongs to (None: not behaviour, before any step).
    let mut step_of_row: Vec<Option<usize>> = Vec::with_capacity(range.len());
    for &r in &rows[range.clone()] {
        if !units::is_behaviour(data, r) {
            step_of_row.push(steps.len().checked_sub(1));
            continue;
        }
        let label = step_label(data, r);
        if steps.last().is_none_or(|(_, l, _)| *l != label) {
            steps.push((data.time[r] - t0, label, Vec::new()));
        }
        step_of_row.push(Some(steps.len() - 1));
    }
    if steps.is_empty() {
        return None;
    }
    for s in signals {
        // `pos` rows of the unit precede the signal: it happened at the step of the last.
        let Some(last) = s.pos.checked_sub(1) else {
            continue;
        };
        if !range.contains(&last) {
            continue;
        }
        let step = step_of_row[last - range.start].unwrap_or(0);
        let name = s.signal.kind.name();
        // Counted once per member and step: "how many stood here and hit it".
        if !steps[step].2.iter().any(|x| x == name) {
            steps[step].2.push(name.to_string());
        }
    }
    Some(Journey {
        key_hash: fx(key),
        steps,
        end,
    })
}

fn median_f(v: &mut [i64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    };
    Some((m / 1e5).round() / 10.0)
}

/// Builds the replay of `members` (unit key → entry time) of a `unit` segment.
pub fn replay(
    source: &dyn EventSource,
    segment: &str,
    unit: UnitKind,
    members: &FxHashMap<String, i64>,
    signal_config: Config,
    opts: &ReplayOptions,
) -> Result<Replay, InsightError> {
    let as_of = opts
        .as_of
        .or_else(|| source.latest_time())
        .unwrap_or(i64::MIN);
    let plan = Plan::all(Arc::new(signal_config));
    let proj = units::projection(unit, &input_columns());
    let mut with_page = match proj {
        sequin_store::Projection::Columns(c) => c,
        sequin_store::Projection::All | sequin_store::Projection::Except(_) => Vec::new(),
    };
    with_page.extend(["p.page".to_string(), "p.screen".to_string()]);
    with_page.sort();
    with_page.dedup();
    let proj = sequin_store::Projection::Columns(with_page);
    let parts: Vec<Result<Vec<Journey>, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            let mut out = Vec::new();
            for_each_unit(
                &data,
                unit,
                opts.session_gap,
                as_of,
                Some(&plan),
                |key, rows, sigs| {
                    if let Some(&entered) = members.get(key)
                        && let Some(j) = journey_of(&data, key, rows, sigs, unit, entered, opts)
                    {
                        out.push(j);
                    }
                },
            );
            Ok(out)
        })
        .collect();
    let mut journeys = Vec::new();
    for p in parts {
        journeys.extend(p?);
    }
    journeys.sort_by_key(|j| j.key_hash);
    Ok(build_flow(segment, unit, journeys, opts))
}

fn build_flow(
    segment: &str,
    unit: UnitKind,
    journeys: Vec<Journey>,
    opts: &ReplayOptions,
) -> Replay {
    let steps = opts.steps.max(1);
    // Which labels keep a node of their own at each depth: the most common ones.
    let mut counts: Vec<FxHashMap<&str, u64>> = vec![FxHashMap::default(); steps];
    for j in &journeys {
        for (d, (_, label, _)) in j.steps.iter().take(steps).enumerate() {
            *counts[d].entry(label).or_default() += 1;
        }
    }
    let kept: Vec<FxHashMap<&str, ()>> = counts
        .iter()
        .map(|c| {
            let mut v: Vec<(&&str, &u64)> = c.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.into_iter()
                .take(opts.width.max(1))
                .map(|(l, _)| (*l, ()))
                .collect()
        })
        .collect();

    let mut node_ids: FxHashMap<(usize, String), usize> = FxHashMap::default();
    let mut nodes: Vec<FlowNode> = Vec::new();
    let mut dwell: Vec<Vec<i64>> = Vec::new();
    let mut link_times: FxHashMap<(usize, usize), Vec<i64>> = FxHashMap::default();
    let mut sampled: Vec<Vec<JourneyStep>> = Vec::new();
    let mut lengths: Vec<i64> = Vec::new();
    let mut ends: Vec<f64> = Vec::new();
    for j in &journeys {
        let mut path: Vec<(i64, usize, Vec<String>)> = Vec::new();
        for (d, (offset, label, sigs)) in j.steps.iter().enumerate() {
            let (depth, name) = if d >= steps {
                (steps, "(more)".to_string())
            } else if kept[d].contains_key(label.as_str()) {
                (d, label.clone())
            } else {
                (d, "(other)".to_string())
            };
            let id = *node_ids.entry((depth, name.clone())).or_insert_with(|| {
                nodes.push(FlowNode {
                    id: nodes.len(),
                    depth,
                    name,
                    units: 0,
                    ended: 0,
                    signals: Default::default(),
                    median_dwell_seconds: None,
                });
                dwell.push(Vec::new());
                nodes.len() - 1
            });
            // Past the limit every step is the one `(more)` node: fold them.
            match path.last_mut() {
                Some(last) if last.1 == id => {
                    for sig in sigs {
                        if !last.2.contains(sig) {
                            last.2.push(sig.clone());
                        }
                    }
                }
                _ => path.push((*offset, id, sigs.clone())),
            }
        }
        for (i, (offset, id, sigs)) in path.iter().enumerate() {
            let node = &mut nodes[*id];
            node.units += 1;
            for s in sigs {
                *node.signals.entry(s.clone()).or_default() += 1;
            }
            match path.get(i + 1) {
                Some((next_offset, next_id, _)) => {
                    dwell[*id].push(next_offset - offset);
                    link_times
                        .entry((*id, *next_id))
                        .or_default()
                        .push(next_offset - offset);
                }
                None => node.ended += 1,
            }
        }
        if sampled.len() < opts.sample {
            lengths.push(j.end);
            ends.push(((j.end as f64) / 1e5).round() / 10.0);
            sampled.push(
                path.into_iter()
                    .map(|(o, id, s)| (((o as f64) / 1e5).round() / 10.0, id, s))
                    .collect(),
            );
        }
    }
    for (node, d) in nodes.iter_mut().zip(dwell.iter_mut()) {
        node.median_dwell_seconds = median_f(d);
    }
    let mut links: Vec<FlowLink> = link_times
        .into_iter()
        .map(|((source, target), mut times)| FlowLink {
            source,
            target,
            units: times.len() as u64,
            median_seconds: median_f(&mut times).unwrap_or(0.0),
        })
        .collect();
    links.sort_by_key(|l| (l.source, l.target));
    lengths.sort_unstable();
    let p95 = lengths
        .get((lengths.len() * 95 / 100).min(lengths.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    Replay {
        segment: segment.to_string(),
        unit: unit.keyword().to_string(),
        start: match opts.start {
            ReplayStart::Session => "session".into(),
            ReplayStart::Entry => "entry".into(),
        },
        units: journeys.len() as u64,
        horizon_seconds: ((p95 as f64 / 1e6) * 1.05).max(1.0),
        nodes,
        links,
        journeys: sampled,
        journey_ends: ends,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey(key: &str, steps: &[(i64, &str, &[&str])]) -> Journey {
        Journey {
            key_hash: fx(key),
            steps: steps
                .iter()
                .map(|(t, l, s)| {
                    (
                        t * 1_000_000,
                        l.to_string(),
                        s.iter().map(|x| x.to_string()).collect(),
                    )
                })
                .collect(),
            // It lingers 5 s at its last step.
            end: steps.last().map_or(0, |s| (s.0 + 5) * 1_000_000),
        }
    }

    #[test]
    fn flow_counts_every_journey_once_per_node_and_marks_drop_offs_and_signals() {
        let opts = ReplayOptions {
            steps: 3,
            width: 1,
            ..ReplayOptions::default()
        };
        let js = vec![
            journey(
                "a",
                &[
                    (0, "land", &[]),
                    (10, "cart", &["rage_click"]),
                    (30, "pay", &[]),
                ],
            ),
            journey("b", &[(0, "land", &[]), (20, "cart", &[])]),
            journey(
                "c",
                &[
                    (0, "land", &[]),
                    (5, "search", &[]),
                    (6, "cart", &[]),
                    (7, "x", &["slow_load"]),
                    (9, "y", &["slow_load"]),
                ],
            ),
        ];
        let r = build_flow("s", UnitKind::Users, js, &opts);
        let node = |d: usize, n: &str| {
            r.nodes
                .iter()
                .find(|x| x.depth == d && x.name == n)
                .unwrap()
        };
        assert_eq!(node(0, "land").units, 3);
        // Width 1: `search` is rarer than `cart` at depth 1.
        assert_eq!(node(1, "cart").units, 2);
        assert_eq!(node(1, "(other)").units, 1);
        assert_eq!(node(1, "cart").ended, 1);
        assert_eq!(node(1, "cart").signals.get("rage_click"), Some(&1));
        assert_eq!(node(1, "cart").median_dwell_seconds, Some(20.0));
        // c's steps 3 and 4 fold into one `(more)` node.
        assert_eq!(node(3, "(more)").units, 1);
        assert_eq!(node(3, "(more)").ended, 1);
        assert_eq!(node(3, "(more)").signals.get("slow_load"), Some(&1));
        let land_cart = r
            .links
            .iter()
            .find(|l| l.source == node(0, "land").id && l.target == node(1, "cart").id)
            .unwrap();
        assert_eq!((land_cart.units, land_cart.median_seconds), (2, 15.0));
        // Every journey ends exactly once.
        assert_eq!(r.nodes.iter().map(|n| n.ended).sum::<u64>(), 3);
        assert_eq!(r.journeys.len(), 3);
        assert_eq!(r.journeys.iter().map(|j| j.len()).max(), Some(4));
        // Ends come with the journeys; c's 4th and 5th steps fold into one `(more)` node,
        // each signal counted once.
        assert_eq!(r.journey_ends.len(), 3);
        assert!(r.journey_ends.contains(&35.0), "{:?}", r.journey_ends);
    }
}
