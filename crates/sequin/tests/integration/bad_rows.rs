//! A mixed good/bad file imports the good rows and reports each bad one; --strict imports
//! nothing of it.

use crate::util::{run, stats};

const MIXED_CSV: &str = "\
user_id,ts,event,amount
u1,2024-01-01T00:00:00Z,view,1
u1,yesterday,view,2
,2024-01-01T00:00:02Z,view,3
u2,2024-01-01T00:00:03Z,buy,4.5
u2,2024-01-01T00:00:04Z,buy
u3,1704067205,view,6
";

#[test]
fn bad_rows_are_reported_with_file_line_and_reason_and_good_rows_still_import() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.csv");
    std::fs::write(&file, MIXED_CSV).unwrap();
    let store = dir.path().join("store");
    let out = run(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    assert!(
        err.contains(&format!("{f}:3: ts: `yesterday` is not a time")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:4: user_id: missing unit key")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:6: $: expected 4 fields, found 3")),
        "{err}"
    );
    assert!(err.contains("3 rows rejected"), "{err}");
    let s = stats(&store);
    assert_eq!(s["events"], 3);
    assert_eq!(s["units"], 3);
    let rejects = std::fs::read_to_string(store.join("rejects/mixed.csv.rejects.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["row"], "u1,yesterday,view,2");
}

#[test]
fn strict_import_stops_at_the_first_bad_row_and_imports_nothing_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "user_id,ts,event\nu9,2024-01-01T00:00:00Z,view\n").unwrap();
    let file = dir.path().join("mixed.csv");
    std::fs::write(&file, MIXED_CSV).unwrap();
    let store = dir.path().join("store");
    let out = run(&[
        "import",
        "--strict",
        "--store",
        store.to_str().unwrap(),
        good.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3: ts:") && err.contains("nothing of this file was imported"),
        "{err}"
    );
    assert_eq!(
        stats(&store)["events"],
        1,
        "the earlier good file stays, nothing of the bad one"
    );
}

#[test]
fn ndjson_bad_lines_name_the_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"track","event":"a","userId":"u1","timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            "{not json\n",
            r#"{"type":"track","event":"a","userId":["u1"],"timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"type":"track","userId":"u1","timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"type":"track","event":"b","anonymousId":"a1","timestamp":"2024-01-01T00:00:01Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = run(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: $: invalid JSON"), "{err}");
    assert!(
        err.contains(":3: userId: must be a string, found an array"),
        "{err}"
    );
    assert!(err.contains(":4: event: missing"), "{err}");
    assert_eq!(stats(&store)["events"], 2);
}
