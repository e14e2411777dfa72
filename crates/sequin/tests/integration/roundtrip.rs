//! gen → import → stats: every generated event arrives once, duplicates are dropped, and
//! identity stitching makes each generated user one unit.

use crate::util::{run_ok, stats};

#[test]
fn generated_data_round_trips_through_import_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.ndjson.gz");
    let store = dir.path().join("store");
    run_ok(&[
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--users",
        "3000",
        "--seed",
        "7",
        "--incident",
    ]);
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("events.ndjson.gz.truth.json")).unwrap(),
    )
    .unwrap();
    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let s = stats(&store);

    // Count what the file holds, independently of the importer.
    let raw = std::fs::read(&out).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut convs = std::collections::HashSet::new();
    let mut lines = 0u64;
    for line in text.lines() {
        lines += 1;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        ids.insert(v["messageId"].as_str().unwrap().to_string());
        if let Some(c) = v["properties"]["conversation_id"].as_str() {
            convs.insert(c.to_string());
        }
    }
    let dups = truth["duplicate_deliveries"].as_u64().unwrap();
    assert!(dups > 0, "the generator plants duplicate deliveries");
    assert_eq!(lines - dups, ids.len() as u64);
    assert_eq!(s["events"], ids.len() as u64, "each message exactly once");
    assert_eq!(
        s["units"], 3000,
        "anonymous and identified events of a user are one unit"
    );
    assert_eq!(s["conversations"], convs.len() as u64);
    let behaviours = truth["behaviours"].as_array().unwrap();
    for b in behaviours {
        if b["id"] != "incident_affected" && b["id"] != "churn_after_friction" {
            assert!(
                b["count"].as_u64().unwrap() > 0,
                "behaviour {} is planted",
                b["id"]
            );
        }
    }
    assert!(truth["incident"].is_object());

    // Importing the same file again adds nothing: every message id is already there.
    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(stats(&store)["events"], ids.len() as u64);
}

#[test]
fn generation_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ndjson");
    let b = dir.path().join("b.ndjson");
    run_ok(&[
        "gen",
        "--out",
        a.to_str().unwrap(),
        "--users",
        "500",
        "--seed",
        "3",
    ]);
    run_ok(&[
        "gen",
        "--out",
        b.to_str().unwrap(),
        "--users",
        "500",
        "--seed",
        "3",
    ]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = dir.path().join("c.ndjson");
    run_ok(&[
        "gen",
        "--out",
        c.to_str().unwrap(),
        "--users",
        "500",
        "--seed",
        "4",
    ]);
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn parquet_output_imports_as_flat_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.parquet");
    let store = dir.path().join("store");
    run_ok(&[
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--users",
        "800",
        "--seed",
        "9",
    ]);
    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let s = stats(&store);
    assert_eq!(s["units"], 800);
    assert!(s["events"].as_u64().unwrap() > 8000);
}
