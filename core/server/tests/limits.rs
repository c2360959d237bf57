//! Tenants and limits through the real `fogg` binary and its configuration
//! files: listeners with mountpoints isolate mosquitto clients that use the
//! same client ids and topics, and a listener's own connection cap answers
//! with the right CONNACK code. (The broker-level suites `tenants.rs` and
//! `limits.rs` in fogg-broker cover the rest: shared groups, sessions, wills,
//! $SYS, rate limits and load shedding.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fogg_codec::ReasonCode;

use support::{Fogg, Mqtt, RawClient, Sub, WAIT, dir_with, eventually, mosquitto_pub};

fn tenants(b_cap: usize) -> String {
    format!(
        r#"
[broker]
sys_interval = "0s"
max_message_rate = 10000
max_inflight_messages = 100

[overload]
queued_bytes_high = 67108864

[[listeners]]
name = "plain"
bind = "127.0.0.1:0"

[[listeners]]
name = "tenant-a"
bind = "127.0.0.1:0"
mountpoint = "tenant-a/"
max_online_messages = 100

[[listeners]]
name = "tenant-b"
bind = "127.0.0.1:0"
mountpoint = "tenant-b/"
max_connections = {b_cap}
max_message_rate = 100
"#
    )
}

#[test]
fn mosquitto_clients_on_two_mountpoints_and_none_are_isolated() {
    require_mosquitto_clients!();
    let fogg = Fogg::start(dir_with(&[("fogg.toml", &tenants(0))]), 3);
    let ports: Vec<(String, u16)> = fogg
        .listeners()
        .iter()
        .map(|(name, addr)| (name.clone(), addr.port()))
        .collect();
    let subs: Vec<Sub> = ports
        .iter()
        .map(|(_, port)| Sub::start_with(*port, Mqtt::V5, "#", 1, 2, &["-i", "same-id"]))
        .collect();
    // Same client id, same topic, retained, on every listener; then each
    // namespace's end marker. A leak would arrive before the marker.
    for (name, port) in &ports {
        mosquitto_pub(
            *port,
            Mqtt::V311,
            &["-i", "same-pub", "-q", "1", "-r", "-t", "t/x", "-m", name],
        );
    }
    for (name, port) in &ports {
        let end = format!("end-{name}");
        mosquitto_pub(*port, Mqtt::V311, &["-q", "1", "-t", "t/end", "-m", &end]);
    }
    for ((name, _), sub) in ports.iter().zip(subs) {
        let got: Vec<(String, String)> = sub
            .finish()
            .into_iter()
            .map(|r| (r.topic, r.payload))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t/x".to_owned(), name.clone()),
                ("t/end".to_owned(), format!("end-{name}")),
            ],
            "subscriber on {name}"
        );
    }
    // A late subscriber on each listener gets only its own retained message.
    for (name, port) in &ports {
        let got = Sub::start(*port, Mqtt::V311, "t/#", 1, 1).finish();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(
            (got[0].topic.as_str(), got[0].payload.as_str()),
            ("t/x", name.as_str())
        );
        assert!(got[0].retain);
    }
}

#[test]
fn a_listener_connection_cap_answers_0x97_and_0x03() {
    let fogg = Fogg::start(dir_with(&[("fogg.toml", &tenants(1))]), 3);
    let b = fogg
        .listeners()
        .iter()
        .find(|(n, _)| n == "tenant-b")
        .unwrap()
        .1;
    let plain = fogg.addr();
    let (first, ack) = RawClient::connect(b, Mqtt::V5.codec(), "one");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    let (_, ack) = RawClient::connect(b, Mqtt::V5.codec(), "two");
    assert_eq!(ack.reason, ReasonCode::QuotaExceeded, "{ack:?}");
    let (_, ack) = RawClient::connect(b, Mqtt::V311.codec(), "two");
    assert_eq!(ack.reason, ReasonCode::ServerUnavailable, "{ack:?}");
    // Other listeners are not affected by tenant-b's cap.
    let (_, ack) = RawClient::connect(plain, Mqtt::V5.codec(), "one");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    first.disconnect();
    let _again = eventually("tenant-b accepts again after its client left", WAIT, || {
        let (client, ack) = RawClient::connect(b, Mqtt::V5.codec(), "three");
        (ack.reason == ReasonCode::Success).then_some(client)
    });
}
