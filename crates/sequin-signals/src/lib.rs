//! Signal detectors: derived `signal.<name>` events computed from a unit's raw events.
//!
//! A signal is usable anywhere an event name is (`did signal.rage_click`,
//! `count(signal.rephrase) >= 2`). The detectors are incremental state machines over one
//! user's events in (time, arrival) order, so batch evaluation and the live server run the
//! very same code and get the very same signals:
//!
//! 1. [`Plan::before`] with the next event time `t` emits signals whose deadline is before
//!    `t` (a dead click whose window passed with no response);
//! 2. [`Plan::on_event`] for each event emits the signals it completes (the third click of
//!    a rage click), timed at that event;
//! 3. [`Plan::settle`] with "now" emits every deadline at or before now.
//!
//! Settings come from `signal NAME { key value }` blocks of the segment file, with the
//! defaults of [`sequin_core::signal::SIGNALS`]. `docs/signals.md` states every rule.

mod detect;
pub mod text;

use std::sync::Arc;

use sequin_core::Value;
use sequin_core::signal::{self, Setting};
use sequin_core::time::Micros;
use sequin_lang::ast::{SegFile, SettingValue};
use sequin_lang::diag::Diagnostic;

pub use detect::{DetectorState, input_fields};

/// Every signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum SignalKind {
    RageClick,
    DeadClick,
    ErrorClick,
    SlowLoad,
    Error,
    FormResubmission,
    PageLoop,
    QuickBack,
    Escalation,
    Rephrase,
    AggressiveReply,
    PrematureExit,
    ToolFailure,
    Resolution,
}

impl SignalKind {
    /// All, in catalogue order.
    pub const ALL: [SignalKind; 14] = [
        SignalKind::RageClick,
        SignalKind::DeadClick,
        SignalKind::ErrorClick,
        SignalKind::SlowLoad,
        SignalKind::Error,
        SignalKind::FormResubmission,
        SignalKind::PageLoop,
        SignalKind::QuickBack,
        SignalKind::Escalation,
        SignalKind::Rephrase,
        SignalKind::AggressiveReply,
        SignalKind::PrematureExit,
        SignalKind::ToolFailure,
        SignalKind::Resolution,
    ];

    /// Name without the prefix, as in the catalogue.
    pub fn name(self) -> &'static str {
        signal::SIGNALS[self as usize].name
    }

    /// The event name, `signal.<name>`.
    pub fn event_name(self) -> &'static str {
        EVENT_NAMES[self as usize]
    }

    /// The signal an event name refers to.
    pub fn of_event(name: &str) -> Option<SignalKind> {
        Self::ALL.into_iter().find(|k| k.event_name() == name)
    }
}

const EVENT_NAMES: [&str; 14] = [
    "signal.rage_click",
    "signal.dead_click",
    "signal.error_click",
    "signal.slow_load",
    "signal.error",
    "signal.form_resubmission",
    "signal.page_loop",
    "signal.quick_back",
    "signal.escalation",
    "signal.rephrase",
    "signal.aggressive_reply",
    "signal.premature_exit",
    "signal.tool_failure",
    "signal.resolution",
];

/// Detector settings (see `docs/signals.md`).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Config {
    pub rage_clicks: usize,
    pub rage_within: Micros,
    pub rage_distance: f64,
    pub dead_within: Micros,
    pub error_click_within: Micros,
    pub slow_threshold: Micros,
    pub form_within: Micros,
    pub loop_views: usize,
    pub loop_within: Micros,
    pub quick_back_dwell: Micros,
    pub escalation_tools: Vec<String>,
    pub rephrase_similarity: f64,
    pub rephrase_min_words: usize,
    pub aggressive_max_words: usize,
    pub premature_idle: Micros,
}

fn setting(signal: &str, key: &str) -> Setting {
    signal::find(signal)
        .and_then(|s| s.params.iter().find(|p| p.key == key))
        .map(|p| p.default)
        .expect("the catalogue declares every setting the detectors read")
}

fn count(s: Setting) -> usize {
    match s {
        Setting::Count(n) => n.max(1) as usize,
        _ => unreachable!("declared as a count"),
    }
}

fn duration(s: Setting) -> Micros {
    match s {
        Setting::Duration(d) => d,
        _ => unreachable!("declared as a duration"),
    }
}

fn number(s: Setting) -> f64 {
    match s {
        Setting::Number(x) => x,
        _ => unreachable!("declared as a number"),
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::with(setting)
    }
}

impl Config {
    fn with(get: impl Fn(&str, &str) -> Setting) -> Config {
        let names = match get("escalation", "tools") {
            Setting::Names(n) => n.iter().map(|s| s.to_string()).collect(),
            _ => unreachable!("declared as names"),
        };
        Config {
            rage_clicks: count(get("rage_click", "clicks")),
            rage_within: duration(get("rage_click", "within")),
            rage_distance: number(get("rage_click", "distance")),
            dead_within: duration(get("dead_click", "within")),
            error_click_within: duration(get("error_click", "within")),
            slow_threshold: duration(get("slow_load", "threshold")),
            form_within: duration(get("form_resubmission", "within")),
            loop_views: count(get("page_loop", "views")),
            loop_within: duration(get("page_loop", "within")),
            quick_back_dwell: duration(get("quick_back", "dwell")),
            escalation_tools: names,
            rephrase_similarity: number(get("rephrase", "similarity")),
            rephrase_min_words: count(get("rephrase", "min_words")),
            aggressive_max_words: count(get("aggressive_reply", "max_words")),
            premature_idle: duration(get("premature_exit", "idle")),
        }
    }

    /// The settings of a segment file: defaults, overridden by its `signal { … }` blocks.
    /// A block the checker would reject gives its diagnostic.
    pub fn from_file(file: &SegFile) -> Result<Config, Diagnostic> {
        let mut cfg = Config::default();
        for block in &file.signals {
            let Some(def) = signal::find(&block.signal.name) else {
                return Err(Diagnostic::error(
                    block.signal.span,
                    format!("no signal named `{}`", block.signal.name),
                ));
            };
            for s in &block.settings {
                let Some(param) = def.params.iter().find(|p| p.key == s.key.name) else {
                    return Err(Diagnostic::error(
                        s.key.span,
                        format!("`{}` has no setting `{}`", def.name, s.key.name),
                    ));
                };
                let bad = || {
                    Diagnostic::error(
                        s.value_span,
                        format!("`{}` takes {}", param.key, param.default.kind_name()),
                    )
                };
                let value = match (param.default, &s.value) {
                    (Setting::Count(_), SettingValue::Int(n)) if *n >= 1 => Setting::Count(*n),
                    (Setting::Duration(_), SettingValue::Duration(d)) if *d > 0 => {
                        Setting::Duration(*d)
                    }
                    (Setting::Number(_), SettingValue::Int(n)) => Setting::Number(*n as f64),
                    (Setting::Number(_), SettingValue::Float(x)) if x.is_finite() => {
                        Setting::Number(*x)
                    }
                    (Setting::Names(_), SettingValue::Names(n)) if !n.is_empty() => {
                        if def.name == "escalation" {
                            cfg.escalation_tools = n.clone();
                        }
                        continue;
                    }
                    _ => return Err(bad()),
                };
                cfg.set(def.name, param.key, value);
            }
        }
        Ok(cfg)
    }

    fn set(&mut self, signal: &str, key: &str, v: Setting) {
        match (signal, key) {
            ("rage_click", "clicks") => self.rage_clicks = count(v),
            ("rage_click", "within") => self.rage_within = duration(v),
            ("rage_click", "distance") => self.rage_distance = number(v),
            ("dead_click", "within") => self.dead_within = duration(v),
            ("error_click", "within") => self.error_click_within = duration(v),
            ("slow_load", "threshold") => self.slow_threshold = duration(v),
            ("form_resubmission", "within") => self.form_within = duration(v),
            ("page_loop", "views") => self.loop_views = count(v),
            ("page_loop", "within") => self.loop_within = duration(v),
            ("quick_back", "dwell") => self.quick_back_dwell = duration(v),
            ("rephrase", "similarity") => self.rephrase_similarity = number(v),
            ("rephrase", "min_words") => self.rephrase_min_words = count(v),
            ("aggressive_reply", "max_words") => self.aggressive_max_words = count(v),
            ("premature_exit", "idle") => self.premature_idle = duration(v),
            _ => unreachable!("every catalogue setting is handled: {signal}.{key}"),
        }
    }
}

/// A property value as a detector reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// Text.
    Str(&'a str),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl Field<'_> {
    fn num(self) -> Option<f64> {
        match self {
            Field::Num(x) => Some(x),
            Field::Str(s) => s.trim().parse().ok(),
            Field::Bool(_) => None,
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Field::Str(s) => Some(s.to_string()),
            Field::Num(x) if x.fract() == 0.0 && x.abs() < 1e15 => Some(format!("{}", x as i64)),
            Field::Num(x) => Some(x.to_string()),
            Field::Bool(b) => Some(b.to_string()),
        }
    }

    fn truthy(self) -> bool {
        match self {
            Field::Bool(b) => b,
            Field::Num(x) => x != 0.0,
            Field::Str(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        }
    }
}

/// One raw event as the detectors read it.
pub trait Input {
    /// Event time (µs).
    fn time(&self) -> i64;
    /// Event name.
    fn name(&self) -> &str;
    /// A page or screen view (Segment `page` / `screen`, or a view event by name)?
    fn is_view(&self) -> bool;
    /// An event property (properties first, then context, then traits).
    fn field(&self, key: &str) -> Option<Field<'_>>;
    /// Explicit session id.
    fn session_id(&self) -> Option<&str>;
    /// Conversation id.
    fn conversation_id(&self) -> Option<&str>;
}

/// A detected signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Which.
    pub kind: SignalKind,
    /// Its event time: the event that completed it, or the deadline that passed.
    pub time: i64,
    /// Session id of the event it was detected on.
    pub session_id: Option<String>,
    /// Conversation id of the event it was detected on.
    pub conversation_id: Option<String>,
    /// Its properties (`docs/signals.md` lists them per signal).
    pub props: Vec<(&'static str, Value)>,
}

impl Signal {
    /// A property of the signal.
    pub fn prop(&self, key: &str) -> Option<&Value> {
        self.props.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Which signals a definition reads, with the settings: what a program runs per user.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    config: Arc<Config>,
    wanted: u16,
}

impl Plan {
    /// A plan for the signals among `event_names`; `None` when none is a signal.
    pub fn for_names<'a>(
        config: Arc<Config>,
        event_names: impl IntoIterator<Item = &'a str>,
    ) -> Option<Plan> {
        let mut wanted = 0u16;
        for n in event_names {
            if let Some(k) = SignalKind::of_event(n) {
                wanted |= 1 << k as u16;
            }
        }
        (wanted != 0).then_some(Plan { config, wanted })
    }

    /// A plan detecting every signal.
    pub fn all(config: Arc<Config>) -> Plan {
        Plan {
            config,
            wanted: (1 << SignalKind::ALL.len()) - 1,
        }
    }

    /// Does it detect `kind`?
    pub fn wants(&self, kind: SignalKind) -> bool {
        self.wanted & (1 << kind as u16) != 0
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Emits the signals whose deadline is before `t` (call before the events at `t`).
    pub fn before(&self, st: &mut DetectorState, t: i64, out: &mut Vec<Signal>) {
        st.fire(self, |d| d < t, out);
    }

    /// Feeds one event, emitting the signals it completes.
    pub fn on_event(&self, st: &mut DetectorState, ev: &dyn Input, out: &mut Vec<Signal>) {
        st.on_event(self, ev, out);
    }

    /// Emits the signals whose deadline is at or before `now`.
    pub fn settle(&self, st: &mut DetectorState, now: i64, out: &mut Vec<Signal>) {
        st.fire(self, |d| d <= now, out);
    }
}
