//! Reading a Segment message straight from JSON text into [`Fields`], without building a
//! JSON tree: `properties`, `context` and `traits` are flattened while they are read.
//!
//! The result is the one [`Fields::from_map`] gives for the parsed tree: keys are emitted
//! in the order a `serde_json::Map` (sorted) would hold them, a repeated key keeps its last
//! value, nulls are dropped and arrays become their JSON text. A property test checks the
//! two readers agree on random messages.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{FIELD_KEYS, Fields, Object};
use crate::value::Value;

/// Reads one message object from `text`. `None` when the text is not a JSON object (the
/// caller then reads it as a tree, which reports the problem).
pub(super) fn read_fields(text: &str) -> Option<Fields> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_map(MessageVisitor).ok()?;
    de.end().ok()?;
    Some(fields)
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Segment message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "properties" => fields.properties = map.next_value_seed(ObjectSeed(false))?,
                "context" => fields.context = map.next_value_seed(ObjectSeed(true))?,
                "traits" => fields.traits = map.next_value_seed(ObjectSeed(false))?,
                "batch" => {
                    fields.batch = true;
                    map.next_value::<IgnoredAny>()?;
                }
                k => match FIELD_KEYS.iter().position(|f| *f == k) {
                    Some(i) => fields.scalars[i] = Some(map.next_value::<Json>()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(fields)
    }
}

/// A field that must be an object (or null): flattened, or the JSON type it had instead.
/// For `context` (`true`), the entry `traits` is flattened apart, without its prefix.
struct ObjectSeed(bool);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Object;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Object, D::Error> {
        d.deserialize_any(ObjectVisitor(self.0))
    }
}

struct ObjectVisitor(bool);

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<Object, E> {
        Ok(Object::Absent)
    }
    fn visit_none<E>(self) -> Result<Object, E> {
        Ok(Object::Absent)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Object, E> {
        Ok(Object::Not("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Object, E> {
        Ok(Object::Not("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Object, E> {
        Ok(Object::Not("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Object, E> {
        Ok(Object::Not("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Object, E> {
        Ok(Object::Not("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Object, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Object::Not("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object, A::Error> {
        let (mut flat, mut traits) = (Vec::new(), Vec::new());
        for (key, produced) in flatten_entries(map, "", self.0)? {
            if self.0 && key == "traits" {
                traits.extend(produced);
            } else {
                flat.extend(produced);
            }
        }
        Ok(Object::Flat(flat, traits))
    }
}

/// Flattens the entries of one JSON object under `prefix`, in sorted key order (a repeated
/// key keeps its last value), as [`crate::value::flatten_into`] does for a parsed map.
fn flatten_map<'de, A: MapAccess<'de>>(
    map: A,
    prefix: &str,
    out: &mut Vec<(String, Value)>,
) -> Result<(), A::Error> {
    for (_, produced) in flatten_entries(map, prefix, false)? {
        out.extend(produced);
    }
    Ok(())
}

/// The entries of one JSON object, each with what it flattens to, sorted by key with
/// repeated keys dropped (the last one written wins). With `traits_apart`, the entry
/// `traits` is flattened without its own key as prefix (the context's traits).
#[allow(clippy::type_complexity)]
fn flatten_entries<'de, A: MapAccess<'de>>(
    mut map: A,
    prefix: &str,
    traits_apart: bool,
) -> Result<Vec<(String, Vec<(String, Value)>)>, A::Error> {
    let mut entries: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    while let Some(key) = map.next_key::<String>()? {
        let full = if traits_apart && key == "traits" {
            String::new()
        } else if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let mut produced = Vec::new();
        map.next_value_seed(FlattenSeed {
            key: &full,
            out: &mut produced,
        })?;
        entries.push((key, produced));
    }
    // Sorted as a map holds them; of equal keys the last one written wins.
    entries.reverse();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|later, earlier| later.0 == earlier.0);
    Ok(entries)
}

/// One value under its full dotted key.
struct FlattenSeed<'k, 'o> {
    key: &'k str,
    out: &'o mut Vec<(String, Value)>,
}

impl<'de> DeserializeSeed<'de> for FlattenSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl FlattenSeed<'_, '_> {
    fn leaf(self, v: Value) {
        if !self.key.is_empty() {
            self.out.push((self.key.to_string(), v));
        }
    }
}

impl<'de> Visitor<'de> for FlattenSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.leaf(Value::Bool(b));
        Ok(())
    }
    fn visit_i64<E>(self, i: i64) -> Result<(), E> {
        self.leaf(Value::Int(i));
        Ok(())
    }
    fn visit_u64<E>(self, u: u64) -> Result<(), E> {
        // As `Value::from_json`: an integer beyond i64 becomes a float.
        self.leaf(match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(u as f64),
        });
        Ok(())
    }
    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.leaf(Value::Float(f));
        Ok(())
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.leaf(Value::Str(s.to_string()));
        Ok(())
    }
    fn visit_string<E>(self, s: String) -> Result<(), E> {
        self.leaf(Value::Str(s));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let array: Json =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.leaf(Value::Json(array.to_string()));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        flatten_map(map, self.key, self.out)
    }
}
