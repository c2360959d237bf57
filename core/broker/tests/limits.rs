//! Load regulation and shedding: connection caps (global and per listener),
//! per-listener inflight and queue limits, the publish rate limit that slows
//! a flooding client without dropping anything, and load shedding under
//! memory pressure with its recovery.
//!
//! No assertion depends on timing: counts and reason codes only. Latency
//! figures are printed (run with `--nocapture` to see them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{RawClient, V4, V5, connect_packet, memory_services, publish_packet, test_config};
use fogg_broker::config::ListenerConfig;
use fogg_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn listener(name: &str) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ListenerConfig::default()
    }
}

/// The CONNACK reason a new client with `version` gets.
async fn connack(addr: SocketAddr, version: ProtocolVersion, id: &str) -> (RawClient, ReasonCode) {
    let (client, ack) = RawClient::connect(addr, connect_packet(version, id)).await;
    (client, ack.reason)
}

/// Retry a connect until it is accepted (a slot is released asynchronously
/// after a client leaves); panics after many refusals.
async fn eventually_accepted(addr: SocketAddr, id: &str) -> RawClient {
    for _ in 0..200 {
        let (client, reason) = connack(addr, V5, id).await;
        if reason == ReasonCode::Success {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never accepted");
}

/// Read `$SYS/broker/load/...` values (retained, refreshed every
/// sys_interval) until `done` is satisfied by them.
async fn sys_until(
    addr: SocketAddr,
    done: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
) -> std::collections::BTreeMap<String, u64> {
    let mut admin = RawClient::connected(addr, V5, "sys-reader").await;
    admin.subscribe("$SYS/broker/load/#", QoS::AtMostOnce).await;
    let mut values = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let p = admin.expect_publish().await;
        if p.retain {
            // Retained copies from the last round, in index order: wait for
            // the live rounds, which come in publishing order.
            continue;
        }
        let name = p.topic.trim_start_matches("$SYS/broker/load/").to_owned();
        let value = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        // Judge whole rounds only: this is the last value of each.
        let last = name == "ratelimit/pauses";
        values.insert(name, value);
        if last && done(&values) {
            return values;
        }
    }
    panic!("$SYS never showed what was expected: {values:?}");
}

// ---------------------------------------------------------------------------
// Connection caps

#[tokio::test]
async fn connection_caps_global_and_per_listener() {
    let mut config = test_config();
    let mut capped = listener("capped");
    capped.max_connections = 1;
    config.listeners = vec![capped, listener("open")];
    config.broker.max_connections = 3;
    let (broker, addrs) = common::start_listeners(config, memory_services()).await;
    let (capped, open) = (addrs[0], addrs[1]);

    // The listener's own cap: one client.
    let first = RawClient::connected(capped, V5, "c1").await;
    let (mut refused, reason) = connack(capped, V5, "c2").await;
    assert_eq!(
        reason,
        ReasonCode::QuotaExceeded,
        "v5 past the listener cap"
    );
    refused.expect_silent_close().await;
    let (_, reason) = connack(capped, V4, "c2").await;
    // 3.1.1 has no Quota exceeded: 0x03 Server unavailable.
    assert_eq!(
        reason,
        ReasonCode::ServerUnavailable,
        "3.1.1 past the listener cap"
    );

    // The global cap: three over both listeners.
    let mut o1 = RawClient::connected(open, V5, "o1").await;
    let _o2 = RawClient::connected(open, V4, "o2").await;
    let (_, reason) = connack(open, V5, "o3").await;
    assert_eq!(reason, ReasonCode::QuotaExceeded, "v5 past the global cap");
    let (_, reason) = connack(open, V4, "o3").await;
    assert_eq!(
        reason,
        ReasonCode::ServerUnavailable,
        "3.1.1 past the global cap"
    );
    o1.ping_pong().await;

    // A client leaving frees its slot: on its listener...
    first.disconnect().await;
    let again = eventually_accepted(capped, "c3").await;
    let (_, reason) = connack(capped, V5, "c4").await;
    assert_eq!(reason, ReasonCode::QuotaExceeded);
    // ...and globally.
    again.disconnect().await;
    let _o3 = eventually_accepted(open, "o3").await;
    let (_, reason) = connack(open, V5, "o4").await;
    assert_eq!(reason, ReasonCode::QuotaExceeded);
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Per-listener inflight and queue limits

#[tokio::test]
async fn listener_overrides_inflight_window_and_queue_size() {
    let mut config = test_config();
    let mut tight = listener("tight");
    tight.max_inflight_messages = Some(2);
    tight.max_online_messages = Some(3);
    config.listeners = vec![listener("default"), tight];
    let (broker, addrs) = common::start_listeners(config, memory_services()).await;

    let mut loose = RawClient::connected(addrs[0], V4, "loose").await;
    loose.subscribe("q/#", QoS::AtLeastOnce).await;
    let mut tight = RawClient::connected(addrs[1], V4, "tight").await;
    tight.subscribe("q/#", QoS::AtLeastOnce).await;
    let mut p = RawClient::connected(addrs[0], V5, "pub").await;
    for i in 0..10u8 {
        p.publish("q/x", &[i], QoS::AtLeastOnce, false).await;
    }

    // Two sent, unacknowledged, and nothing more while they are.
    let first: Vec<_> = [
        tight.next_publish_unacked().await,
        tight.next_publish_unacked().await,
    ]
    .into();
    tight.expect_nothing().await;
    for p in &first {
        tight.ack(p).await;
    }
    // Two inflight plus three queued were kept; the rest was over the
    // listener's queue size (FIFO: the newest give way).
    let rest = tight.drain_publishes().await;
    let got: Vec<u8> = first.iter().chain(&rest).map(|p| p.payload[0]).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // The default listener's client got all ten.
    let all: Vec<u8> = loose
        .drain_publishes()
        .await
        .iter()
        .map(|p| p.payload[0])
        .collect();
    assert_eq!(all, (0..10).collect::<Vec<u8>>());
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Rate limit

/// Publish and receive one message per client, sequentially; the round-trip
/// latencies.
async fn ping_loop(
    addr: SocketAddr,
    id: String,
    min_rounds: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut c = RawClient::connected(addr, V5, &id).await;
    let topic = format!("lat/{id}");
    c.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut latencies = Vec::with_capacity(min_rounds);
    let mut i = 0;
    while i < min_rounds || !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        let payload = (i as u32).to_be_bytes();
        c.send(Packet::Publish(Box::new(publish_packet(
            &topic,
            &payload,
            QoS::AtLeastOnce,
            false,
            1,
        ))))
        .await;
        // PUBACK and the PUBLISH come in either order.
        let mut got = None;
        let mut acked = false;
        while got.is_none() || !acked {
            match c.recv().await {
                Some(Packet::PubAck(_)) => acked = true,
                Some(Packet::Publish(p)) => {
                    c.ack(&p).await;
                    got = Some(p);
                }
                other => panic!("{id}: unexpected {other:?}"),
            }
        }
        latencies.push(started.elapsed());
        assert_eq!(&got.unwrap().payload[..], &payload, "{id}: out of order");
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Round trips of `clients` clients, each doing at least `min_rounds` and
/// going on until `stop` is set.
async fn latency_of_others(
    addr: SocketAddr,
    tag: &str,
    clients: usize,
    min_rounds: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(ping_loop(
                addr,
                format!("{tag}-{i}"),
                min_rounds,
                stop.clone(),
            ))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        // Every one of the others' messages arrived (checked per round).
        let latencies = t.await.unwrap();
        assert!(latencies.len() >= min_rounds);
        all.extend(latencies);
    }
    all.sort();
    all
}

/// What one flood did: its duration and the others' round trips meanwhile.
struct Flood {
    took: Duration,
    others: Vec<Duration>,
}

/// `n` QoS 1 PUBLISHes pipelined by one client on `flood_addr` as fast as
/// its socket takes them, while four clients on `others` measure round trips
/// until the last PUBACK. Asserts every flood message was acknowledged and
/// delivered to a subscriber, once.
async fn flood(flood_addr: SocketAddr, others: SocketAddr, tag: &str, n: u32) -> Flood {
    let topic = format!("flood/{tag}");
    let flood_done = Arc::new(AtomicBool::new(false));
    let mut sink = RawClient::connected(others, V4, &format!("sink-{tag}")).await;
    sink.subscribe(&topic, QoS::AtLeastOnce).await;
    let sink_task = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while seen.len() < n as usize {
            let p = sink.expect_publish().await;
            seen.insert(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
        }
        seen
    });

    let (mut flooder, ack) =
        RawClient::connect(flood_addr, connect_packet(V4, &format!("flooder-{tag}"))).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    let started = Instant::now();
    let (mut rd, mut wr) = flooder.stream.split();
    let writer = async {
        let mut out = BytesMut::new();
        for i in 0..n {
            let id = (i % 60_000 + 1) as u16;
            let publish = publish_packet(&topic, &i.to_be_bytes(), QoS::AtLeastOnce, false, id);
            fogg_codec::encode(&Packet::Publish(Box::new(publish)), V4, &mut out).unwrap();
            if out.len() > 4096 || i + 1 == n {
                wr.write_all(&out).await.unwrap();
                out.clear();
            }
        }
    };
    let reader = async {
        let mut buf = BytesMut::new();
        let mut acks = 0u32;
        while acks < n {
            match fogg_codec::decode(&mut buf, V4, u32::MAX).unwrap() {
                Some(Packet::PubAck(_)) => acks += 1,
                Some(other) => panic!("flooder got {other:?}"),
                None => {
                    assert!(rd.read_buf(&mut buf).await.unwrap() > 0, "flooder closed");
                }
            }
        }
        flood_done.store(true, Ordering::Relaxed);
        acks
    };
    // The others measure from the flood's first burst to its last message.
    let during = latency_of_others(others, tag, 4, 50, flood_done.clone());
    let ((), acks, during) = tokio::join!(writer, reader, during);
    let took = started.elapsed();
    assert_eq!(acks, n, "{tag}: every flood message acknowledged");
    let seen = sink_task.await.unwrap();
    assert_eq!(
        seen.len(),
        n as usize,
        "{tag}: every flood message delivered"
    );
    assert_eq!(seen.iter().next_back().copied(), Some(n - 1));
    Flood {
        took,
        others: during,
    }
}

fn print_latency(name: &str, l: &[Duration]) {
    println!(
        "others' round trip {name}: p50 {:?}, p99 {:?}, max {:?} ({} messages)",
        percentile(l, 0.5),
        percentile(l, 0.99),
        l[l.len() - 1],
        l.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_flood_is_slowed_not_dropped_and_does_not_starve_others() {
    const FLOOD: u32 = 3_000;
    const RATE: u32 = 1_000;
    let mut config = test_config();
    let mut limited = listener("limited");
    limited.max_message_rate = Some(RATE);
    config.listeners = vec![listener("others"), limited];
    config.broker.max_online_messages = 0;
    config.broker.sys_interval = Duration::from_millis(100);
    let (broker, addrs) = common::start_listeners(config, memory_services()).await;
    let (others, limited) = (addrs[0], addrs[1]);

    let baseline =
        latency_of_others(others, "before", 4, 100, Arc::new(AtomicBool::new(true))).await;
    // For comparison, a ten times larger flood from a listener without a
    // limit (the same one would be over before the others got going).
    let unlimited = flood(others, others, "unlimited", FLOOD * 10).await;
    let slowed = flood(limited, others, "limited", FLOOD).await;

    print_latency("with no flood", &baseline);
    for (name, f, n) in [
        ("unlimited", &unlimited, FLOOD * 10),
        (&*format!("max_message_rate {RATE}/s"), &slowed, FLOOD),
    ] {
        println!(
            "flood of {n} QoS 1 messages, {name}: took {:?} ({:.0} msg/s)",
            f.took,
            f64::from(n) / f.took.as_secs_f64()
        );
        print_latency(&format!("during the {name} flood"), &f.others);
    }

    // The limiter did the slowing: the flooder's reader was paused.
    let sys = sys_until(others, |v| {
        v.get("ratelimit/pauses").copied().unwrap_or(0) > 0
    })
    .await;
    println!("$SYS/broker/load: {sys:?}");
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Load shedding

/// A client that reads nothing unless asked: a tiny receive buffer, so the
/// broker's queue for it grows quickly.
async fn slow_consumer(addr: SocketAddr) -> RawClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut client = RawClient::from_stream(stream, V4);
    client
        .send(Packet::Connect(Box::new(connect_packet(V4, "slow"))))
        .await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success),
        other => panic!("{other:?}"),
    }
    let ack = client.subscribe("bulk/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
    client
}

/// The publisher's side of the shedding test: a QoS 0 and a QoS 1 message
/// per round, numbered, 1 KiB each.
#[derive(Default)]
struct Feed {
    seq: u32,
    acked: Vec<u32>,
    qos0_sent: u64,
}

impl Feed {
    async fn pair(&mut self, publisher: &mut RawClient) {
        let mut body = self.seq.to_be_bytes().to_vec();
        body.resize(1024, b'x');
        // QoS 0 first: the last message of every round is a QoS 1 one, so
        // reading up to the last QoS 1 message reads every QoS 0 one too.
        publisher
            .publish("bulk/q0", &body, QoS::AtMostOnce, false)
            .await;
        self.qos0_sent += 1;
        let reason = publisher
            .publish("bulk/q1", &body, QoS::AtLeastOnce, false)
            .await;
        assert!(!reason.is_error(), "QoS 1 refused: {reason:?}");
        self.acked.push(self.seq);
        self.seq += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_sheds_qos0_refuses_connects_keeps_qos1_and_recovers() {
    let mut config = test_config();
    config.overload.queued_bytes_high = 256 * 1024;
    config.overload.queued_bytes_low = 64 * 1024;
    // Unlimited queues: only the watermarks decide here.
    config.broker.max_online_messages = 0;
    config.broker.sys_interval = Duration::from_millis(100);
    let broker = common::start(config).await;
    let addr = broker.addr;

    let mut slow = slow_consumer(addr).await;
    let mut fast = RawClient::connected(addr, V5, "fast").await;
    fast.subscribe("bulk/q0", QoS::AtMostOnce).await;
    let fast_task = tokio::spawn(async move {
        let mut n = 0u64;
        // Counts QoS 0 until the end marker.
        loop {
            let p = fast.expect_publish().await;
            if &p.payload[..] == b"end" {
                return n;
            }
            n += 1;
        }
    });

    let mut publisher = RawClient::connected(addr, V5, "publisher").await;
    let mut feed = Feed::default();
    // Fill the slow consumer's queue until new connections are refused.
    let mut refused_v5 = false;
    for round in 0..40_000 {
        feed.pair(&mut publisher).await;
        if round % 64 == 63 {
            let (_, reason) = connack(addr, V5, "probe").await;
            match reason {
                ReasonCode::Success => {}
                ReasonCode::ServerBusy => {
                    refused_v5 = true;
                    break;
                }
                other => panic!("probe got {other:?}"),
            }
        }
    }
    assert!(refused_v5, "never overloaded");
    // Overloaded: more of both kinds, then 3.1.1 is refused too.
    for _ in 0..200 {
        feed.pair(&mut publisher).await;
    }
    let (_, reason) = connack(addr, V4, "probe-v4").await;
    assert_eq!(
        reason,
        ReasonCode::ServerUnavailable,
        "3.1.1 while overloaded"
    );
    let (_, reason) = connack(addr, V5, "probe-v5").await;
    assert_eq!(reason, ReasonCode::ServerBusy, "v5 while overloaded");
    // Connected clients carry on.
    publisher.ping_pong().await;

    // The slow consumer catches up: every acknowledged QoS 1 message is
    // there, in order; some QoS 0 ones were shed.
    let mut got_qos1 = Vec::new();
    let mut got_qos0 = 0u64;
    let (acked_qos1, qos0_sent) = (feed.acked, feed.qos0_sent);
    while got_qos1.len() < acked_qos1.len() {
        let p = slow.expect_publish().await;
        let n = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
        match p.qos {
            QoS::AtMostOnce => got_qos0 += 1,
            _ => got_qos1.push(n),
        }
    }
    assert_eq!(
        got_qos1, acked_qos1,
        "every acknowledged QoS 1 message, in order"
    );
    assert!(
        got_qos0 < qos0_sent,
        "no QoS 0 message was shed ({got_qos0} of {qos0_sent})"
    );

    // Pressure gone: the broker accepts connections again by itself.
    let _back = eventually_accepted(addr, "after").await;
    publisher
        .publish("bulk/q0", b"end", QoS::AtMostOnce, false)
        .await;
    let fast_got = fast_task.await.unwrap();
    println!(
        "shedding: {} QoS 1 acknowledged and all delivered; QoS 0 to the slow consumer {got_qos0} of {qos0_sent}, to the fast one {fast_got} of {qos0_sent}",
        acked_qos1.len()
    );

    let sys = sys_until(addr, |v| {
        v.get("overloaded") == Some(&0)
            && v.get("shed/qos0_dropped").copied().unwrap_or(0) > 0
            && v.get("shed/connections_refused").copied().unwrap_or(0) >= 2
    })
    .await;
    println!("$SYS/broker/load: {sys:?}");
    // Shed: what the slow consumer missed, and what the fast one missed
    // whenever it had a backlog of its own.
    assert_eq!(
        sys["shed/qos0_dropped"],
        (qos0_sent - got_qos0) + (qos0_sent - fast_got),
        "every QoS 0 drop counted"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn resident_memory_past_its_watermark_refuses_new_connections() {
    let mut config = test_config();
    // Any process is past one byte, and never below the low watermark (0).
    config.overload.rss_high = 1;
    config.overload.check_interval = Duration::from_millis(20);
    let broker = common::start(config).await;
    let mut refused = None;
    for _ in 0..200 {
        let (_, reason) = connack(broker.addr, V5, "rss").await;
        if reason != ReasonCode::Success {
            refused = Some(reason);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, Some(ReasonCode::ServerBusy));
    let (_, reason) = connack(broker.addr, V4, "rss-v4").await;
    assert_eq!(reason, ReasonCode::ServerUnavailable);
    broker.shutdown().await;
}
