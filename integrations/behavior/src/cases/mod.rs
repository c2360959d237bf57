//! The cases, one `pub async fn(&impl AuthFixture)` each.
//!
//! A new case is added here and to the list in
//! `__auth_behavior_for_each_case!` (lib.rs); every backend then runs it.

mod authentication;
mod authorization;

pub use authentication::*;
pub use authorization::*;
