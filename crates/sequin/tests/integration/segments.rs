//! The segment language on the command line: golden member lists (one per file under
//! tests/segments/), `check` diagnostics and exit codes, `fmt` idempotence, output formats.
//!
//! Golden data is `sequin gen --users 3000 --seed 11` (deterministic per seed), evaluated as
//! of a fixed time. Run with `SEQUIN_BLESS=1` to rewrite the expected files after an
//! intended change, and review the diff.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::{run, run_ok};

const AS_OF: &str = "2024-03-30T00:00:00Z";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A store of generated data, built once per test run.
pub(crate) fn golden_store() -> &'static Path {
    static STORE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = crate::util::generated_store(dir.path(), 3000, 11, &[]);
        (dir, store)
    });
    path
}

fn golden(name: &str) {
    let seg = repo().join("tests/segments").join(format!("{name}.seg"));
    let expected_path = repo()
        .join("tests/segments")
        .join(format!("{name}.expected.csv"));
    let out = run_ok(&[
        "eval",
        "--store",
        golden_store().to_str().unwrap(),
        "--segments",
        seg.to_str().unwrap(),
        "--as-of",
        AS_OF,
    ]);
    if std::env::var_os("SEQUIN_BLESS").is_some() {
        std::fs::write(&expected_path, &out).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with SEQUIN_BLESS=1",
            expected_path.display()
        )
    });
    if out != expected {
        let diff: Vec<String> = out
            .lines()
            .zip(expected.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("got {a}\nwant {b}"))
            .collect();
        panic!(
            "{name}: members differ ({} lines vs {} expected)\n{}",
            out.lines().count(),
            expected.lines().count(),
            diff.join("\n")
        );
    }
    // Every segment of the file finds someone: a golden file of empty results guards nothing.
    let src = std::fs::read_to_string(&seg).unwrap();
    let file = sequin_lang::parse(&src).unwrap();
    for item in &file.items {
        let prefix = format!("{},", item.name.name);
        assert!(
            out.lines().any(|l| l.starts_with(&prefix)),
            "{name}: segment `{}` has no members in the golden data",
            item.name.name
        );
    }
}

#[test]
fn golden_funnels() {
    golden("funnels");
}

#[test]
fn golden_friction() {
    golden("friction");
}

#[test]
fn golden_agents() {
    golden("agents");
}

#[test]
fn golden_recency() {
    golden("recency");
}

#[test]
fn seed_file_checks_against_a_store_with_only_warnings() {
    let seed = repo().join("examples/seed.seg");
    let out = run(&[
        "check",
        seed.to_str().unwrap(),
        "--store",
        golden_store().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ok (11 segments, 3 outcomes)"), "{stderr}");
}

#[test]
fn check_reports_a_typo_with_a_caret_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("typo.seg");
    std::fs::write(&f, "segment s {\n    did purchse\n}\n").unwrap();
    let out = run(&[
        "check",
        f.to_str().unwrap(),
        "--store",
        golden_store().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("2 |     did purchse\n  |         ^^^^^^^"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `purchase`?"), "{stderr}");

    std::fs::write(&f, "segment s { count(purchase) >= }").unwrap();
    let out = run(&["check", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("expected a number, found `}`"), "{stderr}");
}

#[test]
fn fmt_is_idempotent_on_every_segment_file() {
    let mut files = vec![repo().join("examples/seed.seg")];
    for e in std::fs::read_dir(repo().join("tests/segments")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") {
            files.push(p);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let once = run_ok(&["fmt", f.to_str().unwrap()]);
        let tmp = dir.path().join("once.seg");
        std::fs::write(&tmp, &once).unwrap();
        let twice = run_ok(&["fmt", tmp.to_str().unwrap()]);
        assert_eq!(once, twice, "{}", f.display());
        let original = sequin_lang::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(
            sequin_lang::parse(&once).unwrap(),
            original,
            "{}",
            f.display()
        );
    }
}

#[test]
fn eval_ndjson_matches_csv() {
    let seg = repo().join("tests/segments/agents.seg");
    let store = golden_store().to_str().unwrap();
    let args = [
        "eval",
        "--store",
        store,
        "--segments",
        seg.to_str().unwrap(),
        "--as-of",
        AS_OF,
    ];
    let csv = run_ok(&args);
    let mut nd_args = args.to_vec();
    nd_args.extend(["--format", "ndjson", "--segment", "escalated"]);
    let nd = run_ok(&nd_args);
    let from_csv: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with("escalated,"))
        .collect();
    assert!(!from_csv.is_empty());
    assert_eq!(nd.lines().count(), from_csv.len());
    for (line, row) in nd.lines().zip(&from_csv) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let joined = format!(
            "{},{},{}",
            v["segment"].as_str().unwrap(),
            v["unit"].as_str().unwrap(),
            v["entered_at"].as_str().unwrap()
        );
        assert_eq!(&joined, row);
    }
    let out = run(&[
        "eval",
        "--store",
        store,
        "--segments",
        seg.to_str().unwrap(),
        "--segment",
        "nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no segment named `nope`"));
}

/// On the golden data (real event shapes: properties, context, sessions, conversations), the
/// engine's membership equals the reference evaluator's for a sample of units of every
/// golden segment.
#[test]
fn golden_segments_agree_with_the_reference_evaluator() {
    use sequin_engine::Program;
    use sequin_engine::batch::{EvalOptions, evaluate};
    use sequin_engine::reference::{RefEvent, membership};
    use sequin_engine::units::split;
    use sequin_lang::ast::{ItemKind, UnitKind};
    use sequin_store::{EventSource, Projection, StoreReader};

    let as_of = sequin_core::time::parse_text(AS_OF, sequin_core::time::TimeFormat::Auto).unwrap();
    let gap = 30 * sequin_core::time::MINUTE;
    let reader = StoreReader::open(golden_store()).unwrap();
    let data = reader.read_partition(0, &Projection::All).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("tests/segments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let file = sequin_lang::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for item in file.items.iter().filter(|i| i.kind == ItemKind::Segment) {
            let name = &item.name.name;
            let prog = Program::compile(&file, name).unwrap();
            let opts = EvalOptions {
                as_of: Some(as_of),
                session_gap: gap,
            };
            let engine = evaluate(&reader, std::slice::from_ref(&prog), &opts).unwrap();
            let members: std::collections::HashMap<&str, i64> = engine.segments[0]
                .members
                .iter()
                .map(|m| (m.unit.as_str(), m.entered_at))
                .collect();
            let mut sampled = 0;
            for (user, rows) in data.unit_rows() {
                let rows: Vec<usize> = rows.filter(|&r| data.time[r] <= as_of).collect();
                if rows.is_empty() || rows.len() > 30 {
                    continue;
                }
                let events: Vec<RefEvent> = rows
                    .iter()
                    .map(|&r| {
                        let e = data.event(r);
                        let mut props = std::collections::HashMap::new();
                        for (k, v) in e.properties {
                            props.insert(format!("p.{k}"), v);
                        }
                        for (k, v) in e.context {
                            props.insert(format!("c.{k}"), v);
                        }
                        for (k, v) in e.traits {
                            props.insert(format!("t.{k}"), v);
                        }
                        RefEvent {
                            time: e.time,
                            name: e.name.to_string(),
                            props,
                            synthetic: false,
                        }
                    })
                    .collect();
                let times: Vec<i64> = events.iter().map(|e| e.time).collect();
                let id_col = match item.unit {
                    UnitKind::Users => None,
                    UnitKind::Sessions => Some("session_id"),
                    UnitKind::Conversations => Some("conversation_id"),
                };
                let subs = split(
                    item.unit,
                    user,
                    &times,
                    |i| id_col.and_then(|c| data.id(c, rows[i])),
                    gap,
                );
                for sub in subs {
                    let unit_events: Vec<RefEvent> =
                        sub.rows.iter().map(|&i| events[i].clone()).collect();
                    let expected = membership(&file, name, &unit_events, as_of, gap);
                    assert_eq!(
                        members.get(sub.key.as_str()).copied(),
                        expected,
                        "{}: segment `{name}`, unit {}",
                        path.display(),
                        sub.key
                    );
                    checked += 1;
                }
                sampled += 1;
                if sampled == 60 {
                    break;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} unit evaluations compared");
}
