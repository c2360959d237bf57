//! What the encoder refuses, so that it never emits what a strict peer (or our
//! own decoder) would refuse.

use bytes::{Bytes, BytesMut};
use fogg_codec::*;

use crate::util::*;

fn encode_err(packet: &Packet, version: ProtocolVersion) -> EncodeError {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let e = encode(packet, version, &mut buf).unwrap_err();
    assert_eq!(&buf[..], b"keep", "nothing written on error");
    assert_eq!(encoded_len(packet, version), 0);
    e
}

fn publish() -> Publish {
    Publish {
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
        ..Default::default()
    }
}

#[test]
fn auth_does_not_exist_before_v5() {
    let auth = Packet::Auth(Box::default());
    assert_eq!(encode_err(&auth, V3_1_1), EncodeError::NotInVersion("AUTH"));
    assert_eq!(encode_err(&auth, V3_1), EncodeError::NotInVersion("AUTH"));
}

#[test]
fn string_too_long() {
    let p = Publish {
        topic: "a".repeat(65_536),
        ..publish()
    };
    assert_eq!(
        encode_err(&Packet::Publish(Box::new(p)), V5),
        EncodeError::StringTooLong {
            field: "topic name",
            len: 65_536
        }
    );
    let max = Publish {
        topic: "a".repeat(65_535),
        ..publish()
    };
    assert_eq!(
        encode_vec(&Packet::Publish(Box::new(max)), V3_1_1).len(),
        1 + 3 + 2 + 65_535 + 1
    );
    let p = Publish {
        properties: Properties {
            user_properties: vec![("k".into(), "v".repeat(70_000))],
            ..Default::default()
        },
        ..publish()
    };
    assert!(matches!(
        encode_err(&Packet::Publish(Box::new(p)), V5),
        EncodeError::StringTooLong { len: 70_000, .. }
    ));
}

#[test]
fn packet_too_large() {
    // Zeroed allocations are lazy, so this costs no real memory.
    let p = Publish {
        payload: Bytes::from(vec![0u8; fogg_codec::MAX_REMAINING_LENGTH]),
        ..publish()
    };
    assert!(matches!(
        encode_err(&Packet::Publish(Box::new(p)), V3_1_1),
        EncodeError::PacketTooLarge(_)
    ));
}

#[test]
fn publish_packet_identifier_must_follow_qos() {
    let cases = [
        (QoS::AtMostOnce, Some(1)),
        (QoS::AtLeastOnce, None),
        (QoS::ExactlyOnce, Some(0)),
    ];
    for (qos, packet_id) in cases {
        let p = Publish {
            qos,
            packet_id,
            ..publish()
        };
        assert!(matches!(
            encode_err(&Packet::Publish(Box::new(p)), V5),
            EncodeError::InvalidValue(_)
        ));
    }
    let dup = Publish {
        dup: true,
        ..publish()
    };
    assert!(matches!(
        encode_err(&Packet::Publish(Box::new(dup)), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn empty_topic_only_in_v5() {
    let p = Publish {
        topic: String::new(),
        properties: Properties {
            topic_alias: Some(1),
            ..Default::default()
        },
        ..publish()
    };
    assert!(matches!(
        encode_err(&Packet::Publish(Box::new(p.clone())), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
    encode_vec(&Packet::Publish(Box::new(p)), V5);
}

#[test]
fn property_not_allowed_on_packet() {
    // The PUBACK family cannot even hold such a property (`AckProperties`);
    // DISCONNECT is sized by the same reason-and-properties code.
    let d = Disconnect {
        properties: Properties {
            topic_alias: Some(1),
            ..Default::default()
        },
        ..Disconnect::default()
    };
    assert_eq!(
        encode_err(&Packet::Disconnect(Box::new(d.clone())), V5),
        EncodeError::InvalidValue("Topic Alias")
    );
    // Before MQTT 5 properties are simply not written.
    assert_eq!(
        encode_vec(&Packet::Disconnect(Box::new(d)), V3_1_1),
        [0xE0, 0x00]
    );
}

#[test]
fn property_values_out_of_range() {
    let bad = [
        Properties {
            topic_alias: Some(0),
            ..Default::default()
        },
        Properties {
            payload_format_indicator: Some(2),
            ..Default::default()
        },
        Properties {
            subscription_identifiers: vec![0],
            ..Default::default()
        },
        Properties {
            subscription_identifiers: vec![268_435_456],
            ..Default::default()
        },
        Properties {
            response_topic: Some("replies/+".into()),
            ..Default::default()
        },
    ];
    for properties in bad {
        let p = Publish {
            properties,
            ..publish()
        };
        assert!(matches!(
            encode_err(&Packet::Publish(Box::new(p)), V5),
            EncodeError::InvalidValue(_)
        ));
    }
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties {
            receive_maximum: Some(0),
            ..Default::default()
        },
    };
    assert!(matches!(
        encode_err(&Packet::Connect(Box::new(connect)), V5),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn one_subscription_identifier_per_subscribe() {
    let s = Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "a".into(),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties {
            subscription_identifiers: vec![1, 2],
            ..Default::default()
        },
    };
    assert!(matches!(
        encode_err(&Packet::Subscribe(Box::new(s)), V5),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn empty_lists_and_zero_identifiers() {
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![],
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::Subscribe(Box::new(sub)), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
    let unsub = Unsubscribe {
        packet_id: 1,
        filters: vec![],
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::Unsubscribe(Box::new(unsub)), V5),
        EncodeError::InvalidValue(_)
    ));
    let suback = SubAck {
        packet_id: 1,
        reasons: vec![],
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::SubAck(Box::new(suback)), V5),
        EncodeError::InvalidValue(_)
    ));
    assert!(matches!(
        encode_err(&Packet::PubAck(PubAck::new(0)), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn reason_code_not_valid_for_packet() {
    let p = PubAck {
        reason: ReasonCode::PacketIdentifierNotFound,
        ..PubAck::new(1)
    };
    assert!(matches!(
        encode_err(&Packet::PubAck(p), V5),
        EncodeError::InvalidValue(_)
    ));
    let d = Disconnect {
        reason: ReasonCode::GrantedQoS1,
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::Disconnect(Box::new(d)), V5),
        EncodeError::InvalidValue(_)
    ));
    // A 3.x SUBACK can say granted or failed, nothing else.
    let s = SubAck {
        packet_id: 1,
        reasons: vec![ReasonCode::NoMatchingSubscribers],
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::SubAck(Box::new(s)), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn connect_consistency() {
    let c = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    };
    // The declared protocol must match the version asked for.
    assert!(matches!(
        encode_err(&Packet::Connect(Box::new(c.clone())), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
    // A password without user name only exists in MQTT 5.
    let v311 = Connect {
        protocol: V3_1_1,
        ..c.clone()
    };
    assert!(matches!(
        encode_err(&Packet::Connect(Box::new(v311)), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
    encode_vec(&Packet::Connect(Box::new(c)), V5);
}

#[test]
fn refused_connack_has_no_session() {
    let c = ConnAck {
        session_present: true,
        reason: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    for v in ALL_VERSIONS {
        assert!(matches!(
            encode_err(&Packet::ConnAck(Box::new(c.clone())), v),
            EncodeError::InvalidValue(_)
        ));
    }
}
