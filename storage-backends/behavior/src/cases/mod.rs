//! The cases, one `pub async fn(&Backend)` each, grouped by concern.
//!
//! A new case is added here and to the list in
//! `__storage_behavior_for_each_case!` (lib.rs); every backend then runs it.

mod concurrency;
mod inflight;
mod queues;
mod retained;
mod sessions;

pub use concurrency::*;
pub use inflight::*;
pub use queues::*;
pub use retained::*;
pub use sessions::*;
