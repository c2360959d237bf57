//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 section 4.8.2) and
//! VerneMQ's `$queue/{filter}`: balancing policies, members leaving, invalid
//! forms, No Local, retained messages, and 3.1/3.1.1 members.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    ALL_VERSIONS, RawClient, V4, V5, connect_expect, connect_packet, persistent_connect, raw_lp,
    raw_packet, raw_props, test_config,
};
use fogg_broker::config::SharedPolicy;
use fogg_codec::{
    Packet, Properties, Publish, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions,
};

fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect()
}

fn numbered(prefix: &str, range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("{prefix}{i}")).collect()
}

async fn publish_numbered(publisher: &mut RawClient, topic: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let reason = publisher
            .publish(
                topic,
                format!("{prefix}{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
        assert_eq!(reason, ReasonCode::Success);
    }
}

#[tokio::test]
async fn round_robin_alternates_exactly_and_plain_subscribers_get_all() {
    let mut config = test_config();
    config.broker.shared_subscription_policy = SharedPolicy::RoundRobin;
    let broker = common::start(config).await;
    let mut a = RawClient::connected(broker.addr, V5, "rr-a").await;
    let mut b = RawClient::connected(broker.addr, V5, "rr-b").await;
    let mut plain = RawClient::connected(broker.addr, V5, "rr-plain").await;
    assert_eq!(
        a.subscribe("$share/g/rr/t", QoS::AtLeastOnce).await.reasons,
        vec![ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        b.subscribe("$share/g/rr/t", QoS::AtLeastOnce).await.reasons,
        vec![ReasonCode::GrantedQoS1]
    );
    plain.subscribe("rr/t", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connected(broker.addr, V5, "rr-pub").await;
    publish_numbered(&mut publisher, "rr/t", "m", 10).await;

    // Members in subscription order, one message each in turn.
    assert_eq!(
        payloads(&a.expect_publishes(5).await),
        numbered("m", (0..10).step_by(2))
    );
    assert_eq!(
        payloads(&b.expect_publishes(5).await),
        numbered("m", (1..10).step_by(2))
    );
    assert_eq!(
        payloads(&plain.expect_publishes(10).await),
        numbered("m", 0..10)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn random_policy_delivers_each_message_to_exactly_one_member() {
    let mut config = test_config();
    config.broker.shared_subscription_policy = SharedPolicy::Random;
    let broker = common::start(config).await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = RawClient::connected(broker.addr, V5, &format!("rnd-{i}")).await;
        m.subscribe("$share/g/rnd/t", QoS::AtLeastOnce).await;
        members.push(m);
    }
    let mut plain = RawClient::connected(broker.addr, V5, "rnd-plain").await;
    plain.subscribe("rnd/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "rnd-pub").await;
    publish_numbered(&mut publisher, "rnd/t", "r", 30).await;
    assert_eq!(
        payloads(&plain.expect_publishes(30).await),
        numbered("r", 0..30)
    );

    let mut seen = Vec::new();
    for m in &mut members {
        let got = payloads(&m.drain_publishes().await);
        // Each member keeps publication order for what it gets.
        let mut sorted = got.clone();
        sorted.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
        assert_eq!(got, sorted);
        seen.extend(got);
    }
    seen.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
    assert_eq!(seen, numbered("r", 0..30), "each message exactly once");
    broker.shutdown().await;
}

#[tokio::test]
async fn queue_prefix_is_one_group_per_filter() {
    let broker = common::start_default().await;
    let mut a = RawClient::connected(broker.addr, V5, "q-a").await;
    let mut b = RawClient::connected(broker.addr, V5, "q-b").await;
    let mut other_group = RawClient::connected(broker.addr, V5, "q-share").await;
    for m in [&mut a, &mut b] {
        assert_eq!(
            m.subscribe("$queue/qq/t", QoS::AtLeastOnce).await.reasons,
            vec![ReasonCode::GrantedQoS1]
        );
    }
    // A `$share` group on the same filter is a different group.
    other_group
        .subscribe("$share/x/qq/t", QoS::AtLeastOnce)
        .await;
    let mut publisher = RawClient::connected(broker.addr, V5, "q-pub").await;
    publish_numbered(&mut publisher, "qq/t", "q", 6).await;
    assert_eq!(
        payloads(&a.expect_publishes(3).await),
        numbered("q", [0, 2, 4])
    );
    assert_eq!(
        payloads(&b.expect_publishes(3).await),
        numbered("q", [1, 3, 5])
    );
    assert_eq!(
        payloads(&other_group.expect_publishes(6).await),
        numbered("q", 0..6)
    );

    // Unsubscribing leaves the group to the other member.
    a.send(Packet::Unsubscribe(Box::new(fogg_codec::Unsubscribe {
        packet_id: 2,
        filters: vec!["$queue/qq/t".into()],
        properties: Properties::default(),
    })))
    .await;
    match a.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.reasons, vec![ReasonCode::Success]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    publish_numbered(&mut publisher, "qq/t", "u", 3).await;
    a.expect_nothing().await;
    assert_eq!(payloads(&b.expect_publishes(3).await), numbered("u", 0..3));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_member_that_goes_away_does_not_lose_the_groups_messages() {
    let broker = common::start_default().await;
    // `leaver` takes one message at a time and never acknowledges: one is in
    // flight, the others wait in its queue when its socket drops.
    let connect = {
        let mut c = connect_packet(V5, "gone-leaver");
        c.properties.receive_maximum = Some(1);
        c
    };
    let mut leaver = connect_expect(broker.addr, connect, false).await;
    let mut stayer = RawClient::connected(broker.addr, V5, "gone-stayer").await;
    leaver.subscribe("$share/g/gone/t", QoS::AtLeastOnce).await;
    stayer.subscribe("$share/g/gone/t", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connected(broker.addr, V5, "gone-pub").await;
    publish_numbered(&mut publisher, "gone/t", "g", 6).await;
    let first = leaver.next_publish_unacked().await;
    assert_eq!(&first.payload[..], b"g0");
    leaver.expect_nothing().await;
    assert_eq!(
        payloads(&stayer.expect_publishes(3).await),
        numbered("g", [1, 3, 5])
    );

    // The socket just drops (clean session: the session ends with it).
    drop(leaver);
    let rerouted = stayer.expect_publishes(3).await;
    assert_eq!(payloads(&rerouted), numbered("g", [0, 2, 4]));
    assert!(rerouted.iter().all(|p| p.qos == QoS::AtLeastOnce));

    // And the group keeps working with one member.
    publish_numbered(&mut publisher, "gone/t", "h", 2).await;
    assert_eq!(
        payloads(&stayer.expect_publishes(2).await),
        numbered("h", 0..2)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn an_offline_member_does_not_take_the_groups_messages() {
    let broker = common::start_default().await;
    let mut away =
        connect_expect(broker.addr, persistent_connect(V5, "off-away", 300), false).await;
    let mut here = RawClient::connected(broker.addr, V5, "off-here").await;
    away.subscribe("$share/g/off/t", QoS::AtLeastOnce).await;
    here.subscribe("$share/g/off/t", QoS::AtLeastOnce).await;
    away.disconnect().await;

    let mut publisher = RawClient::connected(broker.addr, V5, "off-pub").await;
    publish_numbered(&mut publisher, "off/t", "o", 4).await;
    assert_eq!(
        payloads(&here.expect_publishes(4).await),
        numbered("o", 0..4)
    );
    let mut away = connect_expect(broker.addr, persistent_connect(V5, "off-away", 300), true).await;
    away.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let broker = common::start_default().await;
    // `$share/...` with No Local: the codec refuses to encode it, so by hand.
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend(raw_props(&[]));
    body.extend(raw_lp(b"$share/g/nl/t"));
    body.push(0b0000_0101); // QoS 1, No Local
    let mut client = RawClient::connected(broker.addr, V5, "snl-share").await;
    client.send_raw(&raw_packet(0x82, &body)).await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;

    // The same for `$queue/`, which only the broker knows is shared.
    let mut client = RawClient::connected(broker.addr, V5, "snl-queue").await;
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..SubscriptionOptions::default()
    };
    client
        .send(Packet::Subscribe(Box::new(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: "$queue/nl/t".into(),
                options,
            }],
            properties: Properties::default(),
        })))
        .await;
    let d = client.expect_disconnect_packet().await;
    assert_eq!(d.reason, ReasonCode::ProtocolError);
    assert!(d.properties.reason_string.unwrap().contains("MQTT-3.8.3-4"));
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_shared_forms_are_topic_filter_invalid() {
    let broker = common::start_default().await;
    let invalid = [
        "$share/g",
        "$share//t",
        "$share/g+/t",
        "$share/g#/t",
        "$share/+/t",
        "$share/g/",
        "$share/g/a/#/b",
        "$share/g/a+",
        "$queue/",
    ];
    let mut filters: Vec<SubscribeFilter> = invalid
        .iter()
        .map(|f| SubscribeFilter {
            filter: (*f).to_owned(),
            options: SubscriptionOptions::default(),
        })
        .collect();
    filters.push(SubscribeFilter {
        filter: "$share/g/fine/+".into(),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        },
    });
    for version in [V4, V5] {
        let mut client =
            RawClient::connected(broker.addr, version, &format!("inv-{}", version.level())).await;
        client
            .send(Packet::Subscribe(Box::new(Subscribe {
                packet_id: 9,
                filters: filters.clone(),
                properties: Properties::default(),
            })))
            .await;
        let ack = match client.recv().await {
            Some(Packet::SubAck(ack)) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        };
        assert_eq!(ack.packet_id, 9);
        let refused = if version.is_v5() {
            ReasonCode::TopicFilterInvalid
        } else {
            // 3.1.1 has a single failure code, 0x80.
            ReasonCode::UnspecifiedError
        };
        let mut expected = vec![refused; invalid.len()];
        expected.push(ReasonCode::GrantedQoS1);
        assert_eq!(ack.reasons, expected, "{version:?}");
        // Still connected.
        client.ping_pong().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_messages_are_not_sent_on_shared_subscribe() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "sret-pub").await;
    publisher
        .publish("sret/t", b"kept", QoS::AtLeastOnce, true)
        .await;
    for filter in ["$share/g/sret/t", "$share/g/sret/#", "$queue/sret/+"] {
        let mut member = RawClient::connected(broker.addr, V5, "sret-member").await;
        member.subscribe(filter, QoS::AtLeastOnce).await;
        member.expect_nothing().await;
        member.disconnect().await;
    }
    // A plain subscription does get it.
    let mut plain = RawClient::connected(broker.addr, V5, "sret-plain").await;
    plain.subscribe("sret/t", QoS::AtLeastOnce).await;
    assert_eq!(&plain.expect_publish().await.payload[..], b"kept");
    publisher
        .publish("sret/t", b"", QoS::AtLeastOnce, true)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn every_protocol_version_can_be_a_member() {
    let broker = common::start_default().await;
    let mut members = Vec::new();
    for version in ALL_VERSIONS {
        let mut m =
            RawClient::connected(broker.addr, version, &format!("ver-{}", version.level())).await;
        let ack = m.subscribe("$share/mixed/ver/t", QoS::AtLeastOnce).await;
        assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1], "{version:?}");
        members.push(m);
    }
    let mut publisher = RawClient::connected(broker.addr, V4, "ver-pub").await;
    publish_numbered(&mut publisher, "ver/t", "v", 9).await;
    for (i, m) in members.iter_mut().enumerate() {
        let got = m.expect_publishes(3).await;
        assert_eq!(
            payloads(&got),
            numbered("v", (i..9).step_by(3)),
            "member {i}"
        );
        assert!(
            got.iter()
                .all(|p| p.topic == "ver/t" && p.qos == QoS::AtLeastOnce)
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_delivery_uses_the_members_qos_and_identifier() {
    let broker = common::start_default().await;
    let mut member = RawClient::connected(broker.addr, V5, "sq-member").await;
    member
        .subscribe_with_id("$share/g/sq/t", QoS::AtMostOnce, 42)
        .await;
    let mut publisher = RawClient::connected(broker.addr, V5, "sq-pub").await;
    publisher
        .publish("sq/t", b"x", QoS::ExactlyOnce, false)
        .await;
    let p = member.expect_publish().await;
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert_eq!(p.properties.subscription_identifiers, vec![42]);
    assert_eq!(p.topic, "sq/t");
    member.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn an_expiring_members_pending_messages_go_to_the_group() {
    let broker = common::start_default().await;
    let mut connect = persistent_connect(V5, "exp-leaver", 1);
    connect.properties.receive_maximum = Some(1);
    let mut leaver = connect_expect(broker.addr, connect, false).await;
    let mut stayer = RawClient::connected(broker.addr, V5, "exp-stayer").await;
    leaver.subscribe("$share/g/expg/t", QoS::AtLeastOnce).await;
    stayer.subscribe("$share/g/expg/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "exp-pub").await;
    publish_numbered(&mut publisher, "expg/t", "g", 4).await;
    assert_eq!(&leaver.next_publish_unacked().await.payload[..], b"g0");
    assert_eq!(
        payloads(&stayer.expect_publishes(2).await),
        numbered("g", [1, 3])
    );

    // Offline for good: its session outlives the connection by 1 s. Meanwhile
    // new messages go to the member that is online...
    leaver.send(Packet::Disconnect(Default::default())).await;
    leaver.expect_closed().await;
    publish_numbered(&mut publisher, "expg/t", "h", 2).await;
    let fresh = vec![stayer.expect_publish().await, stayer.expect_publish().await];
    assert_eq!(payloads(&fresh), numbered("h", 0..2));
    // ...and once the session expires, what it held goes there too.
    let rerouted = stayer.expect_publishes(2).await;
    assert_eq!(payloads(&rerouted), numbered("g", [0, 2]));
    broker.shutdown().await;
}
