//! An MQTT client's side of the authentication tests (auth_*.rs): connect
//! with credentials, subscribe, publish, receive, and the reason codes each
//! protocol version uses for a refusal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fogg_codec::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    Subscribe, SubscribeFilter, SubscriptionOptions,
};

use super::{RawClient, Recv, WAIT};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

pub fn connect_as(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    credentials: Option<(&str, &str)>,
) -> (RawClient, ConnAck) {
    let mut client = RawClient::open(addr, version);
    client.send(&Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: id.to_owned(),
        will: None,
        username: credentials.map(|(u, _)| u.to_owned()),
        password: credentials.map(|(_, p)| Bytes::copy_from_slice(p.as_bytes())),
        properties: Properties::default(),
    })));
    match client.recv_within(WAIT) {
        Recv::Packet(Packet::ConnAck(ack)) => (client, *ack),
        other => panic!("expected CONNACK for {id}, got {other:?}"),
    }
}

/// Connect, expecting success.
pub fn login(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    user: &str,
    pw: &str,
) -> RawClient {
    let (client, ack) = connect_as(addr, version, id, Some((user, pw)));
    assert_eq!(
        ack.reason,
        ReasonCode::Success,
        "{id} as {user} ({version:?})"
    );
    client
}

/// The reason of a refused CONNECT (3.1.1 return codes decode to their
/// MQTT 5 equivalents: 3 → 0x88, 4 → 0x86, 5 → 0x87).
pub fn refused(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    credentials: Option<(&str, &str)>,
) -> ReasonCode {
    let (mut client, ack) = connect_as(addr, version, id, credentials);
    assert!(
        ack.reason.is_error(),
        "{id}: expected a refusal, got {ack:?}"
    );
    assert!(
        matches!(client.recv_within(WAIT), Recv::Closed),
        "{id}: the broker must close after a refused CONNACK"
    );
    ack.reason
}

pub fn subscribe(client: &mut RawClient, packet_id: u16, filter: &str, qos: QoS) -> ReasonCode {
    client.send(&Packet::Subscribe(Box::new(Subscribe {
        packet_id,
        filters: vec![SubscribeFilter {
            filter: filter.to_owned(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }],
        properties: Properties::default(),
    })));
    match client.recv_within(WAIT) {
        Recv::Packet(Packet::SubAck(ack)) => {
            assert_eq!(ack.packet_id, packet_id);
            ack.reasons[0]
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// PUBLISH at QoS 1; the PUBACK's reason (3.1.1 PUBACKs carry none: Success).
pub fn publish(client: &mut RawClient, packet_id: u16, topic: &str, payload: &str) -> ReasonCode {
    client.send(&Packet::Publish(Box::new(Publish {
        qos: QoS::AtLeastOnce,
        topic: topic.to_owned(),
        packet_id: Some(packet_id),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..Publish::default()
    })));
    match client.recv_within(WAIT) {
        Recv::Packet(Packet::PubAck(ack)) => {
            assert_eq!(ack.packet_id, packet_id);
            ack.reason
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// The next PUBLISH (acknowledged when QoS 1) as (topic, payload, qos).
pub fn receive(client: &mut RawClient) -> (String, String, QoS) {
    match client.recv_within(WAIT) {
        Recv::Packet(Packet::Publish(p)) => {
            if let Some(id) = p.packet_id {
                client.send(&Packet::PubAck(PubAck::new(id)));
            }
            (
                p.topic,
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.qos,
            )
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A refused subscription: 0x87 in MQTT 5; 3.1.1's 0x80 decodes as
/// UnspecifiedError.
pub fn denied(version: ProtocolVersion) -> ReasonCode {
    if version == V5 {
        ReasonCode::NotAuthorized
    } else {
        ReasonCode::UnspecifiedError
    }
}

/// What an ACL-denied QoS 1 PUBLISH gets: PUBACK 0x87 in MQTT 5; 3.1.1
/// cannot refuse, so it is acknowledged and dropped.
pub fn publish_denied(version: ProtocolVersion) -> ReasonCode {
    if version == V5 {
        ReasonCode::NotAuthorized
    } else {
        ReasonCode::Success
    }
}

/// The passwords of the three users every backend's VerneMQ fixture seeds
/// (`seed_vernemq` in auth_*.rs): `alice` (home/alice/#, shared/# at QoS 1 at
/// most), `bob` (shared/+, publishes shared/#), `watch` (reads #, publishes
/// nothing).
pub struct Passwords<'a> {
    pub alice: &'a str,
    pub bob: &'a str,
    pub watch: &'a str,
}

/// The end-to-end VerneMQ scenario every auth backend passes, over MQTT 3.1.1
/// and 5: wrong and missing credentials, SUBACK grants capped by `max_qos`,
/// refused filters, and who receives which allowed or denied PUBLISH.
pub fn vernemq_scenario(addr: SocketAddr, passwords: &Passwords<'_>) {
    let Passwords {
        alice: alice_pw,
        bob: bob_pw,
        watch: watch_pw,
    } = *passwords;
    for version in [V4, V5] {
        let tag = if version == V5 { "v5" } else { "v4" };
        // Wrong password, unknown user: 0x86 / 4. No credentials: 0x87 / 5.
        for (user, pw) in [("alice", "wrong"), ("alice", ""), ("nobody", alice_pw)] {
            assert_eq!(
                refused(addr, version, &format!("{tag}-bad"), Some((user, pw))),
                ReasonCode::BadUserNameOrPassword,
                "{user}/{pw:?} over {version:?}"
            );
        }
        assert_eq!(
            refused(addr, version, &format!("{tag}-anon"), None),
            ReasonCode::NotAuthorized
        );

        let mut watch = login(addr, version, &format!("{tag}-watch"), "watch", watch_pw);
        assert_eq!(
            subscribe(&mut watch, 1, "#", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
        let mut alice = login(addr, version, &format!("{tag}-alice"), "alice", alice_pw);
        let mut bob = login(addr, version, &format!("{tag}-bob"), "bob", bob_pw);

        // SUBSCRIBE: max_qos caps the grant; an unlisted filter is refused.
        assert_eq!(
            subscribe(&mut alice, 1, "shared/#", QoS::ExactlyOnce),
            ReasonCode::GrantedQoS1
        );
        assert_eq!(
            subscribe(&mut alice, 2, "home/alice/#", QoS::ExactlyOnce),
            ReasonCode::GrantedQoS2
        );
        assert_eq!(
            subscribe(&mut alice, 3, "home/bob/#", QoS::AtMostOnce),
            denied(version)
        );
        assert_eq!(
            subscribe(&mut bob, 1, "home/#", QoS::AtMostOnce),
            denied(version)
        );
        assert_eq!(
            subscribe(&mut bob, 2, "shared/+", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );

        // PUBLISH: allowed ones reach whoever may read them, at the QoS
        // granted.
        assert_eq!(
            publish(&mut bob, 10, "shared/news", "from bob"),
            ReasonCode::Success
        );
        for client in [&mut watch, &mut alice, &mut bob] {
            assert_eq!(
                receive(client),
                ("shared/news".into(), "from bob".into(), QoS::AtLeastOnce)
            );
        }
        assert_eq!(
            publish(&mut alice, 11, "home/alice/lamp", "on"),
            ReasonCode::Success
        );
        for client in [&mut watch, &mut alice] {
            assert_eq!(
                receive(client),
                ("home/alice/lamp".into(), "on".into(), QoS::AtLeastOnce)
            );
        }

        // Denied ones reach nobody: everyone sees the next allowed message
        // first.
        assert_eq!(
            publish(&mut bob, 12, "home/alice/lamp", "off"),
            publish_denied(version)
        );
        assert_eq!(
            publish(&mut alice, 13, "home/bob/door", "open"),
            publish_denied(version)
        );
        assert_eq!(
            publish(&mut watch, 2, "shared/news", "from watch"),
            publish_denied(version)
        );
        assert_eq!(
            publish(&mut alice, 14, "shared/end", "marker"),
            ReasonCode::Success
        );
        for client in [&mut watch, &mut bob, &mut alice] {
            assert_eq!(
                receive(client),
                ("shared/end".into(), "marker".into(), QoS::AtLeastOnce)
            );
        }
        for client in [&mut watch, &mut alice, &mut bob] {
            assert!(matches!(
                client.recv_within(Duration::from_millis(300)),
                Recv::Nothing
            ));
        }
        for client in [watch, alice, bob] {
            client.disconnect();
        }
    }
}

/// A backend server the outage scenario can stop and start again.
pub trait Outage {
    fn stop(&mut self);
    fn resume(&mut self);
}

/// The database goes away while fogg runs (`down` names it): new connects
/// get 0x88 / 3 whatever their password, connected clients go on with the
/// rules they got at CONNECT, `while_down` checks what was logged, and
/// logins come back by themselves once the database does.
pub fn outage_scenario(
    addr: SocketAddr,
    passwords: &Passwords<'_>,
    down: &str,
    server: &mut impl Outage,
    while_down: impl FnOnce(),
) {
    let Passwords {
        alice: alice_pw,
        bob: bob_pw,
        ..
    } = *passwords;
    let mut alice = login(addr, V5, "alice-5", "alice", alice_pw);
    let mut bob = login(addr, V4, "bob-4", "bob", bob_pw);
    assert_eq!(
        subscribe(&mut bob, 1, "shared/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(
        subscribe(&mut alice, 1, "shared/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );

    server.stop();
    for (version, id) in [(V5, "late-5"), (V4, "late-4")] {
        for (user, pw) in [("alice", alice_pw), ("alice", "wrong"), ("nobody", "x")] {
            assert_eq!(
                refused(addr, version, id, Some((user, pw))),
                ReasonCode::ServerUnavailable,
                "{user}/{pw} over {version:?} while {down} is down"
            );
        }
    }
    // The connected clients' rules were loaded at CONNECT: they go on.
    assert_eq!(
        publish(&mut alice, 2, "shared/during", "outage"),
        ReasonCode::Success
    );
    assert_eq!(
        receive(&mut bob),
        ("shared/during".into(), "outage".into(), QoS::AtLeastOnce)
    );
    assert_eq!(
        receive(&mut alice),
        ("shared/during".into(), "outage".into(), QoS::AtLeastOnce)
    );
    assert_eq!(
        publish(&mut bob, 2, "home/alice/x", "still denied"),
        ReasonCode::Success,
        "3.1.1: acknowledged, dropped"
    );
    assert_eq!(
        publish(&mut alice, 3, "home/bob/x", "no"),
        ReasonCode::NotAuthorized
    );
    alice.ping();
    bob.ping();
    while_down();

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (client, ack) = connect_as(addr, V5, "back-5", Some(("alice", alice_pw)));
        if ack.reason == ReasonCode::Success {
            client.disconnect();
            break;
        }
        assert_eq!(ack.reason, ReasonCode::ServerUnavailable, "{ack:?}");
        assert!(Instant::now() < deadline, "no recovery within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let back = login(addr, V4, "back-4", "bob", bob_pw);
    assert_eq!(
        refused(addr, V5, "back-bad", Some(("alice", "wrong"))),
        ReasonCode::BadUserNameOrPassword
    );
    // The old sessions never noticed.
    assert_eq!(
        publish(&mut bob, 3, "shared/after", "recovered"),
        ReasonCode::Success
    );
    assert_eq!(receive(&mut alice).1, "recovered");
    assert_eq!(receive(&mut bob).1, "recovered");
    for client in [alice, bob, back] {
        client.disconnect();
    }
}
