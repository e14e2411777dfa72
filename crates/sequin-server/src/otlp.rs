//! OpenTelemetry GenAI ingest: `POST /v1/traces` (OTLP/HTTP, protobuf or JSON) turns spans
//! that follow the GenAI semantic conventions into conversation events, made durable like
//! every other event before the response.
//!
//! One conversation is `gen_ai.conversation.id` (span, else resource attribute; without one,
//! the trace). Its user is `user.id` / `enduser.id`, else the conversation itself. Spans map
//! by `gen_ai.operation.name` (else the first word of the span name):
//!
//! - `chat` / `text_completion` / `generate_content`: the new user turns of
//!   `gen_ai.input.messages` (those after its last assistant message) become `user_message`
//!   events at the span's start; the text of `gen_ai.output.messages` becomes
//!   `agent_message` at its end. Messages are opt-in in the conventions: without them a
//!   span gives no turn.
//! - `execute_tool`: `tool_call` at the span's end with `tool_name` (`gen_ai.tool.name`),
//!   `status` (`error` when the span status is ERROR or `error.type` is set) and
//!   `error.type`.
//! - `invoke_agent`: `agent_invocation` at the start with `gen_ai.agent.name`.
//! - any of them failed (status ERROR or `error.type`, tool spans excepted): an `error` event
//!   at the end with `code` = `error.type`.
//!
//! Spans without a GenAI operation are skipped. Each event's message id is built from the
//! trace id, the span id and its position, so an exporter's retry is de-duplicated.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message as _;
use sequin_core::{Event, MessageKind, Text, Value};
use serde_json::Value as Json;

use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{append_counted, check_write_key, counted, read_bounded};

/// Largest accepted request body (after gzip decoding).
pub const MAX_TRACES_BYTES: usize = 4 * 1024 * 1024;

/// The subset of the OTLP trace protobuf schema Sequin reads (unknown fields are skipped).
pub mod proto {
    #![allow(missing_docs)]

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<PartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_spans: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// `google.rpc.Status`: the body of an OTLP/HTTP error answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        /// 0 unset, 1 ok, 2 error.
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(message, tag = "5")]
            ArrayValue(super::ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(super::KeyValueList),
            #[prost(bytes = "vec", tag = "7")]
            BytesValue(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }
}

use proto::any_value::Value as Any;

// ---- OTLP/JSON → the same messages ------------------------------------------------------

type JsonResult<T> = Result<T, String>;

fn field<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    v.get(key).filter(|x| !x.is_null())
}

fn array<'a>(v: &'a Json, key: &str, place: &str) -> JsonResult<&'a [Json]> {
    match field(v, key) {
        None => Ok(&[]),
        Some(Json::Array(a)) => Ok(a),
        Some(_) => Err(format!("{place}.{key}: expected an array")),
    }
}

/// A 64-bit integer as OTLP/JSON writes it: a number or a decimal string.
fn int(v: &Json, place: &str) -> JsonResult<i64> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
            .ok_or_else(|| format!("{place}: not a 64-bit integer")),
        Json::String(s) => s
            .parse()
            .map_err(|_| format!("{place}: `{s}` is not an integer")),
        _ => Err(format!("{place}: expected an integer")),
    }
}

fn nanos(v: &Json, key: &str, place: &str) -> JsonResult<u64> {
    match field(v, key) {
        None => Ok(0),
        Some(x) => {
            let n = int(x, &format!("{place}.{key}"))?;
            u64::try_from(n).map_err(|_| format!("{place}.{key}: negative time"))
        }
    }
}

/// Trace and span ids are hex in OTLP/JSON.
fn hex_id(v: &Json, key: &str, place: &str) -> JsonResult<Vec<u8>> {
    let Some(s) = field(v, key) else {
        return Ok(Vec::new());
    };
    let s = s
        .as_str()
        .ok_or_else(|| format!("{place}.{key}: expected a hex string"))?;
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{place}.{key}: `{s}` is not hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("{place}.{key}: {e}")))
        .collect()
}

fn any_value(v: &Json, place: &str) -> JsonResult<proto::AnyValue> {
    let value = if let Some(s) = field(v, "stringValue") {
        Some(Any::StringValue(
            s.as_str()
                .ok_or_else(|| format!("{place}.stringValue: expected a string"))?
                .to_string(),
        ))
    } else if let Some(b) = field(v, "boolValue") {
        Some(Any::BoolValue(b.as_bool().ok_or_else(|| {
            format!("{place}.boolValue: expected a boolean")
        })?))
    } else if let Some(i) = field(v, "intValue") {
        Some(Any::IntValue(int(i, &format!("{place}.intValue"))?))
    } else if let Some(d) = field(v, "doubleValue") {
        Some(Any::DoubleValue(d.as_f64().ok_or_else(|| {
            format!("{place}.doubleValue: expected a number")
        })?))
    } else if let Some(a) = field(v, "arrayValue") {
        let values = array(a, "values", &format!("{place}.arrayValue"))?
            .iter()
            .enumerate()
            .map(|(i, x)| any_value(x, &format!("{place}.arrayValue.values[{i}]")))
            .collect::<JsonResult<_>>()?;
        Some(Any::ArrayValue(proto::ArrayValue { values }))
    } else if let Some(kv) = field(v, "kvlistValue") {
        let values = key_values(kv, "values", &format!("{place}.kvlistValue"))?;
        Some(Any::KvlistValue(proto::KeyValueList { values }))
    } else if let Some(b) = field(v, "bytesValue") {
        use base64::Engine as _;
        let s = b
            .as_str()
            .ok_or_else(|| format!("{place}.bytesValue: expected base64 text"))?;
        Some(Any::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("{place}.bytesValue: {e}"))?,
        ))
    } else {
        None
    };
    Ok(proto::AnyValue { value })
}

fn key_values(v: &Json, key: &str, place: &str) -> JsonResult<Vec<proto::KeyValue>> {
    array(v, key, place)?
        .iter()
        .enumerate()
        .map(|(i, kv)| {
            let here = format!("{place}.{key}[{i}]");
            let k = field(kv, "key")
                .and_then(Json::as_str)
                .ok_or_else(|| format!("{here}.key: expected a string"))?;
            let value = match field(kv, "value") {
                Some(v) => Some(any_value(v, &format!("{here}.value"))?),
                None => None,
            };
            Ok(proto::KeyValue {
                key: k.to_string(),
                value,
            })
        })
        .collect()
}

/// Reads an OTLP/JSON `ExportTraceServiceRequest`; errors name the place.
pub fn request_from_json(v: &Json) -> JsonResult<proto::ExportTraceServiceRequest> {
    if !v.is_object() {
        return Err("$: expected an object with `resourceSpans`".into());
    }
    let mut req = proto::ExportTraceServiceRequest::default();
    for (r, rs) in array(v, "resourceSpans", "$")?.iter().enumerate() {
        let rp = format!("resourceSpans[{r}]");
        let resource = match field(rs, "resource") {
            Some(res) => Some(proto::Resource {
                attributes: key_values(res, "attributes", &format!("{rp}.resource"))?,
            }),
            None => None,
        };
        let mut scope_spans = Vec::new();
        for (s, ss) in array(rs, "scopeSpans", &rp)?.iter().enumerate() {
            let sp = format!("{rp}.scopeSpans[{s}]");
            let mut spans = Vec::new();
            for (k, span) in array(ss, "spans", &sp)?.iter().enumerate() {
                let p = format!("{sp}.spans[{k}]");
                let status = match field(span, "status") {
                    Some(st) => Some(proto::Status {
                        message: field(st, "message")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        code: match field(st, "code") {
                            None => 0,
                            Some(Json::String(s)) if s == "STATUS_CODE_ERROR" => 2,
                            Some(Json::String(s)) if s == "STATUS_CODE_OK" => 1,
                            Some(Json::String(s)) if s == "STATUS_CODE_UNSET" => 0,
                            Some(c) => int(c, &format!("{p}.status.code"))? as i32,
                        },
                    }),
                    None => None,
                };
                spans.push(proto::Span {
                    trace_id: hex_id(span, "traceId", &p)?,
                    span_id: hex_id(span, "spanId", &p)?,
                    name: field(span, "name")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    start_time_unix_nano: nanos(span, "startTimeUnixNano", &p)?,
                    end_time_unix_nano: nanos(span, "endTimeUnixNano", &p)?,
                    attributes: key_values(span, "attributes", &p)?,
                    status,
                });
            }
            scope_spans.push(proto::ScopeSpans { spans });
        }
        req.resource_spans.push(proto::ResourceSpans {
            resource,
            scope_spans,
        });
    }
    Ok(req)
}

// ---- spans → events -----------------------------------------------------------------------

fn find<'a>(attrs: &'a [proto::KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn to_json(v: &Any) -> Json {
    match v {
        Any::StringValue(s) => Json::String(s.clone()),
        Any::BoolValue(b) => Json::Bool(*b),
        Any::IntValue(i) => Json::from(*i),
        Any::DoubleValue(d) => Json::from(*d),
        Any::ArrayValue(a) => Json::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(Json::Null, to_json))
                .collect(),
        ),
        Any::KvlistValue(kv) => Json::Object(
            kv.values
                .iter()
                .map(|p| {
                    let v = p
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(Json::Null, to_json);
                    (p.key.clone(), v)
                })
                .collect(),
        ),
        Any::BytesValue(b) => Json::String(hex(b)),
    }
}

fn to_value(v: &Any) -> Value {
    match v {
        Any::StringValue(s) => Value::Str(s.as_str().into()),
        Any::BoolValue(b) => Value::Bool(*b),
        Any::IntValue(i) => Value::Int(*i),
        Any::DoubleValue(d) => Value::Float(*d),
        other => Value::Json(to_json(other).to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GenAI messages: a JSON string (as the conventions record them on spans) or a structured
/// attribute.
fn messages(v: Option<&Any>) -> Vec<Json> {
    let parsed = match v {
        Some(Any::StringValue(s)) => serde_json::from_str(s).unwrap_or(Json::Null),
        Some(other) => to_json(other),
        None => Json::Null,
    };
    match parsed {
        Json::Array(a) => a,
        _ => Vec::new(),
    }
}

/// The text parts of one message, joined.
fn message_text(m: &Json) -> String {
    let mut out: Vec<&str> = Vec::new();
    if let Some(parts) = m.get("parts").and_then(Json::as_array) {
        for p in parts {
            let is_text = p
                .get("type")
                .and_then(Json::as_str)
                .is_none_or(|t| t == "text");
            if is_text && let Some(c) = p.get("content").and_then(Json::as_str) {
                out.push(c);
            }
        }
    } else if let Some(c) = m.get("content").and_then(Json::as_str) {
        out.push(c);
    }
    out.join("\n")
}

/// What a request turned into.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Conversation events, in span order.
    pub events: Vec<Event>,
    /// Spans that could not be read, with the reason.
    pub rejected: Vec<String>,
    /// Spans without a GenAI operation.
    pub skipped: usize,
}

/// Maps the GenAI spans of a request to conversation events.
pub fn map_request(req: &proto::ExportTraceServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    for (r, rs) in req.resource_spans.iter().enumerate() {
        let resource: &[proto::KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        for (s, ss) in rs.scope_spans.iter().enumerate() {
            for (k, span) in ss.spans.iter().enumerate() {
                let place = format!("resourceSpans[{r}].scopeSpans[{s}].spans[{k}]");
                match map_span(span, resource) {
                    Ok(Some(mut evs)) => out.events.append(&mut evs),
                    Ok(None) => out.skipped += 1,
                    Err(reason) => out.rejected.push(format!("{place}: {reason}")),
                }
            }
        }
    }
    out
}

fn map_span(
    span: &proto::Span,
    resource: &[proto::KeyValue],
) -> Result<Option<Vec<Event>>, String> {
    let attr = |key: &str| find(&span.attributes, key).or_else(|| find(resource, key));
    let operation = attr("gen_ai.operation.name")
        .and_then(text)
        .or_else(|| span.name.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let known = [
        "chat",
        "text_completion",
        "generate_content",
        "execute_tool",
        "invoke_agent",
    ];
    if !known.contains(&operation.as_str()) {
        return Ok(None);
    }
    if span.start_time_unix_nano == 0 {
        return Err("startTimeUnixNano is missing".into());
    }
    if span.trace_id.is_empty() || span.span_id.is_empty() {
        return Err("traceId and spanId are required".into());
    }
    let start = (span.start_time_unix_nano / 1000) as i64;
    let end = if span.end_time_unix_nano >= span.start_time_unix_nano {
        (span.end_time_unix_nano / 1000) as i64
    } else {
        start
    };
    let trace = hex(&span.trace_id);
    let span_id = hex(&span.span_id);
    let conversation = attr("gen_ai.conversation.id")
        .and_then(text)
        .unwrap_or_else(|| trace.clone());
    let user = attr("user.id")
        .or_else(|| attr("enduser.id"))
        .and_then(text)
        .unwrap_or_else(|| conversation.clone());
    let context: Vec<(Text, Value)> = resource
        .iter()
        .filter_map(|kv| {
            let v = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.as_str().into(), to_value(v)))
        })
        .collect();
    let mut n = 0;
    let mut event = |name: &str, time: i64, mut props: Vec<(Text, Value)>| {
        props.push((
            "gen_ai.operation.name".into(),
            Value::Str(operation.as_str().into()),
        ));
        props.push(("trace_id".into(), Value::Str(trace.as_str().into())));
        props.push(("span_id".into(), Value::Str(span_id.as_str().into())));
        for key in [
            "gen_ai.agent.name",
            "gen_ai.request.model",
            "gen_ai.provider.name",
        ] {
            if let Some(v) = attr(key) {
                props.push((key.into(), to_value(v)));
            }
        }
        n += 1;
        Event {
            kind: MessageKind::Track,
            name: name.into(),
            time,
            user_id: Some(user.as_str().into()),
            anonymous_id: None,
            previous_id: None,
            session_id: None,
            conversation_id: Some(conversation.as_str().into()),
            message_id: Some(format!("otel-{trace}-{span_id}-{n}").into()),
            properties: props,
            context: context.clone(),
            traits: Vec::new(),
        }
    };
    let failed = span.status.as_ref().is_some_and(|s| s.code == 2);
    let error_type = attr("error.type").and_then(text);
    let mut events = Vec::new();
    match operation.as_str() {
        "execute_tool" => {
            let mut props = vec![(
                "status".into(),
                Value::Str(
                    if failed || error_type.is_some() {
                        "error"
                    } else {
                        "success"
                    }
                    .into(),
                ),
            )];
            if let Some(t) = attr("gen_ai.tool.name").and_then(text) {
                props.push(("tool_name".into(), Value::Str(t.into())));
            }
            if let Some(e) = &error_type {
                props.push(("error.type".into(), Value::Str(e.as_str().into())));
            }
            if let Some(id) = attr("gen_ai.tool.call.id").and_then(text) {
                props.push(("tool_call_id".into(), Value::Str(id.into())));
            }
            events.push(event("tool_call", end, props));
        }
        "invoke_agent" => {
            events.push(event("agent_invocation", start, Vec::new()));
        }
        _ => {
            let input = messages(attr("gen_ai.input.messages"));
            let last_assistant = input
                .iter()
                .rposition(|m| m.get("role").and_then(Json::as_str) == Some("assistant"));
            let new_turns = input.iter().skip(last_assistant.map_or(0, |i| i + 1));
            for m in new_turns {
                if m.get("role").and_then(Json::as_str) == Some("user") {
                    let said = message_text(m);
                    let props = vec![
                        ("role".into(), Value::Str("user".into())),
                        ("text".into(), Value::Str(said.into())),
                    ];
                    events.push(event("user_message", start, props));
                }
            }
            for m in messages(attr("gen_ai.output.messages")) {
                let said = message_text(&m);
                if said.is_empty() {
                    continue; // only tool calls: the execute_tool spans carry them
                }
                let mut props = vec![
                    ("role".into(), Value::Str("assistant".into())),
                    ("text".into(), Value::Str(said.into())),
                ];
                if let Some(f) = m.get("finish_reason").and_then(Json::as_str) {
                    props.push(("finish_reason".into(), Value::Str(f.into())));
                }
                events.push(event("agent_message", end, props));
            }
        }
    }
    if operation != "execute_tool" && (failed || error_type.is_some()) {
        let mut props = vec![(
            "code".into(),
            Value::Str(error_type.map_or_else(|| "error".into(), Text::from)),
        )];
        if let Some(m) = span.status.as_ref().filter(|s| !s.message.is_empty()) {
            props.push(("message".into(), Value::Str(m.message.as_str().into())));
        }
        events.push(event("error", end, props));
    }
    Ok(Some(events))
}

// ---- the handler ----------------------------------------------------------------------------

/// An error as OTLP/HTTP answers it: the HTTP status, and a `google.rpc.Status` body in the
/// request's encoding.
fn error_answer(e: ApiError, json: bool) -> Response {
    let (status, code) = match &e {
        ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, 16), // UNAUTHENTICATED
        ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, 3),     // INVALID_ARGUMENT
        ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, 7),        // PERMISSION_DENIED
        _ => (StatusCode::INTERNAL_SERVER_ERROR, 13),                // INTERNAL
    };
    let message = e.to_string();
    let mut response = if json {
        (
            status,
            axum::Json(serde_json::json!({ "code": code, "message": message })),
        )
            .into_response()
    } else {
        let body = proto::RpcStatus { code, message }.encode_to_vec();
        (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            body,
        )
            .into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"sequin\""),
        );
    }
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// `POST /v1/traces`: answers in the request's encoding once the events are durable; spans
/// it could not read are reported as OTLP partial success, a refused request as a
/// `google.rpc.Status`.
pub async fn traces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json = is_json(&headers);
    let r = async {
        check_write_key(&headers, &state.keys.write)?;
        let bytes = read_bounded(&headers, body, MAX_TRACES_BYTES, "trace export").await?;
        let req = if json {
            let v: Json = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
            request_from_json(&v).map_err(ApiError::BadRequest)?
        } else {
            proto::ExportTraceServiceRequest::decode(&bytes[..]).map_err(|e| {
                ApiError::BadRequest(format!(
                    "not an OTLP protobuf ExportTraceServiceRequest ({e}); JSON needs \
                     Content-Type: application/json"
                ))
            })?
        };
        let mapped = map_request(&req);
        append_counted(&state, mapped.events).await?;
        Ok::<_, ApiError>(mapped.rejected)
    }
    .await;
    let rejected = match counted(&state, r) {
        Ok(rejected) => rejected,
        Err(e) => return Ok(error_answer(e, json)),
    };
    let partial = (!rejected.is_empty()).then(|| proto::PartialSuccess {
        rejected_spans: rejected.len() as i64,
        error_message: rejected.join("; "),
    });
    Ok(if json {
        let body = match &partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }}),
            None => serde_json::json!({}),
        };
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        let msg = proto::ExportTraceServiceResponse {
            partial_success: partial,
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            msg.encode_to_vec(),
        )
            .into_response()
    })
}
