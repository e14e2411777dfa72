//! Insights on the command line: `mine` against SPMF's counts and against `eval`.

use std::collections::BTreeMap;
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
