//! The settings of one `[backends.NAME] kind = "mongodb"` table.

use std::fmt;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError};
use fogg_auth_common::settings::Settings;
use mongodb::options::{ConnectionString, HostInfo};

/// Which layout the documents follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// VerneMQ's `vmq_acl_auth` documents (the default).
    VerneMq,
    /// mosquitto-go-auth's `users` and `acls` collections.
    GoAuth,
}

impl Mode {
    fn parse(value: &str) -> Option<Mode> {
        match value {
            "vernemq" => Some(Mode::VerneMq),
            "goauth" => Some(Mode::GoAuth),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::VerneMq => "vernemq",
            Mode::GoAuth => "goauth",
        })
    }
}

/// Checked settings. The URL is kept parsed only: it may carry a password,
/// and this type's `Debug` never shows it.
#[derive(Clone)]
pub struct MongoSettings {
    /// `url`, parsed (not resolved: `mongodb+srv` names are looked up when
    /// the backend first connects).
    pub url: ConnectionString,
    pub database: String,
    pub mode: Mode,
    /// VerneMQ mode: the collection of `{mountpoint, client_id, username,
    /// passhash, publish_acl, subscribe_acl}` documents.
    pub collection: String,
    /// go-auth mode: `{username, password, superuser, acls: [{topic, acc}]}`.
    pub users_collection: String,
    /// go-auth mode: `{topic, acc}` rules for every user.
    pub acls_collection: String,
    /// go-auth mode: whether `superuser: true` grants everything
    /// (go-auth's `mongo_disable_superuser` inverted).
    pub superusers: bool,
    /// `None`: the URL's `connectTimeoutMS`, else [`MongoSettings::DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Duration>,
    /// `None`: the URL's `serverSelectionTimeoutMS`, else
    /// [`MongoSettings::DEFAULT_SERVER_SELECTION_TIMEOUT`].
    pub server_selection_timeout: Option<Duration>,
    /// `None`: the URL's `maxPoolSize`, else [`MongoSettings::DEFAULT_POOL_SIZE`].
    pub pool_size: Option<u32>,
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("url", &"<hidden>")
            .field("database", &self.database)
            .field("mode", &self.mode)
            .field("collection", &self.collection)
            .field("users_collection", &self.users_collection)
            .field("acls_collection", &self.acls_collection)
            .field("superusers", &self.superusers)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl MongoSettings {
    /// VerneMQ's collection name (its spelling).
    pub const DEFAULT_COLLECTION: &'static str = "vmq_acl_auth";
    /// go-auth's defaults (`mongo_users`, `mongo_acls`, `mongo_dbname`).
    pub const DEFAULT_USERS_COLLECTION: &'static str = "users";
    pub const DEFAULT_ACLS_COLLECTION: &'static str = "acls";
    pub const DEFAULT_GOAUTH_DATABASE: &'static str = "mosquitto";
    /// Short enough that an unreachable server is reported (and retried once)
    /// well within the binary's default 5 s timeout per attempt.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
    /// The driver's default.
    pub const DEFAULT_POOL_SIZE: u32 = 10;

    pub fn from_config(config: &BackendConfig) -> Result<MongoSettings, BackendError> {
        let mut s = Settings::new(config);
        let url = match s.string("url")? {
            Some(url) => url,
            None => return Err(s.invalid("url", "is required, e.g. \"mongodb://127.0.0.1:27017\"")),
        };
        // The driver's message may quote the string; it must not reach a log.
        let url = ConnectionString::parse(&url).map_err(|e| {
            s.invalid(
                "url",
                format!(
                    "is not a MongoDB connection string: {}",
                    crate::client::scrub_url(&e.to_string(), &url)
                ),
            )
        })?;
        if matches!(&url.host_info, HostInfo::HostIdentifiers(hosts) if hosts.is_empty()) {
            return Err(s.invalid("url", "names no host"));
        }
        let mode = match s.string("mode")? {
            None => Mode::VerneMq,
            Some(m) => Mode::parse(&m).ok_or_else(|| {
                s.invalid(
                    "mode",
                    format!("must be \"vernemq\" or \"goauth\", got {m:?}"),
                )
            })?,
        };
        let database = match s.string("database")? {
            Some(db) => Some(db),
            None => url.default_database.clone(),
        };
        let database = match (database, mode) {
            (Some(db), _) => db,
            (None, Mode::GoAuth) => Self::DEFAULT_GOAUTH_DATABASE.to_owned(),
            (None, Mode::VerneMq) => {
                return Err(s.invalid(
                    "database",
                    "is required (or a database in the url, mongodb://host/DATABASE)",
                ));
            }
        };
        check_name(&s, "database", &database, &['/', '\\', '.', ' ', '"', '$'])?;
        let name = |s: &mut Settings, key: &'static str, default: &str| {
            let value = s.string(key)?.unwrap_or_else(|| default.to_owned());
            check_name(s, key, &value, &['$'])?;
            Ok::<_, BackendError>(value)
        };
        let collection = name(&mut s, "collection", Self::DEFAULT_COLLECTION)?;
        let users_collection = name(&mut s, "users_collection", Self::DEFAULT_USERS_COLLECTION)?;
        let acls_collection = name(&mut s, "acls_collection", Self::DEFAULT_ACLS_COLLECTION)?;
        let superusers = s.bool("superusers")?.unwrap_or(true);
        let connect_timeout = s.duration("connect_timeout")?;
        let connect_timeout = positive(&s, "connect_timeout", connect_timeout)?;
        let server_selection_timeout = s.duration("server_selection_timeout")?;
        let server_selection_timeout =
            positive(&s, "server_selection_timeout", server_selection_timeout)?;
        let pool_size = match s.u32("pool_size")? {
            Some(0) => return Err(s.invalid("pool_size", "must be at least 1")),
            other => other,
        };
        s.finish()?;
        Ok(MongoSettings {
            url,
            database,
            mode,
            collection,
            users_collection,
            acls_collection,
            superusers,
            connect_timeout,
            server_selection_timeout,
            pool_size,
        })
    }
}

fn positive(
    s: &Settings,
    key: &'static str,
    value: Option<Duration>,
) -> Result<Option<Duration>, BackendError> {
    match value {
        Some(d) if d.is_zero() => Err(s.invalid(key, "must be more than 0")),
        other => Ok(other),
    }
}

/// MongoDB refuses empty names, and these characters in them.
fn check_name(
    s: &Settings,
    key: &str,
    value: &str,
    forbidden: &[char],
) -> Result<(), BackendError> {
    if value.is_empty() {
        return Err(s.invalid(key, "must not be empty"));
    }
    if let Some(c) = value.chars().find(|c| forbidden.contains(c) || *c == '\0') {
        return Err(s.invalid(key, format!("must not contain {c:?}")));
    }
    Ok(())
}
