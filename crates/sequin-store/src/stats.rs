//! Store statistics: events, units, sessions, conversations, event names, time range, and
//! the most common properties.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::data::PropColumn;
use crate::{EventSource, Projection, StoreError};

/// Default inactivity gap that ends a session: 30 minutes.
pub const SESSION_GAP: i64 = 30 * 60 * 1_000_000;

/// One event name and how often it occurs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NameCount {
    /// Event name.
    pub name: String,
    /// Number of events.
    pub count: u64,
}

/// One property key and how many events carry it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PropertyCount {
    /// Namespaced key: `properties.x`, `context.x` or `traits.x`.
    pub name: String,
    /// Number of events that carry it.
    pub events: u64,
    /// Value type(s) seen.
    pub types: Vec<String>,
}

/// Summary of a store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// Number of events.
    pub events: u64,
    /// Number of units (users after identity stitching).
    pub units: u64,
    /// Number of sessions: explicit session ids, else runs of a user's events with no gap
    /// above 30 minutes.
    pub sessions: u64,
    /// Number of distinct conversation ids.
    pub conversations: u64,
    /// Earliest event time (RFC 3339), if any.
    pub first_event: Option<String>,
    /// Latest event time (RFC 3339), if any.
    pub last_event: Option<String>,
    /// Event names, most frequent first.
    pub event_names: Vec<NameCount>,
    /// Properties, most common first (at most 50).
    pub properties: Vec<PropertyCount>,
}

#[derive(Default)]
struct Partial {
    events: u64,
    units: u64,
    sessions: u64,
    conversations: HashSet<String>,
    first: Option<i64>,
    last: Option<i64>,
    names: BTreeMap<String, u64>,
    props: BTreeMap<String, (u64, std::collections::BTreeSet<&'static str>)>,
}

/// Computes statistics over every partition (in parallel).
pub fn compute(source: &dyn EventSource, session_gap: i64) -> Result<Stats, StoreError> {
    let partials: Vec<Partial> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &Projection::All)?;
            let mut s = Partial {
                events: data.len() as u64,
                units: data.units.len() as u64,
                ..Default::default()
            };
            s.first = data.time.iter().copied().min();
            s.last = data.time.iter().copied().max();
            let mut counts = vec![0u64; data.names.len()];
            for &n in &data.name {
                counts[n as usize] += 1;
            }
            for (name, c) in data.names.iter().zip(counts) {
                *s.names.entry(name.clone()).or_default() += c;
            }
            let sessions = data.ids.get("session_id");
            for (_, range) in data.unit_rows() {
                let mut explicit = HashSet::new();
                let mut prev: Option<i64> = None;
                for r in range {
                    match sessions.and_then(|c| c.get(r)) {
                        Some(id) => {
                            explicit.insert(id);
                        }
                        None => {
                            let t = data.time[r];
                            if prev.is_none_or(|p| t - p > session_gap) {
                                s.sessions += 1;
                            }
                            prev = Some(t);
                        }
                    }
                }
                s.sessions += explicit.len() as u64;
            }
            if let Some(c) = data.ids.get("conversation_id") {
                for r in 0..data.len() {
                    if let Some(id) = c.get(r) {
                        s.conversations.insert(id.to_string());
                    }
                }
            }
            for (key, col) in &data.props {
                let (n, types) = match col {
                    PropColumn::Int(v) => (v.iter().flatten().count(), vec!["int"]),
                    PropColumn::Float(v) => (v.iter().flatten().count(), vec!["float"]),
                    PropColumn::Bool(v) => (v.iter().flatten().count(), vec!["bool"]),
                    PropColumn::Str(c) => (
                        c.keys
                            .iter()
                            .filter(|&&k| k != crate::data::NULL_KEY)
                            .count(),
                        vec!["string"],
                    ),
                    PropColumn::Mixed(v) => {
                        let types: std::collections::BTreeSet<&'static str> =
                            v.iter().flatten().map(|x| x.type_name()).collect();
                        (v.iter().flatten().count(), types.into_iter().collect())
                    }
                };
                let name = match key.split_at(2) {
                    ("c.", k) => format!("context.{k}"),
                    ("t.", k) => format!("traits.{k}"),
                    (_, k) => format!("properties.{k}"),
                };
                let e = s.props.entry(name).or_default();
                e.0 += n as u64;
                e.1.extend(types);
            }
            Ok(s)
        })
        .collect::<Result<_, StoreError>>()?;
    let mut total = Partial::default();
    for p in partials {
        total.events += p.events;
        total.units += p.units;
        total.sessions += p.sessions;
        total.conversations.extend(p.conversations);
        total.first = match (total.first, p.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.last = match (total.last, p.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (k, v) in p.names {
            *total.names.entry(k).or_default() += v;
        }
        for (k, (n, t)) in p.props {
            let e = total.props.entry(k).or_default();
            e.0 += n;
            e.1.extend(t);
        }
    }
    let mut event_names: Vec<NameCount> = total
        .names
        .into_iter()
        .map(|(name, count)| NameCount { name, count })
        .collect();
    event_names.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let mut properties: Vec<PropertyCount> = total
        .props
        .into_iter()
        .map(|(name, (events, types))| PropertyCount {
            name,
            events,
            types: types.into_iter().map(String::from).collect(),
        })
        .collect();
    properties.sort_by(|a, b| b.events.cmp(&a.events).then(a.name.cmp(&b.name)));
    properties.truncate(50);
    Ok(Stats {
        events: total.events,
        units: total.units,
        sessions: total.sessions,
        conversations: total.conversations.len() as u64,
        first_event: total.first.map(sequin_core::time::format_rfc3339),
        last_event: total.last.map(sequin_core::time::format_rfc3339),
        event_names,
        properties,
    })
}
