//! The `[backends.NAME] kind = "redis"` table.

use std::path::PathBuf;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError, ErrorKind};
use fogg_auth_common::passwords::SaltEncoding;
use fogg_auth_common::settings::Settings;

/// Which key layout the users are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// VerneMQ's `vmq_diversity` Redis layout (the default).
    #[default]
    Vernemq,
    /// mosquitto-go-auth's Redis layout.
    Goauth,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Vernemq => "vernemq",
            Mode::Goauth => "goauth",
        }
    }
}

/// PEM files for `rediss://` connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        *self == TlsFiles::default()
    }
}

/// Everything one Redis backend instance is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` for TLS,
    /// `redis+unix:///path` / `unix:///path` for a socket. Never printed.
    pub url: String,
    pub mode: Mode,
    /// Put before every key this backend reads or writes.
    pub key_prefix: String,
    /// Multiplexed connections kept open (requests are spread over them).
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// Longest wait for one reply on an open connection.
    pub response_timeout: Duration,
    pub tls: TlsFiles,
    /// How the salt of go-auth `PBKDF2$...` hashes is read (go-auth's
    /// `hasher_salt_encoding`).
    pub salt_encoding: SaltEncoding,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisSettings")
            .field("mode", &self.mode)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("tls", &self.tls)
            .field("salt_encoding", &self.salt_encoding)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    pub const DEFAULT_POOL_SIZE: u32 = 2;
    pub const MAX_POOL_SIZE: u32 = 64;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn from_config(config: &BackendConfig) -> Result<RedisSettings, BackendError> {
        let mut s = Settings::new(config);
        let url = s
            .string("url")?
            .ok_or_else(|| s.invalid("url", "is required (e.g. \"redis://127.0.0.1:6379\")"))?;
        let mode = match s.string("mode")?.as_deref() {
            None | Some("vernemq") => Mode::Vernemq,
            Some("goauth") => Mode::Goauth,
            Some(other) => {
                return Err(s.invalid(
                    "mode",
                    format!("must be \"vernemq\" or \"goauth\", not {other:?}"),
                ));
            }
        };
        let key_prefix = s.string("key_prefix")?.unwrap_or_default();
        let pool_size = s.u32("pool_size")?.unwrap_or(Self::DEFAULT_POOL_SIZE);
        if pool_size == 0 || pool_size > Self::MAX_POOL_SIZE {
            return Err(s.invalid(
                "pool_size",
                format!(
                    "must be between 1 and {}, got {pool_size}",
                    Self::MAX_POOL_SIZE
                ),
            ));
        }
        let connect_timeout = positive(&mut s, "connect_timeout", Self::DEFAULT_CONNECT_TIMEOUT)?;
        let response_timeout =
            positive(&mut s, "response_timeout", Self::DEFAULT_RESPONSE_TIMEOUT)?;
        let tls = TlsFiles {
            ca_file: s.path("tls_ca_file")?,
            cert_file: s.path("tls_cert_file")?,
            key_file: s.path("tls_key_file")?,
        };
        let salt_encoding = match s.string("salt_encoding")?.as_deref() {
            None | Some("base64") => SaltEncoding::Base64,
            Some("utf-8" | "utf8") => SaltEncoding::Utf8,
            Some(other) => {
                return Err(s.invalid(
                    "salt_encoding",
                    format!("must be \"base64\" or \"utf-8\", not {other:?}"),
                ));
            }
        };
        s.finish()?;

        let invalid = |key: &str, reason: &str| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                config.name.clone(),
                "build",
                format!("`{key}` {reason}"),
            )
        };
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some(
                "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys" | "valkey+unix",
            ) => {}
            _ => {
                return Err(invalid(
                    "url",
                    "must start with redis://, rediss:// (TLS), redis+unix:// or unix://",
                ));
            }
        }
        let tls_url = matches!(scheme, Some("rediss" | "valkeys"));
        if !tls.is_empty() && !tls_url {
            return Err(invalid(
                "tls_ca_file",
                "(and tls_cert_file, tls_key_file) need a rediss:// url",
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "tls_cert_file",
                "and `tls_key_file` go together: give both or neither",
            ));
        }
        Ok(RedisSettings {
            url,
            mode,
            key_prefix,
            pool_size,
            connect_timeout,
            response_timeout,
            tls,
            salt_encoding,
        })
    }
}

fn positive(
    s: &mut Settings,
    key: &'static str,
    default: Duration,
) -> Result<Duration, BackendError> {
    match s.duration(key)? {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(s.invalid(key, "must be longer than zero")),
        Some(d) => Ok(d),
    }
}
