//! fogg-auth-behavior: the one authentication and authorization suite every
//! auth backend runs (files, redis, postgres, mysql, mongodb, ...).
//!
//! A backend crate implements [`AuthFixture`] for its real server (store a
//! user; give the factory and its settings; declare its [`Features`]) and
//! calls [`auth_behavior_tests!`] once:
//!
//! ```ignore
//! // integrations/<kind>/tests/behavior.rs
//! struct Fixture { /* a server guard, a connection for seeding */ }
//!
//! impl fogg_auth_behavior::AuthFixture for Fixture {
//!     fn factory(&self) -> Box<dyn fogg_api::BackendFactory> { Box::new(MyFactory) }
//!     fn settings(&self, hash: &HashMethod) -> toml::Table { /* url, hash method */ }
//!     fn features(&self) -> Features { Features::vernemq(vec![HashMethod::Broker(Scheme::Bcrypt)]) }
//!     async fn seed_user(&self, user: &TestUser) { /* INSERT ... */ }
//!     async fn seed_raw(&self, user: &RawUser) { /* INSERT exactly this */ }
//! }
//!
//! async fn fixture() -> Fixture { /* start or reach the server */ }
//! fogg_auth_behavior::auth_behavior_tests!(fixture());
//! ```
//!
//! The macro writes one `#[test]` per case; the expression is awaited once
//! per case, on the case's own multi-threaded runtime, and each case fails
//! after [`CASE_TIMEOUT`] instead of hanging.
//!
//! Each case stores its users first (random usernames: cases may share one
//! server, in parallel, across runs), then builds the backend through a
//! `fogg_api::Registry` holding the fixture's factory, with the fixture's
//! settings table — the path the `fogg` binary takes for
//! `[backends.NAME] kind = "..."` — then authenticates and checks publishes
//! and subscriptions the way the broker does: through the rules handed over
//! in the `Grant`, else through the backend's authorizer (`Next` there
//! counts as a denial, as at the end of the broker's chain).
//!
//! ## The contract checked here
//!
//! * right password → `Allow`; wrong password → `Deny`; for every hash
//!   method declared, and `$2a$`/`$2b$`/`$2y$` for bcrypt;
//! * unknown username → `Next`; a CONNECT without username or without
//!   password → `Next` (VerneMQ: only CONNECTs with both can succeed through
//!   a database backend; `allow_anonymous` or the next backend decides);
//! * a stored user without a password → `Deny` (logged);
//! * rows per client id: the exact row first, alone deciding; else the `*`
//!   row;
//! * the same username in another mountpoint is another user;
//! * an unknown or malformed stored hash, malformed ACL JSON (bad JSON, not
//!   an array, no `pattern`, a wrong type, an invalid filter) → `Deny`,
//!   logged: never `Allow`, never an error, never a panic; unknown ACL keys
//!   are ignored;
//! * ACL patterns (wildcards cover, the subscription's own wildcards match
//!   only themselves), VerneMQ's defaults, each limit (`max_qos` on publish,
//!   `max_qos` granted on subscribe, `max_payload_size`, `allowed_retain`),
//!   publish and subscribe `modifiers`, `%u %c %m` substitution.
//!
//! Cases needing a feature the fixture does not declare print a line saying
//! so and pass.

pub mod cases;
pub mod direct;
pub mod fixture;
pub mod support;

use std::future::Future;
use std::time::Duration;

pub use fixture::{
    AuthFixture, Features, HashMethod, PublishAcl, RawPassword, RawUser, SubscribeAcl, TestUser,
};
pub use fogg_auth_common::passwords::{Pbkdf2Digest, Scheme};

/// How long one case may take before it fails instead of hanging.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one case on a fresh multi-threaded runtime, with [`CASE_TIMEOUT`].
///
/// # Panics
/// When the runtime cannot be built, or the case panics or times out.
pub fn run_case<F: Future<Output = ()>>(name: &str, case: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    runtime.block_on(async {
        if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
            panic!("auth behavior case `{name}` did not finish within {CASE_TIMEOUT:?}");
        }
    });
}

/// Runs every case, one after the other, against one fixture.
pub async fn run_all(fixture: &impl AuthFixture) {
    crate::__auth_behavior_for_each_case!(__auth_behavior_run_each!(fixture));
}

/// The names of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = crate::__auth_behavior_for_each_case!(__auth_behavior_names!());

/// Expands to one `#[test]` per case of the suite.
///
/// The argument is an expression evaluating to a future that yields the
/// fixture (any type implementing [`AuthFixture`]); it is evaluated once
/// per case.
#[macro_export]
macro_rules! auth_behavior_tests {
    ($fixture:expr $(,)?) => {
        $crate::__auth_behavior_for_each_case!(__auth_behavior_test_fns!($fixture));
    };
}

/// The one list of cases; calls `$crate::$callback!` with `(args) case, case, ...`.
#[doc(hidden)]
#[macro_export]
macro_rules! __auth_behavior_for_each_case {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            right_and_wrong_password_for_every_hash_method,
            bcrypt_prefixes_2a_2b_2y,
            unknown_user_is_next,
            connect_without_username_or_password_is_next,
            stored_user_without_password_is_denied,
            any_client_id_row_matches_every_client,
            exact_row_is_preferred_over_any_client_row,
            mountpoints_are_isolated,
            unknown_or_malformed_hash_is_denied,
            malformed_acl_is_denied,
            unknown_acl_keys_are_ignored,
            publish_and_subscribe_patterns,
            user_without_acl_entries_may_connect_but_not_act,
            acl_defaults,
            publish_max_qos,
            subscribe_max_qos_is_granted,
            publish_max_payload_size,
            publish_allowed_retain,
            publish_modifiers,
            subscribe_modifiers,
            substitution_of_username_client_id_mountpoint,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __auth_behavior_test_fns {
    (($fixture:expr) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case(::core::stringify!($case), async {
                    let fixture = $fixture.await;
                    $crate::cases::$case(&fixture).await;
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __auth_behavior_run_each {
    (($fixture:expr) $($case:ident),* $(,)?) => {
        $( $crate::cases::$case($fixture).await; )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __auth_behavior_names {
    (() $($case:ident),* $(,)?) => {
        &[$(::core::stringify!($case)),*]
    };
}
