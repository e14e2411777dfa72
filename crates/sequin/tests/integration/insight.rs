//! Insights on the command line: `mine` against SPMF's counts and against `eval`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::segments::golden_store;
use crate::util::{run, run_ok, shared_data};

#[test]
fn mine_sign_at_half_support_finds_spmf_prefixspan_173_patterns() {
    let sign = shared_data().join("spmf/SIGN.txt");
    let out = run_ok(&[
        "mine",
        "--spmf",
        sign.to_str().unwrap(),
        "--min-support",
        "0.5",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 173);
    // SPMF's output form, every support at least ceil(0.5 × 730) = 365.
    for l in &lines {
        let sup: u32 = l.rsplit("#SUP: ").next().unwrap().parse().unwrap();
        assert!(sup >= 365, "{l}");
    }
}

#[test]
fn mine_rejects_a_bad_spmf_line_and_a_bad_support_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.txt");
    std::fs::write(&f, "1 -1 2 -1 -2\n3 -1 oops -1 -2\n").unwrap();
    let out = run(&[
        "mine",
        "--spmf",
        f.to_str().unwrap(),
        "--min-support",
        "0.5",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.txt:2: `oops` is not an item"), "{err}");
    let out = run(&["mine", "--spmf", f.to_str().unwrap(), "--min-support", "5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-support 5"));
}

/// A mined pattern's support is the number of units that contain it as a subsequence:
/// exactly the membership `eval` gives `sequence { … }` over the same units.
#[test]
fn mined_store_patterns_have_the_support_eval_gives_their_sequence() {
    let store = golden_store().to_str().unwrap();
    for unit in ["users", "sessions"] {
        let out = run_ok(&[
            "mine",
            "--store",
            store,
            "--unit",
            unit,
            "--min-support",
            "0.05",
            "--max-length",
            "3",
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let patterns = v["patterns"].as_array().unwrap();
        assert!(patterns.len() > 20, "{unit}: {} patterns", patterns.len());
        // Every 7th pattern of two or more steps, so long and rare ones are covered too.
        let picked: Vec<&serde_json::Value> = patterns
            .iter()
            .filter(|p| p["pattern"].as_array().unwrap().len() >= 2)
            .step_by(7)
            .take(12)
            .collect();
        assert!(picked.len() >= 5);
        let mut seg = String::new();
        let mut expected = BTreeMap::new();
        for (i, p) in picked.iter().enumerate() {
            let name = format!("p{i:02}");
            seg.push_str(&format!(
                "segment {name} of {unit} {{ {} }}\n",
                p["criterion"].as_str().unwrap()
            ));
            expected.insert(name, p["support"].as_u64().unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mined.seg");
        std::fs::write(&file, &seg).unwrap();
        let members = run_ok(&[
            "eval",
            "--store",
            store,
            "--segments",
            file.to_str().unwrap(),
        ]);
        let mut got: BTreeMap<String, u64> = expected.keys().map(|k| (k.clone(), 0)).collect();
        for line in members.lines().skip(1) {
            *got.get_mut(line.split(',').next().unwrap()).unwrap() += 1;
        }
        assert_eq!(got, expected, "{unit}:\n{seg}");
    }
}

/// A funnel's last step is the segment's membership, and a breakdown partitions every step.
#[test]
fn funnel_ends_at_the_segment_and_its_breakdown_adds_up() {
    let store = golden_store().to_str().unwrap();
    let seg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.seg");
    let seg = seg.to_str().unwrap();
    let f: serde_json::Value = serde_json::from_str(&run_ok(&[
        "funnel",
        "--store",
        store,
        "--segments",
        seg,
        "--segment",
        "browse_to_buy",
        "--by",
        "os.name",
        "--top",
        "2",
        "--format",
        "json",
    ]))
    .unwrap();
    let members = run_ok(&[
        "eval",
        "--store",
        store,
        "--segments",
        seg,
        "--segment",
        "browse_to_buy",
    ]);
    let steps = f["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps.last().unwrap()["units"].as_u64().unwrap(),
        members.lines().count() as u64 - 1
    );
    let groups = f["breakdown"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "two values and (other)");
    for (k, s) in steps.iter().enumerate() {
        let sum: u64 = groups
            .iter()
            .map(|g| g["steps"][k]["units"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, s["units"].as_u64().unwrap(), "step {}", k + 1);
        if k > 0 {
            assert!(s["units"].as_u64() <= steps[k - 1]["units"].as_u64());
        }
    }
    // A typo in --steps points at it.
    let out = run(&[
        "funnel",
        "--store",
        store,
        "--steps",
        "page_view; add_to_cart where",
        "--format",
        "json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--steps"));
}

/// Runs `discover` and checks what every finding promises: its definition passes `check`,
/// and `eval` of it, within the population, has exactly the members reported.
fn check_findings(
    store: &str,
    seg: &Path,
    args: &[&str],
    population: Option<&str>,
) -> serde_json::Value {
    let mut all = vec![
        "discover",
        "--store",
        store,
        "--segments",
        seg.to_str().unwrap(),
        "--format",
        "json",
    ];
    all.extend(args);
    let d: serde_json::Value = serde_json::from_str(&run_ok(&all)).unwrap();
    let findings = d["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "no finding: {d}");
    let dir = tempfile::tempdir().unwrap();
    // The base's members, when the population is a base segment.
    let base: Option<BTreeSet<String>> = population.map(|b| eval_members(store, seg, Some(b)));
    for f in findings {
        let n = finding_members(store, f, dir.path())
            .iter()
            .filter(|u| base.as_ref().is_none_or(|b| b.contains(*u)))
            .count() as u64;
        assert_eq!(n, f["members"].as_u64().unwrap(), "{}", f["definition"]);
        assert!(f["q_value"].as_f64().unwrap() <= 0.05);
    }
    d
}

/// A finding's definition, checked by `check`, then its `eval` members (unit keys).
fn finding_members(store: &str, finding: &serde_json::Value, dir: &Path) -> BTreeSet<String> {
    let file = dir.join("finding.seg");
    std::fs::write(&file, finding["definition"].as_str().unwrap()).unwrap();
    run_ok(&["check", file.to_str().unwrap()]);
    eval_members(store, &file, None)
}

/// The unit keys `eval` lists as members (of `segment`, or of every segment of `seg`).
fn eval_members(store: &str, seg: &Path, segment: Option<&str>) -> BTreeSet<String> {
    let mut args = vec![
        "eval",
        "--store",
        store,
        "--segments",
        seg.to_str().unwrap(),
    ];
    if let Some(s) = segment {
        args.extend(["--segment", s]);
    }
    run_ok(&args)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn discovered_findings_are_valid_segments_of_the_reported_size() {
    let store = golden_store().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("outcomes.seg");
    std::fs::write(
        &seg,
        "segment payers of sessions { did payment_step_view }\n\
         outcome submitted of sessions { did payment_submit }\n",
    )
    .unwrap();
    let d = check_findings(
        store,
        &seg,
        &["--outcome", "submitted", "--base", "payers", "--top", "4"],
        Some("payers"),
    );
    assert_eq!(d["unit"], "sessions");
}

/// Sessions that start a checkout, and the outcome that they purchase, in `dir`.
fn checkout_outcomes(dir: &Path) -> std::path::PathBuf {
    let seg = dir.join("outcomes.seg");
    std::fs::write(
        &seg,
        "segment checkout of sessions { did checkout_start }\n\
         outcome purchased of sessions { did purchase }\n",
    )
    .unwrap();
    seg
}

/// `discover --outcome purchased --base checkout --top 5` plus `extra` over the golden
/// store, every finding checked against `eval` (see [`check_findings`]).
fn discover_purchases_from_checkout(extra: &[&str]) -> serde_json::Value {
    let store = golden_store().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seg = checkout_outcomes(dir.path());
    let mut args = vec!["--outcome", "purchased", "--base", "checkout", "--top", "5"];
    args.extend_from_slice(extra);
    check_findings(store, &seg, &args, Some("checkout"))
}

/// The generator plants two behaviours between checkout and purchase: a slow payment widget
/// (sessions) and error 4022 on iOS 17.3 (users). Discovery names each in its top 5 as a
/// finding whose members are the planted ones: precision and recall of at least 0.8 against
/// the generator's ground truth (checkout sessions; for 4022, the sessions' users).
#[test]
fn discovery_finds_the_planted_slow_payment_and_error_4022_in_its_top_5() {
    let d = discover_purchases_from_checkout(&[]);
    let store = golden_store();
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.parent().unwrap().join("gen.ndjson.truth.json")).unwrap(),
    )
    .unwrap();
    let planted = |id: &str| -> BTreeSet<String> {
        truth["behaviours"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap()["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let seg = checkout_outcomes(dir.path());
    let checkout = eval_members(store.to_str().unwrap(), &seg, Some("checkout"));
    // A session key is `user@start`.
    let user = |session: &str| session.split('@').next().unwrap().to_string();
    let slow: BTreeSet<String> = planted("slow_payment_android")
        .intersection(&checkout)
        .cloned()
        .collect();
    let with_4022: BTreeSet<String> = planted("error_4022_ios173");
    let findings: Vec<BTreeSet<String>> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            finding_members(store.to_str().unwrap(), f, dir.path())
                .intersection(&checkout)
                .cloned()
                .collect()
        })
        .collect();
    let best = |truth: &BTreeSet<String>, key: &dyn Fn(&str) -> String| -> (f64, f64) {
        findings
            .iter()
            .map(|members| {
                let keys: BTreeSet<String> = members.iter().map(|m| key(m)).collect();
                let hits = members.iter().filter(|m| truth.contains(&key(m))).count();
                let found = truth.iter().filter(|t| keys.contains(*t)).count();
                (
                    hits as f64 / members.len().max(1) as f64,
                    found as f64 / truth.len().max(1) as f64,
                )
            })
            .max_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)))
            .unwrap()
    };
    assert!(
        slow.len() >= 20 && with_4022.len() >= 20,
        "too little planted"
    );
    let (p, r) = best(&slow, &|s: &str| s.to_string());
    assert!(
        p >= 0.8 && r >= 0.8,
        "slow payment: precision {p:.2}, recall {r:.2}: {d}"
    );
    // Users with error 4022 that reached checkout are found through their sessions.
    let reached: BTreeSet<String> = with_4022
        .iter()
        .filter(|u| checkout.iter().any(|s| user(s) == **u))
        .cloned()
        .collect();
    let (p, r) = best(&reached, &user);
    assert!(
        p >= 0.8 && r >= 0.8,
        "error 4022: precision {p:.2}, recall {r:.2}: {d}"
    );
}

/// Signals are candidates too: with the outcome's own steps excluded, a friction signal is
/// among the findings, and its size is what `eval` (the engine's own detectors) gives.
#[test]
fn discovery_offers_signals_and_their_sizes_match_eval() {
    let d =
        discover_purchases_from_checkout(&["--exclude", "payment_submit", "--exclude", "click"]);
    let steps: Vec<&str> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["steps"].as_array().unwrap())
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        steps.iter().any(|s| s.starts_with("signal.")),
        "no signal among {steps:?}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s.starts_with("click") || s.starts_with("payment_submit"))
    );
}

/// Steps of the outcome itself are found without being named: `payment_submit` comes before
/// every purchase, so it is left out (with its refinements), and no finding restates the
/// outcome (a rest that almost never reaches it).
#[test]
fn discovery_leaves_out_steps_of_the_outcome_by_itself() {
    let d = discover_purchases_from_checkout(&[]);
    let left_out: Vec<&str> = d["outcome_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(left_out.contains(&"payment_submit"), "{left_out:?}");
    let population_rate = d["population_rate"].as_f64().unwrap();
    for f in d["findings"].as_array().unwrap() {
        let def = f["definition"].as_str().unwrap();
        assert!(!def.contains("payment_submit"), "{def}");
        let rest = f["comparison"]["non_members"]["rate"].as_f64().unwrap();
        assert!(rest > 0.02 * population_rate, "restates the outcome: {def}");
    }
    // Asked for, they come back.
    let d = discover_purchases_from_checkout(&["--keep-outcome-steps"]);
    assert_eq!(d["outcome_steps"], serde_json::json!([]));
    assert!(
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["definition"].as_str().unwrap().contains("payment_submit")),
        "{d}"
    );
}

/// A large population is searched on a sample, but every figure reported is the engine's
/// over every unit (`check_findings` compares each finding's size with `eval`).
#[test]
fn discovery_on_a_search_sample_reports_figures_verified_on_every_unit() {
    let d = discover_purchases_from_checkout(&["--search-sample", "800"]);
    let (searched, population) = (
        d["searched_units"].as_u64().unwrap(),
        d["population_units"].as_u64().unwrap(),
    );
    assert!(
        searched < population && searched > 400,
        "{searched} of {population}"
    );
}

/// The search does not depend on thread timing: two runs score the same candidates and
/// report the same findings, figure for figure.
#[test]
fn discovery_gives_the_same_findings_run_after_run() {
    let first = discover_purchases_from_checkout(&["--search-sample", "800"]);
    let second = discover_purchases_from_checkout(&["--search-sample", "800"]);
    assert!(first["candidates_scored"].as_u64().unwrap() > 0);
    assert_eq!(first["candidates_scored"], second["candidates_scored"]);
    assert!(!first["findings"].as_array().unwrap().is_empty());
    assert_eq!(first["findings"], second["findings"]);
}

/// BPIC 2012: what predicts cancellation, each finding's size checked against `eval`, and
/// its rates against counts made here from the raw log.
#[test]
fn bpic2012_discovery_of_cancellation_is_checked_by_independent_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = crate::real_data::import_bpic2012(&store);
    let seg = dir.path().join("outcomes.seg");
    std::fs::write(&seg, "outcome cancelled { did A_CANCELLED }\n").unwrap();
    let d = check_findings(
        store.to_str().unwrap(),
        &seg,
        &["--outcome", "cancelled", "--top", "3"],
        None,
    );
    // Independent counts for single-step findings without attributes: a case is a member
    // from its first matching event; it reaches the outcome if A_CANCELLED follows later.
    let cases = crate::real_data::bpic2012_cases(&csv);
    let mut checked = 0;
    for f in d["findings"].as_array().unwrap() {
        let steps = f["steps"].as_array().unwrap();
        if !f["attributes"].as_array().unwrap().is_empty() || steps.len() != 1 {
            continue;
        }
        let step = steps[0].as_str().unwrap();
        if step.contains(" where ") {
            continue;
        }
        let name = step.trim_matches('"');
        let (mut members, mut reached, mut rest, mut rest_reached) = (0u64, 0u64, 0u64, 0u64);
        for events in cases.values() {
            let cancelled_after =
                |t: i64| events.iter().any(|(x, _, n)| *x > t && n == "A_CANCELLED");
            match events.iter().find(|(_, _, n)| n == name) {
                Some(&(t, _, _)) => {
                    // Entered only after being cancelled: in neither rate.
                    let first_cancel = events
                        .iter()
                        .find(|(_, _, n)| n == "A_CANCELLED")
                        .map(|e| e.0);
                    if first_cancel.is_some_and(|c| c > events[0].0 && c <= t) {
                        continue;
                    }
                    members += 1;
                    reached += u64::from(cancelled_after(t));
                }
                None => {
                    rest += 1;
                    rest_reached += u64::from(cancelled_after(events[0].0));
                }
            }
        }
        let c = &f["comparison"];
        assert_eq!(c["members"]["total"].as_u64().unwrap(), members, "{step}");
        assert_eq!(c["members"]["hits"].as_u64().unwrap(), reached, "{step}");
        assert_eq!(c["non_members"]["total"].as_u64().unwrap(), rest, "{step}");
        assert_eq!(
            c["non_members"]["hits"].as_u64().unwrap(),
            rest_reached,
            "{step}"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no single-step finding to count independently: {d}"
    );
}

/// `sequin gen --incident` breaks checkout for Android app 5.3.0 for one week; `explain`
/// comparing that week with the one before names that segment first.
#[test]
fn explain_names_the_incident_segment_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = crate::util::generated_store(dir.path(), 8000, 7, &["--incident"]);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("gen.ndjson.truth.json")).unwrap())
            .unwrap();
    let incident = &truth["incident"];
    assert_eq!(
        incident["segment"],
        "os.name == \"Android\" and app.version == \"5.3.0\""
    );
    let day = |t: &serde_json::Value| t.as_str().unwrap()[..10].to_string();
    let (start, end) = (day(&incident["start"]), day(&incident["end"]));
    let seg = dir.path().join("o.seg");
    std::fs::write(&seg, "outcome purchased of sessions { did purchase }\n").unwrap();
    let baseline = "2024-03-11..2024-03-18";
    assert_eq!(
        start, "2024-03-18",
        "the generator's incident week moved; adjust the baseline"
    );
    let e: serde_json::Value = serde_json::from_str(&run_ok(&[
        "explain",
        "--store",
        store.to_str().unwrap(),
        "--segments",
        seg.to_str().unwrap(),
        "--outcome",
        "purchased",
        "--baseline",
        baseline,
        "--current",
        &format!("{start}..{end}"),
        "--format",
        "json",
    ]))
    .unwrap();
    let first = &e["elements"][0];
    let (dim, value) = (
        first["dimension"].as_str().unwrap(),
        first["value"].as_str().unwrap(),
    );
    let named: std::collections::BTreeMap<&str, &str> =
        dim.split(" × ").zip(value.split(" × ")).collect();
    assert_eq!(named.get("app.version"), Some(&"5.3.0"), "{first}");
    assert!(
        named.get("os.name").is_none_or(|v| *v == "Android"),
        "{first}"
    );
    assert!(first["current"]["rate"].as_f64() < first["baseline"]["rate"].as_f64());
    // The contributions of one dimension's values add up to the whole change.
    let e: serde_json::Value = serde_json::from_str(&run_ok(&[
        "explain",
        "--store",
        store.to_str().unwrap(),
        "--segments",
        seg.to_str().unwrap(),
        "--outcome",
        "purchased",
        "--baseline",
        baseline,
        "--current",
        &format!("{start}..{end}"),
        "--by",
        "os.name",
        "--min-units",
        "0",
        "--min-share",
        "-1e9",
        "--top",
        "1000",
        "--format",
        "json",
    ]))
    .unwrap();
    let by_os: f64 = e["elements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["dimension"] == "os.name")
        .map(|x| x["contribution"].as_f64().unwrap())
        .sum();
    assert!(
        (by_os - e["change"].as_f64().unwrap()).abs() < 1e-12,
        "{by_os} vs {}",
        e["change"]
    );
}

/// `at-risk`: friction the generator plants before churn (error 4022) precedes churn; every
/// unit listed is a member now, of the segments named, with its outcome still open.
#[test]
fn at_risk_lists_members_of_segments_that_precede_churn() {
    let store = golden_store().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("churn.seg");
    std::fs::write(
        &seg,
        "segment payment_4022 { did error where code == 4022 }\n\
         segment browsers { did product_view }\n\
         segment never_churns { did any and not did any }\n\
         outcome churned { not did any within 7d }\n",
    )
    .unwrap();
    let seg = seg.to_str().unwrap();
    let r: serde_json::Value = serde_json::from_str(&run_ok(&[
        "at-risk",
        "--store",
        store,
        "--segments",
        seg,
        "--outcome",
        "churned",
        "--top",
        "50",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(r["segments_tried"], 3);
    let preceding: Vec<&str> = r["preceding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["segment"].as_str().unwrap())
        .collect();
    assert!(preceding.contains(&"payment_4022"), "{preceding:?}");
    assert!(!preceding.contains(&"never_churns"));
    for p in r["preceding"].as_array().unwrap() {
        assert!(
            p["report"]["comparison"]["relative_risk"]["value"]
                .as_f64()
                .unwrap()
                > 1.0
        );
        assert!(p["q_value"].as_f64().unwrap() <= 0.05);
    }
    let units = r["units"].as_array().unwrap();
    assert!(!units.is_empty());
    let mut last = f64::INFINITY;
    for u in units {
        let risk = u["risk"].as_f64().unwrap();
        assert!(risk <= last);
        last = risk;
        let first = u["segments"][0].as_str().unwrap();
        let members = run_ok(&[
            "eval",
            "--store",
            store,
            "--segments",
            seg,
            "--segment",
            first,
        ]);
        let unit = u["unit"].as_str().unwrap();
        assert!(
            members.lines().any(|l| l.split(',').nth(1) == Some(unit)),
            "{unit} not in {first}"
        );
    }
}
