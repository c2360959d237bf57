//! Sessions: persistence across connections, clean start, MQTT 5 session
//! expiry, inflight resumption and the offline queue's limits and order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ALL_VERSIONS, RawClient, V4, V5, connect_expect, connect_packet, persistent_connect};
use fogg_broker::config::QueueType;
use fogg_codec::{Disconnect, Packet, Properties, ProtocolVersion, PubAck, QoS, ReasonCode};

/// Create a persistent session subscribed to `filter`, then go offline.
async fn offline_subscriber(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) {
    let mut sub = connect_expect(addr, persistent_connect(version, id, 300), false).await;
    let ack = sub.subscribe(filter, qos).await;
    assert_eq!(ack.reasons, vec![ReasonCode::granted(qos)]);
    sub.disconnect().await;
}

/// Publish `payloads` in order at `qos`, expecting success acknowledgements.
async fn publish_all(publisher: &mut RawClient, topic: &str, payloads: &[&str], qos: QoS) {
    for payload in payloads {
        let reason = publisher
            .publish(topic, payload.as_bytes(), qos, false)
            .await;
        assert_eq!(reason, ReasonCode::Success, "{payload}");
    }
}

/// Receive exactly `want` (payloads, in order), then nothing more.
async fn expect_payloads(client: &mut RawClient, want: &[&str]) {
    let mut got = Vec::new();
    for _ in want {
        let p = client.expect_publish().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(got, want);
    client.expect_nothing().await;
}

async fn persistent_session_keeps_state(version: ProtocolVersion) {
    let broker = common::start_default().await;
    offline_subscriber(broker.addr, version, "keeper", "ps/+", QoS::ExactlyOnce).await;

    let mut publisher = RawClient::connected(broker.addr, V5, "ps-pub").await;
    // The offline session is a matching subscriber: no 0x10 here.
    assert_eq!(
        publisher
            .publish("ps/a", b"one", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success
    );
    assert_eq!(
        publisher
            .publish("ps/b", b"two", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::Success
    );

    let mut sub = connect_expect(
        broker.addr,
        persistent_connect(version, "keeper", 300),
        true,
    )
    .await;
    let one = sub.expect_publish().await;
    assert_eq!(
        (one.topic.as_str(), &one.payload[..]),
        ("ps/a", &b"one"[..])
    );
    assert_eq!(one.qos, QoS::AtLeastOnce);
    assert!(!one.dup, "never sent before, so not a duplicate");
    let two = sub.expect_publish().await;
    assert_eq!(
        (two.topic.as_str(), &two.payload[..]),
        ("ps/b", &b"two"[..])
    );
    assert_eq!(two.qos, QoS::ExactlyOnce);
    sub.expect_nothing().await;

    // The subscription itself survived: no SUBSCRIBE needed.
    publisher
        .publish("ps/c", b"three", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"three");
    sub.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_messages_v31() {
    persistent_session_keeps_state(common::V3).await;
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_messages_v311() {
    persistent_session_keeps_state(V4).await;
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_messages_v5() {
    persistent_session_keeps_state(V5).await;
}

#[tokio::test]
async fn clean_session_discards_state() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "cs-pub").await;
    for version in ALL_VERSIONS {
        let id = format!("cleaner{}", version.level());
        offline_subscriber(broker.addr, version, &id, "cs/t", QoS::AtLeastOnce).await;
        publish_all(&mut publisher, "cs/t", &["lost"], QoS::AtLeastOnce).await;

        // Clean start; for MQTT 5 with Session Expiry 0, so that the new
        // session ends with this connection as a 3.x clean session does.
        let mut clean = persistent_connect(version, &id, 0);
        clean.clean_start = true;
        let mut sub = connect_expect(broker.addr, clean, false).await;
        // Neither the queued message nor the subscription survived.
        sub.expect_nothing().await;
        assert_eq!(
            publisher
                .publish("cs/t", b"after", QoS::AtLeastOnce, false)
                .await,
            ReasonCode::NoMatchingSubscribers,
            "{version:?}"
        );
        sub.expect_nothing().await;
        sub.disconnect().await;

        // A clean session itself ends with its connection.
        let sub = connect_expect(broker.addr, persistent_connect(version, &id, 300), false).await;
        sub.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn v5_session_expiry_zero_ends_session_at_disconnect() {
    let broker = common::start_default().await;
    let mut sub = connect_expect(broker.addr, connect_packet(V5, "short"), false).await;
    sub.subscribe("short/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = RawClient::connected(broker.addr, V5, "short-pub").await;
    assert_eq!(
        publisher
            .publish("short/t", b"x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NoMatchingSubscribers
    );
    let mut sub = connect_expect(broker.addr, persistent_connect(V5, "short", 0), false).await;
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn v5_session_expires_after_its_interval() {
    let broker = common::start_default().await;
    // Reconnecting in time finds the session.
    offline_subscriber(broker.addr, V5, "brief", "exp/t", QoS::AtLeastOnce).await;
    let sub = connect_expect(broker.addr, persistent_connect(V5, "brief", 1), true).await;
    sub.disconnect().await;

    // Expiry 1 s (set by the last CONNECT); 2.5 s later it is gone.
    let mut publisher = RawClient::connected(broker.addr, V5, "exp-pub").await;
    publish_all(&mut publisher, "exp/t", &["queued"], QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        publisher
            .publish("exp/t", b"late", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NoMatchingSubscribers
    );
    let mut sub = connect_expect(broker.addr, persistent_connect(V5, "brief", 1), false).await;
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn disconnect_cannot_turn_a_zero_expiry_into_a_session() {
    let broker = common::start_default().await;
    let mut client = RawClient::connected(broker.addr, V5, "zero").await;
    client
        .send(Packet::Disconnect(Box::new(Disconnect {
            reason: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(30),
                ..Properties::default()
            },
        })))
        .await;
    // Spec 3.14.2.2.2: a Protocol Error.
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    let client = connect_expect(broker.addr, persistent_connect(V5, "zero", 30), false).await;
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn disconnect_can_shorten_the_session_expiry() {
    let broker = common::start_default().await;
    let mut client =
        connect_expect(broker.addr, persistent_connect(V5, "shorten", 300), false).await;
    client.subscribe("shorten/t", QoS::AtLeastOnce).await;
    client
        .send(Packet::Disconnect(Box::new(Disconnect {
            reason: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(0),
                ..Properties::default()
            },
        })))
        .await;
    assert_eq!(client.expect_closed().await, None);
    let client = connect_expect(broker.addr, persistent_connect(V5, "shorten", 300), false).await;
    client.disconnect().await;
    broker.shutdown().await;
}

async fn inflight_resumed_with_dup(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut sub = connect_expect(
        broker.addr,
        persistent_connect(version, "flaky", 300),
        false,
    )
    .await;
    sub.subscribe("inf/+", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "inf-pub").await;

    // QoS 1, not acknowledged, connection lost.
    publisher
        .publish("inf/1", b"q1", QoS::AtLeastOnce, false)
        .await;
    let first = sub.next_publish_unacked().await;
    assert!(!first.dup);
    drop(sub);
    let mut sub =
        connect_expect(broker.addr, persistent_connect(version, "flaky", 300), true).await;
    // [MQTT-4.4.0-1]: resent with the original packet id, DUP set [MQTT-3.3.1-1].
    let again = sub.next_publish_unacked().await;
    assert_eq!(again.packet_id, first.packet_id);
    assert!(again.dup, "{again:?}");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    assert_eq!(&again.payload[..], b"q1");
    sub.ack(&again).await;
    sub.expect_nothing().await;

    // QoS 2 before PUBREC: the PUBLISH is resent with DUP.
    publisher
        .publish("inf/2", b"q2", QoS::ExactlyOnce, false)
        .await;
    let first = sub.next_publish_unacked().await;
    assert_eq!(first.qos, QoS::ExactlyOnce);
    drop(sub);
    let mut sub =
        connect_expect(broker.addr, persistent_connect(version, "flaky", 300), true).await;
    let again = sub.next_publish_unacked().await;
    assert_eq!(again.packet_id, first.packet_id);
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"q2");
    let id = again.packet_id.unwrap();

    // QoS 2 after PUBREC: the PUBREL is resent, not the PUBLISH.
    sub.send(Packet::PubRec(PubAck::new(id))).await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub);
    let mut sub =
        connect_expect(broker.addr, persistent_connect(version, "flaky", 300), true).await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, id),
        other => panic!("expected the PUBREL again, got {other:?}"),
    }
    sub.send(Packet::PubComp(PubAck::new(id))).await;
    sub.expect_nothing().await;
    sub.disconnect().await;

    // Completed: nothing is resent any more.
    let mut sub =
        connect_expect(broker.addr, persistent_connect(version, "flaky", 300), true).await;
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn inflight_resumed_with_dup_v31() {
    inflight_resumed_with_dup(common::V3).await;
}

#[tokio::test]
async fn inflight_resumed_with_dup_v311() {
    inflight_resumed_with_dup(V4).await;
}

#[tokio::test]
async fn inflight_resumed_with_dup_v5() {
    inflight_resumed_with_dup(V5).await;
}

#[tokio::test]
async fn qos0_not_queued_offline_by_default() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "q0-pub").await;
    for version in [V4, V5] {
        let id = format!("q0-{}", version.level());
        offline_subscriber(broker.addr, version, &id, "q0/t", QoS::AtLeastOnce).await;
        publish_all(&mut publisher, "q0/t", &["zero"], QoS::AtMostOnce).await;
        publish_all(&mut publisher, "q0/t", &["one"], QoS::AtLeastOnce).await;
        let mut sub =
            connect_expect(broker.addr, persistent_connect(version, &id, 300), true).await;
        expect_payloads(&mut sub, &["one"]).await;
        sub.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn qos0_queued_offline_when_configured() {
    let mut config = common::test_config();
    config.broker.queue_qos0_offline = true;
    let broker = common::start(config).await;
    offline_subscriber(broker.addr, V4, "q0-yes", "q0/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "q0-pub").await;
    publish_all(&mut publisher, "q0/t", &["zero"], QoS::AtMostOnce).await;
    publish_all(&mut publisher, "q0/t", &["one"], QoS::AtLeastOnce).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "q0-yes", 300), true).await;
    let zero = sub.expect_publish().await;
    assert_eq!(
        (&zero.payload[..], zero.qos),
        (&b"zero"[..], QoS::AtMostOnce)
    );
    expect_payloads(&mut sub, &["one"]).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn max_offline_messages_drops_the_newest_in_fifo() {
    let mut config = common::test_config();
    config.broker.max_offline_messages = 3;
    let broker = common::start(config).await;
    for version in [V4, V5] {
        let id = format!("full-{}", version.level());
        offline_subscriber(broker.addr, version, &id, "full/t", QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connected(broker.addr, V5, "full-pub").await;
        publish_all(
            &mut publisher,
            "full/t",
            &["1", "2", "3", "4", "5"],
            QoS::AtLeastOnce,
        )
        .await;
        let mut sub =
            connect_expect(broker.addr, persistent_connect(version, &id, 300), true).await;
        expect_payloads(&mut sub, &["1", "2", "3"]).await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn lifo_queue_delivers_newest_first() {
    let mut config = common::test_config();
    config.broker.queue_type = QueueType::Lifo;
    let broker = common::start(config).await;
    offline_subscriber(broker.addr, V5, "lifo", "lifo/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "lifo-pub").await;
    publish_all(&mut publisher, "lifo/t", &["1", "2", "3"], QoS::AtLeastOnce).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V5, "lifo", 300), true).await;
    expect_payloads(&mut sub, &["3", "2", "1"]).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn lifo_queue_drops_the_oldest_when_full() {
    let mut config = common::test_config();
    config.broker.queue_type = QueueType::Lifo;
    config.broker.max_offline_messages = 2;
    let broker = common::start(config).await;
    offline_subscriber(broker.addr, V4, "lifo-full", "lifo/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "lifo-pub").await;
    publish_all(
        &mut publisher,
        "lifo/t",
        &["1", "2", "3", "4"],
        QoS::AtLeastOnce,
    )
    .await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "lifo-full", 300), true).await;
    // config.rs: "Lifo: deliver newest first; when full, drop the oldest message."
    expect_payloads(&mut sub, &["4", "3"]).await;
    broker.shutdown().await;
}

/// A client that disconnects and at once reconnects must find its clean
/// session already ended: by the time the client sees the connection
/// closed, the broker must be done with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_reconnect_sees_the_clean_session_ended() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "bounce-pub").await;
    for round in 0..50 {
        let mut c = RawClient::connected(broker.addr, V4, "bounce").await;
        c.subscribe("bounce/t", QoS::AtLeastOnce).await;
        c.disconnect().await;
        assert_eq!(
            publisher
                .publish("bounce/t", b"x", QoS::AtLeastOnce, false)
                .await,
            ReasonCode::NoMatchingSubscribers,
            "round {round}"
        );
        let (c, ack) = RawClient::connect(broker.addr, persistent_connect(V4, "bounce", 0)).await;
        assert!(!ack.session_present, "round {round}: {ack:?}");
        c.disconnect().await;
    }
    broker.shutdown().await;
}
