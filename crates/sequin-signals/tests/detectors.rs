//! Each detector on hand-made streams (what fires, when, and what does not), and the
//! incremental contract: feeding in pieces, with the state encoded and decoded between
//! pieces and "now" settled at arbitrary points, gives exactly the signals of one pass.

use std::sync::Arc;

use proptest::prelude::*;
use sequin_core::Value;
use sequin_signals::{Config, DetectorState, Field, Input, Plan, Signal, SignalKind};

const S: i64 = 1_000_000;

#[derive(Debug, Clone)]
struct Ev {
    t: i64,
    name: &'static str,
    view: bool,
    fields: Vec<(&'static str, Owned)>,
    conversation: Option<String>,
}

#[derive(Debug, Clone)]
enum Owned {
    S(String),
    N(f64),
    B(bool),
}

impl Input for Ev {
    fn time(&self) -> i64 {
        self.t
    }
    fn name(&self) -> &str {
        self.name
    }
    fn is_view(&self) -> bool {
        self.view
    }
    fn field(&self, key: &str) -> Option<Field<'_>> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| match v {
                Owned::S(s) => Field::Str(s),
                Owned::N(x) => Field::Num(*x),
                Owned::B(b) => Field::Bool(*b),
            })
    }
    fn session_id(&self) -> Option<&str> {
        None
    }
    fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_deref()
    }
}

fn ev(ms: i64, name: &'static str) -> Ev {
    Ev {
        t: ms * 1000,
        name,
        view: false,
        fields: Vec::new(),
        conversation: None,
    }
}

impl Ev {
    fn s(mut self, k: &'static str, v: &str) -> Ev {
        self.fields.push((k, Owned::S(v.to_string())));
        self
    }
    fn n(mut self, k: &'static str, v: f64) -> Ev {
        self.fields.push((k, Owned::N(v)));
        self
    }
    fn b(mut self, k: &'static str, v: bool) -> Ev {
        self.fields.push((k, Owned::B(v)));
        self
    }
    fn view(mut self, page: &str) -> Ev {
        self.view = true;
        self.s("page", page)
    }
    fn conv(mut self, id: &str) -> Ev {
        self.conversation = Some(id.to_string());
        self
    }
}

fn click(ms: i64, element: &str, x: f64, y: f64) -> Ev {
    ev(ms, "click").s("element_id", element).n("x", x).n("y", y)
}

fn user(ms: i64, text: &str) -> Ev {
    ev(ms, "user_message")
        .s("role", "user")
        .s("text", text)
        .conv("c")
}

fn agent(ms: i64) -> Ev {
    ev(ms, "agent_message")
        .s("role", "assistant")
        .s("text", "Let me check that for you.")
        .conv("c")
}

/// One pass: `before` each timestamp group, every event, then settle at `now_ms`.
fn run(config: Config, events: &[Ev], now_ms: i64) -> Vec<Signal> {
    let now = now_ms * 1000;
    let plan = Plan::all(Arc::new(config));
    let mut st = DetectorState::default();
    let mut out = Vec::new();
    for e in events {
        plan.before(&mut st, e.t, &mut out);
        plan.on_event(&mut st, e, &mut out);
    }
    plan.settle(&mut st, now, &mut out);
    out
}

fn kinds(signals: &[Signal], kind: SignalKind) -> Vec<i64> {
    signals
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.time / 1000)
        .collect()
}

#[test]
fn rage_click_needs_three_close_fast_clicks_and_fires_once_per_burst() {
    let evs = [
        click(0, "b", 100.0, 100.0),
        click(300, "b", 105.0, 98.0),
        click(600, "b", 110.0, 100.0),
        click(900, "b", 112.0, 101.0),
    ];
    let out = run(Config::default(), &evs, 10_000);
    assert_eq!(kinds(&out, SignalKind::RageClick), vec![600]);
    let rage = out
        .iter()
        .find(|s| s.kind == SignalKind::RageClick)
        .unwrap();
    assert_eq!(rage.prop("element_id"), Some(&Value::Str("b".into())));
    // Too slow, or too far apart: nothing.
    let slow = [
        click(0, "b", 0.0, 0.0),
        click(1200, "b", 0.0, 0.0),
        click(2400, "b", 0.0, 0.0),
    ];
    assert!(kinds(&run(Config::default(), &slow, 9_000), SignalKind::RageClick).is_empty());
    let far = [
        click(0, "b", 0.0, 0.0),
        click(200, "b", 50.0, 0.0),
        click(400, "b", 100.0, 0.0),
    ];
    assert!(kinds(&run(Config::default(), &far, 9_000), SignalKind::RageClick).is_empty());
    // Without coordinates the element decides.
    let bare = [
        ev(0, "click").s("element_id", "x"),
        ev(100, "click").s("element_id", "x"),
        ev(200, "click").s("element_id", "x"),
    ];
    assert_eq!(
        kinds(&run(Config::default(), &bare, 9_000), SignalKind::RageClick),
        vec![200]
    );
    // The setting counts: four clicks needed.
    let cfg = Config {
        rage_clicks: 4,
        ..Config::default()
    };
    assert_eq!(
        kinds(&run(cfg, &evs, 10_000), SignalKind::RageClick),
        vec![900]
    );
}

#[test]
fn dead_click_fires_at_its_deadline_unless_something_answers() {
    let answered = [click(0, "b", 0.0, 0.0), ev(2000, "page_view").view("next")];
    assert!(
        kinds(
            &run(Config::default(), &answered, 60_000),
            SignalKind::DeadClick
        )
        .is_empty()
    );
    let dead = [click(0, "b", 0.0, 0.0), ev(2600, "page_view").view("next")];
    assert_eq!(
        kinds(
            &run(Config::default(), &dead, 60_000),
            SignalKind::DeadClick
        ),
        vec![2500]
    );
    // Not yet decided while "now" is inside the window.
    let open = [click(0, "b", 0.0, 0.0)];
    assert!(kinds(&run(Config::default(), &open, 2_000), SignalKind::DeadClick).is_empty());
    assert_eq!(
        kinds(&run(Config::default(), &open, 2_500), SignalKind::DeadClick),
        vec![2500]
    );
    // An answer exactly at the deadline still counts.
    let edge = [click(0, "b", 0.0, 0.0), ev(2500, "checkout_start")];
    assert!(
        kinds(
            &run(Config::default(), &edge, 60_000),
            SignalKind::DeadClick
        )
        .is_empty()
    );
}

#[test]
fn errors_error_clicks_and_silent_errors() {
    let evs = [
        click(0, "pay", 0.0, 0.0),
        ev(1500, "error").n("code", 4022.0).b("silent", false),
        ev(9000, "error").n("code", 500.0).b("silent", true),
    ];
    let out = run(Config::default(), &evs, 20_000);
    assert_eq!(kinds(&out, SignalKind::Error), vec![1500, 9000]);
    assert_eq!(kinds(&out, SignalKind::ErrorClick), vec![1500]);
    let silent = out
        .iter()
        .filter(|s| s.kind == SignalKind::Error)
        .map(|s| s.prop("silent").cloned())
        .collect::<Vec<_>>();
    assert_eq!(
        silent,
        vec![Some(Value::Bool(false)), Some(Value::Bool(true))]
    );
    let code = out
        .iter()
        .find(|s| s.kind == SignalKind::ErrorClick)
        .unwrap()
        .prop("code");
    assert_eq!(code, Some(&Value::Int(4022)));
}

#[test]
fn slow_loads_read_load_and_render_times() {
    let evs = [
        ev(0, "page_view").view("home").n("load_time_ms", 3999.0),
        ev(10, "page_view").view("cart").n("load_time_ms", 4000.0),
        ev(20, "payment_step_view").n("render_ms", 9000.0),
    ];
    let out = run(Config::default(), &evs, 100);
    assert_eq!(kinds(&out, SignalKind::SlowLoad), vec![10, 20]);
    assert_eq!(
        out.iter()
            .filter(|s| s.kind == SignalKind::SlowLoad)
            .map(|s| s.prop("event").cloned().unwrap())
            .collect::<Vec<_>>(),
        vec![
            Value::Str("page_view".into()),
            Value::Str("payment_step_view".into())
        ]
    );
}

#[test]
fn form_resubmission_page_loop_and_quick_back() {
    let forms = [
        ev(0, "form_submit").s("form_id", "shipping"),
        ev(5_000, "form_submit").s("form_id", "billing"),
        ev(20_000, "form_submit").s("form_id", "shipping"),
        ev(200_000, "form_submit").s("form_id", "shipping"),
    ];
    let out = run(Config::default(), &forms, 300_000);
    assert_eq!(kinds(&out, SignalKind::FormResubmission), vec![20_000]);

    let pages = [
        ev(0, "page_view").view("a"),
        ev(1_000, "page_view").view("b"),
        ev(2_000, "page_view").view("a"), // back to a after 1 s on b
        ev(3_000, "page_view").view("b"), // back to b after 1 s on a
        ev(4_000, "page_view").view("a"), // a seen 3 times in 15 s: a loop
        ev(30_000, "page_view").view("c"),
        ev(60_000, "page_view").view("a"), // 30 s on c: not quick
    ];
    let out = run(Config::default(), &pages, 100_000);
    // a → b → a → b → a, a second on each: every return is quick.
    assert_eq!(
        kinds(&out, SignalKind::QuickBack),
        vec![2_000, 3_000, 4_000]
    );
    assert_eq!(kinds(&out, SignalKind::PageLoop), vec![4_000]);
}

#[test]
fn agent_signals_on_a_frustrated_conversation() {
    let evs = [
        user(0, "I want a refund for order 77, the lamp arrived broken."),
        agent(2_000),
        ev(3_000, "tool_call")
            .s("tool_name", "refund_order")
            .s("status", "error")
            .conv("c"),
        user(20_000, "Please refund order 77. The lamp I got is broken."),
        agent(22_000),
        user(30_000, "This is useless."),
        ev(31_000, "tool_call")
            .s("tool_name", "transfer_to_human_agents")
            .conv("c"),
        ev(31_500, "escalation").conv("c"),
    ];
    let out = run(Config::default(), &evs, 3_600_000);
    assert_eq!(kinds(&out, SignalKind::Rephrase), vec![20_000]);
    assert_eq!(kinds(&out, SignalKind::AggressiveReply), vec![30_000]);
    assert_eq!(kinds(&out, SignalKind::ToolFailure), vec![3_000]);
    // The tool call and the event are one escalation.
    assert_eq!(kinds(&out, SignalKind::Escalation), vec![31_000]);
    // Escalated, so leaving afterwards is not a premature exit.
    assert!(kinds(&out, SignalKind::PrematureExit).is_empty());
}

#[test]
fn premature_exit_is_silence_after_an_agent_turn_without_resolution() {
    let left = [user(0, "Where is my order 12?"), agent(2_000)];
    assert_eq!(
        kinds(
            &run(Config::default(), &left, 3_600_000),
            SignalKind::PrematureExit
        ),
        vec![302_000]
    );
    // Only an end marker is still silence.
    let marker = [
        user(0, "Where is my order 12?"),
        agent(2_000),
        user(3_000, "###STOP###"),
    ];
    assert_eq!(
        kinds(
            &run(Config::default(), &marker, 3_600_000),
            SignalKind::PrematureExit
        ),
        vec![302_000]
    );
    // The user answered, or the conversation was resolved: none.
    let answered = [
        user(0, "Where is my order 12?"),
        agent(2_000),
        user(9_000, "Thanks, bye!"),
    ];
    assert!(
        kinds(
            &run(Config::default(), &answered, 3_600_000),
            SignalKind::PrematureExit
        )
        .is_empty()
    );
    let resolved = [
        user(0, "Where is my order 12?"),
        agent(2_000),
        ev(2_500, "resolved").conv("c"),
    ];
    let out = run(Config::default(), &resolved, 3_600_000);
    assert!(kinds(&out, SignalKind::PrematureExit).is_empty());
    assert_eq!(kinds(&out, SignalKind::Resolution), vec![2_500]);
}

#[test]
fn short_polite_answers_are_not_rephrases() {
    let evs = [user(0, "Yes."), agent(1_000), user(2_000, "Yes.")];
    assert!(kinds(&run(Config::default(), &evs, 10_000), SignalKind::Rephrase).is_empty());
}

// ---- incremental == one pass ------------------------------------------------------------

fn event_s() -> impl Strategy<Value = Vec<Ev>> {
    let one = (0usize..9, 0i64..6, 0usize..4);
    prop::collection::vec(one, 1..40).prop_map(|raw| {
        let mut t = 0;
        raw.into_iter()
            .map(|(kind, step, v)| {
                t += [0, 100, 400, 1_000, 3_000, 20_000][step as usize];
                let texts = [
                    "refund broken order",
                    "refund the broken order",
                    "useless!!",
                    "###STOP###",
                ];
                match kind {
                    0 | 1 => click(t, ["a", "b"][v % 2], (v * 10) as f64, 0.0),
                    2 => ev(t, "page_view")
                        .view(["p", "q", "r"][v % 3])
                        .n("load_time_ms", (v * 2000) as f64),
                    3 => ev(t, "error").n("code", v as f64),
                    4 => ev(t, "form_submit").s("form_id", ["f", "g"][v % 2]),
                    5 => user(t, texts[v]),
                    6 => agent(t),
                    7 => ev(t, "tool_call")
                        .s("tool_name", ["search", "transfer_to_human_agents"][v % 2])
                        .s("status", ["ok", "error"][v / 2 % 2])
                        .conv("c"),
                    _ => ev(t, "other"),
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn feeding_in_pieces_with_state_round_trips_equals_one_pass(
        events in event_s(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        nows in prop::collection::vec(0i64..5_000, 0..6),
        tail in 0i64..400_000,
    ) {
        let config = Config { premature_idle: 60 * S, ..Config::default() };
        let last = events.last().unwrap().t;
        let now_ms = last / 1000 + tail;
        let now = now_ms * 1000;
        let whole = run(config.clone(), &events, now_ms);

        let plan = Plan::all(Arc::new(config));
        let mut cut_at: Vec<usize> = cuts.iter().map(|i| i.index(events.len())).collect();
        cut_at.sort();
        let mut st = DetectorState::default();
        let mut out = Vec::new();
        let mut k = 0;
        for (c, &at) in cut_at.iter().enumerate() {
            while k < at {
                plan.before(&mut st, events[k].t, &mut out);
                plan.on_event(&mut st, &events[k], &mut out);
                k += 1;
            }
            // A watermark that trails the next event: deadlines before it fire now.
            if let Some(&gap) = nows.get(c)
                && k < events.len()
            {
                let wm = (events[k].t - gap * 1000).max(if k > 0 { events[k - 1].t } else { i64::MIN });
                if wm < events[k].t {
                    plan.settle(&mut st, wm, &mut out);
                }
            }
            let bytes = serde_json::to_vec(&st).unwrap();
            st = serde_json::from_slice(&bytes).unwrap();
        }
        while k < events.len() {
            plan.before(&mut st, events[k].t, &mut out);
            plan.on_event(&mut st, &events[k], &mut out);
            k += 1;
        }
        plan.settle(&mut st, now, &mut out);
        prop_assert_eq!(out, whole);
    }
}

proptest! {
    /// A definition naming one signal runs only the rules that signal needs; it finds
    /// exactly what detecting everything finds for that signal.
    #[test]
    fn a_plan_for_one_signal_finds_what_the_full_plan_finds(
        events in event_s(),
        which in 0usize..SignalKind::ALL.len(),
        tail in 0i64..400_000,
    ) {
        let config = Arc::new(Config { premature_idle: 60 * S, ..Config::default() });
        let kind = SignalKind::ALL[which];
        let now = (events.last().unwrap().t / 1000 + tail) * 1000;
        let run_plan = |plan: &Plan| {
            let mut st = DetectorState::default();
            let mut out = Vec::new();
            for e in &events {
                plan.before(&mut st, e.t, &mut out);
                plan.on_event(&mut st, e, &mut out);
            }
            plan.settle(&mut st, now, &mut out);
            out
        };
        let all: Vec<Signal> = run_plan(&Plan::all(config.clone()))
            .into_iter()
            .filter(|s| s.kind == kind)
            .collect();
        let one = Plan::for_names(config, [kind.event_name()]).unwrap();
        prop_assert_eq!(run_plan(&one), all);
    }
}
