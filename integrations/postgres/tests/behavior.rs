//! The shared auth behavior suite against a real PostgreSQL, through
//! `PostgresFactory` and a settings table as the broker builds it: once per
//! `password_hash_method` as the default method of every case (`crypt`,
//! `bcrypt`, `sha256`), each also checking the others' passwords.
//!
//! One server serves the whole binary (tests/common), with VerneMQ's table in
//! a schema of its own per run. Without PostgreSQL each test prints
//! `SKIPPED:` and passes (fails under `CI=true`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Shared, Store};
use fogg_api::BackendFactory;
use fogg_auth_behavior::{
    AuthFixture, Features, HashMethod, RawPassword, RawUser, Scheme, TestUser,
};
use fogg_auth_postgres::PostgresFactory;
use tokio_postgres::Client;

struct PgFixture {
    shared: &'static Shared,
    client: Client,
    methods: Vec<HashMethod>,
}

const CRYPT: HashMethod = HashMethod::Database("crypt");
const SHA256: HashMethod = HashMethod::Database("sha256");
const BCRYPT: HashMethod = HashMethod::Broker(Scheme::Bcrypt);

impl PgFixture {
    fn table(&self) -> String {
        format!("{}.vmq_auth_acl", self.shared.schema)
    }

    fn store(&self, hash: &HashMethod) -> Store {
        match hash {
            HashMethod::Database("crypt") => Store::Crypt,
            HashMethod::Database("sha256") => Store::Sha256,
            HashMethod::Database(other) => panic!("no database method {other}"),
            HashMethod::Broker(_) => Store::AsIs,
        }
    }
}

impl AuthFixture for PgFixture {
    fn factory(&self) -> Box<dyn BackendFactory> {
        Box::new(PostgresFactory)
    }

    fn settings(&self, hash: &HashMethod) -> toml::Table {
        let method = match hash {
            HashMethod::Database(name) => name,
            // Any hash format Fogg knows is checked under "bcrypt".
            HashMethod::Broker(_) => "bcrypt",
        };
        let mut table = toml::Table::new();
        table.insert("url".into(), self.shared.server.url().into());
        table.insert("table".into(), self.table().into());
        table.insert("password_hash_method".into(), method.into());
        table.insert("pool_size".into(), 2.into());
        table
    }

    fn features(&self) -> Features {
        Features::vernemq(self.methods.clone())
    }

    async fn seed_user(&self, user: &TestUser) {
        let store = self.store(&user.hash);
        let password = match store {
            Store::AsIs => user.stored_hash(),
            _ => user.password.clone(),
        };
        common::upsert(
            &self.client,
            &self.table(),
            (&user.mountpoint, &user.client_id, &user.username),
            password.as_deref(),
            store,
            Some(&user.publish_acl_json().to_string()),
            Some(&user.subscribe_acl_json().to_string()),
        )
        .await;
    }

    async fn seed_raw(&self, user: &RawUser) {
        let (password, store) = match &user.password {
            RawPassword::Stored(s) => (s.clone(), Store::AsIs),
            RawPassword::Plain(p) => match self.store(&user.hash) {
                Store::AsIs => {
                    let HashMethod::Broker(scheme) = user.hash else {
                        unreachable!()
                    };
                    (
                        fogg_auth_common::passwords::hash_for_tests(scheme, p.as_bytes())
                            .expect("hash"),
                        Store::AsIs,
                    )
                }
                store => (p.clone(), store),
            },
        };
        common::upsert(
            &self.client,
            &self.table(),
            (&user.mountpoint, &user.client_id, &user.username),
            Some(&password),
            store,
            user.publish_acl.as_deref(),
            user.subscribe_acl.as_deref(),
        )
        .await;
    }
}

async fn fixture(methods: Vec<HashMethod>) -> Option<PgFixture> {
    let shared = common::shared().await?;
    let client = common::connect(shared.server.url()).await;
    Some(PgFixture {
        shared,
        client,
        methods,
    })
}

// The macro pastes its argument inside each test's async block, so the
// `return` below ends the test early when there is no server (after the
// `SKIPPED:` line `shared()` printed).
macro_rules! suite {
    ($($method:expr),+) => {
        fogg_auth_behavior::auth_behavior_tests!({
            let Some(fixture) = fixture(vec![$($method),+]).await else {
                return;
            };
            std::future::ready(fixture)
        });
    };
}

/// `password_hash_method = "crypt"` (the default): pgcrypto in SQL.
mod crypt {
    use super::*;
    suite!(CRYPT, BCRYPT, SHA256);
}

/// `password_hash_method = "bcrypt"`: fetched and checked by Fogg, which
/// also knows the other formats (argon2id, SHA-512 crypt, mosquitto `$7$`).
mod bcrypt {
    use super::*;
    suite!(
        BCRYPT,
        CRYPT,
        SHA256,
        HashMethod::Broker(Scheme::Argon2),
        HashMethod::Broker(Scheme::Sha512Crypt),
        HashMethod::Broker(Scheme::MosquittoPbkdf2)
    );
}

/// `password_hash_method = "sha256"`: CockroachDB's unsalted hex SHA-256.
mod sha256 {
    use super::*;
    suite!(SHA256, CRYPT, BCRYPT);
}
