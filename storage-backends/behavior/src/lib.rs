//! fogg-storage-behavior: the one behavior suite every storage backend runs.
//!
//! Each backend crate (memory, embedded, redis, postgres, mysql, mongodb) adds
//! one test file that builds its backend through its `BackendFactory` — the
//! path production uses — and hands it to [`storage_behavior_tests!`]:
//!
//! ```ignore
//! // storage-backends/memory/tests/behavior.rs
//! async fn backend() -> fogg_api::Backend {
//!     fogg_storage_memory::MemoryFactory
//!         .build(&fogg_api::BackendConfig { /* kind = "memory", no settings */ })
//!         .expect("memory backend")
//! }
//! fogg_storage_behavior::storage_behavior_tests!(backend());
//! ```
//!
//! The macro writes one `#[test]` per case; the constructor expression is
//! awaited once per case. It may yield a [`Backend`] or any fixture that
//! implements `Borrow<Backend>` (e.g. a struct holding the backend and the
//! test server guard, dropped when the case ends).
//!
//! Every case uses its own random mountpoint (and random names in the shared
//! default mountpoint `""`), so cases may run in parallel against one shared
//! server, and runs do not see each other's data. Cases delete what they
//! create when they pass.
//!
//! The contract checked here, beyond the trait docs:
//! * the three handles of one backend share state (deleting a session drops
//!   the queue seen through `messages`);
//! * sequence numbers are >= 1 (`after = 0` reads from the start), increase
//!   per session also across `remove` and `clear_queue`, and a message never
//!   becomes visible below a number a reader has already seen;
//! * `remove(key, seq)` and `remove_many(key, seqs)` only ever touch `key`'s
//!   queue, skipping missing numbers;
//! * `enqueue_many` answers one number per key, in key order, increasing per
//!   session; `enqueue_batch` answers those of its writes one after another;
//! * delivery states exist only for queued messages and go with them;
//!   incoming QoS 2 ids go with the session (`delete_session`), not its queue;
//! * `SystemTime` values keep at least millisecond precision;
//! * the order of a session's subscriptions and of match / list results is
//!   not significant;
//! * keys, topics and names are compared byte for byte: case-sensitive, and
//!   SQL `LIKE` (`%`, `_`), glob (`*`, `?`, `[`) and regex characters are
//!   literal.
//!
//! [`run_all`] runs every case in sequence on one backend, for ad-hoc use.

// A test-support crate: panicking with a message is how a case reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "the suite fails cases by panicking"
)]

pub mod cases;
pub mod support;

use std::future::Future;
use std::time::Duration;

pub use fogg_api::Backend;

/// How long one case may take before it fails instead of hanging (a deadlock
/// or a lost wakeup in a backend must not stall CI).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one case on a fresh multi-threaded runtime, with [`CASE_TIMEOUT`].
///
/// The suite brings its own runtime, so a backend crate needs neither tokio's
/// test macro nor a particular flavor; several worker threads let the
/// concurrency cases really run in parallel.
pub fn run_case<F: Future<Output = ()>>(name: &str, case: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
            panic!("storage behavior case `{name}` did not finish within {CASE_TIMEOUT:?}");
        }
    });
}

/// Runs every case, one after the other, against `backend`.
pub async fn run_all(backend: &Backend) {
    crate::__storage_behavior_for_each_case!(__storage_behavior_run_each!(backend));
}

/// The names of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = crate::__storage_behavior_for_each_case!(__storage_behavior_names!());

/// Expands to one `#[test]` per case of the suite.
///
/// The argument is an expression evaluating to a future that yields the
/// backend under test (or a fixture that implements `Borrow<Backend>`); it is
/// evaluated once per case.
#[macro_export]
macro_rules! storage_behavior_tests {
    ($backend:expr $(,)?) => {
        $crate::__storage_behavior_for_each_case!(__storage_behavior_test_fns!($backend));
    };
}

/// The one list of cases; calls `$crate::$callback!` with `(args) case, case, ...`.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_behavior_for_each_case {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            session_save_load_replace_delete,
            session_list,
            session_fields_round_trip,
            session_subscriptions_round_trip,
            session_will_round_trip,
            session_expiry_after_round_trip,
            session_keys_are_isolated,
            times_keep_millisecond_precision,
            queue_fifo_with_increasing_seqs,
            queue_read_paging,
            queue_remove_in_the_middle,
            queue_len_and_clear,
            queue_seqs_keep_increasing_after_remove_and_clear,
            queue_dropped_by_delete_session_only,
            queue_isolated_per_session_and_mountpoint,
            queue_message_round_trip,
            queue_enqueue_many,
            queue_enqueue_batch,
            queue_remove_many,
            delivery_state_set_overwrite_clear,
            delivery_state_dropped_with_message,
            incoming_qos2_set_clear_dropped_with_session,
            retained_put_replace_delete,
            retained_match_exact_and_wildcards,
            retained_match_literal_special_characters,
            retained_dollar_topics,
            retained_mountpoint_isolation,
            retained_list,
            retained_message_round_trip,
            concurrent_enqueue_one_session,
            concurrent_producers_and_cursor_consumer,
            concurrent_many_sessions,
            concurrent_enqueue_many,
            concurrent_retained,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_behavior_test_fns {
    (($backend:expr) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case(::core::stringify!($case), async {
                    let fixture = $backend.await;
                    $crate::cases::$case(::core::borrow::Borrow::<$crate::Backend>::borrow(
                        &fixture,
                    ))
                    .await;
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_behavior_run_each {
    (($backend:expr) $($case:ident),* $(,)?) => {
        $( $crate::cases::$case($backend).await; )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_behavior_names {
    (() $($case:ident),* $(,)?) => {
        &[$(::core::stringify!($case)),*]
    };
}
