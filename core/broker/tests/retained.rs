//! Retained messages: set, replace, clear, the RETAIN flag on delivery,
//! Retain As Published, Retain Handling, wildcards, expiry, and a server
//! without retain support.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ALL_VERSIONS, RawClient, V4, V5, connect_packet, publish_packet};
use fogg_codec::{
    Packet, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
    Unsubscribe,
};

fn options(
    qos: QoS,
    retain_as_published: bool,
    retain_handling: RetainHandling,
) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published,
        retain_handling,
    }
}

async fn set_replace_clear(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, version, "rpub").await;
    publisher
        .publish("r/t", b"one", QoS::AtLeastOnce, true)
        .await;

    // A new subscriber gets it with RETAIN set (3.1.1: [MQTT-3.3.1-8]).
    let mut live = RawClient::connected(broker.addr, version, "live").await;
    let ack = live.subscribe("r/t", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
    let p = live.expect_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("r/t", &b"one"[..]));
    assert!(p.retain, "{version:?}: {p:?}");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    live.expect_nothing().await;

    // Replaced; the live subscriber gets it with RETAIN 0 (3.1.1:
    // [MQTT-3.3.1-9], 5.0: [MQTT-3.3.1-12]).
    publisher
        .publish("r/t", b"two", QoS::AtLeastOnce, true)
        .await;
    let p = live.expect_publish().await;
    assert_eq!(&p.payload[..], b"two");
    assert!(!p.retain, "{version:?}: forwarded live with RETAIN 0");
    let mut late = RawClient::connected(broker.addr, version, "late").await;
    late.subscribe("r/t", QoS::AtLeastOnce).await;
    let p = late.expect_publish().await;
    assert_eq!(&p.payload[..], b"two");
    assert!(p.retain);
    late.expect_nothing().await;

    // An empty retained message clears it (3.1.1: [MQTT-3.3.1-10]), and is itself
    // forwarded to current subscribers.
    publisher.publish("r/t", b"", QoS::AtLeastOnce, true).await;
    let p = live.expect_publish().await;
    assert!(p.payload.is_empty());
    assert!(!p.retain);
    let mut later = RawClient::connected(broker.addr, version, "later").await;
    later.subscribe("r/t", QoS::AtLeastOnce).await;
    later.expect_nothing().await;

    // Retained QoS is capped by the subscription like any message.
    publisher
        .publish("r/q", b"q2", QoS::ExactlyOnce, true)
        .await;
    for (i, sub_qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut sub = RawClient::connected(broker.addr, version, &format!("q{i}")).await;
        sub.subscribe("r/q", sub_qos).await;
        let p = sub.expect_publish().await;
        assert_eq!(p.qos, sub_qos);
        assert!(p.retain);
        assert_eq!(p.packet_id.is_some(), sub_qos != QoS::AtMostOnce);
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_set_replaced_cleared_v31() {
    set_replace_clear(common::V3).await;
}

#[tokio::test]
async fn retained_set_replaced_cleared_v311() {
    set_replace_clear(V4).await;
}

#[tokio::test]
async fn retained_set_replaced_cleared_v5() {
    set_replace_clear(V5).await;
}

#[tokio::test]
async fn retained_across_versions() {
    let broker = common::start_default().await;
    for (i, from) in ALL_VERSIONS.into_iter().enumerate() {
        let topic = format!("x/{i}");
        let mut publisher = RawClient::connected(broker.addr, from, "xpub").await;
        publisher
            .publish(
                &topic,
                from.level().to_string().as_bytes(),
                QoS::AtMostOnce,
                true,
            )
            .await;
        publisher.disconnect().await;
        for to in ALL_VERSIONS {
            let mut sub = RawClient::connected(broker.addr, to, "xsub").await;
            sub.subscribe(&topic, QoS::AtMostOnce).await;
            let p = sub.expect_publish().await;
            assert_eq!(p.payload[..], *from.level().to_string().as_bytes());
            assert!(p.retain);
            sub.disconnect().await;
        }
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retain_as_published_v5() {
    let broker = common::start_default().await;
    let mut plain = RawClient::connected(broker.addr, V5, "plain").await;
    plain
        .subscribe_with(
            "rap/t",
            options(QoS::AtLeastOnce, false, RetainHandling::SendAtSubscribe),
            Properties::default(),
        )
        .await;
    let mut rap = RawClient::connected(broker.addr, V5, "rap").await;
    rap.subscribe_with(
        "rap/t",
        options(QoS::AtLeastOnce, true, RetainHandling::SendAtSubscribe),
        Properties::default(),
    )
    .await;
    let mut old = RawClient::connected(broker.addr, V4, "old").await;
    old.subscribe("rap/t", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connected(broker.addr, V5, "rap-pub").await;
    publisher
        .publish("rap/t", b"kept", QoS::AtLeastOnce, true)
        .await;
    // [MQTT-3.3.1-12] / [MQTT-3.3.1-13]
    assert!(!plain.expect_publish().await.retain);
    assert!(rap.expect_publish().await.retain);
    assert!(!old.expect_publish().await.retain);

    publisher
        .publish("rap/t", b"live", QoS::AtLeastOnce, false)
        .await;
    assert!(!plain.expect_publish().await.retain);
    assert!(!rap.expect_publish().await.retain);
    assert!(!old.expect_publish().await.retain);

    // At subscribe time RETAIN is set whatever Retain As Published says.
    let mut fresh = RawClient::connected(broker.addr, V5, "fresh").await;
    fresh
        .subscribe_with(
            "rap/t",
            options(QoS::AtLeastOnce, false, RetainHandling::SendAtSubscribe),
            Properties::default(),
        )
        .await;
    let p = fresh.expect_publish().await;
    assert_eq!(&p.payload[..], b"kept");
    assert!(p.retain);
    broker.shutdown().await;
}

#[tokio::test]
async fn retain_handling_v5() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "rh-pub").await;
    publisher
        .publish("rh/t", b"stored", QoS::AtLeastOnce, true)
        .await;
    let mut sub = RawClient::connected(broker.addr, V5, "rh").await;

    // 0: at every subscribe [MQTT-3.3.1-9].
    for _ in 0..2 {
        sub.subscribe_with(
            "rh/t",
            options(QoS::AtLeastOnce, false, RetainHandling::SendAtSubscribe),
            Properties::default(),
        )
        .await;
        let p = sub.expect_publish().await;
        assert_eq!(&p.payload[..], b"stored");
        assert!(p.retain);
        sub.expect_nothing().await;
    }

    // 1: only if the subscription is new [MQTT-3.3.1-10].
    let one = options(QoS::AtLeastOnce, false, RetainHandling::SendIfNew);
    sub.subscribe_with("rh/+", one, Properties::default()).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"stored");
    sub.expect_nothing().await;
    sub.subscribe_with("rh/+", one, Properties::default()).await;
    sub.expect_nothing().await;
    // After UNSUBSCRIBE it is new again.
    sub.send(Packet::Unsubscribe(Box::new(Unsubscribe {
        packet_id: 3,
        filters: vec!["rh/+".into()],
        properties: Properties::default(),
    })))
    .await;
    match sub.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.reasons, vec![ReasonCode::Success]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    sub.subscribe_with("rh/+", one, Properties::default()).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"stored");
    sub.expect_nothing().await;

    // 2: never [MQTT-3.3.1-11].
    let mut never = RawClient::connected(broker.addr, V5, "rh2").await;
    let ack = never
        .subscribe_with(
            "rh/#",
            options(QoS::AtLeastOnce, false, RetainHandling::DoNotSend),
            Properties::default(),
        )
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
    never.expect_nothing().await;
    // ...but live messages flow.
    publisher
        .publish("rh/t", b"new", QoS::AtLeastOnce, true)
        .await;
    assert_eq!(&never.expect_publish().await.payload[..], b"new");
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcard_subscription_gets_every_matching_retained_message() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V4, "wpub").await;
    for topic in ["w", "w/a", "w/b", "w/c/d", "x/a", "$w/a"] {
        publisher
            .publish(topic, topic.as_bytes(), QoS::AtLeastOnce, true)
            .await;
    }
    let cases: [(&str, &[&str]); 6] = [
        ("w/#", &["w", "w/a", "w/b", "w/c/d"]),
        ("w/+", &["w/a", "w/b"]),
        ("+/a", &["w/a", "x/a"]),
        ("#", &["w", "w/a", "w/b", "w/c/d", "x/a"]),
        ("$w/#", &["$w/a"]),
        ("w/c/+/e", &[]),
    ];
    for version in [V4, V5] {
        for (filter, want) in cases {
            let mut sub = RawClient::connected(broker.addr, version, "wsub").await;
            sub.subscribe(filter, QoS::AtLeastOnce).await;
            let mut got = Vec::new();
            for _ in 0..want.len() {
                let p = sub.expect_publish().await;
                assert!(p.retain);
                got.push(p.topic);
            }
            got.sort();
            let mut want = want.to_vec();
            want.sort();
            assert_eq!(got, want, "{version:?} {filter}");
            sub.expect_nothing().await;
            sub.disconnect().await;
        }
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_message_expiry_v5() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "exp-pub").await;
    let mut short = publish_packet("exp/short", b"brief", QoS::AtLeastOnce, true, 1);
    short.properties.message_expiry_interval = Some(1);
    publisher.publish_with(short, QoS::AtLeastOnce).await;
    let mut long = publish_packet("exp/long", b"lasting", QoS::AtLeastOnce, true, 2);
    long.properties.message_expiry_interval = Some(3600);
    publisher.publish_with(long, QoS::AtLeastOnce).await;

    // While alive, the remaining lifetime is forwarded [MQTT-3.3.2-6].
    let mut sub = RawClient::connected(broker.addr, V5, "early").await;
    sub.subscribe("exp/short", QoS::AtLeastOnce).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"brief");
    assert_eq!(p.properties.message_expiry_interval, Some(1));

    tokio::time::sleep(Duration::from_secs(2)).await;
    for version in [V4, V5] {
        let mut sub = RawClient::connected(broker.addr, version, "late").await;
        sub.subscribe("exp/#", QoS::AtLeastOnce).await;
        let p = sub.expect_publish().await;
        assert_eq!(p.topic, "exp/long", "{version:?}: the expired one is gone");
        if version.is_v5() {
            let left = p.properties.message_expiry_interval.unwrap();
            assert!((3590..=3600).contains(&left), "{left}");
        }
        sub.expect_nothing().await;
        sub.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_properties_are_kept_v5() {
    let broker = common::start_default().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "props-pub").await;
    let mut publish = publish_packet("props/t", b"{}", QoS::AtLeastOnce, true, 1);
    publish.properties.content_type = Some("application/json".into());
    publish.properties.payload_format_indicator = Some(1);
    publish.properties.user_properties = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    publish.properties.response_topic = Some("props/reply".into());
    publish.properties.correlation_data = Some(bytes::Bytes::from_static(b"corr"));
    publisher
        .publish_with(publish.clone(), QoS::AtLeastOnce)
        .await;

    let mut sub = RawClient::connected(broker.addr, V5, "props-sub").await;
    sub.subscribe("props/t", QoS::AtLeastOnce).await;
    let p = sub.expect_publish().await;
    assert_eq!(p.properties, publish.properties);
    broker.shutdown().await;
}

#[tokio::test]
async fn retain_not_available() {
    let mut config = common::test_config();
    config.broker.retain_available = false;
    let broker = common::start(config).await;

    let (mut v5, ack) = RawClient::connect(broker.addr, connect_packet(V5, "nr5")).await;
    assert_eq!(ack.properties.retain_available, Some(0));
    // Non-retained publishing is fine.
    let mut sub = RawClient::connected(broker.addr, V5, "nr-sub").await;
    sub.subscribe("nr/t", QoS::AtLeastOnce).await;
    v5.publish("nr/t", b"ok", QoS::AtLeastOnce, false).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"ok");
    // Spec 3.3.1.3 and 4.13: DISCONNECT 0x9A.
    v5.send(Packet::Publish(Box::new(publish_packet(
        "nr/t",
        b"r",
        QoS::AtLeastOnce,
        true,
        9,
    ))))
    .await;
    v5.expect_disconnect(ReasonCode::RetainNotSupported).await;
    sub.expect_nothing().await;

    // 3.1.1 has no reason code: the connection is closed.
    let mut v4 = RawClient::connected(broker.addr, V4, "nr4").await;
    v4.send(Packet::Publish(Box::new(publish_packet(
        "nr/t",
        b"r",
        QoS::AtMostOnce,
        true,
        0,
    ))))
    .await;
    assert_eq!(v4.expect_closed().await, None);

    // A will with RETAIN is refused at CONNECT with 0x9A (spec 3.2.2.3.5).
    let mut connect = connect_packet(V5, "nr-will");
    let mut will = common::will("nr/will", b"w", QoS::AtMostOnce);
    will.retain = true;
    connect.will = Some(will);
    let (mut client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::RetainNotSupported);
    client.expect_closed().await;

    // Nothing was retained.
    let mut late = RawClient::connected(broker.addr, V5, "nr-late").await;
    late.subscribe("#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
    broker.shutdown().await;
}
