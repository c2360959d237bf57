//! Byte-exact checks against hand-assembled packets, both directions: the
//! bytes decode to the packet and the packet encodes to the bytes.

use bytes::Bytes;
use fogg_codec::*;

use crate::util::*;

#[track_caller]
fn both_ways(bytes: &[u8], version: ProtocolVersion, packet: Packet) {
    assert_eq!(decode_ok(bytes, version), packet, "decode {version:?}");
    assert_eq!(encode_vec(&packet, version), bytes, "encode {version:?}");
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "abc".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn connect_minimal_each_version() {
    #[rustfmt::skip]
    let v311 = [
        0x10, 0x0F,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        0x02, 0x00, 0x3C,
        0x00, 0x03, b'a', b'b', b'c',
    ];
    both_ways(&v311, V3_1_1, Packet::Connect(Box::new(connect(V3_1_1))));

    #[rustfmt::skip]
    let v31 = [
        0x10, 0x11,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
        0x02, 0x00, 0x3C,
        0x00, 0x03, b'a', b'b', b'c',
    ];
    both_ways(&v31, V3_1, Packet::Connect(Box::new(connect(V3_1))));

    #[rustfmt::skip]
    let v5 = [
        0x10, 0x10,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0x02, 0x00, 0x3C,
        0x00,
        0x00, 0x03, b'a', b'b', b'c',
    ];
    both_ways(&v5, V5, Packet::Connect(Box::new(connect(V5))));
}

#[test]
fn connect_full_v311() {
    // Will QoS 1, Will Retain, Will Flag, User Name, Password; no Clean Session.
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x21,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        0xEC, 0x00, 0x0A,
        0x00, 0x01, b'c',
        0x00, 0x03, b'a', b'/', b'w',
        0x00, 0x03, b'b', b'y', b'e',
        0x00, 0x04, b'u', b's', b'e', b'r',
        0x00, 0x02, 0x70, 0x77,
    ];
    let packet = Connect {
        protocol: V3_1_1,
        clean_start: false,
        keep_alive: 10,
        client_id: "c".into(),
        will: Some(Will {
            topic: "a/w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    };
    both_ways(&bytes, V3_1_1, Packet::Connect(Box::new(packet)));
}

#[test]
fn connect_full_v5() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x2A,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        // Clean Start, Will Flag, Will QoS 2, Password (no User Name).
        0x56, 0x00, 0x1E,
        // Properties: Session Expiry 3600, Receive Maximum 20.
        0x08, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x14,
        0x00, 0x01, b'c',
        // Will Properties: Will Delay 5, Payload Format 1.
        0x07, 0x01, 0x01, 0x18, 0x00, 0x00, 0x00, 0x05,
        0x00, 0x01, b'w',
        0x00, 0x02, b'h', b'i',
        0x00, 0x03, 0x01, 0x02, 0x03,
    ];
    let packet = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "c".into(),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                ..Default::default()
            },
        }),
        username: None,
        password: Some(Bytes::from_static(&[1, 2, 3])),
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            ..Default::default()
        },
    };
    both_ways(&bytes, V5, Packet::Connect(Box::new(packet)));
}

#[test]
fn connack_each_version() {
    let accepted = ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    both_ways(
        &[0x20, 0x02, 0x01, 0x00],
        V3_1_1,
        Packet::ConnAck(Box::new(accepted.clone())),
    );
    both_ways(
        &[0x20, 0x03, 0x01, 0x00, 0x00],
        V5,
        Packet::ConnAck(Box::new(accepted)),
    );
    let refused = ConnAck {
        reason: ReasonCode::BadUserNameOrPassword,
        ..Default::default()
    };
    both_ways(
        &[0x20, 0x02, 0x00, 0x04],
        V3_1_1,
        Packet::ConnAck(Box::new(refused.clone())),
    );
    both_ways(
        &[0x20, 0x02, 0x00, 0x04],
        V3_1,
        Packet::ConnAck(Box::new(refused.clone())),
    );
    both_ways(
        &[0x20, 0x03, 0x00, 0x86, 0x00],
        V5,
        Packet::ConnAck(Box::new(refused)),
    );
    let with_props = ConnAck {
        properties: Properties {
            topic_alias_maximum: Some(10),
            ..Default::default()
        },
        ..Default::default()
    };
    both_ways(
        &[0x20, 0x06, 0x00, 0x00, 0x03, 0x22, 0x00, 0x0A],
        V5,
        Packet::ConnAck(Box::new(with_props)),
    );
}

#[test]
fn connack_v3_mapping() {
    // Reasons without a 3.1.1 code fall back to "server unavailable", and
    // MQTT 3.1 has no Session Present bit.
    let busy = ConnAck {
        reason: ReasonCode::ServerBusy,
        ..Default::default()
    };
    assert_eq!(
        encode_vec(&Packet::ConnAck(Box::new(busy)), V3_1_1),
        [0x20, 0x02, 0x00, 0x03]
    );
    let banned = ConnAck {
        reason: ReasonCode::Banned,
        ..Default::default()
    };
    assert_eq!(
        encode_vec(&Packet::ConnAck(Box::new(banned)), V3_1_1),
        [0x20, 0x02, 0x00, 0x05]
    );
    let present = ConnAck {
        session_present: true,
        ..Default::default()
    };
    assert_eq!(
        encode_vec(&Packet::ConnAck(Box::new(present)), V3_1),
        [0x20, 0x02, 0x00, 0x00]
    );
    let Packet::ConnAck(c) = decode_ok(&[0x20, 0x02, 0x00, 0x03], V3_1_1) else {
        panic!()
    };
    assert_eq!(c.reason, ReasonCode::ServerUnavailable);
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "a/b".into(),
        packet_id,
        payload: Bytes::from_static(b"hi"),
        properties: Properties::default(),
    }
}

#[test]
fn publish_each_version() {
    let qos0 = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
    both_ways(
        &qos0,
        V3_1_1,
        Packet::Publish(Box::new(publish(QoS::AtMostOnce, None))),
    );
    both_ways(
        &qos0,
        V3_1,
        Packet::Publish(Box::new(publish(QoS::AtMostOnce, None))),
    );

    let qos1 = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, Some(10))
    };
    #[rustfmt::skip]
    let qos1_bytes = [0x3B, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i'];
    both_ways(&qos1_bytes, V3_1_1, Packet::Publish(Box::new(qos1)));

    let qos2_v5 = [
        0x34, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0xFF, 0xFF, 0x00, b'h', b'i',
    ];
    both_ways(
        &qos2_v5,
        V5,
        Packet::Publish(Box::new(publish(QoS::ExactlyOnce, Some(0xFFFF)))),
    );

    let v5 = [0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'];
    both_ways(
        &v5,
        V5,
        Packet::Publish(Box::new(publish(QoS::AtMostOnce, None))),
    );

    let with_props = Publish {
        properties: Properties {
            message_expiry_interval: Some(60),
            topic_alias: Some(5),
            ..Default::default()
        },
        ..publish(QoS::AtMostOnce, None)
    };
    #[rustfmt::skip]
    let bytes = [
        0x30, 0x10,
        0x00, 0x03, b'a', b'/', b'b',
        0x08, 0x02, 0x00, 0x00, 0x00, 0x3C, 0x23, 0x00, 0x05,
        b'h', b'i',
    ];
    both_ways(&bytes, V5, Packet::Publish(Box::new(with_props)));
}

#[test]
fn publish_payload_is_zero_copy() {
    let bytes = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, V3_1_1, 1024).unwrap() else {
        panic!()
    };
    assert_eq!(p.payload.as_ptr() as usize, base + 7);
}

#[test]
fn publish_large_remaining_length() {
    // Remaining length 321 = 0xC1 0x02 (a two-byte varint).
    let payload = vec![0x55u8; 321 - 5];
    let p = Publish {
        payload: Bytes::from(payload.clone()),
        ..publish(QoS::AtMostOnce, None)
    };
    let expected = [
        &[0x30, 0xC1, 0x02, 0x00, 0x03, b'a', b'/', b'b'][..],
        &payload,
    ]
    .concat();
    both_ways(&expected, V3_1_1, Packet::Publish(Box::new(p)));
}

#[test]
fn pub_acks_each_version() {
    for (first, make) in [
        (0x40u8, Packet::PubAck as fn(PubAck) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        for v in ALL_VERSIONS {
            both_ways(&[first, 0x02, 0x00, 0x01], v, make(PubAck::new(1)));
        }
    }
    let no_match = PubAck {
        reason: ReasonCode::NoMatchingSubscribers,
        ..PubAck::new(1)
    };
    both_ways(
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        V5,
        Packet::PubAck(no_match.clone()),
    );
    // The same packet to a 3.1.1 peer loses its reason.
    assert_eq!(
        encode_vec(&Packet::PubAck(no_match), V3_1_1),
        [0x40, 0x02, 0x00, 0x01]
    );
    let with_string = PubAck {
        reason: ReasonCode::NoMatchingSubscribers,
        properties: AckProperties {
            reason_string: Some("x".into()),
            ..Default::default()
        },
        ..PubAck::new(1)
    };
    both_ways(
        &[0x40, 0x08, 0x00, 0x01, 0x10, 0x04, 0x1F, 0x00, 0x01, b'x'],
        V5,
        Packet::PubAck(with_string),
    );
    // Success with properties keeps the reason byte.
    let success_props = PubAck {
        properties: AckProperties {
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        },
        ..PubAck::new(2)
    };
    both_ways(
        &[
            0x50, 0x0B, 0x00, 0x02, 0x00, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        ],
        V5,
        Packet::PubRec(success_props),
    );
    let not_found = PubAck {
        reason: ReasonCode::PacketIdentifierNotFound,
        ..PubAck::new(3)
    };
    both_ways(
        &[0x62, 0x03, 0x00, 0x03, 0x92],
        V5,
        Packet::PubRel(not_found),
    );
}

#[test]
fn subscribe_each_version() {
    let sub = |options| Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "a/b".into(),
            options,
        }],
        properties: Properties::default(),
    };
    let qos1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let v3 = [0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'b', 0x01];
    both_ways(&v3, V3_1_1, Packet::Subscribe(Box::new(sub(qos1))));
    both_ways(&v3, V3_1, Packet::Subscribe(Box::new(sub(qos1))));

    let all = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let v5 = [
        0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x2D,
    ];
    both_ways(&v5, V5, Packet::Subscribe(Box::new(sub(all))));

    let with_id = Subscribe {
        properties: Properties {
            subscription_identifiers: vec![5],
            ..Default::default()
        },
        ..sub(qos1)
    };
    #[rustfmt::skip]
    let bytes = [0x82, 0x0B, 0x00, 0x01, 0x02, 0x0B, 0x05, 0x00, 0x03, b'a', b'/', b'b', 0x01];
    both_ways(&bytes, V5, Packet::Subscribe(Box::new(with_id)));

    // A 3.1.1 peer never sees the MQTT 5 options.
    assert_eq!(
        encode_vec(&Packet::Subscribe(Box::new(sub(all))), V3_1_1),
        v3
    );
}

#[test]
fn suback_each_version() {
    let ack = |reasons| SubAck {
        packet_id: 1,
        reasons,
        properties: Properties::default(),
    };
    let v3 = ack(vec![
        ReasonCode::Success,
        ReasonCode::GrantedQoS1,
        ReasonCode::GrantedQoS2,
        ReasonCode::UnspecifiedError,
    ]);
    both_ways(
        &[0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80],
        V3_1_1,
        Packet::SubAck(Box::new(v3)),
    );
    // Every failure becomes 0x80 for a 3.x peer.
    let failures = ack(vec![
        ReasonCode::NotAuthorized,
        ReasonCode::TopicFilterInvalid,
    ]);
    assert_eq!(
        encode_vec(&Packet::SubAck(Box::new(failures.clone())), V3_1),
        [0x90, 0x04, 0x00, 0x01, 0x80, 0x80]
    );
    both_ways(
        &[0x90, 0x05, 0x00, 0x01, 0x00, 0x87, 0x8F],
        V5,
        Packet::SubAck(Box::new(failures)),
    );
}

#[test]
fn unsubscribe_and_unsuback_each_version() {
    let unsub = Unsubscribe {
        packet_id: 2,
        filters: vec!["a/b".into()],
        properties: Properties::default(),
    };
    let v3 = [0xA2, 0x07, 0x00, 0x02, 0x00, 0x03, b'a', b'/', b'b'];
    both_ways(&v3, V3_1_1, Packet::Unsubscribe(Box::new(unsub.clone())));
    both_ways(&v3, V3_1, Packet::Unsubscribe(Box::new(unsub.clone())));
    let v5 = [0xA2, 0x08, 0x00, 0x02, 0x00, 0x00, 0x03, b'a', b'/', b'b'];
    both_ways(&v5, V5, Packet::Unsubscribe(Box::new(unsub)));

    let v3_ack = UnsubAck {
        packet_id: 2,
        reasons: vec![],
        properties: Properties::default(),
    };
    both_ways(
        &[0xB0, 0x02, 0x00, 0x02],
        V3_1_1,
        Packet::UnsubAck(Box::new(v3_ack)),
    );
    let v5_ack = UnsubAck {
        packet_id: 2,
        reasons: vec![ReasonCode::NoSubscriptionExisted],
        properties: Properties::default(),
    };
    both_ways(
        &[0xB0, 0x04, 0x00, 0x02, 0x00, 0x11],
        V5,
        Packet::UnsubAck(Box::new(v5_ack.clone())),
    );
    assert_eq!(
        encode_vec(&Packet::UnsubAck(Box::new(v5_ack)), V3_1),
        [0xB0, 0x02, 0x00, 0x02]
    );
}

#[test]
fn ping_each_version() {
    for v in ALL_VERSIONS {
        both_ways(&[0xC0, 0x00], v, Packet::PingReq);
        both_ways(&[0xD0, 0x00], v, Packet::PingResp);
    }
}

#[test]
fn disconnect_each_version() {
    for v in ALL_VERSIONS {
        both_ways(&[0xE0, 0x00], v, Packet::Disconnect(Box::default()));
    }
    let with_will = Disconnect {
        reason: ReasonCode::DisconnectWithWill,
        properties: Properties::default(),
    };
    both_ways(
        &[0xE0, 0x01, 0x04],
        V5,
        Packet::Disconnect(Box::new(with_will.clone())),
    );
    assert_eq!(
        encode_vec(&Packet::Disconnect(Box::new(with_will)), V3_1_1),
        [0xE0, 0x00]
    );
    let with_expiry = Disconnect {
        reason: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    };
    both_ways(
        &[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        V5,
        Packet::Disconnect(Box::new(with_expiry)),
    );
}

#[test]
fn auth_v5() {
    both_ways(&[0xF0, 0x00], V5, Packet::Auth(Box::default()));
    let cont = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties::default(),
    };
    both_ways(&[0xF0, 0x02, 0x18, 0x00], V5, Packet::Auth(Box::new(cont)));
    let with_method = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some("m".into()),
            ..Default::default()
        },
    };
    both_ways(
        &[0xF0, 0x06, 0x18, 0x04, 0x15, 0x00, 0x01, b'm'],
        V5,
        Packet::Auth(Box::new(with_method)),
    );
}

#[test]
fn every_property_type_on_the_wire() {
    // One property of each wire type, in the encoder's (identifier) order.
    let props = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(0x0102_0304),
        correlation_data: Some(Bytes::from_static(&[0xAA])),
        subscription_identifiers: vec![128],
        topic_alias: Some(0x0102),
        user_properties: vec![("a".into(), "b".into())],
        ..Default::default()
    };
    let p = Publish {
        properties: props,
        ..publish(QoS::AtMostOnce, None)
    };
    #[rustfmt::skip]
    let bytes = [
        0x30, 0x20,
        0x00, 0x03, b'a', b'/', b'b',
        0x18,
        0x01, 0x01,
        0x02, 0x01, 0x02, 0x03, 0x04,
        0x09, 0x00, 0x01, 0xAA,
        0x0B, 0x80, 0x01,
        0x23, 0x01, 0x02,
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b',
        b'h', b'i',
    ];
    both_ways(&bytes, V5, Packet::Publish(Box::new(p)));
}
