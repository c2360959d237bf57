//! What the default embedded store keeps across a restart of the real
//! binary: retained messages and persistent sessions with their
//! subscriptions, after SIGTERM and after SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fogg_codec::{
    ConnAck, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use support::{Fogg, RawClient, Recv, WAIT, connect_packet};
use tempfile::TempDir;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A broker whose embedded store lives in `data` (shared across restarts).
fn broker_on(data: &TempDir) -> Fogg {
    Fogg::with_broker(&format!(
        "data_dir = {:?}",
        data.path().display().to_string()
    ))
}

/// Connect with clean session off (a persistent 3.1.1 session).
fn persistent(addr: SocketAddr, id: &str) -> (RawClient, ConnAck) {
    let mut client = RawClient::open(addr, V4);
    let Packet::Connect(mut connect) = connect_packet(V4, id) else {
        unreachable!()
    };
    connect.clean_start = false;
    client.send(&Packet::Connect(connect));
    match client.recv_within(WAIT) {
        Recv::Packet(Packet::ConnAck(ack)) => (client, *ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn expect(client: &mut RawClient) -> Packet {
    match client.recv_within(WAIT) {
        Recv::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn subscribe(client: &mut RawClient, filter: &str) {
    client.send(&Packet::Subscribe(Box::new(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: filter.to_owned(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        }],
        properties: Properties::default(),
    })));
    assert!(matches!(expect(client), Packet::SubAck(_)));
}

fn publish(client: &mut RawClient, topic: &str, payload: &str, retain: bool, id: u16) {
    client.send(&Packet::Publish(Box::new(Publish {
        qos: QoS::AtLeastOnce,
        retain,
        topic: topic.to_owned(),
        packet_id: Some(id),
        payload: Bytes::from(payload.to_owned()),
        ..Publish::default()
    })));
    match expect(client) {
        Packet::PubAck(ack) => assert_eq!(ack.packet_id, id),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn receive(client: &mut RawClient) -> Publish {
    match expect(client) {
        Packet::Publish(p) => {
            if let Some(id) = p.packet_id {
                client.send(&Packet::PubAck(PubAck::new(id)));
            }
            *p
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Before the stop: one retained message, one persistent subscriber that left.
fn prepare(fogg: &Fogg) {
    let (mut keeper, ack) = persistent(fogg.addr(), "keeper");
    assert!(!ack.session_present);
    subscribe(&mut keeper, "keep/#");
    drop(keeper);
    let (mut publisher, _) = RawClient::connect(fogg.addr(), V4, "publisher");
    publish(&mut publisher, "state/door", "open", true, 1);
}

/// After the restart: the retained message is served and the session resumes
/// with its subscription.
fn verify(fogg: &Fogg) {
    let (mut reader, _) = RawClient::connect(fogg.addr(), V4, "reader");
    subscribe(&mut reader, "state/#");
    let retained = receive(&mut reader);
    assert_eq!(retained.topic, "state/door");
    assert_eq!(&retained.payload[..], b"open");
    assert!(retained.retain);

    let (mut keeper, ack) = persistent(fogg.addr(), "keeper");
    assert!(ack.session_present, "the persistent session must resume");
    let (mut publisher, _) = RawClient::connect(fogg.addr(), V4, "publisher-2");
    publish(&mut publisher, "keep/it", "after restart", false, 2);
    let delivered = receive(&mut keeper);
    assert_eq!(delivered.topic, "keep/it");
    assert_eq!(&delivered.payload[..], b"after restart");
}

#[test]
fn retained_and_sessions_survive_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut fogg = broker_on(&data);
    prepare(&fogg);
    fogg.signal("TERM");
    assert!(fogg.wait_exit(Duration::from_secs(10)).success());
    drop(fogg);
    verify(&broker_on(&data));
}

#[test]
fn retained_and_sessions_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let mut fogg = broker_on(&data);
    prepare(&fogg);
    // The PUBACK and SUBACK above came after the store writes: nothing may be lost.
    fogg.signal("KILL");
    let _ = fogg.wait_exit(Duration::from_secs(10));
    drop(fogg);
    verify(&broker_on(&data));
}

/// A burst read at once that mixes retained and plain QoS 1 messages is
/// queued for an offline session in publish order: a retained message's
/// writes go to the store after the batch of queue writes read before it,
/// never after a later one. Read back from the store after a restart.
#[test]
fn a_burst_mixing_retained_messages_is_queued_in_publish_order() {
    let data = tempfile::tempdir().unwrap();
    let mut fogg = broker_on(&data);
    let (mut sub, _) = persistent(fogg.addr(), "orderly");
    subscribe(&mut sub, "mix/#");
    drop(sub);
    let (mut publisher, _) = RawClient::connect(fogg.addr(), V4, "mixer");
    let n = 60u16;
    let burst: Vec<Packet> = (1..=n)
        .map(|id| {
            Packet::Publish(Box::new(Publish {
                qos: QoS::AtLeastOnce,
                retain: id % 7 == 0,
                topic: format!("mix/{}", id % 3),
                packet_id: Some(id),
                payload: Bytes::from(id.to_string()),
                ..Publish::default()
            }))
        })
        .collect();
    publisher.send_all(&burst);
    for id in 1..=n {
        match expect(&mut publisher) {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, id, "PUBACKs in order"),
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
    fogg.signal("TERM");
    assert!(fogg.wait_exit(Duration::from_secs(10)).success());
    drop(fogg);

    let fogg = broker_on(&data);
    let (mut sub, ack) = persistent(fogg.addr(), "orderly");
    assert!(ack.session_present);
    let got: Vec<String> = (1..=n)
        .map(|_| String::from_utf8(receive(&mut sub).payload.to_vec()).unwrap())
        .collect();
    let want: Vec<String> = (1..=n).map(|id| id.to_string()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let _first = broker_on(&data);
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("fogg.toml"),
        support::config_with_broker(&format!(
            "data_dir = {:?}",
            data.path().display().to_string()
        )),
    )
    .unwrap();
    let out = support::output_within(
        support::fogg_command()
            .arg("--config-dir")
            .arg(config.path())
            .current_dir(config.path()),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&data.path().display().to_string()),
        "the error must name the data dir: {stderr}"
    );
}
