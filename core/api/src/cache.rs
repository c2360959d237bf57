//! A shared cache for authentication answers (`[auth] cache`): memcached or
//! Redis in front of a slower database, shared by every broker node.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::BackendError;

/// A key-value cache with expiry. Keys are ASCII without spaces (memcached's
/// rule), at most 250 bytes.
pub trait AuthCache: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, BackendError>> + Send;

    fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}
