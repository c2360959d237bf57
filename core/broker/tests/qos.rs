//! Quality of service: effective QoS, the QoS 1 and 2 handshakes in both
//! directions, Receive Maximum on both sides, ordering, topic matching and
//! overlapping subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ALL_VERSIONS, RawClient, V4, V5, connect_packet, publish_packet};
use fogg_codec::{Packet, ProtocolVersion, PubAck, QoS, ReasonCode};

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// Subscriber and publisher of `version` on a fresh broker.
async fn effective_qos_matrix(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut sub = RawClient::connected(broker.addr, version, "sub").await;
    let mut publisher = RawClient::connected(broker.addr, version, "pub").await;
    for sub_qos in QOS {
        let ack = sub
            .subscribe(&format!("m/{}", sub_qos as u8), sub_qos)
            .await;
        assert_eq!(ack.reasons, vec![ReasonCode::granted(sub_qos)]);
    }
    for pub_qos in QOS {
        for sub_qos in QOS {
            let topic = format!("m/{}", sub_qos as u8);
            let payload = format!("pub {} sub {}", pub_qos as u8, sub_qos as u8);
            let reason = publisher
                .publish(&topic, payload.as_bytes(), pub_qos, false)
                .await;
            assert_eq!(reason, ReasonCode::Success);
            let p = sub.expect_publish().await;
            let want = pub_qos.min(sub_qos);
            assert_eq!(p.topic, topic, "{payload}");
            assert_eq!(&p.payload[..], payload.as_bytes());
            assert_eq!(p.qos, want, "{version:?} {payload}");
            assert!(!p.dup && !p.retain, "{payload}: {p:?}");
            match want {
                QoS::AtMostOnce => assert_eq!(p.packet_id, None),
                _ => assert_ne!(p.packet_id.expect("packet id"), 0),
            }
        }
    }
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn effective_qos_is_min_of_publish_and_subscription_v31() {
    effective_qos_matrix(common::V3).await;
}

#[tokio::test]
async fn effective_qos_is_min_of_publish_and_subscription_v311() {
    effective_qos_matrix(V4).await;
}

#[tokio::test]
async fn effective_qos_is_min_of_publish_and_subscription_v5() {
    effective_qos_matrix(V5).await;
}

#[tokio::test]
async fn effective_qos_across_versions() {
    let broker = common::start_default().await;
    let mut subs = Vec::new();
    for version in ALL_VERSIONS {
        let mut sub =
            RawClient::connected(broker.addr, version, &format!("x-sub-{}", version.level())).await;
        sub.subscribe("x/t", QoS::AtLeastOnce).await;
        subs.push(sub);
    }
    for version in ALL_VERSIONS {
        let mut publisher =
            RawClient::connected(broker.addr, version, &format!("x-pub-{}", version.level())).await;
        publisher
            .publish("x/t", b"cross", QoS::ExactlyOnce, false)
            .await;
        for sub in &mut subs {
            let p = sub.expect_publish().await;
            assert_eq!(p.qos, QoS::AtLeastOnce);
            assert_eq!(&p.payload[..], b"cross");
        }
        publisher.disconnect().await;
    }
    broker.shutdown().await;
}

/// The full QoS 2 exchange, checked packet by packet in both directions.
async fn qos2_flow(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut sub = RawClient::connected(broker.addr, version, "sub2").await;
    sub.subscribe("q2/t", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, version, "pub2").await;

    for round in 0..3u16 {
        let id = 10 + round;
        publisher
            .send(Packet::Publish(Box::new(publish_packet(
                "q2/t",
                b"exactly",
                QoS::ExactlyOnce,
                false,
                id,
            ))))
            .await;
        match publisher.recv().await {
            Some(Packet::PubRec(rec)) => {
                assert_eq!(rec.packet_id, id);
                assert_eq!(rec.reason, ReasonCode::Success);
            }
            other => panic!("expected PUBREC, got {other:?}"),
        }
        publisher.send(Packet::PubRel(PubAck::new(id))).await;
        match publisher.recv().await {
            Some(Packet::PubComp(comp)) => {
                assert_eq!(comp.packet_id, id);
                assert_eq!(comp.reason, ReasonCode::Success);
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }

        let p = sub.next_publish_unacked().await;
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert!(!p.dup);
        let out_id = p.packet_id.expect("packet id");
        assert_ne!(out_id, 0);
        sub.send(Packet::PubRec(PubAck::new(out_id))).await;
        match sub.recv().await {
            Some(Packet::PubRel(rel)) => {
                assert_eq!(rel.packet_id, out_id);
                assert_eq!(rel.reason, ReasonCode::Success);
            }
            other => panic!("expected PUBREL, got {other:?}"),
        }
        sub.send(Packet::PubComp(PubAck::new(out_id))).await;
    }
    sub.ping_pong().await;
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn qos2_flow_both_directions_v311() {
    qos2_flow(V4).await;
}

#[tokio::test]
async fn qos2_flow_both_directions_v5() {
    qos2_flow(V5).await;
}

#[tokio::test]
async fn qos2_flow_both_directions_v31() {
    qos2_flow(common::V3).await;
}

#[tokio::test]
async fn duplicate_qos2_publish_is_delivered_once() {
    let broker = common::start_default().await;
    for version in [V4, V5] {
        let mut sub =
            RawClient::connected(broker.addr, version, &format!("dsub{}", version.level())).await;
        sub.subscribe("dup/t", QoS::ExactlyOnce).await;
        let mut publisher =
            RawClient::connected(broker.addr, version, &format!("dpub{}", version.level())).await;
        let mut publish = publish_packet("dup/t", b"once", QoS::ExactlyOnce, false, 5);
        for attempt in 0..3 {
            publisher
                .send(Packet::Publish(Box::new(publish.clone())))
                .await;
            match publisher.recv().await {
                Some(Packet::PubRec(rec)) => {
                    assert_eq!(rec.packet_id, 5);
                    assert_eq!(rec.reason, ReasonCode::Success, "attempt {attempt}");
                }
                other => panic!("expected PUBREC, got {other:?}"),
            }
            publish.dup = true;
        }
        publisher.send(Packet::PubRel(PubAck::new(5))).await;
        match publisher.recv().await {
            Some(Packet::PubComp(comp)) => assert_eq!(comp.packet_id, 5),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        let p = sub.expect_publish().await;
        assert_eq!(&p.payload[..], b"once");
        sub.expect_nothing().await;

        // After PUBCOMP the identifier is free: the same id is a new message.
        publisher
            .publish_with(
                publish_packet("dup/t", b"again", QoS::ExactlyOnce, false, 5),
                QoS::ExactlyOnce,
            )
            .await;
        assert_eq!(&sub.expect_publish().await.payload[..], b"again");
        sub.expect_nothing().await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn pubrel_for_unknown_id() {
    let broker = common::start_default().await;
    for version in [V4, V5] {
        let mut client =
            RawClient::connected(broker.addr, version, &format!("rel{}", version.level())).await;
        client.send(Packet::PubRel(PubAck::new(77))).await;
        match client.recv().await {
            Some(Packet::PubComp(comp)) => {
                assert_eq!(comp.packet_id, 77);
                let want = if version.is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                assert_eq!(comp.reason, want, "{version:?}");
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        // The connection stays usable.
        client.ping_pong().await;
        client.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn pubrec_for_unknown_id_v5() {
    let broker = common::start_default().await;
    let mut client = RawClient::connected(broker.addr, V5, "rec").await;
    client.send(Packet::PubRec(PubAck::new(78))).await;
    match client.recv().await {
        Some(Packet::PubRel(rel)) => {
            assert_eq!(rel.packet_id, 78);
            assert_eq!(rel.reason, ReasonCode::PacketIdentifierNotFound);
        }
        other => panic!("expected PUBREL, got {other:?}"),
    }
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn puback_reason_no_matching_subscribers() {
    let broker = common::start_default().await;
    let mut v5 = RawClient::connected(broker.addr, V5, "nms5").await;
    let mut v4 = RawClient::connected(broker.addr, V4, "nms4").await;

    // Nobody subscribed: MQTT 5 says so (0x10), 3.1.1 cannot.
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        assert_eq!(
            v5.publish("nobody/home", b"x", qos, false).await,
            ReasonCode::NoMatchingSubscribers,
            "{qos:?}"
        );
        assert_eq!(
            v4.publish("nobody/home", b"x", qos, false).await,
            ReasonCode::Success
        );
    }

    let mut sub = RawClient::connected(broker.addr, V4, "home").await;
    sub.subscribe("nobody/home", QoS::AtMostOnce).await;
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        assert_eq!(
            v5.publish("nobody/home", b"y", qos, false).await,
            ReasonCode::Success,
            "{qos:?}"
        );
        sub.expect_publish().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn client_receive_maximum_is_honoured() {
    let broker = common::start_default().await;
    let mut connect = connect_packet(V5, "slow");
    connect.properties.receive_maximum = Some(2);
    let (mut sub, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    sub.subscribe("rm/t", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connected(broker.addr, V5, "fast").await;
    for i in 0..5u8 {
        publisher
            .publish("rm/t", &[b'0' + i], QoS::AtLeastOnce, false)
            .await;
    }

    // [MQTT-3.3.4-9]: never more than Receive Maximum unacknowledged.
    let p0 = sub.next_publish_unacked().await;
    let p1 = sub.next_publish_unacked().await;
    assert_eq!((&p0.payload[..], &p1.payload[..]), (&b"0"[..], &b"1"[..]));
    sub.expect_nothing().await;

    sub.ack(&p0).await;
    let p2 = sub.next_publish_unacked().await;
    assert_eq!(&p2.payload[..], b"2");
    sub.expect_nothing().await;

    sub.ack(&p1).await;
    sub.ack(&p2).await;
    let p3 = sub.next_publish_unacked().await;
    let p4 = sub.next_publish_unacked().await;
    assert_eq!((&p3.payload[..], &p4.payload[..]), (&b"3"[..], &b"4"[..]));
    sub.ack(&p3).await;
    sub.ack(&p4).await;
    sub.expect_nothing().await;

    // QoS 0 does not need a free slot in the window (spec 4.9).
    let mut connect = connect_packet(V5, "slow0");
    connect.properties.receive_maximum = Some(1);
    let (mut sub0, _) = RawClient::connect(broker.addr, connect).await;
    sub0.subscribe("rm/q1", QoS::AtLeastOnce).await;
    sub0.subscribe("rm/q0", QoS::AtMostOnce).await;
    publisher
        .publish("rm/q1", b"held", QoS::AtLeastOnce, false)
        .await;
    let held = sub0.next_publish_unacked().await;
    assert_eq!(&held.payload[..], b"held");
    publisher
        .publish("rm/q0", b"free", QoS::AtMostOnce, false)
        .await;
    let free = sub0.next_publish_unacked().await;
    assert_eq!(&free.payload[..], b"free");
    publisher
        .publish("rm/q1", b"waits", QoS::AtLeastOnce, false)
        .await;
    sub0.expect_nothing().await;
    sub0.ack(&held).await;
    assert_eq!(&sub0.expect_publish().await.payload[..], b"waits");
    broker.shutdown().await;
}

#[tokio::test]
async fn receive_maximum_counts_qos2_until_pubcomp() {
    let broker = common::start_default().await;
    let mut connect = connect_packet(V5, "one-at-a-time");
    connect.properties.receive_maximum = Some(1);
    let (mut sub, _) = RawClient::connect(broker.addr, connect).await;
    sub.subscribe("rm2/t", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "p").await;
    publisher
        .publish("rm2/t", b"a", QoS::ExactlyOnce, false)
        .await;
    publisher
        .publish("rm2/t", b"b", QoS::ExactlyOnce, false)
        .await;

    let a = sub.next_publish_unacked().await;
    let id = a.packet_id.unwrap();
    sub.send(Packet::PubRec(PubAck::new(id))).await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    // Still inflight until PUBCOMP (spec 4.9).
    sub.expect_nothing().await;
    sub.send(Packet::PubComp(PubAck::new(id))).await;
    let b = sub.expect_publish().await;
    assert_eq!(&b.payload[..], b"b");
    broker.shutdown().await;
}

#[tokio::test]
async fn server_receive_maximum_is_enforced() {
    let mut config = common::test_config();
    config.broker.receive_maximum = 2;
    let broker = common::start(config).await;
    let (mut client, ack) = RawClient::connect(broker.addr, connect_packet(V5, "greedy")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));

    let send_q2 = |id: u16| {
        Packet::Publish(Box::new(publish_packet(
            "srm/t",
            b"x",
            QoS::ExactlyOnce,
            false,
            id,
        )))
    };
    for id in [1, 2] {
        client.send(send_q2(id)).await;
        match client.recv().await {
            Some(Packet::PubRec(rec)) => assert_eq!(rec.packet_id, id),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    // Completing one frees a slot.
    client.send(Packet::PubRel(PubAck::new(1))).await;
    match client.recv().await {
        Some(Packet::PubComp(comp)) => assert_eq!(comp.packet_id, 1),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    client.send(send_q2(3)).await;
    match client.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!(rec.packet_id, 3),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // A third unacknowledged one breaks [MQTT-3.3.4-7]: DISCONNECT 0x93.
    client.send(send_q2(4)).await;
    client
        .expect_disconnect(ReasonCode::ReceiveMaximumExceeded)
        .await;
    broker.shutdown().await;
}

/// 200 pipelined QoS 1 messages arrive in order [MQTT-4.6.0-6].
async fn ordered_stream(version: ProtocolVersion, receive_maximum: Option<u16>) {
    const N: u16 = 200;
    let broker = common::start_default().await;
    let mut connect = connect_packet(version, "reader");
    connect.properties.receive_maximum = receive_maximum;
    let (mut sub, _) = RawClient::connect(broker.addr, connect).await;
    sub.subscribe("order/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, version, "writer").await;
    for i in 1..=N {
        publisher
            .send(Packet::Publish(Box::new(publish_packet(
                "order/t",
                i.to_string().as_bytes(),
                QoS::AtLeastOnce,
                false,
                i,
            ))))
            .await;
    }
    for i in 1..=N {
        let p = sub.expect_publish().await;
        assert_eq!(std::str::from_utf8(&p.payload).unwrap(), i.to_string());
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    for i in 1..=N {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, i),
            other => panic!("expected PUBACK {i}, got {other:?}"),
        }
    }
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn qos1_stream_keeps_order_v311() {
    ordered_stream(V4, None).await;
}

#[tokio::test]
async fn qos1_stream_keeps_order_v5() {
    ordered_stream(V5, None).await;
}

#[tokio::test]
async fn qos1_stream_keeps_order_v5_small_receive_maximum() {
    ordered_stream(V5, Some(7)).await;
}

/// Which of `topics` (in publish order) a subscriber of `filter` gets.
async fn wildcard_matching(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let topics = [
        "a",
        "a/b",
        "a/b/c",
        "a/",
        "/b",
        "x/bar",
        "$foo/bar",
        "$bar/test",
    ];
    let cases: [(&str, &[&str]); 9] = [
        ("#", &["a", "a/b", "a/b/c", "a/", "/b", "x/bar"]),
        ("+/bar", &["x/bar"]),
        ("+/+", &["a/b", "a/", "/b", "x/bar"]),
        ("a/#", &["a", "a/b", "a/b/c", "a/"]),
        ("a/+", &["a/b", "a/"]),
        ("+/#", &["a", "a/b", "a/b/c", "a/", "/b", "x/bar"]),
        ("$foo/#", &["$foo/bar"]),
        ("$bar/#", &["$bar/test"]),
        ("+/test", &[]),
    ];
    let mut subs = Vec::new();
    for (i, (filter, _)) in cases.iter().enumerate() {
        let mut sub = RawClient::connected(broker.addr, version, &format!("w{i}")).await;
        let ack = sub.subscribe(filter, QoS::AtLeastOnce).await;
        assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1], "{filter}");
        subs.push(sub);
    }
    let mut publisher = RawClient::connected(broker.addr, version, "wpub").await;
    for topic in topics {
        publisher
            .publish(topic, topic.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    for ((filter, want), sub) in cases.iter().zip(&mut subs) {
        let mut got = Vec::new();
        for _ in 0..want.len() {
            got.push(sub.expect_publish().await.topic);
        }
        assert_eq!(&got, want, "{version:?} filter {filter}");
        sub.expect_nothing().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcards_and_dollar_topics_v311() {
    wildcard_matching(V4).await;
}

#[tokio::test]
async fn wildcards_and_dollar_topics_v5() {
    wildcard_matching(V5).await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_v5() {
    let broker = common::start_default().await;
    let mut sub = RawClient::connected(broker.addr, V5, "overlap").await;
    sub.subscribe_with_id("ov/+", QoS::AtLeastOnce, 1).await;
    sub.subscribe_with_id("ov/b", QoS::ExactlyOnce, 2).await;
    sub.subscribe_with_id("#", QoS::AtMostOnce, 3).await;
    sub.subscribe("ov/c", QoS::AtMostOnce).await; // no identifier
    let mut publisher = RawClient::connected(broker.addr, V5, "opub").await;

    // [MQTT-3.3.4-2]/[MQTT-3.3.4-3]: one copy at the highest granted QoS,
    // carrying every matching subscription identifier.
    publisher
        .publish("ov/b", b"b", QoS::ExactlyOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    sub.expect_nothing().await;

    publisher
        .publish("ov/c", b"c", QoS::ExactlyOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 3]);
    sub.expect_nothing().await;

    publisher
        .publish("other", b"o", QoS::ExactlyOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert_eq!(p.properties.subscription_identifiers, vec![3]);
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_v311() {
    let broker = common::start_default().await;
    let mut sub = RawClient::connected(broker.addr, V4, "overlap4").await;
    sub.subscribe("ov/+", QoS::AtMostOnce).await;
    sub.subscribe("ov/b", QoS::AtLeastOnce).await;
    sub.subscribe("ov/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V4, "opub4").await;
    publisher
        .publish("ov/b", b"b", QoS::ExactlyOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn resubscribe_replaces_the_granted_qos() {
    let broker = common::start_default().await;
    let mut sub = RawClient::connected(broker.addr, V4, "resub").await;
    sub.subscribe("re/t", QoS::ExactlyOnce).await;
    sub.subscribe("re/t", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V4, "rpub").await;
    publisher
        .publish("re/t", b"x", QoS::ExactlyOnce, false)
        .await;
    // [MQTT-3.8.4-3]: the new subscription replaces the old one; one copy.
    assert_eq!(sub.expect_publish().await.qos, QoS::AtMostOnce);
    sub.expect_nothing().await;
    broker.shutdown().await;
}
