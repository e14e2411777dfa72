//! The manifest: which history runs exist and how far the log has been flushed. Replaced
//! atomically (write, sync, rename, sync directory), so a crash leaves either the old or the
//! new manifest, never half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, StoreError};
use crate::wal::sync_dir;

/// File name of the manifest inside a store directory.
pub const MANIFEST: &str = "MANIFEST.json";

/// One sorted Parquet file of one partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// Partition number.
    pub partition: usize,
    /// Path relative to the store directory.
    pub file: String,
    /// Number of events.
    pub rows: u64,
    /// Earliest event time (µs).
    pub min_time: i64,
    /// Latest event time (µs).
    pub max_time: i64,
    /// Largest arrival number held (absent in files written before they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seq: Option<u64>,
}

/// The store's table of contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Number of unit partitions (fixed at creation).
    pub partitions: usize,
    /// Sequence number the next accepted event gets.
    pub next_seq: u64,
    /// Every event with a smaller sequence number is in history.
    pub flushed_seq: u64,
    /// Number used to name the next run file.
    pub next_run: u64,
    /// History files, oldest first within each partition.
    pub runs: Vec<Run>,
    /// Number of lines of the identity file that are covered by flushed events.
    pub identity_links: u64,
    /// Ids linked since their events were written to history: their partitions must be
    /// rewritten (by compaction) so those events move to the linked user.
    pub rekey: Vec<String>,
}

impl Manifest {
    /// A new, empty store's manifest.
    pub fn new(partitions: usize) -> Manifest {
        Manifest {
            format: 1,
            partitions,
            next_seq: 0,
            flushed_seq: 0,
            next_run: 0,
            runs: Vec::new(),
            identity_links: 0,
            rekey: Vec::new(),
        }
    }

    /// Reads the manifest in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, StoreError> {
        let path = dir.join(MANIFEST);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Replaces the manifest in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let tmp = dir.join("MANIFEST.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(&bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        let path = dir.join(MANIFEST);
        fs::rename(&tmp, &path).at(&path)?;
        sync_dir(dir)
    }

    /// Runs of one partition, oldest first.
    pub fn runs_of(&self, partition: usize) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.partition == partition)
    }
}
