//! Integration tests for fogg-codec, in one binary so they link once.

// Helpers outside #[test] functions are test code too; a panic is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod encode_errors;
mod known_bytes;
mod robustness;
mod roundtrip;
mod strategies;
mod util;
mod violations;
