//! Automatic discovery: the behavioural signatures whose members differ most in an outcome
//! (DESIGN §4), found without a hand-written segment.
//!
//! 1. **Census.** Every unit of the population (a base segment's members, or every unit
//!    with behaviour) is read once. Its events become items: the event name, the name with
//!    one categorical property value (`error where code == 4022`), and the name with a
//!    numeric property above its 90th or 99th percentile (`payment_step_view where
//!    render_ms > 8000`). Its attributes (latest `os.name`, `app.version`, …) become unit
//!    items. The outcome is decided once per event, as if the unit entered a segment at
//!    that event (same anchored semantics as `report`), and once at the population anchor.
//!    A population larger than the search sample is searched on a uniform sample of its
//!    units: the census and the items are taken on the sample alone, while every unit gets
//!    its outcome verdicts (verification reads them).
//! 2. **Search.** Candidates are an optional attribute value, then up to L ordered steps
//!    (gaps allowed). A candidate's members are found by projection (each unit's earliest
//!    completion, which is when the engine says it enters), and its quality is
//!    members × |members' rate − the rest's rate|. Top-k branch and bound: a refinement
//!    has at most as many members as its parent, and the rate gap is at most 1, so a
//!    candidate with no more members than the k-th best quality is not refined
//!    (optimistic-estimate pruning); there is no support threshold beyond a small floor
//!    (`min_units`) under which no rate means anything. The places kept are diverse: of
//!    two candidates whose effects lie on the same members, one gives way
//!    ([`PopulationBits::redundant_of`]), so variants of one strong effect cannot fill
//!    every place and hide a smaller, different one. Candidates are explored one after
//!    another (each scan of members runs on every core, joined in member order), so the
//!    result does not depend on thread timing.
//! 3. **Verification.** The best candidates are written as segment definitions, checked,
//!    compiled and evaluated by the engine in one pass; their reported size is that
//!    membership (within the population), and their rates come from it. p-values (Fisher /
//!    z-test, as `report`) are adjusted by Benjamini–Hochberg over every candidate scored
//!    in the search; findings above the false-discovery rate are dropped, as are findings
//!    that say little beyond a better one (the search's rule, on the engine's members):
//!    redundant refinements or restatements. The rest are ranked by impact (members × rate
//!    gap).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_core::{Text, Value};
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_engine::outcome::{Outcome, OutcomeJudge};
use sequin_engine::signals;
use sequin_lang::SegFile;
use sequin_lang::ast::UnitKind;
use sequin_lang::fmt::{event_name, quote};
use sequin_signals::{Plan, Signal};
use sequin_store::data::NULL_KEY;
use sequin_store::{EventSource, PartitionData, Projection, PropColumn};
use serde::Serialize;

use crate::stats::{Comparison, benjamini_hochberg, compare};
use crate::{InsightError, units};

/// What to discover.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// The outcome's name.
    pub outcome: String,
    /// Base segment (the population); None: every unit with behaviour.
    pub base: Option<String>,
    /// Findings to print.
    pub top: usize,
    /// Longest event pattern, in steps.
    pub max_length: usize,
    /// Smallest group worth a rate.
    pub min_units: u64,
    /// False-discovery rate (Benjamini–Hochberg).
    pub fdr: f64,
    /// "Now" [default: the latest event].
    pub as_of: Option<i64>,
    /// Inactivity that ends a session or conversation.
    pub session_gap: Micros,
    /// Offer derived signals (`signal.rage_click` …) as candidate steps too.
    pub signals: bool,
    /// Event names never offered as steps (steps of the outcome itself, such as the
    /// `payment_submit` before every `purchase`).
    pub exclude: Vec<String>,
    /// Offer steps of the outcome itself too (see [`Discovery::outcome_steps`]); by
    /// default they are found and left out.
    pub keep_outcome_steps: bool,
    /// Search a uniform sample of about this many units when the population is larger
    /// (candidates are still verified on every unit). None: search every unit.
    pub search_sample: Option<usize>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Rank by impact (1 = first).
    pub rank: usize,
    /// The segment's name in `definition`.
    pub name: String,
    /// A ready-to-save segment definition.
    pub definition: String,
    /// Attribute conditions, as written.
    pub attributes: Vec<String>,
    /// Event steps, as written.
    pub steps: Vec<String>,
    /// Members within the population (= `eval` membership ∩ population).
    pub members: u64,
    /// Members that entered only after reaching the outcome (in neither rate).
    pub after_outcome: u64,
    /// Members / population.
    pub share: f64,
    /// Rates, relative risk, difference and p-value, as `report` computes them.
    pub comparison: Comparison,
    /// Benjamini–Hochberg adjusted p-value.
    pub q_value: f64,
    /// Members (decided) × |rate difference| × (1 − share): units that reach (or miss)
    /// the outcome with the difference, discounted by coverage.
    pub impact: f64,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discovery {
    /// Outcome name.
    pub outcome: String,
    /// Unit kind.
    pub unit: String,
    /// `base segment NAME` or `units with behaviour`.
    pub population: String,
    /// Population size.
    pub population_units: u64,
    /// Outcome rate over the population (decided units, at their population anchor).
    pub population_rate: f64,
    /// Items (event names, name + property value, thresholds, attributes) considered.
    pub items: usize,
    /// Units the search ran over (a sample of the population when it is large; findings are
    /// verified on every unit).
    pub searched_units: u64,
    /// Candidates scored during the search (the hypotheses counted by the FDR control).
    pub candidates_scored: u64,
    /// Candidates verified with the engine.
    pub candidates_verified: usize,
    /// Findings, by impact.
    pub findings: Vec<Finding>,
    /// Steps left out as steps of the outcome itself: almost no unit that never takes
    /// one reaches the outcome (the `payment_submit` before every `purchase`), so each
    /// would only restate the outcome. Empty with `keep_outcome_steps`.
    pub outcome_steps: Vec<String>,
}

/// A candidate item.
#[derive(Debug, Clone, PartialEq)]
enum ItemDef {
    /// An event by name.
    Name(String),
    /// An event with a property equal to a value.
    Eq(String, String, Value),
    /// An event with a numeric property above a threshold.
    Gt(String, String, f64),
    /// A unit attribute equal to a value.
    Attr(String, Value),
}

impl ItemDef {
    fn text(&self) -> String {
        match self {
            ItemDef::Name(n) => event_name(n),
            ItemDef::Eq(n, p, v) => format!("{} where {p} == {}", event_name(n), literal(v)),
            ItemDef::Gt(n, p, t) => format!("{} where {p} > {}", event_name(n), number(*t)),
            ItemDef::Attr(p, v) => format!("{p} == {}", literal(v)),
        }
    }

    /// The condition a refinement adds to its event (`element_id == "pay-button"`).
    fn condition(&self) -> Option<String> {
        match self {
            ItemDef::Eq(_, p, v) => Some(format!("{p} == {}", literal(v))),
            ItemDef::Gt(_, p, t) => Some(format!("{p} > {}", number(*t))),
            ItemDef::Name(_) | ItemDef::Attr(..) => None,
        }
    }

    /// The event an event item is about (None for attributes).
    fn event(&self) -> Option<&str> {
        match self {
            ItemDef::Name(n) | ItemDef::Eq(n, _, _) | ItemDef::Gt(n, _, _) => Some(n),
            ItemDef::Attr(..) => None,
        }
    }

    fn slug(&self) -> String {
        let raw = match self {
            ItemDef::Name(n) => n.clone(),
            ItemDef::Eq(n, _, v) => format!("{n}_{}", plain(v)),
            ItemDef::Gt(n, p, _) => format!("{n}_high_{p}"),
            ItemDef::Attr(p, v) => format!("{p}_{}", plain(v)),
        };
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Json(s) => s.clone(),
        other => other.to_string(),
    }
}

fn literal(v: &Value) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Json(s) => quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => number(*f),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A property name the language can write after `where` (and an attribute path).
fn writable(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|part| {
            let mut c = part.chars();
            c.next()
                .is_some_and(|x| x.is_ascii_alphabetic() || x == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
                && !sequin_lang::parser::is_reserved(part)
        })
}

/// Distinct values beyond which a property is not categorical.
const MAX_CATEGORIES: usize = 30;

#[derive(Default)]
struct PropStats {
    values: FxHashMap<ValueKey, u64>,
    overflow: bool,
    numeric: Vec<f64>,
    seen_numbers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    S(Text),
    I(i64),
    B(bool),
}

impl ValueKey {
    fn of(v: &Value) -> Option<ValueKey> {
        match v {
            Value::Str(s) => Some(ValueKey::S(s.clone())),
            Value::Int(i) => Some(ValueKey::I(*i)),
            Value::Bool(b) => Some(ValueKey::B(*b)),
            _ => None,
        }
    }

    fn value(&self) -> Value {
        match self {
            ValueKey::S(s) => Value::Str(s.clone()),
            ValueKey::I(i) => Value::Int(*i),
            ValueKey::B(b) => Value::Bool(*b),
        }
    }
}

impl PropStats {
    fn add(&mut self, v: &Value) {
        if let Some(x) = v.as_f64() {
            self.seen_numbers += 1;
            // Keep a bounded, evenly spread sample for the percentiles.
            if self.numeric.len() < 20_000 {
                self.numeric.push(x);
            } else {
                let i =
                    (self.seen_numbers.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % 20_000;
                self.numeric[i] = x;
            }
        }
        if self.overflow {
            return;
        }
        if let Some(k) = ValueKey::of(v) {
            *self.values.entry(k).or_insert(0) += 1;
            if self.values.len() > MAX_CATEGORIES {
                self.overflow = true;
                self.values.clear();
            }
        }
    }

    /// Adds `n` occurrences of the categorical value `k` (text, counted by dictionary code).
    fn add_count(&mut self, k: ValueKey, n: u64) {
        if self.overflow {
            return;
        }
        *self.values.entry(k).or_insert(0) += n;
        if self.values.len() > MAX_CATEGORIES {
            self.overflow = true;
            self.values.clear();
        }
    }

    fn merge(&mut self, other: PropStats) {
        self.seen_numbers += other.seen_numbers;
        for x in other.numeric {
            if self.numeric.len() < 20_000 {
                self.numeric.push(x);
            }
        }
        if self.overflow || other.overflow {
            self.overflow = true;
            self.values.clear();
            return;
        }
        for (k, n) in other.values {
            *self.values.entry(k).or_insert(0) += n;
        }
        if self.values.len() > MAX_CATEGORIES {
            self.overflow = true;
            self.values.clear();
        }
    }
}

/// (event name, property) → stats; attribute path → stats.
#[derive(Default)]
struct Census {
    props: FxHashMap<(String, String), PropStats>,
    attrs: FxHashMap<String, PropStats>,
    names: FxHashMap<String, u64>,
}

impl Census {
    fn merge(&mut self, other: Census) {
        for (k, s) in other.props {
            self.props.entry(k).or_default().merge(s);
        }
        for (k, s) in other.attrs {
            self.attrs.entry(k).or_default().merge(s);
        }
        for (k, n) in other.names {
            *self.names.entry(k).or_insert(0) += n;
        }
    }
}

/// Attribute columns (`c.…`, `t.…`) by path, and event property columns (`p.…`).
fn attribute_path(column: &str) -> Option<&str> {
    column
        .strip_prefix("c.")
        .or_else(|| column.strip_prefix("t."))
}

/// Signal properties never offered as candidates (coordinates, free text).
const SIGNAL_PROPS_SKIPPED: &[&str] = &["x", "y", "message"];

/// One partition's units with their rows and signals, found once (signal detection is the
/// costly part) for both the census and the encoding.
struct PartUnits {
    data: PartitionData,
    /// Unit `i` is `keys[i]`; its rows are `rows[row_start[i]..row_start[i + 1]]` and its
    /// signals `signals[sig_start[i]..sig_start[i + 1]]` (the row position before which
    /// each comes, then the signal).
    keys: Vec<String>,
    row_start: Vec<usize>,
    rows: Vec<usize>,
    sig_start: Vec<usize>,
    signals: Vec<(usize, Signal)>,
}

impl PartUnits {
    /// The units of `data` (and their signals, placed as evaluation places them).
    fn of(data: PartitionData, as_of: i64, cx: &SignalCx<'_>) -> PartUnits {
        let mut keys = Vec::new();
        let mut row_start = vec![0];
        let mut rows = Vec::with_capacity(data.len());
        let mut sig_start = vec![0];
        let mut signals = Vec::new();
        signals::for_each_unit(&data, cx.unit, cx.gap, as_of, cx.plan, |key, r, sigs| {
            keys.push(key.to_string());
            rows.extend_from_slice(r);
            row_start.push(rows.len());
            signals.extend(sigs.iter().map(|s| (s.pos, s.signal.clone())));
            sig_start.push(signals.len());
        });
        PartUnits {
            data,
            keys,
            row_start,
            rows,
            sig_start,
            signals,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn rows(&self, i: usize) -> &[usize] {
        &self.rows[self.row_start[i]..self.row_start[i + 1]]
    }

    fn signals(&self, i: usize) -> &[(usize, Signal)] {
        &self.signals[self.sig_start[i]..self.sig_start[i + 1]]
    }
}

/// The census of a partition's units in the search sample (`sample`: a key's place in it;
/// None: every unit, and every row up to `as_of`).
fn census_of(part: &PartUnits, as_of: i64, sample: Option<&dyn Fn(&str) -> bool>) -> Census {
    let data = &part.data;
    let mut c = Census::default();
    // The rows counted, and the units whose signals are.
    let (counted, rows): (Vec<usize>, Vec<bool>) = match sample {
        None => (
            (0..part.len()).collect(),
            data.time.iter().map(|&t| t <= as_of).collect(),
        ),
        Some(in_sample) => {
            let units: Vec<usize> = (0..part.len())
                .filter(|&i| in_sample(&part.keys[i]))
                .collect();
            let mut rows = vec![false; data.len()];
            for &i in &units {
                for &r in part.rows(i) {
                    rows[r] = true;
                }
            }
            (units, rows)
        }
    };
    // Signals, placed among the outcome's units as evaluation places them.
    for &i in &counted {
        for (_, signal) in part.signals(i) {
            let name = signal.kind.event_name();
            *c.names.entry(name.to_string()).or_insert(0) += 1;
            for (prop, v) in &signal.props {
                if SIGNAL_PROPS_SKIPPED.contains(prop) {
                    continue;
                }
                c.props
                    .entry((name.to_string(), prop.to_string()))
                    .or_default()
                    .add(v);
            }
        }
    }
    let live: Vec<bool> = (0..data.len())
        .map(|r| rows[r] && units::is_behaviour(data, r))
        .collect();
    for (r, &ok) in live.iter().enumerate() {
        if ok {
            *c.names
                .entry(data.names[data.name[r] as usize].clone())
                .or_insert(0) += 1;
        }
    }
    for (key, col) in &data.props {
        if let Some(prop) = key.strip_prefix("p.") {
            if !writable(prop) {
                continue;
            }
            let mut by_name: FxHashMap<u32, PropStats> = FxHashMap::default();
            if let PropColumn::Str(text) = col {
                // Text is counted by dictionary code, and copied once per distinct value.
                let mut counts: FxHashMap<(u32, u32), u64> = FxHashMap::default();
                for (r, &ok) in live.iter().enumerate() {
                    let code = text.keys[r];
                    if ok && code != NULL_KEY {
                        *counts.entry((data.name[r], code)).or_insert(0) += 1;
                    }
                }
                for ((n, code), count) in counts {
                    by_name.entry(n).or_default().add_count(
                        ValueKey::S((text.dict[code as usize].clone()).into()),
                        count,
                    );
                }
            } else {
                for (r, &ok) in live.iter().enumerate() {
                    if ok && let Some(v) = col.get(r) {
                        by_name.entry(data.name[r]).or_default().add(&v);
                    }
                }
            }
            for (n, s) in by_name {
                c.props
                    .insert((data.names[n as usize].clone(), prop.to_string()), s);
            }
        } else if let Some(path) = attribute_path(key) {
            if !writable(path) {
                continue;
            }
            let s = c.attrs.entry(path.to_string()).or_default();
            if let PropColumn::Str(text) = col {
                let mut counts = vec![0u64; text.dict.len()];
                for (&code, &counted) in text.keys.iter().zip(&rows) {
                    if counted && code != NULL_KEY {
                        counts[code as usize] += 1;
                    }
                }
                for (code, &count) in counts.iter().enumerate() {
                    if count > 0 {
                        s.add_count(ValueKey::S(text.dict[code].as_str().into()), count);
                    }
                }
            } else {
                for (r, &counted) in rows.iter().enumerate() {
                    if counted && let Some(v) = col.get(r) {
                        s.add(&v);
                    }
                }
            }
        }
    }
    c
}

/// Rounds to two significant digits (8123 → 8100), so thresholds read like a person's.
fn round2(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mag = 10f64.powi(x.abs().log10().floor() as i32 - 1);
    (x / mag).round() * mag
}

/// The item vocabulary.
struct Vocabulary {
    items: Vec<ItemDef>,
    name_item: FxHashMap<String, u32>,
    /// Per event name: (property, categorical values → item, thresholds ascending).
    by_name: FxHashMap<String, Vec<PropItems>>,
    /// Attribute path → value → item.
    attrs: Vec<(String, FxHashMap<ValueKey, u32>)>,
}

struct PropItems {
    prop: String,
    values: FxHashMap<ValueKey, u32>,
    thresholds: Vec<(f64, u32)>,
}

impl PropItems {
    /// The items an event whose property has value `v` carries.
    fn push_items(&self, v: &Value, out: &mut Vec<u32>) {
        if let Some(&i) = ValueKey::of(v).and_then(|k| self.values.get(&k)) {
            out.push(i);
        }
        if let Some(x) = v.as_f64() {
            for &(t, i) in &self.thresholds {
                if x > t {
                    out.push(i);
                }
            }
        }
    }
}

fn vocabulary(census: Census, min_units: u64, exclude: &[String]) -> Vocabulary {
    let mut items = Vec::new();
    let mut name_item = FxHashMap::default();
    let mut names: Vec<(String, u64)> = census
        .names
        .into_iter()
        .filter(|(n, _)| !exclude.contains(n))
        .collect();
    names.sort();
    for (n, count) in names {
        if count >= min_units {
            name_item.insert(n.clone(), items.len() as u32);
            items.push(ItemDef::Name(n));
        }
    }
    let mut props: Vec<((String, String), PropStats)> = census.props.into_iter().collect();
    props.sort_by(|a, b| a.0.cmp(&b.0));
    let mut by_name: FxHashMap<String, Vec<PropItems>> = FxHashMap::default();
    for ((name, prop), mut s) in props {
        if !name_item.contains_key(&name) {
            continue;
        }
        let mut values = FxHashMap::default();
        let mut thresholds = Vec::new();
        if !s.overflow && s.values.len() >= 2 {
            let mut vs: Vec<(ValueKey, u64)> = s.values.into_iter().collect();
            vs.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)))
            });
            for (k, n) in vs {
                if n >= min_units {
                    values.insert(k.clone(), items.len() as u32);
                    items.push(ItemDef::Eq(name.clone(), prop.clone(), k.value()));
                }
            }
        } else if s.overflow && s.numeric.len() as u64 >= min_units {
            s.numeric.sort_by(f64::total_cmp);
            let at = |q: f64| s.numeric[((s.numeric.len() - 1) as f64 * q) as usize];
            let mut ts: Vec<f64> = [0.5, 0.75, 0.9, 0.95, 0.99]
                .iter()
                .map(|&q| round2(at(q)))
                .collect();
            ts.dedup();
            for t in ts {
                if t < *s.numeric.last().unwrap() {
                    thresholds.push((t, items.len() as u32));
                    items.push(ItemDef::Gt(name.clone(), prop.clone(), t));
                }
            }
        }
        if !values.is_empty() || !thresholds.is_empty() {
            by_name.entry(name).or_default().push(PropItems {
                prop,
                values,
                thresholds,
            });
        }
    }
    let mut attr_list: Vec<(String, PropStats)> = census.attrs.into_iter().collect();
    attr_list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut attrs = Vec::new();
    for (path, s) in attr_list {
        if s.overflow || s.values.len() < 2 {
            continue;
        }
        let mut vs: Vec<(ValueKey, u64)> = s.values.into_iter().collect();
        vs.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)))
        });
        let mut map = FxHashMap::default();
        for (k, _) in vs {
            map.insert(k.clone(), items.len() as u32);
            items.push(ItemDef::Attr(path.clone(), k.value()));
        }
        attrs.push((path, map));
    }
    Vocabulary {
        items,
        name_item,
        by_name,
        attrs,
    }
}

/// Outcome codes.
const NO: u8 = 0;
const YES: u8 = 1;
const PENDING: u8 = 2;

fn code(v: Option<bool>) -> u8 {
    match v {
        Some(true) => YES,
        Some(false) => NO,
        None => PENDING,
    }
}

/// The census of units, column-wise.
#[derive(Default)]
struct Units {
    keys: Vec<String>,
    /// Unit `u`'s events are `ev_start[u]..ev_start[u + 1]`.
    ev_start: Vec<u32>,
    time: Vec<i64>,
    /// Event `e`'s items are `items[item_start[e]..item_start[e + 1]]`, ascending.
    item_start: Vec<u32>,
    items: Vec<u32>,
    /// Outcome if the unit were anchored at this event.
    out_at: Vec<u8>,
    /// Outcome at the population anchor.
    pop_out: Vec<u8>,
    /// When it was reached from the population anchor (i64::MAX: not reached).
    pop_time: Vec<i64>,
    /// Which outcomes the unit can show as a member entering before that time:
    /// bit 1 reached, bit 2 missed (the optimistic estimate counts these).
    can: Vec<u8>,
    /// Unit `u`'s attribute items are `attrs[attr_start[u]..attr_start[u + 1]]`.
    attr_start: Vec<u32>,
    attrs: Vec<u32>,
}

impl Units {
    fn new() -> Units {
        Units {
            ev_start: vec![0],
            item_start: vec![0],
            attr_start: vec![0],
            ..Units::default()
        }
    }

    fn append(&mut self, other: Units) {
        let ev_base = self.time.len() as u32;
        let item_base = self.items.len() as u32;
        let attr_base = self.attrs.len() as u32;
        self.keys.extend(other.keys);
        self.ev_start
            .extend(other.ev_start[1..].iter().map(|x| x + ev_base));
        self.time.extend(other.time);
        self.item_start
            .extend(other.item_start[1..].iter().map(|x| x + item_base));
        self.items.extend(other.items);
        self.out_at.extend(other.out_at);
        self.pop_out.extend(other.pop_out);
        self.pop_time.extend(other.pop_time);
        self.can.extend(other.can);
        self.attr_start
            .extend(other.attr_start[1..].iter().map(|x| x + attr_base));
        self.attrs.extend(other.attrs);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn events(&self, u: usize) -> std::ops::Range<usize> {
        self.ev_start[u] as usize..self.ev_start[u + 1] as usize
    }

    fn event_items(&self, e: usize) -> &[u32] {
        &self.items[self.item_start[e] as usize..self.item_start[e + 1] as usize]
    }

    fn unit_attrs(&self, u: usize) -> &[u32] {
        &self.attrs[self.attr_start[u] as usize..self.attr_start[u + 1] as usize]
    }
}

/// What signal detection needs: the units they are placed among, and the plan.
struct SignalCx<'a> {
    unit: UnitKind,
    gap: Micros,
    plan: Option<&'a Plan>,
}

struct Context<'a> {
    vocab: &'a Vocabulary,
    /// A key's place in the search sample (None: every unit is searched). Units outside it
    /// are encoded without items: verification needs their outcomes, the search nothing.
    sample: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    outcome: &'a Outcome,
    base: Option<&'a FxHashMap<String, i64>>,
    observed_until: i64,
    gap: Micros,
}

fn encode_partition(part: &PartUnits, cx: &Context<'_>) -> Units {
    let data = &part.data;
    let mut out = Units::new();
    let name_item: Vec<Option<u32>> = data
        .names
        .iter()
        .map(|n| cx.vocab.name_item.get(n).copied())
        .collect();
    // Per local name: (column, its items, and for text the item of each dictionary code).
    let prop_items: Vec<Vec<(&PropColumn, &PropItems, Vec<u32>)>> = data
        .names
        .iter()
        .map(|n| {
            cx.vocab
                .by_name
                .get(n)
                .map(|list| {
                    list.iter()
                        .filter_map(|pi| {
                            let col = data.props.get(&format!("p.{}", pi.prop))?;
                            Some((col, pi, code_items(col, &pi.values)))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    // Per attribute path: its columns (traits, context, properties), each with the item of
    // each dictionary code for text, and the items by value.
    type AttrColumns<'c> = (
        Vec<(&'c PropColumn, Vec<u32>)>,
        &'c FxHashMap<ValueKey, u32>,
    );
    let attr_cols: Vec<AttrColumns<'_>> = cx
        .vocab
        .attrs
        .iter()
        .map(|(path, map)| {
            let cols = ["t.", "c.", "p."]
                .iter()
                .filter_map(|ns| data.props.get(&format!("{ns}{path}")))
                .map(|col| (col, code_items(col, map)))
                .collect();
            (cols, map)
        })
        .collect();
    let mut judge = OutcomeJudge::new(cx.outcome, data, cx.gap);
    for i in 0..part.len() {
        let (key, rows, sigs) = (part.keys[i].as_str(), part.rows(i), part.signals(i));
        let searched = cx.sample.is_none_or(|in_sample| in_sample(key));
        let Some(first) = rows.iter().copied().find(|&r| units::is_behaviour(data, r)) else {
            continue;
        };
        let anchor = match cx.base {
            Some(base) => match base.get(key) {
                Some(&t) => t,
                None => continue,
            },
            None => data.time[first],
        };
        out.keys.push(key.to_string());
        let (verdict, when) = judge.judge_when(data, rows, anchor, cx.observed_until);
        out.pop_out.push(code(verdict));
        out.pop_time.push(if verdict == Some(true) {
            when.unwrap_or(i64::MIN)
        } else {
            i64::MAX
        });
        let mut last_time = None;
        let mut last_code = NO;
        // The unit's events in evaluation order: each signal before the row at its position.
        let mut next_signal = 0;
        for k in 0..=rows.len() {
            let mut here: Vec<Result<usize, &Signal>> = Vec::new();
            while let Some((_, s)) = sigs.get(next_signal).filter(|(pos, _)| *pos <= k) {
                here.push(Err(s));
                next_signal += 1;
            }
            if let Some(&r) = rows.get(k)
                && units::is_behaviour(data, r)
            {
                here.push(Ok(r));
            }
            for ev in here {
                let t = match ev {
                    Ok(r) => data.time[r],
                    Err(s) => s.time,
                };
                // Equal times give equal outcomes (the outcome looks strictly after).
                if last_time != Some(t) {
                    last_code = code(judge.judge(data, rows, t, cx.observed_until));
                    last_time = Some(t);
                }
                out.time.push(t);
                out.out_at.push(last_code);
                let start = out.items.len();
                match ev {
                    _ if !searched => {}
                    Ok(r) => {
                        if let Some(n) = name_item[data.name[r] as usize] {
                            out.items.push(n);
                            for (col, pi, by_code) in &prop_items[data.name[r] as usize] {
                                match col {
                                    PropColumn::Str(text) => {
                                        let code = text.keys[r];
                                        if code != NULL_KEY && by_code[code as usize] != NONE {
                                            out.items.push(by_code[code as usize]);
                                        }
                                    }
                                    _ => {
                                        if let Some(v) = col.get(r) {
                                            pi.push_items(&v, &mut out.items);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(s) => {
                        let name = s.kind.event_name();
                        if let Some(&n) = cx.vocab.name_item.get(name) {
                            out.items.push(n);
                            for pi in cx.vocab.by_name.get(name).into_iter().flatten() {
                                if let Some(v) = s.prop(&pi.prop) {
                                    pi.push_items(v, &mut out.items);
                                }
                            }
                        }
                    }
                }
                out.items[start..].sort_unstable();
                out.item_start.push(out.items.len() as u32);
            }
        }
        out.ev_start.push(out.time.len() as u32);
        let until = *out.pop_time.last().unwrap();
        let first_event = out.ev_start[out.ev_start.len() - 2] as usize;
        let mut can = 0u8;
        for (e, &o) in out.out_at.iter().enumerate().skip(first_event) {
            if out.time[e] < until {
                can |= match o {
                    YES => 1,
                    NO => 2,
                    _ => 0,
                };
            }
        }
        can |= match out.pop_out.last() {
            Some(&YES) => 1,
            Some(&NO) => 2,
            _ => 0,
        };
        out.can.push(can);
        // Attributes: the latest known value (traits, then context, then properties).
        for (cols, map) in attr_cols.iter().filter(|_| searched) {
            let latest = rows.iter().rev().find_map(|&r| {
                cols.iter()
                    .find(|(c, _)| c.is_present(r))
                    .map(|(c, by_code)| (*c, by_code, r))
            });
            let item = latest.and_then(|(col, by_code, r)| match col {
                PropColumn::Str(text) => {
                    Some(by_code[text.keys[r] as usize]).filter(|&i| i != NONE)
                }
                _ => col
                    .get(r)
                    .as_ref()
                    .and_then(ValueKey::of)
                    .and_then(|k| map.get(&k).copied()),
            });
            if let Some(i) = item {
                out.attrs.push(i);
            }
        }
        let a = out.attr_start[out.attr_start.len() - 1] as usize;
        out.attrs[a..].sort_unstable();
        out.attr_start.push(out.attrs.len() as u32);
    }
    out
}

/// For a text column, the item of each dictionary code (`NONE`: none); empty otherwise.
fn code_items(col: &PropColumn, items: &FxHashMap<ValueKey, u32>) -> Vec<u32> {
    match col {
        PropColumn::Str(text) => text
            .dict
            .iter()
            .map(|s| {
                items
                    .get(&ValueKey::S(s.as_str().into()))
                    .copied()
                    .unwrap_or(NONE)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A candidate: attribute items, then steps (one item each).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pattern {
    attrs: Vec<u32>,
    steps: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Scored {
    quality: f64,
    pattern: Pattern,
    /// Counts that, when two candidates share them, say they hold the same members.
    signature: (u64, u64, u64, u64),
    /// Members' rate minus the rest's.
    gap: f64,
    /// Members, one bit per searched unit.
    members: Members,
}

/// A candidate's members as bitsets over an index of units (the searched units during the
/// search, the population in verification): kept candidates are compared with every
/// newcomer, and bitwise operations count the members of one outside the other exactly.
#[derive(Debug, Clone, Default)]
struct Members {
    all: Vec<u64>,
    /// Members whose outcome is decided from their entry (they count in the rate) …
    decided: Vec<u64>,
    /// … and of those, the ones that reach it.
    reached: Vec<u64>,
    /// The candidate's own figures.
    tally: Tally,
}

/// Which indexed units are decided / reach the outcome at the population anchor (the rest
/// of a group is counted with these).
struct PopulationBits {
    decided: Vec<u64>,
    reached: Vec<u64>,
    /// Decided and reaching units of the whole index.
    n_decided: u64,
    n_reached: u64,
    min_units: u64,
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

impl Members {
    fn new(n: usize) -> Members {
        let words = n.div_ceil(64);
        Members {
            all: vec![0; words],
            decided: vec![0; words],
            reached: vec![0; words],
            tally: Tally::default(),
        }
    }

    /// Adds unit `i` of the index, which entered with outcome `outcome` (None: undecided,
    /// or reached before it entered). The caller keeps `tally` in step.
    fn add(&mut self, i: usize, outcome: Option<bool>) {
        set_bit(&mut self.all, i);
        if let Some(reached) = outcome {
            set_bit(&mut self.decided, i);
            if reached {
                set_bit(&mut self.reached, i);
            }
        }
    }

    /// The figures of the members that are not `other`'s.
    fn outside(&self, other: &Members, pop: &PopulationBits) -> Tally {
        let mut t = Tally::default();
        let ones = |x: u64| u64::from(x.count_ones());
        for w in 0..self.all.len() {
            let not_other = !other.all[w];
            let m = self.all[w] & not_other;
            t.units += ones(m);
            t.decided += ones(self.decided[w] & not_other);
            t.reached += ones(self.reached[w] & not_other);
            t.pop_decided += ones(m & pop.decided[w]);
            t.pop_reached += ones(m & pop.reached[w]);
        }
        t
    }
}

impl PopulationBits {
    /// The population outcomes of `index`'s units, bit `i` for unit `index[i]`.
    fn of(units: &Units, index: &[u32], min_units: u64) -> PopulationBits {
        let words = index.len().div_ceil(64);
        let mut p = PopulationBits {
            decided: vec![0; words],
            reached: vec![0; words],
            n_decided: 0,
            n_reached: 0,
            min_units,
        };
        for (i, &u) in index.iter().enumerate() {
            match units.pop_out[u as usize] {
                YES => {
                    set_bit(&mut p.decided, i);
                    set_bit(&mut p.reached, i);
                    p.n_decided += 1;
                    p.n_reached += 1;
                }
                NO => {
                    set_bit(&mut p.decided, i);
                    p.n_decided += 1;
                }
                _ => {}
            }
        }
        p
    }

    /// A group's rate minus its rest's (see [`gap`]).
    fn gap(&self, t: &Tally) -> f64 {
        gap(self.n_decided, self.n_reached, t)
    }

    /// Quality of a group (see [`Search::quality`]); 0 when too small to have a rate.
    fn quality(&self, t: &Tally) -> f64 {
        quality(self.n_decided, self.n_reached, self.min_units, t).unwrap_or(0.0)
    }

    /// Of two candidates, the one that says little beyond the other, if either does.
    ///
    /// Candidates with opposite effects (one raises the rate, one lowers it) both stay. A
    /// candidate has an effect of its own beside another when its members outside the
    /// other still score at least half its quality, with a gap in the same direction. When both do, both stay (two effects).
    /// When only one does, the other lies within it: a subgroup, kept only if it sharpens
    /// the group (a rate gap 1.5 times as strong, same direction: slow payments among
    /// Android users). When neither does, they are one effect: the description that states
    /// it more sharply (decided members × gap²) stays. So variants of one effect take one
    /// place, and a wide pattern whose effect is all its core's gives way to the core.
    fn redundant_of(&self, x: &Scoring<'_>, y: &Scoring<'_>) -> Option<Side> {
        let own = |a: &Scoring<'_>, b: &Scoring<'_>| {
            let outside = a.members.outside(b.members, self);
            self.gap(&outside).signum() == a.gap.signum()
                && self.quality(&outside) >= 0.5 * self.quality(&a.members.tally)
        };
        let sharper = |a: &Scoring<'_>, b: &Scoring<'_>| {
            a.gap.signum() == b.gap.signum() && a.gap.abs() >= 1.5 * b.gap.abs()
        };
        // Opposite effects are different effects, however many members they share.
        if x.gap.signum() != y.gap.signum() {
            return None;
        }
        match (own(x, y), own(y, x)) {
            (true, true) => None,
            (false, true) => (!sharper(x, y)).then_some(Side::First),
            (true, false) => (!sharper(y, x)).then_some(Side::Second),
            // One effect, described twice: the description that states it more sharply
            // (decided members × gap², its χ²-like weight) stays.
            (false, false) => {
                let sharpness = |a: &Scoring<'_>| a.members.tally.decided as f64 * a.gap * a.gap;
                Some(if (sharpness(y), y.quality) > (sharpness(x), x.quality) {
                    Side::First
                } else {
                    Side::Second
                })
            }
        }
    }
}

/// One side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    First,
    Second,
}

/// What [`PopulationBits::redundant_of`] weighs of a candidate.
struct Scoring<'m> {
    members: &'m Members,
    gap: f64,
    quality: f64,
}

/// Keeps, in `order` (best first), the candidates that no other kept one makes redundant
/// ([`PopulationBits::redundant_of`]): a newcomer that loses to a kept one is left out; kept
/// ones that lose to a newcomer give way to it.
fn keep_distinct<'m>(
    population: &PopulationBits,
    order: impl IntoIterator<Item = (usize, Scoring<'m>)>,
) -> Vec<usize> {
    let mut kept: Vec<(usize, Scoring<'m>)> = Vec::new();
    for (i, s) in order {
        let Some(gone) = contest(population, &s, kept.iter().map(|(_, k)| k)) else {
            continue;
        };
        let mut gone = gone.into_iter();
        kept.retain(|_| !gone.next().unwrap_or(false));
        kept.push((i, s));
    }
    kept.into_iter().map(|(i, _)| i).collect()
}

/// A newcomer against the kept candidates (best first, so a variant of a strong effect is
/// refused at its first comparisons): None when one of them makes it redundant, else which
/// of them give way to it.
fn contest<'k, 'm: 'k>(
    population: &PopulationBits,
    newcomer: &Scoring<'_>,
    kept: impl Iterator<Item = &'k Scoring<'m>>,
) -> Option<Vec<bool>> {
    let mut gone = Vec::new();
    for k in kept {
        match population.redundant_of(newcomer, k) {
            Some(Side::First) => return None,
            v => gone.push(v == Some(Side::Second)),
        }
    }
    Some(gone)
}

/// A group's rate minus its rest's, in a population of `pop_decided` decided units of which
/// `pop_reached` reach the outcome (0 when either side is undecided).
fn gap(pop_decided: u64, pop_reached: u64, t: &Tally) -> f64 {
    let rest_d = pop_decided.saturating_sub(t.pop_decided);
    let rest_r = pop_reached.saturating_sub(t.pop_reached);
    if t.decided == 0 || rest_d == 0 {
        return 0.0;
    }
    t.reached as f64 / t.decided as f64 - rest_r as f64 / rest_d as f64
}

/// N·|WRAcc| of a group with figures `t` in a population of `pop_decided` decided units of
/// which `pop_reached` reach the outcome: the gap between its rate and the rest's, weighted
/// by its coverage and by what is left outside (a pattern nearly everyone matches says
/// little). None when it or its rest has fewer than `min_units` decided units.
fn quality(pop_decided: u64, pop_reached: u64, min_units: u64, t: &Tally) -> Option<f64> {
    let rest_d = pop_decided.checked_sub(t.pop_decided)?;
    let rest_r = pop_reached.checked_sub(t.pop_reached)?;
    if t.decided < min_units || rest_d < min_units {
        return None;
    }
    let pm = t.reached as f64 / t.decided as f64;
    let pr = rest_r as f64 / rest_d as f64;
    let d = t.decided as f64;
    Some(d * (1.0 - d / pop_decided as f64) * (pm - pr).abs())
}

impl Scored {
    fn scoring(&self) -> Scoring<'_> {
        Scoring {
            members: &self.members,
            gap: self.gap,
            quality: self.quality,
        }
    }
}

impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    // Better first: higher quality, then shorter, then by items.
    fn cmp(&self, o: &Self) -> Ordering {
        o.quality
            .total_cmp(&self.quality)
            .then_with(|| self.pattern.steps.len().cmp(&o.pattern.steps.len()))
            .then_with(|| {
                (&self.pattern.attrs, &self.pattern.steps)
                    .cmp(&(&o.pattern.attrs, &o.pattern.steps))
            })
    }
}

/// The best `k` candidates seen so far that do not repeat a better one (see [`repeats`]):
/// diversity enters during the search, so that variants of one strong effect cannot fill
/// every place and set a bar that prunes a different, smaller effect away.
struct TopK<'p> {
    k: usize,
    population: &'p PopulationBits,
    /// Best first.
    kept: Vec<Scored>,
    signatures: rustc_hash::FxHashSet<(u64, u64, u64, u64)>,
    scored: u64,
    /// The best `bar_k` qualities scored, diverse or not (as `f64` bits, which order like
    /// the non-negative numbers they are), smallest on top: the bar a refinement's bound
    /// must clear to be explored. Pruning against the diverse places alone would explore
    /// nearly everything while they are few; it only decides what is explored, while every
    /// candidate scored on the way may take a diverse place.
    bar: BinaryHeap<std::cmp::Reverse<u64>>,
    bar_k: usize,
    /// Candidates compared with the kept ones, and grow calls (for `SEQUIN_TRACE`).
    offered: u64,
    grown: u64,
}

impl TopK<'_> {
    fn threshold(&self) -> f64 {
        if self.kept.len() < self.k {
            0.0
        } else {
            self.kept.last().map_or(0.0, |s| s.quality)
        }
    }

    /// The bar a refinement's bound must clear to be explored: the `bar_k`-th best quality
    /// scored, or the last diverse place once they are all taken.
    fn bar(&self) -> f64 {
        let scored = if self.bar.len() < self.bar_k {
            0.0
        } else {
            self.bar.peek().map_or(0.0, |b| f64::from_bits(b.0))
        };
        scored.max(self.threshold())
    }

    /// Counts a candidate scored with quality `q` (≥ 0).
    fn score(&mut self, q: f64) {
        self.scored += 1;
        if self.bar.len() < self.bar_k {
            self.bar.push(std::cmp::Reverse(q.to_bits()));
        } else if q > self.bar() {
            self.bar.pop();
            self.bar.push(std::cmp::Reverse(q.to_bits()));
        }
    }

    /// Would a candidate of this quality take a place?
    fn admits(&self, quality: f64) -> bool {
        self.kept.len() < self.k || quality > self.threshold()
    }

    fn offer(&mut self, s: Scored) {
        // The same members described another way take no second place (the first found,
        // which is never longer, stays).
        if self.signatures.contains(&s.signature) {
            return;
        }
        self.offered += 1;
        let at = self.kept.partition_point(|k| *k < s);
        if at >= self.k {
            return;
        }
        let kept: Vec<Scoring<'_>> = self.kept.iter().map(Scored::scoring).collect();
        let Some(gone) = contest(self.population, &s.scoring(), kept.iter()) else {
            return;
        };
        let mut gone = gone.into_iter();
        let signatures = &mut self.signatures;
        self.kept.retain(|k| {
            let gone = gone.next().unwrap_or(false);
            if gone {
                signatures.remove(&k.signature);
            }
            !gone
        });
        let at = self.kept.partition_point(|k| *k < s);
        self.signatures.insert(s.signature);
        self.kept.insert(at, s);
        if self.kept.len() > self.k
            && let Some(w) = self.kept.pop()
        {
            self.signatures.remove(&w.signature);
        }
    }
}

/// A member: unit and the event at which it completed the pattern (NONE: attributes only).
type Projection1 = Vec<(u32, u32)>;
const NONE: u32 = u32::MAX;

struct Search<'a, 'p> {
    units: &'a Units,
    /// Population decided / reached at the population anchor.
    pop_decided: u64,
    pop_reached: u64,
    min_units: u64,
    max_length: usize,
    n_items: usize,
    /// Safety valve: stop refining after this many candidates.
    max_scored: u64,
    top: &'a Mutex<TopK<'p>>,
    /// Per event, the items the search may take as a step: event `e`'s are
    /// `steps[step_start[e]..step_start[e + 1]]`. Items never offered (steps of the
    /// outcome) are left out, and so are events that are steps of the outcome (they carry a
    /// left-out refinement, such as the click on the pay button): invisible to the search,
    /// so that `click` cannot stand for them; definitions say so with `where not (…)` (see
    /// [`Guards`]).
    steps: &'a [u32],
    step_start: &'a [u32],
    /// Offer patterns that restate the outcome too.
    keep_outcome_steps: bool,
    /// Unit → its index among the searched units (member bitsets).
    dense: &'a [u32],
    searched: usize,
}

/// What a scan of members finds per item: figures, members (with the event that completes
/// the step), and the items in the order first found.
struct StepScan {
    tally: Vec<Tally>,
    found: Vec<Projection1>,
    touched: Vec<u32>,
}

impl StepScan {
    /// Appends the scan of the members that follow these.
    fn join(&mut self, next: StepScan) {
        let StepScan {
            tally,
            mut found,
            touched,
        } = next;
        for x in touched {
            let xi = x as usize;
            if self.found[xi].is_empty() {
                self.touched.push(x);
            }
            self.tally[xi].merge(&tally[xi]);
            self.found[xi].append(&mut found[xi]);
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    units: u64,
    decided: u64,
    reached: u64,
    /// Members that entered only after reaching the outcome: the pattern follows the
    /// outcome rather than predicting it, so they count in neither rate.
    after_outcome: u64,
    pop_decided: u64,
    pop_reached: u64,
    /// Members (entered before the outcome) that could still show a reach / a miss.
    can_reach: u64,
    can_miss: u64,
}

impl Tally {
    /// Adds another group's figures (disjoint members).
    fn merge(&mut self, o: &Tally) {
        self.units += o.units;
        self.decided += o.decided;
        self.reached += o.reached;
        self.after_outcome += o.after_outcome;
        self.pop_decided += o.pop_decided;
        self.pop_reached += o.pop_reached;
        self.can_reach += o.can_reach;
        self.can_miss += o.can_miss;
    }

    /// Adds member `u`, which entered at `entry` with outcome `at` from there.
    fn add(&mut self, units: &Units, u: usize, entry: i64, at: u8) {
        self.units += 1;
        if units.pop_time[u] <= entry {
            self.after_outcome += 1;
        } else {
            if at != PENDING {
                self.decided += 1;
                self.reached += u64::from(at == YES);
            }
            self.can_reach += u64::from(units.can[u] & 1);
            self.can_miss += u64::from(units.can[u] >> 1);
        }
        let p = units.pop_out[u];
        if p != PENDING {
            self.pop_decided += 1;
            self.pop_reached += u64::from(p == YES);
        }
    }
}

/// A member's outcome as it counts in its group's rate: None when undecided from its entry,
/// or when it reached the outcome before entering (see [`Tally::add`]).
fn decided_outcome(units: &Units, u: usize, entry: i64, at: u8) -> Option<bool> {
    (units.pop_time[u] > entry && at != PENDING).then_some(at == YES)
}

impl Search<'_, '_> {
    fn quality(&self, t: &Tally) -> Option<f64> {
        quality(self.pop_decided, self.pop_reached, self.min_units, t)
    }

    /// A child's members as bitsets over the searched units.
    fn members(&self, proj: &Projection1, tally: Tally) -> Members {
        let mut m = Members::new(self.searched);
        for &(u, pos) in proj {
            let u = u as usize;
            let (entry, at) = if pos == NONE {
                (i64::MIN, self.units.pop_out[u])
            } else {
                (
                    self.units.time[pos as usize],
                    self.units.out_at[pos as usize],
                )
            };
            m.add(
                self.dense[u] as usize,
                decided_outcome(self.units, u, entry, at),
            );
        }
        m.tally = tally;
        m
    }

    /// The best quality any refinement can reach: a refinement keeps a subset of the
    /// members, each entering no earlier; one with a positive gap scores at most its
    /// reaching members, one with a negative gap at most its missing members.
    fn bound(&self, t: &Tally) -> f64 {
        let n = self.pop_decided as f64;
        // x(1 − x/N) grows up to N/2.
        let g = |x: u64| {
            let x = (x as f64).min(n / 2.0);
            x * (1.0 - x / n)
        };
        // The rest of a refinement is this rest plus some of these members.
        let rest_d = self.pop_decided.saturating_sub(t.pop_decided) as f64;
        let rest_r = self.pop_reached.saturating_sub(t.pop_reached) as f64;
        let low = rest_r / (rest_d + t.pop_decided as f64).max(1.0);
        let high = if rest_d > 0.0 {
            ((rest_r + t.pop_reached as f64) / rest_d).min(1.0)
        } else {
            1.0
        };
        (g(t.can_reach) * (1.0 - low)).max(g(t.can_miss) * high)
    }

    /// Members' rate minus the rest's (see [`gap`]).
    fn gap(&self, t: &Tally) -> f64 {
        gap(self.pop_decided, self.pop_reached, t)
    }

    /// Counts `tally` as scored, and says whether it may take a place among the best: it
    /// must score better than its parent (a refinement that does not improve on what it
    /// refines is redundant), and better than the current bar.
    fn scores(&self, tally: &Tally, parent: f64) -> Option<f64> {
        let q = self.quality(tally)?;
        if q <= parent || self.restates_outcome(tally) {
            return None;
        }
        let mut top = self.top.lock().unwrap();
        top.score(q);
        top.admits(q).then_some(q)
    }

    fn restates_outcome(&self, t: &Tally) -> bool {
        !self.keep_outcome_steps && restates_outcome(self.pop_decided, self.pop_reached, t)
    }

    /// Can a refinement of a candidate with these figures take a place? Its bound must
    /// clear the bar, and the candidate's own quality (`floor`, the best along its path):
    /// a refinement is only offered when it improves on what it refines (see
    /// [`Search::scores`]), so one that cannot is not explored.
    fn worth_refining(&self, tally: &Tally, floor: f64) -> bool {
        if tally.units < self.min_units {
            return false;
        }
        let bound = self.bound(tally);
        let top = self.top.lock().unwrap();
        bound > floor && bound > top.bar() && top.scored < self.max_scored
    }

    /// Each item's first occurrence after each member's entry: the members and figures of
    /// every step child, for these members.
    fn scan_steps(&self, members: &[(u32, u32)]) -> StepScan {
        let mut scan = StepScan {
            tally: vec![Tally::default(); self.n_items],
            found: vec![Vec::new(); self.n_items],
            touched: Vec::new(),
        };
        // 1 + the index of the member that last took each item.
        let mut seen: Vec<u32> = vec![0; self.n_items];
        for (k, &(u, pos)) in members.iter().enumerate() {
            let mark = k as u32 + 1;
            let range = self.units.events(u as usize);
            let from = if pos == NONE {
                range.start
            } else {
                pos as usize + 1
            };
            for e in from..range.end {
                for &x in &self.steps[self.step_start[e] as usize..self.step_start[e + 1] as usize]
                {
                    let xi = x as usize;
                    if seen[xi] < mark {
                        seen[xi] = mark;
                        if scan.found[xi].is_empty() {
                            scan.touched.push(x);
                        }
                        scan.tally[xi].add(
                            self.units,
                            u as usize,
                            self.units.time[e],
                            self.units.out_at[e],
                        );
                        scan.found[xi].push((u, e as u32));
                    }
                }
            }
        }
        scan
    }

    /// Scores and explores the refinements of `pattern` with members `proj`.
    fn grow(&self, pattern: &Pattern, proj: &Projection1, quality: f64) {
        self.top.lock().unwrap().grown += 1;
        // One pass over the members' events finds every child's members and figures: for
        // an attribute child the members that have it, for a step child each member's
        // first occurrence of the item after its entry (its earliest completion).
        let mut children: Vec<(Pattern, Tally, Projection1)> = Vec::new();
        if pattern.steps.is_empty() && pattern.attrs.is_empty() {
            // Attribute refinements, in item order (a unit has one value per path).
            let last = pattern.attrs.last().copied();
            let mut found: FxHashMap<u32, (Tally, Projection1)> = FxHashMap::default();
            for &(u, pos) in proj {
                for &a in self.units.unit_attrs(u as usize) {
                    if last.is_none_or(|l| a > l) {
                        let (t, members) = found.entry(a).or_default();
                        t.add(
                            self.units,
                            u as usize,
                            i64::MIN,
                            self.units.pop_out[u as usize],
                        );
                        members.push((u, pos));
                    }
                }
            }
            for (a, (t, members)) in found {
                let mut p = pattern.clone();
                p.attrs.push(a);
                children.push((p, t, members));
            }
        }
        if pattern.steps.len() < self.max_length {
            // The members are scanned in chunks on every core, and the chunks' findings
            // joined in member order: the same children, in the same order, as one scan
            // (so the search, and what it finds, does not depend on thread timing).
            let chunk = proj
                .len()
                .div_ceil(2 * rayon::current_num_threads())
                .max(4096);
            let scans: Vec<StepScan> = proj.par_chunks(chunk).map(|c| self.scan_steps(c)).collect();
            let mut all = scans
                .into_iter()
                .reduce(|mut all, next| {
                    all.join(next);
                    all
                })
                .unwrap_or_else(|| self.scan_steps(&[]));
            for x in std::mem::take(&mut all.touched) {
                let mut p = pattern.clone();
                p.steps.push(x);
                children.push((
                    p,
                    all.tally[x as usize],
                    std::mem::take(&mut all.found[x as usize]),
                ));
            }
        }
        // Children that may take a place are compared with the kept ones (by their
        // members); children worth refining grow. The others' members are dropped now.
        let mut expand: Vec<(Pattern, Tally, Projection1)> = Vec::new();
        for (p, t, members) in children {
            if let Some(q) = self.scores(&t, quality) {
                self.top.lock().unwrap().offer(Scored {
                    quality: q,
                    pattern: p.clone(),
                    signature: (t.units, t.decided, t.reached, t.pop_reached),
                    gap: self.gap(&t),
                    members: self.members(&members, t),
                });
            }
            let floor = self.quality(&t).unwrap_or(0.0).max(quality);
            if (p.steps.len() < self.max_length || p.steps.is_empty())
                && self.worth_refining(&t, floor)
            {
                expand.push((p, t, members));
            }
        }
        // Most promising first, so the bar rises early.
        expand.sort_by(|a, b| {
            self.bound(&b.1)
                .total_cmp(&self.bound(&a.1))
                .then_with(|| (&a.0.attrs, &a.0.steps).cmp(&(&b.0.attrs, &b.0.steps)))
        });
        let run = |(p, t, members): (Pattern, Tally, Projection1)| {
            // The bar may have risen since the tally was taken.
            let floor = self.quality(&t).unwrap_or(0.0).max(quality);
            if self.worth_refining(&t, floor) {
                self.grow(&p, &members, floor);
            }
        };
        expand.into_iter().for_each(run);
    }
}

/// Do almost none of the units outside a pattern reach the outcome (at most 2% of the
/// population's rate) while its members reach it more often? Then the pattern is a way to
/// the outcome, not a predictor of it (`sequence { checkout_start; click }` before a
/// purchase): see [`outcome_steps`].
fn restates_outcome(pop_decided: u64, pop_reached: u64, t: &Tally) -> bool {
    let rest_d = pop_decided.saturating_sub(t.pop_decided);
    let rest_r = pop_reached.saturating_sub(t.pop_reached);
    let pop_rate = pop_reached as f64 / pop_decided.max(1) as f64;
    let members = t.reached as f64 / t.decided.max(1) as f64;
    rest_d > 0 && members > pop_rate && (rest_r as f64 / rest_d as f64) <= 0.02 * pop_rate
}

/// A unit key's position in the search sample (uniform over u64).
fn sample_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// Which items are steps of the outcome itself. An item is when the population's units that
/// never take it almost never reach the outcome (at most 2% of the population's rate): a
/// pattern with it restates the outcome rather than predicting it (`payment_submit` before
/// `purchase`). Items that refine such an event (`payment_submit where method == "card"`)
/// go with it unless their members' rate differs clearly from the event's own (by 5 points
/// and 3 standard errors): a slow payment step refines a step of the outcome, and predicts.
fn outcome_steps(
    units: &Units,
    searched: &[u32],
    vocab: &Vocabulary,
    population: &PopulationBits,
    min_units: u64,
) -> (Vec<bool>, Vec<bool>) {
    let (pop_decided, pop_reached) = (population.n_decided, population.n_reached);
    let n = vocab.items.len();
    // Decided searched units that ever take each item, and of those, the ones that reach.
    let (mut with_d, mut with_r) = (vec![0u64; n], vec![0u64; n]);
    let mut seen = vec![u32::MAX; n];
    for &u in searched {
        let u = u as usize;
        let out = units.pop_out[u];
        if out == PENDING {
            continue;
        }
        for e in units.events(u) {
            for &x in units.event_items(e) {
                let x = x as usize;
                if seen[x] != u as u32 {
                    seen[x] = u as u32;
                    with_d[x] += 1;
                    with_r[x] += u64::from(out == YES);
                }
            }
        }
    }
    if pop_decided == 0 || pop_reached == 0 {
        return (vec![false; n], vec![false; n]);
    }
    let pop_rate = pop_reached as f64 / pop_decided as f64;
    let rate = |x: usize| with_r[x] as f64 / with_d[x].max(1) as f64;
    let is_step = |x: usize| {
        let rest_d = pop_decided - with_d[x];
        let rest_r = pop_reached - with_r[x];
        with_d[x] >= min_units
            && rest_d >= min_units
            && rate(x) > pop_rate
            && (rest_r as f64 / rest_d as f64) <= 0.02 * pop_rate
    };
    let step_events: FxHashMap<&str, usize> = (0..n)
        .filter(|&x| is_step(x))
        .filter_map(|x| match &vocab.items[x] {
            ItemDef::Name(e) => Some((e.as_str(), x)),
            _ => None,
        })
        .collect();
    let own: Vec<bool> = (0..n).map(is_step).collect();
    let skip = (0..n)
        .map(|x| {
            own[x]
                || vocab.items[x]
                    .event()
                    .and_then(|e| step_events.get(e))
                    .is_some_and(|&parent| {
                        let p = rate(parent);
                        let se = (p * (1.0 - p) / with_d[x].max(1) as f64).sqrt();
                        (rate(x) - p).abs() < (3.0 * se).max(0.05)
                    })
        })
        .collect();
    (skip, own)
}

/// Per event, the conditions of its left-out refinements: a step on that event must not be
/// one of them (`click where not (element_id == "pay-button")`), as in the search.
struct Guards(FxHashMap<String, Vec<(String, String)>>);

impl Guards {
    fn new(vocab: &Vocabulary, guarding: &[bool]) -> Guards {
        let mut map: FxHashMap<String, Vec<(String, String)>> = FxHashMap::default();
        for (x, item) in vocab.items.iter().enumerate() {
            if let (true, Some(event), Some(cond)) = (guarding[x], item.event(), item.condition()) {
                let prop = match item {
                    ItemDef::Eq(_, p, _) | ItemDef::Gt(_, p, _) => p.clone(),
                    _ => String::new(),
                };
                map.entry(event.to_string()).or_default().push((prop, cond));
            }
        }
        Guards(map)
    }

    /// A step as written, with the guards of its event.
    fn step(&self, item: &ItemDef) -> String {
        let text = item.text();
        let Some(conds) = item.event().and_then(|e| self.0.get(e)) else {
            return text;
        };
        // `element_id == "back"` already rules out `element_id == "pay-button"`.
        let own_eq = match item {
            ItemDef::Eq(_, p, _) => Some(p.as_str()),
            _ => None,
        };
        let nots: Vec<String> = conds
            .iter()
            .filter(|(p, c)| !(own_eq == Some(p.as_str()) && c.starts_with(&format!("{p} == "))))
            .map(|(_, c)| format!("not ({c})"))
            .collect();
        if nots.is_empty() {
            return text;
        }
        let joiner = if item.condition().is_some() {
            " and "
        } else {
            " where "
        };
        format!("{text}{joiner}{}", nots.join(" and "))
    }
}

fn definition(
    name: &str,
    unit: UnitKind,
    vocab: &Vocabulary,
    guards: &Guards,
    p: &Pattern,
    description: &str,
) -> String {
    let mut parts: Vec<String> = p
        .attrs
        .iter()
        .map(|&a| vocab.items[a as usize].text())
        .collect();
    let steps: Vec<String> = p
        .steps
        .iter()
        .map(|&s| guards.step(&vocab.items[s as usize]))
        .collect();
    match steps.len() {
        0 => {}
        1 => parts.push(format!("did {}", steps[0])),
        _ => parts.push(format!("sequence {{ {} }}", steps.join("; "))),
    }
    format!(
        "segment {name} of {} {{\n    {}\n    {}\n}}\n",
        unit.keyword(),
        quote(description),
        parts.join(" and ")
    )
}

/// Runs discovery.
pub fn discover(
    source: &dyn EventSource,
    file: &SegFile,
    opts: &DiscoverOptions,
) -> Result<Discovery, InsightError> {
    let item = crate::definition(file, &opts.outcome, "--outcome")?;
    let unit = item.unit;
    let observed_until = source.latest_time().ok_or_else(|| InsightError::Input {
        place: "--store".into(),
        reason: "the store holds no events".into(),
    })?;
    let as_of = opts.as_of.unwrap_or(observed_until);
    let outcome = Outcome::compile(file, &opts.outcome)?;
    let base: Option<FxHashMap<String, i64>> = match &opts.base {
        Some(b) => {
            let bi = crate::definition(file, b, "--base")?;
            if bi.unit != unit {
                return Err(InsightError::Input {
                    place: format!("--base {b}"),
                    reason: format!(
                        "groups {}, but the outcome groups {}",
                        bi.unit.keyword(),
                        unit.keyword()
                    ),
                });
            }
            let prog = Program::compile(file, b)?;
            let e = evaluate(
                source,
                std::slice::from_ref(&prog),
                &EvalOptions {
                    as_of: Some(as_of),
                    session_gap: opts.session_gap,
                },
            )?;
            Some(
                e.segments[0]
                    .members
                    .iter()
                    .map(|m| (m.unit.clone(), m.entered_at))
                    .collect(),
            )
        }
        None => None,
    };

    // Signals are candidates too, with the file's detector settings.
    let plan = if opts.signals {
        let config = sequin_signals::Config::from_file(file).map_err(|d| InsightError::Input {
            place: "signal settings".into(),
            reason: d.message,
        })?;
        Some(Plan::all(std::sync::Arc::new(config)))
    } else {
        None
    };
    let signal_cx = SignalCx {
        unit,
        gap: opts.session_gap,
        plan: plan.as_ref(),
    };

    let trace = std::env::var_os("SEQUIN_TRACE").is_some();
    let clock = std::time::Instant::now();
    let phase = |what: &str| {
        if trace {
            eprintln!("discover: {what} at {:?}", clock.elapsed());
        }
    };
    // 1. Read every partition once and find its units and signals, kept for the census and
    // the encoding.
    let parts: Vec<Result<PartUnits, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            // Every property may become an item; the unique message ids are never one.
            let data = source.read_partition(
                p,
                &Projection::Except(vec!["message_id".into(), "anonymous_id".into()]),
            )?;
            Ok(PartUnits::of(data, as_of, &signal_cx))
        })
        .collect();
    let parts: Vec<PartUnits> = parts.into_iter().collect::<Result<_, _>>()?;
    phase("read");
    // A large population is searched on a uniform sample of its units (by a hash of the key,
    // so runs agree); the search only proposes candidates: the engine verifies them on every
    // unit, and every figure reported comes from that verification. The census (which items
    // exist) and the items are taken on the sample alone.
    let in_population = |part: &PartUnits, i: usize| {
        part.rows(i)
            .iter()
            .any(|&r| units::is_behaviour(&part.data, r))
            && base.as_ref().is_none_or(|b| b.contains_key(&part.keys[i]))
    };
    let population_size: usize = parts
        .par_iter()
        .map(|part| (0..part.len()).filter(|&i| in_population(part, i)).count())
        .sum();
    let fraction = match opts.search_sample {
        Some(n) if population_size > n => n as f64 / population_size as f64,
        _ => 1.0,
    };
    let cut = (fraction < 1.0).then_some((fraction * u64::MAX as f64) as u64);
    // Counts on the sample are compared with the floor scaled to it.
    let sample_min_units = ((opts.min_units as f64 * fraction).round() as u64).max(5);
    let in_sample = |key: &str| cut.is_none_or(|c| sample_hash(key) <= c);
    let sample: Option<&(dyn Fn(&str) -> bool + Sync)> = cut.map(|_| &in_sample as _);
    let censuses: Vec<Census> = parts
        .par_iter()
        .map(|part| census_of(part, as_of, sample.map(|f| f as &dyn Fn(&str) -> bool)))
        .collect();
    let mut census = Census::default();
    for c in censuses {
        census.merge(c);
    }
    phase("census");
    // The floor for counts taken on the searched units.
    let min_count = if cut.is_some() {
        sample_min_units
    } else {
        opts.min_units
    };
    let vocab = vocabulary(census, min_count, &opts.exclude);
    let cx = Context {
        vocab: &vocab,
        sample,
        outcome: &outcome,
        base: base.as_ref(),
        observed_until,
        gap: opts.session_gap,
    };
    let chunks: Vec<Units> = parts.par_iter().map(|d| encode_partition(d, &cx)).collect();
    drop(parts);
    let mut units = Units::new();
    for c in chunks {
        units.append(c);
    }

    phase("encoded");
    // 2. Search.
    let pop_decided = units.pop_out.iter().filter(|&&o| o != PENDING).count() as u64;
    let pop_reached = units.pop_out.iter().filter(|&&o| o == YES).count() as u64;
    let sampled: Vec<u32> = (0..units.len() as u32)
        .filter(|&u| in_sample(&units.keys[u as usize]))
        .collect();
    let mut dense = vec![u32::MAX; units.len()];
    for (d, &u) in sampled.iter().enumerate() {
        dense[u as usize] = d as u32;
    }
    let searched_population = PopulationBits::of(&units, &sampled, sample_min_units);
    let (skip, own) = if opts.keep_outcome_steps {
        let none = vec![false; vocab.items.len()];
        (none.clone(), none)
    } else {
        outcome_steps(&units, &sampled, &vocab, &searched_population, min_count)
    };
    // Refinements that are steps of the outcome on their own (the pay button's click) hide
    // their events; those left out only with their event (a payment method) need not.
    let guarding: Vec<bool> = (0..vocab.items.len())
        .map(|x| own[x] && vocab.items[x].condition().is_some())
        .collect();
    let guards = Guards::new(&vocab, &guarding);
    // The items the search may take as steps, per event (see [`Search::steps`]).
    let mut step_start: Vec<u32> = Vec::with_capacity(units.time.len() + 1);
    let mut steps: Vec<u32> = Vec::new();
    step_start.push(0);
    for e in 0..units.time.len() {
        let items = units.event_items(e);
        if !items.iter().any(|&x| guarding[x as usize]) {
            steps.extend(items.iter().filter(|&&x| !skip[x as usize]));
        }
        step_start.push(steps.len() as u32);
    }
    let top = Mutex::new(TopK {
        k: (opts.top * 3).max(30),
        population: &searched_population,
        kept: Vec::new(),
        signatures: Default::default(),
        scored: 0,
        bar: BinaryHeap::new(),
        bar_k: (opts.top * 5).max(50),
        offered: 0,
        grown: 0,
    });
    let search = Search {
        dense: &dense,
        searched: sampled.len(),
        steps: &steps,
        step_start: &step_start,
        keep_outcome_steps: opts.keep_outcome_steps,
        units: &units,
        pop_decided: searched_population.n_decided,
        pop_reached: searched_population.n_reached,
        min_units: searched_population.min_units,
        max_length: opts.max_length,
        n_items: vocab.items.len(),
        max_scored: 5_000_000,
        top: &top,
    };
    let root: Projection1 = sampled.iter().map(|&u| (u, NONE)).collect();
    search.grow(
        &Pattern {
            attrs: Vec::new(),
            steps: Vec::new(),
        },
        &root,
        0.0,
    );
    let top = top.into_inner().unwrap();
    let scored = top.scored;
    if trace {
        eprintln!(
            "discover: {} scored, {} offered to the kept, {} grown",
            top.scored, top.offered, top.grown
        );
    }
    let searched = sampled.len() as u64;
    drop(sampled);
    let candidates: Vec<Scored> = top.kept;
    if std::env::var_os("SEQUIN_TRACE").is_some() {
        for c in &candidates {
            let text: Vec<String> = c
                .pattern
                .attrs
                .iter()
                .chain(&c.pattern.steps)
                .map(|&x| vocab.items[x as usize].text())
                .collect();
            eprintln!(
                "kept {:.1} members {} gap {:.3}: {}",
                c.quality,
                c.members.tally.units,
                c.gap,
                text.join(" ; ")
            );
        }
    }
    // A refinement of a better candidate adds nothing it has not said: verify the general
    // one only.
    let mut general: Vec<Scored> = Vec::new();
    for c in candidates {
        if !general.iter().any(|g| generalizes(&g.pattern, &c.pattern)) {
            general.push(c);
        }
        if general.len() == (opts.top * 3).max(30) {
            break;
        }
    }
    let candidates = general;

    phase("searched");
    // 3. Verification with the engine.
    let mut src = String::new();
    let mut named = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let slug: String = c
            .pattern
            .attrs
            .iter()
            .chain(&c.pattern.steps)
            .map(|&x| vocab.items[x as usize].slug())
            .collect::<Vec<_>>()
            .join("_then_");
        let mut slug: String = slug.chars().take(48).collect();
        while slug.contains("__") {
            slug = slug.replace("__", "_");
        }
        let name = format!("d{:02}_{}", i + 1, slug.trim_matches('_'));
        let text = definition(&name, unit, &vocab, &guards, &c.pattern, "discovered");
        // A candidate the language cannot state is dropped, not guessed at.
        if let Ok(f) = sequin_lang::parse(&text)
            && sequin_lang::check(&f, None).iter().all(|d| !d.is_error())
        {
            src.push_str(&text);
            named.push((name, c.pattern.clone()));
        }
    }
    let checked = sequin_lang::parse(&src).map_err(|d| InsightError::Input {
        place: "discovered definitions".into(),
        reason: d.message,
    })?;
    let programs: Vec<Program> = named
        .iter()
        .map(|(n, _)| Program::compile(&checked, n))
        .collect::<Result<_, _>>()?;
    let eval = evaluate(
        source,
        &programs,
        &EvalOptions {
            as_of: Some(as_of),
            session_gap: opts.session_gap,
        },
    )?;
    phase("evaluated");
    let index: FxHashMap<&str, u32> = units
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i as u32))
        .collect();
    let population = units.len() as u64;
    struct Verified {
        name: String,
        pattern: Pattern,
        members: Members,
        comparison: Comparison,
        decided: u64,
        after_outcome: u64,
    }
    let everyone_index: Vec<u32> = (0..units.len() as u32).collect();
    let everyone = PopulationBits::of(&units, &everyone_index, opts.min_units);
    let mut verified: Vec<Verified> = Vec::new();
    for ((name, pattern), seg) in named.into_iter().zip(&eval.segments) {
        let mut t = Tally::default();
        let mut members = Members::new(units.len());
        for m in &seg.members {
            let Some(&u) = index.get(m.unit.as_str()) else {
                continue;
            };
            let range = units.events(u as usize);
            let times = &units.time[range.clone()];
            let k = times.partition_point(|&x| x <= m.entered_at);
            let at = if k == 0 || times[k - 1] != m.entered_at {
                units.pop_out[u as usize]
            } else {
                units.out_at[range.start + k - 1]
            };
            t.add(&units, u as usize, m.entered_at, at);
            members.add(
                u as usize,
                decided_outcome(&units, u as usize, m.entered_at, at),
            );
        }
        members.tally = t;
        let rest_d = pop_decided - t.pop_decided;
        let rest_r = pop_reached - t.pop_reached;
        // The engine matches every event, the steps of the outcome too: a pattern the search
        // found among the other events can restate the outcome once verified.
        if t.decided == 0
            || rest_d == 0
            || (!opts.keep_outcome_steps && restates_outcome(pop_decided, pop_reached, &t))
        {
            continue;
        }
        verified.push(Verified {
            name,
            pattern,
            members,
            comparison: compare(t.reached, t.decided, rest_r, rest_d),
            decided: t.decided,
            after_outcome: t.after_outcome,
        });
    }
    // Benjamini–Hochberg over every candidate scored (untested candidates count as p = 1).
    let m = scored.max(verified.len() as u64) as f64;
    let p: Vec<f64> = verified.iter().map(|v| v.comparison.p_value).collect();
    let q = benjamini_hochberg(&p, m);
    // Units × effect, discounted by coverage: a pattern nearly everyone matches explains
    // little however large its gap (the search's N·|WRAcc| on the verified figures).
    let impact = |v: &Verified| {
        v.decided as f64
            * v.comparison.difference.value.abs()
            * (1.0 - v.members.tally.units as f64 / population.max(1) as f64)
    };
    let mut ranked: Vec<usize> = (0..verified.len()).filter(|&i| q[i] <= opts.fdr).collect();
    ranked.sort_by(|&a, &b| impact(&verified[b]).total_cmp(&impact(&verified[a])));
    // Findings that say little beyond a better one give way (the search's rule, on the
    // engine's members and rates).
    let mut kept = keep_distinct(
        &everyone,
        ranked.into_iter().map(|i| {
            let v = &verified[i];
            (
                i,
                Scoring {
                    members: &v.members,
                    gap: v.comparison.difference.value,
                    quality: impact(v),
                },
            )
        }),
    );
    kept.truncate(opts.top);
    let findings = kept
        .into_iter()
        .enumerate()
        .map(|(rank, i)| {
            let v = &verified[i];
            let c = &v.comparison;
            let description = format!(
                "Discovered: {} likely to reach `{}` ({:.1}% vs {:.1}% for the rest)",
                if c.difference.value < 0.0 {
                    "less"
                } else {
                    "more"
                },
                opts.outcome,
                100.0 * c.members.rate,
                100.0 * c.non_members.rate
            );
            Finding {
                rank: rank + 1,
                name: v.name.clone(),
                definition: definition(&v.name, unit, &vocab, &guards, &v.pattern, &description),
                attributes: v
                    .pattern
                    .attrs
                    .iter()
                    .map(|&a| vocab.items[a as usize].text())
                    .collect(),
                steps: v
                    .pattern
                    .steps
                    .iter()
                    .map(|&s| guards.step(&vocab.items[s as usize]))
                    .collect(),
                members: v.members.tally.units,
                after_outcome: v.after_outcome,
                share: v.members.tally.units as f64 / population.max(1) as f64,
                comparison: *c,
                q_value: q[i],
                impact: impact(v),
            }
        })
        .collect();
    Ok(Discovery {
        outcome: opts.outcome.clone(),
        unit: unit.keyword().to_string(),
        population: match &opts.base {
            Some(b) => format!("base segment {b}"),
            None => format!("{} with behaviour", unit.keyword()),
        },
        population_units: population,
        population_rate: if pop_decided == 0 {
            0.0
        } else {
            pop_reached as f64 / pop_decided as f64
        },
        items: vocab.items.len(),
        searched_units: searched,
        candidates_scored: scored,
        outcome_steps: (0..vocab.items.len())
            .filter(|&x| skip[x])
            .map(|x| vocab.items[x].text())
            .collect(),
        candidates_verified: verified.len(),
        findings,
    })
}

/// Does `g` state a subset of `p`'s conditions (its attributes among `p`'s, its steps a
/// subsequence of `p`'s)?
fn generalizes(g: &Pattern, p: &Pattern) -> bool {
    let attrs = g.attrs.iter().all(|a| p.attrs.contains(a));
    let mut it = p.steps.iter();
    attrs && g.steps.iter().all(|s| it.any(|x| x == s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 decided units; unit `i` reaches the outcome when `reaches(i)`.
    fn population(reaches: impl Fn(usize) -> bool) -> PopulationBits {
        let mut units = Units::new();
        for i in 0..1000 {
            units.keys.push(format!("u{i}"));
            units.pop_out.push(if reaches(i) { YES } else { NO });
        }
        let index: Vec<u32> = (0..1000).collect();
        PopulationBits::of(&units, &index, 5)
    }

    /// A candidate with the units in `range`, each counted as at the population anchor.
    fn group(pop: &PopulationBits, range: std::ops::Range<usize>) -> Members {
        let mut m = Members::new(1000);
        let reached = |i: usize| pop.reached[i / 64] >> (i % 64) & 1 == 1;
        for i in range {
            m.add(i, Some(reached(i)));
            m.tally.units += 1;
            m.tally.decided += 1;
            m.tally.pop_decided += 1;
            m.tally.reached += u64::from(reached(i));
            m.tally.pop_reached += u64::from(reached(i));
        }
        m
    }

    fn scoring<'m>(pop: &PopulationBits, m: &'m Members) -> Scoring<'m> {
        Scoring {
            members: m,
            gap: pop.gap(&m.tally),
            quality: pop.quality(&m.tally),
        }
    }

    /// Units 0..100 reach the outcome 20% of the time (a planted effect), 400..500 10% of
    /// the time (another), the rest 80%.
    fn two_effects(i: usize) -> bool {
        match i {
            0..100 => i.is_multiple_of(5),
            400..500 => i.is_multiple_of(10),
            _ => !i.is_multiple_of(5),
        }
    }

    #[test]
    fn a_variant_of_one_effect_gives_way_to_the_better_one() {
        let pop = population(two_effects);
        let (core, variant) = (group(&pop, 0..100), group(&pop, 0..90));
        let (c, v) = (scoring(&pop, &core), scoring(&pop, &variant));
        assert_eq!(pop.redundant_of(&v, &c), Some(Side::First));
        assert_eq!(pop.redundant_of(&c, &v), Some(Side::Second));
    }

    #[test]
    fn a_wide_pattern_whose_effect_is_all_its_cores_gives_way_to_the_core() {
        let pop = population(two_effects);
        let (core, wide) = (group(&pop, 0..100), group(&pop, 0..250));
        let (c, w) = (scoring(&pop, &core), scoring(&pop, &wide));
        assert_eq!(pop.redundant_of(&w, &c), Some(Side::First));
    }

    #[test]
    fn two_effects_both_stay() {
        let pop = population(two_effects);
        let (first, second) = (group(&pop, 0..100), group(&pop, 400..500));
        assert_eq!(
            pop.redundant_of(&scoring(&pop, &first), &scoring(&pop, &second)),
            None
        );
    }

    #[test]
    fn keep_distinct_keeps_one_place_per_effect_in_rank_order() {
        let pop = population(two_effects);
        let groups = [
            group(&pop, 0..100),
            group(&pop, 0..95),
            group(&pop, 400..500),
            group(&pop, 5..100),
        ];
        let order = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i, scoring(&pop, g)));
        assert_eq!(keep_distinct(&pop, order), vec![0, 2]);
    }
}
