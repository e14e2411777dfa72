//! The engine's error type.

/// What can go wrong while compiling or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No definition by that name.
    #[error("no segment or outcome named `{0}`")]
    UnknownDefinition(String),
    /// Beyond what the matcher supports.
    #[error("definition too complex: {0}")]
    TooComplex(String),
    /// The file's signal settings are invalid.
    #[error("signal settings: {0}")]
    Signals(String),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] sequin_store::StoreError),
}
