//! Segment-compatible ingest.
//!
//! A request is read with a bound (Segment's limits: 32 KB per event, 500 KB per batch),
//! parsed, mapped to events as a whole (one bad message refuses the request and nothing of
//! it is stored), handed to the [`Ingestor`], and acknowledged only when the log holding its
//! events has been synced.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use sequin_core::Event;
use sequin_core::time::Micros;
use sequin_store::{AppendOutcome, Store};
use serde_json::Value as Json_;
use tokio::sync::oneshot;

use crate::evaluator::{Command, Live};
use crate::{ApiError, AppState, Metrics};

/// Segment's limit for one event.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Segment's limit for one batch request.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

type Reply = oneshot::Sender<Result<AppendOutcome, String>>;

/// The single writer: requests queue their events; the writer thread appends everything
/// queued at once and syncs the log once for all of them (group commit).
pub struct Ingestor {
    queue: mpsc::Sender<(Vec<Event>, Reply)>,
}

impl Ingestor {
    /// Starts the writer thread over `store`.
    pub fn start(
        store: Arc<Mutex<Store>>,
        metrics: Arc<Metrics>,
        live: Option<Arc<Live>>,
    ) -> Ingestor {
        let (tx, rx) = mpsc::channel::<(Vec<Event>, Reply)>();
        let flush_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "sequin-flush".into())
            .build()
            .expect("the flush thread starts");
        std::thread::Builder::new()
            .name("sequin-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    if first.0.is_empty() {
                        // A barrier: everything queued before it is appended and handed on.
                        let _ = first.1.send(Ok(AppendOutcome::default()));
                        continue;
                    }
                    let mut group = vec![first];
                    let mut barrier = None;
                    while let Ok(more) = rx.try_recv() {
                        if more.0.is_empty() {
                            barrier = Some(more.1);
                            break;
                        }
                        group.push(more);
                        if group.len() >= 256 {
                            break;
                        }
                    }
                    // One append (one sync) for the whole group; then each request learns
                    // its own share of accepted and duplicate events.
                    let (events, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    if let Some(live) = &live {
                        live.wait_for_room();
                    }
                    let mut guard = store.lock().expect("store lock");
                    let result = guard.append_logged(events);
                    metrics.commits.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok((outcomes, accepted)) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                            if let Some(live) = &live
                                && !accepted.is_empty()
                            {
                                live.backlog
                                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
                                let _ = live.send(Command::Events(accepted));
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            eprintln!("sequin serve: append failed: {msg}");
                            for reply in replies {
                                let _ = reply.send(Err(msg.clone()));
                            }
                        }
                    }
                    let job = if guard.memtable_full() {
                        guard.start_flush()
                    } else {
                        Ok(None)
                    };
                    drop(guard);
                    match job {
                        Ok(Some(job)) => flush_in_background(&store, &flush_pool, job),
                        Ok(None) => {}
                        Err(e) => report_flush_error(&e),
                    }
                    if let Some(b) = barrier {
                        let _ = b.send(Ok(AppendOutcome::default()));
                    }
                }
            })
            .expect("the writer thread starts");
        Ingestor { queue: tx }
    }

    /// Returns once every request queued before it has been appended and handed to the
    /// evaluator.
    pub async fn barrier(&self) -> Result<(), ApiError> {
        self.append(Vec::new()).await.map(|_| ())
    }

    /// Makes `events` durable; returns once they are.
    pub async fn append(&self, events: Vec<Event>) -> Result<AppendOutcome, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((events, tx))
            .map_err(|_| ApiError::Internal("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| ApiError::Internal("the writer has stopped".into()))?
            .map_err(|e| ApiError::Internal(format!("store: {e}")))
    }
}

/// Writes a frozen memtable to history off the writer's path: acknowledgements go on
/// meanwhile. The job runs on a pool of one thread of its own, so that its parallel steps
/// never queue ahead of the writer's work on the global pool.
fn flush_in_background(
    store: &Arc<Mutex<Store>>,
    pool: &rayon::ThreadPool,
    job: sequin_store::FlushJob,
) {
    let store = store.clone();
    // Parallel iterators inside the job run on the pool they are called from.
    pool.spawn(move || {
        let written = job.write();
        let installed = store.lock().expect("store lock").finish_flush(written);
        if let Err(e) = installed {
            report_flush_error(&e);
        }
    });
}

fn report_flush_error(e: &sequin_store::StoreError) {
    eprintln!("sequin serve: flush to history failed (events stay in the log): {e}");
}

pub(crate) fn check_write_key(headers: &HeaderMap, key: &str) -> Result<(), ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing write key: send it by HTTP Basic as `writeKey:`".into())
        })?;
    let text = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("unreadable Authorization header".into()))?;
    let encoded = text.strip_prefix("Basic ").ok_or_else(|| {
        ApiError::Unauthorized("the write key goes in HTTP Basic authentication".into())
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::Unauthorized("Basic credentials are not valid base64".into()))?;
    let decoded = String::from_utf8_lossy(&decoded);
    let given = decoded
        .split_once(':')
        .map_or(decoded.as_ref(), |(user, _)| user);
    if key.is_empty() || !constant_time_eq(given.as_bytes(), key.as_bytes()) {
        return Err(ApiError::Unauthorized("wrong write key".into()));
    }
    Ok(())
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The receive time of a request. Ingest is the one place where the wall clock belongs:
/// Segment's clock-skew correction measures against it.
#[allow(clippy::disallowed_methods)]
fn received_now() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// Reads a request body of at most `limit` bytes (after gzip decoding, when the request
/// says `Content-Encoding: gzip`, as Segment's SDKs may).
pub(crate) async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<axum::body::Bytes, ApiError> {
    let too_big = || {
        ApiError::BadRequest(format!(
            "{what} exceeds {} KB (Segment's limit)",
            limit / 1024
        ))
    };
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())?;
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(raw);
    }
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("gzip body: {e}")))?;
    if out.len() > limit {
        return Err(too_big());
    }
    Ok(out.into())
}

fn parse_json(bytes: &[u8]) -> Result<Json_, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

async fn accept(state: &AppState, msg: Json_) -> Result<Json<Json_>, ApiError> {
    let mut events = Vec::new();
    sequin_core::segment::map_message_owned(msg, Some(received_now()), &mut events)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    accepted(append_counted(state, events).await?)
}

/// The answer to an ingest request whose events are durable.
fn accepted(outcome: AppendOutcome) -> Result<Json<Json_>, ApiError> {
    Ok(Json(serde_json::json!({
        "success": true,
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
    })))
}

/// Makes `events` durable and counts them (accepted, duplicates) in the metrics.
pub(crate) async fn append_counted(
    state: &AppState,
    events: Vec<Event>,
) -> Result<AppendOutcome, ApiError> {
    let outcome = state.ingestor.append(events).await?;
    state
        .metrics
        .events_accepted
        .fetch_add(outcome.accepted, Ordering::Relaxed);
    state
        .metrics
        .events_duplicate
        .fetch_add(outcome.duplicates, Ordering::Relaxed);
    Ok(outcome)
}

/// Counts an ingest request as answered 2xx or refused.
pub(crate) fn counted<T>(state: &AppState, r: Result<T, ApiError>) -> Result<T, ApiError> {
    let counter = match &r {
        Ok(_) => &state.metrics.requests_ok,
        Err(_) => &state.metrics.requests_rejected,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    r
}

/// `POST /v1/batch`.
pub async fn batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Json_>, ApiError> {
    let r = async {
        check_write_key(&headers, &state.keys.write)?;
        let bytes = read_bounded(&headers, body, MAX_BATCH_BYTES, "batch").await?;
        // The usual batch is read in one pass straight from its text, with no JSON tree.
        // Anything else (a context of the batch's own to merge into the items, or any
        // problem) takes the ordinary path, which merges and words the error.
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Some(events) =
                sequin_core::segment::map_batch_text(text, Some(received_now()), MAX_EVENT_BYTES)
        {
            return accepted(append_counted(&state, events).await?);
        }
        // The items as sent, without building them: each must fit Segment's limit.
        #[derive(serde::Deserialize)]
        struct RawBatch<'a> {
            #[serde(borrow)]
            batch: Vec<&'a serde_json::value::RawValue>,
        }
        let raw: RawBatch<'_> = serde_json::from_slice(&bytes).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::BadRequest(format!("malformed JSON: {e}"))
            } else {
                ApiError::BadRequest("batch: expected an object with a `batch` array".into())
            }
        })?;
        for (i, item) in raw.batch.iter().enumerate() {
            let size = item.get().len();
            if size > MAX_EVENT_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "batch[{i}]: event of {size} bytes exceeds 32 KB (Segment's limit)"
                )));
            }
        }
        let msg = parse_json(&bytes)?;
        accept(&state, msg).await
    }
    .await;
    counted(&state, r)
}

async fn single(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
    kind: &str,
) -> Result<Json<Json_>, ApiError> {
    let r = async {
        check_write_key(&headers, &state.keys.write)?;
        let bytes = read_bounded(&headers, body, MAX_EVENT_BYTES, "event").await?;
        let mut msg = parse_json(&bytes)?;
        let obj = msg
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("$: a message must be a JSON object".into()))?;
        match obj.get("type").and_then(Json_::as_str) {
            None => {
                obj.insert("type".into(), Json_::String(kind.into()));
            }
            Some(t) if t == kind => {}
            Some(t) => {
                return Err(ApiError::BadRequest(format!(
                    "type: `{t}` sent to /v1/{kind}"
                )));
            }
        }
        accept(&state, msg).await
    }
    .await;
    counted(&state, r)
}

macro_rules! single_endpoint {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("`POST /v1/", $kind, "`.")]
        pub async fn $name(
            State(state): State<Arc<AppState>>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<Json_>, ApiError> {
            single(state, headers, body, $kind).await
        }
    };
}

single_endpoint!(track, "track");
single_endpoint!(page, "page");
single_endpoint!(screen, "screen");
single_endpoint!(identify, "identify");
single_endpoint!(alias, "alias");
single_endpoint!(group, "group");
