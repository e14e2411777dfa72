//! Every real log in ../shared/data imports with the counts its README states.

use std::path::Path;

use crate::util::{run_ok, shared_data, stats};

fn check(file: &str, extra: &[&str], events: u64, units: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = shared_data().join(file);
    let mut args = vec![
        "import",
        "--store",
        store.to_str().unwrap(),
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    let s = stats(&store);
    assert_eq!(s["events"], events, "{file}: events");
    assert_eq!(s["units"], units, "{file}: units");
    s
}

#[test]
fn bpic2012_has_262200_events_of_13087_cases() {
    let s = check(
        "bpic2012/events.csv",
        &[
            "--unit",
            "case_id",
            "--time",
            "timestamp",
            "--event",
            "activity",
        ],
        262_200,
        13_087,
    );
    assert_eq!(s["first_event"], "2011-09-30T22:38:44.546Z");
    assert_eq!(s["last_event"], "2012-03-14T15:04:54.681Z");
    assert_eq!(
        s["event_names"].as_array().unwrap().len(),
        24,
        "24 activities"
    );
    // amount_req is numeric in the CSV and must be typed as a number.
    let amount = s["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "properties.amount_req")
        .unwrap();
    assert_eq!(amount["types"], serde_json::json!(["int"]));
}

#[test]
fn sepsis_keeps_the_case_named_na() {
    check("sepsis/events.csv", &[], 15_214, 1_050);
}

#[test]
fn traffic_fines_imports_every_fine() {
    check("traffic_fines/events.csv", &[], 34_724, 10_000);
}

#[test]
fn helpdesk_imports_every_ticket() {
    check("helpdesk/events.csv", &[], 21_348, 4_580);
}

#[test]
fn otto_sessions_are_units_and_sessions() {
    let s = check(
        "otto_sample/events.csv",
        &["--unit", "session_id", "--time", "ts", "--event", "type"],
        862,
        20,
    );
    assert_eq!(s["sessions"], 20, "explicit session ids count as sessions");
}

#[test]
fn cdnow_purchases_with_a_constant_event_name() {
    let s = check(
        "cdnow/purchases.csv",
        &[
            "--unit",
            "customer_id",
            "--time",
            "date",
            "--event-name",
            "purchase",
        ],
        69_659,
        23_570,
    );
    assert_eq!(s["event_names"][0]["name"], "purchase");
}

#[test]
fn tau_bench_conversations() {
    let s = check(
        "tau_bench_airline/events.ndjson",
        &[
            "--unit",
            "conversation_id",
            "--time",
            "ts",
            "--event",
            "event",
        ],
        5_398,
        200,
    );
    assert_eq!(s["conversations"], 200);
    let names: Vec<(String, u64)> = s["event_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(names.contains(&("user_message".into(), 1_490)), "{names:?}");
    assert!(names.contains(&("tool_call".into(), 1_164)), "{names:?}");
}

/// Imports BPIC 2012 into `store`; returns the CSV's path.
pub(crate) fn import_bpic2012(store: &Path) -> std::path::PathBuf {
    let csv = shared_data().join("bpic2012/events.csv");
    crate::util::import_flat(store, &csv, "case_id", "timestamp", "activity");
    csv
}

/// BPIC 2012's cases read straight from the CSV (not through Sequin): per case, its
/// events as (time µs, file row, activity), sorted by time then row as Sequin orders them.
pub(crate) fn bpic2012_cases(
    csv: &Path,
) -> std::collections::BTreeMap<String, Vec<(i64, usize, String)>> {
    let mut cases: std::collections::BTreeMap<String, Vec<(i64, usize, String)>> =
        Default::default();
    let mut reader = csv::Reader::from_path(csv).unwrap();
    for (row, rec) in reader.records().enumerate() {
        let rec = rec.unwrap();
        let t =
            sequin_core::time::parse_text(&rec[3], sequin_core::time::TimeFormat::Auto).unwrap();
        cases
            .entry(rec[0].to_string())
            .or_default()
            .push((t, row, rec[1].to_string()));
    }
    for events in cases.values_mut() {
        events.sort();
    }
    cases
}

/// Segments over BPIC 2012 (tests/real/bpic2012.seg) give exactly the cases that
/// independent DuckDB SQL (tests/real/bpic2012_check.py) finds.
#[test]
fn bpic2012_segments_match_independent_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = import_bpic2012(&store);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let seg = root.join("tests/real/bpic2012.seg");
    let as_of = "2012-03-01T00:00:00Z";
    let members = run_ok(&[
        "eval",
        "--store",
        store.to_str().unwrap(),
        "--segments",
        seg.to_str().unwrap(),
        "--as-of",
        as_of,
    ]);
    let mut ours: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in members.lines().skip(1) {
        let mut parts = line.splitn(3, ',');
        let (s, u) = (parts.next().unwrap(), parts.next().unwrap());
        ours.entry(s.to_string()).or_default().push(u.to_string());
    }
    let out = std::process::Command::new(crate::util::python_with_duckdb())
        .arg(root.join("tests/real/bpic2012_check.py"))
        .arg(&csv)
        .arg(as_of)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), 5);
    for (segment, mut cases) in theirs {
        cases.sort();
        let mut mine = ours.remove(&segment).unwrap_or_default();
        mine.sort();
        assert!(
            !cases.is_empty(),
            "{segment}: the SQL finds no case; the check guards nothing"
        );
        assert_eq!(
            mine.len(),
            cases.len(),
            "{segment}: Sequin {} cases, SQL {}",
            mine.len(),
            cases.len()
        );
        assert_eq!(mine, cases, "{segment}");
    }
}

/// The live engine fed BPIC 2012 in bursts of 500 events, a little out of order, into a
/// store that flushes as it goes, ends with the same members as batch evaluation.
#[test]
fn bpic2012_live_delivery_equals_batch() {
    use sequin_engine::Program;
    use sequin_engine::batch::{EvalOptions, evaluate};
    use sequin_engine::live::{LiveEngine, LiveOptions};
    use sequin_store::{EventSource, Projection, Store, StoreOptions, StoreReader};

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    import_bpic2012(&store);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let src = std::fs::read_to_string(root.join("tests/real/bpic2012.seg")).unwrap();
    let file = sequin_lang::parse(&src).unwrap();
    let programs: Vec<Program> = file
        .items
        .iter()
        .map(|i| Program::compile(&file, &i.name.name).unwrap())
        .collect();
    let as_of =
        sequin_core::time::parse_text("2012-03-01T00:00:00Z", sequin_core::time::TimeFormat::Auto)
            .unwrap();
    let reader = StoreReader::open(&store).unwrap();
    let mut events = Vec::new();
    for p in 0..reader.partitions() {
        let data = reader.read_partition(p, &Projection::All).unwrap();
        events.extend((0..data.len()).map(|r| data.event(r)));
    }
    events.retain(|e| e.time <= as_of);
    events.sort_by_key(|e| e.time);
    // Swap every 7th event with its neighbour: a little out of order.
    for i in (7..events.len()).step_by(7) {
        events.swap(i - 1, i);
    }
    let mut live_store = Store::open(
        &dir.path().join("live"),
        &StoreOptions {
            memtable_bytes: 8 << 20,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let mut live = LiveEngine::new(LiveOptions::default());
    live.rebuild_all(programs.clone(), &live_store.reader(), 0)
        .unwrap();
    for chunk in events.chunks(500) {
        let (_, accepted) = live_store.append_logged(vec![chunk.to_vec()]).unwrap();
        live_store.flush_if_full().unwrap();
        live.on_accepted(&accepted, &live_store).unwrap();
    }
    live.advance(as_of);
    let batch = evaluate(
        &reader,
        &programs,
        &EvalOptions {
            as_of: Some(as_of),
            ..EvalOptions::default()
        },
    )
    .unwrap();
    for (p, seg) in programs.iter().zip(&batch.segments) {
        let mine: Vec<(String, i64)> = live
            .members(&p.name)
            .unwrap()
            .iter()
            .map(|(u, &t)| (u.clone(), t))
            .collect();
        let expected: Vec<(String, i64)> = seg
            .members
            .iter()
            .map(|m| (m.unit.clone(), m.entered_at))
            .collect();
        assert!(!expected.is_empty(), "{}: no members to compare", p.name);
        assert_eq!(mine, expected, "segment {}", p.name);
    }
}

/// `sequin report` group counts on BPIC 2012 (members and non-members: units, pending,
/// decided, reached) equal independent DuckDB SQL (tests/real/bpic2012_report.py), with and
/// without a base, for bounded and unbounded outcomes.
#[test]
fn bpic2012_report_counts_match_independent_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = import_bpic2012(&store);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(crate::util::python_with_duckdb())
        .arg(root.join("tests/real/bpic2012_report.py"))
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), 3);
    let seg = root.join("tests/real/bpic2012_report.seg");
    for (key, expected) in theirs {
        let mut parts = key.split('/');
        let (segment, outcome, base) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut args = vec![
            "report",
            "--store",
            store.to_str().unwrap(),
            "--segments",
            seg.to_str().unwrap(),
            "--segment",
            segment,
            "--outcome",
            outcome,
            "--format",
            "json",
        ];
        if !base.is_empty() {
            args.extend(["--base", base]);
        }
        let r: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
        for group in ["members", "non_members"] {
            for field in ["units", "pending", "decided", "reached"] {
                assert_eq!(
                    r[group][field], expected[group][field],
                    "{key} {group}.{field}"
                );
            }
        }
        assert!(
            expected["members"]["reached"].as_u64().unwrap() > 0,
            "{key}: guards nothing"
        );
    }
}

/// `sequin funnel` on BPIC 2012 against a greedy matcher written here: a case reaches step
/// k when steps 1..k occur in order (each matched at its earliest possible event), and the
/// time between steps is the difference of those earliest completions.
#[test]
fn bpic2012_funnel_matches_a_greedy_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = import_bpic2012(&store);
    let steps = [
        "A_SUBMITTED",
        "A_PREACCEPTED",
        "W_Completeren aanvraag",
        "O_SENT",
        "A_APPROVED",
    ];
    let body = steps
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join("; ");
    let out = run_ok(&[
        "funnel",
        "--store",
        store.to_str().unwrap(),
        "--steps",
        &body,
        "--format",
        "json",
    ]);
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();

    let cases = bpic2012_cases(&csv);
    let mut counts = vec![0u64; steps.len()];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); steps.len()];
    for events in cases.values() {
        let mut k = 0;
        let mut last = 0;
        for (t, _, name) in events.iter() {
            if k < steps.len() && name == steps[k] {
                counts[k] += 1;
                if k > 0 {
                    gaps[k].push(t - last);
                }
                last = *t;
                k += 1;
            }
        }
    }
    let got = f["steps"].as_array().unwrap();
    assert_eq!(got.len(), steps.len());
    for (k, s) in got.iter().enumerate() {
        assert_eq!(s["units"].as_u64().unwrap(), counts[k], "step {}", k + 1);
        if k > 0 {
            let g = &mut gaps[k];
            g.sort();
            let median = g[(g.len() - 1) / 2];
            assert_eq!(
                s["median_from_previous_micros"].as_i64().unwrap(),
                median,
                "step {}",
                k + 1
            );
        }
    }
    assert!(
        counts[steps.len() - 1] > 1000,
        "the funnel reaches its end: {counts:?}"
    );
}
