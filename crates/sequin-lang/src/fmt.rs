//! The canonical form: one definition per block, one step per line, four-space indent,
//! durations in their largest exact unit. `parse(format(x)) == parse(x)`.

use std::fmt::Write;

use crate::ast::*;
use crate::parser::is_reserved;
use sequin_core::time::{DAY, HOUR, MINUTE, Micros, SECOND};

/// Formats a whole file.
pub fn format_file(file: &SegFile) -> String {
    let mut out = String::new();
    for block in &file.signals {
        out.push_str(&format_signal_block(block));
    }
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 || !file.signals.is_empty() {
            out.push('\n');
        }
        out.push_str(&format_item(item));
    }
    out
}

/// Formats one `signal NAME { … }` block on one line.
pub fn format_signal_block(block: &SignalBlock) -> String {
    let settings: Vec<String> = block
        .settings
        .iter()
        .map(|s| {
            let value = match &s.value {
                SettingValue::Int(n) => n.to_string(),
                SettingValue::Float(x) => format!("{x:?}"),
                SettingValue::Duration(d) => duration(*d),
                SettingValue::Names(names) => names
                    .iter()
                    .map(|n| quote(n))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            format!("{} {value}", s.key.name)
        })
        .collect();
    if settings.is_empty() {
        return format!("signal {} {{}}\n", block.signal.name);
    }
    format!(
        "signal {} {{ {} }}\n",
        block.signal.name,
        settings.join("; ")
    )
}

/// Formats one definition.
pub fn format_item(item: &Item) -> String {
    let mut out = String::new();
    out.push_str(match item.kind {
        ItemKind::Segment => "segment ",
        ItemKind::Outcome => "outcome ",
    });
    out.push_str(&item.name.name);
    if item.unit != UnitKind::Users {
        write!(out, " of {}", item.unit.keyword()).unwrap();
    }
    if let Some(w) = &item.window {
        write!(out, " during last {}", duration(w.micros)).unwrap();
    }
    out.push_str(" {\n");
    if let Some(d) = &item.description {
        writeln!(out, "    {}", quote(d)).unwrap();
    }
    writeln!(out, "    {}", expr(&item.body, 1)).unwrap();
    out.push_str("}\n");
    out
}

/// Formats a duration in its largest exact unit.
pub fn duration(m: Micros) -> String {
    for (unit, size) in [
        ("w", 7 * DAY),
        ("d", DAY),
        ("h", HOUR),
        ("m", MINUTE),
        ("s", SECOND),
        ("ms", 1000),
    ] {
        if m % size == 0 {
            return format!("{}{unit}", m / size);
        }
    }
    format!("{m}us")
}

/// A string literal, quoted and escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn expr(e: &Expr, depth: usize) -> String {
    match e {
        Expr::Or(parts) => parts
            .iter()
            .map(|p| match p {
                Expr::Or(_) => format!("({})", expr(p, depth)),
                _ => expr(p, depth),
            })
            .collect::<Vec<_>>()
            .join(" or "),
        Expr::And(parts) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                let text = expr(p, depth);
                let followed_by_plain = parts
                    .get(i + 1)
                    .is_some_and(|n| !starts_with_criterion_keyword(n));
                let wrap = matches!(p, Expr::Or(_) | Expr::And(_))
                    || (followed_by_plain && ends_with_predicate(p));
                if i > 0 {
                    out.push_str(" and ");
                }
                if wrap {
                    write!(out, "({text})").unwrap();
                } else {
                    out.push_str(&text);
                }
            }
            out
        }
        Expr::Not(inner) => match **inner {
            Expr::And(_) | Expr::Or(_) => format!("not ({})", expr(inner, depth)),
            _ => format!("not {}", expr(inner, depth)),
        },
        Expr::Windowed(inner, d) => match **inner {
            Expr::Criterion(_) => {
                format!("{} during last {}", expr(inner, depth), duration(d.micros))
            }
            _ => format!(
                "({}) during last {}",
                expr(inner, depth),
                duration(d.micros)
            ),
        },
        Expr::Criterion(c) => criterion(c, depth),
    }
}

/// Would a predicate at the end of `e` swallow a following `and` clause?
fn ends_with_predicate(e: &Expr) -> bool {
    match e {
        Expr::Not(inner) => ends_with_predicate(inner),
        Expr::Criterion(Criterion::Did {
            pattern, within, ..
        }) => within.is_none() && pattern.predicate.is_some(),
        _ => false,
    }
}

fn starts_with_criterion_keyword(e: &Expr) -> bool {
    match e {
        Expr::Not(inner) => starts_with_criterion_keyword(inner),
        Expr::Criterion(Criterion::Attribute { .. }) => false,
        Expr::Windowed(inner, _) => starts_with_criterion_keyword(inner),
        Expr::Criterion(_) => true,
        Expr::And(_) | Expr::Or(_) => false,
    }
}

fn criterion(c: &Criterion, depth: usize) -> String {
    match c {
        Criterion::Sequence(s) => sequence(s, depth),
        Criterion::Did {
            pattern: p, within, ..
        } => {
            let mut out = format!("did {}", pattern(p));
            if let Some(w) = within {
                write!(out, " within {}", duration(w.micros)).unwrap();
            }
            out
        }
        Criterion::Count {
            patterns,
            threshold,
            ..
        } => format!("count({}) {}", pattern_list(patterns), thresh(threshold)),
        Criterion::CountDistinct {
            prop,
            patterns,
            threshold,
            ..
        } => format!(
            "count distinct({} of {}) {}",
            prop.path,
            pattern_list(patterns),
            thresh(threshold)
        ),
        Criterion::Aggregate {
            func,
            prop,
            patterns,
            threshold,
            ..
        } => {
            let shorthand = patterns.len() == 1
                && patterns[0].predicate.is_none()
                && matches!(&patterns[0].names, NameSet::Names(n) if n.len() == 1);
            let args = if shorthand {
                format!("{}.{}", pattern(&patterns[0]), prop.path)
            } else {
                format!("{} of {}", prop.path, pattern_list(patterns))
            };
            format!("{}({args}) {}", func.keyword(), thresh(threshold))
        }
        Criterion::FirstDid {
            pattern: p, within, ..
        } => format!(
            "first did {} within {}",
            pattern(p),
            duration(within.micros)
        ),
        Criterion::Stopped {
            pattern: p, period, ..
        } => format!("stopped {} for {}", pattern(p), duration(period.micros)),
        Criterion::Restarted {
            pattern: p, gap, ..
        } => format!("restarted {} after {}", pattern(p), duration(gap.micros)),
        Criterion::Regularly {
            pattern: p,
            k,
            n,
            period,
            ..
        } => format!(
            "regularly {} in {k} of {n} {}",
            pattern(p),
            match period {
                Period::Days => "days",
                Period::Weeks => "weeks",
            }
        ),
        Criterion::Attribute { path, cmp, .. } => match cmp {
            Some((op, lit)) => format!("{} {} {}", path.path, op.text(), literal(lit)),
            None => path.path.clone(),
        },
        Criterion::InSegment { name } => format!("in segment {}", name.name),
    }
}

fn thresh(t: &Threshold) -> String {
    format!("{} {}", t.op.text(), number(t.value))
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9e18 {
        format!("{}", v as i64)
    } else {
        format!("{v:?}")
    }
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Str(s) => quote(s),
        Literal::Int(v) => v.to_string(),
        Literal::Float(v) => {
            let s = format!("{v:?}");
            if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
                s
            } else {
                format!("{s}.0")
            }
        }
        Literal::Bool(b) => b.to_string(),
    }
}

fn pattern_list(ps: &[Pattern]) -> String {
    ps.iter().map(pattern).collect::<Vec<_>>().join(" or ")
}

/// An event name as the language writes it: bare when it is a plain identifier, else quoted.
pub fn event_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
        && !name.split('.').any(is_reserved);
    if plain { name.to_string() } else { quote(name) }
}

fn pattern(p: &Pattern) -> String {
    let mut out = match &p.names {
        NameSet::Any => "any".to_string(),
        NameSet::Names(names) => names
            .iter()
            .map(|n| event_name(&n.name))
            .collect::<Vec<_>>()
            .join(" | "),
    };
    if let Some(a) = &p.alias {
        write!(out, " as {}", a.name).unwrap();
    }
    if let Some(pred) = &p.predicate {
        write!(out, " where {}", where_pred(pred)).unwrap();
    }
    out
}

fn where_pred(p: &Pred) -> String {
    match p {
        Pred::Or(_) => format!("({})", pred(p)),
        _ => pred(p),
    }
}

fn pred(p: &Pred) -> String {
    match p {
        Pred::Or(parts) => parts
            .iter()
            .map(|x| match x {
                Pred::Or(_) => format!("({})", pred(x)),
                _ => pred(x),
            })
            .collect::<Vec<_>>()
            .join(" or "),
        Pred::And(parts) => parts
            .iter()
            .map(|x| match x {
                Pred::Or(_) | Pred::And(_) => format!("({})", pred(x)),
                _ => pred(x),
            })
            .collect::<Vec<_>>()
            .join(" and "),
        Pred::Not(inner) => match **inner {
            Pred::Or(_) | Pred::And(_) => format!("not ({})", pred(inner)),
            _ => format!("not {}", pred(inner)),
        },
        Pred::Compare(a, op, b) => format!("{} {} {}", operand(a), op.text(), operand(b)),
        Pred::Truthy(a) => operand(a),
    }
}

fn operand(o: &Operand) -> String {
    match o {
        Operand::Prop(p) => p.path.clone(),
        Operand::AliasProp(a, p) => format!("{}.{}", a.name, p.path),
        Operand::Time(f, alias) => {
            let name = match f {
                TimeFn::Weekday => "weekday",
                TimeFn::Hour => "hour",
            };
            match alias {
                Some(a) => format!("{name}({}.ts)", a.name),
                None => format!("{name}(ts)"),
            }
        }
        Operand::Lit(l) => literal(l),
    }
}

/// One sequence step as written: `not X`, `next X`, `X where … within 10m of a`.
pub fn step(step: &Step) -> String {
    let mut out = String::new();
    if step.negated {
        out.push_str("not ");
    } else if step.next {
        out.push_str("next ");
    }
    out.push_str(&pattern(&step.pattern));
    for g in &step.gaps {
        let (text, of) = match g {
            Gap::Within(d, of) => (format!(" within {}", duration(d.micros)), of),
            Gap::After(d, of) => (format!(" after {}", duration(d.micros)), of),
            Gap::WithinEvents(n, of, _) => (format!(" within {n} events"), of),
        };
        out.push_str(&text);
        if let Some(a) = of {
            write!(out, " of {}", a.name).unwrap();
        }
    }
    out
}

fn sequence(s: &Sequence, depth: usize) -> String {
    let indent = "    ".repeat(depth + 1);
    let mut out = String::from("sequence");
    if let Some(w) = &s.span_within {
        write!(out, " within {}", duration(w.micros)).unwrap();
    }
    out.push_str(" {\n");
    for st in &s.steps {
        out.push_str(&indent);
        out.push_str(&step(st));
        out.push('\n');
    }
    out.push_str(&"    ".repeat(depth));
    out.push('}');
    out
}
