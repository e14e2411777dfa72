//! Sequin's insights: what turns segments into decisions.
//!
//! - [`agents`]: signal rates over conversations and example transcripts (the UI's agent
//!   view).
//! - [`at_risk`]: the segments that precede an outcome, and their units whose outcome is
//!   still open.
//! - [`discover`]: top-k search for the behaviours whose members differ most in an
//!   outcome, verified by the engine, with false discoveries controlled.
//! - [`explain`]: which segments and attribute values explain a change in an outcome
//!   rate between two periods (Adtributor-style contribution and surprise).
//! - [`funnel`]: step-by-step conversion through a sequence segment, with a breakdown.
//! - [`mine`]: frequent sequential patterns (PrefixSpan) over a store's units or an SPMF
//!   file.
//! - [`replay`]: a segment's journeys as a flow of steps, with sampled timings for the
//!   UI's Cohort Replay player.
//! - [`report`]: outcome linkage of a segment: rates, relative risk, p-value, value at
//!   stake.
//! - [`stats`]: the two-group statistics of an outcome report (Wilson, relative risk,
//!   Newcombe, Fisher / z-test).

pub mod agents;
pub mod at_risk;
pub mod discover;
pub mod error;
pub mod explain;
pub mod funnel;
pub mod mine;
pub mod replay;
pub mod report;
pub mod stats;
pub mod units;

pub use error::InsightError;

/// The definition `name` of `file`; `flag` names where the name came from in errors.
pub(crate) fn definition<'a>(
    file: &'a sequin_lang::SegFile,
    name: &str,
    flag: &str,
) -> Result<&'a sequin_lang::ast::Item, InsightError> {
    file.items
        .iter()
        .find(|i| i.name.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = file.items.iter().map(|i| i.name.name.as_str()).collect();
            InsightError::Input {
                place: format!("{flag} {name}"),
                reason: format!(
                    "no definition by that name (the file has: {})",
                    known.join(", ")
                ),
            }
        })
}
