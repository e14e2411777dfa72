//! The insight crate's error type.

/// What can go wrong while computing insights.
#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    /// Bad input at a known place (`file:line`, a flag, a definition).
    #[error("{place}: {reason}")]
    Input {
        /// Where.
        place: String,
        /// Why.
        reason: String,
    },
    /// Evaluating a definition failed.
    #[error(transparent)]
    Engine(#[from] sequin_engine::EngineError),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] sequin_store::StoreError),
}
