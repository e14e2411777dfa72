//! Borrowed property values and the comparison rules of the language: numbers compare as
//! numbers whatever their storage type, text as text, and a missing value makes every
//! comparison false.

use sequin_core::Value;
use sequin_lang::ast::{CmpOp, Literal};

/// A property value borrowed from a column or an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    /// Boolean.
    Bool(bool),
    /// Whole number.
    Int(i64),
    /// Number.
    Float(f64),
    /// Text (composite JSON values appear as their text).
    Str(&'a str),
}

impl<'a> Val<'a> {
    /// Borrows a stored value.
    pub fn of(v: &'a Value) -> Val<'a> {
        match v {
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(i) => Val::Int(*i),
            Value::Float(f) => Val::Float(*f),
            Value::Str(s) => Val::Str(s),
            Value::Json(s) => Val::Str(s),
        }
    }

    /// Copies into an owned value.
    pub fn to_owned_value(self) -> Value {
        match self {
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::Int(i),
            Val::Float(f) => Value::Float(f),
            Val::Str(s) => Value::Str((*s).into()),
        }
    }

    /// As a number, when it is one.
    pub fn number(self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(i as f64),
            Val::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// A literal as a stored value.
pub fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Str(s) => Value::Str(s.as_str().into()),
        Literal::Int(i) => Value::Int(*i),
        Literal::Float(f) => Value::Float(*f),
        Literal::Bool(b) => Value::Bool(*b),
    }
}

/// Applies `op` to two present values. Values of different kinds are unequal and unordered.
pub fn compare(a: Val<'_>, op: CmpOp, b: Val<'_>) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::StartsWith => matches!((a, b), (Val::Str(x), Val::Str(y)) if x.starts_with(y)),
        CmpOp::Contains => matches!((a, b), (Val::Str(x), Val::Str(y)) if x.contains(y)),
    }
}

/// Compares a number against a threshold.
pub fn compare_number(x: f64, op: CmpOp, threshold: f64) -> bool {
    compare(Val::Float(x), op, Val::Float(threshold))
}

/// `weekday(ts)` as written in definitions: "mon" … "sun" (UTC).
pub fn weekday(t: i64) -> &'static str {
    const DAYS: [&str; 7] = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"];
    DAYS[t.div_euclid(sequin_core::time::DAY).rem_euclid(7) as usize]
}

/// `hour(ts)`: 0–23 (UTC).
pub fn hour(t: i64) -> i64 {
    t.rem_euclid(sequin_core::time::DAY) / sequin_core::time::HOUR
}
