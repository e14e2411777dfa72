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
use crate::value::{Value, flatten_into};

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
            match map_single(&item_obj, received_at) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    out.truncate(start);
                    return Err(MapError::new(format!("batch[{i}].{}", e.field), e.reason));
                }
            }
        }
        return Ok(());
    }
    out.push(map_single(&obj, received_at)?);
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

fn id_field(obj: &Map<String, Json>, key: &str) -> Result<Option<String>, MapError> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(MapError::new(
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

fn time_field(obj: &Map<String, Json>, key: &str) -> Result<Option<Micros>, MapError> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => parse_text(s, TimeFormat::Auto)
            .map(Some)
            .map_err(|e| MapError::new(key, e)),
        Some(Json::Number(n)) => {
            let r = match n.as_i64() {
                Some(i) => crate::time::from_epoch_int(i, TimeFormat::Auto),
                None => crate::time::from_epoch(n.as_f64().unwrap_or(f64::NAN), TimeFormat::Auto),
            };
            r.map(Some).map_err(|e| MapError::new(key, e))
        }
        Some(other) => Err(MapError::new(
            key,
            format!("must be a time, found {}", json_type(other)),
        )),
    }
}

fn object_field<'a>(obj: &'a Map<String, Json>, key: &str) -> Result<Option<&'a Json>, MapError> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v @ Json::Object(_)) => Ok(Some(v)),
        Some(other) => Err(MapError::new(
            key,
            format!("must be an object, found {}", json_type(other)),
        )),
    }
}

fn event_time(obj: &Map<String, Json>, received_at: Option<Micros>) -> Result<Micros, MapError> {
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

fn map_single(obj: &Map<String, Json>, received_at: Option<Micros>) -> Result<Event, MapError> {
    let ty = match obj.get("type") {
        Some(Json::String(s)) => s.as_str(),
        Some(other) => {
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

    let mut properties = Vec::new();
    if let Some(p) = object_field(obj, "properties")? {
        flatten_into("", p, &mut properties);
    }
    let mut context = Vec::new();
    let mut traits = Vec::new();
    if let Some(Json::Object(ctx)) = object_field(obj, "context")? {
        // `context.traits` are traits; everything else is context (no copy of the map).
        for (k, v) in ctx {
            if k == "traits" {
                flatten_into("", v, &mut traits);
            } else {
                flatten_into(k, v, &mut context);
            }
        }
    }
    if let Some(t) = object_field(obj, "traits")? {
        flatten_into("", t, &mut traits);
    }

    let name_field = |key: &str| -> Result<Option<String>, MapError> {
        match obj.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(MapError::new(
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

    let lookup = |props: &[(String, Value)], keys: &[&str]| {
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
        session_id,
        conversation_id,
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
            vec![("plan".to_string(), Value::Str("pro".into()))]
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
}
