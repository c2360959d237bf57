//! MariaDB/MySQL-specific tests beyond the shared suite: mosquitto-go-auth
//! mode, byte-exact keys whatever the collation, refusals that are
//! configuration errors, and the database going away and coming back.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fogg_api::dynamic::DynAuthenticator;
use fogg_api::{AclRules, AuthDecision, BackendConfig, BackendFactory, ErrorKind};
use fogg_auth_behavior::direct::{build_authenticator, login, may_publish, may_subscribe, rules};
use fogg_auth_common::passwords::{self, Pbkdf2Digest};
use fogg_auth_mysql::MysqlFactory;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

fn build(settings: &str) -> Arc<dyn DynAuthenticator> {
    build_authenticator(&MysqlFactory, "my", settings)
}

/// mosquitto-go-auth's example MySQL tables, in a database of their own.
async fn goauth_database(conn: &mut Conn) -> String {
    let db = format!("goauth_{:016x}", rand::random::<u64>());
    conn.query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db}.test_user (
           id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
           username VARCHAR(100) NOT NULL,
           password_hash VARCHAR(200),
           is_admin BOOLEAN NOT NULL DEFAULT FALSE)"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db}.test_acl (
           id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
           test_user_id INT NOT NULL,
           topic VARCHAR(200) NOT NULL,
           rw INT NOT NULL)"
    ))
    .await
    .unwrap();
    db
}

async fn goauth_user(
    conn: &mut Conn,
    db: &str,
    username: &str,
    hash: Option<&str>,
    admin: bool,
    acls: &[(&str, i32)],
) {
    conn.exec_drop(
        format!("INSERT INTO {db}.test_user (username, password_hash, is_admin) VALUES (?, ?, ?)"),
        (username, hash, admin),
    )
    .await
    .unwrap();
    let id = conn.last_insert_id().unwrap();
    for (topic, rw) in acls {
        conn.exec_drop(
            format!("INSERT INTO {db}.test_acl (test_user_id, topic, rw) VALUES (?, ?, ?)"),
            (id, topic, rw),
        )
        .await
        .unwrap();
    }
}

fn goauth_settings(url: &str, db: &str, acl: bool) -> String {
    let mut s = format!(
        "url = {url:?}\nmode = \"goauth\"\n\
         user_query = \"SELECT password_hash FROM {db}.test_user WHERE username = ? LIMIT 1\"\n\
         superuser_query = \"SELECT COUNT(*) FROM {db}.test_user WHERE username = ? AND is_admin = TRUE\"\n"
    );
    if acl {
        s.push_str(&format!(
            "acl_query = \"SELECT test_acl.topic FROM {db}.test_acl JOIN {db}.test_user ON test_user.id = test_acl.test_user_id WHERE test_user.username = ? AND (rw = ? OR rw = 3)\"\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goauth_users_hashes_superusers_and_access_codes() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let mut conn = common::connect(shared.server.url()).await;
    let db = goauth_database(&mut conn).await;
    let pbkdf2 = passwords::hash_goauth_pbkdf2(b"pbkdf2-pw", Pbkdf2Digest::Sha512, 1000);
    let bcrypt = passwords::hash_bcrypt(b"bcrypt-pw", 4).unwrap();
    let argon2 = passwords::hash_argon2id(b"argon2-pw", 4096, 3, 2).unwrap();
    let acls = [
        ("r/#", 1),
        ("w/#", 2),
        ("rw/%u", 3),
        ("s/+", 4),
        ("bad/#/x", 2),
    ];
    goauth_user(&mut conn, &db, "pbkdf2-user", Some(&pbkdf2), false, &acls).await;
    goauth_user(&mut conn, &db, "bcrypt-user", Some(&bcrypt), false, &acls).await;
    goauth_user(&mut conn, &db, "argon2-user", Some(&argon2), false, &acls).await;
    goauth_user(&mut conn, &db, "admin", Some(&bcrypt), true, &[]).await;
    goauth_user(&mut conn, &db, "no-hash", None, false, &[]).await;
    goauth_user(&mut conn, &db, "odd-hash", Some("md5:abc"), false, &[]).await;

    let auth = build(&goauth_settings(shared.server.url(), &db, true));
    for (user, password) in [
        ("pbkdf2-user", "pbkdf2-pw"),
        ("bcrypt-user", "bcrypt-pw"),
        ("argon2-user", "argon2-pw"),
    ] {
        let rules = rules(auth.as_ref(), user, password).await;
        assert!(may_subscribe(&rules, user, "r/x"), "{user} read");
        assert!(!may_publish(&rules, user, "r/x"), "{user} read");
        assert!(may_publish(&rules, user, "w/x"), "{user} write");
        assert!(!may_subscribe(&rules, user, "w/x"), "{user} write");
        assert!(
            may_publish(&rules, user, &format!("rw/{user}")),
            "{user} rw"
        );
        assert!(
            may_subscribe(&rules, user, &format!("rw/{user}")),
            "{user} rw"
        );
        assert!(!may_publish(&rules, user, "rw/someone-else"), "{user} %u");
        assert!(may_subscribe(&rules, user, "s/x"), "{user} subscribe");
        assert!(!may_publish(&rules, user, "s/x"), "{user} subscribe");
        assert!(
            !may_publish(&rules, user, "bad/y/x"),
            "a malformed row grants nothing"
        );
        let wrong = auth.authenticate(&login(user, "wrong")).await.unwrap();
        assert_eq!(wrong, AuthDecision::Deny, "{user}");
    }
    let admin = rules(auth.as_ref(), "admin", "bcrypt-pw").await;
    assert_eq!(*admin, AclRules::allow_all(), "superuser");
    for (user, expected) in [
        ("stranger", AuthDecision::Next),
        ("no-hash", AuthDecision::Deny),
        ("odd-hash", AuthDecision::Deny),
    ] {
        assert_eq!(
            auth.authenticate(&login(user, "x")).await.unwrap(),
            expected,
            "{user}"
        );
    }
    let auth = build(&goauth_settings(shared.server.url(), &db, false));
    let rules = rules(auth.as_ref(), "bcrypt-user", "bcrypt-pw").await;
    assert_eq!(*rules, AclRules::allow_all(), "no acl_query: everything");
}

/// The usual collations compare `Alice` = `alice` and `a` = `a `; VerneMQ's
/// keys are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_compare_as_bytes_whatever_the_collation() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let mut conn = common::connect(shared.server.url()).await;
    let table = format!("{}.vmq_auth_acl", shared.database);
    let user = format!("Case-{:08x}", rand::random::<u32>());
    common::upsert(
        &mut conn,
        &table,
        ("", "*", &user),
        Some("pw"),
        common::store_for("sha256"),
        Some(r#"[{"pattern": "x"}]"#),
        None,
    )
    .await;
    let auth = build(&format!(
        "url = {:?}\ntable = {table:?}\npassword_hash_method = \"sha256\"",
        shared.server.url()
    ));
    assert!(matches!(
        auth.authenticate(&login(&user, "pw")).await.unwrap(),
        AuthDecision::Allow(_)
    ));
    for other in [user.to_lowercase(), user.to_uppercase(), format!("{user} ")] {
        assert_eq!(
            auth.authenticate(&login(&other, "pw")).await.unwrap(),
            AuthDecision::Next,
            "{other:?}"
        );
    }
    // The client id and mountpoint too.
    let mut info = login(&user, "pw");
    info.client_id = "*".to_owned();
    assert!(matches!(
        auth.authenticate(&info).await.unwrap(),
        AuthDecision::Allow(_)
    ));
    info.mountpoint = " ".to_owned();
    assert_eq!(auth.authenticate(&info).await.unwrap(), AuthDecision::Next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_an_error_not_a_denial() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let auth = build(&format!(
        "url = {:?}\ntable = \"no_such_db.vmq_auth_acl\"",
        shared.server.url()
    ));
    let e = auth.authenticate(&login("u", "pw")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
    assert!(!e.retryable);
    assert!(!e.to_string().contains("root:fogg@"), "{e}");
}

/// The database stopped: every CONNECT is an Unavailable / Timeout error
/// (retryable), never a denial; started again: answers come back at once,
/// through the same pool (its dead connections replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_an_error_and_the_pool_recovers() {
    let mut server = fogg_testcontainers::require!(fogg_testcontainers::mysql().await);
    if server.origin() == fogg_testcontainers::Origin::Url {
        eprintln!("SKIPPED: outage test needs a server it can stop (not FOGG_TEST_MYSQL_URL)");
        return;
    }
    let mut conn = common::connect(server.url()).await;
    common::create_database(&mut conn, "outage").await;
    common::upsert(
        &mut conn,
        "outage.vmq_auth_acl",
        ("", "*", "alice"),
        Some("pw"),
        common::store_for("password"),
        Some(r#"[{"pattern": "a/#"}]"#),
        None,
    )
    .await;
    drop(conn);
    let auth = build(&format!(
        "url = {:?}\ntable = \"outage.vmq_auth_acl\"\npool_size = 4\nconnect_timeout = \"2s\"",
        server.url()
    ));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.authenticate(&login("alice", "pw")).await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(matches!(answer, Ok(AuthDecision::Allow(_))), "{answer:?}");
    }

    server.stop().await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let e = auth.authenticate(&login("alice", "pw")).await.unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            "{e}"
        );
        assert!(e.retryable, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert!(!e.to_string().contains("root:fogg@"), "{e}");
    }

    server.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = 0;
    loop {
        match auth.authenticate(&login("alice", "pw")).await {
            Ok(AuthDecision::Allow(_)) => break,
            Ok(other) => panic!("after the restart: {other:?}"),
            Err(e) => {
                assert!(e.retryable, "{e}");
                failures += 1;
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        failures, 0,
        "dead pooled connections must be replaced at once"
    );
    assert_eq!(
        auth.authenticate(&login("alice", "wrong")).await.unwrap(),
        AuthDecision::Deny
    );
}

/// The shipped example works as written: its SQL creates the table, a user
/// and the broker's account; its `[backends.mysql]` table (with this
/// server's address) lets that user in with the rules of the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_works() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conf.d/examples/mysql.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    // The SQL: the comment lines from `CREATE TABLE` to the first blank comment line.
    let sql: String = text
        .lines()
        .skip_while(|l| !l.contains("CREATE TABLE"))
        .take_while(|l| l.trim() != "#")
        .map(|l| l.trim_start_matches('#').trim_start())
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut conn = common::connect(shared.server.url()).await;
    conn.query_drop("CREATE DATABASE vernemq_db").await.unwrap();
    conn.query_drop("USE vernemq_db").await.unwrap();
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.query_drop(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    assert!(sql.contains("INSERT INTO vmq_auth_acl"), "{sql}");

    let table: toml::Table = text.parse().unwrap();
    let mut backend = table["backends"]["mysql"].as_table().unwrap().clone();
    assert_eq!(backend.remove("kind").unwrap().as_str(), Some("mysql"));
    let url = backend["url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1:3306", &shared.server.addr());
    backend.insert("url".into(), url.into());
    let auth = MysqlFactory
        .build(&BackendConfig {
            name: "mysql".to_owned(),
            kind: "mysql".to_owned(),
            settings: backend,
        })
        .unwrap()
        .authenticator
        .unwrap();
    let rules = rules(auth.as_ref(), "alice", "secret").await;
    assert!(may_publish(&rules, "alice", "home/alice/lamp"));
    assert!(may_subscribe(&rules, "alice", "news/today"));
    assert!(!may_publish(&rules, "alice", "news/today"));
    assert_eq!(
        auth.authenticate(&login("alice", "wrong")).await.unwrap(),
        AuthDecision::Deny
    );
}
