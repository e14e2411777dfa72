//! The membership API (bearer token: the read key, or the admin key for everything).
//!
//! - `GET /api/segments`, `GET /api/segments/{name}`: live definitions and member counts.
//! - `PUT /api/segments/{name}` (admin): create or replace one definition (the body is its
//!   source); it is checked against the others, backfilled from history, then live.
//! - `DELETE /api/segments/{name}` (admin): refused while another definition uses it.
//! - `GET /api/segments/{name}/members?after=UNIT&limit=N`: members, paged by unit key.
//! - `GET /api/units/{unit}/segments`: the segments a unit is in now.
//! - `GET /api/changes`: server-sent events, one per change, resuming after
//!   `Last-Event-ID` (or `?after=N`).
//! - `PUT|DELETE /api/segments/{name}/webhook` (admin, body `{"url": "http://…"}`),
//!   `GET /api/webhooks` (admin): per-segment webhooks (see [`crate::webhooks`]).
//! - `POST /api/admin/advance?to=TIME` and `POST /api/admin/sync` (admin): move the
//!   watermark; wait until everything accepted so far is evaluated.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use sequin_core::time::{TimeFormat, format_rfc3339, parse_text};
use sequin_engine::live::Change;
use sequin_lang::ast::SegFile;
use sequin_lang::{check, format_file, parse};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use tokio::sync::{broadcast, oneshot};

use crate::evaluator::{Command, Live, compile_segments};
use crate::{ApiError, AppState};

/// Who may call an endpoint.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Access {
    Read,
    Admin,
}

pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    need: Access,
) -> Result<(), ApiError> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "send the read or admin key as `Authorization: Bearer KEY`".into(),
            )
        })?;
    let is = |key: &str| {
        !key.is_empty() && crate::ingest::constant_time_eq(given.as_bytes(), key.as_bytes())
    };
    if is(&state.keys.admin) {
        return Ok(());
    }
    if is(&state.keys.read) {
        return match need {
            Access::Read => Ok(()),
            Access::Admin => Err(ApiError::Forbidden("this needs the admin key".into())),
        };
    }
    Err(ApiError::Unauthorized("wrong key".into()))
}

fn live(state: &AppState) -> &Arc<Live> {
    &state.live
}

fn time_json(t: i64) -> Json_ {
    json!(format_rfc3339(t))
}

/// `GET /api/segments`.
pub async fn list_segments(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let file = parse(&live(&state).source.read().expect("source lock")).unwrap_or_default();
    let engine = live(&state).engine.read().expect("engine lock");
    // Every definition in source order; outcomes are not live, so they have no members.
    let segments: Vec<Json_> = file
        .items
        .iter()
        .map(|i| {
            json!({
                "name": i.name.name,
                "kind": match i.kind {
                    sequin_lang::ast::ItemKind::Segment => "segment",
                    sequin_lang::ast::ItemKind::Outcome => "outcome",
                },
                "unit": i.unit.keyword(),
                "description": i.description,
                "sequence": sequin_insight::funnel::has_funnel(i),
                "members": match i.kind {
                    sequin_lang::ast::ItemKind::Segment => engine.members(&i.name.name).map(|m| m.len()),
                    sequin_lang::ast::ItemKind::Outcome => None,
                },
            })
        })
        .collect();
    Ok(Json(json!({
        "segments": segments,
        "watermark": engine.watermark().map(time_json),
        "last_change": live(&state).changes.last_seq(),
    })))
}

fn item_source(source: &str, name: &str) -> Option<String> {
    let file = parse(source).ok()?;
    let item = file.items.into_iter().find(|i| i.name.name == name)?;
    Some(format_file(&SegFile {
        items: vec![item],
        ..SegFile::default()
    }))
}

/// `GET /api/segments/{name}`.
pub async fn get_segment(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let source = live(&state).source.read().expect("source lock").clone();
    let text = item_source(&source, &name)
        .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?;
    let engine = live(&state).engine.read().expect("engine lock");
    Ok(Json(json!({
        "name": name,
        "source": text,
        "members": engine.members(&name).map_or(0, |m| m.len()),
    })))
}

/// Checks a whole definition set; the rendered diagnostics on error.
fn check_set(text: &str, what: &str) -> Result<SegFile, ApiError> {
    let file = parse(text).map_err(|d| ApiError::BadRequest(d.render(what, text)))?;
    let errors: Vec<String> = check(&file, None)
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.render(what, text))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Conflict(errors.join("\n")));
    }
    Ok(file)
}

async fn apply(state: &AppState, file: SegFile) -> Result<(), ApiError> {
    let programs = compile_segments(&file).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (tx, rx) = oneshot::channel();
    live(state)
        .send(Command::SetDefinitions {
            source: format_file(&file),
            programs,
            reply: tx,
        })
        .map_err(ApiError::Internal)?;
    rx.await
        .map_err(|_| ApiError::Internal("the evaluator has stopped".into()))?
        .map_err(ApiError::Internal)
}

/// `PUT /api/segments/{name}`: the body is the definition's source, optionally with
/// `signal` blocks (which then apply to every live definition).
pub async fn put_segment(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<(StatusCode, Json<Json_>), ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    let what = format!("segment {name}");
    let new = parse(&body).map_err(|d| ApiError::BadRequest(d.render(&what, &body)))?;
    if new.items.len() != 1 || new.items[0].name.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body must define exactly one segment or outcome, named `{name}` (it defines: {})",
            new.items
                .iter()
                .map(|i| format!("`{}`", i.name.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // The definition alone first, so its own errors point into its own text.
    let own: Vec<String> = check(&new, None)
        .iter()
        .filter(|d| d.is_error() && !d.message.contains("no segment named"))
        .map(|d| d.render(&what, &body))
        .collect();
    if !own.is_empty() {
        return Err(ApiError::BadRequest(own.join("\n")));
    }
    let current = live(&state).source.read().expect("source lock").clone();
    let SegFile { mut items, signals } = parse(&current).unwrap_or_default();
    let existed = items.iter().any(|i| i.name.name == name);
    items.retain(|i| i.name.name != name);
    items.extend(new.items);
    // `signal` blocks sent along replace those of the same signal, for every definition.
    let mut signals: Vec<_> = signals
        .into_iter()
        .filter(|b| !new.signals.iter().any(|n| n.signal.name == b.signal.name))
        .collect();
    signals.extend(new.signals);
    let text = format_file(&SegFile { items, signals });
    let file = check_set(&text, "live definitions")?;
    apply(&state, file).await?;
    let engine = live(&state).engine.read().expect("engine lock");
    Ok((
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(json!({
            "name": name,
            "replaced": existed,
            "members": engine.members(&name).map_or(0, |m| m.len()),
        })),
    ))
}

/// `DELETE /api/segments/{name}`.
pub async fn delete_segment(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    let current = live(&state).source.read().expect("source lock").clone();
    let SegFile { mut items, signals } = parse(&current).unwrap_or_default();
    let before = items.len();
    items.retain(|i| i.name.name != name);
    if items.len() == before {
        return Err(ApiError::NotFound(format!("no segment named `{name}`")));
    }
    let text = format_file(&SegFile { items, signals });
    let file = check_set(&text, "live definitions without it")?;
    apply(&state, file).await?;
    Ok(Json(json!({ "deleted": name })))
}

/// Paging of members.
#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/segments/{name}/members`.
pub async fn members(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let limit = page.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::BadRequest(
            "limit: between 1 and 10000 members a page".into(),
        ));
    }
    let engine = live(&state).engine.read().expect("engine lock");
    let all = engine
        .members(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?;
    let range = match &page.after {
        Some(a) => all.range::<String, _>((
            std::ops::Bound::Excluded(a.clone()),
            std::ops::Bound::Unbounded,
        )),
        None => all.range::<String, _>(..),
    };
    let list: Vec<(&String, &i64)> = range.take(limit + 1).collect();
    let more = list.len() > limit;
    let shown = &list[..list.len().min(limit)];
    Ok(Json(json!({
        "segment": name,
        "total": all.len(),
        "members": shown
            .iter()
            .map(|(u, t)| json!({ "unit": u, "entered_at": time_json(**t) }))
            .collect::<Vec<_>>(),
        "next": if more { shown.last().map(|(u, _)| json!(u)) } else { None },
    })))
}

/// `GET /api/units/{unit}/segments`.
pub async fn unit_segments(
    State(state): State<Arc<AppState>>,
    Path(unit): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let engine = live(&state).engine.read().expect("engine lock");
    let segments: Vec<Json_> = engine
        .segments_of(&unit)
        .into_iter()
        .map(|(s, t)| json!({ "segment": s, "entered_at": time_json(t) }))
        .collect();
    Ok(Json(json!({ "unit": unit, "segments": segments })))
}

/// Where a change stream starts.
#[derive(Deserialize)]
pub struct After {
    after: Option<u64>,
}

struct StreamState {
    live: Arc<Live>,
    rx: broadcast::Receiver<Change>,
    pending: VecDeque<Change>,
    last: u64,
}

fn sse_event(c: &Change) -> SseEvent {
    SseEvent::default()
        .id(c.seq.to_string())
        .event(match c.kind {
            sequin_engine::live::ChangeKind::Enter => "enter",
            sequin_engine::live::ChangeKind::Exit => "exit",
        })
        .data(
            json!({
                "seq": c.seq,
                "segment": c.segment,
                "unit": c.unit,
                "kind": c.kind,
                "time": time_json(c.time),
            })
            .to_string(),
        )
}

/// `GET /api/changes`: server-sent events.
pub async fn changes(
    State(state): State<Arc<AppState>>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let from_header = match headers.get("last-event-id") {
        Some(h) => Some(
            h.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID: expected a change number".into())
                })?,
        ),
        None => None,
    };
    let after = from_header.or(q.after).unwrap_or(0);
    let live = live(&state).clone();
    // Subscribe first, then read what is recorded: nothing falls in between.
    let rx = live.changes.broadcast.subscribe();
    let upto = live.changes.last_seq();
    let pending: VecDeque<Change> = live
        .changes
        .read_range(after, upto)
        .map_err(|e| ApiError::Internal(format!("change log: {e}")))?
        .into();
    let st = StreamState {
        live,
        rx,
        pending,
        last: after,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(c) = st.pending.pop_front() {
                st.last = c.seq;
                return Some((Ok(sse_event(&c)), st));
            }
            match st.rx.recv().await {
                Ok(c) if c.seq <= st.last => continue,
                Ok(c) => {
                    st.last = c.seq;
                    return Some((Ok(sse_event(&c)), st));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the broadcast buffer: catch up from the log.
                    let upto = st.live.changes.last_seq();
                    st.pending = st
                        .live
                        .changes
                        .read_range(st.last, upto)
                        .unwrap_or_default()
                        .into();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Target of a watermark move.
#[derive(Deserialize)]
pub struct To {
    to: String,
}

/// `POST /api/admin/advance?to=TIME`.
pub async fn advance(
    State(state): State<Arc<AppState>>,
    Query(q): Query<To>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    let t = parse_text(&q.to, TimeFormat::Auto)
        .map_err(|e| ApiError::BadRequest(format!("to: {e}")))?;
    let (tx, rx) = oneshot::channel();
    live(&state)
        .send(Command::Advance(t, tx))
        .map_err(ApiError::Internal)?;
    let _ = rx.await;
    let engine = live(&state).engine.read().expect("engine lock");
    Ok(Json(
        json!({ "watermark": engine.watermark().map(time_json) }),
    ))
}

/// `POST /api/admin/sync`: answers once every event accepted before it is evaluated.
pub async fn sync(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    state.ingestor.barrier().await?;
    let (tx, rx) = oneshot::channel();
    live(&state)
        .send(Command::Barrier(tx))
        .map_err(ApiError::Internal)?;
    let _ = rx.await;
    let engine = live(&state).engine.read().expect("engine lock");
    Ok(Json(json!({
        "watermark": engine.watermark().map(time_json),
        "last_change": live(&state).changes.last_seq(),
    })))
}

/// A webhook target.
#[derive(Deserialize)]
pub struct HookBody {
    url: String,
}

/// `PUT /api/segments/{name}/webhook`.
pub async fn put_webhook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    let hook: HookBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"url\": \"http://…\"}}: {e}")))?;
    if live(&state)
        .engine
        .read()
        .expect("engine lock")
        .members(&name)
        .is_none()
    {
        return Err(ApiError::NotFound(format!("no segment named `{name}`")));
    }
    state
        .webhooks
        .set(&name, &hook.url, live(&state).clone())
        .map_err(ApiError::BadRequest)?;
    Ok(Json(json!({ "segment": name, "url": hook.url })))
}

/// `DELETE /api/segments/{name}/webhook`.
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    match state.webhooks.remove(&name).map_err(ApiError::Internal)? {
        true => Ok(Json(json!({ "segment": name, "webhook": null }))),
        false => Err(ApiError::NotFound(format!(
            "segment `{name}` has no webhook"
        ))),
    }
}

/// `GET /api/webhooks`.
pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&state, &headers, Access::Admin)?;
    Ok(Json(json!({ "webhooks": state.webhooks.list() })))
}
