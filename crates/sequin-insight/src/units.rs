//! Walking a store's units the way evaluation sees them: users, or the sessions and
//! conversations their events split into (the engine's [`split`]), up to an as-of time.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sequin_core::event::MessageKind;
use sequin_core::time::Micros;
use sequin_engine::units::split;
use sequin_lang::ast::UnitKind;
use sequin_store::{EventSource, PartitionData, Projection};

use crate::InsightError;

/// The id column a unit kind needs, to add to a projection.
pub fn unit_columns(unit: UnitKind) -> Vec<String> {
    match unit {
        UnitKind::Users => Vec::new(),
        UnitKind::Sessions => vec!["session_id".into()],
        UnitKind::Conversations => vec!["conversation_id".into()],
    }
}

/// A projection of `columns` plus what `unit` needs.
pub fn projection(unit: UnitKind, columns: &[String]) -> Projection {
    let mut cols = unit_columns(unit);
    cols.extend(columns.iter().cloned());
    cols.sort();
    cols.dedup();
    Projection::Columns(cols)
}

/// Is this row behaviour (not an identify, alias or group message)?
pub fn is_behaviour(data: &PartitionData, row: usize) -> bool {
    !matches!(
        MessageKind::from_u8(data.kind[row]),
        MessageKind::Identify | MessageKind::Alias | MessageKind::Group
    )
}

/// Calls `f(unit key, rows)` for every unit of the partition with an event at or before
/// `as_of`; rows are ascending partition rows, in event order.
pub fn for_each_unit(
    data: &PartitionData,
    unit: UnitKind,
    gap: Micros,
    as_of: Option<i64>,
    mut f: impl FnMut(&str, &[usize]),
) {
    let mut rows: Vec<usize> = Vec::new();
    let id_col = match unit {
        UnitKind::Users => None,
        UnitKind::Sessions => data.ids.get("session_id"),
        UnitKind::Conversations => data.ids.get("conversation_id"),
    };
    for (user, range) in data.unit_rows() {
        let end = match as_of {
            Some(t) => range.start + data.time[range.clone()].partition_point(|&x| x <= t),
            None => range.end,
        };
        if end == range.start {
            continue;
        }
        if unit == UnitKind::Users {
            rows.clear();
            rows.extend(range.start..end);
            f(user, &rows);
            continue;
        }
        let start = range.start;
        let subs = split(
            unit,
            user,
            &data.time[start..end],
            |i| id_col.and_then(|c| c.get(start + i)),
            gap,
        );
        for sub in subs {
            rows.clear();
            rows.extend(sub.rows.iter().map(|&i| start + i));
            f(&sub.key, &rows);
        }
    }
}

/// Every unit with behaviour in (`from`, `to`] (`from` None: from the start), with the time
/// of its first such event.
pub fn first_activity(
    source: &dyn EventSource,
    unit: UnitKind,
    gap: Micros,
    from: Option<i64>,
    to: i64,
) -> Result<FxHashMap<String, i64>, InsightError> {
    let proj = projection(unit, &[]);
    let parts: Vec<Result<Vec<(String, i64)>, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            let mut out = Vec::new();
            for_each_unit(&data, unit, gap, Some(to), |key, rows| {
                let first = rows
                    .iter()
                    .find(|&&r| from.is_none_or(|f| data.time[r] > f) && is_behaviour(&data, r));
                if let Some(&r) = first {
                    out.push((key.to_string(), data.time[r]));
                }
            });
            Ok(out)
        })
        .collect();
    let mut all = FxHashMap::default();
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}
