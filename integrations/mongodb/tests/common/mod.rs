//! A MongoDB-wire server for the tests (fogg-testcontainers), a database
//! with a random name on it, and a driver client to seed it.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use fogg_testcontainers::TestServer;
use mongodb::bson::Document;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};

pub struct Mongo {
    pub server: TestServer,
    pub client: Client,
    pub database: String,
}

impl Mongo {
    /// A server (or the error saying why there is none) and a fresh database name.
    pub async fn start() -> Result<Mongo, fogg_testcontainers::Error> {
        let server = fogg_testcontainers::mongodb().await?;
        let mut options = ClientOptions::parse(server.url())
            .await
            .expect("parse the test server's URL");
        options.server_selection_timeout = Some(std::time::Duration::from_secs(10));
        let client = Client::with_options(options).expect("a client for seeding");
        Ok(Mongo {
            server,
            client,
            database: format!("fogg_test_{:016x}", rand::random::<u64>()),
        })
    }

    pub fn db(&self) -> Database {
        self.client.database(&self.database)
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db().collection(name)
    }

    /// The backend's settings table: `url`, `database`, then `extra`.
    pub fn settings(&self, extra: &[(&str, toml::Value)]) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("url".into(), self.server.url().into());
        table.insert("database".into(), self.database.clone().into());
        for (k, v) in extra {
            table.insert((*k).to_owned(), v.clone());
        }
        table
    }
}

// ---------------------------------------------------------------------------
// The backend, built as the broker builds it, and questions to it.

use std::sync::Arc;

use bytes::Bytes;
use fogg_api::{
    AclRules, AuthDecision, Backend, BackendConfig, BackendError, ClientInfo, ConnectInfo,
    ProtocolVersion, PublishDecision, PublishRequest, QoS, Registry, SubscribeDecision,
    SubscribeRequest,
};
use fogg_auth_mongodb::MongoFactory;

pub const NAME: &str = "mongo";

/// `[backends.mongo] kind = "mongodb"` with `settings`, through a registry.
pub fn build(settings: toml::Table) -> Result<Backend, fogg_api::RegistryError> {
    let mut registry = Registry::new();
    registry.register(Box::new(MongoFactory));
    registry.build(&BackendConfig {
        name: NAME.to_owned(),
        kind: "mongodb".to_owned(),
        settings,
    })
}

/// Who connects.
#[derive(Clone, Debug)]
pub struct Who {
    pub mountpoint: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Who {
    pub fn new(username: &str, password: &str) -> Who {
        Who {
            mountpoint: String::new(),
            client_id: "client-1".to_owned(),
            username: Some(username.to_owned()),
            password: Some(password.as_bytes().to_vec()),
        }
    }

    pub fn client_id(mut self, client_id: &str) -> Who {
        self.client_id = client_id.to_owned();
        self
    }

    fn connect_info(&self) -> ConnectInfo {
        ConnectInfo {
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password: self.password.clone().map(Bytes::from),
            mountpoint: self.mountpoint.clone(),
            peer: ([127, 0, 0, 1], 50_000).into(),
            listener: "mqtt".to_owned(),
            protocol: ProtocolVersion::V5,
            clean_start: true,
        }
    }

    pub fn client_info(&self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            mountpoint: self.mountpoint.clone(),
            peer: ([127, 0, 0, 1], 50_000).into(),
            protocol: ProtocolVersion::V5,
        }
    }
}

pub async fn authenticate(backend: &Backend, who: &Who) -> Result<AuthDecision, BackendError> {
    backend
        .authenticator
        .as_deref()
        .expect("an authenticator")
        .authenticate(&who.connect_info())
        .await
}

/// Authenticate, expecting `Allow` with rules; the rules.
pub async fn rules(backend: &Backend, who: &Who) -> Arc<AclRules> {
    match authenticate(backend, who).await {
        Ok(AuthDecision::Allow(grant)) => grant.acl.expect("rules in the grant"),
        other => panic!("expected Allow for {who:?}, got {other:?}"),
    }
}

pub fn may_publish(rules: &AclRules, who: &Who, topic: &str) -> bool {
    publish(rules, who, topic, QoS::AtMostOnce) != PublishDecision::Deny
}

pub fn publish(rules: &AclRules, who: &Who, topic: &str, qos: QoS) -> PublishDecision {
    rules.check_publish(
        &who.client_info(),
        &PublishRequest {
            topic,
            qos,
            retain: false,
            payload_len: 1,
        },
    )
}

pub fn may_subscribe(rules: &AclRules, who: &Who, filter: &str) -> bool {
    subscribe(rules, who, filter) != SubscribeDecision::Deny
}

pub fn subscribe(rules: &AclRules, who: &Who, filter: &str) -> SubscribeDecision {
    rules.check_subscribe(
        &who.client_info(),
        &SubscribeRequest {
            filter,
            qos: QoS::AtMostOnce,
        },
    )
}
