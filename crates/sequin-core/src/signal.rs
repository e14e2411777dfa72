//! The signal catalogue: every derived `signal.<name>` event Sequin detects, with its
//! settings and their defaults.
//!
//! This is data only. The language checks names and `signal NAME { … }` settings against it,
//! and `sequin-signals` builds its detectors' configuration from it, so a setting is declared
//! once. The rules themselves are documented in `docs/signals.md`.

use crate::time::{MINUTE, Micros, SECOND};

/// The prefix of every signal's event name.
pub const PREFIX: &str = "signal.";

/// What a setting holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    /// A whole number ≥ 1.
    Count(i64),
    /// A duration.
    Duration(Micros),
    /// A number.
    Number(f64),
    /// A list of names (strings).
    Names(&'static [&'static str]),
}

impl Setting {
    /// How the kind is described in an error message.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Setting::Count(_) => "a whole number (≥ 1)",
            Setting::Duration(_) => "a duration such as `2s`",
            Setting::Number(_) => "a number",
            Setting::Names(_) => "one or more strings, separated by commas",
        }
    }
}

/// One setting of a signal.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    /// Its key in `signal NAME { key value }`.
    pub key: &'static str,
    /// Its default (which also fixes its kind).
    pub default: Setting,
}

/// One signal.
#[derive(Debug, Clone, Copy)]
pub struct SignalDef {
    /// Name without the prefix (`rage_click`).
    pub name: &'static str,
    /// Friction (web and app) or agent (conversation) signal.
    pub agent: bool,
    /// Its settings.
    pub params: &'static [ParamDef],
}

const fn p(key: &'static str, default: Setting) -> ParamDef {
    ParamDef { key, default }
}

/// Every signal, friction signals first.
pub const SIGNALS: &[SignalDef] = &[
    SignalDef {
        name: "rage_click",
        agent: false,
        params: &[
            p("clicks", Setting::Count(3)),
            p("within", Setting::Duration(SECOND)),
            p("distance", Setting::Number(30.0)),
        ],
    },
    SignalDef {
        name: "dead_click",
        agent: false,
        params: &[p("within", Setting::Duration(2_500_000))],
    },
    SignalDef {
        name: "error_click",
        agent: false,
        params: &[p("within", Setting::Duration(2 * SECOND))],
    },
    SignalDef {
        name: "slow_load",
        agent: false,
        params: &[p("threshold", Setting::Duration(4 * SECOND))],
    },
    SignalDef {
        name: "error",
        agent: false,
        params: &[],
    },
    SignalDef {
        name: "form_resubmission",
        agent: false,
        params: &[p("within", Setting::Duration(MINUTE))],
    },
    SignalDef {
        name: "page_loop",
        agent: false,
        params: &[
            p("views", Setting::Count(3)),
            p("within", Setting::Duration(15 * SECOND)),
        ],
    },
    SignalDef {
        name: "quick_back",
        agent: false,
        params: &[p("dwell", Setting::Duration(5 * SECOND))],
    },
    SignalDef {
        name: "escalation",
        agent: true,
        params: &[p(
            "tools",
            Setting::Names(&[
                "transfer_to_human_agents",
                "transfer_to_human",
                "escalate_to_human",
                "handoff_to_human",
            ]),
        )],
    },
    SignalDef {
        name: "rephrase",
        agent: true,
        params: &[
            p("similarity", Setting::Number(0.2)),
            p("min_words", Setting::Count(3)),
        ],
    },
    SignalDef {
        name: "aggressive_reply",
        agent: true,
        params: &[p("max_words", Setting::Count(8))],
    },
    SignalDef {
        name: "premature_exit",
        agent: true,
        params: &[p("idle", Setting::Duration(5 * MINUTE))],
    },
    SignalDef {
        name: "tool_failure",
        agent: true,
        params: &[],
    },
    SignalDef {
        name: "resolution",
        agent: true,
        params: &[],
    },
];

/// The signal of that name (without the prefix).
pub fn find(name: &str) -> Option<&'static SignalDef> {
    SIGNALS.iter().find(|s| s.name == name)
}

/// The signal an event name refers to: `Some(Ok(def))` for a known `signal.x`,
/// `Some(Err(rest))` for an unknown one, `None` when the name is not a signal's.
pub fn of_event(event: &str) -> Option<Result<&'static SignalDef, &str>> {
    let rest = event.strip_prefix(PREFIX)?;
    Some(find(rest).ok_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique() {
        let mut names: Vec<&str> = SIGNALS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SIGNALS.len());
        for s in SIGNALS {
            let mut keys: Vec<&str> = s.params.iter().map(|p| p.key).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), s.params.len(), "{}", s.name);
        }
    }

    #[test]
    fn event_names_resolve() {
        assert_eq!(
            of_event("signal.rage_click").unwrap().unwrap().name,
            "rage_click"
        );
        assert_eq!(of_event("signal.nope").unwrap().unwrap_err(), "nope");
        assert!(of_event("click").is_none());
    }
}
