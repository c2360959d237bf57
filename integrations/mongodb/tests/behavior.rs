//! The shared auth behavior suite against a real MongoDB-wire server
//! (`mongod`, else `secantusd-rs`, from fogg-testcontainers), in VerneMQ
//! mode: the fixture stores `vmq_acl_auth` documents in a database with a
//! random name, and the suite builds the backend through `MongoFactory`
//! from a settings table, as the broker does.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails by panicking"
)]

mod common;

use fogg_api::BackendFactory;
use fogg_auth_behavior::{
    AuthFixture, Features, HashMethod, Pbkdf2Digest, RawPassword, RawUser, Scheme, TestUser,
};
use fogg_auth_common::passwords;
use fogg_auth_mongodb::MongoFactory;
use mongodb::bson::{Bson, Document, doc};

use common::Mongo;

struct MongoFixture {
    mongo: Mongo,
}

impl MongoFixture {
    /// Replace the document with this key.
    async fn store(&self, mountpoint: &str, client_id: &str, username: &str, body: Document) {
        let key = doc! {"mountpoint": mountpoint, "client_id": client_id, "username": username};
        let mut document = key.clone();
        document.extend(body);
        self.mongo
            .collection("vmq_acl_auth")
            .replace_one(key, document)
            .upsert(true)
            .await
            .expect("store a vmq_acl_auth document");
    }
}

/// ACL text as the suite gives it: JSON becomes BSON; anything else is
/// stored as a string, which the backend must refuse.
fn acl_field(text: &str) -> Bson {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => Bson::try_from(json).expect("JSON into BSON"),
        Err(_) => Bson::String(text.to_owned()),
    }
}

impl AuthFixture for MongoFixture {
    fn factory(&self) -> Box<dyn BackendFactory> {
        Box::new(MongoFactory)
    }

    fn settings(&self, _hash: &HashMethod) -> toml::Table {
        self.mongo.settings(&[])
    }

    fn features(&self) -> Features {
        Features::vernemq(vec![
            // The default of most cases: cheap to check.
            HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512)),
            HashMethod::Broker(Scheme::Bcrypt),
            HashMethod::Broker(Scheme::Sha512Crypt),
            HashMethod::Broker(Scheme::MosquittoSha512),
            HashMethod::Broker(Scheme::MosquittoPbkdf2),
            HashMethod::Broker(Scheme::Argon2),
        ])
    }

    async fn seed_user(&self, user: &TestUser) {
        let body = Bson::try_from(user.vernemq_document()).expect("JSON into BSON");
        let Bson::Document(body) = body else {
            panic!("vernemq_document is not an object")
        };
        self.store(&user.mountpoint, &user.client_id, &user.username, body)
            .await;
    }

    async fn seed_raw(&self, user: &RawUser) {
        let mut body = Document::new();
        match &user.password {
            RawPassword::Stored(s) => {
                body.insert("passhash", s.clone());
            }
            RawPassword::Plain(p) => {
                let HashMethod::Broker(scheme) = &user.hash else {
                    panic!("MongoDB has no database-side hash method")
                };
                body.insert(
                    "passhash",
                    passwords::hash_for_tests(*scheme, p.as_bytes()).expect("hash"),
                );
            }
        }
        if let Some(text) = &user.publish_acl {
            body.insert("publish_acl", acl_field(text));
        }
        if let Some(text) = &user.subscribe_acl {
            body.insert("subscribe_acl", acl_field(text));
        }
        self.store(&user.mountpoint, &user.client_id, &user.username, body)
            .await;
    }
}

/// A server per case (it starts in well under a second), or a loud
/// `SKIPPED` line and an early return when this machine has none (a failure
/// under `CI=true`).
async fn fixture() -> Result<MongoFixture, fogg_testcontainers::Error> {
    Ok(MongoFixture {
        mongo: Mongo::start().await?,
    })
}

fogg_auth_behavior::auth_behavior_tests!(std::future::ready(fogg_testcontainers::require!(
    fixture().await
)));
