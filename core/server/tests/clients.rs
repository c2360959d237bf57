//! The real `fogg` binary, started on port 0 from a temporary conf.d, driven
//! by real third-party clients: `mosquitto_pub` / `mosquitto_sub` (MQTT 3.1,
//! 3.1.1 and 5.0), Python `paho-mqtt` 2.x (our MQTT 3.1 client, wills,
//! persistent sessions), and a raw fogg-codec client where a reason code must
//! be read exactly (shutdown DISCONNECT, connection cap CONNACK).
//!
//! The client tools come from `scripts/install-test-deps.sh`. Without them a
//! test is skipped loudly, except in CI (`CI=true`), where that is a failure.

// Helpers outside #[test] functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use fogg_codec::{Packet, ReasonCode};

use support::{
    Fogg, LineChild, Mqtt, RawClient, Received, Sub, WAIT, dir_with, eventually, fogg_command,
    mosquitto_pub, output_within, python, run_python,
};

/// How long a signalled broker may take to exit.
const EXIT: Duration = Duration::from_secs(10);

fn by_topic(mut messages: Vec<Received>) -> Vec<Received> {
    messages.sort_by(|a, b| a.topic.cmp(&b.topic));
    messages
}

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub

/// Publish at QoS 0, 1 and 2 with `version`; a QoS 2 subscriber gets each
/// message at the QoS it was published with, a QoS 0 subscriber at QoS 0.
fn mosquitto_round_trip(version: Mqtt) {
    let fogg = Fogg::default_config();
    let port = fogg.port();
    let at_qos2 = Sub::start(port, version, "rt/#", 2, 3);
    let at_qos0 = Sub::start(port, version, "rt/#", 0, 3);
    for qos in ["0", "1", "2"] {
        mosquitto_pub(
            port,
            version,
            &[
                "-q",
                qos,
                "-t",
                &format!("rt/{qos}"),
                "-m",
                &format!("m{qos}"),
            ],
        );
    }
    let expect = |sub_qos: u8| -> Vec<Received> {
        (0u8..3)
            .map(|qos| Received {
                topic: format!("rt/{qos}"),
                qos: qos.min(sub_qos),
                retain: false,
                user_properties: String::new(),
                payload: format!("m{qos}"),
            })
            .collect()
    };
    assert_eq!(by_topic(at_qos2.finish()), expect(2), "{version:?}");
    assert_eq!(by_topic(at_qos0.finish()), expect(0), "{version:?}");
}

#[test]
fn mosquitto_round_trip_mqtt31() {
    require_mosquitto_clients!();
    mosquitto_round_trip(Mqtt::V31);
}

#[test]
fn mosquitto_round_trip_mqtt311() {
    require_mosquitto_clients!();
    mosquitto_round_trip(Mqtt::V311);
}

#[test]
fn mosquitto_round_trip_mqtt5() {
    require_mosquitto_clients!();
    mosquitto_round_trip(Mqtt::V5);
}

#[test]
fn retained_message_reaches_a_later_mosquitto_sub_in_every_version() {
    require_mosquitto_clients!();
    let fogg = Fogg::default_config();
    let port = fogg.port();
    for version in Mqtt::ALL {
        let topic = format!("retained/{}", version.mosquitto());
        let payload = format!("kept by {}", version.mosquitto());
        // QoS 1: mosquitto_pub returns only after the broker's PUBACK.
        mosquitto_pub(
            port,
            version,
            &["-r", "-q", "1", "-t", &topic, "-m", &payload],
        );
        // A later subscriber, of any version, reads it with the retain flag set.
        for reader in Mqtt::ALL {
            let got = Sub::start(port, reader, &topic, 1, 1).finish();
            assert_eq!(
                got,
                vec![Received {
                    topic: topic.clone(),
                    qos: 1,
                    retain: true,
                    user_properties: String::new(),
                    payload: payload.clone(),
                }],
                "{reader:?} reading what {version:?} retained"
            );
        }
    }
}

#[test]
fn mqtt5_user_property_reaches_a_v5_subscriber() {
    require_mosquitto_clients!();
    let fogg = Fogg::default_config();
    let port = fogg.port();
    let v5 = Sub::start(port, Mqtt::V5, "props/#", 1, 1);
    let v311 = Sub::start(port, Mqtt::V311, "props/#", 1, 1);
    mosquitto_pub(
        port,
        Mqtt::V5,
        &[
            "-q",
            "1",
            "-t",
            "props/x",
            "-m",
            "with props",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    );
    let got = v5.finish();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].user_properties, "k:v", "{got:?}");
    assert_eq!(got[0].payload, "with props");
    // A 3.1.1 subscriber gets the same message, without properties.
    let got = v311.finish();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].topic.as_str(), got[0].payload.as_str()),
        ("props/x", "with props")
    );
}

#[test]
fn sys_broker_version_is_readable_with_a_short_sys_interval() {
    require_mosquitto_clients!();
    let fogg = Fogg::with_broker("sys_interval = \"1s\"");
    let port = fogg.port();
    let subs: Vec<_> = [Mqtt::V311, Mqtt::V5]
        .into_iter()
        .map(|v| (v, Sub::start(port, v, "$SYS/broker/version", 0, 1)))
        .collect();
    for (version, sub) in subs {
        let got = sub.finish();
        assert_eq!(got.len(), 1, "{version:?}: {got:?}");
        assert_eq!(got[0].topic, "$SYS/broker/version");
        assert!(
            got[0].payload.contains(env!("CARGO_PKG_VERSION")),
            "{version:?}: $SYS/broker/version is {:?}, expected it to name version {}",
            got[0].payload,
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn the_repository_conf_d_serves_a_round_trip() {
    require_mosquitto_clients!();
    let conf_d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf.d");
    let dir = tempfile::tempdir().unwrap();
    let mut rebound = 0;
    for entry in fs::read_dir(&conf_d).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let patched = text.replace(
            "bind = \"127.0.0.1:1883\"",
            "bind = \"127.0.0.1:0\"           ",
        );
        if patched != text {
            rebound += 1;
        }
        fs::write(dir.path().join(path.file_name().unwrap()), patched).unwrap();
    }
    assert_eq!(
        rebound,
        1,
        "expected one `bind = \"127.0.0.1:1883\"` in {}",
        conf_d.display()
    );
    let fogg = Fogg::start(dir, 1);
    assert_eq!(fogg.listeners()[0].0, "mqtt");
    assert!(fogg.addr().ip().is_loopback(), "{:?}", fogg.listeners());
    let port = fogg.port();
    for version in Mqtt::ALL {
        let sub = Sub::start(port, version, "defaults/#", 1, 1);
        mosquitto_pub(
            port,
            version,
            &["-q", "1", "-t", "defaults/x", "-m", "hello"],
        );
        let got = sub.finish();
        assert_eq!(got.len(), 1, "{version:?}: {got:?}");
        assert_eq!(
            (got[0].topic.as_str(), got[0].qos, got[0].payload.as_str()),
            ("defaults/x", 1, "hello"),
            "{version:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// paho-mqtt (Python)

fn paho_round_trip(version: Mqtt) {
    let fogg = Fogg::default_config();
    let lines = run_python(
        "roundtrip.py",
        &[&fogg.port().to_string(), version.paho()],
        WAIT * 2,
    );
    assert_eq!(lines.last().map(String::as_str), Some("OK"), "{lines:?}");
}

/// paho is our MQTT 3.1 client (protocol name MQIsdp, level 3).
#[test]
fn paho_mqtt31_connect_subscribe_publish_receive() {
    require_paho!();
    paho_round_trip(Mqtt::V31);
}

#[test]
fn paho_mqtt311_connect_subscribe_publish_receive() {
    require_paho!();
    paho_round_trip(Mqtt::V311);
}

#[test]
fn paho_mqtt5_connect_subscribe_publish_receive() {
    require_paho!();
    paho_round_trip(Mqtt::V5);
}

/// A paho client with a will is SIGKILLed (the kernel closes its socket, no
/// DISCONNECT): a mosquitto_sub watching the will topic gets the will.
fn will_on_killed_socket(version: Mqtt) {
    let fogg = Fogg::default_config();
    let port = fogg.port();
    let topic = format!("wills/{}", version.paho());
    let watcher = Sub::start(port, Mqtt::V311, "wills/#", 1, 1);
    let mut client = LineChild::spawn(&mut python(
        "will.py",
        &[
            &port.to_string(),
            version.paho(),
            &format!("paho-will-{}", version.paho()),
            &topic,
            "gone",
            "hold",
        ],
    ));
    client.wait_for_line("CONNECTED");
    client.kill();
    let got = watcher.finish();
    assert_eq!(
        got,
        vec![Received {
            topic,
            qos: 1,
            retain: false,
            user_properties: String::new(),
            payload: "gone".to_owned(),
        }],
        "{version:?}"
    );
}

#[test]
fn paho_will_is_published_when_the_socket_dies_mqtt31() {
    require_paho!();
    require_mosquitto_clients!();
    will_on_killed_socket(Mqtt::V31);
}

#[test]
fn paho_will_is_published_when_the_socket_dies_mqtt311() {
    require_paho!();
    require_mosquitto_clients!();
    will_on_killed_socket(Mqtt::V311);
}

#[test]
fn paho_will_is_published_when_the_socket_dies_mqtt5() {
    require_paho!();
    require_mosquitto_clients!();
    will_on_killed_socket(Mqtt::V5);
}

#[test]
fn paho_will_is_not_published_after_a_normal_disconnect() {
    require_paho!();
    require_mosquitto_clients!();
    let fogg = Fogg::default_config();
    let port = fogg.port();
    for version in [Mqtt::V311, Mqtt::V5] {
        let topic = format!("wills/{}", version.paho());
        let watcher = Sub::start(port, Mqtt::V311, &topic, 1, 1);
        let lines = run_python(
            "will.py",
            &[
                &port.to_string(),
                version.paho(),
                &format!("paho-nowill-{}", version.paho()),
                &topic,
                "must not be sent",
                "disconnect",
            ],
            WAIT * 2,
        );
        assert!(lines.iter().any(|l| l == "DISCONNECTED"), "{lines:?}");
        // The first message the watcher gets must be this marker, not the will.
        mosquitto_pub(port, Mqtt::V311, &["-q", "1", "-t", &topic, "-m", "marker"]);
        let got = watcher.finish();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].payload, "marker", "{version:?}: {got:?}");
    }
}

/// A paho persistent session subscribes at QoS 1 and disconnects; QoS 1
/// messages published meanwhile are delivered, in order, when it comes back.
/// The QoS 0 one is not queued for an offline session (queue_qos0_offline =
/// false by default).
fn persistent_session(version: Mqtt) {
    let fogg = Fogg::default_config();
    let port = fogg.port().to_string();
    let id = format!("paho-persistent-{}", version.paho());
    let topic = format!("offline/{}", version.paho());

    let lines = run_python(
        "persistent.py",
        &[&port, version.paho(), &id, "subscribe", &topic],
        WAIT * 2,
    );
    assert!(lines.iter().any(|l| l == "SUBSCRIBED"), "{lines:?}");

    let (mut publisher, ack) = RawClient::connect(fogg.addr(), Mqtt::V5.codec(), "publisher");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    publisher.send(&Packet::Publish(Box::new(fogg_codec::Publish {
        topic: topic.clone(),
        payload: b"qos 0 while offline".to_vec().into(),
        ..Default::default()
    })));
    for (i, packet_id) in (1..=3).zip(10u16..) {
        publisher.publish_qos1(&topic, &format!("offline {i}"), packet_id);
    }
    publisher.disconnect();

    let lines = run_python(
        "persistent.py",
        &[&port, version.paho(), &id, "receive", "3"],
        WAIT * 2,
    );
    if version != Mqtt::V31 {
        assert!(lines.iter().any(|l| l == "SESSION_PRESENT|1"), "{lines:?}");
    }
    let got: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("MSG|"))
        .map(String::as_str)
        .collect();
    let want: Vec<String> = (1..=3)
        .map(|i| format!("MSG|{topic}|1|0|offline {i}"))
        .collect();
    assert_eq!(got, want, "{version:?}");
}

#[test]
fn paho_persistent_session_gets_offline_qos1_messages_mqtt31() {
    require_paho!();
    persistent_session(Mqtt::V31);
}

#[test]
fn paho_persistent_session_gets_offline_qos1_messages_mqtt311() {
    require_paho!();
    persistent_session(Mqtt::V311);
}

#[test]
fn paho_persistent_session_gets_offline_qos1_messages_mqtt5() {
    require_paho!();
    persistent_session(Mqtt::V5);
}

// ---------------------------------------------------------------------------
// Graceful shutdown

/// While a 5.0 and a 3.1.1 client are connected, `signal` makes fogg send
/// the 5.0 client DISCONNECT 0x8B (Server shutting down), close the 3.1.1
/// one (which has no DISCONNECT from the server), and exit with status 0.
fn graceful_shutdown(signal: &str) {
    let mut fogg = Fogg::default_config();
    let (mut v5, ack) = RawClient::connect(fogg.addr(), Mqtt::V5.codec(), "shutdown-v5");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    let (mut v311, ack) = RawClient::connect(fogg.addr(), Mqtt::V311.codec(), "shutdown-v311");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    // Both sessions are fully established before the signal.
    v5.ping();
    v311.ping();

    fogg.signal(signal);

    let packets = v5.packets_until_closed();
    match packets.as_slice() {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, ReasonCode::ServerShuttingDown, "{d:?}");
        }
        other => panic!("SIG{signal}: expected one DISCONNECT 0x8B, got {other:?}"),
    }
    let bytes = v311.raw_until_closed();
    assert!(
        bytes.is_empty(),
        "SIG{signal}: a 3.1.1 client gets no packet at shutdown, got {bytes:02X?}"
    );

    let status = fogg.wait_exit(EXIT);
    assert_eq!(
        status.code(),
        Some(0),
        "SIG{signal}: exit status {status}; stderr:\n{}",
        fogg.log()
    );
}

#[test]
fn sigterm_disconnects_v5_clients_with_0x8b_and_exits_0() {
    graceful_shutdown("TERM");
}

#[test]
fn sigint_disconnects_v5_clients_with_0x8b_and_exits_0() {
    graceful_shutdown("INT");
}

/// A connection that never sends CONNECT (a health check, a port scan) does
/// not keep the broker from exiting 0; it is closed without a packet.
#[test]
fn sigterm_with_a_connection_that_never_sent_connect_exits_0() {
    let mut fogg = Fogg::default_config();
    let mut silent = RawClient::open(fogg.addr(), Mqtt::V311.codec());
    let (mut v5, ack) = RawClient::connect(fogg.addr(), Mqtt::V5.codec(), "beside-silent");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    v5.ping();
    fogg.signal("TERM");
    match v5.packets_until_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::ServerShuttingDown, "{d:?}"),
        other => panic!("expected one DISCONNECT 0x8B, got {other:?}"),
    }
    let bytes = silent.raw_until_closed();
    assert!(bytes.is_empty(), "got {bytes:02X?}");
    let status = fogg.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{}", fogg.log());
}

#[test]
fn sigterm_with_no_client_exits_0() {
    let mut fogg = Fogg::default_config();
    fogg.signal("TERM");
    let status = fogg.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{}", fogg.log());
}

// ---------------------------------------------------------------------------
// Connection cap

/// The bytes of CONNACK with return code 3 (Server unavailable), MQTT 3.1 / 3.1.1.
const CONNACK_SERVER_UNAVAILABLE: [u8; 4] = [0x20, 0x02, 0x00, 0x03];

#[test]
fn max_connections_refuses_the_third_client_until_one_leaves() {
    let fogg = Fogg::with_broker("max_connections = 2");
    let addr = fogg.addr();
    let (first, ack) = RawClient::connect(addr, Mqtt::V5.codec(), "cap-1");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    let (mut second, ack) = RawClient::connect(addr, Mqtt::V311.codec(), "cap-2");
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");

    // MQTT 5: CONNACK 0x97 (Quota exceeded), then the close.
    let (mut third, ack) = RawClient::connect(addr, Mqtt::V5.codec(), "cap-3-v5");
    assert_eq!(ack.reason, ReasonCode::QuotaExceeded, "{ack:?}");
    assert!(!ack.session_present, "{ack:?}");
    let after = third.packets_until_closed();
    assert!(after.is_empty(), "after the refusal: {after:?}");

    // MQTT 3.1.1 and 3.1: return code 3 (Server unavailable), then the close.
    for version in [Mqtt::V311, Mqtt::V31] {
        let mut refused = RawClient::open(addr, version.codec());
        refused.send(&support::connect_packet(version.codec(), "cap-3-v3"));
        assert_eq!(
            refused.raw_until_closed(),
            CONNACK_SERVER_UNAVAILABLE,
            "{version:?}"
        );
    }

    // The two accepted clients were not disturbed.
    second.ping();

    // One leaves: a new client is accepted (the slot is freed asynchronously,
    // so retry briefly), and the cap holds again after that.
    first.disconnect();
    let mut replacement = eventually("a client accepted after one left", WAIT, || {
        let (client, ack) = RawClient::connect(addr, Mqtt::V5.codec(), "cap-4");
        match ack.reason {
            ReasonCode::Success => Some(client),
            ReasonCode::QuotaExceeded => None,
            other => panic!("unexpected CONNACK {other:?}"),
        }
    });
    replacement.ping();
    let (_, ack) = RawClient::connect(addr, Mqtt::V5.codec(), "cap-5");
    assert_eq!(ack.reason, ReasonCode::QuotaExceeded, "{ack:?}");
}

// ---------------------------------------------------------------------------
// Listeners that cannot be served as configured

#[test]
fn tls_listeners_without_certificates_are_refused_naming_the_listener() {
    for kind in ["tls", "wss"] {
        let config = format!(
            "[[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\n\n\
             [[listeners]]\nname = \"secure\"\nkind = \"{kind}\"\nbind = \"127.0.0.1:0\"\n"
        );
        let dir = dir_with(&[("listeners.toml", &config)]);
        let file = dir.path().join("listeners.toml").display().to_string();
        // The same refusal at --check and at start; the listener is named by
        // its key (the second one), in the file that configured it.
        let check = output_within(
            fogg_command()
                .arg("--config-dir")
                .arg(dir.path())
                .arg("--check"),
            WAIT,
        );
        let start = output_within(
            fogg_command()
                .arg("--config-dir")
                .arg(dir.path())
                .current_dir(dir.path()),
            WAIT,
        );
        for (what, out) in [("--check", &check), ("start", &start)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{kind} {what}: expected a failure; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(&file)
                    && stderr.contains("listeners[1].certfile")
                    && stderr.contains("secure")
                    && stderr.contains(&format!("a `{kind}` listener needs certfile")),
                "{kind} {what}: the error must name the file, the listener and the key; stderr:\n{stderr}"
            );
            assert!(
                !stderr.contains("fogg: listening"),
                "{kind} {what}: no listener may open; stderr:\n{stderr}"
            );
        }
    }
}
