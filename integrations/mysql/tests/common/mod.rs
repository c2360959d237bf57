//! What the MariaDB / MySQL tests share: one server per test binary (started
//! by the first test that needs it, with a database of its own per run), a
//! seeding connection, and the INSERTs that store users.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

use fogg_testcontainers::TestServer;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use tokio::sync::OnceCell;

/// The server every test of this binary shares, and this run's database.
pub struct Shared {
    pub server: TestServer,
    pub database: String,
    /// Kept open for the life of the process; see [`kill_on_exit`].
    _reaper: Mutex<Option<ChildStdin>>,
}

static SHARED: OnceCell<Option<Shared>> = OnceCell::const_new();

/// The shared server, or `None` after a loud `SKIPPED:` line when this
/// machine has no MariaDB/MySQL (a failure under `CI=true`).
pub async fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| async {
            let server = fogg_testcontainers::require(fogg_testcontainers::mysql().await)?;
            let database = format!("fogg_test_{:016x}", rand::random::<u64>());
            let mut conn = connect(server.url()).await;
            create_database(&mut conn, &database).await;
            drop(conn);
            let reaper = kill_on_exit(&server);
            Some(Shared {
                server,
                database,
                _reaper: Mutex::new(reaper),
            })
        })
        .await
        .as_ref()
}

/// A static is never dropped, so a local server started for the whole
/// binary would outlive it. A `bash` child waits for EOF on a pipe only this
/// process holds (close-on-exec: no other child inherits it); when the
/// process exits, however it exits, the pipe closes and the child kills the
/// server's process group and removes its directory.
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
    stdin.flush().ok()?;
    Some(stdin)
}

/// One connection (no pool: it belongs to the calling runtime).
pub async fn connect(url: &str) -> Conn {
    let opts = mysql_async::OptsBuilder::from_opts(Opts::from_url(url).expect("test URL"))
        .prefer_socket(false);
    Conn::new(opts).await.expect("connect to the test MariaDB")
}

/// VerneMQ's table, exactly as its documentation creates it, in `database`.
pub async fn create_database(conn: &mut Conn, database: &str) {
    conn.query_drop(format!("CREATE DATABASE {database}"))
        .await
        .expect("create the test database");
    conn.query_drop(format!(
        "CREATE TABLE {database}.vmq_auth_acl (
           mountpoint VARCHAR(10) NOT NULL,
           client_id VARCHAR(128) NOT NULL,
           username VARCHAR(128) NOT NULL,
           password VARCHAR(128),
           publish_acl TEXT,
           subscribe_acl TEXT,
           CONSTRAINT vmq_auth_acl_primary_key PRIMARY KEY (mountpoint, client_id, username)
         )"
    ))
    .await
    .expect("create the test table");
}

/// How a password goes into the `password` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// This text as is.
    AsIs,
    /// The SQL function of a `password_hash_method`: `PASSWORD(?)`,
    /// `MD5(?)`, `SHA1(?)`, `SHA2(?, 256)`.
    Sql(&'static str),
}

pub fn store_for(method: &str) -> Store {
    Store::Sql(match method {
        "password" => "PASSWORD(?)",
        "md5" => "MD5(?)",
        "sha1" => "SHA1(?)",
        "sha256" => "SHA2(?, 256)",
        other => panic!("no database method {other}"),
    })
}

/// Insert or replace one row of `table`.
pub async fn upsert(
    conn: &mut Conn,
    table: &str,
    (mountpoint, client_id, username): (&str, &str, &str),
    password: Option<&str>,
    store: Store,
    publish_acl: Option<&str>,
    subscribe_acl: Option<&str>,
) {
    let password_expr = match store {
        Store::AsIs => "?",
        Store::Sql(expr) => expr,
    };
    let sql = format!(
        "INSERT INTO {table} (mountpoint, client_id, username, password, publish_acl, subscribe_acl)
         VALUES (?, ?, ?, {password_expr}, ?, ?)
         ON DUPLICATE KEY UPDATE password = VALUES(password), publish_acl = VALUES(publish_acl),
           subscribe_acl = VALUES(subscribe_acl)"
    );
    let value = |s: Option<&str>| s.map_or(Value::NULL, Value::from);
    conn.exec_drop(
        sql,
        vec![
            Value::from(mountpoint),
            Value::from(client_id),
            Value::from(username),
            value(password),
            value(publish_acl),
            value(subscribe_acl),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("storing {username}: {e}"));
}
