//! Mountpoints: full multitenancy. Three listeners — tenant A, tenant B and
//! one without a mountpoint — whose clients use identical client ids and
//! topics, and never see each other's messages, retained messages, sessions,
//! shared-subscription groups, wills or `$SYS`; auth backends are told the
//! mountpoint.
//!
//! Nothing here waits "long enough": after the messages under test, each
//! namespace gets a marker message, and every subscriber reads until its own
//! marker. Routing is done before a QoS 1 PUBACK leaves, so a message leaking
//! from another namespace would have arrived before the marker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{RawClient, V4, V5, connect_packet, memory_services, persistent_connect, test_config};
use fogg_api::{AuthDecision, Authenticator, BackendError, ConnectInfo};
use fogg_broker::config::ListenerConfig;
use fogg_broker::{ChainLink, OnError};
use fogg_codec::{ProtocolVersion, QoS, ReasonCode};
use parking_lot::Mutex;

const MARKER: &[u8] = b"--marker--";

fn listener(name: &str, mountpoint: &str) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        mountpoint: mountpoint.into(),
        ..ListenerConfig::default()
    }
}

/// Records the mountpoint every CONNECT is authenticated with, and allows it.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<(String, String, String)>>>);

impl Authenticator for Recorder {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        self.0.lock().push((
            info.listener.clone(),
            info.mountpoint.clone(),
            info.client_id.clone(),
        ));
        Ok(AuthDecision::allow())
    }
}

struct Tenants {
    broker: common::TestBroker,
    plain: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    recorder: Recorder,
}

async fn start_tenants(sys_interval: Duration) -> Tenants {
    let mut config = test_config();
    config.listeners = vec![
        listener("plain", ""),
        listener("tenant-a", "tenant-a/"),
        listener("tenant-b", "tenant-b/"),
    ];
    config.broker.sys_interval = sys_interval;
    let recorder = Recorder::default();
    let mut services = memory_services();
    services.chain = vec![ChainLink {
        name: "recorder".into(),
        authenticator: Some(Arc::new(recorder.clone())),
        authorizer: None,
        on_error: OnError::Fail,
    }];
    let (broker, addrs) = common::start_listeners(config, services).await;
    Tenants {
        broker,
        plain: addrs[0],
        a: addrs[1],
        b: addrs[2],
        recorder,
    }
}

/// Every PUBLISH (acknowledged) until the marker, as (topic, payload).
async fn until_marker(client: &mut RawClient) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let p = client.expect_publish().await;
        if &p.payload[..] == MARKER {
            return seen;
        }
        seen.push((
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        ));
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

async fn marker(addr: SocketAddr, topic: &str) {
    let mut c = RawClient::connected(addr, V5, "marker").await;
    c.publish(topic, MARKER, QoS::AtLeastOnce, false).await;
    c.disconnect().await;
}

#[tokio::test]
async fn identical_ids_and_topics_are_isolated_both_ways() {
    let t = start_tenants(Duration::ZERO).await;
    let addrs = [("plain", t.plain), ("a", t.a), ("b", t.b)];

    // The same client id on every listener: three sessions, no takeover.
    let mut subs = Vec::new();
    for (_, addr) in addrs {
        let mut sub = RawClient::connected(addr, V5, "same-id").await;
        let ack = sub.subscribe("#", QoS::AtLeastOnce).await;
        assert_eq!(ack.reasons, vec![ReasonCode::GrantedQoS1]);
        subs.push(sub);
    }
    // Shared group `g` with the same name and filter in every namespace.
    let mut shared = Vec::new();
    for (_, addr) in addrs {
        let mut members = Vec::new();
        for id in ["member-1", "member-2"] {
            let mut m = RawClient::connected(addr, V4, id).await;
            m.subscribe("$share/g/t/+", QoS::AtLeastOnce).await;
            members.push(m);
        }
        shared.push(members);
    }

    // Each namespace publishes the same topics, retained and not.
    for (name, addr) in addrs {
        let mut p = RawClient::connected(addr, V4, "same-pub").await;
        for (topic, retain) in [("t/retained", true), ("t/live", false)] {
            let payload = format!("{name}:{topic}");
            let reason = p
                .publish(topic, payload.as_bytes(), QoS::AtLeastOnce, retain)
                .await;
            assert_eq!(reason, ReasonCode::Success);
        }
        p.disconnect().await;
    }
    for (_, addr) in addrs {
        marker(addr, "t/marker").await;
    }

    for ((name, _), sub) in addrs.iter().zip(&mut subs) {
        // Topics arrive as published: the mountpoint is invisible.
        assert_eq!(
            until_marker(sub).await,
            pairs(&[
                ("t/retained", &format!("{name}:t/retained")),
                ("t/live", &format!("{name}:t/live")),
            ]),
            "subscriber on {name}"
        );
        // Still connected: no one took `same-id` over.
        sub.ping_pong().await;
    }
    // Every namespace's group got its own two messages (and marker), and
    // only those, shared between its two members.
    for ((name, _), members) in addrs.iter().zip(&mut shared) {
        let mut got = Vec::new();
        for m in members.iter_mut() {
            for p in m.drain_publishes().await {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
        got.sort();
        let mut want = vec![
            "--marker--".to_owned(),
            format!("{name}:t/live"),
            format!("{name}:t/retained"),
        ];
        want.sort();
        assert_eq!(got, want, "shared group on {name}");
    }

    // Retained messages: a new subscriber gets only its own namespace's.
    for (name, addr) in addrs {
        let mut late = RawClient::connected(addr, V5, "late").await;
        late.subscribe("#", QoS::AtLeastOnce).await;
        let retained = late.expect_publish().await;
        assert_eq!(retained.topic, "t/retained");
        assert_eq!(
            &retained.payload[..],
            format!("{name}:t/retained").as_bytes()
        );
        assert!(retained.retain);
        // The only retained message there: the next one is a live marker.
        marker(addr, "t/marker").await;
        assert!(until_marker(&mut late).await.is_empty(), "on {name}");
    }

    // Auth backends were told each client's mountpoint.
    let seen = t.recorder.0.lock().clone();
    for (listener, mountpoint) in [
        ("plain", ""),
        ("tenant-a", "tenant-a/"),
        ("tenant-b", "tenant-b/"),
    ] {
        assert!(
            seen.iter()
                .any(|(l, m, c)| l == listener && m == mountpoint && c == "same-id"),
            "{listener}: {seen:?}"
        );
        assert!(
            seen.iter()
                .all(|(l, m, _)| l != listener || m == mountpoint),
            "{seen:?}"
        );
    }
    t.broker.shutdown().await;
}

#[tokio::test]
async fn persistent_sessions_resume_within_their_tenant_only() {
    let t = start_tenants(Duration::ZERO).await;
    // `dev` on tenant A subscribes with a persistent session and leaves.
    let (mut dev_a, ack) = RawClient::connect(t.a, persistent_connect(V5, "dev", 3600)).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    assert!(!ack.session_present);
    dev_a.subscribe("cmd/#", QoS::AtLeastOnce).await;
    dev_a.disconnect().await;

    // `dev` on tenant B and on the plain listener: not A's session.
    for addr in [t.b, t.plain] {
        let (mut dev, ack) = RawClient::connect(addr, persistent_connect(V5, "dev", 3600)).await;
        assert_eq!(ack.reason, ReasonCode::Success);
        assert!(!ack.session_present, "another tenant's session resumed");
        dev.subscribe("cmd/#", QoS::AtLeastOnce).await;
        dev.disconnect().await;
    }

    // A message for A's `dev` while it is away.
    let mut p = RawClient::connected(t.a, V5, "ops").await;
    p.publish("cmd/reboot", b"a-only", QoS::AtLeastOnce, false)
        .await;
    p.disconnect().await;
    marker(t.a, "cmd/marker").await;
    marker(t.b, "cmd/marker").await;
    marker(t.plain, "cmd/marker").await;

    let (mut dev_a, ack) = RawClient::connect(t.a, persistent_connect(V5, "dev", 3600)).await;
    assert!(ack.session_present);
    assert_eq!(
        until_marker(&mut dev_a).await,
        pairs(&[("cmd/reboot", "a-only")])
    );
    for addr in [t.b, t.plain] {
        let (mut dev, ack) = RawClient::connect(addr, persistent_connect(V5, "dev", 3600)).await;
        assert!(ack.session_present);
        assert!(until_marker(&mut dev).await.is_empty());
    }
    // All three are connected at once: no takeover across tenants.
    dev_a.ping_pong().await;
    t.broker.shutdown().await;
}

#[tokio::test]
async fn wills_stay_in_their_tenant() {
    let t = start_tenants(Duration::ZERO).await;
    let mut watchers = Vec::new();
    for addr in [t.plain, t.a, t.b] {
        let mut w = RawClient::connected(addr, V5, "watcher").await;
        w.subscribe("status/#", QoS::AtLeastOnce).await;
        watchers.push(w);
    }
    // A client on tenant B dies without DISCONNECT.
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "device");
    connect.will = Some(common::will("status/device", b"gone", QoS::AtLeastOnce));
    let (device, ack) = RawClient::connect(t.b, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    drop(device);

    // B's watcher gets the will, then B's marker.
    let mut iter = watchers.iter_mut();
    let (plain, a, b) = (
        iter.next().unwrap(),
        iter.next().unwrap(),
        iter.next().unwrap(),
    );
    let will = b.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("status/device", &b"gone"[..])
    );
    for (addr, w) in [(t.plain, plain), (t.a, a)] {
        marker(addr, "status/marker").await;
        assert!(until_marker(w).await.is_empty());
    }
    t.broker.shutdown().await;
}

#[tokio::test]
async fn sys_is_only_in_the_default_namespace() {
    let t = start_tenants(Duration::from_millis(100)).await;
    let mut tenant = RawClient::connected(t.a, V5, "curious").await;
    tenant.subscribe("$SYS/#", QoS::AtMostOnce).await;
    tenant.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut admin = RawClient::connected(t.plain, V5, "admin").await;
    admin
        .subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    // Wait for two $SYS rounds on the default namespace.
    for _ in 0..2 {
        let p = admin.expect_publish().await;
        assert_eq!(p.topic, "$SYS/broker/clients/connected");
    }
    // The tenant got no $SYS message before its marker.
    marker(t.a, "t/marker").await;
    assert!(until_marker(&mut tenant).await.is_empty());
    // Nor can a tenant fake the default namespace's $SYS.
    let mut faker = RawClient::connected(t.b, V5, "faker").await;
    faker
        .publish(
            "$SYS/broker/clients/connected",
            b"999",
            QoS::AtLeastOnce,
            true,
        )
        .await;
    let p = admin.expect_publish().await;
    assert_ne!(&p.payload[..], b"999");
    drop(faker);
    t.broker.shutdown().await;
}
