//! Integration tests of the `sequin` binary, in one test binary (as ripgrep does).

// Tests read back small files they wrote themselves.
#![allow(clippy::disallowed_methods)]

mod bad_rows;
mod crash;
mod insight;
mod real_data;
mod roundtrip;
mod segments;
mod serve;
mod signals;
mod ui;
mod util;
