//! A few multiplexed Redis connections, opened on first use and replaced
//! when they fail.
//!
//! Each slot holds one `MultiplexedConnection` (many requests in flight on
//! one socket). A request takes the next slot round-robin; an empty slot is
//! connected first (callers of the same slot wait for that one attempt,
//! bounded by `connect_timeout`). A connection that fails at the connection
//! level (I/O error, dropped, timed out) is taken out of its slot, so the
//! next request reconnects: nothing retries in the background, and a Redis
//! that comes back is used again by the next request.
//!
//! Errors are [`BackendError`]s whose messages never contain the URL's
//! password: an unreachable server is [`ErrorKind::Unavailable`], a reply
//! that does not come in time [`ErrorKind::Timeout`] (both retryable), a
//! value of the wrong type [`ErrorKind::InvalidData`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fogg_api::{BackendError, ErrorKind};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError};
use tokio::sync::Mutex;

use crate::settings::RedisSettings;

pub(crate) struct Pool {
    backend: String,
    client: Client,
    config: AsyncConnectionConfig,
    slots: Vec<Mutex<Option<(u64, MultiplexedConnection)>>>,
    next: AtomicUsize,
    generation: AtomicU64,
    /// Strings that must never appear in an error or a log line.
    secrets: Vec<String>,
    /// `host:port` (or the socket path), for log lines.
    address: String,
}

/// One connection taken from a slot for one request.
struct Lease {
    slot: usize,
    generation: u64,
    conn: MultiplexedConnection,
}

impl Pool {
    pub(crate) fn new(backend: &str, client: Client, settings: &RedisSettings) -> Pool {
        let info = client.get_connection_info();
        let mut secrets = Vec::new();
        if let Some(password) = info.redis_settings().password()
            && !password.is_empty()
        {
            secrets.push(password.to_owned());
            // The URL's own (percent-encoded) spelling too.
            if let Some(raw) = raw_password(&settings.url)
                && raw != password
            {
                secrets.push(raw.to_owned());
            }
        }
        let address = info.addr().to_string();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        let slots = (0..settings.pool_size).map(|_| Mutex::new(None)).collect();
        Pool {
            backend: backend.to_owned(),
            client,
            config,
            slots,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            secrets,
            address,
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    async fn lease(&self, operation: &'static str) -> Result<Lease, BackendError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut guard = self.slots[slot].lock().await;
        if let Some((generation, conn)) = guard.as_ref() {
            return Ok(Lease {
                slot,
                generation: *generation,
                conn: conn.clone(),
            });
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.error(operation, &e))?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        *guard = Some((generation, conn.clone()));
        tracing::debug!(backend = %self.backend, redis = %self.address, slot, "connected to Redis");
        Ok(Lease {
            slot,
            generation,
            conn,
        })
    }

    /// Empty the lease's slot if it still holds that connection.
    async fn discard(&self, lease: &Lease) {
        let mut guard = self.slots[lease.slot].lock().await;
        if guard
            .as_ref()
            .is_some_and(|(generation, _)| *generation == lease.generation)
        {
            *guard = None;
        }
    }

    /// Run one command (or pipeline) and convert the reply.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        command: impl Command,
    ) -> Result<T, BackendError> {
        let mut lease = self.lease(operation).await?;
        match command.run(&mut lease.conn).await {
            Ok(value) => Ok(value),
            Err(e) => {
                if broken(&e) {
                    self.discard(&lease).await;
                }
                Err(self.error(operation, &e))
            }
        }
    }

    /// A driver error as a [`BackendError`], with secrets removed.
    fn error(&self, operation: &'static str, e: &RedisError) -> BackendError {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.code() == Some("WRONGTYPE")
            // In a pipeline the code is only in the text.
            || e.to_string().contains("WRONGTYPE")
            || matches!(
                e.kind(),
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
            )
        {
            ErrorKind::InvalidData
        } else if e.kind() == redis::ErrorKind::InvalidClientConfig {
            ErrorKind::InvalidConfig
        } else {
            ErrorKind::Unavailable
        };
        let mut message = format!("Redis at {}: {e}", self.address);
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        BackendError::new(kind, self.backend.clone(), operation, message)
    }
}

/// Whether the connection that gave this error must be replaced.
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// The password as written in the URL (`scheme://user:PASSWORD@host`).
fn raw_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, password)| password)
}

/// A single command or a pipeline.
pub(crate) trait Command {
    fn run<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = Result<T, RedisError>> + Send;
}

impl Command for &redis::Cmd {
    async fn run<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Command for &mut redis::Cmd {
    async fn run<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Command for &mut redis::Pipeline {
    async fn run<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Command for &redis::Pipeline {
    async fn run<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_password_is_found_in_the_url() {
        assert_eq!(raw_password("redis://u:p%40ss@h:1/0"), Some("p%40ss"));
        assert_eq!(raw_password("redis://:secret@h"), Some("secret"));
        assert_eq!(raw_password("redis://h:6379"), None);
        assert_eq!(raw_password("redis://user@h"), None);
    }
}
