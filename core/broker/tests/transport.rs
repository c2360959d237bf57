//! Listener transports seen from the backends: behind a PROXY protocol
//! listener, the address the proxy reports is the one authentication and
//! authorization backends receive, and a proxy-verified certificate CN is
//! the username they see (`use_identity_as_username`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{RawClient, V5, connect_packet, memory_services, test_config};
use fogg_api::{
    AuthDecision, Authenticator, Authorizer, BackendError, ClientInfo, ConnectInfo,
    PublishDecision, PublishRequest, SubscribeDecision, SubscribeRequest,
};
use fogg_broker::config::ListenerConfig;
use fogg_broker::{ChainLink, OnError};
use fogg_codec::{Packet, ReasonCode};
use fogg_transport::ProxyTls;
use fogg_transport::proxy::build;
use parking_lot::Mutex;

/// Allows everything and writes down who asked, from where.
#[derive(Default, Clone)]
struct Witness {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Authenticator for Witness {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        self.seen
            .lock()
            .push(format!("connect {} {:?}", info.peer, info.username));
        Ok(AuthDecision::allow())
    }
}

impl Authorizer for Witness {
    async fn authorize_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        self.seen.lock().push(format!(
            "publish {} {:?} {}",
            client.peer, client.username, request.topic
        ));
        Ok(PublishDecision::Allow(None))
    }

    async fn authorize_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        self.seen.lock().push(format!(
            "subscribe {} {:?} {}",
            client.peer, client.username, request.filter
        ));
        Ok(SubscribeDecision::allow())
    }
}

async fn start_behind_proxy(identity: bool) -> (common::TestBroker, Witness) {
    let witness = Witness::default();
    let mut services = memory_services();
    services.chain = vec![ChainLink {
        name: "witness".into(),
        authenticator: Some(Arc::new(witness.clone())),
        authorizer: Some(Arc::new(witness.clone())),
        on_error: OnError::Fail,
    }];
    let mut config = test_config();
    config.listeners = vec![ListenerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        proxy_protocol: true,
        use_identity_as_username: identity,
        ..ListenerConfig::default()
    }];
    (common::start_with(config, services).await, witness)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn backends_see_the_address_the_proxy_reports() {
    let (broker, witness) = start_behind_proxy(false).await;
    let client_addr = addr("203.0.113.7:4242");
    let mut client = RawClient::open(broker.addr, V5).await;
    client
        .send_raw(&build::v2(client_addr, addr("192.0.2.1:1883"), None).unwrap())
        .await;
    client
        .send(Packet::Connect(Box::new(connect_packet(V5, "behind-lb"))))
        .await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client.subscribe("lb/#", fogg_codec::QoS::AtMostOnce).await;
    let reason = client
        .publish("lb/x", b"hi", fogg_codec::QoS::AtLeastOnce, false)
        .await;
    assert!(!reason.is_error(), "{reason:?}");
    let seen = witness.seen.lock().clone();
    assert_eq!(
        seen,
        [
            "connect 203.0.113.7:4242 None",
            "subscribe 203.0.113.7:4242 None lb/#",
            "publish 203.0.113.7:4242 None lb/x",
        ]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_proxy_verified_certificate_cn_is_the_username_backends_see() {
    let (broker, witness) = start_behind_proxy(true).await;
    let tls = ProxyTls {
        version: Some("TLSv1.3".into()),
        cipher: None,
        common_name: Some("sensor-12".into()),
        client_cert_verified: true,
    };
    let mut client = RawClient::open(broker.addr, V5).await;
    client
        .send_raw(&build::v2(addr("198.51.100.3:999"), addr("192.0.2.1:8883"), Some(&tls)).unwrap())
        .await;
    let mut connect = connect_packet(V5, "s12");
    connect.username = Some("claimed".into());
    client.send(Packet::Connect(Box::new(connect))).await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(
        witness.seen.lock().clone(),
        ["connect 198.51.100.3:999 Some(\"sensor-12\")"]
    );
    broker.shutdown().await;
}
