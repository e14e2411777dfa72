//! Sequin's HTTP server.
//!
//! - [`ingest`]: Segment-compatible `POST /v1/{batch,track,page,screen,identify,alias,group}`
//!   with the write key by HTTP Basic, Segment's size limits, and a response only once the
//!   events are durable (group commit: concurrent requests share one log sync).
//! - `/healthz` and `/metrics` (Prometheus text format).
//!
//! Live segment evaluation, the membership API and the change stream come next; they will
//! share this state and the engine's matcher.

pub mod error;
pub mod ingest;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

pub use error::ApiError;
pub use ingest::Ingestor;

/// Access keys. An empty key is never accepted.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// For ingest (`writeKey:` by HTTP Basic).
    pub write: String,
    /// For reading memberships (bearer token).
    pub read: String,
    /// For managing definitions (bearer token).
    pub admin: String,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events made durable.
    pub events_accepted: AtomicU64,
    /// Events dropped as duplicates of an accepted message id.
    pub events_duplicate: AtomicU64,
    /// Ingest requests answered 2xx.
    pub requests_ok: AtomicU64,
    /// Ingest requests answered 4xx.
    pub requests_rejected: AtomicU64,
    /// Log syncs (each acknowledges one or more requests).
    pub commits: AtomicU64,
}

/// Everything a handler needs.
pub struct AppState {
    /// Access keys.
    pub keys: Keys,
    /// The durable write path.
    pub ingestor: Ingestor,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/batch", post(ingest::batch))
        .route("/v1/track", post(ingest::track))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/alias", post(ingest::alias))
        .route("/v1/group", post(ingest::group))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> String {
    let m = &state.metrics;
    let line = |name: &str, help: &str, v: &AtomicU64| {
        format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        )
    };
    [
        line(
            "sequin_events_accepted_total",
            "Events made durable.",
            &m.events_accepted,
        ),
        line(
            "sequin_events_duplicate_total",
            "Events dropped as duplicates.",
            &m.events_duplicate,
        ),
        line(
            "sequin_ingest_requests_ok_total",
            "Ingest requests acknowledged.",
            &m.requests_ok,
        ),
        line(
            "sequin_ingest_requests_rejected_total",
            "Ingest requests refused.",
            &m.requests_rejected,
        ),
        line(
            "sequin_log_commits_total",
            "Log syncs (group commits).",
            &m.commits,
        ),
    ]
    .concat()
}
