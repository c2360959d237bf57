//! Malformed and hostile input: each case gets its specific answer (MQTT 5:
//! a DISCONNECT with the reason code and a reason string before the close;
//! 3.1/3.1.1: the close), and the broker keeps serving everyone else, which
//! every test checks with a fresh, healthy client at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use common::{
    RawClient, V3, V4, V5, WAIT, connect_packet, encoded, raw_lp, raw_packet, raw_props,
    raw_publish, test_config,
};
use fogg_codec::{
    AckProperties, Auth, Disconnect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, RetainHandling, Subscribe, SubscribeFilter, SubscriptionOptions, Unsubscribe,
    property_id as pid,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Count every panic in this test binary. The broker runs on the tests' own
/// runtimes, where a panicking connection task would otherwise go unnoticed.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// The end of every case: nothing panicked, and a healthy client still
/// connects and round-trips a message.
async fn assert_healthy(addr: SocketAddr) {
    count_panics();
    common::assert_healthy(addr).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
}

/// An MQTT 5 client sends `bytes` once connected and gets DISCONNECT `reason`
/// (with a reason string) before the close.
async fn v5_violation(addr: SocketAddr, bytes: &[u8], reason: ReasonCode) {
    count_panics();
    let mut client = RawClient::connected(addr, V5, "bad-5").await;
    client.send_raw(bytes).await;
    let d = client.expect_disconnect_packet().await;
    assert_eq!(d.reason, reason, "{bytes:02X?} → {d:?}");
    let why = d.properties.reason_string.unwrap_or_default();
    assert!(!why.is_empty(), "{bytes:02X?}: no reason string");
}

/// A 3.1 or 3.1.1 client sends `bytes` once connected and the connection is
/// closed without another byte.
async fn old_violation(addr: SocketAddr, version: ProtocolVersion, bytes: &[u8]) {
    count_panics();
    let mut client = RawClient::connected(addr, version, "bad-old").await;
    client.send_raw(bytes).await;
    client.expect_silent_close().await;
}

/// A connection that sends `bytes` instead of CONNECT is closed without an answer.
async fn pre_connect_violation(addr: SocketAddr, bytes: &[u8]) {
    count_panics();
    let mut client = RawClient::open(addr, V5).await;
    client.send_raw(bytes).await;
    client.expect_silent_close().await;
}

/// A deterministic pseudo-random byte stream (xorshift64*).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes());
    }
    out.truncate(len);
    out
}

fn connect_bytes(version: ProtocolVersion, id: &str) -> Vec<u8> {
    encoded(
        &Packet::Connect(Box::new(connect_packet(version, id))),
        version,
    )
}

/// SUBSCRIBE body (MQTT 5 when `v5`): packet id, properties, one filter.
fn subscribe_body(v5: bool, packet_id: u16, filter: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.extend(raw_props(props));
    }
    body.extend(raw_lp(filter));
    body.push(0x01);
    body
}

#[tokio::test]
async fn garbage_instead_of_connect() {
    let broker = common::start_default().await;
    pre_connect_violation(broker.addr, b"GET / HTTP/1.1\r\nHost: fogg\r\n\r\n").await;
    pre_connect_violation(broker.addr, &[0xFF; 64]).await;
    pre_connect_violation(broker.addr, &garbage(4096, 7)).await;
    // A CONNECT fixed header whose remaining length never ends.
    pre_connect_violation(broker.addr, &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn reserved_packet_types() {
    let broker = common::start_default().await;
    // Type 0 is reserved in every version.
    pre_connect_violation(broker.addr, &[0x00, 0x00]).await;
    v5_violation(broker.addr, &[0x00, 0x00], ReasonCode::MalformedPacket).await;
    old_violation(broker.addr, V4, &[0x00, 0x00]).await;
    // Type 15 is AUTH in MQTT 5 and reserved before.
    old_violation(broker.addr, V4, &[0xF0, 0x00]).await;
    old_violation(broker.addr, V3, &[0xF0, 0x00]).await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_fixed_header_flags() {
    let broker = common::start_default().await;
    let cases: Vec<Vec<u8>> = vec![
        // SUBSCRIBE must have flags 0010 [MQTT-3.8.1-1].
        raw_packet(0x80, &subscribe_body(true, 1, b"a/b", &[])),
        // PUBREL must have flags 0010 [MQTT-3.6.1-1].
        vec![0x60, 0x02, 0x00, 0x01],
        // UNSUBSCRIBE must have flags 0010 [MQTT-3.10.1-1].
        raw_packet(0xA0, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a']),
        // Reserved flags must be 0 [MQTT-2.1.3-1].
        vec![0xC1, 0x00],
        vec![0x48, 0x02, 0x00, 0x01],
        // PUBLISH with both QoS bits [MQTT-3.3.1-4] and QoS 0 with DUP [MQTT-3.3.1-2].
        raw_packet(0x36, &[0x00, 0x01, b'a', 0x00, 0x01, 0x00]),
        raw_packet(0x38, &[0x00, 0x01, b'a', 0x00]),
    ];
    for bytes in &cases {
        v5_violation(broker.addr, bytes, ReasonCode::MalformedPacket).await;
    }
    let old_cases: Vec<Vec<u8>> = vec![
        raw_packet(0x80, &subscribe_body(false, 1, b"a/b", &[])),
        vec![0x60, 0x02, 0x00, 0x01],
        vec![0xC1, 0x00],
        raw_packet(0x36, &[0x00, 0x01, b'a', 0x00, 0x01]),
    ];
    for bytes in &old_cases {
        old_violation(broker.addr, V4, bytes).await;
    }
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn malformed_remaining_length() {
    let broker = common::start_default().await;
    // Five length bytes [section 1.5.5].
    v5_violation(
        broker.addr,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ReasonCode::MalformedPacket,
    )
    .await;
    old_violation(broker.addr, V4, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    // Not the shortest encoding [MQTT-1.5.5-1].
    v5_violation(
        broker.addr,
        &[0xC0, 0x80, 0x00],
        ReasonCode::MalformedPacket,
    )
    .await;
    // A length that runs past the packet's fields: PINGREQ with a body.
    v5_violation(
        broker.addr,
        &[0xC0, 0x01, 0x00],
        ReasonCode::MalformedPacket,
    )
    .await;
    // A PUBLISH whose topic length runs past the remaining length.
    v5_violation(
        broker.addr,
        &[0x30, 0x03, 0x00, 0x09, b'a'],
        ReasonCode::MalformedPacket,
    )
    .await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_packet_is_refused_from_its_header_alone() {
    let mut config = test_config();
    config.broker.max_packet_size = 1024;
    let broker = common::start(config).await;
    // Only the fixed header of a 16 KiB PUBLISH: the answer comes before any
    // payload is sent [MQTT-3.2.2-15 / 4.13].
    for header in [
        &[0x30, 0x80, 0x80, 0x01][..],
        &[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..],
    ] {
        v5_violation(broker.addr, header, ReasonCode::PacketTooLarge).await;
        old_violation(broker.addr, V4, header).await;
    }
    // A CONNECT that announces too much is closed before it is read.
    pre_connect_violation(broker.addr, &[0x10, 0xFF, 0xFF, 0x7F]).await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;

    // Even with the default limit, the largest length the protocol allows
    // exceeds the maximum once the header is counted.
    let broker = common::start_default().await;
    v5_violation(
        broker.addr,
        &[0x30, 0xFF, 0xFF, 0xFF, 0x7F],
        ReasonCode::PacketTooLarge,
    )
    .await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn packets_before_connect_are_not_answered() {
    let broker = common::start_default().await;
    pre_connect_violation(broker.addr, &[0xC0, 0x00]).await;
    pre_connect_violation(
        broker.addr,
        &raw_packet(0x82, &subscribe_body(false, 1, b"a", &[])),
    )
    .await;
    pre_connect_violation(
        broker.addr,
        &raw_publish(QoS::AtMostOnce, b"a", None, None, b"x"),
    )
    .await;
    pre_connect_violation(broker.addr, &[0xE0, 0x00]).await;
    pre_connect_violation(broker.addr, &[0x20, 0x02, 0x00, 0x00]).await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let broker = common::start_default().await;
    v5_violation(
        broker.addr,
        &connect_bytes(V5, "bad-5"),
        ReasonCode::ProtocolError,
    )
    .await;
    // A second CONNECT of another version or client id is no better.
    v5_violation(
        broker.addr,
        &connect_bytes(V4, "someone-else"),
        ReasonCode::ProtocolError,
    )
    .await;
    old_violation(broker.addr, V4, &connect_bytes(V4, "bad-old")).await;
    old_violation(broker.addr, V3, &connect_bytes(V3, "bad-old")).await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_strings_in_a_topic() {
    let broker = common::start_default().await;
    let topics: [&[u8]; 5] = [
        &[b'a', 0xC3, 0x28], // truncated two-byte sequence
        &[b'a', 0xC0, 0xAF], // overlong encoding of '/'
        &[0xED, 0xA0, 0x80], // UTF-16 surrogate [MQTT-1.5.4-1]
        &[0xFF, b'a'],       // never valid
        &[b'a', 0x00, b'b'], // U+0000 [MQTT-1.5.4-2]
    ];
    for topic in topics {
        v5_violation(
            broker.addr,
            &raw_publish(QoS::AtMostOnce, topic, None, Some(&[]), b"x"),
            ReasonCode::MalformedPacket,
        )
        .await;
        v5_violation(
            broker.addr,
            &raw_publish(QoS::AtLeastOnce, topic, Some(1), Some(&[]), b"x"),
            ReasonCode::MalformedPacket,
        )
        .await;
        old_violation(
            broker.addr,
            V4,
            &raw_publish(QoS::AtMostOnce, topic, None, None, b"x"),
        )
        .await;
        // The same in a subscription filter.
        v5_violation(
            broker.addr,
            &raw_packet(0x82, &subscribe_body(true, 1, topic, &[])),
            ReasonCode::MalformedPacket,
        )
        .await;
    }
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcards_in_a_publish_topic() {
    let broker = common::start_default().await;
    // The codec refuses these itself, as Topic Name invalid [MQTT-3.3.2-2].
    for topic in [&b"a/+"[..], b"a/#", b"#", b"+", b"a+b", b"a/b#"] {
        v5_violation(
            broker.addr,
            &raw_publish(QoS::AtMostOnce, topic, None, Some(&[]), b"x"),
            ReasonCode::TopicNameInvalid,
        )
        .await;
        v5_violation(
            broker.addr,
            &raw_publish(QoS::AtLeastOnce, topic, Some(3), Some(&[]), b"x"),
            ReasonCode::TopicNameInvalid,
        )
        .await;
        old_violation(
            broker.addr,
            V4,
            &raw_publish(QoS::AtLeastOnce, topic, Some(3), None, b"x"),
        )
        .await;
    }
    // An empty topic is invalid before MQTT 5.
    old_violation(
        broker.addr,
        V4,
        &raw_publish(QoS::AtMostOnce, b"", None, None, b"x"),
    )
    .await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn property_violations() {
    let broker = common::start_default().await;
    let mut duplicated = vec![pid::CONTENT_TYPE];
    duplicated.extend(raw_lp(b"a"));
    duplicated.push(pid::CONTENT_TYPE);
    duplicated.extend(raw_lp(b"b"));
    let cases: Vec<(Vec<u8>, ReasonCode)> = vec![
        // Duplicated properties that may appear once [section 2.2.2.2].
        (duplicated, ReasonCode::ProtocolError),
        (
            vec![
                pid::PAYLOAD_FORMAT_INDICATOR,
                0,
                pid::PAYLOAD_FORMAT_INDICATOR,
                0,
            ],
            ReasonCode::ProtocolError,
        ),
        (
            vec![
                pid::MESSAGE_EXPIRY_INTERVAL,
                0,
                0,
                0,
                5,
                pid::MESSAGE_EXPIRY_INTERVAL,
                0,
                0,
                0,
                5,
            ],
            ReasonCode::ProtocolError,
        ),
        // Unknown identifiers.
        (vec![0x7F, 0x00], ReasonCode::MalformedPacket),
        (vec![0x00], ReasonCode::MalformedPacket),
        (vec![0x80, 0x01, 0x00], ReasonCode::MalformedPacket),
        // Identifiers not allowed on PUBLISH.
        (
            vec![pid::SESSION_EXPIRY_INTERVAL, 0, 0, 0, 1],
            ReasonCode::MalformedPacket,
        ),
        (
            vec![pid::RECEIVE_MAXIMUM, 0, 1],
            ReasonCode::MalformedPacket,
        ),
        // A value that runs past the property block.
        (
            vec![pid::MESSAGE_EXPIRY_INTERVAL, 0, 0],
            ReasonCode::MalformedPacket,
        ),
        // Payload Format Indicator other than 0 or 1.
        (
            vec![pid::PAYLOAD_FORMAT_INDICATOR, 2],
            ReasonCode::ProtocolError,
        ),
    ];
    for (props, reason) in &cases {
        let bytes = raw_publish(QoS::AtLeastOnce, b"props/t", Some(1), Some(props), b"x");
        v5_violation(broker.addr, &bytes, *reason).await;
    }
    // Not allowed on SUBSCRIBE: Topic Alias, Subscription Identifier 0, two
    // Subscription Identifiers.
    let alias = [pid::TOPIC_ALIAS, 0, 1];
    v5_violation(
        broker.addr,
        &raw_packet(0x82, &subscribe_body(true, 1, b"a", &alias)),
        ReasonCode::MalformedPacket,
    )
    .await;
    let zero = [pid::SUBSCRIPTION_IDENTIFIER, 0];
    v5_violation(
        broker.addr,
        &raw_packet(0x82, &subscribe_body(true, 1, b"a", &zero)),
        ReasonCode::ProtocolError,
    )
    .await;
    let ids = [
        pid::SUBSCRIPTION_IDENTIFIER,
        1,
        pid::SUBSCRIPTION_IDENTIFIER,
        2,
    ];
    v5_violation(
        broker.addr,
        &raw_packet(0x82, &subscribe_body(true, 1, b"a", &ids)),
        ReasonCode::ProtocolError,
    )
    .await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn packet_identifier_zero() {
    let broker = common::start_default().await;
    // [MQTT-2.2.1-3]
    v5_violation(
        broker.addr,
        &raw_publish(QoS::AtLeastOnce, b"a", Some(0), Some(&[]), b"x"),
        ReasonCode::ProtocolError,
    )
    .await;
    v5_violation(
        broker.addr,
        &raw_publish(QoS::ExactlyOnce, b"a", Some(0), Some(&[]), b"x"),
        ReasonCode::ProtocolError,
    )
    .await;
    v5_violation(
        broker.addr,
        &raw_packet(0x82, &subscribe_body(true, 0, b"a", &[])),
        ReasonCode::ProtocolError,
    )
    .await;
    v5_violation(
        broker.addr,
        &[0x40, 0x02, 0x00, 0x00],
        ReasonCode::ProtocolError,
    )
    .await;
    old_violation(
        broker.addr,
        V4,
        &raw_publish(QoS::AtLeastOnce, b"a", Some(0), None, b"x"),
    )
    .await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Slow and many connections.

#[tokio::test]
async fn connect_trickled_byte_by_byte_still_works() {
    let broker = common::start_default().await;
    for version in [V4, V5] {
        let mut client = RawClient::open(broker.addr, version).await;
        for byte in connect_bytes(version, "trickle") {
            client.send_raw(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        // A packet trickled in the same way after CONNECT works too.
        for byte in encoded(&Packet::PingReq, version) {
            client.send_raw(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        assert_eq!(client.recv().await, Some(Packet::PingResp));
        client.disconnect().await;
    }
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn connect_slower_than_connect_timeout_is_closed() {
    let mut config = test_config();
    config.broker.connect_timeout = Duration::from_secs(1);
    let broker = common::start(config).await;

    // Nothing at all.
    let mut idle = RawClient::open(broker.addr, V5).await;
    idle.expect_silent_close().await;

    // One byte every 300 ms: the whole CONNECT would take several seconds.
    let bytes = connect_bytes(V5, "too-slow");
    assert!(bytes.len() * 300 > 4_000, "{} bytes", bytes.len());
    let mut client = RawClient::open(broker.addr, V5).await;
    let mut closed = false;
    for byte in bytes {
        client.send_raw(&[byte]).await;
        match client.recv_within(Duration::from_millis(300)).await {
            None => {}
            Some(None) => {
                closed = true;
                break;
            }
            Some(Some(p)) => panic!("expected no answer, got {p:?}"),
        }
    }
    assert!(closed, "connection outlived connect_timeout");
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn five_hundred_connections_opened_and_dropped_at_once() {
    let mut config = test_config();
    config.broker.sys_interval = Duration::from_secs(1);
    let broker = common::start(config).await;
    let addr = broker.addr;
    let mut tasks = Vec::new();
    for i in 0..500usize {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let connect = connect_bytes(if i % 2 == 0 { V5 } else { V4 }, &format!("flood-{i}"));
            match i % 4 {
                0 => {}
                1 => stream.write_all(&connect[..5]).await.unwrap(),
                _ => stream.write_all(&connect).await.unwrap(),
            }
            stream
        }));
    }
    let mut streams = Vec::new();
    for task in tasks {
        streams.push(task.await.unwrap());
    }
    drop(streams);
    assert_healthy(broker.addr).await;

    // Every one of them is released: only the watcher stays connected.
    let mut watcher = RawClient::connected(broker.addr, V5, "flood-watch").await;
    watcher
        .subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let p = watcher.expect_publish().await;
        if &p.payload[..] == b"1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?} connected",
            p.payload
        );
    }
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Size and depth.

fn deep(levels: usize) -> String {
    vec!["l"; levels].join("/")
}

#[tokio::test]
async fn very_deep_topics() {
    let broker = common::start_default().await;
    // Up to max_topic_levels (128 by default) is fine, in both directions.
    let mut sub = RawClient::connected(broker.addr, V5, "deep-sub").await;
    for levels in [100, 128] {
        let topic = deep(levels);
        assert_eq!(
            sub.subscribe(&topic, QoS::AtLeastOnce).await.reasons,
            vec![ReasonCode::GrantedQoS1]
        );
        let mut publisher = RawClient::connected(broker.addr, V5, "deep-pub").await;
        assert_eq!(
            publisher
                .publish(&topic, b"deep", QoS::AtLeastOnce, false)
                .await,
            ReasonCode::Success
        );
        assert_eq!(sub.expect_publish().await.topic, topic);
        publisher.disconnect().await;
    }
    // One level more is refused: SUBACK 0x8F for a filter, DISCONNECT 0x90
    // for a PUBLISH.
    for levels in [129, 10_000] {
        let topic = deep(levels);
        assert_eq!(
            sub.subscribe(&topic, QoS::AtLeastOnce).await.reasons,
            vec![ReasonCode::TopicFilterInvalid]
        );
        v5_violation(
            broker.addr,
            &raw_publish(QoS::AtLeastOnce, topic.as_bytes(), Some(1), Some(&[]), b"x"),
            ReasonCode::TopicNameInvalid,
        )
        .await;
        old_violation(
            broker.addr,
            V4,
            &raw_publish(QoS::AtLeastOnce, topic.as_bytes(), Some(1), None, b"x"),
        )
        .await;
    }
    sub.expect_nothing().await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn one_megabyte_of_garbage() {
    let mut config = test_config();
    config.broker.max_packet_size = 64 * 1024;
    let broker = common::start(config).await;
    let noise = garbage(1024 * 1024, 0x5EED);

    // Connected (MQTT 5): refused with a reason, then closed.
    let mut client = RawClient::connected(broker.addr, V5, "noise-5").await;
    client.send_raw(&noise).await;
    match client.expect_closed().await {
        Some(Packet::Disconnect(d)) => assert!(d.reason.is_error(), "{d:?}"),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    // Connected (3.1.1): closed.
    let mut client = RawClient::connected(broker.addr, V4, "noise-4").await;
    client.send_raw(&noise).await;
    client.expect_closed().await;
    // Instead of CONNECT: closed.
    let mut client = RawClient::open(broker.addr, V5).await;
    client.send_raw(&noise).await;
    client.raw_until_closed().await;
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

/// Valid MQTT 5 packets of every kind a client sends, to be mutated.
fn templates() -> Vec<Vec<u8>> {
    let props = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(30),
        content_type: Some("text/plain".into()),
        response_topic: Some("fuzz/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        topic_alias: Some(1),
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    let user = Properties {
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    let ack = PubAck {
        packet_id: 9,
        reason: ReasonCode::NoMatchingSubscribers,
        properties: AckProperties {
            reason_string: Some("why".into()),
            ..AckProperties::default()
        },
    };
    let packets = vec![
        Packet::Publish(Box::new(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "fuzz/t".into(),
            packet_id: Some(5),
            payload: Bytes::from_static(b"hello"),
            properties: props,
        })),
        Packet::Subscribe(Box::new(Subscribe {
            packet_id: 6,
            filters: vec![
                SubscribeFilter {
                    filter: "fuzz/#".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                },
                SubscribeFilter {
                    filter: "$share/g/fuzz/+".into(),
                    options: SubscriptionOptions::default(),
                },
            ],
            properties: Properties {
                subscription_identifiers: vec![7],
                ..user.clone()
            },
        })),
        Packet::Unsubscribe(Box::new(Unsubscribe {
            packet_id: 8,
            filters: vec!["fuzz/#".into(), "$share/g/fuzz/+".into()],
            properties: user.clone(),
        })),
        Packet::PubAck(ack.clone()),
        Packet::PubRec(ack.clone()),
        Packet::PubRel(PubAck {
            reason: ReasonCode::PacketIdentifierNotFound,
            ..ack.clone()
        }),
        Packet::PubComp(PubAck {
            reason: ReasonCode::PacketIdentifierNotFound,
            ..ack
        }),
        Packet::Disconnect(Box::new(Disconnect {
            reason: ReasonCode::DisconnectWithWill,
            properties: Properties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                ..user.clone()
            },
        })),
        Packet::Auth(Box::new(Auth {
            reason: ReasonCode::ReAuthenticate,
            properties: Properties {
                authentication_method: Some("X".into()),
                authentication_data: Some(Bytes::from_static(b"d")),
                ..user
            },
        })),
        Packet::PingReq,
    ];
    packets.iter().map(|p| encoded(p, V5)).collect()
}

#[tokio::test]
async fn mutated_packets_never_break_the_broker() {
    count_panics();
    let broker = common::start_default().await;
    let templates = templates();
    let mut tasks = Vec::new();
    for seed in 0..300u64 {
        let template = &templates[seed as usize % templates.len()];
        // Overwrite one to three bytes anywhere, the fixed header included.
        let mut bytes = template.clone();
        let noise = garbage(8, seed + 1);
        for k in 0..=(noise[0] % 3) as usize {
            let at = usize::from(noise[1 + 2 * k]) % bytes.len();
            bytes[at] = noise[2 + 2 * k];
        }
        let addr = broker.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connected(addr, V5, &format!("fuzz-{seed}")).await;
            client.send_raw(&bytes).await;
            // Whatever comes back decodes (recv_within checks that), and a
            // DISCONNECT from the server is always an error with a reason.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
                match client.recv_within(left).await {
                    None | Some(None) => break,
                    Some(Some(Packet::Disconnect(d))) => {
                        assert!(d.reason.is_error(), "{bytes:02X?} → {d:?}");
                        assert!(d.properties.reason_string.is_some(), "{d:?}");
                    }
                    Some(Some(_)) => {}
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_anyone_else() {
    count_panics();
    let broker = common::start_default().await;
    // Subscribes to everything and then never reads its socket again.
    let mut stalled = RawClient::connected(broker.addr, V5, "stalled").await;
    stalled.subscribe("stall/#", QoS::AtLeastOnce).await;
    let mut watcher = RawClient::connected(broker.addr, V5, "stall-watch").await;
    watcher.subscribe("stall/last", QoS::AtLeastOnce).await;

    // ~24 MB for the stalled client: far more than socket buffers hold.
    let mut publisher = RawClient::connected(broker.addr, V5, "stall-pub").await;
    let payload = vec![b'z'; 8 * 1024];
    for i in 0..3000u16 {
        let publish =
            common::publish_packet("stall/bulk", &payload, QoS::AtLeastOnce, false, i % 100 + 1);
        assert_eq!(
            publisher.publish_with(publish, QoS::AtLeastOnce).await,
            ReasonCode::Success
        );
    }
    publisher
        .publish("stall/last", b"done", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&watcher.expect_publish().await.payload[..], b"done");
    assert_healthy(broker.addr).await;
    drop(stalled);
    assert_healthy(broker.addr).await;
    broker.shutdown().await;
}
