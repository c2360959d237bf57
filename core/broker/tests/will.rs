//! Last wills: when they are published and when not, their flags and
//! properties, the MQTT 5 Will Delay Interval, and takeover.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ALL_VERSIONS, RawClient, V4, V5, connect_packet, persistent_connect};
use fogg_codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will};

/// A v5 client subscribed to `filter` at `qos`.
async fn watcher(addr: SocketAddr, id: &str, filter: &str, qos: QoS) -> RawClient {
    let mut w = RawClient::connected(addr, V5, id).await;
    w.subscribe(filter, qos).await;
    w
}

fn with_will(mut connect: Connect, will: Will) -> Connect {
    connect.will = Some(will);
    connect
}

/// Connect and assert success.
async fn connect_ok(addr: SocketAddr, connect: Connect) -> RawClient {
    let (client, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    client
}

fn delayed_will(topic: &str, delay: u32) -> Will {
    let mut will = common::will(topic, b"late", QoS::AtLeastOnce);
    will.properties.will_delay_interval = Some(delay);
    will
}

/// The will `topic`/`payload` arrives at `w`.
async fn expect_will(w: &mut RawClient, topic: &str, payload: &[u8]) {
    let p = w.expect_publish().await;
    assert_eq!(p.topic, topic);
    assert_eq!(&p.payload[..], payload);
}

#[tokio::test]
async fn will_published_when_the_connection_is_lost() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::ExactlyOnce).await;
    for version in ALL_VERSIONS {
        let topic = format!("will/{}", version.level());
        let connect = with_will(
            connect_packet(version, &format!("dying{}", version.level())),
            common::will(&topic, b"gone", QoS::AtLeastOnce),
        );
        let client = connect_ok(broker.addr, connect).await;
        w.expect_nothing().await;
        drop(client);
        let p = w.expect_publish().await;
        assert_eq!(p.topic, topic);
        assert_eq!(&p.payload[..], b"gone");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert!(!p.retain);
        w.expect_nothing().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn will_published_on_keep_alive_timeout() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let mut clients = Vec::new();
    for version in [V4, V5] {
        let mut connect = with_will(
            connect_packet(version, &format!("silent{}", version.level())),
            common::will(
                &format!("will/ka{}", version.level()),
                b"timeout",
                QoS::AtMostOnce,
            ),
        );
        connect.keep_alive = 1;
        // Keep the sockets open: only the keep alive can end them.
        clients.push(connect_ok(broker.addr, connect).await);
    }
    let mut topics = vec![
        w.expect_publish().await.topic,
        w.expect_publish().await.topic,
    ];
    topics.sort();
    assert_eq!(topics, vec!["will/ka4", "will/ka5"]);
    clients[1]
        .expect_disconnect(ReasonCode::KeepAliveTimeout)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn no_will_on_normal_disconnect() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    for version in ALL_VERSIONS {
        let connect = with_will(
            connect_packet(version, &format!("polite{}", version.level())),
            common::will("will/polite", b"never", QoS::AtLeastOnce),
        );
        let client = connect_ok(broker.addr, connect).await;
        client.disconnect().await;
    }
    // [MQTT-3.1.2-10]: the will is discarded on DISCONNECT (0x00).
    if let Some(p) = w.recv_within(Duration::from_millis(800)).await {
        panic!("no will expected, got {p:?}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn will_published_on_disconnect_with_will_v5() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        connect_packet(V5, "leaving"),
        common::will("will/asked", b"as requested", QoS::AtLeastOnce),
    );
    let mut client = connect_ok(broker.addr, connect).await;
    client
        .send(Packet::Disconnect(Box::new(Disconnect {
            reason: ReasonCode::DisconnectWithWill,
            ..Disconnect::default()
        })))
        .await;
    assert_eq!(client.expect_closed().await, None);
    expect_will(&mut w, "will/asked", b"as requested").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_published_when_the_server_closes_for_a_protocol_error() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    for version in [V4, V5] {
        let connect = with_will(
            connect_packet(version, "rude"),
            common::will("will/rude", b"violation", QoS::AtLeastOnce),
        );
        let mut client = connect_ok(broker.addr, connect.clone()).await;
        client.send(Packet::Connect(Box::new(connect))).await;
        client.expect_closed().await;
        expect_will(&mut w, "will/rude", b"violation").await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn will_retain_and_qos() {
    let broker = common::start_default().await;
    let mut w0 = watcher(broker.addr, "w0", "will/#", QoS::AtMostOnce).await;
    let mut w1 = watcher(broker.addr, "w1", "will/#", QoS::AtLeastOnce).await;
    let mut w2 = watcher(broker.addr, "w2", "will/#", QoS::ExactlyOnce).await;
    for version in [V4, V5] {
        let topic = format!("will/kept{}", version.level());
        let mut will = common::will(&topic, b"last words", QoS::ExactlyOnce);
        will.retain = true;
        let client = connect_ok(
            broker.addr,
            with_will(connect_packet(version, "mortal"), will),
        )
        .await;
        drop(client);
        for (w, qos) in [
            (&mut w0, QoS::AtMostOnce),
            (&mut w1, QoS::AtLeastOnce),
            (&mut w2, QoS::ExactlyOnce),
        ] {
            let p = w.expect_publish().await;
            assert_eq!(p.topic, topic);
            assert_eq!(p.qos, qos, "will QoS 2 capped by the subscription");
            assert!(!p.retain, "live delivery");
        }
        // The will was retained [MQTT-3.1.2-17].
        let mut late = RawClient::connected(broker.addr, version, "late").await;
        late.subscribe(&topic, QoS::ExactlyOnce).await;
        let p = late.expect_publish().await;
        assert_eq!(&p.payload[..], b"last words");
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert!(p.retain);
        late.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn will_delay_interval_delays_the_will() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        persistent_connect(V5, "delayed", 60),
        delayed_will("will/delayed", 2),
    );
    let client = connect_ok(broker.addr, connect).await;
    drop(client);
    // Not before the delay.
    if let Some(p) = w.recv_within(Duration::from_millis(1500)).await {
        panic!("will before its delay: {p:?}");
    }
    expect_will(&mut w, "will/delayed", b"late").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_delay_cancelled_by_reconnecting_in_time() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        persistent_connect(V5, "back", 60),
        delayed_will("will/back", 2),
    );
    let client = connect_ok(broker.addr, connect).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // [MQTT-3.1.3-9]: a new connection to the session cancels the will.
    let (again, ack) = RawClient::connect(broker.addr, persistent_connect(V5, "back", 60)).await;
    assert!(ack.session_present);
    if let Some(p) = w.recv_within(Duration::from_secs(3)).await {
        panic!("will despite the reconnect: {p:?}");
    }
    again.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_published_when_the_session_ends_before_the_delay() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;

    // Session expiry 1 s < will delay 60 s: the will goes out at session end.
    let connect = with_will(
        persistent_connect(V5, "expiring", 1),
        delayed_will("will/expiry", 60),
    );
    drop(connect_ok(broker.addr, connect).await);
    expect_will(&mut w, "will/expiry", b"late").await;

    // Session expiry 0: the session ends with the connection, and so the delay.
    let connect = with_will(
        connect_packet(V5, "ephemeral"),
        delayed_will("will/ephemeral", 60),
    );
    drop(connect_ok(broker.addr, connect).await);
    expect_will(&mut w, "will/ephemeral", b"late").await;

    // A clean start from a new connection ends the old session: the will
    // must not wait for its 60 s delay (spec 3.1.3.2.2).
    let connect = with_will(
        persistent_connect(V5, "restart", 300),
        delayed_will("will/restart", 60),
    );
    drop(connect_ok(broker.addr, connect).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fresh = persistent_connect(V5, "restart", 300);
    fresh.clean_start = true;
    let (client, ack) = RawClient::connect(broker.addr, fresh).await;
    assert!(!ack.session_present);
    expect_will(&mut w, "will/restart", b"late").await;
    client.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_properties_pass_through_v5() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let mut will = common::will("will/props", b"{\"state\":\"offline\"}", QoS::AtLeastOnce);
    will.properties.content_type = Some("application/json".into());
    will.properties.payload_format_indicator = Some(1);
    will.properties.user_properties =
        vec![("device".into(), "d1".into()), ("site".into(), "s".into())];
    will.properties.response_topic = Some("will/reply".into());
    will.properties.correlation_data = Some(bytes::Bytes::from_static(b"c-1"));
    will.properties.message_expiry_interval = Some(3600);
    let client = connect_ok(
        broker.addr,
        with_will(connect_packet(V5, "propful"), will.clone()),
    )
    .await;
    drop(client);
    let p = w.expect_publish().await;
    assert_eq!(p.topic, "will/props");
    let props = p.properties;
    assert_eq!(props.content_type, will.properties.content_type);
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.user_properties, will.properties.user_properties);
    assert_eq!(props.response_topic, will.properties.response_topic);
    assert_eq!(props.correlation_data, will.properties.correlation_data);
    let left = props.message_expiry_interval.unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_eq!(props.will_delay_interval, None);

    // A 3.1.1 watcher gets the same message without properties.
    let mut old = RawClient::connected(broker.addr, V4, "old").await;
    old.subscribe("will/#", QoS::AtLeastOnce).await;
    let client = connect_ok(broker.addr, with_will(connect_packet(V5, "propful"), will)).await;
    drop(client);
    let p = old.expect_publish().await;
    assert_eq!(p.topic, "will/props");
    assert!(p.properties.is_empty());
    broker.shutdown().await;
}

async fn takeover_publishes_will(version: ProtocolVersion) {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        connect_packet(version, "twin"),
        common::will("will/twin", b"replaced", QoS::AtLeastOnce),
    );
    let mut first = connect_ok(broker.addr, connect).await;
    let second = connect_ok(broker.addr, connect_packet(version, "twin")).await;
    let last = first.expect_closed().await;
    if version.is_v5() {
        match last {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SessionTakenOver),
            other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
        }
    }
    // Spec 3.1.4: the existing connection's will is published (delay 0).
    expect_will(&mut w, "will/twin", b"replaced").await;
    // The new connection has no will: leaving normally publishes nothing.
    second.disconnect().await;
    w.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_publishes_the_old_will_v311() {
    takeover_publishes_will(V4).await;
}

#[tokio::test]
async fn takeover_publishes_the_old_will_v5() {
    takeover_publishes_will(V5).await;
}

#[tokio::test]
async fn takeover_of_the_session_cancels_a_delayed_will_v5() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        persistent_connect(V5, "heir", 60),
        delayed_will("will/heir", 1),
    );
    let mut first = connect_ok(broker.addr, connect).await;
    let (second, ack) = RawClient::connect(broker.addr, persistent_connect(V5, "heir", 60)).await;
    assert!(ack.session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    // The session lives on in a new connection [MQTT-3.1.3-9].
    if let Some(p) = w.recv_within(Duration::from_secs(2)).await {
        panic!("no will expected, got {p:?}");
    }
    second.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_with_clean_start_publishes_a_delayed_will_v5() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        persistent_connect(V5, "usurped", 300),
        delayed_will("will/usurped", 60),
    );
    let mut first = connect_ok(broker.addr, connect).await;
    let mut fresh = persistent_connect(V5, "usurped", 300);
    fresh.clean_start = true;
    let (second, ack) = RawClient::connect(broker.addr, fresh).await;
    assert!(!ack.session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    // The clean start ended the old session, and with it the will delay.
    expect_will(&mut w, "will/usurped", b"late").await;
    second.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_stays_cancelled_when_the_resumed_session_ends_v5() {
    let broker = common::start_default().await;
    let mut w = watcher(broker.addr, "w", "will/#", QoS::AtLeastOnce).await;
    let connect = with_will(
        persistent_connect(V5, "returner", 60),
        delayed_will("will/returner", 2),
    );
    drop(connect_ok(broker.addr, connect).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Back in time [MQTT-3.1.3-9]; then the session ends before the delay.
    let (mut again, ack) =
        RawClient::connect(broker.addr, persistent_connect(V5, "returner", 60)).await;
    assert!(ack.session_present);
    again
        .send(Packet::Disconnect(Box::new(Disconnect {
            reason: ReasonCode::Success,
            properties: fogg_codec::Properties {
                session_expiry_interval: Some(0),
                ..Default::default()
            },
        })))
        .await;
    assert_eq!(again.expect_closed().await, None);
    if let Some(p) = w.recv_within(Duration::from_secs(3)).await {
        panic!("the reconnect cancelled the will, got {p:?}");
    }
    broker.shutdown().await;
}
