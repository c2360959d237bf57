//! fogg-auth-mysql: authentication with the client's ACL loaded at CONNECT,
//! from MySQL or MariaDB, in VerneMQ's layout or with mosquitto-go-auth's
//! user-written queries.
//!
//! ```toml
//! [backends.my]
//! kind = "mysql"
//! url = "mysql://fogg:secret@127.0.0.1:3306/mqtt"
//! # mode = "vernemq"                   # default: the vmq_auth_acl table
//! # password_hash_method = "password"  # password | md5 | sha1 | sha256 | bcrypt
//! # pool_size = 10
//! # connect_timeout = "5s"
//!
//! [auth]
//! chain = ["my"]
//! ```
//!
//! * **VerneMQ mode** (default): one query per CONNECT finds the exact
//!   (mountpoint, client_id, username) row, else the client id `*` row —
//!   compared byte for byte, whatever the columns' collation — and returns
//!   whether the password matches (checked in SQL: `PASSWORD()`, `MD5()`,
//!   `SHA1()`, `SHA2(?, 256)`; or the hash itself for `bcrypt`, checked off
//!   the reactor by fogg-auth-common) with `publish_acl` / `subscribe_acl`
//!   (TEXT). What a row means is [`fogg_auth_common::vernemq::decide`].
//! * **go-auth mode** (`mode = "goauth"`): `user_query` (`?` username) gives
//!   the hash (PBKDF2, bcrypt, argon2id, checked by Fogg); on a match,
//!   `superuser_query` (a count) and `acl_query` (`?` username, `?` access
//!   code 1 read, 2 write, 4 subscribe) run once and become rules through
//!   [`fogg_auth_common::gocauth`].
//! * **Logins**: mysql_async speaks `mysql_native_password` and MySQL 8's
//!   `caching_sha2_password` (over TLS, or with the server's RSA key on a
//!   plain connection), so a MySQL 8 user needs no change of plugin.
//! * **Failures**: the database down, connections lost, a connect timing
//!   out are [`ErrorKind::Unavailable`] / [`ErrorKind::Timeout`] (retryable;
//!   the client gets "server unavailable", never "bad password"); a query
//!   the server refuses (no such table; `PASSWORD()` on MySQL 8) is
//!   [`ErrorKind::InvalidConfig`]. Connections the server closed while idle
//!   are replaced at once. The URL never appears in an error or a log line.

mod settings;

use std::sync::Arc;

use fogg_api::{
    AclRules, AuthDecision, Authenticator, Backend, BackendConfig, BackendError, BackendFactory,
    Capabilities, Concern, ConnectInfo, ErrorKind,
};
use fogg_auth_common::gocauth;
use fogg_auth_common::passwords::{self, HashError, VerifyOptions};
use fogg_auth_common::vernemq::{self, AclValue, RowKey, StoredPassword, VmqRow};
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{
    ClientIdentity, Conn, DriverError, IoError, Opts, OptsBuilder, Params, Pool, PoolConstraints,
    PoolOpts, Row, Value,
};

pub use settings::{HashMethod, Mode, MysqlSettings, TlsFiles};

/// The `mysql` backend kind.
pub struct MysqlFactory;

impl MysqlFactory {
    pub const KIND: &'static str = "mysql";
    pub const CAPABILITIES: Capabilities = Capabilities(&[Concern::Authentication]);
}

impl BackendFactory for MysqlFactory {
    fn kind(&self) -> &'static str {
        MysqlFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        MysqlFactory::CAPABILITIES
    }

    /// Checks the settings and makes the pool; no connection is opened here
    /// (a database that is down at start is an outage, not a bad setting).
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = MysqlSettings::from_config(config)?;
        let mysql = Mysql::new(&config.name, &settings)?;
        let mut backend = Backend::new(config.name.clone(), MysqlFactory::KIND);
        backend.authenticator = Some(Arc::new(mysql));
        Ok(backend)
    }
}

/// One `mysql` backend instance.
pub struct Mysql {
    name: String,
    pool: Pool,
    pool_size: usize,
    connect_timeout: std::time::Duration,
    queries: Queries,
}

enum Queries {
    VerneMq {
        sql: String,
        hash: HashMethod,
    },
    GoAuth {
        user: String,
        superuser: Option<String>,
        acl: Option<String>,
        options: VerifyOptions,
    },
}

/// The access codes asked of a go-auth `acl_query` (those mosquitto asks).
const GOAUTH_CODES: [i64; 3] = [1, 2, 4];

/// VerneMQ's lookup in one round trip: the exact row, else the `*` row.
/// The key columns are compared as bytes as well (the usual collations
/// ignore case and trailing spaces; `Alice` is not `alice`), after the
/// plain comparison that lets the primary key index be used. The password
/// is compared for the one row chosen.
fn vernemq_sql(table: &str, hash: HashMethod) -> String {
    let (check, fetched) = match hash.sql_check() {
        Some(check) => (check, "NULL"),
        None => ("NULL", "r.password"),
    };
    format!(
        "SELECT r.client_id, \
                (r.password IS NULL OR r.password = '') AS no_password, \
                CASE WHEN r.password IS NULL OR r.password = '' THEN NULL ELSE {check} END AS password_ok, \
                {fetched} AS password, \
                r.publish_acl, r.subscribe_acl \
         FROM (SELECT client_id, password, publish_acl, subscribe_acl FROM {table} \
               WHERE mountpoint = :mp AND username = :user AND client_id IN (:cid, '*') \
                 AND CAST(mountpoint AS BINARY) = CAST(:mp AS BINARY) \
                 AND CAST(username AS BINARY) = CAST(:user AS BINARY) \
                 AND CAST(client_id AS BINARY) IN (CAST(:cid AS BINARY), CAST('*' AS BINARY)) \
               ORDER BY client_id = '*' LIMIT 1) AS r"
    )
}

/// Whether an error on a connection taken from the pool may just mean the
/// server closed it while it was idle (a restart): worth one more try on a
/// fresh connection.
fn connection_lost(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Io(_)
            | mysql_async::Error::Driver(DriverError::ConnectionClosed)
            | mysql_async::Error::Driver(DriverError::PacketOutOfOrder)
    ) || matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1053 | 1927 | 4031))
}

impl Mysql {
    pub fn new(name: &str, settings: &MysqlSettings) -> Result<Mysql, BackendError> {
        let invalid = |key: &str, reason: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                name,
                "build",
                format!("`{key}` {reason}"),
            )
        };
        let opts = Opts::from_url(&settings.url)
            .map_err(|e| invalid("url", format!("is not a MySQL URL: {e}")))?;
        let mut ssl = opts.ssl_opts().cloned();
        let files = &settings.tls;
        if files.ca_file.is_some() || files.cert_file.is_some() {
            let mut tls = ssl.unwrap_or_default();
            if let Some(ca) = &files.ca_file {
                if !ca.is_file() {
                    return Err(invalid(
                        "tls_ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
                tls = tls.with_root_certs(vec![ca.clone().into()]);
            }
            if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
                for (k, path) in [("tls_cert_file", cert), ("tls_key_file", key)] {
                    if !path.is_file() {
                        return Err(invalid(
                            k,
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                tls = tls.with_client_identity(Some(ClientIdentity::new(
                    cert.clone().into(),
                    key.clone().into(),
                )));
            }
            ssl = Some(tls);
        }
        if ssl.is_some() {
            // mysql_async builds its rustls config with the process-wide
            // provider; make sure there is one.
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            }
        }
        let constraints = PoolConstraints::new(settings.pool_size, settings.pool_size)
            .ok_or_else(|| invalid("pool_size", "is out of range".to_owned()))?;
        let builder = OptsBuilder::from_opts(opts)
            .ssl_opts(ssl)
            // The URL's host is what is meant: no switch to a unix socket.
            .prefer_socket(false)
            .stmt_cache_size(16)
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // Nothing here changes session state; resetting would
                    // also drop the prepared statements.
                    .with_reset_connection(false),
            );
        let pool = Pool::new(builder);
        let queries = match &settings.mode {
            Mode::VerneMq { table, hash } => Queries::VerneMq {
                sql: vernemq_sql(table, *hash),
                hash: *hash,
            },
            Mode::GoAuth {
                user_query,
                superuser_query,
                acl_query,
                salt_encoding,
            } => Queries::GoAuth {
                user: user_query.clone(),
                superuser: superuser_query.clone(),
                acl: acl_query.clone(),
                options: VerifyOptions {
                    goauth_salt_encoding: *salt_encoding,
                },
            },
        };
        Ok(Mysql {
            name: name.to_owned(),
            pool,
            pool_size: settings.pool_size,
            connect_timeout: settings.connect_timeout,
            queries,
        })
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError::new(kind, self.name.clone(), "authenticate", message)
    }

    fn my_error(&self, e: &mysql_async::Error) -> BackendError {
        let kind = classify(e);
        let message = match e {
            mysql_async::Error::Server(s) => {
                let mut m = format!("MySQL {} ({}): {}", s.code, s.state, s.message);
                // ER_SP_DOES_NOT_EXIST / ER_FUNCTION_NOT_DEFINED: PASSWORD() is gone in MySQL 8.
                if s.message.contains("PASSWORD") && matches!(s.code, 1305 | 1064 | 1046) {
                    m.push_str(
                        " (PASSWORD() does not exist in MySQL 8: use password_hash_method = \"sha256\" or \"bcrypt\")",
                    );
                }
                m
            }
            // Conversion errors quote the value (possibly a hash): never shown.
            mysql_async::Error::Driver(
                DriverError::FromValue { .. } | DriverError::FromRow { .. },
            ) => "MySQL: a column has an unexpected type".to_owned(),
            mysql_async::Error::Io(IoError::Io(io)) => format!("MySQL connection: {io}"),
            mysql_async::Error::Io(IoError::Tls(tls)) => format!("MySQL TLS: {tls}"),
            other => format!("MySQL: {other}"),
        };
        self.error(kind, message)
    }

    async fn conn(&self) -> Result<Conn, BackendError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.my_error(&e)),
            Err(_) => Err(self.error(
                ErrorKind::Timeout,
                "no MySQL connection within connect_timeout",
            )),
        }
    }

    /// Run one statement on a pooled connection; when the connection turns
    /// out to be one the server closed while idle, try a fresh one (at most
    /// once per pooled connection, so a restarted server costs no failed
    /// CONNECT).
    async fn exec<T>(&self, sql: &str, params: Params) -> Result<Vec<T>, BackendError>
    where
        T: mysql_async::prelude::FromRow + Send + 'static,
    {
        let mut attempt = 0;
        loop {
            let mut conn = self.conn().await?;
            match conn.exec(sql, params.clone()).await {
                Ok(rows) => return Ok(rows),
                Err(e) if connection_lost(&e) && attempt < self.pool_size => {
                    tracing::debug!(backend = %self.name, error = %e, "pooled MySQL connection lost; trying another");
                    attempt += 1;
                }
                Err(e) => return Err(self.my_error(&e)),
            }
        }
    }

    async fn vernemq(
        &self,
        info: &ConnectInfo,
        sql: &str,
        hash: HashMethod,
    ) -> Result<AuthDecision, BackendError> {
        let Some((username, password)) = vernemq::credentials(info) else {
            return Ok(AuthDecision::Next);
        };
        let mut params = vec![
            ("mp".to_owned(), Value::from(info.mountpoint.as_str())),
            ("cid".to_owned(), Value::from(info.client_id.as_str())),
            ("user".to_owned(), Value::from(username)),
        ];
        if hash.sql_check().is_some() {
            params.push(("pw".to_owned(), Value::Bytes(password.to_vec())));
        }
        let params = Params::Named(
            params
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v))
                .collect(),
        );
        let rows: Vec<Row> = self.exec(sql, params).await?;
        let found = match rows.into_iter().next() {
            None => None,
            Some(row) => Some(self.vmq_row(row, info, username, hash)?),
        };
        vernemq::decide(&self.name, info, found).await
    }

    fn vmq_row(
        &self,
        mut row: Row,
        info: &ConnectInfo,
        username: &str,
        hash: HashMethod,
    ) -> Result<(RowKey, VmqRow), BackendError> {
        let client_id: String = self.column(&mut row, 0)?;
        let no_password: i64 = self.column(&mut row, 1)?;
        let password_ok: Option<i64> = self.column(&mut row, 2)?;
        let fetched: Option<String> = self.column(&mut row, 3)?;
        let publish: Option<String> = self.column(&mut row, 4)?;
        let subscribe: Option<String> = self.column(&mut row, 5)?;
        let password = if no_password != 0 {
            StoredPassword::Missing
        } else if hash == HashMethod::Bcrypt {
            fetched.map_or(StoredPassword::Missing, StoredPassword::Hash)
        } else {
            StoredPassword::Checked {
                matches: password_ok == Some(1),
            }
        };
        Ok((
            RowKey::new(info.mountpoint.clone(), client_id, username),
            VmqRow {
                password,
                publish_acl: publish.map_or(AclValue::Missing, AclValue::Text),
                subscribe_acl: subscribe.map_or(AclValue::Missing, AclValue::Text),
            },
        ))
    }

    fn column<T: FromValue>(&self, row: &mut Row, i: usize) -> Result<T, BackendError> {
        match row.take_opt::<T, usize>(i) {
            Some(Ok(value)) => Ok(value),
            Some(Err(_)) => Err(self.error(
                ErrorKind::InvalidData,
                format!("column {i} of the row has an unexpected type"),
            )),
            None => Err(self.error(
                ErrorKind::InvalidData,
                format!("the query returned no column {i}"),
            )),
        }
    }

    async fn goauth(
        &self,
        info: &ConnectInfo,
        user_sql: &str,
        superuser_sql: Option<&str>,
        acl_sql: Option<&str>,
        options: VerifyOptions,
    ) -> Result<AuthDecision, BackendError> {
        let Some((username, password)) = vernemq::credentials(info) else {
            return Ok(AuthDecision::Next);
        };
        let rows: Vec<Row> = self.exec(user_sql, Params::from((username,))).await?;
        let Some(mut row) = rows.into_iter().next() else {
            return Ok(AuthDecision::Next);
        };
        let hash: Option<String> = self.column(&mut row, 0).map_err(|_| {
            self.error(
                ErrorKind::InvalidConfig,
                "user_query must return the hash as text in its first column",
            )
        })?;
        let log = |cause: &dyn std::fmt::Display| {
            tracing::warn!(backend = %self.name, username, cause = %cause, "go-auth user refused; CONNECT denied");
        };
        let Some(hash) = hash.filter(|h| !h.is_empty()) else {
            log(&"no password hash stored");
            return Ok(AuthDecision::Deny);
        };
        match passwords::verify_with(password, &hash, options).await {
            Ok(true) => {}
            Ok(false) => return Ok(AuthDecision::Deny),
            Err(HashError::Task(e)) => {
                return Err(self.error(ErrorKind::Internal, format!("password check: {e}")));
            }
            Err(e) => {
                log(&e);
                return Ok(AuthDecision::Deny);
            }
        }

        if let Some(sql) = superuser_sql {
            let rows: Vec<Row> = self.exec(sql, Params::from((username,))).await?;
            let count = match rows.into_iter().next() {
                None => 0,
                Some(mut row) => self
                    .column::<Option<i64>>(&mut row, 0)
                    .map_err(|_| {
                        self.error(
                            ErrorKind::InvalidConfig,
                            "superuser_query must return a count",
                        )
                    })?
                    .unwrap_or(0),
            };
            if count > 0 {
                return Ok(AuthDecision::allow_with(AclRules::allow_all()));
            }
        }
        let Some(sql) = acl_sql else {
            return Ok(AuthDecision::allow_with(AclRules::allow_all()));
        };
        let mut acls = Vec::new();
        for code in GOAUTH_CODES {
            let topics: Vec<Option<String>> =
                self.exec(sql, Params::from((username, code))).await?;
            for topic in topics.into_iter().flatten() {
                gocauth::push_row(&mut acls, &self.name, username, topic, code);
            }
        }
        Ok(AuthDecision::allow_with(gocauth::acl_rules(false, acls)))
    }
}

impl Authenticator for Mysql {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        match &self.queries {
            Queries::VerneMq { sql, hash } => self.vernemq(info, sql, *hash).await,
            Queries::GoAuth {
                user,
                superuser,
                acl,
                options,
            } => {
                self.goauth(info, user, superuser.as_deref(), acl.as_deref(), *options)
                    .await
            }
        }
    }
}

/// Outage or refusal: what retrying might fix is Unavailable / Timeout.
fn classify(e: &mysql_async::Error) -> ErrorKind {
    match e {
        mysql_async::Error::Io(IoError::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut => {
            ErrorKind::Timeout
        }
        mysql_async::Error::Io(_) => ErrorKind::Unavailable,
        mysql_async::Error::Driver(
            DriverError::ConnectionClosed
            | DriverError::PoolDisconnected
            | DriverError::PacketOutOfOrder
            | DriverError::UnexpectedPacket { .. },
        ) => ErrorKind::Unavailable,
        mysql_async::Error::Driver(DriverError::FromValue { .. } | DriverError::FromRow { .. }) => {
            ErrorKind::InvalidData
        }
        mysql_async::Error::Driver(
            DriverError::UnknownAuthPlugin { .. }
            | DriverError::MysqlOldPasswordDisabled
            | DriverError::CleartextPluginDisabled
            | DriverError::StmtParamsMismatch { .. }
            | DriverError::MixedParams,
        ) => ErrorKind::InvalidConfig,
        mysql_async::Error::Driver(_) | mysql_async::Error::Other(_) => ErrorKind::Internal,
        mysql_async::Error::Url(_) => ErrorKind::InvalidConfig,
        mysql_async::Error::Server(s) => match s.code {
            // Access denied, unknown database, too many connections, server
            // shutting down / connection killed / idle timeout, lock wait,
            // read-only, out of memory.
            1040 | 1044 | 1045 | 1049 | 1053 | 1077 | 1129 | 1130 | 1152 | 1203 | 1205 | 1290
            | 1836 | 1927 | 4031 | 1037 | 1038 | 1041 => ErrorKind::Unavailable,
            // No such table / column / function, syntax, wrong parameter count.
            1054 | 1064 | 1146 | 1305 | 1210 | 1109 | 1046 | 1142 | 1143 | 1370 => {
                ErrorKind::InvalidConfig
            }
            _ if s.state.starts_with("08") => ErrorKind::Unavailable,
            _ if s.state.starts_with("42") => ErrorKind::InvalidConfig,
            _ => ErrorKind::Internal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> BackendConfig {
        BackendConfig {
            name: "my".to_owned(),
            kind: "mysql".to_owned(),
            settings: text.parse().unwrap(),
        }
    }

    #[test]
    fn builds_without_a_server_and_hides_the_password() {
        let backend = MysqlFactory
            .build(&config("url = \"mysql://fogg:hunter2@127.0.0.1:1/db\""))
            .unwrap();
        assert!(backend.authenticator.is_some());
        let Err(e) = MysqlFactory.build(&config("url = \"mysql://fogg:hunter2@h/db?nonsense=1\""))
        else {
            panic!("an unknown URL parameter must be refused");
        };
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let Err(e) = MysqlFactory.build(&config(
            "url = \"mysql://h/db\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
        )) else {
            panic!("a missing CA file must be refused");
        };
        assert!(e.to_string().contains("`tls_ca_file`"), "{e}");
    }

    #[test]
    fn the_query_compares_keys_as_bytes_and_one_row_only() {
        let sql = vernemq_sql("vmq_auth_acl", HashMethod::Sha256);
        assert!(sql.contains("CAST(username AS BINARY) = CAST(:user AS BINARY)"));
        assert!(sql.contains("SHA2(:pw, 256)"));
        assert!(sql.contains("LIMIT 1) AS r"));
        assert!(!vernemq_sql("t", HashMethod::Bcrypt).contains(":pw"));
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_unavailable() {
        let backend = MysqlFactory
            .build(&config(
                "url = \"mysql://fogg:hunter2@127.0.0.1:1/db\"\nconnect_timeout = \"2s\"",
            ))
            .unwrap();
        let authenticator = backend.authenticator.unwrap();
        let info = ConnectInfo {
            client_id: "c".to_owned(),
            username: Some("u".to_owned()),
            password: Some(bytes::Bytes::from_static(b"p")),
            mountpoint: String::new(),
            peer: ([127, 0, 0, 1], 1).into(),
            listener: "l".to_owned(),
            protocol: fogg_api::ProtocolVersion::V5,
            clean_start: true,
        };
        let e = authenticator.authenticate(&info).await.unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            "{e}"
        );
        assert!(e.retryable);
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
