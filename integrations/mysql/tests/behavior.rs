//! The shared auth behavior suite against a real MariaDB, through
//! `MysqlFactory` and a settings table as the broker builds it: once per
//! `password_hash_method` as the default method of every case (`password`,
//! `md5`, `sha1`, `sha256`, `bcrypt`), each also checking the others'.
//!
//! One server serves the whole binary (tests/common), with VerneMQ's table
//! in a database of its own per run. Without MariaDB/MySQL each test prints
//! `SKIPPED:` and passes (fails under `CI=true`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Shared, Store};
use fogg_api::BackendFactory;
use fogg_auth_behavior::{
    AuthFixture, Features, HashMethod, RawPassword, RawUser, Scheme, TestUser,
};
use fogg_auth_mysql::MysqlFactory;
use mysql_async::Conn;
use tokio::sync::Mutex;

struct MyFixture {
    shared: &'static Shared,
    conn: Mutex<Conn>,
    methods: Vec<HashMethod>,
}

const PASSWORD: HashMethod = HashMethod::Database("password");
const MD5: HashMethod = HashMethod::Database("md5");
const SHA1: HashMethod = HashMethod::Database("sha1");
const SHA256: HashMethod = HashMethod::Database("sha256");
const BCRYPT: HashMethod = HashMethod::Broker(Scheme::Bcrypt);

impl MyFixture {
    fn table(&self) -> String {
        format!("{}.vmq_auth_acl", self.shared.database)
    }

    fn store(hash: &HashMethod) -> Store {
        match hash {
            HashMethod::Database(name) => common::store_for(name),
            HashMethod::Broker(_) => Store::AsIs,
        }
    }
}

impl AuthFixture for MyFixture {
    fn factory(&self) -> Box<dyn BackendFactory> {
        Box::new(MysqlFactory)
    }

    fn settings(&self, hash: &HashMethod) -> toml::Table {
        let method = match hash {
            HashMethod::Database(name) => name,
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
        let store = MyFixture::store(&user.hash);
        let password = match store {
            Store::AsIs => user.stored_hash(),
            Store::Sql(_) => user.password.clone(),
        };
        common::upsert(
            &mut *self.conn.lock().await,
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
            RawPassword::Plain(p) => match &user.hash {
                HashMethod::Broker(scheme) => (
                    fogg_auth_common::passwords::hash_for_tests(*scheme, p.as_bytes())
                        .expect("hash"),
                    Store::AsIs,
                ),
                HashMethod::Database(name) => (p.clone(), common::store_for(name)),
            },
        };
        common::upsert(
            &mut *self.conn.lock().await,
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

async fn fixture(methods: Vec<HashMethod>) -> Option<MyFixture> {
    let shared = common::shared().await?;
    let conn = common::connect(shared.server.url()).await;
    Some(MyFixture {
        shared,
        conn: Mutex::new(conn),
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

/// `password_hash_method = "password"` (VerneMQ's default): `PASSWORD()`,
/// MariaDB and MySQL before 8.
mod password {
    use super::*;
    suite!(PASSWORD, MD5, SHA1, SHA256, BCRYPT);
}

mod md5 {
    use super::*;
    suite!(MD5, PASSWORD, SHA256);
}

mod sha1 {
    use super::*;
    suite!(SHA1, PASSWORD, SHA256);
}

mod sha256 {
    use super::*;
    suite!(SHA256, PASSWORD, BCRYPT);
}

/// `password_hash_method = "bcrypt"`: fetched and checked by Fogg, which
/// also knows the other formats.
mod bcrypt {
    use super::*;
    suite!(
        BCRYPT,
        SHA256,
        HashMethod::Broker(Scheme::Argon2),
        HashMethod::Broker(Scheme::Sha512Crypt)
    );
}
