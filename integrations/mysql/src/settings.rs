//! The settings of one `[backends.NAME] kind = "mysql"` table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError};
use fogg_auth_common::passwords::SaltEncoding;
use fogg_auth_common::settings::Settings;

/// How a VerneMQ row's password is checked (`password_hash_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashMethod {
    /// `PASSWORD(?)` in SQL: MySQL before 8 and MariaDB (VerneMQ's default).
    #[default]
    Password,
    /// `MD5(?)` in SQL (hex, unsalted).
    Md5,
    /// `SHA1(?)` in SQL (hex, unsalted).
    Sha1,
    /// `SHA2(?, 256)` in SQL (hex, unsalted).
    Sha256,
    /// Fetched and checked by Fogg (bcrypt `$2a$`/`$2b$`/`$2y$`, and every
    /// other format fogg-auth-common knows).
    Bcrypt,
}

impl HashMethod {
    pub fn name(self) -> &'static str {
        match self {
            HashMethod::Password => "password",
            HashMethod::Md5 => "md5",
            HashMethod::Sha1 => "sha1",
            HashMethod::Sha256 => "sha256",
            HashMethod::Bcrypt => "bcrypt",
        }
    }

    /// The SQL comparing the row's `password` with the named parameter
    /// `:pw` (`None`: the hash is fetched).
    pub fn sql_check(self) -> Option<&'static str> {
        match self {
            HashMethod::Password => Some("r.password = PASSWORD(:pw)"),
            HashMethod::Md5 => Some("LOWER(r.password) = MD5(:pw)"),
            HashMethod::Sha1 => Some("LOWER(r.password) = SHA1(:pw)"),
            HashMethod::Sha256 => Some("LOWER(r.password) = SHA2(:pw, 256)"),
            HashMethod::Bcrypt => None,
        }
    }
}

/// VerneMQ's layout or mosquitto-go-auth's queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    VerneMq {
        table: String,
        hash: HashMethod,
    },
    GoAuth {
        /// `?` username → one row whose first column is the hash.
        user_query: String,
        /// `?` username → a count (> 0: superuser).
        superuser_query: Option<String>,
        /// `?` username, `?` access code → topic filters.
        acl_query: Option<String>,
        salt_encoding: SaltEncoding,
    },
}

/// TLS files beyond what the URL says (`require_ssl`, `verify_ca`,
/// `verify_identity`, `built_in_roots`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM) trusted for the server; turns TLS on.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM); turns TLS on.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Every setting, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlSettings {
    /// `mysql://user:password@host:port/db?require_ssl=true`; a secret.
    pub url: String,
    pub mode: Mode,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub tls: TlsFiles,
}

impl fmt::Debug for MysqlSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlSettings")
            .field("url", &"<hidden>")
            .field("mode", &self.mode)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

pub const DEFAULT_TABLE: &str = "vmq_auth_acl";
pub const DEFAULT_POOL_SIZE: usize = 10;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A table name used as is in SQL: identifiers only (`name` or `db.name`).
fn valid_table(name: &str) -> bool {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && s.len() <= 64
    };
    let parts: Vec<&str> = name.split('.').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| ident(p))
}

impl MysqlSettings {
    pub fn from_config(config: &BackendConfig) -> Result<MysqlSettings, BackendError> {
        let mut s = Settings::new(config);
        let url = s
            .string("url")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| s.invalid("url", "is required (mysql://user:password@host/db)"))?;
        let mode_name = s.string("mode")?.unwrap_or_else(|| "vernemq".to_owned());
        let hash = s.string("password_hash_method")?;
        let table = s.string("table")?;
        let user_query = s.string("user_query")?;
        let superuser_query = s.string("superuser_query")?;
        let acl_query = s.string("acl_query")?;
        let salt_encoding = s.string("salt_encoding")?;
        let pool_size = s.u32("pool_size")?;
        let connect_timeout = s.duration("connect_timeout")?;
        let tls = TlsFiles {
            ca_file: s.path("tls_ca_file")?,
            cert_file: s.path("tls_cert_file")?,
            key_file: s.path("tls_key_file")?,
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(s.invalid("tls_cert_file", "and `tls_key_file` go together"));
        }
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
                    None | Some("password") => HashMethod::Password,
                    Some("md5") => HashMethod::Md5,
                    Some("sha1") => HashMethod::Sha1,
                    Some("sha256") => HashMethod::Sha256,
                    Some("bcrypt") => HashMethod::Bcrypt,
                    Some(other) => {
                        return Err(s.invalid(
                            "password_hash_method",
                            format!("`{other}` is not one of password, md5, sha1, sha256, bcrypt"),
                        ));
                    }
                };
                let table = table.unwrap_or_else(|| DEFAULT_TABLE.to_owned());
                if !valid_table(&table) {
                    return Err(s.invalid(
                        "table",
                        format!("`{table}` is not a table name (letters, digits, `_`; optionally `database.table`)"),
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
        Ok(MysqlSettings {
            url,
            mode,
            pool_size,
            connect_timeout,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MysqlSettings, String> {
        MysqlSettings::from_config(&BackendConfig {
            name: "my".to_owned(),
            kind: "mysql".to_owned(),
            settings: text.parse().unwrap(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let s = parse("url = \"mysql://u:hunter2@h/db\"").unwrap();
        assert_eq!(
            s.mode,
            Mode::VerneMq {
                table: "vmq_auth_acl".to_owned(),
                hash: HashMethod::Password
            }
        );
        assert_eq!(s.pool_size, 10);
        assert_eq!(s.tls, TlsFiles::default());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn every_hash_method() {
        for name in ["password", "md5", "sha1", "sha256", "bcrypt"] {
            let s = parse(&format!(
                "url = \"mysql://h/db\"\npassword_hash_method = \"{name}\""
            ))
            .unwrap();
            let Mode::VerneMq { hash, .. } = s.mode else {
                panic!()
            };
            assert_eq!(hash.name(), name);
        }
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            ("mode = \"vernemq\"", "`url` is required"),
            ("url = \"x\"\nmode = \"lua\"", "`mode` `lua` is not one of"),
            (
                "url = \"x\"\npassword_hash_method = \"crypt\"",
                "`password_hash_method` `crypt`",
            ),
            ("url = \"x\"\ntable = \"t`; DROP\"", "`table`"),
            (
                "url = \"x\"\nacl_query = \"q\"",
                "`acl_query` is a setting of mode",
            ),
            ("url = \"x\"\nmode = \"goauth\"", "`user_query` is required"),
            (
                "url = \"x\"\ntls_cert_file = \"/c\"",
                "`tls_cert_file` and `tls_key_file`",
            ),
            (
                "url = \"x\"\npool_size = 0",
                "`pool_size` must be at least 1",
            ),
            (
                "url = \"x\"\nsslmode = \"require\"",
                "unknown key `sslmode`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
