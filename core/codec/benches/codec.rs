//! Codec throughput: PUBLISH is the broker's hot path, CONNECT the heaviest
//! packet to parse.
//!
//! `cargo bench -p fogg-codec` (add `-- --quick` for a fast pass).

// A bench whose fixed packets fail to encode should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fogg_codec::{
    Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Will, decode, encode,
};

fn publish(qos: QoS, version: ProtocolVersion) -> Packet {
    let mut properties = Properties::default();
    if version.is_v5() {
        // A typical MQTT 5 message carries a little metadata.
        properties.message_expiry_interval = Some(3600);
        properties.content_type = Some("application/json".into());
    }
    Packet::Publish(Box::new(Publish {
        dup: false,
        qos,
        retain: false,
        topic: "sensors/building-1/floor-3/room-12/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(42),
        payload: Bytes::from(vec![0x5Au8; 64]),
        properties,
    }))
}

fn connect(version: ProtocolVersion) -> Packet {
    let mut properties = Properties::default();
    let mut will_properties = Properties::default();
    if version.is_v5() {
        properties.session_expiry_interval = Some(3600);
        properties.receive_maximum = Some(100);
        properties.user_properties = vec![("region".into(), "eu-west".into())];
        will_properties.will_delay_interval = Some(10);
    }
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: "device-0123456789abcdef".into(),
        will: Some(Will {
            topic: "devices/0123456789abcdef/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: will_properties,
        }),
        username: Some("device".into()),
        password: Some(Bytes::from_static(b"s3cr3t-t0k3n")),
        properties,
    }))
}

fn cases() -> Vec<(String, ProtocolVersion, Packet)> {
    let mut out = Vec::new();
    for (vname, version) in [
        ("v311", ProtocolVersion::V3_1_1),
        ("v5", ProtocolVersion::V5),
    ] {
        for (qname, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
            out.push((
                format!("publish_64b_{qname}_{vname}"),
                version,
                publish(qos, version),
            ));
        }
        out.push((format!("connect_{vname}"), version, connect(version)));
    }
    out
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, version, packet) in cases() {
        let mut buf = BytesMut::with_capacity(1024);
        encode(&packet, version, &mut buf).expect("bench packet encodes");
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(&packet), version, &mut buf).expect("encodes");
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

/// Packets decoded back to back from one read buffer, as a connection does:
/// the buffer is promoted to shared storage once, not once per packet.
const STREAM: usize = 256;

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, version, packet) in cases() {
        let mut wire = BytesMut::new();
        for _ in 0..STREAM {
            encode(&packet, version, &mut wire).expect("bench packet encodes");
        }
        let wire = wire.freeze();
        group.throughput(Throughput::Elements(STREAM as u64));
        group.bench_function(format!("{name}_x{STREAM}"), |b| {
            b.iter_batched(
                // Filling the read buffer is setup. Each packet is dropped in
                // the loop, as a broker does once it has routed it.
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    while let Some(p) = decode(&mut buf, version, u32::MAX).expect("decodes") {
                        black_box(p);
                    }
                    buf
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
