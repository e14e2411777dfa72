//! Store behaviour across flushes, compaction and reopening.

use sequin_core::{Event, MessageKind};
use sequin_store::{EventSource, MemorySource, Projection, Store, StoreError, StoreOptions};

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
fn a_group_commit_counts_each_request_and_numbers_the_kept_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |t: i64, m: Option<&str>| {
        let mut e = Event::new("u", t, format!("e{t}"));
        e.message_id = m.map(Into::into);
        e
    };
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    store.append(vec![mk(1, Some("m1"))]).unwrap();
    let (outcomes, accepted) = store
        .append_logged(vec![
            // An old duplicate, a new id, and an event with no id.
            vec![mk(2, Some("m1")), mk(3, Some("m3")), mk(4, None)],
            // A repeat of the first group's new id, and one inside this group.
            vec![mk(5, Some("m3")), mk(6, Some("m6")), mk(7, Some("m6"))],
            vec![],
            vec![mk(8, None)],
        ])
        .unwrap();
    let counts: Vec<_> = outcomes
        .iter()
        .map(|o| (o.accepted, o.duplicates))
        .collect();
    assert_eq!(counts, vec![(2, 1), (1, 2), (0, 0), (1, 0)]);
    let kept: Vec<_> = accepted.iter().map(|a| (a.seq, a.event.time)).collect();
    assert_eq!(kept, vec![(1, 3), (2, 4), (3, 6), (4, 8)]);
    assert_eq!(store.next_seq(), 5);
    drop(store);
    // The log holds exactly the kept events, numbered as handed back.
    let store = Store::open(dir.path(), &opts()).unwrap();
    let tail: Vec<_> = store
        .events_since(0)
        .unwrap()
        .iter()
        .map(|a| (a.seq, a.event.time))
        .collect();
    assert_eq!(tail, vec![(0, 1), (1, 3), (2, 4), (3, 6), (4, 8)]);
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
    let (events, _) = store.user_events("u", u64::MAX).unwrap();
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
        e.message_id = Some(format!("m{i}").into());
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
    let ids: Vec<sequin_core::Text> = all_events(&store.reader())
        .into_iter()
        .map(|(_, e)| e.message_id.unwrap())
        .collect();
    assert_eq!(ids, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

/// A server flushes in the background: the memtable is frozen, written by a job that needs
/// no store, and installed after. Meanwhile intake goes on, duplicates of frozen events are
/// still dropped, and every read sees each accepted event once; a failed job leaves its
/// events readable and is retried; after a reopen nothing is lost or doubled.
#[test]
fn a_background_flush_keeps_every_event_readable_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |u: &str, t: i64| {
        let mut e = anon(u, t, &format!("e{t}"));
        e.message_id = Some(format!("m{t}").into());
        e
    };
    let identify = |anon_id: &str, user: &str, t: i64| {
        let mut e = Event::new(user, t, "identify");
        e.kind = MessageKind::Identify;
        e.anonymous_id = Some(anon_id.into());
        e.message_id = Some(format!("m{t}").into());
        e
    };
    let mut accepted = Vec::new();
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    let first: Vec<Event> = (0..40).map(|t| mk(&format!("a{}", t % 5), t)).collect();
    store.append(first.clone()).unwrap();
    accepted.extend(first.clone());
    store.flush().unwrap();
    let second: Vec<Event> = (40..80).map(|t| mk(&format!("a{}", t % 5), t)).collect();
    store.append(second.clone()).unwrap();
    accepted.extend(second.clone());

    let job = store.start_flush().unwrap().expect("a memtable to flush");
    assert!(store.start_flush().unwrap().is_none(), "one job at a time");
    assert!(matches!(store.flush(), Err(StoreError::FlushRunning)));
    // Intake goes on: retries of frozen and flushed events, new events, a link of an id
    // whose events sit in history, in the frozen memtable and in the live one.
    let mut third: Vec<Event> = vec![second[3].clone(), first[7].clone()];
    third.extend((80..100).map(|t| mk(&format!("a{}", t % 5), t)));
    third.push(identify("a1", "u1", 100));
    let out = store.append(third.clone()).unwrap();
    assert_eq!((out.accepted, out.duplicates), (21, 2));
    accepted.extend(third[2..].iter().cloned());
    let expected = all_events(&MemorySource::new(&accepted, 4));
    let check = |store: &Store, when: &str| {
        assert_eq!(all_events(&store.reader()), expected, "reader, {when}");
        let seqs: Vec<u64> = store
            .events_since(0)
            .unwrap()
            .iter()
            .map(|a| a.seq)
            .collect();
        assert_eq!(seqs, (0..101).collect::<Vec<_>>(), "log tail, {when}");
        let (u1, _) = store.user_events("u1", u64::MAX).unwrap();
        let times: Vec<i64> = u1.iter().map(|e| e.time).collect();
        let want: Vec<i64> = (0..100).filter(|t| t % 5 == 1).chain([100]).collect();
        assert_eq!(times, want, "one user's events, {when}");
    };
    check(&store, "while the job is out");

    // The job fails: nothing installed, everything still readable; the retry installs it.
    let err = StoreError::Corrupt {
        path: dir.path().into(),
        reason: "simulated".into(),
    };
    drop(job);
    assert!(store.finish_flush(Err(err)).is_err());
    check(&store, "after a failed job");
    let runs_before = store.manifest().runs.len();
    let retry = store
        .start_flush()
        .unwrap()
        .expect("the frozen memtable again");
    store.finish_flush(retry.write()).unwrap();
    assert!(store.manifest().runs.len() > runs_before);
    assert_eq!(store.unflushed(), 21, "only the live memtable is left");
    check(&store, "after the job is installed");
    drop(store);

    let mut store = Store::open(dir.path(), &opts()).unwrap();
    check(&store, "after reopening");
    let out = store
        .append(vec![second[0].clone(), third[5].clone()])
        .unwrap();
    assert_eq!(
        (out.accepted, out.duplicates),
        (0, 2),
        "retries after reopening"
    );
    store.compact().unwrap();
    check(&store, "after compaction");
}

/// One user's read-back (live evaluation's re-read after a late event) must give the same
/// events whether they sit in the live memtable, in flushed memtables kept in memory, or
/// only in history files (after more flushes than are kept, a reopen, or compaction), and
/// must stop at the arrival number it is given.
#[test]
fn reading_one_user_back_is_the_same_from_kept_memtables_and_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    let mut accepted: Vec<Event> = Vec::new();
    // Expected: the user's events with an arrival number below `before`, by (time, arrival).
    let expect = |accepted: &[Event], user: &str, before: u64| -> Vec<(i64, sequin_core::Text)> {
        let mut want: Vec<(i64, usize, sequin_core::Text)> = accepted
            .iter()
            .enumerate()
            .filter(|(seq, e)| (*seq as u64) < before && e.anonymous_id.as_deref() == Some(user))
            .map(|(seq, e)| (e.time, seq, e.name.clone()))
            .collect();
        want.sort();
        want.into_iter().map(|(t, _, n)| (t, n)).collect()
    };
    let check = |store: &Store, accepted: &[Event], when: &str| {
        let n = accepted.len() as u64;
        for user in ["a0", "a1", "a2"] {
            for before in [0, n / 3, n / 2, n - 1, n, u64::MAX] {
                let (got, complete_to) = store.user_events(user, before).unwrap();
                let got: Vec<(i64, sequin_core::Text)> =
                    got.into_iter().map(|e| (e.time, e.name)).collect();
                assert_eq!(
                    got,
                    expect(accepted, user, before),
                    "{user} below {before}, {when}"
                );
                assert_eq!(complete_to, n.min(before), "{user} below {before}, {when}");
            }
        }
    };
    // Six flushes of 30 events; times go back and forth so that each user's events in
    // every file interleave in time with those in the others.
    for round in 0..6i64 {
        let batch: Vec<Event> = (0..30i64)
            .map(|i| {
                let t = (i * 7 + round * 11) % 50;
                let mut e = anon(&format!("a{}", i % 3), t, &format!("r{round}e{i}"));
                e.message_id = Some(format!("m{round}-{i}").into());
                e
            })
            .collect();
        store.append(batch.clone()).unwrap();
        accepted.extend(batch);
        check(
            &store,
            &accepted,
            &format!("round {round}, before its flush"),
        );
        store.flush().unwrap();
        check(
            &store,
            &accepted,
            &format!("round {round}, after its flush"),
        );
    }
    drop(store);
    let mut store = Store::open(dir.path(), &opts()).unwrap();
    check(&store, &accepted, "after reopening (history files only)");
    store.compact().unwrap();
    check(&store, &accepted, "after compaction");
}
