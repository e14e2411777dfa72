//! Sequin's HTTP server.
//!
//! - [`ingest`]: Segment-compatible `POST /v1/{batch,track,page,screen,identify,alias,group}`
//!   with the write key by HTTP Basic, Segment's size limits, and a response only once the
//!   events are durable (group commit: concurrent requests share one log sync).
//! - [`otlp`]: OpenTelemetry GenAI spans by OTLP/HTTP (`POST /v1/traces`, protobuf or JSON)
//!   mapped to conversation events, durable before the response.
//! - [`evaluator`]: the thread that keeps segments live with the engine's matcher, the
//!   change log and its broadcast.
//! - [`api`]: definitions, members, the per-unit lookup, the change stream (bearer keys).
//! - [`webhooks`]: per-segment change delivery, at least once, with retries.
//! - [`ui`] and [`assets`]: the web UI at `/` (embedded files) and the endpoints behind it
//!   (docs/ui.md).
//! - `/healthz` and `/metrics` (Prometheus text format).
//! - [`Server`]: opens the store, starts the writer and the evaluator, builds the router.

pub mod api;
pub mod assets;
pub mod error;
pub mod evaluator;
pub mod ingest;
pub mod otlp;
pub mod ui;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use sequin_engine::live::LiveOptions;
use sequin_store::{Store, StoreOptions};

pub use error::ApiError;
pub use evaluator::{EvaluatorOptions, Live};
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
    /// Live evaluation.
    pub live: Arc<Live>,
    /// Per-segment webhooks.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// The store, for read views (the UI's previews and insights); the writer thread and
    /// the evaluator share it.
    pub store: Arc<Mutex<Store>>,
    /// Inactivity that ends a session or conversation (as live evaluation uses it).
    pub session_gap: sequin_core::time::Micros,
    /// The store's names for the editor's "did you mean", with when they were read.
    pub catalog: Mutex<Option<(std::time::Instant, sequin_lang::Catalog)>>,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Store directory (created if missing).
    pub store: PathBuf,
    /// Definitions to start with when the store has no live definitions yet.
    pub segments: Option<PathBuf>,
    /// Access keys.
    pub keys: Keys,
    /// Engine settings.
    pub live: LiveOptions,
    /// Move the watermark with the wall clock while idle.
    pub idle_advance: bool,
    /// Flush the store's memtable to history at about this size.
    pub memtable_bytes: usize,
    /// How often live state is checkpointed.
    pub checkpoint_every: std::time::Duration,
    /// Ingest waits while this many accepted events are not evaluated yet (0: never).
    pub max_backlog: u64,
}

/// A started server: the state to serve.
pub struct Server {
    /// Shared by every handler.
    pub state: Arc<AppState>,
    /// Where the live definitions came from (for the start-up message).
    pub definitions_from: PathBuf,
}

impl Server {
    /// Opens the store (recovering its log), loads and checks the definitions, backfills
    /// them, and starts the writer and evaluator threads.
    pub fn start(config: &ServerConfig) -> Result<Server, String> {
        let store = Store::open(
            &config.store,
            &StoreOptions {
                memtable_bytes: config.memtable_bytes,
                ..StoreOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let saved = evaluator::definitions_path(&config.store);
        let from: PathBuf = if saved.exists() {
            saved
        } else if let Some(f) = &config.segments {
            f.clone()
        } else {
            PathBuf::new()
        };
        let source = if from.as_os_str().is_empty() {
            String::new()
        } else {
            let bytes = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", from.display()))?
        };
        let file = load_definitions(&from, &source)?;
        let programs = evaluator::compile_segments(&file).map_err(|e| e.to_string())?;
        let store = Arc::new(Mutex::new(store));
        let (live, _) = evaluator::start(
            store.clone(),
            sequin_lang::format_file(&file),
            programs,
            EvaluatorOptions {
                live: config.live.clone(),
                idle_advance: config.idle_advance,
                checkpoint_every: config.checkpoint_every,
                max_backlog: config.max_backlog,
            },
        )?;
        let metrics = Arc::new(Metrics::default());
        let ingestor = Ingestor::start(store.clone(), metrics.clone(), Some(live.clone()));
        let webhooks = webhooks::Webhooks::start(&config.store, live.clone())?;
        Ok(Server {
            state: Arc::new(AppState {
                keys: config.keys.clone(),
                ingestor,
                metrics,
                live,
                webhooks,
                store,
                session_gap: config.live.session_gap,
                catalog: Mutex::new(None),
            }),
            definitions_from: from,
        })
    }
}

fn load_definitions(path: &Path, source: &str) -> Result<sequin_lang::SegFile, String> {
    let name = path.display().to_string();
    let file = sequin_lang::parse(source).map_err(|d| d.render(&name, source))?;
    let errors: Vec<String> = sequin_lang::check(&file, None)
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.render(&name, source))
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(file)
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
        .route("/v1/traces", post(otlp::traces))
        .route("/api/segments", get(api::list_segments))
        .route(
            "/api/segments/{name}",
            get(api::get_segment)
                .put(api::put_segment)
                .delete(api::delete_segment),
        )
        .route("/api/segments/{name}/members", get(api::members))
        .route(
            "/api/segments/{name}/webhook",
            axum::routing::put(api::put_webhook).delete(api::delete_webhook),
        )
        .route("/api/webhooks", get(api::list_webhooks))
        .route("/api/units/{unit}/segments", get(api::unit_segments))
        .route("/api/changes", get(api::changes))
        .route("/api/admin/advance", post(api::advance))
        .route("/api/admin/sync", post(api::sync))
        .route("/api/check", post(ui::check_definition))
        .route("/api/preview", post(ui::preview))
        .route("/api/segments/{name}/history", get(ui::history))
        .route("/api/segments/{name}/report", get(ui::report))
        .route("/api/segments/{name}/funnel", get(ui::funnel))
        .route("/api/segments/{name}/members.csv", get(ui::members_csv))
        .route("/api/segments/{name}/replay", get(ui::replay))
        .route("/api/discover", get(ui::discover))
        .route("/api/explain", get(ui::explain))
        .route("/api/agents", get(ui::agents))
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::file))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> String {
    let m = &state.metrics;
    let counter = |name: &str, help: &str, v: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n")
    };
    let line =
        |name: &str, help: &str, v: &AtomicU64| counter(name, help, v.load(Ordering::Relaxed));
    let gauge = |name: &str, help: &str, v: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n")
    };
    let live = &state.live;
    let (users, watermark, state_bytes, rebuilds) = {
        let e = live.engine.read().expect("engine lock");
        (
            e.users() as u64,
            e.watermark().unwrap_or(0),
            e.state_bytes() as u64,
            e.rebuilds(),
        )
    };
    [
        gauge("sequin_live_users", "Users with live state.", users),
        gauge(
            "sequin_live_state_bytes",
            "Live per-user state, encoded, with the user keys.",
            state_bytes,
        ),
        counter(
            "sequin_live_rebuilds_total",
            "Users re-evaluated from history (an event older than the user's latest, or a \
             link between two users with events).",
            rebuilds.users,
        ),
        counter(
            "sequin_live_rebuilt_events_total",
            "Events re-fed by those re-evaluations.",
            rebuilds.events,
        ),
        gauge(
            "sequin_live_backlog_events",
            "Events accepted, not yet evaluated.",
            live.backlog.load(Ordering::Relaxed),
        ),
        gauge(
            "sequin_live_watermark_micros",
            "Live \"now\": largest event time seen minus the allowed lateness.",
            watermark.max(0) as u64,
        ),
        gauge(
            "sequin_live_changes_total",
            "Membership changes recorded.",
            live.changes.last_seq(),
        ),
        gauge(
            "sequin_live_checkpoint_bytes",
            "Size of the last live-state checkpoint.",
            live.checkpoint_bytes.load(Ordering::Relaxed),
        ),
        gauge(
            "sequin_live_checkpoint_users",
            "Users in the last live-state checkpoint.",
            live.checkpoint_users.load(Ordering::Relaxed),
        ),
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
