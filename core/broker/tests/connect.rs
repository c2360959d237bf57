//! CONNECT / CONNACK, keep alive, authentication refusal and session
//! takeover, for MQTT 3.1, 3.1.1 and 5.0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    ALL_VERSIONS, RawClient, V3, V4, V5, WAIT, connect_expect, connect_packet, persistent_connect,
    publish_packet,
};
use fogg_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

/// A client that subscribes to `topic` and gets its own publish back works.
async fn assert_works(client: &mut RawClient, topic: &str) {
    let ack = client.subscribe(topic, QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
    client
        .publish(topic, b"ping", QoS::AtLeastOnce, false)
        .await;
    let p = client.expect_publish().await;
    assert_eq!(p.topic, topic);
    assert_eq!(&p.payload[..], b"ping");
}

#[tokio::test]
async fn connack_success_for_each_version() {
    let broker = common::start_default().await;
    for version in ALL_VERSIONS {
        let (mut client, ack) = RawClient::connect(
            broker.addr,
            connect_packet(version, &format!("ok-{version:?}")),
        )
        .await;
        assert_eq!(ack.reason, ReasonCode::Success, "{version:?}");
        assert!(!ack.session_present, "{version:?}");
        if version.is_v5() {
            let p = &ack.properties;
            // Defaults: topic aliases up to 65535, everything else unlimited
            // and therefore absent.
            assert_eq!(p.topic_alias_maximum, Some(65_535));
            assert_eq!(p.receive_maximum, None);
            assert_eq!(p.maximum_packet_size, None);
            assert_eq!(p.retain_available, None);
            assert_eq!(p.server_keep_alive, None);
            assert_eq!(p.assigned_client_identifier, None);
            assert_eq!(p.session_expiry_interval, None);
            assert_eq!(p.response_information, None);
            assert_eq!(p.reason_string, None);
        } else {
            assert!(ack.properties.is_empty(), "{version:?}: {ack:?}");
        }
        assert_works(&mut client, &format!("works/{}", version.level())).await;
        client.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn session_present_flag() {
    let broker = common::start_default().await;
    for version in ALL_VERSIONS {
        let id = format!("sp-{}", version.level());
        // No session yet: present 0 even without clean start.
        let c = connect_expect(broker.addr, persistent_connect(version, &id, 60), false).await;
        c.disconnect().await;
        // The session survived: present 1.
        let c = connect_expect(broker.addr, persistent_connect(version, &id, 60), true).await;
        c.disconnect().await;
        // Clean start discards it: present 0.
        let mut clean = persistent_connect(version, &id, 60);
        clean.clean_start = true;
        let c = connect_expect(broker.addr, clean, false).await;
        c.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v5_gets_assigned_identifier() {
    let broker = common::start_default().await;
    let mut connect = persistent_connect(V5, "", 60);
    connect.clean_start = true;
    let (client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    let assigned = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier in CONNACK [MQTT-3.2.2-16]");
    assert!(!assigned.is_empty());
    client.disconnect().await;

    // The assigned identifier names a real session.
    let mut c = connect_expect(broker.addr, persistent_connect(V5, &assigned, 60), true).await;
    assert_works(&mut c, "assigned/works").await;
    c.disconnect().await;

    // Two empty-id clients get different identifiers.
    let (a, ack_a) = RawClient::connect(broker.addr, connect_packet(V5, "")).await;
    let (b, ack_b) = RawClient::connect(broker.addr, connect_packet(V5, "")).await;
    assert_ne!(
        ack_a.properties.assigned_client_identifier,
        ack_b.properties.assigned_client_identifier
    );
    a.disconnect().await;
    b.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v311_with_clean_session_is_accepted() {
    let broker = common::start_default().await;
    let (mut client, ack) = RawClient::connect(broker.addr, connect_packet(V4, "")).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    assert!(!ack.session_present);
    assert!(ack.properties.is_empty());
    assert_works(&mut client, "anon/works").await;
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v311_without_clean_session_is_refused() {
    let broker = common::start_default().await;
    let mut client = RawClient::open(broker.addr, V4).await;
    let connect = persistent_connect(V4, "", 0);
    client.send(Packet::Connect(Box::new(connect))).await;
    // [MQTT-3.1.3-8]: CONNACK return code 0x02 (identifier rejected), then close.
    assert_eq!(
        client.raw_until_closed().await,
        vec![0x20, 0x02, 0x00, 0x02]
    );
    // The codec maps 0x02 back to Client Identifier Not Valid.
    let (mut client, ack) = RawClient::connect(broker.addr, persistent_connect(V4, "", 0)).await;
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    assert!(!ack.session_present);
    assert_eq!(client.expect_closed().await, None);
    broker.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v31_is_refused() {
    let broker = common::start_default().await;
    for clean in [true, false] {
        let mut connect = connect_packet(V3, "");
        connect.clean_start = clean;
        let mut client = RawClient::open(broker.addr, V3).await;
        client.send(Packet::Connect(Box::new(connect))).await;
        assert_eq!(
            client.raw_until_closed().await,
            vec![0x20, 0x02, 0x00, 0x02],
            "clean session {clean}"
        );
    }
    broker.shutdown().await;
}

/// A CONNECT with protocol name MQTT and the given level, client id "a".
fn raw_connect_with_level(level: u8) -> Vec<u8> {
    vec![
        0x10, 13, // CONNECT, remaining length
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        level, 0x02, // level, clean start
        0x00, 0x3C, // keep alive 60
        0x00, 0x01, b'a', // client id
    ]
}

#[tokio::test]
async fn unsupported_protocol_level_gets_0x01_in_311_format() {
    let broker = common::start_default().await;
    for level in [6u8, 7, 2] {
        let mut client = RawClient::open(broker.addr, V4).await;
        client.send_raw(&raw_connect_with_level(level)).await;
        // [MQTT-3.1.2-2]: CONNACK return code 0x01, then close.
        assert_eq!(
            client.raw_until_closed().await,
            vec![0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
    }
    // Sanity check of the raw encoding: level 4 is accepted.
    let mut client = RawClient::open(broker.addr, V4).await;
    client.send_raw(&raw_connect_with_level(4)).await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn packet_before_connect_closes_without_answer() {
    let broker = common::start_default().await;
    let first_packets: [&[u8]; 3] = [
        &[0xC0, 0x00],                                     // PINGREQ
        &[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i'],       // PUBLISH QoS 0
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE
    ];
    for bytes in first_packets {
        let mut client = RawClient::open(broker.addr, V4).await;
        client.send_raw(bytes).await;
        // [MQTT-3.1.0-1]: the first packet must be CONNECT.
        assert_eq!(
            client.raw_until_closed().await,
            Vec::<u8>::new(),
            "{bytes:02X?}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let broker = common::start_default().await;
    for version in ALL_VERSIONS {
        let id = format!("twice-{}", version.level());
        let mut client = RawClient::connected(broker.addr, version, &id).await;
        client
            .send(Packet::Connect(Box::new(connect_packet(version, &id))))
            .await;
        if version.is_v5() {
            // [MQTT-3.1.0-2]: DISCONNECT 0x82, then close.
            client.expect_disconnect(ReasonCode::ProtocolError).await;
        } else {
            assert_eq!(client.expect_closed().await, None, "{version:?}");
        }
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_closes_silent_sockets() {
    let mut config = common::test_config();
    config.broker.connect_timeout = Duration::from_millis(300);
    let broker = common::start(config).await;
    // Nothing at all.
    let mut silent = RawClient::open(broker.addr, V4).await;
    assert_eq!(silent.raw_until_closed().await, Vec::<u8>::new());
    // Half a CONNECT.
    let mut partial = RawClient::open(broker.addr, V4).await;
    partial.send_raw(&raw_connect_with_level(4)[..5]).await;
    assert_eq!(partial.raw_until_closed().await, Vec::<u8>::new());
    // A prompt client is still served.
    let client = RawClient::connected(broker.addr, V4, "prompt").await;
    client.disconnect().await;
    broker.shutdown().await;
}

/// Connect with keep alive 1 s and send nothing: the broker must not close
/// within the keep alive itself, and must close after 1.5 times it.
async fn keep_alive_enforced(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut connect = connect_packet(version, "idle");
    connect.keep_alive = 1;
    let (mut client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    assert!(
        client
            .recv_within(Duration::from_millis(1200))
            .await
            .is_none(),
        "closed before 1.5 x keep alive"
    );
    let last = client.expect_closed().await;
    if version.is_v5() {
        match last {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::KeepAliveTimeout),
            other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
        }
    } else {
        assert_eq!(last, None);
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn keep_alive_enforced_v31() {
    keep_alive_enforced(V3).await;
}

#[tokio::test]
async fn keep_alive_enforced_v311() {
    keep_alive_enforced(V4).await;
}

#[tokio::test]
async fn keep_alive_enforced_v5() {
    keep_alive_enforced(V5).await;
}

#[tokio::test]
async fn pingreq_keeps_the_connection_alive() {
    let broker = common::start_default().await;
    for version in [V4, V5] {
        let mut connect = connect_packet(version, "pinger");
        connect.keep_alive = 1;
        let (mut client, ack) = RawClient::connect(broker.addr, connect).await;
        assert_eq!(ack.reason, ReasonCode::Success);
        // Three seconds: twice the 1.5 s allowance.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            client.ping_pong().await;
        }
        client.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn max_keepalive_caps_v5_with_server_keep_alive() {
    let mut config = common::test_config();
    config.broker.max_keepalive = 10;
    let broker = common::start(config).await;
    for (asked, told) in [(0, Some(10)), (30, Some(10)), (10, None), (5, None)] {
        let mut connect = connect_packet(V5, "cap5");
        connect.keep_alive = asked;
        let (client, ack) = RawClient::connect(broker.addr, connect).await;
        assert_eq!(ack.reason, ReasonCode::Success, "keep alive {asked}");
        assert_eq!(ack.properties.server_keep_alive, told, "keep alive {asked}");
        client.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn server_keep_alive_is_enforced() {
    let mut config = common::test_config();
    config.broker.max_keepalive = 1;
    let broker = common::start(config).await;
    let mut connect = connect_packet(V5, "forever");
    connect.keep_alive = 0;
    let (mut client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // [MQTT-3.2.2-21]: the client must use the Server Keep Alive.
    client.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn max_keepalive_refuses_v3_clients_above_the_cap() {
    let mut config = common::test_config();
    config.broker.max_keepalive = 10;
    let broker = common::start(config).await;
    for version in [V3, V4] {
        for keep_alive in [30, 0] {
            let mut connect = connect_packet(version, "cap3");
            connect.keep_alive = keep_alive;
            let mut client = RawClient::open(broker.addr, version).await;
            client.send(Packet::Connect(Box::new(connect))).await;
            assert_eq!(
                client.raw_until_closed().await,
                vec![0x20, 0x02, 0x00, 0x02],
                "{version:?} keep alive {keep_alive}"
            );
        }
        let mut connect = connect_packet(version, "cap3");
        connect.keep_alive = 10;
        let (client, ack) = RawClient::connect(broker.addr, connect).await;
        assert_eq!(ack.reason, ReasonCode::Success, "{version:?}");
        client.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn anonymous_refused_when_not_allowed() {
    let mut config = common::test_config();
    config.auth.allow_anonymous = false;
    let broker = common::start(config).await;

    // MQTT 5: 0x87 Not authorized.
    let (mut client, ack) = RawClient::connect(broker.addr, connect_packet(V5, "anon5")).await;
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    assert!(!ack.session_present);
    client.expect_closed().await;

    // 3.1 and 3.1.1: return code 0x05, which the codec decodes as Not authorized.
    for version in [V3, V4] {
        let (mut client, ack) =
            RawClient::connect(broker.addr, connect_packet(version, "anon")).await;
        assert_eq!(ack.reason, ReasonCode::NotAuthorized, "{version:?}");
        assert_eq!(client.expect_closed().await, None);
        let mut client = RawClient::open(broker.addr, version).await;
        client
            .send(Packet::Connect(Box::new(connect_packet(version, "anon"))))
            .await;
        assert_eq!(
            client.raw_until_closed().await,
            vec![0x20, 0x02, 0x00, 0x05]
        );
    }

    // Credentials that no backend accepts: bad user name or password.
    for version in ALL_VERSIONS {
        let mut connect = connect_packet(version, "user");
        connect.username = Some("alice".into());
        connect.password = Some(bytes::Bytes::from_static(b"secret"));
        let (mut client, ack) = RawClient::connect(broker.addr, connect).await;
        assert_eq!(ack.reason, ReasonCode::BadUserNameOrPassword, "{version:?}");
        client.expect_closed().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn connack_v5_properties_follow_configuration() {
    let mut config = common::test_config();
    config.broker.topic_alias_maximum = 10;
    config.broker.receive_maximum = 20;
    config.broker.max_packet_size = 4096;
    config.broker.retain_available = false;
    config.broker.max_session_expiry = 30;
    let broker = common::start(config).await;

    let (client, ack) = RawClient::connect(broker.addr, persistent_connect(V5, "props", 100)).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    let p = &ack.properties;
    assert_eq!(p.topic_alias_maximum, Some(10));
    assert_eq!(p.receive_maximum, Some(20));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.retain_available, Some(0));
    // The server tells the expiry it actually uses (spec 3.2.2.3.2).
    assert_eq!(p.session_expiry_interval, Some(30));
    client.disconnect().await;

    // An expiry under the cap is not echoed.
    let (mut client, ack) =
        RawClient::connect(broker.addr, persistent_connect(V5, "props2", 10)).await;
    assert_eq!(ack.properties.session_expiry_interval, None);

    // The advertised Maximum Packet Size is enforced.
    let big = publish_packet("big", &[b'x'; 5000], QoS::AtMostOnce, false, 0);
    client.send(Packet::Publish(Box::new(big))).await;
    client.expect_disconnect(ReasonCode::PacketTooLarge).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn topic_alias_maximum_zero_is_not_advertised() {
    let mut config = common::test_config();
    config.broker.topic_alias_maximum = 0;
    let broker = common::start(config).await;
    let (client, ack) = RawClient::connect(broker.addr, connect_packet(V5, "noalias")).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(ack.properties.topic_alias_maximum, None);
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn request_response_information() {
    let broker = common::start_default().await;
    let mut connect = connect_packet(V5, "rri");
    connect.properties.request_response_information = Some(1);
    let (client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    let info = ack
        .properties
        .response_information
        .expect("Response Information when requested");
    assert!(!info.is_empty());
    client.disconnect().await;

    // [MQTT-3.1.2-28]: 0 means the server must not send it.
    let mut connect = connect_packet(V5, "rri0");
    connect.properties.request_response_information = Some(0);
    let (client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.properties.response_information, None);
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_v5_old_connection_gets_0x8e() {
    let broker = common::start_default().await;
    let mut first = connect_expect(broker.addr, persistent_connect(V5, "same", 60), false).await;
    first.subscribe("takeover/t", QoS::AtLeastOnce).await;
    let mut second = connect_expect(broker.addr, persistent_connect(V5, "same", 60), true).await;
    // [MQTT-3.1.4-3]: the existing connection is told and closed.
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    // The new connection owns the session, subscriptions included.
    let mut publisher = RawClient::connected(broker.addr, V5, "pub").await;
    assert_eq!(
        publisher
            .publish("takeover/t", b"after", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success
    );
    let p = second.expect_publish().await;
    assert_eq!(&p.payload[..], b"after");
    assert_works(&mut second, "takeover/own").await;
    second.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_v3_closes_old_connection() {
    let broker = common::start_default().await;
    for version in [V3, V4] {
        let mut first = RawClient::connected(broker.addr, version, "same3").await;
        let mut second = RawClient::connected(broker.addr, version, "same3").await;
        assert_eq!(first.expect_closed().await, None, "{version:?}");
        assert_works(&mut second, "takeover3").await;
        second.disconnect().await;
    }
    // Across versions too.
    let mut first = RawClient::connected(broker.addr, V4, "mixed").await;
    let mut second = RawClient::connected(broker.addr, V5, "mixed").await;
    assert_eq!(first.expect_closed().await, None);
    assert_works(&mut second, "takeover/mixed").await;
    second.disconnect().await;
    tokio::time::timeout(WAIT, broker.shutdown()).await.unwrap();
}
