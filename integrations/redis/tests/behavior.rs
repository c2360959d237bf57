//! The shared auth behavior suite against a real Redis, in both layouts:
//!
//! * `vernemq`: users stored as VerneMQ stores them (key
//!   `["mp","client","user"]`, JSON value), every hash Fogg checks;
//! * `goauth`: users stored as mosquitto-go-auth stores them (`<user>` =
//!   hash, ACL sets); the suite's cases about client-id rows, mountpoints,
//!   ACL limits, modifiers and ACL text do not apply to that layout and say
//!   so (the go-auth specifics are in `tests/goauth.rs`).
//!
//! One Redis server per case (a local `redis-server` starts in well under a
//! second), under a random key prefix, built through the registry from a
//! settings table as the binary does.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod common;

use fogg_api::BackendFactory;
use fogg_auth_behavior::{
    AuthFixture, Features, HashMethod, Pbkdf2Digest, RawPassword, RawUser, Scheme, TestUser,
};
use fogg_auth_common::passwords;
use fogg_auth_common::vernemq::redis_key;
use fogg_auth_redis::RedisFactory;
use fogg_testcontainers::TestServer;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

struct RedisFixture {
    server: TestServer,
    prefix: String,
    mode: &'static str,
    seed: Mutex<redis::aio::MultiplexedConnection>,
}

impl RedisFixture {
    async fn start(mode: &'static str) -> Result<RedisFixture, fogg_testcontainers::Error> {
        let server = fogg_testcontainers::redis().await?;
        let seed = common::seed_connection(server.url()).await;
        Ok(RedisFixture {
            prefix: common::unique_prefix(),
            server,
            mode,
            seed: Mutex::new(seed),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn cmd(&self, args: &[&[u8]]) {
        let mut conn = self.seed.lock().await;
        common::run(&mut conn, args).await;
    }

    /// A stored hash for `password` with `hash`'s scheme.
    fn hash(hash: &HashMethod, password: &str) -> String {
        match hash {
            HashMethod::Broker(scheme) => {
                passwords::hash_for_tests(*scheme, password.as_bytes()).expect("hash")
            }
            HashMethod::Database(name) => panic!("Redis has no database-side method {name}"),
        }
    }

    // -- VerneMQ layout ------------------------------------------------------

    async fn store_vernemq(&self, mountpoint: &str, client_id: &str, username: &str, doc: Value) {
        let key = self.key(&redis_key(mountpoint, client_id, username));
        let value = serde_json::to_vec(&doc).unwrap();
        self.cmd(&[b"SET", key.as_bytes(), &value]).await;
    }

    // -- go-auth layout ------------------------------------------------------

    async fn store_goauth(
        &self,
        username: &str,
        hash: &str,
        publish: &[String],
        subscribe: &[String],
    ) {
        let user = self.key(username);
        for suffix in [":su", ":racls", ":wacls", ":rwacls", ":sacls"] {
            let key = format!("{user}{suffix}");
            self.cmd(&[b"DEL", key.as_bytes()]).await;
        }
        self.cmd(&[b"SET", user.as_bytes(), hash.as_bytes()]).await;
        // Publish rights as write (2) rows; subscribe rights alternate
        // between read (1) and subscribe (4) rows: both mean "may subscribe".
        for topic in publish {
            let key = format!("{user}:wacls");
            self.cmd(&[b"SADD", key.as_bytes(), topic.as_bytes()]).await;
        }
        for (i, topic) in subscribe.iter().enumerate() {
            let key = format!("{user}:{}", if i % 2 == 0 { "racls" } else { "sacls" });
            self.cmd(&[b"SADD", key.as_bytes(), topic.as_bytes()]).await;
        }
    }
}

/// An ACL column's text as the value's field: its JSON when it parses, else
/// the text as a JSON string (which the backend must refuse too).
fn acl_field(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl AuthFixture for RedisFixture {
    fn factory(&self) -> Box<dyn BackendFactory> {
        Box::new(RedisFactory)
    }

    fn settings(&self, _hash: &HashMethod) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("url".into(), self.server.url().into());
        table.insert("mode".into(), self.mode.into());
        table.insert("key_prefix".into(), self.prefix.clone().into());
        table
    }

    fn features(&self) -> Features {
        if self.mode == "goauth" {
            return Features {
                // go-auth's default hasher first.
                hash_methods: vec![
                    HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512)),
                    HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256)),
                    HashMethod::Broker(Scheme::Bcrypt),
                    HashMethod::Broker(Scheme::Argon2),
                ],
                client_ids: false,
                mountpoints: false,
                acl_limits: false,
                acl_modifiers: false,
                raw_acl: false,
                // Stored as an empty hash.
                users_without_password: true,
            };
        }
        // VerneMQ documents bcrypt; Fogg checks every format it knows.
        Features::vernemq(vec![
            HashMethod::Broker(Scheme::Bcrypt),
            HashMethod::Broker(Scheme::Sha512Crypt),
            HashMethod::Broker(Scheme::MosquittoSha512),
            HashMethod::Broker(Scheme::MosquittoPbkdf2),
            HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512)),
            HashMethod::Broker(Scheme::Argon2),
        ])
    }

    async fn seed_user(&self, user: &TestUser) {
        if self.mode == "goauth" {
            assert_eq!(user.client_id, "*", "go-auth has no client-id rows");
            let hash = user
                .password
                .as_ref()
                .map(|p| Self::hash(&user.hash, p))
                .unwrap_or_default();
            let plain = |patterns: Vec<(String, bool)>| -> Vec<String> {
                patterns
                    .into_iter()
                    .map(|(pattern, plain)| {
                        assert!(plain, "go-auth ACLs have topics only: {pattern}");
                        pattern
                    })
                    .collect()
            };
            let publish = plain(
                user.publish_acl
                    .iter()
                    .map(|p| (p.pattern.clone(), p.is_plain()))
                    .collect(),
            );
            let subscribe = plain(
                user.subscribe_acl
                    .iter()
                    .map(|s| (s.pattern.clone(), s.is_plain()))
                    .collect(),
            );
            self.store_goauth(&user.username, &hash, &publish, &subscribe)
                .await;
            return;
        }
        self.store_vernemq(
            &user.mountpoint,
            &user.client_id,
            &user.username,
            user.vernemq_document(),
        )
        .await;
    }

    async fn seed_raw(&self, user: &RawUser) {
        let hash = match &user.password {
            RawPassword::Stored(s) => s.clone(),
            RawPassword::Plain(p) => Self::hash(&user.hash, p),
        };
        if self.mode == "goauth" {
            assert!(
                user.publish_acl.is_none() && user.subscribe_acl.is_none(),
                "go-auth has no ACL text"
            );
            self.store_goauth(&user.username, &hash, &[], &[]).await;
            return;
        }
        let mut doc = Map::new();
        doc.insert("passhash".to_owned(), json!(hash));
        if let Some(text) = &user.publish_acl {
            doc.insert("publish_acl".to_owned(), acl_field(text));
        }
        if let Some(text) = &user.subscribe_acl {
            doc.insert("subscribe_acl".to_owned(), acl_field(text));
        }
        self.store_vernemq(
            &user.mountpoint,
            &user.client_id,
            &user.username,
            Value::Object(doc),
        )
        .await;
    }
}

mod vernemq {
    use super::RedisFixture;

    fogg_auth_behavior::auth_behavior_tests!(std::future::ready(fogg_testcontainers::require!(
        RedisFixture::start("vernemq").await
    )));
}

mod goauth {
    use super::RedisFixture;

    fogg_auth_behavior::auth_behavior_tests!(std::future::ready(fogg_testcontainers::require!(
        RedisFixture::start("goauth").await
    )));
}
