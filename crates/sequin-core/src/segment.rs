//! Segment-spec messages to events.
//!
//! Follows the Segment spec: `type` is one of `track`, `page`, `screen`, `identify`, `alias`,
//! `group`; a `batch` envelope carries items plus batch-level `context` (merged into each
//! item, the item's own keys winning) and `sentAt`. Event time is
//! `receivedAt − (sentAt − originalTimestamp)` when all three are known (the clock-skew
//! correction Segment applies), else `timestamp`, else `originalTimestamp`, else
//! `receivedAt`. `page` becomes the event `page_view` with the page name in property `page`;
//! `screen` becomes `screen_view` with `screen`. Session and conversation ids are read from
//! `properties.session_id` / `context.session_id` (or `sessionId`) and
//! `properties.conversation_id` / `gen_ai.conversation.id`.

use serde_json::{Map, Value as Json};

use crate::error::MapError;
use crate::event::{Event, MessageKind};
use crate::time::{Micros, TimeFormat, parse_text};
use crate::value::{Text, Value, flatten_into};

mod stream;

/// The top-level keys of a message that mapping reads as plain JSON values.
const FIELD_KEYS: [&str; 13] = [
    "type",
    "event",
    "name",
    "category",
    "userId",
    "anonymousId",
    "messageId",
    "previousId",
    "groupId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
];

/// Where `key` is among [`FIELD_KEYS`].
fn slot(key: &str) -> Option<usize> {
    FIELD_KEYS.iter().position(|k| *k == key)
}

/// What mapping reads of one message: the [`FIELD_KEYS`] values and the three objects,
/// already flattened. Built from a parsed tree ([`Fields::from_map`]) or straight from the
/// text ([`stream`]); [`map_fields`] is the one mapping of both.
#[derive(Default)]
struct Fields {
    scalars: [Option<Scalar>; FIELD_KEYS.len()],
    properties: Object,
    context: Object,
    traits: Object,
    /// A `batch` key was present (read as a tree instead: it is an envelope).
    batch: bool,
}

/// A top-level field as read: text kept as [`Text`] (mostly short ids, names and
/// timestamps, so inline, with no allocation), anything else as JSON.
#[derive(Debug, Clone)]
enum Scalar {
    Text(Text),
    /// Any JSON value but a string.
    Json(Json),
}

impl Scalar {
    fn from_json(v: Json) -> Scalar {
        match v {
            Json::String(s) => Scalar::Text(s.into()),
            other => Scalar::Json(other),
        }
    }
}

/// A [`Scalar`] looked at: its text, or its (non-string) JSON value.
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Json(&'a Json),
}

/// An object field: absent (or null), flattened, or the JSON type it had instead.
#[derive(Default)]
enum Object {
    #[default]
    Absent,
    /// The flattened entries; for `context`, also its `traits` (flattened apart).
    Flat(Vec<(Text, Value)>, Vec<(Text, Value)>),
    Not(&'static str),
}

impl Fields {
    /// What [`is_segment_message`] asks of a message that is not a batch.
    fn is_message(&self) -> bool {
        matches!(self.get("type"), Some(Field::Text(t)) if MESSAGE_TYPES.contains(&t))
            && ["userId", "anonymousId", "messageId"]
                .iter()
                .any(|k| self.get(k).is_some())
    }

    fn get(&self, key: &str) -> Option<Field<'_>> {
        self.scalars[slot(key)?].as_ref().map(|v| match v {
            Scalar::Text(t) => Field::Text(t),
            Scalar::Json(j) => Field::Json(j),
        })
    }

    fn from_map(mut obj: Map<String, Json>) -> Fields {
        let mut fields = Fields::default();
        for (slot, key) in fields.scalars.iter_mut().zip(FIELD_KEYS) {
            *slot = obj.remove(key).map(Scalar::from_json);
        }
        let object = |v: Option<Json>, context: bool| match v {
            None | Some(Json::Null) => Object::Absent,
            Some(Json::Object(m)) => {
                let (mut flat, mut traits) = (Vec::new(), Vec::new());
                for (k, v) in &m {
                    if context && k == "traits" {
                        flatten_into("", v, &mut traits);
                    } else {
                        flatten_into(k, v, &mut flat);
                    }
                }
                Object::Flat(flat, traits)
            }
            Some(other) => Object::Not(json_type(&other)),
        };
        fields.properties = object(obj.remove("properties"), false);
        fields.context = object(obj.remove("context"), true);
        fields.traits = object(obj.remove("traits"), false);
        fields
    }
}

/// Maps a batch given as JSON text, `{"batch": [..], "sentAt": ..}`, reading its items
/// straight from the text in one pass: the events [`map_message_owned`] gives for the
/// parsed batch, faster. `None` when the batch has a non-null `context` of its own (merged
/// into each item on a tree), when any item's text is longer than `max_item_bytes`, or
/// when anything is wrong with it: the caller then reads it the ordinary way, which
/// reports the problem.
pub fn map_batch_text(
    text: &str,
    received_at: Option<Micros>,
    max_item_bytes: usize,
) -> Option<Vec<Event>> {
    let mut batch = stream::read_batch(text)?;
    if batch.sizes.iter().any(|&n| n > max_item_bytes) {
        return None;
    }
    // An item without its own `sentAt` takes the batch's.
    let sent = slot("sentAt").expect("a field key");
    let mut events = Vec::with_capacity(batch.items.len());
    // Items are mapped where they lie (they are big: moving each costs more than reading it).
    for fields in &mut batch.items {
        if fields.scalars[sent].is_none() {
            fields.scalars[sent] = batch.sent_at.clone();
        }
        events.push(map_fields(fields, received_at).ok()?);
    }
    Some(events)
}

/// Maps a line that may hold a Segment message, reading it straight from its text:
/// `Some` with its event (or its error, as [`map_message_owned`] words it) when it is one
/// message; `None` when it is not (a flat record, a batch, not an object), for the caller
/// to read the ordinary way.
pub fn map_line_text(text: &str) -> Option<Result<Event, MapError>> {
    let fields = stream::read_fields(text)?;
    if fields.batch || !fields.is_message() {
        return None;
    }
    Some(map_fields(&mut { fields }, None))
}

/// The message types this module understands (plus `batch`).
pub const MESSAGE_TYPES: [&str; 6] = ["track", "page", "screen", "identify", "alias", "group"];

/// Does this JSON object look like a Segment message (or batch)?
pub fn is_segment_message(obj: &Map<String, Json>) -> bool {
    if obj.get("batch").is_some_and(Json::is_array) {
        return true;
    }
    let typed = obj
        .get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| MESSAGE_TYPES.contains(&t));
    typed
        && (obj.contains_key("userId")
            || obj.contains_key("anonymousId")
            || obj.contains_key("messageId"))
}

/// Maps one message — or every item of a batch — to events, pushing them to `out`.
///
/// `received_at` is the receive time to use when the message has no `receivedAt` (the
/// server passes its clock; file imports pass `None`). On error nothing is pushed for a
/// single message; for a batch, the first failing item's error is returned, prefixed with
/// its index, and nothing of the batch is pushed.
pub fn map_message(
    msg: &Json,
    received_at: Option<Micros>,
    out: &mut Vec<Event>,
) -> Result<(), MapError> {
    map_message_owned(msg.clone(), received_at, out)
}

/// [`map_message`] taking the message by value: batch items are completed in place
/// (context, `sentAt`) instead of being copied.
pub fn map_message_owned(
    msg: Json,
    received_at: Option<Micros>,
    out: &mut Vec<Event>,
) -> Result<(), MapError> {
    let Json::Object(mut obj) = msg else {
        return Err(MapError::new("$", "a message must be a JSON object"));
    };
    if let Some(items) = obj.remove("batch") {
        let Json::Array(items) = items else {
            return Err(MapError::new("batch", "must be an array"));
        };
        let batch_ctx = match obj.remove("context") {
            Some(Json::Object(c)) => Some(c),
            _ => None,
        };
        let batch_sent = obj.remove("sentAt");
        let start = out.len();
        for (i, item) in items.into_iter().enumerate() {
            let Json::Object(mut item_obj) = item else {
                out.truncate(start);
                return Err(MapError::new(
                    format!("batch[{i}]"),
                    "must be a JSON object",
                ));
            };
            if let Some(ctx) = &batch_ctx {
                let mut c = ctx.clone();
                if let Some(Json::Object(own)) = item_obj.get("context") {
                    deep_merge(&mut c, own);
                }
                item_obj.insert("context".into(), Json::Object(c));
            }
            if let Some(sent) = &batch_sent
                && !item_obj.contains_key("sentAt")
            {
                item_obj.insert("sentAt".into(), sent.clone());
            }
            match map_fields(&mut Fields::from_map(item_obj), received_at) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    out.truncate(start);
                    return Err(MapError::new(format!("batch[{i}].{}", e.field), e.reason));
                }
            }
        }
        return Ok(());
    }
    out.push(map_fields(&mut Fields::from_map(obj), received_at)?);
    Ok(())
}

/// Overlays `own` onto `base`, recursing into objects, so item keys win over batch keys.
fn deep_merge(base: &mut Map<String, Json>, own: &Map<String, Json>) {
    for (k, v) in own {
        match (base.get_mut(k), v) {
            (Some(Json::Object(b)), Json::Object(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn id_field(obj: &Fields, key: &str) -> Result<Option<Text>, MapError> {
    match obj.get(key) {
        None | Some(Field::Json(Json::Null)) => Ok(None),
        Some(Field::Text("")) => Ok(None),
        Some(Field::Text(s)) => Ok(Some(s.into())),
        Some(Field::Json(Json::Number(n))) => Ok(Some(n.to_string().into())),
        Some(Field::Json(other)) => Err(MapError::new(
            key,
            format!("must be a string, found {}", json_type(other)),
        )),
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn time_field(obj: &Fields, key: &str) -> Result<Option<Micros>, MapError> {
    match obj.get(key) {
        None | Some(Field::Json(Json::Null)) => Ok(None),
        Some(Field::Text(s)) => parse_text(s, TimeFormat::Auto)
            .map(Some)
            .map_err(|e| MapError::new(key, e)),
        Some(Field::Json(Json::Number(n))) => {
            let r = match n.as_i64() {
                Some(i) => crate::time::from_epoch_int(i, TimeFormat::Auto),
                None => crate::time::from_epoch(n.as_f64().unwrap_or(f64::NAN), TimeFormat::Auto),
            };
            r.map(Some).map_err(|e| MapError::new(key, e))
        }
        Some(Field::Json(other)) => Err(MapError::new(
            key,
            format!("must be a time, found {}", json_type(other)),
        )),
    }
}

fn event_time(obj: &Fields, received_at: Option<Micros>) -> Result<Micros, MapError> {
    let original = time_field(obj, "originalTimestamp")?;
    let sent = time_field(obj, "sentAt")?;
    let received = time_field(obj, "receivedAt")?.or(received_at);
    if let (Some(o), Some(s), Some(r)) = (original, sent, received) {
        return Ok(r - (s - o));
    }
    if let Some(t) = time_field(obj, "timestamp")? {
        return Ok(t);
    }
    original.or(received).ok_or_else(|| {
        MapError::new(
            "timestamp",
            "missing: no timestamp, originalTimestamp or receivedAt",
        )
    })
}

fn map_fields(obj: &mut Fields, received_at: Option<Micros>) -> Result<Event, MapError> {
    let ty = match obj.get("type") {
        Some(Field::Text(s)) => s,
        Some(Field::Json(other)) => {
            return Err(MapError::new(
                "type",
                format!("must be a string, found {}", json_type(other)),
            ));
        }
        None => return Err(MapError::new("type", "missing")),
    };
    let kind = match ty {
        "track" => MessageKind::Track,
        "page" => MessageKind::Page,
        "screen" => MessageKind::Screen,
        "identify" => MessageKind::Identify,
        "alias" => MessageKind::Alias,
        "group" => MessageKind::Group,
        other => {
            return Err(MapError::new(
                "type",
                format!(
                    "unknown message type `{other}` (expected track, page, screen, identify, alias, group or batch)"
                ),
            ));
        }
    };
    let user_id = id_field(obj, "userId")?;
    let anonymous_id = id_field(obj, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MapError::new(
            "userId",
            "missing: a message needs userId or anonymousId",
        ));
    }
    let time = event_time(obj, received_at)?;
    let message_id = id_field(obj, "messageId")?;

    let object = |field: &mut Object, key: &str| match std::mem::take(field) {
        Object::Absent => Ok((Vec::new(), Vec::new())),
        Object::Flat(flat, traits) => Ok((flat, traits)),
        Object::Not(found) => Err(MapError::new(
            key,
            format!("must be an object, found {found}"),
        )),
    };
    let (mut properties, _) = object(&mut obj.properties, "properties")?;
    // `context.traits` are traits; everything else is context.
    let (context, mut traits) = object(&mut obj.context, "context")?;
    traits.extend(object(&mut obj.traits, "traits")?.0);
    let obj = &*obj;

    let name_field = |key: &str| -> Result<Option<Text>, MapError> {
        match obj.get(key) {
            None | Some(Field::Json(Json::Null)) => Ok(None),
            Some(Field::Text(s)) => Ok(Some(s.into())),
            Some(Field::Json(other)) => Err(MapError::new(
                key,
                format!("must be a string, found {}", json_type(other)),
            )),
        }
    };
    let mut previous_id = None;
    let name = match kind {
        MessageKind::Track => match name_field("event")? {
            Some(e) if !e.is_empty() => e,
            _ => {
                return Err(MapError::new(
                    "event",
                    "missing: a track message needs an event name",
                ));
            }
        },
        MessageKind::Page => {
            if let Some(n) = name_field("name")? {
                properties.push(("page".into(), Value::Str(n)));
            }
            if let Some(c) = name_field("category")? {
                properties.push(("category".into(), Value::Str(c)));
            }
            "page_view".into()
        }
        MessageKind::Screen => {
            if let Some(n) = name_field("name")? {
                properties.push(("screen".into(), Value::Str(n)));
            }
            "screen_view".into()
        }
        MessageKind::Identify => "identify".into(),
        MessageKind::Alias => {
            previous_id = id_field(obj, "previousId")?;
            if previous_id.is_none() {
                return Err(MapError::new(
                    "previousId",
                    "missing: an alias message needs previousId",
                ));
            }
            if user_id.is_none() {
                return Err(MapError::new(
                    "userId",
                    "missing: an alias message needs userId",
                ));
            }
            "alias".into()
        }
        MessageKind::Group => {
            if let Some(g) = id_field(obj, "groupId")? {
                properties.push(("group_id".into(), Value::Str(g)));
            }
            "group".into()
        }
        MessageKind::Record => unreachable!("not a Segment type"),
    };

    let lookup = |props: &[(Text, Value)], keys: &[&str]| {
        keys.iter().find_map(|k| {
            props
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.to_string())
        })
    };
    let session_id = lookup(&properties, &["session_id", "sessionId"])
        .or_else(|| lookup(&context, &["session_id", "sessionId"]));
    let conversation_id = lookup(
        &properties,
        &[
            "conversation_id",
            "conversationId",
            "gen_ai.conversation.id",
        ],
    )
    .or_else(|| lookup(&context, &["conversation_id", "gen_ai.conversation.id"]));

    Ok(Event {
        kind,
        name,
        time,
        user_id,
        anonymous_id,
        previous_id,
        session_id: session_id.map(Text::from),
        conversation_id: conversation_id.map(Text::from),
        message_id,
        properties,
        context,
        traits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;
    use proptest::prelude::*;
    use serde_json::json;

    fn one(msg: Json) -> Result<Event, MapError> {
        let mut out = Vec::new();
        map_message(&msg, None, &mut out)?;
        assert_eq!(out.len(), 1);
        Ok(out.pop().unwrap())
    }

    #[test]
    fn clock_skew_is_corrected_from_sent_and_received() {
        // The device clock is 10 s fast: it says it sent at :20 while the server got it at :10.
        let ev = one(json!({
            "type": "track", "event": "purchase", "userId": "u1",
            "originalTimestamp": "2024-01-01T00:00:15Z",
            "sentAt": "2024-01-01T00:00:20Z",
            "receivedAt": "2024-01-01T00:00:10Z",
            "properties": {"amount": 12.5}
        }))
        .unwrap();
        assert_eq!(ev.time, 1_704_067_205 * SECOND);
        assert_eq!(ev.property("amount"), Some(&Value::Float(12.5)));
    }

    #[test]
    fn batch_context_is_merged_into_items_and_items_win() {
        let mut out = Vec::new();
        map_message(
            &json!({
                "batch": [
                    {"type": "page", "name": "pricing", "anonymousId": "a1", "timestamp": "2024-01-01T00:00:00Z",
                     "context": {"os": {"name": "iOS"}}},
                    {"type": "identify", "anonymousId": "a1", "userId": "u1", "timestamp": "2024-01-01T00:00:01Z",
                     "traits": {"plan": "pro"}}
                ],
                "context": {"os": {"name": "Android", "version": "14"}, "device": {"type": "mobile"}}
            }),
            None,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        let page = &out[0];
        assert_eq!(page.name, "page_view");
        assert_eq!(page.property("page"), Some(&Value::Str("pricing".into())));
        let ctx: std::collections::BTreeMap<_, _> = page.context.iter().cloned().collect();
        assert_eq!(ctx["os.name"], Value::Str("iOS".into()));
        assert_eq!(ctx["os.version"], Value::Str("14".into()));
        assert_eq!(ctx["device.type"], Value::Str("mobile".into()));
        assert_eq!(out[1].identity_link(), Some(("a1", "u1")));
        assert_eq!(
            out[1].traits,
            vec![("plan".into(), Value::Str("pro".into()))]
        );
    }

    #[test]
    fn alias_links_previous_id() {
        let ev =
            one(json!({"type": "alias", "previousId": "old", "userId": "new", "timestamp": 0}))
                .unwrap();
        assert_eq!(ev.identity_link(), Some(("old", "new")));
    }

    #[test]
    fn bad_messages_name_the_field() {
        let e = one(json!({"type": "track", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}))
            .unwrap_err();
        assert_eq!(e.field, "event");
        let e = one(json!({"type": "track", "event": "x", "timestamp": "2024-01-01T00:00:00Z"}))
            .unwrap_err();
        assert_eq!(e.field, "userId");
        let e = one(json!({"type": "track", "event": "x", "userId": "u", "timestamp": "soon"}))
            .unwrap_err();
        assert_eq!(e.field, "timestamp");
        let e = one(json!({"type": "track", "event": "x", "userId": ["u"], "timestamp": 0}))
            .unwrap_err();
        assert_eq!(e.field, "userId");
        let mut out = Vec::new();
        let e = map_message(&json!({"batch": [{"type": "track", "event": "ok", "userId": "u", "timestamp": 0}, {"type": "nope"}]}), None, &mut out)
            .unwrap_err();
        assert_eq!(e.field, "batch[1].type");
        assert!(out.is_empty(), "a failing batch adds nothing");
    }

    #[test]
    fn a_typical_message_is_read_straight_from_its_text() {
        let t = r#"{"type":"track","event":"search","messageId":"m-0-2","anonymousId":"anon-1","originalTimestamp":"2024-03-17T15:37:56.725Z","sentAt":"2024-03-17T15:38:15.264Z","receivedAt":"2024-03-17T15:38:14.358Z","properties":{"query":"rain jacket","results":16,"tags":["a",1]},"context":{"device":{"type":"desktop"},"traits":{"plan":"pro"},"os":{"name":"Windows","version":"11"},"locale":"de-DE"}}"#;
        let fields = stream::read_fields(t).expect("read straight");
        let ev = map_fields(&mut { fields }, None).unwrap();
        assert_eq!(ev, one(serde_json::from_str(t).unwrap()).unwrap());
        assert_eq!(ev.name, "search");
        assert_eq!(ev.property("tags"), Some(&Value::Json(r#"["a",1]"#.into())));
        assert_eq!(ev.traits, vec![("plan".into(), Value::Str("pro".into()))]);
        let keys: Vec<&str> = ev.context.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["device.type", "locale", "os.name", "os.version"]);
    }

    /// Random JSON, written as text by hand so that keys can repeat.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Bool(bool),
        Int(i64),
        Big(u64),
        Float(f64),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    fn text(j: &J) -> String {
        match j {
            J::Null => "null".into(),
            J::Bool(b) => b.to_string(),
            J::Int(i) => i.to_string(),
            J::Big(u) => u.to_string(),
            J::Float(f) => serde_json::to_string(f).unwrap(),
            J::Str(s) => serde_json::to_string(s).unwrap(),
            J::Arr(items) => format!(
                "[{}]",
                items.iter().map(text).collect::<Vec<_>>().join(", ")
            ),
            J::Obj(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", serde_json::to_string(k).unwrap(), text(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn key_s() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("traits".to_string()),
            Just("a.b".to_string()),
            // Sort below and around `.`: a flat object's in-place reorder compares full
            // dotted keys, a nested one's entries by their own keys.
            Just("a-b".to_string()),
            Just("a.".to_string()),
            Just("session_id".to_string()),
            Just("conversation_id".to_string()),
            "[a-c]{1,2}",
        ]
    }

    fn json_s() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::Int),
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(J::Big),
            (-1e9f64..1e9).prop_map(J::Float),
            "[a-z\\\\\"é ]{0,4}".prop_map(J::Str),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(J::Arr),
                prop::collection::vec((key_s(), inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    fn message_s() -> impl Strategy<Value = J> {
        let id = prop_oneof![
            Just(J::Str("u1".into())),
            Just(J::Str(String::new())),
            Just(J::Int(42)),
            Just(J::Arr(vec![])),
            Just(J::Null),
        ];
        let time = prop_oneof![
            Just(J::Str("2024-01-01T00:00:00Z".into())),
            Just(J::Int(1_704_067_200_000)),
            Just(J::Str("soon".into())),
            Just(J::Null),
        ];
        let ty = prop_oneof![
            Just("track"),
            Just("page"),
            Just("screen"),
            Just("identify"),
            Just("alias"),
            Just("group"),
            Just("nope"),
        ];
        let field = |k: &'static str, v: BoxedStrategy<J>| {
            prop::option::weighted(0.7, v).prop_map(move |v| v.map(|v| (k.to_string(), v)))
        };
        let small = prop_oneof![Just(J::Str("x".into())), Just(J::Int(1)), Just(J::Null)].boxed();
        (
            ty,
            prop::collection::vec(
                prop_oneof![
                    field("userId", id.clone().boxed()),
                    field("anonymousId", id.clone().boxed()),
                    field("previousId", id.clone().boxed()),
                    field("messageId", id.clone().boxed()),
                    field("groupId", id.boxed()),
                    field("timestamp", time.clone().boxed()),
                    field("originalTimestamp", time.clone().boxed()),
                    field("sentAt", time.clone().boxed()),
                    field("receivedAt", time.boxed()),
                    field("event", small.clone()),
                    field("name", small.clone()),
                    field("category", small),
                    field("properties", json_s().boxed()),
                    field("context", json_s().boxed()),
                    field("traits", json_s().boxed()),
                    field("extra", json_s().boxed()),
                ],
                0..12,
            ),
        )
            .prop_map(|(ty, fields)| {
                let mut entries = vec![("type".to_string(), J::Str(ty.into()))];
                entries.extend(fields.into_iter().flatten());
                J::Obj(entries)
            })
    }

    #[test]
    fn a_batch_of_many_tiny_items_is_left_to_the_tree_path() {
        let item = r#"{"type":"track","userId":"u","event":"e"}"#;
        let text = |n: usize| format!(r#"{{"batch":[{}]}}"#, vec![item; n].join(","));
        let at_limit = text(stream::MAX_FAST_ITEMS);
        assert_eq!(
            map_batch_text(&at_limit, Some(0), 32 * 1024).map(|e| e.len()),
            Some(stream::MAX_FAST_ITEMS)
        );
        let over = text(stream::MAX_FAST_ITEMS + 1);
        assert!(map_batch_text(&over, Some(0), 32 * 1024).is_none());
        // The tree path reads it whole.
        let mut out = Vec::new();
        let tree: Json = serde_json::from_str(&over).unwrap();
        map_message(&tree, Some(0), &mut out).unwrap();
        assert_eq!(out.len(), stream::MAX_FAST_ITEMS + 1);
    }

    /// Text that is not JSON is never read as a batch, however close it comes; the
    /// ordinary path then reports it.
    #[test]
    fn a_malformed_batch_is_declined() {
        let item =
            r#"{"type":"track","userId":"u","event":"e","timestamp":"2024-01-01T00:00:00Z"}"#;
        let bad = [
            format!(r#"{{"batch":[{item}]}} x"#),
            format!(r#"{{"batch":[{item}]}}}}"#),
            format!(r#"{{"batch":[{item}],}}"#),
            format!(r#"{{"batch":[{item},]}}"#),
            format!(r#"{{"batch":[{item} {item}]}}"#),
            format!(r#"{{"batch" [{item}]}}"#),
            format!(r#"{{"batch":[{item}] "sentAt":1}}"#),
            format!(r#"{{1:2, "batch":[{item}]}}"#),
            format!(r#"{{"batch":[{item}]"#),
            format!(r#"{{"batch":[{item}}}"#),
            format!(r#"{{"batch":[{item}], "sentAt": 12x}}"#),
        ];
        for text in &bad {
            assert!(serde_json::from_str::<Json>(text).is_err(), "{text}");
            assert!(map_batch_text(text, None, 32 * 1024).is_none(), "{text}");
        }
        // JSON, but no batch envelope.
        for text in [
            format!("[{item}]"),
            item.to_string(),
            r#"{"batch":{}}"#.into(),
        ] {
            assert!(map_batch_text(&text, None, 32 * 1024).is_none(), "{text}");
        }
        let good = [
            format!(" \n{{ \"batch\" :\t[ {item} ,{item} ] , \"sentAt\" : null }}\r\n"),
            r#"{"x":[1,{"batch":2}],"batch":[]}"#.to_string(),
        ];
        for text in &good {
            let events = map_batch_text(text, None, 32 * 1024);
            let tree = serde_json::from_str(text).unwrap();
            let mut out = Vec::new();
            map_message_owned(tree, None, &mut out).unwrap();
            assert_eq!(events, Some(out), "{text}");
        }
    }

    /// A valid message whose time depends on its batch's `sentAt` (clock skew).
    fn timed_item() -> J {
        J::Obj(vec![
            ("type".into(), J::Str("track".into())),
            ("userId".into(), J::Str("u1".into())),
            ("event".into(), J::Str("x".into())),
            (
                "originalTimestamp".into(),
                J::Str("2024-01-01T00:00:00Z".into()),
            ),
        ])
    }

    proptest::proptest! {
        /// Reading a message straight from its text maps it exactly as parsing it first:
        /// same event, or the same error.
        #[test]
        fn reading_from_text_equals_reading_the_parsed_tree(msg in message_s()) {
            let t = text(&msg);
            let received = Some(1_704_067_300 * SECOND);
            // The text is read straight (no fallback) and maps as the tree does, errors
            // included.
            let fields = stream::read_fields(&t);
            proptest::prop_assert!(fields.is_some(), "not read: {}", t);
            let direct = map_fields(&mut fields.unwrap(), received);
            let mut out = Vec::new();
            let parsed = map_message_owned(serde_json::from_str(&t).unwrap(), received, &mut out)
                .map(|()| out.remove(0));
            proptest::prop_assert_eq!(direct, parsed, "{}", t);
        }

        /// A batch read in one pass from its text maps as the parsed batch does, and is
        /// declined (for the ordinary path) only for a reason: a context of its own, a
        /// repeated envelope key, an item over the size limit, or an error the parsed
        /// batch reports too. Item sizes are the lengths of the items' raw text.
        #[test]
        fn reading_a_batch_from_text_equals_reading_the_parsed_tree(
            items in prop::collection::vec(
                prop_oneof![4 => message_s(), 1 => json_s(), 2 => Just(timed_item())], 0..5),
            sent_at in prop::option::of(prop_oneof![
                Just(J::Str("2024-01-01T00:00:10Z".into())),
                Just(J::Null),
                Just(J::Int(3)),
            ]),
            context in prop::option::of(prop_oneof![Just(J::Null), json_s()]),
            extra in prop::option::of(json_s()),
            repeat_batch in proptest::bool::weighted(0.1),
            max in prop_oneof![0usize..400, Just(32 * 1024)],
            pretty in any::<bool>(),
        ) {
            let mut envelope = vec![("batch".to_string(), J::Arr(items))];
            envelope.extend(sent_at.map(|v| ("sentAt".to_string(), v)));
            let has_context = context.as_ref().is_some_and(|c| !matches!(c, J::Null));
            envelope.extend(context.map(|v| ("context".to_string(), v)));
            envelope.extend(extra.map(|v| ("extra".to_string(), v)));
            if repeat_batch {
                envelope.push(("batch".to_string(), J::Arr(vec![])));
            }
            envelope.reverse();
            let mut t = text(&J::Obj(envelope));
            let tree: Json = serde_json::from_str(&t).unwrap();
            if pretty {
                // Whitespace everywhere (and keys sorted, a repeat gone).
                t = serde_json::to_string_pretty(&tree).unwrap();
            }
            let repeated = repeat_batch && !pretty;

            #[derive(serde::Deserialize)]
            struct Raw<'a> {
                #[serde(borrow)]
                batch: Vec<&'a serde_json::value::RawValue>,
            }
            let sizes = serde_json::from_str::<Raw<'_>>(&t)
                .ok()
                .map(|r| r.batch.iter().map(|i| i.get().len()).collect::<Vec<_>>());
            if let (Some(sizes), Some(read)) = (&sizes, stream::read_batch(&t)) {
                proptest::prop_assert_eq!(sizes, &read.sizes);
            }
            let oversize = sizes.iter().flatten().any(|&n| n > max);

            let received = Some(1_704_067_300 * SECOND);
            let mut out = Vec::new();
            let parsed = map_message_owned(tree, received, &mut out).map(|()| out);
            match map_batch_text(&t, received, max) {
                Some(events) => {
                    proptest::prop_assert!(!has_context && !repeated && !oversize, "{}", t);
                    proptest::prop_assert_eq!(Ok(events), parsed, "{}", t);
                }
                None => proptest::prop_assert!(
                    has_context || repeated || oversize || parsed.is_err(),
                    "declined: {}", t
                ),
            }
        }
    }
}
