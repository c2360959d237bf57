//! Shared helpers for the broker's end-to-end tests: an in-process broker on
//! port 0 with the in-memory store, and a raw MQTT client built on fogg-codec
//! that lets tests send exactly the bytes they want and check every field of
//! what comes back.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use fogg_api::{BackendConfig, BackendFactory};
use fogg_broker::config::ListenerConfig;
use fogg_broker::{Config, RunningBroker, Services};
use fogg_codec::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a packet it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestBroker {
    pub addr: SocketAddr,
    running: Option<RunningBroker>,
}

impl TestBroker {
    /// The running broker's control handle.
    pub fn handle(&self) -> fogg_broker::BrokerHandle {
        self.running.as_ref().expect("running").handle()
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A configuration with one listener on 127.0.0.1:0 and fast $SYS off.
pub fn test_config() -> Config {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ListenerConfig::default()
        }],
        ..Config::default()
    };
    config.broker.sys_interval = Duration::ZERO;
    config
}

/// Services with the in-memory store, built through the production factory.
pub fn memory_services() -> Services {
    let backend = fogg_storage_memory::MemoryFactory
        .build(&BackendConfig {
            name: "memory".into(),
            kind: "memory".into(),
            settings: Default::default(),
        })
        .expect("memory backend");
    Services {
        sessions: backend.sessions.expect("sessions"),
        messages: backend.messages.expect("messages"),
        retained: backend.retained.expect("retained"),
        chain: Vec::new(),
        enhanced: Vec::new(),
    }
}

pub async fn start_with(config: Config, services: Services) -> TestBroker {
    let running = fogg_broker::start(config, services)
        .await
        .expect("broker starts");
    let addr = running.local_addrs()[0].1;
    TestBroker {
        addr,
        running: Some(running),
    }
}

pub async fn start(config: Config) -> TestBroker {
    start_with(config, memory_services()).await
}

pub async fn start_default() -> TestBroker {
    start(test_config()).await
}

/// A raw MQTT client speaking through fogg-codec.
pub struct RawClient {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl RawClient {
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// A client on a stream the test opened itself (say, with a tiny
    /// receive buffer).
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> RawClient {
        RawClient {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// Open, send CONNECT, and return the client with the CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut client = RawClient::open(addr, connect.protocol).await;
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connect with defaults for `version` and assert success.
    pub async fn connected(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
        let (client, ack) = RawClient::connect(addr, connect_packet(version, id)).await;
        assert_eq!(ack.reason, ReasonCode::Success, "CONNACK {ack:?}");
        client
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        fogg_codec::encode(&packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a failed write is fine here.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Next packet within WAIT; None when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no packet within {WAIT:?}"))
    }

    /// Some(Some(p)) a packet, Some(None) closed, None nothing within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match fogg_codec::decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(p)) => return Some(Some(p)),
                Ok(None) => {}
                Err(e) => panic!("broker sent an undecodable packet: {e}"),
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Assert nothing arrives for QUIET.
    pub async fn expect_nothing(&mut self) {
        if let Some(p) = self.recv_within(QUIET).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Assert the broker closes the connection (after an optional DISCONNECT,
    /// which is returned).
    pub async fn expect_closed(&mut self) -> Option<Packet> {
        let mut last = None;
        loop {
            match self.recv_within(WAIT).await {
                None => panic!("connection not closed within {WAIT:?}"),
                Some(None) => return last,
                Some(Some(p)) => last = Some(p),
            }
        }
    }

    /// Expect a DISCONNECT (MQTT 5) with `reason`, then the close.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        match self.expect_closed().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason, "{d:?}"),
            other => panic!("expected DISCONNECT {reason}, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(
            filter,
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            Properties::default(),
        )
        .await
    }

    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        properties: Properties,
    ) -> SubAck {
        self.send(Packet::Subscribe(Box::new(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.to_owned(),
                options,
            }],
            properties,
        })))
        .await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => *ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publish and complete the QoS handshake; returns the PUBACK/PUBREC reason.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        self.publish_with(publish_packet(topic, payload, qos, retain, 7), qos)
            .await
    }

    pub async fn publish_with(&mut self, publish: Publish, qos: QoS) -> ReasonCode {
        let id = publish.packet_id.unwrap_or(0);
        self.send(Packet::Publish(Box::new(publish))).await;
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => match self.recv().await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!(ack.packet_id, id);
                    ack.reason
                }
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let rec = match self.recv().await {
                    Some(Packet::PubRec(rec)) => rec,
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                if rec.reason.is_error() {
                    return rec.reason;
                }
                self.send(Packet::PubRel(PubAck::new(id))).await;
                match self.recv().await {
                    Some(Packet::PubComp(comp)) => assert_eq!(comp.packet_id, id),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
                rec.reason
            }
        }
    }

    /// Receive one PUBLISH (acknowledging QoS 1/2 as a client must).
    pub async fn expect_publish(&mut self) -> Publish {
        let publish = match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        self.ack(&publish).await;
        *publish
    }

    pub async fn ack(&mut self, publish: &Publish) {
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(PubAck::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(PubAck::new(id))).await;
                match self.recv().await {
                    Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(PubAck::new(id))).await;
            }
            _ => {}
        }
    }

    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Default::default())).await;
        let _ = self.expect_closed().await;
    }
}

pub fn connect_packet(version: ProtocolVersion, id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn will(topic: &str, payload: &[u8], qos: QoS) -> Will {
    Will {
        topic: topic.to_owned(),
        payload: bytes::Bytes::copy_from_slice(payload),
        qos,
        retain: false,
        properties: Properties::default(),
    }
}

pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, retain: bool, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.to_owned(),
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        payload: bytes::Bytes::copy_from_slice(payload),
        properties: Properties::default(),
    }
}

pub const V3: ProtocolVersion = ProtocolVersion::V3_1;
pub const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------
// Protocol-test helpers (connect, qos, sessions, retained, will, interop tests).

impl RawClient {
    /// The next packet, which must be a PUBLISH; it is not acknowledged.
    pub async fn next_publish_unacked(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => *p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Every byte the broker sends until it closes the connection (within
    /// WAIT), including bytes already read but not yet decoded.
    pub async fn raw_until_closed(&mut self) -> Vec<u8> {
        let mut out = self.buf.split().to_vec();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("connection not closed within {WAIT:?}; got {out:02X?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// PINGREQ, then expect PINGRESP.
    pub async fn ping_pong(&mut self) {
        self.send(Packet::PingReq).await;
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// SUBSCRIBE one filter with an MQTT 5 Subscription Identifier.
    pub async fn subscribe_with_id(&mut self, filter: &str, qos: QoS, id: u32) -> SubAck {
        self.subscribe_with(
            filter,
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            Properties {
                subscription_identifiers: vec![id],
                ..Properties::default()
            },
        )
        .await
    }
}

/// CONNECT for a session that outlives its connection: Clean Session 0
/// (3.1/3.1.1), or Clean Start 0 with Session Expiry `expiry` (5.0).
pub fn persistent_connect(version: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut connect = connect_packet(version, id);
    connect.clean_start = false;
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(expiry);
    }
    connect
}

/// Connect with `connect` and assert a successful CONNACK with the given
/// session present flag (MQTT 3.1 has no such flag: always 0 there).
pub async fn connect_expect(
    addr: SocketAddr,
    connect: Connect,
    session_present: bool,
) -> RawClient {
    let want = session_present && connect.protocol != ProtocolVersion::V3_1;
    let (client, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success, "CONNACK {ack:?}");
    assert_eq!(ack.session_present, want, "session present in {ack:?}");
    client
}

/// Every protocol version, for tests that loop over them.
pub const ALL_VERSIONS: [ProtocolVersion; 3] = [V3, V4, V5];

// ---------------------------------------------------------------------------
// Raw bytes and edge-case helpers (mqtt5, shared, acl, queues, enhanced_auth,
// bad_input tests).

/// A Variable Byte Integer (spec 1.5.5).
pub fn raw_varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet from its first byte and body (the remaining length is computed).
pub fn raw_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(raw_varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A two-byte length prefix, then the bytes (UTF-8 string or binary data).
pub fn raw_lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len())
        .expect("short field")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

/// An MQTT 5 property block: Property Length, then the encoded properties.
pub fn raw_props(props: &[u8]) -> Vec<u8> {
    let mut out = raw_varint(props.len());
    out.extend_from_slice(props);
    out
}

/// A PUBLISH with any topic bytes; `props` (MQTT 5 only) are the encoded
/// properties without their length, `None` for 3.1/3.1.1.
pub fn raw_publish(
    qos: QoS,
    topic: &[u8],
    packet_id: Option<u16>,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = raw_lp(topic);
    if let Some(id) = packet_id {
        body.extend(id.to_be_bytes());
    }
    if let Some(props) = props {
        body.extend(raw_props(props));
    }
    body.extend_from_slice(payload);
    raw_packet(0x30 | ((qos as u8) << 1), &body)
}

/// The bytes fogg-codec writes for `packet`.
pub fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    fogg_codec::encode(packet, version, &mut out).expect("encode");
    out.to_vec()
}

static HEALTHY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh MQTT 5 client still connects, subscribes and round-trips a
/// message: the broker keeps serving others whatever one client did.
pub async fn assert_healthy(addr: SocketAddr) {
    let n = HEALTHY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("healthy-{n}");
    let topic = format!("healthy/{n}");
    let mut client = RawClient::connected(addr, V5, &id).await;
    let ack = client.subscribe(&topic, QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
    let reason = client
        .publish(&topic, b"still alive", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(reason, ReasonCode::Success);
    let p = client.expect_publish().await;
    assert_eq!(p.topic, topic);
    assert_eq!(&p.payload[..], b"still alive");
    client.disconnect().await;
}

/// Start with every listener of `config`; their addresses in order.
pub async fn start_listeners(config: Config, services: Services) -> (TestBroker, Vec<SocketAddr>) {
    let running = fogg_broker::start(config, services)
        .await
        .expect("broker starts");
    let addrs = running
        .local_addrs()
        .iter()
        .map(|(_, a)| *a)
        .collect::<Vec<_>>();
    let broker = TestBroker {
        addr: addrs[0],
        running: Some(running),
    };
    (broker, addrs)
}

impl RawClient {
    /// Expect a DISCONNECT (MQTT 5) and then the close; the DISCONNECT is
    /// returned so its properties can be checked too.
    pub async fn expect_disconnect_packet(&mut self) -> fogg_codec::Disconnect {
        match self.expect_closed().await {
            Some(Packet::Disconnect(d)) => *d,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    /// Assert the broker closes the connection without sending anything.
    pub async fn expect_silent_close(&mut self) {
        let bytes = self.raw_until_closed().await;
        assert!(bytes.is_empty(), "expected a bare close, got {bytes:02X?}");
    }

    /// Every PUBLISH that arrives until nothing does for QUIET (acknowledged).
    pub async fn drain_publishes(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        loop {
            match self.recv_within(QUIET).await {
                None => return out,
                Some(Some(Packet::Publish(p))) => {
                    self.ack(&p).await;
                    out.push(*p);
                }
                Some(other) => panic!("expected PUBLISH or quiet, got {other:?}"),
            }
        }
    }

    /// Exactly `n` raw bytes from the broker (within WAIT).
    pub async fn recv_raw(&mut self, n: usize) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.buf.len() < n {
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!(
                    "only {:02X?} within {WAIT:?}, wanted {n} bytes",
                    &self.buf[..]
                ),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    panic!("closed after {:02X?}, wanted {n} bytes", &self.buf[..])
                }
                Ok(Ok(_)) => {}
            }
        }
        self.buf.split_to(n).to_vec()
    }
}

impl RawClient {
    /// Exactly `n` PUBLISHes (each within WAIT, acknowledged), then nothing
    /// for QUIET.
    pub async fn expect_publishes(&mut self, n: usize) -> Vec<Publish> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.expect_publish().await);
        }
        self.expect_nothing().await;
        out
    }
}
