//! fogg-auth-common: what every database auth backend shares.
//!
//! * [`passwords`]: check (and, for tests, create) the password hashes found
//!   in VerneMQ, mosquitto and mosquitto-go-auth data, off the reactor.
//! * [`vernemq`]: VerneMQ's ACL JSON into [`fogg_api::AclRules`], the
//!   exact-then-`*` row lookup, the Redis key, and what a found row means.
//! * [`gocauth`]: mosquitto-go-auth ACL rows into [`fogg_api::AclRules`].
//! * [`settings`]: reading a `[backends.NAME]` table with errors that name
//!   the key.
//! * [`sql`]: the settings the SQL backends share (`mode`, `table`,
//!   `password_hash_method`, go-auth queries, pool).
//! * [`topic`]: MQTT filter syntax checks for patterns read from data.
//!
//! Backends depend on this crate and `fogg-api`; this crate knows no
//! database driver.

pub mod gocauth;
pub mod passwords;
pub mod settings;
pub mod sql;
pub mod topic;
pub mod vernemq;

pub use passwords::{HashError, Scheme};
pub use vernemq::{AclError, AclValue, RowKey, StoredPassword, VmqRow};
