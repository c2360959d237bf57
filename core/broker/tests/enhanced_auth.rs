//! MQTT 5 enhanced authentication (spec 4.12): the AUTH exchange during
//! CONNECT, re-authentication on a live connection, and every way a client
//! can get the exchange wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, V5, connect_packet, memory_services, test_config};
use fogg_api::{AuthStep, BackendError, EnhancedAuthContext, EnhancedAuthenticator, ErrorKind};
use fogg_codec::{Auth, ConnAck, Connect, Packet, Properties, QoS, ReasonCode};
use parking_lot::Mutex;

const METHOD: &str = "TEST-CHALLENGE";

/// Round 0: answer the client's data with a challenge. Round 1: success when
/// the client answers the expected response, failure otherwise. Data `boom`
/// in round 0 is a backend error.
struct ChallengeAuth {
    rounds: Arc<Mutex<Vec<EnhancedAuthContext>>>,
}

impl EnhancedAuthenticator for ChallengeAuth {
    fn methods(&self) -> Vec<String> {
        vec![METHOD.to_owned()]
    }

    async fn auth_step(
        &self,
        context: &EnhancedAuthContext,
        data: Option<Bytes>,
    ) -> Result<AuthStep, BackendError> {
        self.rounds.lock().push(context.clone());
        match context.round {
            0 if data.as_deref() == Some(&b"boom"[..]) => Err(BackendError::new(
                ErrorKind::Unavailable,
                "challenge",
                "auth_step",
                "down",
            )),
            0 => Ok(AuthStep::Continue {
                data: Some(Bytes::from_static(b"challenge")),
                state: Some(Bytes::from_static(b"expect-response")),
            }),
            1 if context.state.as_deref() == Some(&b"expect-response"[..])
                && data.as_deref() == Some(&b"response"[..]) =>
            {
                Ok(AuthStep::Success {
                    data: Some(Bytes::from_static(b"welcome")),
                })
            }
            _ => Ok(AuthStep::Failure),
        }
    }
}

async fn start() -> (common::TestBroker, Arc<Mutex<Vec<EnhancedAuthContext>>>) {
    start_config(test_config()).await
}

async fn start_config(
    config: fogg_broker::Config,
) -> (common::TestBroker, Arc<Mutex<Vec<EnhancedAuthContext>>>) {
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let mut services = memory_services();
    services.enhanced = vec![Arc::new(ChallengeAuth {
        rounds: rounds.clone(),
    })];
    (common::start_with(config, services).await, rounds)
}

fn auth_connect(id: &str, method: &str, data: &[u8]) -> Connect {
    let mut connect = connect_packet(V5, id);
    connect.username = Some("eve".into());
    connect.properties.authentication_method = Some(method.to_owned());
    connect.properties.authentication_data = Some(Bytes::copy_from_slice(data));
    connect
}

fn auth(reason: ReasonCode, method: &str, data: &[u8]) -> Packet {
    Packet::Auth(Box::new(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.to_owned()),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Properties::default()
        },
    }))
}

async fn expect_auth(client: &mut RawClient) -> Auth {
    match client.recv().await {
        Some(Packet::Auth(a)) => *a,
        other => panic!("expected AUTH, got {other:?}"),
    }
}

async fn expect_connack(client: &mut RawClient) -> ConnAck {
    match client.recv().await {
        Some(Packet::ConnAck(a)) => *a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// CONNECT with the method, expect the challenge; the client then.
async fn challenged(addr: SocketAddr, id: &str) -> RawClient {
    let mut client = RawClient::open(addr, V5).await;
    client
        .send(Packet::Connect(Box::new(auth_connect(
            id, METHOD, b"hello",
        ))))
        .await;
    let challenge = expect_auth(&mut client).await;
    assert_eq!(challenge.reason, ReasonCode::ContinueAuthentication);
    assert_eq!(
        challenge.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        challenge.properties.authentication_data.as_deref(),
        Some(&b"challenge"[..])
    );
    client
}

/// A client through the whole CONNECT exchange.
async fn authenticated(addr: SocketAddr, id: &str) -> RawClient {
    let mut client = challenged(addr, id).await;
    client
        .send(auth(
            ReasonCode::ContinueAuthentication,
            METHOD,
            b"response",
        ))
        .await;
    let ack = expect_connack(&mut client).await;
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    client
}

async fn round_trip(client: &mut RawClient, topic: &str) {
    client.subscribe(topic, QoS::AtLeastOnce).await;
    client.publish(topic, b"hi", QoS::AtLeastOnce, false).await;
    assert_eq!(&client.expect_publish().await.payload[..], b"hi");
}

#[tokio::test]
async fn challenge_response_connect() {
    let (broker, rounds) = start().await;
    let mut client = challenged(broker.addr, "ea-ok").await;
    client
        .send(auth(
            ReasonCode::ContinueAuthentication,
            METHOD,
            b"response",
        ))
        .await;
    let ack = expect_connack(&mut client).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    assert!(!ack.session_present);
    // [MQTT-4.12.0-5]-style echo of the method, with the backend's final data.
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    round_trip(&mut client, "ea/ok").await;

    let rounds = rounds.lock().clone();
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0].round, 0);
    assert_eq!(rounds[0].client_id, "ea-ok");
    assert_eq!(rounds[0].username.as_deref(), Some("eve"));
    assert_eq!(rounds[0].method, METHOD);
    assert!(!rounds[0].reauthenticate);
    assert_eq!(rounds[0].state, None);
    assert_eq!(rounds[1].round, 1);
    assert_eq!(rounds[1].state.as_deref(), Some(&b"expect-response"[..]));
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_response_is_refused() {
    let (broker, _) = start().await;
    let mut client = challenged(broker.addr, "ea-wrong").await;
    client
        .send(auth(ReasonCode::ContinueAuthentication, METHOD, b"guess"))
        .await;
    let ack = expect_connack(&mut client).await;
    // The broker answers 0x87 Not authorized for a failed exchange.
    assert_eq!(ack.reason, ReasonCode::NotAuthorized, "{ack:?}");
    assert!(ack.reason.is_error());
    assert!(ack.properties.reason_string.is_some(), "{ack:?}");
    assert!(client.expect_closed().await.is_none());
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_method_is_bad_authentication_method() {
    let (broker, rounds) = start().await;
    let (mut client, ack) = RawClient::connect(
        broker.addr,
        auth_connect("ea-unknown", "SCRAM-SHA-512", b"x"),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::BadAuthenticationMethod, "{ack:?}");
    assert!(client.expect_closed().await.is_none());
    assert!(rounds.lock().is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn backend_error_is_server_unavailable() {
    let (broker, _) = start().await;
    let (mut client, ack) =
        RawClient::connect(broker.addr, auth_connect("ea-err", METHOD, b"boom")).await;
    assert_eq!(ack.reason, ReasonCode::ServerUnavailable, "{ack:?}");
    assert!(client.expect_closed().await.is_none());
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_packets_during_the_connect_exchange_are_refused() {
    let (broker, _) = start().await;
    // Anything but AUTH 0x18 [MQTT-4.12.0-4]...
    let wrong: Vec<(&str, Packet)> = vec![
        ("PINGREQ", Packet::PingReq),
        (
            "PUBLISH",
            Packet::Publish(Box::new(common::publish_packet(
                "ea/x",
                b"x",
                QoS::AtMostOnce,
                false,
                0,
            ))),
        ),
        (
            "AUTH 0x19",
            auth(ReasonCode::ReAuthenticate, METHOD, b"response"),
        ),
        ("AUTH 0x00", auth(ReasonCode::Success, METHOD, b"response")),
        // ...and the AUTH must carry the same method [MQTT-4.12.0-5].
        (
            "other method",
            auth(ReasonCode::ContinueAuthentication, "OTHER", b"response"),
        ),
    ];
    for (what, packet) in wrong {
        let mut client = challenged(broker.addr, "ea-wrong-packet").await;
        client.send(packet).await;
        let ack = expect_connack(&mut client).await;
        assert_eq!(ack.reason, ReasonCode::ProtocolError, "{what}: {ack:?}");
        assert!(client.expect_closed().await.is_none(), "{what}");
    }
    // An AUTH without a method at all.
    let mut client = challenged(broker.addr, "ea-no-method").await;
    client
        .send(Packet::Auth(Box::new(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: Properties::default(),
        })))
        .await;
    assert_eq!(
        expect_connack(&mut client).await.reason,
        ReasonCode::ProtocolError
    );
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn exchange_that_never_completes_times_out() {
    let mut config = test_config();
    config.broker.connect_timeout = Duration::from_millis(500);
    let (broker, _) = start_config(config).await;
    let mut client = challenged(broker.addr, "ea-slow").await;
    let ack = expect_connack(&mut client).await;
    assert!(ack.reason.is_error(), "{ack:?}");
    assert!(client.expect_closed().await.is_none());
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Re-authentication (spec 4.12.1).

#[tokio::test]
async fn reauthentication_succeeds() {
    let (broker, rounds) = start().await;
    let mut client = authenticated(broker.addr, "ea-reauth").await;
    rounds.lock().clear();
    for _ in 0..2 {
        client
            .send(auth(ReasonCode::ReAuthenticate, METHOD, b"hello again"))
            .await;
        let challenge = expect_auth(&mut client).await;
        assert_eq!(challenge.reason, ReasonCode::ContinueAuthentication);
        assert_eq!(
            challenge.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        assert_eq!(
            challenge.properties.authentication_data.as_deref(),
            Some(&b"challenge"[..])
        );
        client
            .send(auth(
                ReasonCode::ContinueAuthentication,
                METHOD,
                b"response",
            ))
            .await;
        let done = expect_auth(&mut client).await;
        assert_eq!(done.reason, ReasonCode::Success);
        assert_eq!(
            done.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        assert_eq!(
            done.properties.authentication_data.as_deref(),
            Some(&b"welcome"[..])
        );
        // The connection carries on as before.
        round_trip(&mut client, "ea/reauth").await;
    }
    let rounds = rounds.lock().clone();
    assert_eq!(rounds.len(), 4);
    assert!(
        rounds
            .iter()
            .all(|r| r.reauthenticate && r.client_id == "ea-reauth")
    );
    assert_eq!(
        rounds.iter().map(|r| r.round).collect::<Vec<_>>(),
        vec![0, 1, 0, 1]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn failed_reauthentication_disconnects() {
    let (broker, _) = start().await;
    let mut client = authenticated(broker.addr, "ea-reauth-fail").await;
    client
        .send(auth(ReasonCode::ReAuthenticate, METHOD, b"hello"))
        .await;
    expect_auth(&mut client).await;
    client
        .send(auth(ReasonCode::ContinueAuthentication, METHOD, b"guess"))
        .await;
    let d = client.expect_disconnect_packet().await;
    assert!(d.reason.is_error(), "{d:?}");
    assert_eq!(d.reason, ReasonCode::NotAuthorized);
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn reauthentication_with_another_method_is_a_protocol_error() {
    let (broker, _) = start().await;
    let mut client = authenticated(broker.addr, "ea-reauth-other").await;
    client
        .send(auth(ReasonCode::ReAuthenticate, "OTHER", b"hello"))
        .await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn reauthentication_out_of_order_is_a_protocol_error() {
    let (broker, _) = start().await;
    // 0x18 without a 0x19 first.
    let mut client = authenticated(broker.addr, "ea-reauth-order").await;
    client
        .send(auth(
            ReasonCode::ContinueAuthentication,
            METHOD,
            b"response",
        ))
        .await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    // 0x19 again in the middle of a re-authentication.
    let mut client = authenticated(broker.addr, "ea-reauth-order").await;
    client
        .send(auth(ReasonCode::ReAuthenticate, METHOD, b"hello"))
        .await;
    expect_auth(&mut client).await;
    client
        .send(auth(ReasonCode::ReAuthenticate, METHOD, b"hello"))
        .await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn auth_from_a_client_connected_without_a_method_is_a_protocol_error() {
    let (broker, rounds) = start().await;
    let mut client = RawClient::connected(broker.addr, V5, "ea-plain").await;
    client
        .send(auth(ReasonCode::ReAuthenticate, METHOD, b"hello"))
        .await;
    let d = client.expect_disconnect_packet().await;
    assert_eq!(d.reason, ReasonCode::ProtocolError, "{d:?}");
    assert!(d.properties.reason_string.is_some());
    assert!(rounds.lock().is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn reauthentication_backend_error_disconnects() {
    let (broker, _) = start().await;
    let mut client = authenticated(broker.addr, "ea-reauth-err").await;
    client
        .send(auth(ReasonCode::ReAuthenticate, METHOD, b"boom"))
        .await;
    let d = client.expect_disconnect_packet().await;
    // 0x88 Server unavailable is not a DISCONNECT reason; 0x83 is.
    assert_eq!(d.reason, ReasonCode::ImplementationSpecificError, "{d:?}");
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn authentication_data_without_a_method_is_a_protocol_error() {
    let (broker, rounds) = start().await;
    // Section 3.1.2.11.10: "It is a Protocol Error to include Authentication
    // Data if there is no Authentication Method". The codec will not encode
    // it, so the CONNECT is written by hand.
    let mut body = common::raw_lp(b"MQTT");
    body.extend([0x05, 0x02, 0x00, 0x3C]);
    let mut props = vec![fogg_codec::property_id::AUTHENTICATION_DATA];
    props.extend(common::raw_lp(b"hello"));
    body.extend(common::raw_props(&props));
    body.extend(common::raw_lp(b"ea-data-only"));
    let mut client = RawClient::open(broker.addr, V5).await;
    client.send_raw(&common::raw_packet(0x10, &body)).await;
    let ack = expect_connack(&mut client).await;
    assert_eq!(ack.reason, ReasonCode::ProtocolError, "{ack:?}");
    assert!(client.expect_closed().await.is_none());
    assert!(rounds.lock().is_empty());
    broker.shutdown().await;
}
