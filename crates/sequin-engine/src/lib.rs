//! Sequin's evaluation engine.
//!
//! - [`compile`]: checked definitions → [`Program`]s (name masks, property slots, sequence
//!   layouts).
//! - [`matcher`]: the one incremental matcher, fed events and timers per unit; batch and
//!   live evaluation both drive it.
//! - [`outcome`]: outcomes evaluated per unit after an anchor time (same matcher).
//! - [`units`]: how a user's events split into sessions and conversations.
//! - [`batch`]: evaluation over a store, in parallel over unit partitions.
//! - [`live`]: the same matcher kept current as events arrive: timers, watermark, late
//!   events re-read from history, membership changes.
//! - [`signals`]: derived `signal.<name>` events placed among a unit's events (batch and
//!   live alike).
//! - [`reference`]: a brute-force evaluator written for clarity, the oracle of the tests.

pub mod batch;
pub mod codec;
pub mod compile;
pub mod error;
pub mod live;
pub mod matcher;
pub mod outcome;
pub mod reference;
pub mod signals;
pub mod units;
pub mod val;

pub use compile::Program;
pub use error::EngineError;
pub use matcher::{Ev, Props, UnitState};
