//! The memtable: accepted events not yet in history, kept column by column with interned
//! strings (a few dozen bytes an event), and turned into sorted [`PartitionData`] at flush.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use rayon::prelude::*;

use sequin_core::{Event, Text, Value, unit_hash};

use crate::data::{ColumnKind, ID_COLUMNS, NULL_KEY, PartitionData, PropColumn, StrColumn};
use crate::identity::Identity;

#[derive(Default)]
struct Interner {
    index: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&k) = self.index.get(s) {
            return k;
        }
        let k = self.strings.len() as u32;
        self.strings.push(s.into());
        self.index.insert(s.into(), k);
        k
    }

    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NULL_KEY, |s| self.intern(s))
    }

    fn get(&self, k: u32) -> &str {
        &self.strings[k as usize]
    }
}

/// A column kept in blocks of [`Chunked::BLOCK`] values: growing never moves what is
/// held (a doubling `Vec` of 10M rows copies, and the kernel zeroes, hundreds of MB).
struct Chunked<T> {
    blocks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            blocks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    const BLOCK: usize = 1 << 16;

    fn push(&mut self, v: T) {
        match self.blocks.last_mut() {
            Some(b) if b.len() < Self::BLOCK => b.push(v),
            _ => {
                let mut b = Vec::with_capacity(Self::BLOCK);
                b.push(v);
                self.blocks.push(b);
            }
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.blocks.truncate(len.div_ceil(Self::BLOCK));
        if let Some(b) = self.blocks.last_mut() {
            b.truncate(len - (len.div_ceil(Self::BLOCK) - 1) * Self::BLOCK);
        }
        self.len = len;
    }

    /// The values, contiguous.
    fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        let mut out = Vec::with_capacity(self.len);
        for b in &self.blocks {
            out.extend_from_slice(b);
        }
        out
    }

    /// The first index whose value fails `pred` (values must be partitioned by it).
    fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(&self[mid]) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.blocks[i / Self::BLOCK][i % Self::BLOCK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.blocks[i / Self::BLOCK][i % Self::BLOCK]
    }
}

/// A property value as the memtable holds it: text interned (most property text repeats:
/// devices, pages, locales), so that intake copies no string it has seen and a flush maps
/// values to each file's dictionary by number, without hashing text.
#[derive(Clone, Copy)]
enum HeldValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(u32),
    Json(u32),
}

impl HeldValue {
    fn to_value(self, strings: &Interner) -> Value {
        match self {
            HeldValue::Bool(b) => Value::Bool(b),
            HeldValue::Int(i) => Value::Int(i),
            HeldValue::Float(f) => Value::Float(f),
            HeldValue::Str(k) => Value::Str(strings.get(k).to_string().into()),
            HeldValue::Json(k) => Value::Json(strings.get(k).to_string()),
        }
    }
}

/// A property column from held values, typed by the rule [`PropColumn::from_value_refs`]
/// follows ([`ColumnKind`]).
fn held_column(values: &[Option<HeldValue>], strings: &Interner) -> PropColumn {
    let kind = ColumnKind::of(values.iter().flatten().map(|v| match v {
        HeldValue::Bool(_) => 0,
        HeldValue::Int(_) => 1,
        HeldValue::Float(_) => 2,
        HeldValue::Str(_) => 3,
        HeldValue::Json(_) => 4,
    }));
    match kind {
        ColumnKind::Bool => PropColumn::Bool(
            values
                .iter()
                .map(|v| v.map(|v| matches!(v, HeldValue::Bool(true))))
                .collect(),
        ),
        ColumnKind::Int => PropColumn::Int(
            values
                .iter()
                .map(|v| match v {
                    Some(HeldValue::Int(i)) => Some(*i),
                    _ => None,
                })
                .collect(),
        ),
        ColumnKind::Float => PropColumn::Float(
            values
                .iter()
                .map(|v| match v {
                    Some(HeldValue::Int(i)) => Some(*i as f64),
                    Some(HeldValue::Float(f)) => Some(*f),
                    _ => None,
                })
                .collect(),
        ),
        ColumnKind::Str => {
            let mut col = StrColumn::default();
            let mut local: HashMap<u32, u32> = HashMap::default();
            col.keys = values
                .iter()
                .map(|v| match v {
                    Some(HeldValue::Str(k)) => {
                        let next = local.len() as u32;
                        *local.entry(*k).or_insert_with(|| {
                            col.dict.push(strings.get(*k).to_string());
                            next
                        })
                    }
                    _ => NULL_KEY,
                })
                .collect();
            PropColumn::Str(col)
        }
        ColumnKind::Mixed => PropColumn::Mixed(
            values
                .iter()
                .map(|v| v.map(|v| v.to_value(strings)))
                .collect(),
        ),
    }
}

/// The property keys and text values of the last events pushed, by position in the event's
/// property list. Events from one source repeat their keys in the same order, and often
/// their values (device, locale, browser): comparing with the last one at the same place
/// is cheaper than looking the text up in the interner, whose table is large.
#[derive(Default)]
struct LastProps {
    keys: Vec<(&'static str, String, u32)>,
    /// Empty where no text value was seen at that position.
    texts: Vec<Option<(String, u32)>>,
    /// Every key seen, by namespace (`p.`, `c.`, `t.`): where events of different shapes
    /// interleave, positions shift, and this finds the interned `ns` + `key` without
    /// building that text.
    known: [HashMap<Box<str>, u32>; 3],
}

impl LastProps {
    /// The interned `ns` + `key` (`ns` is `p.`, `c.` or `t.`).
    fn key(&mut self, position: usize, ns: &'static str, key: &str, strings: &mut Interner) -> u32 {
        if let Some((last_ns, last_key, id)) = self.keys.get(position)
            && *last_ns == ns
            && last_key == key
        {
            return *id;
        }
        let known = match ns {
            "p." => &mut self.known[0],
            "c." => &mut self.known[1],
            _ => &mut self.known[2],
        };
        let id = match known.get(key) {
            Some(&id) => id,
            None => {
                let id = strings.intern(&format!("{ns}{key}"));
                known.insert(key.into(), id);
                id
            }
        };
        match self.keys.get_mut(position) {
            Some((last_ns, last_key, last_id)) => {
                *last_ns = ns;
                last_key.clear();
                last_key.push_str(key);
                *last_id = id;
            }
            None => self.keys.push((ns, key.to_string(), id)),
        }
        id
    }

    /// The interned `text`.
    fn text(&mut self, position: usize, text: &str, strings: &mut Interner) -> u32 {
        if let Some(Some((last, id))) = self.texts.get(position)
            && last == text
        {
            return *id;
        }
        let id = strings.intern(text);
        if self.texts.len() <= position {
            self.texts.resize(position + 1, None);
        }
        match &mut self.texts[position] {
            Some((last, last_id)) => {
                last.clear();
                last.push_str(text);
                *last_id = id;
            }
            empty => *empty = Some((text.to_string(), id)),
        }
        id
    }
}

/// Message ids, kept apart from the interner: they are (nearly) all distinct, so interning
/// them would cost a hash-table insert and two allocations each and share nothing. Each is
/// copied into large text blocks and found by its ordinal.
#[derive(Default)]
struct MessageIds {
    blocks: Vec<String>,
    /// Per id: its block, start and length.
    at: Chunked<(u32, u32, u32)>,
}

impl MessageIds {
    const BLOCK: usize = 1 << 20;

    /// Stores `id`; returns its ordinal.
    fn push(&mut self, id: &str) -> u32 {
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.len() + id.len() <= b.capacity());
        if !fits {
            self.blocks
                .push(String::with_capacity(Self::BLOCK.max(id.len())));
        }
        let block = self.blocks.len() - 1;
        let text = &mut self.blocks[block];
        self.at
            .push((block as u32, text.len() as u32, id.len() as u32));
        text.push_str(id);
        self.at.len() as u32 - 1
    }

    fn get(&self, ordinal: u32) -> &str {
        let (block, start, len) = self.at[ordinal as usize];
        &self.blocks[block as usize][start as usize..(start + len) as usize]
    }

    /// Keeps the first `n` ids.
    fn truncate(&mut self, n: usize) {
        if n >= self.at.len() {
            return;
        }
        let (block, start, _) = self.at[n];
        self.blocks.truncate(block as usize + 1);
        self.blocks[block as usize].truncate(start as usize);
        self.at.truncate(n);
    }
}

/// Contiguous copies of the memtable's row columns, for the flush's random access.
struct Flat {
    /// What every row has, side by side: one cache miss per row when gathering at random.
    core: Vec<Core>,
    /// Empty when the column holds no value at all.
    ids: [Vec<u32>; 6],
    /// Empty when no row has a property.
    prop_end: Vec<u32>,
}

struct Core {
    time: i64,
    seq: u64,
    name: u32,
    kind: u8,
}

impl Flat {
    fn id(&self, column: usize, row: usize) -> u32 {
        self.ids[column].get(row).copied().unwrap_or(NULL_KEY)
    }
}

/// Which interned unit keys of a memtable stand for another unit (identity links), and
/// the canonical id of each; keys not in it are their own unit. See [`Memtable::unit_map`].
#[derive(Debug, Default)]
pub struct UnitMap(HashMap<u32, String>);

/// Accepted, not yet flushed events.
#[derive(Default)]
pub struct Memtable {
    strings: Interner,
    kind: Chunked<u8>,
    name: Chunked<u32>,
    time: Chunked<i64>,
    seq: Chunked<u64>,
    ids: [Chunked<u32>; 6],
    prop_end: Chunked<u32>,
    prop_key: Chunked<u32>,
    prop_val: Chunked<HeldValue>,
    /// The message ids; `ids[MESSAGE]` holds ordinals into it, not interned strings.
    messages: MessageIds,
    last_props: LastProps,
    /// Rows of each unit key (user id, else anonymous id), for reading one user back, as
    /// chains through the rows: the last row of each interned key (indexed by the key's id)
    /// and, per row, the previous row with the same key. No allocation per key.
    last_row_of_key: Vec<u32>,
    prev_row_same_key: Chunked<u32>,
    bytes: usize,
}

const USER: usize = 0;
const ANON: usize = 1;
const MESSAGE: usize = 5;

impl Memtable {
    /// Number of events held.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// Nothing held?
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Approximate memory held, in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an event. Duplicate message ids are the caller's to drop (the store's window of
    /// recent ids covers every unflushed event).
    pub fn push(&mut self, e: &Event, seq: u64) {
        let before = self.strings.strings.len();
        let mut message_bytes = 0;
        self.kind.push(e.kind as u8);
        let n = self.strings.intern(&e.name);
        self.name.push(n);
        self.time.push(e.time);
        self.seq.push(seq);
        let vals = [
            &e.user_id,
            &e.anonymous_id,
            &e.previous_id,
            &e.session_id,
            &e.conversation_id,
        ];
        for (col, v) in self.ids.iter_mut().zip(vals) {
            col.push(self.strings.opt(v.as_deref()));
        }
        let message = e.message_id.as_deref().map_or(NULL_KEY, |m| {
            message_bytes = m.len() + 12;
            self.messages.push(m)
        });
        self.ids[MESSAGE].push(message);
        let row = self.time.len() as u32 - 1;
        let key = match self.ids[USER][row as usize] {
            NULL_KEY => self.ids[ANON][row as usize],
            k => k,
        };
        let mut prev = NULL_KEY;
        if key != NULL_KEY {
            let k = key as usize;
            if self.last_row_of_key.len() <= k {
                self.last_row_of_key
                    .resize(self.strings.strings.len(), NULL_KEY);
            }
            prev = std::mem::replace(&mut self.last_row_of_key[k], row);
        }
        self.prev_row_same_key.push(prev);
        let mut prop_bytes = message_bytes;
        let mut position = 0;
        for (ns, list) in [("p.", &e.properties), ("c.", &e.context), ("t.", &e.traits)] {
            for (k, v) in list {
                let key = self.last_props.key(position, ns, k, &mut self.strings);
                self.prop_key.push(key);
                prop_bytes += 20;
                let held = match v {
                    Value::Bool(b) => HeldValue::Bool(*b),
                    Value::Int(i) => HeldValue::Int(*i),
                    Value::Float(f) => HeldValue::Float(*f),
                    Value::Str(s) => {
                        HeldValue::Str(self.last_props.text(position, s, &mut self.strings))
                    }
                    Value::Json(s) => HeldValue::Json(self.strings.intern(s)),
                };
                self.prop_val.push(held);
                position += 1;
            }
        }
        self.prop_end.push(self.prop_key.len() as u32);
        let new_strings: usize = self.strings.strings[before..]
            .iter()
            .map(|s| s.len() * 2 + 48)
            .sum();
        self.bytes += 8 + 4 + 1 + 24 + 4 + 8 + prop_bytes + new_strings;
    }

    /// Drops the rows from `rows` on, as if they had never been pushed (their interned
    /// strings stay, unused), and sets the byte count back to `bytes`. For an append whose
    /// log write failed.
    pub fn truncate(&mut self, rows: usize, bytes: usize) {
        for r in (rows..self.len()).rev() {
            let key = match self.ids[USER][r] {
                NULL_KEY => self.ids[ANON][r],
                k => k,
            };
            if key != NULL_KEY {
                self.last_row_of_key[key as usize] = self.prev_row_same_key[r];
            }
        }
        if let Some(first) = (rows..self.len())
            .map(|r| self.ids[MESSAGE][r])
            .find(|&m| m != NULL_KEY)
        {
            self.messages.truncate(first as usize);
        }
        let props = if rows == 0 {
            0
        } else {
            self.prop_end[rows - 1] as usize
        };
        self.kind.truncate(rows);
        self.name.truncate(rows);
        self.time.truncate(rows);
        self.seq.truncate(rows);
        for col in &mut self.ids {
            col.truncate(rows);
        }
        self.prop_end.truncate(rows);
        self.prop_key.truncate(props);
        self.prop_val.truncate(props);
        self.prev_row_same_key.truncate(rows);
        self.bytes = bytes;
    }

    /// The held events with an arrival number of at least `from`, with their numbers.
    pub fn events_from(&self, from: u64) -> Vec<(u64, Event)> {
        let start = self.seq.partition_point(|&s| s < from) as u32;
        self.rebuild_rows((start..self.len() as u32).collect())
    }

    /// The held events whose unit key (user id, else anonymous id) is one of `keys`, in
    /// arrival order with their sequence numbers, rebuilt in full (for re-evaluating one
    /// unit).
    pub fn events_of(&self, keys: &[&str]) -> Vec<(u64, Event)> {
        let mut rows: Vec<u32> = Vec::new();
        for &k in keys.iter().filter_map(|k| self.strings.index.get(*k)) {
            let mut r = self
                .last_row_of_key
                .get(k as usize)
                .copied()
                .unwrap_or(NULL_KEY);
            while r != NULL_KEY {
                rows.push(r);
                r = self.prev_row_same_key[r as usize];
            }
        }
        rows.sort_unstable();
        self.rebuild_rows(rows)
    }

    fn rebuild_rows(&self, rows: Vec<u32>) -> Vec<(u64, Event)> {
        let mut out = Vec::with_capacity(rows.len());
        let id = |c: usize, r: usize| match self.ids[c][r] {
            NULL_KEY => None,
            k => Some(Text::from(self.id_text(c, k))),
        };
        for r in rows {
            let r = r as usize;
            let mut e = Event {
                kind: sequin_core::MessageKind::from_u8(self.kind[r]),
                name: self.strings.get(self.name[r]).into(),
                time: self.time[r],
                user_id: id(USER, r),
                anonymous_id: id(ANON, r),
                previous_id: id(2, r),
                session_id: id(3, r),
                conversation_id: id(4, r),
                message_id: id(5, r),
                properties: Vec::new(),
                context: Vec::new(),
                traits: Vec::new(),
            };
            let from = if r == 0 {
                0
            } else {
                self.prop_end[r - 1] as usize
            };
            for i in from..self.prop_end[r] as usize {
                let (ns, k) = self.strings.get(self.prop_key[i]).split_at(2);
                let target = match ns {
                    "c." => &mut e.context,
                    "t." => &mut e.traits,
                    _ => &mut e.properties,
                };
                target.push((
                    k.to_string().into(),
                    self.prop_val[i].to_value(&self.strings),
                ));
            }
            out.push((self.seq[r], e));
        }
        out
    }

    /// The text of value `k` of id column `c`.
    fn id_text(&self, c: usize, k: u32) -> &str {
        if c == MESSAGE {
            self.messages.get(k)
        } else {
            self.strings.get(k)
        }
    }

    /// The columns that sorting and gathering read at random, copied into contiguous
    /// vectors (in parallel); an id column that holds no value becomes all-null.
    fn flat(&self) -> Flat {
        let ids_of = |c: &Chunked<u32>| -> Vec<u32> {
            if c.blocks.iter().all(|b| b.iter().all(|&k| k == NULL_KEY)) {
                return Vec::new();
            }
            c.to_vec()
        };
        let (core, (ids, prop_end)) = rayon::join(
            || {
                let mut core = Vec::with_capacity(self.len());
                for (((time, seq), name), kind) in (self.time.blocks.iter())
                    .zip(&self.seq.blocks)
                    .zip(&self.name.blocks)
                    .zip(&self.kind.blocks)
                {
                    core.extend((time.iter().zip(seq)).zip(name.iter().zip(kind)).map(
                        |((&time, &seq), (&name, &kind))| Core {
                            time,
                            seq,
                            name,
                            kind,
                        },
                    ));
                }
                core
            },
            || {
                let ids: Vec<Vec<u32>> = self.ids.par_iter().map(ids_of).collect();
                let prop_end = if self.prop_key.is_empty() {
                    Vec::new()
                } else {
                    self.prop_end.to_vec()
                };
                (ids, prop_end)
            },
        );
        Flat {
            core,
            ids: ids.try_into().expect("six id columns"),
            prop_end,
        }
    }

    /// The units of the held rows under `identity`: every unit key (user id, else
    /// anonymous id) that a link makes another unit. Taken when the memtable is frozen, so
    /// that writing it to history needs no access to the live identity map.
    pub fn unit_map(&self, identity: &Identity) -> UnitMap {
        let mut map = HashMap::default();
        if identity.is_empty() {
            return UnitMap(map);
        }
        for (k, &last) in self.last_row_of_key.iter().enumerate() {
            if last == NULL_KEY {
                continue;
            }
            let own = self.strings.get(k as u32);
            let canon = identity.resolve(own);
            if canon != own {
                map.insert(k as u32, canon.to_string());
            }
        }
        UnitMap(map)
    }

    /// Sorts the held events into per-partition data, resolving each event's unit through
    /// `identity`. Returns `(partition, data)` for every non-empty partition.
    pub fn to_partitions(&self, units: &UnitMap, partitions: usize) -> Vec<(usize, PartitionData)> {
        let rows = self.len();
        if rows == 0 {
            return Vec::new();
        }
        let trace = std::env::var_os("SEQUIN_TRACE").is_some();
        let t0 = std::time::Instant::now();
        let f = &self.flat();
        if trace {
            eprintln!("  columns copied {:?}", t0.elapsed());
        }
        // Unit of each row: canonical(user id, else anonymous id), as a string id. Ids at or
        // above `n` name canonical ids that are not interned here (`extra`).
        let n = self.strings.strings.len() as u32;
        let mut extra: Vec<String> = Vec::new();
        let mut canon_of: HashMap<u32, u32> = HashMap::default();
        let mut row_unit = Vec::with_capacity(rows);
        for r in 0..rows {
            let k = if f.id(USER, r) != NULL_KEY {
                f.id(USER, r)
            } else {
                f.id(ANON, r)
            };
            if units.0.is_empty() {
                row_unit.push(k);
                continue;
            }
            let c = *canon_of.entry(k).or_insert_with(|| match units.0.get(&k) {
                None => k,
                Some(canon) => match self.strings.index.get(canon.as_str()) {
                    Some(&id) => id,
                    None => {
                        extra.push(canon.clone());
                        n + extra.len() as u32 - 1
                    }
                },
            });
            row_unit.push(c);
        }
        drop(canon_of);
        let unit_str = |u: u32| -> &str {
            if u < n {
                self.strings.get(u)
            } else {
                &extra[(u - n) as usize]
            }
        };
        // Dense ids for the distinct units.
        let mut dense = vec![NULL_KEY; (n as usize) + extra.len()];
        let mut distinct: Vec<u32> = Vec::new();
        for u in row_unit.iter_mut() {
            let d = &mut dense[*u as usize];
            if *d == NULL_KEY {
                *d = distinct.len() as u32;
                distinct.push(*u);
            }
            *u = *d;
        }
        let canon_strings: Vec<&str> = distinct.iter().map(|&u| unit_str(u)).collect();
        if trace {
            eprintln!("  units resolved {:?}", t0.elapsed());
        }
        // Rank units by (partition, key).
        let mut by_rank: Vec<u32> = (0..canon_strings.len() as u32).collect();
        let part: Vec<u32> = canon_strings
            .iter()
            .map(|s| (unit_hash(s) % partitions as u64) as u32)
            .collect();
        by_rank.par_sort_unstable_by(|&a, &b| {
            part[a as usize]
                .cmp(&part[b as usize])
                .then_with(|| canon_strings[a as usize].cmp(canon_strings[b as usize]))
        });
        let mut rank = vec![0u32; canon_strings.len()];
        for (r, &u) in by_rank.iter().enumerate() {
            rank[u as usize] = r as u32;
        }
        if trace {
            eprintln!("  units ranked {:?}", t0.elapsed());
        }
        // Counting sort of rows by unit rank: stable, so ties keep arrival order.
        let mut start = vec![0u32; by_rank.len() + 1];
        for &u in &row_unit {
            start[rank[u as usize] as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; rows];
        for (r, &u) in row_unit.iter().enumerate() {
            let slot = &mut fill[rank[u as usize] as usize];
            order[*slot as usize] = r as u32;
            *slot += 1;
        }
        if trace {
            eprintln!("  rows sorted by unit {:?}", t0.elapsed());
        }
        // Cut into partitions.
        let mut ranges = Vec::new();
        let mut r0 = 0usize;
        while r0 < by_rank.len() {
            let p = part[by_rank[r0] as usize];
            let mut r1 = r0;
            while r1 < by_rank.len() && part[by_rank[r1] as usize] == p {
                r1 += 1;
            }
            ranges.push((p as usize, r0, r1));
            r0 = r1;
        }
        // Event names are few: map interned ids to dense name ids once for all partitions.
        let mut name_dense = vec![NULL_KEY; self.strings.strings.len()];
        let mut name_list: Vec<String> = Vec::new();
        for k in f.core.iter().map(|c| c.name) {
            if name_dense[k as usize] == NULL_KEY {
                name_dense[k as usize] = name_list.len() as u32;
                name_list.push(self.strings.get(k).to_string());
            }
        }
        if trace {
            eprintln!("  names mapped {:?}", t0.elapsed());
        }
        let out = ranges
            .into_par_iter()
            .map(|(p, r0, r1)| {
                let units: Vec<String> = by_rank[r0..r1]
                    .iter()
                    .map(|&u| canon_strings[u as usize].to_string())
                    .collect();
                let base = start[r0];
                let unit_start: Vec<u32> = start[r0..=r1].iter().map(|s| s - base).collect();
                let mut rows = order[start[r0] as usize..start[r1] as usize].to_vec();
                // Within a unit, order by time (stable: arrival breaks ties).
                for w in unit_start.windows(2) {
                    let unit = &mut rows[w[0] as usize..w[1] as usize];
                    if !unit
                        .windows(2)
                        .all(|p| f.core[p[0] as usize].time <= f.core[p[1] as usize].time)
                    {
                        unit.sort_by_key(|&r| f.core[r as usize].time);
                    }
                }
                let rows = &rows[..];
                // Is the user id of every row its unit? Then the file needs no user_id column.
                let user_is_unit = |rows: &[u32]| {
                    rows.iter().all(|&r| {
                        let k = f.id(USER, r as usize);
                        k != NULL_KEY && k == distinct[row_unit[r as usize] as usize]
                    })
                };
                (
                    p,
                    self.gather(
                        f,
                        units,
                        unit_start,
                        rows,
                        &name_dense,
                        &name_list,
                        user_is_unit,
                    ),
                )
            })
            .collect();
        if trace {
            eprintln!("  gathered {:?}", t0.elapsed());
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        f: &Flat,
        units: Vec<String>,
        unit_start: Vec<u32>,
        rows: &[u32],
        name_dense: &[u32],
        name_list: &[String],
        user_is_unit: impl Fn(&[u32]) -> bool,
    ) -> PartitionData {
        // Local name dictionary: the global dense ids used in this partition, in first-use order.
        let mut local = vec![NULL_KEY; name_list.len()];
        let mut names = Vec::new();
        let mut name = Vec::with_capacity(rows.len());
        let mut time = Vec::with_capacity(rows.len());
        let mut seq = Vec::with_capacity(rows.len());
        let mut kind = Vec::with_capacity(rows.len());
        for &r in rows {
            let core = &f.core[r as usize];
            let g = name_dense[core.name as usize] as usize;
            if local[g] == NULL_KEY {
                local[g] = names.len() as u32;
                names.push(name_list[g].clone());
            }
            name.push(local[g]);
            time.push(core.time);
            seq.push(core.seq);
            kind.push(core.kind);
        }
        let mut ids = BTreeMap::new();
        let user_is_unit = user_is_unit(rows);
        for (c, col_name) in ID_COLUMNS.iter().enumerate() {
            // An absent user_id column means "the unit"; one with no values is kept (all null).
            if (c != USER && !rows.iter().any(|&r| f.id(c, r as usize) != NULL_KEY))
                || (c == USER && user_is_unit)
            {
                continue;
            }
            let mut col = StrColumn::default();
            let mut local: HashMap<u32, u32> = HashMap::default();
            col.keys = rows
                .iter()
                .map(|&r| match f.id(c, r as usize) {
                    NULL_KEY => NULL_KEY,
                    k => {
                        let next = local.len() as u32;
                        *local.entry(k).or_insert_with(|| {
                            col.dict.push(self.id_text(c, k).to_string());
                            next
                        })
                    }
                })
                .collect();
            ids.insert(col_name.to_string(), col);
        }
        // Each property column by reference first: values are copied once, into their column.
        let mut props: HashMap<u32, Vec<Option<HeldValue>>> = HashMap::default();
        for (i, &r) in rows.iter().enumerate().filter(|_| !f.prop_end.is_empty()) {
            let r = r as usize;
            let from = if r == 0 {
                0
            } else {
                f.prop_end[r - 1] as usize
            };
            for p in from..f.prop_end[r] as usize {
                // Every column ends `rows` long: one allocation each, never regrown.
                let col = props
                    .entry(self.prop_key[p])
                    .or_insert_with(|| Vec::with_capacity(rows.len()));
                col.resize(i, None);
                col.push(Some(self.prop_val[p]));
            }
        }
        let props = props
            .into_iter()
            .map(|(k, mut v)| {
                v.resize(rows.len(), None);
                (
                    self.strings.get(k).to_string(),
                    held_column(&v, &self.strings),
                )
            })
            .collect();
        PartitionData {
            units,
            unit_start,
            time,
            seq,
            name,
            names,
            kind,
            ids,
            props,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_agree_with_the_simple_sort() {
        let mut m = Memtable::default();
        let mut events = Vec::new();
        for i in 0..200i64 {
            let mut e = Event::new(format!("u{}", i % 7), (i * 37) % 11, format!("e{}", i % 3));
            if i % 5 == 0 {
                e.properties.push(("k".into(), Value::Int(i)));
            }
            // Text and mixed values that repeat, or not, at shifting positions (the intake
            // compares each with the last one at its position).
            let texts = ["", "a", "b", "a"];
            if i % 2 == 0 {
                e.properties
                    .push(("s".into(), Value::Str(texts[(i % 4) as usize].into())));
            }
            // (Sorted by key, as the columns give them back.)
            if i % 7 == 0 {
                e.context.push(("m".into(), Value::Json("[1]".into())));
            } else if i % 3 == 0 {
                e.context.push(("m".into(), Value::Str("[1]".into())));
            }
            e.context
                .push(("os.name".into(), Value::Str(texts[(i % 3) as usize].into())));
            events.push(e);
        }
        for (i, e) in events.iter().enumerate() {
            m.push(e, i as u64);
        }
        let parts = m.to_partitions(&UnitMap::default(), 4);
        let mut total = 0;
        for (p, mut data) in parts {
            // Each row keeps the sequence number it was pushed with.
            let seqs = std::mem::take(&mut data.seq);
            for (r, &s) in seqs.iter().enumerate() {
                assert_eq!(data.event(r), events[s as usize]);
            }
            let mine: Vec<&Event> = events
                .iter()
                .filter(|e| unit_hash(e.user_id.as_deref().unwrap()) % 4 == p as u64)
                .collect();
            let owned: Vec<Event> = mine.into_iter().cloned().collect();
            let units: Vec<&str> = owned
                .iter()
                .map(|e| e.user_id.as_deref().unwrap())
                .collect();
            let mut expected = PartitionData::from_events(&owned, &units);
            expected.seq.clear();
            assert_eq!(data, expected);
            total += data.len();
        }
        assert_eq!(total, 200);
    }

    #[test]
    fn truncate_undoes_pushes() {
        let mut m = Memtable::default();
        let event = |i: i64| {
            let mut e = Event::new(format!("u{}", i % 3), i, "x");
            e.message_id = Some(format!("m{i}").into());
            e.properties.push(("k".into(), Value::Int(i)));
            e
        };
        for i in 0..5 {
            m.push(&event(i), i as u64);
        }
        let bytes = m.approx_bytes();
        for i in 5..9 {
            m.push(&event(i), i as u64);
        }
        m.truncate(5, bytes);
        assert_eq!((m.len(), m.approx_bytes()), (5, bytes));
        m.push(&event(6), 6);
        let rows: Vec<u64> = m.events_of(&["u0"]).iter().map(|(s, _)| *s).collect();
        assert_eq!(rows, [0, 3, 6]);
        assert_eq!(m.events_from(3)[0].1, event(3));
        assert_eq!(m.events_from(5)[0].1, event(6));
    }

    #[test]
    fn message_ids_read_back_across_text_blocks() {
        let mut m = Memtable::default();
        let long = "x".repeat(MessageIds::BLOCK + 5);
        let ids: Vec<Option<String>> = (0..2000)
            .map(|i| match i % 4 {
                0 => None,
                1 if i == 1001 => Some(long.clone()),
                _ => Some(format!("message-{i}-{}", "y".repeat(i % 700))),
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let mut e = Event::new("u", i as i64, "x");
            e.message_id = id.as_deref().map(Text::from);
            m.push(&e, i as u64);
        }
        assert!(m.messages.blocks.len() > 2);
        let back: Vec<Option<String>> = m
            .events_from(0)
            .into_iter()
            .map(|(_, e)| e.message_id.map(String::from))
            .collect();
        assert_eq!(back, ids);
        let (_, data) = m.to_partitions(&UnitMap::default(), 1).remove(0);
        let col = &data.ids["message_id"];
        let flushed: Vec<Option<String>> = (0..data.len())
            .map(|r| col.get(r).map(str::to_string))
            .collect();
        assert_eq!(flushed, ids);
    }
}
