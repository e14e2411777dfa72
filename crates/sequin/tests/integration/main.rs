//! Integration tests of the `sequin` binary, in one test binary (as ripgrep does).

mod bad_rows;
mod crash;
mod real_data;
mod roundtrip;
mod util;
