//! The settings of one `[backends.NAME] kind = "postgres"` table.

use std::fmt;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError};
use fogg_auth_common::passwords::SaltEncoding;
use fogg_auth_common::settings::Settings;

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

/// VerneMQ's layout or mosquitto-go-auth's queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    VerneMq {
        /// `vmq_auth_acl`, or another (optionally schema-qualified) name.
        table: String,
        hash: HashMethod,
    },
    GoAuth {
        /// `$1` username → one row whose first column is the hash.
        user_query: String,
        /// `$1` username → a count (> 0: superuser).
        superuser_query: Option<String>,
        /// `$1` username, `$2` access code → topic filters.
        acl_query: Option<String>,
        salt_encoding: SaltEncoding,
    },
}

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

pub const DEFAULT_TABLE: &str = "vmq_auth_acl";
pub const DEFAULT_POOL_SIZE: usize = 10;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A table name used as is in SQL: identifiers only (`name` or
/// `schema.name`), so a setting can never inject SQL.
fn valid_table(name: &str) -> bool {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && s.len() <= 63
    };
    let parts: Vec<&str> = name.split('.').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| ident(p))
}

impl PostgresSettings {
    pub fn from_config(config: &BackendConfig) -> Result<PostgresSettings, BackendError> {
        let mut s = Settings::new(config);
        let url = s
            .string("url")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| s.invalid("url", "is required (postgres://user:password@host/db)"))?;
        let mode_name = s.string("mode")?.unwrap_or_else(|| "vernemq".to_owned());
        let hash = s.string("password_hash_method")?;
        let table = s.string("table")?;
        let user_query = s.string("user_query")?;
        let superuser_query = s.string("superuser_query")?;
        let acl_query = s.string("acl_query")?;
        let salt_encoding = s.string("salt_encoding")?;
        let pool_size = s.u32("pool_size")?;
        let connect_timeout = s.duration("connect_timeout")?;
        let nonempty = |key: &str, value: Option<String>| match value {
            Some(v) if v.trim().is_empty() => Err(s.invalid(key, "must not be empty")),
            other => Ok(other),
        };
        let user_query = nonempty("user_query", user_query)?;
        let superuser_query = nonempty("superuser_query", superuser_query)?;
        let acl_query = nonempty("acl_query", acl_query)?;

        let mode = match mode_name.as_str() {
            "vernemq" => {
                for (key, given) in [
                    ("user_query", user_query.is_some()),
                    ("superuser_query", superuser_query.is_some()),
                    ("acl_query", acl_query.is_some()),
                    ("salt_encoding", salt_encoding.is_some()),
                ] {
                    if given {
                        return Err(s.invalid(key, "is a setting of mode = \"goauth\""));
                    }
                }
                let hash = match hash.as_deref() {
                    None | Some("crypt") => HashMethod::Crypt,
                    Some("bcrypt") => HashMethod::Bcrypt,
                    Some("sha256") => HashMethod::Sha256,
                    Some(other) => {
                        return Err(s.invalid(
                            "password_hash_method",
                            format!("`{other}` is not one of crypt, bcrypt, sha256"),
                        ));
                    }
                };
                let table = table.unwrap_or_else(|| DEFAULT_TABLE.to_owned());
                if !valid_table(&table) {
                    return Err(s.invalid(
                        "table",
                        format!("`{table}` is not a table name (letters, digits, `_`; optionally `schema.table`)"),
                    ));
                }
                Mode::VerneMq { table, hash }
            }
            "goauth" => {
                for (key, given) in [
                    ("password_hash_method", hash.is_some()),
                    ("table", table.is_some()),
                ] {
                    if given {
                        return Err(s.invalid(key, "is a setting of mode = \"vernemq\""));
                    }
                }
                let user_query = user_query
                    .ok_or_else(|| s.invalid("user_query", "is required with mode = \"goauth\""))?;
                let salt_encoding = match salt_encoding.as_deref() {
                    None | Some("base64") => SaltEncoding::Base64,
                    Some("utf-8" | "utf8") => SaltEncoding::Utf8,
                    Some(other) => {
                        return Err(s.invalid(
                            "salt_encoding",
                            format!("`{other}` is not one of base64, utf-8"),
                        ));
                    }
                };
                Mode::GoAuth {
                    user_query,
                    superuser_query,
                    acl_query,
                    salt_encoding,
                }
            }
            other => {
                return Err(s.invalid("mode", format!("`{other}` is not one of vernemq, goauth")));
            }
        };
        let pool_size = match pool_size {
            None => DEFAULT_POOL_SIZE,
            Some(0) => return Err(s.invalid("pool_size", "must be at least 1")),
            Some(n) => n as usize,
        };
        let connect_timeout = match connect_timeout {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(d) if d.is_zero() => return Err(s.invalid("connect_timeout", "must not be 0")),
            Some(d) => d,
        };
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
        assert!(valid_table("public.vmq_auth_acl"));
        assert!(!valid_table("\"quoted\""));
    }
}
