//! What the Redis tests share: a seeding connection, building the backend
//! through a `Registry` from a settings table (as the binary does), and
//! CONNECT / ACL helpers.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use fogg_api::dynamic::{DynAuthCache, DynAuthenticator};
use fogg_api::{
    AclRules, AuthDecision, Backend, BackendConfig, BackendError, ClientInfo, ConnectInfo,
    ProtocolVersion, PublishDecision, PublishRequest, QoS, Registry, SubscribeDecision,
    SubscribeRequest,
};
use fogg_auth_redis::RedisFactory;
use redis::aio::MultiplexedConnection;

/// A key prefix no other test or run uses.
pub fn unique_prefix() -> String {
    format!("fogg-test-{:016x}:", rand::random::<u64>())
}

/// A plain connection for storing test data.
pub async fn seed_connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis")
}

/// Run one command on the seeding connection.
pub async fn run(conn: &mut MultiplexedConnection, args: &[&[u8]]) -> redis::Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn).await.expect("seed command")
}

/// A settings table from TOML text.
pub fn settings(text: &str) -> toml::Table {
    text.parse().expect("settings TOML")
}

/// Build `[backends.r] kind = "redis"` with these settings, through a
/// registry as the binary does.
pub fn build(settings: toml::Table) -> Result<Backend, String> {
    let mut registry = Registry::new();
    registry.register(Box::new(RedisFactory));
    registry
        .build(&BackendConfig {
            name: "r".to_owned(),
            kind: "redis".to_owned(),
            settings,
        })
        .map_err(|e| e.to_string())
}

pub fn authenticator(backend: &Backend) -> Arc<dyn DynAuthenticator> {
    backend.authenticator.clone().expect("an authenticator")
}

pub fn cache(backend: &Backend) -> Arc<dyn DynAuthCache> {
    backend.cache.clone().expect("a cache")
}

pub fn connect_info(client_id: &str, username: &str, password: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: client_id.to_owned(),
        username: Some(username.to_owned()),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 40_000).into(),
        listener: "mqtt".to_owned(),
        protocol: ProtocolVersion::V5,
        clean_start: true,
    }
}

pub async fn authenticate(
    backend: &Backend,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<AuthDecision, BackendError> {
    authenticator(backend)
        .authenticate(&connect_info(client_id, username, password))
        .await
}

/// The rules of an allowed CONNECT (panics otherwise).
#[track_caller]
pub fn rules(decision: Result<AuthDecision, BackendError>) -> Arc<AclRules> {
    match decision {
        Ok(AuthDecision::Allow(grant)) => grant.acl.expect("rules in the grant"),
        other => panic!("expected Allow with rules, got {other:?}"),
    }
}

/// The client the rules are evaluated for.
pub fn client(client_id: &str, username: &str) -> ClientInfo {
    ClientInfo {
        client_id: client_id.to_owned(),
        username: Some(username.to_owned()),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 40_000).into(),
        protocol: ProtocolVersion::V5,
    }
}

pub fn may_publish(rules: &AclRules, client: &ClientInfo, topic: &str) -> bool {
    matches!(
        rules.check_publish(
            client,
            &PublishRequest {
                topic,
                qos: QoS::AtLeastOnce,
                retain: false,
                payload_len: 1,
            }
        ),
        PublishDecision::Allow(_)
    )
}

pub fn may_subscribe(rules: &AclRules, client: &ClientInfo, filter: &str) -> bool {
    matches!(
        rules.check_subscribe(
            client,
            &SubscribeRequest {
                filter,
                qos: QoS::AtLeastOnce,
            }
        ),
        SubscribeDecision::Allow { .. }
    )
}
