//! The settings of one `[backends.NAME] kind = "postgres"` table.

use std::fmt;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError};
use fogg_auth_common::settings::Settings;
use fogg_auth_common::sql::{SqlDialect, SqlMode, SqlSettings};

/// How a VerneMQ row's password is checked (`password_hash_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashMethod {
    /// pgcrypto in SQL: `password = crypt($pw, password)` (VerneMQ's default).
    #[default]
    Crypt,
    /// The hash is fetched and checked by Fogg (`$2a$` / `$2b$` / `$2y$`;
    /// any format fogg-auth-common knows is accepted).
    Bcrypt,
    /// CockroachDB style, in SQL: `password = hex(sha256($pw))`, unsalted.
    Sha256,
}

impl HashMethod {
    pub fn name(self) -> &'static str {
        match self {
            HashMethod::Crypt => "crypt",
            HashMethod::Bcrypt => "bcrypt",
            HashMethod::Sha256 => "sha256",
        }
    }
}

/// VerneMQ's layout or mosquitto-go-auth's queries (`$1` username, `$2`
/// access code; shared with the mysql backend: `fogg_auth_common::sql`).
pub type Mode = SqlMode<HashMethod>;

/// Every setting, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/db?sslmode=...`; a secret.
    pub url: String,
    pub mode: Mode,
    pub pool_size: usize,
    pub connect_timeout: Duration,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &"<secret>")
            .field("mode", &self.mode)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// What differs from the other SQL backends.
const DIALECT: SqlDialect<HashMethod> = SqlDialect {
    url_example: "postgres://user:password@host/db",
    hash_methods: &[
        ("crypt", HashMethod::Crypt),
        ("bcrypt", HashMethod::Bcrypt),
        ("sha256", HashMethod::Sha256),
    ],
    table_qualifier: "schema",
    max_identifier: 63,
};

impl PostgresSettings {
    pub fn from_config(config: &BackendConfig) -> Result<PostgresSettings, BackendError> {
        let mut s = Settings::new(config);
        let SqlSettings {
            url,
            mode,
            pool_size,
            connect_timeout,
        } = DIALECT.take(&mut s)?;
        s.finish()?;
        Ok(PostgresSettings {
            url,
            mode,
            pool_size,
            connect_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_auth_common::passwords::SaltEncoding;

    fn parse(text: &str) -> Result<PostgresSettings, String> {
        PostgresSettings::from_config(&BackendConfig {
            name: "pg".to_owned(),
            kind: "postgres".to_owned(),
            settings: text.parse().unwrap(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let s = parse("url = \"postgres://u:hunter2@h/db\"").unwrap();
        assert_eq!(
            s.mode,
            Mode::VerneMq {
                table: "vmq_auth_acl".to_owned(),
                hash: HashMethod::Crypt
            }
        );
        assert_eq!(s.pool_size, 10);
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn goauth_mode() {
        let s = parse(
            "url = \"postgres://h/db\"\nmode = \"goauth\"\nuser_query = \"SELECT 1\"\nacl_query = \"SELECT 2\"\nsalt_encoding = \"utf-8\"\npool_size = 3\nconnect_timeout = \"2s\"",
        )
        .unwrap();
        assert_eq!(
            s.mode,
            Mode::GoAuth {
                user_query: "SELECT 1".to_owned(),
                superuser_query: None,
                acl_query: Some("SELECT 2".to_owned()),
                salt_encoding: SaltEncoding::Utf8,
            }
        );
        assert_eq!(s.pool_size, 3);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            ("mode = \"vernemq\"", "`url` is required"),
            ("url = \"\"", "`url` is required"),
            ("url = \"x\"\nmode = \"lua\"", "`mode` `lua` is not one of"),
            (
                "url = \"x\"\npassword_hash_method = \"md5\"",
                "`password_hash_method` `md5`",
            ),
            ("url = \"x\"\ntable = \"t; DROP TABLE x\"", "`table`"),
            ("url = \"x\"\ntable = \"a.b.c\"", "`table`"),
            (
                "url = \"x\"\nuser_query = \"q\"",
                "`user_query` is a setting of mode",
            ),
            ("url = \"x\"\nmode = \"goauth\"", "`user_query` is required"),
            (
                "url = \"x\"\nmode = \"goauth\"\nuser_query = \"q\"\ntable = \"t\"",
                "`table` is a setting of mode = \"vernemq\"",
            ),
            (
                "url = \"x\"\npool_size = 0",
                "`pool_size` must be at least 1",
            ),
            ("url = \"x\"\nconnect_timeout = \"0s\"", "`connect_timeout`"),
            ("url = \"x\"\nhost = \"h\"", "unknown key `host`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert!(parse("url = \"x\"\ntable = \"public.vmq_auth_acl\"").is_ok());
        assert!(parse("url = \"x\"\ntable = \"\\\"quoted\\\"\"").is_err());
    }
}
