//! The reference evaluator: the language's semantics written as directly as possible, with
//! no state, no pruning and no timers. At a time `now` it looks at the unit's whole event
//! list and decides each criterion by brute force; membership and entry time come from
//! evaluating it at every point where the answer could change. It is slow by design and
//! serves as the oracle that the matcher is tested against.

use std::collections::{BTreeSet, HashMap};

use sequin_core::Value;
use sequin_core::time::{DAY, Micros};
use sequin_lang::ast::*;

use crate::val::{Val, compare, compare_number, hour, literal_value, weekday};

/// One event of one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RefEvent {
    /// Event time (µs).
    pub time: i64,
    /// Name.
    pub name: String,
    /// Namespaced properties (`p.…`, `c.…`, `t.…`).
    pub props: HashMap<String, Value>,
    /// The synthetic end event of a session or conversation.
    pub synthetic: bool,
}

/// Evaluates definition `name` of `file` for one unit whose events (in order) are `events`.
/// Returns the entry time if the unit is a member at `as_of`.
pub fn membership(
    file: &SegFile,
    name: &str,
    events: &[RefEvent],
    as_of: i64,
    gap: Micros,
) -> Option<i64> {
    let item = file.items.iter().find(|i| i.name.name == name)?;
    let first = events.iter().map(|e| e.time).find(|&t| t <= as_of)?;
    let mut durations = Vec::new();
    for i in &file.items {
        collect_durations(i, &mut durations);
    }
    durations.push(gap);
    let mut points: BTreeSet<i64> = BTreeSet::new();
    for e in events {
        points.insert(e.time);
        for d in &durations {
            points.insert(e.time + d);
        }
    }
    // Calendar boundaries for `regularly`.
    let mut day = first.div_euclid(DAY) * DAY;
    while day <= as_of {
        points.insert(day);
        day += DAY;
    }
    points.insert(as_of);
    let mut since = None;
    for &t in points.range(first..=as_of) {
        if truth_at(file, item, events, t, gap) {
            since.get_or_insert(t);
        } else {
            since = None;
        }
    }
    since
}

fn collect_durations(item: &Item, out: &mut Vec<Micros>) {
    fn expr(e: &Expr, out: &mut Vec<Micros>) {
        match e {
            Expr::And(ps) | Expr::Or(ps) => ps.iter().for_each(|p| expr(p, out)),
            Expr::Not(x) => expr(x, out),
            Expr::Windowed(x, d) => {
                out.push(d.micros);
                expr(x, out);
            }
            Expr::Criterion(c) => match c {
                Criterion::Sequence(s) => {
                    out.extend(s.span_within.map(|d| d.micros));
                    for st in &s.steps {
                        for g in &st.gaps {
                            if let Gap::Within(d, _) | Gap::After(d, _) = g {
                                out.push(d.micros);
                            }
                        }
                    }
                }
                Criterion::Did {
                    within: Some(d), ..
                } => out.push(d.micros),
                Criterion::FirstDid { within, .. } => out.push(within.micros),
                Criterion::Stopped { period, .. } => out.push(period.micros),
                Criterion::Restarted { gap, .. } => out.push(gap.micros),
                _ => {}
            },
        }
    }
    out.extend(item.window.map(|d| d.micros));
    expr(&item.body, out);
}

/// Is the unit in the definition at `now`?
pub fn truth_at(file: &SegFile, item: &Item, events: &[RefEvent], now: i64, gap: Micros) -> bool {
    let mut visible: Vec<RefEvent> = events.iter().filter(|e| e.time <= now).cloned().collect();
    if item.unit != UnitKind::Users
        && let Some(last) = visible.last().map(|e| e.time)
        && now >= last + gap
    {
        visible.push(RefEvent {
            time: last,
            name: match item.unit {
                UnitKind::Sessions => "session_end".into(),
                _ => "conversation_end".into(),
            },
            props: HashMap::new(),
            synthetic: true,
        });
    }
    let ctx = Ctx {
        file,
        events: &visible,
        now,
        closed: visible.last().is_some_and(|e| e.synthetic),
        unit: item.unit,
    };
    ctx.expr(&item.body, item.window.map(|d| d.micros))
}

struct Ctx<'a> {
    file: &'a SegFile,
    events: &'a [RefEvent],
    now: i64,
    closed: bool,
    unit: UnitKind,
}

type Binds<'a> = HashMap<&'a str, &'a RefEvent>;

fn narrower(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn lookup<'e>(e: &'e RefEvent, path: &str, namespaces: [&str; 3]) -> Option<Val<'e>> {
    namespaces
        .iter()
        .find_map(|ns| e.props.get(&format!("{ns}.{path}")))
        .map(Val::of)
}

impl<'a> Ctx<'a> {
    fn in_window(&self, e: &RefEvent, window: Option<Micros>) -> bool {
        window.is_none_or(|w| e.time > self.now - w)
    }

    fn expr(&self, e: &Expr, window: Option<Micros>) -> bool {
        match e {
            Expr::And(ps) => ps.iter().all(|p| self.expr(p, window)),
            Expr::Or(ps) => ps.iter().any(|p| self.expr(p, window)),
            Expr::Not(x) => !self.expr(x, window),
            Expr::Windowed(x, d) => self.expr(x, narrower(window, Some(d.micros))),
            Expr::Criterion(c) => self.criterion(c, window),
        }
    }

    /// Real events in the window matching any of `patterns`.
    fn matching(&self, patterns: &[Pattern], window: Option<Micros>) -> Vec<&'a RefEvent> {
        self.events
            .iter()
            .filter(|e| {
                !e.synthetic
                    && self.in_window(e, window)
                    && patterns
                        .iter()
                        .any(|p| self.pattern_matches(p, e, &Binds::new()))
            })
            .collect()
    }

    fn criterion(&self, c: &Criterion, window: Option<Micros>) -> bool {
        let now = self.now;
        match c {
            Criterion::Sequence(s) => self.sequence(s, window),
            Criterion::Did { pattern, .. } => !self
                .matching(std::slice::from_ref(pattern), window)
                .is_empty(),
            Criterion::Count {
                patterns,
                threshold,
                ..
            } => {
                let n = self.matching(patterns, window).len();
                compare_number(n as f64, threshold.op, threshold.value)
            }
            Criterion::CountDistinct {
                prop,
                patterns,
                threshold,
                ..
            } => {
                let mut seen: Vec<Val<'_>> = Vec::new();
                for e in self.matching(patterns, window) {
                    if let Some(v) = lookup(e, &prop.path, ["p", "c", "t"])
                        && !seen.iter().any(|s| compare(*s, CmpOp::Eq, v))
                    {
                        seen.push(v);
                    }
                }
                compare_number(seen.len() as f64, threshold.op, threshold.value)
            }
            Criterion::Aggregate {
                func,
                prop,
                patterns,
                threshold,
                ..
            } => {
                let xs: Vec<f64> = self
                    .matching(patterns, window)
                    .iter()
                    .filter_map(|e| lookup(e, &prop.path, ["p", "c", "t"]).and_then(Val::number))
                    .collect();
                let value = match func {
                    AggFn::Sum => Some(xs.iter().sum()),
                    AggFn::Avg => {
                        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
                    }
                    AggFn::Min => xs.iter().copied().reduce(f64::min),
                    AggFn::Max => xs.iter().copied().reduce(f64::max),
                };
                value.is_some_and(|v| compare_number(v, threshold.op, threshold.value))
            }
            Criterion::FirstDid {
                pattern, within, ..
            } => self
                .matching(std::slice::from_ref(pattern), window)
                .first()
                .is_some_and(|e| e.time > now - within.micros),
            Criterion::Stopped {
                pattern, period, ..
            } => self
                .matching(std::slice::from_ref(pattern), window)
                .last()
                .is_some_and(|e| e.time <= now - period.micros),
            Criterion::Restarted { pattern, gap, .. } => self
                .matching(std::slice::from_ref(pattern), window)
                .windows(2)
                .any(|w| w[1].time - w[0].time >= gap.micros),
            Criterion::Regularly {
                pattern,
                k,
                n,
                period,
                ..
            } => {
                let (size, offset) = match period {
                    Period::Days => (DAY, 0),
                    Period::Weeks => (7 * DAY, 4 * DAY),
                };
                let current = (now - offset).div_euclid(size);
                let buckets: BTreeSet<i64> = self
                    .matching(std::slice::from_ref(pattern), window)
                    .iter()
                    .map(|e| (e.time - offset).div_euclid(size))
                    .filter(|b| *b > current - *n as i64)
                    .collect();
                buckets.len() >= *k as usize
            }
            Criterion::Attribute { path, cmp, .. } => {
                let latest = self
                    .events
                    .iter()
                    .rev()
                    .filter(|e| !e.synthetic)
                    .find_map(|e| lookup(e, &path.path, ["t", "c", "p"]));
                match (latest, cmp) {
                    (Some(v), Some((op, lit))) => compare(v, *op, Val::of(&literal_value(lit))),
                    (Some(v), None) => v == Val::Bool(true),
                    (None, _) => false,
                }
            }
            Criterion::InSegment { name } => {
                let other = self
                    .file
                    .items
                    .iter()
                    .find(|i| i.name.name == name.name)
                    .expect("checked");
                self.expr(
                    &other.body,
                    narrower(window, other.window.map(|d| d.micros)),
                )
            }
        }
    }

    fn pattern_matches(&self, p: &Pattern, e: &RefEvent, binds: &Binds<'_>) -> bool {
        let name_ok = match &p.names {
            NameSet::Any => !e.synthetic,
            NameSet::Names(ns) => ns.iter().any(|n| n.name == e.name),
        };
        name_ok && p.predicate.as_ref().is_none_or(|pr| pred(pr, e, binds))
    }

    fn sequence(&self, s: &Sequence, window: Option<Micros>) -> bool {
        let positives: Vec<&Step> = s.steps.iter().filter(|st| !st.negated).collect();
        // Absences before positive step k, and after the last.
        let mut negs: Vec<Vec<&Step>> = vec![Vec::new()];
        for st in &s.steps {
            if st.negated {
                negs.last_mut().unwrap().push(st);
            } else {
                negs.push(Vec::new());
            }
        }
        let trailing = negs.pop().unwrap();
        let mut chosen = Vec::new();
        self.search(s, &positives, &negs, &trailing, window, &mut chosen)
    }

    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        s: &Sequence,
        positives: &[&Step],
        negs: &[Vec<&Step>],
        trailing: &[&Step],
        window: Option<Micros>,
        chosen: &mut Vec<usize>,
    ) -> bool {
        let k = chosen.len();
        let alias_index = |name: &str| {
            positives
                .iter()
                .position(|st| st.pattern.alias.as_ref().is_some_and(|a| a.name == name))
                .expect("checked alias")
        };
        let binds: Binds<'_> = chosen
            .iter()
            .enumerate()
            .filter_map(|(i, &j)| {
                positives[i]
                    .pattern
                    .alias
                    .as_ref()
                    .map(|a| (a.name.as_str(), &self.events[j]))
            })
            .collect();
        if k == positives.len() {
            let last = *chosen.last().unwrap();
            return trailing.iter().all(|st| {
                let breaks = |limit: Option<i64>| {
                    self.events[last + 1..].iter().any(|e| {
                        limit.is_none_or(|l| e.time <= l)
                            && self.pattern_matches(&st.pattern, e, &binds)
                    })
                };
                match st.gaps.first() {
                    Some(Gap::Within(d, of)) => {
                        let r = of.as_ref().map_or(k - 1, |a| alias_index(&a.name));
                        let deadline = self.events[chosen[r]].time + d.micros;
                        deadline <= self.now && !breaks(Some(deadline))
                    }
                    _ => (self.unit == UnitKind::Users || self.closed) && !breaks(None),
                }
            });
        }
        let step = positives[k];
        let start = chosen.last().map_or(0, |&j| j + 1);
        for j in start..self.events.len() {
            let e = &self.events[j];
            if !self.in_window(e, window) || !self.pattern_matches(&step.pattern, e, &binds) {
                continue;
            }
            if k > 0 {
                let prev = chosen[k - 1];
                if step.next && j != prev + 1 {
                    continue;
                }
                let ok = step.gaps.iter().all(|g| match g {
                    Gap::Within(d, of) => {
                        let r = of.as_ref().map_or(k - 1, |a| alias_index(&a.name));
                        e.time - self.events[chosen[r]].time <= d.micros
                    }
                    Gap::After(d, of) => {
                        let r = of.as_ref().map_or(k - 1, |a| alias_index(&a.name));
                        e.time - self.events[chosen[r]].time >= d.micros
                    }
                    Gap::WithinEvents(n, of, _) => {
                        let r = of.as_ref().map_or(k - 1, |a| alias_index(&a.name));
                        j - chosen[r] <= *n as usize
                    }
                });
                if !ok {
                    continue;
                }
                if let Some(d) = s.span_within
                    && e.time - self.events[chosen[0]].time > d.micros
                {
                    continue;
                }
                let broken = self.events[prev + 1..j].iter().any(|between| {
                    negs[k]
                        .iter()
                        .any(|n| self.pattern_matches(&n.pattern, between, &binds))
                });
                if broken {
                    continue;
                }
            }
            chosen.push(j);
            if self.search(s, positives, negs, trailing, window, chosen) {
                return true;
            }
            chosen.pop();
        }
        false
    }
}

fn pred(p: &Pred, e: &RefEvent, binds: &Binds<'_>) -> bool {
    match p {
        Pred::And(ps) => ps.iter().all(|x| pred(x, e, binds)),
        Pred::Or(ps) => ps.iter().any(|x| pred(x, e, binds)),
        Pred::Not(x) => !pred(x, e, binds),
        Pred::Compare(a, op, b) => match (operand(a, e, binds), operand(b, e, binds)) {
            (Some(x), Some(y)) => compare(x.as_val(), *op, y.as_val()),
            _ => false,
        },
        Pred::Truthy(a) => operand(a, e, binds).is_some_and(|v| v.as_val() == Val::Bool(true)),
    }
}

enum Opnd<'a> {
    Borrowed(Val<'a>),
    Owned(Value),
}

impl Opnd<'_> {
    fn as_val(&self) -> Val<'_> {
        match self {
            Opnd::Borrowed(v) => *v,
            Opnd::Owned(v) => Val::of(v),
        }
    }
}

fn operand<'a>(o: &'a Operand, e: &'a RefEvent, binds: &Binds<'a>) -> Option<Opnd<'a>> {
    let time_fn = |f: &TimeFn, t: i64| match f {
        TimeFn::Weekday => Opnd::Borrowed(Val::Str(weekday(t))),
        TimeFn::Hour => Opnd::Borrowed(Val::Int(hour(t))),
    };
    match o {
        Operand::Prop(p) => lookup(e, &p.path, ["p", "c", "t"]).map(Opnd::Borrowed),
        Operand::AliasProp(a, p) => {
            let other = binds.get(a.name.as_str())?;
            lookup(other, &p.path, ["p", "c", "t"]).map(Opnd::Borrowed)
        }
        Operand::Time(f, None) => Some(time_fn(f, e.time)),
        Operand::Time(f, Some(a)) => Some(time_fn(f, binds.get(a.name.as_str())?.time)),
        Operand::Lit(l) => Some(Opnd::Owned(literal_value(l))),
    }
}
