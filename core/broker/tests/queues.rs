//! Session queues: the online queue limit, FIFO and LIFO order, the offline
//! queue (its limit and QoS 0 policy), and the `$SYS` tree that reports what
//! was dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    RawClient, V4, V5, WAIT, connect_expect, connect_packet, persistent_connect, test_config,
};
use fogg_broker::Config;
use fogg_broker::config::QueueType;
use fogg_codec::{Packet, PubAck, Publish, QoS, ReasonCode};

fn text(p: &Publish) -> String {
    String::from_utf8(p.payload.to_vec()).unwrap()
}

/// A subscriber that takes one QoS 1 message at a time (Receive Maximum 1).
async fn slow_subscriber(addr: std::net::SocketAddr, id: &str, topic: &str) -> RawClient {
    let mut connect = connect_packet(V5, id);
    connect.properties.receive_maximum = Some(1);
    let mut sub = connect_expect(addr, connect, false).await;
    sub.subscribe(topic, QoS::AtLeastOnce).await;
    sub
}

/// Acknowledge `first`, then take and acknowledge one message at a time until
/// nothing more comes; the payloads after `first`.
async fn ack_one_by_one(sub: &mut RawClient, first: Publish) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = first;
    loop {
        sub.send(Packet::PubAck(PubAck::new(current.packet_id.unwrap())))
            .await;
        match sub.recv_within(common::QUIET * 2).await {
            None => return out,
            Some(Some(Packet::Publish(p))) => {
                out.push(text(&p));
                current = *p;
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// m0 goes in flight to the slow subscriber; m1..m9 are published while it
/// holds m0. Returns the publisher's PUBACK reasons for m1..m9 and the
/// payloads the subscriber gets after acknowledging, one by one.
async fn overflow_run(config: Config, id: &str) -> (Vec<ReasonCode>, Vec<String>) {
    let broker = common::start(config).await;
    let topic = format!("{id}/t");
    let mut sub = slow_subscriber(broker.addr, id, &topic).await;
    let mut publisher = RawClient::connected(broker.addr, V5, &format!("{id}-pub")).await;
    publisher
        .publish(&topic, b"m0", QoS::AtLeastOnce, false)
        .await;
    let first = sub.next_publish_unacked().await;
    assert_eq!(text(&first), "m0");
    let mut reasons = Vec::new();
    for i in 1..10 {
        reasons.push(
            publisher
                .publish(&topic, format!("m{i}").as_bytes(), QoS::AtLeastOnce, false)
                .await,
        );
    }
    sub.expect_nothing().await;
    let rest = ack_one_by_one(&mut sub, first).await;
    broker.shutdown().await;
    (reasons, rest)
}

#[tokio::test]
async fn fifo_online_queue_keeps_the_oldest_and_drops_the_rest() {
    let mut config = test_config();
    config.broker.max_online_messages = 3;
    config.broker.queue_type = QueueType::Fifo;
    let (reasons, rest) = overflow_run(config, "fifo").await;
    assert_eq!(rest, vec!["m1", "m2", "m3"]);
    // The messages matched a subscriber; dropping them is that session's
    // queue policy, not "no matching subscribers".
    assert!(
        reasons.iter().all(|r| *r == ReasonCode::Success),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn lifo_online_queue_delivers_newest_first_and_drops_the_oldest() {
    let mut config = test_config();
    config.broker.max_online_messages = 3;
    config.broker.queue_type = QueueType::Lifo;
    let (_, rest) = overflow_run(config, "lifo").await;
    // config: "Lifo: deliver newest first; when full, drop the oldest message."
    assert_eq!(rest, vec!["m9", "m8", "m7"]);
}

#[tokio::test]
async fn queue_order_without_overflow() {
    for (queue_type, expected) in [
        (QueueType::Fifo, ["m1", "m2", "m3", "m4", "m5"]),
        (QueueType::Lifo, ["m5", "m4", "m3", "m2", "m1"]),
    ] {
        let mut config = test_config();
        config.broker.queue_type = queue_type;
        let broker = common::start(config).await;
        let mut sub = slow_subscriber(broker.addr, "order", "order/t").await;
        let mut publisher = RawClient::connected(broker.addr, V5, "order-pub").await;
        for i in 0..6 {
            publisher
                .publish(
                    "order/t",
                    format!("m{i}").as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                )
                .await;
        }
        let first = sub.next_publish_unacked().await;
        assert_eq!(text(&first), "m0");
        assert_eq!(
            ack_one_by_one(&mut sub, first).await,
            expected,
            "{queue_type:?}"
        );
        broker.shutdown().await;
    }
}

#[tokio::test]
async fn dropped_messages_are_counted_in_sys() {
    let mut config = test_config();
    config.broker.max_online_messages = 3;
    config.broker.sys_interval = Duration::from_secs(1);
    let broker = common::start(config).await;
    let mut watcher = RawClient::connected(broker.addr, V5, "dropped-watch").await;
    watcher
        .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
        .await;
    let mut sub = slow_subscriber(broker.addr, "dropped", "dropped/t").await;
    let mut publisher = RawClient::connected(broker.addr, V5, "dropped-pub").await;
    publisher
        .publish("dropped/t", b"m0", QoS::AtLeastOnce, false)
        .await;
    let first = sub.next_publish_unacked().await;
    for i in 1..10 {
        publisher
            .publish(
                "dropped/t",
                format!("m{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    // 6 dropped (m4..m9); the counter gets there within a few intervals and
    // never goes past it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = watcher.expect_publish().await;
        let n: u64 = text(&p).parse().unwrap();
        assert!(n <= 6, "{n}");
        if n == 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dropped count stuck at {n}"
        );
    }
    assert_eq!(
        ack_one_by_one(&mut sub, first).await,
        vec!["m1", "m2", "m3"]
    );
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Offline queues.

async fn offline_run(
    config: Config,
    version: fogg_codec::ProtocolVersion,
    sub_qos: QoS,
) -> Vec<Publish> {
    let broker = common::start(config).await;
    let id = format!("off-{}", version.level());
    let mut sub = connect_expect(broker.addr, persistent_connect(version, &id, 600), false).await;
    sub.subscribe("off/t", sub_qos).await;
    sub.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "off-pub").await;
    publisher
        .publish("off/t", b"q0-a", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("off/t", b"q1", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("off/t", b"q0-b", QoS::AtMostOnce, false)
        .await;
    publisher.ping_pong().await;
    let mut sub = connect_expect(broker.addr, persistent_connect(version, &id, 600), true).await;
    let got = sub.drain_publishes().await;
    broker.shutdown().await;
    got
}

#[tokio::test]
async fn qos0_is_not_queued_offline_by_default() {
    for version in [V4, V5] {
        let got = offline_run(test_config(), version, QoS::AtLeastOnce).await;
        let payloads: Vec<String> = got.iter().map(text).collect();
        assert_eq!(payloads, vec!["q1"], "{version:?}");
        assert_eq!(got[0].qos, QoS::AtLeastOnce);
        // A QoS 1 message downgraded to a QoS 0 subscription is QoS 0 too.
        let got = offline_run(test_config(), version, QoS::AtMostOnce).await;
        assert!(got.is_empty(), "{version:?}: {got:?}");
    }
}

#[tokio::test]
async fn queue_qos0_offline_keeps_qos0_for_offline_sessions() {
    for version in [V4, V5] {
        let mut config = test_config();
        config.broker.queue_qos0_offline = true;
        let got = offline_run(config.clone(), version, QoS::AtLeastOnce).await;
        let summary: Vec<(String, QoS)> = got.iter().map(|p| (text(p), p.qos)).collect();
        assert_eq!(
            summary,
            vec![
                ("q0-a".to_owned(), QoS::AtMostOnce),
                ("q1".to_owned(), QoS::AtLeastOnce),
                ("q0-b".to_owned(), QoS::AtMostOnce),
            ],
            "{version:?}"
        );
        let got = offline_run(config, version, QoS::AtMostOnce).await;
        let payloads: Vec<String> = got.iter().map(text).collect();
        assert_eq!(payloads, vec!["q0-a", "q1", "q0-b"], "{version:?}");
        assert!(got.iter().all(|p| p.qos == QoS::AtMostOnce));
    }
}

#[tokio::test]
async fn offline_queue_limit() {
    let mut config = test_config();
    config.broker.max_offline_messages = 2;
    let broker = common::start(config).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V5, "offmax", 600), false).await;
    sub.subscribe("offmax/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr, V5, "offmax-pub").await;
    for i in 0..5 {
        publisher
            .publish(
                "offmax/t",
                format!("m{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    let mut sub = connect_expect(broker.addr, persistent_connect(V5, "offmax", 600), true).await;
    let got: Vec<String> = sub.drain_publishes().await.iter().map(text).collect();
    assert_eq!(got, vec!["m0", "m1"]);
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// $SYS.

#[tokio::test]
async fn sys_topics_report_plausible_values() {
    let mut config = test_config();
    config.broker.sys_interval = Duration::from_secs(1);
    let broker = common::start(config).await;
    let mut everything = RawClient::connected(broker.addr, V4, "sys-hash").await;
    everything.subscribe("#", QoS::AtMostOnce).await;
    let mut plus = RawClient::connected(broker.addr, V5, "sys-plus").await;
    plus.subscribe("+/broker/#", QoS::AtMostOnce).await;
    let mut sys = RawClient::connected(broker.addr, V5, "sys-watch").await;
    sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "sys-pub").await;
    publisher
        .publish("normal/x", b"n", QoS::AtLeastOnce, false)
        .await;

    // Everything seen within 2.5 s (at least two intervals): last value wins.
    let mut values = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        match sys.recv_within(left).await {
            None => break,
            Some(Some(Packet::Publish(p))) => {
                assert!(p.topic.starts_with("$SYS/broker/"), "{p:?}");
                values.insert(p.topic.clone(), text(&p));
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    let get = |name: &str| -> &str {
        values
            .get(&format!("$SYS/broker/{name}"))
            .unwrap_or_else(|| panic!("no $SYS/broker/{name} in {values:?}"))
    };
    let num = |name: &str| -> u64 {
        get(name)
            .parse()
            .unwrap_or_else(|_| panic!("$SYS/broker/{name} = {:?}", get(name)))
    };
    assert!(get("version").starts_with("fogg "), "{}", get("version"));
    let uptime = get("uptime")
        .strip_suffix(" seconds")
        .expect("uptime in seconds");
    assert!(uptime.parse::<u64>().unwrap() <= 60);
    assert!((4..=10).contains(&num("clients/connected")), "{values:?}");
    assert!(num("clients/total") >= 4);
    assert!(num("clients/connects") >= 4);
    assert_eq!(num("clients/refused"), 0);
    assert!(num("messages/received") >= 4, "{values:?}");
    assert!(num("messages/sent") >= 4, "{values:?}");
    assert!(num("publish/messages/received") >= 1);
    assert!(num("publish/messages/sent") >= 2, "{values:?}");
    assert_eq!(num("publish/messages/dropped"), 0);
    assert!(num("bytes/received") > 50);
    assert!(num("bytes/sent") > 50);
    assert!(num("subscriptions/count") >= 3);
    assert!(
        num("retained messages/count") >= 15,
        "$SYS itself is retained"
    );
    // Load regulation and shedding (see tests/limits.rs for them at work).
    assert_eq!(num("load/overloaded"), 0);
    assert_eq!(num("load/shed/qos0_dropped"), 0);
    assert_eq!(num("load/shed/connections_refused"), 0);
    assert_eq!(values.len(), 22, "{values:?}");

    // `#` and `+/...` do not match `$` topics [MQTT-4.7.2-1]; `#` still gets
    // ordinary topics.
    let p = everything.expect_publish().await;
    assert_eq!(p.topic, "normal/x");
    everything.expect_nothing().await;
    plus.expect_nothing().await;
    broker.shutdown().await;
}
