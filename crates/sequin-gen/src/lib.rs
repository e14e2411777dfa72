//! Realistic synthetic telemetry with planted behaviours whose effects are known.
//!
//! Each user gets a platform (web, iOS app, Android app), a device, OS, network and app
//! version, then sessions spread over the period: landing and pricing pages, search,
//! product views, cart, checkout steps, payment, purchases with amounts, sign-up and trial,
//! page loads with load times, clicks with element ids and coordinates, errors with codes
//! (some silent), form submissions — and, for some users, AI-agent support conversations
//! (user and agent messages with text, tool calls that succeed or fail, transfers to a
//! human, resolutions).
//!
//! Planted behaviours (see [`truth`]) are written to `<out>.truth.json` with the ids of the
//! units they affect, so detectors and discovery can be scored against them. Users are
//! generated independently from `(seed, user index)`, in parallel, so the output is the
//! same for a seed whatever the thread count. The file is grouped by user (each user's
//! events in time order).

mod journey;
mod text;
pub mod truth;
mod write;

use std::path::{Path, PathBuf};

pub use journey::{GenEvent, Kind, PropValue};
pub use truth::Truth;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Number of users.
    pub users: u64,
    /// Length of the period in days.
    pub days: u32,
    /// Random seed.
    pub seed: u64,
    /// Plant the conversion incident of one week.
    pub incident: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            users: 10_000,
            days: 30,
            seed: 42,
            incident: false,
        }
    }
}

/// Start of the generated period: 2024-03-04T00:00:00Z (a Monday).
pub const START_MS: i64 = 1_709_510_400_000;

/// What [`generate_to_file`] wrote.
#[derive(Debug, Clone)]
pub struct GenReport {
    /// Users generated.
    pub users: u64,
    /// Events written (including deliberate duplicate deliveries).
    pub events: u64,
    /// Where the ground truth went.
    pub truth_path: PathBuf,
}

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Path of the ground-truth file for an output file.
pub fn truth_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".truth.json");
    PathBuf::from(s)
}

/// Generates the data set and writes it to `out` (NDJSON, `.ndjson.gz`, or `.parquet`),
/// with the ground truth beside it.
pub fn generate_to_file(cfg: &GenConfig, out: &Path) -> Result<GenReport, GenError> {
    let (events, truth) = write::write(cfg, out)?;
    let tp = truth_path(out);
    let json = serde_json::to_vec_pretty(&truth).expect("truth serializes");
    std::fs::write(&tp, json).map_err(|e| GenError::Io {
        path: tp.clone(),
        source: e,
    })?;
    Ok(GenReport {
        users: cfg.users,
        events,
        truth_path: tp,
    })
}

/// Generates one user's events and the behaviours planted on them (for tests and tools).
pub fn generate_user(cfg: &GenConfig, index: u64) -> (Vec<GenEvent>, truth::UserTruth) {
    journey::user(cfg, index)
}
