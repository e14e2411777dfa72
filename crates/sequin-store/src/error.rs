//! The one error type of the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Parquet reading or writing failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow array construction failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The manifest or identity file is unreadable.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// File at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No store at the given directory.
    #[error("no store at {0} (create one with `sequin import --store {0} FILE`)")]
    NotFound(PathBuf),
    /// Another process holds the store.
    #[error("{0} is in use by another sequin process")]
    Locked(PathBuf),
    /// Events after an arrival number are in a history file written without arrival
    /// numbers (a bulk import), so they cannot be told apart from older ones.
    #[error("history file {0} holds no arrival numbers: the log tail cannot be read from it")]
    TailUnavailable(String),
    /// A flush was asked for while a background flush job is still out.
    #[error("a flush of this store is already running; finish it first")]
    FlushRunning,
}

impl StoreError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attaches a path to I/O results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
