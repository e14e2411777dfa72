//! `kill -9` in the middle of an import: reopening recovers every acknowledged event
//! exactly once, and finishing the import afterwards leaves each message exactly once.

use std::collections::HashSet;
use std::time::Duration;

use crate::util::{run_ok, sequin, stats};

pub(crate) fn message_ids(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["messageId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn last_ack(log: &std::path::Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn kill_9_during_import_recovers_every_acknowledged_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    run_ok(&[
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--users",
        "12000",
        "--seed",
        "11",
    ]);
    let ids = message_ids(&file);
    let unique: HashSet<&String> = ids.iter().collect();

    // Kill at different moments: while appending, and while flushing (small memtable).
    let mut killed_with_acks = 0;
    // Each run is killed once it has acknowledged some chunks (polling the ack log), so the
    // kills land mid-import whatever the machine's speed: early, middle, and during flushes.
    for (i, acks_before_kill) in [1usize, 4, 8, 13].into_iter().enumerate() {
        let store = dir.path().join(format!("store{i}"));
        let log = dir.path().join(format!("acks{i}"));
        let mut child = sequin()
            .args([
                "import",
                "--store",
                store.to_str().unwrap(),
                "--ack-log",
                log.to_str().unwrap(),
                "--memtable-mb",
                "24",
            ])
            .arg(&file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            < acks_before_kill
            && std::time::Instant::now() < deadline
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(7 * i as u64));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        let status = child.wait().unwrap();
        let acked = last_ack(&log);
        if !status.success() && acked > 0 {
            killed_with_acks += 1;
        }
        if !store.join("MANIFEST.json").exists() {
            continue; // killed before the store was even created
        }
        let recovered = stats(&store)["events"].as_u64().unwrap();
        assert!(
            recovered >= acked,
            "run {i}: {recovered} events recovered, {acked} acknowledged"
        );
        assert!(recovered <= unique.len() as u64);
        // Finish the import: the file's messages are each there exactly once.
        run_ok(&[
            "import",
            "--store",
            store.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert_eq!(
            stats(&store)["events"].as_u64().unwrap(),
            unique.len() as u64,
            "run {i}: after resuming"
        );
    }
    assert!(
        killed_with_acks >= 3,
        "the kills landed in the middle of imports ({killed_with_acks})"
    );
}
