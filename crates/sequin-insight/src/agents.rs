//! The agent view: how often each signal occurs over conversations, with example
//! conversations that show them.
//!
//! Signals are detected exactly as evaluation detects them (the engine's
//! [`for_each_unit`] with every signal planned), so a rate here is the share of
//! conversations that `did signal.NAME` would select.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use sequin_core::time::Micros;
use sequin_engine::signals::{for_each_unit, input_columns};
use sequin_lang::ast::UnitKind;
use sequin_signals::{Config, Plan};
use sequin_store::{EventSource, PartitionData, PropColumn};
use serde::Serialize;

use crate::{InsightError, units};

/// How often one signal occurs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRate {
    /// Signal name (`rephrase`).
    pub signal: String,
    /// Conversations with at least one.
    pub conversations: u64,
    /// conversations / all conversations.
    pub rate: f64,
}

/// One event of an example conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptEvent {
    /// Event time (µs).
    pub time: i64,
    /// Event name.
    pub name: String,
    /// Its `text` (or `content`), if any.
    pub text: Option<String>,
    /// Its `status` (tool calls), if any.
    pub status: Option<String>,
    /// Its `tool_name`, if any.
    pub tool: Option<String>,
}

/// An example conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// Conversation key.
    pub conversation: String,
    /// The user it belongs to.
    pub user: String,
    /// Signals detected in it, in order.
    pub signals: Vec<String>,
    /// Its events.
    pub events: Vec<TranscriptEvent>,
}

/// The overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentOverview {
    /// Conversations observed.
    pub conversations: u64,
    /// Per signal seen at least once, most common first.
    pub signals: Vec<SignalRate>,
    /// One conversation per signal (the first by key), as a transcript.
    pub examples: Vec<Example>,
}

/// Conversations kept per signal, so that each signal can show one not shown already.
const CANDIDATES: usize = 8;

fn text(data: &PartitionData, col: &str, row: usize) -> Option<String> {
    match data.props.get(col) {
        Some(PropColumn::Str(c)) => c.get(row).map(str::to_string),
        Some(other) => other.get(row).map(|v| v.to_string()),
        None => None,
    }
}

struct PartialOverview {
    conversations: u64,
    with_signal: BTreeMap<String, u64>,
    /// Per signal: the few conversations with the smallest keys that show it.
    examples: BTreeMap<String, Vec<Example>>,
}

/// Computes the overview over every conversation up to `as_of` (default: the latest event).
pub fn agent_overview(
    source: &dyn EventSource,
    signal_config: Config,
    session_gap: Micros,
    as_of: Option<i64>,
    max_events: usize,
) -> Result<AgentOverview, InsightError> {
    let Some(as_of) = as_of.or_else(|| source.latest_time()) else {
        return Ok(AgentOverview {
            conversations: 0,
            signals: Vec::new(),
            examples: Vec::new(),
        });
    };
    let plan = Plan::all(Arc::new(signal_config));
    let mut cols = input_columns();
    cols.extend(["p.tool_name".to_string(), "p.status".to_string()]);
    let proj = units::projection(UnitKind::Conversations, &cols);
    let parts: Vec<Result<PartialOverview, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            let mut part = PartialOverview {
                conversations: 0,
                with_signal: BTreeMap::new(),
                examples: BTreeMap::new(),
            };
            let user_of = |row: usize| {
                let u = data.unit_start.partition_point(|&s| s as usize <= row) - 1;
                data.units[u].clone()
            };
            for_each_unit(
                &data,
                UnitKind::Conversations,
                session_gap,
                as_of,
                Some(&plan),
                |key, rows, sigs| {
                    // Units without a conversation id are not conversations.
                    let conv = data.ids.get("conversation_id");
                    if !rows.iter().any(|&r| conv.and_then(|c| c.get(r)).is_some()) {
                        return;
                    }
                    part.conversations += 1;
                    let names: Vec<String> = sigs
                        .iter()
                        .map(|s| s.signal.kind.name().to_string())
                        .collect();
                    let mut distinct = names.clone();
                    distinct.sort();
                    distinct.dedup();
                    for s in &distinct {
                        *part.with_signal.entry(s.clone()).or_default() += 1;
                        let kept = part.examples.entry(s.clone()).or_default();
                        let better = kept.len() < CANDIDATES
                            || kept.last().is_some_and(|e| key < e.conversation.as_str());
                        if better {
                            let events = rows
                                .iter()
                                .filter(|&&r| units::is_behaviour(&data, r))
                                .take(max_events)
                                .map(|&r| TranscriptEvent {
                                    time: data.time[r],
                                    name: data.names[data.name[r] as usize].clone(),
                                    text: text(&data, "p.text", r)
                                        .or_else(|| text(&data, "p.content", r)),
                                    status: text(&data, "p.status", r),
                                    tool: text(&data, "p.tool_name", r),
                                })
                                .collect();
                            let kept = part.examples.get_mut(s).expect("just added");
                            kept.push(Example {
                                conversation: key.to_string(),
                                user: user_of(rows[0]),
                                signals: names.clone(),
                                events,
                            });
                            kept.sort_by(|a, b| a.conversation.cmp(&b.conversation));
                            kept.truncate(CANDIDATES);
                        }
                    }
                },
            );
            Ok(part)
        })
        .collect();
    let mut conversations = 0;
    let mut with_signal: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    for p in parts {
        let p = p?;
        conversations += p.conversations;
        for (s, n) in p.with_signal {
            *with_signal.entry(s).or_default() += n;
        }
        for (s, mut e) in p.examples {
            let kept = examples.entry(s).or_default();
            kept.append(&mut e);
            kept.sort_by(|a, b| a.conversation.cmp(&b.conversation));
            kept.truncate(CANDIDATES);
        }
    }
    let mut signals: Vec<SignalRate> = with_signal
        .into_iter()
        .map(|(signal, n)| SignalRate {
            signal,
            conversations: n,
            rate: n as f64 / conversations.max(1) as f64,
        })
        .collect();
    signals.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then(a.signal.cmp(&b.signal))
    });
    // One example per signal, most common signals first, each conversation once: a signal
    // whose first conversation is already shown gets its next one.
    let mut shown: Vec<Example> = Vec::new();
    for s in &signals {
        let next = examples
            .remove(&s.signal)
            .unwrap_or_default()
            .into_iter()
            .find(|e| !shown.iter().any(|x| x.conversation == e.conversation));
        if let Some(e) = next {
            shown.push(e);
        }
    }
    Ok(AgentOverview {
        conversations,
        signals,
        examples: shown,
    })
}
