//! Nothing acknowledged is lost when the real binary dies: a persistent
//! session's queue, filled by a flood of QoS 1 or QoS 2 messages, survives
//! `kill -9` the moment the last acknowledgement arrives, `kill -9` in the
//! middle of the flood, and SIGTERM (which must exit 0). QoS 1 may arrive
//! twice after a crash; QoS 2 never.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fogg_codec::{
    ConnAck, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use support::{Fogg, RawClient, Recv, WAIT, connect_packet};
use tempfile::TempDir;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Messages per flood: enough that a crash lands among many store writes.
const FLOOD: usize = 3000;
/// PUBLISHes sent before waiting for their acknowledgements.
const WINDOW: usize = 100;
const RETAINED: usize = 20;

fn broker_on(data: &TempDir) -> Fogg {
    Fogg::with_broker(&format!(
        "data_dir = {:?}\nmax_offline_messages = 0",
        data.path().display().to_string()
    ))
}

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

/// A persistent subscriber to `flood/#` that leaves, so the flood queues.
fn leave_subscriber(addr: SocketAddr, qos: QoS) {
    let (mut sub, _) = persistent(addr, "sub");
    sub.send(&Packet::Subscribe(Box::new(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "flood/#".to_owned(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }],
        properties: Properties::default(),
    })));
    assert!(matches!(
        sub.recv_within(WAIT),
        Recv::Packet(Packet::SubAck(_))
    ));
    sub.disconnect();
}

fn publish_packet(topic: String, payload: String, qos: QoS, retain: bool, id: u16) -> Packet {
    Packet::Publish(Box::new(Publish {
        qos,
        retain,
        topic,
        packet_id: Some(id),
        payload: Bytes::from(payload),
        ..Publish::default()
    }))
}

/// Publish `count` messages in windows; each one acknowledged (PUBACK, or
/// PUBREC for QoS 2) is added to `acked`. Stops quietly when the broker goes.
fn flood(addr: SocketAddr, qos: QoS, count: usize, acked: &Mutex<Vec<usize>>, n: &AtomicUsize) {
    let (mut publisher, _) = RawClient::connect(addr, V4, "publisher");
    let mut next = 0;
    while next < count {
        let batch: Vec<usize> = (next..count.min(next + WINDOW)).collect();
        next += batch.len();
        let mut ids = HashMap::new();
        for &m in &batch {
            let id = (m % 60_000 + 1) as u16;
            ids.insert(id, m);
            // The broker may be killed at any moment: stop quietly then.
            if !publisher.try_send(&publish_packet(
                format!("flood/{}", m % 7),
                format!("m{m}"),
                qos,
                false,
                id,
            )) {
                return;
            }
        }
        let mut releases = Vec::new();
        while !ids.is_empty() {
            match publisher.recv_within(WAIT) {
                Recv::Packet(Packet::PubAck(ack)) | Recv::Packet(Packet::PubRec(ack)) => {
                    let m = ids
                        .remove(&ack.packet_id)
                        .expect("ack for a packet id in flight");
                    acked.lock().unwrap().push(m);
                    n.fetch_add(1, Ordering::SeqCst);
                    if qos == QoS::ExactlyOnce {
                        releases.push(ack.packet_id);
                    }
                }
                Recv::Closed | Recv::Nothing => return,
                Recv::Packet(other) => panic!("unexpected {other:?}"),
            }
        }
        for id in releases {
            if !publisher.try_send(&Packet::PubRel(PubAck::new(id))) {
                return;
            }
            match publisher.recv_within(WAIT) {
                Recv::Packet(Packet::PubComp(_)) => {}
                _ => return,
            }
        }
    }
}

fn publish_retained(addr: SocketAddr) {
    let (mut publisher, _) = RawClient::connect(addr, V4, "retainer");
    for i in 0..RETAINED {
        publisher.send(&publish_packet(
            format!("keep/{i}"),
            format!("r{i}"),
            QoS::AtLeastOnce,
            true,
            (100 + i) as u16,
        ));
        assert!(matches!(
            publisher.recv_within(WAIT),
            Recv::Packet(Packet::PubAck(_))
        ));
    }
}

/// Reconnect the subscriber and read until every message of `expected` has
/// arrived; returns how often each arrived. Behaves like a real client: a
/// QoS 2 message is counted once per packet id until it is released.
fn collect(addr: SocketAddr, expected: &HashSet<usize>) -> HashMap<usize, usize> {
    let (mut sub, ack) = persistent(addr, "sub");
    assert!(ack.session_present, "the persistent session must resume");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut unreleased: HashSet<u16> = HashSet::new();
    let mut last_progress = Instant::now();
    while !expected.iter().all(|m| seen.contains_key(m)) {
        assert!(
            last_progress.elapsed() < WAIT,
            "{} of {} acknowledged messages arrived",
            expected.iter().filter(|m| seen.contains_key(m)).count(),
            expected.len()
        );
        match sub.recv_within(Duration::from_millis(500)) {
            Recv::Packet(Packet::Publish(p)) => {
                last_progress = Instant::now();
                let m: usize = std::str::from_utf8(&p.payload[1..])
                    .unwrap()
                    .parse()
                    .unwrap();
                match p.qos {
                    QoS::ExactlyOnce => {
                        let id = p.packet_id.unwrap();
                        if unreleased.insert(id) {
                            *seen.entry(m).or_default() += 1;
                        }
                        sub.send(&Packet::PubRec(PubAck::new(id)));
                    }
                    _ => {
                        *seen.entry(m).or_default() += 1;
                        sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
                    }
                }
            }
            Recv::Packet(Packet::PubRel(rel)) => {
                unreleased.remove(&rel.packet_id);
                sub.send(&Packet::PubComp(PubAck::new(rel.packet_id)));
            }
            Recv::Packet(other) => panic!("unexpected {other:?}"),
            Recv::Nothing => {}
            Recv::Closed => panic!("the broker closed the subscriber"),
        }
    }
    seen
}

fn verify_retained(addr: SocketAddr) {
    let (mut reader, _) = RawClient::connect(addr, V4, "reader");
    reader.send(&Packet::Subscribe(Box::new(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "keep/#".to_owned(),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties::default(),
    })));
    let mut retained = HashSet::new();
    while retained.len() < RETAINED {
        match reader.recv_within(WAIT) {
            Recv::Packet(Packet::Publish(p)) => {
                assert!(p.retain);
                retained.insert(p.topic);
            }
            Recv::Packet(Packet::SubAck(_)) => {}
            other => panic!(
                "{} of {RETAINED} retained messages, then {other:?}",
                retained.len()
            ),
        }
    }
}

enum Stop {
    KillAtLastAck,
    KillMidFlood,
    Term,
}

fn crash_and_check(qos: QoS, stop: Stop) {
    let data = tempfile::tempdir().unwrap();
    let mut fogg = broker_on(&data);
    let addr = fogg.addr();
    leave_subscriber(addr, qos);
    publish_retained(addr);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    match stop {
        Stop::KillAtLastAck | Stop::Term => {
            flood(addr, qos, FLOOD, &acked, &count);
            assert_eq!(count.load(Ordering::SeqCst), FLOOD);
            if matches!(stop, Stop::Term) {
                fogg.signal("TERM");
                let status = fogg.wait_exit(Duration::from_secs(20));
                assert!(
                    status.success(),
                    "SIGTERM must exit 0: {status:?}\n{}",
                    fogg.log()
                );
            } else {
                fogg.signal("KILL");
                let _ = fogg.wait_exit(Duration::from_secs(10));
            }
        }
        Stop::KillMidFlood => {
            let flooder = {
                let (acked, count) = (acked.clone(), count.clone());
                std::thread::spawn(move || flood(addr, qos, FLOOD, &acked, &count))
            };
            support::eventually("half the flood acknowledged", WAIT * 3, || {
                (count.load(Ordering::SeqCst) >= FLOOD / 2).then_some(())
            });
            fogg.signal("KILL");
            let _ = fogg.wait_exit(Duration::from_secs(10));
            flooder.join().unwrap();
            assert!(
                count.load(Ordering::SeqCst) < FLOOD,
                "the kill landed mid-flood"
            );
        }
    }
    drop(fogg);

    let fogg = broker_on(&data);
    let expected: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
    let seen = collect(fogg.addr(), &expected);
    if qos == QoS::ExactlyOnce {
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "QoS 2 delivered twice: {twice:?}");
    }
    verify_retained(fogg.addr());
}

#[test]
fn qos1_queue_survives_kill_at_the_last_puback() {
    crash_and_check(QoS::AtLeastOnce, Stop::KillAtLastAck);
}

#[test]
fn qos1_queue_survives_kill_in_the_middle_of_a_flood() {
    crash_and_check(QoS::AtLeastOnce, Stop::KillMidFlood);
}

#[test]
fn qos1_queue_survives_sigterm() {
    crash_and_check(QoS::AtLeastOnce, Stop::Term);
}

#[test]
fn qos2_queue_survives_kill_at_the_last_pubrec_exactly_once() {
    crash_and_check(QoS::ExactlyOnce, Stop::KillAtLastAck);
}

#[test]
fn qos2_queue_survives_kill_in_the_middle_of_a_flood_exactly_once() {
    crash_and_check(QoS::ExactlyOnce, Stop::KillMidFlood);
}
