//! Frequent sequential patterns: PrefixSpan (Pei et al., 2001) with pseudo-projection.
//!
//! A pattern is a list of itemsets; a sequence contains it when its itemsets can be matched
//! in order (gaps allowed), each pattern itemset a subset of the matched sequence itemset.
//! Support counts sequences, not occurrences. The result is the complete set of patterns
//! whose support reaches the threshold, the same set SPMF's PrefixSpan prints for the same
//! absolute support.
//!
//! Store events become single-item itemsets (one event, one itemset), so an event pattern's
//! support is exactly the membership of `sequence { a; b; … }` over the same units.

use std::fmt::Write as _;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use sequin_core::time::Micros;
use sequin_lang::ast::UnitKind;
use sequin_store::EventSource;

use crate::{InsightError, units};

/// Sequences of itemsets over a dense item alphabet.
#[derive(Debug, Clone, Default)]
pub struct SequenceDb {
    /// Items, sequence after sequence, itemset after itemset; sorted within an itemset.
    items: Vec<u32>,
    /// Per position: the first position of the next itemset.
    next_set: Vec<u32>,
    /// Sequence `i` is `items[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    /// Item id → its label (the SPMF number, or the event name).
    pub labels: Vec<String>,
    ids: FxHashMap<String, u32>,
    max_itemset: usize,
}

impl SequenceDb {
    /// An empty database.
    pub fn new() -> SequenceDb {
        SequenceDb {
            starts: vec![0],
            ..SequenceDb::default()
        }
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// No sequences?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of a label, assigned on first sight.
    pub fn item(&mut self, label: &str) -> u32 {
        if let Some(&id) = self.ids.get(label) {
            return id;
        }
        let id = self.labels.len() as u32;
        self.labels.push(label.to_string());
        self.ids.insert(label.to_string(), id);
        id
    }

    /// Appends a sequence of itemsets. Each itemset is sorted and de-duplicated; empty
    /// itemsets are dropped.
    pub fn push(&mut self, itemsets: impl IntoIterator<Item = Vec<u32>>) {
        for mut set in itemsets {
            set.sort_unstable();
            set.dedup();
            if set.is_empty() {
                continue;
            }
            let end = (self.items.len() + set.len()) as u32;
            self.max_itemset = self.max_itemset.max(set.len());
            for x in set {
                self.items.push(x);
                self.next_set.push(end);
            }
        }
        self.starts.push(self.items.len() as u32);
    }

    /// Appends a sequence of single items (one event, one itemset).
    pub fn push_items(&mut self, items: &[u32]) {
        self.max_itemset = self.max_itemset.max(usize::from(!items.is_empty()));
        for &x in items {
            self.items.push(x);
            self.next_set.push(self.items.len() as u32);
        }
        self.starts.push(self.items.len() as u32);
    }

    /// Parses SPMF's sequence format: one sequence per line, items as integers, `-1` ends
    /// an itemset, `-2` ends the sequence. Blank lines and lines starting with `#`, `%` or
    /// `@` (SPMF's metadata) are skipped. `source` names the input in errors.
    pub fn parse_spmf(text: &str, source: &str) -> Result<SequenceDb, InsightError> {
        let mut db = SequenceDb::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', '%', '@']) {
                continue;
            }
            let bad = |reason: String| InsightError::Input {
                place: format!("{source}:{}", n + 1),
                reason,
            };
            let mut sets = Vec::new();
            let mut current = Vec::new();
            let mut ended = false;
            for tok in line.split_ascii_whitespace() {
                if ended {
                    return Err(bad(format!("`{tok}` after the sequence's -2")));
                }
                match tok {
                    "-1" => sets.push(std::mem::take(&mut current)),
                    "-2" => ended = true,
                    _ => {
                        if tok.starts_with('<') {
                            return Err(bad(format!(
                                "`{tok}`: timestamped SPMF sequences are not supported"
                            )));
                        }
                        tok.parse::<i64>().map_err(|_| {
                            bad(format!("`{tok}` is not an item (an integer), -1 or -2"))
                        })?;
                        current.push(db.item(tok));
                    }
                }
            }
            if !ended {
                return Err(bad("the sequence does not end with -2".into()));
            }
            if !current.is_empty() {
                sets.push(current);
            }
            db.push(sets);
        }
        Ok(db)
    }

    fn seq_end(&self, sid: u32) -> usize {
        self.starts[sid as usize + 1] as usize
    }
}

/// The units of a store as sequences of event names (one event, one itemset; identify,
/// alias and group messages left out), up to `as_of`.
pub fn store_sequences(
    source: &dyn EventSource,
    unit: UnitKind,
    gap: Micros,
    as_of: Option<i64>,
) -> Result<SequenceDb, InsightError> {
    let proj = units::projection(unit, &[]);
    // Per partition: its event names and its sequences over them.
    type Part = (Vec<String>, Vec<Vec<u32>>);
    let parts: Vec<Result<Part, InsightError>> = (0..source.partitions())
        .into_par_iter()
        .map(|p| {
            let data = source.read_partition(p, &proj)?;
            let mut seqs = Vec::new();
            units::for_each_unit(&data, unit, gap, as_of, |_, rows| {
                let seq: Vec<u32> = rows
                    .iter()
                    .filter(|&&r| units::is_behaviour(&data, r))
                    .map(|&r| data.name[r])
                    .collect();
                if !seq.is_empty() {
                    seqs.push(seq);
                }
            });
            Ok((data.names, seqs))
        })
        .collect();
    let mut db = SequenceDb::new();
    for part in parts {
        let (names, seqs) = part?;
        let global: Vec<u32> = names.iter().map(|n| db.item(n)).collect();
        for s in seqs {
            let mapped: Vec<u32> = s.iter().map(|&x| global[x as usize]).collect();
            db.push_items(&mapped);
        }
    }
    Ok(db)
}

/// Relative support → the absolute number of sequences: `ceil(s × sequences)`, at least 1.
pub fn absolute_support(relative: f64, sequences: usize) -> u32 {
    ((relative * sequences as f64).ceil() as u32).max(1)
}

/// What to mine.
#[derive(Debug, Clone, Copy)]
pub struct MineOptions {
    /// Minimum number of supporting sequences.
    pub min_support: u32,
    /// Longest pattern, in items.
    pub max_length: Option<usize>,
}

/// A frequent pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqPattern {
    /// Itemsets, each sorted.
    pub itemsets: Vec<Vec<u32>>,
    /// Supporting sequences.
    pub support: u32,
}

impl SeqPattern {
    /// Items in the pattern.
    pub fn len(&self) -> usize {
        self.itemsets.iter().map(Vec::len).sum()
    }

    /// No items?
    pub fn is_empty(&self) -> bool {
        self.itemsets.is_empty()
    }

    /// The pattern as a sequence criterion of the language, `sequence { a; b; "c d" }`,
    /// when every itemset is a single item (as store patterns are; one event cannot match
    /// two names).
    pub fn sequence_criterion(&self, db: &SequenceDb) -> Option<String> {
        let steps: Option<Vec<String>> = self
            .itemsets
            .iter()
            .map(|set| match set.as_slice() {
                [x] => Some(sequin_lang::fmt::event_name(&db.labels[*x as usize])),
                _ => None,
            })
            .collect();
        Some(format!("sequence {{ {} }}", steps?.join("; ")))
    }

    /// SPMF's output form: `a -1 b c -1 #SUP: n`.
    pub fn spmf(&self, db: &SequenceDb) -> String {
        let mut s = String::new();
        for set in &self.itemsets {
            for &x in set {
                let _ = write!(s, "{} ", db.labels[x as usize]);
            }
            s.push_str("-1 ");
        }
        let _ = write!(s, "#SUP: {}", self.support);
        s
    }
}

/// A sequence and the position of the last item matched (u32::MAX: nothing matched yet).
type Projection = Vec<(u32, u32)>;

const START: u32 = u32::MAX;

/// Every pattern with support ≥ `opts.min_support`, ordered by support (descending), then
/// by pattern.
pub fn prefixspan(db: &SequenceDb, opts: MineOptions) -> Vec<SeqPattern> {
    if db.is_empty() || opts.max_length == Some(0) {
        return Vec::new();
    }
    let root: Projection = (0..db.len() as u32).map(|s| (s, START)).collect();
    let mut miner = Miner::new(db, opts);
    let firsts = miner.s_extensions(&root);
    // The subtrees under different first items are independent: mine them in parallel.
    let mut patterns: Vec<SeqPattern> = firsts
        .into_par_iter()
        .map(|(item, support, proj)| {
            let mut m = Miner::new(db, opts);
            m.prefix.push(vec![item]);
            m.emit(support);
            m.grow(&proj, 1);
            m.out
        })
        .flatten()
        .collect();
    patterns.par_sort_unstable_by(|a, b| {
        b.support
            .cmp(&a.support)
            .then_with(|| a.itemsets.cmp(&b.itemsets))
    });
    patterns
}

struct Miner<'a> {
    db: &'a SequenceDb,
    opts: MineOptions,
    /// `seen[item] == stamp`: already counted for the sequence being scanned.
    seen: Vec<u32>,
    stamp: u32,
    count: Vec<u32>,
    prefix: Vec<Vec<u32>>,
    out: Vec<SeqPattern>,
}

impl<'a> Miner<'a> {
    fn new(db: &'a SequenceDb, opts: MineOptions) -> Miner<'a> {
        Miner {
            db,
            opts,
            seen: vec![0; db.labels.len()],
            stamp: 0,
            count: vec![0; db.labels.len()],
            prefix: Vec::new(),
            out: Vec::new(),
        }
    }

    fn emit(&mut self, support: u32) {
        self.out.push(SeqPattern {
            itemsets: self.prefix.clone(),
            support,
        });
    }

    fn next_stamp(&mut self) -> u32 {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }

    fn grow(&mut self, proj: &Projection, len: usize) {
        if self.opts.max_length.is_some_and(|m| len >= m) {
            return;
        }
        if self.db.max_itemset > 1 {
            for (item, support, next) in self.i_extensions(proj) {
                self.prefix.last_mut().unwrap().push(item);
                self.emit(support);
                self.grow(&next, len + 1);
                self.prefix.last_mut().unwrap().pop();
            }
        }
        for (item, support, next) in self.s_extensions(proj) {
            self.prefix.push(vec![item]);
            self.emit(support);
            self.grow(&next, len + 1);
            self.prefix.pop();
        }
    }

    /// Where a sequence-extension scan starts: the itemset after the matched one.
    fn s_start(&self, sid: u32, pos: u32) -> usize {
        if pos == START {
            self.db.starts[sid as usize] as usize
        } else {
            self.db.next_set[pos as usize] as usize
        }
    }

    /// Frequent items in a later itemset, each with its projection (first occurrences).
    fn s_extensions(&mut self, proj: &Projection) -> Vec<(u32, u32, Projection)> {
        let mut touched = Vec::new();
        for &(sid, pos) in proj {
            let stamp = self.next_stamp();
            for p in self.s_start(sid, pos)..self.db.seq_end(sid) {
                let x = self.db.items[p] as usize;
                if self.seen[x] != stamp {
                    self.seen[x] = stamp;
                    if self.count[x] == 0 {
                        touched.push(x as u32);
                    }
                    self.count[x] += 1;
                }
            }
        }
        let frequent = self.take_frequent(touched);
        if frequent.is_empty() {
            return Vec::new();
        }
        let slot = self.slots(&frequent);
        let mut next: Vec<Projection> = frequent
            .iter()
            .map(|&(_, s)| Vec::with_capacity(s as usize))
            .collect();
        for &(sid, pos) in proj {
            let stamp = self.next_stamp();
            for p in self.s_start(sid, pos)..self.db.seq_end(sid) {
                let x = self.db.items[p] as usize;
                if self.seen[x] != stamp {
                    self.seen[x] = stamp;
                    if let Some(&k) = slot.get(&(x as u32)) {
                        next[k].push((sid, p as u32));
                    }
                }
            }
        }
        frequent
            .into_iter()
            .zip(next)
            .map(|((x, s), p)| (x, s, p))
            .collect()
    }

    /// Frequent items that extend the last itemset: after the matched item in its itemset,
    /// or in a later itemset that holds the whole last itemset of the prefix.
    fn i_extensions(&mut self, proj: &Projection) -> Vec<(u32, u32, Projection)> {
        let last = self.prefix.last().cloned().unwrap_or_default();
        let Some(&top) = last.last() else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        for &(sid, pos) in proj {
            let stamp = self.next_stamp();
            self.scan_i(sid, pos, &last, top, |m, x, _| {
                if m.seen[x as usize] != stamp {
                    m.seen[x as usize] = stamp;
                    if m.count[x as usize] == 0 {
                        touched.push(x);
                    }
                    m.count[x as usize] += 1;
                }
            });
        }
        let frequent = self.take_frequent(touched);
        if frequent.is_empty() {
            return Vec::new();
        }
        let slot = self.slots(&frequent);
        let mut next: Vec<Projection> = vec![Vec::new(); frequent.len()];
        for &(sid, pos) in proj {
            let stamp = self.next_stamp();
            self.scan_i(sid, pos, &last, top, |m, x, p| {
                if m.seen[x as usize] != stamp {
                    m.seen[x as usize] = stamp;
                    if let Some(&k) = slot.get(&x) {
                        next[k].push((sid, p));
                    }
                }
            });
        }
        frequent
            .into_iter()
            .zip(next)
            .map(|((x, s), p)| (x, s, p))
            .collect()
    }

    /// Calls `f(self, item, position)` for every i-extension candidate of one sequence,
    /// in position order.
    fn scan_i(
        &mut self,
        sid: u32,
        pos: u32,
        last: &[u32],
        top: u32,
        mut f: impl FnMut(&mut Self, u32, u32),
    ) {
        let db = self.db;
        let end = db.seq_end(sid);
        // The rest of the matched itemset.
        let mut p = pos as usize + 1;
        let set_end = db.next_set[pos as usize] as usize;
        while p < set_end {
            f(self, db.items[p], p as u32);
            p += 1;
        }
        // Later itemsets that contain the whole last itemset.
        let mut start = set_end;
        while start < end {
            let stop = db.next_set[start] as usize;
            let set = &db.items[start..stop];
            if stop - start > last.len() && contains_sorted(set, last) {
                for (i, &x) in set.iter().enumerate() {
                    if x > top {
                        f(self, x, (start + i) as u32);
                    }
                }
            }
            start = stop;
        }
    }

    /// The touched items whose count reaches the threshold (sorted), counts reset.
    fn take_frequent(&mut self, touched: Vec<u32>) -> Vec<(u32, u32)> {
        let mut frequent: Vec<(u32, u32)> = Vec::new();
        for x in touched {
            let c = std::mem::take(&mut self.count[x as usize]);
            if c >= self.opts.min_support {
                frequent.push((x, c));
            }
        }
        frequent.sort_unstable();
        frequent
    }

    fn slots(&self, frequent: &[(u32, u32)]) -> FxHashMap<u32, usize> {
        frequent
            .iter()
            .enumerate()
            .map(|(k, &(x, _))| (x, k))
            .collect()
    }
}

/// Is every item of `needle` (sorted) in `set` (sorted)?
fn contains_sorted(set: &[u32], needle: &[u32]) -> bool {
    let mut it = set.iter();
    needle.iter().all(|n| it.any(|x| x == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example database of the PrefixSpan paper (Pei et al., 2001, Table 1), whose
    /// 2-support patterns the paper lists: 53 of them.
    const PAPER: &str = "\
1 -1 1 2 3 -1 1 3 -1 4 -1 3 6 -1 -2
1 4 -1 3 -1 2 3 -1 1 5 -1 -2
5 6 -1 1 2 -1 4 6 -1 3 -1 2 -1 -2
5 -1 7 -1 1 6 -1 3 -1 2 -1 3 -1 -2
";

    fn mine(text: &str, min: u32) -> (SequenceDb, Vec<SeqPattern>) {
        let db = SequenceDb::parse_spmf(text, "test").unwrap();
        let p = prefixspan(
            &db,
            MineOptions {
                min_support: min,
                max_length: None,
            },
        );
        (db, p)
    }

    /// A brute-force support count: is `pattern` a subsequence of `seq`?
    fn contains(seq: &[Vec<u32>], pattern: &[Vec<u32>]) -> bool {
        let mut i = 0;
        for set in seq {
            if i < pattern.len() && contains_sorted(set, &pattern[i]) {
                i += 1;
            }
        }
        i == pattern.len()
    }

    #[test]
    fn paper_example_has_its_53_patterns_with_brute_force_supports() {
        let (db, patterns) = mine(PAPER, 2);
        assert_eq!(patterns.len(), 53);
        let seqs: Vec<Vec<Vec<u32>>> = PAPER
            .lines()
            .map(|l| {
                l.split(" -1 ")
                    .filter(|s| !s.trim().starts_with("-2") && !s.trim().is_empty())
                    .map(|s| {
                        let mut v: Vec<u32> = s
                            .split_whitespace()
                            .filter(|t| *t != "-2" && *t != "-1")
                            .map(|t| db.ids[t])
                            .collect();
                        v.sort_unstable();
                        v
                    })
                    .collect()
            })
            .collect();
        for p in &patterns {
            let support = seqs.iter().filter(|s| contains(s, &p.itemsets)).count() as u32;
            assert_eq!(support, p.support, "{}", p.spmf(&db));
        }
        // One the paper names: <(ab)c> with a=1, b=2, c=3 → support 2.
        let ab_c = vec![vec![db.ids["1"], db.ids["2"]], vec![db.ids["3"]]];
        assert!(
            patterns
                .iter()
                .any(|p| p.itemsets == ab_c && p.support == 2)
        );
    }

    /// Every frequent pattern by breadth-first extension with brute-force support counts:
    /// support only shrinks as a pattern grows, so extending the frequent ones finds all.
    fn reference(seqs: &[Vec<Vec<u32>>], items: u32, min: u32) -> Vec<SeqPattern> {
        let support = |p: &[Vec<u32>]| seqs.iter().filter(|s| contains(s, p)).count() as u32;
        let mut out = Vec::new();
        let mut frontier: Vec<Vec<Vec<u32>>> = vec![Vec::new()];
        while let Some(p) = frontier.pop() {
            for x in 0..items {
                let mut s_ext = p.clone();
                s_ext.push(vec![x]);
                let mut cands = vec![s_ext];
                if let Some(last) = p.last()
                    && last.last().is_some_and(|&t| x > t)
                {
                    let mut i_ext = p.clone();
                    i_ext.last_mut().unwrap().push(x);
                    cands.push(i_ext);
                }
                for c in cands {
                    let sup = support(&c);
                    if sup >= min {
                        out.push(SeqPattern {
                            itemsets: c.clone(),
                            support: sup,
                        });
                        frontier.push(c);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            b.support
                .cmp(&a.support)
                .then_with(|| a.itemsets.cmp(&b.itemsets))
        });
        out
    }

    proptest::proptest! {
        #[test]
        fn prefixspan_equals_brute_force(
            seqs in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::btree_set(0u32..4, 1..3), 0..6),
                1..8,
            ),
            min in 1u32..4,
        ) {
            let mut db = SequenceDb::new();
            for x in 0..4 {
                db.item(&x.to_string());
            }
            let seqs: Vec<Vec<Vec<u32>>> = seqs
                .into_iter()
                .map(|s| s.into_iter().map(|set| set.into_iter().collect()).collect())
                .collect();
            for s in &seqs {
                db.push(s.clone());
            }
            let got = prefixspan(&db, MineOptions { min_support: min, max_length: None });
            proptest::prop_assert_eq!(got, reference(&seqs, 4, min));
        }
    }

    #[test]
    fn max_length_cuts_long_patterns_only() {
        let (db, all) = mine(PAPER, 2);
        let short = prefixspan(
            &db,
            MineOptions {
                min_support: 2,
                max_length: Some(2),
            },
        );
        let expected: Vec<_> = all.into_iter().filter(|p| p.len() <= 2).collect();
        assert_eq!(short, expected);
    }

    #[test]
    fn spmf_errors_name_the_line() {
        let e = SequenceDb::parse_spmf("1 -1 -2\n1 x -1 -2\n", "f.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.txt:2: `x` is not an item (an integer), -1 or -2"
        );
        let e = SequenceDb::parse_spmf("1 -1 2 -1\n", "f.txt").unwrap_err();
        assert!(
            e.to_string()
                .contains("f.txt:1: the sequence does not end with -2")
        );
    }

    #[test]
    fn absolute_support_rounds_up() {
        assert_eq!(absolute_support(0.5, 730), 365);
        assert_eq!(absolute_support(0.5, 731), 366);
        assert_eq!(absolute_support(0.0, 10), 1);
    }
}
