//! The syntax tree. Spans never take part in equality, so `parse(fmt(x)) == parse(x)` compares
//! meaning, not layout.

use sequin_core::time::Micros;

/// A byte range in the source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Span {
    /// A span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A whole `.seg` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegFile {
    /// Segments and outcomes in source order.
    pub items: Vec<Item>,
    /// `signal NAME { … }` blocks: detector settings for the whole file.
    pub signals: Vec<SignalBlock>,
}

/// `signal rage_click { clicks 4, within 2s }`: settings of one signal detector.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalBlock {
    /// The signal's name, without the `signal.` prefix.
    pub signal: Ident,
    /// Its settings in source order.
    pub settings: Vec<SignalSetting>,
    /// The whole block.
    pub span: Span,
}

/// One `key value` of a [`SignalBlock`].
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSetting {
    /// The setting's key.
    pub key: Ident,
    /// Its value.
    pub value: SettingValue,
    /// Where the value was written.
    pub value_span: Span,
}

/// A setting's literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A duration (µs).
    Duration(Micros),
    /// One or more strings.
    Names(Vec<String>),
}

/// Segment or outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `segment`.
    Segment,
    /// `outcome`.
    Outcome,
}

/// What a definition groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum UnitKind {
    /// People (user id, else anonymous id). The default.
    #[default]
    Users,
    /// Sessions: explicit session id, else runs without a 30-minute gap.
    Sessions,
    /// Conversations (events sharing a conversation id).
    Conversations,
}

impl UnitKind {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            UnitKind::Users => "users",
            UnitKind::Sessions => "sessions",
            UnitKind::Conversations => "conversations",
        }
    }
}

/// A `segment` or `outcome` definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Segment or outcome.
    pub kind: ItemKind,
    /// Its name.
    pub name: Ident,
    /// `of users|sessions|conversations`.
    pub unit: UnitKind,
    /// `during last D` for the whole definition.
    pub window: Option<Dur>,
    /// The description string.
    pub description: Option<String>,
    /// The criterion.
    pub body: Expr,
    /// The whole item.
    pub span: Span,
}

/// A duration literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur {
    /// Microseconds.
    pub micros: Micros,
    /// Where.
    pub span: Span,
}

/// A boolean combination of criteria.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All of them.
    And(Vec<Expr>),
    /// Any of them.
    Or(Vec<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// `( expr ) during last D`: a sub-expression with its own window.
    Windowed(Box<Expr>, Dur),
    /// A leaf.
    Criterion(Criterion),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `starts_with`
    StartsWith,
    /// `contains`
    Contains,
}

impl CmpOp {
    /// How it is written.
    pub fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::StartsWith => "starts_with",
            CmpOp::Contains => "contains",
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Text.
    Str(String),
    /// Whole number.
    Int(i64),
    /// Number.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

/// A number compared against (a threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// Operator.
    pub op: CmpOp,
    /// Number.
    pub value: f64,
    /// Where.
    pub span: Span,
}

/// Aggregate functions over a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl AggFn {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            AggFn::Sum => "sum",
            AggFn::Avg => "avg",
            AggFn::Min => "min",
            AggFn::Max => "max",
        }
    }
}

/// Calendar buckets for `regularly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// UTC days.
    Days,
    /// ISO weeks (Monday to Sunday, UTC).
    Weeks,
}

/// A leaf criterion.
#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    /// `sequence [within D] { steps }`.
    Sequence(Sequence),
    /// `did P [within D]` (`within` only in outcomes: relative to the anchor).
    Did {
        /// What.
        pattern: Pattern,
        /// Outcome horizon.
        within: Option<Dur>,
        /// Where.
        span: Span,
    },
    /// `count(P or Q…) op N`.
    Count {
        /// What is counted.
        patterns: Vec<Pattern>,
        /// Compared with.
        threshold: Threshold,
        /// Where.
        span: Span,
    },
    /// `count distinct(prop of P…) op N`.
    CountDistinct {
        /// The property whose distinct values count.
        prop: PropPath,
        /// Over which events.
        patterns: Vec<Pattern>,
        /// Compared with.
        threshold: Threshold,
        /// Where.
        span: Span,
    },
    /// `sum|avg|min|max(P.prop) op N`.
    Aggregate {
        /// Function.
        func: AggFn,
        /// Property.
        prop: PropPath,
        /// Over which events.
        patterns: Vec<Pattern>,
        /// Compared with.
        threshold: Threshold,
        /// Where.
        span: Span,
    },
    /// `first did P within D`: the unit's first P happened in the last D.
    FirstDid {
        /// What.
        pattern: Pattern,
        /// How recent.
        within: Dur,
        /// Where.
        span: Span,
    },
    /// `stopped P for D`: did P, and not in the last D.
    Stopped {
        /// What.
        pattern: Pattern,
        /// Quiet period.
        period: Dur,
        /// Where.
        span: Span,
    },
    /// `restarted P after D`: two consecutive P at least D apart.
    Restarted {
        /// What.
        pattern: Pattern,
        /// Minimum gap.
        gap: Dur,
        /// Where.
        span: Span,
    },
    /// `regularly P in K of N days|weeks`.
    Regularly {
        /// What.
        pattern: Pattern,
        /// Active buckets needed.
        k: u32,
        /// Buckets looked at (ending with the current one).
        n: u32,
        /// Bucket size.
        period: Period,
        /// Where.
        span: Span,
    },
    /// A unit attribute compared with a literal, or a bare (truthy) attribute.
    Attribute {
        /// Attribute path (`device.type`).
        path: PropPath,
        /// Comparison (None = truthy).
        cmp: Option<(CmpOp, Literal)>,
        /// Where.
        span: Span,
    },
    /// `in segment NAME`.
    InSegment {
        /// The other segment.
        name: Ident,
    },
}

/// A dotted property path (`device.type`, `amount`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropPath {
    /// Text, dots included.
    pub path: String,
    /// Where.
    pub span: Span,
}

/// Which event names a pattern matches.
#[derive(Debug, Clone, PartialEq)]
pub enum NameSet {
    /// `any`: every real event.
    Any,
    /// One of these names (`a | b | "c d"`).
    Names(Vec<Ident>),
}

/// An event pattern: names, an optional predicate, an optional alias.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// Names.
    pub names: NameSet,
    /// `where …`.
    pub predicate: Option<Pred>,
    /// `as alias`.
    pub alias: Option<Ident>,
    /// Where.
    pub span: Span,
}

/// A predicate over one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// All.
    And(Vec<Pred>),
    /// Any.
    Or(Vec<Pred>),
    /// Not.
    Not(Box<Pred>),
    /// `operand op operand`.
    Compare(Operand, CmpOp, Operand),
    /// A bare operand: true when it is boolean true.
    Truthy(Operand),
}

/// Time functions usable in predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFn {
    /// `weekday(ts)`: "mon" … "sun" (UTC).
    Weekday,
    /// `hour(ts)`: 0–23 (UTC).
    Hour,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property of the event being matched.
    Prop(PropPath),
    /// A property of an earlier step, by alias (`view.product_id`).
    AliasProp(Ident, PropPath),
    /// A time function of the event (`weekday(ts)`), or of an aliased step (`hour(view.ts)`).
    Time(TimeFn, Option<Ident>),
    /// A constant.
    Lit(Literal),
}

/// A `sequence { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// `sequence within D`: first-to-last span.
    pub span_within: Option<Dur>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Where.
    pub span: Span,
}

/// A gap constraint on a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Gap {
    /// `within D [of alias]`: at most D after the reference step (inclusive).
    Within(Dur, Option<Ident>),
    /// `after D [of alias]`: at least D after the reference step.
    After(Dur, Option<Ident>),
    /// `within N events [of alias]`: at most N events after the reference step.
    WithinEvents(u32, Option<Ident>, Span),
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `not P`: an absence.
    pub negated: bool,
    /// `next P`: the very next event.
    pub next: bool,
    /// The event pattern.
    pub pattern: Pattern,
    /// Gap constraints.
    pub gaps: Vec<Gap>,
    /// Where.
    pub span: Span,
}
