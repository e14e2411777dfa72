//! Writing generated users: Segment-spec NDJSON (optionally gzip) or a flat Parquet table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::journey::{GenEvent, Kind, Profile, PropValue};
use crate::truth::{Behaviour, Incident, Truth, UserTruth};
use crate::{GenConfig, GenError, START_MS};

/// Users generated per parallel task.
const BLOCK: u64 = 2048;

/// Prints ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (fast path for the hot loop).
pub(crate) fn rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn prop_json(out: &mut Vec<u8>, v: &PropValue) {
    match v {
        PropValue::S(s) => json_str(out, s),
        PropValue::Str(s) => json_str(out, s),
        PropValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        PropValue::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        PropValue::Bool(b) => {
            let _ = write!(out, "{b}");
        }
    }
}

fn segment_line(out: &mut Vec<u8>, p: &Profile, e: &GenEvent, seq: usize, batch_delay_ms: i64) {
    let (ty, name_key) = match e.kind {
        Kind::Track => ("track", "event"),
        Kind::Page => ("page", "name"),
        Kind::Screen => ("screen", "name"),
        Kind::Identify => ("identify", ""),
    };
    let _ = write!(out, "{{\"type\":\"{ty}\"");
    if !name_key.is_empty() {
        let _ = write!(out, ",\"{name_key}\":");
        json_str(out, e.name);
    }
    let _ = write!(
        out,
        ",\"messageId\":\"m-{}-{seq}\",\"anonymousId\":\"{}\"",
        p.index,
        p.anonymous_id()
    );
    if e.identified {
        let _ = write!(out, ",\"userId\":\"{}\"", p.user_id());
    }
    // The device clock is off by `skew`; Segment's correction recovers the true time:
    // receivedAt − (sentAt − originalTimestamp) = time (no network latency is simulated).
    out.extend_from_slice(b",\"originalTimestamp\":\"");
    rfc3339_ms(out, e.time_ms + p.skew_ms);
    out.extend_from_slice(b"\",\"sentAt\":\"");
    rfc3339_ms(out, e.time_ms + batch_delay_ms + p.skew_ms);
    out.extend_from_slice(b"\",\"receivedAt\":\"");
    rfc3339_ms(out, e.time_ms + batch_delay_ms);
    out.push(b'"');
    if e.kind == Kind::Identify {
        let _ = write!(
            out,
            ",\"traits\":{{\"plan\":\"free\",\"email\":\"{}@example.com\"}}",
            p.user_id()
        );
    } else {
        out.extend_from_slice(b",\"properties\":{");
        for (i, (k, v)) in e.props.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, k);
            out.push(b':');
            prop_json(out, v);
        }
        out.push(b'}');
    }
    let _ = write!(
        out,
        ",\"context\":{{\"device\":{{\"type\":\"{}\",\"model\":\"{}\"}},\"os\":{{\"name\":\"{}\",\"version\":\"{}\"}},\"network\":{{\"type\":\"{}\"}},\"locale\":\"{}\",\"campaign\":{{\"source\":\"{}\"}}",
        p.device_type, p.device_model, p.os_name, p.os_version, e.network, p.locale, p.utm_source
    );
    if let Some(v) = p.app_version {
        let _ = write!(out, ",\"app\":{{\"version\":\"{v}\"}}");
    }
    if let Some(b) = p.browser {
        let _ = write!(out, ",\"browser\":{{\"name\":\"{b}\"}}");
    }
    out.extend_from_slice(b"}}\n");
}

struct Block {
    bytes: Vec<u8>,
    events: u64,
    truths: Vec<UserTruth>,
    batch: Option<RecordBatch>,
}

fn gen_block(cfg: &GenConfig, block: u64, parquet: bool) -> Block {
    let first = block * BLOCK;
    let last = ((block + 1) * BLOCK).min(cfg.users);
    let mut b = Block {
        bytes: Vec::new(),
        events: 0,
        truths: Vec::new(),
        batch: None,
    };
    let mut rows = Vec::new();
    for index in first..last {
        let (events, truth) = crate::journey::user(cfg, index);
        let p = profile_of(cfg, index);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(index).wrapping_mul(31));
        for (seq, e) in events.iter().enumerate() {
            let copies = if e.duplicate { 2 } else { 1 };
            for _ in 0..copies {
                if parquet {
                    rows.push((p.clone(), e.clone(), seq));
                } else {
                    segment_line(&mut b.bytes, &p, e, seq, rng.random_range(50..30_000));
                }
                b.events += 1;
            }
        }
        b.truths.push(truth);
    }
    if parquet {
        b.batch = Some(rows_to_batch(&rows).expect("generated columns match the schema"));
    }
    b
}

/// The profile of a user (the same one `journey::user` drew).
fn profile_of(cfg: &GenConfig, index: u64) -> Profile {
    crate::journey::profile_for(cfg, index)
}

/// Generates everything and writes it; returns the number of events and the truth.
pub(crate) fn write(cfg: &GenConfig, out: &Path) -> Result<(u64, Truth), GenError> {
    let io = |e| GenError::Io {
        path: out.to_path_buf(),
        source: e,
    };
    let name = out.to_string_lossy().to_lowercase();
    let parquet = name.ends_with(".parquet");
    let gz = name.ends_with(".gz");
    let blocks = cfg.users.div_ceil(BLOCK);
    let mut truths: Vec<UserTruth> = Vec::with_capacity(cfg.users as usize);
    let mut events = 0u64;
    let file = File::create(out).map_err(io)?;
    if parquet {
        let mut writer = ArrowWriter::try_new(
            file,
            parquet_schema(),
            Some(
                WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build(),
            ),
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(64);
        let handle = std::thread::spawn(move || -> Result<(), GenError> {
            for batch in rx {
                writer.write(&batch)?;
            }
            writer.close()?;
            Ok(())
        });
        for group in (0..blocks).collect::<Vec<_>>().chunks(32) {
            let done: Vec<Block> = group.par_iter().map(|&b| gen_block(cfg, b, true)).collect();
            for b in done {
                events += b.events;
                truths.extend(b.truths);
                if let Some(batch) = b.batch
                    && tx.send(batch).is_err()
                {
                    break;
                }
            }
        }
        drop(tx);
        handle.join().expect("writer thread does not panic")?;
    } else {
        let mut sink: Box<dyn Write + Send> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                BufWriter::with_capacity(1 << 20, file),
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(BufWriter::with_capacity(1 << 20, file))
        };
        // Write on one thread while the next group of users is generated on the others.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            for bytes in rx {
                sink.write_all(&bytes)?;
            }
            sink.flush()
        });
        for group in (0..blocks).collect::<Vec<_>>().chunks(32) {
            let done: Vec<Block> = group
                .par_iter()
                .map(|&b| gen_block(cfg, b, false))
                .collect();
            for b in done {
                events += b.events;
                truths.extend(b.truths);
                if tx.send(b.bytes).is_err() {
                    break;
                }
            }
        }
        drop(tx);
        writer
            .join()
            .expect("writer thread does not panic")
            .map_err(io)?;
    }
    Ok((events, summarise(cfg, &truths)))
}

fn summarise(cfg: &GenConfig, truths: &[UserTruth]) -> Truth {
    let users = |f: &dyn Fn(&UserTruth) -> bool| -> Vec<String> {
        truths
            .iter()
            .filter(|t| f(t))
            .map(|t| t.unit.clone())
            .collect()
    };
    let flat = |f: &dyn Fn(&UserTruth) -> &Vec<String>| -> Vec<String> {
        truths.iter().flat_map(|t| f(t).iter().cloned()).collect()
    };
    let behaviour =
        |id: &str, description: &str, unit: &str, effect: &str, ids: Vec<String>| Behaviour {
            id: id.into(),
            description: description.into(),
            unit: unit.into(),
            effect: effect.into(),
            count: ids.len(),
            ids,
        };
    let day = 86_400_000i64;
    let fmt = |ms: i64| {
        let mut b = Vec::new();
        rfc3339_ms(&mut b, ms);
        String::from_utf8(b).expect("ascii")
    };
    Truth {
        seed: cfg.seed,
        users: cfg.users,
        start: fmt(START_MS),
        days: cfg.days,
        behaviours: vec![
            behaviour(
                "slow_payment_android",
                "payment_step_view with render_ms over 8000 on Android app versions 5.2.x on mid-tier devices (Galaxy A34, Redmi Note 12)",
                "sessions",
                "the session leaves without payment_submit with probability 0.70 (0.12 otherwise)",
                flat(&|t| &t.slow_payment_sessions),
            ),
            behaviour(
                "error_4022_ios173",
                "error code 4022 on step payment (not silent) for iOS 17.3",
                "users",
                "the session leaves without payment_submit with probability 0.75",
                users(&|t| t.error_4022),
            ),
            behaviour(
                "rage_click_coupon",
                "3-6 clicks within about a second on element apply-coupon (a broken button) on the cart page",
                "sessions",
                "the session abandons the cart with probability 0.5 (0.2 otherwise)",
                flat(&|t| &t.rage_click_sessions),
            ),
            behaviour(
                "pricing_no_trial",
                "users who view pricing 3+ times and never start a trial",
                "users",
                "never trial_start",
                users(&|t| t.pricing_no_trial),
            ),
            behaviour(
                "rephrase_before_escalation",
                "the user restates the same request (1-3 rephrasings) after a failed tool call",
                "conversations",
                "escalation with probability ~0.75 (0.08 otherwise)",
                flat(&|t| &t.rephrase_conversations),
            ),
            behaviour(
                "aggressive_reply",
                "a short blunt user reply (e.g. 'This is useless.') after rephrasing",
                "conversations",
                "escalation with probability 0.85",
                flat(&|t| &t.aggressive_conversations),
            ),
            behaviour(
                "escalated",
                "conversations transferred to a human (transfer_to_human_agents tool call and an escalation event)",
                "conversations",
                "outcome",
                flat(&|t| &t.escalated_conversations),
            ),
            behaviour(
                "churn_after_friction",
                "users with a second friction session (slow payment, error 4022, rage clicks, lost payment) are never seen again with probability 0.7",
                "users",
                "no events after the second friction session",
                users(&|t| t.churned_after_friction),
            ),
            behaviour(
                "incident_affected",
                "Android app 5.3.0 users who submitted a payment during the incident week",
                "users",
                "payment confirmation lost (silent error 5031) with probability 0.8, no purchase",
                users(&|t| t.incident_affected),
            ),
        ],
        incident: cfg.incident.then(|| Incident {
            segment: "os.name == \"Android\" and app.version == \"5.3.0\"".into(),
            start: fmt(START_MS + 14 * day),
            end: fmt(START_MS + 21 * day),
            effect: "80% of payment_submit events end in a silent error 5031 and no purchase"
                .into(),
        }),
        duplicate_deliveries: truths.iter().map(|t| u64::from(t.duplicates)).sum(),
    }
}

/// Property columns of the Parquet form, with their types.
const PROPS: &[(&str, DataType)] = &[
    ("page", DataType::Utf8),
    ("screen", DataType::Utf8),
    ("path", DataType::Utf8),
    ("load_time_ms", DataType::Int64),
    ("element_id", DataType::Utf8),
    ("x", DataType::Int64),
    ("y", DataType::Int64),
    ("code", DataType::Int64),
    ("step", DataType::Utf8),
    ("silent", DataType::Boolean),
    ("message", DataType::Utf8),
    ("product_id", DataType::Utf8),
    ("price", DataType::Float64),
    ("query", DataType::Utf8),
    ("results", DataType::Int64),
    ("items", DataType::Int64),
    ("form_id", DataType::Utf8),
    ("render_ms", DataType::Int64),
    ("widget", DataType::Utf8),
    ("method", DataType::Utf8),
    ("order_id", DataType::Utf8),
    ("amount", DataType::Float64),
    ("currency", DataType::Utf8),
    ("plan", DataType::Utf8),
    ("conversation_id", DataType::Utf8),
    ("role", DataType::Utf8),
    ("text", DataType::Utf8),
    ("turn", DataType::Int64),
    ("tool_name", DataType::Utf8),
    ("status", DataType::Utf8),
    ("error.type", DataType::Utf8),
    ("reason", DataType::Utf8),
];
const CONTEXT: &[&str] = &[
    "device.type",
    "device.model",
    "os.name",
    "os.version",
    "app.version",
    "network.type",
    "locale",
];

fn parquet_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_id", DataType::Utf8, false),
        Field::new("message_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("event", DataType::Utf8, false),
    ];
    fields.extend(PROPS.iter().map(|(k, t)| Field::new(*k, t.clone(), true)));
    fields.extend(CONTEXT.iter().map(|k| Field::new(*k, DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

fn rows_to_batch(rows: &[(Profile, GenEvent, usize)]) -> Result<RecordBatch, GenError> {
    let mut user = StringBuilder::new();
    let mut anon = StringBuilder::new();
    let mut msg = StringBuilder::new();
    let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut event = StringBuilder::new();
    let mut props: BTreeMap<&str, Vec<Option<&PropValue>>> = PROPS
        .iter()
        .map(|(k, _)| (*k, Vec::with_capacity(rows.len())))
        .collect();
    let page_names: Vec<PropValue> = rows.iter().map(|(_, e, _)| PropValue::S(e.name)).collect();
    for (i, (p, e, seq)) in rows.iter().enumerate() {
        user.append_option(e.identified.then(|| p.user_id()));
        anon.append_value(p.anonymous_id());
        msg.append_value(format!("m-{}-{seq}", p.index));
        ts.append_value(e.time_ms);
        event.append_value(match e.kind {
            Kind::Track => e.name,
            Kind::Page => "page_view",
            Kind::Screen => "screen_view",
            Kind::Identify => "identify",
        });
        for col in props.values_mut() {
            col.push(None);
        }
        match e.kind {
            Kind::Page => {
                *props
                    .get_mut("page")
                    .expect("column")
                    .last_mut()
                    .expect("row") = Some(&page_names[i])
            }
            Kind::Screen => {
                *props
                    .get_mut("screen")
                    .expect("column")
                    .last_mut()
                    .expect("row") = Some(&page_names[i])
            }
            _ => {}
        }
        for (k, v) in &e.props {
            if let Some(col) = props.get_mut(k) {
                *col.last_mut().expect("row") = Some(v);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(user.finish()),
        Arc::new(anon.finish()),
        Arc::new(msg.finish()),
        Arc::new(ts.finish()),
        Arc::new(event.finish()),
    ];
    for (k, t) in PROPS {
        let vals = &props[k];
        let array: ArrayRef = match t {
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                for v in vals {
                    b.append_option(v.and_then(|v| {
                        if let PropValue::Int(i) = v {
                            Some(*i)
                        } else {
                            None
                        }
                    }));
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::new();
                for v in vals {
                    b.append_option(v.and_then(|v| match v {
                        PropValue::Float(f) => Some(*f),
                        PropValue::Int(i) => Some(*i as f64),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for v in vals {
                    b.append_option(v.and_then(|v| {
                        if let PropValue::Bool(x) = v {
                            Some(*x)
                        } else {
                            None
                        }
                    }));
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::new();
                for v in vals {
                    b.append_option(v.and_then(|v| match v {
                        PropValue::S(s) => Some(s.to_string()),
                        PropValue::Str(s) => Some(s.clone()),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    for k in CONTEXT {
        let mut b = StringBuilder::new();
        for (p, e, _) in rows {
            b.append_option(match *k {
                "device.type" => Some(p.device_type),
                "device.model" => Some(p.device_model),
                "os.name" => Some(p.os_name),
                "os.version" => Some(p.os_version),
                "app.version" => p.app_version,
                "network.type" => Some(e.network),
                _ => Some(p.locale),
            });
        }
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(parquet_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rfc3339_matches_chrono() {
        for ms in [
            0i64,
            1_709_510_400_123,
            951_782_400_000,
            4_102_444_799_999,
            1_582_934_400_000,
        ] {
            let mut b = Vec::new();
            rfc3339_ms(&mut b, ms);
            let s = String::from_utf8(b).unwrap();
            assert_eq!(s, sequin_core::time::format_rfc3339(ms * 1000), "{ms}");
        }
    }
}
