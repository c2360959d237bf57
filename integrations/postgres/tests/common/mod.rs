//! What the PostgreSQL tests share: one server per test binary (started by
//! the first test that needs it, in a random schema), a seeding client, and
//! the INSERTs that store users.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

use fogg_testcontainers::TestServer;
use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

/// The server every test of this binary shares, and this run's schema.
pub struct Shared {
    pub server: TestServer,
    pub schema: String,
    /// Kept open for the life of the process; see [`kill_on_exit`].
    _reaper: Mutex<Option<ChildStdin>>,
}

static SHARED: OnceCell<Option<Shared>> = OnceCell::const_new();

/// The shared server, or `None` after a loud `SKIPPED:` line when this
/// machine has no PostgreSQL (a failure under `CI=true`).
pub async fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| async {
            let server = fogg_testcontainers::require(fogg_testcontainers::postgres().await)?;
            let schema = format!("fogg_test_{:016x}", rand::random::<u64>());
            let client = connect(server.url()).await;
            create_schema(&client, &schema).await;
            let reaper = kill_on_exit(&server);
            Some(Shared {
                server,
                schema,
                _reaper: Mutex::new(reaper),
            })
        })
        .await
        .as_ref()
}

/// A static is never dropped, so a local server started for the whole
/// binary would outlive it. A `bash` child waits for EOF on a pipe only this
/// process holds (close-on-exec: no other child inherits it); when the
/// process exits, however it exits, the pipe closes and the child kills
/// the server's process group and removes its directory.
pub fn kill_on_exit(server: &TestServer) -> Option<ChildStdin> {
    let pid = server.pid()?;
    let dir = server.data_dir()?;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg("read _ ; kill -KILL -- -\"$1\" 2>/dev/null ; sleep 1 ; rm -rf -- \"$2\"")
        .arg("fogg-test-reaper")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    // Nothing is written before exit; flushing an empty buffer checks the pipe.
    stdin.flush().ok()?;
    Some(stdin)
}

/// A client on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// VerneMQ's table, exactly as its documentation creates it, in `schema`;
/// pgcrypto in `public`.
pub async fn create_schema(client: &Client, schema: &str) {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;
             CREATE SCHEMA {schema};
             CREATE TABLE {schema}.vmq_auth_acl (
               mountpoint character varying(10) NOT NULL,
               client_id character varying(128) NOT NULL,
               username character varying(128) NOT NULL,
               password character varying(128),
               publish_acl json,
               subscribe_acl json,
               CONSTRAINT vmq_auth_acl_primary_key PRIMARY KEY (mountpoint, client_id, username)
             );"
        ))
        .await
        .expect("create the test schema");
}

/// How a password goes into the `password` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// This text as is (a hash made by the test, or anything malformed).
    AsIs,
    /// `crypt($pw, gen_salt('bf', 4))` (pgcrypto).
    Crypt,
    /// `encode(sha256($pw), 'hex')`.
    Sha256,
}

/// An ACL column's value: JSON text stored as `json`; text that is not JSON
/// (a `json` column cannot hold it) stored as a JSON string, which the
/// backend must refuse just the same ("must be a JSON array").
fn acl_expr(param: usize, text: Option<&str>) -> String {
    match text {
        Some(t) if serde_json::from_str::<serde_json::Value>(t).is_err() => {
            format!("to_json(${param}::text)")
        }
        _ => format!("${param}::text::json"),
    }
}

/// Insert or replace one row of `<schema>.vmq_auth_acl`.
#[allow(clippy::too_many_arguments)]
pub async fn upsert(
    client: &Client,
    table: &str,
    (mountpoint, client_id, username): (&str, &str, &str),
    password: Option<&str>,
    store: Store,
    publish_acl: Option<&str>,
    subscribe_acl: Option<&str>,
) {
    let password_expr = match store {
        Store::AsIs => "$4::text",
        Store::Crypt => "crypt($4::text, gen_salt('bf', 4))",
        Store::Sha256 => "encode(sha256(convert_to($4::text, 'UTF8')), 'hex')",
    };
    let sql = format!(
        "INSERT INTO {table} (mountpoint, client_id, username, password, publish_acl, subscribe_acl)
         VALUES ($1, $2, $3, {password_expr}, {}, {})
         ON CONFLICT (mountpoint, client_id, username) DO UPDATE
         SET password = EXCLUDED.password, publish_acl = EXCLUDED.publish_acl,
             subscribe_acl = EXCLUDED.subscribe_acl",
        acl_expr(5, publish_acl),
        acl_expr(6, subscribe_acl),
    );
    client
        .execute(
            &sql,
            &[
                &mountpoint,
                &client_id,
                &username,
                &password,
                &publish_acl,
                &subscribe_acl,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("storing {username}: {e}"));
}
