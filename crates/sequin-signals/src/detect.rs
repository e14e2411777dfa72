//! The detectors' per-user state and rules. Every rule is stated in `docs/signals.md`; the
//! comments here say only why the code is shaped as it is.

use std::collections::VecDeque;

use sequin_core::{Text, Value};
use serde::{Deserialize, Serialize};

use crate::text;
use crate::{Field, Input, Plan, Signal, SignalKind};

const ERROR_EVENTS: &[&str] = &[
    "error",
    "$exception",
    "exception",
    "app_error",
    "js_error",
    "api_error",
];
const CLICK_EVENTS: &[&str] = &[
    "click",
    "$click",
    "tap",
    "element_clicked",
    "button_click",
    "$mp_click",
    "[Amplitude] Element Clicked",
];
const FORM_EVENTS: &[&str] = &[
    "form_submit",
    "form_submitted",
    "$form_submit",
    "submit",
    "[Amplitude] Form Submitted",
];
const USER_MESSAGES: &[&str] = &["user_message", "user_msg", "message_user"];
const AGENT_MESSAGES: &[&str] = &[
    "agent_message",
    "assistant_message",
    "bot_message",
    "ai_message",
];
const TOOL_EVENTS: &[&str] = &[
    "tool_call",
    "tool_result",
    "execute_tool",
    "function_call",
    "tool_response",
];
const ESCALATION_EVENTS: &[&str] = &[
    "escalation",
    "escalated",
    "handoff",
    "human_handoff",
    "transfer_to_human",
];
const RESOLUTION_EVENTS: &[&str] = &[
    "resolved",
    "resolution",
    "conversation_resolved",
    "issue_resolved",
    "ticket_resolved",
];
/// Emits a signal of a kind with its properties, timed at the current event.
type Emit<'a> = dyn Fn(&mut Vec<Signal>, SignalKind, Vec<(&'static str, Value)>) + 'a;

const ELEMENT_FIELDS: &[&str] = &[
    "element_id",
    "element",
    "selector",
    "$el_text",
    "[Amplitude] Element Text",
];
const X_FIELDS: &[&str] = &["x", "$x"];
const Y_FIELDS: &[&str] = &["y", "$y"];
const CODE_FIELDS: &[&str] = &["code", "error_code"];
const FORM_FIELDS: &[&str] = &["form_id", "form"];
const TOOL_FIELDS: &[&str] = &["tool_name", "gen_ai.tool.name"];
const TEXT_FIELDS: &[&str] = &["text", "content"];
/// Single fields read by name.
const OTHER_FIELDS: &[&str] = &[
    "$event_type",
    "silent",
    "message",
    "role",
    "status",
    "error.type",
    "error",
    "resolved",
];

/// Every property the rules read: the columns batch evaluation loads for them.
pub fn input_fields() -> Vec<&'static str> {
    [
        ELEMENT_FIELDS,
        X_FIELDS,
        Y_FIELDS,
        PAGE_FIELDS,
        LOAD_FIELDS,
        CODE_FIELDS,
        FORM_FIELDS,
        TOOL_FIELDS,
        TEXT_FIELDS,
        OTHER_FIELDS,
    ]
    .concat()
}

/// Where a view's page identity is found, in order.
const PAGE_FIELDS: &[&str] = &[
    "page",
    "screen",
    "path",
    "url",
    "$pathname",
    "$screen_name",
    "[Amplitude] Page Path",
    "$current_url",
];
const LOAD_FIELDS: &[&str] = &["load_time_ms", "render_ms", "load_ms", "lcp_ms"];
/// Conversations whose state is kept per user; the least recently active is dropped first.
const MAX_CONVERSATIONS: usize = 16;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Click {
    t: i64,
    x: Option<f64>,
    y: Option<f64>,
    element: Option<String>,
    session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingDead {
    deadline: i64,
    element: Option<String>,
    session: Option<String>,
    conversation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Conversation {
    id: Option<String>,
    last_active: i64,
    /// The user's previous message (its first 1,000 bytes).
    last_user: String,
    escalated: bool,
    resolved: bool,
    /// The user's last message closed the conversation ("thanks, that's all").
    user_closed: bool,
    /// When the user's silence after the agent's last turn becomes a premature exit.
    exit_deadline: Option<i64>,
    session: Option<String>,
}

/// One user's detector state. Encodes with serde, so the live server can keep it compact
/// between events and checkpoint it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DetectorState {
    last_click: Option<Click>,
    burst: usize,
    burst_fired: bool,
    dead: Vec<PendingDead>,
    views: VecDeque<(i64, String)>,
    page: Option<(String, i64)>,
    previous_page: Option<String>,
    forms: Vec<(String, i64)>,
    conversations: Vec<Conversation>,
}

fn text_of(ev: &dyn Input, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| ev.field(k).and_then(Field::text))
}

/// The first of `keys` present, with its type kept (whole numbers as integers).
fn value_of(ev: &dyn Input, keys: &[&str]) -> Option<Value> {
    keys.iter().find_map(|k| {
        ev.field(k).map(|f| match f {
            Field::Str(s) => Value::Str(s.into()),
            Field::Bool(b) => Value::Bool(b),
            Field::Num(x) if x.fract() == 0.0 && x.abs() < 9e15 => Value::Int(x as i64),
            Field::Num(x) => Value::Float(x),
        })
    })
}

fn num_of(ev: &dyn Input, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| ev.field(k).and_then(Field::num))
}

fn opt_str(v: Option<String>) -> Value {
    v.map_or(Value::Str(Text::default()), |s| Value::Str(s.into()))
}

impl DetectorState {
    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<i64> {
        let dead = self.dead.iter().map(|d| d.deadline);
        let exits = self.conversations.iter().filter_map(|c| c.exit_deadline);
        dead.chain(exits).min()
    }

    /// Is there nothing to remember?
    pub fn is_empty(&self) -> bool {
        *self == DetectorState::default()
    }

    pub(crate) fn fire(&mut self, plan: &Plan, due: impl Fn(i64) -> bool, out: &mut Vec<Signal>) {
        // Deadlines fire in time order, so the signals come out sorted.
        let mut fired: Vec<Signal> = Vec::new();
        self.dead.retain(|d| {
            if !due(d.deadline) {
                return true;
            }
            if plan.wants(SignalKind::DeadClick) {
                fired.push(Signal {
                    kind: SignalKind::DeadClick,
                    time: d.deadline,
                    session_id: d.session.clone(),
                    conversation_id: d.conversation.clone(),
                    props: vec![("element_id", opt_str(d.element.clone()))],
                });
            }
            false
        });
        for c in &mut self.conversations {
            if let Some(d) = c.exit_deadline.filter(|&d| due(d)) {
                c.exit_deadline = None;
                if plan.wants(SignalKind::PrematureExit) {
                    fired.push(Signal {
                        kind: SignalKind::PrematureExit,
                        time: d,
                        session_id: c.session.clone(),
                        conversation_id: c.id.clone(),
                        props: vec![(
                            "idle_s",
                            Value::Int(plan.config().premature_idle / 1_000_000),
                        )],
                    });
                }
            }
        }
        fired.sort_by_key(|s| s.time);
        out.extend(fired);
    }

    pub(crate) fn on_event(&mut self, plan: &Plan, ev: &dyn Input, out: &mut Vec<Signal>) {
        let cfg = plan.config();
        let t = ev.time();
        let name = ev.name();
        let session = ev.session_id();
        let conversation = ev.conversation_id();
        let emit = |out: &mut Vec<Signal>, kind: SignalKind, props: Vec<(&'static str, Value)>| {
            if plan.wants(kind) {
                out.push(Signal {
                    kind,
                    time: t,
                    session_id: session.map(str::to_string),
                    conversation_id: conversation.map(str::to_string),
                    props,
                });
            }
        };
        // Only the rules some wanted signal needs run (the plan is fixed per definition, in
        // batch and live alike, so the state stays the same in both).
        use SignalKind as K;
        let any = |kinds: &[SignalKind]| kinds.iter().any(|&k| plan.wants(k));
        let clicks = any(&[K::RageClick, K::DeadClick, K::ErrorClick]);
        // PostHog autocapture tags the DOM event type.
        let is_click = clicks
            && (CLICK_EVENTS.contains(&name)
                || (name == "$autocapture"
                    && ev.field("$event_type") == Some(Field::Str("click"))));
        if is_click {
            let click = Click {
                t,
                x: num_of(ev, X_FIELDS),
                y: num_of(ev, Y_FIELDS),
                element: text_of(ev, ELEMENT_FIELDS),
                session: session.map(str::to_string),
            };
            let joins = self.last_click.as_ref().is_some_and(|p| {
                let close = match (p.x, p.y, click.x, click.y) {
                    (Some(px), Some(py), Some(x), Some(y)) => {
                        (px - x).hypot(py - y) <= cfg.rage_distance
                    }
                    _ => p.element == click.element,
                };
                t - p.t <= cfg.rage_within && close
            });
            if joins {
                self.burst += 1;
            } else {
                self.burst = 1;
                self.burst_fired = false;
            }
            if self.burst >= cfg.rage_clicks && !self.burst_fired {
                self.burst_fired = true;
                let mut props = vec![
                    ("element_id", opt_str(click.element.clone())),
                    ("clicks", Value::Int(self.burst as i64)),
                ];
                if let (Some(x), Some(y)) = (click.x, click.y) {
                    props.push(("x", Value::Float(x)));
                    props.push(("y", Value::Float(y)));
                }
                emit(out, SignalKind::RageClick, props);
            }
            if plan.wants(K::DeadClick) {
                self.dead.push(PendingDead {
                    deadline: t.saturating_add(cfg.dead_within),
                    element: click.element.clone(),
                    session: session.map(str::to_string),
                    conversation: conversation.map(str::to_string),
                });
            }
            self.last_click = Some(click);
        } else if !self.dead.is_empty() {
            // Any other event answers the clicks still waiting for a response.
            self.dead.retain(|d| d.deadline < t);
        }

        let is_error = any(&[K::Error, K::ErrorClick]) && ERROR_EVENTS.contains(&name);
        if is_error {
            let code = value_of(ev, CODE_FIELDS);
            let silent = ev.field("silent").is_some_and(Field::truthy);
            let mut props = vec![
                ("code", code.clone().unwrap_or(Value::Str(Text::default()))),
                ("silent", Value::Bool(silent)),
            ];
            if let Some(m) = text_of(ev, &["message"]) {
                props.push(("message", Value::Str(m.into())));
            }
            emit(out, SignalKind::Error, props);
            if let Some(c) = &self.last_click
                && t - c.t <= cfg.error_click_within
            {
                emit(
                    out,
                    SignalKind::ErrorClick,
                    vec![
                        ("element_id", opt_str(c.element.clone())),
                        ("code", code.unwrap_or(Value::Str(Text::default()))),
                    ],
                );
            }
        }

        if plan.wants(K::SlowLoad)
            && let Some(ms) = num_of(ev, LOAD_FIELDS)
            && ms * 1000.0 >= cfg.slow_threshold as f64
        {
            let mut props = vec![("event", Value::Str(name.into())), ("ms", Value::Float(ms))];
            if let Some(p) = text_of(ev, PAGE_FIELDS) {
                props.push(("page", Value::Str(p.into())));
            }
            emit(out, SignalKind::SlowLoad, props);
        }

        if plan.wants(K::FormResubmission) && FORM_EVENTS.contains(&name) {
            let form = text_of(ev, FORM_FIELDS).unwrap_or_default();
            self.forms.retain(|(_, last)| t - *last <= cfg.form_within);
            match self.forms.iter_mut().find(|(f, _)| *f == form) {
                Some((_, last)) => {
                    *last = t;
                    emit(
                        out,
                        SignalKind::FormResubmission,
                        vec![("form_id", Value::Str(form.into()))],
                    );
                }
                None => self.forms.push((form, t)),
            }
        }

        if any(&[K::PageLoop, K::QuickBack])
            && ev.is_view()
            && let Some(page) = text_of(ev, PAGE_FIELDS)
        {
            self.view(plan, t, page, out, &emit);
        }

        let agent = [
            K::Escalation,
            K::Rephrase,
            K::AggressiveReply,
            K::PrematureExit,
            K::ToolFailure,
            K::Resolution,
        ];
        if any(&agent) {
            self.conversation_event(plan, ev, out, &emit);
        }
    }

    fn view(&mut self, plan: &Plan, t: i64, page: String, out: &mut Vec<Signal>, emit: &Emit<'_>) {
        let cfg = plan.config();
        while self
            .views
            .front()
            .is_some_and(|(v, _)| t - *v > cfg.loop_within)
        {
            self.views.pop_front();
        }
        self.views.push_back((t, page.clone()));
        let same = self.views.iter().filter(|(_, p)| *p == page).count();
        if same >= cfg.loop_views {
            // One signal per loop: the views that made it are used up.
            self.views.retain(|(_, p)| *p != page);
            emit(
                out,
                SignalKind::PageLoop,
                vec![
                    ("page", Value::Str(page.as_str().into())),
                    ("views", Value::Int(same as i64)),
                ],
            );
        }
        match self.page.take() {
            Some((current, entered)) if current != page => {
                if self.previous_page.as_deref() == Some(page.as_str())
                    && t - entered < cfg.quick_back_dwell
                {
                    emit(
                        out,
                        SignalKind::QuickBack,
                        vec![
                            ("page", Value::Str(current.as_str().into())),
                            ("dwell_ms", Value::Int((t - entered) / 1000)),
                        ],
                    );
                }
                self.previous_page = Some(current);
                self.page = Some((page, t));
            }
            Some(same_page) => self.page = Some(same_page), // a reload: still on the page
            None => self.page = Some((page, t)),
        }
    }

    fn conversation_event(
        &mut self,
        plan: &Plan,
        ev: &dyn Input,
        out: &mut Vec<Signal>,
        emit: &Emit<'_>,
    ) {
        let cfg = plan.config();
        let name = ev.name();
        let role = text_of(ev, &["role"]).map(|r| r.to_ascii_lowercase());
        let tool = text_of(ev, TOOL_FIELDS);
        let is_tool = TOOL_EVENTS.contains(&name) || tool.is_some();
        let is_user = !is_tool
            && (USER_MESSAGES.contains(&name)
                || (role.as_deref() == Some("user") && !name.contains("system")));
        let is_agent = !is_tool
            && !is_user
            && (AGENT_MESSAGES.contains(&name)
                || matches!(role.as_deref(), Some("assistant" | "agent" | "bot" | "ai")));
        let is_escalation_event = ESCALATION_EVENTS.contains(&name);
        let is_resolution =
            RESOLUTION_EVENTS.contains(&name) || ev.field("resolved").is_some_and(Field::truthy);
        if !(is_tool || is_user || is_agent || is_escalation_event || is_resolution) {
            return;
        }
        let t = ev.time();
        let id = ev.conversation_id().map(str::to_string);
        let k = match self.conversations.iter().position(|c| c.id == id) {
            Some(k) => k,
            None => {
                if self.conversations.len() >= MAX_CONVERSATIONS {
                    let oldest = (0..self.conversations.len())
                        .min_by_key(|&i| self.conversations[i].last_active)
                        .expect("non-empty");
                    self.conversations.remove(oldest);
                }
                self.conversations.push(Conversation {
                    id,
                    ..Conversation::default()
                });
                self.conversations.len() - 1
            }
        };
        let conv = &mut self.conversations[k];
        conv.last_active = t;
        conv.session = ev.session_id().map(str::to_string);

        let escalation_tool = tool
            .as_deref()
            .is_some_and(|n| cfg.escalation_tools.iter().any(|e| e == n));
        if (escalation_tool || is_escalation_event) && !conv.escalated {
            conv.escalated = true;
            conv.exit_deadline = None;
            let how = if escalation_tool {
                tool.clone().unwrap_or_default()
            } else {
                name.to_string()
            };
            emit(
                out,
                SignalKind::Escalation,
                vec![("via", Value::Str(how.into()))],
            );
        }
        if is_tool {
            let status = text_of(ev, &["status"]).map(|s| s.to_ascii_lowercase());
            let error_type = text_of(ev, &["error.type"]);
            let error_flag = ev.field("error").is_some_and(|f| match f {
                Field::Str(s) => !s.is_empty() && s != "false",
                other => other.truthy(),
            });
            let result_text = text_of(ev, TEXT_FIELDS).unwrap_or_default();
            let failed = matches!(
                status.as_deref(),
                Some("error" | "failed" | "failure" | "timeout")
            ) || error_type.is_some()
                || error_flag
                || result_text.trim_start().starts_with("Error");
            if failed {
                emit(
                    out,
                    SignalKind::ToolFailure,
                    vec![
                        ("tool_name", opt_str(tool.clone())),
                        ("error_type", opt_str(error_type.or(status))),
                    ],
                );
            }
        }
        if is_resolution && !conv.resolved {
            conv.resolved = true;
            conv.exit_deadline = None;
            emit(out, SignalKind::Resolution, vec![]);
        }
        if is_user {
            let said = text_of(ev, TEXT_FIELDS).unwrap_or_default();
            if text::is_only_marker(&said) {
                return; // the user left without a word: the exit deadline stands
            }
            conv.exit_deadline = None;
            conv.user_closed = text::is_closing(&said);
            if let Some(s) =
                text::rephrase_similarity(&conv.last_user, &said, cfg.rephrase_min_words)
                && s >= cfg.rephrase_similarity
            {
                let s = (s * 1000.0).round() / 1000.0;
                emit(
                    out,
                    SignalKind::Rephrase,
                    vec![("similarity", Value::Float(s))],
                );
            }
            if !text::content_words(&said).is_empty() {
                let mut keep = said.len().min(1000);
                while !said.is_char_boundary(keep) {
                    keep -= 1;
                }
                conv.last_user = said[..keep].to_string();
            }
            if let Some(n) = text::is_aggressive(&said, cfg.aggressive_max_words) {
                emit(
                    out,
                    SignalKind::AggressiveReply,
                    vec![("words", Value::Int(n as i64))],
                );
            }
        } else if (is_agent || is_tool) && !conv.resolved && !conv.escalated && !conv.user_closed {
            conv.exit_deadline = Some(t.saturating_add(cfg.premature_idle));
        }
    }
}
