//! The Redis backend beyond the shared suite, on a real Redis: Redis as the
//! authentication cache (get, set, expiry), malformed VerneMQ values, an
//! outage (an error, never a denial, and recovery by itself), settings
//! errors that never quote a password, and TLS (`rediss://`, with a client
//! certificate) to a `redis-server` started here with TLS on.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{authenticate, build, rules, run, settings};
use fogg_api::{AuthDecision, Concern, ErrorKind};
use fogg_auth_common::passwords;
use fogg_auth_common::vernemq::redis_key;
use fogg_testcontainers::{TestServer, require};
use serde_json::json;

async fn vernemq_user(
    server: &TestServer,
    prefix: &str,
    client_id: &str,
    username: &str,
    password: &str,
) {
    let mut conn = common::seed_connection(server.url()).await;
    let key = format!("{prefix}{}", redis_key("", client_id, username));
    let value = json!({
        "passhash": passwords::hash_bcrypt(password.as_bytes(), 4).unwrap(),
        "publish_acl": [{"pattern": "up/%u"}],
        "subscribe_acl": [{"pattern": "down/%u", "max_qos": 1}],
    });
    run(
        &mut conn,
        &[b"SET", key.as_bytes(), value.to_string().as_bytes()],
    )
    .await;
}

fn backend_for(server: &TestServer, prefix: &str, extra: &str) -> fogg_api::Backend {
    build(settings(&format!(
        "url = {:?}\nkey_prefix = {:?}\n{extra}",
        server.url(),
        prefix
    )))
    .unwrap()
}

#[tokio::test]
async fn redis_serves_as_the_auth_cache_with_expiry() {
    let server = require!(fogg_testcontainers::redis().await);
    let prefix = common::unique_prefix();
    let backend = backend_for(&server, &prefix, "");
    assert!(backend.serves(Concern::Cache) && backend.serves(Concern::Authentication));
    let cache = common::cache(&backend);

    assert_eq!(cache.get("fogg:auth:v1:abc").await.unwrap(), None);
    cache
        .set(
            "fogg:auth:v1:abc",
            Bytes::from_static(b"{\"allow\":true}"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get("fogg:auth:v1:abc").await.unwrap().as_deref(),
        Some(&b"{\"allow\":true}"[..])
    );
    // Stored under the prefix, with a TTL.
    let mut conn = common::seed_connection(server.url()).await;
    let key = format!("{prefix}fogg:auth:v1:abc");
    let ttl = run(&mut conn, &[b"PTTL", key.as_bytes()]).await;
    let redis::Value::Int(ms) = ttl else {
        panic!("PTTL gave {ttl:?}");
    };
    assert!((1..=60_000).contains(&ms), "{ms}");
    // Replaced by a later set.
    cache
        .set(
            "fogg:auth:v1:abc",
            Bytes::from_static(b"2"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get("fogg:auth:v1:abc").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // A short TTL expires (and a zero one still expires: never "forever").
    for ttl in [Duration::from_millis(200), Duration::ZERO] {
        cache
            .set("fogg:auth:v1:short", Bytes::from_static(b"x"), ttl)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.get("fogg:auth:v1:short").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{ttl:?} did not expire");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn malformed_vernemq_values_are_denied_not_errors() {
    let server = require!(fogg_testcontainers::redis().await);
    let prefix = common::unique_prefix();
    let mut conn = common::seed_connection(server.url()).await;
    let key = |user: &str| format!("{prefix}{}", redis_key("", "*", user));
    let hash = passwords::hash_bcrypt(b"pw", 4).unwrap();
    for (user, value) in [
        ("notjson", b"{not json".to_vec()),
        ("array", b"[\"pw\"]".to_vec()),
        ("number", b"42".to_vec()),
        ("latin1", b"\xe9\xe9".to_vec()),
        ("hashtype", json!({"passhash": 7}).to_string().into_bytes()),
        (
            "aclstring",
            json!({"passhash": hash, "publish_acl": "[{\"pattern\":\"a\"}]"})
                .to_string()
                .into_bytes(),
        ),
    ] {
        run(&mut conn, &[b"SET", key(user).as_bytes(), &value]).await;
    }
    // A key of the wrong type (a list, a hash).
    run(&mut conn, &[b"RPUSH", key("list").as_bytes(), b"x"]).await;
    run(
        &mut conn,
        &[
            b"HSET",
            key("hash").as_bytes(),
            b"passhash",
            hash.as_bytes(),
        ],
    )
    .await;
    vernemq_user(&server, &prefix, "*", "good", "pw").await;

    let backend = backend_for(&server, &prefix, "");
    for user in [
        "notjson",
        "array",
        "number",
        "latin1",
        "hashtype",
        "aclstring",
        "list",
        "hash",
    ] {
        assert_eq!(
            authenticate(&backend, "c", user, "pw").await.unwrap(),
            AuthDecision::Deny,
            "{user}"
        );
    }
    let good = rules(authenticate(&backend, "c", "good", "pw").await);
    let c = common::client("c", "good");
    assert!(common::may_publish(&good, &c, "up/good"));
    assert!(!common::may_publish(&good, &c, "up/other"));
}

/// Stop Redis while the backend is in use: every answer is an error of kind
/// Unavailable (retryable), never a Deny nor an Allow; start it again and
/// the same backend answers by itself.
#[tokio::test]
async fn an_outage_is_an_error_and_recovery_needs_nothing() {
    let mut server = require!(fogg_testcontainers::redis().await);
    let prefix = common::unique_prefix();
    vernemq_user(&server, &prefix, "*", "alice", "pw").await;
    let mut conn = common::seed_connection(server.url()).await;
    let su = format!("{prefix}bob");
    let hash = passwords::hash_bcrypt(b"pw", 4).unwrap();
    run(&mut conn, &[b"SET", su.as_bytes(), hash.as_bytes()]).await;
    drop(conn);
    let vernemq = backend_for(&server, &prefix, "pool_size = 2");
    let goauth = backend_for(&server, &prefix, "mode = \"goauth\"");
    let cache = common::cache(&vernemq);

    assert!(matches!(
        authenticate(&vernemq, "c", "alice", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));
    assert!(matches!(
        authenticate(&goauth, "c", "bob", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));

    server.stop().await.unwrap();
    for _ in 0..3 {
        for (backend, user) in [(&vernemq, "alice"), (&goauth, "bob")] {
            for password in ["pw", "wrong"] {
                let e = authenticate(backend, "c", user, password)
                    .await
                    .expect_err("Redis is down: an error, not an answer");
                assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
                assert!(e.retryable, "{e}");
                assert_eq!(e.backend, "r");
            }
        }
        let e = cache.get("k").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        let e = cache
            .set("k", Bytes::from_static(b"v"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    }

    server.start().await.unwrap();
    assert!(matches!(
        authenticate(&vernemq, "c", "alice", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));
    assert_eq!(
        authenticate(&vernemq, "c", "alice", "wrong").await.unwrap(),
        AuthDecision::Deny
    );
    assert!(matches!(
        authenticate(&goauth, "c", "bob", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));
    cache
        .set("k", Bytes::from_static(b"v"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Building never connects (`fogg --check`, a start while Redis is down);
/// the first request reports the server unavailable, without the password.
#[tokio::test]
async fn building_does_not_connect_and_errors_hide_the_password() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = build(settings(&format!(
        "url = \"redis://fogg:hunter2@127.0.0.1:{port}/0\"\nconnect_timeout = \"500ms\""
    )))
    .unwrap();
    let e = authenticate(&backend, "c", "u", "p").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[test]
fn settings_errors_name_the_key_and_never_the_password() {
    let ok = build(settings("url = \"redis://127.0.0.1:6379\""));
    assert!(ok.is_ok(), "{:?}", ok.err());
    for (text, expected) in [
        ("", "`url` is required"),
        ("url = 1", "`url` must be a string"),
        (
            "url = \"http://u:hunter2@h\"",
            "`url` must start with redis://",
        ),
        (
            "url = \"redis://u:hunter2@h:notaport\"",
            "`url` is not a usable Redis URL",
        ),
        (
            "url = \"redis://h\"\nmode = \"mosquitto\"",
            "`mode` must be \"vernemq\" or \"goauth\"",
        ),
        (
            "url = \"redis://h\"\npool_size = 0",
            "`pool_size` must be between 1 and 64",
        ),
        (
            "url = \"redis://h\"\nconnect_timeout = \"0s\"",
            "`connect_timeout` must be longer than zero",
        ),
        (
            "url = \"redis://h\"\nresponse_timeout = \"soon\"",
            "`response_timeout` expected a duration",
        ),
        (
            "url = \"redis://h\"\nsalt_encoding = \"hex\"",
            "`salt_encoding` must be",
        ),
        (
            "url = \"redis://h\"\ntls_ca_file = \"/ca.pem\"",
            "need a rediss:// url",
        ),
        (
            "url = \"rediss://h\"\ntls_cert_file = \"/c.pem\"",
            "`tls_cert_file` and `tls_key_file` go together",
        ),
        (
            "url = \"rediss://h\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
            "`tls_ca_file` cannot read /nonexistent/ca.pem",
        ),
        (
            "url = \"redis://u:hunter2@h\"\npasword = \"x\"",
            "unknown key `pasword`: the redis backend takes",
        ),
    ] {
        let e = build(settings(text))
            .err()
            .unwrap_or_else(|| panic!("{text} built"));
        assert!(e.contains(expected), "{text}: {e}");
        assert!(!e.contains("hunter2"), "{text}: {e}");
        assert!(e.starts_with("backends.r: "), "{e}");
    }
}

// ---------------------------------------------------------------------------
// TLS.

/// A `redis-server` with only a TLS port, requiring client certificates;
/// killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsRedis {
    /// `None` (after a loud line; a failure under CI=true) when this machine
    /// has no redis-server built with TLS.
    fn start(dir: tempfile::TempDir, files: &Path) -> Option<TlsRedis> {
        let have = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            let message = "redis-server: not installed; run scripts/install-test-deps.sh";
            assert!(!fogg_testcontainers::in_ci(), "{message}");
            eprintln!("SKIPPED: {message}");
            return None;
        }
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let path = |name: &str| files.join(name).display().to_string();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--tls-cert-file", &path("server.crt")])
                .args(["--tls-key-file", &path("server.key")])
                .args(["--tls-ca-cert-file", &path("ca.crt")])
                .args(["--tls-auth-clients", "yes"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--dir", &dir.path().display().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(TlsRedis {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server with TLS did not start (is it built with TLS support?)");
    }
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_client_certificate() {
    let files = tempfile::tempdir().unwrap();
    let ca = fogg_transport::test_pki::Ca::new("Fogg test Redis CA");
    ca.write(files.path(), "ca.crt");
    ca.server().write(files.path(), "server");
    ca.client("fogg").write(files.path(), "client");
    let Some(redis) = TlsRedis::start(tempfile::tempdir().unwrap(), files.path()) else {
        return;
    };
    let path = |name: &str| files.path().join(name).display().to_string();
    let url = format!("rediss://localhost:{}", redis.port);
    let backend = build(settings(&format!(
        "url = {url:?}\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}",
        path("ca.crt"),
        path("client.crt"),
        path("client.key"),
    )))
    .unwrap();
    let cache = common::cache(&backend);
    cache
        .set(
            "k",
            Bytes::from_static(b"over TLS"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get("k").await.unwrap().as_deref(),
        Some(&b"over TLS"[..])
    );
    assert_eq!(
        authenticate(&backend, "c", "nobody", "pw").await.unwrap(),
        AuthDecision::Next
    );

    // Without the client certificate the server refuses the handshake: the
    // backend is unavailable, not a denial.
    let backend = build(settings(&format!(
        "url = {url:?}\ntls_ca_file = {:?}\nconnect_timeout = \"2s\"",
        path("ca.crt"),
    )))
    .unwrap();
    let e = authenticate(&backend, "c", "nobody", "pw")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e}"
    );
    // A CA that did not sign the server's certificate: refused too.
    let other = fogg_transport::test_pki::Ca::new("Someone else");
    other.write(files.path(), "other-ca.crt");
    let backend = build(settings(&format!(
        "url = {url:?}\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}",
        path("other-ca.crt"),
        path("client.crt"),
        path("client.key"),
    )))
    .unwrap();
    let e = authenticate(&backend, "c", "nobody", "pw")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e}"
    );
}
