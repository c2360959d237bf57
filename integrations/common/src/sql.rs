//! The settings the SQL backends (`postgres`, `mysql`) share: the connection
//! URL, VerneMQ's table with a hash method or mosquitto-go-auth's queries,
//! the pool size and the connect timeout. Each backend names its own hash
//! methods and takes its own extra keys (TLS files, ...) from the same
//! [`Settings`] before [`Settings::finish`].

use std::time::Duration;

use fogg_api::BackendError;

use crate::passwords::SaltEncoding;
use crate::settings::Settings;

/// VerneMQ's layout or mosquitto-go-auth's queries (`mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlMode<H> {
    VerneMq {
        /// `table`, checked to be an identifier (used as is in SQL).
        table: String,
        /// `password_hash_method`.
        hash: H,
    },
    GoAuth {
        /// Username → one row whose first column is the hash.
        user_query: String,
        /// Username → a count (> 0: superuser).
        superuser_query: Option<String>,
        /// Username, access code → topic filters.
        acl_query: Option<String>,
        salt_encoding: SaltEncoding,
    },
}

/// What differs between the SQL backends.
pub struct SqlDialect<H: 'static> {
    /// Shown when `url` is missing, e.g. `postgres://user:password@host/db`.
    pub url_example: &'static str,
    /// `password_hash_method` names and values; the first is the default.
    pub hash_methods: &'static [(&'static str, H)],
    /// What qualifies a table name: `schema` or `database`.
    pub table_qualifier: &'static str,
    /// The longest identifier the database accepts.
    pub max_identifier: usize,
}

/// The shared settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSettings<H> {
    /// A secret (it may carry a password): never print it.
    pub url: String,
    pub mode: SqlMode<H>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
}

pub const DEFAULT_TABLE: &str = "vmq_auth_acl";
pub const DEFAULT_POOL_SIZE: usize = 10;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl<H: Copy> SqlDialect<H> {
    /// Take and check the shared keys from `s`; the caller takes its own
    /// keys and then calls [`Settings::finish`].
    pub fn take(&self, s: &mut Settings) -> Result<SqlSettings<H>, BackendError> {
        let url = s
            .string("url")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| s.invalid("url", format!("is required ({})", self.url_example)))?;
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
                SqlMode::VerneMq {
                    hash: self.hash_method(s, hash.as_deref())?,
                    table: self.table(s, table)?,
                }
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
                SqlMode::GoAuth {
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
        Ok(SqlSettings {
            url,
            mode,
            pool_size,
            connect_timeout,
        })
    }

    fn hash_method(&self, s: &Settings, name: Option<&str>) -> Result<H, BackendError> {
        let found = match name {
            None => self.hash_methods.first(),
            Some(name) => self.hash_methods.iter().find(|(n, _)| *n == name),
        };
        found.map(|(_, h)| *h).ok_or_else(|| {
            let names: Vec<&str> = self.hash_methods.iter().map(|(n, _)| *n).collect();
            s.invalid(
                "password_hash_method",
                format!(
                    "`{}` is not one of {}",
                    name.unwrap_or_default(),
                    names.join(", ")
                ),
            )
        })
    }

    fn table(&self, s: &Settings, table: Option<String>) -> Result<String, BackendError> {
        let table = table.unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        if valid_table(&table, self.max_identifier) {
            Ok(table)
        } else {
            Err(s.invalid(
                "table",
                format!(
                    "`{table}` is not a table name (letters, digits, `_`; optionally `{}.table`)",
                    self.table_qualifier
                ),
            ))
        }
    }
}

/// A table name used as is in SQL: identifiers only (`name` or
/// `qualifier.name`).
fn valid_table(name: &str, max_identifier: usize) -> bool {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && s.len() <= max_identifier
    };
    let parts: Vec<&str> = name.split('.').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| ident(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_api::BackendConfig;

    const DIALECT: SqlDialect<u8> = SqlDialect {
        url_example: "db://host",
        hash_methods: &[("one", 1), ("two", 2)],
        table_qualifier: "schema",
        max_identifier: 8,
    };

    fn parse(text: &str) -> Result<SqlSettings<u8>, String> {
        let config = BackendConfig {
            name: "db".to_owned(),
            kind: "sql".to_owned(),
            settings: text.parse().unwrap(),
        };
        let mut s = Settings::new(&config);
        let settings = DIALECT.take(&mut s).map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())?;
        Ok(settings)
    }

    #[test]
    fn the_first_hash_method_is_the_default_and_tables_are_identifiers() {
        let s = parse("url = \"db://h\"\ntable = \"s.t\"").unwrap();
        assert_eq!(
            s.mode,
            SqlMode::VerneMq {
                table: "s.t".to_owned(),
                hash: 1
            }
        );
        assert_eq!(s.pool_size, DEFAULT_POOL_SIZE);
        let e = parse("url = \"x\"\npassword_hash_method = \"three\"").unwrap_err();
        assert!(e.contains("`three` is not one of one, two"), "{e}");
        let e = parse("url = \"x\"\ntable = \"much_too_long\"").unwrap_err();
        assert!(e.contains("optionally `schema.table`"), "{e}");
        let e = parse("url = \"\"").unwrap_err();
        assert!(e.contains("`url` is required (db://host)"), "{e}");
    }
}
