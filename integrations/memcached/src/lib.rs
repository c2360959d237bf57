//! fogg-auth-memcached: memcached as the shared cache of authentication
//! answers (`[auth] cache`), in front of a slower database.
//!
//! ```toml
//! [backends.mc]
//! kind = "memcached"
//! url = ["memcache://10.0.0.5:11211", "memcache://10.0.0.6:11211"]
//!
//! [auth]
//! chain = ["db"]
//! cache = "mc"
//! cache_ttl = "60s"
//! ```
//!
//! It serves only [`Concern::Cache`]: the binary's
//! `fogg_api::layers::CachedAuthenticator` decides what is cached and under
//! which key (a digest of backend, mountpoint, client id, username and
//! password); this crate only gets and sets bytes with an expiry.
//!
//! The `memcache` client is blocking: every call runs on tokio's blocking
//! pool, never on a reactor thread. Each server has a small pool of
//! connections opened on first use (so the broker starts, and `fogg --check`
//! passes, while memcached is down), checked before each use and replaced
//! when broken. Keys go to servers by a stable hash (FNV-1a), so every broker
//! node finds an answer on the same server.
//!
//! A memcached that cannot be reached is an [`ErrorKind::Unavailable`]
//! error (a timeout [`ErrorKind::Timeout`]); the cache layer logs it and asks
//! the backend instead.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fogg_api::{
    AuthCache, Backend, BackendConfig, BackendError, BackendFactory, Capabilities, Concern,
    ErrorKind,
};
use fogg_auth_common::settings::Settings;
use memcache::{MemcacheError, Url};

/// The `memcached` backend kind: an authentication cache only.
pub struct MemcachedFactory;

impl MemcachedFactory {
    pub const KIND: &'static str = "memcached";
    pub const CAPABILITIES: Capabilities = Capabilities(&[Concern::Cache]);
}

impl BackendFactory for MemcachedFactory {
    fn kind(&self) -> &'static str {
        MemcachedFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        MemcachedFactory::CAPABILITIES
    }

    /// Checks the settings; connects on first use.
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = MemcachedSettings::from_config(config)?;
        let cache = Memcached::open(&config.name, &settings)?;
        let mut backend = Backend::new(config.name.clone(), MemcachedFactory::KIND);
        backend.cache = Some(Arc::new(cache));
        Ok(backend)
    }
}

/// The settings of one `[backends.NAME] kind = "memcached"` table.
#[derive(Clone, PartialEq, Eq)]
pub struct MemcachedSettings {
    /// `memcache://[user:password@]host:port` per server (never printed).
    pub servers: Vec<String>,
    /// Put before every key.
    pub key_prefix: String,
    /// Connections per server at most.
    pub pool_size: u32,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Socket read and write timeout.
    pub io_timeout: Duration,
}

impl std::fmt::Debug for MemcachedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedSettings")
            .field("servers", &self.servers.len())
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

/// memcached's longest key.
pub const MAX_KEY_LEN: usize = 250;
/// Longest `key_prefix`: leaves room for the cache layer's keys (77 bytes).
pub const MAX_PREFIX_LEN: usize = 150;
/// memcached reads an expiry above 30 days as a Unix time.
pub const MAX_TTL_SECS: u32 = 30 * 24 * 3600;

impl MemcachedSettings {
    pub const DEFAULT_POOL_SIZE: u32 = 4;
    pub const MAX_POOL_SIZE: u32 = 64;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(1);

    pub fn from_config(config: &BackendConfig) -> Result<MemcachedSettings, BackendError> {
        let invalid = |key: &str, reason: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                config.name.clone(),
                "build",
                format!("`{key}` {reason}"),
            )
        };
        // `url` may be a list: read it as one comma-separated string.
        let mut config = config.clone();
        if let Some(toml::Value::Array(items)) = config.settings.get("url") {
            let mut urls = Vec::new();
            for item in items {
                match item {
                    toml::Value::String(s) => urls.push(s.clone()),
                    _ => {
                        return Err(invalid(
                            "url",
                            "must be a string or a list of strings".to_owned(),
                        ));
                    }
                }
            }
            config
                .settings
                .insert("url".to_owned(), toml::Value::String(urls.join(",")));
        }
        let mut s = Settings::new(&config);
        let urls = s
            .string("url")?
            .ok_or_else(|| s.invalid("url", "is required (e.g. \"memcache://127.0.0.1:11211\")"))?;
        let key_prefix = s.string("key_prefix")?.unwrap_or_default();
        let pool_size = s.u32("pool_size")?.unwrap_or(Self::DEFAULT_POOL_SIZE);
        let connect_timeout = s
            .duration("connect_timeout")?
            .unwrap_or(Self::DEFAULT_CONNECT_TIMEOUT);
        let io_timeout = s
            .duration("io_timeout")?
            .unwrap_or(Self::DEFAULT_IO_TIMEOUT);
        s.finish()?;

        let servers: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            return Err(invalid("url", "names no server".to_owned()));
        }
        for (i, server) in servers.iter().enumerate() {
            check_url(server)
                .map_err(|reason| invalid("url", format!("(server {}) {reason}", i + 1)))?;
        }
        if key_prefix.len() > MAX_PREFIX_LEN || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "key_prefix",
                format!(
                    "must be at most {MAX_PREFIX_LEN} printable ASCII characters without spaces"
                ),
            ));
        }
        if pool_size == 0 || pool_size > Self::MAX_POOL_SIZE {
            return Err(invalid(
                "pool_size",
                format!(
                    "must be between 1 and {}, got {pool_size}",
                    Self::MAX_POOL_SIZE
                ),
            ));
        }
        for (key, value) in [
            ("connect_timeout", connect_timeout),
            ("io_timeout", io_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero".to_owned()));
            }
        }
        Ok(MemcachedSettings {
            servers,
            key_prefix,
            pool_size,
            connect_timeout,
            io_timeout,
        })
    }
}

/// Whether a server URL is one this backend can use; the reason never
/// quotes the URL (it may hold a password).
fn check_url(server: &str) -> Result<Url, String> {
    let url =
        Url::parse(server).map_err(|e| format!("is not a URL like memcache://host:port ({e})"))?;
    match url.scheme() {
        "memcache" | "memcache+tcp" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err("has no host (memcache://host:port)".to_owned());
            }
        }
        "memcache+unix" => {}
        other => {
            return Err(format!(
                "has scheme {other:?}: use memcache://host:port (TCP) or memcache+unix:///path"
            ));
        }
    }
    Ok(url)
}

/// One `memcached` backend instance.
pub struct Memcached {
    name: String,
    prefix: String,
    client: Arc<memcache::Client>,
    secrets: Vec<String>,
}

impl Memcached {
    /// A client over the servers `settings` names (no connection yet).
    pub fn open(name: &str, settings: &MemcachedSettings) -> Result<Memcached, BackendError> {
        let invalid = |reason: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                name,
                "build",
                format!("`url` {reason}"),
            )
        };
        let mut pools = Vec::new();
        let mut secrets = Vec::new();
        for server in &settings.servers {
            let mut url = check_url(server).map_err(invalid)?;
            if let Some(password) = url.password()
                && !password.is_empty()
            {
                secrets.push(password.to_owned());
            }
            // memcache applies `timeout` to every socket it opens.
            if !url.query_pairs().any(|(k, _)| k == "timeout") {
                url.query_pairs_mut()
                    .append_pair("timeout", &settings.io_timeout.as_secs_f64().to_string());
            }
            let pool = memcache::Pool::builder()
                .max_size(settings.pool_size)
                .min_idle(Some(0))
                .connection_timeout(settings.connect_timeout)
                // Connections are checked (`version`) before each use, so
                // one broken by a memcached restart is replaced.
                .test_on_check_out(true)
                .build_unchecked(memcache::ConnectionManager::new(url));
            pools.push(pool);
        }
        let mut client = memcache::Client::with_pools(pools).map_err(|e| {
            invalid(format!(
                "cannot be used: {}",
                redact(&e.to_string(), &secrets)
            ))
        })?;
        client.hash_function = fnv1a;
        Ok(Memcached {
            name: name.to_owned(),
            prefix: settings.key_prefix.clone(),
            client: Arc::new(client),
            secrets,
        })
    }

    fn key(&self, operation: &'static str, key: &str) -> Result<String, BackendError> {
        let full = format!("{}{key}", self.prefix);
        if full.len() > MAX_KEY_LEN || !full.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BackendError::new(
                ErrorKind::InvalidData,
                self.name.clone(),
                operation,
                format!(
                    "key is not a memcached key (at most {MAX_KEY_LEN} printable ASCII characters without spaces)"
                ),
            ));
        }
        Ok(full)
    }

    /// Run a blocking client call on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&memcache::Client) -> Result<T, MemcacheError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let client = Arc::clone(&self.client);
        match tokio::task::spawn_blocking(move || call(&client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(operation, &e)),
            Err(e) => Err(BackendError::new(
                ErrorKind::Internal,
                self.name.clone(),
                operation,
                format!("memcached call did not complete: {e}"),
            )),
        }
    }

    fn error(&self, operation: &'static str, e: &MemcacheError) -> BackendError {
        let kind = match e {
            MemcacheError::IOError(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                ErrorKind::Timeout
            }
            MemcacheError::BadURL(_) => ErrorKind::InvalidConfig,
            MemcacheError::ClientError(_)
            | MemcacheError::CommandError(_)
            | MemcacheError::ParseError(_) => ErrorKind::InvalidData,
            MemcacheError::IOError(_)
            | MemcacheError::PoolError(_)
            | MemcacheError::ServerError(_) => ErrorKind::Unavailable,
        };
        BackendError::new(
            kind,
            self.name.clone(),
            operation,
            format!("memcached: {}", redact(&e.to_string(), &self.secrets)),
        )
    }
}

fn redact(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_owned(), |m, secret| {
        m.replace(secret.as_str(), "***")
    })
}

/// FNV-1a: the same server for a key on every node and every build.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// memcached's expiry for `ttl`: whole seconds, at least one (0 would mean
/// "never"), at most 30 days (beyond, memcached reads a Unix time).
pub fn expiry_secs(ttl: Duration) -> u32 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(secs)
        .unwrap_or(MAX_TTL_SECS)
        .clamp(1, MAX_TTL_SECS)
}

impl AuthCache for Memcached {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
        let key = self.key("cache get", key)?;
        let value = self
            .blocking("cache get", move |client| client.get::<Vec<u8>>(&key))
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), BackendError> {
        let key = self.key("cache set", key)?;
        let expiry = expiry_secs(ttl);
        self.blocking("cache set", move |client| {
            client.set(&key, value.as_ref(), expiry)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> BackendConfig {
        BackendConfig {
            name: "mc".to_owned(),
            kind: "memcached".to_owned(),
            settings: text.parse().unwrap(),
        }
    }

    #[test]
    fn settings_defaults_lists_and_errors() {
        let s = MemcachedSettings::from_config(&config("url = \"memcache://127.0.0.1:11211\""))
            .unwrap();
        assert_eq!(s.servers, ["memcache://127.0.0.1:11211"]);
        assert_eq!(s.pool_size, 4);
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
        assert_eq!(s.io_timeout, Duration::from_secs(1));
        let s = MemcachedSettings::from_config(&config(
            "url = [\"memcache://a:1\", \"memcache://b:2\"]\nkey_prefix = \"t:\"\npool_size = 2\nio_timeout = \"250ms\"",
        ))
        .unwrap();
        assert_eq!(s.servers, ["memcache://a:1", "memcache://b:2"]);
        assert_eq!(s.key_prefix, "t:");
        assert_eq!(s.io_timeout, Duration::from_millis(250));

        for (text, expected) in [
            ("", "`url` is required"),
            ("url = 3", "`url` must be a string"),
            ("url = [3]", "`url` must be a string or a list of strings"),
            ("url = \"\"", "`url` names no server"),
            (
                "url = \"redis://h:1\"",
                "`url` (server 1) has scheme \"redis\"",
            ),
            (
                "url = \"memcache+tls://h:1\"",
                "has scheme \"memcache+tls\"",
            ),
            (
                "url = [\"memcache://a:1\", \"nope\"]",
                "`url` (server 2) is not a URL",
            ),
            (
                "url = \"memcache://a:1\"\npool_size = 0",
                "`pool_size` must be between 1 and 64",
            ),
            (
                "url = \"memcache://a:1\"\nkey_prefix = \"a b\"",
                "`key_prefix` must be",
            ),
            (
                "url = \"memcache://a:1\"\nio_timeout = \"0s\"",
                "`io_timeout` must be longer",
            ),
            (
                "url = \"memcache://a:1\"\nservers = 1",
                "unknown key `servers`",
            ),
        ] {
            let e = MemcachedFactory.build(&config(text)).err().unwrap();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{text}");
            assert!(e.message.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_never_quoted() {
        let e = MemcachedFactory
            .build(&config("url = \"memcache+udp://u:hunter2@h:1\""))
            .err()
            .unwrap();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = MemcachedFactory
            .build(&config("url = \"memcache://u:hunter2@[bad\""))
            .err()
            .unwrap();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn building_needs_no_server_and_serves_only_the_cache() {
        // Nothing listens on port 1: building must not connect.
        let backend = MemcachedFactory
            .build(&config("url = \"memcache://127.0.0.1:1\""))
            .unwrap();
        assert!(backend.serves(Concern::Cache));
        assert!(!backend.serves(Concern::Authentication));
        assert!(MemcachedFactory.capabilities().serves(Concern::Cache));
        assert!(
            !MemcachedFactory
                .capabilities()
                .serves(Concern::Authentication)
        );
    }

    #[test]
    fn expiry_is_whole_seconds_within_memcached_limits() {
        assert_eq!(expiry_secs(Duration::ZERO), 1);
        assert_eq!(expiry_secs(Duration::from_millis(1)), 1);
        assert_eq!(expiry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(expiry_secs(Duration::from_secs(60)), 60);
        assert_eq!(
            expiry_secs(Duration::from_secs(365 * 24 * 3600)),
            MAX_TTL_SECS
        );
    }

    #[test]
    fn server_choice_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
