//! Sequin's insights: what turns segments into decisions.
//!
//! - [`at_risk`]: the segments that precede an outcome, and their units whose outcome is
//!   still open.
//! - [`discover`]: top-k search for the behaviours whose members differ most in an
//!   outcome, verified by the engine, with false discoveries controlled.
//! - [`explain`]: which segments and attribute values explain a change in an outcome
//!   rate between two periods (Adtributor-style contribution and surprise).
//! - [`funnel`]: step-by-step conversion through a sequence segment, with a breakdown.
//! - [`mine`]: frequent sequential patterns (PrefixSpan) over a store's units or an SPMF
//!   file.
//! - [`report`]: outcome linkage of a segment: rates, relative risk, p-value, value at
//!   stake.
//! - [`stats`]: the two-group statistics of an outcome report (Wilson, relative risk,
//!   Newcombe, Fisher / z-test).

pub mod at_risk;
pub mod discover;
pub mod error;
pub mod explain;
pub mod funnel;
pub mod mine;
pub mod report;
pub mod stats;
pub mod units;

pub use error::InsightError;
