//! fogg-auth-redis: authentication and ACLs from Redis in the layouts of
//! VerneMQ and mosquitto-go-auth, and Redis as the shared cache of
//! authentication answers (`[auth] cache`).
//!
//! ```toml
//! [backends.redis]
//! kind = "redis"
//! url = "redis://127.0.0.1:6379/0"   # rediss:// for TLS
//! # mode = "vernemq"                 # or "goauth"
//!
//! [auth]
//! allow_anonymous = false
//! chain = ["redis"]
//! ```
//!
//! * **VerneMQ** (`mode = "vernemq"`, the default): `GET
//!   ["<mountpoint>","<client_id>","<username>"]`, then the same key with
//!   client id `*`; the value is the JSON object `{"passhash": "$2a$...",
//!   "publish_acl": [...], "subscribe_acl": [...]}`. The first key found
//!   decides alone ([`fogg_auth_common::vernemq::decide`]): right password →
//!   allowed with the parsed ACL, wrong → denied; a value that is not such
//!   an object, an unusable hash or a malformed ACL → logged and denied.
//! * **mosquitto-go-auth** (`mode = "goauth"`): `GET <user>` is the hash
//!   (PBKDF2, bcrypt, argon2id), `GET <user>:su` = `"true"` makes a
//!   superuser, and the sets `<user>:racls|wacls|rwacls|sacls` and
//!   `common:racls|wacls|rwacls|sacls` are its ACLs (1 read, 2 write,
//!   3 readwrite, 4 subscribe), handed over as rules at CONNECT
//!   ([`fogg_auth_common::gocauth`]).
//! * **Cache**: `GET` / `SET ... PX` under the key prefix.
//!
//! An unknown user, or a CONNECT without username or password, is "next".
//! A Redis that cannot be reached or does not answer is an error
//! ([`ErrorKind::Unavailable`] / [`ErrorKind::Timeout`]), never a denial:
//! clients get "server unavailable". Connections are opened on first use and
//! replaced when they fail, so the broker starts while Redis is down and
//! recovers by itself when it returns.

mod goauth;
mod pool;
mod settings;
mod vernemq;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fogg_api::{
    AuthCache, AuthDecision, Authenticator, Backend, BackendConfig, BackendError, BackendFactory,
    Capabilities, Concern, ConnectInfo, ErrorKind,
};
use fogg_auth_common::passwords::VerifyOptions;

pub use settings::{Mode, RedisSettings, TlsFiles};

use pool::Pool;

/// The `redis` backend kind: authentication (with the client's ACL) and the
/// authentication cache.
pub struct RedisFactory;

impl RedisFactory {
    pub const KIND: &'static str = "redis";
    pub const CAPABILITIES: Capabilities = Capabilities(&[Concern::Authentication, Concern::Cache]);
}

impl BackendFactory for RedisFactory {
    fn kind(&self) -> &'static str {
        RedisFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        RedisFactory::CAPABILITIES
    }

    /// Checks the settings and reads the TLS files; does not connect (the
    /// first request does), so `fogg --check` and a start while Redis is
    /// down both work.
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = RedisSettings::from_config(config)?;
        let redis = Arc::new(Redis::open(&config.name, &settings)?);
        let mut backend = Backend::new(config.name.clone(), RedisFactory::KIND);
        backend.authenticator = Some(redis.clone());
        backend.cache = Some(redis);
        Ok(backend)
    }
}

/// One `redis` backend instance.
pub struct Redis {
    name: String,
    mode: Mode,
    prefix: String,
    verify: VerifyOptions,
    pool: Pool,
}

impl Redis {
    /// A backend over the server `settings` names (no connection yet).
    pub fn open(name: &str, settings: &RedisSettings) -> Result<Redis, BackendError> {
        let invalid = |key: &str, reason: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                name,
                "build",
                format!("`{key}` {reason}"),
            )
        };
        let tls_url =
            settings.url.starts_with("rediss://") || settings.url.starts_with("valkeys://");
        if tls_url && rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another part of the process may have installed one first: fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = if settings.tls.is_empty() {
            redis::Client::open(settings.url.as_str())
        } else {
            let read = |key: &str, path: &Option<std::path::PathBuf>| {
                path.as_ref()
                    .map(|p| {
                        std::fs::read(p)
                            .map_err(|e| invalid(key, format!("cannot read {}: {e}", p.display())))
                    })
                    .transpose()
            };
            let root_cert = read("tls_ca_file", &settings.tls.ca_file)?;
            let client_tls = match (
                read("tls_cert_file", &settings.tls.cert_file)?,
                read("tls_key_file", &settings.tls.key_file)?,
            ) {
                (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                _ => None,
            };
            redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
        }
        // The driver's message may quote the URL: say only what is wrong.
        .map_err(|e| {
            invalid(
                "url",
                format!(
                    "is not a usable Redis URL ({}; expected redis://[user:password@]host[:port][/db], \
                     rediss://... for TLS, or redis+unix:///path)",
                    e.category()
                ),
            )
        })?;
        let pool = Pool::new(name, client, settings);
        tracing::debug!(
            backend = name,
            redis = pool.address(),
            mode = settings.mode.name(),
            "Redis backend ready (connects on first use)"
        );
        Ok(Redis {
            name: name.to_owned(),
            mode: settings.mode,
            prefix: settings.key_prefix.clone(),
            verify: VerifyOptions {
                goauth_salt_encoding: settings.salt_encoding,
            },
            pool,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl Authenticator for Redis {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        match self.mode {
            Mode::Vernemq => vernemq::authenticate(self, info).await,
            Mode::Goauth => goauth::authenticate(self, info).await,
        }
    }
}

impl AuthCache for Redis {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
        let value: Option<Vec<u8>> = self
            .pool
            .query("cache get", redis::cmd("GET").arg(self.key(key)))
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), BackendError> {
        // Milliseconds, at least one: `PX 0` is an error, and no TTL at all
        // would keep the answer forever.
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.pool
            .query::<()>(
                "cache set",
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(millis),
            )
            .await
    }
}
