//! The settings of one `[backends.NAME] kind = "mysql"` table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError};
use fogg_auth_common::settings::Settings;
use fogg_auth_common::sql::{SqlDialect, SqlMode, SqlSettings};

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

/// VerneMQ's layout or mosquitto-go-auth's queries (shared with the
/// postgres backend: `fogg_auth_common::sql`).
pub type Mode = SqlMode<HashMethod>;

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

/// What differs from the other SQL backends.
const DIALECT: SqlDialect<HashMethod> = SqlDialect {
    url_example: "mysql://user:password@host/db",
    hash_methods: &[
        ("password", HashMethod::Password),
        ("md5", HashMethod::Md5),
        ("sha1", HashMethod::Sha1),
        ("sha256", HashMethod::Sha256),
        ("bcrypt", HashMethod::Bcrypt),
    ],
    table_qualifier: "database",
    max_identifier: 64,
};

impl MysqlSettings {
    pub fn from_config(config: &BackendConfig) -> Result<MysqlSettings, BackendError> {
        let mut s = Settings::new(config);
        let SqlSettings {
            url,
            mode,
            pool_size,
            connect_timeout,
        } = DIALECT.take(&mut s)?;
        let tls = TlsFiles {
            ca_file: s.path("tls_ca_file")?,
            cert_file: s.path("tls_cert_file")?,
            key_file: s.path("tls_key_file")?,
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(s.invalid("tls_cert_file", "and `tls_key_file` go together"));
        }
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
