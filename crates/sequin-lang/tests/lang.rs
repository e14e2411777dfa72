//! Parser, checker and formatter tests over the seed file and hand-written cases.

use sequin_lang::{check, format_file, parse};

const SEED: &str = include_str!("../../../examples/seed.seg");

#[test]
fn seed_file_parses_and_checks_clean() {
    let file = parse(SEED).unwrap_or_else(|d| panic!("{}", d.render("seed.seg", SEED)));
    let diags = check(&file, None);
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(file.items.len(), 14);
}

#[test]
fn formatting_is_idempotent_and_preserves_meaning() {
    let file = parse(SEED).unwrap();
    let once = format_file(&file);
    let reparsed = parse(&once).unwrap_or_else(|d| panic!("{}\n{once}", d.render("fmt", &once)));
    assert_eq!(reparsed, file);
    assert_eq!(format_file(&reparsed), once);
}

#[test]
fn diagnostics_point_at_the_mistake() {
    let cases = [
        (
            "segment a { did x where y = 1 }",
            "unexpected character `=`",
            "compare with `==`",
        ),
        (
            "segment a { count(x) >= }",
            "expected a number",
            "e.g. `>= 3`",
        ),
        (
            "segment a { sequence { not x; y } }",
            "cannot start with an absence",
            "absences sit between",
        ),
        (
            "segment a { in segment b }\nsegment b { in segment a }",
            "cycle",
            "cannot depend on itself",
        ),
        (
            "segment a { sequence { x; session_end } }",
            "exists only for sessions",
            "of sessions",
        ),
        (
            "segment a { did x within 7d }",
            "is for outcomes",
            "during last",
        ),
        (
            "segment a { sequence { x; y within 5s of z } }",
            "no earlier step is named `z`",
            "as",
        ),
        (
            "segment a of planets { did x }",
            "unknown unit",
            "users, sessions",
        ),
        (
            "segment a { did signal.rage_clik }",
            "no signal named `rage_clik`",
            "did you mean `rage_click`",
        ),
        (
            "signal rage_click { clicks 4; withn 2s }\nsegment a { did signal.rage_click }",
            "has no setting `withn`",
            "did you mean `within`",
        ),
        (
            "signal rage_click { within 4 }\nsegment a { did signal.rage_click }",
            "`within` takes a duration",
            "the default is 1s",
        ),
        (
            "signal dead_clicks { within 2s }\nsegment a { did x }",
            "no signal named `dead_clicks`",
            "did you mean `dead_click`",
        ),
        (
            "signal rephrase { similarity 0.4 }\nsignal rephrase { min_words 2 }\nsegment a { did x }",
            "settings of `rephrase` are given twice",
            "merge",
        ),
        (
            "signal rage_click { clicks }\nsegment a { did x }",
            "expected a number, a duration or a string",
            "clicks 4",
        ),
    ];
    for (src, message, hint) in cases {
        let diags = match parse(src) {
            Err(d) => vec![d],
            Ok(file) => check(&file, None),
        };
        let d = diags
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("{src}: {diags:#?}"));
        assert!(
            d.hint.as_deref().unwrap_or("").contains(hint),
            "{src}: {d:?}"
        );
        assert!(d.span.end > d.span.start, "{src}: empty span");
    }
}

#[test]
fn store_catalog_suggests_close_names() {
    let cat = sequin_lang::Catalog {
        events: ["purchase".to_string(), "page_view".to_string()].into(),
        properties: ["amount".to_string(), "page".to_string()].into(),
    };
    let file = parse("segment a { did purchse where amout > 3 }").unwrap();
    let diags = check(&file, Some(&cat));
    let text: Vec<String> = diags
        .iter()
        .map(|d| d.render("a.seg", "segment a { did purchse where amout > 3 }"))
        .collect();
    assert!(text[0].contains("did you mean `purchase`?"), "{text:?}");
    assert!(text[1].contains("did you mean `amount`?"), "{text:?}");
    assert!(text[0].contains("^^^^^^^"), "{text:?}");
}

#[test]
fn where_predicates_stop_at_criteria_and_or() {
    let file =
        parse("segment a { did x where a == 1 and b == 2 and did y or count(z where c or d) > 1 }")
            .unwrap();
    let out = format_file(&file);
    assert_eq!(
        out,
        "segment a {\n    did x where a == 1 and b == 2 and did y or count(z where c or d) > 1\n}\n"
    );
    let file = parse("segment a { (did x where a == 1) and device.type == \"m\" }").unwrap();
    let out = format_file(&file);
    assert!(
        out.contains("(did x where a == 1) and device.type == \"m\""),
        "{out}"
    );
    assert_eq!(parse(&out).unwrap(), file);
}

#[test]
fn signal_blocks_format_on_one_line_and_round_trip() {
    let src = "signal escalation {\n  tools \"transfer_to_human_agents\", \"handoff\"\n}\n\
               signal rage_click { clicks 4, within 1500ms, distance 40.5 }\n\
               segment a { did signal.rage_click }\n";
    let file = parse(src).unwrap();
    assert!(check(&file, None).is_empty(), "{:?}", check(&file, None));
    let out = format_file(&file);
    assert!(
        out.starts_with(
            "signal escalation { tools \"transfer_to_human_agents\", \"handoff\" }\n\
             signal rage_click { clicks 4; within 1500ms; distance 40.5 }\n"
        ),
        "{out}"
    );
    assert_eq!(parse(&out).unwrap(), file);
}
