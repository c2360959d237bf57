//! fogg-auth-postgres: authentication with the client's ACL loaded at
//! CONNECT, from PostgreSQL, in VerneMQ's layout or with mosquitto-go-auth's
//! user-written queries.
//!
//! ```toml
//! [backends.pg]
//! kind = "postgres"
//! url = "postgres://fogg:secret@127.0.0.1:5432/mqtt?sslmode=prefer"
//! # mode = "vernemq"                 # default: the vmq_auth_acl table
//! # password_hash_method = "crypt"   # crypt (pgcrypto, default) | bcrypt | sha256
//! # pool_size = 10
//! # connect_timeout = "5s"
//!
//! [auth]
//! chain = ["pg"]
//! ```
//!
//! * **VerneMQ mode** (default): one query per CONNECT finds the exact
//!   (mountpoint, client_id, username) row, else the client id `*` row, and
//!   returns whether the password matches (checked in SQL for `crypt` and
//!   `sha256`; the hash itself for `bcrypt`, checked off the reactor by
//!   fogg-auth-common) with `publish_acl` / `subscribe_acl`. What a row means
//!   is [`fogg_auth_common::vernemq::decide`]: no row `Next`, wrong password
//!   `Deny`, malformed hash or ACL `Deny` (logged), else `Allow` with the
//!   rules, which the broker evaluates for the whole connection.
//! * **go-auth mode** (`mode = "goauth"`): `user_query` (`$1` username) gives
//!   the hash (PBKDF2, bcrypt, argon2id, checked by Fogg); on a match,
//!   `superuser_query` (a count) and `acl_query` (`$1` username, `$2` access
//!   code 1 read, 2 write, 4 subscribe, the codes mosquitto asks) are run
//!   once and turned into rules by [`fogg_auth_common::gocauth`].
//! * **Failures**: the database down, a connection lost, a pool wait or
//!   connect timing out are [`ErrorKind::Unavailable`] / [`ErrorKind::Timeout`]
//!   (retryable; the client gets "server unavailable", never "bad
//!   password"); a query the database refuses (no such table, pgcrypto not
//!   installed) is [`ErrorKind::InvalidConfig`]. The pool reconnects by
//!   itself when the database is back. The URL (and its password) never
//!   appears in an error or a log line.

mod settings;
mod tls;

use std::error::Error as _;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use fogg_api::{
    AclRules, AuthDecision, Authenticator, Backend, BackendConfig, BackendError, BackendFactory,
    Capabilities, Concern, ConnectInfo, ErrorKind,
};
use fogg_auth_common::gocauth;
use fogg_auth_common::passwords::{self, HashError, VerifyOptions};
use fogg_auth_common::vernemq::{self, AclValue, RowKey, StoredPassword, VmqRow};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

pub use settings::{HashMethod, Mode, PostgresSettings};
pub use tls::{SslMode, TlsParams};

/// The `postgres` backend kind.
pub struct PostgresFactory;

impl PostgresFactory {
    pub const KIND: &'static str = "postgres";
    pub const CAPABILITIES: Capabilities = Capabilities(&[Concern::Authentication]);
}

impl BackendFactory for PostgresFactory {
    fn kind(&self) -> &'static str {
        PostgresFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        PostgresFactory::CAPABILITIES
    }

    /// Checks the settings and makes the pool; no connection is opened here
    /// (a database that is down at start is an outage, not a bad setting).
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = PostgresSettings::from_config(config)?;
        let postgres = Postgres::new(&config.name, &settings)?;
        let mut backend = Backend::new(config.name.clone(), PostgresFactory::KIND);
        backend.authenticator = Some(Arc::new(postgres));
        Ok(backend)
    }
}

/// One `postgres` backend instance.
pub struct Postgres {
    name: String,
    pool: Pool,
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

/// The access codes asked of a go-auth `acl_query`: the ones mosquitto asks
/// go-auth (read when delivering, write when publishing, subscribe when
/// subscribing). Rows come back as topics only, so each is taken with the
/// code it was asked for.
const GOAUTH_CODES: [i64; 3] = [1, 2, 4];

/// VerneMQ's lookup in one round trip: the exact row, else the `*` row
/// (`ORDER BY client_id = '*'`); the password is compared for that one row
/// only (the subquery with `LIMIT` is evaluated first), so a malformed hash
/// in another row never matters.
fn vernemq_sql(table: &str, hash: HashMethod) -> String {
    let (check, fetched) = match hash {
        HashMethod::Crypt => ("r.password = crypt($4, r.password)", "NULL"),
        HashMethod::Sha256 => (
            "lower(r.password) = encode(sha256($4::bytea), 'hex')",
            "NULL",
        ),
        HashMethod::Bcrypt => ("NULL::boolean", "r.password"),
    };
    format!(
        "SELECT r.client_id::text, \
                (r.password IS NULL OR r.password = '') AS no_password, \
                CASE WHEN r.password IS NULL OR r.password = '' THEN NULL ELSE {check} END AS password_ok, \
                {fetched}::text AS password, \
                r.publish_acl::text, r.subscribe_acl::text \
         FROM (SELECT client_id, password, publish_acl, subscribe_acl FROM {table} \
               WHERE mountpoint = $1 AND username = $3 AND client_id IN ($2, '*') \
               ORDER BY client_id = '*' LIMIT 1) AS r"
    )
}

impl Postgres {
    pub fn new(name: &str, settings: &PostgresSettings) -> Result<Postgres, BackendError> {
        let invalid = |reason: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                name,
                "build",
                format!("`url` {reason}"),
            )
        };
        let (url, tls_params) = tls::split_url(&settings.url).map_err(invalid)?;
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| invalid(format!("is not a PostgreSQL URL: {e}")))?;
        pg.ssl_mode(tls_params.mode.driver_mode());
        pg.connect_timeout(settings.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("fogg");
        }
        let tls_config = tls::client_config(&tls_params).map_err(invalid)?;
        if matches!(tls_params.mode, SslMode::Prefer | SslMode::Require)
            && tls_params.root_cert.is_none()
        {
            tracing::debug!(
                backend = name,
                "PostgreSQL TLS (when used) does not authenticate the server: set sslmode=verify-full and sslrootcert to check it"
            );
        }
        let manager = Manager::from_config(
            pg,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| {
                BackendError::new(
                    ErrorKind::InvalidConfig,
                    name,
                    "build",
                    format!("connection pool: {e}"),
                )
            })?;
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
        Ok(Postgres {
            name: name.to_owned(),
            pool,
            queries,
        })
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError::new(kind, self.name.clone(), "authenticate", message)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, BackendError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => self.error(
                ErrorKind::Timeout,
                "no PostgreSQL connection within connect_timeout",
            ),
            PoolError::Backend(e) => self.pg_error(&e),
            PoolError::Closed => self.error(ErrorKind::Unavailable, "the pool is closed"),
            other => self.error(ErrorKind::Internal, format!("connection pool: {other}")),
        })
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
    ) -> Result<Statement, BackendError> {
        client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.pg_error(&e))
    }

    /// A driver error as a [`BackendError`] of the right kind; the message
    /// is the server's or the driver's, which never quotes the URL.
    fn pg_error(&self, e: &tokio_postgres::Error) -> BackendError {
        let kind = classify(e);
        let message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("PostgreSQL {}: {}", db.code().code(), db.message());
                if let Some(hint) = db.hint() {
                    m.push_str(&format!(" (hint: {hint})"));
                }
                if db.code() == &SqlState::UNDEFINED_FUNCTION && db.message().contains("crypt") {
                    m.push_str(
                        " (password_hash_method = \"crypt\" needs `CREATE EXTENSION pgcrypto`)",
                    );
                }
                m
            }
            // The driver's message already ends with its cause.
            None => format!("PostgreSQL: {e}"),
        };
        self.error(kind, message)
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
        // PostgreSQL text cannot hold NUL: no row can have such a key.
        if [info.mountpoint.as_str(), info.client_id.as_str(), username]
            .iter()
            .any(|s| s.contains('\0'))
        {
            return Ok(AuthDecision::Next);
        }
        let client = self.client().await?;
        let statement = self.prepare(&client, sql).await?;
        let (mountpoint, client_id) = (info.mountpoint.as_str(), info.client_id.as_str());
        let result = match hash {
            HashMethod::Bcrypt => {
                client
                    .query(&statement, &[&mountpoint, &client_id, &username])
                    .await
            }
            HashMethod::Crypt => {
                // A password that is not text cannot match a crypt() hash:
                // NULL makes the comparison NULL, i.e. no match.
                let text = std::str::from_utf8(password)
                    .ok()
                    .filter(|p| !p.contains('\0'));
                client
                    .query(&statement, &[&mountpoint, &client_id, &username, &text])
                    .await
            }
            HashMethod::Sha256 => {
                client
                    .query(&statement, &[&mountpoint, &client_id, &username, &password])
                    .await
            }
        };
        let rows = match result {
            Ok(rows) => rows,
            // pgcrypto refusing the stored value ("invalid salt", 22023 or
            // 39000 by version): a malformed hash in the row, which is a
            // denial, not an outage. crypt() is the only function of the
            // query that raises these.
            Err(e)
                if hash == HashMethod::Crypt
                    && matches!(
                        e.code(),
                        Some(&SqlState::INVALID_PARAMETER_VALUE)
                            | Some(&SqlState::EXTERNAL_ROUTINE_INVOCATION_EXCEPTION)
                    ) =>
            {
                tracing::warn!(
                    backend = %self.name,
                    mountpoint = %info.mountpoint,
                    client_id = %info.client_id,
                    username,
                    cause = %e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                    "unusable password hash (pgcrypto refused it); CONNECT denied"
                );
                return Ok(AuthDecision::Deny);
            }
            Err(e) => return Err(self.pg_error(&e)),
        };
        drop(client);
        let found = match rows.first() {
            None => None,
            Some(row) => Some(self.vmq_row(row, info, username, hash)?),
        };
        vernemq::decide(&self.name, info, found).await
    }

    fn vmq_row(
        &self,
        row: &Row,
        info: &ConnectInfo,
        username: &str,
        hash: HashMethod,
    ) -> Result<(RowKey, VmqRow), BackendError> {
        let bad = |e: tokio_postgres::Error| {
            self.error(ErrorKind::InvalidData, format!("reading the row: {e}"))
        };
        let client_id: String = row.try_get(0).map_err(bad)?;
        let no_password: bool = row.try_get(1).map_err(bad)?;
        let password_ok: Option<bool> = row.try_get(2).map_err(bad)?;
        let fetched: Option<String> = row.try_get(3).map_err(bad)?;
        let acl = |i: usize| -> Result<AclValue, BackendError> {
            let text: Option<String> = row.try_get(i).map_err(bad)?;
            Ok(text.map_or(AclValue::Missing, AclValue::Text))
        };
        let password = if no_password {
            StoredPassword::Missing
        } else {
            match hash {
                HashMethod::Bcrypt => fetched.map_or(StoredPassword::Missing, StoredPassword::Hash),
                HashMethod::Crypt | HashMethod::Sha256 => StoredPassword::Checked {
                    matches: password_ok == Some(true),
                },
            }
        };
        Ok((
            RowKey::new(info.mountpoint.clone(), client_id, username),
            VmqRow {
                password,
                publish_acl: acl(4)?,
                subscribe_acl: acl(5)?,
            },
        ))
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
        if username.contains('\0') {
            return Ok(AuthDecision::Next);
        }
        let client = self.client().await?;
        let statement = self.prepare(&client, user_sql).await?;
        let rows = client
            .query(&statement, &[&username])
            .await
            .map_err(|e| self.pg_error(&e))?;
        let Some(row) = rows.first() else {
            return Ok(AuthDecision::Next);
        };
        let hash = text_column(row, 0).map_err(|e| {
            self.error(
                ErrorKind::InvalidConfig,
                format!("user_query must return the hash as text in its first column: {e}"),
            )
        })?;
        let log = |cause: &dyn std::fmt::Display| {
            tracing::warn!(backend = %self.name, username, cause = %cause, "go-auth user refused; CONNECT denied");
        };
        let Some(hash) = hash else {
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
            let statement = self.prepare(&client, sql).await?;
            let rows = client
                .query(&statement, &[&username])
                .await
                .map_err(|e| self.pg_error(&e))?;
            let count = match rows.first() {
                None => 0,
                Some(row) => count_column(row).map_err(|e| {
                    self.error(
                        ErrorKind::InvalidConfig,
                        format!("superuser_query must return a count: {e}"),
                    )
                })?,
            };
            if count > 0 {
                return Ok(AuthDecision::allow_with(AclRules::allow_all()));
            }
        }
        // go-auth: without an ACL query every user may do anything.
        let Some(sql) = acl_sql else {
            return Ok(AuthDecision::allow_with(AclRules::allow_all()));
        };
        let statement = self.prepare(&client, sql).await?;
        let code_type = statement.params().get(1).cloned().unwrap_or(Type::INT4);
        let codes: Vec<Box<dyn ToSql + Sync + Send>> = GOAUTH_CODES
            .iter()
            .map(|&code| access_param(&code_type, code))
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(ErrorKind::InvalidConfig, format!("acl_query: {e}")))?;
        // The three queries are pipelined on one connection.
        let username_param: &(dyn ToSql + Sync) = &username;
        let params: Vec<[&(dyn ToSql + Sync); 2]> = codes
            .iter()
            .map(|code| [username_param, code.as_ref() as &(dyn ToSql + Sync)])
            .collect();
        let query = |i: usize| client.query(&statement, &params[i]);
        let (read, write, subscribe) =
            tokio::try_join!(query(0), query(1), query(2)).map_err(|e| self.pg_error(&e))?;
        let mut acls = Vec::new();
        for (code, rows) in GOAUTH_CODES.iter().zip([read, write, subscribe]) {
            for row in &rows {
                let topic = text_column(row, 0).map_err(|e| {
                    self.error(
                        ErrorKind::InvalidConfig,
                        format!("acl_query must return topic filters as text: {e}"),
                    )
                })?;
                let Some(topic) = topic else { continue };
                gocauth::push_row(&mut acls, &self.name, username, topic, *code);
            }
        }
        Ok(AuthDecision::allow_with(gocauth::acl_rules(false, acls)))
    }
}

impl Authenticator for Postgres {
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
fn classify(e: &tokio_postgres::Error) -> ErrorKind {
    if let Some(code) = e.code() {
        let code = code.code();
        return match &code[..2] {
            // connection exception; insufficient resources; operator
            // intervention (shutdown, cannot connect now); invalid
            // authorization (the database's login refused); no such database.
            "08" | "53" | "57" | "28" | "3D" => ErrorKind::Unavailable,
            // syntax error or access rule violation: the query or table
            // does not fit this database.
            "42" => ErrorKind::InvalidConfig,
            _ => ErrorKind::Internal,
        };
    }
    if e.is_closed() {
        return ErrorKind::Unavailable;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return if io.kind() == std::io::ErrorKind::TimedOut {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            };
        }
        source = s.source();
    }
    // Connecting (TLS handshake, startup) failed some other way.
    ErrorKind::Unavailable
}

/// A text-like column (text, varchar, char, name; bytea as UTF-8).
fn text_column(row: &Row, i: usize) -> Result<Option<String>, String> {
    let ty = row
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| "the query returns no column".to_owned())?;
    if ty == Type::BYTEA {
        let bytes: Option<Vec<u8>> = row.try_get(i).map_err(|e| e.to_string())?;
        return bytes
            .map(|b| String::from_utf8(b).map_err(|_| "bytea value is not UTF-8".to_owned()))
            .transpose();
    }
    row.try_get::<_, Option<String>>(i)
        .map_err(|_| format!("column type {ty} is not text"))
}

/// The first column as a count (any integer type, or a boolean).
fn count_column(row: &Row) -> Result<i64, String> {
    let ty = row
        .columns()
        .first()
        .map(|c| c.type_().clone())
        .ok_or_else(|| "the query returns no column".to_owned())?;
    let value = match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(0)
            .map_err(|e| e.to_string())?,
        Type::INT4 => row
            .try_get::<_, Option<i32>>(0)
            .map_err(|e| e.to_string())?
            .map(i64::from),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(0)
            .map_err(|e| e.to_string())?
            .map(i64::from),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(0)
            .map_err(|e| e.to_string())?
            .map(i64::from),
        other => return Err(format!("column type {other} is not an integer")),
    };
    Ok(value.unwrap_or(0))
}

/// The access code as the query's `$2` wants it.
fn access_param(ty: &Type, code: i64) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    Ok(match *ty {
        Type::INT2 => Box::new(code as i16),
        Type::INT4 => Box::new(code as i32),
        Type::INT8 => Box::new(code),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => Box::new(code.to_string()),
        ref other => {
            return Err(format!(
                "$2 (the access code) has type {other}; use an integer or text column"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> BackendConfig {
        BackendConfig {
            name: "pg".to_owned(),
            kind: "postgres".to_owned(),
            settings: text.parse().unwrap(),
        }
    }

    #[test]
    fn builds_without_a_server_and_hides_the_password() {
        let backend = PostgresFactory
            .build(&config("url = \"postgres://fogg:hunter2@127.0.0.1:1/db\""))
            .unwrap();
        assert!(backend.authenticator.is_some());
        assert!(backend.authorizer.is_none());
        let Err(e) =
            PostgresFactory.build(&config("url = \"postgres://fogg:hunter2@h:notaport/db\""))
        else {
            panic!("a bad port must be refused");
        };
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn the_query_compares_one_row_only() {
        let sql = vernemq_sql("vmq_auth_acl", HashMethod::Crypt);
        assert!(sql.contains("LIMIT 1) AS r"));
        assert!(sql.contains("crypt($4, r.password)"));
        assert!(!vernemq_sql("t", HashMethod::Bcrypt).contains("$4"));
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_unavailable() {
        // Port 1 on loopback: refused at once.
        let backend = PostgresFactory
            .build(&config(
                "url = \"postgres://fogg:hunter2@127.0.0.1:1/db?sslmode=disable\"\nconnect_timeout = \"2s\"",
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
