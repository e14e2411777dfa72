//! Reading a Segment message (or a batch of them) straight from JSON text into [`Fields`],
//! without building a JSON tree: `properties`, `context` and `traits` are flattened while
//! they are read.
//!
//! The result is the one [`Fields::from_map`] gives for the parsed tree: keys are emitted
//! in the order a `serde_json::Map` (sorted) would hold them, a repeated key keeps its last
//! value, nulls are dropped and arrays become their JSON text. A property test checks the
//! two readers agree on random messages.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{FIELD_KEYS, Fields, Object, Scalar};
use crate::value::{Text, Value};

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
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.0.as_ref() {
                "properties" => fields.properties = map.next_value_seed(ObjectSeed(false))?,
                "context" => fields.context = map.next_value_seed(ObjectSeed(true))?,
                "traits" => fields.traits = map.next_value_seed(ObjectSeed(false))?,
                "batch" => {
                    fields.batch = true;
                    map.next_value::<IgnoredAny>()?;
                }
                k => match FIELD_KEYS.iter().position(|f| *f == k) {
                    Some(i) => fields.scalars[i] = Some(map.next_value_seed(ScalarSeed)?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(fields)
    }
}

/// A batch envelope read straight from its text: its items, their sizes and its `sentAt`.
pub(super) struct BatchFields {
    pub(super) items: Vec<Fields>,
    /// Each item's length in bytes as written (what a `RawValue` of it would hold).
    pub(super) sizes: Vec<usize>,
    /// The envelope's `sentAt`, which items without their own take.
    pub(super) sent_at: Option<Scalar>,
}

/// Reads a batch envelope, `{"batch": [{..}, ..], "sentAt": ..}`, in one pass. `None`
/// when the text is anything else: not JSON, no `batch` array, an item that is not an
/// object, a repeated `batch` or `sentAt`, or a
/// non-null `context` of the envelope's own (an object must be merged into each item's, on
/// a tree). The caller then reads it the ordinary way.
///
/// Values passed over (unknown keys) are checked as serde's `IgnoredAny` checks them, and
/// each value starts with serde's full nesting budget: an item nested 127 deep is read
/// here where a whole-body parse would refuse it.
///
/// The envelope's punctuation is walked here, and every value in it is parsed on its own
/// (`value_at`): that is how each item's size comes out of the one pass. Segment's limit
/// is per item, and a parser reading the whole envelope does not say where items end.
pub(super) fn read_batch(text: &str) -> Option<BatchFields> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    expect(b, i, b'{')?;
    let (mut items, mut sizes, mut sent_at) = (None, Vec::new(), None);
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, end) = value_at::<Key<'_>>(text, i)?;
            i = skip_ws(b, end);
            expect(b, i, b':')?;
            i = skip_ws(b, i + 1);
            i = match key.0.as_ref() {
                "batch" if items.is_none() => {
                    let (list, end) = read_items(text, i, &mut sizes)?;
                    items = Some(list);
                    end
                }
                "sentAt" if sent_at.is_none() => {
                    let (ScalarValue(v), end) = value_at(text, i)?;
                    sent_at = Some(v);
                    end
                }
                "batch" | "sentAt" => return None,
                "context" => match value_at::<Option<IgnoredAny>>(text, i)? {
                    (None, end) => end,
                    (Some(_), _) => return None,
                },
                _ => value_at::<IgnoredAny>(text, i)?.1,
            };
            i = skip_ws(b, i);
            match b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(())?;
    Some(BatchFields {
        items: items?,
        sizes,
        sent_at,
    })
}

/// Items beyond which a batch is left to the tree path. An item as read here takes ~600
/// bytes however small its text, so a 500 KB body of `{},{},…` would hold ~95 MB; the
/// tree holds a few tens of bytes per such item. Real batches (Segment's SDKs send 100
/// or so) stay well below.
pub(super) const MAX_FAST_ITEMS: usize = 4096;

/// The `batch` array from its `[` at `i`: its items, each's size pushed to `sizes`, and
/// the index just past its `]`. `None` past [`MAX_FAST_ITEMS`].
fn read_items(text: &str, mut i: usize, sizes: &mut Vec<usize>) -> Option<(Vec<Fields>, usize)> {
    let b = text.as_bytes();
    expect(b, i, b'[')?;
    let mut items = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some((items, i + 1));
    }
    loop {
        if items.len() == MAX_FAST_ITEMS {
            return None;
        }
        let (Item(fields), end) = value_at(text, i)?;
        if items.is_empty() {
            // Room for the rest at the first item's size: no regrowing (moves of big items).
            items.reserve(((b.len() - end) / (end - i).max(1)).min(1024) + 1);
        }
        sizes.push(end - i);
        items.push(fields);
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some((items, i + 1)),
            _ => return None,
        }
    }
}

/// The JSON value starting at `i` (no whitespace before it), read as a `T`, and the index
/// just past it.
fn value_at<'de, T: serde::Deserialize<'de>>(text: &'de str, i: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_str(text.get(i..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, i + values.byte_offset()))
}

fn expect(b: &[u8], i: usize, byte: u8) -> Option<()> {
    (b.get(i) == Some(&byte)).then_some(())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// One message of a batch.
struct Item(Fields);

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        d.deserialize_map(MessageVisitor).map(Item)
    }
}

/// A top-level scalar field on its own.
struct ScalarValue(Scalar);

impl<'de> serde::Deserialize<'de> for ScalarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ScalarValue, D::Error> {
        ScalarSeed.deserialize(d).map(ScalarValue)
    }
}

/// A top-level scalar field: text straight into a [`Text`], anything else as JSON.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(s.into()))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Json(Json::Null))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::Json(Json::Bool(b)))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Scalar, E> {
        Ok(Scalar::Json(Json::from(i)))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Scalar, E> {
        Ok(Scalar::Json(Json::from(u)))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Scalar, E> {
        // As `serde_json::Value` reads one.
        Ok(Scalar::Json(
            serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        ))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        let v: Json =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Scalar::Json(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        let v: Json =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Scalar::Json(v))
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
        let apart = self.0.then_some(&mut traits);
        flatten_object(map, &mut String::new(), &mut flat, apart)?;
        Ok(Object::Flat(flat, traits))
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Flattens the entries of one JSON object into `out`, each under `prefix` (a dotted path,
/// empty at the top) joined to its key, in sorted key order with a repeated key keeping its
/// last value, as [`crate::value::flatten_into`] does for a parsed map. With `traits_apart`,
/// the entry `traits` goes there instead, flattened without a prefix (the context's traits).
///
/// Entries are written straight into `out` in text order, and reordered only when the
/// keys were not already sorted and distinct. While every entry is a leaf, giving one value
/// under its own key (the usual flat object), `out[base..]` is its own bookkeeping and a
/// reorder is an in-place sort; any other entry switches to keeping each entry's key and
/// range.
fn flatten_object<'de, A: MapAccess<'de>>(
    mut map: A,
    prefix: &mut String,
    out: &mut Vec<(Text, Value)>,
    mut traits_apart: Option<&mut Vec<(Text, Value)>>,
) -> Result<(), A::Error> {
    let base = out.len();
    let prefix_len = prefix.len();
    // Where an entry's own key starts in its full key.
    let key_start = if prefix_len > 0 { prefix_len + 1 } else { 0 };
    // Each entry's key and the range of `out` it produced, once some entry did not
    // produce exactly one value.
    let mut entries: Option<Vec<(Key<'de>, usize, usize)>> = None;
    let mut in_order = true;
    while let Some(key) = map.next_key::<Key<'de>>()? {
        if key.0 == "traits"
            && let Some(traits) = traits_apart.as_deref_mut()
        {
            // Of repeated `traits` entries the last one wins, as for any key.
            traits.clear();
            map.next_value_seed(FlattenSeed {
                key: &mut String::new(),
                out: traits,
            })?;
            continue;
        }
        if prefix_len > 0 {
            prefix.push('.');
        }
        prefix.push_str(&key.0);
        let start = out.len();
        let value = map.next_value_seed(FlattenSeed {
            key: &mut *prefix,
            out: &mut *out,
        });
        prefix.truncate(prefix_len);
        value?;
        let end = out.len();
        // One value under exactly this entry's key: a leaf (a nested object with one
        // entry gives one value too, under a longer key, and is ordered by its own key).
        let leaf = end == start + 1 && out[start].0.len() == key_start + key.0.len();
        if entries.is_none() && leaf {
            // Same prefix: full keys compare as the entries' own keys.
            in_order &= start == base || out[start - 1].0 < out[start].0;
            continue;
        }
        let list = entries.get_or_insert_with(|| {
            (base..start)
                .map(|i| (Key(Cow::Owned(out[i].0[key_start..].to_string())), i, i + 1))
                .collect()
        });
        in_order &= list.last().is_none_or(|last| last.0.0 < key.0);
        list.push((key, start, end));
    }
    if in_order {
        return Ok(());
    }
    match entries {
        None => {
            // Sorted by key with the last of equal keys first (reversed, then a stable
            // sort), then the others of equal keys dropped.
            let own = &mut out[base..];
            own.reverse();
            own.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept = base;
            for i in base..out.len() {
                if i == base || out[i].0 != out[kept - 1].0 {
                    out.swap(kept, i);
                    kept += 1;
                }
            }
            out.truncate(kept);
        }
        Some(entries) => {
            // Sorted as a map holds them; of equal keys the last one written wins.
            let mut order: Vec<usize> = (0..entries.len()).rev().collect();
            order.sort_by(|&a, &b| entries[a].0.0.cmp(&entries[b].0.0));
            order.dedup_by(|later, earlier| entries[*later].0.0 == entries[*earlier].0.0);
            let mut written: Vec<Option<(Text, Value)>> = out.drain(base..).map(Some).collect();
            for i in order {
                let (_, start, end) = entries[i];
                out.extend(
                    written[start - base..end - base]
                        .iter_mut()
                        .filter_map(Option::take),
                );
            }
        }
    }
    Ok(())
}

/// One value under its full dotted key (empty: the value is dropped unless it is an object,
/// whose entries are then flattened without a prefix).
struct FlattenSeed<'k, 'o> {
    key: &'k mut String,
    out: &'o mut Vec<(Text, Value)>,
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
            self.out.push((self.key.as_str().into(), v));
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
        self.leaf(Value::Str(s.into()));
        Ok(())
    }
    fn visit_string<E>(self, s: String) -> Result<(), E> {
        self.leaf(Value::Str(s.into()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let array: Json =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.leaf(Value::Json(array.to_string()));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        flatten_object(map, self.key, self.out, None)
    }
}
