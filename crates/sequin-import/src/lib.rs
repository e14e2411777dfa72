//! File importers: NDJSON (Segment messages or flat objects), CSV with a header, and Parquet,
//! gzip-compressed or not, into a [`sequin_store::Store`].
//!
//! Each file is read into chunks of events by a reader thread; the caller's thread appends
//! each chunk to the store, which acknowledges it once durable. A row that cannot become an
//! event (unparseable time, missing key, wrong type) is reported with `file:line` and the
//! reason, counted, and written to the rejects file; the good rows still go in. With
//! `strict`, a first pass checks the whole file and the first bad row stops the import
//! before anything of that file is written.

mod readers;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use sequin_core::Event;
use sequin_core::flat::FlatOptions;
use sequin_store::{Store, StoreError};

pub use readers::InputFormat;

/// Events per chunk handed to the store (one durable append each).
pub const CHUNK: usize = 1 << 14;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the expected format (bad header, not Parquet, …).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--strict` and a row is bad: nothing of the file was imported.
    #[error("{0}\nstrict import: nothing of this file was imported")]
    Strict(RowError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A row that could not become an event.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// The file.
    pub file: String,
    /// 1-based line (NDJSON, CSV) or row (Parquet) number.
    pub line: u64,
    /// The field at fault, if known.
    pub field: String,
    /// Why.
    pub reason: String,
    /// The raw row (text formats), for the rejects file.
    pub raw: Option<String>,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.reason
        )
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Input format (`None`: from the file name).
    pub format: Option<InputFormat>,
    /// Column roles for flat records.
    pub flat: FlatOptions,
    /// Stop at the first bad row and import nothing of that file.
    pub strict: bool,
    /// Where to write rejected rows (NDJSON); `None`: `<store>/rejects/<file>.rejects.ndjson`.
    pub rejects: Option<PathBuf>,
}

/// What importing one file did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    /// The file.
    pub file: String,
    /// Rows read (good and bad).
    pub rows: u64,
    /// Events accepted by the store (durable).
    pub imported: u64,
    /// Events dropped as duplicate message ids.
    pub duplicates: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// The first rejected rows (at most 20), for display.
    pub first_errors: Vec<RowError>,
    /// Where the rejects were written, if any.
    pub rejects_file: Option<PathBuf>,
}

/// Progress callbacks.
pub trait Progress {
    /// `bytes` of the input have been read and `events` acknowledged so far.
    fn update(&self, bytes: u64, events: u64);
}

impl Progress for () {
    fn update(&self, _: u64, _: u64) {}
}

/// A chunk produced by a reader.
pub(crate) struct Chunk {
    pub events: Vec<Event>,
    pub errors: Vec<RowError>,
    pub rows: u64,
    pub bytes_read: u64,
}

/// Imports one file into `store`. `on_ack(total)` is called after every durable append with
/// the number of events acknowledged so far for this file.
pub fn import_file(
    store: &mut Store,
    path: &Path,
    opts: &ImportOptions,
    progress: &dyn Progress,
    on_ack: &mut dyn FnMut(u64),
) -> Result<FileReport, ImportError> {
    let format = match opts.format {
        Some(f) => f,
        None => InputFormat::from_path(path).ok_or_else(|| ImportError::Format {
            path: path.to_path_buf(),
            reason:
                "cannot tell the format from the file name: use --input-format ndjson|csv|parquet"
                    .into(),
        })?,
    };
    let file_name = path.display().to_string();
    if opts.strict {
        // First pass: check every row, write nothing.
        let mut first_bad = None;
        readers::read(path, format, &opts.flat, &mut |chunk: Chunk| {
            if first_bad.is_none() {
                first_bad = chunk.errors.into_iter().next();
            }
            first_bad.is_none()
        })?;
        if let Some(e) = first_bad {
            return Err(ImportError::Strict(e));
        }
    }
    let mut report = FileReport {
        file: file_name.clone(),
        ..Default::default()
    };
    let mut rejects: Option<BufWriter<File>> = None;
    let rejects_path = opts.rejects.clone().unwrap_or_else(|| {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "input".into());
        store
            .dir()
            .join("rejects")
            .join(format!("{base}.rejects.ndjson"))
    });
    let (tx, rx) = sync_channel::<Chunk>(4);
    let flat = opts.flat.clone();
    let owned_path = path.to_path_buf();
    let reader = std::thread::spawn(move || {
        readers::read(&owned_path, format, &flat, &mut |chunk| {
            tx.send(chunk).is_ok()
        })
    });
    let mut result = Ok(());
    for chunk in rx.iter() {
        report.rows += chunk.rows;
        if !chunk.events.is_empty() {
            match store.append(chunk.events) {
                Ok(outcome) => {
                    report.imported += outcome.accepted;
                    report.duplicates += outcome.duplicates;
                    on_ack(report.imported);
                }
                Err(e) => {
                    result = Err(ImportError::Store(e));
                    break;
                }
            }
        }
        for err in chunk.errors {
            report.rejected += 1;
            if rejects.is_none() {
                if let Some(dir) = rejects_path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| ImportError::Io {
                        path: dir.to_path_buf(),
                        source: e,
                    })?;
                }
                let f = File::create(&rejects_path).map_err(|e| ImportError::Io {
                    path: rejects_path.clone(),
                    source: e,
                })?;
                rejects = Some(BufWriter::new(f));
                report.rejects_file = Some(rejects_path.clone());
            }
            let line = serde_json::json!({
                "file": err.file, "line": err.line, "field": err.field, "reason": err.reason, "row": err.raw,
            });
            if let Some(w) = rejects.as_mut() {
                writeln!(w, "{line}").map_err(|e| ImportError::Io {
                    path: rejects_path.clone(),
                    source: e,
                })?;
            }
            if report.first_errors.len() < 20 {
                report.first_errors.push(err);
            }
        }
        progress.update(chunk.bytes_read, report.imported);
    }
    drop(rx);
    let read_result = reader.join().expect("reader thread does not panic");
    result?;
    read_result?;
    if let Some(mut w) = rejects {
        w.flush().map_err(|e| ImportError::Io {
            path: rejects_path.clone(),
            source: e,
        })?;
    }
    Ok(report)
}
