//! The web UI in a real browser: headless Chromium driven over WebDriver (fantoccini and
//! Debian's chromedriver) against `sequin serve` on a real port. Screenshots are kept in
//! `target/ui-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::util::{chromium_and_driver, generated_store, spawn_server};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port of ChromeDriver's "ChromeDriver was started successfully on port N." line.
/// The rest of its output is drained on a thread of its own, so that it never blocks on a
/// full pipe.
fn started_on_port(out: std::process::ChildStdout) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("chromedriver reports the port it listens on")
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    std::fs::write(artifacts().join(name), png).unwrap();
}

/// Polls `f` until it gives `Some`, for up to `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits up to `secs` seconds for an element matching `css`.
async fn appears(c: &Client, secs: u64, what: &str, css: &str) -> fantoccini::elements::Element {
    eventually(secs, what, || async {
        c.find(Locator::Css(css)).await.ok()
    })
    .await
}

/// Clicks the element matching `css` (it must be there).
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn frame(c: &Client) -> u64 {
    c.find(Locator::Css("#replay-frame"))
        .await
        .unwrap()
        .attr("data-frame")
        .await
        .unwrap()
        .and_then(|f| f.parse().ok())
        .expect("#replay-frame has a numeric data-frame")
}

/// `1,234 sessions …` → 1234.
fn leading_count(text: &str) -> Option<u64> {
    let digits: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A request with a body over a fresh connection; the status line and the body.
fn http(port: u16, method: &str, path: &str, auth: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

async fn set_editor(c: &Client, text: &str) {
    let editor = c.find(Locator::Css("textarea#editor")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_edits_with_diagnostics_saves_sees_live_counts_replays_and_discovers() {
    let (chromium, chromedriver) = chromium_and_driver();
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = generated_store(dir.path(), 1500, 7, &[]);
    let segments = dir.path().join("demo.seg");
    std::fs::write(&segments, include_str!("../../../../examples/demo.seg")).unwrap();

    let (server, port) = spawn_server(&store, &segments, &[], &dir.path().join("serve.log"));
    let _server = Killed(server);
    // Port 0, read back from its start-up line: a port picked beforehand could be taken by
    // a parallel test's server in the meantime.
    let mut driver = Command::new(&chromedriver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver_port = started_on_port(driver.stdout.take().unwrap());
    let _driver = Killed(driver);
    wait_for_port(driver_port, "chromedriver");

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with headless Chromium");

    // The walk runs as its own task so that a failure still leaves a screenshot of the page
    // as it was (fantoccini clients are handles to one session).
    let walk = tokio::spawn(walk_through_the_ui(c.clone(), port));
    if let Err(failure) = walk.await {
        screenshot(&c, "failure.png").await;
        let _ = c.close().await;
        std::panic::resume_unwind(failure.into_panic());
    }
    c.close().await.unwrap();
}

/// What a user does in the UI, step by step, with a screenshot after each.
async fn walk_through_the_ui(c: Client, port: u16) {
    // The key from the URL, then the list of live definitions.
    c.goto(&format!("http://127.0.0.1:{port}/#key=ak"))
        .await
        .unwrap();
    eventually(30, "the segment list", || async {
        let rows = c
            .find_all(Locator::Css("#segment-list tr[data-segment]"))
            .await
            .ok()?;
        (rows.len() >= 10).then_some(())
    })
    .await;

    // A typo: the checker's diagnostic appears as we type, pointing at it with a hint.
    set_editor(
        &c,
        "segment checkout_buyers of sessions {\n\"Started checkout and bought within the hour\"\nsequence within 1h { checkout_start; purchse }\n}",
    )
    .await;
    let diagnostic = eventually(20, "a diagnostic for the typo", || async {
        text_of(&c, "#diagnostics .diagnostic.error").await
    })
    .await;
    assert!(diagnostic.contains("purchse"), "{diagnostic}");
    assert!(
        diagnostic.contains('^'),
        "the diagnostic points with a caret: {diagnostic}"
    );
    assert!(
        diagnostic.contains("did you mean `purchase`"),
        "{diagnostic}"
    );
    screenshot(&c, "01-editor-diagnostic.png").await;

    // Fixed: no problems; the preview (batch over history) gives the size.
    set_editor(
        &c,
        "segment checkout_buyers of sessions {\n\"Started checkout and bought within the hour\"\nsequence within 1h { checkout_start; purchase }\n}",
    )
    .await;
    appears(&c, 20, "the diagnostics to clear", "#diagnostics-ok").await;
    click(&c, "#preview-button").await;
    let previewed = eventually(60, "the preview", || async {
        leading_count(&text_of(&c, "#preview-result").await?)
    })
    .await;
    assert!(
        previewed > 50,
        "the generated data has checkout buyers: {previewed}"
    );

    // Save: backfilled, live, and listed with the same count.
    click(&c, "#save-button").await;
    let saved = eventually(60, "the save", || async {
        let t = text_of(&c, "#save-result").await?;
        t.starts_with("Saved").then_some(t)
    })
    .await;
    let saved_count = saved.split_once(": ").and_then(|(_, n)| leading_count(n));
    assert_eq!(saved_count, Some(previewed), "{saved}");
    let listed = eventually(30, "the new row's member count", || async {
        leading_count(&text_of(&c, "tr[data-segment=\"checkout_buyers\"] .member-count").await?)
    })
    .await;
    assert_eq!(
        listed, previewed,
        "live membership after backfill equals the batch preview"
    );
    screenshot(&c, "02-segment-saved.png").await;

    // Live counts: a visitor viewing pricing three times enters `pricing_no_trial`, and the
    // list shows it from the change stream, without a reload.
    let row = "tr[data-segment=\"pricing_no_trial\"] .member-count";
    let before = leading_count(&text_of(&c, row).await.unwrap()).unwrap();
    let (_, list) = http(port, "GET", "/api/segments", "Bearer ak", "");
    let watermark: serde_json::Value = serde_json::from_str(&list).unwrap();
    let now = watermark["watermark"].as_str().unwrap().to_string();
    let views: Vec<serde_json::Value> = (1..=3)
        .map(|i| {
            json!({"type": "page", "name": "pricing", "userId": "ui-visitor",
                   "messageId": format!("ui-visit-{i}"), "timestamp": now.clone(),
                   "properties": {"page": "pricing"}})
        })
        .collect();
    let basic = "Basic d2s6"; // base64("wk:")
    let (status, body) = http(
        port,
        "POST",
        "/v1/batch",
        basic,
        &json!({ "batch": views }).to_string(),
    );
    assert!(status.contains(" 200 "), "{status} {body}");
    eventually(30, "the live count to move", || async {
        let n = leading_count(&text_of(&c, row).await?)?;
        (n == before + 1).then_some(())
    })
    .await;

    // Cohort Replay: the flow is drawn; play advances frames, pause holds, scrub jumps.
    click(&c, "tr[data-segment=\"checkout_buyers\"] .replay-link").await;
    appears(&c, 60, "the replay chart", "#replay-chart canvas").await;
    assert_eq!(frame(&c).await, 0);
    let status_at_start = text_of(&c, "#replay-status").await.unwrap();
    screenshot(&c, "03-replay-start.png").await;
    click(&c, "#replay-play").await;
    let first = eventually(10, "frames to advance", || async {
        let f = frame(&c).await;
        (f > 0).then_some(f)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = frame(&c).await;
    assert!(later > first, "still playing: frame {first} then {later}");
    screenshot(&c, "04-replay-playing.png").await;
    click(&c, "#replay-pause").await;
    let held = frame(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(frame(&c).await, held, "paused");
    c.execute(
        "const s = document.querySelector('#replay-scrub'); s.value = 120; s.dispatchEvent(new Event('input'));",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(frame(&c).await, 120, "scrubbing sets the frame");
    // The cohort moved: members have ended their journeys by the middle of the replay.
    let status_later = text_of(&c, "#replay-status").await.unwrap();
    assert_ne!(
        status_later, status_at_start,
        "the cohort's state changes over time"
    );
    let clock = text_of(&c, "#replay-time").await.unwrap();
    assert!(!clock.is_empty());
    screenshot(&c, "05-replay-scrubbed.png").await;

    // The segment page: size over time, the outcome report as charts, the funnel.
    c.goto(&format!(
        "http://127.0.0.1:{port}/#/segment/checkout_buyers"
    ))
    .await
    .unwrap();
    appears(&c, 60, "the history chart", "#history-chart canvas").await;
    appears(&c, 60, "the funnel chart", "#funnel-chart canvas").await;
    c.execute(
        "const s = document.querySelector('#report-outcome'); s.value = 'purchased'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#report-run").await;
    let sentence = eventually(60, "the outcome report", || async {
        c.find(Locator::Css("#report-chart canvas")).await.ok()?;
        let t = text_of(&c, "#report-result").await?;
        t.contains("purchased").then_some(t)
    })
    .await;
    assert!(sentence.contains("sessions"), "{sentence}");
    screenshot(&c, "06-segment-page.png").await;

    // Discovery, and a finding saved as a segment through the editor.
    c.goto(&format!("http://127.0.0.1:{port}/#/discover"))
        .await
        .unwrap();
    eventually(30, "the outcome list", || async {
        let v = c
            .execute(
                "return document.querySelector('#discover-outcome')?.value || null;",
                vec![],
            )
            .await
            .ok()?;
        v.as_str().map(str::to_string)
    })
    .await;
    c.find(Locator::Css("#discover-exclude"))
        .await
        .unwrap()
        .send_keys("payment_submit")
        .await
        .unwrap();
    click(&c, "#discover-run").await;
    eventually(120, "discovery findings", || async {
        c.find(Locator::Css("#discover-results .save-as-segment"))
            .await
            .ok()
    })
    .await
    .click()
    .await
    .unwrap();
    screenshot(&c, "07-discover-saved-to-editor.png").await;
    let prefilled = eventually(20, "the editor prefilled", || async {
        let v = c
            .execute(
                "return document.querySelector('textarea#editor')?.value || null;",
                vec![],
            )
            .await
            .ok()?;
        v.as_str().map(str::to_string)
    })
    .await;
    assert!(prefilled.starts_with("segment "), "{prefilled}");
    appears(&c, 20, "the finding to check clean", "#diagnostics-ok").await;

    // The agent view: conversations, signal rates, transcripts.
    c.goto(&format!("http://127.0.0.1:{port}/#/agents"))
        .await
        .unwrap();
    eventually(60, "the signal chart", || async {
        c.find(Locator::Css("#agent-signal-chart canvas"))
            .await
            .ok()
    })
    .await;
    screenshot(&c, "08-agents.png").await;

    // The page records uncaught errors and unhandled rejections from its first script on.
    let errors = c
        .execute("return window.__sequinErrors;", vec![])
        .await
        .unwrap();
    assert_eq!(errors, json!([]), "no script errors");
}
