//! `sequin serve` as a process: `kill -9` under load, restart from the checkpoint and the
//! log, every acknowledged event present exactly once, live membership equal to batch
//! evaluation at the same as-of.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_store::{EventSource, Projection, StoreReader};

use crate::util::{run_ok, sequin, spawn_server};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(store: &Path, segments: &Path, log: &Path) -> Server {
        let (child, port) = spawn_server(
            store,
            segments,
            &[
                "--lateness",
                "0s",
                "--checkpoint-every",
                "300ms",
                "--memtable-mb",
                "1",
            ],
            log,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/healthz", None).is_none() {
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, port }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

/// A request over a fresh connection; the body of a 2xx answer.
fn request(port: u16, method: &str, path: &str, bearer: Option<&str>) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = bearer.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 2").then(|| body.to_string())
}

fn get(port: u16, path: &str, bearer: Option<&str>) -> Option<String> {
    request(port, "GET", path, bearer)
}

fn json(port: u16, method: &str, path: &str) -> serde_json::Value {
    let body = request(port, method, path, Some("ak")).unwrap_or_else(|| panic!("{path} failed"));
    serde_json::from_str(&body).unwrap()
}

/// Every member of every live segment, paging through the API.
fn live_members(port: u16) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let list = json(port, "GET", "/api/segments");
    for seg in list["segments"].as_array().unwrap() {
        if seg["kind"] == "outcome" {
            continue; // outcomes are listed, not kept live
        }
        let name = seg["name"].as_str().unwrap().to_string();
        let mut members = Vec::new();
        let mut after = String::new();
        loop {
            let page = json(
                port,
                "GET",
                &format!("/api/segments/{name}/members?limit=500&after={after}"),
            );
            for m in page["members"].as_array().unwrap() {
                members.push((
                    m["unit"].as_str().unwrap().to_string(),
                    m["entered_at"].as_str().unwrap().to_string(),
                ));
            }
            match page["next"].as_str() {
                Some(n) => after = n.to_string(),
                None => break,
            }
        }
        out.insert(name, members);
    }
    out
}

/// Message id → how many times the store holds it.
fn stored_ids(store: &Path) -> HashMap<String, usize> {
    let reader = StoreReader::open(store).unwrap();
    let mut counts = HashMap::new();
    for p in 0..reader.partitions() {
        let data = reader
            .read_partition(p, &Projection::Columns(vec!["message_id".into()]))
            .unwrap();
        if let Some(ids) = data.ids.get("message_id") {
            for r in 0..data.len() {
                if let Some(id) = ids.get(r) {
                    *counts.entry(id.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

fn load(file: &Path, port: u16, acked: &Path, rate: &str) -> Child {
    sequin()
        .args([
            "load",
            file.to_str().unwrap(),
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--write-key",
            "wk",
            "--rate",
            rate,
            "--batch",
            "50",
            "--connections",
            "4",
            "--acked",
            acked.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event_and_live_equals_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    run_ok(&[
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--users",
        "400",
        "--days",
        "5",
        "--seed",
        "21",
    ]);
    let segments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/segments/funnels.seg");
    let store = dir.path().join("store");
    let acked = dir.path().join("acked.txt");

    // Load, and kill the server in the middle of it.
    let server = Server::start(&store, &segments, &dir.path().join("serve1.log"));
    let port = server.port;
    let mut loader = load(&file, port, &acked, "8000");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&acked).map_or(0, |s| s.lines().count()) < 1500 {
        assert!(Instant::now() < deadline, "no acknowledgements");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500)); // past a checkpoint or two
    server.kill_9();
    let _ = loader.wait();

    // Every acknowledged event is there, once.
    let acked_ids: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let sent: usize = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(
        acked_ids.len() >= 1500 && acked_ids.len() < sent,
        "the crash came mid-load: {} of {sent} acknowledged",
        acked_ids.len()
    );
    let counts = stored_ids(&store);
    for id in &acked_ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged {id} must be stored once"
        );
    }

    // Restart (checkpoint + log tail), send everything again (the retries are dropped as
    // duplicates), and compare with batch evaluation at the server's watermark.
    let server = Server::start(&store, &segments, &dir.path().join("serve2.log"));
    let port = server.port;
    let log2 = std::fs::read_to_string(dir.path().join("serve2.log")).unwrap();
    assert!(log2.contains("restored the checkpoint"), "{log2}");
    let acked2 = dir.path().join("acked2.txt");
    let status = load(&file, port, &acked2, "0").wait().unwrap();
    assert!(status.success());
    let (watermark, live) = synced_live_members(port);
    server.kill_9();

    let counts = stored_ids(&store);
    let distinct: HashSet<String> = crate::crash::message_ids(&file).into_iter().collect();
    assert_eq!(counts.len(), distinct.len(), "every event stored");
    assert!(counts.values().all(|&c| c == 1), "and only once");

    assert_live_equals_batch(&store, &segments, &watermark, &live);
}

/// Once the server has evaluated everything it accepted: its watermark and live members.
fn synced_live_members(port: u16) -> (String, BTreeMap<String, Vec<(String, String)>>) {
    json(port, "POST", "/api/admin/sync");
    let watermark = json(port, "GET", "/api/segments")["watermark"]
        .as_str()
        .unwrap()
        .to_string();
    (watermark, live_members(port))
}

/// Live membership (as listed by the server at `watermark`) equals batch evaluation of the
/// same definitions over the store at that as-of, and some segment has members.
fn assert_live_equals_batch(
    store: &Path,
    segments: &Path,
    watermark: &str,
    live: &BTreeMap<String, Vec<(String, String)>>,
) {
    let src = std::fs::read_to_string(segments).unwrap();
    let parsed = sequin_lang::parse(&src).unwrap();
    let programs: Vec<Program> = parsed
        .items
        .iter()
        .filter(|i| i.kind == sequin_lang::ast::ItemKind::Segment)
        .map(|i| Program::compile(&parsed, &i.name.name).unwrap())
        .collect();
    let as_of =
        sequin_core::time::parse_text(watermark, sequin_core::time::TimeFormat::Auto).unwrap();
    let reader = StoreReader::open(store).unwrap();
    let batch = evaluate(
        &reader,
        &programs,
        &EvalOptions {
            as_of: Some(as_of),
            ..EvalOptions::default()
        },
    )
    .unwrap();
    let mut any = 0;
    for seg in &batch.segments {
        let expected: Vec<(String, String)> = seg
            .members
            .iter()
            .map(|m| {
                (
                    m.unit.clone(),
                    sequin_core::time::format_rfc3339(m.entered_at),
                )
            })
            .collect();
        any += expected.len();
        assert_eq!(live[&seg.name], expected, "segment {}", seg.name);
    }
    assert!(any > 0, "the segments have members");
}

/// A bulk import writes history without arrival numbers, so a restarted server cannot read
/// its checkpoint's log tail from it: it rebuilds its live state from history instead, and
/// live membership still equals batch.
#[test]
fn a_bulk_import_between_restarts_rebuilds_live_state_and_live_equals_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, seed: &str| {
        let f = dir.path().join(name);
        run_ok(&[
            "gen",
            "--out",
            f.to_str().unwrap(),
            "--users",
            "150",
            "--days",
            "5",
            "--seed",
            seed,
        ]);
        f
    };
    let (first, second) = (file("a.ndjson", "31"), file("b.ndjson", "32"));
    let segments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/segments/funnels.seg");
    let store = dir.path().join("store");

    let server = Server::start(&store, &segments, &dir.path().join("serve1.log"));
    let port = server.port;
    let status = load(&first, port, &dir.path().join("acked1.txt"), "0")
        .wait()
        .unwrap();
    assert!(status.success());
    json(port, "POST", "/api/admin/sync");
    std::thread::sleep(Duration::from_millis(700)); // past a checkpoint
    server.kill_9();

    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        second.to_str().unwrap(),
    ]);

    let server = Server::start(&store, &segments, &dir.path().join("serve2.log"));
    let port = server.port;
    let log2 = std::fs::read_to_string(dir.path().join("serve2.log")).unwrap();
    assert!(
        log2.contains("rebuilding live state from history"),
        "{log2}"
    );
    let (watermark, live) = synced_live_members(port);
    server.kill_9();
    assert_live_equals_batch(&store, &segments, &watermark, &live);
}

#[test]
fn segment_python_sdk_talks_to_the_server() {
    let py = crate::util::python_with_segment_sdk();
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("sdk.seg");
    std::fs::write(
        &segments,
        "segment browsed_then_bought { sequence { product_view; purchase } }\n\
         segment checkout_no_purchase { did checkout_start and not did purchase }\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let server = Server::start(&store, &segments, &dir.path().join("serve.log"));
    let port = server.port;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/segment_sdk.py");
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("wk")
        .arg("6")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json(port, "POST", "/api/admin/sync");
    let metrics = get(port, "/metrics", None).unwrap();
    let accepted = format!("sequin_events_accepted_total {}", summary["sent"]);
    assert!(metrics.contains(&accepted), "{accepted} in\n{metrics}");
    let live = live_members(port);
    // The anonymous product view is stitched to the user who later bought.
    let bought: Vec<&str> = live["browsed_then_bought"]
        .iter()
        .map(|(u, _)| u.as_str())
        .collect();
    assert_eq!(bought, ["sdk-user-0", "sdk-user-2", "sdk-user-4"]);
    let waiting: Vec<&str> = live["checkout_no_purchase"]
        .iter()
        .map(|(u, _)| u.as_str())
        .collect();
    assert_eq!(waiting, ["sdk-user-1", "sdk-user-3", "sdk-user-5"]);
    server.kill_9();
}

/// The OpenTelemetry Python SDK's OTLP/HTTP exporter (protobuf) sends GenAI spans; the
/// conversations they describe get their agent signals live.
#[test]
fn opentelemetry_sdk_genai_spans_become_live_conversation_signals() {
    let py = crate::util::python_with_otel_sdk();
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("agents.seg");
    std::fs::write(
        &segments,
        "segment escalated of conversations { did signal.escalation }\n\
         segment tool_failed of conversations { did signal.tool_failure }\n\
         segment rephrased of conversations { did signal.rephrase }\n\
         segment exited_early of conversations { did signal.premature_exit }\n\
         segment talked of conversations { did user_message and did agent_message }\n\
         segment support_agent of conversations { did agent_invocation where gen_ai.agent.name == \"support\" }\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let server = Server::start(&store, &segments, &dir.path().join("serve.log"));
    let port = server.port;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otel/genai_spans.py");
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("wk")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "OpenTelemetry SDK: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json(port, "POST", "/api/admin/sync");
    let live = live_members(port);
    let units = |seg: &str| -> Vec<&str> { live[seg].iter().map(|(u, _)| u.as_str()).collect() };
    assert_eq!(units("escalated"), ["conv-a"]);
    assert_eq!(units("tool_failed"), ["conv-a"]);
    assert_eq!(units("rephrased"), ["conv-a"]);
    assert_eq!(units("exited_early"), ["conv-c"]);
    assert_eq!(units("talked"), ["conv-a", "conv-b", "conv-c", "conv-d"]);
    assert_eq!(
        units("support_agent"),
        ["conv-a", "conv-b", "conv-c", "conv-d"]
    );
    // 4 invocations, 6 chats (a user and an agent message each), 3 tool calls.
    let metrics = get(port, "/metrics", None).unwrap();
    assert!(
        metrics.contains("sequin_events_accepted_total 19"),
        "{metrics}"
    );
    server.kill_9();
}
