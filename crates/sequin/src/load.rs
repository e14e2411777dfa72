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

use crate::cli::LoadArgs;

struct Batch {
    body: Bytes,
    events: usize,
    message_ids: Vec<String>,
    /// (unit, event time µs) of each event, for matching changes.
    keys: Vec<(String, i64)>,
}

fn read_batches(args: &LoadArgs) -> Result<Vec<Batch>> {
    let f = std::fs::File::open(&args.file).with_context(|| args.file.display().to_string())?;
    let mut batches = Vec::new();
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut total = 0usize;
    let flush = |items: &mut Vec<serde_json::Value>, batches: &mut Vec<Batch>| {
        if items.is_empty() {
            return;
        }
        let mut message_ids = Vec::new();
        let mut keys = Vec::new();
        for m in items.iter() {
            if let Some(id) = m.get("messageId").and_then(|v| v.as_str()) {
                message_ids.push(id.to_string());
            }
            let mut evs = Vec::new();
            if sequin_core::segment::map_message(m, None, &mut evs).is_ok() {
                for e in evs {
                    if let Some(u) = e.unit_key() {
                        keys.push((u.to_string(), e.time));
                    }
                }
            }
        }
        let body = serde_json::to_vec(&serde_json::json!({ "batch": items })).expect("json");
        batches.push(Batch {
            body: Bytes::from(body),
            events: items.len(),
            message_ids,
            keys,
        });
        items.clear();
    };
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", args.file.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", args.file.display(), i + 1))?;
        items.push(v);
        total += 1;
        if items.len() == args.batch {
            flush(&mut items, &mut batches);
        }
        if args.limit.is_some_and(|l| total >= l) {
            break;
        }
    }
    flush(&mut items, &mut batches);
    Ok(batches)
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
}

pub fn load(args: LoadArgs) -> Result<()> {
    if args.batch == 0 || args.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    let t = target(&args.url)?;
    let read_started = Instant::now();
    let batches = Arc::new(read_batches(&args)?);
    let events: usize = batches.iter().map(|b| b.events).sum();
    eprintln!(
        "read {events} events into {} batches in {:.1?}",
        batches.len(),
        read_started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, t, batches))
}

async fn run(args: LoadArgs, t: Target, batches: Arc<Vec<Batch>>) -> Result<()> {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", args.write_key))
    );
    let totals = Arc::new(Totals::default());
    let next = Arc::new(AtomicU64::new(0));
    let book = Arc::new(Mutex::new(AckBook::default()));
    if args.read_key.is_some() {
        let mut b = book.lock().expect("book");
        for batch in batches.iter() {
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
    for _ in 0..args.connections {
        let batches = batches.clone();
        let next = next.clone();
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
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= batches.len() {
                    return (hist, None);
                }
                let b = &batches[i];
                let due = per_batch.map(|d| start + d * i as u32);
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
                        return (hist, Some(format!("batch {i}: {e}")));
                    }
                };
                let status = resp.status();
                let body = resp.into_body().collect().await;
                if !status.is_success() || body.is_err() {
                    totals.failed_batches.fetch_add(1, Ordering::Relaxed);
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
