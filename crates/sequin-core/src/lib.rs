//! The event model every other Sequin crate speaks.
//!
//! An [`Event`] is one thing a user (or an anonymous visitor, or an AI-agent conversation) did:
//! unit keys, an event time in microseconds since the Unix epoch (UTC), a name, typed
//! properties and context. Two mappings produce events:
//!
//! - [`segment`] turns Segment-spec messages (`track`, `page`, `screen`, `identify`, `alias`,
//!   `group`, `batch`) into events, applying the clock-skew correction and merging batch-level
//!   context into every item;
//! - [`flat`] turns flat records (a key column, a time column, an event column, every other
//!   column a property) into events.
//!
//! [`time`] parses and prints event times; [`value`] holds typed property values.

pub mod error;
pub mod event;
pub mod flat;
pub mod segment;
pub mod signal;
pub mod time;
pub mod value;

pub use error::MapError;
pub use event::{Event, MessageKind, Props};
pub use time::{Micros, TimeFormat};
pub use value::{Text, Value};

/// Stable 64-bit hash of a unit key; the partition of a unit is `unit_hash(key) % partitions`.
///
/// xxh3 is specified byte-for-byte, so the partition a unit lives in never changes between
/// releases or machines (a requirement once partitions are owned by different workers).
pub fn unit_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}
