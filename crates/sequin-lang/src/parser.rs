//! Recursive-descent parser from tokens to [`crate::ast`].
//!
//! A `where` predicate is greedy: it takes `and` clauses until one starts a criterion
//! (`did`, `count`, `sequence`, …). `or` always ends it (parenthesize `(a or b)` inside a
//! predicate). Inside `sequence { … }` a newline or `;` ends a step.

use std::collections::HashSet;

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::lexer::{Tok, Token, lex};

type PResult<T> = Result<T, Diagnostic>;

/// Parses a whole file.
pub fn parse(src: &str) -> Result<SegFile, Diagnostic> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        newlines: false,
        aliases: HashSet::new(),
    };
    let mut file = SegFile::default();
    while !p.at_eof() {
        if p.is_kw("signal") {
            file.signals.push(p.signal_block()?);
        } else {
            file.items.push(p.item()?);
        }
    }
    Ok(file)
}

const AGGREGATES: [(&str, AggFn); 4] = [
    ("sum", AggFn::Sum),
    ("avg", AggFn::Avg),
    ("min", AggFn::Min),
    ("max", AggFn::Max),
];

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Inside a sequence block, newlines separate steps.
    newlines: bool,
    /// Aliases declared by earlier steps of the sequence being parsed.
    aliases: HashSet<String>,
}

impl Parser {
    fn skip_newlines(&mut self) {
        if !self.newlines {
            while self.tokens[self.pos].tok == Tok::Newline {
                self.pos += 1;
            }
        }
    }

    fn peek(&mut self) -> &Token {
        self.skip_newlines();
        &self.tokens[self.pos]
    }

    /// The token `n` places after the next one (newlines skipped).
    fn peek_at(&self, n: usize) -> &Tok {
        let mut i = self.pos;
        let mut left = n;
        loop {
            while self.tokens[i].tok == Tok::Newline {
                i += 1;
            }
            if left == 0 || self.tokens[i].tok == Tok::Eof {
                return &self.tokens[i].tok;
            }
            left -= 1;
            i += 1;
        }
    }

    fn at_eof(&mut self) -> bool {
        self.peek().tok == Tok::Eof
    }

    fn next(&mut self) -> Token {
        self.skip_newlines();
        let t = self.tokens[self.pos].clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn is_kw(&mut self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn is_sym(&mut self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.is_sym(sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&mut self, expected: &str, hint: &str) -> Diagnostic {
        let t = self.peek().clone();
        let found = describe(&t.tok);
        let d = Diagnostic::error(t.span, format!("expected {expected}, found {found}"));
        if hint.is_empty() {
            d
        } else {
            d.with_hint(hint)
        }
    }

    fn expect_kw(&mut self, kw: &str, hint: &str) -> PResult<Span> {
        if self.is_kw(kw) {
            Ok(self.next().span)
        } else {
            Err(self.unexpected(&format!("`{kw}`"), hint))
        }
    }

    fn expect_sym(&mut self, sym: &str, hint: &str) -> PResult<Span> {
        if self.is_sym(sym) {
            Ok(self.next().span)
        } else {
            Err(self.unexpected(&format!("`{sym}`"), hint))
        }
    }

    fn ident(&mut self, what: &str, hint: &str) -> PResult<Ident> {
        match self.peek().tok.clone() {
            Tok::Ident(name) => {
                let span = self.next().span;
                Ok(Ident { name, span })
            }
            _ => Err(self.unexpected(what, hint)),
        }
    }

    fn duration(&mut self, hint: &str) -> PResult<Dur> {
        match self.peek().tok {
            Tok::Duration(micros) => {
                let span = self.next().span;
                if micros < 0 {
                    return Err(Diagnostic::error(span, "a duration cannot be negative"));
                }
                Ok(Dur { micros, span })
            }
            _ => Err(self.unexpected("a duration", hint)),
        }
    }

    /// `signal NAME { key value [, key value]… }`; settings are separated by commas,
    /// semicolons or newlines.
    fn signal_block(&mut self) -> PResult<SignalBlock> {
        let start = self.next().span; // `signal`
        let signal = self.ident(
            "a signal name",
            "e.g. `signal rage_click { clicks 4, within 2s }`",
        )?;
        self.expect_sym(
            "{",
            "settings go in braces: `signal rage_click { clicks 4 }`",
        )?;
        let mut settings = Vec::new();
        loop {
            while self.eat_sym(",") || self.eat_sym(";") {}
            if self.is_sym("}") {
                break;
            }
            let key = self.ident("a setting name", "write `key value`, e.g. `within 2s`")?;
            let value_start = self.peek().span;
            let value = match self.peek().tok.clone() {
                Tok::Int(n) => {
                    self.next();
                    SettingValue::Int(n)
                }
                Tok::Float(x) => {
                    self.next();
                    SettingValue::Float(x)
                }
                Tok::Duration(_) => SettingValue::Duration(self.duration("")?.micros),
                Tok::Str(_) => {
                    let mut names = Vec::new();
                    while let Tok::Str(s) = self.peek().tok.clone() {
                        self.next();
                        names.push(s);
                        if !(matches!(self.peek_at(1), Tok::Str(_)) && self.eat_sym(",")) {
                            break;
                        }
                    }
                    SettingValue::Names(names)
                }
                _ => {
                    return Err(self.unexpected(
                        "a number, a duration or a string",
                        "e.g. `clicks 4`, `within 2s` or `tools \"transfer\", \"handoff\"`",
                    ));
                }
            };
            let value_span = value_start.to(self.tokens[self.pos - 1].span);
            settings.push(SignalSetting {
                key,
                value,
                value_span,
            });
        }
        let end = self.expect_sym("}", "close the settings with `}`")?;
        Ok(SignalBlock {
            signal,
            settings,
            span: start.to(end),
        })
    }

    fn item(&mut self) -> PResult<Item> {
        let start = self.peek().span;
        let kind = if self.eat_kw("segment") {
            ItemKind::Segment
        } else if self.eat_kw("outcome") {
            ItemKind::Outcome
        } else {
            return Err(self.unexpected(
                "`segment`, `outcome` or `signal`",
                "a file holds definitions such as `segment name { did purchase }`",
            ));
        };
        let name = self.ident(
            "a name",
            "name the definition, e.g. `segment big_spenders { … }`",
        )?;
        if is_reserved(&name.name) {
            return Err(
                Diagnostic::error(name.span, format!("`{}` is a keyword", name.name))
                    .with_hint("choose another name"),
            );
        }
        let mut unit = UnitKind::Users;
        let mut window = None;
        loop {
            if self.eat_kw("of") {
                let u = self.ident("a unit", "units are users, sessions or conversations")?;
                unit = match u.name.as_str() {
                    "users" => UnitKind::Users,
                    "sessions" => UnitKind::Sessions,
                    "conversations" => UnitKind::Conversations,
                    _ => {
                        return Err(Diagnostic::error(
                            u.span,
                            format!("unknown unit `{}`", u.name),
                        )
                        .with_hint("units are users, sessions or conversations"));
                    }
                };
            } else if self.is_kw("during") {
                window = Some(self.during()?);
            } else {
                break;
            }
        }
        self.expect_sym("{", "the definition's body goes in braces")?;
        let description = match self.peek().tok.clone() {
            Tok::Str(s) => {
                self.next();
                Some(s)
            }
            _ => None,
        };
        let body = self.expr()?;
        let end = self.expect_sym(
            "}",
            "combine criteria with `and` / `or`; one definition per pair of braces",
        )?;
        Ok(Item {
            kind,
            name,
            unit,
            window,
            description,
            body,
            span: start.to(end),
        })
    }

    fn during(&mut self) -> PResult<Dur> {
        self.expect_kw("during", "")?;
        self.expect_kw("last", "write `during last 30d`")?;
        let d = self.duration("write `during last 30d`")?;
        if d.micros == 0 {
            return Err(Diagnostic::error(d.span, "an empty window")
                .with_hint("a window needs a positive length, e.g. `during last 30d`"));
        }
        Ok(d)
    }

    fn expr(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.and_expr()?];
        while self.eat_kw("or") {
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.unary()?];
        while self.eat_kw("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.eat_kw("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let atom = if self.eat_sym("(") {
            let inner = self.expr()?;
            self.expect_sym(")", "close the parenthesis")?;
            inner
        } else {
            Expr::Criterion(self.criterion()?)
        };
        if self.is_kw("during") {
            let d = self.during()?;
            return Ok(Expr::Windowed(Box::new(atom), d));
        }
        Ok(atom)
    }

    fn criterion(&mut self) -> PResult<Criterion> {
        let start = self.peek().span;
        let word = match &self.peek().tok {
            Tok::Ident(w) => w.clone(),
            _ => {
                return Err(self.unexpected(
                    "a criterion",
                    "criteria start with `did`, `sequence`, `count`, `not`, `in segment`, or an attribute such as `device.type == \"mobile\"`",
                ));
            }
        };
        match word.as_str() {
            "sequence" => self.sequence().map(Criterion::Sequence),
            "did" => {
                self.next();
                let pattern = self.pattern(false)?;
                let within = if self.eat_kw("within") {
                    Some(self.duration("`did X within 7d` (in outcomes)")?)
                } else {
                    None
                };
                let span = start.to(self.prev_span());
                Ok(Criterion::Did {
                    pattern,
                    within,
                    span,
                })
            }
            "count" => {
                self.next();
                if self.eat_kw("distinct") {
                    self.expect_sym("(", "write `count distinct(prop of event)`")?;
                    let prop = self.prop_path("a property")?;
                    self.expect_kw("of", "write `count distinct(prop of event)`")?;
                    let patterns = self.pattern_list()?;
                    self.expect_sym(")", "close the parenthesis")?;
                    let threshold = self.threshold()?;
                    let span = start.to(self.prev_span());
                    Ok(Criterion::CountDistinct {
                        prop,
                        patterns,
                        threshold,
                        span,
                    })
                } else {
                    self.expect_sym("(", "write `count(event) >= 3`")?;
                    let patterns = self.pattern_list()?;
                    self.expect_sym(")", "close the parenthesis; join patterns with `or`")?;
                    let threshold = self.threshold()?;
                    let span = start.to(self.prev_span());
                    Ok(Criterion::Count {
                        patterns,
                        threshold,
                        span,
                    })
                }
            }
            w if AGGREGATES.iter().any(|(k, _)| *k == w) && *self.peek_at(1) == Tok::Sym("(") => {
                let func = AGGREGATES.iter().find(|(k, _)| *k == w).unwrap().1;
                self.next();
                self.next();
                let (prop, patterns) = self.aggregate_args()?;
                self.expect_sym(")", "close the parenthesis")?;
                let threshold = self.threshold()?;
                let span = start.to(self.prev_span());
                Ok(Criterion::Aggregate {
                    func,
                    prop,
                    patterns,
                    threshold,
                    span,
                })
            }
            "first" if *self.peek_at(1) == Tok::Ident("did".into()) => {
                self.next();
                self.next();
                let pattern = self.pattern(false)?;
                self.expect_kw("within", "write `first did X within 7d`")?;
                let within = self.duration("write `first did X within 7d`")?;
                Ok(Criterion::FirstDid {
                    pattern,
                    within,
                    span: start.to(self.prev_span()),
                })
            }
            "stopped" => {
                self.next();
                let pattern = self.pattern(false)?;
                self.expect_kw("for", "write `stopped purchase for 30d`")?;
                let period = self.duration("write `stopped purchase for 30d`")?;
                Ok(Criterion::Stopped {
                    pattern,
                    period,
                    span: start.to(self.prev_span()),
                })
            }
            "restarted" => {
                self.next();
                let pattern = self.pattern(false)?;
                self.expect_kw("after", "write `restarted purchase after 30d`")?;
                let gap = self.duration("write `restarted purchase after 30d`")?;
                Ok(Criterion::Restarted {
                    pattern,
                    gap,
                    span: start.to(self.prev_span()),
                })
            }
            "regularly" => {
                self.next();
                let pattern = self.pattern(false)?;
                let hint = "write `regularly login in 3 of 4 weeks`";
                self.expect_kw("in", hint)?;
                let k = self.small_int(hint)?;
                self.expect_kw("of", hint)?;
                let n = self.small_int(hint)?;
                let unit = self.ident("`days` or `weeks`", hint)?;
                let period = match unit.name.as_str() {
                    "days" | "day" => Period::Days,
                    "weeks" | "week" => Period::Weeks,
                    _ => {
                        return Err(Diagnostic::error(unit.span, "expected `days` or `weeks`")
                            .with_hint(hint));
                    }
                };
                Ok(Criterion::Regularly {
                    pattern,
                    k,
                    n,
                    period,
                    span: start.to(self.prev_span()),
                })
            }
            "in" if *self.peek_at(1) == Tok::Ident("segment".into()) => {
                self.next();
                self.next();
                let name = self.ident("a segment name", "write `in segment other_name`")?;
                Ok(Criterion::InSegment { name })
            }
            w if is_reserved(w) => Err(Diagnostic::error(
                start,
                format!("`{w}` cannot start a criterion"),
            )
            .with_hint(
                "criteria start with `did`, `sequence`, `count`, `not`, `in segment`, or an attribute such as `device.type == \"mobile\"`",
            )),
            _ => {
                let path = self.prop_path("an attribute")?;
                let cmp = match self.cmp_op() {
                    Some(op) => Some((op, self.literal()?)),
                    None => None,
                };
                Ok(Criterion::Attribute {
                    path,
                    cmp,
                    span: start.to(self.prev_span()),
                })
            }
        }
    }

    fn prev_span(&self) -> Span {
        let mut i = self.pos.saturating_sub(1);
        while i > 0 && self.tokens[i].tok == Tok::Newline {
            i -= 1;
        }
        self.tokens[i].span
    }

    fn small_int(&mut self, hint: &str) -> PResult<u32> {
        match self.peek().tok {
            Tok::Int(v) if (0..=100_000).contains(&v) => {
                self.next();
                Ok(v as u32)
            }
            _ => Err(self.unexpected("a whole number", hint)),
        }
    }

    fn threshold(&mut self) -> PResult<Threshold> {
        let start = self.peek().span;
        let Some(op) = self.cmp_op() else {
            return Err(self.unexpected("a comparison", "e.g. `count(page_view) >= 3`"));
        };
        if matches!(op, CmpOp::StartsWith | CmpOp::Contains) {
            return Err(Diagnostic::error(start, "counts compare as numbers")
                .with_hint("use ==, !=, <, <=, > or >="));
        }
        let neg = self.eat_sym("-");
        let value = match self.peek().tok {
            Tok::Int(v) => v as f64,
            Tok::Float(v) => v,
            _ => return Err(self.unexpected("a number", "e.g. `>= 3`")),
        };
        self.next();
        Ok(Threshold {
            op,
            value: if neg { -value } else { value },
            span: start.to(self.prev_span()),
        })
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match &self.peek().tok {
            Tok::Sym("==") => CmpOp::Eq,
            Tok::Sym("!=") => CmpOp::Ne,
            Tok::Sym("<") => CmpOp::Lt,
            Tok::Sym("<=") => CmpOp::Le,
            Tok::Sym(">") => CmpOp::Gt,
            Tok::Sym(">=") => CmpOp::Ge,
            Tok::Ident(s) if s == "starts_with" => CmpOp::StartsWith,
            Tok::Ident(s) if s == "contains" => CmpOp::Contains,
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn literal(&mut self) -> PResult<Literal> {
        let neg = self.eat_sym("-");
        let t = self.peek().tok.clone();
        let lit = match t {
            Tok::Int(v) => Literal::Int(if neg { -v } else { v }),
            Tok::Float(v) => Literal::Float(if neg { -v } else { v }),
            Tok::Str(s) if !neg => Literal::Str(s),
            Tok::Ident(s) if !neg && s == "true" => Literal::Bool(true),
            Tok::Ident(s) if !neg && s == "false" => Literal::Bool(false),
            _ => {
                return Err(
                    self.unexpected("a value", "values are \"text\", numbers, true or false")
                );
            }
        };
        self.next();
        Ok(lit)
    }

    fn prop_path(&mut self, what: &str) -> PResult<PropPath> {
        let first = self.ident(what, "")?;
        let mut path = first.name;
        let mut span = first.span;
        while self.is_sym(".") {
            self.next();
            let part = self.ident("a property name after `.`", "")?;
            path.push('.');
            path.push_str(&part.name);
            span = span.to(part.span);
        }
        Ok(PropPath { path, span })
    }

    /// `prop of patterns` or the shorthand `event.prop [where …]`.
    fn aggregate_args(&mut self) -> PResult<(PropPath, Vec<Pattern>)> {
        let hint = "write `sum(purchase.amount)` or `sum(amount of purchase where …)`";
        if let Tok::Str(name) = self.peek().tok.clone() {
            let span = self.next().span;
            self.expect_sym(".", hint)?;
            let prop = self.prop_path("a property")?;
            let mut pattern = Pattern {
                names: NameSet::Names(vec![Ident { name, span }]),
                predicate: None,
                alias: None,
                span,
            };
            self.pattern_tail(&mut pattern)?;
            return Ok((prop, vec![pattern]));
        }
        let path = self.prop_path("an event and property")?;
        if self.eat_kw("of") {
            return Ok((path, self.pattern_list()?));
        }
        let Some(dot) = path.path.rfind('.') else {
            return Err(Diagnostic::error(path.span, "which property?").with_hint(hint));
        };
        let name = Ident {
            name: path.path[..dot].to_string(),
            span: Span {
                start: path.span.start,
                end: path.span.start + dot,
            },
        };
        let prop = PropPath {
            path: path.path[dot + 1..].to_string(),
            span: Span {
                start: path.span.start + dot + 1,
                end: path.span.end,
            },
        };
        let names = if name.name == "any" {
            NameSet::Any
        } else {
            NameSet::Names(vec![name])
        };
        let mut pattern = Pattern {
            names,
            predicate: None,
            alias: None,
            span: path.span,
        };
        self.pattern_tail(&mut pattern)?;
        Ok((prop, vec![pattern]))
    }

    fn pattern_list(&mut self) -> PResult<Vec<Pattern>> {
        let mut out = vec![self.pattern(false)?];
        while self.eat_kw("or") {
            out.push(self.pattern(false)?);
        }
        Ok(out)
    }

    fn event_name(&mut self) -> PResult<Ident> {
        match self.peek().tok.clone() {
            Tok::Str(name) => {
                let span = self.next().span;
                Ok(Ident { name, span })
            }
            Tok::Ident(w) if !is_reserved(&w) || w == "session_end" => {
                let p = self.prop_path("an event name")?;
                Ok(Ident {
                    name: p.path,
                    span: p.span,
                })
            }
            _ => Err(self.unexpected(
                "an event name",
                "write the name, or quote it if it is not a plain word: \"W_Afhandelen leads\"",
            )),
        }
    }

    fn pattern(&mut self, allow_alias: bool) -> PResult<Pattern> {
        let start = self.peek().span;
        let names = if self.eat_kw("any") {
            NameSet::Any
        } else {
            let mut names = vec![self.event_name()?];
            while self.eat_sym("|") {
                names.push(self.event_name()?);
            }
            NameSet::Names(names)
        };
        let mut pattern = Pattern {
            names,
            predicate: None,
            alias: None,
            span: start,
        };
        if allow_alias && self.is_kw("as") {
            pattern.alias = Some(self.alias()?);
        }
        self.pattern_tail(&mut pattern)?;
        if allow_alias && pattern.alias.is_none() && self.is_kw("as") {
            pattern.alias = Some(self.alias()?);
        }
        pattern.span = start.to(self.prev_span());
        Ok(pattern)
    }

    fn alias(&mut self) -> PResult<Ident> {
        self.expect_kw("as", "")?;
        let a = self.ident("an alias", "write `as name`")?;
        if is_reserved(&a.name) {
            return Err(
                Diagnostic::error(a.span, format!("`{}` is a keyword", a.name))
                    .with_hint("choose another alias"),
            );
        }
        Ok(a)
    }

    fn pattern_tail(&mut self, pattern: &mut Pattern) -> PResult<()> {
        if self.eat_kw("where") {
            pattern.predicate = Some(self.pred_conj()?);
        }
        Ok(())
    }

    /// Does the upcoming text start a criterion (rather than continue a predicate)?
    fn starts_criterion(&self, mut at: usize) -> bool {
        loop {
            match self.peek_at(at) {
                Tok::Sym("(") => at += 1,
                Tok::Ident(w) if w == "not" => at += 1,
                Tok::Ident(w) => {
                    let next = self.peek_at(at + 1);
                    return match w.as_str() {
                        "sequence" | "did" | "count" | "stopped" | "restarted" | "regularly" => {
                            true
                        }
                        "first" => *next == Tok::Ident("did".into()),
                        "in" => *next == Tok::Ident("segment".into()),
                        "sum" | "avg" | "min" | "max" => *next == Tok::Sym("("),
                        _ => false,
                    };
                }
                _ => return false,
            }
        }
    }

    /// Predicate at `where` level: `and` chains; `or` ends it (unless parenthesized).
    fn pred_conj(&mut self) -> PResult<Pred> {
        let mut parts = vec![self.pred_unary()?];
        while self.is_kw("and") && !self.starts_criterion(1) {
            self.next();
            parts.push(self.pred_unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Pred::And(parts)
        })
    }

    fn pred_full(&mut self) -> PResult<Pred> {
        let mut parts = vec![self.pred_conj()?];
        while self.eat_kw("or") {
            parts.push(self.pred_conj()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Pred::Or(parts)
        })
    }

    fn pred_unary(&mut self) -> PResult<Pred> {
        if self.eat_kw("not") {
            return Ok(Pred::Not(Box::new(self.pred_unary()?)));
        }
        if self.is_sym("(") {
            self.next();
            let saved = std::mem::replace(&mut self.newlines, false);
            let inner = self.pred_full();
            self.newlines = saved;
            let inner = inner?;
            self.expect_sym(")", "close the parenthesis")?;
            return Ok(inner);
        }
        let lhs = self.operand()?;
        match self.cmp_op() {
            Some(op) => Ok(Pred::Compare(lhs, op, self.operand()?)),
            None => Ok(Pred::Truthy(lhs)),
        }
    }

    fn operand(&mut self) -> PResult<Operand> {
        match self.peek().tok.clone() {
            Tok::Ident(w)
                if (w == "weekday" || w == "hour") && *self.peek_at(1) == Tok::Sym("(") =>
            {
                self.next();
                self.next();
                let f = if w == "weekday" {
                    TimeFn::Weekday
                } else {
                    TimeFn::Hour
                };
                let target = self.ident("`ts`", "write `weekday(ts)` or `hour(alias.ts)`")?;
                let alias = if target.name == "ts" {
                    None
                } else {
                    self.expect_sym(".", "write `weekday(ts)` or `hour(alias.ts)`")?;
                    let ts = self.ident("`ts`", "")?;
                    if ts.name != "ts" {
                        return Err(Diagnostic::error(ts.span, "time functions take a time")
                            .with_hint("write `weekday(ts)` or `hour(alias.ts)`"));
                    }
                    Some(target)
                };
                self.expect_sym(")", "close the parenthesis")?;
                Ok(Operand::Time(f, alias))
            }
            Tok::Ident(w) if w != "true" && w != "false" => {
                let path = self.prop_path("a property")?;
                if let Some(dot) = path.path.find('.') {
                    let head = &path.path[..dot];
                    if self.aliases.contains(head) {
                        let alias = Ident {
                            name: head.to_string(),
                            span: Span {
                                start: path.span.start,
                                end: path.span.start + dot,
                            },
                        };
                        let prop = PropPath {
                            path: path.path[dot + 1..].to_string(),
                            span: Span {
                                start: path.span.start + dot + 1,
                                end: path.span.end,
                            },
                        };
                        return Ok(Operand::AliasProp(alias, prop));
                    }
                }
                Ok(Operand::Prop(path))
            }
            _ => Ok(Operand::Lit(self.literal()?)),
        }
    }

    fn sequence(&mut self) -> PResult<Sequence> {
        let start = self.expect_kw("sequence", "")?;
        let span_within = if self.eat_kw("within") {
            Some(self.duration("write `sequence within 1h { … }`")?)
        } else {
            None
        };
        self.expect_sym("{", "steps go in braces: `sequence { a; b }`")?;
        let saved_newlines = std::mem::replace(&mut self.newlines, true);
        let saved_aliases = std::mem::take(&mut self.aliases);
        let result = self.steps();
        self.newlines = saved_newlines;
        self.aliases = saved_aliases;
        let steps = result?;
        let end = self.prev_span();
        Ok(Sequence {
            span_within,
            steps,
            span: start.to(end),
        })
    }

    fn at_separator(&self) -> bool {
        matches!(self.tokens[self.pos].tok, Tok::Newline | Tok::Sym(";"))
    }

    fn steps(&mut self) -> PResult<Vec<Step>> {
        let mut steps = Vec::new();
        loop {
            while self.at_separator() {
                self.pos += 1;
            }
            if self.eat_sym("}") {
                break;
            }
            steps.push(self.step()?);
            if !self.at_separator() && !self.is_sym("}") {
                return Err(self.unexpected(
                    "the end of the step",
                    "separate steps with a new line or `;`",
                ));
            }
        }
        Ok(steps)
    }

    fn step(&mut self) -> PResult<Step> {
        let start = self.peek().span;
        let negated = self.eat_kw("not");
        let next = !negated && self.eat_kw("next");
        let pattern = self.pattern(!negated)?;
        let mut gaps = Vec::new();
        loop {
            if self.eat_kw("within") {
                match self.peek().tok {
                    Tok::Int(n) if n >= 1 => {
                        let nspan = self.next().span;
                        self.expect_kw("events", "write `within 3 events`")?;
                        let of = self.gap_of()?;
                        gaps.push(Gap::WithinEvents(n.min(u32::MAX as i64) as u32, of, nspan));
                    }
                    _ => {
                        let d = self.duration("write `within 30s` or `within 3 events`")?;
                        gaps.push(Gap::Within(d, self.gap_of()?));
                    }
                }
            } else if self.eat_kw("after") {
                let d = self.duration("write `after 8s`")?;
                gaps.push(Gap::After(d, self.gap_of()?));
            } else {
                break;
            }
        }
        if let Some(a) = &pattern.alias {
            self.aliases.insert(a.name.clone());
        }
        Ok(Step {
            negated,
            next,
            pattern,
            gaps,
            span: start.to(self.prev_span()),
        })
    }

    fn gap_of(&mut self) -> PResult<Option<Ident>> {
        if self.eat_kw("of") {
            Ok(Some(
                self.ident("a step alias", "write `within 30s of pay`")?,
            ))
        } else {
            Ok(None)
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Int(v) => format!("`{v}`"),
        Tok::Float(v) => format!("`{v}`"),
        Tok::Duration(_) => "a duration".into(),
        Tok::Sym(s) => format!("`{s}`"),
        Tok::Newline => "end of line".into(),
        Tok::Eof => "end of file".into(),
    }
}

/// Words that cannot name an event without quotes.
pub fn is_reserved(w: &str) -> bool {
    matches!(
        w,
        "segment"
            | "outcome"
            | "and"
            | "or"
            | "not"
            | "next"
            | "did"
            | "sequence"
            | "count"
            | "distinct"
            | "within"
            | "after"
            | "of"
            | "as"
            | "where"
            | "during"
            | "last"
            | "in"
            | "any"
            | "first"
            | "stopped"
            | "restarted"
            | "regularly"
            | "for"
            | "true"
            | "false"
    )
}
