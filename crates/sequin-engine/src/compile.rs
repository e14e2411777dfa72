//! Compiling checked definitions into [`Program`]s: event-name sets become bits of a mask,
//! property paths become slots that each event source resolves once, `in segment` is
//! inlined, and every sequence gets a layout saying which facts about matched steps its
//! partial matches must keep (and in which direction a value is better, for pruning).

use rustc_hash::FxHashMap;
use sequin_core::Value;
use sequin_core::time::{DAY, Micros};
use sequin_lang::ast::*;

use crate::EngineError;
use crate::val::literal_value;

/// Where to look for a property path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropRole {
    /// Event predicate: properties, then context, then traits.
    Event,
    /// Unit attribute: traits, then context, then properties.
    Attribute,
}

impl PropRole {
    /// Namespaced column keys to try, in order.
    pub fn columns(self, path: &str) -> [String; 3] {
        match self {
            PropRole::Event => [
                format!("p.{path}"),
                format!("c.{path}"),
                format!("t.{path}"),
            ],
            PropRole::Attribute => [
                format!("t.{path}"),
                format!("c.{path}"),
                format!("p.{path}"),
            ],
        }
    }
}

/// A property a program reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropRef {
    /// Dotted path without namespace.
    pub path: String,
    /// Lookup order.
    pub role: PropRole,
}

/// Set of event names, one bit of the name mask.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NameSetC {
    Any,
    Names(Vec<String>),
}

/// Operand of a compiled predicate.
#[derive(Debug, Clone)]
pub(crate) enum COperand {
    Prop(usize),
    Bind(usize),
    Time(TimeFn),
    BindTime(TimeFn, usize),
    Lit(Value),
}

/// A compiled predicate.
#[derive(Debug, Clone)]
pub(crate) enum CPred {
    And(Vec<CPred>),
    Or(Vec<CPred>),
    Not(Box<CPred>),
    Cmp(COperand, CmpOp, COperand),
    Truthy(COperand),
}

/// A compiled pattern: name bit and predicate.
#[derive(Debug, Clone)]
pub(crate) struct CPattern {
    pub bit: u64,
    pub pred: Option<CPred>,
}

/// Where a partial match's slot value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Time(usize),
    Index(usize),
}

/// Which way a slot value is better (for dominance pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Max,
    Min,
}

/// What a bind captures about a matched step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindWhat {
    Prop(usize),
    Ts,
}

/// What the partial matches of one sequence state keep.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    pub slots: Vec<(Source, Dir)>,
    pub binds: Vec<(usize, BindWhat)>,
}

impl Layout {
    pub fn slot(&self, src: Source, dir: Dir) -> usize {
        self.slots
            .iter()
            .position(|&s| s == (src, dir))
            .expect("layout holds every slot a later step reads")
    }
}

/// A gap constraint, relative to a reference step.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GapC {
    Within(Micros, usize),
    After(Micros, usize),
    Events(u64, usize),
}

/// One positive step.
#[derive(Debug, Clone)]
pub(crate) struct StepC {
    pub pat: CPattern,
    pub gaps: Vec<GapC>,
}

/// A trailing absence.
#[derive(Debug, Clone)]
pub(crate) struct TrailC {
    pub pat: CPattern,
    /// `within D [of r]`: (D, slot index of the reference time in the final layout).
    pub within: Option<(Micros, usize)>,
}

/// A compiled sequence.
#[derive(Debug, Clone)]
pub(crate) struct SeqC {
    pub steps: Vec<StepC>,
    /// `neg_before[k]`: absences between step k-1 and step k (k >= 1).
    pub neg_before: Vec<Vec<CPattern>>,
    pub trailing: Vec<TrailC>,
    pub span: Option<Micros>,
    /// `layouts[k]`: what a partial that has matched k steps keeps (k = 0..=m).
    pub layouts: Vec<Layout>,
    /// Slot of the first step's time in each layout (when a window or span needs it).
    pub t0_slot: Vec<Option<usize>>,
    /// A plain funnel: no absences, no bound properties, no gaps, at most the start kept.
    /// Then one partial match per state suffices (the latest start) and the matcher keeps
    /// a single number per state.
    pub simple: bool,
}

/// A leaf criterion.
#[derive(Debug, Clone)]
pub(crate) enum LeafKind {
    Seq(SeqC),
    Count {
        pats: Vec<CPattern>,
        op: CmpOp,
        threshold: f64,
        cap: usize,
    },
    Distinct {
        prop: usize,
        pats: Vec<CPattern>,
        op: CmpOp,
        threshold: f64,
    },
    Agg {
        func: AggFn,
        prop: usize,
        pats: Vec<CPattern>,
        op: CmpOp,
        threshold: f64,
    },
    First {
        pats: Vec<CPattern>,
        within: Micros,
    },
    Stopped {
        pats: Vec<CPattern>,
        period: Micros,
    },
    Restarted {
        pats: Vec<CPattern>,
        gap: Micros,
    },
    Regularly {
        pats: Vec<CPattern>,
        k: u32,
        n: u32,
        bucket: Micros,
        offset: Micros,
    },
    Attr {
        prop: usize,
        cmp: Option<(CmpOp, Value)>,
    },
}

/// A leaf with its window and the name bits it reacts to.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub window: Option<Micros>,
    pub mask: u64,
    pub kind: LeafKind,
}

/// Boolean structure over leaves.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Leaf(usize),
}

/// A definition compiled for evaluation.
#[derive(Debug, Clone)]
pub struct Program {
    /// The definition's name.
    pub name: String,
    /// What it groups.
    pub unit: UnitKind,
    /// Properties read, by slot.
    pub props: Vec<PropRef>,
    pub(crate) name_sets: Vec<NameSetC>,
    pub(crate) root: Node,
    pub(crate) leaves: Vec<Leaf>,
    /// Some leaf reads every event (attributes), so none may be skipped.
    pub(crate) needs_all_events: bool,
    /// Can membership change without an event (windows, deadlines, recency, unit close)?
    pub(crate) has_timers: bool,
    /// Is a unit whose state no event touched a member?
    pub(crate) empty_member: bool,
    /// Durations that appear in the program (for the reference evaluator's change points).
    pub durations: Vec<Micros>,
    /// Calendar bucket sizes used by `regularly`.
    pub buckets: Vec<(Micros, Micros)>,
    /// The signals its patterns name, with the file's detector settings.
    pub signals: Option<sequin_signals::Plan>,
}

/// Monday 1970-01-05 is 4 days after the epoch: weeks start on Mondays.
const WEEK_OFFSET: Micros = 4 * DAY;

impl Program {
    /// Compiles the segment (or outcome) `name` of a checked file.
    pub fn compile(file: &SegFile, name: &str) -> Result<Program, EngineError> {
        let item = file
            .items
            .iter()
            .find(|i| i.name.name == name)
            .ok_or_else(|| EngineError::UnknownDefinition(name.to_string()))?;
        let mut c = Compiler {
            file,
            props: Vec::new(),
            prop_index: FxHashMap::default(),
            name_sets: Vec::new(),
            leaves: Vec::new(),
            durations: Vec::new(),
            buckets: Vec::new(),
            depth: 0,
        };
        let window = item.window.map(|d| d.micros);
        if let Some(w) = window {
            c.durations.push(w);
        }
        let root = c.expr(&item.body, window)?;
        let needs_all_events = c
            .leaves
            .iter()
            .any(|l| matches!(l.kind, LeafKind::Attr { .. }));
        let has_timers = item.unit != UnitKind::Users
            || c.leaves.iter().any(|l| {
                l.window.is_some()
                    || match &l.kind {
                        LeafKind::Seq(s) => s.trailing.iter().any(|t| t.within.is_some()),
                        LeafKind::First { .. }
                        | LeafKind::Stopped { .. }
                        | LeafKind::Regularly { .. } => true,
                        _ => false,
                    }
            });
        let mut durations = c.durations;
        durations.sort_unstable();
        durations.dedup();
        let config =
            sequin_signals::Config::from_file(file).map_err(|d| EngineError::Signals(d.message))?;
        let signals = sequin_signals::Plan::for_names(
            std::sync::Arc::new(config),
            c.name_sets.iter().flat_map(|s| match s {
                NameSetC::Names(ns) => ns.iter().map(String::as_str).collect::<Vec<_>>(),
                NameSetC::Any => Vec::new(),
            }),
        );
        let mut program = Program {
            name: name.to_string(),
            unit: item.unit,
            props: c.props,
            name_sets: c.name_sets,
            root,
            leaves: c.leaves,
            needs_all_events,
            has_timers,
            durations,
            buckets: c.buckets,
            empty_member: false,
            signals,
        };
        program.empty_member = program.compute_empty_member();
        Ok(program)
    }

    /// The name-mask bits an event with this name sets. Synthetic end events match only
    /// patterns that name them.
    pub fn name_bits(&self, name: &str, synthetic: bool) -> u64 {
        let mut bits = 0;
        for (i, set) in self.name_sets.iter().enumerate() {
            let hit = match set {
                // Wildcards match raw events only: a derived signal is seen only by a
                // pattern that names it (and synthetic end events likewise).
                NameSetC::Any => !synthetic && !name.starts_with(sequin_core::signal::PREFIX),
                NameSetC::Names(ns) => ns.iter().any(|n| n == name),
            };
            if hit {
                bits |= 1 << i;
            }
        }
        bits
    }

    /// Must every event be fed, even one whose name no pattern mentions?
    pub fn needs_all_events(&self) -> bool {
        self.needs_all_events
    }
}

struct Compiler<'a> {
    file: &'a SegFile,
    props: Vec<PropRef>,
    prop_index: FxHashMap<PropRef, usize>,
    name_sets: Vec<NameSetC>,
    leaves: Vec<Leaf>,
    durations: Vec<Micros>,
    buckets: Vec<(Micros, Micros)>,
    depth: usize,
}

fn min_window(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Compiler<'_> {
    fn prop(&mut self, path: &str, role: PropRole) -> usize {
        let key = PropRef {
            path: path.to_string(),
            role,
        };
        if let Some(&i) = self.prop_index.get(&key) {
            return i;
        }
        self.props.push(key.clone());
        self.prop_index.insert(key, self.props.len() - 1);
        self.props.len() - 1
    }

    fn name_bit(&mut self, names: &NameSet) -> Result<u64, EngineError> {
        let set = match names {
            NameSet::Any => NameSetC::Any,
            NameSet::Names(ns) => {
                let mut v: Vec<String> = ns.iter().map(|n| n.name.clone()).collect();
                v.sort();
                v.dedup();
                NameSetC::Names(v)
            }
        };
        let i = match self.name_sets.iter().position(|s| *s == set) {
            Some(i) => i,
            None => {
                if self.name_sets.len() == 64 {
                    return Err(EngineError::TooComplex(
                        "more than 64 distinct event-name sets in one definition".into(),
                    ));
                }
                self.name_sets.push(set);
                self.name_sets.len() - 1
            }
        };
        Ok(1 << i)
    }

    fn expr(&mut self, e: &Expr, window: Option<Micros>) -> Result<Node, EngineError> {
        Ok(match e {
            Expr::And(ps) => Node::And(
                ps.iter()
                    .map(|p| self.expr(p, window))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(ps) => Node::Or(
                ps.iter()
                    .map(|p| self.expr(p, window))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Node::Not(Box::new(self.expr(x, window)?)),
            Expr::Windowed(x, d) => {
                self.durations.push(d.micros);
                self.expr(x, min_window(window, Some(d.micros)))?
            }
            Expr::Criterion(Criterion::InSegment { name }) => {
                let other = self
                    .file
                    .items
                    .iter()
                    .find(|i| i.name.name == name.name && i.kind == ItemKind::Segment)
                    .ok_or_else(|| EngineError::UnknownDefinition(name.name.clone()))?;
                self.depth += 1;
                if self.depth > 64 {
                    return Err(EngineError::TooComplex(
                        "`in segment` nests too deep (a cycle?)".into(),
                    ));
                }
                if let Some(w) = other.window {
                    self.durations.push(w.micros);
                }
                let node = self.expr(
                    &other.body,
                    min_window(window, other.window.map(|d| d.micros)),
                )?;
                self.depth -= 1;
                node
            }
            Expr::Criterion(c) => {
                let leaf = self.criterion(c, window)?;
                self.leaves.push(leaf);
                Node::Leaf(self.leaves.len() - 1)
            }
        })
    }

    fn pattern(
        &mut self,
        p: &Pattern,
        binds: &dyn Fn(&str, BindWhat) -> Option<usize>,
    ) -> Result<CPattern, EngineError> {
        let bit = self.name_bit(&p.names)?;
        let pred = match &p.predicate {
            Some(pr) => Some(self.pred(pr, binds)?),
            None => None,
        };
        Ok(CPattern { bit, pred })
    }

    fn plain_patterns(&mut self, ps: &[Pattern]) -> Result<Vec<CPattern>, EngineError> {
        ps.iter().map(|p| self.pattern(p, &|_, _| None)).collect()
    }

    fn pred(
        &mut self,
        p: &Pred,
        binds: &dyn Fn(&str, BindWhat) -> Option<usize>,
    ) -> Result<CPred, EngineError> {
        Ok(match p {
            Pred::And(ps) => CPred::And(
                ps.iter()
                    .map(|x| self.pred(x, binds))
                    .collect::<Result<_, _>>()?,
            ),
            Pred::Or(ps) => CPred::Or(
                ps.iter()
                    .map(|x| self.pred(x, binds))
                    .collect::<Result<_, _>>()?,
            ),
            Pred::Not(x) => CPred::Not(Box::new(self.pred(x, binds)?)),
            Pred::Compare(a, op, b) => {
                CPred::Cmp(self.operand(a, binds)?, *op, self.operand(b, binds)?)
            }
            Pred::Truthy(a) => CPred::Truthy(self.operand(a, binds)?),
        })
    }

    fn operand(
        &mut self,
        o: &Operand,
        binds: &dyn Fn(&str, BindWhat) -> Option<usize>,
    ) -> Result<COperand, EngineError> {
        Ok(match o {
            Operand::Prop(p) => COperand::Prop(self.prop(&p.path, PropRole::Event)),
            Operand::AliasProp(a, p) => {
                let id = self.prop(&p.path, PropRole::Event);
                COperand::Bind(binds(&a.name, BindWhat::Prop(id)).ok_or_else(|| {
                    EngineError::TooComplex(format!("alias `{}` is not an earlier step", a.name))
                })?)
            }
            Operand::Time(f, None) => COperand::Time(*f),
            Operand::Time(f, Some(a)) => COperand::BindTime(
                *f,
                binds(&a.name, BindWhat::Ts).ok_or_else(|| {
                    EngineError::TooComplex(format!("alias `{}` is not an earlier step", a.name))
                })?,
            ),
            Operand::Lit(l) => COperand::Lit(literal_value(l)),
        })
    }

    fn criterion(&mut self, c: &Criterion, window: Option<Micros>) -> Result<Leaf, EngineError> {
        let kind = match c {
            Criterion::Sequence(s) => LeafKind::Seq(self.sequence(s, window)?),
            Criterion::Did { pattern, .. } => LeafKind::Count {
                pats: self.plain_patterns(std::slice::from_ref(pattern))?,
                op: CmpOp::Ge,
                threshold: 1.0,
                cap: 2,
            },
            Criterion::Count {
                patterns,
                threshold,
                ..
            } => LeafKind::Count {
                pats: self.plain_patterns(patterns)?,
                op: threshold.op,
                threshold: threshold.value,
                cap: (threshold.value.max(0.0).floor() as usize).saturating_add(1),
            },
            Criterion::CountDistinct {
                prop,
                patterns,
                threshold,
                ..
            } => LeafKind::Distinct {
                prop: self.prop(&prop.path, PropRole::Event),
                pats: self.plain_patterns(patterns)?,
                op: threshold.op,
                threshold: threshold.value,
            },
            Criterion::Aggregate {
                func,
                prop,
                patterns,
                threshold,
                ..
            } => LeafKind::Agg {
                func: *func,
                prop: self.prop(&prop.path, PropRole::Event),
                pats: self.plain_patterns(patterns)?,
                op: threshold.op,
                threshold: threshold.value,
            },
            Criterion::FirstDid {
                pattern, within, ..
            } => {
                self.durations.push(within.micros);
                LeafKind::First {
                    pats: self.plain_patterns(std::slice::from_ref(pattern))?,
                    within: within.micros,
                }
            }
            Criterion::Stopped {
                pattern, period, ..
            } => {
                self.durations.push(period.micros);
                LeafKind::Stopped {
                    pats: self.plain_patterns(std::slice::from_ref(pattern))?,
                    period: period.micros,
                }
            }
            Criterion::Restarted { pattern, gap, .. } => {
                self.durations.push(gap.micros);
                LeafKind::Restarted {
                    pats: self.plain_patterns(std::slice::from_ref(pattern))?,
                    gap: gap.micros,
                }
            }
            Criterion::Regularly {
                pattern,
                k,
                n,
                period,
                ..
            } => {
                let (bucket, offset) = match period {
                    Period::Days => (DAY, 0),
                    Period::Weeks => (7 * DAY, WEEK_OFFSET),
                };
                self.buckets.push((bucket, offset));
                LeafKind::Regularly {
                    pats: self.plain_patterns(std::slice::from_ref(pattern))?,
                    k: *k,
                    n: *n,
                    bucket,
                    offset,
                }
            }
            Criterion::Attribute { path, cmp, .. } => LeafKind::Attr {
                prop: self.prop(&path.path, PropRole::Attribute),
                cmp: cmp.as_ref().map(|(op, l)| (*op, literal_value(l))),
            },
            Criterion::InSegment { .. } => unreachable!("inlined by expr"),
        };
        let mask = match &kind {
            LeafKind::Seq(s) => {
                let mut m = 0;
                for st in &s.steps {
                    m |= st.pat.bit;
                }
                for ns in &s.neg_before {
                    for p in ns {
                        m |= p.bit;
                    }
                }
                for t in &s.trailing {
                    m |= t.pat.bit;
                }
                m
            }
            LeafKind::Count { pats, .. }
            | LeafKind::Distinct { pats, .. }
            | LeafKind::Agg { pats, .. }
            | LeafKind::First { pats, .. }
            | LeafKind::Stopped { pats, .. }
            | LeafKind::Restarted { pats, .. }
            | LeafKind::Regularly { pats, .. } => pats.iter().fold(0, |m, p| m | p.bit),
            LeafKind::Attr { .. } => u64::MAX,
        };
        Ok(Leaf { window, mask, kind })
    }

    fn sequence(&mut self, s: &Sequence, window: Option<Micros>) -> Result<SeqC, EngineError> {
        // Positive steps, and the absences before each / after the last.
        let mut positives: Vec<&Step> = Vec::new();
        let mut negs: Vec<Vec<&Step>> = vec![Vec::new()];
        for st in &s.steps {
            if st.negated {
                negs.last_mut().unwrap().push(st);
            } else {
                positives.push(st);
                negs.push(Vec::new());
            }
        }
        let m = positives.len();
        let trailing_steps = negs.pop().unwrap();
        let alias_of: FxHashMap<String, usize> = positives
            .iter()
            .enumerate()
            .filter_map(|(i, st)| st.pattern.alias.as_ref().map(|a| (a.name.clone(), i)))
            .collect();
        let resolve = |of: &Option<Ident>, default: usize| -> Result<usize, EngineError> {
            match of {
                Some(a) => alias_of
                    .get(&a.name)
                    .copied()
                    .ok_or_else(|| EngineError::TooComplex(format!("no step named `{}`", a.name))),
                None => Ok(default),
            }
        };
        if let Some(d) = s.span_within {
            self.durations.push(d.micros);
        }
        // Facts needed at state k: (source, dir) slots and binds, from constraints and
        // predicates of everything still to come.
        struct Need {
            from_step: usize, // the state index from which on this is needed (= reader's state)
            slot: Option<(Source, Dir)>,
            bind: Option<(usize, BindWhat)>,
        }
        let mut needs: Vec<Need> = Vec::new();
        let mut gaps_of: Vec<Vec<GapC>> = Vec::new();
        for (k, st) in positives.iter().enumerate() {
            let mut gaps = Vec::new();
            if st.next && k > 0 {
                gaps.push(GapC::Events(1, k - 1));
            }
            for g in &st.gaps {
                let prev = k.saturating_sub(1);
                gaps.push(match g {
                    Gap::Within(d, of) => {
                        self.durations.push(d.micros);
                        GapC::Within(d.micros, resolve(of, prev)?)
                    }
                    Gap::After(d, of) => {
                        self.durations.push(d.micros);
                        GapC::After(d.micros, resolve(of, prev)?)
                    }
                    Gap::WithinEvents(n, of, _) => GapC::Events(*n as u64, resolve(of, prev)?),
                });
            }
            for g in &gaps {
                let (src, dir) = match *g {
                    GapC::Within(_, r) => (Source::Time(r), Dir::Max),
                    GapC::After(_, r) => (Source::Time(r), Dir::Min),
                    GapC::Events(_, r) => (Source::Index(r), Dir::Max),
                };
                needs.push(Need {
                    from_step: k,
                    slot: Some((src, dir)),
                    bind: None,
                });
            }
            gaps_of.push(gaps);
        }
        let mut trailing_refs = Vec::new();
        for st in &trailing_steps {
            let r = match st.gaps.first() {
                Some(Gap::Within(d, of)) => {
                    self.durations.push(d.micros);
                    Some((d.micros, resolve(of, m - 1)?))
                }
                _ => None,
            };
            if let Some((_, r)) = r {
                needs.push(Need {
                    from_step: m,
                    slot: Some((Source::Time(r), Dir::Min)),
                    bind: None,
                });
            }
            trailing_refs.push(r);
        }
        if window.is_some() || s.span_within.is_some() {
            needs.push(Need {
                from_step: m,
                slot: Some((Source::Time(0), Dir::Max)),
                bind: None,
            });
        }
        // Binds read by predicates: a predicate of step k (or of absences before step k)
        // is evaluated against state k.
        let mut reads: Vec<(usize, &Pattern)> = Vec::new();
        for (k, st) in positives.iter().enumerate() {
            reads.push((k, &st.pattern));
            for n in &negs[k] {
                reads.push((k, &n.pattern));
            }
        }
        for st in &trailing_steps {
            reads.push((m, &st.pattern));
        }
        for (k, p) in &reads {
            if let Some(pr) = &p.predicate {
                let mut out = Vec::new();
                alias_reads(pr, &mut out);
                for (alias, what) in out {
                    let r = *alias_of.get(&alias).ok_or_else(|| {
                        EngineError::TooComplex(format!("no step named `{alias}`"))
                    })?;
                    let what = match what {
                        Some(path) => BindWhat::Prop(self.prop(&path, PropRole::Event)),
                        None => BindWhat::Ts,
                    };
                    needs.push(Need {
                        from_step: *k,
                        slot: None,
                        bind: Some((r, what)),
                    });
                }
            }
        }
        // Layout of state k: needs read at states >= k about steps < k.
        let mut layouts = Vec::with_capacity(m + 1);
        for k in 0..=m {
            let mut l = Layout::default();
            for n in &needs {
                if n.from_step < k {
                    continue; // read at an earlier state only
                }
                if let Some(s) = n.slot {
                    let step = match s.0 {
                        Source::Time(r) | Source::Index(r) => r,
                    };
                    if step < k && !l.slots.contains(&s) {
                        l.slots.push(s);
                    }
                }
                if let Some(b) = n.bind
                    && b.0 < k
                    && !l.binds.contains(&b)
                {
                    l.binds.push(b);
                }
            }
            if l.slots.len() > 8 {
                return Err(EngineError::TooComplex(
                    "a sequence keeps more than 8 step times at once".into(),
                ));
            }
            layouts.push(l);
        }
        let t0_slot = layouts
            .iter()
            .map(|l| {
                l.slots
                    .iter()
                    .position(|&s| s == (Source::Time(0), Dir::Max))
            })
            .collect();
        // Compile patterns against the layout of the state that evaluates them.
        let mut steps = Vec::with_capacity(m);
        for (k, st) in positives.iter().enumerate() {
            let layout = layouts[k].clone();
            let pat = self.pattern(&st.pattern, &|a, w| bind_index(&layout, &alias_of, a, w))?;
            steps.push(StepC {
                pat,
                gaps: gaps_of[k].clone(),
            });
        }
        let mut neg_before = Vec::with_capacity(m);
        for (k, ns) in negs.iter().enumerate() {
            let layout = layouts[k].clone();
            let mut v = Vec::new();
            for n in ns {
                v.push(self.pattern(&n.pattern, &|a, w| bind_index(&layout, &alias_of, a, w))?);
            }
            neg_before.push(v);
        }
        let final_layout = layouts[m].clone();
        let mut trailing = Vec::new();
        for (st, r) in trailing_steps.iter().zip(trailing_refs) {
            let pat = self.pattern(&st.pattern, &|a, w| {
                bind_index(&final_layout, &alias_of, a, w)
            })?;
            let within = r.map(|(d, r)| (d, final_layout.slot(Source::Time(r), Dir::Min)));
            trailing.push(TrailC { pat, within });
        }
        let simple = trailing.is_empty()
            && neg_before.iter().all(Vec::is_empty)
            && steps.iter().all(|st| st.gaps.is_empty())
            && layouts.iter().all(|l| {
                l.binds.is_empty() && l.slots.iter().all(|&s| s == (Source::Time(0), Dir::Max))
            });
        Ok(SeqC {
            steps,
            neg_before,
            trailing,
            span: s.span_within.map(|d| d.micros),
            layouts,
            t0_slot,
            simple,
        })
    }
}

fn bind_index(
    layout: &Layout,
    alias_of: &FxHashMap<String, usize>,
    alias: &str,
    what: BindWhat,
) -> Option<usize> {
    let r = *alias_of.get(alias)?;
    layout.binds.iter().position(|&b| b == (r, what))
}

/// (alias, Some(prop path) | None for ts) read by a predicate.
fn alias_reads(p: &Pred, out: &mut Vec<(String, Option<String>)>) {
    let mut operand = |o: &Operand| match o {
        Operand::AliasProp(a, p) => out.push((a.name.clone(), Some(p.path.clone()))),
        Operand::Time(_, Some(a)) => out.push((a.name.clone(), None)),
        _ => {}
    };
    match p {
        Pred::And(ps) | Pred::Or(ps) => {
            for x in ps {
                alias_reads(x, out);
            }
        }
        Pred::Not(x) => alias_reads(x, out),
        Pred::Compare(a, _, b) => {
            operand(a);
            operand(b);
        }
        Pred::Truthy(a) => operand(a),
    }
}
