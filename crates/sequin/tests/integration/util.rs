//! Helpers: run the binary, read JSON stats, find the shared data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `sequin` binary under test.
pub fn sequin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sequin"))
}

/// Runs `sequin` with `args`, asserting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "sequin {args:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `sequin` with `args`.
pub fn run(args: &[&str]) -> Output {
    sequin().args(args).output().expect("sequin runs")
}

/// `sequin stats --format json` of a store.
pub fn stats(store: &Path) -> serde_json::Value {
    let out = run_ok(&[
        "stats",
        "--store",
        store.to_str().unwrap(),
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).expect("stats prints JSON")
}

/// `sequin gen --users N --seed S [extra…]` into `dir/gen.ndjson`, imported into `dir/store`;
/// returns (data file, store).
pub fn generated_store(dir: &Path, users: u32, seed: u64, extra: &[&str]) -> (PathBuf, PathBuf) {
    let data = dir.join("gen.ndjson");
    let store = dir.join("store");
    let (users, seed) = (users.to_string(), seed.to_string());
    let mut args = vec![
        "gen",
        "--out",
        data.to_str().unwrap(),
        "--users",
        &users,
        "--seed",
        &seed,
    ];
    args.extend(extra);
    run_ok(&args);
    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    (data, store)
}

/// Imports a flat file naming its unit, time and event columns.
pub fn import_flat(store: &Path, file: &Path, unit: &str, time: &str, event: &str) {
    run_ok(&[
        "import",
        "--store",
        store.to_str().unwrap(),
        file.to_str().unwrap(),
        "--unit",
        unit,
        "--time",
        time,
        "--event",
        event,
    ]);
}

/// `../shared/data` relative to the repository root.
pub fn shared_data() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    root.join("shared/data")
}

/// A Python interpreter with DuckDB, for cross-checks written in SQL. Uses `SEQUIN_PYTHON`
/// or `bench/.venv` when they have DuckDB; otherwise makes a virtualenv under `target/`
/// and installs the pinned DuckDB from PyPI (once).
pub fn python_with_duckdb() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let has_duckdb = |py: &Path| {
            Command::new(py)
                .args(["-c", "import duckdb"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let mut candidates: Vec<PathBuf> = std::env::var_os("SEQUIN_PYTHON")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        candidates.push(root.join("bench/.venv/bin/python"));
        candidates.push(root.join("target/test-venv/bin/python"));
        if let Some(py) = candidates.iter().find(|p| has_duckdb(p)) {
            return py.clone();
        }
        let venv = root.join("target/test-venv");
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv failed");
        let pip = venv.join("bin/pip");
        let status = Command::new(&pip)
            .args(["install", "-q", "duckdb==2.0.1"])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install duckdb failed");
        let py = venv.join("bin/python");
        assert!(has_duckdb(&py));
        py
    })
    .clone()
}

/// A Python interpreter with Segment's SDK (`segment-analytics-python`, pinned), in the
/// same test virtualenv as DuckDB.
pub fn python_with_segment_sdk() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| python_with("segment.analytics", &["segment-analytics-python==2.4.0"]))
        .clone()
}

/// A Python interpreter with the OpenTelemetry SDK and its OTLP/HTTP (protobuf) exporter,
/// pinned, in the same test virtualenv.
pub fn python_with_otel_sdk() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        python_with(
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            &[
                "opentelemetry-sdk==1.45.2",
                "opentelemetry-exporter-otlp-proto-http==1.45.2",
            ],
        )
    })
    .clone()
}

/// The test virtualenv's interpreter, with `requirements` installed unless `module` already
/// imports.
fn python_with(module: &str, requirements: &[&str]) -> PathBuf {
    let py = python_with_duckdb();
    let present = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let status = Command::new(&py)
            .args(["-m", "pip", "install", "-q"])
            .args(requirements)
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install {requirements:?} failed");
    }
    py
}

/// A program on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Headless Chromium and its WebDriver: `(chromium, chromedriver)`. Installs Debian's
/// `chromium` and `chromium-driver` when missing and apt-get can (as root), once.
pub fn chromium_and_driver() -> (PathBuf, PathBuf) {
    static BROWSER: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BROWSER
        .get_or_init(|| {
            let found = || Some((on_path("chromium")?, on_path("chromedriver")?));
            if let Some(both) = found() {
                return both;
            }
            let is_root = Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
            assert!(
                is_root && on_path("apt-get").is_some(),
                "the browser test needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver)"
            );
            for args in [
                &["update", "-qq"][..],
                &["install", "-y", "-qq", "chromium", "chromium-driver"],
            ] {
                let status = Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .expect("apt-get runs");
                assert!(status.success(), "apt-get {args:?} failed");
            }
            found().expect("chromium and chromedriver after installing them")
        })
        .clone()
}

/// Starts `sequin serve` over `store` with `segments` live, the keys `wk` (write), `rk`
/// (read) and `ak` (admin), no idle advance of the watermark, and `extra` arguments, on a
/// port the kernel picks, with stderr going to `log`; returns it with that port once it is
/// listening. Asking for port 0 and reading the port back, rather than picking a free port
/// first, is what keeps a restarted server's port from being taken by another test's
/// server in the meantime (the tests run in parallel): a client would then talk to the
/// wrong server.
pub fn spawn_server(store: &Path, segments: &Path, extra: &[&str], log: &Path) -> (Child, u16) {
    let mut child = sequin()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-idle-advance"])
        .arg("--store")
        .arg(store)
        .arg("--segments")
        .arg(segments)
        .args(["--write-key", "wk", "--read-key", "rk", "--admin-key", "ak"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(port) = text
            .lines()
            .find_map(|l| l.strip_prefix("listening on http://127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
        {
            return (child, port);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sequin serve exited ({status}) before listening:\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sequin serve did not start listening:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
