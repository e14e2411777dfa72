//! How a user's ordered events split into the units a definition groups.
//!
//! - users: all of the user's events.
//! - sessions: events sharing an explicit `session_id` (or, without one, all the user's
//!   events), cut wherever the gap between consecutive events exceeds the session gap.
//! - conversations: events sharing a `conversation_id`, cut the same way; events without
//!   one belong to no conversation.
//!
//! The first run of an explicit id is named by the id; later runs (and every run of a
//! session without an id) are named `key@start` with the start in epoch milliseconds, so a
//! name is stable from the unit's first event on — live evaluation names units the same way.

use rustc_hash::FxHashMap;
use sequin_core::time::Micros;
use sequin_lang::ast::UnitKind;

/// A unit's name and its event positions (indices into the user's events).
#[derive(Debug, Clone, PartialEq)]
pub struct SubUnit {
    /// Unit key.
    pub key: String,
    /// Positions in the user's event list, ascending.
    pub rows: Vec<usize>,
}

/// Splits one user's events. `times[i]` and `ids[i]` (session or conversation id) describe
/// the user's i-th event.
pub fn split<'a>(
    unit: UnitKind,
    user: &str,
    times: &[i64],
    ids: impl Fn(usize) -> Option<&'a str>,
    gap: Micros,
) -> Vec<SubUnit> {
    if unit == UnitKind::Users {
        return vec![SubUnit {
            key: user.to_string(),
            rows: (0..times.len()).collect(),
        }];
    }
    // key (None = no explicit id) → (index of open run in `out`, last time, runs so far)
    let mut open: FxHashMap<Option<&str>, (usize, i64)> = FxHashMap::default();
    let mut runs_of: FxHashMap<Option<&str>, usize> = FxHashMap::default();
    let mut out: Vec<SubUnit> = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let id = ids(i);
        if unit == UnitKind::Conversations && id.is_none() {
            continue;
        }
        match open.get_mut(&id) {
            Some((run, last)) if t - *last <= gap => {
                out[*run].rows.push(i);
                *last = t;
            }
            _ => {
                let n = runs_of.entry(id).or_insert(0);
                let key = match id {
                    Some(id) if *n == 0 => id.to_string(),
                    Some(id) => format!("{id}@{}", t.div_euclid(1000)),
                    None => format!("{user}@{}", t.div_euclid(1000)),
                };
                *n += 1;
                out.push(SubUnit { key, rows: vec![i] });
                open.insert(id, (out.len() - 1, t));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequin_core::time::MINUTE;

    #[test]
    fn sessions_cut_at_gaps_longer_than_the_limit() {
        let times = [0, 10 * MINUTE, 40 * MINUTE, 71 * MINUTE];
        let s = split(UnitKind::Sessions, "u", &times, |_| None, 30 * MINUTE);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].rows, vec![0, 1, 2]);
        assert_eq!(s[0].key, "u@0");
        assert_eq!(s[1].key, format!("u@{}", 71 * MINUTE / 1000));
    }

    #[test]
    fn conversations_need_an_id() {
        let ids = [Some("c1"), None, Some("c2"), Some("c1")];
        let s = split(
            UnitKind::Conversations,
            "u",
            &[0, 1, 2, 3],
            |i| ids[i],
            30 * MINUTE,
        );
        assert_eq!(
            s.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(),
            ["c1", "c2"]
        );
        assert_eq!(s[0].rows, vec![0, 3]);
    }
}
