//! Helpers: run the binary, read JSON stats, find the shared data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// `../shared/data` relative to the repository root.
pub fn shared_data() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    root.join("shared/data")
}
