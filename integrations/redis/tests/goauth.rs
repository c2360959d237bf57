//! mosquitto-go-auth's Redis layout, beyond what the shared suite can say:
//! superusers, `common:` ACLs with `%u` / `%c`, each access code, its
//! hashes and salt encodings, malformed data.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod common;

use common::{authenticate, client, may_publish, may_subscribe, rules, run, settings};
use fogg_api::{AclRules, AuthDecision};
use fogg_auth_common::passwords::{self, Pbkdf2Digest, Scheme};
use fogg_testcontainers::{TestServer, require};
use redis::aio::MultiplexedConnection;

struct GoAuth {
    server: TestServer,
    prefix: String,
    conn: MultiplexedConnection,
}

impl GoAuth {
    async fn start() -> Result<GoAuth, fogg_testcontainers::Error> {
        let server = fogg_testcontainers::redis().await?;
        let conn = common::seed_connection(server.url()).await;
        Ok(GoAuth {
            server,
            prefix: common::unique_prefix(),
            conn,
        })
    }

    fn backend_with(&self, extra: &str) -> fogg_api::Backend {
        common::build(settings(&format!(
            "url = {:?}\nmode = \"goauth\"\nkey_prefix = {:?}\n{extra}",
            self.server.url(),
            self.prefix
        )))
        .unwrap()
    }

    fn backend(&self) -> fogg_api::Backend {
        self.backend_with("")
    }

    async fn set(&mut self, key: &str, value: &str) {
        let key = format!("{}{key}", self.prefix);
        run(&mut self.conn, &[b"SET", key.as_bytes(), value.as_bytes()]).await;
    }

    async fn sadd(&mut self, key: &str, members: &[&str]) {
        let key = format!("{}{key}", self.prefix);
        for member in members {
            run(
                &mut self.conn,
                &[b"SADD", key.as_bytes(), member.as_bytes()],
            )
            .await;
        }
    }

    /// A user with go-auth's default hash (PBKDF2-SHA512).
    async fn user(&mut self, name: &str, password: &str) {
        let hash = passwords::hash_goauth_pbkdf2(password.as_bytes(), Pbkdf2Digest::Sha512, 1000);
        self.set(name, &hash).await;
    }
}

macro_rules! start {
    () => {
        require!(GoAuth::start().await)
    };
}

#[tokio::test]
async fn each_access_code_grants_its_right() {
    let mut g = start!();
    g.user("bob", "pw").await;
    g.sadd("bob:racls", &["read/#"]).await;
    g.sadd("bob:wacls", &["write/#"]).await;
    g.sadd("bob:rwacls", &["both/#"]).await;
    g.sadd("bob:sacls", &["sub/+"]).await;
    let bob = rules(authenticate(&g.backend(), "c1", "bob", "pw").await);
    let c = client("c1", "bob");
    for (topic, publish, subscribe) in [
        ("read/x", false, true),
        ("write/x", true, false),
        ("both/x", true, true),
        ("sub/x", false, true),
        ("other", false, false),
    ] {
        assert_eq!(may_publish(&bob, &c, topic), publish, "publish {topic}");
        assert_eq!(
            may_subscribe(&bob, &c, topic),
            subscribe,
            "subscribe {topic}"
        );
    }
}

#[tokio::test]
async fn superusers_may_do_anything_with_the_right_password_only() {
    let mut g = start!();
    g.user("root", "pw").await;
    g.set("root:su", "true").await;
    g.sadd("root:racls", &["only/this"]).await;
    let backend = g.backend();
    let root = rules(authenticate(&backend, "c", "root", "pw").await);
    assert_eq!(*root, AclRules::allow_all());
    let c = client("c", "root");
    assert!(may_publish(&root, &c, "any/topic/at/all"));
    assert!(may_subscribe(&root, &c, "#"));
    assert_eq!(
        authenticate(&backend, "c", "root", "wrong").await.unwrap(),
        AuthDecision::Deny,
        "a superuser still needs the right password"
    );

    // Anything but "true" is not a superuser.
    for flag in ["false", "TRUE", "1", ""] {
        g.set("root:su", flag).await;
        let plain = rules(authenticate(&backend, "c", "root", "pw").await);
        assert_ne!(*plain, AclRules::allow_all(), "{flag:?}");
        assert!(may_subscribe(&plain, &c, "only/this"), "{flag:?}");
        assert!(!may_subscribe(&plain, &c, "#"), "{flag:?}");
    }
}

#[tokio::test]
async fn common_acls_apply_to_everyone_with_substitution() {
    let mut g = start!();
    g.user("ann", "pw-a").await;
    g.user("ben", "pw-b").await;
    g.sadd("ann:wacls", &["ann/own"]).await;
    g.sadd("common:wacls", &["devices/%c/status"]).await;
    g.sadd("common:racls", &["users/%u/inbox"]).await;
    g.sadd("common:rwacls", &["chat/all"]).await;
    g.sadd("common:sacls", &["news/+"]).await;
    let backend = g.backend();

    let ann = rules(authenticate(&backend, "dev-a", "ann", "pw-a").await);
    let c = client("dev-a", "ann");
    assert!(may_publish(&ann, &c, "ann/own"));
    assert!(may_publish(&ann, &c, "devices/dev-a/status"));
    assert!(!may_publish(&ann, &c, "devices/dev-b/status"));
    assert!(may_subscribe(&ann, &c, "users/ann/inbox"));
    assert!(!may_subscribe(&ann, &c, "users/ben/inbox"));
    assert!(may_publish(&ann, &c, "chat/all") && may_subscribe(&ann, &c, "chat/all"));
    assert!(may_subscribe(&ann, &c, "news/today") && !may_publish(&ann, &c, "news/today"));

    let ben = rules(authenticate(&backend, "dev-b", "ben", "pw-b").await);
    let c = client("dev-b", "ben");
    assert!(!may_publish(&ben, &c, "ann/own"), "ann's own rows are hers");
    assert!(may_publish(&ben, &c, "devices/dev-b/status"));
    assert!(may_subscribe(&ben, &c, "users/ben/inbox"));
}

#[tokio::test]
async fn go_auth_hashes_and_salt_encodings() {
    let mut g = start!();
    for (name, hash) in [
        (
            "pbkdf2-512",
            passwords::hash_goauth_pbkdf2(b"pw", Pbkdf2Digest::Sha512, 1000),
        ),
        (
            "pbkdf2-256",
            passwords::hash_goauth_pbkdf2(b"pw", Pbkdf2Digest::Sha256, 1000),
        ),
        ("bcrypt", passwords::hash_bcrypt(b"pw", 4).unwrap()),
        (
            "argon2id",
            passwords::hash_for_tests(Scheme::Argon2, b"pw").unwrap(),
        ),
    ] {
        g.set(name, &hash).await;
    }
    let backend = g.backend();
    for name in ["pbkdf2-512", "pbkdf2-256", "bcrypt", "argon2id"] {
        assert!(
            matches!(
                authenticate(&backend, "c", name, "pw").await,
                Ok(AuthDecision::Allow(_))
            ),
            "{name}"
        );
        assert_eq!(
            authenticate(&backend, "c", name, "pW").await.unwrap(),
            AuthDecision::Deny,
            "{name}"
        );
    }

    // go-auth's `hasher_salt_encoding = utf-8`: the salt field is used as is.
    let utf8 = utf8_salt_hash(b"pw", "saltsalt");
    g.set("utf8", &utf8).await;
    assert_eq!(
        authenticate(&g.backend(), "c", "utf8", "pw").await.unwrap(),
        AuthDecision::Deny,
        "read as base64 by default"
    );
    let backend = g.backend_with("salt_encoding = \"utf-8\"");
    assert!(matches!(
        authenticate(&backend, "c", "utf8", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));
}

/// A go-auth PBKDF2-SHA512 hash whose salt field is the salt's own text
/// (go-auth's `hasher_salt_encoding = utf-8`), made as go-auth makes it.
fn utf8_salt_hash(password: &[u8], salt: &str) -> String {
    use base64::Engine as _;
    let mut key = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt.as_bytes(), 1000, &mut key);
    let hash = format!(
        "PBKDF2$sha512$1000${salt}${}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let utf8 = passwords::VerifyOptions {
        goauth_salt_encoding: passwords::SaltEncoding::Utf8,
    };
    assert!(passwords::verify_sync_with(password, &hash, utf8).unwrap());
    hash
}

#[tokio::test]
async fn unknown_users_are_next_and_anonymous_connects_too() {
    let mut g = start!();
    g.user("known", "pw").await;
    let backend = g.backend();
    assert_eq!(
        authenticate(&backend, "c", "unknown", "pw").await.unwrap(),
        AuthDecision::Next
    );
    let mut info = common::connect_info("c", "known", "pw");
    info.password = None;
    assert_eq!(
        common::authenticator(&backend)
            .authenticate(&info)
            .await
            .unwrap(),
        AuthDecision::Next
    );
}

#[tokio::test]
async fn malformed_data_is_denied_not_an_error() {
    let mut g = start!();
    // The hash key holds a set; the ACL set holds an invalid filter; the
    // superuser key is a list; the hash is not UTF-8.
    g.sadd("settype", &["x"]).await;
    g.user("badacl", "pw").await;
    g.sadd("badacl:wacls", &["a/#/b"]).await;
    g.user("badsu", "pw").await;
    let key = format!("{}badsu:su", g.prefix);
    run(&mut g.conn, &[b"RPUSH", key.as_bytes(), b"true"]).await;
    let key = format!("{}latin1", g.prefix);
    run(&mut g.conn, &[b"SET", key.as_bytes(), b"\xe9t\xe9"]).await;
    g.user("good", "pw").await;
    let backend = g.backend();
    for name in ["settype", "badacl", "badsu", "latin1"] {
        assert_eq!(
            authenticate(&backend, "c", name, "pw").await.unwrap(),
            AuthDecision::Deny,
            "{name}"
        );
    }
    assert!(matches!(
        authenticate(&backend, "c", "good", "pw").await,
        Ok(AuthDecision::Allow(_))
    ));

    // A malformed common ACL refuses everyone (a half-read ACL is never
    // applied), and the log says which set.
    g.sadd("common:sacls", &["bad/#/filter"]).await;
    assert_eq!(
        authenticate(&backend, "c", "good", "pw").await.unwrap(),
        AuthDecision::Deny
    );
}
