//! [`PartitionData`]: one partition's events in memory, column by column, sorted by
//! (unit, time, arrival). It is what the memtable flushes, what history files hold, and what
//! readers (stats, evaluation) iterate unit by unit.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::ops::Range;

use sequin_core::{Event, MessageKind, Text, Value};

/// Marks a missing entry in a [`StrColumn`].
pub const NULL_KEY: u32 = u32::MAX;

/// Builds a string dictionary: each distinct string is stored once, in the dictionary
/// itself, and found again by its hash (a map from `String` would store and hash it twice,
/// which dominates merging columns of unique ids or message text).
#[derive(Default)]
pub(crate) struct DictBuilder {
    table: hashbrown::HashTable<u32>,
}

fn text_hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

impl DictBuilder {
    /// Room for `more` new strings without rehashing.
    pub(crate) fn reserve(&mut self, more: usize, dict: &[String]) {
        self.table.reserve(more, |&k| text_hash(&dict[k as usize]));
    }

    /// The key of `s` in `dict`, adding it if new.
    pub(crate) fn intern(&mut self, dict: &mut Vec<String>, s: &str) -> u32 {
        let h = text_hash(s);
        if let Some(&k) = self.table.find(h, |&k| dict[k as usize] == s) {
            return k;
        }
        let k = dict.len() as u32;
        dict.push(s.to_owned());
        self.table
            .insert_unique(h, k, |&k| text_hash(&dict[k as usize]));
        k
    }
}

/// The type a property column takes from the kinds of values it holds: one kind (no value
/// at all: text), whole numbers and numbers together as numbers, anything else mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    Bool,
    Int,
    Float,
    Str,
    Mixed,
}

impl ColumnKind {
    /// From the kind of each value: 0 bool, 1 int, 2 float, 3 text, 4 JSON text.
    pub(crate) fn of(kinds: impl IntoIterator<Item = usize>) -> ColumnKind {
        let mut seen = [false; 5];
        for k in kinds {
            seen[k] = true;
        }
        match seen {
            [true, false, false, false, false] => ColumnKind::Bool,
            [false, true, false, false, false] => ColumnKind::Int,
            [false, _, true, false, false] => ColumnKind::Float,
            [false, false, false, _, false] => ColumnKind::Str,
            _ => ColumnKind::Mixed,
        }
    }
}

/// A dictionary-encoded, nullable text column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrColumn {
    /// Distinct values.
    pub dict: Vec<String>,
    /// Per row, an index into `dict`, or [`NULL_KEY`].
    pub keys: Vec<u32>,
}

impl StrColumn {
    /// The value at `row`.
    pub fn get(&self, row: usize) -> Option<&str> {
        match self.keys[row] {
            NULL_KEY => None,
            k => Some(&self.dict[k as usize]),
        }
    }

    /// Does any row have a value?
    pub fn any(&self) -> bool {
        self.keys.iter().any(|&k| k != NULL_KEY)
    }

    fn take(&self, order: &[u32]) -> StrColumn {
        StrColumn {
            dict: self.dict.clone(),
            keys: order.iter().map(|&i| self.keys[i as usize]).collect(),
        }
    }

    /// The rows of `pieces` one after another (`None`: that many missing values), with one
    /// dictionary.
    fn concat<'a>(pieces: impl Iterator<Item = (Option<&'a StrColumn>, usize)>) -> StrColumn {
        let pieces: Vec<(Option<&StrColumn>, usize)> = pieces.collect();
        let mut out = StrColumn {
            dict: Vec::new(),
            keys: Vec::with_capacity(pieces.iter().map(|p| p.1).sum()),
        };
        let mut dict = DictBuilder::default();
        let entries: usize = pieces
            .iter()
            .filter_map(|p| p.0)
            .map(|c| c.dict.len())
            .sum();
        dict.reserve(entries, &out.dict);
        out.dict.reserve(entries);
        for (piece, rows) in pieces {
            let Some(piece) = piece else {
                out.keys.resize(out.keys.len() + rows, NULL_KEY);
                continue;
            };
            let remap: Vec<u32> = piece
                .dict
                .iter()
                .map(|s| dict.intern(&mut out.dict, s))
                .collect();
            out.keys.extend(piece.keys.iter().map(|&k| {
                if k == NULL_KEY {
                    NULL_KEY
                } else {
                    remap[k as usize]
                }
            }));
        }
        out
    }
}

/// A typed property column. A column whose values have several types in one partition is
/// `Mixed`.
#[derive(Debug, Clone, PartialEq)]
pub enum PropColumn {
    /// Whole numbers (`None` = missing).
    Int(Vec<Option<i64>>),
    /// Numbers.
    Float(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Text.
    Str(StrColumn),
    /// Anything else, value by value.
    Mixed(Vec<Option<Value>>),
}

impl PropColumn {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            PropColumn::Int(v) => v.len(),
            PropColumn::Float(v) => v.len(),
            PropColumn::Bool(v) => v.len(),
            PropColumn::Str(c) => c.keys.len(),
            PropColumn::Mixed(v) => v.len(),
        }
    }

    /// Is the column empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row`.
    pub fn get(&self, row: usize) -> Option<Value> {
        match self {
            PropColumn::Int(v) => v[row].map(Value::Int),
            PropColumn::Float(v) => v[row].map(Value::Float),
            PropColumn::Bool(v) => v[row].map(Value::Bool),
            PropColumn::Str(c) => c.get(row).map(|s| Value::Str(s.to_string().into())),
            PropColumn::Mixed(v) => v[row].clone(),
        }
    }

    /// Does `row` have a value? (Without copying it.)
    pub fn is_present(&self, row: usize) -> bool {
        match self {
            PropColumn::Int(v) => v[row].is_some(),
            PropColumn::Float(v) => v[row].is_some(),
            PropColumn::Bool(v) => v[row].is_some(),
            PropColumn::Str(c) => c.keys[row] != NULL_KEY,
            PropColumn::Mixed(v) => v[row].is_some(),
        }
    }

    /// Builds the narrowest column type that holds `values`.
    pub fn from_values(values: Vec<Option<Value>>) -> PropColumn {
        let refs: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
        PropColumn::from_value_refs(&refs)
    }

    /// Builds the narrowest column type that holds `values`, copying each distinct text
    /// once (a flush builds every column of its memtable this way).
    pub fn from_value_refs(values: &[Option<&Value>]) -> PropColumn {
        let kind = ColumnKind::of(values.iter().flatten().map(|v| match v {
            Value::Bool(_) => 0,
            Value::Int(_) => 1,
            Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::Json(_) => 4,
        }));
        match kind {
            ColumnKind::Bool => PropColumn::Bool(
                values
                    .iter()
                    .map(|v| v.map(|v| matches!(v, Value::Bool(true))))
                    .collect(),
            ),
            ColumnKind::Int => PropColumn::Int(
                values
                    .iter()
                    .map(|v| {
                        v.and_then(|v| {
                            if let Value::Int(i) = v {
                                Some(*i)
                            } else {
                                None
                            }
                        })
                    })
                    .collect(),
            ),
            ColumnKind::Float => {
                PropColumn::Float(values.iter().map(|v| v.and_then(|v| v.as_f64())).collect())
            }
            ColumnKind::Str => {
                let mut col = StrColumn::default();
                let mut index = DictBuilder::default();
                col.keys = values
                    .iter()
                    .map(|v| match v {
                        Some(Value::Str(s)) => index.intern(&mut col.dict, s),
                        _ => NULL_KEY,
                    })
                    .collect();
                PropColumn::Str(col)
            }
            ColumnKind::Mixed => PropColumn::Mixed(values.iter().map(|v| v.cloned()).collect()),
        }
    }

    fn values(&self) -> Vec<Option<Value>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    fn take(&self, order: &[u32]) -> PropColumn {
        let pick = |i: &u32| *i as usize;
        match self {
            PropColumn::Int(v) => PropColumn::Int(order.iter().map(|i| v[pick(i)]).collect()),
            PropColumn::Float(v) => PropColumn::Float(order.iter().map(|i| v[pick(i)]).collect()),
            PropColumn::Bool(v) => PropColumn::Bool(order.iter().map(|i| v[pick(i)]).collect()),
            PropColumn::Str(c) => PropColumn::Str(c.take(order)),
            PropColumn::Mixed(v) => {
                PropColumn::Mixed(order.iter().map(|i| v[pick(i)].clone()).collect())
            }
        }
    }

    /// Does any row have a value?
    fn any(&self) -> bool {
        match self {
            PropColumn::Int(v) => v.iter().any(Option::is_some),
            PropColumn::Float(v) => v.iter().any(Option::is_some),
            PropColumn::Bool(v) => v.iter().any(Option::is_some),
            PropColumn::Str(c) => c.any(),
            PropColumn::Mixed(v) => v.iter().any(Option::is_some),
        }
    }

    /// The rows of `pieces` one after another (`None`: that many missing values). Pieces of
    /// one type (or whole numbers with numbers) stay typed; a piece with no value takes any
    /// type. Only genuinely different types make a `Mixed` column.
    fn concat(pieces: &[(Option<&PropColumn>, usize)]) -> PropColumn {
        #[derive(PartialEq, Clone, Copy)]
        enum Kind {
            Int,
            Float,
            Bool,
            Str,
            Mixed,
        }
        let mut kind: Option<Kind> = None;
        for col in pieces.iter().filter_map(|p| p.0).filter(|c| c.any()) {
            let k = match col {
                PropColumn::Int(_) => Kind::Int,
                PropColumn::Float(_) => Kind::Float,
                PropColumn::Bool(_) => Kind::Bool,
                PropColumn::Str(_) => Kind::Str,
                PropColumn::Mixed(_) => Kind::Mixed,
            };
            kind = Some(match (kind, k) {
                (None, k) => k,
                (Some(a), b) if a == b => a,
                (Some(Kind::Int | Kind::Float), Kind::Int | Kind::Float) => Kind::Float,
                _ => Kind::Mixed,
            });
        }
        let rows: usize = pieces.iter().map(|p| p.1).sum();
        // Each typed arm: a piece of that type extends, any other piece (all missing) pads.
        macro_rules! typed {
            ($variant:ident, $conv:expr) => {{
                let mut out = Vec::with_capacity(rows);
                for &(piece, n) in pieces {
                    match piece {
                        Some(PropColumn::$variant(v)) => out.extend_from_slice(v),
                        #[allow(clippy::redundant_closure_call)]
                        Some(other) => out.extend((0..n).map(|r| ($conv)(other, r))),
                        None => out.resize(out.len() + n, None),
                    }
                }
                PropColumn::$variant(out)
            }};
        }
        match kind {
            None | Some(Kind::Int) => {
                typed!(Int, |_: &PropColumn, _: usize| -> Option<i64> { None })
            }
            Some(Kind::Float) => typed!(Float, |c: &PropColumn, r: usize| -> Option<f64> {
                match c {
                    PropColumn::Int(v) => v[r].map(|i| i as f64),
                    _ => None,
                }
            }),
            Some(Kind::Bool) => typed!(Bool, |_: &PropColumn, _: usize| -> Option<bool> { None }),
            Some(Kind::Str) => PropColumn::Str(StrColumn::concat(pieces.iter().map(
                |&(piece, n)| match piece {
                    Some(PropColumn::Str(c)) => (Some(c), n),
                    _ => (None, n),
                },
            ))),
            Some(Kind::Mixed) => {
                let mut all = Vec::with_capacity(rows);
                for &(piece, n) in pieces {
                    match piece {
                        Some(c) => all.extend(c.values()),
                        None => all.resize(all.len() + n, None),
                    }
                }
                PropColumn::from_values(all)
            }
        }
    }
}

/// Which optional id columns an event carries.
pub const ID_COLUMNS: [&str; 6] = [
    "user_id",
    "anonymous_id",
    "previous_id",
    "session_id",
    "conversation_id",
    "message_id",
];

/// One partition's events, sorted by (unit, time, arrival).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionData {
    /// Distinct unit keys (after identity stitching), in sorted order.
    pub units: Vec<String>,
    /// Row ranges: unit `i` is rows `unit_start[i]..unit_start[i + 1]`.
    pub unit_start: Vec<u32>,
    /// Event time per row (µs).
    pub time: Vec<i64>,
    /// Arrival sequence number per row (the log's), or empty when not read: it orders
    /// equal times when rows filed under different ids are stitched together.
    pub seq: Vec<u64>,
    /// Event name per row, an index into `names`.
    pub name: Vec<u32>,
    /// Distinct event names of this partition.
    pub names: Vec<String>,
    /// Message kind per row.
    pub kind: Vec<u8>,
    /// Optional id columns by name (see [`ID_COLUMNS`]); absent when no row has one.
    pub ids: BTreeMap<String, StrColumn>,
    /// Property columns by namespaced key: `p.` properties, `c.` context, `t.` traits.
    pub props: BTreeMap<String, PropColumn>,
}

impl PartitionData {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// No events?
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// The units with their row ranges.
    pub fn unit_rows(&self) -> impl Iterator<Item = (&str, Range<usize>)> + '_ {
        self.units.iter().enumerate().map(|(i, u)| {
            (
                u.as_str(),
                self.unit_start[i] as usize..self.unit_start[i + 1] as usize,
            )
        })
    }

    /// The unit of a row.
    pub fn unit_of(&self, row: usize) -> &str {
        let i = self.unit_start.partition_point(|&s| s as usize <= row) - 1;
        &self.units[i]
    }

    /// The user id of a row. Files omit the `user_id` column when it equals the unit on
    /// every row (the common case), so it is derived from the unit then.
    pub fn user_id(&self, row: usize) -> Option<&str> {
        match self.ids.get("user_id") {
            Some(c) => c.get(row),
            None => Some(self.unit_of(row)),
        }
    }

    /// Makes the `user_id` column explicit (before rows are relabelled or mixed with data
    /// that has one).
    pub fn materialize_user_ids(&mut self) {
        if self.ids.contains_key("user_id") || self.is_empty() {
            return;
        }
        let mut col = StrColumn {
            dict: self.units.clone(),
            keys: Vec::with_capacity(self.len()),
        };
        for (i, w) in self.unit_start.windows(2).enumerate() {
            col.keys
                .extend(std::iter::repeat_n(i as u32, (w[1] - w[0]) as usize));
        }
        self.ids.insert("user_id".into(), col);
    }

    /// An id column value.
    pub fn id(&self, column: &str, row: usize) -> Option<&str> {
        self.ids.get(column).and_then(|c| c.get(row))
    }

    /// Rebuilds the full event at `row` (for tests and exports; evaluation reads columns).
    pub fn event(&self, row: usize) -> Event {
        let id = |c: &str| self.id(c, row).map(Text::from);
        let mut ev = Event {
            kind: MessageKind::from_u8(self.kind[row]),
            name: self.names[self.name[row] as usize].as_str().into(),
            time: self.time[row],
            user_id: if self.ids.contains_key("user_id") {
                id("user_id")
            } else {
                Some(self.unit_of(row).into())
            },
            anonymous_id: id("anonymous_id"),
            previous_id: id("previous_id"),
            session_id: id("session_id"),
            conversation_id: id("conversation_id"),
            message_id: id("message_id"),
            properties: Vec::new(),
            context: Vec::new(),
            traits: Vec::new(),
        };
        for (key, col) in &self.props {
            if let Some(v) = col.get(row) {
                let (ns, k) = key.split_at(2);
                let target = match ns {
                    "c." => &mut ev.context,
                    "t." => &mut ev.traits,
                    _ => &mut ev.properties,
                };
                target.push((k.to_string().into(), v));
            }
        }
        ev
    }

    /// Builds sorted partition data from events whose unit keys are already resolved:
    /// `units[i]` is the unit of `events[i]`. Ties keep the order of `events` (arrival).
    pub fn from_events(events: &[Event], units: &[&str]) -> PartitionData {
        let mut order: Vec<u32> = (0..events.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            units[a]
                .cmp(units[b])
                .then(events[a].time.cmp(&events[b].time))
                .then(a.cmp(&b))
        });
        let mut data = PartitionData::default();
        let mut name_index: HashMap<&str, u32> = HashMap::default();
        let mut ids: Vec<Vec<Option<&str>>> =
            vec![Vec::with_capacity(events.len()); ID_COLUMNS.len()];
        let mut props: BTreeMap<String, Vec<Option<Value>>> = BTreeMap::new();
        for (row, &i) in order.iter().enumerate() {
            let e = &events[i as usize];
            let unit = units[i as usize];
            if data.units.last().map(String::as_str) != Some(unit) {
                data.units.push(unit.to_string());
                data.unit_start.push(row as u32);
            }
            data.time.push(e.time);
            data.seq.push(i as u64);
            let next = name_index.len() as u32;
            let k = *name_index.entry(&e.name).or_insert_with(|| {
                data.names.push(e.name.to_string());
                next
            });
            data.name.push(k);
            data.kind.push(e.kind as u8);
            let vals = [
                &e.user_id,
                &e.anonymous_id,
                &e.previous_id,
                &e.session_id,
                &e.conversation_id,
                &e.message_id,
            ];
            for (c, v) in ids.iter_mut().zip(vals) {
                c.push(v.as_deref());
            }
            for (ns, list) in [("p.", &e.properties), ("c.", &e.context), ("t.", &e.traits)] {
                for (k, v) in list {
                    let col = props
                        .entry(format!("{ns}{k}"))
                        .or_insert_with(|| vec![None; row]);
                    col.resize(row, None);
                    col.push(Some(v.clone()));
                }
            }
        }
        data.unit_start.push(order.len() as u32);
        for (name, vals) in ID_COLUMNS.iter().zip(ids) {
            // user_id is always kept: an absent column would mean "the unit".
            if *name == "user_id" || vals.iter().any(Option::is_some) {
                let mut col = StrColumn::default();
                let mut index: HashMap<&str, u32> = HashMap::default();
                for v in vals {
                    col.keys.push(match v {
                        None => NULL_KEY,
                        Some(s) => {
                            let next = index.len() as u32;
                            *index.entry(s).or_insert_with(|| {
                                col.dict.push(s.to_string());
                                next
                            })
                        }
                    });
                }
                data.ids.insert(name.to_string(), col);
            }
        }
        for (k, mut vals) in props {
            vals.resize(order.len(), None);
            data.props.insert(k, PropColumn::from_values(vals));
        }
        if let Some(col) = data.ids.get("user_id")
            && (0..data.len()).all(|r| col.get(r) == Some(data.unit_of(r)))
        {
            data.ids.remove("user_id");
        }
        data
    }

    /// Merges several sorted partitions (e.g. history runs, oldest first) into one sorted
    /// partition. Ties in (unit, time) keep the order of `parts`, then of rows: arrival order.
    pub fn merge(parts: Vec<PartitionData>) -> PartitionData {
        let mut parts: Vec<PartitionData> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        if parts.len() <= 1 {
            return parts.pop().unwrap_or_else(PartitionData::empty);
        }
        if parts.iter().any(|p| p.ids.contains_key("user_id")) {
            parts
                .iter_mut()
                .for_each(PartitionData::materialize_user_ids);
        }
        // Concatenate, then sort a permutation by (unit, time, arrival, concatenated
        // position), units by their rank in name order.
        let mut row_unit: Vec<u32> = Vec::new();
        let mut unit_index: HashMap<&str, u32> = HashMap::default();
        let mut unit_names: Vec<&str> = Vec::new();
        for p in &parts {
            for (u, range) in p.unit_rows() {
                let next = unit_index.len() as u32;
                let id = *unit_index.entry(u).or_insert_with(|| {
                    unit_names.push(u);
                    next
                });
                row_unit.extend(std::iter::repeat_n(id, range.len()));
            }
        }
        let mut by_name: Vec<u32> = (0..unit_names.len() as u32).collect();
        by_name.sort_unstable_by_key(|&i| unit_names[i as usize]);
        let mut rank = vec![0u32; unit_names.len()];
        for (r, &i) in by_name.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        let all = PartitionData::concat(&parts);
        let by_seq = all.seq.len() == all.len();
        let mut order: Vec<u32> = (0..all.len() as u32).collect();
        order.sort_unstable_by_key(|&a| {
            let a = a as usize;
            (
                rank[row_unit[a] as usize],
                all.time[a],
                if by_seq { all.seq[a] } else { 0 },
                a,
            )
        });
        let unit_names: Vec<String> = unit_names.iter().map(|u| u.to_string()).collect();
        let mut out = all.take(&order);
        out.units.clear();
        out.unit_start.clear();
        for (row, &i) in order.iter().enumerate() {
            let u = &unit_names[row_unit[i as usize] as usize];
            if out.units.last() != Some(u) {
                out.units.push(u.clone());
                out.unit_start.push(row as u32);
            }
        }
        out.unit_start.push(order.len() as u32);
        out
    }

    fn empty() -> PartitionData {
        PartitionData {
            unit_start: vec![0],
            ..Default::default()
        }
    }

    /// `parts`' rows one after another (not their unit index), with one dictionary per
    /// text column.
    fn concat(parts: &[PartitionData]) -> PartitionData {
        let rows: usize = parts.iter().map(PartitionData::len).sum();
        let mut all = PartitionData::empty();
        all.time.reserve(rows);
        all.name.reserve(rows);
        all.kind.reserve(rows);
        let mut names = DictBuilder::default();
        for p in parts {
            let remap: Vec<u32> = p
                .names
                .iter()
                .map(|n| names.intern(&mut all.names, n))
                .collect();
            all.name.extend(p.name.iter().map(|&k| remap[k as usize]));
            all.time.extend_from_slice(&p.time);
            all.kind.extend_from_slice(&p.kind);
        }
        // Sequence numbers survive only if every part has them.
        if parts.iter().all(|p| p.seq.len() == p.len()) {
            all.seq = parts.iter().flat_map(|p| p.seq.iter().copied()).collect();
        }
        let id_keys: std::collections::BTreeSet<&String> =
            parts.iter().flat_map(|p| p.ids.keys()).collect();
        for k in id_keys {
            let col = StrColumn::concat(parts.iter().map(|p| (p.ids.get(k), p.len())));
            all.ids.insert(k.clone(), col);
        }
        let prop_keys: std::collections::BTreeSet<&String> =
            parts.iter().flat_map(|p| p.props.keys()).collect();
        for k in prop_keys {
            let pieces: Vec<(Option<&PropColumn>, usize)> =
                parts.iter().map(|p| (p.props.get(k), p.len())).collect();
            all.props.insert(k.clone(), PropColumn::concat(&pieces));
        }
        all
    }

    /// Reorders rows (the unit index is left for the caller to rebuild).
    pub(crate) fn take_rows(&self, order: &[u32]) -> PartitionData {
        self.take(order)
    }

    fn take(&self, order: &[u32]) -> PartitionData {
        PartitionData {
            units: Vec::new(),
            unit_start: Vec::new(),
            time: order.iter().map(|&i| self.time[i as usize]).collect(),
            seq: if self.seq.len() == self.len() {
                order.iter().map(|&i| self.seq[i as usize]).collect()
            } else {
                Vec::new()
            },
            name: order.iter().map(|&i| self.name[i as usize]).collect(),
            names: self.names.clone(),
            kind: order.iter().map(|&i| self.kind[i as usize]).collect(),
            ids: self
                .ids
                .iter()
                .map(|(k, c)| (k.clone(), c.take(order)))
                .collect(),
            props: self
                .props
                .iter()
                .map(|(k, c)| (k.clone(), c.take(order)))
                .collect(),
        }
    }
}

impl PartitionData {
    /// Re-labels units (`new_unit[i]` for unit `i`) and splits the rows by the partition of
    /// their new unit, each piece sorted again. Used when identity stitching moves an
    /// anonymous id's events to a user.
    pub fn regroup(&self, new_unit: &[String], partitions: usize) -> Vec<(usize, PartitionData)> {
        if !self.ids.contains_key("user_id") {
            let mut explicit = self.clone();
            explicit.materialize_user_ids();
            return explicit.regroup(new_unit, partitions);
        }
        let mut pieces: std::collections::BTreeMap<usize, Vec<(u32, u32)>> =
            std::collections::BTreeMap::new();
        for (i, range) in self.unit_rows().map(|(_, r)| r).enumerate() {
            let p = (sequin_core::unit_hash(&new_unit[i]) % partitions as u64) as usize;
            let list = pieces.entry(p).or_default();
            list.extend(range.map(|r| (r as u32, i as u32)));
        }
        pieces
            .into_iter()
            .map(|(p, rows)| {
                let mut rows = rows;
                let by_seq = self.seq.len() == self.len();
                rows.sort_by(|a, b| {
                    new_unit[a.1 as usize]
                        .cmp(&new_unit[b.1 as usize])
                        .then(self.time[a.0 as usize].cmp(&self.time[b.0 as usize]))
                        .then_with(|| {
                            if by_seq {
                                self.seq[a.0 as usize].cmp(&self.seq[b.0 as usize])
                            } else {
                                std::cmp::Ordering::Equal
                            }
                        })
                        .then(a.0.cmp(&b.0))
                });
                let order: Vec<u32> = rows.iter().map(|r| r.0).collect();
                let mut piece = self.take(&order);
                for (row, r) in rows.iter().enumerate() {
                    let u = &new_unit[r.1 as usize];
                    if piece.units.last() != Some(u) {
                        piece.units.push(u.clone());
                        piece.unit_start.push(row as u32);
                    }
                }
                piece.unit_start.push(rows.len() as u32);
                (p, piece)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(u: &str, t: i64, n: &str) -> Event {
        let mut e = Event::new(u, t, n);
        e.properties.push(("x".into(), Value::Int(t)));
        e
    }

    #[test]
    fn from_events_sorts_by_unit_time_then_arrival() {
        let events = vec![
            ev("b", 2, "x"),
            ev("a", 5, "y"),
            ev("a", 1, "z"),
            ev("a", 5, "w"),
        ];
        let units: Vec<&str> = events
            .iter()
            .map(|e| e.user_id.as_deref().unwrap())
            .collect();
        let d = PartitionData::from_events(&events, &units);
        assert_eq!(d.units, vec!["a", "b"]);
        let names: Vec<&str> = (0..d.len())
            .map(|r| d.names[d.name[r] as usize].as_str())
            .collect();
        assert_eq!(names, vec!["z", "y", "w", "x"]);
        assert_eq!(d.event(1), events[1]);
    }

    #[test]
    fn merge_keeps_arrival_order_for_ties_and_unifies_types() {
        let a = vec![ev("a", 5, "first"), ev("c", 1, "c")];
        let mut late = ev("a", 5, "second");
        late.properties[0].1 = Value::Str("text".into());
        let b = vec![late, ev("b", 0, "b")];
        let ua: Vec<&str> = a.iter().map(|e| e.user_id.as_deref().unwrap()).collect();
        let ub: Vec<&str> = b.iter().map(|e| e.user_id.as_deref().unwrap()).collect();
        let m = PartitionData::merge(vec![
            PartitionData::from_events(&a, &ua),
            PartitionData::from_events(&b, &ub),
        ]);
        assert_eq!(m.units, vec!["a", "b", "c"]);
        let names: Vec<String> = (0..m.len()).map(|r| m.event(r).name.into()).collect();
        assert_eq!(names, vec!["first", "second", "b", "c"]);
        assert_eq!(m.event(1).property("x"), Some(&Value::Str("text".into())));
        assert_eq!(m.event(0).property("x"), Some(&Value::Int(5)));
    }

    /// Merging runs whose property columns differ (a key absent from one run, whole numbers
    /// in one and numbers in another) keeps each column typed; it once rebuilt the whole
    /// column value by value per run, quadratic in the runs of a compaction.
    #[test]
    fn concat_keeps_columns_typed_across_pieces_that_lack_them() {
        let ints = PropColumn::Int(vec![Some(1), None]);
        let floats = PropColumn::Float(vec![Some(2.5)]);
        let text = PropColumn::Str(StrColumn {
            dict: vec!["a".into()],
            keys: vec![0, NULL_KEY],
        });
        let no_text = PropColumn::Str(StrColumn {
            dict: Vec::new(),
            keys: vec![NULL_KEY],
        });
        // A piece without the column pads with missing values of the column's type.
        assert_eq!(
            PropColumn::concat(&[(Some(&ints), 2), (None, 2)]),
            PropColumn::Int(vec![Some(1), None, None, None])
        );
        // A piece with no value takes the others' type.
        assert_eq!(
            PropColumn::concat(&[(Some(&no_text), 1), (Some(&ints), 2)]),
            PropColumn::Int(vec![None, Some(1), None])
        );
        // Whole numbers widen to numbers.
        assert_eq!(
            PropColumn::concat(&[(Some(&ints), 2), (Some(&floats), 1)]),
            PropColumn::Float(vec![Some(1.0), None, Some(2.5)])
        );
        // Text pieces share one dictionary.
        let more_text = PropColumn::Str(StrColumn {
            dict: vec!["b".into(), "a".into()],
            keys: vec![1, 0],
        });
        assert_eq!(
            PropColumn::concat(&[(Some(&text), 2), (None, 1), (Some(&more_text), 2)]),
            PropColumn::Str(StrColumn {
                dict: vec!["a".into(), "b".into()],
                keys: vec![0, NULL_KEY, NULL_KEY, 0, 1],
            })
        );
        // Only genuinely different types are mixed.
        assert_eq!(
            PropColumn::concat(&[(Some(&text), 2), (Some(&ints), 2)]),
            PropColumn::Mixed(vec![
                Some(Value::Str("a".into())),
                None,
                Some(Value::Int(1)),
                None
            ])
        );
    }
}
