//! Tables from the specification that both directions consult: which
//! properties a packet may carry (MQTT 5 section 2.2.2.2) and which reason
//! codes it may carry (the per-packet tables of chapter 3).
//!
//! Keeping them in one place means the encoder can never produce a packet
//! that the decoder would refuse.

use crate::ReasonCode;
use crate::property_id as id;

/// Where a property block sits; each position has its own allowed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropCtx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropCtx {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PropCtx::Connect => "CONNECT",
            PropCtx::Will => "Will Properties",
            PropCtx::ConnAck => "CONNACK",
            PropCtx::Publish => "PUBLISH",
            PropCtx::PubAck => "PUBACK",
            PropCtx::PubRec => "PUBREC",
            PropCtx::PubRel => "PUBREL",
            PropCtx::PubComp => "PUBCOMP",
            PropCtx::Subscribe => "SUBSCRIBE",
            PropCtx::SubAck => "SUBACK",
            PropCtx::Unsubscribe => "UNSUBSCRIBE",
            PropCtx::UnsubAck => "UNSUBACK",
            PropCtx::Disconnect => "DISCONNECT",
            PropCtx::Auth => "AUTH",
        }
    }

    /// Bit `n` set means property identifier `n` may appear here. Every
    /// identifier is below 64, so one word covers the table.
    fn allowed_mask(self) -> u64 {
        const fn m(ids: &[u8]) -> u64 {
            let mut mask = 0u64;
            let mut i = 0;
            while i < ids.len() {
                mask |= 1u64 << ids[i];
                i += 1;
            }
            mask
        }
        const MESSAGE: &[u8] = &[
            id::PAYLOAD_FORMAT_INDICATOR,
            id::MESSAGE_EXPIRY_INTERVAL,
            id::CONTENT_TYPE,
            id::RESPONSE_TOPIC,
            id::CORRELATION_DATA,
            id::USER_PROPERTY,
        ];
        const CONNECT: u64 = m(&[
            id::SESSION_EXPIRY_INTERVAL,
            id::AUTHENTICATION_METHOD,
            id::AUTHENTICATION_DATA,
            id::REQUEST_PROBLEM_INFORMATION,
            id::REQUEST_RESPONSE_INFORMATION,
            id::RECEIVE_MAXIMUM,
            id::TOPIC_ALIAS_MAXIMUM,
            id::USER_PROPERTY,
            id::MAXIMUM_PACKET_SIZE,
        ]);
        const WILL: u64 = m(MESSAGE) | m(&[id::WILL_DELAY_INTERVAL]);
        const CONNACK: u64 = m(&[
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
        ]);
        const PUBLISH: u64 = m(MESSAGE) | m(&[id::SUBSCRIPTION_IDENTIFIER, id::TOPIC_ALIAS]);
        const ACK: u64 = m(&[id::REASON_STRING, id::USER_PROPERTY]);
        const SUBSCRIBE: u64 = m(&[id::SUBSCRIPTION_IDENTIFIER, id::USER_PROPERTY]);
        const UNSUBSCRIBE: u64 = m(&[id::USER_PROPERTY]);
        const DISCONNECT: u64 = m(&[
            id::SESSION_EXPIRY_INTERVAL,
            id::SERVER_REFERENCE,
            id::REASON_STRING,
            id::USER_PROPERTY,
        ]);
        const AUTH: u64 = m(&[
            id::AUTHENTICATION_METHOD,
            id::AUTHENTICATION_DATA,
            id::REASON_STRING,
            id::USER_PROPERTY,
        ]);
        match self {
            PropCtx::Connect => CONNECT,
            PropCtx::Will => WILL,
            PropCtx::ConnAck => CONNACK,
            PropCtx::Publish => PUBLISH,
            PropCtx::PubAck
            | PropCtx::PubRec
            | PropCtx::PubRel
            | PropCtx::PubComp
            | PropCtx::SubAck
            | PropCtx::UnsubAck => ACK,
            PropCtx::Subscribe => SUBSCRIBE,
            PropCtx::Unsubscribe => UNSUBSCRIBE,
            PropCtx::Disconnect => DISCONNECT,
            PropCtx::Auth => AUTH,
        }
    }

    pub(crate) fn allows(self, property: u8) -> bool {
        property < 64 && self.allowed_mask() & (1u64 << property) != 0
    }

    /// Properties that may legitimately repeat here. User Property may repeat
    /// anywhere; a PUBLISH carries one Subscription Identifier per matching
    /// subscription (section 3.3.2.3.8), while SUBSCRIBE allows only one.
    pub(crate) fn may_repeat(self, property: u8) -> bool {
        property == id::USER_PROPERTY
            || (self == PropCtx::Publish && property == id::SUBSCRIPTION_IDENTIFIER)
    }
}

/// Property name, for error details; `None` for an unknown identifier.
pub(crate) fn property_name(property: u8) -> Option<&'static str> {
    Some(match property {
        id::PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        id::MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        id::CONTENT_TYPE => "Content Type",
        id::RESPONSE_TOPIC => "Response Topic",
        id::CORRELATION_DATA => "Correlation Data",
        id::SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        id::SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        id::ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        id::SERVER_KEEP_ALIVE => "Server Keep Alive",
        id::AUTHENTICATION_METHOD => "Authentication Method",
        id::AUTHENTICATION_DATA => "Authentication Data",
        id::REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        id::WILL_DELAY_INTERVAL => "Will Delay Interval",
        id::REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        id::RESPONSE_INFORMATION => "Response Information",
        id::SERVER_REFERENCE => "Server Reference",
        id::REASON_STRING => "Reason String",
        id::RECEIVE_MAXIMUM => "Receive Maximum",
        id::TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        id::TOPIC_ALIAS => "Topic Alias",
        id::MAXIMUM_QOS => "Maximum QoS",
        id::RETAIN_AVAILABLE => "Retain Available",
        id::USER_PROPERTY => "User Property",
        id::MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
        id::SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => return None,
    })
}

/// Packets that carry an MQTT 5 reason code, for the per-packet tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReasonCtx {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl ReasonCtx {
    /// The section whose table lists the reason codes for this packet.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            ReasonCtx::ConnAck => "section 3.2.2.2",
            ReasonCtx::PubAck => "section 3.4.2.1",
            ReasonCtx::PubRec => "section 3.5.2.1",
            ReasonCtx::PubRel => "section 3.6.2.1",
            ReasonCtx::PubComp => "section 3.7.2.1",
            ReasonCtx::SubAck => "section 3.9.3",
            ReasonCtx::UnsubAck => "section 3.11.3",
            ReasonCtx::Disconnect => "section 3.14.2.1",
            ReasonCtx::Auth => "[MQTT-3.15.2-1]",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ReasonCtx::ConnAck => "CONNACK",
            ReasonCtx::PubAck => "PUBACK",
            ReasonCtx::PubRec => "PUBREC",
            ReasonCtx::PubRel => "PUBREL",
            ReasonCtx::PubComp => "PUBCOMP",
            ReasonCtx::SubAck => "SUBACK",
            ReasonCtx::UnsubAck => "UNSUBACK",
            ReasonCtx::Disconnect => "DISCONNECT",
            ReasonCtx::Auth => "AUTH",
        }
    }

    pub(crate) fn allows(self, reason: ReasonCode) -> bool {
        use ReasonCode::*;
        match self {
            ReasonCtx::ConnAck => matches!(
                reason,
                Success
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | UnsupportedProtocolVersion
                    | ClientIdentifierNotValid
                    | BadUserNameOrPassword
                    | NotAuthorized
                    | ServerUnavailable
                    | ServerBusy
                    | Banned
                    | BadAuthenticationMethod
                    | TopicNameInvalid
                    | PacketTooLarge
                    | QuotaExceeded
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | ConnectionRateExceeded
            ),
            ReasonCtx::PubAck | ReasonCtx::PubRec => matches!(
                reason,
                Success
                    | NoMatchingSubscribers
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicNameInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | PayloadFormatInvalid
            ),
            ReasonCtx::PubRel | ReasonCtx::PubComp => {
                matches!(reason, Success | PacketIdentifierNotFound)
            }
            ReasonCtx::SubAck => matches!(
                reason,
                Success
                    | GrantedQoS1
                    | GrantedQoS2
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | SharedSubscriptionsNotSupported
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            ReasonCtx::UnsubAck => matches!(
                reason,
                Success
                    | NoSubscriptionExisted
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
            ),
            ReasonCtx::Disconnect => matches!(
                reason,
                Success
                    | DisconnectWithWill
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | ServerBusy
                    | ServerShuttingDown
                    | KeepAliveTimeout
                    | SessionTakenOver
                    | TopicFilterInvalid
                    | TopicNameInvalid
                    | ReceiveMaximumExceeded
                    | TopicAliasInvalid
                    | PacketTooLarge
                    | MessageRateTooHigh
                    | QuotaExceeded
                    | AdministrativeAction
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | SharedSubscriptionsNotSupported
                    | ConnectionRateExceeded
                    | MaximumConnectTime
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            ReasonCtx::Auth => matches!(reason, Success | ContinueAuthentication | ReAuthenticate),
        }
    }
}

/// The four QoS acknowledgements share one shape but not one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    /// PUBACK
    Ack,
    /// PUBREC
    Rec,
    /// PUBREL
    Rel,
    /// PUBCOMP
    Comp,
}

impl AckKind {
    pub(crate) fn reason_ctx(self) -> ReasonCtx {
        match self {
            AckKind::Ack => ReasonCtx::PubAck,
            AckKind::Rec => ReasonCtx::PubRec,
            AckKind::Rel => ReasonCtx::PubRel,
            AckKind::Comp => ReasonCtx::PubComp,
        }
    }

    pub(crate) fn prop_ctx(self) -> PropCtx {
        match self {
            AckKind::Ack => PropCtx::PubAck,
            AckKind::Rec => PropCtx::PubRec,
            AckKind::Rel => PropCtx::PubRel,
            AckKind::Comp => PropCtx::PubComp,
        }
    }
}

/// Fixed-header packet type numbers (section 2.1.2).
pub(crate) mod packet_type {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Largest Subscription Identifier (section 3.8.2.1.2).
pub(crate) const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// Shared subscription prefix (section 4.8.2).
pub(crate) const SHARE_PREFIX: &str = "$share/";
