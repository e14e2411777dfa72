//! The one error type of this crate: why a message or record could not become an event.

/// Why one input record could not be turned into an [`crate::Event`].
///
/// `field` names the offending field so that a reject report can say where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct MapError {
    /// The field (column or JSON key) at fault.
    pub field: String,
    /// What is wrong with it, in plain words.
    pub reason: String,
}

impl MapError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
