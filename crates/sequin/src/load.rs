//! `sequin load`: replays a Segment NDJSON file against a server at a target rate, in
//! batches over keep-alive connections, and reports throughput and latency percentiles
//! (hdrhistogram). Latency is measured from each batch's *scheduled* send time, so a server
//! that falls behind shows it (no coordinated omission).
//!
//! With a read key it also subscribes to the change stream and measures, for every change
//! whose (unit, time) is an event of an acknowledged batch, the time from the batch's
//! acknowledgement to the change's arrival.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sequin_core::time::{TimeFormat, parse_text};

use crate::cli::{LoadArgs, ReplayOrder};

struct Batch {
    /// Place among all connections' batches, by the replay position of their first message.
    rank: u64,
    /// Replay position of its first message.
    first: usize,
    body: Bytes,
    events: usize,
    message_ids: Vec<String>,
    /// (unit, event time µs) of each event, for matching changes.
    keys: Vec<(String, i64)>,
}

/// One message of the file, as read: its text and what replay needs of it.
struct Message {
    line: String,
    /// Its event time (the first event's), for replay in time order.
    time: Option<i64>,
    /// The device that sends it (anonymous id, else user id): one connection per device.
    device: u64,
    message_id: Option<String>,
    keys: Vec<(String, i64)>,
    /// Place in the replay order.
    position: usize,
}

fn read_message(line: String, at: &dyn Fn() -> String) -> Result<Message> {
    let v: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("{}: not JSON", at()))?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str());
    let device = text("anonymousId").or_else(|| text("userId")).unwrap_or("");
    let mut keys = Vec::new();
    let mut time = None;
    let mut evs = Vec::new();
    if sequin_core::segment::map_message(&v, None, &mut evs).is_ok() {
        time = evs.first().map(|e| e.time);
        for e in evs {
            if let Some(u) = e.unit_key() {
                keys.push((u.to_string(), e.time));
            }
        }
    }
    Ok(Message {
        time,
        device: sequin_core::unit_hash(device),
        message_id: text("messageId").map(str::to_string),
        keys,
        line,
        position: 0,
    })
}

/// Reads the file and cuts it into one stream of batches per connection. Each device's
/// messages go to one connection, in order, as one SDK instance sends them; with
/// `--order time` (the default) messages go out in event-time order, as live traffic
/// arrives, rather than in file order (`sequin gen` writes user after user, which replays
/// as a backfill of late events).
fn read_batches(args: &LoadArgs) -> Result<Vec<Vec<Batch>>> {
    let f = std::fs::File::open(&args.file).with_context(|| args.file.display().to_string())?;
    let mut messages = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let at = || format!("{}:{}", args.file.display(), i + 1);
        let line = line.with_context(at)?;
        if line.trim().is_empty() {
            continue;
        }
        messages.push(read_message(line, &at)?);
        if args.limit.is_some_and(|l| messages.len() >= l) {
            break;
        }
    }
    if args.order == ReplayOrder::Time {
        // A message without a usable time stays behind the one before it.
        let mut last = i64::MIN;
        let mut order: Vec<(i64, usize)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                last = m.time.unwrap_or(last);
                (last, i)
            })
            .collect();
        order.sort_unstable();
        let mut slots: Vec<Option<Message>> = messages.into_iter().map(Some).collect();
        messages = order
            .into_iter()
            .map(|(_, i)| slots[i].take().expect("each message once"))
            .collect();
    }
    let mut streams: Vec<Vec<Batch>> = (0..args.connections).map(|_| Vec::new()).collect();
    let mut open: Vec<Vec<Message>> = (0..args.connections).map(|_| Vec::new()).collect();
    let seal = |items: &mut Vec<Message>| -> Batch {
        let mut body = String::from("{\"batch\":[");
        for (k, m) in items.iter().enumerate() {
            if k > 0 {
                body.push(',');
            }
            body.push_str(m.line.trim());
        }
        body.push_str("]}");
        let batch = Batch {
            rank: 0,
            first: items.first().map_or(0, |m| m.position),
            body: Bytes::from(body),
            events: items.len(),
            message_ids: items.iter().filter_map(|m| m.message_id.clone()).collect(),
            keys: items.iter().flat_map(|m| m.keys.iter().cloned()).collect(),
        };
        items.clear();
        batch
    };
    for (position, mut m) in messages.into_iter().enumerate() {
        m.position = position;
        let c = (m.device % args.connections as u64) as usize;
        open[c].push(m);
        if open[c].len() == args.batch {
            streams[c].push(seal(&mut open[c]));
        }
    }
    for (c, items) in open.iter_mut().enumerate() {
        if !items.is_empty() {
            streams[c].push(seal(items));
        }
    }
    let mut by_position: Vec<(usize, usize, usize)> = streams
        .iter()
        .enumerate()
        .flat_map(|(c, s)| s.iter().enumerate().map(move |(j, b)| (b.first, j, c)))
        .collect();
    by_position.sort_unstable();
    for (rank, (_, j, c)) in by_position.into_iter().enumerate() {
        streams[c][j].rank = rank as u64;
    }
    Ok(streams)
}

/// Lets a batch go only when every batch more than [`Lockstep::window`] places before it
/// in replay order has been answered, so that the replay moves through event time
/// together, as live devices do. A file compresses weeks into seconds: a connection running
/// a few percent ahead (or carrying a few percent more events) would be hours ahead in
/// event time, and make every other connection's events look late.
struct Lockstep {
    /// Every batch ranked below `.0` is answered; `.1` holds those answered above it.
    answered: Mutex<(u64, std::collections::BTreeSet<u64>)>,
    moved: tokio::sync::Notify,
}

impl Lockstep {
    /// Batches in flight or waiting to be answered, at most: two per connection.
    fn window(connections: usize) -> u64 {
        2 * connections as u64
    }

    fn new() -> Lockstep {
        Lockstep {
            answered: Mutex::new((0, Default::default())),
            moved: tokio::sync::Notify::new(),
        }
    }

    /// Waits until the batch ranked `rank` may go.
    async fn turn(&self, rank: u64, window: u64) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self
                .answered
                .lock()
                .expect("lockstep")
                .0
                .saturating_add(window)
                >= rank
            {
                return;
            }
            moved.await;
        }
    }

    fn answered(&self, rank: u64) {
        let mut a = self.answered.lock().expect("lockstep");
        a.1.insert(rank);
        let (next, ahead) = &mut *a;
        while ahead.remove(next) {
            *next += 1;
        }
        drop(a);
        self.moved.notify_waiters();
    }
}

/// Marks the rest of its connection's batches answered however its task ends, so that no
/// other connection waits for them.
struct Stopped(Arc<Lockstep>, Vec<u64>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for &rank in &self.1 {
            self.0.answered(rank);
        }
    }
}

struct Target {
    host: String,
    authority: String,
}

fn target(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url: only http:// URLs are supported, got `{url}`"))?;
    let authority = rest.trim_end_matches('/').to_string();
    if authority.is_empty() || authority.contains('/') {
        bail!("--url: expected http://HOST:PORT, got `{url}`");
    }
    Ok(Target {
        host: authority.clone(),
        authority,
    })
}

async fn connect(t: &Target) -> Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(&t.host)
        .await
        .with_context(|| format!("connecting to {}", t.host))?;
    stream.set_nodelay(true).ok();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Acknowledgement times of (unit, event time), and every (unit, event time) the file has.
#[derive(Default)]
struct AckBook {
    acked: HashMap<(String, i64), Instant>,
    known: std::collections::HashSet<(String, i64)>,
}

#[derive(Default)]
struct Totals {
    sent_events: AtomicU64,
    acked_events: AtomicU64,
    failed_batches: AtomicU64,
    /// What the first refused batch was told.
    first_refusal: Mutex<Option<String>>,
}

pub fn load(args: LoadArgs) -> Result<()> {
    if args.batch == 0 || args.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    let t = target(&args.url)?;
    let read_started = Instant::now();
    let streams = read_batches(&args)?;
    let events: usize = streams.iter().flatten().map(|b| b.events).sum();
    eprintln!(
        "read {events} events into {} batches in {:.1?} ({} order, one connection per device)",
        streams.iter().map(Vec::len).sum::<usize>(),
        read_started.elapsed(),
        match args.order {
            ReplayOrder::Time => "event-time",
            ReplayOrder::File => "file",
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, t, streams))
}

async fn run(args: LoadArgs, t: Target, streams: Vec<Vec<Batch>>) -> Result<()> {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", args.write_key))
    );
    let totals = Arc::new(Totals::default());
    let book = Arc::new(Mutex::new(AckBook::default()));
    if args.read_key.is_some() {
        let mut b = book.lock().expect("book");
        for batch in streams.iter().flatten() {
            b.known.extend(batch.keys.iter().cloned());
        }
    }
    let change_lat = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        600_000_000,
        3,
    )?));
    let stop = Arc::new(AtomicBool::new(false));
    let acked_out = match &args.acked {
        Some(p) => Some(Arc::new(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| p.display().to_string())?,
        )))),
        None => None,
    };
    let watch = match &args.read_key {
        Some(key) => Some(tokio::spawn(watch_changes(
            Target {
                host: t.host.clone(),
                authority: t.authority.clone(),
            },
            key.clone(),
            book.clone(),
            change_lat.clone(),
            stop.clone(),
        ))),
        None => None,
    };
    // Give the change stream a moment to subscribe before load starts.
    if watch.is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_batch = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            args.batch as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    let start = tokio::time::Instant::now();
    let mut workers = Vec::new();
    // In file order a user's messages follow one another on one connection: holding the
    // others to its pace would make the replay serial.
    let window = match args.order {
        ReplayOrder::Time => Lockstep::window(streams.len()),
        ReplayOrder::File => u64::MAX,
    };
    let lockstep = Arc::new(Lockstep::new());
    for (c, batches) in streams.into_iter().enumerate() {
        // Ranks not yet answered, last first.
        let stopped = Stopped(
            lockstep.clone(),
            batches.iter().rev().map(|b| b.rank).collect(),
        );
        let totals = totals.clone();
        let book = book.clone();
        let acked_out = acked_out.clone();
        let auth = auth.clone();
        let authority = t.authority.clone();
        let host = t.host.clone();
        let track = args.read_key.is_some();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
            let tgt = Target {
                host,
                authority: authority.clone(),
            };
            let mut sender = match connect(&tgt).await {
                Ok(s) => s,
                Err(e) => return (hist, Some(e.to_string())),
            };
            let mut stopped = stopped;
            for (j, b) in batches.iter().enumerate() {
                stopped.0.turn(b.rank, window).await;
                // The connections' batches go on one schedule, in replay order.
                let due = per_batch.map(|d| start + d.mul_f64(b.rank as f64));
                if let Some(due) = due {
                    tokio::time::sleep_until(due).await;
                }
                let t0 = due.unwrap_or_else(tokio::time::Instant::now);
                totals
                    .sent_events
                    .fetch_add(b.events as u64, Ordering::Relaxed);
                let req = hyper::Request::post("/v1/batch")
                    .header("host", &authority)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(b.body.clone()))
                    .expect("request");
                let resp = match sender.send_request(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        totals.failed_batches.fetch_add(1, Ordering::Relaxed);
                        return (hist, Some(format!("connection {c}, batch {j}: {e}")));
                    }
                };
                let status = resp.status();
                let body = resp.into_body().collect().await;
                stopped.1.pop();
                stopped.0.answered(b.rank);
                let refusal = match body {
                    Err(e) => Some(format!(
                        "connection {c}, batch {j}: reading the answer: {e}"
                    )),
                    Ok(body) if !status.is_success() => Some(format!(
                        "connection {c}, batch {j}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body.to_bytes())
                    )),
                    Ok(_) => None,
                };
                if let Some(refusal) = refusal {
                    totals.failed_batches.fetch_add(1, Ordering::Relaxed);
                    let mut first = totals.first_refusal.lock().expect("first refusal");
                    first.get_or_insert(refusal);
                    continue;
                }
                let now = tokio::time::Instant::now();
                hist.saturating_record((now - t0).as_micros() as u64);
                totals
                    .acked_events
                    .fetch_add(b.events as u64, Ordering::Relaxed);
                if let Some(out) = &acked_out {
                    let mut w = out.lock().expect("acked file");
                    for id in &b.message_ids {
                        let _ = writeln!(w, "{id}");
                    }
                    let _ = w.flush();
                }
                if track {
                    let now = now.into_std();
                    let mut book = book.lock().expect("book");
                    for k in &b.keys {
                        book.acked.insert(k.clone(), now);
                    }
                }
            }
            (hist, None)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut first_error = None;
    for w in workers {
        let (h, err) = w.await?;
        hist.add(&h)?;
        if first_error.is_none() {
            first_error = err;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(handle) = watch {
        // Let the last changes arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        handle.abort();
    }
    let acked = totals.acked_events.load(Ordering::Relaxed);
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "sent {} events, acknowledged {acked} in {elapsed:.2}s: {:.0} events/s; {} failed batches",
        totals.sent_events.load(Ordering::Relaxed),
        acked as f64 / elapsed,
        totals.failed_batches.load(Ordering::Relaxed)
    );
    if !hist.is_empty() {
        println!(
            "ack latency (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(hist.value_at_quantile(0.5)),
            ms(hist.value_at_quantile(0.9)),
            ms(hist.value_at_quantile(0.99)),
            ms(hist.value_at_quantile(0.999)),
            ms(hist.max())
        );
    }
    let ch = change_lat.lock().expect("hist");
    if args.read_key.is_some() {
        if ch.is_empty() {
            println!("ack → membership change: no changes matched acknowledged events");
        } else {
            println!(
                "ack → membership change (ms, {} changes): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                ch.len(),
                ms(ch.value_at_quantile(0.5)),
                ms(ch.value_at_quantile(0.9)),
                ms(ch.value_at_quantile(0.99)),
                ms(ch.max())
            );
        }
    }
    if let Some(e) = first_error {
        bail!("stopped early: {e}");
    }
    // A replay that lost batches did not replay the file: say so in the exit status too.
    let failed = totals.failed_batches.load(Ordering::Relaxed);
    if failed > 0 {
        let first = totals.first_refusal.lock().expect("first refusal").take();
        bail!(
            "{failed} batches were not acknowledged; the first: {}",
            first.unwrap_or_default()
        );
    }
    Ok(())
}

/// Follows `/api/changes` from now on and records ack → change latencies.
async fn watch_changes(
    t: Target,
    key: String,
    book: Arc<Mutex<AckBook>>,
    hist: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut sender = connect(&t).await?;
    let req = hyper::Request::get("/api/segments")
        .header("host", &t.authority)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    let info: serde_json::Value = serde_json::from_slice(&body)?;
    let after = info["last_change"].as_u64().unwrap_or(0);
    let req = hyper::Request::get(format!("/api/changes?after={after}"))
        .header("host", &t.authority)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("change stream: HTTP {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf = String::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let arrived = Instant::now();
        buf.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(json) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
                continue;
            };
            let (Some(unit), Some(time)) = (v["unit"].as_str(), v["time"].as_str()) else {
                continue;
            };
            let Ok(time) = parse_text(time, TimeFormat::Auto) else {
                continue;
            };
            let key = (unit.to_string(), time);
            let book = book.lock().expect("book");
            match book.acked.get(&key) {
                Some(&acked) => {
                    let lat = arrived.saturating_duration_since(acked).as_micros() as u64;
                    hist.lock().expect("hist").saturating_record(lat);
                }
                // Evaluated before this client read its acknowledgement.
                None if book.known.contains(&key) => {
                    hist.lock().expect("hist").saturating_record(0);
                }
                // A timer's change, or a session's: no single event to measure from.
                None => {}
            }
        }
    }
    Ok(())
}
