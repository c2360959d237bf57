//! PostgreSQL-specific tests beyond the shared suite: mosquitto-go-auth mode,
//! ACL text the `json` columns of the suite cannot hold, refusals that are
//! configuration errors, and the database going away and coming back.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fogg_api::dynamic::DynAuthenticator;
use fogg_api::{AclRules, AuthDecision, BackendConfig, BackendFactory, ErrorKind};
use fogg_auth_behavior::direct::{build_authenticator, login, may_publish, may_subscribe, rules};
use fogg_auth_common::passwords::{self, Pbkdf2Digest};
use fogg_auth_postgres::PostgresFactory;
use tokio_postgres::Client;

fn build(settings: &str) -> Arc<dyn DynAuthenticator> {
    build_authenticator(&PostgresFactory, "pg", settings)
}

/// mosquitto-go-auth's example tables, in a schema of their own.
async fn goauth_schema(client: &Client) -> String {
    let schema = format!("goauth_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.test_user (
               id bigserial PRIMARY KEY,
               username character varying(100) NOT NULL,
               password_hash character varying(200),
               is_admin boolean NOT NULL DEFAULT false);
             CREATE TABLE {schema}.test_acl (
               id bigserial PRIMARY KEY,
               test_user_id bigint NOT NULL REFERENCES {schema}.test_user ON DELETE CASCADE,
               topic character varying(200) NOT NULL,
               rw int NOT NULL);"
        ))
        .await
        .unwrap();
    schema
}

async fn goauth_user(
    client: &Client,
    schema: &str,
    username: &str,
    hash: Option<&str>,
    admin: bool,
    acls: &[(&str, i32)],
) {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {schema}.test_user (username, password_hash, is_admin) VALUES ($1, $2, $3) RETURNING id"
            ),
            &[&username, &hash, &admin],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    for (topic, rw) in acls {
        client
            .execute(
                &format!(
                    "INSERT INTO {schema}.test_acl (test_user_id, topic, rw) VALUES ($1, $2, $3)"
                ),
                &[&id, topic, rw],
            )
            .await
            .unwrap();
    }
}

fn goauth_settings(url: &str, schema: &str, acl: bool) -> String {
    let mut s = format!(
        "url = {url:?}\nmode = \"goauth\"\n\
         user_query = \"SELECT password_hash FROM {schema}.test_user WHERE username = $1 LIMIT 1\"\n\
         superuser_query = \"SELECT COUNT(*) FROM {schema}.test_user WHERE username = $1 AND is_admin = true\"\n"
    );
    if acl {
        s.push_str(&format!(
            "acl_query = \"SELECT test_acl.topic FROM {schema}.test_acl JOIN {schema}.test_user ON test_user.id = test_acl.test_user_id WHERE test_user.username = $1 AND (rw = $2 OR rw = 3)\"\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goauth_users_hashes_superusers_and_access_codes() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let client = common::connect(shared.server.url()).await;
    let schema = goauth_schema(&client).await;
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
    goauth_user(&client, &schema, "pbkdf2-user", Some(&pbkdf2), false, &acls).await;
    goauth_user(&client, &schema, "bcrypt-user", Some(&bcrypt), false, &acls).await;
    goauth_user(&client, &schema, "argon2-user", Some(&argon2), false, &acls).await;
    goauth_user(&client, &schema, "admin", Some(&bcrypt), true, &[]).await;
    goauth_user(&client, &schema, "no-hash", None, false, &[]).await;
    goauth_user(&client, &schema, "odd-hash", Some("md5:abc"), false, &[]).await;

    let auth = build(&goauth_settings(shared.server.url(), &schema, true));
    for (user, password) in [
        ("pbkdf2-user", "pbkdf2-pw"),
        ("bcrypt-user", "bcrypt-pw"),
        ("argon2-user", "argon2-pw"),
    ] {
        let rules = rules(auth.as_ref(), user, password).await;
        // 1 read and 4 subscribe: subscribe; 2 write: publish; 3: both.
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
        assert!(!may_publish(&rules, user, "other"), "{user}");
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
    // Without an ACL query go-auth grants everything.
    let auth = build(&goauth_settings(shared.server.url(), &schema, false));
    let rules = rules(auth.as_ref(), "bcrypt-user", "bcrypt-pw").await;
    assert_eq!(*rules, AclRules::allow_all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goauth_access_code_may_be_any_integer_or_text_column() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let client = common::connect(shared.server.url()).await;
    let schema = format!("goauth_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.users (username text PRIMARY KEY, hash text);
             CREATE TABLE {schema}.acls (username text, topic text, acc_small smallint, acc_text text);"
        ))
        .await
        .unwrap();
    let hash = passwords::hash_bcrypt(b"pw", 4).unwrap();
    client
        .execute(
            &format!("INSERT INTO {schema}.users VALUES ('u', $1)"),
            &[&hash],
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.acls VALUES ('u', 'pub/#', 2, '2'), ('u', 'sub/#', 4, '4');"
        ))
        .await
        .unwrap();
    for column in ["acc_small", "acc_text"] {
        let auth = build(&format!(
            "url = {:?}\nmode = \"goauth\"\n\
             user_query = \"SELECT hash FROM {schema}.users WHERE username = $1\"\n\
             acl_query = \"SELECT topic FROM {schema}.acls WHERE username = $1 AND {column} = $2\"\n",
            shared.server.url()
        ));
        let rules = rules(auth.as_ref(), "u", "pw").await;
        assert!(may_publish(&rules, "u", "pub/x"), "{column}");
        assert!(!may_publish(&rules, "u", "sub/x"), "{column}");
        assert!(may_subscribe(&rules, "u", "sub/x"), "{column}");
    }
}

/// Users who made `publish_acl` / `subscribe_acl` `text` (or `jsonb`) columns
/// are served too; text that is not JSON refuses the CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_columns_of_text_and_malformed_rows() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let client = common::connect(shared.server.url()).await;
    let schema = format!("textacl_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.vmq_auth_acl (
               mountpoint varchar(10) NOT NULL, client_id varchar(128) NOT NULL,
               username varchar(128) NOT NULL, password varchar(128),
               publish_acl text, subscribe_acl jsonb,
               PRIMARY KEY (mountpoint, client_id, username));"
        ))
        .await
        .unwrap();
    let table = format!("{schema}.vmq_auth_acl");
    let insert = |user: &'static str, publish: &'static str| {
        let client = &client;
        let table = &table;
        async move {
            client
                .execute(
                    &format!(
                        "INSERT INTO {table} VALUES ('', '*', $1, crypt('pw', gen_salt('bf', 4)), $2, '[{{\"pattern\": \"s/#\"}}]')"
                    ),
                    &[&user, &publish],
                )
                .await
                .unwrap();
        }
    };
    insert("good", r#"[{"pattern": "p/#", "max_qos": 1}]"#).await;
    insert("not-json", "[{\"pattern\": ").await;
    insert("not-array", r#"{"pattern": "p"}"#).await;
    insert("bad-filter", r#"[{"pattern": "p/#/x"}]"#).await;
    let auth = build(&format!(
        "url = {:?}\ntable = {table:?}",
        shared.server.url()
    ));
    let good = rules(auth.as_ref(), "good", "pw").await;
    assert!(may_publish(&good, "good", "p/x"));
    assert!(may_subscribe(&good, "good", "s/x"));
    for user in ["not-json", "not-array", "bad-filter"] {
        assert_eq!(
            auth.authenticate(&login(user, "pw")).await.unwrap(),
            AuthDecision::Deny,
            "{user}"
        );
    }
}

/// A table that does not exist is a configuration error (the client gets
/// "server unavailable"), never a denial or an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_an_error_not_a_denial() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let auth = build(&format!(
        "url = {:?}\ntable = \"no_such_schema.vmq_auth_acl\"",
        shared.server.url()
    ));
    let e = auth.authenticate(&login("u", "pw")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
    assert!(e.message.contains("42P01"), "{e}");
    assert!(!e.to_string().contains("postgres:postgres@"), "{e}");
}

/// The database stopped: every CONNECT is an Unavailable / Timeout error
/// (retryable), never a denial; started again: answers come back by
/// themselves, through the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_an_error_and_the_pool_recovers() {
    let mut server = fogg_testcontainers::require!(fogg_testcontainers::postgres().await);
    if server.origin() == fogg_testcontainers::Origin::Url {
        eprintln!("SKIPPED: outage test needs a server it can stop (not FOGG_TEST_POSTGRES_URL)");
        return;
    }
    let client = common::connect(server.url()).await;
    common::create_schema(&client, "outage").await;
    common::upsert(
        &client,
        "outage.vmq_auth_acl",
        ("", "*", "alice"),
        Some("pw"),
        common::Store::Crypt,
        Some(r#"[{"pattern": "a/#"}]"#),
        None,
    )
    .await;
    drop(client);
    let auth = build(&format!(
        "url = {:?}\ntable = \"outage.vmq_auth_acl\"\npool_size = 4\nconnect_timeout = \"2s\"",
        server.url()
    ));
    // Several connections in the pool, so stale ones must be dropped.
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
        assert!(!e.to_string().contains("postgres:postgres@"), "{e}");
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
    // Connections the server closed are dropped by the pool's recycle check.
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
/// and a role; its `[backends.pg]` table (with this server's address) lets
/// that user in with the rules of the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_works() {
    let Some(shared) = common::shared().await else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conf.d/examples/postgres.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    // The SQL: the comment lines from `CREATE EXTENSION` to the first blank comment line.
    let sql: String = text
        .lines()
        .skip_while(|l| !l.contains("CREATE EXTENSION"))
        .take_while(|l| l.trim() != "#")
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n")
        // This server's pgcrypto is there already (the other tests made it).
        .replace(
            "CREATE EXTENSION pgcrypto",
            "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        );
    assert!(sql.contains("INSERT INTO vmq_auth_acl"), "{sql}");
    let client = common::connect(shared.server.url()).await;
    client.batch_execute(&sql).await.unwrap();

    let table: toml::Table = text.parse().unwrap();
    let mut backend = table["backends"]["pg"].as_table().unwrap().clone();
    assert_eq!(backend.remove("kind").unwrap().as_str(), Some("postgres"));
    let url = backend["url"].as_str().unwrap().replace(
        "127.0.0.1:5432/vernemq_db",
        &format!("{}/postgres", shared.server.addr()),
    );
    backend.insert("url".into(), url.into());
    let auth = PostgresFactory
        .build(&BackendConfig {
            name: "pg".to_owned(),
            kind: "postgres".to_owned(),
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

/// TLS by `sslmode`, against a PostgreSQL with `ssl = on` and a certificate
/// for 127.0.0.1 from a CA made here: `verify-full` / `verify-ca` with that
/// CA and `require` connect over TLS, `disable` in clear; `verify-full` with
/// another CA is refused as "unavailable", never as a bad password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_follows_sslmode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let server = fogg_testcontainers::require!(fogg_testcontainers::postgres().await);
    let Some(root) = server.data_dir().map(std::path::Path::to_path_buf) else {
        eprintln!("SKIPPED: the TLS test needs a server it can configure (not a URL)");
        return;
    };
    // The server reads its key only when its own user owns it, mode 0600.
    let owner = std::fs::metadata(root.join("pgdata")).unwrap();
    let ca = fogg_transport::test_pki::Ca::new("Fogg test CA");
    let files = ca.server().write(&root, "server");
    for path in [&files.cert, &files.key] {
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(client_dir.path(), "ca.pem");
    let other_ca =
        fogg_transport::test_pki::Ca::new("Another CA").write(client_dir.path(), "other.pem");

    let client = common::connect(server.url()).await;
    for statement in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            files.cert.display()
        ),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", files.key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::connect(server.url())
        .await
        .query_one("SHOW ssl", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        != "on"
    {
        assert!(Instant::now() < deadline, "ssl not on after reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::create_schema(&client, "tls").await;
    common::upsert(
        &client,
        "tls.vmq_auth_acl",
        ("", "*", "alice"),
        Some("pw"),
        common::Store::Crypt,
        Some(r#"[{"pattern": "a/#"}]"#),
        None,
    )
    .await;

    let ca = ca_path.display();
    for (i, (params, encrypted)) in [
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        ("sslmode=require".to_owned(), true),
        ("sslmode=prefer".to_owned(), true),
        ("sslmode=disable".to_owned(), false),
    ]
    .into_iter()
    .enumerate()
    {
        let app = format!("fogg-tls-{i}");
        let auth = build(&format!(
            "url = \"{}?{params}&application_name={app}\"\ntable = \"tls.vmq_auth_acl\"",
            server.url()
        ));
        let answer = auth.authenticate(&login("alice", "pw")).await;
        assert!(
            matches!(answer, Ok(AuthDecision::Allow(_))),
            "{params}: {answer:?}"
        );
        // The pool keeps its connection: the server says how it came in.
        let ssl: bool = client
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ssl, encrypted, "{params}");
    }
    let auth = build(&format!(
        "url = \"{}?sslmode=verify-full&sslrootcert={}\"\ntable = \"tls.vmq_auth_acl\"\nconnect_timeout = \"2s\"",
        server.url(),
        other_ca.display()
    ));
    let e = auth.authenticate(&login("alice", "pw")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}
