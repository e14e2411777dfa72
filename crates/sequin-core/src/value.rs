//! Typed property values.
//!
//! Properties keep the type they arrived with: a JSON number stays a number, a CSV cell that
//! reads as a number becomes one. Nested objects are flattened into dotted keys
//! (`{"product":{"id":1}}` gives `product.id`); arrays are kept as JSON text.

use std::fmt;

/// Short text kept inline (up to 24 bytes) instead of on the heap: property keys and
/// values are mostly short, and an event carries dozens of them, so this saves an
/// allocation and a cross-thread free for each.
pub type Text = compact_str::CompactString;

/// One property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fractional part (or too large for `i64`).
    Float(f64),
    /// Text.
    Str(Text),
    /// An array (or other composite), kept as JSON text.
    Json(String),
}

impl Value {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Json(_) => "json",
        }
    }

    /// Converts a JSON scalar; `None` for null. Objects and arrays become [`Value::Json`].
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        Some(match v {
            serde_json::Value::Null => return None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.as_str().into()),
            other => Value::Json(other.to_string()),
        })
    }

    /// Infers the type of a text cell (CSV): `true`/`false`, integers, decimals, else text.
    ///
    /// Numbers with a leading zero (`007`, zip codes, zero-padded ids) stay text, so that no
    /// information is lost; an empty cell is missing (`None`).
    pub fn infer(cell: &str) -> Option<Value> {
        if cell.is_empty() {
            return None;
        }
        match cell {
            "true" => return Some(Value::Bool(true)),
            "false" => return Some(Value::Bool(false)),
            _ => {}
        }
        let b = cell.as_bytes();
        let digits = if b[0] == b'-' { &b[1..] } else { b };
        let looks_numeric = !digits.is_empty()
            && digits[0].is_ascii_digit()
            && digits
                .iter()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
        let leading_zero = digits.len() > 1 && digits[0] == b'0' && digits[1] != b'.';
        if looks_numeric && !leading_zero {
            if let Ok(i) = cell.parse::<i64>() {
                return Some(Value::Int(i));
            }
            if let Ok(f) = cell.parse::<f64>()
                && f.is_finite()
            {
                return Some(Value::Float(f));
            }
        }
        Some(Value::Str(cell.into()))
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Json(s) => {
                serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.clone()))
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::Json(s) => f.write_str(s),
        }
    }
}

/// Flattens a JSON object into `(dotted.key, value)` pairs appended to `out`; nulls are dropped.
pub fn flatten_into(prefix: &str, v: &serde_json::Value, out: &mut Vec<(Text, Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, child, out);
            }
        }
        other => {
            if let Some(value) = Value::from_json(other) {
                if prefix.is_empty() {
                    return;
                }
                out.push((prefix.into(), value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_keeps_zero_padded_ids_as_text() {
        assert_eq!(Value::infer("00001"), Some(Value::Str("00001".into())));
        assert_eq!(Value::infer("0.5"), Some(Value::Float(0.5)));
        assert_eq!(Value::infer("0"), Some(Value::Int(0)));
        assert_eq!(Value::infer("-12"), Some(Value::Int(-12)));
        assert_eq!(Value::infer("35.0"), Some(Value::Float(35.0)));
        assert_eq!(Value::infer("Value 1"), Some(Value::Str("Value 1".into())));
        assert_eq!(Value::infer("1e3"), Some(Value::Float(1000.0)));
        assert_eq!(Value::infer("e3"), Some(Value::Str("e3".into())));
        assert_eq!(Value::infer(""), None);
        assert_eq!(Value::infer("NA"), Some(Value::Str("NA".into())));
    }

    #[test]
    fn flatten_nests_with_dots_and_drops_nulls() {
        let v: serde_json::Value =
            serde_json::json!({"a": {"b": 1, "c": null}, "d": [1, 2], "e": "x"});
        let mut out = Vec::new();
        flatten_into("", &v, &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            out,
            vec![
                ("a.b".into(), Value::Int(1)),
                ("d".into(), Value::Json("[1,2]".into())),
                ("e".into(), Value::Str("x".into())),
            ]
        );
    }
}
