//! Store behaviour across flushes, compaction and reopening.

use sequin_core::{Event, MessageKind};
use sequin_store::{EventSource, MemorySource, Projection, Store, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions {
        partitions: 4,
        memtable_bytes: usize::MAX,
        create: true,
        read_only: false,
        keep_arrival: true,
    }
}

fn all_events(source: &dyn EventSource) -> Vec<(String, Event)> {
    let mut out = Vec::new();
    for p in 0..source.partitions() {
        let d = source.read_partition(p, &Projection::All).unwrap();
        for (u, range) in d.unit_rows() {
            for r in range {
                out.push((u.to_string(), d.event(r)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.time.cmp(&b.1.time)));
    out
}

fn anon(id: &str, t: i64, name: &str) -> Event {
    let mut e = Event::new("x", t, name);
    e.user_id = None;
    e.anonymous_id = Some(id.into());
    e
}

#[test]
fn anonymous_history_moves_to_the_user_when_identify_arrives_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    store
        .append(vec![
            anon("a1", 1, "landing"),
            anon("a1", 2, "pricing"),
            Event::new("u1", 3, "other"),
        ])
        .unwrap();
    store.flush().unwrap();
    let mut identify = Event::new("u1", 10, "identify");
    identify.kind = MessageKind::Identify;
    identify.anonymous_id = Some("a1".into());
    store
        .append(vec![identify, Event::new("u1", 11, "purchase")])
        .unwrap();
    store.compact().unwrap();
    let events = all_events(&store.reader());
    let units: Vec<&str> = events.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(units, vec!["u1"; 5], "{events:?}");
    let names: Vec<&str> = events.iter().map(|(_, e)| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["landing", "pricing", "other", "identify", "purchase"]
    );
    assert_eq!(
        events[0].1.anonymous_id.as_deref(),
        Some("a1"),
        "raw ids are kept"
    );
    assert_eq!(events[0].1.user_id, None);
    assert!(store.manifest().rekey.is_empty());
}

#[test]
fn reopening_replays_the_log_and_compaction_drops_duplicate_message_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |u: &str, t: i64, m: &str| {
        let mut e = Event::new(u, t, "e");
        e.message_id = Some(m.into());
        e
    };
    {
        let mut store = Store::open(dir.path(), &opts()).unwrap();
        store
            .append(vec![mk("u", 1, "m1"), mk("u", 2, "m2")])
            .unwrap();
        store.flush().unwrap();
        // A retry of m2 after the flush (dropped: recently accepted), and a new event,
        // left in the log only.
        let out = store
            .append(vec![mk("u", 2, "m2"), mk("v", 3, "m3")])
            .unwrap();
        assert_eq!((out.accepted, out.duplicates), (1, 1));
    }
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    assert_eq!(store.unflushed(), 1, "log replayed");
    // After a restart the window is refilled from the newest history: still a duplicate.
    let out = store.append(vec![mk("u", 2, "m2")]).unwrap();
    assert_eq!((out.accepted, out.duplicates), (0, 1));
    assert!(
        Store::open(dir.path(), &opts()).is_err(),
        "the directory is locked while open"
    );
    store.compact().unwrap();
    let events = all_events(&store.reader());
    let ids: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.message_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, vec!["m1", "m2", "m3"]);
}

#[test]
fn store_reads_equal_the_in_memory_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    for i in 0..300i64 {
        let mut e = Event::new(
            format!("u{}", i % 13),
            (i * 7919) % 1000,
            format!("e{}", i % 4),
        );
        e.properties.push(("i".into(), sequin_core::Value::Int(i)));
        events.push(e);
    }
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    store.append(events[..100].to_vec()).unwrap();
    store.flush().unwrap();
    store.append(events[100..200].to_vec()).unwrap();
    store.flush().unwrap();
    store.append(events[200..].to_vec()).unwrap();
    let mem = MemorySource::new(&events, 4);
    assert_eq!(
        all_events(&store.reader()),
        all_events(&mem),
        "two runs and a memtable, merged"
    );
    store.compact().unwrap();
    assert_eq!(
        all_events(&store.reader()),
        all_events(&mem),
        "after compaction"
    );
    assert_eq!(store.manifest().runs.len(), 4);
}

#[test]
fn events_since_reads_the_log_tail_from_history_and_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    let evs = |from: i64| -> Vec<Event> {
        (from..from + 10)
            .map(|i| Event::new(format!("u{}", i % 3), i, "e"))
            .collect()
    };
    store.append(evs(0)).unwrap();
    store.flush().unwrap();
    store.append(evs(10)).unwrap();
    store.flush().unwrap();
    store.append(evs(20)).unwrap();
    drop(store);
    let store = Store::open(dir.path(), &opts()).unwrap();
    for from in [0u64, 5, 10, 15, 25, 30] {
        let tail = store.events_since(from).unwrap();
        let seqs: Vec<u64> = tail.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (from..30).collect::<Vec<_>>(), "from {from}");
        assert!(tail.iter().all(|a| a.event.time == a.seq as i64));
    }
}

/// History written without arrival numbers (a bulk import) cannot give back a log tail
/// that reaches into it: `events_since` says so instead of silently leaving those events
/// out, and still reads tails that start after it. Compaction keeps the bound.
#[test]
fn events_since_refuses_a_tail_inside_bulk_history() {
    let dir = tempfile::tempdir().unwrap();
    let evs = |from: i64| -> Vec<Event> {
        (from..from + 10)
            .map(|i| Event::new(format!("u{}", i % 3), i, "e"))
            .collect()
    };
    let bulk = StoreOptions {
        keep_arrival: false,
        ..opts()
    };
    let mut store = Store::open(dir.path(), &bulk).unwrap();
    store.append(evs(0)).unwrap();
    store.flush().unwrap();
    store.append(evs(10)).unwrap();
    store.compact().unwrap();
    drop(store);
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    store.append(evs(20)).unwrap();
    store.flush().unwrap();
    for from in [0u64, 5, 19] {
        assert!(
            matches!(
                store.events_since(from),
                Err(sequin_store::StoreError::TailUnavailable(_))
            ),
            "from {from}"
        );
    }
    for from in [20u64, 25, 30] {
        let seqs: Vec<u64> = store
            .events_since(from)
            .unwrap()
            .iter()
            .map(|a| a.seq)
            .collect();
        assert_eq!(seqs, (from..30).collect::<Vec<_>>(), "from {from}");
    }
    // Batch reads are unaffected: every event, in time order per unit.
    assert_eq!(all_events(&store.reader()).len(), 30);
}

/// One user's events read back for re-evaluation keep arrival order among equal times, also
/// when a bulk run (no arrival numbers) follows a run that has them.
#[test]
fn user_events_order_ties_by_arrival_across_bulk_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    let mut first: Vec<Event> = (0..10)
        .map(|i| Event::new(format!("o{i}"), 5, "x"))
        .collect();
    first.push(Event::new("u", 5, "a"));
    store.append(first).unwrap();
    store.flush().unwrap();
    drop(store);
    let bulk = StoreOptions {
        keep_arrival: false,
        ..opts()
    };
    let mut store = Store::open(dir.path(), &bulk).unwrap();
    store
        .append(vec![Event::new("u", 5, "b"), Event::new("u", 5, "c")])
        .unwrap();
    store.flush().unwrap();
    store.append(vec![Event::new("u", 5, "d")]).unwrap();
    let (events, _) = store.user_events("u").unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
}

/// Regression: a crash between rotating the log and saving the manifest left an empty
/// segment named after the next sequence number; after reopening, a batch of nothing but
/// duplicates followed by a flush listed that segment twice and deleted the live one, so
/// the next flush failed and later events were not durable.
#[test]
fn reopening_after_a_crash_mid_flush_keeps_the_live_log_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |i: i64| {
        let mut e = Event::new("u", i, "e");
        e.message_id = Some(format!("m{i}"));
        e
    };
    {
        let mut store = Store::open(dir.path(), &opts()).unwrap();
        store.append((0..5).map(mk).collect()).unwrap();
    }
    // What a crash right after the log rotation of a flush leaves behind.
    std::fs::write(dir.path().join("wal").join(format!("{:020}.wal", 5)), b"").unwrap();
    let small = StoreOptions {
        memtable_bytes: 1,
        ..opts()
    };
    {
        let mut store = Store::open(dir.path(), &small).unwrap();
        let out = store.append((0..5).map(mk).collect()).unwrap(); // retries only
        assert_eq!(out.duplicates, 5);
        store.append((5..8).map(mk).collect()).unwrap();
        store.append((8..10).map(mk).collect()).unwrap();
    }
    let store = Store::open(dir.path(), &opts()).unwrap();
    let ids: Vec<String> = all_events(&store.reader())
        .into_iter()
        .map(|(_, e)| e.message_id.unwrap())
        .collect();
    assert_eq!(ids, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}
