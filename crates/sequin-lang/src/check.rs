//! The checker: everything the parser cannot see — names, references, cycles, step rules,
//! and, given a catalog of what a store holds, unknown event names and properties.

use std::collections::{HashMap, HashSet};

use crate::ast::*;
use crate::diag::{Diagnostic, did_you_mean};
use sequin_core::signal::{self, Setting};

/// What a store holds, for "did you mean" on names.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Event names.
    pub events: HashSet<String>,
    /// Property, context and trait keys (without namespace, dotted).
    pub properties: HashSet<String>,
}

impl Catalog {
    /// From a store's event names and namespaced columns (`p.amount`, `c.os.name`,
    /// `t.plan`): keys are looked up without their namespace.
    pub fn from_store(
        names: impl IntoIterator<Item = String>,
        columns: impl IntoIterator<Item = String>,
    ) -> Catalog {
        Catalog {
            events: names.into_iter().collect(),
            properties: columns
                .into_iter()
                .filter_map(|c| c.get(2..).map(str::to_string))
                .collect(),
        }
    }
}

/// Names of synthetic end events and the unit they close.
pub fn end_event_unit(name: &str) -> Option<UnitKind> {
    match name {
        "session_end" => Some(UnitKind::Sessions),
        "conversation_end" => Some(UnitKind::Conversations),
        _ => None,
    }
}

/// Checks a parsed file. Errors and warnings, in source order.
pub fn check(file: &SegFile, catalog: Option<&Catalog>) -> Vec<Diagnostic> {
    let mut c = Checker {
        out: Vec::new(),
        catalog,
    };
    let mut seen: HashMap<&str, &Item> = HashMap::new();
    for item in &file.items {
        if let Some(prev) = seen.get(item.name.name.as_str()) {
            c.out.push(
                Diagnostic::error(
                    item.name.span,
                    format!("`{}` is defined twice", item.name.name),
                )
                .with_hint(format!(
                    "the first definition is a {}; rename one of them",
                    kind_word(prev.kind)
                )),
            );
            continue;
        }
        seen.insert(&item.name.name, item);
    }
    for item in &file.items {
        c.item(item, &seen);
    }
    c.signal_blocks(&file.signals);
    c.cycles(file, &seen);
    c.out.sort_by_key(|d| d.span.start);
    c.out
}

/// A setting's default as it would be written in a `.seg` file.
pub fn setting_text(s: &Setting) -> String {
    match s {
        Setting::Count(n) => n.to_string(),
        Setting::Duration(d) => crate::fmt::duration(*d),
        Setting::Number(x) => x.to_string(),
        Setting::Names(names) => names
            .iter()
            .map(|n| crate::fmt::quote(n))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn kind_word(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Segment => "segment",
        ItemKind::Outcome => "outcome",
    }
}

struct Checker<'a> {
    out: Vec<Diagnostic>,
    catalog: Option<&'a Catalog>,
}

impl Checker<'_> {
    fn item(&mut self, item: &Item, defs: &HashMap<&str, &Item>) {
        self.expr(&item.body, item, defs);
    }

    fn expr(&mut self, e: &Expr, item: &Item, defs: &HashMap<&str, &Item>) {
        match e {
            Expr::And(parts) | Expr::Or(parts) => {
                for p in parts {
                    self.expr(p, item, defs);
                }
            }
            Expr::Not(inner) | Expr::Windowed(inner, _) => self.expr(inner, item, defs),
            Expr::Criterion(c) => self.criterion(c, item, defs),
        }
    }

    fn criterion(&mut self, c: &Criterion, item: &Item, defs: &HashMap<&str, &Item>) {
        match c {
            Criterion::Sequence(s) => self.sequence(s, item),
            Criterion::Did {
                pattern, within, ..
            } => {
                self.pattern(pattern, item, false, &[]);
                if let (Some(w), ItemKind::Segment) = (within, item.kind) {
                    self.out.push(
                        Diagnostic::error(w.span, "`did … within D` is for outcomes")
                            .with_hint("in a segment, limit time with `during last D`"),
                    );
                }
            }
            Criterion::Count { patterns, .. } => {
                for p in patterns {
                    self.pattern(p, item, false, &[]);
                }
            }
            Criterion::CountDistinct { prop, patterns, .. }
            | Criterion::Aggregate { prop, patterns, .. } => {
                for p in patterns {
                    self.pattern(p, item, false, &[]);
                }
                self.property(prop);
            }
            Criterion::FirstDid { pattern, .. }
            | Criterion::Stopped { pattern, .. }
            | Criterion::Restarted { pattern, .. } => self.pattern(pattern, item, false, &[]),
            Criterion::Regularly {
                pattern,
                k,
                n,
                span,
                ..
            } => {
                self.pattern(pattern, item, false, &[]);
                if *k == 0 || k > n || *n > 1000 {
                    self.out.push(
                        Diagnostic::error(*span, format!("`in {k} of {n}` is not a valid range"))
                            .with_hint("need 1 <= K <= N <= 1000"),
                    );
                }
            }
            Criterion::Attribute { path, .. } => self.property(path),
            Criterion::InSegment { name } => match defs.get(name.name.as_str()) {
                None => {
                    let hint = did_you_mean(
                        &name.name,
                        defs.values()
                            .filter(|d| d.kind == ItemKind::Segment)
                            .map(|d| d.name.name.as_str()),
                    )
                    .map_or("define it in this file".to_string(), |s| {
                        format!("did you mean `{s}`?")
                    });
                    self.out.push(
                        Diagnostic::error(name.span, format!("no segment named `{}`", name.name))
                            .with_hint(hint),
                    );
                }
                Some(other) if other.kind != ItemKind::Segment => self.out.push(
                    Diagnostic::error(name.span, format!("`{}` is an outcome", name.name))
                        .with_hint("`in segment` takes a segment"),
                ),
                Some(other) if other.unit != item.unit => self.out.push(
                    Diagnostic::error(
                        name.span,
                        format!(
                            "`{}` groups {}, this definition groups {}",
                            name.name,
                            other.unit.keyword(),
                            item.unit.keyword()
                        ),
                    )
                    .with_hint("`in segment` needs both to group the same unit"),
                ),
                Some(_) => {}
            },
        }
    }

    fn sequence(&mut self, s: &Sequence, item: &Item) {
        let positives: Vec<usize> = (0..s.steps.len())
            .filter(|&i| !s.steps[i].negated)
            .collect();
        let Some(&first_pos) = positives.first() else {
            self.out.push(
                Diagnostic::error(s.span, "a sequence needs at least one step that happens")
                    .with_hint("for pure absence write `not did X`"),
            );
            return;
        };
        let last_pos = *positives.last().unwrap();
        let mut aliases: Vec<&str> = Vec::new();
        for (i, step) in s.steps.iter().enumerate() {
            if step.negated && i < first_pos {
                self.out.push(
                    Diagnostic::error(step.span, "a sequence cannot start with an absence")
                        .with_hint("absences sit between steps or at the end; for \"never did X\" write `not did X and sequence { … }`"),
                );
            }
            if !step.negated && i == first_pos {
                if step.next {
                    self.out.push(
                        Diagnostic::error(step.span, "`next` needs a previous step")
                            .with_hint("remove `next` from the first step"),
                    );
                }
                if let Some(g) = step.gaps.first() {
                    self.out.push(
                        Diagnostic::error(
                            gap_span(g, step),
                            "the first step has no previous step to measure from",
                        )
                        .with_hint("limit the whole sequence with `sequence within D { … }`"),
                    );
                }
            }
            if step.negated {
                if i < last_pos && !step.gaps.is_empty() {
                    self.out.push(
                        Diagnostic::error(gap_span(&step.gaps[0], step), "a gap on an absence between steps has no meaning")
                            .with_hint("put the gap on the next step: it bounds the time between its neighbours"),
                    );
                }
                if i > last_pos {
                    for g in &step.gaps {
                        if !matches!(g, Gap::Within(..)) {
                            self.out.push(
                                Diagnostic::error(gap_span(g, step), "a trailing absence takes `within D` only")
                                    .with_hint("write `not X within 30m`: no X in the 30 minutes after the last step"),
                            );
                        }
                    }
                    if step.gaps.len() > 1 {
                        self.out
                            .push(Diagnostic::error(step.span, "one `within` per absence"));
                    }
                }
            }
            // Aliases referenced must come from earlier positive steps.
            for g in &step.gaps {
                let of = match g {
                    Gap::Within(_, of) | Gap::After(_, of) | Gap::WithinEvents(_, of, _) => of,
                };
                if let Some(a) = of
                    && !aliases.contains(&a.name.as_str())
                {
                    self.out.push(
                        Diagnostic::error(a.span, format!("no earlier step is named `{}`", a.name))
                            .with_hint("name a step with `as`, e.g. `payment_step as pay`"),
                    );
                }
            }
            self.pattern(&step.pattern, item, true, &aliases);
            if let NameSet::Names(names) = &step.pattern.names {
                for n in names {
                    if let Some(unit) = end_event_unit(&n.name) {
                        if unit != item.unit {
                            self.out.push(
                                Diagnostic::error(
                                    n.span,
                                    format!("`{}` exists only for {}", n.name, unit.keyword()),
                                )
                                .with_hint(format!(
                                    "write `of {}` after the definition's name",
                                    unit.keyword()
                                )),
                            );
                        } else if step.negated || i != last_pos {
                            self.out.push(
                                Diagnostic::error(
                                    n.span,
                                    format!("`{}` can only be the last step", n.name),
                                )
                                .with_hint("the unit's end comes after all its events"),
                            );
                        }
                    }
                }
            }
            if let Some(a) = &step.pattern.alias {
                if aliases.contains(&a.name.as_str()) {
                    self.out.push(
                        Diagnostic::error(a.span, format!("alias `{}` is used twice", a.name))
                            .with_hint("give each step its own alias"),
                    );
                }
                aliases.push(&a.name);
            }
        }
    }

    /// `in_sequence`: end events are allowed (checked by the caller).
    fn pattern(&mut self, p: &Pattern, item: &Item, in_sequence: bool, aliases: &[&str]) {
        if let NameSet::Names(names) = &p.names {
            for n in names {
                if end_event_unit(&n.name).is_some() {
                    if !in_sequence {
                        self.out.push(
                            Diagnostic::error(
                                n.span,
                                format!("`{}` can only end a sequence", n.name),
                            )
                            .with_hint("write it as the last step of `sequence { … }`"),
                        );
                    }
                    continue;
                }
                self.event_name(n);
            }
        }
        if let Some(pred) = &p.predicate {
            self.pred(pred, aliases);
        }
        let _ = item;
    }

    fn pred(&mut self, p: &Pred, aliases: &[&str]) {
        match p {
            Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|x| self.pred(x, aliases)),
            Pred::Not(x) => self.pred(x, aliases),
            Pred::Compare(a, _, b) => {
                self.operand(a, aliases);
                self.operand(b, aliases);
            }
            Pred::Truthy(a) => self.operand(a, aliases),
        }
    }

    fn operand(&mut self, o: &Operand, aliases: &[&str]) {
        match o {
            Operand::Prop(p) => self.property(p),
            Operand::AliasProp(a, p) => {
                if !aliases.contains(&a.name.as_str()) {
                    self.out.push(Diagnostic::error(
                        a.span,
                        format!("`{}` is not an earlier step", a.name),
                    ));
                }
                self.property(p);
            }
            Operand::Time(_, Some(a)) if !aliases.contains(&a.name.as_str()) => {
                self.out.push(Diagnostic::error(
                    a.span,
                    format!("no earlier step is named `{}`", a.name),
                ));
            }
            _ => {}
        }
    }

    /// Every `signal NAME { key value }` names a known signal, a setting it has, once, and
    /// a value of the setting's kind.
    fn signal_blocks(&mut self, blocks: &[SignalBlock]) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for b in blocks {
            let Some(def) = signal::find(&b.signal.name) else {
                self.unknown_signal(b.signal.span, &b.signal.name);
                continue;
            };
            if seen.insert(def.name, b.signal.span).is_some() {
                self.out.push(
                    Diagnostic::error(
                        b.signal.span,
                        format!("settings of `{}` are given twice", def.name),
                    )
                    .with_hint("merge the two blocks into one"),
                );
            }
            let mut keys: HashMap<&str, Span> = HashMap::new();
            for s in &b.settings {
                let Some(param) = def.params.iter().find(|p| p.key == s.key.name) else {
                    let known: Vec<&str> = def.params.iter().map(|p| p.key).collect();
                    let hint = match did_you_mean(&s.key.name, known.iter().copied()) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None if known.is_empty() => format!("`{}` has no settings", def.name),
                        None => format!("`{}` has: {}", def.name, known.join(", ")),
                    };
                    self.out.push(
                        Diagnostic::error(
                            s.key.span,
                            format!("`{}` has no setting `{}`", def.name, s.key.name),
                        )
                        .with_hint(hint),
                    );
                    continue;
                };
                if keys.insert(param.key, s.key.span).is_some() {
                    self.out.push(Diagnostic::error(
                        s.key.span,
                        format!("`{}` is set twice", param.key),
                    ));
                }
                let ok = match (param.default, &s.value) {
                    (Setting::Count(_), SettingValue::Int(n)) => *n >= 1,
                    (Setting::Duration(_), SettingValue::Duration(d)) => *d > 0,
                    (Setting::Number(_), SettingValue::Int(_)) => true,
                    (Setting::Number(_), SettingValue::Float(x)) => x.is_finite(),
                    (Setting::Names(_), SettingValue::Names(n)) => !n.is_empty(),
                    _ => false,
                };
                if !ok {
                    self.out.push(
                        Diagnostic::error(
                            s.value_span,
                            format!("`{}` takes {}", param.key, param.default.kind_name()),
                        )
                        .with_hint(format!("the default is {}", setting_text(&param.default))),
                    );
                }
            }
        }
    }

    fn unknown_signal(&mut self, span: Span, name: &str) {
        let names = signal::SIGNALS.iter().map(|s| s.name);
        let hint = match did_you_mean(name, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "docs/signals.md lists the signals".to_string(),
        };
        self.out
            .push(Diagnostic::error(span, format!("no signal named `{name}`")).with_hint(hint));
    }

    fn event_name(&mut self, n: &Ident) {
        if let Some(Err(rest)) = signal::of_event(&n.name) {
            let rest = rest.to_string();
            self.unknown_signal(n.span, &rest);
            return;
        }
        let Some(cat) = self.catalog else { return };
        if cat.events.contains(&n.name) || n.name.starts_with(signal::PREFIX) {
            return;
        }
        match did_you_mean(&n.name, cat.events.iter().map(String::as_str)) {
            Some(s) => self.out.push(
                Diagnostic::error(n.span, format!("no event named `{}` in the store", n.name))
                    .with_hint(format!("did you mean `{s}`?")),
            ),
            None => self.out.push(
                Diagnostic::warning(
                    n.span,
                    format!("no event named `{}` in the store yet", n.name),
                )
                .with_hint("the criterion matches nothing until such events arrive"),
            ),
        }
    }

    fn property(&mut self, p: &PropPath) {
        let Some(cat) = self.catalog else { return };
        if cat.properties.contains(&p.path) {
            return;
        }
        match did_you_mean(&p.path, cat.properties.iter().map(String::as_str)) {
            Some(s) => self.out.push(
                Diagnostic::error(p.span, format!("no property `{}` in the store", p.path))
                    .with_hint(format!("did you mean `{s}`?")),
            ),
            None => self.out.push(
                Diagnostic::warning(p.span, format!("no property `{}` in the store yet", p.path))
                    .with_hint("missing properties compare as false"),
            ),
        }
    }

    fn cycles(&mut self, file: &SegFile, defs: &HashMap<&str, &Item>) {
        // Depth-first search over `in segment` references; a back edge is a cycle.
        fn refs(e: &Expr, out: &mut Vec<Ident>) {
            match e {
                Expr::And(ps) | Expr::Or(ps) => ps.iter().for_each(|p| refs(p, out)),
                Expr::Not(x) | Expr::Windowed(x, _) => refs(x, out),
                Expr::Criterion(Criterion::InSegment { name }) => out.push(name.clone()),
                Expr::Criterion(_) => {}
            }
        }
        let mut state: HashMap<String, u8> = HashMap::new(); // 1 = on stack, 2 = done
        fn visit(
            name: &str,
            defs: &HashMap<&str, &Item>,
            state: &mut HashMap<String, u8>,
            stack: &mut Vec<String>,
            out: &mut Vec<Diagnostic>,
        ) {
            let Some(item) = defs.get(name) else { return };
            state.insert(name.to_string(), 1);
            stack.push(name.to_string());
            let mut rs = Vec::new();
            refs(&item.body, &mut rs);
            for r in rs {
                match state.get(&r.name) {
                    Some(1) => {
                        let start = stack.iter().position(|s| *s == r.name).unwrap_or(0);
                        let mut cycle = stack[start..].to_vec();
                        cycle.push(r.name.clone());
                        out.push(
                            Diagnostic::error(
                                r.span,
                                format!(
                                    "segments refer to each other in a cycle: {}",
                                    cycle.join(" → ")
                                ),
                            )
                            .with_hint("a segment cannot depend on itself, directly or indirectly"),
                        );
                    }
                    Some(_) => {}
                    None => visit(&r.name, defs, state, stack, out),
                }
            }
            stack.pop();
            state.insert(name.to_string(), 2);
        }
        for item in &file.items {
            if !state.contains_key(&item.name.name) {
                visit(
                    &item.name.name,
                    defs,
                    &mut state,
                    &mut Vec::new(),
                    &mut self.out,
                );
            }
        }
    }
}

fn gap_span(g: &Gap, _step: &Step) -> Span {
    match g {
        Gap::Within(d, _) | Gap::After(d, _) => d.span,
        Gap::WithinEvents(_, _, s) => *s,
    }
}
