//! Ingest handlers in-process (tower `oneshot`) and once on a real port.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use sequin_engine::live::LiveOptions;
use sequin_server::{AppState, Keys, Server, ServerConfig, router};
use sequin_store::{EventSource, Projection, StoreReader};
use tower::ServiceExt;

fn config(dir: &std::path::Path, segments: Option<&str>) -> ServerConfig {
    let seg_path = segments.map(|text| {
        let p = dir.with_extension("seg");
        std::fs::write(&p, text).unwrap();
        p
    });
    ServerConfig {
        store: dir.to_path_buf(),
        segments: seg_path,
        keys: Keys {
            write: "wk".into(),
            read: "rk".into(),
            admin: "ak".into(),
        },
        live: LiveOptions::default(),
        idle_advance: false,
        memtable_bytes: 64 << 20,
        checkpoint_every: std::time::Duration::from_secs(3600),
        max_backlog: 200_000,
    }
}

/// Starts a server, waiting for a previous one on the same store to let go of it.
fn start(config: &ServerConfig) -> Arc<AppState> {
    for _ in 0..100 {
        match Server::start(config) {
            Ok(s) => return s.state,
            Err(e) if e.contains("in use by another") => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store stayed locked");
}

fn state(dir: &std::path::Path) -> Arc<AppState> {
    start(&config(dir, None))
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

async fn post(
    state: &Arc<AppState>,
    path: &str,
    key: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", basic(k));
    }
    let resp = router(state.clone())
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn track(id: &str, user: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "event": "purchase", "userId": user, "messageId": id,
        "timestamp": "2024-03-01T10:00:00Z", "properties": {"amount": 12.5}
    })
}

#[tokio::test]
async fn accepted_events_are_in_the_store_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = post(&st, "/v1/track", Some("wk"), track("m1", "u1").to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    let batch = serde_json::json!({"batch": [track("m2", "u2"), track("m1", "u1")], "context": {"os": {"name": "iOS"}}});
    let (status, body) = post(&st, "/v1/batch", Some("wk"), batch.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    drop(st); // stops the writer and the evaluator; the log is already synced
    let reader = (0..100)
        .find_map(|_| {
            StoreReader::open(dir.path()).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            })
        })
        .expect("the server lets go of the store");
    let total: usize = (0..reader.partitions())
        .map(|p| reader.read_partition(p, &Projection::All).unwrap().len())
        .sum();
    assert_eq!(total, 2);
}

#[tokio::test]
async fn wrong_or_missing_key_is_401() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = post(
        &st,
        "/v1/track",
        Some("nope"),
        track("m1", "u1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "wrong write key");
    let (status, _) = post(&st, "/v1/track", None, track("m1", "u1").to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&st, "/v1/track", Some("rk"), track("m1", "u1").to_string()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the read key cannot write"
    );
}

#[tokio::test]
async fn bad_input_is_400_with_a_reason_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let cases: Vec<(&str, Body, &str)> = vec![
        ("/v1/track", Body::from("{\"type\": \"track\","), "malformed JSON"),
        ("/v1/track", Body::from(serde_json::json!({"type": "track", "event": "x"}).to_string()), "userId"),
        ("/v1/page", Body::from(track("m1", "u1").to_string()), "`track` sent to /v1/page"),
        ("/v1/track", Body::from(serde_json::json!({"type": "track", "event": "x", "userId": "u", "properties": {"pad": "a".repeat(40_000)}}).to_string()), "exceeds 32 KB"),
        ("/v1/batch", Body::from(serde_json::json!({"batch": (0..20).map(|i| serde_json::json!({"type": "track", "event": "x", "userId": "u", "messageId": format!("b{i}"), "properties": {"pad": "a".repeat(30_000)}})).collect::<Vec<_>>()}).to_string()), "batch exceeds 500 KB"),
        ("/v1/batch", Body::from(serde_json::json!({"batch": [track("ok", "u1"), {"type": "track", "event": "x", "userId": "u", "properties": {"pad": "a".repeat(33_000)}}]}).to_string()), "batch[1]: event of"),
        ("/v1/batch", Body::from("[1, 2]"), "expected an object with a `batch` array"),
        // Items read straight from their text still fail as a whole batch, with the place.
        ("/v1/batch", Body::from(serde_json::json!({"batch": [track("ok2", "u1"), {"type": "nope", "userId": "u"}]}).to_string()), "batch[1].type"),
        ("/v1/batch", Body::from(serde_json::json!({"batch": [track("ok3", "u1"), 7]}).to_string()), "batch[1]: must be a JSON object"),
        ("/v1/batch", Body::from(serde_json::json!({"batch": [track("ok4", "u1"), {"type": "track", "event": "x", "userId": "u", "timestamp": "soon"}]}).to_string()), "batch[1].timestamp"),
    ];
    for (path, body, reason) in cases {
        let (status, json) = post(&st, path, Some("wk"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {json}");
        let error = json["error"].as_str().unwrap_or("");
        assert!(
            error.contains(reason),
            "{path}: expected `{reason}` in `{error}`"
        );
    }
    assert_eq!(
        st.metrics
            .events_accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Still up.
    let (status, _) = post(&st, "/v1/track", Some("wk"), track("m9", "u9").to_string()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_real_port_serves_ingest_health_and_metrics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(st.clone())).into_future());
    let request = |raw: String| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let body = track("p1", "u1").to_string();
    let resp = request(format!(
        "POST /v1/track HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        basic("wk"),
        body.len()
    ))
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let resp =
        request("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into()).await;
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok\n"),
        "{resp}"
    );
    let resp =
        request("GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into()).await;
    assert!(resp.contains("sequin_events_accepted_total 1"), "{resp}");
}

// ---- live segments and the membership API ---------------------------------------------

async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = bearer {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = router(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn ev(id: &str, user: &str, name: &str, time: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "event": name, "userId": user, "messageId": id, "timestamp": time,
    })
}

async fn send(state: &Arc<AppState>, events: Vec<serde_json::Value>) {
    let body = serde_json::json!({ "batch": events }).to_string();
    let (status, json) = post(state, "/v1/batch", Some("wk"), body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

async fn sync(state: &Arc<AppState>) {
    let (status, json) = call(state, "POST", "/api/admin/sync", Some("ak"), "").await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

async fn member_units(state: &Arc<AppState>, segment: &str) -> Vec<String> {
    let (status, json) = call(
        state,
        "GET",
        &format!("/api/segments/{segment}/members"),
        Some("rk"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["unit"].as_str().unwrap().to_string())
        .collect()
}

const DEFS: &str = "segment buyers { did purchase }\n\
segment quick_buyers { sequence { signup; purchase within 10m } }\n\
segment browsing { did page_view and not did purchase }\n";

#[tokio::test]
async fn membership_follows_ingest_and_late_events_correct_it() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    send(
        &st,
        vec![
            ev("1", "u1", "page_view", "2024-03-01T10:00:00Z"),
            ev("2", "u2", "page_view", "2024-03-01T10:00:00Z"),
            ev("3", "u1", "purchase", "2024-03-01T10:05:00Z"),
        ],
    )
    .await;
    sync(&st).await;
    assert_eq!(member_units(&st, "buyers").await, ["u1"]);
    assert_eq!(member_units(&st, "browsing").await, ["u2"]);
    assert!(member_units(&st, "quick_buyers").await.is_empty());
    // A signup older than the purchase arrives late: u1 is re-read from history.
    send(&st, vec![ev("4", "u1", "signup", "2024-03-01T10:01:00Z")]).await;
    sync(&st).await;
    assert_eq!(member_units(&st, "quick_buyers").await, ["u1"]);
    let (status, json) = call(&st, "GET", "/api/units/u1/segments", Some("rk"), "").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["segment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["buyers", "quick_buyers"]);
    assert_eq!(
        json["segments"][1]["entered_at"],
        "2024-03-01T10:05:00.000Z"
    );
    // u2 buys: exits `browsing`.
    send(&st, vec![ev("5", "u2", "purchase", "2024-03-01T11:00:00Z")]).await;
    sync(&st).await;
    assert!(member_units(&st, "browsing").await.is_empty());
}

/// Sustained overload slows acknowledgements down instead of queueing accepted events
/// in memory: while `max_backlog` events wait for live evaluation, the next request is
/// not acknowledged; once evaluation catches up, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_while_live_evaluation_is_max_backlog_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(DEFS));
    cfg.max_backlog = 2;
    let st = start(&cfg);
    // A thread holding the engine keeps the evaluator from taking events off the backlog.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let st = st.clone();
        std::thread::spawn(move || {
            let _engine = st.live.engine.read().unwrap();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
    };
    held_rx.recv().unwrap();
    let at = "2024-03-01T10:00:00Z";
    send(
        &st,
        vec![ev("1", "u1", "purchase", at), ev("2", "u2", "purchase", at)],
    )
    .await;
    let again = st.clone();
    let third = tokio::spawn(async move {
        send(&again, vec![ev("3", "u3", "purchase", at)]).await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "acknowledged while 2 events wait");
    assert_eq!(
        st.live.backlog.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), third)
        .await
        .expect("acknowledged once evaluation caught up")
        .unwrap();
    sync(&st).await;
    assert_eq!(member_units(&st, "buyers").await, ["u1", "u2", "u3"]);
}

#[tokio::test]
async fn api_keys_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    let (status, _) = call(&st, "GET", "/api/segments", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&st, "GET", "/api/segments", Some("wk"), "").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the write key cannot read"
    );
    let (status, json) = call(&st, "GET", "/api/segments", Some("rk"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["segments"].as_array().unwrap().len(), 3);
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/x",
        Some("rk"),
        "segment x { did a }",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, _) = call(&st, "POST", "/api/admin/sync", Some("rk"), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn definitions_are_created_backfilled_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    send(
        &st,
        vec![
            ev("1", "u1", "page_view", "2024-03-01T10:00:00Z"),
            ev("2", "u1", "page_view", "2024-03-01T10:01:00Z"),
            ev("3", "u2", "page_view", "2024-03-01T10:02:00Z"),
        ],
    )
    .await;
    sync(&st).await;
    // Created: backfilled from history.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/regulars",
        Some("ak"),
        "segment regulars { count(page_view) >= 2 }",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["members"], 1);
    assert_eq!(member_units(&st, "regulars").await, ["u1"]);
    // Replaced.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/regulars",
        Some("ak"),
        "segment regulars { count(page_view) >= 1 }",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(member_units(&st, "regulars").await, ["u1", "u2"]);
    // Syntax errors point at the source.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/bad",
        Some("ak"),
        "segment bad { did page_view then }",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["error"].as_str().unwrap().contains('^'), "{json}");
    // The body must define the named segment.
    let (status, _) = call(
        &st,
        "PUT",
        "/api/segments/other",
        Some("ak"),
        "segment regulars { did x }",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // References are checked against the live set.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/loyal",
        Some("ak"),
        "segment loyal { in segment regulars and in segment buyers }",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let (status, json) = call(&st, "DELETE", "/api/segments/regulars", Some("ak"), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("regulars"),
        "{json}"
    );
    let (status, _) = call(&st, "DELETE", "/api/segments/loyal", Some("ak"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&st, "GET", "/api/segments/loyal/members", Some("rk"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The live set survives a restart (the store keeps it).
    drop(st);
    let st = start(&config(dir.path(), Some(DEFS)));
    assert_eq!(member_units(&st, "regulars").await, ["u1", "u2"]);
}

#[tokio::test]
async fn members_are_paged() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    let events = (0..25)
        .map(|i| {
            ev(
                &format!("m{i}"),
                &format!("u{i:02}"),
                "purchase",
                "2024-03-01T10:00:00Z",
            )
        })
        .collect();
    send(&st, events).await;
    sync(&st).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/segments/buyers/members?limit=10&after={a}"),
            None => "/api/segments/buyers/members?limit=10".to_string(),
        };
        let (status, json) = call(&st, "GET", &path, Some("rk"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["total"], 25);
        for m in json["members"].as_array().unwrap() {
            seen.push(m["unit"].as_str().unwrap().to_string());
        }
        match json["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    assert_eq!(seen, expected);
    let (status, _) = call(
        &st,
        "GET",
        "/api/segments/buyers/members?limit=0",
        Some("rk"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_restart_announces_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    send(
        &st,
        vec![
            ev("1", "u1", "page_view", "2024-03-01T10:00:00Z"),
            ev("2", "u2", "purchase", "2024-03-01T10:00:00Z"),
        ],
    )
    .await;
    sync(&st).await;
    let before = st.live.changes.last_seq();
    assert_eq!(before, 2);
    drop(st);
    let st = start(&config(dir.path(), Some(DEFS)));
    assert_eq!(st.live.changes.last_seq(), before);
    assert_eq!(member_units(&st, "browsing").await, ["u1"]);
    send(&st, vec![ev("3", "u1", "purchase", "2024-03-01T10:30:00Z")]).await;
    sync(&st).await;
    // u1 exits browsing (3) and enters buyers (4): numbering continues.
    let changes = st.live.changes.read_range(before, u64::MAX).unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [3, 4], "{changes:?}");
}

#[tokio::test]
async fn the_change_stream_resumes_after_last_event_id() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    send(
        &st,
        vec![
            ev("1", "u1", "page_view", "2024-03-01T10:00:00Z"),
            ev("2", "u2", "page_view", "2024-03-01T10:00:00Z"),
            ev("3", "u3", "page_view", "2024-03-01T10:00:00Z"),
        ],
    )
    .await;
    sync(&st).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(st.clone())).into_future());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /api/changes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer rk\r\nlast-event-id: 1\r\n\r\n",
    )
    .await
    .unwrap();
    // Recorded changes 2 and 3 come first, then a live one.
    send(&st, vec![ev("4", "u4", "purchase", "2024-03-01T10:05:00Z")]).await;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains("id: 4") {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the stream delivers change 4")
            .unwrap();
        assert!(n > 0, "stream closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(
        !text.contains("id: 1\n"),
        "change 1 was before Last-Event-ID: {text}"
    );
    let (p2, p3, p4) = (
        text.find("id: 2").unwrap(),
        text.find("id: 3").unwrap(),
        text.find("id: 4").unwrap(),
    );
    assert!(p2 < p3 && p3 < p4, "{text}");
    assert!(text.contains("event: enter"), "{text}");
    assert!(text.contains("\"segment\":\"buyers\""), "{text}");
}

#[tokio::test]
async fn webhooks_deliver_every_change_with_retries_and_a_stable_idempotency_key() {
    use axum::routing::post as post_route;
    // A receiver that fails its first two requests.
    let seen: Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> = Default::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receiver = {
        let seen = seen.clone();
        let calls = calls.clone();
        axum::Router::new().route(
            "/hook",
            post_route(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers["idempotency-key"].to_str().unwrap().to_string();
                    seen.lock()
                        .unwrap()
                        .push((key, serde_json::from_str(&body).unwrap()));
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, receiver).into_future());

    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(DEFS)));
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/browsing/webhook",
        Some("ak"),
        &format!("{{\"url\": \"http://{addr}/hook\"}}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _) = call(
        &st,
        "PUT",
        "/api/segments/nope/webhook",
        Some("ak"),
        &format!("{{\"url\": \"http://{addr}/hook\"}}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    send(
        &st,
        vec![
            ev("1", "u1", "page_view", "2024-03-01T10:00:00Z"),
            ev("2", "u2", "page_view", "2024-03-01T10:00:00Z"),
            ev("3", "u1", "purchase", "2024-03-01T10:05:00Z"),
        ],
    )
    .await;
    sync(&st).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks not delivered: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    // browsing, in change order: u1 enters and (buying) exits, u2 enters; buyers' changes
    // go nowhere.
    let summary: Vec<(String, String)> = seen
        .iter()
        .map(|(_, b)| {
            (
                b["unit"].as_str().unwrap().to_string(),
                b["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("u1".to_string(), "enter".to_string()),
            ("u1".to_string(), "exit".to_string()),
            ("u2".to_string(), "enter".to_string())
        ]
    );
    assert!(seen.iter().all(|(_, b)| b["segment"] == "browsing"));
    for (key, body) in &seen {
        assert_eq!(key, &format!("browsing:{}", body["id"]));
    }
    assert!(
        seen.windows(2)
            .all(|w| w[0].1["id"].as_u64() < w[1].1["id"].as_u64())
    );
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 5,
        "the failures were retried"
    );
}

#[tokio::test]
async fn gzip_request_bodies_are_accepted() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let body = serde_json::json!({"batch": [track("g1", "u1"), track("g2", "u2")]}).to_string();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).unwrap();
    let req = Request::post("/v1/batch")
        .header("authorization", basic("wk"))
        .header("content-encoding", "gzip")
        .body(Body::from(enc.finish().unwrap()))
        .unwrap();
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["accepted"], 2);
}

// ---- OpenTelemetry GenAI spans --------------------------------------------------------

const SIGNAL_DEFS: &str = "segment escalated of conversations { did signal.escalation }\n\
segment tool_failed of conversations { did signal.tool_failure }\n\
segment rephrased of conversations { did signal.rephrase }\n\
segment talked of conversations { did user_message and did agent_message }\n";

const T: u64 = 1_717_200_000_000_000_000; // 2024-06-01T00:00:00Z in ns

fn attr(key: &str, value: serde_json::Value) -> serde_json::Value {
    let v = match value {
        serde_json::Value::String(s) => serde_json::json!({ "stringValue": s }),
        serde_json::Value::Number(n) => serde_json::json!({ "intValue": n.to_string() }),
        other => panic!("{other}"),
    };
    serde_json::json!({ "key": key, "value": v })
}

fn chat_span(span: &str, at: u64, user_says: &str, agent_says: &str) -> serde_json::Value {
    let input =
        serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": user_says}]}]);
    let output = serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": agent_says}], "finish_reason": "stop"}]);
    serde_json::json!({
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span, "name": "chat gpt-4o",
        "startTimeUnixNano": (T + at * 1_000_000_000).to_string(),
        "endTimeUnixNano": (T + at * 1_000_000_000 + 2_000_000_000).to_string(),
        "attributes": [
            attr("gen_ai.operation.name", "chat".into()),
            attr("gen_ai.conversation.id", "conv-1".into()),
            attr("gen_ai.input.messages", input.to_string().into()),
            attr("gen_ai.output.messages", output.to_string().into()),
        ]
    })
}

fn tool_span(span: &str, at: u64, tool: &str, error: bool) -> serde_json::Value {
    let mut attrs = vec![
        attr("gen_ai.operation.name", "execute_tool".into()),
        attr("gen_ai.conversation.id", "conv-1".into()),
        attr("gen_ai.tool.name", tool.into()),
    ];
    if error {
        attrs.push(attr("error.type", "timeout".into()));
    }
    serde_json::json!({
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span,
        "name": format!("execute_tool {tool}"),
        "startTimeUnixNano": (T + at * 1_000_000_000).to_string(),
        "endTimeUnixNano": (T + at * 1_000_000_000 + 500_000_000).to_string(),
        "attributes": attrs,
        "status": if error { serde_json::json!({"code": 2, "message": "timed out"}) } else { serde_json::json!({}) },
    })
}

fn export(spans: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "support-agent".into())]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
}

#[tokio::test]
async fn otlp_json_genai_spans_become_conversation_events_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(SIGNAL_DEFS)));
    let body = export(vec![
        chat_span(
            "0000000000000001",
            0,
            "I want a refund for order 77, the lamp arrived broken.",
            "Let me check.",
        ),
        tool_span("0000000000000002", 3, "refund_order", true),
        chat_span(
            "0000000000000003",
            10,
            "Please refund order 77. The lamp I got is broken.",
            "One moment.",
        ),
        tool_span("0000000000000004", 14, "transfer_to_human_agents", false),
        // Not a GenAI span: skipped.
        serde_json::json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000009",
            "name": "GET /orders", "startTimeUnixNano": T.to_string()}),
    ]);
    let (status, json) = post(&st, "/v1/traces", Some("wk"), body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json, serde_json::json!({}));
    // An exporter's retry of the same spans adds nothing.
    let (status, _) = post(&st, "/v1/traces", Some("wk"), body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    sync(&st).await;
    for seg in ["escalated", "tool_failed", "rephrased", "talked"] {
        assert_eq!(member_units(&st, seg).await, vec!["conv-1"], "{seg}");
    }
    let m = st
        .metrics
        .events_accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    let d = st
        .metrics
        .events_duplicate
        .load(std::sync::atomic::Ordering::Relaxed);
    // Two chats give a user and an agent message each, two tool spans a tool call each (a
    // failed tool is the call's status, not an extra error event); the retry is all duplicates.
    assert_eq!((m, d), (6, 6));
}

#[tokio::test]
async fn otlp_protobuf_is_read_and_bad_spans_are_named() {
    use prost::Message as _;
    use sequin_server::otlp::proto;
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(dir.path(), Some(SIGNAL_DEFS)));
    let json = export(vec![
        tool_span("00000000000000a1", 0, "transfer_to_human_agents", false),
        serde_json::json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000000a2",
            "name": "chat gpt-4o"}),
    ]);
    let req = sequin_server::otlp::request_from_json(&json).unwrap();
    let bytes = req.encode_to_vec();
    let resp = router(st.clone())
        .oneshot(
            Request::post("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .header("authorization", basic("wk"))
                .body(Body::from(bytes))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let answer = proto::ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let partial = answer.partial_success.expect("one span rejected");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("resourceSpans[0].scopeSpans[0].spans[1]: startTimeUnixNano is missing"),
        "{}",
        partial.error_message
    );
    sync(&st).await;
    assert_eq!(member_units(&st, "escalated").await, vec!["conv-1"]);

    // Not protobuf, not JSON: 400 with the reason; a JSON error names the place.
    let (status, json) = post(
        &st,
        "/v1/traces",
        Some("wk"),
        "{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"xyz\"}]}]}]}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json.to_string()
            .contains("resourceSpans[0].scopeSpans[0].spans[0].traceId: `xyz` is not hex"),
        "{json}"
    );
    assert_eq!(json["code"], 3, "INVALID_ARGUMENT: {json}");
    let (status, json) = post(&st, "/v1/traces", None, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["code"], 16, "UNAUTHENTICATED: {json}");
    // A protobuf request gets its error as a protobuf google.rpc.Status.
    let resp = router(st.clone())
        .oneshot(
            Request::post("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .header("authorization", basic("wk"))
                .body(Body::from(vec![0xff, 0xff, 0xff]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let status = proto::RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("not an OTLP protobuf"),
        "{}",
        status.message
    );
}

/// A `signal` block sent with a definition changes the detector for every live definition,
/// backfills, and survives later changes to other definitions.
#[tokio::test]
async fn signal_settings_sent_with_a_definition_apply_and_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let st = start(&config(
        dir.path(),
        Some("segment raged { did signal.rage_click }\n"),
    ));
    let click = |id: &str, ms: u32| {
        serde_json::json!({"type": "track", "event": "click", "userId": "u1", "messageId": id,
            "timestamp": format!("2024-03-01T10:00:00.{ms:03}Z"),
            "properties": {"element_id": "pay", "x": 10, "y": 10}})
    };
    send(&st, vec![click("c1", 0), click("c2", 300)]).await;
    sync(&st).await;
    assert!(
        member_units(&st, "raged").await.is_empty(),
        "two clicks: no rage by default"
    );
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/raged2",
        Some("ak"),
        "signal rage_click { clicks 2 }\nsegment raged2 { did signal.rage_click }",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(member_units(&st, "raged").await, ["u1"]);
    assert_eq!(member_units(&st, "raged2").await, ["u1"]);
    // Another definition changes; the settings stay.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/other",
        Some("ak"),
        "segment other { did click }",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(member_units(&st, "raged").await, ["u1"]);
    // A bad setting is refused with the place.
    let (status, json) = call(
        &st,
        "PUT",
        "/api/segments/bad",
        Some("ak"),
        "signal rage_click { clicks 0 }\nsegment bad { did signal.rage_click }",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json.to_string().contains("`clicks` takes a whole number"),
        "{json}"
    );
}

// ---- the endpoints behind the web UI --------------------------------------------------

#[tokio::test]
async fn ui_endpoints_check_preview_replay_history_funnel_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let defs = format!("{DEFS}outcome bought {{ did purchase within 7d }}\n");
    let st = start(&config(dir.path(), Some(&defs)));
    let mut events = Vec::new();
    // u1 buys 4 minutes after signing up, u3 after 19: only u1 is a quick buyer.
    for (user, buy_after) in [("u1", Some(5)), ("u2", None), ("u3", Some(20))] {
        let at = |m: u32| format!("2024-03-01T10:{m:02}:00Z");
        events.push(ev(&format!("{user}-p"), user, "page_view", &at(0)));
        events.push(ev(&format!("{user}-s"), user, "signup", &at(1)));
        if let Some(m) = buy_after {
            events.push(ev(&format!("{user}-b"), user, "purchase", &at(m)));
        }
    }
    send(&st, events).await;
    sync(&st).await;

    // The checker points at the typo, with the store's names for "did you mean".
    let (status, v) = call(
        &st,
        "POST",
        "/api/check",
        Some("rk"),
        "segment x {\n  did purchse\n}",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(7)),
        "{d}"
    );
    assert!(d["hint"].as_str().unwrap().contains("purchase"), "{d}");
    let (_, v) = call(
        &st,
        "POST",
        "/api/check",
        Some("rk"),
        "segment x { in segment buyers }",
    )
    .await;
    assert_eq!(
        (v["ok"].as_bool(), v["names"][0].as_str()),
        (Some(true), Some("x")),
        "{v}"
    );

    // A preview evaluates without saving.
    let (status, v) = call(
        &st,
        "POST",
        "/api/preview",
        Some("rk"),
        "segment signed { did signup }",
    )
    .await;
    assert_eq!(
        (status, v["members"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{v}"
    );
    let (status, _) = call(&st, "GET", "/api/segments/signed", Some("rk"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The list says what each definition is.
    let (_, v) = call(&st, "GET", "/api/segments", Some("rk"), "").await;
    let quick = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "quick_buyers")
        .unwrap();
    assert_eq!(
        (quick["kind"].as_str(), quick["sequence"].as_bool()),
        (Some("segment"), Some(true))
    );
    let bought = &v["segments"][3];
    assert_eq!(
        (bought["name"].as_str(), bought["kind"].as_str()),
        (Some("bought"), Some("outcome"))
    );
    assert!(
        bought["members"].is_null(),
        "outcomes are not live: {bought}"
    );

    // Replay: u1's session, page_view → signup → purchase, one minute then four.
    let (status, v) = call(
        &st,
        "GET",
        "/api/segments/quick_buyers/replay",
        Some("rk"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["units"], 1);
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["page_view", "signup", "purchase"]);
    let offsets: Vec<f64> = v["journeys"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_f64().unwrap())
        .collect();
    assert_eq!(offsets, [0.0, 60.0, 300.0]);
    assert_eq!(v["links"][1]["median_seconds"], 240.0);
    assert_eq!(v["nodes"][2]["ended"], 1);

    // History: two buyers by the end.
    let (_, v) = call(
        &st,
        "GET",
        "/api/segments/buyers/history?buckets=4",
        Some("rk"),
        "",
    )
    .await;
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert_eq!(points.last().unwrap()["size"], 2, "{v}");
    let entries: u64 = points.iter().map(|p| p["entries"].as_u64().unwrap()).sum();
    assert_eq!(entries, 2);
    // Exits count: browsing (no purchase yet) shrinks as u1 and then u3 buy.
    let (_, v) = call(
        &st,
        "GET",
        "/api/segments/browsing/history?buckets=4",
        Some("rk"),
        "",
    )
    .await;
    let series = |key: &str| -> Vec<u64> {
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[key].as_u64().unwrap())
            .collect()
    };
    assert_eq!(series("size"), [3, 2, 2, 1], "{v}");
    assert_eq!(series("exits"), [0, 1, 0, 1], "{v}");

    // Funnel of the sequence: 3 signed up, 1 bought within 10 minutes.
    let (status, v) = call(
        &st,
        "GET",
        "/api/segments/quick_buyers/funnel",
        Some("rk"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let units: Vec<u64> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["units"].as_u64().unwrap())
        .collect();
    assert_eq!(units, [3, 1]);
    let (status, v) = call(&st, "GET", "/api/segments/buyers/funnel", Some("rk"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    // Members as CSV.
    let resp = router(st.clone())
        .oneshot(
            Request::get("/api/segments/buyers/members.csv")
                .header("authorization", "Bearer rk")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(
        csv,
        "unit,entered_at\nu1,2024-03-01T10:05:00.000Z\nu3,2024-03-01T10:20:00.000Z\n"
    );

    // Bad input names the parameter; no conversations means an empty agent view.
    let (status, v) = call(
        &st,
        "GET",
        "/api/explain?outcome=x&baseline=2024-03-02..2024-03-01&current=a..b",
        Some("rk"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("baseline=2024-03-02..2024-03-01"),
        "{v}"
    );
    let (_, v) = call(&st, "GET", "/api/agents", Some("rk"), "").await;
    assert_eq!(v["conversations"], 0, "{v}");
    // The UI's data needs a key like the rest of the API; the page itself does not.
    let (status, _) = call(&st, "GET", "/api/segments/buyers/replay", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = router(st.clone())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
}
