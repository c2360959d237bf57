//! What a backend crate implements to run the suite: [`AuthFixture`], and
//! the data the suite asks it to store ([`TestUser`], [`RawUser`]).

use std::future::Future;

use fogg_api::BackendFactory;
use fogg_auth_common::passwords::{self, Scheme};
use serde_json::{Map, Value, json};

/// How a test user's password is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashMethod {
    /// Checked by Fogg: the fixture stores [`TestUser::stored_hash`] (bcrypt,
    /// `$6$`, `$7$`, `PBKDF2$`, argon2id) as it is.
    Broker(Scheme),
    /// Checked by the database (PostgreSQL `crypt`, MySQL `md5` / `sha1` /
    /// `sha256` / `password`, ...): the fixture stores the plain password the
    /// database's way. The name is the fixture's own (usually the backend's
    /// setting value); the suite only hands it back in
    /// [`AuthFixture::settings`], [`TestUser::hash`] and [`RawUser::hash`].
    Database(&'static str),
}

impl std::fmt::Display for HashMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashMethod::Broker(scheme) => write!(f, "{scheme} (checked by Fogg)"),
            HashMethod::Database(name) => write!(f, "{name} (checked by the database)"),
        }
    }
}

/// What the backend can store and do; cases needing more than it declares
/// are skipped, saying so on stderr.
#[derive(Debug, Clone)]
pub struct Features {
    /// Every hash method the backend checks; the first is the default,
    /// used by every case that is not about hashes. Must not be empty.
    pub hash_methods: Vec<HashMethod>,
    /// Rows per client id, with the `*` row as fallback (VerneMQ's
    /// databases). Without it, every user the suite stores has client id `*`
    /// and stands for any client.
    pub client_ids: bool,
    /// Rows per mountpoint. Without it the fixture may ignore
    /// [`TestUser::mountpoint`].
    pub mountpoints: bool,
    /// `max_qos`, `max_payload_size`, `allowed_retain`.
    pub acl_limits: bool,
    /// Publish and subscribe `modifiers`.
    pub acl_modifiers: bool,
    /// ACL lists stored as text the backend parses ([`RawUser`] with
    /// `publish_acl` / `subscribe_acl`): bad JSON, unknown keys.
    pub raw_acl: bool,
    /// A user can be stored without a password (NULL column, `user:` line).
    pub users_without_password: bool,
}

impl Features {
    /// Everything VerneMQ's database layout has, with these hash methods.
    pub fn vernemq(hash_methods: Vec<HashMethod>) -> Features {
        Features {
            hash_methods,
            client_ids: true,
            mountpoints: true,
            acl_limits: true,
            acl_modifiers: true,
            raw_acl: true,
            users_without_password: true,
        }
    }

    /// The method most cases store users with.
    pub fn default_method(&self) -> &HashMethod {
        self.hash_methods
            .first()
            .unwrap_or_else(|| panic!("Features::hash_methods must not be empty"))
    }
}

/// One `publish_acl` entry. `None` fields are left out of the JSON (so the
/// backend's defaults apply).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishAcl {
    pub pattern: String,
    pub max_qos: Option<u8>,
    pub max_payload_size: Option<u64>,
    pub allowed_retain: Option<bool>,
    /// The `modifiers` object, as VerneMQ stores it.
    pub modifiers: Option<Value>,
    /// Keys VerneMQ does not know (the backend must ignore them).
    pub extra: Map<String, Value>,
}

impl PublishAcl {
    pub fn pattern(pattern: impl Into<String>) -> PublishAcl {
        PublishAcl {
            pattern: pattern.into(),
            ..PublishAcl::default()
        }
    }

    /// Only a pattern: expressible in every ACL format (files: `topic write`).
    pub fn is_plain(&self) -> bool {
        *self == PublishAcl::pattern(self.pattern.clone())
    }

    pub fn to_json(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("pattern".to_owned(), json!(self.pattern));
        if let Some(q) = self.max_qos {
            map.insert("max_qos".to_owned(), json!(q));
        }
        if let Some(n) = self.max_payload_size {
            map.insert("max_payload_size".to_owned(), json!(n));
        }
        if let Some(r) = self.allowed_retain {
            map.insert("allowed_retain".to_owned(), json!(r));
        }
        if let Some(m) = &self.modifiers {
            map.insert("modifiers".to_owned(), m.clone());
        }
        Value::Object(map)
    }
}

/// One `subscribe_acl` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscribeAcl {
    pub pattern: String,
    pub max_qos: Option<u8>,
    /// The `modifiers` list of `[topic, qos]` pairs.
    pub modifiers: Option<Value>,
    pub extra: Map<String, Value>,
}

impl SubscribeAcl {
    pub fn pattern(pattern: impl Into<String>) -> SubscribeAcl {
        SubscribeAcl {
            pattern: pattern.into(),
            ..SubscribeAcl::default()
        }
    }

    /// Only a pattern (files: `topic read`).
    pub fn is_plain(&self) -> bool {
        *self == SubscribeAcl::pattern(self.pattern.clone())
    }

    pub fn to_json(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("pattern".to_owned(), json!(self.pattern));
        if let Some(q) = self.max_qos {
            map.insert("max_qos".to_owned(), json!(q));
        }
        if let Some(m) = &self.modifiers {
            map.insert("modifiers".to_owned(), m.clone());
        }
        Value::Object(map)
    }
}

/// A user to store, in VerneMQ's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct TestUser {
    /// "" is the default mountpoint. At most 10 characters (VerneMQ's
    /// `varchar(10)`).
    pub mountpoint: String,
    /// `*` for the row that matches any client id.
    pub client_id: String,
    pub username: String,
    /// `None`: a user stored without a password (only when
    /// [`Features::users_without_password`]).
    pub password: Option<String>,
    pub hash: HashMethod,
    pub publish_acl: Vec<PublishAcl>,
    pub subscribe_acl: Vec<SubscribeAcl>,
}

impl TestUser {
    /// The stored form of the password for [`HashMethod::Broker`] methods
    /// (a fresh salt each call; every result verifies). `None` without a
    /// password. Panics for [`HashMethod::Database`]: the database hashes.
    pub fn stored_hash(&self) -> Option<String> {
        let password = self.password.as_ref()?;
        match &self.hash {
            HashMethod::Broker(scheme) => Some(
                passwords::hash_for_tests(*scheme, password.as_bytes())
                    .unwrap_or_else(|e| panic!("cannot hash a test password with {scheme}: {e}")),
            ),
            HashMethod::Database(name) => panic!(
                "stored_hash: `{name}` is hashed by the database; store the plain password its way"
            ),
        }
    }

    /// `publish_acl` as a JSON array.
    pub fn publish_acl_json(&self) -> Value {
        Value::Array(self.publish_acl.iter().map(PublishAcl::to_json).collect())
    }

    /// `subscribe_acl` as a JSON array.
    pub fn subscribe_acl_json(&self) -> Value {
        Value::Array(
            self.subscribe_acl
                .iter()
                .map(SubscribeAcl::to_json)
                .collect(),
        )
    }

    /// VerneMQ's Redis value / MongoDB document body for a broker-checked
    /// hash: `{"passhash": ..., "publish_acl": [...], "subscribe_acl": [...]}`
    /// (`passhash` left out without a password).
    pub fn vernemq_document(&self) -> Value {
        let mut map = Map::new();
        if let Some(hash) = self.stored_hash() {
            map.insert("passhash".to_owned(), json!(hash));
        }
        map.insert("publish_acl".to_owned(), self.publish_acl_json());
        map.insert("subscribe_acl".to_owned(), self.subscribe_acl_json());
        Value::Object(map)
    }
}

/// How a [`RawUser`]'s password is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPassword {
    /// Stored the normal way for [`RawUser::hash`] (as [`TestUser`] would).
    Plain(String),
    /// This exact string in the password column / field / line, whatever it
    /// is (a malformed or unknown hash).
    Stored(String),
}

/// A user stored exactly as given, to check what the backend does with
/// malformed data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawUser {
    pub mountpoint: String,
    pub client_id: String,
    pub username: String,
    pub password: RawPassword,
    pub hash: HashMethod,
    /// The text of the `publish_acl` column / value, verbatim (`None`: NULL
    /// or absent). A fixture storing documents (MongoDB) stores text that is
    /// not JSON as a string field, which the backend must refuse as well.
    pub publish_acl: Option<String>,
    pub subscribe_acl: Option<String>,
}

/// Implemented by each backend crate's test to run the suite against its
/// real server (see the crate docs for an example).
///
/// The suite stores users first, then builds the backend through a
/// `Registry` holding [`AuthFixture::factory`] with the table from
/// [`AuthFixture::settings`] (the path production uses), then connects.
/// Every case uses its own random usernames, so cases may share one server,
/// in parallel, across runs. Store functions panic on failure.
pub trait AuthFixture: Send + Sync {
    /// The backend's factory (a fresh `Registry` is made per build).
    fn factory(&self) -> Box<dyn BackendFactory>;

    /// The backend's `[backends.NAME]` table (without `kind`, `on_error`,
    /// `timeout`, `retries`) for users stored with `hash`.
    fn settings(&self, hash: &HashMethod) -> toml::Table;

    fn features(&self) -> Features;

    /// Store one user (replacing a user with the same key).
    fn seed_user(&self, user: &TestUser) -> impl Future<Output = ()> + Send;

    /// Store one user exactly as given.
    fn seed_raw(&self, user: &RawUser) -> impl Future<Output = ()> + Send;
}
