//! Integration tests for fogg-codec, in one binary so they link once.

mod encode_errors;
mod known_bytes;
mod robustness;
mod roundtrip;
mod strategies;
mod util;
mod violations;
