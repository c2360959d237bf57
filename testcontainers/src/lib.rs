//! Real servers for integration tests: Redis, PostgreSQL, MariaDB/MySQL, MongoDB (wire
//! protocol), Memcached, RabbitMQ and mosquitto.
//!
//! For each service, in order:
//! 1. `FOGG_TEST_<SERVICE>_URL` (e.g. `FOGG_TEST_REDIS_URL`): an existing server, used as
//!    is (never stopped);
//! 2. Docker, when the crate feature `docker` is on and a daemon answers;
//! 3. the server's own binary, started on a free loopback port in a fresh temp dir, in a
//!    process group of its own, killed (and the dir removed) when the guard is dropped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fogg_testcontainers::Error> {
//! let mut redis = fogg_testcontainers::redis().await?;
//! println!("{} at {}:{}", redis.url(), redis.host(), redis.port());
//! redis.stop().await?; // an outage: same port and data dir kept
//! redis.start().await?; // back, with its data
//! # Ok(()) }
//! ```
//!
//! In tests, [`require!`] (or [`require()`]) turns "this machine has no such server" into a
//! loud `SKIPPED:` line, except under `CI=true` where it fails the test.
//! See the crate README for the details and the environment variables.

use std::io::Write as _;

mod error;
mod local;
mod probe;
mod process;
mod server;
mod service;
mod url;

#[cfg(feature = "docker")]
mod docker;

pub use error::Error;
pub use server::{Origin, TestServer};
pub use service::Service;

/// Start (or find) a server for `service`: see the crate docs for the order tried.
pub async fn start(service: Service) -> Result<TestServer, Error> {
    server::start(service).await
}

/// A Redis server: `redis://127.0.0.1:PORT`.
pub async fn redis() -> Result<TestServer, Error> {
    start(Service::Redis).await
}

/// A PostgreSQL server with superuser `postgres` (password `postgres`):
/// `postgres://postgres:postgres@127.0.0.1:PORT/postgres`. Extensions such as `pgcrypto`
/// are there when the server's contrib package is installed; creating databases and
/// extensions is the test's job.
pub async fn postgres() -> Result<TestServer, Error> {
    start(Service::Postgres).await
}

/// A MariaDB (MySQL-protocol) server with database `fogg` and user `root` (password
/// `fogg`, all privileges): `mysql://root:fogg@127.0.0.1:PORT/fogg`.
pub async fn mysql() -> Result<TestServer, Error> {
    start(Service::Mysql).await
}

/// A MongoDB-wire server (`mongod`, else `secantusd-rs`): `mongodb://127.0.0.1:PORT`.
pub async fn mongodb() -> Result<TestServer, Error> {
    start(Service::Mongodb).await
}

/// A Memcached server: `memcache://127.0.0.1:PORT`.
pub async fn memcached() -> Result<TestServer, Error> {
    start(Service::Memcached).await
}

/// A RabbitMQ server (user `guest`/`guest`, vhost `/`): `amqp://guest:guest@127.0.0.1:PORT/%2f`.
pub async fn rabbitmq() -> Result<TestServer, Error> {
    start(Service::Rabbitmq).await
}

/// A mosquitto MQTT broker, anonymous clients allowed, persistence on:
/// `mqtt://127.0.0.1:PORT`.
pub async fn mosquitto() -> Result<TestServer, Error> {
    start(Service::Mosquitto).await
}

/// Whether this run is CI (`CI=true`, or `CI=1`), where a missing server fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("true") || v == "1"
    })
}

/// The one pattern for tests that need a server.
///
/// - `Ok(server)` gives `Some(server)`.
/// - A server that cannot be had on this machine ([`Error::is_unavailable`]) prints a
///   loud `SKIPPED: ...` line to stderr and gives `None`, so the test returns early;
///   under `CI=true` it panics instead: in CI a missing server is a failure.
///
/// # Panics
///
/// On every other error (a server that is installed but would not start, a
/// `FOGG_TEST_<SERVICE>_URL` that does not answer), and on an unavailable server in CI.
#[track_caller]
pub fn require<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) if e.is_unavailable() && !in_ci() => {
            // Straight to the stderr handle, not eprintln!: the test harness captures the
            // macros' output of passing tests, and this line must be seen.
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {e}");
            None
        }
        Err(e) if e.is_unavailable() => {
            panic!("{e}\n(CI=true: a server that cannot be had is a failure, not a skip)")
        }
        Err(e) => panic!("{e}"),
    }
}

/// `let server = require!(fogg_testcontainers::redis().await);` — the value, or return
/// from the test after a `SKIPPED:` line (a failure under `CI=true`); see [`require()`].
/// Tests returning `Result` pass the value to return: `require!(expr, Ok(()))`.
#[macro_export]
macro_rules! require {
    ($result:expr) => {
        match $crate::require($result) {
            ::core::option::Option::Some(value) => value,
            ::core::option::Option::None => return,
        }
    };
    ($result:expr, $otherwise:expr) => {
        match $crate::require($result) {
            ::core::option::Option::Some(value) => value,
            ::core::option::Option::None => return $otherwise,
        }
    };
}
