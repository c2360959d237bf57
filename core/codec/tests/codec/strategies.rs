//! Generators of valid packets for each protocol version. Fields that do not
//! exist in a version stay at their defaults there, so a round trip is exact.
//!
//! The allowed-property and reason-code tables are written out again here,
//! from the specification, rather than borrowed from the crate, so the tests
//! check the crate's tables too.

use bytes::Bytes;
use fogg_codec::property_id as id;
use fogg_codec::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::util::{V3_1, V3_1_1, V5};

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V3_1), Just(V3_1_1), Just(V5)]
}

/// Any string without U+0000 (which MQTT forbids), including multi-byte
/// characters.
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/$ é]{1,16}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    // Not syntax-checked by the codec, so anything but U+0000 goes; keep
    // '$share/' out so No Local stays legal.
    "[a-z0-9/+#é]{0,16}"
}

fn data(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn nonzero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn flag() -> impl Strategy<Value = u8> {
    0..=1u8
}

/// Properties allowed on each packet (MQTT 5 section 2.2.2.2).
pub mod allowed {
    use super::id;

    const MESSAGE: [u8; 6] = [
        id::PAYLOAD_FORMAT_INDICATOR,
        id::MESSAGE_EXPIRY_INTERVAL,
        id::CONTENT_TYPE,
        id::RESPONSE_TOPIC,
        id::CORRELATION_DATA,
        id::USER_PROPERTY,
    ];
    pub const CONNECT: &[u8] = &[
        id::SESSION_EXPIRY_INTERVAL,
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
        id::REQUEST_PROBLEM_INFORMATION,
        id::REQUEST_RESPONSE_INFORMATION,
        id::RECEIVE_MAXIMUM,
        id::TOPIC_ALIAS_MAXIMUM,
        id::USER_PROPERTY,
        id::MAXIMUM_PACKET_SIZE,
    ];
    pub const WILL: &[u8] = &[
        MESSAGE[0],
        MESSAGE[1],
        MESSAGE[2],
        MESSAGE[3],
        MESSAGE[4],
        MESSAGE[5],
        id::WILL_DELAY_INTERVAL,
    ];
    pub const CONNACK: &[u8] = &[
        id::SESSION_EXPIRY_INTERVAL,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        id::SERVER_KEEP_ALIVE,
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
        id::RESPONSE_INFORMATION,
        id::SERVER_REFERENCE,
        id::REASON_STRING,
        id::RECEIVE_MAXIMUM,
        id::TOPIC_ALIAS_MAXIMUM,
        id::MAXIMUM_QOS,
        id::RETAIN_AVAILABLE,
        id::USER_PROPERTY,
        id::MAXIMUM_PACKET_SIZE,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
    ];
    pub const PUBLISH: &[u8] = &[
        MESSAGE[0],
        MESSAGE[1],
        MESSAGE[2],
        MESSAGE[3],
        MESSAGE[4],
        MESSAGE[5],
        id::SUBSCRIPTION_IDENTIFIER,
        id::TOPIC_ALIAS,
    ];
    pub const ACK: &[u8] = &[id::REASON_STRING, id::USER_PROPERTY];
    pub const SUBSCRIBE: &[u8] = &[id::SUBSCRIPTION_IDENTIFIER, id::USER_PROPERTY];
    pub const UNSUBSCRIBE: &[u8] = &[id::USER_PROPERTY];
    pub const DISCONNECT: &[u8] = &[
        id::SESSION_EXPIRY_INTERVAL,
        id::SERVER_REFERENCE,
        id::REASON_STRING,
        id::USER_PROPERTY,
    ];
    pub const AUTH: &[u8] = &[
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
        id::REASON_STRING,
        id::USER_PROPERTY,
    ];
}

/// Reason codes allowed on each packet (MQTT 5, chapter 3 tables).
pub mod reasons {
    use fogg_codec::ReasonCode::{self, *};

    pub const CONNACK: &[ReasonCode] = &[
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ];
    /// What survives the trip through a 3.1.1 return code.
    pub const CONNACK_V3: &[ReasonCode] = &[
        Success,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        ServerUnavailable,
        BadUserNameOrPassword,
        NotAuthorized,
    ];
    pub const PUBACK: &[ReasonCode] = &[
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ];
    pub const PUBREL: &[ReasonCode] = &[Success, PacketIdentifierNotFound];
    pub const SUBACK: &[ReasonCode] = &[
        Success,
        GrantedQoS1,
        GrantedQoS2,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        SharedSubscriptionsNotSupported,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];
    pub const SUBACK_V3: &[ReasonCode] = &[Success, GrantedQoS1, GrantedQoS2, UnspecifiedError];
    pub const UNSUBACK: &[ReasonCode] = &[
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ];
    pub const DISCONNECT: &[ReasonCode] = &[
        Success,
        DisconnectWithWill,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        NotAuthorized,
        ServerBusy,
        ServerShuttingDown,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];
    pub const AUTH: &[ReasonCode] = &[Success, ContinueAuthentication, ReAuthenticate];
}

fn reason(table: &'static [ReasonCode]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(table)
}

/// Every property set to a valid value (or absent), then those not allowed
/// at this position cleared. `max_sub_ids` is 1 where only one may appear.
pub fn properties(allowed: &'static [u8], max_sub_ids: usize) -> impl Strategy<Value = Properties> {
    let message = (
        option::of(flag()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(data(16)),
        vec(1..=268_435_455u32, 0..=max_sub_ids),
    );
    let session = (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(data(16)),
        option::of(flag()),
        option::of(any::<u32>()),
        option::of(flag()),
    );
    let server = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(nonzero_u16()),
        option::of(any::<u16>()),
        option::of(nonzero_u16()),
        option::of(flag()),
        option::of(flag()),
    );
    let rest = (
        vec((text(), text()), 0..3),
        option::of(1..=u32::MAX),
        option::of(flag()),
        option::of(flag()),
        option::of(flag()),
    );
    (message, session, server, rest).prop_map(move |(m, s, v, r)| {
        let mut p = Properties {
            payload_format_indicator: m.0,
            message_expiry_interval: m.1,
            content_type: m.2,
            response_topic: m.3,
            correlation_data: m.4,
            subscription_identifiers: m.5,
            session_expiry_interval: s.0,
            assigned_client_identifier: s.1,
            server_keep_alive: s.2,
            authentication_method: s.3,
            authentication_data: s.4,
            request_problem_information: s.5,
            will_delay_interval: s.6,
            request_response_information: s.7,
            response_information: v.0,
            server_reference: v.1,
            reason_string: v.2,
            receive_maximum: v.3,
            topic_alias_maximum: v.4,
            topic_alias: v.5,
            maximum_qos: v.6,
            retain_available: v.7,
            user_properties: r.0,
            maximum_packet_size: r.1,
            wildcard_subscription_available: r.2,
            subscription_identifier_available: r.3,
            shared_subscription_available: r.4,
        };
        keep_only(&mut p, allowed);
        p
    })
}

fn keep_only(p: &mut Properties, allowed: &[u8]) {
    let no = |pid: u8| !allowed.contains(&pid);
    macro_rules! clear {
        ($($pid:ident => $field:ident),* $(,)?) => {
            $(if no(id::$pid) { p.$field = Default::default(); })*
        };
    }
    clear!(
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator,
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval,
        CONTENT_TYPE => content_type,
        RESPONSE_TOPIC => response_topic,
        CORRELATION_DATA => correlation_data,
        SUBSCRIPTION_IDENTIFIER => subscription_identifiers,
        SESSION_EXPIRY_INTERVAL => session_expiry_interval,
        ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier,
        SERVER_KEEP_ALIVE => server_keep_alive,
        AUTHENTICATION_METHOD => authentication_method,
        AUTHENTICATION_DATA => authentication_data,
        REQUEST_PROBLEM_INFORMATION => request_problem_information,
        WILL_DELAY_INTERVAL => will_delay_interval,
        REQUEST_RESPONSE_INFORMATION => request_response_information,
        RESPONSE_INFORMATION => response_information,
        SERVER_REFERENCE => server_reference,
        REASON_STRING => reason_string,
        RECEIVE_MAXIMUM => receive_maximum,
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum,
        TOPIC_ALIAS => topic_alias,
        MAXIMUM_QOS => maximum_qos,
        RETAIN_AVAILABLE => retain_available,
        USER_PROPERTY => user_properties,
        MAXIMUM_PACKET_SIZE => maximum_packet_size,
        WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifier_available,
        SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available,
    );
}

/// Properties for `version`: always empty before MQTT 5.
fn props_for(
    version: ProtocolVersion,
    allowed: &'static [u8],
    max_sub_ids: usize,
) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        properties(allowed, max_sub_ids).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

pub fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        data(32),
        qos(),
        any::<bool>(),
        props_for(version, allowed::WILL, 0),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will),
        option::of(text()),
        option::of(data(16)),
        props_for(version, allowed::CONNECT, 0),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // Before MQTT 5 a password needs a user name.
                let username = match (&username, &password) {
                    (None, Some(_)) if !version.is_v5() => Some(String::new()),
                    _ => username,
                };
                // CONNECT may not carry Authentication Data without a method.
                let mut properties = properties;
                if properties.authentication_method.is_none() {
                    properties.authentication_data = None;
                }
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let table = if version.is_v5() {
        reasons::CONNACK
    } else {
        reasons::CONNACK_V3
    };
    (
        any::<bool>(),
        reason(table),
        props_for(version, allowed::CONNACK, 0),
    )
        .prop_map(move |(present, reason, properties)| {
            Packet::ConnAck(Box::new(ConnAck {
                // Only an accepted connection has a session, and MQTT 3.1
                // has no flag for it.
                session_present: present && !reason.is_error() && version != V3_1,
                reason,
                properties,
            }))
        })
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let topic = if version.is_v5() {
        prop_oneof![1 => Just(String::new()), 4 => topic_name()].boxed()
    } else {
        topic_name().boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        nonzero_u16(),
        data(64),
        props_for(version, allowed::PUBLISH, 3),
    )
        .prop_map(|(qos, dup, retain, topic, id, payload, properties)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Box::new(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: (!qos0).then_some(id),
                payload,
                properties,
            }))
        })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP, chosen by `kind` 0 to 3.
pub fn pub_ack(version: ProtocolVersion, kind: u8) -> impl Strategy<Value = Packet> {
    let table = match kind {
        0 | 1 => reasons::PUBACK,
        _ => reasons::PUBREL,
    };
    let reason = if version.is_v5() {
        reason(table).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (nonzero_u16(), reason, props_for(version, allowed::ACK, 0)).prop_map(
        move |(packet_id, reason, properties): (_, _, Properties)| {
            // `allowed::ACK` generates only these two.
            let ack = PubAck {
                packet_id,
                reason,
                properties: AckProperties {
                    reason_string: properties.reason_string,
                    user_properties: properties.user_properties,
                },
            };
            match kind {
                0 => Packet::PubAck(ack),
                1 => Packet::PubRec(ack),
                2 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        },
    )
}

fn subscription_options(version: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (qos(), any::<bool>(), any::<bool>(), handling).prop_map(move |(qos, nl, rap, rh)| {
        if version.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..Default::default()
            }
        }
    })
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let filter = (topic_filter(), subscription_options(version))
        .prop_map(|(filter, options)| SubscribeFilter { filter, options });
    (
        nonzero_u16(),
        vec(filter, 1..5),
        props_for(version, allowed::SUBSCRIBE, 1),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Box::new(Subscribe {
                packet_id,
                filters,
                properties,
            }))
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let table = if version.is_v5() {
        reasons::SUBACK
    } else {
        reasons::SUBACK_V3
    };
    (
        nonzero_u16(),
        vec(reason(table), 1..5),
        props_for(version, allowed::ACK, 0),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::SubAck(Box::new(SubAck {
                packet_id,
                reasons,
                properties,
            }))
        })
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        nonzero_u16(),
        vec(topic_filter(), 1..5),
        props_for(version, allowed::UNSUBSCRIBE, 0),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Box::new(Unsubscribe {
                packet_id,
                filters,
                properties,
            }))
        })
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // 3.x UNSUBACK carries no reason codes at all.
    let reasons = if version.is_v5() {
        vec(reason(reasons::UNSUBACK), 1..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (nonzero_u16(), reasons, props_for(version, allowed::ACK, 0)).prop_map(
        |(packet_id, reasons, properties)| {
            Packet::UnsubAck(Box::new(UnsubAck {
                packet_id,
                reasons,
                properties,
            }))
        },
    )
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason(reasons::DISCONNECT).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (reason, props_for(version, allowed::DISCONNECT, 0)).prop_map(|(reason, properties)| {
        Packet::Disconnect(Box::new(Disconnect { reason, properties }))
    })
}

pub fn auth() -> impl Strategy<Value = Packet> {
    (reason(reasons::AUTH), properties(allowed::AUTH, 0))
        .prop_map(|(reason, properties)| Packet::Auth(Box::new(Auth { reason, properties })))
}

/// Any valid packet for `version`.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_ack(version, 0),
        pub_ack(version, 1),
        pub_ack(version, 2),
        pub_ack(version, 3),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// A version and a valid packet for it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}
