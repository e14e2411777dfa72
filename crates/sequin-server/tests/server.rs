//! Ingest handlers in-process (tower `oneshot`) and once on a real port.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use sequin_server::{AppState, Ingestor, Keys, Metrics, router};
use sequin_store::{EventSource, Projection, Store, StoreOptions, StoreReader};
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> Arc<AppState> {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    let metrics = Arc::new(Metrics::default());
    Arc::new(AppState {
        keys: Keys {
            write: "wk".into(),
            read: "rk".into(),
            admin: "ak".into(),
        },
        ingestor: Ingestor::start(store, metrics.clone()),
        metrics,
    })
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
    drop(st); // stops the writer; the log is already synced
    std::thread::sleep(std::time::Duration::from_millis(50));
    let reader = StoreReader::open(dir.path()).unwrap();
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
