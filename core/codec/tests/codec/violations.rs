//! One test per rule the decoder enforces, each checking the reason code the
//! server would answer with and the rule it names.

use fogg_codec::{Packet, ProtocolVersion, ReasonCode, property_id as id};

use crate::util::*;

// ---------------------------------------------------------------- fixed header

#[test]
fn packet_type_zero_is_reserved() {
    for v in ALL_VERSIONS {
        assert_malformed(&[0x00, 0x00], v, "section 2.1.2");
    }
}

#[test]
fn auth_type_is_reserved_before_v5() {
    assert_malformed(&[0xF0, 0x00], V3_1_1, "section 2.2.1");
    assert_malformed(&[0xF0, 0x00], V3_1, "section 2.2.1");
    assert!(matches!(decode_ok(&[0xF0, 0x00], V5), Packet::Auth(_)));
}

#[test]
fn pubrel_subscribe_unsubscribe_need_flags_0010() {
    for v in ALL_VERSIONS {
        assert_malformed(&[0x60, 0x02, 0x00, 0x01], v, "[MQTT-3.6.1-1]");
        assert_malformed(&[0x63, 0x02, 0x00, 0x01], v, "[MQTT-3.6.1-1]");
        let sub = cat(&[&[0x00, 0x01], &s("a"), &[0x00]]);
        assert_malformed(&frame(0x80, &sub), v, "[MQTT-3.8.1-1]");
        assert_malformed(
            &frame(0xA0, &cat(&[&[0, 1], &s("a")])),
            v,
            "[MQTT-3.10.1-1]",
        );
    }
}

#[test]
fn other_types_need_zero_flags() {
    // CONNECT, CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGREQ,
    // PINGRESP, DISCONNECT (and AUTH in MQTT 5).
    for ty in [1u8, 2, 4, 5, 7, 9, 11, 12, 13, 14] {
        for flags in [1u8, 2, 4, 8, 0xF] {
            let first = (ty << 4) | flags;
            assert_malformed(&[first, 0x00], V5, "[MQTT-2.1.3-1]");
            assert_malformed(&[first, 0x00], V3_1_1, "[MQTT-2.2.2-1]");
            assert_malformed(&[first, 0x00], V3_1, "[MQTT-2.2.2-1]");
        }
    }
    assert_malformed(&[0xF1, 0x00], V5, "[MQTT-2.1.3-1]");
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    for v in ALL_VERSIONS {
        assert_malformed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], v, "section 1.5.5");
        // Refused as soon as the fourth byte shows a continuation bit.
        assert_malformed(&[0x30, 0x80, 0x80, 0x80, 0x80], v, "section 1.5.5");
    }
}

#[test]
fn non_minimal_remaining_length_is_malformed() {
    for v in ALL_VERSIONS {
        assert_malformed(&[0xC0, 0x80, 0x00], v, "[MQTT-1.5.5-1]");
        assert_malformed(&[0x30, 0x85, 0x80, 0x00], v, "[MQTT-1.5.5-1]");
    }
}

#[test]
fn remaining_length_past_the_fields_is_malformed() {
    for v in ALL_VERSIONS {
        assert_malformed(&[0xC0, 0x01, 0x00], v, "section 2.1.4");
        assert_malformed(&[0xD0, 0x01, 0x00], v, "section 2.1.4");
        assert_malformed(&[0x40, 0x01, 0x00], v, "section 2.1.4");
    }
}

// ---------------------------------------------------------------- CONNECT

fn connect(name: &str, level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    frame(0x10, &cat(&[&s(name), &[level, flags, 0x00, 0x3C], rest]))
}

#[test]
fn connect_is_decoded_from_its_own_level() {
    // Whatever version the caller guesses, CONNECT says which it is.
    for guess in ALL_VERSIONS {
        let p = decode_ok(&connect("MQTT", 5, 0x02, &cat(&[&[0], &s("c")])), guess);
        let Packet::Connect(c) = p else { panic!() };
        assert_eq!(c.protocol, V5);
        let p = decode_ok(&connect("MQIsdp", 3, 0x02, &s("c")), guess);
        let Packet::Connect(c) = p else { panic!() };
        assert_eq!(c.protocol, V3_1);
    }
}

#[test]
fn connect_known_name_unknown_level() {
    let bad = ReasonCode::UnsupportedProtocolVersion;
    for (name, level) in [
        ("MQTT", 3),
        ("MQTT", 6),
        ("MQTT", 0x84),
        ("MQIsdp", 4),
        ("MQIsdp", 5),
    ] {
        assert_err(
            &connect(name, level, 0x02, &s("c")),
            V5,
            bad,
            "[MQTT-3.1.2-2]",
        );
    }
}

#[test]
fn connect_unknown_name() {
    let bad = ReasonCode::UnsupportedProtocolVersion;
    assert_err(
        &connect("MQTX", 4, 0x02, &s("c")),
        V5,
        bad,
        "[MQTT-3.1.2-1]",
    );
    assert_err(
        &connect("mqtt", 4, 0x02, &s("c")),
        V3_1_1,
        bad,
        "[MQTT-3.1.2-1]",
    );
    let raw = frame(0x10, &cat(&[&b(&[0xFF, 0xFE]), &[4, 2, 0, 60], &s("c")]));
    assert_err(&raw, V3_1_1, bad, "[MQTT-3.1.2-1]");
}

#[test]
fn connect_reserved_flag() {
    assert_malformed(&connect("MQTT", 4, 0x03, &s("c")), V3_1_1, "[MQTT-3.1.2-3]");
    assert_malformed(
        &connect("MQTT", 5, 0x03, &cat(&[&[0], &s("c")])),
        V5,
        "[MQTT-3.1.2-3]",
    );
    assert_malformed(&connect("MQIsdp", 3, 0x01, &s("c")), V3_1, "[MQTT-3.1.2-3]");
}

#[test]
fn connect_will_qos_without_will_flag() {
    for qos_bits in [0x08, 0x10] {
        assert_malformed(
            &connect("MQTT", 4, qos_bits, &s("c")),
            V3_1_1,
            "[MQTT-3.1.2-11]",
        );
        let v5 = connect("MQTT", 5, qos_bits, &cat(&[&[0], &s("c")]));
        assert_malformed(&v5, V5, "[MQTT-3.1.2-11]");
    }
}

#[test]
fn connect_will_retain_without_will_flag() {
    assert_malformed(
        &connect("MQTT", 4, 0x20, &s("c")),
        V3_1_1,
        "[MQTT-3.1.2-15]",
    );
    assert_malformed(
        &connect("MQIsdp", 3, 0x20, &s("c")),
        V3_1,
        "[MQTT-3.1.2-15]",
    );
    let v5 = connect("MQTT", 5, 0x20, &cat(&[&[0], &s("c")]));
    assert_malformed(&v5, V5, "[MQTT-3.1.2-13]");
}

#[test]
fn connect_will_qos_three() {
    let will = cat(&[&s("c"), &s("w"), &b(b"x")]);
    assert_malformed(&connect("MQTT", 4, 0x1C, &will), V3_1_1, "[MQTT-3.1.2-14]");
    let v5 = cat(&[&[0], &s("c"), &[0], &s("w"), &b(b"x")]);
    assert_malformed(&connect("MQTT", 5, 0x1C, &v5), V5, "[MQTT-3.1.2-12]");
}

#[test]
fn connect_password_without_username() {
    let body = cat(&[&s("c"), &b(b"pw")]);
    assert_protocol(&connect("MQTT", 4, 0x42, &body), V3_1_1, "[MQTT-3.1.2-22]");
    assert_protocol(&connect("MQIsdp", 3, 0x42, &body), V3_1, "[MQTT-3.1.2-22]");
    // MQTT 5 allows it (section 3.1.2.9).
    let v5 = decode_ok(&connect("MQTT", 5, 0x42, &cat(&[&[0], &body])), V5);
    let Packet::Connect(c) = v5 else { panic!() };
    assert_eq!(
        (c.username, c.password.as_deref()),
        (None, Some(&b"pw"[..]))
    );
}

#[test]
fn connect_will_topic_must_be_a_topic_name() {
    let bad = ReasonCode::TopicNameInvalid;
    let will = |topic: &str| cat(&[&s("c"), &s(topic), &b(b"x")]);
    assert_err(
        &connect("MQTT", 4, 0x06, &will("a/+")),
        V3_1_1,
        bad,
        "[MQTT-3.3.2-2]",
    );
    assert_err(
        &connect("MQTT", 4, 0x06, &will("")),
        V3_1_1,
        bad,
        "[MQTT-4.7.3-1]",
    );
}

#[test]
fn connect_missing_and_extra_fields() {
    // User Name Flag set, but the payload ends after the Client Identifier.
    assert_malformed(&connect("MQTT", 4, 0x82, &s("c")), V3_1_1, "section 2.1.4");
    // A byte left after the last field.
    assert_malformed(
        &connect("MQTT", 4, 0x02, &cat(&[&s("c"), &[0]])),
        V3_1_1,
        "section 2.1.4",
    );
    // MQTT 5 needs the property length.
    assert_malformed(
        &frame(0x10, &cat(&[&s("MQTT"), &[5, 2, 0, 60]])),
        V5,
        "section 2.1.4",
    );
}

#[test]
fn connect_property_rules() {
    let with_props = |p: &[u8]| connect("MQTT", 5, 0x02, &cat(&[&props(p), &s("c")]));
    // Topic Alias is a PUBLISH property.
    assert_malformed(&with_props(&[id::TOPIC_ALIAS, 0, 1]), V5, "section 2.2.2.2");
    assert_protocol(
        &with_props(&[
            id::SESSION_EXPIRY_INTERVAL,
            0,
            0,
            0,
            1,
            id::SESSION_EXPIRY_INTERVAL,
            0,
            0,
            0,
            2,
        ]),
        V5,
        "section 2.2.2.2",
    );
    assert_protocol(
        &with_props(&[id::RECEIVE_MAXIMUM, 0, 0]),
        V5,
        "section 3.1.2.11.3",
    );
    assert_protocol(
        &with_props(&[id::MAXIMUM_PACKET_SIZE, 0, 0, 0, 0]),
        V5,
        "section 3.1.2.11.4",
    );
    assert_protocol(
        &with_props(&[id::REQUEST_PROBLEM_INFORMATION, 2]),
        V5,
        "section 3.1.2.11.7",
    );
    assert_protocol(
        &with_props(&[id::REQUEST_RESPONSE_INFORMATION, 2]),
        V5,
        "section 3.1.2.11.6",
    );
    assert_protocol(
        &with_props(&[id::AUTHENTICATION_DATA, 0, 1, 0xAA]),
        V5,
        "section 3.1.2.11.10",
    );
    decode_ok(
        &with_props(&[
            id::AUTHENTICATION_METHOD,
            0,
            1,
            b'm',
            id::AUTHENTICATION_DATA,
            0,
            1,
            0xAA,
        ]),
        V5,
    );
}

#[test]
fn will_property_rules() {
    let with_will_props = |p: &[u8]| {
        connect(
            "MQTT",
            5,
            0x06,
            &cat(&[&[0], &s("c"), &props(p), &s("w"), &b(b"x")]),
        )
    };
    // Session Expiry Interval belongs to CONNECT, not to the will.
    assert_malformed(
        &with_will_props(&[id::SESSION_EXPIRY_INTERVAL, 0, 0, 0, 1]),
        V5,
        "section 2.2.2.2",
    );
    assert_protocol(
        &with_will_props(&[id::PAYLOAD_FORMAT_INDICATOR, 2]),
        V5,
        "section 3.3.2.3.2",
    );
    let ok = with_will_props(&[
        id::WILL_DELAY_INTERVAL,
        0,
        0,
        0,
        9,
        id::CONTENT_TYPE,
        0,
        1,
        b't',
    ]);
    let Packet::Connect(c) = decode_ok(&ok, V5) else {
        panic!()
    };
    let will = c.will.unwrap();
    assert_eq!(will.properties.will_delay_interval, Some(9));
    assert_eq!(will.properties.content_type.as_deref(), Some("t"));
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn connack_reserved_flags() {
    assert_malformed(&[0x20, 0x02, 0x02, 0x00], V3_1_1, "section 3.2.2.1");
    assert_malformed(&[0x20, 0x03, 0x80, 0x00, 0x00], V5, "section 3.2.2.1");
}

#[test]
fn connack_session_present_on_error() {
    assert_protocol(&[0x20, 0x02, 0x01, 0x05], V3_1_1, "[MQTT-3.2.2-4]");
    assert_protocol(&[0x20, 0x03, 0x01, 0x87, 0x00], V5, "[MQTT-3.2.2-6]");
}

#[test]
fn connack_return_codes() {
    assert_malformed(&[0x20, 0x02, 0x00, 0x06], V3_1_1, "section 3.2.2.3");
    assert_malformed(&[0x20, 0x03, 0x00, 0x03, 0x00], V5, "section 3.2.2.2");
    // A known code that CONNACK may not carry.
    assert_malformed(&[0x20, 0x03, 0x00, 0x04, 0x00], V5, "section 3.2.2.2");
    // MQTT 5 CONNACK always has a Property Length.
    assert_malformed(&[0x20, 0x02, 0x00, 0x00], V5, "section 2.1.4");
    assert_malformed(&[0x20, 0x03, 0x00, 0x00, 0x00], V3_1_1, "section 2.1.4");
}

#[test]
fn connack_property_values() {
    let with = |p: &[u8]| frame(0x20, &cat(&[&[0, 0], &props(p)]));
    assert_protocol(&with(&[id::RECEIVE_MAXIMUM, 0, 0]), V5, "section 3.2.2.3.3");
    assert_protocol(
        &with(&[id::MAXIMUM_PACKET_SIZE, 0, 0, 0, 0]),
        V5,
        "section 3.2.2.3.6",
    );
    assert_protocol(&with(&[id::MAXIMUM_QOS, 2]), V5, "section 3.2.2.3.4");
    assert_protocol(&with(&[id::RETAIN_AVAILABLE, 2]), V5, "section 3.2.2.3.5");
    assert_protocol(
        &with(&[id::WILDCARD_SUBSCRIPTION_AVAILABLE, 2]),
        V5,
        "section 3.2.2.3.11",
    );
    assert_protocol(
        &with(&[id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, 2]),
        V5,
        "section 3.2.2.3.12",
    );
    assert_protocol(
        &with(&[id::SHARED_SUBSCRIPTION_AVAILABLE, 2]),
        V5,
        "section 3.2.2.3.13",
    );
    assert_malformed(
        &with(&[id::WILL_DELAY_INTERVAL, 0, 0, 0, 0]),
        V5,
        "section 2.2.2.2",
    );
}

// ---------------------------------------------------------------- PUBLISH

#[test]
fn publish_qos_three() {
    for v in ALL_VERSIONS {
        assert_malformed(&frame(0x36, &cat(&[&s("a"), &[0, 1]])), v, "[MQTT-3.3.1-4]");
        // Refused from the first byte alone.
        assert_malformed(&[0x36], v, "[MQTT-3.3.1-4]");
    }
}

#[test]
fn publish_dup_with_qos_zero() {
    for v in ALL_VERSIONS {
        assert_malformed(&frame(0x38, &s("a")), v, "[MQTT-3.3.1-2]");
    }
}

#[test]
fn publish_topic_with_wildcards() {
    let bad = ReasonCode::TopicNameInvalid;
    for topic in ["a/+", "#", "a/#", "a+b"] {
        assert_err(&frame(0x30, &s(topic)), V3_1_1, bad, "[MQTT-3.3.2-2]");
        assert_err(
            &frame(0x30, &cat(&[&s(topic), &[0]])),
            V5,
            bad,
            "[MQTT-3.3.2-2]",
        );
    }
}

#[test]
fn publish_empty_topic_only_in_v5() {
    let bad = ReasonCode::TopicNameInvalid;
    assert_err(&frame(0x30, &s("")), V3_1_1, bad, "[MQTT-4.7.3-1]");
    assert_err(&frame(0x30, &s("")), V3_1, bad, "[MQTT-4.7.3-1]");
    let v5 = frame(0x30, &cat(&[&s(""), &props(&[id::TOPIC_ALIAS, 0, 3])]));
    let Packet::Publish(p) = decode_ok(&v5, V5) else {
        panic!()
    };
    assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("", Some(3)));
}

#[test]
fn publish_packet_id_zero() {
    assert_protocol(
        &frame(0x32, &cat(&[&s("a"), &[0, 0]])),
        V3_1_1,
        "[MQTT-2.3.1-1]",
    );
    assert_protocol(
        &frame(0x34, &cat(&[&s("a"), &[0, 0]])),
        V3_1,
        "[MQTT-2.3.1-1]",
    );
    assert_protocol(
        &frame(0x32, &cat(&[&s("a"), &[0, 0, 0]])),
        V5,
        "[MQTT-2.2.1-3]",
    );
}

#[test]
fn publish_packet_id_presence_follows_qos() {
    let Packet::Publish(p) = decode_ok(&frame(0x30, &cat(&[&s("a"), b"xy"])), V3_1_1) else {
        panic!()
    };
    assert_eq!((p.packet_id, &p.payload[..]), (None, &b"xy"[..]));
    let Packet::Publish(p) = decode_ok(&frame(0x32, &cat(&[&s("a"), &[0, 7], b"xy"])), V3_1_1)
    else {
        panic!()
    };
    assert_eq!((p.packet_id, &p.payload[..]), (Some(7), &b"xy"[..]));
}

#[test]
fn publish_property_rules() {
    let with = |p: &[u8]| frame(0x30, &cat(&[&s("t"), &props(p), b"payload"]));
    assert_err(
        &with(&[id::TOPIC_ALIAS, 0, 0]),
        V5,
        ReasonCode::TopicAliasInvalid,
        "[MQTT-3.3.2-8]",
    );
    assert_protocol(
        &with(&[id::PAYLOAD_FORMAT_INDICATOR, 2]),
        V5,
        "section 3.3.2.3.2",
    );
    assert_protocol(
        &with(&[id::SUBSCRIPTION_IDENTIFIER, 0]),
        V5,
        "section 3.3.2.3.8",
    );
    assert_protocol(
        &with(&[
            id::MESSAGE_EXPIRY_INTERVAL,
            0,
            0,
            0,
            1,
            id::MESSAGE_EXPIRY_INTERVAL,
            0,
            0,
            0,
            1,
        ]),
        V5,
        "section 2.2.2.2",
    );
    assert_malformed(
        &with(&[id::SESSION_EXPIRY_INTERVAL, 0, 0, 0, 1]),
        V5,
        "section 2.2.2.2",
    );
    assert_malformed(
        &with(&[id::WILL_DELAY_INTERVAL, 0, 0, 0, 1]),
        V5,
        "section 2.2.2.2",
    );
    assert_protocol(
        &with(&[id::RESPONSE_TOPIC, 0, 3, b'r', b'/', b'#']),
        V5,
        "[MQTT-3.3.2-14]",
    );
    // Non-minimal Subscription Identifier.
    assert_malformed(
        &with(&[id::SUBSCRIPTION_IDENTIFIER, 0x81, 0x00]),
        V5,
        "[MQTT-1.5.5-1]",
    );

    // Repeats that are allowed: User Property, and Subscription Identifier
    // on PUBLISH.
    let ok = with(&[
        id::USER_PROPERTY,
        0,
        1,
        b'k',
        0,
        1,
        b'v',
        id::USER_PROPERTY,
        0,
        1,
        b'k',
        0,
        1,
        b'w',
        id::SUBSCRIPTION_IDENTIFIER,
        0x05,
        id::SUBSCRIPTION_IDENTIFIER,
        0xFF,
        0xFF,
        0xFF,
        0x7F,
    ]);
    let Packet::Publish(p) = decode_ok(&ok, V5) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, vec![5, 268_435_455]);
    assert_eq!(
        p.properties.user_properties,
        vec![("k".into(), "v".into()), ("k".into(), "w".into())]
    );
    assert_eq!(&p.payload[..], b"payload");
}

// ---------------------------------------------------------------- strings

#[test]
fn strings_must_be_utf8_without_nul() {
    for v in ALL_VERSIONS {
        assert_malformed(&frame(0x30, &b(&[b'a', 0xC3])), v, "[MQTT-1.5.4-1]");
        assert_malformed(&frame(0x30, &b(&[0xED, 0xA0, 0x80])), v, "[MQTT-1.5.4-1]");
        assert_malformed(&frame(0x30, &b(b"a\0b")), v, "[MQTT-1.5.4-2]");
        let sub = cat(&[&[0, 1], &b(&[0xFF]), &[0]]);
        let sub = if v == V5 {
            cat(&[&[0, 1, 0], &sub[2..]])
        } else {
            sub
        };
        assert_malformed(&frame(0x82, &sub), v, "[MQTT-1.5.4-1]");
    }
    let user = props(&[id::USER_PROPERTY, 0, 1, 0, 0, 1, b'v']);
    assert_malformed(&frame(0x30, &cat(&[&s("t"), &user])), V5, "[MQTT-1.5.4-2]");
    let connect_id = frame(0x10, &cat(&[&s("MQTT"), &[4, 2, 0, 60], &b(&[0x80])]));
    assert_malformed(&connect_id, V3_1_1, "[MQTT-1.5.4-1]");
}

#[test]
fn string_longer_than_packet() {
    for v in ALL_VERSIONS {
        assert_malformed(&frame(0x30, &[0x00, 0x05, b'a']), v, "section 2.1.4");
    }
}

// ---------------------------------------------------------------- properties

#[test]
fn unknown_property_identifier() {
    for pid in [0x00, 0x04, 0x05, 0x14, 0x2B, 0x7F] {
        let f = frame(0x30, &cat(&[&s("t"), &props(&[pid, 0])]));
        assert_malformed(&f, V5, "section 2.2.2.2");
    }
    // A two-byte identifier is no identifier this version defines.
    let f = frame(0x30, &cat(&[&s("t"), &props(&[0x81, 0x01, 0])]));
    assert_malformed(&f, V5, "section 2.2.2.2");
}

#[test]
fn property_block_bounds() {
    // Property Length claims more than the packet holds.
    assert_malformed(
        &frame(0x30, &cat(&[&s("t"), &[5, id::TOPIC_ALIAS, 0, 1]])),
        V5,
        "section 2.1.4",
    );
    // A value runs past the Property Length.
    let f = frame(
        0x30,
        &cat(&[&s("t"), &[2, id::MESSAGE_EXPIRY_INTERVAL, 0, 0, 0, 0]]),
    );
    assert_malformed(&f, V5, "section 2.2.2.1");
    // Property Length of five bytes.
    let f = frame(0x30, &cat(&[&s("t"), &[0xFF, 0xFF, 0xFF, 0xFF, 0x01]]));
    assert_malformed(&f, V5, "section 1.5.5");
}

#[test]
fn property_not_allowed_on_each_packet() {
    let topic_alias = [id::TOPIC_ALIAS, 0, 1];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            frame(0x40, &cat(&[&[0, 1, 0], &props(&topic_alias)])),
            "PUBACK",
        ),
        (
            frame(0x50, &cat(&[&[0, 1, 0], &props(&topic_alias)])),
            "PUBREC",
        ),
        (
            frame(0x62, &cat(&[&[0, 1, 0], &props(&topic_alias)])),
            "PUBREL",
        ),
        (
            frame(0x70, &cat(&[&[0, 1, 0], &props(&topic_alias)])),
            "PUBCOMP",
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &props(&topic_alias), &s("a"), &[0]])),
            "SUBSCRIBE",
        ),
        (
            frame(0x90, &cat(&[&[0, 1], &props(&topic_alias), &[0]])),
            "SUBACK",
        ),
        (
            frame(0xA2, &cat(&[&[0, 1], &props(&topic_alias), &s("a")])),
            "UNSUBSCRIBE",
        ),
        (
            frame(0xB0, &cat(&[&[0, 1], &props(&topic_alias), &[0]])),
            "UNSUBACK",
        ),
        (
            frame(0xE0, &cat(&[&[0], &props(&topic_alias)])),
            "DISCONNECT",
        ),
        (frame(0xF0, &cat(&[&[0x18], &props(&topic_alias)])), "AUTH"),
        (
            frame(
                0xA2,
                &cat(&[&[0, 1], &props(&[id::SUBSCRIPTION_IDENTIFIER, 1]), &s("a")]),
            ),
            "UNSUBSCRIBE sub id",
        ),
        (
            frame(
                0xE0,
                &cat(&[&[0], &props(&[id::AUTHENTICATION_METHOD, 0, 1, b'm'])]),
            ),
            "DISCONNECT auth method",
        ),
    ];
    for (bytes, what) in cases {
        let e = try_decode(&bytes, V5).expect_err(what);
        assert_eq!(
            (e.reason, e.rule),
            (ReasonCode::MalformedPacket, "section 2.2.2.2"),
            "{what}: {e}"
        );
    }
}

// ---------------------------------------------------------------- acknowledgements

#[test]
fn packet_identifier_zero_everywhere() {
    let zero_id: Vec<(u8, Vec<u8>)> = vec![
        (0x40, vec![0, 0]),
        (0x50, vec![0, 0]),
        (0x62, vec![0, 0]),
        (0x70, vec![0, 0]),
        (0x82, cat(&[&[0, 0], &s("a"), &[0]])),
        (0xA2, cat(&[&[0, 0], &s("a")])),
        (0x90, vec![0, 0, 0]),
        (0xB0, vec![0, 0]),
    ];
    for (first, body) in zero_id {
        assert_protocol(&frame(first, &body), V3_1_1, "[MQTT-2.3.1-1]");
        assert_protocol(&frame(first, &body), V3_1, "[MQTT-2.3.1-1]");
        // MQTT 5 bodies: the identifier is checked before anything else.
        assert_protocol(&frame(first, &body), V5, "[MQTT-2.2.1-3]");
    }
}

#[test]
fn v3_acks_are_exactly_two_bytes() {
    for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
        assert_malformed(&frame(first, &[0, 1, 0]), V3_1_1, "section 2.1.4");
        assert_malformed(&frame(first, &[0]), V3_1_1, "section 2.1.4");
    }
}

#[test]
fn v5_ack_short_forms() {
    for first in [0x40, 0x50, 0x62, 0x70] {
        let p = decode_ok(&frame(first, &[0, 9]), V5);
        let p3 = decode_ok(&frame(first, &[0, 9, 0]), V5);
        let p4 = decode_ok(&frame(first, &[0, 9, 0, 0]), V5);
        assert_eq!(p, p3);
        assert_eq!(p, p4);
        match p {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                assert_eq!(a, fogg_codec::PubAck::new(9));
            }
            other => panic!("{other:?}"),
        }
    }
    let Packet::PubAck(a) = decode_ok(&[0x40, 0x03, 0, 9, 0x10], V5) else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::NoMatchingSubscribers);
}

#[test]
fn v5_ack_reason_codes() {
    assert_malformed(&[0x40, 0x03, 0, 1, 0x03], V5, "section 3.4.2.1");
    assert_malformed(&[0x40, 0x03, 0, 1, 0x92], V5, "section 3.4.2.1");
    assert_malformed(&[0x50, 0x03, 0, 1, 0x92], V5, "section 3.5.2.1");
    assert_malformed(&[0x62, 0x03, 0, 1, 0x10], V5, "section 3.6.2.1");
    assert_malformed(&[0x70, 0x03, 0, 1, 0x80], V5, "section 3.7.2.1");
    // Trailing bytes after the property block.
    assert_malformed(&[0x40, 0x05, 0, 1, 0x00, 0x00, 0x00], V5, "section 2.1.4");
    assert_protocol(
        &frame(
            0x40,
            &cat(&[
                &[0, 1, 0],
                &props(&[id::REASON_STRING, 0, 0, id::REASON_STRING, 0, 0]),
            ]),
        ),
        V5,
        "section 2.2.2.2",
    );
}

// ---------------------------------------------------------------- SUBSCRIBE

fn subscribe(version: ProtocolVersion, payload: &[u8]) -> Vec<u8> {
    let head: &[u8] = if version == V5 { &[0, 1, 0] } else { &[0, 1] };
    frame(0x82, &cat(&[head, payload]))
}

#[test]
fn subscribe_without_filters() {
    assert_protocol(&subscribe(V5, &[]), V5, "[MQTT-3.8.3-2]");
    assert_protocol(&subscribe(V3_1_1, &[]), V3_1_1, "[MQTT-3.8.3-3]");
    assert_protocol(&subscribe(V3_1, &[]), V3_1, "[MQTT-3.8.3-3]");
}

#[test]
fn subscribe_reserved_option_bits() {
    for bits in [0x40, 0x80, 0xC0] {
        assert_malformed(
            &subscribe(V5, &cat(&[&s("a"), &[bits]])),
            V5,
            "[MQTT-3.8.3-5]",
        );
    }
    for bits in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
        let f = subscribe(V3_1_1, &cat(&[&s("a"), &[bits]]));
        assert_malformed(&f, V3_1_1, "[MQTT-3-8.3-4]");
    }
}

#[test]
fn subscribe_qos_three() {
    assert_malformed(
        &subscribe(V3_1_1, &cat(&[&s("a"), &[3]])),
        V3_1_1,
        "[MQTT-3-8.3-4]",
    );
    // MQTT 5 section 3.8.3.1 calls this a Protocol Error.
    assert_protocol(
        &subscribe(V5, &cat(&[&s("a"), &[3]])),
        V5,
        "section 3.8.3.1",
    );
}

#[test]
fn subscribe_retain_handling_three() {
    assert_protocol(
        &subscribe(V5, &cat(&[&s("a"), &[0x30]])),
        V5,
        "section 3.8.3.1",
    );
}

#[test]
fn subscribe_no_local_on_shared_subscription() {
    let f = subscribe(V5, &cat(&[&s("$share/g/a"), &[0x04]]));
    assert_protocol(&f, V5, "[MQTT-3.8.3-4]");
    // No Local on an ordinary filter is fine.
    decode_ok(&subscribe(V5, &cat(&[&s("$sharex/a"), &[0x04]])), V5);
}

#[test]
fn subscribe_filters_are_not_syntax_checked() {
    // The broker answers 0x8F per filter; the packet itself is well formed.
    let Packet::Subscribe(sub) =
        decode_ok(&subscribe(V5, &cat(&[&s("a/#/b"), &[1], &s(""), &[0]])), V5)
    else {
        panic!()
    };
    assert_eq!(sub.filters.len(), 2);
}

#[test]
fn subscribe_identifier_rules() {
    let with = |p: &[u8]| frame(0x82, &cat(&[&[0, 1], &props(p), &s("a"), &[0]]));
    assert_protocol(
        &with(&[id::SUBSCRIPTION_IDENTIFIER, 0]),
        V5,
        "section 3.8.2.1.2",
    );
    assert_protocol(
        &with(&[
            id::SUBSCRIPTION_IDENTIFIER,
            1,
            id::SUBSCRIPTION_IDENTIFIER,
            2,
        ]),
        V5,
        "section 2.2.2.2",
    );
    assert_malformed(
        &with(&[id::SUBSCRIPTION_IDENTIFIER, 0x80, 0x80, 0x80, 0x80, 0x01]),
        V5,
        "section 1.5.5",
    );
}

#[test]
fn subscribe_truncated_options() {
    assert_malformed(&subscribe(V3_1_1, &s("a")), V3_1_1, "section 2.1.4");
}

#[test]
fn v3_subscribe_ignores_v5_options() {
    let Packet::Subscribe(sub) = decode_ok(&subscribe(V3_1_1, &cat(&[&s("a"), &[2]])), V3_1_1)
    else {
        panic!()
    };
    assert_eq!(
        sub.filters[0].options,
        fogg_codec::SubscriptionOptions {
            qos: fogg_codec::QoS::ExactlyOnce,
            ..Default::default()
        }
    );
}

// ---------------------------------------------------------------- SUBACK

#[test]
fn suback_codes() {
    assert_malformed(&[0x90, 0x03, 0, 1, 0x03], V3_1_1, "[MQTT-3.9.3-2]");
    assert_malformed(&[0x90, 0x03, 0, 1, 0x87], V3_1_1, "[MQTT-3.9.3-2]");
    assert_malformed(&[0x90, 0x04, 0, 1, 0, 0x03], V5, "section 3.9.3");
    assert_malformed(&[0x90, 0x04, 0, 1, 0, 0x92], V5, "section 3.9.3");
    assert_protocol(&[0x90, 0x02, 0, 1], V3_1_1, "section 3.9.3");
    assert_protocol(&[0x90, 0x03, 0, 1, 0], V5, "section 3.9.3");
}

// ---------------------------------------------------------------- UNSUBSCRIBE / UNSUBACK

#[test]
fn unsubscribe_without_filters() {
    assert_protocol(&[0xA2, 0x02, 0, 1], V3_1_1, "[MQTT-3.10.3-2]");
    assert_protocol(&[0xA2, 0x03, 0, 1, 0], V5, "[MQTT-3.10.3-2]");
}

#[test]
fn unsuback_codes() {
    assert_protocol(&[0xB0, 0x03, 0, 1, 0], V5, "section 3.11.3");
    assert_malformed(&[0xB0, 0x04, 0, 1, 0, 0x10], V5, "section 3.11.3");
    assert_malformed(&[0xB0, 0x03, 0, 1, 0x11], V3_1_1, "section 2.1.4");
}

// ---------------------------------------------------------------- PING, DISCONNECT, AUTH

#[test]
fn disconnect_rules() {
    assert_malformed(&[0xE0, 0x01, 0x00], V3_1_1, "section 2.1.4");
    assert_malformed(&[0xE0, 0x01, 0x03], V5, "section 3.14.2.1");
    assert_malformed(&[0xE0, 0x01, 0x18], V5, "section 3.14.2.1");
    let Packet::Disconnect(d) = decode_ok(&[0xE0, 0x01, 0x04], V5) else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::DisconnectWithWill);
    let Packet::Disconnect(d) = decode_ok(&[0xE0, 0x00], V5) else {
        panic!()
    };
    assert_eq!(d, Box::new(fogg_codec::Disconnect::default()));
    assert_malformed(&[0xE0, 0x03, 0x00, 0x00, 0x00], V5, "section 2.1.4");
}

#[test]
fn auth_rules() {
    assert_malformed(&[0xF0, 0x01, 0x18], V5, "[MQTT-2.2.2-1]");
    assert_malformed(&[0xF0, 0x02, 0x01, 0x00], V5, "[MQTT-3.15.2-1]");
    assert_malformed(&[0xF0, 0x02, 0x87, 0x00], V5, "[MQTT-3.15.2-1]");
    let Packet::Auth(a) = decode_ok(&[0xF0, 0x00], V5) else {
        panic!()
    };
    assert_eq!(a, Box::new(fogg_codec::Auth::default()));
}
