//! `sequin serve`: the HTTP server over a store, with live segments.

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use rand::Rng;
use sequin_core::time::parse_duration;
use sequin_engine::live::LiveOptions;
use sequin_server::{Keys, Server, ServerConfig, router};

use crate::cli::ServeArgs;

/// A key given, or a fresh random one (printed, so the operator can use it).
fn key_or_generate(given: Option<String>, what: &str, flag: &str) -> String {
    match given.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => {
            let mut rng = rand::rng();
            let key: String = (0..24)
                .map(|_| {
                    let c = rng.random_range(0..36u8);
                    (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
                })
                .collect();
            eprintln!("{what} key (generated; set {flag} to choose one): {key}");
            key
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let keys = Keys {
        write: key_or_generate(a.write_key, "write", "SEQUIN_WRITE_KEY"),
        read: key_or_generate(a.read_key, "read", "SEQUIN_READ_KEY"),
        admin: key_or_generate(a.admin_key, "admin", "SEQUIN_ADMIN_KEY"),
    };
    let config = ServerConfig {
        store: a.store.clone(),
        segments: a.segments.clone(),
        keys,
        live: LiveOptions {
            session_gap: parse_duration(&a.session_gap)
                .map_err(anyhow::Error::msg)
                .context("--session-gap")?,
            lateness: parse_duration(&a.lateness)
                .map_err(anyhow::Error::msg)
                .context("--lateness")?,
        },
        idle_advance: !a.no_idle_advance,
        memtable_bytes: a.memtable_mb << 20,
        checkpoint_every: std::time::Duration::from_micros(
            parse_duration(&a.checkpoint_every)
                .map_err(anyhow::Error::msg)
                .context("--checkpoint-every")?
                .max(1) as u64,
        ),
        max_backlog: a.max_backlog,
    };
    let runtime = runtime()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let server = Server::start(&config).map_err(|e| anyhow!(e))?;
        {
            let engine = server.state.live.engine.read().expect("engine lock");
            eprintln!(
                "live: {} segments from {}, backfilled {} users in {:.1?}",
                engine.programs().count(),
                server.definitions_from.display(),
                engine.users(),
                started.elapsed()
            );
        }
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        eprintln!(
            "listening on http://{}",
            listener.local_addr().context("local address")?
        );
        axum::serve(listener, router(server.state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

/// The live part of `sequin demo`: serves the demo store with its segments live, sends a
/// new visitor's events over the Segment API, and shows the membership changes they cause
/// and the per-unit lookup. With `listen`, keeps serving afterwards.
pub fn demo_live(
    store: &std::path::Path,
    segments: &std::path::Path,
    listen: Option<&str>,
) -> Result<()> {
    use tower::ServiceExt as _;
    let keys = Keys {
        write: "demo-write".into(),
        read: "demo-read".into(),
        admin: "demo-admin".into(),
    };
    let config = ServerConfig {
        store: store.to_path_buf(),
        segments: Some(segments.to_path_buf()),
        keys,
        live: LiveOptions::default(),
        idle_advance: false,
        memtable_bytes: 256 << 20,
        checkpoint_every: std::time::Duration::from_secs(30),
        max_backlog: 200_000,
    };
    let runtime = runtime()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let server = Server::start(&config).map_err(|e| anyhow!(e))?;
        let state = server.state.clone();
        let (users, latest) = {
            let e = state.live.engine.read().expect("engine lock");
            (e.users(), e.max_time().unwrap_or(0))
        };
        eprintln!("live: backfilled {users} users in {:.1?}", started.elapsed());
        let call = |method: &'static str, path: String, auth: String, body: String| {
            let router = router(state.clone());
            async move {
                let req = axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .expect("request");
                let resp = router.oneshot(req).await.expect("infallible");
                let bytes = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
            }
        };
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("demo-write:")
        );
        let bearer = "Bearer demo-admin".to_string();
        let before = state.live.changes.last_seq();
        // A new visitor looks at pricing three times (no trial): `pricing_no_trial`.
        let at = |minutes: i64| sequin_core::time::format_rfc3339(latest + minutes * 60_000_000);
        let visit: Vec<serde_json::Value> = (1..=3)
            .map(|i| {
                serde_json::json!({"type": "page", "name": "pricing", "userId": "demo-visitor",
                    "messageId": format!("demo-visit-{i}"), "timestamp": at(i),
                    "properties": {"page": "pricing"}})
            })
            .collect();
        let r = call("POST", "/v1/batch".into(), basic.clone(), serde_json::json!({"batch": visit}).to_string()).await;
        eprintln!("POST /v1/batch (3 pricing views of demo-visitor) → {r}");
        call("POST", "/api/admin/sync".into(), bearer.clone(), String::new()).await;
        let r = call("GET", "/api/units/demo-visitor/segments".into(), bearer.clone(), String::new()).await;
        eprintln!("GET /api/units/demo-visitor/segments → {r}");
        // They start a trial: they leave the segment.
        let trial = serde_json::json!({"type": "track", "event": "trial_start", "userId": "demo-visitor",
            "messageId": "demo-visit-trial", "timestamp": at(5)});
        call("POST", "/v1/track".into(), basic, trial.to_string()).await;
        call("POST", "/api/admin/sync".into(), bearer.clone(), String::new()).await;
        let changes = state
            .live
            .changes
            .read_range(before, u64::MAX)
            .context("reading the change log")?;
        for c in &changes {
            eprintln!(
                "change {}: {} {:?} {} at {}",
                c.seq,
                c.unit,
                c.kind,
                c.segment,
                sequin_core::time::format_rfc3339(c.time)
            );
        }
        let r = call("GET", "/api/segments".into(), bearer, String::new()).await;
        eprintln!("GET /api/segments → {r}");
        match listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--serve {addr}"))?;
                let at = listener.local_addr()?;
                tokio::spawn(trickle(state.clone(), latest));
                eprintln!(
                    "\n== the web UI: open http://{at}/#key=demo-admin\n   (segments, Cohort Replay, discover, explain, agents; write key demo-write, read key demo-read, admin key demo-admin)\n   live: a new visitor every 2 s views pricing three times (pricing_no_trial grows; every third starts a trial and leaves); Ctrl-C stops"
                );
                axum::serve(listener, router(state))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .context("serving")?;
            }
            None => eprintln!(
                "to keep serving: sequin serve --store {} --segments {}  (or sequin demo without --no-serve)",
                store.display(),
                segments.display()
            ),
        }
        Ok(())
    })
}

/// While the demo serves, a new visitor every two seconds views pricing three times (and
/// enters `pricing_no_trial`); every third one then starts a trial (and leaves it), so the
/// UI's live counts move. Event times run on from the generated data's last event.
async fn trickle(state: std::sync::Arc<sequin_server::AppState>, latest: i64) {
    use tower::ServiceExt as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo-write:")
    );
    for i in 0..1800i64 {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let minute =
            |m: i64| sequin_core::time::format_rfc3339(latest + (10 + 3 * i + m) * 60_000_000);
        let visitor = format!("demo-live-{i}");
        let mut batch: Vec<serde_json::Value> = (0..3)
            .map(|k| {
                serde_json::json!({"type": "page", "name": "pricing", "userId": visitor,
                    "messageId": format!("{visitor}-view-{k}"), "timestamp": minute(k),
                    "properties": {"page": "pricing"}})
            })
            .collect();
        if i % 3 == 1 {
            let earlier = format!("demo-live-{}", i - 1);
            batch.push(serde_json::json!({"type": "track", "event": "trial_start",
                "userId": earlier, "messageId": format!("{earlier}-trial"), "timestamp": minute(2)}));
        }
        let req = axum::http::Request::post("/v1/batch")
            .header("authorization", &basic)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({ "batch": batch }).to_string(),
            ))
            .expect("request");
        if router(state.clone()).oneshot(req).await.is_err() {
            return;
        }
    }
}
