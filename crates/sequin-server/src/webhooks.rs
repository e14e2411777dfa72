//! Per-segment webhooks: every change of a segment is POSTed as JSON to its URL, at least
//! once, in change order.
//!
//! - The hooks live in `live/webhooks.json`; each keeps a cursor (the last change it
//!   delivered) in `live/webhooks/<segment>.cursor`, so a restart resumes where delivery
//!   stopped (at-least-once: a change whose acknowledgement was lost is sent again).
//! - Each request carries `Idempotency-Key: <segment>:<change number>`, the same on
//!   every retry, for receivers to drop repeats.
//! - A failure (connection error, timeout, non-2xx) is retried with exponential backoff
//!   (0.2 s doubling to 30 s), forever: later changes wait, so order is kept.
//! - Plain `http://` only (no TLS client is linked in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sequin_engine::live::Change;
use tokio::task::JoinHandle;

use crate::evaluator::Live;

/// The configured hooks and their delivery tasks.
pub struct Webhooks {
    dir: PathBuf,
    hooks: Mutex<BTreeMap<String, (String, JoinHandle<()>)>>,
}

/// A webhook target, checked.
#[derive(Debug, Clone)]
struct Target {
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("url: only http:// webhooks are supported, got `{url}`"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("url: no host in `{url}`"));
    }
    Ok(Target {
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

impl Webhooks {
    /// Loads the saved hooks of a store and starts delivering (inside a Tokio runtime).
    pub fn start(store_dir: &Path, live: Arc<Live>) -> Result<Arc<Webhooks>, String> {
        let dir = store_dir.join("live");
        let hooks = Arc::new(Webhooks {
            dir: dir.clone(),
            hooks: Mutex::new(BTreeMap::new()),
        });
        let saved: BTreeMap<String, String> = match std::fs::read(dir.join("webhooks.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("webhooks.json: {e}"))?,
            Err(_) => BTreeMap::new(),
        };
        for (segment, url) in saved {
            hooks.spawn(&segment, &url, live.clone())?;
        }
        Ok(hooks)
    }

    /// The configured hooks: segment → URL.
    pub fn list(&self) -> BTreeMap<String, String> {
        self.hooks
            .lock()
            .expect("hooks lock")
            .iter()
            .map(|(s, (u, _))| (s.clone(), u.clone()))
            .collect()
    }

    /// Sets (or replaces) the hook of `segment`; delivery starts with the next change.
    pub fn set(&self, segment: &str, url: &str, live: Arc<Live>) -> Result<(), String> {
        parse_url(url)?;
        let cursor = self.cursor_path(segment);
        std::fs::create_dir_all(cursor.parent().expect("has a parent"))
            .map_err(|e| e.to_string())?;
        if !cursor.exists() {
            write_cursor(&cursor, live.changes.last_seq()).map_err(|e| e.to_string())?;
        }
        self.spawn(segment, url, live)?;
        self.save()
    }

    /// Removes the hook of `segment`. Returns whether there was one.
    pub fn remove(&self, segment: &str) -> Result<bool, String> {
        let removed = self.hooks.lock().expect("hooks lock").remove(segment);
        if let Some((_, task)) = &removed {
            task.abort();
            let _ = std::fs::remove_file(self.cursor_path(segment));
        }
        self.save()?;
        Ok(removed.is_some())
    }

    fn cursor_path(&self, segment: &str) -> PathBuf {
        self.dir.join("webhooks").join(format!("{segment}.cursor"))
    }

    fn save(&self) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(&self.list()).expect("strings serialize");
        let path = self.dir.join("webhooks.json");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn spawn(&self, segment: &str, url: &str, live: Arc<Live>) -> Result<(), String> {
        let target = parse_url(url)?;
        let cursor = self.cursor_path(segment);
        std::fs::create_dir_all(cursor.parent().expect("has a parent"))
            .map_err(|e| e.to_string())?;
        let task = tokio::spawn(deliver(segment.to_string(), target, cursor, live));
        if let Some((_, old)) = self
            .hooks
            .lock()
            .expect("hooks lock")
            .insert(segment.to_string(), (url.to_string(), task))
        {
            old.abort();
        }
        Ok(())
    }
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, seq.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Delivers the changes of one segment, in order, forever.
async fn deliver(segment: String, target: Target, cursor_path: PathBuf, live: Arc<Live>) {
    let mut cursor = read_cursor(&cursor_path);
    let mut rx = live.changes.broadcast.subscribe();
    loop {
        let upto = live.changes.last_seq();
        let pending: Vec<Change> = live
            .changes
            .read_range(cursor, upto)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.segment == segment)
            .collect();
        for change in pending {
            let mut backoff = Duration::from_millis(200);
            while let Err(e) = post(&target, &change).await {
                eprintln!(
                    "webhook {segment}: change {} not delivered ({e}); retrying in {backoff:?}",
                    change.seq
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            cursor = change.seq;
            if let Err(e) = write_cursor(&cursor_path, cursor) {
                eprintln!("webhook {segment}: cursor not saved: {e}");
            }
        }
        cursor = cursor.max(upto);
        let _ = write_cursor(&cursor_path, cursor);
        // Wait for the next change (or re-check now and then).
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
}

async fn post(target: &Target, change: &Change) -> Result<(), String> {
    let body = serde_json::json!({
        "id": change.seq,
        "segment": change.segment,
        "unit": change.unit,
        "kind": change.kind,
        "time": sequin_core::time::format_rfc3339(change.time),
    })
    .to_string();
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&target.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::post(target.path.as_str())
            .header("host", &target.authority)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                format!("{}:{}", change.segment, change.seq),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out after 10 s".to_string())?
}
