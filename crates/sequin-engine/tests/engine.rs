//! The engine against its oracle: random event streams × random definitions, matcher ==
//! reference evaluator, for users and sessions; plus hand-checked cases for the rules that
//! are easiest to get wrong.

use std::collections::HashMap;

use proptest::prelude::*;
use sequin_core::time::SECOND;
use sequin_core::{Event, MessageKind, Value};
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, Member, evaluate};
use sequin_engine::reference::{RefEvent, membership};
use sequin_engine::units::split;
use sequin_store::MemorySource;

const T0: i64 = 1_709_251_200 * SECOND; // 2024-03-01T00:00:00Z
const GAP: i64 = 30 * SECOND; // a short session gap keeps random streams interesting

fn event(user: &str, name: &str, secs: i64, props: &[(&str, Value)]) -> Event {
    Event {
        kind: MessageKind::Track,
        name: name.into(),
        time: T0 + secs * SECOND,
        user_id: Some(user.into()),
        anonymous_id: None,
        previous_id: None,
        session_id: None,
        conversation_id: None,
        message_id: None,
        properties: props
            .iter()
            .filter(|(k, _)| !k.starts_with("c."))
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
        context: props
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("c.").map(|k| (k.into(), v.clone())))
            .collect(),
        traits: Vec::new(),
    }
}

fn reference_events(events: &[Event]) -> Vec<RefEvent> {
    events
        .iter()
        .map(|e| {
            let mut props = HashMap::new();
            for (k, v) in &e.properties {
                props.insert(format!("p.{k}"), v.clone());
            }
            for (k, v) in &e.context {
                props.insert(format!("c.{k}"), v.clone());
            }
            RefEvent {
                time: e.time,
                name: e.name.to_string(),
                props,
                synthetic: false,
            }
        })
        .collect()
}

/// Members by the engine (batch over a memory source).
fn engine_members(src: &str, name: &str, events: &[Event], as_of: i64) -> Vec<Member> {
    let file = sequin_lang::parse(src).unwrap();
    let prog = Program::compile(&file, name).unwrap();
    let source = MemorySource::new(events, 3);
    let opts = EvalOptions {
        as_of: Some(as_of),
        session_gap: GAP,
    };
    evaluate(&source, &[prog], &opts)
        .unwrap()
        .segments
        .remove(0)
        .members
}

/// Members by the reference evaluator.
fn reference_members(src: &str, name: &str, events: &[Event], as_of: i64) -> Vec<Member> {
    let file = sequin_lang::parse(src).unwrap();
    let unit = file
        .items
        .iter()
        .find(|i| i.name.name == name)
        .unwrap()
        .unit;
    let mut by_user: HashMap<String, Vec<Event>> = HashMap::new();
    for e in events {
        by_user
            .entry(e.user_id.clone().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    let mut out = Vec::new();
    for (user, mut evs) in by_user {
        evs.sort_by_key(|e| e.time); // stable: arrival order among equal times
        evs.retain(|e| e.time <= as_of);
        let times: Vec<i64> = evs.iter().map(|e| e.time).collect();
        for sub in split(unit, &user, &times, |_| None, GAP) {
            let unit_events: Vec<Event> = sub.rows.iter().map(|&i| evs[i].clone()).collect();
            if let Some(t) = membership(&file, name, &reference_events(&unit_events), as_of, GAP) {
                out.push(Member {
                    unit: sub.key,
                    entered_at: t,
                });
            }
        }
    }
    out.sort();
    out
}

// ---- random definitions -------------------------------------------------------------

fn name_s(sig: bool) -> BoxedStrategy<String> {
    let mut names = vec!["a", "b", "c", "a | b", "any"];
    if sig {
        names = vec![
            "a",
            "any",
            "signal.rage_click",
            "signal.dead_click",
            "signal.error_click",
            "signal.error | a",
            "signal.page_loop",
            "signal.quick_back",
            "signal.form_resubmission",
            "signal.slow_load",
            "signal.rephrase",
            "signal.aggressive_reply",
            "signal.premature_exit",
            "signal.escalation",
            "signal.tool_failure | signal.resolution",
        ];
    }
    prop::sample::select(names).prop_map(str::to_string).boxed()
}

fn pattern_s(sig: bool) -> impl Strategy<Value = String> {
    (
        name_s(sig),
        prop_oneof![
            4 => Just(String::new()),
            1 => Just(" where x == 1".to_string()),
            1 => Just(" where x >= 1 and s != \"u\"".to_string()),
            1 => Just(" where (s == \"u\" or x == 2)".to_string()),
        ],
    )
        .prop_map(|(n, w)| format!("{n}{w}"))
}

fn dur_s() -> impl Strategy<Value = String> {
    prop_oneof![Just("5s"), Just("10s"), Just("20s"), Just("45s")].prop_map(str::to_string)
}

fn op_s() -> impl Strategy<Value = String> {
    prop_oneof![Just(">="), Just(">"), Just("<"), Just("=="), Just("!=")].prop_map(str::to_string)
}

fn sequence_s(sig: bool) -> impl Strategy<Value = String> {
    let step = (
        pattern_s(sig),
        prop_oneof![
            3 => Just(String::new()),
            1 => dur_s().prop_map(|d| format!(" within {d}")),
            1 => dur_s().prop_map(|d| format!(" after {d}")),
            1 => (1u32..3).prop_map(|n| format!(" within {n} events")),
        ],
        prop_oneof![3 => Just(""), 1 => Just("next ")],
        prop_oneof![3 => Just(None), 1 => pattern_s(sig).prop_map(Some)],
    );
    (
        prop::collection::vec(step, 1..4),
        prop_oneof![2 => Just(None), 1 => dur_s().prop_map(Some)],
        prop_oneof![
            3 => Just(None),
            1 => pattern_s(sig).prop_map(|p| Some(format!("not {p}"))),
            1 => (pattern_s(sig), dur_s()).prop_map(|(p, d)| Some(format!("not {p} within {d}"))),
        ],
        any::<bool>(),
    )
        .prop_map(|(steps, span, trailing, use_alias)| {
            let mut lines = Vec::new();
            for (i, (p, gap, next, neg)) in steps.iter().enumerate() {
                if i > 0
                    && let Some(n) = neg
                {
                    lines.push(format!("not {n}"));
                }
                let (gap, next) = if i == 0 {
                    ("", "")
                } else {
                    (gap.as_str(), *next)
                };
                let mut p = p.clone();
                if use_alias && i == 0 {
                    p = format!("{p} as f1");
                }
                if use_alias && i == 1 && !p.contains("where") {
                    p = format!("{p} where x == f1.x");
                }
                lines.push(format!("{next}{p}{gap}"));
            }
            if let Some(t) = trailing {
                lines.push(t);
            }
            let span = span.map_or(String::new(), |d| format!(" within {d}"));
            format!("sequence{span} {{ {} }}", lines.join("; "))
        })
}

fn leaf_s(sig: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => sequence_s(sig),
        1 => pattern_s(sig).prop_map(|p| format!("did {p}")),
        1 => (pattern_s(sig), pattern_s(sig), op_s(), 0u32..4).prop_map(|(p, q, o, n)| format!("count({p} or {q}) {o} {n}")),
        1 => (pattern_s(sig), 1u32..3).prop_map(|(p, n)| format!("count distinct(x of {p}) >= {n}")),
        1 => (prop_oneof![Just("sum"), Just("avg"), Just("min"), Just("max")], name_s(sig), op_s(), 0u32..5)
            .prop_map(|(f, n, o, v)| if n.contains('|') || n == "any" {
                format!("{f}(x of {n}) {o} {v}")
            } else {
                format!("{f}({n}.x) {o} {v}")
            }),
        1 => (pattern_s(sig), dur_s()).prop_map(|(p, d)| format!("first did {p} within {d}")),
        1 => (pattern_s(sig), dur_s()).prop_map(|(p, d)| format!("stopped {p} for {d}")),
        1 => (pattern_s(sig), dur_s()).prop_map(|(p, d)| format!("restarted {p} after {d}")),
        1 => Just("dev == \"m\"".to_string()),
    ]
}

fn expr_s(sig: bool) -> impl Strategy<Value = String> {
    let windowed = (
        leaf_s(sig),
        prop_oneof![3 => Just(None), 1 => dur_s().prop_map(Some)],
    )
        .prop_map(|(l, w)| match w {
            Some(d) => format!("({l}) during last {d}"),
            None => l,
        });
    windowed.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn definition_s(sig: bool) -> impl Strategy<Value = String> {
    let units = if sig {
        prop_oneof![2 => Just(""), 1 => Just(" of sessions"), 1 => Just(" of conversations")]
            .boxed()
    } else {
        prop_oneof![3 => Just(""), 1 => Just(" of sessions")].boxed()
    };
    (
        expr_s(sig),
        units,
        prop_oneof![3 => Just(String::new()), 1 => dur_s().prop_map(|d| format!(" during last {d}"))],
    )
        .prop_map(move |(e, unit, w)| {
            // Signal windows scaled to the generated streams (seconds apart).
            let settings = if sig { SIGNAL_SETTINGS } else { "" };
            format!("{settings}segment s{unit}{w} {{ {e} }}")
        })
}

const SIGNAL_SETTINGS: &str = "signal dead_click { within 3s }\n\
    signal premature_exit { idle 12s }\n\
    signal page_loop { views 3; within 10s }\n\
    signal quick_back { dwell 4s }\n\
    signal rephrase { similarity 0.5; min_words 2 }\n";

/// Streams of the events the signal detectors read: clicks with and without coordinates,
/// page views, errors, form submissions, slow loads, and conversation turns.
fn signal_events_s() -> impl Strategy<Value = Vec<Event>> {
    let one = (0usize..3, 0usize..12, 0i64..8, 0usize..4, 0usize..2);
    prop::collection::vec(one, 1..30).prop_map(|raw| {
        const TEXTS: [&str; 4] = [
            "refund my broken order please",
            "please refund the broken order",
            "this is useless",
            "###STOP###",
        ];
        let mut clock = [0i64; 3];
        raw.into_iter()
            .map(|(u, kind, step, v, c)| {
                clock[u] += [0, 0, 1, 1, 2, 3, 7, 15][step as usize];
                let user = format!("u{u}");
                let conv = Value::Str(format!("c{u}-{c}").into());
                let mut e = match kind {
                    0..=2 => {
                        let mut props =
                            vec![("element_id", Value::Str(format!("e{}", v % 2).into()))];
                        if v < 3 {
                            props.push(("x", Value::Int(v as i64 * 20)));
                            props.push(("y", Value::Int(5)));
                        }
                        event(&user, "click", clock[u], &props)
                    }
                    3 | 4 => {
                        let mut e = event(
                            &user,
                            "page_view",
                            clock[u],
                            &[
                                ("page", Value::Str(format!("p{}", v % 3).into())),
                                ("load_time_ms", Value::Int(v as i64 * 1500)),
                            ],
                        );
                        e.kind = MessageKind::Page;
                        e
                    }
                    5 => event(&user, "error", clock[u], &[("code", Value::Int(v as i64))]),
                    6 => event(
                        &user,
                        "form_submit",
                        clock[u],
                        &[("form_id", Value::Str("f".into()))],
                    ),
                    7 | 8 => event(
                        &user,
                        "user_message",
                        clock[u],
                        &[
                            ("role", Value::Str("user".into())),
                            ("text", Value::Str(TEXTS[v].into())),
                        ],
                    ),
                    9 => event(
                        &user,
                        "agent_message",
                        clock[u],
                        &[("role", Value::Str("assistant".into()))],
                    ),
                    10 => event(
                        &user,
                        "tool_call",
                        clock[u],
                        &[
                            (
                                "tool_name",
                                Value::Str(["search", "transfer_to_human_agents"][v % 2].into()),
                            ),
                            ("status", Value::Str(["ok", "error"][v / 2 % 2].into())),
                        ],
                    ),
                    _ => event(&user, "a", clock[u], &[("resolved", Value::Bool(v == 0))]),
                };
                if (7..=11).contains(&kind) {
                    e.conversation_id = match conv {
                        Value::Str(s) => Some(s),
                        _ => None,
                    };
                }
                if v == 3 {
                    e.session_id = Some(format!("s{u}-{c}").into());
                }
                e
            })
            .collect()
    })
}

fn events_s() -> impl Strategy<Value = Vec<Event>> {
    let one = (
        0usize..3,
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")],
        0i64..8,
        prop_oneof![Just(None), Just(Some(0i64)), Just(Some(1)), Just(Some(2))],
        prop_oneof![Just("u"), Just("v")],
        prop_oneof![3 => Just(None), 1 => Just(Some("m")), 1 => Just(Some("d"))],
    );
    prop::collection::vec(one, 1..24).prop_map(|raw| {
        // Times advance in small random steps (0 = same timestamp) per user.
        let mut clock = [0i64; 3];
        raw.into_iter()
            .map(|(u, name, step, x, s, dev)| {
                clock[u] += [0, 0, 1, 2, 3, 7, 15, 40][step as usize];
                let mut props: Vec<(&str, Value)> = vec![("s", Value::Str(s.into()))];
                if let Some(x) = x {
                    props.push(("x", Value::Int(x)));
                }
                if let Some(d) = dev {
                    props.push(("c.dev", Value::Str(d.into())));
                }
                event(&format!("u{u}"), name, clock[u], &props)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_reference(def in definition_s(false), events in events_s(), extra in 0i64..60) {
        let file = match sequin_lang::parse(&def) {
            Ok(f) => f,
            Err(d) => panic!("generated definition does not parse: {}", d.render("gen", &def)),
        };
        prop_assume!(sequin_lang::check(&file, None).iter().all(|d| !d.is_error()));
        // The canonical form means the same thing and is a fixed point.
        let formatted = sequin_lang::format_file(&file);
        let reparsed = sequin_lang::parse(&formatted).unwrap();
        prop_assert_eq!(&reparsed, &file, "fmt changed the meaning of {}", def);
        prop_assert_eq!(sequin_lang::format_file(&reparsed), formatted);
        let max = events.iter().map(|e| e.time).max().unwrap();
        let as_of = max + extra * SECOND - 20 * SECOND;
        let engine = engine_members(&def, "s", &events, as_of);
        let reference = reference_members(&def, "s", &events, as_of);
        prop_assert_eq!(engine, reference, "definition: {}", def);
    }
}

// ---- hand-checked semantics -----------------------------------------------------------

fn members(def: &str, events: &[Event], as_of_secs: i64) -> Vec<(String, i64)> {
    let as_of = T0 + as_of_secs * SECOND;
    let e = engine_members(def, "s", events, as_of);
    let r = reference_members(def, "s", events, as_of);
    assert_eq!(e, r, "engine and reference disagree on {def}");
    e.into_iter()
        .map(|m| (m.unit, (m.entered_at - T0) / SECOND))
        .collect()
}

#[test]
fn trailing_absence_with_within_enters_when_the_time_has_passed() {
    let evs = [event("u", "a", 0, &[]), event("u", "b", 15, &[])];
    let def = "segment s { sequence { a; not b within 10s } }";
    assert_eq!(members(def, &evs, 20), vec![("u".to_string(), 10)]);
    assert_eq!(members(def, &evs, 5), vec![]);
    let def = "segment s { sequence { a; not b within 20s } }";
    assert_eq!(members(def, &evs, 30), vec![]);
}

#[test]
fn untimed_trailing_absence_for_users_exits_when_the_event_arrives() {
    let evs = [event("u", "a", 0, &[]), event("u", "b", 15, &[])];
    let def = "segment s { sequence { a; not b } }";
    assert_eq!(members(def, &evs, 10), vec![("u".to_string(), 0)]);
    assert_eq!(members(def, &evs, 20), vec![]);
}

#[test]
fn session_absence_is_decided_when_the_session_closes() {
    let evs = [event("u", "a", 0, &[]), event("u", "c", 5, &[])];
    let def = "segment s of sessions { sequence { a; not b } }";
    // Closes at 5 + 30 = 35 s.
    assert_eq!(members(def, &evs, 34), vec![]);
    assert_eq!(
        members(def, &evs, 35),
        vec![("u@1709251200000".to_string(), 35)]
    );
    let def = "segment s of sessions { sequence { a as x; session_end within 5s of x } }";
    assert_eq!(
        members(def, &evs, 40),
        vec![("u@1709251200000".to_string(), 35)]
    );
}

#[test]
fn equal_timestamps_keep_arrival_order() {
    let evs = [event("u", "b", 0, &[]), event("u", "a", 0, &[])];
    assert_eq!(members("segment s { sequence { a; b } }", &evs, 1), vec![]);
    assert_eq!(
        members("segment s { sequence { b; a within 0s } }", &evs, 1),
        vec![("u".to_string(), 0)]
    );
}

#[test]
fn windows_slide_and_members_exit() {
    let evs = [event("u", "a", 0, &[]), event("u", "a", 10, &[])];
    let def = "segment s during last 15s { count(a) >= 2 }";
    assert_eq!(members(def, &evs, 12), vec![("u".to_string(), 10)]);
    // The first `a` leaves the window at 0 + 15 s.
    assert_eq!(members(def, &evs, 15), vec![]);
}

#[test]
fn next_means_the_very_next_event() {
    let evs = [
        event("u", "a", 0, &[]),
        event("u", "c", 1, &[]),
        event("u", "b", 2, &[]),
    ];
    assert_eq!(
        members("segment s { sequence { a; next b } }", &evs, 3),
        vec![]
    );
    assert_eq!(
        members("segment s { sequence { a; b within 2 events } }", &evs, 3),
        vec![("u".to_string(), 2)]
    );
}

// ---- live == batch --------------------------------------------------------------------

mod live {
    use super::*;
    use sequin_engine::live::{ChangeKind, LiveEngine, LiveOptions};
    use sequin_store::{Store, StoreOptions};

    /// A small deterministic generator for delivery order (splitmix64).
    struct Mix(u64);
    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Makes some events anonymous (`anon-uN`) and, for most such users, adds an identify
    /// that links the anonymous id to the user at a random point.
    fn with_identities(events: Vec<Event>, rng: &mut Mix) -> Vec<Event> {
        let mut out = Vec::with_capacity(events.len() + 3);
        let mut anon_users = std::collections::BTreeSet::new();
        for mut e in events {
            // A conversation or explicit session belongs to one user: never split between an
            // anonymous id and a user id that stay unlinked.
            if rng.below(3) == 0 && e.conversation_id.is_none() && e.session_id.is_none() {
                let u = e.user_id.take().unwrap();
                e.anonymous_id = Some(format!("anon-{u}").into());
                anon_users.insert(u);
            }
            out.push(e);
        }
        for u in anon_users {
            if rng.below(4) == 0 {
                continue; // stays a separate, anonymous unit
            }
            let anon = format!("anon-{u}");
            let positions: Vec<usize> = out
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.user_id.as_deref() == Some(u.as_str())
                        || e.anonymous_id.as_deref() == Some(anon.as_str())
                })
                .map(|(i, _)| i)
                .collect();
            let at = positions[rng.below(positions.len() as u64) as usize];
            let mut link = Event::new(u.clone(), out[at].time, "identify");
            link.kind = MessageKind::Identify;
            link.anonymous_id = Some(anon.into());
            out.insert(at, link);
        }
        out
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(
            dir,
            &StoreOptions {
                partitions: 3,
                // Tiny: flushes happen mid-stream, so late events are re-read from history.
                memtable_bytes: 1500,
                ..StoreOptions::default()
            },
        )
        .unwrap()
    }

    fn compile_all(defs: &[String]) -> Vec<Program> {
        defs.iter()
            .enumerate()
            .map(|(i, d)| {
                let src = d.replacen("segment s", &format!("segment s{i}"), 1);
                let file = sequin_lang::parse(&src).unwrap();
                Program::compile(&file, &format!("s{i}")).unwrap()
            })
            .collect()
    }

    fn start(store: &Store, programs: &[Program], lateness: i64) -> LiveEngine {
        let mut live = LiveEngine::new(LiveOptions {
            session_gap: GAP,
            lateness: lateness * SECOND,
        });
        live.rebuild_all(programs.to_vec(), &store.reader(), store.next_seq())
            .unwrap();
        live
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

        /// Out-of-order delivery, duplicates, small batches, flushes and a restart (store
        /// reopened from its log, engine rebuilt from history) in the middle: at the end,
        /// live membership equals batch membership at the same as-of, and replaying the
        /// change stream gives the same members and entry times.
        #[test]
        fn live_agrees_with_batch(
            defs in prop::collection::vec(definition_s(false), 1..4),
            events in events_s(),
            seed in any::<u64>(),
            lateness in 0i64..20,
            restart in any::<bool>(),
            extra in 0i64..60,
        ) {
            live_equals_batch(defs, events, seed, lateness, restart, extra)?;
        }

        /// The same with derived signals: detectors run inside both paths, and their state
        /// survives checkpoints, restarts and re-reads from history.
        #[test]
        fn live_agrees_with_batch_with_signals(
            defs in prop::collection::vec(definition_s(true), 1..4),
            events in signal_events_s(),
            seed in any::<u64>(),
            lateness in 0i64..20,
            restart in any::<bool>(),
            extra in 0i64..60,
        ) {
            live_equals_batch(defs, events, seed, lateness, restart, extra)?;
        }
    }

    fn live_equals_batch(
        defs: Vec<String>,
        events: Vec<Event>,
        seed: u64,
        lateness: i64,
        restart: bool,
        extra: i64,
    ) -> Result<(), TestCaseError> {
        for d in &defs {
            let file = sequin_lang::parse(d).unwrap();
            prop_assume!(
                sequin_lang::check(&file, None)
                    .iter()
                    .all(|d| !d.is_error())
            );
        }
        let programs = compile_all(&defs);
        let mut rng = Mix(seed);
        let events = with_identities(events, &mut rng);
        let mut events = events;
        for (i, e) in events.iter_mut().enumerate() {
            e.message_id = Some(format!("m{i}").into());
        }
        // Deliver in a locally shuffled order, with some events sent twice.
        let mut order: Vec<(u64, usize)> = (0..events.len())
            .map(|i| (i as u64 * 4 + rng.below(12), i))
            .collect();
        for i in 0..events.len() {
            if rng.below(6) == 0 {
                order.push((i as u64 * 4 + rng.below(40), i));
            }
        }
        order.sort();
        if std::env::var_os("SEQUIN_DEBUG").is_some() {
            for &(_, i) in &order {
                let e = &events[i];
                eprintln!(
                    "#{i} {:?} {} t={} user={:?} anon={:?} {:?}",
                    e.kind,
                    e.name,
                    (e.time - T0) / SECOND,
                    e.user_id,
                    e.anonymous_id,
                    e.properties
                );
            }
            eprintln!("lateness={lateness} restart={restart} extra={extra}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let mut live = start(&store, &programs, lateness);
        let mut changes = Vec::new();
        let mut k = 0;
        let restart_at = order.len() / 2;
        let checkpoint_at = rng.below(restart_at as u64 + 1) as usize;
        let mut checkpoint: Option<Vec<u8>> = None;
        let mut queue: std::collections::VecDeque<Vec<sequin_store::Accepted>> = Default::default();
        while k < order.len() {
            if checkpoint.is_none() && k >= checkpoint_at {
                checkpoint = Some(live.checkpoint());
            }
            let n = 1 + rng.below(4) as usize;
            let batch: Vec<Event> = order[k..(k + n).min(order.len())]
                .iter()
                .map(|&(_, i)| events[i].clone())
                .collect();
            let before = k;
            k += batch.len();
            let (_, accepted) = store.append_logged(vec![batch]).unwrap();
            store.flush_if_full().unwrap();
            // The evaluator may lag the writer: batches wait, and history read back for
            // a late event may already hold later events and links.
            queue.push_back(accepted);
            while !queue.is_empty() && (rng.below(3) > 0 || k == order.len()) {
                // One batch, or several at once as a server coalesces them.
                let take = (1 + rng.below(3) as usize).min(queue.len());
                let next: Vec<Vec<sequin_store::Accepted>> = queue.drain(..take).collect();
                if let [one] = next.as_slice() {
                    live.on_accepted(one, &store).unwrap();
                } else {
                    live.on_accepted_batches(&next, &store).unwrap();
                }
            }
            changes.extend(live.drain_changes());
            if restart && before < restart_at && k >= restart_at {
                // A crash loses what the evaluator had not reached.
                queue.clear();
                drop(store);
                store = open(dir.path());
                let next = live.next_change_seq();
                let previous = live;
                live = match checkpoint.take().filter(|_| rng.below(3) > 0) {
                    // Recovery: the checkpoint, then the log tail it does not cover.
                    Some(bytes) => {
                        let opts = LiveOptions {
                            session_gap: GAP,
                            lateness: lateness * SECOND,
                        };
                        let mut l = LiveEngine::restore(opts, programs.clone(), &bytes).unwrap();
                        let tail = store.events_since(l.processed_seq()).unwrap();
                        for chunk in tail.chunks(3) {
                            l.on_accepted(chunk, &store).unwrap();
                        }
                        l
                    }
                    None => start(&store, &programs, lateness),
                };
                live.set_next_change_seq(next);
                // A fresh engine announces every member once; the recovered state equals
                // the state before the restart.
                let _ = previous;
                changes.clear();
                live.drain_changes();
                for p in &programs {
                    for (u, &t) in live.members(&p.name).unwrap() {
                        changes.push(sequin_engine::live::Change {
                            seq: 0,
                            segment: p.name.clone(),
                            unit: u.clone(),
                            kind: ChangeKind::Enter,
                            time: t,
                        });
                    }
                }
            }
        }
        let max = events.iter().map(|e| e.time).max().unwrap();
        let as_of = max + extra * SECOND;
        live.advance(as_of);
        changes.extend(live.drain_changes());
        let opts = EvalOptions {
            as_of: Some(as_of),
            session_gap: GAP,
        };
        // Compacted, history holds every linked id's events under its user.
        store.compact().unwrap();
        let batch = evaluate(&store.reader(), &programs, &opts).unwrap();
        let mut replayed: HashMap<(String, String), i64> = HashMap::new();
        let mut last_seq = 0;
        for c in &changes {
            prop_assert!(c.seq == 0 || c.seq > last_seq, "change numbers increase");
            last_seq = last_seq.max(c.seq);
            match c.kind {
                ChangeKind::Enter => {
                    let prev = replayed.insert((c.segment.clone(), c.unit.clone()), c.time);
                    prop_assert!(prev.is_none(), "enter while a member: {:?}", c);
                }
                ChangeKind::Exit => {
                    let prev = replayed.remove(&(c.segment.clone(), c.unit.clone()));
                    prop_assert!(prev.is_some(), "exit while not a member: {:?}", c);
                }
            }
        }
        for (p, seg) in programs.iter().zip(&batch.segments) {
            let live_members: Vec<Member> = live
                .members(&p.name)
                .unwrap()
                .iter()
                .map(|(u, &t)| Member {
                    unit: u.clone(),
                    entered_at: t,
                })
                .collect();
            prop_assert_eq!(&live_members, &seg.members, "definition {}", p.name);
            let mut from_changes: Vec<Member> = replayed
                .iter()
                .filter(|((s, _), _)| *s == p.name)
                .map(|((_, u), &t)| Member {
                    unit: u.clone(),
                    entered_at: t,
                })
                .collect();
            from_changes.sort();
            prop_assert_eq!(&from_changes, &seg.members, "change stream of {}", p.name);
        }
        Ok(())
    }
}
