//! Helpers for a backend's own tests that go past the shared suite and
//! talk to its authenticator directly: build it from a settings text, log
//! in, and check the rules it hands over the way the broker does.

use std::sync::Arc;

use bytes::Bytes;
use fogg_api::dynamic::DynAuthenticator;
use fogg_api::{
    AclRules, AuthDecision, BackendConfig, BackendFactory, ClientInfo, ConnectInfo,
    ProtocolVersion, PublishDecision, PublishRequest, QoS, SubscribeDecision, SubscribeRequest,
};

/// The authenticator `factory` builds from `settings` (a TOML table's text),
/// under the backend name `name`.
pub fn build_authenticator(
    factory: &dyn BackendFactory,
    name: &str,
    settings: &str,
) -> Arc<dyn DynAuthenticator> {
    factory
        .build(&BackendConfig {
            name: name.to_owned(),
            kind: factory.kind().to_owned(),
            settings: settings
                .parse()
                .unwrap_or_else(|e| panic!("settings are not TOML: {e}")),
        })
        .unwrap_or_else(|e| panic!("build: {e}"))
        .authenticator
        .unwrap_or_else(|| panic!("backend `{name}` built no authenticator"))
}

/// Who connects: client id `client-1`, MQTT 5, default mountpoint.
pub fn login(username: &str, password: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: "client-1".to_owned(),
        username: Some(username.to_owned()),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 50_000).into(),
        listener: "mqtt".to_owned(),
        protocol: ProtocolVersion::V5,
        clean_start: true,
    }
}

pub fn client_info(username: &str) -> ClientInfo {
    ClientInfo {
        client_id: "client-1".to_owned(),
        username: Some(username.to_owned()),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 50_000).into(),
        protocol: ProtocolVersion::V5,
    }
}

pub async fn rules(auth: &dyn DynAuthenticator, username: &str, password: &str) -> Arc<AclRules> {
    match auth.authenticate(&login(username, password)).await {
        Ok(AuthDecision::Allow(grant)) => grant
            .acl
            .unwrap_or_else(|| panic!("{username}: no rules handed over")),
        other => panic!("{username}: expected Allow, got {other:?}"),
    }
}

pub fn may_publish(rules: &AclRules, username: &str, topic: &str) -> bool {
    matches!(
        rules.check_publish(
            &client_info(username),
            &PublishRequest {
                topic,
                qos: QoS::AtLeastOnce,
                retain: false,
                payload_len: 3,
            }
        ),
        PublishDecision::Allow(_)
    )
}

pub fn may_subscribe(rules: &AclRules, username: &str, filter: &str) -> bool {
    matches!(
        rules.check_subscribe(
            &client_info(username),
            &SubscribeRequest {
                filter,
                qos: QoS::AtLeastOnce,
            }
        ),
        SubscribeDecision::Allow { .. }
    )
}
