//! Sequin's insights: what turns segments into decisions.
//!
//! - [`mine`]: frequent sequential patterns (PrefixSpan) over a store's units or an SPMF
//!   file.

pub mod error;
pub mod mine;
pub mod units;

pub use error::InsightError;
